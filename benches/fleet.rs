//! The fleet update on a chain that mines a block every 2 s (like Base): every CVM of an app of
//! 100 CVMs (`Client::env_update_app`, concurrency 8) against the baseline, a single-CVM update
//! (`Client::env_update`, the key looked up as the fleet does) of another app, measured in the
//! same run, round after round, alternating. Each round allows a new env name, so that both
//! need a registration. The transactions are counted on the chain: the signer's nonce and the
//! app's `ComposeHashAdded` logs.
//!
//! Run: `cargo bench --bench fleet --features simulator` (needs anvil, found or installed as in
//! the tests; `ANVIL=/path/to/anvil` to choose it). Goal: exactly one transaction per fleet
//! round, and a fleet's total time at most one block interval plus 1 s beyond the single-CVM
//! update's (medians).

#[path = "../tests/it/support/anvil.rs"]
#[allow(dead_code)]
mod anvil;

use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use anvil::{AnvilOptions, LocalChain, wallet_provider};
use phala_cloud::onchain::{COMPOSE_HASH_ADDED_TOPIC, OnchainRegistrar};
use phala_cloud::simulator::{ChainConfig, CvmSpec, Simulator, SimulatorConfig};
use phala_cloud::{AppId, EnvVars};

const CVMS: usize = 100;
const ROUNDS: usize = 5;
const CONCURRENCY: usize = 8;
const BLOCK_TIME: Duration = Duration::from_secs(2);

async fn nonce(chain: &LocalChain) -> u64 {
    wallet_provider(&chain.endpoint, chain.signer(0)).get_transaction_count(chain.signer(0).address()).await.unwrap()
}

async fn registrations(chain: &LocalChain, app: Address) -> usize {
    let filter = Filter::new().address(app).event_signature(COMPOSE_HASH_ADDED_TOPIC).from_block(0);
    wallet_provider(&chain.endpoint, chain.signer(0)).get_logs(&filter).await.unwrap().len()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let chain = LocalChain::start_with(AnvilOptions::base_like());
    let fleet_app = chain.deploy_app_auth(0).await;
    let solo_app = chain.deploy_app_auth(0).await;
    let cvms = (0..CVMS)
        .map(|i| CvmSpec::onchain(format!("cvm-{i:03}")).app_id(fleet_app.into()))
        .chain([CvmSpec::onchain("solo").app_id(solo_app.into())]);
    let config = SimulatorConfig::default().cvms(cvms).chain(ChainConfig::new(chain.endpoint.parse().unwrap()));
    let sim = Simulator::start(config).await.unwrap();
    let client = sim.client_builder().build().unwrap();
    let registrar = OnchainRegistrar::new(chain.signer(0), chain.endpoint.parse().unwrap()).unwrap();

    let (mut singles, mut fleets) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // A new allowed name each round: every CVM needs a registration.
        let env = EnvVars::from_pairs([(format!("ROUND_{round}"), "value".to_owned())]).unwrap();

        // Baseline: one CVM.
        let before = nonce(&chain).await;
        let started = Instant::now();
        let outcome = client.env_update("solo").env_with_key_lookup(env.clone()).run(&registrar).await.unwrap();
        let single = started.elapsed();
        assert!(outcome.registration.is_some());
        assert_eq!(nonce(&chain).await, before + 1);

        // Start the fleet a spread-out way into a block interval too.
        tokio::time::sleep(BLOCK_TIME.mul_f64(round as f64 / ROUNDS as f64)).await;
        let before = nonce(&chain).await;
        let logs_before = registrations(&chain, fleet_app).await;
        let started = Instant::now();
        let fleet = client
            .env_update_app(AppId::from(fleet_app), env.clone())
            .concurrency(CONCURRENCY)
            .run(&registrar)
            .await
            .unwrap();
        let total = started.elapsed();
        assert_eq!(fleet.updates.len(), CVMS);
        assert!(fleet.all_accepted(), "{:?}", fleet.failures().next());
        let sent = nonce(&chain).await - before;
        let logged = registrations(&chain, fleet_app).await - logs_before;
        assert_eq!(fleet.registrations().len(), 1);
        println!(
            "round {round}: single-CVM update {:.0} ms; fleet of {CVMS} {:.0} ms ({:+.0} ms); transactions sent {sent}, ComposeHashAdded {logged}",
            ms(single),
            ms(total),
            ms(total) - ms(single)
        );
        assert_eq!((sent, logged), (1, 1), "exactly one transaction per fleet round");
        singles.push(single);
        fleets.push(total);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let (single, fleet) = (median(singles), median(fleets));
    let limit = single + BLOCK_TIME + Duration::from_secs(1);
    println!("block time 2 s, {ROUNDS} rounds, {CVMS} CVMs of one app, concurrency {CONCURRENCY}");
    println!("baseline (single-CVM update, same run): median {:.0} ms", ms(single));
    println!(
        "fleet of {CVMS}: median {:.0} ms; difference {:+.0} ms, ratio {:.2}; limit (baseline + block + 1 s) {:.0} ms: {}",
        ms(fleet),
        ms(fleet) - ms(single),
        fleet.as_secs_f64() / single.as_secs_f64(),
        ms(limit),
        if fleet <= limit { "within" } else { "OVER" }
    );
    println!("transactions per fleet round: 1 (signer nonce and ComposeHashAdded logs)");
}
