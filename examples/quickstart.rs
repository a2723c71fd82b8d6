//! The main job end to end, on an embedded default: no account, no network.
//!
//! ```text
//! cargo run --example quickstart --features simulator
//! ```
//!
//! It starts the simulator in-process with a contract-owned CVM, encrypts an example env to the
//! CVM's key, and runs the two-phase update in one call, printing each step: phase 1 → 465 →
//! registration of the compose hash → phase 2 → accepted. Then it shows what the CVM now sees.
//!
//! With `anvil` on the PATH (or `ANVIL=/path/to/anvil`) the chain is real: the simulator
//! deploys the app contract on a local anvil, the compose hash is registered by a real
//! `addComposeHash` transaction, and phase 2 is verified against the chain. Without it the
//! simulator runs in offline mode, and the registration step can only make up a transaction
//! hash, which nothing checks; the output says which.

use std::time::Instant;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::signers::local::PrivateKeySigner;
use phala_cloud::EnvVars;
use phala_cloud::onchain::OnchainRegistrar;
use phala_cloud::simulator::{ChainConfig, CvmSpec, Simulator, SimulatorConfig};
use phala_cloud::{ComposeHashRegistrar, FlowEvent, Progress, RestartReason};
use phala_cloud::{Phase1Data, TransactionHash};

/// The example env, as a dotenv file holds it.
const EXAMPLE_ENV: &str = include_str!("example.env");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let anvil = start_anvil();
    let mut config = SimulatorConfig::default().cvms([CvmSpec::onchain("quickstart-cvm")]);
    let owner: Option<PrivateKeySigner> = anvil.as_ref().map(|a| a.keys()[0].clone().into());
    match (&anvil, &owner) {
        (Some(anvil), Some(owner)) => {
            println!(
                "chain: a real anvil node at {} (chain {}); the simulator verifies phase 2 on it",
                anvil.endpoint(),
                anvil.chain_id()
            );
            config = config.chain(ChainConfig::new(anvil.endpoint_url()).deployer(owner.clone()));
        }
        _ => println!(
            "chain: none (no anvil on the PATH or in ANVIL): OFFLINE MODE, phase 2 is not verified on any chain.\n       Install anvil (npm install -g @foundry-rs/anvil) to see the real registration."
        ),
    }
    let sim = Simulator::start(config).await?;
    let cvm = sim.cvm("quickstart-cvm").expect("seeded").clone();
    println!(
        "simulator: {} serving CVM {} (contract-owned KMS, app contract {}, public key {})",
        sim.base_url(),
        cvm.id,
        cvm.app_id.expect("contract-owned").to_hex(),
        cvm.public_key
    );

    let env = EnvVars::from_dotenv_str(EXAMPLE_ENV)?;
    println!("env: {} variables, values hidden: {env:?}", env.len());

    let client = sim.client_builder().build()?;
    let update = client.env_update(&cvm.id).env(env.clone(), cvm.public_key).on_event(print_event);
    let outcome = match (&anvil, owner) {
        (Some(anvil), Some(owner)) => update.run(OnchainRegistrar::new(owner, anvil.endpoint_url())?).await?,
        _ => update.run(OfflineDemoRegistrar).await?,
    };

    let seen = sim.cvm_env(&cvm.id).expect("seeded");
    assert_eq!(seen, env, "the CVM sees what was sent");
    println!(
        "the CVM now sees {} variables (allowed names: {:?}):",
        seen.len(),
        sim.allowed_env_names(&cvm.id).unwrap_or_default()
    );
    for (key, value) in seen.iter() {
        println!("  {key} = {}", preview(value));
    }
    if let Some(r) = outcome.registration {
        println!("registered compose hash {} by transaction {}", r.compose_hash, r.transaction_hash);
    }
    println!(
        "done in {:.1} s; the server log has {} requests",
        started.elapsed().as_secs_f64(),
        sim.operations().len()
    );
    Ok(())
}

fn print_event(event: &FlowEvent) {
    match event {
        FlowEvent::Encrypted { keys } => {
            println!("1. encrypted {} variables to the CVM's X25519 key: {}", keys.len(), keys.join(", "))
        }
        FlowEvent::Phase1Sent { attempt } => println!("2. phase 1 sent (attempt {attempt}): encrypted_env + env_keys"),
        FlowEvent::RegistrationRequired { compose_hash, app_id, chain_id } => println!(
            "3. 465 registration required: compose hash {compose_hash} on app contract {app_id} (chain {})",
            chain_id.map_or("?".into(), |c| c.to_string())
        ),
        FlowEvent::TransactionSent { transaction_hash } => println!("4. addComposeHash sent: {transaction_hash}"),
        FlowEvent::TransactionConfirmed { block_number, .. } => println!("   mined in block {block_number}"),
        FlowEvent::AlreadyRegistered { transaction_hash } => println!("4. already registered by {transaction_hash}"),
        FlowEvent::Phase2Sent { attempt } => {
            println!("5. phase 2 sent (attempt {attempt}): same request + compose_hash + transaction_hash")
        }
        FlowEvent::Restarting { reason: RestartReason::LostPhase2Reply } => {
            println!("   466 after a lost reply: asking phase 1 whether the update was applied")
        }
        FlowEvent::Restarting { .. } => println!("   466: the hash expired, starting again from phase 1"),
        FlowEvent::Accepted { correlation_id } => {
            println!("6. accepted: correlation id {}", correlation_id.as_deref().unwrap_or("(none)"));
        }
        other => println!("   {other:?}"),
    }
}

/// Shows the start of a value: this is example data, but the habit matters.
fn preview(value: &str) -> String {
    let head: String = value.chars().take(6).collect();
    format!("{head}… ({} bytes)", value.len())
}

/// anvil from `ANVIL` or the PATH, on a free port; `None` if there is none.
fn start_anvil() -> Option<AnvilInstance> {
    let anvil = match std::env::var_os("ANVIL").filter(|p| !p.is_empty()) {
        Some(path) => Anvil::at(path),
        None => Anvil::new(),
    };
    match anvil.timeout(30_000).try_spawn() {
        Ok(instance) => Some(instance),
        Err(e) => {
            eprintln!("(anvil not started: {e})");
            None
        }
    }
}

/// Offline mode only: there is no chain to send a transaction to, so this makes up a
/// transaction hash, and says so. The offline simulator checks its form, nothing else.
struct OfflineDemoRegistrar;

impl ComposeHashRegistrar for OfflineDemoRegistrar {
    type Error = std::convert::Infallible;

    async fn register(&self, data: &Phase1Data, _: &Progress<'_>) -> Result<TransactionHash, Self::Error> {
        let mut bytes = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
        let tx = TransactionHash(bytes);
        println!(
            "4. OFFLINE: no chain, so no transaction registers {}; using the made-up hash {tx}",
            data.compose_hash
        );
        Ok(tx)
    }
}
