//! `phala-cloud compose update` and `phala-cloud cvms update` on the simulator: a compose change
//! registered on anvil (one `ComposeHashAdded`), `--prepare-only` finished by
//! `--transaction-hash`, a centralized KMS's CVM updated at phase 1, files refused before
//! anything is sent, and the unified PATCH with resources only (no 465) or a compose file.
#![cfg(feature = "cli")]

use crate::cli_registration::{cli, nonce, sim_env, temp_dir, text};
use crate::support::anvil::LocalChain;

use alloy::primitives::Address;
use alloy::providers::Provider;
use phala_cloud::simulator::{CvmSpec, Simulator, SimulatorConfig};
use serde_json::{Value, json};

const COMPOSE: &str = "services:\n  web:\n    image: nginx:1.27\n    ports: [\"80:80\"]\n";

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `path` holding `content`, in a fresh directory for test `name`.
fn file(name: &str, file_name: &str, content: &str) -> String {
    let path = temp_dir(&format!("compose-{name}")).join(file_name);
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A chain and a simulator verifying on it with one contract-owned CVM, `cvm-1`, whose app
/// contract (its id returned) dev account 0 owns.
async fn onchain() -> (LocalChain, Simulator, phala_cloud::AppId) {
    let chain = LocalChain::start();
    let sim = Simulator::start(chain.sim_with_one_onchain_cvm()).await.unwrap();
    let app = sim.cvm("cvm-1").unwrap().app_id.unwrap();
    (chain, sim, app)
}

/// The simulator's variables, the owner's key (dev account 0), the chain and a lock directory.
fn owner_env(sim: &Simulator, chain: &LocalChain, name: &str) -> Vec<(&'static str, String)> {
    let mut env = sim_env(sim);
    env.push(("PRIVATE_KEY", const_hex::encode(chain.signer(0).to_bytes())));
    env.push(("ETH_RPC_URL", chain.endpoint.clone()));
    env.push(("PHALA_CLOUD_LOCK_DIR", temp_dir(&format!("compose-lock-{name}")).to_str().unwrap().to_owned()));
    env
}

/// `GET /api/v1/cvms/{id}` as the simulator answers it: the compose the CVM would boot, its
/// hash, its resources.
async fn cvm_view(sim: &Simulator, id: &str) -> Value {
    let http = phala_cloud::http_client_builder().unwrap().build().unwrap();
    let reply = http
        .get(format!("{}/api/v1/cvms/{id}", sim.base_url()))
        .header("X-API-Key", sim.api_key())
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{}", reply.status());
    reply.json().await.unwrap()
}

/// The (operation, status) of every request the simulator answered.
fn sent(sim: &Simulator) -> Vec<(&'static str, u16)> {
    sim.operations().iter().map(|o| (o.operation, o.status)).collect()
}

/// `0x`-less, lower-case hex, to compare hashes written either way.
fn bare(hex: &Value) -> String {
    hex.as_str().unwrap_or_else(|| panic!("not a string: {hex}")).trim_start_matches("0x").to_lowercase()
}

fn json_out(out: &std::process::Output) -> Value {
    let (stdout, stderr) = text(out);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}\n{stderr}"))
}

/// `compose update -f` on a contract-owned CVM: the multipart upload answers 465, the CLI
/// registers the hash (one `ComposeHashAdded`) and phase 2 carries it; `--json` gives the
/// compose hash the CVM now boots and the transaction; the key is never shown.
#[tokio::test]
async fn compose_update_registers_the_new_compose_hash_once() {
    let (chain, sim, app) = onchain().await;
    let compose = file("happy", "docker-compose.yml", COMPOSE);
    let env = owner_env(&sim, &chain, "happy");
    let key = env.iter().find(|(k, _)| *k == "PRIVATE_KEY").unwrap().1.clone();

    let out = cli(args(&["compose", "update", "cvm-1", "-f", &compose, "--yes", "--json"]), env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains(&key) && !stderr.contains(&key), "the key leaked");
    let result = json_out(&out);
    assert_eq!(result["status"], "in_progress", "{result}");
    assert!(result["correlation_id"].is_string(), "{result}");
    assert_eq!(result["app_id"], app.to_hex(), "{result}");
    assert_eq!(result["chain_id"], chain.chain_id, "{result}");
    let view = cvm_view(&sim, "cvm-1").await;
    assert_eq!(view["compose_file"]["docker_compose_file"], COMPOSE, "{view}");
    assert_eq!(bare(&result["compose_hash"]), bare(&view["compose_hash"]), "the hash the CVM boots");
    assert_eq!(chain.compose_hashes_added(app.into()).await, 1, "one ComposeHashAdded");
    let tx: alloy::primitives::B256 = result["transaction_hash"].as_str().unwrap().parse().unwrap();
    let receipt = chain.provider(0).get_transaction_receipt(tx).await.unwrap().expect("mined");
    assert!(receipt.status());
    let updates: Vec<_> = sent(&sim).into_iter().filter(|(op, _)| op.starts_with("update_")).collect();
    assert_eq!(updates, [("update_cvm_docker_compose", 465), ("update_cvm_docker_compose", 202)]);
}

