//! The official JS SDK (`@phala/cloud`, `scripts/js_interop/`) against the simulator on anvil:
//! its `patchCvm` reads the unified PATCH's 465 as this crate does (compose hash, app id,
//! device id, every `kms_info` field), and its `confirmCvmPatch` (phase 2 as the SDK sends it:
//! the two headers and an empty JSON body) is accepted once the hash is registered, and refused
//! with 468 when the hash was registered on another contract than the app's. Installs the SDK
//! with `npm ci` on first use (see `support::js_sdk`).
#![cfg(feature = "simulator")]

use crate::support;

use std::collections::BTreeSet;
use std::sync::Mutex;

use phala_cloud::simulator::{Phase, Simulator};
use phala_cloud::{
    AppId, ComposeHash, ComposeHashRegistrar, FlowError, Phase1Data, Progress, TransactionHash, UpdateCvmRequest,
};
use serde_json::{Value, json};
use support::anvil::LocalChain;
use support::js_sdk::PatchScript;

const COMPOSE: &str = "services:\n  app:\n    image: nginx:1.27\n    environment:\n      - API_TOKEN\n      - DB_URL\n";
const ALLOWED: [&str; 2] = ["API_TOKEN", "DB_URL"];

/// Keeps phase 1's data and registers nothing: the crate's run stops after its 465.
#[derive(Default)]
struct Capture(Mutex<Option<Phase1Data>>);

#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped after phase 1 on purpose")
    }
}

impl std::error::Error for Stopped {}

impl ComposeHashRegistrar for Capture {
    type Error = Stopped;
    async fn register(&self, data: &Phase1Data, _: &Progress<'_>) -> Result<TransactionHash, Stopped> {
        *self.0.lock().unwrap() = Some(data.clone());
        Err(Stopped)
    }
}

/// anvil, a simulator with one contract-owned CVM (`cvm-1`, owned by dev account 0) and the
/// SDK installed.
async fn setup() -> (LocalChain, Simulator) {
    tokio::task::spawn_blocking(|| {
        support::js_sdk::installed();
    })
    .await
    .unwrap();
    let chain = LocalChain::start();
    let sim = Simulator::start(chain.sim_with_one_onchain_cvm()).await.unwrap();
    (chain, sim)
}

/// The crate's reading of the 465 that the change asks for.
async fn crate_phase1(sim: &Simulator) -> Phase1Data {
    let body: UpdateCvmRequest =
        serde_json::from_value(json!({ "docker_compose_file": COMPOSE, "allowed_envs": ALLOWED })).unwrap();
    let capture = Capture::default();
    let e = sim.client_builder().build().unwrap().cvm_patch("cvm-1", body).run(&capture).await.unwrap_err();
    assert!(matches!(e, FlowError::Registration { .. }), "{e}");
    capture.0.lock().unwrap().take().expect("phase 1 asked for a registration")
}

/// The same change through the JS SDK; its first line (its reading of the 465) and the script,
/// waiting on stdin for a transaction hash.
async fn js_phase1(sim: &Simulator, compose_file: &std::path::Path) -> (PatchScript, Value) {
    let mut args = vec!["--cvm", "cvm-1", "--compose", compose_file.to_str().unwrap()];
    for name in ALLOWED {
        args.extend(["--allowed-env", name]);
    }
    let mut script = PatchScript::start(sim, &args);
    tokio::task::spawn_blocking(move || {
        let line = script.next_json();
        (script, line)
    })
    .await
    .unwrap()
}

/// Sends `tx` to the waiting script; its next line (phase 2's outcome) and its exit status.
async fn js_phase2(mut script: PatchScript, tx: TransactionHash) -> (Value, std::process::ExitStatus) {
    tokio::task::spawn_blocking(move || {
        script.send_line(&tx.to_hex());
        let line = script.next_json();
        (line, script.finish())
    })
    .await
    .unwrap()
}

fn compose_file(test: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("phala-js-interop-{test}-{}.yml", std::process::id()));
    std::fs::write(&path, COMPOSE).unwrap();
    path
}

