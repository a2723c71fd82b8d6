//! `phala-cloud compose update` and `phala-cloud cvms update`: a change of a CVM's compose
//! (docker compose file, pre-launch script, allowed env names) or settings (resources, image,
//! visibility), through the library's [`CvmPatch`](phala_cloud::CvmPatch): phase 1 → 465 →
//! addComposeHash → phase 2, with the same registration flags, question before signing, output
//! and exit codes as `envs update`.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use phala_cloud::{CvmPatch, CvmPatchOutcome, UpdateCvmRequest};
use serde_json::json;

use crate::Failure;
use crate::api::ApiArgs;
use crate::output::Display;
use crate::registration::RegistrationArgs;
use crate::secret_arg;

/// The largest compose file or pre-launch script read (1 MiB): a larger one is refused before
/// anything is sent.
pub const MAX_TEXT_FILE_BYTES: u64 = 1024 * 1024;

/// `compose …`.
#[derive(clap::Subcommand)]
pub enum ComposeCommand {
    /// Replace a CVM's docker-compose.yml (and/or its pre-launch script), registering the new
    /// compose hash on-chain when the CVM's KMS is contract-owned (phase 1 → 465 →
    /// addComposeHash → phase 2). With -f only it sends PATCH /api/v1/cvms/{CVM}/docker-compose;
    /// with --pre-launch-script only, PATCH /api/v1/cvms/{CVM}/pre-launch-script; with both,
    /// the unified PATCH /api/v1/cvms/{CVM} carrying the two, so that they make one compose
    /// hash and one registration (not two). Before signing, it shows the transaction (chain,
    /// app contract, compose hash, cost) and asks.
    #[command(after_help = "Examples:
  PHALA_CLOUD_API_KEY=… PRIVATE_KEY=… phala-cloud compose update app_4f2c… -f docker-compose.yml --rpc-url https://mainnet.base.org   # asks before signing
  PRIVATE_KEY=… phala-cloud compose update app_4f2c… -f docker-compose.yml --pre-launch-script pre-launch.sh --yes --json   # one registration for both
  phala-cloud compose update app_4f2c… -f docker-compose.yml --transaction-hash 0x9a7b…   # registered elsewhere: signs nothing

--prepare-only prints the compose hash and the addComposeHash call for a wallet to sign; finish
with the same command and --transaction-hash. A CVM with a centralized KMS (or a change that
leaves the compose hash allowed) is updated at phase 1, with nothing to register.")]
    Update(Box<ComposeUpdateArgs>),
}

/// `cvms …`.
#[derive(clap::Subcommand)]
pub enum CvmsCommand {
    /// Change a CVM through the unified PATCH /api/v1/cvms/{CVM}: only the fields given are
    /// sent. A change of the app compose (--compose-file, --pre-launch-script, --allowed-env…)
    /// makes a new compose hash, registered on-chain when the CVM's KMS is contract-owned
    /// (phase 1 → 465 → addComposeHash → phase 2), with the question before signing; a change
    /// that leaves the compose hash as it is (resources such as --vcpu) is accepted at phase 1.
    #[command(after_help = "Examples:
  PHALA_CLOUD_API_KEY=… phala-cloud cvms update app_4f2c… --vcpu 4 --memory 8192   # resources: nothing to register
  PRIVATE_KEY=… phala-cloud cvms update app_4f2c… --compose-file docker-compose.yml --allowed-env API_TOKEN --allowed-env LOG_LEVEL --rpc-url https://mainnet.base.org
  phala-cloud cvms update app_4f2c… --public-logs false --public-sysinfo false --json

The values are sent as UpdateCvmRequest takes them (memory and disk size in the API's units;
the spec says MB). --encrypted-env takes a blob made by `envs encrypt`, with --allowed-env naming
what it holds; `envs update` does the lookup, encryption and update in one.")]
    Update(Box<CvmsUpdateArgs>),
}

