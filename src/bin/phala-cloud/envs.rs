//! `phala-cloud envs …`: update (the whole two-phase flow), encrypt, verify-pubkey.

use std::borrow::Borrow;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

use alloy::primitives::Address;
use phala_cloud::onchain::{KmsCheckError, KmsContract, OnchainError, OnchainRegistrar};
use phala_cloud::{AppId, Client, FleetError, FleetEvent, Phase1Data, TransactionHash};
use phala_cloud::{
    AppIdCheckError, ComposeHashRegistrar, FlowError, FlowEvent, KnownTransaction, Progress, RestartReason,
    UpdateOutcome,
};
use phala_cloud::{EncryptionKeyError, HttpError, KeyVerification, KmsKeyAnchor, SdkError, VerifiedRecipient};
use phala_cloud::{EnvError, EnvVars, K256PublicKey, RecipientPublicKey, SignedEnvPubkey, encrypt};
use serde_json::json;

use crate::confirm::{Prompt, Refusal};
use crate::lock_dir::LockDir;
use crate::secret_arg::{self, Removed, Secret};
use crate::{Failure, exit};

/// Env updates and encryption.
#[derive(clap::Subcommand)]
pub enum EnvsCommand {
    /// Encrypt env vars to a CVM and update them, registering the compose hash on-chain when
    /// the CVM's KMS is contract-owned (phase 1 → 465 → addComposeHash → phase 2). The CVM's
    /// env-encryption key is looked up and verified first, unless --pubkey gives it. Before
    /// signing, it shows the transaction (chain, app contract, compose hash, cost) and asks.
    #[command(after_help = "Examples:
  PHALA_CLOUD_API_KEY=… PRIVATE_KEY=… phala-cloud envs update app_4f2c… --env-file .env --rpc-url https://mainnet.base.org   # asks before signing
  PRIVATE_KEY=… phala-cloud envs update app_4f2c… -e DATABASE_URL -e LOG_LEVEL=info --rpc-url https://mainnet.base.org --yes --json   # a script: no question
  phala-cloud envs update app_4f2c… --env-file .env --transaction-hash 0x9a7b…   # registered elsewhere: signs nothing

Without --pubkey the key is looked up (GET /api/v1/cvms/{CVM}): a centralized KMS's is the
API's; a contract-owned KMS's is fetched with its KMS signature, which must verify (against the
KMS contract on-chain with --rpc-url, else against the KMS key the API reports) before anything
is encrypted; a failed check exits 6. A legacy (untimestamped) signature is accepted with a
warning. --pubkey 0x… gives a key you know, and skips the lookup.

Several CVMs: `envs update CVM1 CVM2 …`, or `--app APP_ID` for every CVM of the app (as
GET /api/v1/apps/{app_id}/cvms lists them). Each CVM's key is looked up and the env encrypted to
it; --concurrency CVMs (default 8) are worked on at once; each distinct (chain, app, compose
hash) is registered once, with one question before signing. A CVM that fails does not stop the
others; running again after a partial failure finds the hash registered and sends nothing.
Output: one line per CVM (`CVM: accepted …` or `CVM: failed (exit N): …`), or with --json one
array of objects ({\"cvm_id\", \"ok\", then the one-CVM result's fields or \"error\"}). Exit code: 0 when
every CVM's update was accepted, else the highest exit code among the CVMs that failed.
For instance: envs update --app 0x4f2c… --env-file .env --yes --json")]
    Update(Box<UpdateArgs>),
    /// Encrypt env vars to a CVM's env-encryption key and print the `encrypted_env` blob: the
    /// key looked up and verified as `envs update` does, or given with --pubkey.
    #[command(after_help = "Examples:
  PHALA_CLOUD_API_KEY=… phala-cloud envs encrypt app_4f2c… --env-file .env
  PHALA_CLOUD_API_KEY=… phala-cloud envs encrypt my-cvm -e API_TOKEN --rpc-url https://mainnet.base.org --json > encrypted.json
  phala-cloud envs encrypt --pubkey 0x5c1e… --env-file .env   (no lookup, no API key)")]
    Encrypt(EncryptArgs),
    /// Check the KMS signature over a CVM's env-encryption public key.
    #[command(after_help = "Examples:
  phala-cloud envs verify-pubkey --pubkey 0x5c1e… --signature 0x3b9d… --app-id 0xa172… --kms-pubkey 0x02f1… --timestamp 1764700000
  phala-cloud envs verify-pubkey --pubkey 0x5c1e… --signature 0x3b9d… --app-id 0xa172… --kms-contract 0x2f83… --rpc-url https://mainnet.base.org")]
    VerifyPubkey(VerifyArgs),
}

/// Where the env vars come from: any mix of `-e` and `--env-file`, merged; a name given twice
/// is refused.
#[derive(clap::Args)]
#[group(multiple = true)]
pub struct EnvSource {
    /// An env var (repeatable): KEY=VALUE; KEY alone to take the value of the variable KEY
    /// from this environment, as docker does; or the path of a dotenv file, as the official
    /// CLI's -e takes. A value written here shows in the process list and shell history: give
    /// secrets as `-e KEY` or in a file.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]|FILE")]
    env: Vec<String>,
    /// A dotenv file (repeatable), at most 2 MiB: comments, `export`, quotes; values are taken
    /// literally (`$NAME` is not expanded). `-` reads it from stdin.
    #[arg(long, value_name = "FILE")]
    env_file: Vec<PathBuf>,
}

impl EnvSource {
    /// Whether a `--env-file -` reads stdin (which a key file then cannot).
    pub fn stdin(&self) -> Option<&std::path::Path> {
        self.env_file.iter().find(|p| p.as_os_str() == "-").map(PathBuf::as_path)
    }

    fn is_empty(&self) -> bool {
        self.env.is_empty() && self.env_file.is_empty()
    }

    fn load(&self) -> Result<EnvVars, Failure> {
        if self.is_empty() {
            return Err(Failure::usage("no env vars: give -e KEY=VALUE|KEY|FILE or --env-file FILE"));
        }
        let mut env = EnvVars::new();
        let mut stdin_read = false;
        for path in &self.env_file {
            let (origin, file) = if path.as_os_str() == "-" {
                if std::mem::replace(&mut stdin_read, true) {
                    return Err(Failure::usage("--env-file - is given twice: stdin holds one file"));
                }
                ("--env-file - (stdin)".to_owned(), dotenv_from_stdin())
            } else {
                (format!("--env-file {}", path.display()), EnvVars::from_dotenv_file(path))
            };
            let file = file.map_err(|e| Failure::usage(format!("{origin}: {}", crate::error_chain(&e))))?;
            merge(&mut env, &file, &origin)?;
        }
        merge(&mut env, &env_from_args(&self.env)?, "-e")?;
        Ok(env)
    }
}

/// Adds `from`'s entries to `into`; a name already there is refused (names are not secret).
fn merge(into: &mut EnvVars, from: &EnvVars, origin: &str) -> Result<(), Failure> {
    for (key, value) in from.iter() {
        into.push(key, value).map_err(|e| Failure::usage(format!("{origin}: {e}")))?;
    }
    Ok(())
}

/// A dotenv file on stdin, read as [`EnvVars::from_dotenv_file`] reads a file: at most
/// [`phala_cloud::MAX_DOTENV_FILE_BYTES`], the buffer wiped after parsing.
fn dotenv_from_stdin() -> Result<EnvVars, EnvError> {
    use std::io::Read;
    let max = phala_cloud::MAX_DOTENV_FILE_BYTES;
    let path = PathBuf::from("-");
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|source| EnvError::Io { path: path.clone(), source })?;
    if buf.len() as u64 > max {
        return Err(EnvError::DotenvFileTooLarge { path, len: buf.len() as u64, max });
    }
    let text = std::str::from_utf8(&buf).map_err(|_| EnvError::Io {
        path,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "stdin is not UTF-8 text"),
    })?;
    EnvVars::from_dotenv_str(text)
}