/// `--expect-compose-hash`: a 465 for any other hash is refused before anything is signed
/// (exit 6); the hash computed for the change is registered.
#[tokio::test]
async fn a_pinned_compose_hash_is_the_only_one_signed() {
    let (chain, sim, app) = onchain().await;
    let compose = file("pinned", "docker-compose.yml", COMPOSE);
    let env = owner_env(&sim, &chain, "pinned");
    let before = nonce(&chain, 0).await;
    let other = phala_cloud::ComposeHash([0x11; 32]).to_hex();
    let base = |hash: &str| args(&["compose", "update", "cvm-1", "-f", &compose, "--expect-compose-hash", hash]);

    let mut refused = base(&other);
    refused.extend(args(&["--yes", "--json"]));
    let out = cli(refused, env.clone()).await;
    assert_eq!(out.status.code(), Some(6), "{:?}", text(&out));
    let error = json_out(&out);
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("the expected compose hash is {other}")), "{error}");
    assert!(message.contains("nothing was signed"), "{error}");
    assert_eq!(nonce(&chain, 0).await, before, "nothing signed");
    assert_eq!(chain.compose_hashes_added(app.into()).await, 0);

    // The hash the simulator computes for this compose (its 465 says so, and --prepare-only shows it).
    let prepare = args(&["compose", "update", "cvm-1", "-f", &compose, "--prepare-only", "--json"]);
    let prepared = json_out(&cli(prepare, env.clone()).await);
    let hash = prepared["compose_hash"].as_str().unwrap().to_owned();
    let mut pinned = base(&hash);
    pinned.extend(args(&["--yes", "--json"]));
    let out = cli(pinned, env).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(bare(&json_out(&out)["compose_hash"]), bare(&prepared["compose_hash"]));
    assert_eq!(chain.compose_hashes_added(app.into()).await, 1);
}

/// `--prepare-only` signs nothing and prints the call; the owner sends it; the same command
/// with `--transaction-hash` finishes without a second registration. With both files, the
/// unified PATCH carries them: one compose hash for the two.
#[tokio::test]
async fn prepare_only_then_transaction_hash_finishes_it() {
    use alloy::network::TransactionBuilder;
    let (chain, sim, app) = onchain().await;
    let compose = file("prepare", "docker-compose.yml", COMPOSE);
    let script = file("prepare-script", "pre-launch.sh", "#!/bin/sh\necho ready\n");
    let mut env = sim_env(&sim);
    env.push(("ETH_RPC_URL", chain.endpoint.clone()));
    let base = |extra: &[&str]| {
        let mut a = args(&["compose", "update", "cvm-1", "-f", &compose, "--pre-launch-script", &script]);
        a.extend(args(extra));
        a
    };

    let before = nonce(&chain, 0).await;
    let out = cli(base(&["--prepare-only", "--json"]), env.clone()).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let prepared = json_out(&out);
    assert_eq!(prepared["status"], "prepared", "{prepared}");
    assert_eq!(prepared["app_id"], app.to_hex());
    assert_eq!(prepared["to"].as_str().unwrap().to_lowercase(), app.to_hex());
    // The unified PATCH's phase 1 carried X-Prepare-Only: the server's commit token is passed on.
    assert!(prepared["commit_token"].as_str().is_some_and(|t| t.starts_with("commit")), "{prepared}");
    assert_eq!(nonce(&chain, 0).await, before, "prepare-only signs nothing");
    assert_eq!(chain.compose_hashes_added(app.into()).await, 0);
    assert!(cvm_view(&sim, "cvm-1").await["compose_file"]["docker_compose_file"] != COMPOSE, "nothing applied");

    let to: Address = prepared["to"].as_str().unwrap().parse().unwrap();
    let data: alloy::primitives::Bytes = prepared["data"].as_str().unwrap().parse().unwrap();
    let tx = alloy::rpc::types::TransactionRequest::default().with_to(to).with_input(data);
    let receipt = chain.provider(0).send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status());
    let hash = receipt.transaction_hash.to_string();

    let out = cli(base(&["--transaction-hash", &hash, "--json"]), env).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let done = json_out(&out);
    assert_eq!(done["transaction_hash"], hash, "{done}");
    assert_eq!(bare(&done["compose_hash"]), bare(&prepared["compose_hash"]), "the hash prepared");
    let view = cvm_view(&sim, "cvm-1").await;
    assert_eq!(view["compose_file"]["docker_compose_file"], COMPOSE, "{view}");
    assert_eq!(view["compose_file"]["pre_launch_script"], "#!/bin/sh\necho ready\n", "{view}");
    assert_eq!(bare(&view["compose_hash"]), bare(&prepared["compose_hash"]), "one hash for both files");
    assert_eq!(chain.compose_hashes_added(app.into()).await, 1, "no second registration");
    let ops: Vec<&str> = sim.operations().iter().map(|o| o.operation).filter(|o| o.starts_with("update_")).collect();
    assert!(ops.iter().all(|o| *o == "update_cvm_endpoint"), "both files: the unified PATCH: {ops:?}");
}