/// What `compose update` uploads: -f, --pre-launch-script, or both.
#[derive(clap::Args)]
#[group(required = true, multiple = true)]
pub struct ComposeFiles {
    /// The docker-compose.yml to give the CVM (at most 1 MiB of UTF-8 text); `-` reads it from
    /// stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// The shell script the CVM runs before its containers start (at most 1 MiB of UTF-8 text);
    /// `-` reads it from stdin.
    #[arg(long, value_name = "FILE")]
    pre_launch_script: Option<PathBuf>,
}

/// `compose update`.
#[derive(clap::Args)]
pub struct ComposeUpdateArgs {
    /// The CVM: its id, UUID, app id (`app_` optional), instance id or name.
    #[arg(value_name = "CVM")]
    cvm_id: String,
    #[command(flatten)]
    files: ComposeFiles,
    #[command(flatten)]
    target: PatchTarget,
}

/// `cvms update`.
#[derive(clap::Args)]
pub struct CvmsUpdateArgs {
    /// The CVM: its id, UUID, app id (`app_` optional), instance id or name.
    #[arg(value_name = "CVM")]
    cvm_id: String,
    #[command(flatten)]
    fields: UpdateFields,
    #[command(flatten)]
    target: PatchTarget,
}

/// The fields of `UpdateCvmRequest` that `cvms update` sets (a body that changes nothing is
/// refused before sending).
#[derive(clap::Args)]
pub struct UpdateFields {
    /// The docker-compose.yml to give the CVM (at most 1 MiB of UTF-8 text); `-` reads it from
    /// stdin.
    #[arg(long, value_name = "FILE")]
    compose_file: Option<PathBuf>,
    /// The shell script the CVM runs before its containers start (at most 1 MiB of UTF-8 text);
    /// `-` reads it from stdin.
    #[arg(long, value_name = "FILE")]
    pre_launch_script: Option<PathBuf>,
    /// An env name the CVM accepts (repeatable, or comma-separated): the list given replaces
    /// the CVM's allowed env names. The CVM drops an encrypted value whose name is not allowed.
    #[arg(long = "allowed-env", value_name = "NAME", value_delimiter = ',')]
    allowed_envs: Vec<String>,
    /// An `encrypted_env` blob (hex) made by `envs encrypt`, sent as it is.
    #[arg(long, value_name = "HEX")]
    encrypted_env: Option<String>,
    /// The number of vCPUs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    vcpu: Option<u32>,
    /// The memory, in MB.
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u32).range(1..))]
    memory: Option<u32>,
    /// The disk size, as the API's disk_size takes it (MB in the spec).
    #[arg(long, value_name = "SIZE", value_parser = clap::value_parser!(u32).range(1..))]
    disk_size: Option<u32>,
    /// The OS image: its name or slug, as GET /api/v1/os-images lists them.
    #[arg(long, value_name = "NAME")]
    image: Option<String>,
    /// Whether the CVM's container logs are public.
    #[arg(long, value_name = "true|false")]
    public_logs: Option<bool>,
    /// Whether the CVM's system info is public.
    #[arg(long, value_name = "true|false")]
    public_sysinfo: Option<bool>,
    /// Whether the CVM's TCB attestation info is public.
    #[arg(long, value_name = "true|false")]
    public_tcbinfo: Option<bool>,
    /// How long a restart waits for a graceful shutdown, in seconds (10 to 1200).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u16).range(10..=1200))]
    shutdown_timeout: Option<u16>,
    /// With a restart: stop the CVM hard if the graceful shutdown times out (for a CVM that
    /// does not answer shutdown signals). Alone it changes nothing, so it needs another field.
    #[arg(long)]
    allow_force_stop: bool,
}