/// The `-e` arguments: `KEY=VALUE`, split at the first `=`; `KEY`, whose value is taken from
/// this process's environment; or the path of an existing dotenv file. Values are never shown;
/// names are, as they are not secret. An argument that is none of these is not echoed (it may
/// be a secret given without its name).
fn env_from_args(args: &[String]) -> Result<EnvVars, Failure> {
    let mut env = EnvVars::new();
    for (index, arg) in args.iter().enumerate() {
        let assignment = arg.split_once('=').filter(|(key, _)| phala_cloud::is_valid_env_key(key));
        if assignment.is_none() && !phala_cloud::is_valid_env_key(arg) && std::path::Path::new(arg).is_file() {
            let origin = format!("-e {arg}");
            let file = EnvVars::from_dotenv_file(arg)
                .map_err(|e| Failure::usage(format!("{origin}: {}", crate::error_chain(&e))))?;
            merge(&mut env, &file, &origin)?;
            continue;
        }
        let pushed = match arg.split_once('=') {
            Some((key, value)) if phala_cloud::is_valid_env_key(key) => env.push(key, value),
            Some(_) => Err(EnvError::InvalidAssignmentKey { index }),
            None if phala_cloud::is_valid_env_key(arg) => match std::env::var(arg) {
                Ok(value) => env.push(arg.as_str(), value),
                Err(std::env::VarError::NotPresent) => {
                    return Err(Failure::usage(format!(
                        "-e {arg}: {arg} is not set in the environment: export {arg} first, or give -e {arg}=VALUE"
                    )));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(Failure::usage(format!(
                        "-e {arg}: the value of {arg} in the environment is not valid UTF-8"
                    )));
                }
            },
            None => {
                return Err(Failure::usage(format!(
                    "-e: {}, nor the name of a variable or a file (not shown: it may be a secret): \
                     give -e KEY=VALUE, -e KEY to take the value of the variable KEY, or -e FILE",
                    EnvError::MissingEquals { index }
                )));
            }
        };
        pushed.map_err(|e| Failure::usage(format!("-e: {e}")))?;
    }
    Ok(env)
}

/// The secret flags of earlier versions, which took the secret as their value.
const REMOVED_PRIVATE_KEY: Removed =
    Removed { flag: "--private-key", var: "PRIVATE_KEY", file_flag: "--private-key-file" };
const REMOVED_API_KEY: Removed = Removed { flag: "--api-key", var: "PHALA_CLOUD_API_KEY", file_flag: "--api-key-file" };

/// `envs update`.
#[derive(clap::Args)]
pub struct UpdateArgs {
    /// The CVM: its id, UUID, app id (`app_` optional), instance id or name. Several update them all (see "Several CVMs" below).
    #[arg(value_name = "CVM", required_unless_present = "app", conflicts_with = "app")]
    cvm_ids: Vec<String>,
    /// Update every CVM of this app, as `GET /api/v1/apps/{app_id}/cvms` lists them: its app
    /// contract's address (`0x` or `app_` optional). Each CVM's 465 must name this app.
    #[arg(long, value_name = "APP_ID", value_parser = parse_app_id_arg)]
    app: Option<AppId>,
    /// With several CVMs or --app: how many CVMs are worked on at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    #[command(flatten)]
    source: EnvSource,
    /// The CVM's X25519 env-encryption public key (hex, `0x` optional), used as given. Without
    /// it the key is looked up and verified (see below).
    #[arg(long, value_name = "HEX")]
    pubkey: Option<RecipientPublicKey>,
    /// An `encrypted_env` blob made elsewhere (e.g. by `envs encrypt --json`), sent as it is,
    /// instead of -e/--env-file; --env-keys must name what it holds.
    #[arg(long, value_name = "HEX", requires = "env_keys", conflicts_with_all = ["env", "env_file", "pubkey"])]
    encrypted_env: Option<String>,
    /// Phase 1 only: print the compose hash, app id, chain and the ready `to`/`data` of the
    /// addComposeHash call (for a Safe or a hardware wallet), and sign nothing. Finish with the
    /// same command and --transaction-hash. A CVM that needs no registration (a centralized
    /// KMS, or the same allowed names) applies the update at phase 1.
    #[arg(long, conflicts_with = "transaction_hash")]
    prepare_only: bool,
    /// Sign the registration without asking. Without it, a registration shows what will be
    /// signed (chain, app contract, compose hash, signer, estimated cost) and asks on the
    /// terminal; with no terminal (stdin not a TTY: a pipe, a script, CI) nothing is signed
    /// without --yes. --prepare-only and --transaction-hash sign nothing and never ask.
    #[arg(short = 'y', long)]
    yes: bool,
    /// The allowed env names, comma-separated (default: the names being encrypted). They must
    /// include every encrypted name: a CVM drops values whose name is not allowed.
    #[arg(long, value_name = "K,…", value_delimiter = ',')]
    env_keys: Option<Vec<String>>,
    /// A file holding the private key (hex) of the app contract's owner, which registers the
    /// compose hash; `-` reads one line from stdin. Default: the PRIVATE_KEY variable. (The key
    /// itself is never an argument: arguments show in the process list.)
    #[arg(long, value_name = "PATH")]
    private_key_file: Option<PathBuf>,
    /// JSON-RPC URL of the KMS chain (default: a public endpoint of the chain phase 1 names).
    /// With it, a looked-up key's KMS signature is checked against the key the KMS contract
    /// records on-chain. Never shown in messages: providers put API keys in it.
    #[arg(long, env = "ETH_RPC_URL", value_name = "URL", hide_env_values = true)]
    rpc_url: Option<OsString>,
    /// The KMS contract to check a looked-up key against (with --rpc-url), instead of the one
    /// the CVM's kms_info names, which is the API's word: a CVM whose kms_info names another
    /// is refused (exit 6).
    #[arg(long, value_name = "ADDRESS", requires = "rpc_url")]
    kms_contract: Option<Address>,
    /// A transaction that already registered the compose hash (from a multisig, a hardware
    /// wallet…): phase 2 cites it instead of sending one.
    #[arg(long, value_name = "HASH")]
    transaction_hash: Option<TransactionHash>,
    /// The app the CVM must belong to: its app contract's address (`0x` or `app_` optional).
    /// Whether given or not, a 465 that names another app contract than the CVM's own (as
    /// `GET /api/v1/cvms/{cvm_id}` says) is refused before anything is signed.
    #[arg(long, value_name = "ADDRESS", value_parser = parse_app_id_arg, conflicts_with = "app")]
    app_id: Option<AppId>,
    /// Directory of the lock files that make runs in several processes with one key on one
    /// chain take turns registering, so that none pays twice. Default: $XDG_RUNTIME_DIR/phala-cloud,
    /// else phala-cloud-<uid> in the temp dir (created with mode 0700).
    #[arg(long, env = crate::lock_dir::LOCK_DIR_VAR, value_name = "DIR")]
    lock_dir: Option<PathBuf>,
    /// The highest max fee per gas to sign, in gwei (decimals allowed; default 50). When the
    /// chain's base fee is above it, nothing is signed.
    #[arg(long, value_name = "GWEI", value_parser = parse_gwei)]
    max_fee_gwei: Option<u128>,
    /// The most gas the registration may take (default 150000; addComposeHash takes about
    /// 50000). A larger estimate is refused before signing.
    #[arg(long, value_name = "GAS")]
    gas_limit_cap: Option<u64>,
    #[command(flatten)]
    api: ApiArgs,
    /// Print the result as JSON on stdout: one object, or with several CVMs or --app an array
    /// of one object per CVM.
    #[arg(long)]
    json: bool,
    /// Removed: refused, without using or showing the value.
    #[arg(long = "private-key", hide = true, num_args = 0..=1, default_missing_value = "", action = clap::ArgAction::Append)]
    removed_private_key: Vec<OsString>,
}