/// A centralized KMS's CVM takes the new compose at phase 1: no key, no chain, nothing to
/// register; `--json` says so with null hashes; `-f -` reads the file from stdin.
#[tokio::test]
async fn a_centralized_kms_cvm_is_updated_at_once() {
    let sim = Simulator::start(SimulatorConfig::default().cvms([CvmSpec::centralized("c1")])).await.unwrap();
    let compose = file("central", "docker-compose.yml", COMPOSE);
    let out = cli(args(&["compose", "update", "c1", "-f", &compose, "--json"]), sim_env(&sim)).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let result = json_out(&out);
    assert!(result["correlation_id"].is_string(), "{result}");
    assert!(result["compose_hash"].is_null() && result["transaction_hash"].is_null(), "{result}");
    assert_eq!(sent(&sim), [("update_cvm_docker_compose", 202)]);
    assert_eq!(cvm_view(&sim, "c1").await["compose_file"]["docker_compose_file"], COMPOSE);

    // Text output: the acceptance, no registration line.
    let script = file("central-script", "pre-launch.sh", "echo hi\n");
    let out = cli(args(&["compose", "update", "c1", "--pre-launch-script", &script]), sim_env(&sim)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("accepted: correlation id ") && !stdout.contains("registered"), "{stdout}");
    assert_eq!(sim.operations().last().unwrap().operation, "update_cvm_pre_launch_script");

    // `-f -` reads the compose file from stdin.
    let other = COMPOSE.replace("nginx:1.27", "nginx:1.28");
    let out = crate::cli::cli_stdin(args(&["compose", "update", "c1", "-f", "-"]), sim_env(&sim), other.clone()).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(cvm_view(&sim, "c1").await["compose_file"]["docker_compose_file"], other.as_str());
}

/// A compose file that is missing, empty, not UTF-8, or given to no command that changes
/// anything is bad input (exit 2), said before anything is sent.
#[tokio::test]
async fn bad_files_exit_2_before_anything_is_sent() {
    let sim = Simulator::start(SimulatorConfig::default().cvms([CvmSpec::centralized("c1")])).await.unwrap();
    let dir = temp_dir("compose-bad");
    let missing = dir.join("missing.yml").to_str().unwrap().to_owned();
    let empty = file("bad-empty", "empty.yml", "  \n\n");
    let binary = dir.join("binary.yml");
    std::fs::write(&binary, b"services:\n\xff\n").unwrap();
    let binary = binary.to_str().unwrap().to_owned();
    let good = file("bad-good", "docker-compose.yml", COMPOSE);
    for (argv, says) in [
        (args(&["compose", "update", "c1", "-f", &missing]), "cannot open it"),
        (args(&["compose", "update", "c1", "-f", &empty]), "the file is empty"),
        (args(&["compose", "update", "c1", "-f", &good, "--pre-launch-script", &empty]), "the file is empty"),
        (args(&["compose", "update", "c1", "-f", &binary]), "not UTF-8 text"),
        (args(&["cvms", "update", "c1", "--compose-file", &empty, "--vcpu", "2"]), "the file is empty"),
        (args(&["cvms", "update", "c1", "--allow-force-stop"]), "nothing to change"),
        (args(&["compose", "update", "c1"]), "--file"),
    ] {
        let out = cli(argv.clone(), sim_env(&sim)).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(says), "{argv:?}: {stderr}");
        assert!(sim.operations().is_empty(), "{argv:?} sent {:?}", sent(&sim));
    }
}

