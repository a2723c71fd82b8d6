//! `phala-cloud demo`: the main job end to end, on an embedded default (no account, no
//! network but the npm registry the first time).
//!
//! It finds an anvil (`ANVIL`, else `anvil` on the PATH, else the pinned npm package
//! `@foundry-rs/anvil`, installed once into the cargo target directory, as the tests do) and
//! starts it; starts the simulator in-process with a contract-owned CVM whose app contract it
//! deploys on that chain; encrypts an example env to the CVM's key; and runs the two-phase
//! update in one call, printing each step: phase 1 → 465 → registration of the compose hash by
//! a real `addComposeHash` transaction → phase 2, verified on the chain → accepted. Then it
//! shows what the CVM now sees.
//!
//! Only on a machine without Node.js (so no npm to install anvil with, and no anvil given) does
//! the simulator run in offline mode, and it says so: the registration step can then only make
//! up a transaction hash, which nothing checks.
//!
//! This module uses nothing of the command line but the library's public API:
//! `examples/quickstart.rs` runs it as a library example.

use std::time::Instant;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::utils::format_ether;
use alloy::signers::local::PrivateKeySigner;
use phala_cloud::EnvVars;
use phala_cloud::onchain::OnchainRegistrar;
use phala_cloud::simulator::anvil::{self, AnvilSource};
use phala_cloud::simulator::{ChainConfig, CvmSpec, Simulator, SimulatorConfig};
use phala_cloud::{ComposeHashRegistrar, FlowEvent, Progress, RestartReason};
use phala_cloud::{Phase1Data, TransactionHash};

/// The demo's errors: each says what went wrong and what to do.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The example env, as a dotenv file holds it.
const EXAMPLE_ENV: &str = include_str!("../../../examples/example.env");

/// Runs the demo, printing each step on stdout.
pub async fn run() -> Result<(), Error> {
    let started = Instant::now();
    let anvil = start_anvil()?;
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
            "chain: none: OFFLINE MODE, phase 2 is not verified on any chain.\n       This machine has no Node.js/npm to install anvil with: install Node.js (or anvil itself,\n       or set ANVIL=/path/to/anvil) to see the real registration."
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
        (Some(anvil), Some(owner)) => {
            // `phala-cloud envs update` asks here, showing the plan; the demo shows it and goes on.
            let registrar =
                OnchainRegistrar::new(owner, anvil.endpoint_url())?.confirm_before_signing(|plan| async move {
                    println!(
                        "   about to sign addComposeHash from {} (nonce {}): gas {}, estimated cost {} ETH",
                        plan.from,
                        plan.nonce,
                        plan.gas_estimate,
                        format_ether(plan.estimated_cost_wei()).trim_end_matches('0').trim_end_matches('.'),
                    );
                    Ok::<(), std::convert::Infallible>(())
                });
            update.run(registrar).await?
        }
        _ => update.run(OfflineDemoRegistrar).await?,
    };

    let seen = sim.cvm_env(&cvm.id).expect("seeded");
    if seen != env {
        return Err("the CVM does not see what was sent".into());
    }
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

/// anvil from `ANVIL`, the PATH or the cargo target directory, installed there with npm if
/// none is found, on a free port. `None` only when there is no Node.js to install it with.
fn start_anvil() -> Result<Option<AnvilInstance>, Error> {
    let root = anvil::default_install_root().map_err(|e| format!("{e}; {}", anvil::how_to_install()))?;
    let found = match anvil::find(&root).map_err(|e| format!("{e}; {}", anvil::how_to_install()))? {
        Some(found) => found,
        None => {
            println!(
                "anvil: none given (ANVIL) or on the PATH; installing {} with npm into {} (once: later runs reuse it)",
                anvil::npm_spec(),
                anvil::install_dir(&root).display()
            );
            match anvil::install(&root) {
                Ok(found) => found,
                Err(e) if e.is_no_node_js() => {
                    println!("anvil: not installed: {e}");
                    return Ok(None);
                }
                Err(e) => return Err(format!("installing anvil failed: {e}; {}", anvil::how_to_install()).into()),
            }
        }
    };
    let path = found.path.display();
    match found.source {
        AnvilSource::Env => println!("anvil: {path} (ANVIL)"),
        AnvilSource::Path => println!("anvil: {path} (on the PATH)"),
        AnvilSource::JustInstalled(took) => {
            println!("anvil: installed {} in {:.1} s: {path}", anvil::npm_spec(), took.as_secs_f64())
        }
        _ => println!("anvil: {path} (installed by an earlier run)"),
    }
    let instance = Anvil::at(&found.path)
        .timeout(30_000)
        .try_spawn()
        .map_err(|e| format!("could not start anvil ({path}): {e}; {}", anvil::how_to_install()))?;
    Ok(Some(instance))
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
