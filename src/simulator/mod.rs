//! A local Phala Cloud simulator of `PATCH /api/v1/cvms/{cvm_id}/envs` (feature `simulator`).
//!
//! It serves the endpoint over real HTTP (axum on tokio) with the statuses and envelopes of the
//! real service, and plays each CVM's side too: it holds the CVM's X25519 key, decrypts the
//! `encrypted_env`, applies the allowed env names as a CVM does and shows what the CVM now sees.
//! As the real server cannot decrypt an env, one the CVM cannot decrypt is accepted all the same
//! and recorded ([`Simulator::cvm_decrypt_error`]).
//! For a contract-owned KMS it runs the two phases: a change of `env_keys` answers 465 with a
//! compose hash, and phase 2 is checked against a real chain's JSON-RPC (the hash must be in the
//! app contract's `allowedComposeHashes`, else 468; the transaction must carry the app
//! contract's `ComposeHashAdded` log, whichever contract it was sent to, else 467; a lagging
//! verifier can be simulated with [`SimulatorConfig::verifier_lag`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use phala_cloud::simulator::{ChainConfig, Simulator, SimulatorConfig};
//!
//! let signer: alloy::signers::local::PrivateKeySigner = std::env::var("PRIVATE_KEY")?.parse()?;
//! let sim = Simulator::start(
//!     SimulatorConfig::default().chain(ChainConfig::new("http://127.0.0.1:8545".parse()?).deployer(signer)),
//! )
//! .await?;
//! let client = sim.client_builder().build()?;
//! println!("{} serves {} CVMs", sim.base_url(), sim.cvms().len());
//! # Ok(()) }
//! ```
//!
//! It also serves what a client reads to find a CVM's env-encryption key:
//! `GET /api/v1/cvms/{cvm_id}` (by id, hashed id, UUID, instance id or app id, in the shape the
//! request's `X-Phala-Version` asks for), `GET /api/v1/cvms` and `GET /api/v1/apps/{app_id}/cvms`
//! (the spec's filter by app), and the KMS's `GET /api/v1/kms/{kms_id}/pubkey/{app_id}`, signed
//! by the simulator's KMS key ([`Simulator::kms_public_key`], which the KMS contract records) in
//! the timestamped form, or in the legacy form or with a fault ([`KmsPubkeyReply`]).
//!
//! Without a chain ([`SimulatorConfig::chain`] not set) the simulator is in *offline mode*: it
//! cannot verify transactions, so phase 2 checks everything but the chain. That mode exists for
//! demos only; [`Simulator::verifies_chain`] says which mode runs.

pub mod anvil;
mod chain;
mod compose;
mod cvm_view;
mod http;
mod kms;
mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use serde::Serialize;
use serde_json::{Value, json};

pub use state::{Operation, Phase};

/// The CVM's side of env encryption: the simulator decrypts what it is sent with the CVM's
/// X25519 secret, and so can a test that plays the CVM.
pub use crate::envcrypt::{RecipientSecretKey, decrypt, decrypt_bytes};
/// The contracts a local chain needs (this repository's `contracts/`), and their deployers:
/// a real app's contract and KMS are deployed by dstack's tooling.
pub use crate::onchain::contract::{AppAuth, deploy_app_auth};
pub use crate::onchain::kms::{KmsAuth, deploy_kms_auth};

use crate::envcrypt::{EnvVars, RecipientPublicKey};
use crate::hex::AppId;
use crate::{Client, ClientBuilder};

/// The workspace the simulator's API key belongs to.
pub const DEFAULT_WORKSPACE: &str = "default";

/// How long a compose hash from phase 1 stays valid by default (the public docs say 7 days).
pub const DEFAULT_COMPOSE_HASH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Chain id reported in `kms_info` in offline mode, unless set: anvil's.
pub const OFFLINE_CHAIN_ID: u64 = 31337;

/// Who owns a CVM's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KmsKind {
    /// Phala's KMS: a change of allowed env names is accepted at once.
    Centralized,
    /// A contract-owned KMS: a change of allowed env names needs a compose hash registered on
    /// the app contract (two phases).
    Onchain,
}

