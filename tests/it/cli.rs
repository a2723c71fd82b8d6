//! The `phala-cloud` binary against the simulator: success (text and `--json`), env files, every
//! error class and its exit code, and a canary secret that must appear in no output.
#![cfg(feature = "cli")]

use crate::support;

use std::process::Output;
use std::time::Duration;

use phala_cloud::EnvVars;
use phala_cloud::simulator::{CvmSpec, KmsPubkeyReply, Simulator, SimulatorConfig};
use support::{Reply, ScriptedServer};

const CANARY: &str = "CANARY-7f3a9c-secret-value";
const API_KEY_CANARY: &str = "phak_CANARY_api_key_5e1d";
/// A directory with no credentials file in it.
const NO_CREDENTIALS: &str = "/nonexistent/phala-cloud-tests";

/// Runs the binary with only the given variables of ours set; returns its output.
async fn cli(args: Vec<String>, envs: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_phala-cloud"));
        for var in ["PHALA_CLOUD_API_KEY", "PHALA_CLOUD_API_PREFIX", "PRIVATE_KEY", "ETH_RPC_URL", "DEPLOYER_KEY"] {
            cmd.env_remove(var);
        }
        // Not the official CLI's saved credentials of whoever runs the tests.
        cmd.env("PHALA_CLOUD_DIR", NO_CREDENTIALS);
        cmd.args(args).envs(envs).output().unwrap()
    })
    .await
    .unwrap()
}

