//! `phala-cloud envs update` asks before signing: without a terminal nothing is signed unless
//! `--yes` says so; on a terminal (a pseudo-terminal from util-linux `script`) it shows the
//! transaction, and "n" signs nothing while "y" signs once, `--json` output staying one object
//! on stdout.
#![cfg(feature = "cli")]

use crate::support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use phala_cloud::onchain::COMPOSE_HASH_ADDED_TOPIC;
use phala_cloud::simulator::Simulator;
use support::anvil::LocalChain;

/// The variables of ours a run must not inherit from the test's environment.
const OURS: [&str; 7] = [
    "PHALA_CLOUD_API_KEY",
    "PHALA_CLOUD_API_PREFIX",
    "PRIVATE_KEY",
    "ETH_RPC_URL",
    "PHALA_CLOUD_LOCK_DIR",
    "PHALA_CLOUD_DIR",
    "RUST_LOG",
];

/// The question's last words.
const PROMPT: &str = "Sign and send it? [y/N] ";

/// A chain, a simulator with one contract-owned CVM (`cvm-1`) verifying on it, and the
/// variables a run needs to sign as the app's owner (dev account 0).
struct Setup {
    chain: LocalChain,
    sim: Simulator,
    env: Vec<(&'static str, String)>,
    key: String,
    dir: std::path::PathBuf,
}

impl Setup {
    async fn start(name: &str) -> Self {
        let chain = LocalChain::start();
        let sim = Simulator::start(chain.sim_with_one_onchain_cvm()).await.unwrap();
        let dir = std::env::temp_dir().join(format!("phala-cli-confirm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = const_hex::encode(chain.signer(0).to_bytes());
        let env = vec![
            ("PHALA_CLOUD_API_KEY", sim.api_key().to_owned()),
            ("PHALA_CLOUD_API_PREFIX", format!("{}/api/v1", sim.base_url())),
            ("PRIVATE_KEY", key.clone()),
            ("ETH_RPC_URL", chain.endpoint.clone()),
            ("PHALA_CLOUD_LOCK_DIR", dir.join("locks").to_str().unwrap().to_owned()),
            ("PHALA_CLOUD_DIR", "/nonexistent/phala-cloud-tests".to_owned()),
        ];
        Self { chain, sim, env, key, dir }
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let pubkey = self.sim.cvm("cvm-1").unwrap().public_key.to_hex();
        let mut a: Vec<String> = ["envs", "update", "cvm-1", "--pubkey", &pubkey, "-e", "TOKEN=t0ps3cret"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn app(&self) -> Address {
        self.sim.cvm("cvm-1").unwrap().app_id.unwrap().into()
    }

    /// The `ComposeHashAdded` logs of the CVM's app, and dev account 0's nonce.
    async fn chain_state(&self) -> (usize, u64) {
        let provider = self.chain.provider(0);
        let filter = Filter::new().address(self.app()).event_signature(COMPOSE_HASH_ADDED_TOPIC).from_block(0);
        let logs = provider.get_logs(&filter).await.unwrap().len();
        (logs, provider.get_transaction_count(self.chain.signer(0).address()).await.unwrap())
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn command(program: &str, env: &[(&'static str, String)]) -> Command {
    let mut cmd = Command::new(program);
    for var in OURS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

/// The binary with stdin from `stdin` (a pipe, not a terminal) or /dev/null.
async fn run(args: Vec<String>, env: Vec<(&'static str, String)>, stdin: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = command(env!("CARGO_BIN_EXE_phala-cloud"), &env);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            let _ = child.stdin.take().unwrap().write_all(text.as_bytes());
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Without a terminal (stdin /dev/null, or a pipe that held the key) and without `--yes`, the
/// run stops before signing: exit 2, the message says `--yes`, and the chain has no new
/// transaction and no registration; `--json` keeps stdout one object. With `--yes` the same
/// command signs.
#[tokio::test]
async fn without_a_terminal_nothing_is_signed_unless_yes() {
    let setup = Setup::start("noterm").await;
    let before = setup.chain_state().await;

    let out = run(setup.args(&["--json"]), setup.env.clone(), None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("not a terminal") && stderr.contains("--yes"), "{stderr}");
    assert!(stderr.contains("--prepare-only") && stderr.contains("nothing was signed"), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("stdout is one JSON object");
    assert_eq!(json["error"]["exit_code"], 2, "{json}");
    assert!(json["error"]["transaction_hash"].is_null(), "{json}");
    assert!(!stdout.contains(PROMPT) && !stderr.contains(PROMPT), "no question without a terminal");
    assert_eq!(setup.chain_state().await, before, "no transaction, no registration");
    assert!(setup.sim.cvm_env("cvm-1").unwrap().is_empty(), "nothing applied");

    // The key piped in on stdin: stdin is no terminal to answer on either, and the message
    // names the flag that read it.
    let mut env = setup.env.clone();
    env.retain(|(k, _)| *k != "PRIVATE_KEY");
    let out = run(setup.args(&["--private-key-file", "-"]), env, Some(format!("{}\ny\n", setup.key))).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("--private-key-file - read it") && stderr.contains("--yes"), "{stderr}");
    assert!(!stderr.contains(&setup.key) && !stdout.contains(&setup.key), "the key leaked");
    assert_eq!(setup.chain_state().await, before, "the \"y\" after the key on stdin answered nothing");

    let out = run(setup.args(&["--yes"]), setup.env.clone(), None).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let (registrations, nonce) = setup.chain_state().await;
    assert_eq!((registrations, nonce), (before.0 + 1, before.1 + 1), "--yes signs one transaction");
}

/// On a terminal the run shows the transaction and asks. "n" signs nothing (exit 9); "y"
/// signs once and the update goes through, `--json` output on stdout (here a file) staying
/// one object while the question goes to the terminal.
#[tokio::test]
async fn on_a_terminal_n_signs_nothing_and_y_signs_once() {
    let setup = Setup::start("tty").await;
    let before = setup.chain_state().await;
    let app = format!("{:#x}", setup.app()).to_lowercase();

    let (code, screen) = on_a_terminal(&setup.args(&[]), &setup.env, None, "n").await;
    assert_eq!(code, Some(9), "{screen}");
    for shown in
        ["cvm-1", "anvil, a local development chain (chain 31337)", &app, "compose hash   0x", "estimated cost"]
    {
        assert!(screen.contains(shown), "the question shows {shown:?}: {screen}");
    }
    let signer = format!("{:#x}", setup.chain.signer(0).address()).to_lowercase();
    assert!(screen.to_lowercase().contains(&signer), "the question shows the signer: {screen}");
    assert!(screen.contains("not yes") && screen.contains("nothing was signed"), "{screen}");
    assert!(!screen.contains(&setup.key) && !screen.contains("t0ps3cret"), "a secret leaked: {screen}");
    // Progress lines on a terminal come without indicatif's empty bar under each.
    assert!(screen.contains("465: compose hash") && !screen.contains('░'), "{screen}");
    assert_eq!(setup.chain_state().await, before, "\"n\": no transaction, no registration");
    assert!(setup.sim.cvm_env("cvm-1").unwrap().is_empty(), "nothing applied");

    let json_out = setup.dir.join("out.json");
    let (code, screen) = on_a_terminal(&setup.args(&["--json"]), &setup.env, Some(&json_out), "y").await;
    assert_eq!(code, Some(0), "{screen}");
    assert_eq!(screen.matches(PROMPT).count(), 1, "asked once: {screen}");
    let stdout = std::fs::read_to_string(&json_out).unwrap();
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("stdout is one JSON object");
    let hash = json["compose_hash"].as_str().unwrap();
    assert!(screen.contains(&format!("compose hash   {hash}")), "the question showed the hash registered: {screen}");
    let (registrations, nonce) = setup.chain_state().await;
    assert_eq!((registrations, nonce), (before.0 + 1, before.1 + 1), "\"y\": one transaction, one registration");
    assert_eq!(setup.sim.cvm_env("cvm-1").unwrap().get("TOKEN"), Some("t0ps3cret"));
}

/// Runs the binary with `args` on a pseudo-terminal of its own (util-linux `script`, so the
/// terminal is the binary's controlling terminal and never the one running the tests), its
/// stdout sent to `stdout_to` if given; types `answer` once the question shows. Returns the
/// exit code and what the terminal showed.
pub(crate) async fn on_a_terminal(
    args: &[String],
    env: &[(&'static str, String)],
    stdout_to: Option<&Path>,
    answer: &str,
) -> (Option<i32>, String) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = format!("exec {}", quote(env!("CARGO_BIN_EXE_phala-cloud")));
    for arg in args {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    if let Some(path) = stdout_to {
        line.push_str(&format!(" > {}", quote(path.to_str().unwrap())));
    }
    let mut env = env.to_vec();
    env.push(("SHELL", "/bin/sh".into()));
    let answer = format!("{answer}\n");
    tokio::task::spawn_blocking(move || {
        let mut cmd = command("script", &env);
        cmd.args(["--quiet", "--return", "--command", &line, "/dev/null"]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run `script` ({e}): the terminal tests need util-linux's script (Debian: bsdutils)")
        });
        let screen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let screen = screen.clone();
            let mut out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    screen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        let shown = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
        let mut stdin = child.stdin.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut answered = false;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if !answered && shown().contains(PROMPT) {
                stdin.write_all(answer.as_bytes()).unwrap();
                stdin.flush().unwrap();
                answered = true;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("no exit within 120 s (answered: {answered}): {}", shown());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(stdin);
        reader.join().unwrap();
        let mut errors = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut errors);
        (status.code(), format!("{}{errors}", shown()))
    })
    .await
    .unwrap()
}