/// How the simulated KMS answers `GET /api/v1/kms/{kms_id}/pubkey/{app_id}` for an app: as a
/// real KMS does (timestamped, the default; or the legacy form), or with a fault a client must
/// refuse. Each signature is made with the simulator's KMS key
/// ([`Simulator::kms_public_key`]), the key the KMS contract records, unless the fault says
/// otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KmsPubkeyReply {
    /// `{public_key, signature, timestamp}`, signed now.
    #[default]
    Timestamped,
    /// `{public_key, signature}`: the legacy message, without a timestamp.
    Legacy,
    /// Timestamped, with one bit of the signature's `s` flipped: it recovers to another key.
    TamperedSignature,
    /// Timestamped 10 minutes ago, outside the freshness window.
    StaleTimestamp,
    /// Timestamped, but signed for another app id than the one asked for.
    SignedForOtherApp,
    /// An impostor KMS: the key is signed by another key than the KMS contract's, and the API
    /// reports that other key as this CVM's `kms_info.k256_pubkey`. Checked against the key the
    /// API reports it verifies; only the on-chain key exposes it.
    ImpostorKms,
}

/// A CVM to seed the simulator with.
#[derive(Debug, Clone)]
#[must_use = "a CvmSpec does nothing until passed to the simulator"]
pub struct CvmSpec {
    id: String,
    kms: KmsKind,
    workspace: String,
    app_id: Option<AppId>,
    allowed_env_names: Vec<String>,
    secret: Option<RecipientSecretKey>,
    compose_file: String,
    kms_pubkey_reply: Option<KmsPubkeyReply>,
}

impl CvmSpec {
    fn new(id: impl Into<String>, kms: KmsKind) -> Self {
        Self {
            id: id.into(),
            kms,
            workspace: DEFAULT_WORKSPACE.into(),
            app_id: None,
            allowed_env_names: Vec::new(),
            secret: None,
            compose_file: "services:\n  app:\n    image: nginx:stable\n".into(),
            kms_pubkey_reply: None,
        }
    }

    /// A CVM with Phala's centralized KMS.
    pub fn centralized(id: impl Into<String>) -> Self {
        Self::new(id, KmsKind::Centralized)
    }

    /// A CVM with a contract-owned KMS. Its app contract is deployed at start when the chain
    /// has a deployer key, unless [`CvmSpec::app_id`] names one.
    pub fn onchain(id: impl Into<String>) -> Self {
        Self::new(id, KmsKind::Onchain)
    }

    /// An existing app contract for this CVM (contract-owned KMS).
    pub fn app_id(mut self, app_id: AppId) -> Self {
        self.app_id = Some(app_id);
        self
    }

    /// Owned by another workspace than the API key's: every request answers 403.
    pub fn workspace(mut self, workspace: impl Into<String>) -> Self {
        self.workspace = workspace.into();
        self
    }

    /// The allowed env names at start (none by default).
    pub fn allowed_env_names<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.allowed_env_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// How the KMS answers for this CVM's app's env-encryption key (default: the simulator's
    /// [`SimulatorConfig::kms_pubkey_reply`]). Contract-owned KMS only; the KMS answers for an
    /// app as it does for the app's first CVM (by id).
    pub fn kms_pubkey_reply(mut self, reply: KmsPubkeyReply) -> Self {
        self.kms_pubkey_reply = Some(reply);
        self
    }

    /// The CVM's X25519 key (a fresh one by default; a contract-owned CVM without one shares
    /// the key of an earlier CVM of its app, as the KMS derives one key per app).
    pub fn secret_key(mut self, secret: RecipientSecretKey) -> Self {
        self.secret = Some(secret);
        self
    }

    /// The docker compose file that goes into the compose hash.
    pub fn compose_file(mut self, compose_file: impl Into<String>) -> Self {
        self.compose_file = compose_file.into();
        self
    }
}

/// The chain phase 2 is verified against.
#[derive(Debug, Clone)]
#[must_use = "a ChainConfig does nothing until passed to the simulator"]
pub struct ChainConfig {
    rpc_url: url::Url,
    deployer: Option<PrivateKeySigner>,
}

