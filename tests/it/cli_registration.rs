//! `phala-cloud envs update` around the on-chain registration: processes that take turns on
//! one key (one transaction for three CVMs of one app), the app-id check before signing, the
//! fee and gas caps, and what the CLI says after a transaction that cannot be reused. Its helpers
//! (the binary run with only the variables given, the simulator's variables, a temp dir, the
//! signer's nonce) serve `cli_compose` too.
#![cfg(feature = "cli")]

use crate::support;

use std::process::{Command, Output, Stdio};
use std::time::Instant;

use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use phala_cloud::onchain::COMPOSE_HASH_ADDED_TOPIC;
use phala_cloud::simulator::{ChainConfig, CvmSpec, Simulator, SimulatorConfig};
use phala_cloud::{AppId, Client};
use serde_json::json;
use support::anvil::{AnvilOptions, LocalChain};
use support::fake_rpc::{Answer, FakeRpc, healthy_after, receipt_json};
use support::{Reply, ScriptedServer};

/// The variables of ours a run must not inherit from the test's environment.
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

/// The binary with only the given variables of ours set, not yet started.
pub(crate) fn command(args: &[String], envs: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phala-cloud"));
    for var in OURS {
        cmd.env_remove(var);
    }
    cmd.args(args).envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

pub(crate) async fn cli(args: Vec<String>, envs: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || command(&args, &envs).output().unwrap()).await.unwrap()
}

