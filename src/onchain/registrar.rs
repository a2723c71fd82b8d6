//! [`OnchainRegistrar`]: registers a compose hash on the app contract from a key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::network::eip2718::Encodable2718;
use alloy::network::{Ethereum, EthereumWallet, NetworkTransactionBuilder, TransactionBuilder, TxSigner};
use alloy::primitives::{Address, B256, Signature, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log, TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolCall;
use alloy::transports::{RpcError, TransportErrorKind};

use super::confirm::{ConfirmHook, DeclineReason, PlannedRegistration};
use super::contract::{AppAuth, COMPOSE_HASH_ADDED_TOPIC, RegistrationCall};
use super::transport::{HttpFailure, RpcTransport, http_failure};
use crate::hex::{AppId, ComposeHash, TransactionHash};
use crate::two_phase::{ComposeHashRegistrar, FlowEvent, Progress};
use crate::update_envs::Phase1Data;

/// The balance the official client asks for before registering: 0.001 ETH.
pub const DEFAULT_MIN_BALANCE_WEI: u128 = 1_000_000_000_000_000;

/// The most gas a registration may take unless [`OnchainRegistrar::gas_limit_cap`] says
/// otherwise: `addComposeHash` takes about 50 000.
pub const DEFAULT_GAS_LIMIT_CAP: u64 = 150_000;

/// The highest max fee per gas signed unless [`OnchainRegistrar::max_fee_per_gas`] says
/// otherwise: 50 gwei, far above Base's usual base fee and Ethereum's calm one (a registration
/// then costs at most 150 000 × 50 gwei = 0.0075 ETH).
pub const DEFAULT_MAX_FEE_PER_GAS_WEI: u128 = 50_000_000_000;

/// How long connecting to the RPC endpoint may take (the default HTTP client's setting).
pub const DEFAULT_RPC_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one RPC request may take, connecting included, unless
/// [`OnchainRegistrar::rpc_request_timeout`] says otherwise.
pub const DEFAULT_RPC_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest RPC reply read unless [`OnchainRegistrar::max_rpc_reply_bytes`] says otherwise.
pub const DEFAULT_MAX_RPC_REPLY_BYTES: usize = 16 << 20;

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
    /// `eth_estimateGas` asked for more gas than the cap ([`OnchainRegistrar::gas_limit_cap`]):
    /// nothing was signed.
    #[error(
        "registering would take an estimated {estimate} gas, above the cap of {cap} gas (addComposeHash takes about 50 000); nothing was sent: check the app contract, or raise the cap"
    )]
    GasLimitTooHigh {
        /// The node's estimate.
        estimate: u64,
        /// The cap.
        cap: u64,
    },
    /// The chain's base fee is above the max-fee-per-gas cap ([`OnchainRegistrar::max_fee_per_gas`]):
    /// nothing was signed.
    #[error(
        "the next block's base fee is {base_fee} wei per gas, above the cap of {cap} wei per gas; nothing was sent: wait for fees to fall, or raise the cap"
    )]
    FeeTooHigh {
        /// The base fee per gas of the next block, as `eth_feeHistory` gives it.
        base_fee: u128,
        /// The cap.
        cap: u128,
    },
    /// The confirmation hook ([`OnchainRegistrar::confirm_before_signing`]) declined the
    /// planned transaction: nothing was signed or sent.
    #[error("signing was not confirmed, so nothing was signed or sent")]
    NotConfirmed {
        /// The hook's reason (its own error type: downcast it to tell its cases apart).
        #[source]
        reason: DeclineReason,
    },
    /// The signer would not sign the transaction (a hardware wallet refused, a remote signer
    /// was unreachable). Nothing was sent.
    #[error("signing the registration transaction failed")]
    Signing {
        /// The signer's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Sending the signed transaction failed. Its hash is known: when `maybe_sent`, the node may
    /// have taken it, so look for it (running again finds it) before sending another.
    #[error("sending transaction {transaction_hash} failed ({})", if *.maybe_sent { "it may have reached the chain: run again to pick it up once mined" } else { "the node refused it" })]
    SendFailed {
        /// The signed transaction's hash.
        transaction_hash: TransactionHash,
        /// The node gave no answer (a timeout, a dropped connection), as opposed to refusing it.
        maybe_sent: bool,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An RPC call got no reply within the request timeout ([`OnchainRegistrar::rpc_request_timeout`]).
    #[error("{step}: the RPC endpoint gave no reply within {timeout:?}")]
    RpcTimeout {
        /// The JSON-RPC step, e.g. `eth_getLogs`.
        step: &'static str,
        /// The request timeout.
        timeout: Duration,
    },
    /// An RPC reply was longer than the cap ([`OnchainRegistrar::max_rpc_reply_bytes`]); it was
    /// not read to its end.
    #[error("{step}: the RPC reply is longer than {limit} bytes")]
    ReplyTooLarge {
        /// The JSON-RPC step.
        step: &'static str,
        /// The cap, in bytes.
        limit: usize,
    },
    /// Another process holds the signer's lock file ([`OnchainRegistrar::lock_dir`]) for longer
    /// than the timeout: it is registering with this key on this chain.
    #[error("another process has held {} for {waited:?} (it is registering with this key); wait for it, then run again", path.display())]
    LockBusy {
        /// The lock file.
        path: std::path::PathBuf,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The signer's lock file could not be created or locked.
    #[error("cannot lock {}", path.display())]
    Lock {
        /// The lock file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The KMS contract phase 1 names does not vouch for the app (not registered with it, not
    /// a KMS contract, or not readable): nothing was signed.
    #[error(transparent)]
    Kms(#[from] super::kms::KmsCheckError),
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

impl OnchainError {
    /// The registration transaction, when one was sent before the failure: run again (or pass
    /// it to phase 2 by hand) rather than sending another.
    pub fn transaction_hash(&self) -> Option<TransactionHash> {
        match self {
            Self::Reverted { transaction_hash } | Self::Timeout { transaction_hash, .. } => Some(*transaction_hash),
            Self::NoEvent { transaction_hash, .. } | Self::SendFailed { transaction_hash, .. } => {
                Some(*transaction_hash)
            }
            _ => None,
        }
    }

    /// The chain could not be reached or answered with an error (a refused transaction
    /// included).
    pub fn is_rpc(&self) -> bool {
        match self {
            Self::Kms(e) => e.is_rpc(),
            e => matches!(
                e,
                Self::Rpc { .. } | Self::RpcTimeout { .. } | Self::ReplyTooLarge { .. } | Self::SendFailed { .. }
            ),
        }
    }
}

/// Registers compose hashes by sending `addComposeHash` from a signer, with the checks the
/// official client makes and more: chain id, ownership and balance before sending, and the
/// receipt's `ComposeHashAdded` log after. A hash that is already allowed is not registered
/// again: the transaction that registered it is found in the contract's logs.
///
/// # Never paying twice
///
/// For one signer on one chain, registrations take turns from the allow-list check to the
/// receipt: process-wide (every `OnchainRegistrar` of this process, shared or not), and across
/// processes when [`OnchainRegistrar::lock_dir`] is set. Besides, the transaction is sent with
/// the nonce the signer had at the block the allow-list was read at, once the signer's pending
/// transactions are mined: two runs that do not share a lock and both read "not allowed" send
/// on one nonce, and only one of them can be mined.
///
/// # Bounded
///
/// Every RPC call has a request timeout and a cap on its reply; the transaction is signed here
/// (never by the node), with a capped gas limit and a capped max fee per gas, and its hash is
/// known before it is sent. The RPC URL is in no log line and no error (providers put API
/// keys in its path).
pub struct OnchainRegistrar {
    provider: DynProvider,
    transport: RpcTransport,
    wallet: EthereumWallet,
    signer: Address,
    min_balance: U256,
    confirmations: u64,
    timeout: Duration,
    poll_interval: Duration,
    log_block_range: u64,
    log_lookback: u64,
    gas_limit_cap: u64,
    max_fee_per_gas: u128,
    lock_dir: Option<PathBuf>,
    confirm: Option<ConfirmHook>,
}

impl std::fmt::Debug for OnchainRegistrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnchainRegistrar")
            .field("signer", &self.signer)
            .field("rpc", &self.transport)
            .field("min_balance", &self.min_balance)
            .field("confirmations", &self.confirmations)
            .field("timeout", &self.timeout)
            .field("poll_interval", &self.poll_interval)
            .field("gas_limit_cap", &self.gas_limit_cap)
            .field("max_fee_per_gas", &self.max_fee_per_gas)
            .field("lock_dir", &self.lock_dir)
            .field("confirm_before_signing", &self.confirm.is_some())
            .finish_non_exhaustive()
    }
}

/// Each (chain id, signer)'s turn to register.
type Turns = HashMap<(u64, Address), Arc<tokio::sync::Mutex<()>>>;

/// One async mutex per (chain id, signer), shared by every registrar of the process.
fn signer_turn(chain_id: u64, signer: Address) -> Arc<tokio::sync::Mutex<()>> {
    static TURNS: OnceLock<std::sync::Mutex<Turns>> = OnceLock::new();
    let mut turns = TURNS.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    turns.entry((chain_id, signer)).or_default().clone()
}

/// What one attempt at sending came to.
enum Sent {
    /// Registered by this transaction.
    Registered(TransactionHash),
    /// Another transaction of the signer took the nonce first: look at the allow-list again.
    NonceTaken(OnchainError),
}

impl OnchainRegistrar {
    /// From any alloy signer (a local key, a hardware wallet, a KMS-backed signer) and the
    /// JSON-RPC URL of the app's chain.
    pub fn new<S>(signer: S, rpc_url: url::Url) -> Result<Self, super::SetupError>
    where
        S: TxSigner<Signature> + Send + Sync + 'static,
    {
        let address = signer.address();
        let transport = RpcTransport::default_for(&rpc_url)?;
        Ok(Self {
            provider: provider_over(&transport),
            transport,
            wallet: EthereumWallet::new(signer),
            signer: address,
            min_balance: U256::from(DEFAULT_MIN_BALANCE_WEI),
            confirmations: 1,
            timeout: Duration::from_secs(120),
            poll_interval: Duration::from_millis(100),
            log_block_range: 10_000,
            log_lookback: 500_000,
            gas_limit_cap: DEFAULT_GAS_LIMIT_CAP,
            max_fee_per_gas: DEFAULT_MAX_FEE_PER_GAS_WEI,
            lock_dir: None,
            confirm: None,
        })
    }

    /// From a private key as 64 hex digits (`0x` optional). The error never shows the key.
    pub fn from_private_key(private_key: &str, rpc_url: url::Url) -> Result<Self, super::SetupError> {
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

    /// How long to wait for the confirmations, for the signer's pending transactions and for
    /// the turn of this signer (default 120 s). It holds however long one RPC call hangs.
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
    /// many blocks one `eth_getLogs` asks for at first (defaults 500 000 and 10 000). A range
    /// the endpoint refuses is halved until it is answered.
    pub fn log_search(mut self, lookback: u64, range: u64) -> Self {
        self.log_lookback = lookback;
        self.log_block_range = range.max(1);
        self
    }

    /// The most gas the registration may take (default [`DEFAULT_GAS_LIMIT_CAP`]): a larger
    /// estimate is refused with [`OnchainError::GasLimitTooHigh`] before signing.
    pub fn gas_limit_cap(mut self, gas: u64) -> Self {
        self.gas_limit_cap = gas;
        self
    }

    /// The highest max fee per gas (wei) signed (default [`DEFAULT_MAX_FEE_PER_GAS_WEI`]): the
    /// transaction's max fee is at most this, and when the next block's base fee is above it
    /// nothing is signed ([`OnchainError::FeeTooHigh`]).
    pub fn max_fee_per_gas(mut self, wei: u128) -> Self {
        self.max_fee_per_gas = wei;
        self
    }

    /// How long one RPC request may take, connecting and reading the reply included (default
    /// [`DEFAULT_RPC_REQUEST_TIMEOUT`]); a request that takes longer fails with
    /// [`OnchainError::RpcTimeout`].
    pub fn rpc_request_timeout(mut self, timeout: Duration) -> Self {
        self.transport.set_request_timeout(timeout);
        self.provider = provider_over(&self.transport);
        self
    }

    /// The longest RPC reply read (default [`DEFAULT_MAX_RPC_REPLY_BYTES`]); a longer one fails
    /// with [`OnchainError::ReplyTooLarge`] without being read to its end.
    pub fn max_rpc_reply_bytes(mut self, bytes: usize) -> Self {
        self.transport.set_max_reply_bytes(bytes);
        self.provider = provider_over(&self.transport);
        self
    }

    /// The HTTP client for the RPC endpoint (its connect timeout, proxy, TLS roots), instead of
    /// one from [`crate::http_client_builder`] with a connect timeout of
    /// [`DEFAULT_RPC_CONNECT_TIMEOUT`]. The request timeout and the reply cap still apply.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.transport.set_client(client);
        self.provider = provider_over(&self.transport);
        self
    }

    /// Takes turns with other processes too: each registration holds an advisory lock on the
    /// file [`OnchainRegistrar::lock_path`] in `dir` (created if missing) from the allow-list
    /// check to the receipt, so that runs in several processes with one key on one chain never
    /// both send. Off by default (within one process, registrations take turns anyway).
    pub fn lock_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.lock_dir = Some(dir.into());
        self
    }

    /// Asks `confirm` before signing each transaction: it is given the
    /// [`PlannedRegistration`] (chain, app contract, compose hash, signer, nonce, gas, fees and
    /// so the cost) once the chain id, the app's KMS registration, ownership, balance, gas and
    /// fees have all been checked, and the transaction is signed only if it answers `Ok(())`.
    /// An `Err(reason)` signs and sends nothing: the registration fails with
    /// [`OnchainError::NotConfirmed`], `reason` as its source. No hook (the default) signs
    /// without asking.
    ///
    /// The hook is not asked when nothing is to be signed (the hash is already allowed: its
    /// registering transaction is found instead). It runs in this signer's turn, with the lock
    /// file held (see [`OnchainRegistrar::lock_dir`]): other registrations with this key wait
    /// for its answer. A hook that blocks (a prompt on a terminal) should run its blocking
    /// part with `tokio::task::spawn_blocking`.
    ///
    /// ```no_run
    /// # fn demo(registrar: phala_cloud::onchain::OnchainRegistrar) {
    /// use alloy::primitives::{U256, utils::format_ether};
    ///
    /// // An unattended job that may spend at most 0.001 ETH on a registration.
    /// let budget = U256::from(1_000_000_000_000_000u64);
    /// let registrar = registrar.confirm_before_signing(move |plan| async move {
    ///     if plan.max_cost_wei() <= budget {
    ///         Ok(())
    ///     } else {
    ///         Err(format!("it may cost {} ETH, above this job's budget", format_ether(plan.max_cost_wei())))
    ///     }
    /// });
    /// # let _ = registrar; }
    /// ```
    pub fn confirm_before_signing<F, Fut, E>(mut self, confirm: F) -> Self
    where
        F: Fn(PlannedRegistration) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: Into<DeclineReason>,
    {
        self.confirm = Some(super::confirm::hook(confirm));
        self
    }

    /// The lock file for this signer on chain `chain_id`, when [`OnchainRegistrar::lock_dir`]
    /// is set: `DIR/phala-cloud-<chain id>-<address in lowercase hex>.lock`.
    pub fn lock_path(&self, chain_id: u64) -> Option<PathBuf> {
        let dir = self.lock_dir.as_ref()?;
        Some(dir.join(format!("phala-cloud-{chain_id}-{}.lock", const_hex::encode(self.signer))))
    }

    /// Maps an RPC failure of `step` to a typed [`OnchainError`]: a timeout, a reply too long,
    /// else [`OnchainError::Rpc`] with alloy's error as the source (the transport keeps the RPC
    /// URL out of it).
    fn rpc<E>(&self, step: &'static str) -> impl FnOnce(E) -> OnchainError + '_
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |e| match http_failure(&e) {
            Some(HttpFailure::Timeout(timeout)) => OnchainError::RpcTimeout { step, timeout: *timeout },
            Some(HttpFailure::TooLarge { limit }) => OnchainError::ReplyTooLarge { step, limit: *limit },
            _ => OnchainError::Rpc { step, source: Box::new(e) },
        }
    }

    /// Refuses an app that the KMS contract of `kms_info` does not list in `registeredApps`:
    /// the server's 465 alone does not make an app this KMS's. Without a contract address (a
    /// server that omits it) there is nothing to ask; that is logged.
    async fn check_kms(&self, data: &Phase1Data) -> Result<(), OnchainError> {
        let kms = match data.kms_info.as_ref().map(super::kms::parse_address).transpose()?.flatten() {
            Some(kms) => kms,
            None => {
                tracing::warn!("phase 1 names no KMS contract: the app's registration with its KMS is not checked");
                return Ok(());
            }
        };
        super::kms::KmsContract::over(kms, self.provider.clone()).check_app(data.app_id).await?;
        tracing::debug!(%kms, "the app is registered with the KMS contract");
        Ok(())
    }

    /// Waits for the signer's lock file, polling until the timeout.
    async fn lock_file(&self, path: &Path, started: Instant) -> Result<std::fs::File, OnchainError> {
        let locking = |source| OnchainError::Lock { path: path.to_owned(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(locking)?;
        }
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(locking)?;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(locking(e)),
            }
            if started.elapsed() >= self.timeout {
                return Err(OnchainError::LockBusy { path: path.to_owned(), waited: started.elapsed() });
            }
            tracing::info!("another process is registering with this key; waiting for its lock");
            tokio::time::sleep(self.poll_interval.max(Duration::from_millis(50))).await;
        }
    }

    /// Checks ownership, balance, gas and fees, asks the confirmation hook (if any), signs
    /// `addComposeHash` with `nonce`, sends it and waits for a receipt that proves it.
    async fn send_registration(
        &self,
        chain_id: u64,
        app: Address,
        hash: B256,
        nonce: u64,
        progress: &Progress<'_>,
    ) -> Result<Sent, OnchainError> {
        let contract = AppAuth::new(app, &self.provider);
        let owner = contract.owner().call().await.map_err(self.rpc("owner()"))?;
        if owner != self.signer {
            return Err(OnchainError::NotOwner { app, owner, signer: self.signer });
        }
        let balance = self.provider.get_balance(self.signer).await.map_err(self.rpc("eth_getBalance"))?;
        if balance < self.min_balance {
            return Err(OnchainError::InsufficientBalance { address: self.signer, balance, minimum: self.min_balance });
        }
        let request = TransactionRequest::default()
            .with_from(self.signer)
            .with_to(app)
            .with_input(AppAuth::addComposeHashCall { composeHash: hash }.abi_encode())
            .with_nonce(nonce)
            .with_chain_id(chain_id);
        let estimate = self.provider.estimate_gas(request.clone()).await.map_err(self.rpc("eth_estimateGas"))?;
        if estimate > self.gas_limit_cap {
            return Err(OnchainError::GasLimitTooHigh { estimate, cap: self.gas_limit_cap });
        }
        let gas_limit = estimate.saturating_add(estimate / 5).min(self.gas_limit_cap);
        let (base_fee, max_fee, priority_fee) = self.fees().await?;
        if let Some(confirm) = &self.confirm {
            let app_id = AppId::from(app);
            let compose_hash = ComposeHash::from(hash);
            let plan = PlannedRegistration {
                chain_id,
                app_id,
                compose_hash,
                call: RegistrationCall::new(app_id, compose_hash),
                from: self.signer,
                nonce,
                balance,
                gas_estimate: estimate,
                gas_limit,
                base_fee_per_gas: base_fee,
                max_priority_fee_per_gas: priority_fee,
                max_fee_per_gas: max_fee,
            };
            tracing::info!(nonce, gas_limit, max_fee, "addComposeHash planned; asking for confirmation before signing");
            if let Err(reason) = confirm(plan).await {
                tracing::info!(%reason, "signing not confirmed; nothing signed");
                return Err(OnchainError::NotConfirmed { reason });
            }
        }
        let request =
            request.with_gas_limit(gas_limit).with_max_fee_per_gas(max_fee).with_max_priority_fee_per_gas(priority_fee);
        let envelope = <TransactionRequest as NetworkTransactionBuilder<Ethereum>>::build(request, &self.wallet)
            .await
            .map_err(|e| OnchainError::Signing { source: Box::new(e) })?;
        let tx = envelope.trie_hash();
        let transaction_hash = TransactionHash::from(tx);
        tracing::info!(%transaction_hash, nonce, gas_limit, max_fee, "addComposeHash signed; sending");
        match self.provider.send_raw_transaction(&envelope.encoded_2718()).await {
            Ok(_) => {}
            Err(e) if node_says(&e, &["already known", "already imported", "known transaction"]) => {
                tracing::info!(%transaction_hash, "the node already has this transaction");
            }
            Err(e) => {
                let nonce_taken = node_says(
                    &e,
                    &["nonce too low", "replacement transaction underpriced", "nonce has already been used"],
                );
                let maybe_sent = !matches!(e, RpcError::ErrorResp(_));
                let error = OnchainError::SendFailed { transaction_hash, maybe_sent, source: Box::new(e) };
                if nonce_taken {
                    tracing::info!(%transaction_hash, "another transaction of the signer took the nonce");
                    return Ok(Sent::NonceTaken(error));
                }
                return Err(error);
            }
        }
        tracing::info!(%transaction_hash, "addComposeHash sent");
        progress.emit(FlowEvent::TransactionSent { transaction_hash });

        let receipt = self.wait_for_receipt(tx).await?;
        if !receipt.status() {
            return Err(OnchainError::Reverted { transaction_hash });
        }
        if !super::contract::registers_compose_hash(&receipt, app, hash) {
            return Err(OnchainError::NoEvent { transaction_hash, compose_hash: hash.into(), app });
        }
        let block_number = receipt.block_number.unwrap_or_default();
        tracing::info!(%transaction_hash, block_number, "addComposeHash confirmed");
        progress.emit(FlowEvent::TransactionConfirmed { transaction_hash, block_number });
        Ok(Sent::Registered(transaction_hash))
    }

    /// The next block's base fee, and the max fee and the priority fee per gas to sign: the
    /// node's priority fee, and twice the base fee plus it, at most the cap; refused when the
    /// base fee is above the cap.
    async fn fees(&self) -> Result<(u128, u128, u128), OnchainError> {
        let history = self
            .provider
            .get_fee_history(1, BlockNumberOrTag::Latest, &[])
            .await
            .map_err(self.rpc("eth_feeHistory"))?;
        let base_fee = history.next_block_base_fee().or(history.latest_block_base_fee()).unwrap_or_default();
        if base_fee > self.max_fee_per_gas {
            return Err(OnchainError::FeeTooHigh { base_fee, cap: self.max_fee_per_gas });
        }
        let priority =
            self.provider.get_max_priority_fee_per_gas().await.map_err(self.rpc("eth_maxPriorityFeePerGas"))?;
        let max_fee = base_fee.saturating_mul(2).saturating_add(priority).min(self.max_fee_per_gas);
        Ok((base_fee, max_fee, priority.min(max_fee)))
    }

    /// Polls for the receipt every `poll_interval` until it has `confirmations`, or times out.
    /// An RPC error while waiting (a rate limit, a dropped connection) is logged and polled
    /// past: the transaction is out, and only the timeout gives up on it. The timeout holds
    /// however long one call hangs.
    async fn wait_for_receipt(&self, tx: B256) -> Result<TransactionReceipt, OnchainError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.receipt_with_confirmations(tx)).await {
                Ok(Ok(Some(receipt))) => return Ok(receipt),
                Ok(Ok(None)) | Err(_) => {}
                Ok(Err(e)) => {
                    tracing::warn!(transaction_hash = %tx, error = %e, "polling for the receipt failed; polling on")
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(OnchainError::Timeout { transaction_hash: tx.into(), waited: started.elapsed() });
            }
            tokio::time::sleep(self.poll_interval.min(left)).await;
        }
    }

    /// The receipt, once it is in a block and has `confirmations`. A receipt without a block
    /// number (some nodes answer one for a pending transaction) is not confirmed.
    async fn receipt_with_confirmations(&self, tx: B256) -> Result<Option<TransactionReceipt>, OnchainError> {
        let Some(receipt) =
            self.provider.get_transaction_receipt(tx).await.map_err(self.rpc("eth_getTransactionReceipt"))?
        else {
            return Ok(None);
        };
        let Some(mined_in) = receipt.block_number else {
            return Ok(None);
        };
        if self.confirmations <= 1 {
            return Ok(Some(receipt));
        }
        // A `latest` below the receipt's block (a load-balanced endpoint whose nodes lag) only
        // means waiting on.
        let latest = self.provider.get_block_number().await.map_err(self.rpc("eth_blockNumber"))?;
        Ok((latest.saturating_add(1) >= mined_in.saturating_add(self.confirmations)).then_some(receipt))
    }

    /// The latest transaction whose `ComposeHashAdded` log from `app` carries `hash`, searching
    /// back from the latest block in ranges of `log_block_range`, halved whenever the endpoint
    /// refuses a range. The newest range is open-ended (`latest` as the node answering it sees
    /// it), for endpoints whose `eth_blockNumber` lags behind their `eth_getLogs`.
    async fn find_registration(&self, app: Address, hash: B256) -> Result<TransactionHash, OnchainError> {
        let started = Instant::now();
        let latest = self.provider.get_block_number().await.map_err(self.rpc("eth_blockNumber"))?;
        let oldest = latest.saturating_sub(self.log_lookback);
        let mut range = self.log_block_range;
        let mut to = None; // None: up to `latest`, whatever block that is by now
        loop {
            let top = to.unwrap_or(latest);
            let from = top.saturating_sub(range - 1).max(oldest);
            let filter = Filter::new().address(app).event_signature(COMPOSE_HASH_ADDED_TOPIC).from_block(from);
            let filter = match to {
                None => filter.to_block(BlockNumberOrTag::Latest),
                Some(to) => filter.to_block(to),
            };
            let logs = match self.provider.get_logs(&filter).await {
                Ok(logs) => logs,
                Err(e) if range > 1 && is_range_refusal(&e) && started.elapsed() < self.timeout => {
                    range = (range / 2).max(1);
                    tracing::info!(range, error = %e, "eth_getLogs refused the block range; asking for a smaller one");
                    continue;
                }
                Err(e) => return Err(self.rpc("eth_getLogs")(e)),
            };
            let found = logs.iter().rev().find(|log| is_registration(log, app, hash));
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
            to = Some(from - 1);
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

    /// One look at the chain, under this signer's turn: once the signer has nothing pending,
    /// the allow-list and the signer's nonce at one block; the registering transaction if the
    /// hash is allowed, else a transaction with that nonce.
    async fn register_in_turn(
        &self,
        chain_id: u64,
        app: Address,
        hash: B256,
        progress: &Progress<'_>,
    ) -> Result<Sent, OnchainError> {
        self.wait_for_own_pending().await?;
        let block = self.provider.get_block_number().await.map_err(self.rpc("eth_blockNumber"))?;
        let at = BlockId::number(block);
        let nonce = self
            .provider
            .get_transaction_count(self.signer)
            .block_id(at)
            .await
            .map_err(self.rpc("eth_getTransactionCount"))?;
        let allowed = AppAuth::new(app, &self.provider)
            .allowedComposeHashes(hash)
            .block(at)
            .call()
            .await
            .map_err(self.rpc("allowedComposeHashes()"))?;
        if allowed {
            let transaction_hash = self.find_registration(app, hash).await?;
            tracing::info!(%transaction_hash, "compose hash already registered; sending nothing");
            progress.emit(FlowEvent::AlreadyRegistered { transaction_hash });
            return Ok(Sent::Registered(transaction_hash));
        }
        self.send_registration(chain_id, app, hash, nonce, progress).await
    }
}

/// A provider over the transport, with no fillers: the registrar fills and signs itself.
fn provider_over(transport: &RpcTransport) -> DynProvider {
    ProviderBuilder::new().disable_recommended_fillers().connect_client(transport.rpc_client()).erased()
}

/// Whether the node's JSON-RPC error message contains one of `needles` (case-insensitive).
fn node_says(error: &RpcError<TransportErrorKind>, needles: &[&str]) -> bool {
    let RpcError::ErrorResp(payload) = error else { return false };
    let message = payload.message.to_lowercase();
    needles.iter().any(|needle| message.contains(needle))
}

/// Whether `eth_getLogs` failed for its range rather than for the endpoint: a JSON-RPC error
/// (providers answer "query returned more than 10000 results", "block range too large", …),
/// an HTTP error status, a reply too long or too slow.
fn is_range_refusal(error: &RpcError<TransportErrorKind>) -> bool {
    if matches!(error, RpcError::ErrorResp(_)) {
        return true;
    }
    matches!(
        http_failure(error),
        Some(HttpFailure::TooLarge { .. } | HttpFailure::Timeout(_) | HttpFailure::Status { .. })
    )
}

/// Whether `log` is a live `ComposeHashAdded(hash)` emitted by `app`: endpoints are not trusted
/// to have filtered, and a log of a block that was reorganised away (`removed`) proves nothing.
fn is_registration(log: &Log, app: Address, hash: B256) -> bool {
    !log.removed
        && log.address() == app
        && log.topics().first() == Some(&COMPOSE_HASH_ADDED_TOPIC)
        && log.data().data.as_ref() == hash.as_slice()
}

impl ComposeHashRegistrar for OnchainRegistrar {
    type Error = OnchainError;

    /// Checks the chain id against `kms_info.chain_id` and, when `kms_info` names the KMS
    /// contract, that the app is registered with it (`registeredApps`); then, in this signer's turn (see
    /// [`OnchainRegistrar`]): if the hash is already allowed, returns the transaction that
    /// registered it (sending nothing); else checks ownership, balance, gas and fees,
    /// asks the confirmation hook if one is set ([`OnchainRegistrar::confirm_before_signing`]),
    /// signs and sends `addComposeHash` and waits for a receipt carrying `ComposeHashAdded(hash)`.
    async fn register(&self, data: &Phase1Data, progress: &Progress<'_>) -> Result<TransactionHash, OnchainError> {
        let expected = data.chain_id().ok_or(OnchainError::UnknownChain)?;
        let rpc_chain = self.provider.get_chain_id().await.map_err(self.rpc("eth_chainId"))?;
        if rpc_chain != expected {
            return Err(OnchainError::WrongChain { rpc: rpc_chain, expected });
        }
        self.check_kms(data).await?;
        let app = Address::from(data.app_id);
        let hash = B256::from(data.compose_hash);
        let started = Instant::now();
        let turn = signer_turn(rpc_chain, self.signer);
        let _turn = turn.lock().await;
        let _file = match self.lock_path(rpc_chain) {
            Some(path) => Some(self.lock_file(&path, started).await?),
            None => None,
        };
        // Another signer's transaction may take the nonce (a run without the lock); the
        // allow-list is then looked at again, a few times at most.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.register_in_turn(rpc_chain, app, hash, progress).await? {
                Sent::Registered(transaction_hash) => return Ok(transaction_hash),
                Sent::NonceTaken(error) if attempts >= 3 => return Err(error),
                Sent::NonceTaken(_) => {}
            }
        }
    }
}