impl ChainConfig {
    /// A chain's JSON-RPC endpoint. Its chain id is asked at start.
    pub fn new(rpc_url: url::Url) -> Self {
        Self { rpc_url, deployer: None }
    }

    /// The key that deploys an app contract for every contract-owned CVM without an
    /// [`CvmSpec::app_id`]; it becomes the contracts' owner.
    pub fn deployer(mut self, signer: PrivateKeySigner) -> Self {
        self.deployer = Some(signer);
        self
    }
}

/// How to start a [`Simulator`]. `Debug` does not show the API key.
#[derive(Clone)]
#[must_use = "a SimulatorConfig does nothing until passed to the simulator"]
pub struct SimulatorConfig {
    listen: SocketAddr,
    api_key: Option<String>,
    cvms: Vec<CvmSpec>,
    chain: Option<ChainConfig>,
    offline_chain_id: u64,
    compose_hash_ttl: Duration,
    operation_duration: Duration,
    verifier_lag: u64,
    kms_pubkey_reply: KmsPubkeyReply,
}

impl std::fmt::Debug for SimulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorConfig")
            .field("listen", &self.listen)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("cvms", &self.cvms)
            .field("chain", &self.chain)
            .field("offline_chain_id", &self.offline_chain_id)
            .field("compose_hash_ttl", &self.compose_hash_ttl)
            .field("operation_duration", &self.operation_duration)
            .field("verifier_lag", &self.verifier_lag)
            .field("kms_pubkey_reply", &self.kms_pubkey_reply)
            .finish()
    }
}

impl Default for SimulatorConfig {
    /// Loopback on a free port, a fresh API key, and three CVMs: `cvm-central` (centralized
    /// KMS), `cvm-onchain` (contract-owned KMS) and `cvm-foreign` (another workspace's).
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: None,
            cvms: vec![
                CvmSpec::centralized("cvm-central"),
                CvmSpec::onchain("cvm-onchain"),
                CvmSpec::centralized("cvm-foreign").workspace("another-workspace"),
            ],
            chain: None,
            offline_chain_id: OFFLINE_CHAIN_ID,
            compose_hash_ttl: DEFAULT_COMPOSE_HASH_TTL,
            operation_duration: Duration::ZERO,
            verifier_lag: 0,
            kms_pubkey_reply: KmsPubkeyReply::default(),
        }
    }
}

impl SimulatorConfig {
    /// The address to bind (default `127.0.0.1:0`, a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The API key to accept (a fresh random one by default).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The CVMs to serve, replacing the default set.
    pub fn cvms(mut self, cvms: impl IntoIterator<Item = CvmSpec>) -> Self {
        self.cvms = cvms.into_iter().collect();
        self
    }

    /// Verify phase 2 against this chain. Without it the simulator runs in offline mode.
    pub fn chain(mut self, chain: ChainConfig) -> Self {
        self.chain = Some(chain);
        self
    }

    /// The chain id `kms_info` reports in offline mode (default [`OFFLINE_CHAIN_ID`]).
    pub fn offline_chain_id(mut self, chain_id: u64) -> Self {
        self.offline_chain_id = chain_id;
        self
    }

    /// How long a compose hash from phase 1 stays valid (default [`DEFAULT_COMPOSE_HASH_TTL`]).
    pub fn compose_hash_ttl(mut self, ttl: Duration) -> Self {
        self.compose_hash_ttl = ttl;
        self
    }

    /// How long an accepted update keeps its CVM busy; requests meanwhile get 409 with
    /// `Retry-After` (default zero).
    pub fn operation_duration(mut self, duration: Duration) -> Self {
        self.operation_duration = duration;
        self
    }

    /// How many blocks the phase-2 verifier lags behind the chain's latest block (default 0),
    /// as a verifier reading a node or an indexer that is behind does: it sees the chain as of
    /// block `latest - blocks`, so a transaction mined in a later block gets 467 until that
    /// view includes it, and the allow-list is read at that block too.
    pub fn verifier_lag(mut self, blocks: u64) -> Self {
        self.verifier_lag = blocks;
        self
    }