pub(crate) fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A fresh directory for one test's files.
pub(crate) fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("phala-cli-reg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn update_args(cvm: &str, pubkey: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["envs", "update", cvm, "--pubkey", pubkey].iter().map(|s| s.to_string()).collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

pub(crate) fn sim_env(sim: &Simulator) -> Vec<(&'static str, String)> {
    vec![
        ("PHALA_CLOUD_API_KEY", sim.api_key().to_owned()),
        ("PHALA_CLOUD_API_PREFIX", format!("{}/api/v1", sim.base_url())),
    ]
}

/// The `ComposeHashAdded` logs of `app` on the chain.
async fn registrations(chain: &LocalChain, app: Address) -> usize {
    let filter = Filter::new().address(app).event_signature(COMPOSE_HASH_ADDED_TOPIC).from_block(0);
    chain.provider(0).get_logs(&filter).await.unwrap().len()
}

pub(crate) async fn nonce(chain: &LocalChain, n: usize) -> u64 {
    chain.provider(0).get_transaction_count(chain.signer(n).address()).await.unwrap()
}

/// Three processes update three CVMs of one app with the same env names, so phase 1 gives all
/// three the same compose hash to register with the same key, on a chain with 2 s blocks.
/// With the lock on by default (here under `$XDG_RUNTIME_DIR`), one of them sends the
/// transaction and the other two find it registered: one `ComposeHashAdded`, all exit 0.
#[tokio::test]
async fn three_processes_for_one_app_send_one_transaction() {
    let chain = LocalChain::start_with(AnvilOptions::base_like());
    let owner = chain.signer(0);
    let app = phala_cloud::simulator::deploy_app_auth(&chain.endpoint.parse().unwrap(), owner.clone()).await.unwrap();
    let cvms = ["cvm-a", "cvm-b", "cvm-c"];
    let config = SimulatorConfig::default()
        .cvms(cvms.map(|id| CvmSpec::onchain(id).app_id(AppId::from(app))))
        .chain(ChainConfig::new(chain.endpoint.parse().unwrap()));
    let sim = Simulator::start(config).await.unwrap();
    let runtime = temp_dir("xdg");
    let key = const_hex::encode(owner.to_bytes());
    let mut env = sim_env(&sim);
    env.push(("PRIVATE_KEY", key.clone()));
    env.push(("ETH_RPC_URL", chain.endpoint.clone()));
    env.push(("XDG_RUNTIME_DIR", runtime.to_str().unwrap().to_owned()));

    let started = Instant::now();
    let children: Vec<_> = cvms
        .iter()
        .map(|id| {
            let pubkey = sim.cvm(id).unwrap().public_key.to_hex();
            command(&update_args(id, &pubkey, &["-e", "SHARED=1", "-e", "TOKEN=x", "--yes"]), &env).spawn().unwrap()
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        children.into_iter().map(|c| c.wait_with_output().unwrap()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let took = started.elapsed();
    eprintln!("three concurrent `envs update` runs took {took:?}");

    let mut sent = 0;
    let mut found = 0;
    for out in &outputs {
        let (stdout, stderr) = text(out);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(!stdout.contains(&key) && !stderr.contains(&key), "the key leaked");
        sent += usize::from(stderr.contains("transaction sent:"));
        found += usize::from(stderr.contains("already registered by transaction"));
    }
    assert_eq!((sent, found), (1, 2), "one run sends, two find it: {outputs:?}");
    assert_eq!(registrations(&chain, app).await, 1, "one ComposeHashAdded");
    for id in cvms {
        assert_eq!(sim.cvm_env(id).unwrap().get("SHARED"), Some("1"), "{id} updated");
    }
    // The default lock directory: created for this user only, holding the signer's lock file.
    let dir = runtime.join("phala-cloud");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    }
    let lock = format!("phala-cloud-{}-{}.lock", chain.chain_id, const_hex::encode(owner.address()));
    assert!(dir.join(lock).is_file(), "lock file in {}", dir.display());
    std::fs::remove_dir_all(runtime).unwrap();
}

/// A 465 body for `app` on chain 31337.
fn phase1_reply(app: Address, compose_hash: B256) -> Reply {
    let body = json!({
        "error_code": "ERR-01-005",
        "message": "Compose hash registration required on-chain",
        "details": [
            { "field": "compose_hash", "value": compose_hash, "message": null },
            { "field": "app_id", "value": app, "message": null },
            { "field": "device_id", "value": format!("0x{}", "00".repeat(32)), "message": null },
            { "field": "kms_info", "value": { "id": "kms_t", "url": "http://kms.invalid", "version": "1", "chain_id": 31337 }, "message": null },
        ],
        "suggestions": [],
        "links": [],
    });
    Reply::json(465, &body.to_string())
}

/// `GET /api/v1/cvms/{id}` for a CVM of app `app`, written as the API may (no `0x`, upper case).
fn cvm_reply(id: &str, app: Address) -> Reply {
    let body = json!({
        "id": 7, "name": id, "status": "running", "app_id": const_hex::encode(app).to_uppercase(),
        "vcpu": 2, "memory": 2048, "disk_size": 20,
    });
    Reply::json(200, &body.to_string())
}

/// A 465 naming another of the owner's app contracts than the CVM's own is refused before
/// anything is signed: the owner's nonce does not move, that contract registers nothing, and
/// the error names both app ids.
#[tokio::test]
async fn a_465_for_another_app_than_the_cvms_is_refused_before_signing() {
    let chain = LocalChain::start();
    let owner = chain.signer(0);
    let rpc: url::Url = chain.endpoint.parse().unwrap();
    let cvm_app = phala_cloud::simulator::deploy_app_auth(&rpc, owner.clone()).await.unwrap();
    let other_app = phala_cloud::simulator::deploy_app_auth(&rpc, owner.clone()).await.unwrap();
    let server =
        ScriptedServer::start(vec![phase1_reply(other_app, B256::repeat_byte(0x5c)), cvm_reply("cvm-x", cvm_app)])
            .await;
    let nonce_before = nonce(&chain, 0).await;
    let pubkey = phala_cloud::simulator::RecipientSecretKey::generate().unwrap().public_key().to_hex();
    let env = vec![
        ("PHALA_CLOUD_API_KEY", "phak_test".to_owned()),
        ("PHALA_CLOUD_API_PREFIX", server.base_url.clone()),
        ("PRIVATE_KEY", const_hex::encode(owner.to_bytes())),
        ("ETH_RPC_URL", chain.endpoint.clone()),
        ("PHALA_CLOUD_LOCK_DIR", temp_dir("mismatch").to_str().unwrap().to_owned()),
    ];
    let out = cli(update_args("cvm-x", &pubkey, &["-e", "A=1", "--json"]), env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "{stdout}\n{stderr}");
    let (cvm_hex, other_hex) = (cvm_app.to_string().to_lowercase(), other_app.to_string().to_lowercase());
    assert!(stderr.contains(&cvm_hex) && stderr.contains(&other_hex), "names both: {stderr}");
    assert!(stderr.contains("nothing was signed"), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(json["error"]["transaction_hash"].is_null());
    assert_eq!(nonce(&chain, 0).await, nonce_before, "nothing signed or sent");
    assert_eq!(registrations(&chain, other_app).await, 0);
    let lines: Vec<String> = server.recorded().iter().map(|r| r.request_line().to_owned()).collect();
    assert_eq!(lines.len(), 2, "phase 1 and the CVM, no phase 2: {lines:?}");
    assert!(lines[0].starts_with("PATCH /api/v1/cvms/cvm-x/envs") && lines[1].starts_with("GET /api/v1/cvms/cvm-x "));
}

/// `--app-id` pins the app the user means: the app of another CVM is refused before the
/// registrar runs (the RPC here is unreachable, which would otherwise be the error); the CVM's
/// own app id, written with `app_` and in upper case, passes the check.
#[tokio::test]
async fn app_id_pins_the_app_and_the_library_check_reads_the_simulators_cvm() {
    let sim = Simulator::start(SimulatorConfig::default().cvms([CvmSpec::onchain("cvm-a"), CvmSpec::onchain("cvm-b")]))
        .await
        .unwrap();
    let (a, b) = (sim.cvm("cvm-a").unwrap(), sim.cvm("cvm-b").unwrap());
    let (app_a, app_b) = (a.app_id.unwrap(), b.app_id.unwrap());
    let mut env = sim_env(&sim);
    env.push(("PRIVATE_KEY", "11".repeat(32)));
    env.push(("PHALA_CLOUD_LOCK_DIR", temp_dir("pin").to_str().unwrap().to_owned()));
    let run = |pin: String| {
        let argv = update_args(
            "cvm-a",
            &a.public_key.to_hex(),
            &["-e", "A=1", "--rpc-url", "http://127.0.0.1:9", "--app-id", &pin],
        );
        cli(argv, env.clone())
    };
    let out = run(app_b.to_hex()).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("belongs to app {app_a}, not to the expected app {app_b}"))
            && stderr.contains("nothing was signed"),
        "{stderr}"
    );
    let out = run(format!("app_{}", const_hex::encode(app_a.0).to_uppercase())).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(8), "past the check, to the unreachable RPC: {stderr}");
    assert!(stderr.contains("eth_chainId failed"), "{stderr}");
    let out = cli(update_args("cvm-a", &a.public_key.to_hex(), &["-e", "A=1", "--app-id", "0x12"]), env.clone()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("not an app id"), "{:?}", text(&out));

    // The simulator's CVM, through the generated operation: its app id (in either API
    // version's shape), 401, 403, 404.
    let client = sim.client_builder().build().unwrap();
    let cvm = client.send(|api| api.handle_get_cvm("cvm-b")).await.unwrap();
    let value = serde_json::to_value(cvm.into_inner()).unwrap();
    assert_eq!(phala_cloud::parse_app_id(value["app_id"].as_str().unwrap()), Some(app_b));
    assert_eq!(value["name"], "cvm-b");
    assert_eq!(value["kms_info"]["chain_id"], 31337);
    let older = sim.client_builder().api_version("2025-10-28").build().unwrap();
    let value =
        serde_json::to_value(older.send(|api| api.handle_get_cvm("cvm-b")).await.unwrap().into_inner()).unwrap();
    assert_eq!(phala_cloud::parse_app_id(value["app_id"].as_str().unwrap()), Some(app_b));
    assert_eq!(value["encrypted_env_pubkey"], b.public_key.to_hex());
    assert_eq!(value["kms_info"]["chain_id"], 31337);
    let stranger = Client::builder().base_url(sim.base_url()).api_key("wrong").build().unwrap();
    let e = stranger.send(|api| api.handle_get_cvm("cvm-b")).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(401), "{e}");
    let e = client.send(|api| api.handle_get_cvm("cvm-nope")).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(404), "{e}");
    let foreign = Simulator::start(SimulatorConfig::default().cvms([CvmSpec::onchain("cvm-f").workspace("elsewhere")]))
        .await
        .unwrap();
    let e = foreign.client_builder().build().unwrap().send(|api| api.handle_get_cvm("cvm-f")).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(403), "{e}");
}