/// `cvms update --vcpu` alone changes no compose: accepted at phase 1 on a contract-owned CVM
/// with no key and no 465; `--compose-file` through the unified PATCH registers its hash.
#[tokio::test]
async fn cvms_update_resources_need_no_registration_and_a_compose_file_does() {
    let (chain, sim, app) = onchain().await;

    // A pinned app that is not the CVM's: refused before anything is sent, though this change
    // needs no registration (no 465 would have checked it).
    let other = phala_cloud::AppId([0xee; 20]).to_hex();
    let out = cli(args(&["cvms", "update", "cvm-1", "--vcpu", "4", "--app-id", &other, "--json"]), sim_env(&sim)).await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let error = json_out(&out);
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("nothing was sent") && message.contains(&other), "{error}");
    assert!(sent(&sim).iter().all(|(op, _)| !op.starts_with("update_")), "nothing sent: {:?}", sent(&sim));

    let out =
        cli(args(&["cvms", "update", "cvm-1", "--vcpu", "4", "--public-logs", "true", "--json"]), sim_env(&sim)).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let result = json_out(&out);
    assert!(result["transaction_hash"].is_null(), "{result}");
    assert_eq!(sent(&sim), [("update_cvm_endpoint", 202)], "no 465");
    let view = cvm_view(&sim, "cvm-1").await;
    assert_eq!((&view["resource"]["vcpu"], &view["public_logs"]), (&json!(4), &json!(true)), "{view}");
    assert_eq!(chain.compose_hashes_added(app.into()).await, 0);

    let compose = file("cvms", "docker-compose.yml", COMPOSE);
    let out = cli(
        args(&["cvms", "update", "cvm-1", "--compose-file", &compose, "--allowed-env", "A,B", "--yes", "--json"]),
        owner_env(&sim, &chain, "cvms"),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let result = json_out(&out);
    assert!(result["transaction_hash"].is_string(), "{result}");
    assert_eq!(chain.compose_hashes_added(app.into()).await, 1, "one ComposeHashAdded");
    let view = cvm_view(&sim, "cvm-1").await;
    assert_eq!(view["compose_file"]["docker_compose_file"], COMPOSE, "{view}");
    assert_eq!(view["compose_file"]["allowed_envs"], json!(["A", "B"]), "{view}");
    assert_eq!(bare(&result["compose_hash"]), bare(&view["compose_hash"]));
    let updates: Vec<_> = sent(&sim).into_iter().filter(|(op, _)| op.starts_with("update_")).collect();
    assert_eq!(updates, [("update_cvm_endpoint", 202), ("update_cvm_endpoint", 465), ("update_cvm_endpoint", 202)]);
}