/// Where the API key and the API come from (`envs update`, and `envs encrypt` when it looks the
/// key up).
#[derive(clap::Args)]
pub struct ApiArgs {
    /// A file holding the Phala Cloud API key; `-` reads one line from stdin. Default: the
    /// PHALA_CLOUD_API_KEY variable.
    #[arg(long, value_name = "PATH")]
    api_key_file: Option<PathBuf>,
    /// API base URL (`…/api/v1` accepted). Default: the profile's `api_prefix`, else the
    /// public API.
    #[arg(long, env = "PHALA_CLOUD_API_PREFIX", value_name = "URL")]
    api_prefix: Option<String>,
    /// The profile of the official CLI's saved credentials ($PHALA_CLOUD_DIR/credentials.json,
    /// default ~/.phala-cloud) whose key and prefix to use when neither --api-key-file nor
    /// PHALA_CLOUD_API_KEY gives a key. Default: its current profile.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Removed: refused, without using or showing the value.
    #[arg(long = "api-key", hide = true, num_args = 0..=1, default_missing_value = "", action = clap::ArgAction::Append)]
    removed_api_key: Vec<OsString>,
}

impl ApiArgs {
    /// The client: the API key from --api-key-file, else PHALA_CLOUD_API_KEY, else the official
    /// CLI's saved profile (its order); the prefix from --api-prefix/PHALA_CLOUD_API_PREFIX, else
    /// the profile's.
    fn client(&self, retry_on_conflict: bool) -> Result<Client, Failure> {
        let api_key = secret_arg::load(self.api_key_file.as_deref(), "--api-key-file", "PHALA_CLOUD_API_KEY")?;
        let profile = match (&api_key, &self.profile) {
            (Some(_), None) => None,
            (_, name) => crate::credentials::load(name.as_deref())?,
        };
        let (api_key, profile_prefix) = match (api_key, profile) {
            (Some(key), p) => (Some(key), p.and_then(|p| p.api_prefix)),
            (None, Some(p)) => (Some(p.token), p.api_prefix),
            (None, None) => (None, None),
        };
        let Some(api_key) = api_key else {
            return Err(Failure {
                code: exit::AUTH,
                message: "no API key: set PHALA_CLOUD_API_KEY, or use --api-key-file PATH, with a key from the Phala Cloud dashboard, or log in with the official CLI (`phala auth login`), whose saved profile is used"
                    .into(),
                json: None,
            });
        };
        let mut builder = Client::builder().api_key(api_key.expose());
        if let Some(prefix) = self.api_prefix.clone().or(profile_prefix) {
            builder = builder.base_url(prefix);
        }
        if retry_on_conflict {
            builder = builder.retry_on_conflict(phala_cloud::ConflictRetry::default());
        }
        builder.build().map_err(|e| Failure::usage(e.to_string()))
    }
}

/// `envs encrypt`.
#[derive(clap::Args)]
pub struct EncryptArgs {
    /// The CVM whose env-encryption key to look up and verify (its id, UUID, app id with or
    /// without `app_`, instance id or name), as `envs update` does; needs the API key. Not
    /// needed with --pubkey.
    #[arg(value_name = "CVM", required_unless_present = "pubkey")]
    cvm: Option<String>,
    #[command(flatten)]
    source: EnvSource,
    /// The CVM's X25519 env-encryption public key (hex, `0x` optional), used as given: no
    /// lookup.
    #[arg(long, value_name = "HEX")]
    pubkey: Option<RecipientPublicKey>,
    /// JSON-RPC URL of the KMS contract's chain: a contract-owned KMS's signature is checked
    /// against the key its KMS contract records on-chain, not the one the API reports. Never
    /// shown in messages.
    #[arg(long, env = "ETH_RPC_URL", value_name = "URL", hide_env_values = true)]
    rpc_url: Option<OsString>,
    /// The KMS contract to check a looked-up key against (with --rpc-url), instead of the one
    /// the CVM's kms_info names, which is the API's word: a CVM whose kms_info names another
    /// is refused (exit 6).
    #[arg(long, value_name = "ADDRESS", requires = "rpc_url")]
    kms_contract: Option<Address>,
    #[command(flatten)]
    api: ApiArgs,
    /// Print `{"encrypted_env", "env_keys"}` (and, when looked up, `encryption_key`) instead of
    /// the bare blob.
    #[arg(long)]
    json: bool,
}

