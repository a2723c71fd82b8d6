//! What the simulator asks the chain: is a compose hash allowed on an app contract, and does a
//! transaction prove that it was registered there.

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
}

impl Chain {
    fn scrub(&self, text: String) -> String {
        crate::onchain::scrub_url(&text, &self.rpc_url)
    }

    /// Checks, in order: the hash is allowed on `app` (else 468); the transaction exists,
    /// succeeded, was sent to `app` and carries a `ComposeHashAdded(hash)` log emitted by `app`
    /// (else 467).
    ///
    /// The allow-list is asked first: a hash registered on some other contract is "not
    /// allowed" (468, register it on this app), while a transaction that proves nothing about
    /// an allowed hash is a bad transaction (467, check the transaction).
    pub(crate) async fn verify(&self, app: Address, hash: B256, tx: B256) -> Result<(), Refusal> {
        let contract = AppAuth::new(app, &self.provider);
        match contract.allowedComposeHashes(hash).call().await {
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
        let receipt = self
            .provider
            .get_transaction_receipt(tx)
            .await
            .map_err(|e| Refusal::Rpc(self.scrub(format!("eth_getTransactionReceipt failed: {e}"))))?
            .ok_or_else(|| {
                Refusal::BadTransaction(format!("transaction {tx} not found (not mined, or another chain)"))
            })?;
        if !receipt.status() {
            return Err(Refusal::BadTransaction(format!("transaction {tx} reverted")));
        }
        if receipt.to != Some(app) {
            let to = receipt.to.map_or_else(|| "a contract creation".to_owned(), |to| to.to_string());
            return Err(Refusal::BadTransaction(format!(
                "transaction {tx} was sent to {to}, not to the app contract {app}"
            )));
        }
        if !registers_compose_hash(&receipt, app, hash) {
            return Err(Refusal::BadTransaction(format!(
                "transaction {tx} has no ComposeHashAdded({hash}) log from the app contract {app}"
            )));
        }
        Ok(())
    }
}