/// Hex as both sides may print it: without `0x`, lowercase.
fn hex(s: &str) -> String {
    s.trim_start_matches("0x").to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_sdk_reads_the_465_as_the_crate_does_and_its_phase_2_is_accepted() {
    let (chain, sim) = setup().await;
    let ours = crate_phase1(&sim).await;
    let file = compose_file("accepted");
    let (script, line) = js_phase1(&sim, &file).await;
    assert_eq!(line["step"], "patch", "{line}");
    assert_eq!(line["sdk_version"], "0.2.9", "the pinned SDK ran: {line}");
    let js = &line["result"];
    assert_eq!(js["requiresOnChainHash"], true, "{line}");

    // The same change gives the same hash, whoever asks; both read the same app and device.
    let js_hash: ComposeHash = js["composeHash"].as_str().expect("composeHash").parse().unwrap();
    assert_eq!(js_hash, ours.compose_hash);
    let js_app: AppId = js["appId"].as_str().expect("appId").parse().unwrap();
    assert_eq!(js_app, ours.app_id);
    assert_eq!(Some(ours.app_id), sim.cvm("cvm-1").unwrap().app_id);
    assert_eq!(Some(hex(js["deviceId"].as_str().expect("deviceId"))), ours.device_id);

    // kms_info: the same fields with the same values (the SDK passes unknown ones through, the
    // crate keeps them in `extra`), and the SDK knows the chain as anvil.
    let kms = ours.kms_info.as_ref().expect("kms_info");
    let js_kms = js["kmsInfo"].as_object().expect("kmsInfo");
    assert_eq!(js_kms["chain"], json!(chain.chain_id), "the SDK resolved chain_id to its anvil chain");
    let ours_json = serde_json::to_value(kms).unwrap();
    let ours_json = ours_json.as_object().unwrap();
    let keys = |m: &serde_json::Map<String, Value>| -> BTreeSet<String> {
        m.iter().filter(|(k, v)| !v.is_null() && *k != "chain").map(|(k, _)| k.clone()).collect()
    };
    assert_eq!(keys(js_kms), keys(ours_json));
    for field in ["id", "slug", "url", "version"] {
        assert_eq!(js_kms[field], ours_json[field], "kms_info.{field}");
    }
    assert_eq!(js_kms["chain_id"].as_u64(), kms.chain_id);
    assert_eq!(kms.chain_id, Some(chain.chain_id));
    for (field, value) in [
        ("kms_contract_address", &kms.kms_contract_address),
        ("gateway_app_id", &kms.gateway_app_id),
        ("k256_pubkey", &kms.k256_pubkey),
    ] {
        assert_eq!(js_kms[field].as_str().map(hex), value.as_deref().map(hex), "kms_info.{field}");
    }

    // Registered on-chain, the SDK's phase 2 (headers, empty body) goes through.
    let receipt = chain.add_compose_hash(ours.app_id.into(), ours.compose_hash.into(), chain.signer(0)).await;
    let tx: TransactionHash = receipt.transaction_hash.into();
    let (line, status) = js_phase2(script, tx).await;
    std::fs::remove_file(&file).unwrap();
    assert_eq!(line["step"], "confirm", "{line}");
    let correlation_id = line["result"]["correlationId"].as_str().unwrap_or_else(|| panic!("{line}"));
    assert!(status.success(), "{status}");
    let last = sim.operations().pop().unwrap();
    assert_eq!(last.status, 202);
    assert_eq!(last.phase, Some(Phase::Two));
    assert_eq!((last.compose_hash, last.transaction_hash), (Some(ours.compose_hash), Some(tx)));
    assert_eq!(last.correlation_id.as_deref(), Some(correlation_id));
    assert_eq!(sim.allowed_env_names("cvm-1").unwrap(), ALLOWED, "phase 1's change was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_sdk_phase_2_for_a_hash_the_app_contract_does_not_allow_gets_468() {
    let (chain, sim) = setup().await;
    let file = compose_file("refused");
    let (script, line) = js_phase1(&sim, &file).await;
    let hash: ComposeHash = line["result"]["composeHash"].as_str().unwrap_or_else(|| panic!("{line}")).parse().unwrap();
    // The hash registered, but on another contract than the app's.
    let other = chain.deploy_app_auth(0).await;
    let receipt = chain.add_compose_hash(other, hash.into(), chain.signer(0)).await;
    let (line, status) = js_phase2(script, receipt.transaction_hash.into()).await;
    std::fs::remove_file(&file).unwrap();
    assert_eq!(line["step"], "confirm", "{line}");
    let error = &line["error"];
    assert_eq!(error["status"], 468, "{line}");
    assert_eq!(error["name"], "ResourceError", "the SDK read the StructuredError envelope: {line}");
    assert_eq!(error["detail"]["error_code"], "ERR-01-008", "{line}");
    assert_eq!(status.code(), Some(1), "a refused call ends the script with 1");
    assert!(sim.allowed_env_names("cvm-1").unwrap().is_empty(), "nothing applied");
}