/// `envs verify-pubkey`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The env-encryption public key, as `GET /api/v1/kms/{slug}/pubkey/{app_id}` returns it.
    #[arg(long, value_name = "HEX")]
    pubkey: String,
    /// Its signature (65 bytes, r‖s‖v).
    #[arg(long, value_name = "HEX")]
    signature: String,
    /// The app id it was signed for.
    #[arg(long, value_name = "ADDRESS")]
    app_id: AppId,
    /// The KMS's secp256k1 key (`kms_info.k256_pubkey`). With --kms-contract the key the
    /// contract records is the one checked, and this, if given, must be that key.
    #[arg(long, value_name = "HEX", required_unless_present = "kms_contract")]
    kms_pubkey: Option<K256PublicKey>,
    /// The KMS contract (`kms_info.kms_contract_address`), the trust anchor: the app must be
    /// registered with it, and the signature must recover to the key its `kmsInfo()` records.
    #[arg(long, value_name = "ADDRESS", requires = "rpc_url")]
    kms_contract: Option<Address>,
    /// JSON-RPC URL of the KMS contract's chain, for --kms-contract. Never shown in messages.
    #[arg(long, env = "ETH_RPC_URL", value_name = "URL", hide_env_values = true)]
    rpc_url: Option<OsString>,
    /// The signature's timestamp (Unix seconds), for the newer, timestamped form.
    #[arg(long, value_name = "SECS")]
    timestamp: Option<u64>,
}

pub async fn run(command: EnvsCommand) -> Result<(), Failure> {
    match command {
        EnvsCommand::Update(args) => update(*args).await,
        EnvsCommand::Encrypt(args) => encrypt_env(args).await,
        EnvsCommand::VerifyPubkey(args) => verify_pubkey(args).await,
    }
}

/// `envs encrypt`: to the key given, or to the CVM's, looked up and verified.
async fn encrypt_env(args: EncryptArgs) -> Result<(), Failure> {
    secret_arg::refuse_removed(&REMOVED_API_KEY, &args.api.removed_api_key)?;
    secret_arg::one_stdin(&[
        ("--api-key-file", args.api.api_key_file.as_deref()),
        ("--env-file", args.source.stdin()),
    ])?;
    // The env first: a bad one is refused before anything is asked of the network.
    let env = args.source.load()?;
    let recipient = match (args.pubkey, &args.cvm) {
        (Some(pubkey), _) => VerifiedRecipient::caller_provided(pubkey),
        (None, Some(cvm)) => {
            let rpc_url = secret_arg::rpc_url(args.rpc_url.as_deref(), "--rpc-url (or ETH_RPC_URL)")?;
            let client = args.api.client(false)?;
            let found = match &rpc_url {
                Some(url) => match args.kms_contract {
                    Some(kms_contract) => client.env_encryption_key_pinned(cvm, url, kms_contract).await,
                    None => client.env_encryption_key_onchain(cvm, url).await,
                },
                None => client.env_encryption_key(cvm).await,
            };
            let recipient = found.map_err(|e| Failure::from_key_error(&e, args.json))?;
            KeyNotes { lines: true, rpc_given: rpc_url.is_some() }.print(&recipient, &mut |line| eprintln!("{line}"));
            recipient
        }
        (None, None) => return Err(Failure::usage("give the CVM to look its key up, or --pubkey")),
    };
    let encrypted = encrypt(&env, recipient.public_key()).map_err(|e| Failure::usage(e.to_string()))?;
    if args.json {
        let mut value = json!({ "encrypted_env": encrypted.as_hex(), "env_keys": encrypted.keys() });
        if recipient.verification() != &KeyVerification::CallerProvided {
            value["encryption_key"] = key_json(&recipient);
        }
        println!("{value}");
    } else {
        println!("{}", encrypted.as_hex());
    }
    Ok(())
}

/// What the CLI says on stderr about a looked-up key: how it was verified (`lines`), and a
/// warning for a legacy signature (always).
struct KeyNotes {
    lines: bool,
    rpc_given: bool,
}

impl KeyNotes {
    fn print(&self, recipient: &VerifiedRecipient, out: &mut dyn FnMut(String)) {
        self.print_parts(recipient.public_key(), recipient.verification(), out);
    }

    fn print_parts(&self, public_key: RecipientPublicKey, verification: &KeyVerification, out: &mut dyn FnMut(String)) {
        if self.lines {
            let note = match verification {
                KeyVerification::KmsSignature { anchor: KmsKeyAnchor::Onchain { pinned: false, .. }, .. } => {
                    " (the KMS contract's address is kms_info's, the API's word: check it is your KMS's, or name it with --kms-contract)"
                }
                _ => "",
            };
            out(format!("env-encryption key {public_key}: {verification}{note}"));
        }
        // Where the API vouched for the key (or for the key that checked it), said whatever the
        // output mode: the check does not guard against the API itself.
        match verification {
            KeyVerification::KmsSignature { anchor: KmsKeyAnchor::ApiReported, .. } => out(
                "phala-cloud: warning: the KMS signature was checked against the KMS key the API reports, so the API \
                 vouches for both the key and its check; give --rpc-url to check it against the KMS contract on-chain"
                    .into(),
            ),
            KeyVerification::CentralizedKms if self.rpc_given => out(
                "phala-cloud: warning: the CVM reports a centralized KMS: its env-encryption key is the API's word, \
                 and there is no signature to check on-chain"
                    .into(),
            ),
            _ => {}
        }
        if matches!(verification, KeyVerification::KmsSignature { form: phala_cloud::SignatureForm::Legacy, .. }) {
            out("phala-cloud: warning: the KMS signed this env-encryption key in the legacy form, without a timestamp: \
                 there is no freshness window, so a key it signed long ago (and has since rotated) would verify as well"
                .into());
        }
    }
}

/// A looked-up key, for `--json`.
fn key_json(recipient: &VerifiedRecipient) -> serde_json::Value {
    // Who vouches for the key, for a script to decide on: the caller, the API (a centralized
    // KMS's key, or a signature checked against the KMS key the API reports), or the chain.
    let (vouched_by, kms_contract) = match recipient.verification() {
        KeyVerification::CallerProvided => ("caller", None),
        KeyVerification::CentralizedKms => ("api", None),
        KeyVerification::KmsSignature { anchor: KmsKeyAnchor::Onchain { kms_contract, .. }, .. } => {
            ("kms_contract", Some(kms_contract.to_string()))
        }
        KeyVerification::KmsSignature { .. } => ("api", None),
        _ => ("unknown", None),
    };
    json!({
        "public_key": recipient.public_key().to_hex(),
        "verification": recipient.verification().to_string(),
        "vouched_by": vouched_by,
        "kms_contract": kms_contract,
        "legacy_signature": recipient.is_legacy_signature(),
    })
}