/// What both commands share beyond the CVM and its change: the registration, the API, the
/// chain, the output.
#[derive(clap::Args)]
pub struct PatchTarget {
    #[command(flatten)]
    registration: RegistrationArgs,
    /// JSON-RPC URL of the KMS chain, for the registration (default: a public endpoint of the
    /// chain phase 1 names). Never shown in messages: providers put API keys in it.
    #[arg(long, env = "ETH_RPC_URL", value_name = "URL", hide_env_values = true)]
    rpc_url: Option<OsString>,
    #[command(flatten)]
    api: ApiArgs,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub async fn run_compose(command: ComposeCommand) -> Result<(), Failure> {
    match command {
        ComposeCommand::Update(args) => compose_update(*args).await,
    }
}

pub async fn run_cvms(command: CvmsCommand) -> Result<(), Failure> {
    match command {
        CvmsCommand::Update(args) => cvms_update(*args).await,
    }
}

/// What to send: one of the three operations.
enum Change {
    DockerCompose(String),
    PreLaunchScript(String),
    Unified(Box<UpdateCvmRequest>),
}

async fn compose_update(args: ComposeUpdateArgs) -> Result<(), Failure> {
    let ComposeUpdateArgs { cvm_id, files, target } = args;
    let readers = [("--file", files.file.as_deref()), ("--pre-launch-script", files.pre_launch_script.as_deref())];
    let stdin_read_by = target.registration.check_inputs(&target.api, &readers)?;
    let compose = files.file.as_deref().map(|p| read_text_file("--file", p)).transpose()?;
    let script = files.pre_launch_script.as_deref().map(|p| read_text_file("--pre-launch-script", p)).transpose()?;
    let change = match (compose, script) {
        (Some(compose), None) => Change::DockerCompose(compose),
        (None, Some(script)) => Change::PreLaunchScript(script),
        (compose, script) => Change::Unified(Box::new(request(compose, script))),
    };
    patch(&cvm_id, change, &target, stdin_read_by).await
}

async fn cvms_update(args: CvmsUpdateArgs) -> Result<(), Failure> {
    let CvmsUpdateArgs { cvm_id, fields, target } = args;
    let readers = [
        ("--compose-file", fields.compose_file.as_deref()),
        ("--pre-launch-script", fields.pre_launch_script.as_deref()),
    ];
    let stdin_read_by = target.registration.check_inputs(&target.api, &readers)?;
    let compose = fields.compose_file.as_deref().map(|p| read_text_file("--compose-file", p)).transpose()?;
    let script = fields.pre_launch_script.as_deref().map(|p| read_text_file("--pre-launch-script", p)).transpose()?;
    let mut body = request(compose, script);
    body.allowed_envs = (!fields.allowed_envs.is_empty()).then_some(fields.allowed_envs);
    body.encrypted_env = fields.encrypted_env;
    body.vcpu = fields.vcpu.map(i64::from);
    body.memory = fields.memory.map(i64::from);
    body.disk_size = fields.disk_size.map(i64::from);
    body.image = fields.image;
    body.public_logs = fields.public_logs;
    body.public_sysinfo = fields.public_sysinfo;
    body.public_tcbinfo = fields.public_tcbinfo;
    body.shutdown_timeout = fields.shutdown_timeout.map(i64::from);
    body.allow_force_stop = fields.allow_force_stop;
    patch(&cvm_id, Change::Unified(Box::new(body)), &target, stdin_read_by).await
}

/// A unified PATCH body with the compose file and the script given, and nothing else.
fn request(docker_compose_file: Option<String>, pre_launch_script: Option<String>) -> UpdateCvmRequest {
    UpdateCvmRequest { docker_compose_file, pre_launch_script, ..Default::default() }
}

/// Runs one CVM's patch and prints its outcome.
async fn patch(
    cvm_id: &str,
    change: Change,
    target: &PatchTarget,
    stdin_read_by: Option<&'static str>,
) -> Result<(), Failure> {
    let rpc_url = secret_arg::rpc_url(target.rpc_url.as_deref(), "--rpc-url (or ETH_RPC_URL)", "ETH_RPC_URL")?;
    let client = target.api.client(true)?;
    let private_key = target.registration.private_key()?;
    let registration = &target.registration;
    let registrar = registration.registrar(private_key, rpc_url, format!("CVM {cvm_id}"), stdin_read_by);
    let display = Display::new(target.json, false);
    let mut update: CvmPatch<'_> = match change {
        Change::DockerCompose(yaml) => client.docker_compose_patch(cvm_id, yaml),
        Change::PreLaunchScript(script) => client.pre_launch_script_patch(cvm_id, script),
        Change::Unified(body) => client.cvm_patch(cvm_id, *body),
    };
    update = update.on_event(|e| display.event(None, e));
    if registration.prepare_only {
        update = update.prepare_only();
    }
    if let Some(app_id) = registration.app_id {
        update = update.expect_app_id(app_id);
    }
    if let Some(compose_hash) = registration.expect_compose_hash {
        update = update.expect_compose_hash(compose_hash);
    }
    let result = update.run(&registrar).await;
    display.finish();
    let json = target.json;
    crate::output::finish(result, cvm_id, json, registration.transaction_hash.is_some(), |outcome| {
        print_outcome(outcome, json)
    })
}