/// Runs the binary as [`cli`] does, with `stdin` as its standard input.
pub(crate) async fn cli_stdin(args: Vec<String>, envs: Vec<(&'static str, String)>, stdin: String) -> Output {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_phala-cloud"));
        for var in ["PHALA_CLOUD_API_KEY", "PHALA_CLOUD_API_PREFIX", "PRIVATE_KEY", "ETH_RPC_URL", "DEPLOYER_KEY"] {
            cmd.env_remove(var);
        }
        // Not the official CLI's saved credentials of whoever runs the tests.
        cmd.env("PHALA_CLOUD_DIR", NO_CREDENTIALS);
        cmd.args(args)
            .envs(envs)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // The binary may exit before reading stdin; a broken pipe then is fine.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// A fresh directory for one test's files.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("phala-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Variables of ours to set for one run.
type Env = Vec<(&'static str, String)>;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// No secret in stdout or stderr.
fn assert_no_secret(out: &Output, secrets: &[&str]) {
    let (stdout, stderr) = text(out);
    for secret in secrets {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "secret leaked:\n{stdout}\n{stderr}");
    }
}

async fn offline_sim(config: SimulatorConfig) -> Simulator {
    Simulator::start(config.api_key(API_KEY_CANARY)).await.unwrap()
}

fn update_args(sim: &Simulator, cvm: &str, extra: &[&str]) -> Vec<String> {
    let mut a = args(&["envs", "update", cvm, "--pubkey", &sim.cvm(cvm).unwrap().public_key.to_hex()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn api_env(sim: &Simulator) -> Vec<(&'static str, String)> {
    vec![
        ("PHALA_CLOUD_API_KEY", sim.api_key().to_owned()),
        ("PHALA_CLOUD_API_PREFIX", format!("{}/api/v1", sim.base_url())),
    ]
}

#[tokio::test]
async fn update_succeeds_and_says_what_happened() {
    let sim = offline_sim(SimulatorConfig::default()).await;
    let out =
        cli(update_args(&sim, "cvm-central", &["-e", &format!("TOKEN={CANARY}"), "-e", "MODE=prod"]), api_env(&sim))
            .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("accepted: correlation id "), "{stdout}");
    assert!(stderr.contains("encrypted 2 env vars: TOKEN, MODE") && stderr.contains("phase 1 sent"), "{stderr}");
    assert_no_secret(&out, &[CANARY, API_KEY_CANARY]);
    assert_eq!(
        sim.cvm_env("cvm-central").unwrap(),
        EnvVars::from_pairs([("TOKEN", CANARY), ("MODE", "prod")]).unwrap()
    );
}

#[tokio::test]
async fn env_files_with_comments_and_quotes() {
    let sim = offline_sim(SimulatorConfig::default()).await;
    let dir = std::env::temp_dir().join(format!("phala-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("app.env");
    std::fs::write(
        &file,
        format!(
            "# a comment\nexport DB_URL=\"postgres://u:p@h/db\" # trailing\nGREETING='hi, \"you\"'\n\nTOKEN={CANARY}\n"
        ),
    )
    .unwrap();
    let out = cli(
        update_args(
            &sim,
            "cvm-central",
            &["--env-file", file.to_str().unwrap(), "--env-keys", "DB_URL,GREETING,TOKEN,LATER", "--json"],
        ),
        api_env(&sim),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["allowed_envs_changed"], true);
    assert!(json["correlation_id"].as_str().is_some());
    assert!(json["transaction_hash"].is_null());
    assert_eq!(stdout.lines().count(), 1, "one JSON object");
    assert_no_secret(&out, &[CANARY, API_KEY_CANARY]);
    let seen = sim.cvm_env("cvm-central").unwrap();
    assert_eq!(seen.get("DB_URL"), Some("postgres://u:p@h/db"));
    assert_eq!(seen.get("GREETING"), Some("hi, \"you\""));
    assert_eq!(seen.get("TOKEN"), Some(CANARY));
    assert_eq!(sim.allowed_env_names("cvm-central").unwrap(), ["DB_URL", "GREETING", "LATER", "TOKEN"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn contract_owned_cvm_with_a_real_chain_and_json_output() {
    let chain = support::anvil::LocalChain::start();
    let config = chain.sim_with_one_onchain_cvm();
    let sim = offline_sim(config).await;
    let key = const_hex::encode(chain.signer(0).to_bytes());
    let mut env = api_env(&sim);
    env.push(("PRIVATE_KEY", key.clone()));
    env.push(("ETH_RPC_URL", chain.endpoint.clone()));
    // No terminal here: signing needs --yes.
    let out = cli(update_args(&sim, "cvm-1", &["-e", &format!("SECRET={CANARY}"), "--json", "--yes"]), env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["allowed_envs_changed"], true);
    assert_eq!(json["chain_id"], chain.chain_id);
    assert_eq!(json["compose_hash"].as_str().unwrap().len(), 66);
    assert_eq!(json["transaction_hash"].as_str().unwrap().len(), 66);
    assert_no_secret(&out, &[CANARY, API_KEY_CANARY, &key]);
    assert_eq!(sim.cvm_env("cvm-1").unwrap().get("SECRET"), Some(CANARY));
}

#[tokio::test]
async fn each_error_class_has_its_exit_code_and_says_what_to_do() {
    let sim = offline_sim(SimulatorConfig::default()).await;
    let good = api_env(&sim);
    let secret = format!("S={CANARY}");
    let cases: Vec<(&str, Vec<String>, Env, i32, &str)> = vec![
        ("bad env name", update_args(&sim, "cvm-central", &["-e", "1BAD=x"]), good.clone(), 2, "not a valid env name"),
        (
            "no = in -e (the value may be a secret)",
            update_args(&sim, "cvm-central", &["-e", CANARY]),
            good.clone(),
            2,
            "KEY=VALUE",
        ),
        (
            "env_keys miss an encrypted name",
            update_args(&sim, "cvm-central", &["-e", &secret, "--env-keys", "OTHER"]),
            good.clone(),
            2,
            "env_keys",
        ),
        (
            "bad pubkey",
            args(&["envs", "update", "cvm-central", "-e", "A=1", "--pubkey", "xyz"]),
            good.clone(),
            2,
            "--pubkey",
        ),
        ("no API key", update_args(&sim, "cvm-central", &["-e", &secret]), vec![], 3, "PHALA_CLOUD_API_KEY"),
        (
            "wrong API key",
            update_args(&sim, "cvm-central", &["-e", &secret]),
            vec![("PHALA_CLOUD_API_KEY", "wrong".into()), good[1].clone()],
            3,
            "check the API key",
        ),
        ("another workspace", update_args(&sim, "cvm-foreign", &["-e", &secret]), good.clone(), 3, "workspace"),
        (
            "unknown CVM",
            update_args(&sim, "cvm-central", &["-e", &secret])
                .into_iter()
                .map(|a| if a == "cvm-central" { "cvm-nope".into() } else { a })
                .collect(),
            good.clone(),
            4,
            "check the CVM id",
        ),
        ("no private key for 465", update_args(&sim, "cvm-onchain", &["-e", &secret]), good.clone(), 2, "PRIVATE_KEY"),
        (
            "bad private key",
            update_args(&sim, "cvm-onchain", &["-e", &secret, "--rpc-url", "http://127.0.0.1:9"]),
            [good.clone(), vec![("PRIVATE_KEY", format!("0x{CANARY}"))]].concat(),
            2,
            "private key",
        ),
        (
            "the chain's RPC unreachable (its key-bearing path is not shown)",
            update_args(&sim, "cvm-onchain", &["-e", &secret, "--rpc-url", "http://127.0.0.1:9/v2/RPC-KEY-CANARY"]),
            [good.clone(), vec![("PRIVATE_KEY", "11".repeat(32))]].concat(),
            8,
            "eth_chainId failed",
        ),
        (
            "nothing listening",
            update_args(&sim, "cvm-central", &["-e", &secret]),
            vec![good[0].clone(), ("PHALA_CLOUD_API_PREFIX", "http://127.0.0.1:9/api/v1".into())],
            8,
            "check the network",
        ),
    ];
    for (name, argv, env, code, says) in cases {
        let out = cli(argv, env).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(code), "{name}: {stdout}\n{stderr}");
        assert!(stderr.contains(says), "{name}: {stderr}");
        assert_no_secret(&out, &[CANARY, API_KEY_CANARY, "RPC-KEY-CANARY", &"11".repeat(32)]);
    }
    assert!(sim.cvm_env("cvm-central").unwrap().is_empty(), "nothing was applied");
}

#[tokio::test]
async fn conflict_after_retries_and_server_errors() {
    // A CVM busy for a minute: Retry-After 60 s is longer than the policy allows, so it stops.
    let sim = offline_sim(
        SimulatorConfig::default().cvms([CvmSpec::centralized("c1")]).operation_duration(Duration::from_secs(60)),
    )
    .await;
    let first = cli(update_args(&sim, "c1", &["-e", "A=1"]), api_env(&sim)).await;
    assert_eq!(first.status.code(), Some(0));
    let out = cli(update_args(&sim, "c1", &["-e", "A=2", "--json"]), api_env(&sim)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("wait for the running operation"), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["error"]["status"], 409);
    assert_eq!(json["error"]["exit_code"], 5);

    // A 500, and a status the API does not define.
    for status in [500, 502] {
        let server = ScriptedServer::start(vec![Reply::json(status, r#"{"detail":"KMS RPC error"}"#)]).await;
        let key = phala_cloud::simulator::RecipientSecretKey::generate().unwrap().public_key().to_hex();
        let out = cli(
            args(&["envs", "update", "c1", "-e", "A=1", "--pubkey", &key]),
            vec![("PHALA_CLOUD_API_KEY", API_KEY_CANARY.into()), ("PHALA_CLOUD_API_PREFIX", server.base_url.clone())],
        )
        .await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(7), "{status}: {stderr}");
        assert!(stderr.contains(&status.to_string()) && stderr.contains("try again later"), "{stderr}");
        assert_no_secret(&out, &[API_KEY_CANARY]);
    }
}

#[tokio::test]
async fn encrypt_and_verify_pubkey() {
    let cvm = phala_cloud::simulator::RecipientSecretKey::generate().unwrap();
    let out =
        cli(args(&["envs", "encrypt", "--pubkey", &cvm.public_key().to_hex(), "-e", &format!("K={CANARY}")]), vec![])
            .await;
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert_no_secret(&out, &[CANARY]);
    let env = phala_cloud::simulator::decrypt(stdout.trim(), &cvm).unwrap();
    assert_eq!(env.get("K"), Some(CANARY));

    // The published vector (legacy form): a good signature, then a wrong signer.
    let v: serde_json::Value = serde_json::from_str(include_str!("../fixtures/crypto/vectors.json")).unwrap();
    let sig = &v["pubkey_signature_legacy"][0];
    let field = |k: &str| sig[k].as_str().unwrap().to_owned();
    let (public_key, signature, app_id) = (field("public_key"), field("signature"), field("app_id"));
    let base = ["envs", "verify-pubkey", "--pubkey", &public_key, "--signature", &signature, "--app-id", &app_id];
    let ok = cli(args(&[&base[..], &["--kms-pubkey", &field("expected_signer_compressed")]].concat()), vec![]).await;
    assert_eq!(ok.status.code(), Some(0), "{:?}", text(&ok));
    let wrong = "0x0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"; // the generator point
    let bad = cli(args(&[&base[..], &["--kms-pubkey", wrong]].concat()), vec![]).await;
    assert_eq!(bad.status.code(), Some(6));
    assert!(text(&bad).1.contains("do not encrypt to this key"), "{:?}", text(&bad));
}

/// `verify-pubkey --kms-contract`: the key the KMS contract records on-chain is the trust
/// anchor, not the one the API names.
#[tokio::test]
async fn verify_pubkey_against_the_kms_contract_on_chain() {
    let chain = support::anvil::LocalChain::start();
    let url: url::Url = chain.endpoint.parse().unwrap();
    let app = phala_cloud::AppId::from(chain.deploy_app_auth(0).await);
    let kms_key = k256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let kms_pub = support::k256_public(&kms_key);
    let kms = phala_cloud::simulator::deploy_kms_auth(&url, chain.signer(0), &kms_pub, &[app]).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let run = |signed: phala_cloud::SignedEnvPubkey, extra: &[&str]| {
        let mut argv = vec![
            "envs".to_owned(),
            "verify-pubkey".into(),
            "--pubkey".into(),
            signed.public_key.to_hex(),
            "--signature".into(),
            const_hex::encode(signed.signature),
            "--app-id".into(),
            app.to_hex(),
            "--kms-contract".into(),
            kms.to_string(),
        ];
        if let Some(ts) = signed.timestamp {
            argv.extend(["--timestamp".into(), ts.to_string()]);
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        cli(argv, vec![("ETH_RPC_URL", chain.endpoint.clone())])
    };
    let ok = run(support::sign_env_pubkey(&kms_key, &app, Some(now)), &[]).await;
    assert_eq!(ok.status.code(), Some(0), "{:?}", text(&ok));
    assert!(text(&ok).0.contains(&format!("KMS contract {kms}")), "{:?}", text(&ok));
    assert!(!text(&ok).1.contains("warning"), "{:?}", text(&ok));

    let legacy = run(support::sign_env_pubkey(&kms_key, &app, None), &[]).await;
    assert_eq!(legacy.status.code(), Some(0), "{:?}", text(&legacy));
    assert!(text(&legacy).1.contains("no freshness window"), "{:?}", text(&legacy));

    let other = k256::ecdsa::SigningKey::from_slice(&[0x43; 32]).unwrap();
    let forged = run(support::sign_env_pubkey(&other, &app, Some(now)), &[]).await;
    assert_eq!(forged.status.code(), Some(6), "{:?}", text(&forged));
    assert!(text(&forged).1.contains("do not encrypt to this key"), "{:?}", text(&forged));
    // The API naming its own key as kms_info.k256_pubkey: refused, the chain's key differs.
    let other_pub = support::k256_public(&other).to_string();
    let named = run(support::sign_env_pubkey(&other, &app, Some(now)), &["--kms-pubkey", &other_pub]).await;
    assert_eq!(named.status.code(), Some(6), "{:?}", text(&named));
    assert!(text(&named).1.contains("is not the key the KMS contract"), "{:?}", text(&named));
    assert!(!text(&named).1.contains(&chain.endpoint), "the RPC URL is not shown");
}

/// An RPC that cannot be reached: exit 8, the cause said once (not "error sending request"
/// twice), the key not taken for checked, and the RPC URL (with its key) not shown.
#[tokio::test]
async fn verify_pubkey_against_an_unreachable_rpc_says_why_once_and_hides_the_url() {
    let rpc = format!("{}/v2/{}", support::refused_url(), "k3y".repeat(12));
    let argv = [
        "envs",
        "verify-pubkey",
        "--pubkey",
        &"11".repeat(32),
        "--signature",
        &"22".repeat(65),
        "--app-id",
        &"ab".repeat(20),
        "--kms-contract",
        &format!("0x{}", "cd".repeat(20)),
        "--timestamp",
        "1764700000",
    ];
    let out = cli(argv.iter().map(|s| s.to_string()).collect(), vec![("ETH_RPC_URL", rpc.clone())]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(8), "{stdout}\n{stderr}");
    assert!(stderr.contains("Connection refused"), "the cause is said: {stderr}");
    assert_eq!(stderr.matches("error sending request").count(), 1, "said once: {stderr}");
    assert!(stderr.contains("could not be checked"), "{stderr}");
    assert!(!stderr.contains("k3y") && !stderr.contains("127.0.0.1"), "the RPC URL is not shown: {stderr}");
}

/// A .env file is data: `${PRIVATE_KEY}` in it is sent as written, even with the owner's key in
/// PRIVATE_KEY, and `pa$sw0rd` is not altered.
#[tokio::test]
async fn env_file_values_are_literal_not_expanded_from_the_environment() {
    let sim = offline_sim(SimulatorConfig::default()).await;
    let dir = temp_dir("literal");
    let file = dir.join("app.env");
    std::fs::write(&file, "DEBUG=${PRIVATE_KEY}\nPASS=pa$sw0rd\nQUOTED=\"$PRIVATE_KEY\"\n").unwrap();
    let key = "5a".repeat(32);
    let mut env = api_env(&sim);
    env.push(("PRIVATE_KEY", key.clone()));
    let out = cli(update_args(&sim, "cvm-central", &["--env-file", file.to_str().unwrap()]), env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_no_secret(&out, &[&key, API_KEY_CANARY]);
    let seen = sim.cvm_env("cvm-central").unwrap();
    assert_eq!(
        seen.iter().collect::<Vec<_>>(),
        [("DEBUG", "${PRIVATE_KEY}"), ("PASS", "pa$sw0rd"), ("QUOTED", "$PRIVATE_KEY")]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--env-file` refuses what is not a regular file, before reading from it.
#[cfg(unix)]
#[tokio::test]
async fn env_file_must_be_a_regular_file() {
    let sim = offline_sim(SimulatorConfig::default()).await;
    let out = cli(update_args(&sim, "cvm-central", &["--env-file", "/dev/zero"]), api_env(&sim)).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--env-file /dev/zero") && stderr.contains("not a regular file"), "{stderr}");
}

/// Secrets are never argument values: the flags that took them are refused, pointing to the
/// variable and the file flag, and the value is not echoed.
#[tokio::test]
async fn secret_flags_taking_values_are_refused_without_echoing_them() {
    let sim = offline_sim(SimulatorConfig::default()).await;
    let key = format!("0x{CANARY}");
    let update = |extra: &[&str]| update_args(&sim, "cvm-central", &[&["-e", "A=1"], extra].concat());
    let deploy = vec![("DEPLOYER_KEY", "11".repeat(32))];
    let cases: Vec<(Vec<String>, Env, &str, &str, &str)> = vec![
        (update(&["--private-key", &key]), api_env(&sim), "--private-key", "PRIVATE_KEY", "--private-key-file"),
        (
            update(&[&format!("--private-key={key}")]),
            api_env(&sim),
            "--private-key",
            "PRIVATE_KEY",
            "--private-key-file",
        ),
        (update(&["--api-key", CANARY]), vec![], "--api-key", "PHALA_CLOUD_API_KEY", "--api-key-file"),
        (update(&["--private-key"]), api_env(&sim), "--private-key", "PRIVATE_KEY", "--private-key-file"),
        (
            args(&["simulate", "--rpc-url", "http://127.0.0.1:9", "--deployer-key", &key]),
            vec![],
            "--deployer-key",
            "DEPLOYER_KEY",
            "--deployer-key-file",
        ),
        (
            args(&["simulate", "--rpc-url", "http://127.0.0.1:9", "--api-key", CANARY]),
            deploy,
            "--api-key",
            "PHALA_SIMULATOR_API_KEY",
            "--api-key-file",
        ),
    ];
    for (argv, env, flag, var, file_flag) in cases {
        let out = cli(argv.clone(), env).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {stdout}\n{stderr}");
        assert!(
            stderr.contains(&format!("{flag} no longer takes")) && stderr.contains(var) && stderr.contains(file_flag),
            "{argv:?}: {stderr}"
        );
        assert_no_secret(&out, &[CANARY]);
    }
    assert!(sim.cvm_env("cvm-central").unwrap().is_empty(), "nothing was sent");

    // The help names the file flags and the variables, and no flag that takes a secret.
    for argv in [args(&["envs", "update", "--help"]), args(&["simulate", "--help"])] {
        let out = cli(argv.clone(), vec![]).await;
        let (help, _) = text(&out);
        assert_eq!(out.status.code(), Some(0));
        for gone in ["--private-key ", "--private-key <", "--api-key <", "--api-key ", "--deployer-key <"] {
            assert!(!help.contains(gone), "{argv:?} lists {gone:?}:\n{help}");
        }
        assert!(help.contains("--api-key-file <PATH>"), "{help}");
    }
    let (help, _) = text(&cli(args(&["envs", "update", "--help"]), vec![]).await);
    assert!(help.contains("--private-key-file <PATH>") && help.contains("PRIVATE_KEY"), "{help}");
    assert!(help.contains("PHALA_CLOUD_API_KEY"), "{help}");
    let (help, _) = text(&cli(args(&["simulate", "--help"]), vec![]).await);
    assert!(help.contains("--deployer-key-file <PATH>") && help.contains("DEPLOYER_KEY"), "{help}");
}

/// The owner's key from stdin and the API key from a file drive the whole flow on a chain; a
/// file flag wins over its variable.
#[tokio::test]
async fn keys_from_a_file_and_from_stdin() {
    let chain = support::anvil::LocalChain::start();
    let config = chain.sim_with_one_onchain_cvm();
    let sim = offline_sim(config).await;
    let dir = temp_dir("keys");
    let api_key_file = dir.join("api-key");
    std::fs::write(&api_key_file, format!("  {API_KEY_CANARY}\n\n")).unwrap();
    let key = const_hex::encode(chain.signer(0).to_bytes());
    let env = vec![
        ("PHALA_CLOUD_API_PREFIX", format!("{}/api/v1", sim.base_url())),
        ("PHALA_CLOUD_API_KEY", "a-wrong-key-the-file-overrides".into()),
        ("ETH_RPC_URL", chain.endpoint.clone()),
    ];
    let argv = update_args(
        &sim,
        "cvm-1",
        &[
            "-e",
            &format!("SECRET={CANARY}"),
            "--api-key-file",
            api_key_file.to_str().unwrap(),
            "--private-key-file",
            "-",
            "--json",
            "--yes",
        ],
    );
    let out = cli_stdin(argv, env, format!("0x{key}\nnot read\n")).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["transaction_hash"].as_str().unwrap().len(), 66);
    assert_no_secret(&out, &[CANARY, API_KEY_CANARY, &key]);
    assert_eq!(sim.cvm_env("cvm-1").unwrap().get("SECRET"), Some(CANARY));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn key_files_that_cannot_hold_a_key_are_refused_clearly() {
    let sim = offline_sim(SimulatorConfig::default()).await;
    let dir = temp_dir("badkeys");
    let empty = dir.join("empty");
    std::fs::write(&empty, " \n").unwrap();
    let dotenv = dir.join("app.env");
    std::fs::write(&dotenv, format!("A=1\nTOKEN={CANARY}\n")).unwrap();
    let missing = dir.join("missing");
    let prefix = vec![("PHALA_CLOUD_API_PREFIX", format!("{}/api/v1", sim.base_url()))];
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--api-key-file".into(), path(&missing)], "missing"),
        (vec!["--api-key-file".into(), path(&empty)], "empty"),
        (vec!["--api-key-file".into(), path(&dotenv)], "more than one line"),
        (vec!["--api-key-file".into(), path(&dir)], "not a regular file"),
        (vec!["--api-key-file".into(), "/dev/zero".into()], "not a regular file"),
        (vec!["--api-key-file".into(), "-".into(), "--private-key-file".into(), "-".into()], "read stdin"),
    ];
    for (extra, says) in cases {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let argv = update_args(&sim, "cvm-central", &[&["-e", "A=1"], &extra[..]].concat());
        let out = cli(argv, prefix.clone()).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(says) && stderr.contains(extra[0]), "{extra:?}: {stderr}");
        assert_no_secret(&out, &[CANARY]);
    }
    assert!(sim.cvm_env("cvm-central").unwrap().is_empty(), "nothing was sent");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `-e NAME` takes NAME's value from the environment (as docker does), so it never shows in the
/// process list; an unset NAME is an error that names it.
#[tokio::test]
async fn e_name_alone_takes_the_value_from_the_environment() {
    let sim = offline_sim(SimulatorConfig::default()).await;
    let mut env = api_env(&sim);
    env.push(("FROM_ENV", CANARY.into()));
    let out = cli(update_args(&sim, "cvm-central", &["-e", "FROM_ENV", "-e", "MODE=prod"]), env.clone()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_no_secret(&out, &[CANARY, API_KEY_CANARY]);
    assert_eq!(
        sim.cvm_env("cvm-central").unwrap(),
        EnvVars::from_pairs([("FROM_ENV", CANARY), ("MODE", "prod")]).unwrap()
    );

    let out = cli(update_args(&sim, "cvm-central", &["-e", "A=1", "-e", "PHALA_TEST_UNSET_NAME"]), env).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PHALA_TEST_UNSET_NAME is not set") && stderr.contains("PHALA_TEST_UNSET_NAME=VALUE"),
        "{stderr}"
    );
}

/// A rejected RPC URL is not echoed: providers put API keys in its path.
#[tokio::test]
async fn a_bad_rpc_url_is_refused_without_echoing_it() {
    let sim = offline_sim(SimulatorConfig::default()).await;
    let canary = "RPC-KEY-CANARY-b7e1";
    let bad = format!("http//rpc.example/v2/{canary}");
    let with_rpc_var = [api_env(&sim), vec![("ETH_RPC_URL", bad.clone())]].concat();
    let deploy = vec![("DEPLOYER_KEY", "11".repeat(32))];
    let cases: Vec<(Vec<String>, Env, &str)> = vec![
        (update_args(&sim, "cvm-central", &["-e", "A=1", "--rpc-url", &bad]), api_env(&sim), "--rpc-url"),
        (update_args(&sim, "cvm-central", &["-e", "A=1"]), with_rpc_var, "ETH_RPC_URL"),
        (
            update_args(&sim, "cvm-central", &["-e", "A=1", "--rpc-url", &format!("ftp://rpc.example/{canary}")]),
            api_env(&sim),
            "--rpc-url",
        ),
        (args(&["simulate", "--rpc-url", &bad]), deploy, "--rpc-url"),
    ];
    for (argv, env, names) in cases {
        let out = cli(argv.clone(), env).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(names) && stderr.contains("http"), "{argv:?}: {stderr}");
        assert_no_secret(&out, &[canary]);
    }
    // A URL that carries a key, given on the command line (where the process list shows it):
    // refused, pointing at the variable; the same URL in the variable is taken.
    let keyed = format!("https://rpc.example/v2/{canary}-0123456789");
    let out = cli(update_args(&sim, "cvm-central", &["-e", "A=1", "--rpc-url", &keyed]), api_env(&sim)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("process list") && stderr.contains("set ETH_RPC_URL instead"), "{stderr}");
    assert_no_secret(&out, &[canary]);
    assert!(sim.cvm_env("cvm-central").unwrap().is_empty(), "nothing was sent");
    let with_var = [api_env(&sim), vec![("ETH_RPC_URL", keyed.clone())]].concat();
    // `--rpc-url "$ETH_RPC_URL"`: on the command line all the same.
    let out = cli(update_args(&sim, "cvm-central", &["-e", "A=1", "--rpc-url", &keyed]), with_var.clone()).await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let out = cli(update_args(&sim, "cvm-central", &["-e", "A=1"]), with_var).await;
    let (stdout, stderr) = text(&out);
    assert!(!stderr.contains("process list"), "the variable is not refused: {stdout}\n{stderr}");
    assert_no_secret(&out, &[canary]);
}

/// A 2xx that does not prove acceptance (a wrong API prefix's HTML page, an empty 200, a 204)
/// is not "accepted": the CLI exits non-zero and says the update may have been applied.
#[tokio::test]
async fn an_unproven_2xx_is_not_success() {
    let server = httpmock::MockServer::start_async().await;
    let pubkey = phala_cloud::simulator::RecipientSecretKey::generate().unwrap().public_key().to_hex();
    for (cvm, status, body) in [
        ("cvm-html", 200, "<html><body>Welcome to our dashboard</body></html>"),
        ("cvm-empty", 200, ""),
        ("cvm-204", 204, ""),
    ] {
        server.mock(|when, then| {
            when.method(httpmock::Method::PATCH).path(format!("/api/v1/cvms/{cvm}/envs"));
            then.status(status).header("content-type", "text/html").body(body);
        });
        let env = vec![
            ("PHALA_CLOUD_API_KEY", API_KEY_CANARY.to_owned()),
            ("PHALA_CLOUD_API_PREFIX", format!("{}/api/v1", server.base_url())),
        ];
        let out = cli(args(&["envs", "update", cvm, "--pubkey", &pubkey, "-e", "A=1"]), env).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(7), "{cvm}: {stdout}\n{stderr}");
        assert!(stdout.is_empty(), "{cvm}: nothing claims success: {stdout}");
        assert!(stderr.contains("may have applied") && stderr.contains("PHALA_CLOUD_API_PREFIX"), "{cvm}: {stderr}");
        assert_no_secret(&out, &[API_KEY_CANARY]);
    }
}

/// `-v`/`-vv` trace this crate's steps to stderr, `RUST_LOG` sets the filter exactly, and
/// `--json` keeps stdout one JSON object whatever the verbosity; no secret is traced.
#[tokio::test]
async fn verbosity_traces_to_stderr_and_json_stays_clean() {
    let sim = offline_sim(SimulatorConfig::default()).await;
    let secret = format!("TOKEN={CANARY}");
    let quiet = cli(update_args(&sim, "cvm-central", &["-e", &secret, "--json"]), api_env(&sim)).await;
    let (_, quiet_err) = text(&quiet);
    assert!(!quiet_err.contains("phala_cloud"), "no tracing without -v: {quiet_err}");
    for (flags, env, want) in [
        (vec!["-v"], vec![], " INFO "),
        (vec!["-vv"], vec![], " DEBUG "),
        (vec![], vec![("RUST_LOG", "phala_cloud=debug".to_owned())], " DEBUG "),
    ] {
        let mut a = flags.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        a.extend(update_args(&sim, "cvm-central", &["-e", &secret, "--json"]));
        let mut e = api_env(&sim);
        e.extend(env);
        let out = cli(a, e).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{flags:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(want) && stderr.contains("phala_cloud"), "{flags:?}: {stderr}");
        let json: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{flags:?}: stdout is not one JSON object ({e}): {stdout}"));
        assert!(json["correlation_id"].is_string(), "{json}");
        assert_no_secret(&out, &[CANARY, API_KEY_CANARY]);
    }
    // A filter the parser refuses is bad input, before anything is sent.
    let before = sim.operations().len();
    let mut e = api_env(&sim);
    e.push(("RUST_LOG", "phala_cloud=[".to_owned()));
    let out = cli(update_args(&sim, "cvm-central", &["-e", "A=1"]), e).await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("RUST_LOG"), "{:?}", text(&out));
    assert_eq!(sim.operations().len(), before, "nothing sent");
}

/// `completions SHELL` prints a script naming the commands; each command's `--help` ends with
/// examples.
#[tokio::test]
async fn completions_and_help_examples() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = cli(args(&["completions", shell]), vec![]).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{shell}: {stderr}");
        assert!(stdout.contains("phala-cloud") && stdout.contains("verify-pubkey"), "{shell}: {stdout}");
    }
    assert_eq!(cli(args(&["completions", "tcsh"]), vec![]).await.status.code(), Some(2));
    for command in [
        &["envs", "update"][..],
        &["envs", "encrypt"],
        &["envs", "verify-pubkey"],
        &["compose", "update"],
        &["cvms", "update"],
        &["simulate"],
    ] {
        let mut a = args(command);
        a.push("--help".into());
        let (stdout, _) = text(&cli(a, vec![]).await);
        let examples = stdout.rsplit("Examples:").next().filter(|_| stdout.contains("Examples:"));
        let examples = examples.unwrap_or_else(|| panic!("{command:?} --help has no examples: {stdout}"));
        let lines: Vec<&str> = examples
            .lines()
            .filter(|l| l.trim_start().starts_with("phala-cloud ") || l.contains(" phala-cloud "))
            .collect();
        assert!((2..=3).contains(&lines.len()), "{command:?}: {examples}");
    }
}

/// `-e KEY=VALUE`, `-e KEY`, `-e FILE` and several `--env-file` mix into one env; `--env-file -`
/// reads stdin; a name given twice across them is refused (naming it, not its value); a secret
/// given to `-e` without its name is not echoed, even though it is tried as a file path.
#[tokio::test]
async fn env_sources_mix_and_stdin_is_a_dotenv_file() {
    let sim = offline_sim(SimulatorConfig::default()).await;
    let dir = temp_dir("env-sources");
    let (one, two) = (dir.join("one.env"), dir.join("two.env"));
    std::fs::write(&one, format!("TOKEN={CANARY}\n")).unwrap();
    std::fs::write(&two, "# two\nREGION=eu\n").unwrap();
    let mut env = api_env(&sim);
    env.push(("FROM_ENV", "from-env".into()));
    let out = cli_stdin(
        update_args(
            &sim,
            "cvm-central",
            &[
                "-e",
                "A=1",
                "-e",
                "FROM_ENV",
                "-e",
                one.to_str().unwrap(),
                "--env-file",
                two.to_str().unwrap(),
                "--env-file",
                "-",
            ],
        ),
        env.clone(),
        "FROM_STDIN='quoted value'\n".into(),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_no_secret(&out, &[CANARY, API_KEY_CANARY]);
    let got = sim.cvm_env("cvm-central").unwrap();
    let mut pairs: Vec<(String, String)> = got.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    pairs.sort();
    let want =
        [("A", "1"), ("FROM_ENV", "from-env"), ("FROM_STDIN", "quoted value"), ("REGION", "eu"), ("TOKEN", CANARY)];
    assert_eq!(pairs, want.map(|(k, v)| (k.to_owned(), v.to_owned())));

    // The same name from a file and from -e.
    let out =
        cli(update_args(&sim, "cvm-central", &["-e", "TOKEN=x", "--env-file", one.to_str().unwrap()]), env.clone())
            .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`TOKEN`"), "{stderr}");
    assert_no_secret(&out, &[CANARY]);

    // stdin is one stream: not for an env file and a key file at once.
    let out = cli(update_args(&sim, "cvm-central", &["--env-file", "-", "--api-key-file", "-"]), env.clone()).await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("stdin"), "{:?}", text(&out));

    // A bare secret is neither a name nor a file: refused without being echoed.
    let out = cli(update_args(&sim, "cvm-central", &["-e", CANARY]), env).await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert_no_secret(&out, &[CANARY]);
}

/// The official CLI's saved credentials give the key and prefix when neither the flag nor the
/// variable does (its current profile, or --profile); the variable still wins; a missing
/// profile and a malformed file are refused without showing what the file holds.
#[tokio::test]
async fn the_official_clis_saved_profile_gives_key_and_prefix() {
    let sim = offline_sim(SimulatorConfig::default()).await;
    let dir = temp_dir("credentials");
    let prefix = format!("{}/api/v1", sim.base_url());
    let write = |json: serde_json::Value| std::fs::write(dir.join("credentials.json"), json.to_string()).unwrap();
    write(serde_json::json!({
        "schema_version": 1,
        "current_profile": "work",
        "profiles": {
            "work": { "token": sim.api_key(), "api_prefix": prefix, "workspace": {}, "user": {} },
            "stale": { "token": "phak_wrong_key", "api_prefix": prefix },
        }
    }));
    let home = vec![("PHALA_CLOUD_DIR", dir.to_str().unwrap().to_owned())];
    let update = |extra: &[&str]| {
        let mut a = update_args(&sim, "cvm-central", &["-e", "A=1"]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    let out = cli(update(&[]), home.clone()).await;
    assert_eq!(out.status.code(), Some(0), "the current profile: {:?}", text(&out));
    assert_no_secret(&out, &[API_KEY_CANARY]);

    let out = cli(update(&["--profile", "stale"]), home.clone()).await;
    assert_eq!(out.status.code(), Some(3), "another profile's key is sent: {:?}", text(&out));

    let mut env = home.clone();
    env.push(("PHALA_CLOUD_API_KEY", sim.api_key().to_owned()));
    let out = cli(update(&["--profile", "stale"]), env).await;
    assert_eq!(out.status.code(), Some(0), "the variable comes before the profile: {:?}", text(&out));

    let out = cli(update(&["--profile", "nope"]), home.clone()).await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("no profile \"nope\""), "{:?}", text(&out));

    std::fs::write(
        dir.join("credentials.json"),
        format!("{{\"profiles\": {{\"work\": {{\"token\": 7, \"x\": \"{API_KEY_CANARY}\""),
    )
    .unwrap();
    let out = cli(update(&[]), home).await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("content not shown"), "{:?}", text(&out));
    assert_no_secret(&out, &[API_KEY_CANARY]);
}

/// `envs update CVM` and `envs encrypt CVM` without --pubkey: the key is looked up and its KMS
/// signature checked, the way it was checked is said on stderr, and the legacy form warns
/// (also with --json, whose stdout stays one object saying it).
#[tokio::test]
async fn update_and_encrypt_look_the_key_up_without_pubkey() {
    let secret = phala_cloud::simulator::RecipientSecretKey::generate().unwrap();
    let sim = offline_sim(SimulatorConfig::default().cvms([
        CvmSpec::centralized("c").secret_key(secret.clone()),
        CvmSpec::onchain("o"),
        CvmSpec::onchain("l").kms_pubkey_reply(KmsPubkeyReply::Legacy),
    ]))
    .await;
    let tx = format!("0x{}", "07".repeat(32));
    let update = |cvm: &str, extra: &[&str]| {
        let mut a = args(&["envs", "update", cvm, "-e", &format!("TOKEN={CANARY}")]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    let out = cli(update("c", &[]), api_env(&sim)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("env-encryption key {}: from the API (centralized KMS", secret.public_key())),
        "{stderr}"
    );
    assert_eq!(sim.cvm_env("c").unwrap().get("TOKEN"), Some(CANARY));

    let out = cli(update("o", &["--transaction-hash", &tx]), api_env(&sim)).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("signed by the KMS key {} that the API reports", sim.kms_public_key()))
            && stderr.contains("warning: the KMS signature was checked against the KMS key the API reports")
            && stderr.contains("give --rpc-url to check it against the KMS contract on-chain")
            && !stderr.contains("legacy"),
        "{stderr}"
    );
    assert_eq!(sim.cvm_env("o").unwrap().get("TOKEN"), Some(CANARY), "encrypted to the key the KMS signed");

    for json in [false, true] {
        let extra: &[&str] = if json { &["--transaction-hash", &tx, "--json"] } else { &["--transaction-hash", &tx] };
        let out = cli(update("l", extra), api_env(&sim)).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("warning: the KMS signed this env-encryption key in the legacy form"), "{stderr}");
        if json {
            let value: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(value["encryption_key"]["legacy_signature"], true, "{value}");
            assert_eq!(value["encryption_key"]["public_key"], sim.cvm("l").unwrap().public_key.to_hex());
        }
        assert_no_secret(&out, &[CANARY, API_KEY_CANARY]);
    }

    // `envs encrypt CVM`: the blob is the CVM's to decrypt; --json says how the key was found.
    let sent = sim.operations().len();
    let out = cli(args(&["envs", "encrypt", "c", "-e", &format!("K={CANARY}")]), api_env(&sim)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(phala_cloud::simulator::decrypt(stdout.trim(), &secret).unwrap().get("K"), Some(CANARY));
    assert!(stderr.contains("centralized KMS"), "{stderr}");
    let out = cli(args(&["envs", "encrypt", "o", "-e", "K=1", "--json"]), api_env(&sim)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(value["encryption_key"]["public_key"], sim.cvm("o").unwrap().public_key.to_hex());
    assert!(value["encryption_key"]["verification"].as_str().unwrap().contains("signed by the KMS key"), "{value}");
    assert_eq!(value["encryption_key"]["vouched_by"], "api", "the API reported the KMS key: {value}");
    assert!(stderr.contains("warning: the KMS signature was checked against the KMS key the API reports"), "{stderr}");
    // Looking up needs the API key (as update does); --pubkey needs none, and no CVM.
    let out = cli(args(&["envs", "encrypt", "c", "-e", "K=1"]), vec![]).await;
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    assert!(text(&out).1.contains("no API key"), "{:?}", text(&out));
    let out = cli(args(&["envs", "encrypt", "-e", "K=1"]), api_env(&sim)).await;
    assert_eq!(out.status.code(), Some(2), "neither a CVM nor --pubkey: {:?}", text(&out));
    assert_eq!(sim.operations().len(), sent, "encrypt sends nothing");
}

/// A key whose KMS signature does not verify (tampered, stale, signed for another app) stops
/// `envs update` and `envs encrypt` with exit 6 and the reason, before anything is encrypted:
/// the simulator sees no PATCH.
#[tokio::test]
async fn a_key_that_does_not_verify_exits_6_and_nothing_is_sent() {
    let faults = [
        ("tampered", KmsPubkeyReply::TamperedSignature, "is not signed by the KMS"),
        ("stale", KmsPubkeyReply::StaleTimestamp, "older than the 300 s allowed"),
        ("other-app", KmsPubkeyReply::SignedForOtherApp, "is not signed by the KMS"),
    ];
    let sim = offline_sim(
        SimulatorConfig::default()
            .cvms(faults.iter().map(|(id, fault, _)| CvmSpec::onchain(*id).kms_pubkey_reply(*fault))),
    )
    .await;
    for (cvm, _, why) in faults {
        for command in ["update", "encrypt"] {
            for json in [false, true] {
                let mut a = args(&["envs", command, cvm, "-e", &format!("TOKEN={CANARY}")]);
                if json {
                    a.push("--json".into());
                }
                let out = cli(a, api_env(&sim)).await;
                let (stdout, stderr) = text(&out);
                assert_eq!(out.status.code(), Some(6), "{cvm} {command}: {stdout}\n{stderr}");
                let nothing =
                    if command == "update" { "nothing was encrypted or sent" } else { "nothing was encrypted" };
                assert!(stderr.contains(why) && stderr.contains(nothing), "{cvm}: {stderr}");
                assert_eq!(stderr.matches("nothing was encrypted").count(), 1, "said once: {stderr}");
                assert!(stderr.contains("do not encrypt to this key"), "{stderr}");
                if json {
                    let value: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
                    assert_eq!(value["error"]["exit_code"], 6, "{value}");
                } else {
                    assert!(stdout.is_empty(), "no blob: {stdout}");
                }
                assert_no_secret(&out, &[CANARY, API_KEY_CANARY]);
            }
        }
    }
    assert!(sim.operations().is_empty(), "no PATCH: {:?}", sim.operations());
}

/// With --rpc-url (or ETH_RPC_URL) the KMS key is the one the KMS contract records on anvil: an
/// impostor KMS key that the API reports is refused (exit 6), the honest one goes through.
#[tokio::test]
async fn a_looked_up_key_is_checked_against_the_kms_contract_with_an_rpc() {
    let chain = support::anvil::LocalChain::start();
    let sim = offline_sim(
        SimulatorConfig::default()
            .cvms([
                CvmSpec::onchain("cvm-1"),
                CvmSpec::onchain("cvm-imp").kms_pubkey_reply(KmsPubkeyReply::ImpostorKms),
            ])
            .chain(chain.sim_chain()),
    )
    .await;
    let kms_contract = sim.chain().unwrap().kms_contract.unwrap();
    let mut env = api_env(&sim);
    env.push(("ETH_RPC_URL", chain.endpoint.clone()));

    // Without an RPC, `encrypt` trusts the key the API reports (and says how to do better).
    let out = cli(args(&["envs", "encrypt", "cvm-imp", "-e", "A=1"]), api_env(&sim)).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).1.contains("give --rpc-url"), "{:?}", text(&out));
    for command in ["encrypt", "update"] {
        let out = cli(args(&["envs", command, "cvm-imp", "-e", "A=1"]), env.clone()).await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(6), "{command}: {stderr}");
        assert!(stderr.contains(&format!("not vouched for by the KMS contract {kms_contract}")), "{stderr}");
        assert!(!stderr.contains(&chain.endpoint), "the RPC URL is not shown: {stderr}");
    }
    assert!(sim.operations().is_empty(), "no PATCH: {:?}", sim.operations());
    // A KMS contract named with --kms-contract that is not kms_info's: refused, nothing sent.
    let other = format!("0x{}", "42".repeat(20));
    let out = cli(args(&["envs", "encrypt", "cvm-1", "-e", "A=1", "--kms-contract", &other]), env.clone()).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains(&format!("names the KMS contract {kms_contract}, not the one given")), "{stderr}");
    let out =
        cli(args(&["envs", "encrypt", "cvm-1", "-e", "A=1", "--kms-contract", &kms_contract.to_string()]), env.clone())
            .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("(the contract the caller named)"), "{stderr}");
    assert!(sim.operations().is_empty(), "encrypt sends nothing: {:?}", sim.operations());

    let key = const_hex::encode(chain.signer(0).to_bytes());
    env.push(("PRIVATE_KEY", key.clone()));
    let out = cli(args(&["envs", "update", "cvm-1", "-e", &format!("SECRET={CANARY}"), "--yes"]), env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("that the KMS contract {kms_contract} records on-chain")), "{stderr}");
    assert!(stdout.contains("registered compose hash"), "{stdout}");
    assert_no_secret(&out, &[CANARY, API_KEY_CANARY, &key]);
    assert_eq!(sim.cvm_env("cvm-1").unwrap().get("SECRET"), Some(CANARY));
}