/// `envs verify-pubkey`: against the key given, or the KMS contract's on-chain key.
async fn verify_pubkey(args: VerifyArgs) -> Result<(), Failure> {
    let signed = SignedEnvPubkey::from_hex(&args.pubkey, &args.signature, args.timestamp)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let refused = |code: u8, message: String| Failure {
        code,
        message: format!("{message}; do not encrypt to this key"),
        json: None,
    };
    if signed.timestamp.is_none() {
        eprintln!(
            "warning: no --timestamp: the legacy signature form has no freshness window, so a key signed long ago still verifies"
        );
    }
    let (key, by) = match (args.kms_contract, args.kms_pubkey) {
        (Some(address), given) => {
            let rpc_url = secret_arg::rpc_url(args.rpc_url.as_deref(), "--rpc-url (or ETH_RPC_URL)")?
                .ok_or_else(|| Failure::usage("--kms-contract needs --rpc-url (or ETH_RPC_URL)"))?;
            let kms = KmsContract::new(address, &rpc_url).map_err(|e| Failure::usage(e.to_string()))?;
            let kms_refused =
                |e: KmsCheckError| refused(if e.is_rpc() { exit::NETWORK } else { exit::REGISTRATION }, e.to_string());
            if let Some(given) = given {
                let recorded = kms.k256_pubkey().await.map_err(kms_refused)?;
                if given != recorded {
                    return Err(refused(
                        exit::REGISTRATION,
                        format!("--kms-pubkey {given} is not the key the KMS contract {address} records ({recorded})"),
                    ));
                }
            }
            let key = kms.verify_env_pubkey(&signed, &args.app_id).await.map_err(kms_refused)?;
            (key, format!("the key of KMS contract {address}, with which the app is registered"))
        }
        (None, Some(expected)) => {
            let key = signed.verify(&args.app_id, &expected).map_err(|e| refused(exit::REGISTRATION, e.to_string()))?;
            (key, format!("KMS key {expected}"))
        }
        (None, None) => return Err(Failure::usage("give --kms-contract (with --rpc-url) or --kms-pubkey")),
    };
    println!("ok: {key} is signed by {by} for app {}", args.app_id);
    Ok(())
}

async fn update(args: UpdateArgs) -> Result<(), Failure> {
    secret_arg::refuse_removed(&REMOVED_PRIVATE_KEY, &args.removed_private_key)?;
    secret_arg::refuse_removed(&REMOVED_API_KEY, &args.api.removed_api_key)?;
    let stdin_readers = [
        ("--private-key-file", args.private_key_file.as_deref()),
        ("--api-key-file", args.api.api_key_file.as_deref()),
        ("--env-file", args.source.stdin()),
    ];
    secret_arg::one_stdin(&stdin_readers)?;
    let stdin_read_by =
        stdin_readers.iter().find(|(_, path)| path.is_some_and(|p| p.as_os_str() == "-")).map(|(flag, _)| *flag);
    let rpc_url = secret_arg::rpc_url(args.rpc_url.as_deref(), "--rpc-url (or ETH_RPC_URL)")?;
    if args.app.is_some() || args.cvm_ids.len() > 1 {
        return update_fleet(args, rpc_url, stdin_read_by).await;
    }
    let cvm_id = args.cvm_ids.first().cloned().ok_or_else(|| Failure::usage("give a CVM id, or --app APP_ID"))?;
    let env = match (&args.encrypted_env, args.pubkey) {
        (Some(blob), _) => EnvInput::Blob(blob.clone()),
        (None, Some(pubkey)) => EnvInput::Plain(args.source.load()?, pubkey),
        (None, None) => EnvInput::LookUp(args.source.load()?),
    };
    let client = args.api.client(true)?;
    let private_key = secret_arg::load(args.private_key_file.as_deref(), "--private-key-file", "PRIVATE_KEY")?;
    let display = Display::new(args.json, rpc_url.is_some());
    let mut update = client.env_update(cvm_id.clone()).on_event(|e| display.event(None, e));
    update = match env {
        EnvInput::Plain(env, pubkey) => update.env(env, pubkey),
        EnvInput::LookUp(env) => match &rpc_url {
            Some(url) => {
                let update = update.env_with_key_lookup(env).kms_rpc(url.clone());
                match args.kms_contract {
                    Some(kms_contract) => update.kms_contract(kms_contract),
                    None => update,
                }
            }
            None => update.env_with_key_lookup(env),
        },
        EnvInput::Blob(encrypted_env) => update.body(phala_cloud::UpdateCvmEnvsBody {
            encrypted_env,
            env_keys: None,
            compose_hash: None,
            transaction_hash: None,
        }),
    };
    let registrar = CliRegistrar::new(&args, private_key, rpc_url, format!("CVM {cvm_id}"), stdin_read_by);
    if let Some(keys) = args.env_keys {
        update = update.env_keys(keys);
    }
    if let Some(app_id) = args.app_id {
        update = update.expect_app_id(app_id);
    }
    let result = update.run(&registrar).await;
    display.finish();
    match result {
        Ok(outcome) => {
            print_outcome(&outcome, args.json);
            Ok(())
        }
        Err(FlowError::Registration { source: RegisterError::Prepared(data), .. }) => {
            print_prepared(&cvm_id, &data, args.json);
            Ok(())
        }
        Err(e) => Err(Failure::from_flow(&e, args.json, args.transaction_hash.is_some())),
    }
}