/// A phase 2 whose reply was lost, then refused with a 500: exit 8 and `may_have_applied`,
/// never a plain server error that would read as "not applied".
#[tokio::test]
async fn a_refusal_after_a_lost_phase_2_reply_exits_8() {
    use crate::support::{Reply, ScriptedServer};
    let compose = file("lost", "docker-compose.yml", COMPOSE);
    let phase1 = include_str!("../fixtures/responses/465_structured.json"); // app a172cedc…, chain 8453
    let cvm = r#"{"id":"c1","name":"one","app_id":"a172cedcae47474b615c54d510a5d84a8dea3032","kms_info":{"slug":"k","chain_id":8453}}"#;
    let cut = Reply::Raw(b"HTTP/1.1 202 Accepted\r\ncontent-length: 90\r\n\r\n{\"st".to_vec());
    let script = vec![Reply::json(465, phase1), Reply::json(200, cvm), cut, Reply::json(500, r#"{"detail":"boom"}"#)];
    let server = ScriptedServer::start(script).await;
    let env =
        vec![("PHALA_CLOUD_API_KEY", "phak_test".to_owned()), ("PHALA_CLOUD_API_PREFIX", server.base_url.clone())];
    let tx = format!("0x{}", "42".repeat(32));
    let out = cli(args(&["compose", "update", "c1", "-f", &compose, "--transaction-hash", &tx, "--json"]), env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(8), "{stdout}\n{stderr}");
    let error = &json_out(&out)["error"];
    assert_eq!((&error["status"], &error["may_have_applied"]), (&json!(500), &json!(true)), "{error}");
    assert!(stderr.contains("may have been applied") && stderr.contains("check the CVM"), "{stderr}");
}

/// The operations' own error statuses map to `envs update`'s exit codes (these operations
/// define 400: bad input), each with the `--json` error object; a 5xx says to try again later.
#[tokio::test]
async fn error_statuses_map_to_the_exit_codes() {
    use crate::support::{Reply, ScriptedServer};
    let compose = file("statuses", "docker-compose.yml", COMPOSE);
    for (status, code) in [(400, 2), (401, 3), (403, 3), (404, 4), (422, 2), (500, 7), (502, 7)] {
        let server = ScriptedServer::start(vec![Reply::json(status, r#"{"detail":"refused"}"#)]).await;
        let env =
            vec![("PHALA_CLOUD_API_KEY", "phak_test".to_owned()), ("PHALA_CLOUD_API_PREFIX", server.base_url.clone())];
        let out = cli(args(&["compose", "update", "c1", "-f", &compose, "--json"]), env).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(code), "{status}: {stdout}\n{stderr}");
        let error = &json_out(&out)["error"];
        assert_eq!((&error["status"], &error["exit_code"]), (&json!(status), &json!(code)), "{error}");
        assert!(stderr.contains(&status.to_string()), "{stderr}");
        if code == 7 {
            assert!(stderr.contains("try again later"), "{stderr}");
        }
        assert!(
            server.recorded()[0].request_line().starts_with("PATCH /api/v1/cvms/c1/docker-compose "),
            "{:?}",
            server.recorded()[0].request_line()
        );
    }
}

/// Without --yes and without a terminal to ask on, nothing is signed: exit 2, the owner's nonce
/// unmoved, no registration, the CVM's compose unchanged, and the message says what to pass.
#[tokio::test]
async fn without_yes_and_without_a_terminal_nothing_is_signed() {
    let (chain, sim, app) = onchain().await;
    let compose = file("no-tty", "docker-compose.yml", COMPOSE);
    let before = nonce(&chain, 0).await;
    let out = cli(args(&["compose", "update", "cvm-1", "-f", &compose]), owner_env(&sim, &chain, "no-tty")).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("not a terminal") && stderr.contains("--yes"), "{stderr}");
    assert_eq!(nonce(&chain, 0).await, before, "nothing signed");
    assert_eq!(chain.compose_hashes_added(app.into()).await, 0);
    assert!(cvm_view(&sim, "cvm-1").await["compose_file"]["docker_compose_file"] != COMPOSE);
}

/// On a terminal, `compose update` shows the transaction and asks before signing, as `envs
/// update` does: "n" signs nothing (exit 9); "y" registers the hash the question showed, once.
#[tokio::test]
async fn on_a_terminal_compose_update_asks_before_signing() {
    use crate::cli_confirm::on_a_terminal;
    let (chain, sim, app) = onchain().await;
    let compose = file("tty", "docker-compose.yml", COMPOSE);
    let env = owner_env(&sim, &chain, "tty");
    let argv = args(&["compose", "update", "cvm-1", "-f", &compose]);
    let before = nonce(&chain, 0).await;

    let (code, screen) = on_a_terminal(&argv, &env, None, "n").await;
    assert_eq!(code, Some(9), "{screen}");
    assert!(
        screen.contains("registers the compose hash of CVM cvm-1") && screen.contains(&app.to_hex()[2..]),
        "{screen}"
    );
    assert_eq!(nonce(&chain, 0).await, before, "\"n\": nothing signed");
    assert_eq!(chain.compose_hashes_added(app.into()).await, 0);

    let (code, screen) = on_a_terminal(&argv, &env, None, "y").await;
    assert_eq!(code, Some(0), "{screen}");
    let view = cvm_view(&sim, "cvm-1").await;
    assert!(screen.contains(&format!("compose hash   0x{}", bare(&view["compose_hash"]))), "{screen}");
    assert_eq!(chain.compose_hashes_added(app.into()).await, 1, "\"y\": one registration");
    assert_eq!(view["compose_file"]["docker_compose_file"], COMPOSE);
}
