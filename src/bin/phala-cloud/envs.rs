//! `phala-cloud envs …`: update (the whole two-phase flow), encrypt, verify-pubkey.

use std::ffi::OsString;
use std::path::PathBuf;

use alloy::primitives::Address;
use phala_cloud::onchain::{KmsCheckError, KmsContract};
use phala_cloud::{AppId, FleetError, FleetEvent, UpdateOutcome};
use phala_cloud::{EncryptionKeyError, KeyVerification, KmsKeyAnchor, VerifiedRecipient};
use phala_cloud::{EnvError, EnvVars, K256PublicKey, RecipientPublicKey, SignedEnvPubkey, encrypt};
use serde_json::json;

use crate::api::{ApiArgs, REMOVED_API_KEY};
use crate::output::{Display, key_error_exit_code, key_next_step, lookup_exit_code, request_error_json};
use crate::registration::{RegistrationArgs, parse_app_id_arg};
use crate::secret_arg;
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

/// `envs update`.
#[derive(clap::Args)]
pub struct UpdateArgs {
    /// The CVM: its id, UUID, app id (`app_` optional), instance id or name. Several update them all (see "Several CVMs" below).
    #[arg(value_name = "CVM", required_unless_present = "app", conflicts_with = "app")]
    cvm_ids: Vec<String>,
    /// Update every CVM of this app, as `GET /api/v1/apps/{app_id}/cvms` lists them: its app
    /// contract's address (`0x` or `app_` optional). Each CVM's 465 must name this app.
    #[arg(long, value_name = "APP_ID", value_parser = parse_app_id_arg, conflicts_with = "app_id")]
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
    #[command(flatten)]
    registration: RegistrationArgs,
    /// The allowed env names, comma-separated (default: the names being encrypted). They must
    /// include every encrypted name: a CVM drops values whose name is not allowed.
    #[arg(long, value_name = "K,…", value_delimiter = ',')]
    env_keys: Option<Vec<String>>,
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
    #[command(flatten)]
    api: ApiArgs,
    /// Print the result as JSON on stdout: one object, or with several CVMs or --app an array
    /// of one object per CVM.
    #[arg(long)]
    json: bool,
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
            let rpc_url = secret_arg::rpc_url(args.rpc_url.as_deref(), "--rpc-url (or ETH_RPC_URL)", "ETH_RPC_URL")?;
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
pub(crate) struct KeyNotes {
    pub lines: bool,
    pub rpc_given: bool,
}

impl KeyNotes {
    fn print(&self, recipient: &VerifiedRecipient, out: &mut dyn FnMut(String)) {
        self.print_parts(recipient.public_key(), recipient.verification(), out);
    }

