//! [`OnchainRegistrar`]: registers a compose hash on the app contract from a key.

use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TxSigner};
use alloy::primitives::{Address, B256, Signature, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionReceipt};

use super::contract::{AppAuth, COMPOSE_HASH_ADDED_TOPIC};
use crate::hex::{ComposeHash, TransactionHash};
use crate::two_phase::{ComposeHashRegistrar, FlowEvent, Progress};
use crate::update_envs::Phase1Data;

/// The balance the official client asks for before registering: 0.001 ETH.
pub const DEFAULT_MIN_BALANCE_WEI: u128 = 1_000_000_000_000_000;

/// Why a compose hash could not be registered. Never holds the private key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnchainError {
    /// Phase 1's `kms_info` names no chain, so the RPC's chain cannot be checked.
    #[error("phase 1 named no chain (kms_info.chain_id is missing): cannot check that the RPC is on the app's chain")]
    UnknownChain,
    /// The RPC endpoint is on another chain than the app's KMS.
    #[error(
        "the RPC endpoint is on chain {rpc}, but the app's KMS is on chain {expected}; give an RPC URL of chain {expected}"
    )]
    WrongChain {
        /// The RPC's chain id.
        rpc: u64,
        /// `kms_info.chain_id`.
        expected: u64,
    },
    /// The signer does not own the app contract, so `addComposeHash` would revert.
    #[error("{signer} is not the owner of app contract {app} (its owner is {owner}); sign with the owner's key")]
    NotOwner {
        /// The app contract.
        app: Address,
        /// Its `owner()`.
        owner: Address,
        /// The signer's address.
        signer: Address,
    },
    /// The signer cannot pay for the transaction.
    #[error("{address} holds {balance} wei, less than the {minimum} wei required to register; fund it on this chain")]
    InsufficientBalance {
        /// The signer's address.
        address: Address,
        /// Its balance.
        balance: U256,
        /// The minimum asked for.
        minimum: U256,
    },
    /// The registration transaction was mined but reverted.
    #[error("registration transaction {transaction_hash} reverted")]
    Reverted {
        /// The transaction.
        transaction_hash: TransactionHash,
    },
    /// The registration transaction succeeded without emitting `ComposeHashAdded` for the hash.
    #[error("transaction {transaction_hash} succeeded but emitted no ComposeHashAdded({compose_hash}) from {app}")]
    NoEvent {
        /// The transaction.
        transaction_hash: TransactionHash,
        /// The hash.
        compose_hash: ComposeHash,
        /// The app contract.
        app: Address,
    },
    /// The transaction was not confirmed in time. It may still be mined: running again finds it
    /// instead of sending another.
    #[error("transaction {transaction_hash} was not confirmed within {waited:?}; run again to pick it up once mined")]
    Timeout {
        /// The transaction.
        transaction_hash: TransactionHash,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The signer still has transactions in the mempool after the timeout: one may be a
    /// registration sent by an earlier run, so sending another could pay twice.
    #[error(
        "{address} still has {count} transaction(s) waiting in the mempool after {waited:?}; one may register this hash: wait for them to be mined (or replace them), then run again"
    )]
    PendingTransactions {
        /// The signer's address.
        address: Address,
        /// Transactions sent but not mined.
        count: u64,
        /// How long they were waited for.
        waited: Duration,
    },
    /// The hash is allowed, but no `ComposeHashAdded` log for it was found.
    #[error(
        "compose hash {compose_hash} is already allowed on {app}, but no ComposeHashAdded log for it is in the last {searched_blocks} blocks; pass the registering transaction by hand"
    )]
    RegistrationNotFound {
        /// The hash.
        compose_hash: ComposeHash,
        /// The app contract.
        app: Address,
        /// Blocks searched back from the latest.
        searched_blocks: u64,
    },
    /// The chain could not be asked, or the transaction not sent.
    #[error("{step} failed")]
    Rpc {
        /// The JSON-RPC step, e.g. `eth_chainId`.
        step: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The text of an RPC failure, with the RPC URL cut to its origin (a key may be in its path).
#[derive(Debug)]
struct RpcFailure(String);

impl std::fmt::Display for RpcFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RpcFailure {}

impl OnchainError {
    /// The registration transaction, when one was sent before the failure: run again (or pass
    /// it to phase 2 by hand) rather than sending another.
    pub fn transaction_hash(&self) -> Option<TransactionHash> {
        match self {
            Self::Reverted { transaction_hash } | Self::Timeout { transaction_hash, .. } => Some(*transaction_hash),
            Self::NoEvent { transaction_hash, .. } => Some(*transaction_hash),
            _ => None,
        }
    }

    /// The chain could not be reached or answered with an error.
    pub fn is_rpc(&self) -> bool {
        matches!(self, Self::Rpc { .. })
    }
}

/// Registers compose hashes by sending `addComposeHash` from a signer, with the checks the
/// official client makes and more: chain id, ownership and balance before sending, and the
/// receipt's `ComposeHashAdded` log after. A hash that is already allowed is not registered
/// again: the transaction that registered it is found in the contract's logs.
pub struct OnchainRegistrar {
    provider: DynProvider,
    rpc_url: url::Url,
    signer: Address,
    min_balance: U256,
    confirmations: u64,
    timeout: Duration,
    poll_interval: Duration,
    log_block_range: u64,
    log_lookback: u64,
}

impl std::fmt::Debug for OnchainRegistrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnchainRegistrar")
            .field("signer", &self.signer)
            .field("min_balance", &self.min_balance)
            .field("confirmations", &self.confirmations)
            .field("timeout", &self.timeout)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl OnchainRegistrar {
    /// From any alloy signer (a local key, a hardware wallet, a KMS-backed signer) and the
    /// JSON-RPC URL of the app's chain.
    pub fn new<S>(signer: S, rpc_url: url::Url) -> Result<Self, crate::ConfigError>
    where
        S: TxSigner<Signature> + Send + Sync + 'static,
    {
        let address = signer.address();
        let http = crate::client::http_client()?;
        // Nonces are asked of the chain for every transaction: alloy's default cache counts a
        // nonce as used even when sending fails, and would leave the next registration stuck
        // behind a gap; it also goes stale when the key signs elsewhere between runs.
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(EthereumWallet::new(signer))
            .connect_reqwest(http, rpc_url.clone())
            .erased();
        Ok(Self {
            provider,
            rpc_url,
            signer: address,
            min_balance: U256::from(DEFAULT_MIN_BALANCE_WEI),
            confirmations: 1,
            timeout: Duration::from_secs(120),
            poll_interval: Duration::from_millis(100),
            log_block_range: 10_000,
            log_lookback: 500_000,
        })
    }

    /// From a private key as 64 hex digits (`0x` optional). The error never shows the key.
    pub fn from_private_key(private_key: &str, rpc_url: url::Url) -> Result<Self, crate::ConfigError> {
        Self::new(super::signer_from_hex(private_key)?, rpc_url)
    }

    /// The signer's address.
    pub fn address(&self) -> Address {
        self.signer
    }

    /// The least balance (wei) the signer must hold before sending (default 0.001 ETH).
    pub fn min_balance(mut self, wei: U256) -> Self {
        self.min_balance = wei;
        self
    }

    /// Blocks that must include and follow the transaction (default 1: mined).
    pub fn confirmations(mut self, confirmations: u64) -> Self {
        self.confirmations = confirmations.max(1);
        self
    }

    /// How long to wait for the confirmations (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often to ask for the receipt (default 100 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How far back (blocks) to look for the transaction of an already allowed hash, and how
    /// many blocks one `eth_getLogs` asks for (defaults 500 000 and 10 000).
    pub fn log_search(mut self, lookback: u64, range: u64) -> Self {
        self.log_lookback = lookback;
        self.log_block_range = range.max(1);
        self
    }

    /// Maps an RPC failure of `step` to [`OnchainError::Rpc`], without the RPC URL's path.
    fn rpc<E: std::fmt::Display>(&self, step: &'static str) -> impl FnOnce(E) -> OnchainError + '_ {
        move |e| OnchainError::Rpc {
            step,
            source: Box::new(RpcFailure(super::scrub_url(&e.to_string(), &self.rpc_url))),
        }
    }

    /// Sends `addComposeHash` after the checks, and waits for a receipt that proves it.
    async fn send_registration(
        &self,
        app: Address,
        hash: B256,
        progress: &Progress<'_>,
    ) -> Result<TransactionHash, OnchainError> {
        let contract = AppAuth::new(app, &self.provider);
        let owner = contract.owner().call().await.map_err(self.rpc("owner()"))?;
        if owner != self.signer {
            return Err(OnchainError::NotOwner { app, owner, signer: self.signer });
        }
        let balance = self.provider.get_balance(self.signer).await.map_err(self.rpc("eth_getBalance"))?;
        if balance < self.min_balance {
            return Err(OnchainError::InsufficientBalance { address: self.signer, balance, minimum: self.min_balance });
        }
        let pending = contract.addComposeHash(hash).send().await.map_err(self.rpc("sending addComposeHash"))?;
        let transaction_hash = TransactionHash::from(*pending.tx_hash());
        tracing::info!(%transaction_hash, "addComposeHash sent");
        progress.emit(FlowEvent::TransactionSent { transaction_hash });

        let receipt = self.wait_for_receipt(*pending.tx_hash()).await?;
        if !receipt.status() {
            return Err(OnchainError::Reverted { transaction_hash });
        }
        if !super::contract::registers_compose_hash(&receipt, app, hash) {
            return Err(OnchainError::NoEvent { transaction_hash, compose_hash: hash.into(), app });
        }
        let block_number = receipt.block_number.unwrap_or_default();
        tracing::info!(%transaction_hash, block_number, "addComposeHash confirmed");
        progress.emit(FlowEvent::TransactionConfirmed { transaction_hash, block_number });
        Ok(transaction_hash)
    }

    /// Polls for the receipt every `poll_interval` until it has `confirmations`, or times out.
    /// An RPC error while waiting (a rate limit, a dropped connection) is logged and polled
    /// past: the transaction is out, and only the timeout gives up on it.
    async fn wait_for_receipt(&self, tx: B256) -> Result<TransactionReceipt, OnchainError> {
        let started = Instant::now();
        loop {
            match self.receipt_with_confirmations(tx).await {
                Ok(Some(receipt)) => return Ok(receipt),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(transaction_hash = %tx, error = %e, "polling for the receipt failed; polling on")
                }
            }
            if started.elapsed() >= self.timeout {
                return Err(OnchainError::Timeout { transaction_hash: tx.into(), waited: started.elapsed() });
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// The receipt, once it has `confirmations`.
    async fn receipt_with_confirmations(&self, tx: B256) -> Result<Option<TransactionReceipt>, OnchainError> {
        let Some(receipt) =
            self.provider.get_transaction_receipt(tx).await.map_err(self.rpc("eth_getTransactionReceipt"))?
        else {
            return Ok(None);
        };
        if self.confirmations <= 1 {
            return Ok(Some(receipt));
        }
        let mined_in = receipt.block_number.unwrap_or_default();
        let latest = self.provider.get_block_number().await.map_err(self.rpc("eth_blockNumber"))?;
        Ok((latest + 1 >= mined_in + self.confirmations).then_some(receipt))
    }

    /// The latest transaction whose `ComposeHashAdded` log from `app` carries `hash`, searching
    /// back from the latest block in ranges of `log_block_range`.
    async fn find_registration(&self, app: Address, hash: B256) -> Result<TransactionHash, OnchainError> {
        let latest = self.provider.get_block_number().await.map_err(self.rpc("eth_blockNumber"))?;
        let oldest = latest.saturating_sub(self.log_lookback);
        let mut to = latest;
        loop {
            let from = to.saturating_sub(self.log_block_range - 1).max(oldest);
            let filter =
                Filter::new().address(app).event_signature(COMPOSE_HASH_ADDED_TOPIC).from_block(from).to_block(to);
            let logs = self.provider.get_logs(&filter).await.map_err(self.rpc("eth_getLogs"))?;
            let found = logs.iter().rev().find(|log| log.data().data.as_ref() == hash.as_slice());
            if let Some(tx) = found.and_then(|log| log.transaction_hash) {
                return Ok(tx.into());
            }
            if from <= oldest {
                return Err(OnchainError::RegistrationNotFound {
                    compose_hash: hash.into(),
                    app,
                    searched_blocks: latest - oldest + 1,
                });
            }
            to = from - 1;
        }
    }

    /// Waits while the signer has transactions in the mempool (a registration sent by a run
    /// that died before it was mined), so that it is found rather than sent twice. Still there
    /// after the timeout, they are an error: sending now could pay twice.
    async fn wait_for_own_pending(&self) -> Result<(), OnchainError> {
        let started = Instant::now();
        loop {
            let pending = self.provider.get_transaction_count(self.signer).pending();
            let latest = self.provider.get_transaction_count(self.signer).latest();
            let pending = pending.await.map_err(self.rpc("eth_getTransactionCount"))?;
            let latest = latest.await.map_err(self.rpc("eth_getTransactionCount"))?;
            if pending <= latest {
                return Ok(());
            }
            if started.elapsed() >= self.timeout {
                return Err(OnchainError::PendingTransactions {
                    address: self.signer,
                    count: pending - latest,
                    waited: started.elapsed(),
                });
            }
            tracing::info!(pending = pending - latest, "the signer has transactions in the mempool; waiting for them");
            tokio::time::sleep(self.poll_interval).await;
        }
    }
}

impl ComposeHashRegistrar for OnchainRegistrar {
    type Error = OnchainError;

    /// Checks the chain id against `kms_info.chain_id`; if the hash is already allowed, returns
    /// the transaction that registered it (sending nothing); else checks ownership and balance,
    /// sends `addComposeHash` and waits for a receipt carrying `ComposeHashAdded(hash)`.
    async fn register(&self, data: &Phase1Data, progress: &Progress<'_>) -> Result<TransactionHash, OnchainError> {
        let expected = data.chain_id().ok_or(OnchainError::UnknownChain)?;
        let rpc_chain = self.provider.get_chain_id().await.map_err(self.rpc("eth_chainId"))?;
        if rpc_chain != expected {
            return Err(OnchainError::WrongChain { rpc: rpc_chain, expected });
        }
        let app = Address::from(data.app_id);
        let hash = B256::from(data.compose_hash);
        self.wait_for_own_pending().await?;
        let allowed = AppAuth::new(app, &self.provider)
            .allowedComposeHashes(hash)
            .call()
            .await
            .map_err(self.rpc("allowedComposeHashes()"))?;
        if allowed {
            let transaction_hash = self.find_registration(app, hash).await?;
            tracing::info!(%transaction_hash, "compose hash already registered; sending nothing");
            progress.emit(FlowEvent::AlreadyRegistered { transaction_hash });
            return Ok(transaction_hash);
        }
        self.send_registration(app, hash, progress).await
    }
}