/// A base fee above `--max-fee-gwei`, and an estimate above `--gas-limit-cap`: exit 6, nothing
/// signed, and the message says the fee, the cap and the flag that raises it. `--lock-dir`
/// puts the lock file where it says.
#[tokio::test]
async fn fee_and_gas_caps_refuse_before_signing_and_name_their_flags() {
    let chain = LocalChain::start();
    let config = chain.sim_with_one_onchain_cvm();
    let sim = Simulator::start(config).await.unwrap();
    let locks = temp_dir("caps");
    let pubkey = sim.cvm("cvm-1").unwrap().public_key.to_hex();
    let mut env = sim_env(&sim);
    env.push(("PRIVATE_KEY", const_hex::encode(chain.signer(0).to_bytes())));
    env.push(("ETH_RPC_URL", chain.endpoint.clone()));
    let lock_dir = locks.to_str().unwrap();
    let before = nonce(&chain, 0).await;

    let out = cli(
        update_args("cvm-1", &pubkey, &["-e", "A=1", "--lock-dir", lock_dir, "--max-fee-gwei", "0.000000001"]),
        env.clone(),
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("the base fee is ") && stderr.contains("gwei and the cap 0.000000001 gwei"), "{stderr}");
    assert!(
        stderr.contains("raise the cap with --max-fee-gwei ") && !stderr.contains("--transaction-hash"),
        "{stderr}"
    );

    let out = cli(
        update_args("cvm-1", &pubkey, &["-e", "A=1", "--lock-dir", lock_dir, "--gas-limit-cap", "21000"]),
        env.clone(),
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("above the cap of 21000 gas") && stderr.contains("--gas-limit-cap "), "{stderr}");
    assert_eq!(nonce(&chain, 0).await, before, "nothing signed or sent");

    let out = cli(update_args("cvm-1", &pubkey, &["-e", "A=1", "--max-fee-gwei", "abc"]), env.clone()).await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));

    // Within the caps it goes through; the lock file is in --lock-dir.
    let out = cli(
        update_args(
            "cvm-1",
            &pubkey,
            &["-e", "A=1", "--lock-dir", lock_dir, "--max-fee-gwei", "100", "--gas-limit-cap", "200000", "--yes"],
        ),
        env,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let lock = format!("phala-cloud-{}-{}.lock", chain.chain_id, const_hex::encode(chain.signer(0).address()));
    assert!(locks.join(lock).is_file());
    std::fs::remove_dir_all(locks).unwrap();
}

