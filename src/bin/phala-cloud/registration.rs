//! What every command that may register a compose hash on-chain shares: its flags
//! ([`RegistrationArgs`], flattened into the command's), the CLI's registrar
//! ([`CliRegistrar`]: a transaction given, else the owner's key on the KMS chain, with the
//! question before signing and the lock directory), its errors, and their exit codes and next
//! steps.

use std::ffi::OsString;
use std::path::PathBuf;

use phala_cloud::onchain::{OnchainError, OnchainRegistrar};
use phala_cloud::{
    AppId, AppIdCheckError, ComposeHashRegistrar, KnownTransaction, Phase1Data, Progress, TransactionHash,
};

use crate::api::{ApiArgs, REMOVED_API_KEY};
use crate::confirm::{Prompt, Refusal};
use crate::lock_dir::LockDir;
use crate::secret_arg::{self, Removed, Secret};
use crate::{Failure, exit};

/// The private-key flag of earlier versions, which took the key as its value.
const REMOVED_PRIVATE_KEY: Removed =
    Removed { flag: "--private-key", var: "PRIVATE_KEY", file_flag: "--private-key-file" };

/// The flags of the registration, the same in every command that may register: `--prepare-only`,
/// `--transaction-hash`, `--yes`, the owner's key, the app-id check, the lock directory, the
/// fee and gas caps. (`--rpc-url` is the command's own: `envs update` also checks keys with it.)
#[derive(clap::Args)]
pub struct RegistrationArgs {
    /// Phase 1 only: print the compose hash, app id, chain and the ready `to`/`data` of the
    /// addComposeHash call (for a Safe or a hardware wallet), and sign nothing. Finish with the
    /// same command and --transaction-hash. A CVM that needs no registration (a centralized
    /// KMS, or a change that leaves the compose hash allowed) applies the update at phase 1.
    #[arg(long, conflicts_with = "transaction_hash")]
    pub prepare_only: bool,
    /// Sign the registration without asking. Without it, a registration shows what will be
    /// signed (chain, app contract, compose hash, signer, estimated cost) and asks on the
    /// terminal; with no terminal (stdin not a TTY: a pipe, a script, CI) nothing is signed
    /// without --yes. --prepare-only and --transaction-hash sign nothing and never ask.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// A file holding the private key (hex) of the app contract's owner, which registers the
    /// compose hash; `-` reads one line from stdin. Default: the PRIVATE_KEY variable. (The key
    /// itself is never an argument: arguments show in the process list.)
    #[arg(long, value_name = "PATH")]
    pub private_key_file: Option<PathBuf>,
    /// A transaction that already registered the compose hash (from a multisig, a hardware
    /// wallet…): phase 2 cites it instead of sending one.
    #[arg(long, value_name = "HASH")]
    pub transaction_hash: Option<TransactionHash>,
    /// The app the CVM must belong to: its app contract's address (`0x` or `app_` optional).
    /// Whether given or not, a 465 that names another app contract than the CVM's own (as
    /// `GET /api/v1/cvms/{cvm_id}` says) is refused before anything is signed.
    #[arg(long, value_name = "ADDRESS", value_parser = parse_app_id_arg)]
    pub app_id: Option<AppId>,
    /// The compose hash you computed for the change (32 bytes of hex, `0x` optional): a 465
    /// asking to register any other hash is refused before anything is signed (exit 6). Without
    /// it the hash the server names is registered (for the CVM's own app only).
    #[arg(long, value_name = "HASH")]
    pub expect_compose_hash: Option<phala_cloud::ComposeHash>,
    /// Directory of the lock files that make runs in several processes with one key on one
    /// chain take turns registering, so that none pays twice. Default: $XDG_RUNTIME_DIR/phala-cloud,
    /// else phala-cloud-<uid> in the temp dir (created with mode 0700).
    #[arg(long, env = crate::lock_dir::LOCK_DIR_VAR, value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,
    /// The highest max fee per gas to sign, in gwei (decimals allowed; default 50). When the
    /// chain's base fee is above it, nothing is signed.
    #[arg(long, value_name = "GWEI", value_parser = parse_gwei)]
    pub max_fee_gwei: Option<u128>,
    /// The most gas the registration may take (default 150000; addComposeHash takes about
    /// 50000). A larger estimate is refused before signing.
    #[arg(long, value_name = "GAS")]
    pub gas_limit_cap: Option<u64>,
    /// Removed: refused, without using or showing the value.
    #[arg(long = "private-key", hide = true, num_args = 0..=1, default_missing_value = "", action = clap::ArgAction::Append)]
    pub removed_private_key: Vec<OsString>,
}

