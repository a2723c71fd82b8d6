//! `phala-cloud envs update` over several CVMs and `--app`: one transaction for the app, a
//! line (or a JSON array item) per CVM, a failing CVM that stops no other and sets the exit
//! code, and a rerun that sends no second transaction.
#![cfg(feature = "cli")]

use crate::support;

use std::process::{Command, Output, Stdio};

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use phala_cloud::onchain::COMPOSE_HASH_ADDED_TOPIC;
use phala_cloud::simulator::{CvmSpec, Simulator, SimulatorConfig};
use phala_cloud::{AppId, EnvVars};
use serde_json::Value;
use support::anvil::{AnvilOptions, LocalChain};

const OURS: [&str; 8] = [
    "PHALA_CLOUD_API_KEY",
    "PHALA_CLOUD_API_PREFIX",
    "PRIVATE_KEY",
    "ETH_RPC_URL",
    "DEPLOYER_KEY",
    "PHALA_CLOUD_LOCK_DIR",
    "XDG_RUNTIME_DIR",
    "TMPDIR",
];

async fn cli(args: &[&str], envs: &[(&'static str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phala-cloud"));
    for var in OURS {
        cmd.env_remove(var);
    }
    cmd.args(args).envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn registrations(chain: &LocalChain, app: Address) -> usize {
    let filter = Filter::new().address(app).event_signature(COMPOSE_HASH_ADDED_TOPIC).from_block(0);
    chain.provider(0).get_logs(&filter).await.unwrap().len()
}

async fn nonce(chain: &LocalChain) -> u64 {
    chain.provider(0).get_transaction_count(chain.signer(0).address()).await.unwrap()
}

/// A simulator on `chain` with `n` CVMs of one app owned by dev account 0, and the variables
/// for the CLI (API, owner's key, RPC, a lock directory of its own).
async fn setup(chain: &LocalChain, n: usize, name: &str) -> (Simulator, Address, Vec<(&'static str, String)>) {
    let app = chain.deploy_app_auth(0).await;
    let config = SimulatorConfig::default()
        .cvms((0..n).map(|i| CvmSpec::onchain(format!("cvm-{i}")).app_id(AppId::from(app))))
        .chain(chain.sim_chain());
    let sim = Simulator::start(config).await.unwrap();
    let lock_dir = std::env::temp_dir().join(format!("phala-cli-fleet-{name}-{}", std::process::id()));
    let env = vec![
        ("PHALA_CLOUD_API_KEY", sim.api_key().to_owned()),
        ("PHALA_CLOUD_API_PREFIX", format!("{}/api/v1", sim.base_url())),
        ("PRIVATE_KEY", const_hex::encode(chain.signer(0).to_bytes())),
        ("ETH_RPC_URL", chain.endpoint.clone()),
        ("PHALA_CLOUD_LOCK_DIR", lock_dir.to_str().unwrap().to_owned()),
    ];
    (sim, app, env)
}

fn vars() -> EnvVars {
    EnvVars::from_pairs([("SHARED", "1"), ("TOKEN", "x")]).unwrap()
}

#[tokio::test]
async fn several_cvms_with_one_missing_send_one_transaction_and_exit_with_its_code() {
    let chain = LocalChain::start_with(AnvilOptions { block_time: Some(1), ..AnvilOptions::default() });
    let (sim, app, env) = setup(&chain, 3, "many").await;
    let before = nonce(&chain).await;
    let out =
        cli(&["envs", "update", "cvm-0", "nope", "cvm-1", "cvm-2", "-e", "SHARED=1", "-e", "TOKEN=x", "--yes"], &env)
            .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "the missing CVM's 404\n{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "one line per CVM: {stdout}");
    assert!(lines[0].starts_with("cvm-0: accepted"), "{stdout}");
    assert!(lines[1].starts_with("nope: failed (exit 4)"), "{stdout}");
    assert!(lines[2].starts_with("cvm-1: accepted") && lines[3].starts_with("cvm-2: accepted"), "{stdout}");
    assert!(stderr.contains("1 of 4 CVMs were not updated"), "{stderr}");
    assert!(!stderr.contains(&env[2].1), "the private key is never shown");
    // The registration is announced once, with the CVMs that need it, after every phase 1.
    let announced: Vec<&str> = stderr.lines().filter(|l| l.contains("one registration of compose hash")).collect();
    assert_eq!(announced.len(), 1, "{stderr}");
    let expected = format!("on app contract {} for 3 CVMs: cvm-0, cvm-1, cvm-2", format!("{app}").to_lowercase());
    assert!(announced[0].ends_with(&expected), "{stderr}");
    for id in ["cvm-0", "cvm-1", "cvm-2"] {
        assert_eq!(sim.cvm_env(id).unwrap(), vars());
    }
    assert_eq!(registrations(&chain, app).await, 1);
    assert_eq!(nonce(&chain).await, before + 1, "one transaction for the three CVMs");
}

#[tokio::test]
async fn app_updates_every_cvm_as_a_json_array_and_a_rerun_sends_nothing() {
    let chain = LocalChain::start_with(AnvilOptions { block_time: Some(1), ..AnvilOptions::default() });
    let (sim, app, env) = setup(&chain, 4, "app").await;
    let before = nonce(&chain).await;

    // A partial run first: two of the four.
    let out = cli(&["envs", "update", "cvm-0", "cvm-3", "-e", "SHARED=1", "-e", "TOKEN=x", "--yes"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(nonce(&chain).await, before + 1);

    let app_arg = AppId::from(app).to_hex();
    let out = cli(
        &[
            "envs",
            "update",
            "--app",
            &app_arg,
            "-e",
            "SHARED=1",
            "-e",
            "TOKEN=x",
            "--yes",
            "--json",
            "--concurrency",
            "2",
        ],
        &env,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let items: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let items = items.as_array().expect("one JSON array");
    // The list names the CVMs by their (hashed) ids; each is one of the four.
    let mut ids: Vec<&str> = items.iter().map(|i| i["cvm_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{stdout}");
    let cited: Vec<&str> = items.iter().filter_map(|i| i["transaction_hash"].as_str()).collect();
    assert_eq!(cited.len(), 2, "the two CVMs not updated before register (find) the hash: {stdout}");
    assert_eq!(cited[0], cited[1], "one transaction: {stdout}");
    for item in items {
        assert_eq!(item["ok"], true, "{item}");
        assert!(item["correlation_id"].is_string(), "{item}");
    }
    for i in 0..4 {
        assert_eq!(sim.cvm_env(&format!("cvm-{i}")).unwrap(), vars());
    }
    assert_eq!(registrations(&chain, app).await, 1, "still one ComposeHashAdded");
    assert_eq!(nonce(&chain).await, before + 1, "the rerun sent no transaction");
}

#[tokio::test]
async fn a_json_array_holds_the_failure_of_a_missing_cvm() {
    let chain = LocalChain::start_with(AnvilOptions { block_time: Some(1), ..AnvilOptions::default() });
    let (_sim, _app, env) = setup(&chain, 1, "json-fail").await;
    let out = cli(&["envs", "update", "cvm-0", "gone", "-e", "SHARED=1", "--yes", "--json"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    let items: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(items[0]["ok"], true);
    assert_eq!(items[1]["cvm_id"], "gone");
    assert_eq!(items[1]["ok"], false);
    assert_eq!(items[1]["error"]["exit_code"], 4);
    assert_eq!(items[1]["error"]["status"], 404);
}

/// Two names of one CVM: updated once, and the JSON array says which name was the same CVM.
#[tokio::test]
async fn a_cvm_named_twice_is_updated_once_and_said_so() {
    let chain = LocalChain::start_with(AnvilOptions { block_time: Some(1), ..AnvilOptions::default() });
    let (sim, _app, env) = setup(&chain, 1, "alias").await;
    let uuid = sim.cvms()[0].vm_uuid.clone();
    let out = cli(&["envs", "update", "cvm-0", &uuid, "-e", "SHARED=1", "--yes", "--json"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let items: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(items.as_array().map(Vec::len), Some(2), "{items}");
    assert_eq!(items[0]["cvm_id"], "cvm-0");
    assert_eq!(items[1], serde_json::json!({ "cvm_id": uuid, "ok": true, "same_as": "cvm-0" }));
    let accepted = || sim.operations().iter().filter(|op| op.status == 202).count();
    assert_eq!(accepted(), 1, "one accepted update: {:?}", sim.operations());

    // In text, a line says so (stderr as it happens, stdout in the results).
    let out = cli(&["envs", "update", &uuid, "cvm-0", "-e", "SHARED=2", "--yes"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("cvm-0 is the same CVM as {uuid}: updated once, as {uuid}")), "{stderr}");
    assert!(stdout.contains(&format!("cvm-0: the same CVM as {uuid} (updated once, as {uuid})")), "{stdout}");
    assert_eq!(accepted(), 2, "{:?}", sim.operations());
}

#[tokio::test]
async fn one_cvm_flags_are_refused_with_several() {
    let out = cli(&["envs", "update", "a", "b", "-e", "X=1", "--pubkey", &"11".repeat(32)], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("--pubkey is for one CVM"), "{:?}", text(&out));
}