const FAKE_APP: Address = Address::repeat_byte(0xaa);

fn fake_key() -> alloy::signers::local::PrivateKeySigner {
    alloy::signers::local::PrivateKeySigner::from_bytes(&B256::repeat_byte(0x42)).unwrap()
}

/// Runs the CLI against a scripted phase 1 for FAKE_APP and a fake chain answering `answer`.
async fn against_fake_chain(
    answer: impl Fn(&support::fake_rpc::Call) -> Option<Answer> + Send + Sync + 'static,
) -> (Output, FakeRpc) {
    let rpc = FakeRpc::start(healthy_after(fake_key().address(), false, answer)).await;
    let server =
        ScriptedServer::start(vec![phase1_reply(FAKE_APP, B256::repeat_byte(0x11)), cvm_reply("cvm-x", FAKE_APP)])
            .await;
    let pubkey = phala_cloud::simulator::RecipientSecretKey::generate().unwrap().public_key().to_hex();
    let env = vec![
        ("PHALA_CLOUD_API_KEY", "phak_test".to_owned()),
        ("PHALA_CLOUD_API_PREFIX", server.base_url.clone()),
        ("PRIVATE_KEY", const_hex::encode(fake_key().to_bytes())),
        ("PHALA_CLOUD_LOCK_DIR", temp_dir("fake").to_str().unwrap().to_owned()),
    ];
    let out = cli(update_args("cvm-x", &pubkey, &["-e", "A=1", "--rpc-url", &rpc.url, "--json", "--yes"]), env).await;
    (out, rpc)
}

/// A reverted transaction registered nothing: exit 6, and no hint to cite it with
/// `--transaction-hash` (phase 2 would only be refused). A transaction the node refused was
/// never taken: exit 6, no such hint either.
#[tokio::test]
async fn no_transaction_hash_hint_after_a_revert_or_a_refused_send() {
    let (out, rpc) = against_fake_chain(|call| {
        (call.method == "eth_getTransactionReceipt").then(|| {
            let tx: B256 = call.params[0].as_str().unwrap().parse().unwrap();
            let mut receipt = receipt_json(tx, fake_key().address(), FAKE_APP, Some(101), vec![]);
            receipt["status"] = json!("0x0");
            Answer::Result(receipt)
        })
    })
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(rpc.raw_transactions().len(), 1, "one transaction sent");
    assert_eq!(out.status.code(), Some(6), "{stdout}\n{stderr}");
    assert!(stderr.contains("reverted") && stderr.contains("cannot be reused"), "{stderr}");
    assert!(!stderr.contains("--transaction-hash"), "no retry with the reverted transaction: {stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["error"]["transaction_hash"].as_str().unwrap().len(), 66);
    assert_eq!(json["error"]["transaction_reusable"], false);

    let (out, _rpc) = against_fake_chain(|call| {
        (call.method == "eth_sendRawTransaction").then(|| Answer::Error(-32000, "insufficient funds for gas".into()))
    })
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "{stdout}\n{stderr}");
    assert!(stderr.contains("the node refused it") && stderr.contains("nothing was mined"), "{stderr}");
    assert!(!stderr.contains("--transaction-hash"), "{stderr}");
}