impl RegistrationArgs {
    /// Refuses the removed `--private-key` and `--api-key`, and more than one flag reading
    /// stdin among `--private-key-file`, `--api-key-file` and the command's own `files`; gives
    /// the flag that reads stdin, if one does (the question before signing says so when there
    /// is no terminal).
    pub fn check_inputs<'a>(
        &'a self,
        api: &'a ApiArgs,
        files: &[(&'static str, Option<&'a std::path::Path>)],
    ) -> Result<Option<&'static str>, Failure> {
        secret_arg::refuse_removed(&REMOVED_PRIVATE_KEY, &self.removed_private_key)?;
        secret_arg::refuse_removed(&REMOVED_API_KEY, &api.removed_api_key)?;
        let mut readers = vec![
            ("--private-key-file", self.private_key_file.as_deref()),
            ("--api-key-file", api.api_key_file.as_deref()),
        ];
        readers.extend_from_slice(files);
        secret_arg::one_stdin(&readers)?;
        Ok(readers.iter().find(|(_, path)| path.is_some_and(|p| p.as_os_str() == "-")).map(|(flag, _)| *flag))
    }

    /// The owner's key: --private-key-file, else PRIVATE_KEY, else none (a registration then
    /// fails with what to give).
    pub fn private_key(&self) -> Result<Option<Secret>, Failure> {
        secret_arg::load(self.private_key_file.as_deref(), "--private-key-file", "PRIVATE_KEY")
    }

    /// The registrar of a run: `subject` names what is updated in the question before signing.
    pub fn registrar(
        &self,
        private_key: Option<Secret>,
        rpc_url: Option<url::Url>,
        subject: String,
        stdin_read_by: Option<&'static str>,
    ) -> CliRegistrar {
        CliRegistrar {
            private_key,
            rpc_url,
            known: self.transaction_hash.map(KnownTransaction::new),
            lock_dir: LockDir::resolve(self.lock_dir.clone()),
            max_fee_per_gas: self.max_fee_gwei,
            gas_limit_cap: self.gas_limit_cap,
            built: tokio::sync::OnceCell::new(),
            prepare_only: self.prepare_only,
            prompt: (!self.yes).then_some(Prompt { subject, stdin_read_by }),
        }
    }
}

/// The CLI's registrar: a transaction given on the command line, else the on-chain registrar
/// with the private key, on `--rpc-url` or the named chain's public endpoint.
pub struct CliRegistrar {
    private_key: Option<Secret>,
    rpc_url: Option<url::Url>,
    /// `--transaction-hash`: registered elsewhere, nothing to send.
    known: Option<KnownTransaction>,
    lock_dir: LockDir,
    max_fee_per_gas: Option<u128>,
    gas_limit_cap: Option<u64>,
    /// The on-chain registrar, built on the first registration of the run and kept for the
    /// rest (a restart after a 466 registers again with the same one), with its RPC URL.
    built: tokio::sync::OnceCell<(url::Url, OnchainRegistrar)>,
    /// `--prepare-only`: stop at the registration, signing nothing.
    prepare_only: bool,
    /// Ask before signing (no `--yes`).
    prompt: Option<Prompt>,
}