    /// How the KMS answers for every app's env-encryption key, unless a CVM says otherwise
    /// ([`CvmSpec::kms_pubkey_reply`]); default [`KmsPubkeyReply::Timestamped`].
    pub fn kms_pubkey_reply(mut self, reply: KmsPubkeyReply) -> Self {
        self.kms_pubkey_reply = reply;
        self
    }
}

/// Why the simulator did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulatorError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The chain's RPC client could not be set up.
    #[error("chain: {0}")]
    ChainSetup(#[from] crate::onchain::SetupError),
    /// The chain could not be asked (`eth_chainId`). The RPC URL is not shown.
    #[error("chain: eth_chainId at {rpc} failed")]
    ChainUnreachable {
        /// The RPC URL, redacted (scheme, host and port).
        rpc: String,
        /// alloy's error, from the crate's transport, which keeps the URL out of it.
        #[source]
        source: alloy::transports::TransportError,
    },
    /// A contract the simulator needs could not be deployed.
    #[error("chain: deploying {what} failed")]
    Deploy {
        /// Which contract, e.g. `the app contract of cvm-1`.
        what: String,
        /// alloy's error.
        #[source]
        source: alloy::contract::Error,
    },
    /// Two CVMs have the same id.
    #[error("invalid simulator configuration: CVM id {0:?} is given twice")]
    DuplicateCvm(String),
    /// A CVM id the API could not carry in a path.
    #[error("invalid simulator configuration: {0}")]
    InvalidCvmId(#[source] crate::InputError),
    /// A contract-owned CVM with no app contract and no key to deploy one.
    #[error(
        "invalid simulator configuration: contract-owned CVM {0} needs an app contract: give it an app_id or give the chain a deployer key"
    )]
    NoAppContract(String),
    /// An allowed env name a CVM would not accept.
    #[error("invalid simulator configuration: {0:?} is not a valid env name")]
    InvalidEnvName(String),
    /// A CVM's X25519 secret could not be made (the system's randomness failed).
    #[error("cannot make a CVM's key: {0}")]
    Keys(#[source] crate::CryptError),
    /// The simulated KMS's key is not a usable secp256k1 key.
    #[error("cannot make the KMS key: {0}")]
    KmsKey(#[source] crate::KmsSignatureError),
}

/// A CVM the simulator serves, as a client needs to know it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimCvm {
    /// Its id, for the path (also its `name`).
    pub id: String,
    /// Its hashed id (`cvm_…`), which the API takes in a path too.
    pub hashed_id: String,
    /// Its VM's UUID, which the API takes in a path too.
    pub vm_uuid: String,
    /// Its instance id, which the API takes in a path too.
    pub instance_id: String,
    /// Who owns its keys.
    pub kms: KmsKind,
    /// Its workspace ([`DEFAULT_WORKSPACE`] is the API key's).
    pub workspace: String,
    /// The X25519 key to encrypt its env to.
    pub public_key: RecipientPublicKey,
    /// Its app contract, for a contract-owned KMS.
    pub app_id: Option<AppId>,
    /// The app id the API reports for it: `app_id`, or for a centralized KMS one that names
    /// no contract.
    pub api_app_id: AppId,
}

/// The chain a simulator verifies against.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ChainInfo {
    /// Its JSON-RPC endpoint, without its path (where a provider's key may be).
    pub rpc_url: String,
    /// Its chain id, as the endpoint reported it.
    pub chain_id: u64,
    /// The KMS contract the simulator deployed (with a deployer key): it records the KMS's key
    /// and registers every contract-owned CVM's app, and `kms_info` names it.
    pub kms_contract: Option<Address>,
}

/// State shared by the handlers and the [`Simulator`] handle.
pub(crate) struct Shared {
    api_key: String,
    cvms: Mutex<HashMap<String, state::Cvm>>,
    log: Mutex<Vec<Operation>>,
    chain: Option<chain::Chain>,
    /// A contract-owned CVM's `kms_info` (the spec's `KMSInfo`, with `k256_pubkey`).
    kms_info: Value,
    /// The KMS's signing key (the one its contract records), and an impostor's.
    kms_key: k256::ecdsa::SigningKey,
    impostor_key: k256::ecdsa::SigningKey,
    compose_hash_ttl: Duration,
    operation_duration: Duration,
}

