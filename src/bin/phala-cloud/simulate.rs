//! `phala-cloud simulate`: the simulator as a standalone server for clients in any language.

use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use phala_cloud::simulator::{ChainConfig, Simulator, SimulatorConfig};

use crate::Failure;
use crate::secret_arg::{self, Removed};

const REMOVED_DEPLOYER_KEY: Removed =
    Removed { flag: "--deployer-key", var: "DEPLOYER_KEY", file_flag: "--deployer-key-file" };
const REMOVED_API_KEY: Removed =
    Removed { flag: "--api-key", var: "PHALA_SIMULATOR_API_KEY", file_flag: "--api-key-file" };

/// `simulate --help`'s examples.
pub const EXAMPLES: &str = "Examples:
  phala-cloud simulate
  DEPLOYER_KEY=0xac09… phala-cloud simulate --rpc-url http://127.0.0.1:8545 --listen 127.0.0.1:8000
  phala-cloud simulate --compose-hash-ttl 5 --operation-duration 500";

/// Serve a local simulator of `PATCH /api/v1/cvms/{cvm_id}/envs`.
///
/// Prints one JSON line on stdout (`base_url`, `api_key`, `chain`, `verifies_chain`, `cvms` with
/// `id`, `kms`, `public_key`, `app_id`), then serves until interrupted.
#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// JSON-RPC endpoint of the chain phase 2 is verified against; needs a deployer key. Without
    /// it the simulator runs in offline mode and verifies nothing on-chain. Shown only as its
    /// origin (scheme, host, port), never its path, query or credentials: providers put API
    /// keys there. Give such a URL in PHALA_SIMULATOR_RPC_URL, not on the command line (where
    /// the process list shows it).
    #[arg(long, env = "PHALA_SIMULATOR_RPC_URL", value_name = "URL", hide_env_values = true)]
    rpc_url: Option<OsString>,
    /// A file holding the private key (hex) that deploys an app contract for each
    /// contract-owned CVM and owns it; `-` reads one line from stdin. Default: the DEPLOYER_KEY
    /// variable. Used with --rpc-url only.
    #[arg(long, value_name = "PATH")]
    deployer_key_file: Option<PathBuf>,
    /// A file holding the API key to accept; `-` reads one line from stdin. Default: the
    /// PHALA_SIMULATOR_API_KEY variable, else a random key.
    #[arg(long, value_name = "PATH")]
    api_key_file: Option<PathBuf>,
    /// Seconds a compose hash from phase 1 stays valid.
    #[arg(long, value_name = "SECS")]
    compose_hash_ttl: Option<u64>,
    /// Milliseconds an accepted update keeps its CVM busy (409 meanwhile).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    operation_duration: u64,
    /// Removed: refused, without using or showing the value.
    #[arg(long = "deployer-key", hide = true, num_args = 0..=1, default_missing_value = "", action = clap::ArgAction::Append)]
    removed_deployer_key: Vec<OsString>,
    /// Removed: refused, without using or showing the value.
    #[arg(long = "api-key", hide = true, num_args = 0..=1, default_missing_value = "", action = clap::ArgAction::Append)]
    removed_api_key: Vec<OsString>,
}

pub async fn run(args: SimulateArgs) -> Result<(), Failure> {
    secret_arg::refuse_removed(&REMOVED_DEPLOYER_KEY, &args.removed_deployer_key)?;
    secret_arg::refuse_removed(&REMOVED_API_KEY, &args.removed_api_key)?;
    secret_arg::one_stdin(&[
        ("--deployer-key-file", args.deployer_key_file.as_deref()),
        ("--api-key-file", args.api_key_file.as_deref()),
    ])?;
    let rpc_url = secret_arg::rpc_url(
        args.rpc_url.as_deref(),
        "--rpc-url (or PHALA_SIMULATOR_RPC_URL)",
        "PHALA_SIMULATOR_RPC_URL",
    )?;
    let api_key = secret_arg::load(args.api_key_file.as_deref(), "--api-key-file", "PHALA_SIMULATOR_API_KEY")?;
    let deployer = secret_arg::load(args.deployer_key_file.as_deref(), "--deployer-key-file", "DEPLOYER_KEY")?;
    let mut config = SimulatorConfig::default()
        .listen(args.listen)
        .operation_duration(Duration::from_millis(args.operation_duration));
    if let Some(key) = api_key {
        config = config.api_key(key.expose());
    }
    if let Some(ttl) = args.compose_hash_ttl {
        config = config.compose_hash_ttl(Duration::from_secs(ttl));
    }
    match (rpc_url, deployer) {
        (Some(rpc_url), Some(key)) => {
            let signer: PrivateKeySigner = secret_arg::private_key(key.expose(), key.origin())?;
            config = config.chain(ChainConfig::new(rpc_url).deployer(signer));
        }
        (Some(_), None) => {
            return Err(Failure::usage(
                "--rpc-url needs the key that deploys the app contracts: set DEPLOYER_KEY, or use --deployer-key-file PATH",
            ));
        }
        (None, Some(key)) => {
            return Err(Failure::usage(format!(
                "{} is given but not --rpc-url, the chain to deploy on: add --rpc-url URL, or leave the key out for offline mode",
                key.origin()
            )));
        }
        (None, None) => {}
    }
    let sim = Simulator::start(config).await.map_err(|e| Failure::usage(e.to_string()))?;
    if !sim.verifies_chain() {
        eprintln!(
            "phala-cloud simulate: OFFLINE MODE, no --rpc-url: phase 2 is not verified against any chain \
             (any well-formed transaction hash passes). For demos only."
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", sim.describe()).and_then(|()| out.flush()).map_err(|e| Failure::usage(e.to_string()))?;
    drop(out);
    sim.serve_until_stopped().await.map_err(|e| Failure {
        code: crate::exit::OTHER,
        message: format!("cannot wait for Ctrl-C or SIGTERM: {e}"),
        json: None,
    })
}