/// `envs update` of several CVMs, or of every CVM of `--app`: each CVM's flow (its own key
/// lookup and encryption), `--concurrency` at a time, one registration (and one question
/// before signing) per distinct compose hash. Prints one line per CVM (text), or one JSON
/// array; exits with the highest of the failed CVMs' exit codes (0 when every CVM's update
/// was accepted).
async fn update_fleet(
    args: UpdateArgs,
    rpc_url: Option<url::Url>,
    stdin_read_by: Option<&'static str>,
) -> Result<(), Failure> {
    for (given, flag) in [
        (args.pubkey.is_some(), "--pubkey"),
        (args.encrypted_env.is_some(), "--encrypted-env"),
        (args.prepare_only, "--prepare-only"),
    ] {
        if given {
            return Err(Failure::usage(format!(
                "{flag} is for one CVM: with several CVMs or --app each CVM's key is looked up and the env encrypted to it"
            )));
        }
    }
    let env = args.source.load()?;
    let client = args.api.client(true)?;
    let private_key = secret_arg::load(args.private_key_file.as_deref(), "--private-key-file", "PRIVATE_KEY")?;
    let subject = match args.app {
        Some(app) => format!("the CVMs of app {app}"),
        None => format!("CVMs {}", args.cvm_ids.join(", ")),
    };
    let registrar = CliRegistrar::new(&args, private_key, rpc_url.clone(), subject, stdin_read_by);
    let display = Display::new(args.json, rpc_url.is_some());
    let mut fleet = match args.app {
        Some(app) => client.env_update_app(app, env),
        None => client.env_update_many(args.cvm_ids.clone(), env),
    };
    fleet = fleet.concurrency(usize::from(args.concurrency)).on_event(|e| match e {
        FleetEvent::Listed { app_id, cvm_ids } => {
            display.say(format!("app {app_id}: {} CVMs: {}", cvm_ids.len(), cvm_ids.join(", ")))
        }
        FleetEvent::Registering { compose_hash, app_id, cvm_ids, .. } => display.say(format!(
            "phase 1 done; one registration of compose hash {compose_hash} on app contract {app_id} for {} CVM{}: {}",
            cvm_ids.len(),
            if cvm_ids.len() == 1 { "" } else { "s" },
            cvm_ids.join(", ")
        )),
        FleetEvent::Cvm { cvm_id, event } => display.event(Some(cvm_id), event),
        _ => {}
    });
    if let Some(keys) = &args.env_keys {
        fleet = fleet.env_keys(keys.clone());
    }
    if let Some(app_id) = args.app_id {
        fleet = fleet.expect_app_id(app_id);
    }
    if let Some(url) = &rpc_url {
        fleet = fleet.kms_rpc(url.clone());
        if let Some(kms_contract) = args.kms_contract {
            fleet = fleet.kms_contract(kms_contract);
        }
    }
    let result = fleet.run(&registrar).await;
    display.finish();
    let outcome = result.map_err(|e| Failure::from_fleet(&e, args.json))?;

    let total = outcome.updates.len();
    let (mut worst, mut failed, mut items) = (0u8, 0usize, Vec::new());
    for update in &outcome.updates {
        let id = &update.cvm_id;
        match &update.result {
            Ok(accepted) if args.json => {
                let mut item = json!({ "cvm_id": id, "ok": true });
                if let (Some(item), serde_json::Value::Object(fields)) = (item.as_object_mut(), outcome_json(accepted))
                {
                    item.extend(fields);
                }
                items.push(item);
            }
            Ok(accepted) => println!("{id}: {}", outcome_lines(accepted).join("; ")),
            Err(e) => {
                let failure = Failure::from_flow(e, args.json, args.transaction_hash.is_some());
                worst = worst.max(failure.code);
                failed += 1;
                match failure.json {
                    Some(mut value) => {
                        let error = value.get_mut("error").map(serde_json::Value::take);
                        items.push(json!({ "cvm_id": id, "ok": false, "error": error }));
                    }
                    None => println!("{id}: failed (exit {}): {}", failure.code, failure.message.replace('\n', "; ")),
                }
            }
        }
    }
    if args.json {
        println!("{}", serde_json::Value::Array(items));
    }
    if failed == 0 {
        return Ok(());
    }
    Err(Failure {
        code: worst,
        message: format!("{failed} of {total} CVMs were not updated (exit code: the highest of theirs, {worst})"),
        json: None,
    })
}

/// The env of an update: vars to encrypt to a key given or looked up, or a blob made elsewhere.
enum EnvInput {
    Plain(EnvVars, RecipientPublicKey),
    LookUp(EnvVars),
    Blob(String),
}

/// `--prepare-only`'s result: what to register, and the call that does it.
fn print_prepared(cvm_id: &str, data: &Phase1Data, json: bool) {
    let call = phala_cloud::onchain::RegistrationCall::new(data.app_id, data.compose_hash);
    if json {
        let value = json!({
            "status": "prepared",
            "compose_hash": data.compose_hash.to_hex(),
            "app_id": data.app_id.to_hex(),
            "chain_id": data.chain_id(),
            "kms_contract": data.kms_info.as_ref().and_then(|k| k.kms_contract_address.clone()),
            "to": call.to.to_string(),
            "data": call.data.to_string(),
            "value": "0",
        });
        println!("{value}");
        return;
    }
    let chain = data.chain_id().map_or_else(String::new, |c| format!(" on chain {c}"));
    println!("prepared: register compose hash {} on app contract {}{chain}", data.compose_hash, data.app_id);
    println!("  send from the app's owner, value 0:");
    println!("  to:   {}", call.to);
    println!("  data: {}", call.data);
    println!("then finish with the same command and --transaction-hash <that transaction's hash> (cvm {cvm_id})");
}

fn print_outcome(outcome: &UpdateOutcome, json: bool) {
    if json {
        println!("{}", outcome_json(outcome));
    } else {
        for line in outcome_lines(outcome) {
            println!("{line}");
        }
    }
}

/// An accepted update as `--json` prints it.
fn outcome_json(outcome: &UpdateOutcome) -> serde_json::Value {
    let accepted = &outcome.accepted;
    let registration = outcome.registration.as_ref();
    json!({
            "status": accepted.status,
            "correlation_id": accepted.correlation_id,
            "allowed_envs_changed": accepted.allowed_envs_changed,
            "compose_hash": registration.map(|r| r.compose_hash.to_hex()),
            "transaction_hash": registration.map(|r| r.transaction_hash.to_hex()),
            "app_id": registration.map(|r| r.app_id.to_hex()),
            "chain_id": registration.and_then(|r| r.chain_id),
            "encryption_key": outcome
                .encryption_key
                .as_ref()
                .filter(|k| k.verification() != &KeyVerification::CallerProvided)
                .map(key_json),
    })
}

/// An accepted update as text: the acceptance, and the registration if there was one.
fn outcome_lines(outcome: &UpdateOutcome) -> Vec<String> {
    let accepted = &outcome.accepted;
    let mut lines = vec![format!(
        "accepted: correlation id {}, allowed env names changed: {}",
        accepted.correlation_id.as_deref().unwrap_or("(none)"),
        accepted.allowed_envs_changed.map_or("unknown", |c| if c { "yes" } else { "no" })
    )];
    if let Some(r) = &outcome.registration {
        lines.push(format!(
            "registered compose hash {} on app {} by transaction {}",
            r.compose_hash, r.app_id, r.transaction_hash
        ));
    }
    lines
}

/// Progress on stderr: lines, and a spinner while waiting for the chain when stderr is a
/// terminal. Nothing in `--json` mode but the spinner.
struct Display {
    lines: bool,
    /// `--rpc-url` was given (a looked-up key is checked on-chain).
    rpc_given: bool,
    spinner: Option<indicatif::ProgressBar>,
}

impl Display {
    fn new(json: bool, rpc_given: bool) -> Self {
        // Drawn on stderr only while the transaction is being mined: drawn before, indicatif
        // shows an empty bar under every line, and under the question before signing.
        let spinner = std::io::stderr().is_terminal().then(indicatif::ProgressBar::hidden);
        Self { lines: !json, rpc_given, spinner }
    }