/// A send without a reply may have reached the chain: exit 8 (network), with the transaction's
/// hash and the way to cite it.
#[tokio::test]
async fn a_send_that_may_have_reached_the_chain_is_a_network_error_with_the_hash() {
    let (out, rpc) = against_fake_chain(|call| {
        // A reply longer than the CLI reads (16 MiB): the node may have taken the transaction.
        (call.method == "eth_sendRawTransaction").then_some(Answer::Huge(17 << 20))
    })
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(8), "{stdout}\n{stderr}");
    let raw = rpc.raw_transactions();
    let tx = phala_cloud::TransactionHash::from(alloy::primitives::keccak256(&raw[0]));
    assert!(stderr.contains(&format!("--transaction-hash {tx}")), "{stderr}");
}

/// `--prepare-only` signs nothing and prints the ready `to`/`data` of the registration; sent
/// from the owner's wallet elsewhere (here: alloy, as a Safe or hardware wallet would), the
/// same command with `--transaction-hash` finishes the update. A blob made by
/// `envs encrypt --json` goes in with `--encrypted-env` and `--env-keys`.
#[tokio::test]
async fn prepare_only_then_finish_with_the_transaction_from_elsewhere() {
    use alloy::network::TransactionBuilder;
    let chain = LocalChain::start();
    let sim = Simulator::start(chain.sim_with_one_onchain_cvm()).await.unwrap();
    let pubkey = sim.cvm("cvm-1").unwrap().public_key.to_hex();
    let mut env = sim_env(&sim);
    env.push(("ETH_RPC_URL", chain.endpoint.clone()));

    // The blob, made once, sent by both commands.
    let encrypted = cli(
        vec![
            "envs".into(),
            "encrypt".into(),
            "--pubkey".into(),
            pubkey.clone(),
            "-e".into(),
            "A=1".into(),
            "--json".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(encrypted.status.code(), Some(0), "{:?}", text(&encrypted));
    let blob: serde_json::Value = serde_json::from_slice(&encrypted.stdout).unwrap();
    let blob = blob["encrypted_env"].as_str().unwrap().to_owned();
    let base = |extra: &[&str]| {
        let mut a: Vec<String> = ["envs", "update", "cvm-1", "--encrypted-env", &blob, "--env-keys", "A"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    let before = nonce(&chain, 0).await;
    let out = cli(base(&["--prepare-only", "--json"]), env.clone()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let prepared: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(prepared["status"], "prepared", "{prepared}");
    let app = sim.cvm("cvm-1").unwrap().app_id.unwrap();
    assert_eq!(prepared["app_id"], app.to_hex());
    assert_eq!(prepared["chain_id"], chain.chain_id);
    assert_eq!(prepared["to"].as_str().unwrap().to_lowercase(), app.to_hex());
    assert_eq!(nonce(&chain, 0).await, before, "prepare-only signs nothing");
    assert_eq!(sim.cvm_env("cvm-1").unwrap().len(), 0, "nor applies anything");

    // The owner sends the prepared call.
    let to: Address = prepared["to"].as_str().unwrap().parse().unwrap();
    let data: alloy::primitives::Bytes = prepared["data"].as_str().unwrap().parse().unwrap();
    let tx = alloy::rpc::types::TransactionRequest::default().with_to(to).with_input(data);
    let receipt = chain.provider(0).send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status());
    assert_eq!(registrations(&chain, app.into()).await, 1);
    let hash = receipt.transaction_hash.to_string();

    let out = cli(base(&["--transaction-hash", &hash, "--json"]), env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let done: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(done["transaction_hash"], hash, "{done}");
    assert_eq!(sim.cvm_env("cvm-1").unwrap().iter().collect::<Vec<_>>(), [("A", "1")]);
    assert_eq!(registrations(&chain, app.into()).await, 1, "no second registration");

    // Contradictions are refused by the parser.
    let out = cli(base(&["--prepare-only", "--transaction-hash", &hash]), vec![]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = cli(base(&["--pubkey", &pubkey]), vec![]).await;
    assert_eq!(out.status.code(), Some(2));
}
