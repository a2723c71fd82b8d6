//! `phala-cloud simulate`: the simulator as a standalone server for clients in any language.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use phala_cloud::simulator::{ChainConfig, Simulator, SimulatorConfig};

use crate::{Failure, secret_arg};

/// Serve a local simulator of `PATCH /api/v1/cvms/{cvm_id}/envs`.
///
/// Prints one JSON line on stdout (`base_url`, `api_key`, `chain`, `verifies_chain`, `cvms` with
/// `id`, `kms`, `public_key`, `app_id`), then serves until interrupted.
#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// JSON-RPC endpoint of the chain phase 2 is verified against. Without it the simulator
    /// runs in offline mode and verifies nothing on-chain.
    #[arg(long, value_name = "URL", requires = "deployer_key")]
    rpc_url: Option<url::Url>,
    /// Private key (hex) that deploys an app contract for each contract-owned CVM and owns it.
    /// Prefer the variable to the flag: a flag shows in the process list.
    #[arg(long, env = "DEPLOYER_KEY", value_name = "KEY", hide_env_values = true, requires = "rpc_url")]
    deployer_key: Option<String>,
    /// API key to accept (a random one by default).
    #[arg(long, env = "PHALA_SIMULATOR_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Seconds a compose hash from phase 1 stays valid.
    #[arg(long, value_name = "SECS")]
    compose_hash_ttl: Option<u64>,
    /// Milliseconds an accepted update keeps its CVM busy (409 meanwhile).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    operation_duration: u64,
}

pub async fn run(args: SimulateArgs) -> Result<(), Failure> {
    let mut config = SimulatorConfig::default()
        .listen(args.listen)
        .operation_duration(Duration::from_millis(args.operation_duration));
    if let Some(key) = args.api_key {
        config = config.api_key(key);
    }
    if let Some(ttl) = args.compose_hash_ttl {
        config = config.compose_hash_ttl(Duration::from_secs(ttl));
    }
    if let (Some(rpc_url), Some(key)) = (args.rpc_url, args.deployer_key) {
        let signer: PrivateKeySigner = secret_arg::private_key(&key, "--deployer-key")?;
        config = config.chain(ChainConfig::new(rpc_url).deployer(signer));
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
    wait_for_signal().await;
    sim.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