    /// A line on stderr even in `--json` mode (a warning).
    fn warn(&self, line: String) {
        match &self.spinner {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }

    /// A progress line on stderr, unless `--json`.
    fn say(&self, line: String) {
        if self.lines {
            self.warn(line);
        }
    }

    /// Clears the spinner and hides it until the next transaction.
    fn stop_spinner(&self) {
        if let Some(bar) = &self.spinner {
            bar.finish_and_clear();
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
    }

    /// Shows one step; in a fleet (`cvm` given) each line starts with the CVM's id.
    fn event(&self, cvm: Option<&str>, event: &FlowEvent) {
        let tag = |line: String| match cvm {
            Some(id) => format!("{id}: {line}"),
            None => line,
        };
        let say = |line: String| self.say(tag(line));
        match event {
            FlowEvent::EncryptionKeyVerified { public_key, verification } => {
                // The warning always; the line as the other progress lines.
                let notes = KeyNotes { lines: self.lines, rpc_given: self.rpc_given };
                notes.print_parts(*public_key, verification, &mut |line| self.warn(tag(line)));
            }
            FlowEvent::Encrypted { keys } => say(format!("encrypted {} env vars: {}", keys.len(), keys.join(", "))),
            FlowEvent::Phase1Sent { attempt } => {
                say(format!("phase 1 sent{}", if *attempt > 1 { " again" } else { "" }));
            }
            FlowEvent::RegistrationRequired { compose_hash, app_id, chain_id } => say(format!(
                "465: compose hash {compose_hash} must be registered on app contract {app_id} (chain {})",
                chain_id.map_or("unknown".into(), |c| c.to_string())
            )),
            FlowEvent::AlreadyRegistered { transaction_hash } => {
                say(format!("already registered by transaction {transaction_hash}; nothing sent"));
            }
            FlowEvent::TransactionSent { transaction_hash } => {
                say(format!("transaction sent: {transaction_hash}"));
                if let Some(bar) = &self.spinner {
                    bar.reset();
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("template"),
                    );
                    bar.set_message("waiting for the transaction to be mined");
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    bar.enable_steady_tick(std::time::Duration::from_millis(100));
                }
            }
            FlowEvent::TransactionConfirmed { transaction_hash, block_number } => {
                self.stop_spinner();
                say(format!("transaction {transaction_hash} mined in block {block_number}"));
            }
            FlowEvent::Phase2Sent { attempt } => say(format!("phase 2 sent (attempt {attempt})")),
            FlowEvent::Restarting { reason: RestartReason::LostPhase2Reply } => {
                say("466 after a lost phase-2 reply: asking phase 1 whether the update was already applied".into())
            }
            FlowEvent::Restarting { .. } => say("466: the compose hash expired; starting again from phase 1".into()),
            FlowEvent::Accepted { .. } => {}
            _ => {}
        }
    }

    fn finish(&self) {
        self.stop_spinner();
    }
}

/// The CLI's registrar: a transaction given on the command line, else the on-chain registrar
/// with the private key, on `--rpc-url` or the named chain's public endpoint.
struct CliRegistrar {
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
enum RegisterError {
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
    /// From `envs update`'s arguments; `subject` names what is updated in the question before
    /// signing.
    fn new(
        args: &UpdateArgs,
        private_key: Option<Secret>,
        rpc_url: Option<url::Url>,
        subject: String,
        stdin_read_by: Option<&'static str>,
    ) -> Self {
        Self {
            private_key,
            rpc_url,
            known: args.transaction_hash.map(KnownTransaction::new),
            lock_dir: LockDir::resolve(args.lock_dir.clone()),
            max_fee_per_gas: args.max_fee_gwei,
            gas_limit_cap: args.gas_limit_cap,
            built: tokio::sync::OnceCell::new(),
            prepare_only: args.prepare_only,
            prompt: (!args.yes).then_some(Prompt { subject, stdin_read_by }),
        }
    }

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

impl Failure {
    /// The exit code and message of a failed update; every message ends with what to do. `E`
    /// is the CLI's registrar error, as it is or shared by a fleet's CVMs.
    fn from_flow<E>(e: &FlowError<E>, json: bool, user_gave_transaction: bool) -> Self
    where
        E: std::error::Error + Borrow<RegisterError> + 'static,
    {
        let code = match e {
            FlowError::EncryptionKey(k) => key_error_exit_code(k),
            FlowError::Encrypt(_) => exit::BAD_INPUT,
            FlowError::AppIdCheck { source, .. } => app_id_check_exit_code(source),
            FlowError::Registration { source, .. } => {
                registration_exit_code(<E as Borrow<RegisterError>>::borrow(source))
            }
            _ => match e.update_error() {
                Some(u) if u.is_invalid_input() || u.is_validation() => exit::BAD_INPUT,
                Some(u) if u.is_unauthorized() || u.is_forbidden() => exit::AUTH,
                Some(u) if u.is_not_found() => exit::NOT_FOUND,
                Some(u) if u.is_conflict() => exit::CONFLICT,
                Some(u)
                    if u.is_registration_required()
                        || u.is_compose_hash_invalid()
                        || u.is_transaction_verification_failed()
                        || u.is_compose_hash_not_allowed() =>
                {
                    exit::REGISTRATION
                }
                Some(u) if u.is_not_sent() || u.is_maybe_sent() => exit::NETWORK,
                _ => exit::SERVER,
            },
        };
        let mut message = crate::error_chain(e);
        let hint = match e {
            FlowError::Registration { source, .. } => {
                registration_next_step(<E as Borrow<RegisterError>>::borrow(source))
            }
            FlowError::EncryptionKey(k) => key_next_step(k),
            _ => e.update_error().and_then(next_step),
        };
        if let Some(hint) = hint {
            message.push_str("; ");
            message.push_str(&hint);
        }
        let onchain = e.registration_error().and_then(|r| match <E as Borrow<RegisterError>>::borrow(r) {
            RegisterError::Onchain(o) => Some(o),
            _ => None,
        });
        // The transaction this run sent, as a fact (for --json).
        let sent = match onchain {
            Some(o) => o.transaction_hash(),
            None => e.registration().map(|r| r.transaction_hash),
        };
        // Whether phase 2 may cite it in a retry: not after it reverted, registered nothing, or
        // was refused by the node or by the server.
        let reusable = match onchain {
            Some(OnchainError::Timeout { .. }) => true,
            Some(OnchainError::SendFailed { maybe_sent, .. }) => *maybe_sent,
            Some(_) => false,
            None => !e
                .update_error()
                .is_some_and(|u| u.is_transaction_verification_failed() || u.is_compose_hash_not_allowed()),
        };
        if let (Some(tx), true, false) = (sent, reusable, user_gave_transaction) {
            message.push_str(&format!(
                "\ntransaction {tx} was sent: to retry without a new transaction, run the same command with --transaction-hash {tx} once it is mined"
            ));
        }
        let json = json.then(|| {
            let u = e.update_error();
            let k = e.encryption_key_error().and_then(EncryptionKeyError::request_error);
            json!({
                "error": {
                    "exit_code": code,
                    "message": message,
                    "status": u.and_then(|u| u.status()).or_else(|| k.and_then(|k| k.status())).map(|s| s.as_u16()),
                    "request_id": u.and_then(|u| u.request_id()).or_else(|| k.and_then(|k| k.request_id())),
                    // The hash being registered when that failed, else the last one registered.
                    "compose_hash": match e {
                        FlowError::Registration { compose_hash, .. } => Some(compose_hash.to_hex()),
                        _ => e.registration().map(|r| r.compose_hash.to_hex()),
                    },
                    "transaction_hash": sent.map(|tx| tx.to_hex()),
                    "transaction_reusable": sent.map(|_| reusable),
                }
            })
        });
        Self { code, message, json }
    }
}

impl Failure {
    /// A fleet update that updated nothing: the app's CVMs could not be listed, or none.
    fn from_fleet(e: &FleetError, json: bool) -> Self {
        let code = match e.request_error() {
            Some(source) => lookup_exit_code(source),
            None if matches!(e, FleetError::NoCvms { .. }) => exit::NOT_FOUND,
            None => exit::SERVER,
        };
        let message = format!("{}; nothing was sent", crate::error_chain(e));
        let json = json.then(|| request_error_json(code, &message, e.request_error()));
        Self { code, message, json }
    }