/// Why the CLI could not register.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(
        "no private key: set PRIVATE_KEY to the app owner's key, or use --private-key-file PATH, or register the hash yourself and pass --transaction-hash"
    )]
    NoKey,
    #[error(
        "no RPC URL for chain {}: give --rpc-url (or ETH_RPC_URL)",
        .0.map_or_else(|| "(not named by phase 1)".to_owned(), |c| c.to_string())
    )]
    NoRpc(Option<u64>),
    #[error("{origin}: {problem}: give the app owner's key, 64 hex digits with or without 0x")]
    BadKey { origin: String, problem: phala_cloud::onchain::SetupError },
    #[error("{0}")]
    Setup(#[source] phala_cloud::onchain::SetupError),
    #[error(transparent)]
    LockDir(#[from] crate::lock_dir::LockDirError),
    #[error(transparent)]
    Onchain(#[from] OnchainError),
    #[error(transparent)]
    Known(#[from] phala_cloud::OtherComposeHash),
    /// `--prepare-only` stops here, with what to register: not a failure.
    #[error("prepared only: nothing is registered")]
    Prepared(Box<Phase1Data>),
}

/// Public endpoints of the chains the official client knows.
fn default_rpc(chain_id: u64) -> Option<url::Url> {
    let url = match chain_id {
        1 => "https://ethereum-rpc.publicnode.com",
        8453 => "https://mainnet.base.org",
        _ => return None,
    };
    url.parse().ok()
}

impl ComposeHashRegistrar for CliRegistrar {
    type Error = RegisterError;

    async fn register(&self, data: &Phase1Data, progress: &Progress<'_>) -> Result<TransactionHash, RegisterError> {
        if self.prepare_only {
            return Err(RegisterError::Prepared(Box::new(data.clone())));
        }
        if let Some(known) = &self.known {
            return Ok(known.register(data, progress).await?);
        }
        let key = self.private_key.as_ref().ok_or(RegisterError::NoKey)?;
        let rpc_url = match (&self.rpc_url, data.chain_id()) {
            (Some(url), _) => url.clone(),
            (None, chain) => chain.and_then(default_rpc).ok_or(RegisterError::NoRpc(chain))?,
        };
        let (built_for, registrar) = self.built.get_or_try_init(|| async { self.build(key, &rpc_url) }).await?;
        if *built_for == rpc_url {
            return Ok(registrar.register(data, progress).await?);
        }
        // Phase 1 named another chain than the first registration of this run did.
        let (_, registrar) = self.build(key, &rpc_url)?;
        Ok(registrar.register(data, progress).await?)
    }
}

impl CliRegistrar {
    fn build(&self, key: &Secret, rpc_url: &url::Url) -> Result<(url::Url, OnchainRegistrar), RegisterError> {
        let signer = phala_cloud::onchain::signer_from_hex(key.expose())
            .map_err(|problem| RegisterError::BadKey { origin: key.origin().to_owned(), problem })?;
        let lock_dir = self.lock_dir.prepare()?;
        let mut registrar =
            OnchainRegistrar::new(signer, rpc_url.clone()).map_err(RegisterError::Setup)?.lock_dir(lock_dir);
        if let Some(wei) = self.max_fee_per_gas {
            registrar = registrar.max_fee_per_gas(wei);
        }
        if let Some(gas) = self.gas_limit_cap {
            registrar = registrar.gas_limit_cap(gas);
        }
        if let Some(prompt) = &self.prompt {
            let prompt = prompt.clone();
            registrar = registrar.confirm_before_signing(move |plan| {
                let prompt = prompt.clone();
                async move {
                    tokio::task::spawn_blocking(move || prompt.ask(&plan))
                        .await
                        .unwrap_or_else(|e| Err(Refusal::Terminal(std::io::Error::other(e))))
                }
            });
        }
        Ok((rpc_url.clone(), registrar))
    }
}

/// The exit code of a refusal by the flow's app-id check.
pub fn app_id_check_exit_code(e: &AppIdCheckError) -> u8 {
    match e {
        AppIdCheckError::Lookup { source, .. } => crate::output::lookup_exit_code(source),
        AppIdCheckError::NotExpected { .. } => exit::BAD_INPUT,
        // NoAppId, BadAppId, Mismatch, and what later versions add.
        _ => exit::REGISTRATION,
    }
}

/// The exit code of a failed registration.
pub fn registration_exit_code(e: &RegisterError) -> u8 {
    match e {
        RegisterError::NoKey | RegisterError::NoRpc(_) | RegisterError::BadKey { .. } | RegisterError::Known(_) => {
            exit::BAD_INPUT
        }
        RegisterError::Setup(_) | RegisterError::LockDir(_) | RegisterError::Prepared(_) => exit::OTHER,
        RegisterError::Onchain(o) => match o {
            OnchainError::NotConfirmed { reason } => match reason.downcast_ref::<Refusal>() {
                Some(Refusal::NoTerminal { .. }) => exit::BAD_INPUT,
                Some(Refusal::Declined) => exit::DECLINED,
                Some(Refusal::Terminal(_)) | None => exit::OTHER,
            },
            OnchainError::LockBusy { .. } => exit::CONFLICT,
            OnchainError::Lock { .. } => exit::OTHER,
            OnchainError::SendFailed { maybe_sent, .. } => {
                if *maybe_sent {
                    exit::NETWORK
                } else {
                    exit::REGISTRATION
                }
            }
            o if o.is_rpc() => exit::NETWORK,
            _ => exit::REGISTRATION,
        },
    }
}

/// What to do next after a failed registration, where the error's own message does not say
/// it in the CLI's terms (flags rather than builder methods).
pub fn registration_next_step(e: &RegisterError) -> Option<String> {
    let RegisterError::Onchain(o) = e else {
        return None;
    };
    match o {
        OnchainError::NotConfirmed { reason } => reason.downcast_ref::<Refusal>().map(|r| r.next_step().to_owned()),
        OnchainError::FeeTooHigh { base_fee, cap } => Some(format!(
            "the base fee is {} gwei and the cap {} gwei: wait for fees to fall, or raise the cap with --max-fee-gwei {} (the transaction then costs at most the cap × its gas)",
            gwei(*base_fee),
            gwei(*cap),
            gwei(base_fee.saturating_mul(2).div_ceil(1_000_000_000).saturating_mul(1_000_000_000)),
        )),
        OnchainError::GasLimitTooHigh { estimate, cap } => Some(format!(
            "the node estimates {estimate} gas against a cap of {cap}: if the app contract is the one you mean and its addComposeHash is known to cost this much, raise the cap with --gas-limit-cap {}",
            estimate.saturating_add(estimate / 5)
        )),
        OnchainError::Lock { .. } => {
            Some("give a directory this user can write with --lock-dir DIR (or PHALA_CLOUD_LOCK_DIR)".into())
        }
        OnchainError::LockBusy { .. } => Some(
            "if no other phala-cloud is running with this key, a process may hang on to it: end that process".into(),
        ),
        OnchainError::Signing { .. } => Some(
            "nothing was sent: check the owner's key (PRIVATE_KEY or --private-key-file), then run the same command again"
                .into(),
        ),
        OnchainError::SendFailed { maybe_sent: true, .. } => Some(
            "the chain may have the transaction: run the same command again, which finds it instead of sending another"
                .into(),
        ),
        OnchainError::SendFailed { maybe_sent: false, .. } => Some(
            "nothing was mined: read the node's reason, fix it (funds, fees, a stuck nonce), then run the same command again"
                .into(),
        ),
        OnchainError::Reverted { .. } => Some(
            "the compose hash was not registered (the transaction cannot be reused): check that the key owns the app contract and that the contract accepts addComposeHash, then run the same command again to send a new transaction"
                .into(),
        ),
        OnchainError::NoEvent { .. } => Some(
            "the transaction did not register the compose hash (it cannot be reused): check that the app id is the app's auth contract, then run the same command again"
                .into(),
        ),
        _ => None,
    }
}

/// Wei as gwei, with up to 9 decimals and no trailing zeros.
pub fn gwei(wei: u128) -> String {
    let (whole, frac) = (wei / 1_000_000_000, wei % 1_000_000_000);
    if frac == 0 { whole.to_string() } else { format!("{whole}.{}", format!("{frac:09}").trim_end_matches('0')) }
}

/// `--max-fee-gwei`: a decimal number of gwei (at most 9 decimals) as wei.
pub fn parse_gwei(text: &str) -> Result<u128, String> {
    let bad = || format!("{text:?} is not an amount of gwei: give a number such as 50 or 0.5");
    let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if (whole.is_empty() && frac.is_empty())
        || frac.len() > 9
        || !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let frac: u128 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().map_err(|_| bad())? };
    let wei = whole.checked_mul(1_000_000_000).and_then(|w| w.checked_add(frac)).ok_or_else(bad)?;
    if wei == 0 {
        return Err(format!("--max-fee-gwei {text}: the cap must be above zero"));
    }
    Ok(wei)
}

/// `--app-id`: 40 hex digits, `0x` or `app_` optional.
pub fn parse_app_id_arg(text: &str) -> Result<AppId, String> {
    phala_cloud::parse_app_id(text).ok_or_else(|| {
        format!("{text:?} is not an app id: give the app contract's address, 40 hex digits (0x or app_ optional)")
    })
}
