//! What the simulator asks the chain: is a compose hash allowed on an app contract, and does a
//! transaction prove that it was registered there.

use alloy::eips::BlockId;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};

use crate::onchain::contract::{AppAuth, registers_compose_hash};

/// Why phase 2 is refused on-chain. Its `Display` is the reply's message (the simulator
/// scrubs the RPC URL from it before sending).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// 468: `allowedComposeHashes(hash)` is false on the app contract.
    #[error("compose hash {hash} is not in allowedComposeHashes of app contract {app}")]
    NotAllowed { app: Address, hash: B256 },
    /// 468: the app contract did not answer `allowedComposeHashes`.
    #[error("app contract {app} did not answer allowedComposeHashes ({source}); is it deployed on this chain?")]
    NoAppContract { app: Address, source: alloy::contract::Error },
    /// 467: the transaction is mined after the verifier's view of the chain.
    #[error(
        "transaction {tx} not found: the verifier sees the chain up to block {view}, and it is in {}",
        .mined.map_or_else(|| "a pending block".to_owned(), |b| format!("block {b}"))
    )]
    NotInView { tx: B256, view: u64, mined: Option<u64> },
    /// 467: no receipt.
    #[error("transaction {tx} not found (not mined, or another chain)")]
    NotFound { tx: B256 },
    /// 467: the transaction reverted.
    #[error("transaction {tx} reverted")]
    Reverted { tx: B256 },
    /// 467: no `ComposeHashAdded(hash)` from the app contract in it.
    #[error("{}", no_event_message(*.tx, *.to, *.app, *.hash))]
    NoEvent { tx: B256, to: Option<Address>, app: Address, hash: B256 },
    /// 500: the chain could not be asked.
    #[error("{step} failed: {source}")]
    Rpc { step: &'static str, source: alloy::transports::TransportError },
}

/// What a [`Refusal`] tells the client.
pub(crate) enum Verdict {
    /// 468: register the hash on the app contract.
    NotAllowed,
    /// 467: the transaction does not prove the registration.
    BadTransaction,
    /// 500: the chain could not be asked.
    ChainUnreachable,
}

impl Refusal {
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            Self::NotAllowed { .. } | Self::NoAppContract { .. } => Verdict::NotAllowed,
            Self::NotInView { .. } | Self::NotFound { .. } | Self::Reverted { .. } | Self::NoEvent { .. } => {
                Verdict::BadTransaction
            }
            Self::Rpc { .. } => Verdict::ChainUnreachable,
        }
    }
}

fn no_event_message(tx: B256, to: Option<Address>, app: Address, hash: B256) -> String {
    match to {
        Some(to) if to == app => {
            format!("transaction {tx} has no ComposeHashAdded({hash}) log from the app contract {app}")
        }
        to => {
            let to = to.map_or_else(|| "a contract creation".to_owned(), |to| to.to_string());
            format!(
                "transaction {tx} was sent to {to}, not to the app contract {app}, and no call in it emitted ComposeHashAdded({hash}) from the app contract"
            )
        }
    }
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
    /// A refusal's text as a reply may carry it: without the RPC URL.
    pub(crate) fn message(&self, refusal: &Refusal) -> String {
        crate::onchain::scrub_url(&refusal.to_string(), &self.rpc_url)
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
            .map_err(|source| Refusal::Rpc { step: "eth_getTransactionReceipt", source })?;
        let view = if self.lag == 0 {
            BlockId::latest()
        } else {
            let latest = self
                .provider
                .get_block_number()
                .await
                .map_err(|source| Refusal::Rpc { step: "eth_blockNumber", source })?;
            let view = latest.saturating_sub(self.lag);
            if let Some(receipt) = &receipt {
                match receipt.block_number {
                    Some(block) if block <= view => {}
                    mined => return Err(Refusal::NotInView { tx, view, mined }),
                }
            }
            BlockId::number(view)
        };
        let contract = AppAuth::new(app, &self.provider);
        match contract.allowedComposeHashes(hash).block(view).call().await {
            Ok(true) => {}
            Ok(false) => return Err(Refusal::NotAllowed { app, hash }),
            Err(alloy::contract::Error::TransportError(source)) => {
                return Err(Refusal::Rpc { step: "eth_call allowedComposeHashes", source });
            }
            Err(source) => return Err(Refusal::NoAppContract { app, source }),
        }
        let receipt = receipt.ok_or(Refusal::NotFound { tx })?;
        if !receipt.status() {
            return Err(Refusal::Reverted { tx });
        }
        if !registers_compose_hash(&receipt, app, hash) {
            return Err(Refusal::NoEvent { tx, to: receipt.to, app, hash });
        }
        Ok(())
    }
}
