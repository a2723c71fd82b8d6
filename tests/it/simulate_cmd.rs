//! `phala-cloud simulate` as a separate process: one JSON line on stdout that a client in any
//! language can use, offline mode said on stderr, a real chain with `--rpc-url` and `DEPLOYER_KEY`;
//! and `phala-cloud demo`, the main job.
#![cfg(feature = "cli")]

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use phala_cloud::{Client, RecipientPublicKey};
use phala_cloud::{EnvVars, encrypt};

/// The child process, killed when the test ends.
struct Simulate(Child);

impl Drop for Simulate {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn simulate(args: &[&str], envs: &[(&str, &str)]) -> (Simulate, serde_json::Value, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phala-cloud"))
        .arg("simulate")
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let stderr = child.stderr.take().unwrap();
    let guard = Simulate(child);
    let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    // Read what stderr said at start without blocking on the rest.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stderr).read_line(&mut first);
        let _ = tx.send(first);
    });
    let said = rx.recv_timeout(std::time::Duration::from_millis(500)).unwrap_or_default();
    (guard, json, said)
}

async fn update(described: &serde_json::Value, cvm: &serde_json::Value) -> Result<(), phala_cloud::UpdateEnvsError> {
    let client = Client::builder()
        .base_url(described["base_url"].as_str().unwrap())
        .api_key(described["api_key"].as_str().unwrap())
        .build()
        .unwrap();
    let key: RecipientPublicKey = cvm["public_key"].as_str().unwrap().parse().unwrap();
    let body = encrypt(&EnvVars::from_pairs([("A", "1")]).unwrap(), key).unwrap().into_body();
    client.update_cvm_envs(cvm["id"].as_str().unwrap(), &body).await.map(drop)
}

#[tokio::test]
async fn offline_simulator_prints_its_cvms_and_serves_them() {
    let (_child, d, stderr) = simulate(&["--listen", "127.0.0.1:0"], &[]);
    assert!(stderr.contains("OFFLINE MODE"), "{stderr}");
    assert_eq!(d["verifies_chain"], false);
    assert!(d["base_url"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    let cvms = d["cvms"].as_array().unwrap();
    let central = cvms.iter().find(|c| c["kms"] == "centralized").unwrap();
    let onchain = cvms.iter().find(|c| c["kms"] == "onchain").unwrap();
    assert!(central["app_id"].is_null());
    assert_eq!(onchain["app_id"].as_str().unwrap().len(), 42);
    update(&d, central).await.unwrap();
    assert!(update(&d, onchain).await.unwrap_err().is_registration_required());
}

#[tokio::test]
async fn with_a_chain_it_deploys_an_app_contract_owned_by_the_deployer() {
    let chain = support::anvil::LocalChain::start();
    let key = const_hex::encode(chain.signer(3).to_bytes());
    let (_child, d, stderr) = simulate(&["--rpc-url", &chain.endpoint], &[("DEPLOYER_KEY", &key)]);
    assert!(!stderr.contains(&key));
    assert_eq!(d["verifies_chain"], true);
    assert_eq!(d["chain"]["chain_id"], chain.chain_id);
    let onchain = d["cvms"].as_array().unwrap().iter().find(|c| c["kms"] == "onchain").unwrap();
    let app: alloy::primitives::Address = onchain["app_id"].as_str().unwrap().parse().unwrap();
    let provider = support::anvil::wallet_provider(&chain.endpoint, chain.signer(0));
    let owner = phala_cloud::simulator::AppAuth::new(app, provider).owner().call().await.unwrap();
    assert_eq!(owner, chain.signer(3).address());
    // The KMS contract it deployed serves the app, as kms_info will say.
    let kms: alloy::primitives::Address = d["chain"]["kms_contract"].as_str().unwrap().parse().unwrap();
    let kms = phala_cloud::onchain::KmsContract::new(kms, &chain.endpoint.parse().unwrap()).unwrap();
    assert!(kms.is_registered(app.into()).await.unwrap());
    assert!(!d.to_string().contains(&key), "the deployer key is not printed");
}

#[test]
fn a_bad_deployer_key_is_refused_without_echoing_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_phala-cloud"))
        .args(["simulate", "--rpc-url", "http://127.0.0.1:9"])
        .env("DEPLOYER_KEY", "0xnot-a-key-SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DEPLOYER_KEY") && !stderr.contains("SECRET"), "{stderr}");
}

/// `phala-cloud demo`, the README's main job: on the anvil the tests use, a real registration
/// and an accepted update, each step printed; the anvil finder looks in the cargo target
/// directory the tests install into.
#[test]
fn demo_runs_the_main_job_on_a_real_chain() {
    let anvil = support::anvil::anvil_binary();
    let out = Command::new(env!("CARGO_BIN_EXE_phala-cloud")).arg("demo").env("ANVIL", anvil).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for step in [
        "(ANVIL)",
        "chain: a real anvil node at ",
        "3. 465 registration required",
        "about to sign addComposeHash from ",
        "4. addComposeHash sent: 0x",
        "6. accepted: correlation id ",
        "the CVM now sees 3 variables",
    ] {
        assert!(stdout.contains(step), "{step:?} missing: {stdout}");
    }
    assert!(!stdout.contains("OFFLINE"), "{stdout}");

    // The demo's default install directory (the target directory its binary is in) is the one
    // the tests install anvil into.
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_phala-cloud")).unwrap();
    assert!(exe.starts_with(std::fs::canonicalize(target).unwrap()), "{}", exe.display());
    let root = phala_cloud::simulator::anvil::default_install_root().unwrap();
    assert_eq!(std::fs::canonicalize(root).unwrap(), std::fs::canonicalize(target).unwrap());
}

/// On a machine without Node.js (no `node` or `npm` on the PATH) and without anvil, the demo
/// runs in offline mode and says why. Its binary is linked deep under the temp dir, away from
/// the target directory (and the anvil the tests installed there), with a fresh home.
#[cfg(unix)]
#[test]
fn demo_without_node_js_runs_offline_and_says_so() {
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("demo-offline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    // Deeper than the four ancestors the finder looks at for a target directory.
    let dir = base.join("a/b/c/d");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("phala-cloud");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_phala-cloud"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_phala-cloud"), &exe).unwrap();
    }
    let out = Command::new(&exe)
        .arg("demo")
        .env_remove("ANVIL")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", base.join("home"))
        .env("PATH", base.join("empty-path"))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("installing @foundry-rs/anvil@"), "{stdout}");
    assert!(stdout.contains("node could not be run") && stdout.contains("Node.js and npm are needed"), "{stdout}");
    assert!(stdout.contains("OFFLINE MODE") && stdout.contains("no Node.js/npm"), "{stdout}");
    assert!(stdout.contains("4. OFFLINE: no chain") && stdout.contains("6. accepted: correlation id"), "{stdout}");
    std::fs::remove_dir_all(&base).unwrap();
}