    /// A key lookup that failed or refused the key; nothing was encrypted.
    fn from_key_error(e: &EncryptionKeyError, json: bool) -> Self {
        let code = key_error_exit_code(e);
        let mut message = crate::error_chain(e);
        if let Some(hint) = key_next_step(e) {
            message.push_str("; ");
            message.push_str(&hint);
        }
        let json = json.then(|| request_error_json(code, &message, e.request_error()));
        Self { code, message, json }
    }
}

/// The exit code of a failed GET (the CVM, the KMS's key) that stopped the run before anything
/// was sent.
fn lookup_exit_code(source: &SdkError<HttpError>) -> u8 {
    match source.status().map(|s| s.as_u16()) {
        Some(404) => exit::NOT_FOUND,
        Some(401 | 403) => exit::AUTH,
        Some(400 | 422) => exit::BAD_INPUT,
        Some(_) => exit::SERVER,
        None if source.is_invalid_input() => exit::BAD_INPUT,
        None if source.is_not_sent() || source.is_maybe_sent() => exit::NETWORK,
        None => exit::SERVER,
    }
}

/// `--json`'s error object for a failure of one request (reading the CVM, its list, the KMS key).
fn request_error_json(
    code: u8,
    message: &str,
    request: Option<&phala_cloud::SdkError<phala_cloud::HttpError>>,
) -> serde_json::Value {
    json!({
        "error": {
            "exit_code": code,
            "message": message,
            "status": request.and_then(|r| r.status()).map(|s| s.as_u16()),
            "request_id": request.and_then(|r| r.request_id()),
        }
    })
}

/// The exit code of a key lookup that failed or refused the key: a refusal (the signature,
/// the app's registration, a missing or malformed key) is 6, as `verify-pubkey`'s.
fn key_error_exit_code(e: &EncryptionKeyError) -> u8 {
    match e.request_error() {
        Some(source) => lookup_exit_code(source),
        None if e.is_rpc() => exit::NETWORK,
        None if e.is_verification_failure() => exit::REGISTRATION,
        None => exit::OTHER,
    }
}

/// What to do after a key lookup failed or refused the key.
fn key_next_step(e: &EncryptionKeyError) -> Option<String> {
    if e.is_verification_failure() {
        Some("nothing was encrypted or sent: do not encrypt to this key; if you know the CVM's key from elsewhere, give it with --pubkey".into())
    } else if e.is_rpc() {
        Some("nothing was encrypted or sent: check the RPC URL (--rpc-url or ETH_RPC_URL) and the network, then run the command again".into())
    } else if e.request_error().is_some_and(|r| r.is_not_sent() || r.is_maybe_sent()) {
        Some("nothing was encrypted or sent: check the network and the API URL (PHALA_CLOUD_API_PREFIX), then run the command again".into())
    } else {
        None
    }
}

/// The exit code of a refusal by the flow's app-id check.
fn app_id_check_exit_code(e: &AppIdCheckError) -> u8 {
    match e {
        AppIdCheckError::Lookup { source, .. } => lookup_exit_code(source),
        AppIdCheckError::NotExpected { .. } => exit::BAD_INPUT,
        // NoAppId, BadAppId, Mismatch, and what later versions add.
        _ => exit::REGISTRATION,
    }
}

/// The exit code of a failed registration.
fn registration_exit_code(e: &RegisterError) -> u8 {
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
fn registration_next_step(e: &RegisterError) -> Option<String> {
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
pub(crate) fn gwei(wei: u128) -> String {
    let (whole, frac) = (wei / 1_000_000_000, wei % 1_000_000_000);
    if frac == 0 { whole.to_string() } else { format!("{whole}.{}", format!("{frac:09}").trim_end_matches('0')) }
}

/// `--max-fee-gwei`: a decimal number of gwei (at most 9 decimals) as wei.
fn parse_gwei(text: &str) -> Result<u128, String> {
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
fn parse_app_id_arg(text: &str) -> Result<AppId, String> {
    phala_cloud::parse_app_id(text).ok_or_else(|| {
        format!("{text:?} is not an app id: give the app contract's address, 40 hex digits (0x or app_ optional)")
    })
}

/// What to do next, for the errors whose own message does not say.
fn next_step(e: &phala_cloud::UpdateEnvsError) -> Option<String> {
    let request_id = e.request_id().map(|id| format!(" (request id {id})")).unwrap_or_default();
    if e.is_not_sent() {
        Some(
            "nothing was sent: check the network and the API URL (PHALA_CLOUD_API_PREFIX), then run the command again"
                .into(),
        )
    } else if e.is_maybe_sent() {
        Some("the server may have applied the update: run the same command again to make sure".into())
    } else if e.is_invalid_reply() {
        Some(
            "the server may have applied the update: check that PHALA_CLOUD_API_PREFIX is the Phala Cloud API, then run the same command again"
                .into(),
        )
    } else if e.is_server_error() || e.is_unexpected_status() {
        Some(format!("the server failed{request_id}: try again later, and quote the request id if you contact support"))
    } else if e.is_validation() {
        Some("the server refused the request's fields: check the env names and the public key".into())
    } else {
        None
    }
}
