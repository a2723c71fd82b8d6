//! What the simulator asks the chain: is a compose hash allowed on an app contract, and does a
//! transaction prove that it was registered there.

use alloy::eips::BlockId;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};

use crate::onchain::contract::{AppAuth, registers_compose_hash};

/// Why phase 2 is refused on-chain.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// 468: `allowedComposeHashes(hash)` is false on the app contract.
    NotAllowed(String),
    /// 467: the transaction does not prove the registration.
    BadTransaction(String),
    /// 500: the chain could not be asked.
    Rpc(String),
}

/// The chain the simulator checks phase 2 against.
#[derive(Clone)]
pub(crate) struct Chain {
    pub(crate) provider: DynProvider,
    /// For scrubbing error texts, which go into replies.
    pub(crate) rpc_url: url::Url,
    /// How many blocks the verifier's view is behind the latest block.
    pub(crate) lag: u64,
}

impl Chain {
    fn scrub(&self, text: String) -> String {
        crate::onchain::scrub_url(&text, &self.rpc_url)
    }

    /// Checks, in order: the transaction is in the verifier's view (with a lag: mined at or
    /// before block `latest - lag`, else 467); the hash is allowed on `app` as of that view
    /// (else 468); the transaction exists, succeeded and carries a `ComposeHashAdded(hash)` log
    /// emitted by `app` (else 467). Which contract the transaction was sent to does not matter:
    /// a registration relayed through a multisig or a forwarder is a transaction to that
    /// contract, and the app's log in it proves the registration all the same.
    ///
    /// The allow-list is asked before the transaction's logs: a hash registered on some other
    /// contract is "not allowed" (468, register it on this app), while a transaction that proves
    /// nothing about an allowed hash is a bad transaction (467, check the transaction).
    pub(crate) async fn verify(&self, app: Address, hash: B256, tx: B256) -> Result<(), Refusal> {
        let receipt = self
            .provider
            .get_transaction_receipt(tx)
            .await
            .map_err(|e| Refusal::Rpc(self.scrub(format!("eth_getTransactionReceipt failed: {e}"))))?;
        let view = if self.lag == 0 {
            BlockId::latest()
        } else {
            let latest = self
                .provider
                .get_block_number()
                .await
                .map_err(|e| Refusal::Rpc(self.scrub(format!("eth_blockNumber failed: {e}"))))?;
            let view = latest.saturating_sub(self.lag);
            if let Some(receipt) = &receipt {
                match receipt.block_number {
                    Some(block) if block <= view => {}
                    mined => {
                        let mined = mined.map_or_else(|| "a pending block".to_owned(), |b| format!("block {b}"));
                        return Err(Refusal::BadTransaction(format!(
                            "transaction {tx} not found: the verifier sees the chain up to block {view}, and it is in {mined}"
                        )));
                    }
                }
            }
            BlockId::number(view)
        };
        let contract = AppAuth::new(app, &self.provider);
        match contract.allowedComposeHashes(hash).block(view).call().await {
            Ok(true) => {}
            Ok(false) => {
                return Err(Refusal::NotAllowed(format!(
                    "compose hash {hash} is not in allowedComposeHashes of app contract {app}"
                )));
            }
            Err(alloy::contract::Error::TransportError(e)) => {
                return Err(Refusal::Rpc(self.scrub(format!("eth_call allowedComposeHashes failed: {e}"))));
            }
            Err(e) => {
                return Err(Refusal::NotAllowed(self.scrub(format!(
                    "app contract {app} did not answer allowedComposeHashes ({e}); is it deployed on this chain?"
                ))));
            }
        }
        let receipt = receipt.ok_or_else(|| {
            Refusal::BadTransaction(format!("transaction {tx} not found (not mined, or another chain)"))
        })?;
        if !receipt.status() {
            return Err(Refusal::BadTransaction(format!("transaction {tx} reverted")));
        }
        if !registers_compose_hash(&receipt, app, hash) {
            let message = match receipt.to {
                Some(to) if to == app => {
                    format!("transaction {tx} has no ComposeHashAdded({hash}) log from the app contract {app}")
                }
                to => {
                    let to = to.map_or_else(|| "a contract creation".to_owned(), |to| to.to_string());
                    format!(
                        "transaction {tx} was sent to {to}, not to the app contract {app}, and no call in it emitted ComposeHashAdded({hash}) from the app contract"
                    )
                }
            };
            return Err(Refusal::BadTransaction(message));
        }
        Ok(())
    }
}