    pub fn print_parts(
        &self,
        public_key: RecipientPublicKey,
        verification: &KeyVerification,
        out: &mut dyn FnMut(String),
    ) {
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
        message: if code == exit::NETWORK {
            format!("{message}; the key could not be checked: do not encrypt to it until it is")
        } else {
            format!("{message}; do not encrypt to this key")
        },
        json: None,
    };
    if signed.timestamp.is_none() {
        eprintln!(
            "warning: no --timestamp: the legacy signature form has no freshness window, so a key signed long ago still verifies"
        );
    }
    let (key, by) = match (args.kms_contract, args.kms_pubkey) {
        (Some(address), given) => {
            let rpc_url = secret_arg::rpc_url(args.rpc_url.as_deref(), "--rpc-url (or ETH_RPC_URL)", "ETH_RPC_URL")?
                .ok_or_else(|| Failure::usage("--kms-contract needs --rpc-url (or ETH_RPC_URL)"))?;
            let kms = KmsContract::new(address, &rpc_url).map_err(|e| Failure::usage(e.to_string()))?;
            let kms_refused = |e: KmsCheckError| {
                refused(if e.is_rpc() { exit::NETWORK } else { exit::REGISTRATION }, crate::error_chain(&e))
            };
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
    let stdin_read_by = args.registration.check_inputs(&args.api, &[("--env-file", args.source.stdin())])?;
    let rpc_url = secret_arg::rpc_url(args.rpc_url.as_deref(), "--rpc-url (or ETH_RPC_URL)", "ETH_RPC_URL")?;
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
    let private_key = args.registration.private_key()?;
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
    let registrar = args.registration.registrar(private_key, rpc_url, format!("CVM {cvm_id}"), stdin_read_by);
    if let Some(keys) = args.env_keys {
        update = update.env_keys(keys);
    }
    if let Some(app_id) = args.registration.app_id {
        update = update.expect_app_id(app_id);
    }
    if let Some(compose_hash) = args.registration.expect_compose_hash {
        update = update.expect_compose_hash(compose_hash);
    }
    let result = update.run(&registrar).await;
    display.finish();
    crate::output::finish(result, &cvm_id, args.json, args.registration.transaction_hash.is_some(), |outcome| {
        print_outcome(outcome, args.json)
    })
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
        (args.registration.prepare_only, "--prepare-only"),
    ] {
        if given {
            return Err(Failure::usage(format!(
                "{flag} is for one CVM: with several CVMs or --app each CVM's key is looked up and the env encrypted to it"
            )));
        }
    }
    let env = args.source.load()?;
    let client = args.api.client(true)?;
    let private_key = args.registration.private_key()?;
    let subject = match args.app {
        Some(app) => format!("the CVMs of app {app}"),
        None => format!("CVMs {}", args.cvm_ids.join(", ")),
    };
    let registrar = args.registration.registrar(private_key, rpc_url.clone(), subject, stdin_read_by);
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
        FleetEvent::SameCvm { cvm_id, same_as } => {
            display.say(format!("{cvm_id} is the same CVM as {same_as}: updated once, as {same_as}"))
        }
        FleetEvent::Cvm { cvm_id, event } => display.event(Some(cvm_id), event),
        _ => {}
    });
    if let Some(keys) = &args.env_keys {
        fleet = fleet.env_keys(keys.clone());
    }
    if let Some(app_id) = args.registration.app_id {
        fleet = fleet.expect_app_id(app_id);
    }
    if let Some(compose_hash) = args.registration.expect_compose_hash {
        fleet = fleet.expect_compose_hash(compose_hash);
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
                let failure = Failure::from_flow(e, args.json, args.registration.transaction_hash.is_some());
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
    for same in &outcome.same_cvm {
        let (id, same_as) = (&same.cvm_id, &same.same_as);
        if args.json {
            let ok = outcome.updates.iter().find(|u| &u.cvm_id == same_as).map(|u| u.result.is_ok());
            items.push(json!({ "cvm_id": id, "ok": ok, "same_as": same_as }));
        } else {
            println!("{id}: the same CVM as {same_as} (updated once, as {same_as})");
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
    let mut fields = crate::output::registration_json(outcome.registration.as_ref());
    fields.extend([
        ("status".to_owned(), json!(accepted.status)),
        ("correlation_id".to_owned(), json!(accepted.correlation_id)),
        ("allowed_envs_changed".to_owned(), json!(accepted.allowed_envs_changed)),
        (
            "encryption_key".to_owned(),
            json!(
                outcome
                    .encryption_key
                    .as_ref()
                    .filter(|k| k.verification() != &KeyVerification::CallerProvided)
                    .map(key_json)
            ),
        ),
    ]);
    serde_json::Value::Object(fields)
}

/// An accepted update as text: the acceptance, and the registration if there was one.
fn outcome_lines(outcome: &UpdateOutcome) -> Vec<String> {
    let accepted = &outcome.accepted;
    let mut lines = vec![format!(
        "accepted: correlation id {}, allowed env names changed: {}",
        accepted.correlation_id.as_deref().unwrap_or("(none)"),
        accepted.allowed_envs_changed.map_or("unknown", |c| if c { "yes" } else { "no" })
    )];
    lines.extend(outcome.registration.as_ref().map(crate::output::registration_line));
    lines
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
        message.push_str("; nothing was encrypted");
        if let Some(hint) = key_next_step(e) {
            message.push_str(": ");
            message.push_str(&hint);
        }
        let json = json.then(|| request_error_json(code, &message, e.request_error()));
        Self { code, message, json }
    }
}