fn print_outcome(outcome: &CvmPatchOutcome, json: bool) {
    let accepted = &outcome.accepted;
    if json {
        let mut fields = crate::output::registration_json(outcome.registration.as_ref());
        fields.extend([
            ("status".to_owned(), accepted.body.get("status").cloned().unwrap_or_default()),
            ("correlation_id".to_owned(), json!(accepted.correlation_id)),
            ("request_id".to_owned(), json!(accepted.request_id)),
            ("response".to_owned(), accepted.body.clone()),
        ]);
        println!("{}", serde_json::Value::Object(fields));
        return;
    }
    println!("accepted: correlation id {}", accepted.correlation_id.as_deref().unwrap_or("(none)"));
    if let Some(r) = &outcome.registration {
        println!("{}", crate::output::registration_line(r));
    }
}

/// A compose file or script named by `flag`: UTF-8 text, not empty, at most
/// [`MAX_TEXT_FILE_BYTES`]; `-` reads stdin. Every failure is bad input, before anything is
/// sent; the content is never shown (a compose file may hold secrets).
fn read_text_file(flag: &str, path: &Path) -> Result<String, Failure> {
    let (origin, reader): (String, Box<dyn Read>) = if path.as_os_str() == "-" {
        (format!("{flag} - (stdin)"), Box::new(std::io::stdin()))
    } else {
        let origin = format!("{flag} {}", path.display());
        let file = std::fs::File::open(path).map_err(|e| Failure::usage(format!("{origin}: cannot open it: {e}")))?;
        (origin, Box::new(file))
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_TEXT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::usage(format!("{origin}: cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_TEXT_FILE_BYTES {
        return Err(Failure::usage(format!(
            "{origin}: larger than {} KiB: give the file itself, not an archive or an image",
            MAX_TEXT_FILE_BYTES / 1024
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        Failure::usage(format!("{origin}: not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()))
    })?;
    if text.trim().is_empty() {
        return Err(Failure::usage(format!("{origin}: the file is empty")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, content: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("phala-cli-patch-{name}-{}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn a_text_file_must_exist_hold_utf8_and_not_be_empty_or_too_large() {
        let refused = |path: &Path| read_text_file("-f", path).unwrap_err().message;
        let missing = std::env::temp_dir().join("phala-cli-patch-no-such-file");
        assert!(refused(&missing).contains("cannot open it"), "{}", refused(&missing));
        let empty = temp_file("empty", b" \n\t\n");
        assert!(refused(&empty).ends_with("the file is empty"), "{}", refused(&empty));
        let binary = temp_file("binary", b"services:\n  \xff\xfe\n");
        assert!(refused(&binary).contains("not UTF-8 text (invalid byte at offset 12)"), "{}", refused(&binary));
        let large = temp_file("large", &vec![b'#'; MAX_TEXT_FILE_BYTES as usize + 1]);
        assert!(refused(&large).contains("larger than 1024 KiB"), "{}", refused(&large));
        let exact = temp_file("exact", &vec![b'#'; MAX_TEXT_FILE_BYTES as usize]);
        assert_eq!(read_text_file("-f", &exact).unwrap().len(), MAX_TEXT_FILE_BYTES as usize);
        let ok = temp_file("ok", b"services:\n  app:\n    image: nginx\n");
        assert_eq!(read_text_file("-f", &ok).unwrap(), "services:\n  app:\n    image: nginx\n");
        for path in [empty, binary, large, exact, ok] {
            std::fs::remove_file(path).unwrap();
        }
    }
}