/// A running simulator; it shuts down when dropped.
#[must_use = "the simulator shuts down when dropped; keep it for as long as it should serve"]
pub struct Simulator {
    base_url: String,
    cvms: Vec<SimCvm>,
    chain: Option<ChainInfo>,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("base_url", &self.base_url)
            .field("cvms", &self.cvms)
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Starts a simulator on the current tokio runtime: connects to the chain (if any), deploys
    /// the app contracts it needs, binds, and serves until dropped.
    pub async fn start(config: SimulatorConfig) -> Result<Self, SimulatorError> {
        let mut ids = std::collections::HashSet::new();
        if let Some(dup) = config.cvms.iter().find(|c| !ids.insert(c.id.as_str())) {
            return Err(SimulatorError::DuplicateCvm(dup.id.clone()));
        }
        for cvm in &config.cvms {
            crate::validate::check_cvm_id(&cvm.id).map_err(SimulatorError::InvalidCvmId)?;
        }

        let (chain, chain_info) = match &config.chain {
            None => (None, None),
            Some(cfg) => {
                let provider = crate::onchain::contract::read_provider(&cfg.rpc_url)?;
                let chain_id = provider.get_chain_id().await.map_err(|source| SimulatorError::ChainUnreachable {
                    rpc: crate::onchain::redact_url(&cfg.rpc_url),
                    source,
                })?;
                let info =
                    ChainInfo { rpc_url: crate::onchain::redact_url(&cfg.rpc_url), chain_id, kms_contract: None };
                (Some(chain::Chain { provider, rpc_url: cfg.rpc_url.clone(), lag: config.verifier_lag }), Some(info))
            }
        };

        let mut cvms = HashMap::new();
        let mut seeded = Vec::new();
        // One env-encryption key per app, as a KMS derives it: the first CVM's.
        let mut app_keys: HashMap<AppId, RecipientSecretKey> = HashMap::new();
        for spec in config.cvms {
            let app_id = match (spec.kms, spec.app_id, &config.chain) {
                (KmsKind::Centralized, _, _) => None,
                (KmsKind::Onchain, Some(app_id), _) => Some(app_id),
                (KmsKind::Onchain, None, None) => Some(AppId(random_bytes())),
                (KmsKind::Onchain, None, Some(ChainConfig { rpc_url, deployer: Some(signer) })) => {
                    let address = deploy_app_auth(rpc_url, signer.clone()).await.map_err(|source| {
                        SimulatorError::Deploy { what: format!("the app contract of {}", spec.id), source }
                    })?;
                    Some(AppId::from(address))
                }
                (KmsKind::Onchain, None, Some(ChainConfig { deployer: None, .. })) => {
                    return Err(SimulatorError::NoAppContract(spec.id));
                }
            };
            let secret = match (spec.secret, app_id.and_then(|a| app_keys.get(&a))) {
                (Some(secret), _) => secret,
                (None, Some(shared)) => shared.clone(),
                (None, None) => RecipientSecretKey::generate().map_err(SimulatorError::Keys)?,
            };
            if let Some(app) = app_id {
                app_keys.entry(app).or_insert_with(|| secret.clone());
            }
            let hashed_id = random_id("cvm");
            let vm_uuid = correlation_id();
            let instance_id = const_hex::encode(random_bytes::<20>());
            let device_id = random_bytes::<32>();
            let allowed = compose::normalize_names(spec.allowed_env_names);
            if let Some(bad) = allowed.iter().find(|n| !crate::validate::is_valid_env_key(n)) {
                return Err(SimulatorError::InvalidEnvName(bad.clone()));
            }
            let cvm = state::Cvm {
                kms: spec.kms,
                workspace: spec.workspace,
                app_id,
                hashed_id,
                vm_uuid,
                instance_id,
                kms_reply: spec.kms_pubkey_reply.unwrap_or(config.kms_pubkey_reply),
                device_id,
                compose_file: spec.compose_file,
                pre_launch_script: None,
                settings: serde_json::Map::new(),
                secret,
                allowed,
                env: EnvVars::new(),
                env_error: None,
                pending: HashMap::new(),
                busy_until: None,
            };
            seeded.push(SimCvm {
                id: spec.id.clone(),
                hashed_id: cvm.hashed_id.clone(),
                vm_uuid: cvm.vm_uuid.clone(),
                instance_id: cvm.instance_id.clone(),
                kms: spec.kms,
                workspace: cvm.workspace.clone(),
                public_key: cvm.secret.public_key(),
                app_id,
                api_app_id: cvm.api_app_id(),
            });
            cvms.insert(spec.id, cvm);
        }

        // A KMS contract that vouches for the apps, as a real KMS's does (with a deployer key:
        // without one, the apps are the caller's and so is their KMS).
        let kms_key = kms_signing_key();
        let kms_pubkey =
            crate::envcrypt::K256PublicKey::from_sec1_bytes(kms_key.verifying_key().to_sec1_point(true).as_bytes())
                .map_err(SimulatorError::KmsKey)?;
        let mut chain_info = chain_info;
        if let (Some(info), Some(ChainConfig { rpc_url, deployer: Some(signer) })) = (&mut chain_info, &config.chain) {
            let apps: Vec<AppId> = seeded.iter().filter_map(|c| c.app_id).collect();
            let kms = deploy_kms_auth(rpc_url, signer.clone(), &kms_pubkey, &apps)
                .await
                .map_err(|source| SimulatorError::Deploy { what: "the KMS contract".to_owned(), source })?;
            info.kms_contract = Some(kms);
        }
        let kms_contract = chain_info.as_ref().and_then(|c| c.kms_contract);

        let chain_id = chain_info.as_ref().map_or(config.offline_chain_id, |c| c.chain_id);
        let shared = Arc::new(Shared {
            api_key: config.api_key.unwrap_or_else(|| random_id("phak_sim")),
            cvms: Mutex::new(cvms),
            log: Mutex::new(Vec::new()),
            chain,
            kms_info: json!({
                "id": kms::ID,
                "slug": kms::SLUG,
                "url": "http://kms.simulator.invalid",
                "version": concat!("simulator-", env!("CARGO_PKG_VERSION")),
                "chain_id": chain_id,
                "kms_contract_address": kms_contract.map(|a| a.to_string().to_lowercase()),
                "k256_pubkey": kms_pubkey.to_hex(),
                "gateway_app_id": Address::from(random_bytes::<20>()).to_string().to_lowercase(),
            }),
            kms_key,
            impostor_key: kms_signing_key(),
            compose_hash_ttl: config.compose_hash_ttl,
            operation_duration: config.operation_duration,
        });

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimulatorError::Bind { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| SimulatorError::Bind { addr: config.listen, source })?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = http::router(shared.clone());
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = served.await {
                tracing::error!("simulator stopped: {e}");
            }
        });
        if chain_info.is_none() {
            tracing::warn!("simulator in offline mode: phase 2 is not verified against any chain");
        }
        Ok(Self {
            base_url: format!("http://{addr}"),
            cvms: seeded,
            chain: chain_info,
            shared,
            shutdown: Some(tx),
            task,
        })
    }

    /// The base URL to give a [`Client`] (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The API key the simulator accepts. A test value, but still not printed by `Debug`.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// A client builder aimed at this simulator with its API key.
    pub fn client_builder(&self) -> ClientBuilder {
        Client::builder().base_url(self.base_url.clone()).api_key(self.shared.api_key.clone())
    }

    /// The KMS's secp256k1 key: it signs every app's env-encryption key (unless a
    /// [`KmsPubkeyReply`] fault says otherwise), `kms_info.k256_pubkey` reports it, and the KMS
    /// contract (with a chain and a deployer key) records it.
    pub fn kms_public_key(&self) -> crate::envcrypt::K256PublicKey {
        kms::public_key(&self.shared.kms_key)
    }

    /// The KMS as `/api/v1/kms/{kms_id}/…` names it: its slug (its hashed id works too).
    pub fn kms_slug(&self) -> &str {
        kms::SLUG
    }

    /// The CVMs served.
    pub fn cvms(&self) -> &[SimCvm] {
        &self.cvms
    }

    /// One CVM by id.
    pub fn cvm(&self, id: &str) -> Option<&SimCvm> {
        self.cvms.iter().find(|c| c.id == id)
    }

    /// The chain phase 2 is verified against; `None` in offline mode.
    pub fn chain(&self) -> Option<&ChainInfo> {
        self.chain.as_ref()
    }

    /// Whether phase 2 is verified against a chain (false: offline mode, for demos only).
    pub fn verifies_chain(&self) -> bool {
        self.chain.is_some()
    }

    /// What the CVM now sees: the last accepted env, without the names that are not allowed.
    pub fn cvm_env(&self, id: &str) -> Option<EnvVars> {
        state::lock(&self.shared.cvms).get(id).map(|c| c.env.clone())
    }

    /// Why the CVM cannot decrypt the env of its last accepted update, if it cannot: the
    /// server cannot decrypt an env (it is encrypted to the CVM), so it accepts one encrypted to
    /// another key, and the CVM is where that fails (it then sees no env: [`Simulator::cvm_env`]
    /// is empty). `None` when it decrypts, before any update, and for an unknown CVM.
    pub fn cvm_decrypt_error(&self, id: &str) -> Option<String> {
        state::lock(&self.shared.cvms).get(id).and_then(|c| c.env_error.clone())
    }

    /// The CVM's allowed env names (sorted).
    pub fn allowed_env_names(&self, id: &str) -> Option<Vec<String>> {
        state::lock(&self.shared.cvms).get(id).map(|c| c.allowed.clone())
    }

    /// Every request answered so far, oldest first.
    pub fn operations(&self) -> Vec<Operation> {
        state::lock(&self.shared.log).clone()
    }

    /// Expires every compose hash handed out so far, as if their TTL had passed.
    pub fn expire_compose_hashes(&self) {
        for cvm in state::lock(&self.shared.cvms).values_mut() {
            cvm.pending.clear();
        }
    }

    /// What `phala-cloud simulate` prints: base URL, API key, KMS, chain and CVMs, as one JSON
    /// value.
    pub fn describe(&self) -> Value {
        let cvms: Vec<Value> = self
            .cvms
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "hashed_id": c.hashed_id,
                    "vm_uuid": c.vm_uuid,
                    "instance_id": c.instance_id,
                    "kms": c.kms,
                    "workspace": c.workspace,
                    "public_key": c.public_key.to_hex(),
                    "app_id": c.app_id.map(|a| a.to_hex()),
                    "api_app_id": c.api_app_id.to_hex(),
                })
            })
            .collect();
        json!({
            "base_url": self.base_url,
            "api_key": self.shared.api_key,
            "kms": { "slug": kms::SLUG, "id": kms::ID, "k256_pubkey": self.kms_public_key().to_hex() },
            "chain": self.chain,
            "verifies_chain": self.verifies_chain(),
            "cvms": cvms,
        })
    }

    /// Stops serving and waits for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Serves until the process is asked to stop (Ctrl-C, or SIGTERM on Unix), then shuts
    /// down as [`shutdown`](Self::shutdown) does: for a binary that runs a simulator as its
    /// service, as `phala-cloud simulate` does.
    pub async fn serve_until_stopped(self) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                stopped = tokio::signal::ctrl_c() => stopped?,
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await?;
        self.shutdown().await;
        Ok(())
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// A fresh secp256k1 key for the simulated KMS.
fn kms_signing_key() -> k256::ecdsa::SigningKey {
    loop {
        // Out of range (zero, or at or above the curve order) with probability below 2^-127.
        if let Ok(key) = k256::ecdsa::SigningKey::from_slice(&random_bytes::<32>()) {
            return key;
        }
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    bytes
}

/// `prefix_` and 16 random hex digits.
pub(crate) fn random_id(prefix: &str) -> String {
    format!("{prefix}_{}", const_hex::encode(random_bytes::<8>()))
}

/// A random UUID (v4), as the real service's correlation ids look.
pub(crate) fn correlation_id() -> String {
    let mut b: [u8; 16] = random_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = const_hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}
