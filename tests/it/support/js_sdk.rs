//! The official JS SDK (`@phala/cloud`, pinned with its lockfile in `scripts/js_interop/`) for
//! the interop tests, and `scripts/js_interop/patch_cvm.mjs` running against a simulator.
//!
//! The SDK is installed with `npm ci` (the lockfile, nothing resolved anew; no install scripts;
//! typescript, a peer dependency only its type declarations need, left out) into
//! `<cargo target dir>/js-interop/current`, once: later runs reuse it while the lockfile is
//! unchanged. Test binaries and threads take turns on a lock file, and an install goes to a
//! staging directory renamed into place when complete, as anvil's install does. It needs
//! Node.js, npm and the npm registry (about 25 s and 46 MB of downloads with an empty npm cache,
//! 17 s with a warm one); nothing is skipped without them: the test panics and says so.

use std::fs;
use std::io::{BufRead, BufReader, Lines, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use phala_cloud::simulator::Simulator;

/// The interop directory in the repository.
const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/js_interop");
/// The script, copied beside the installed `node_modules` (node resolves `@phala/cloud` from the
/// script's own directory).
const SCRIPT: &str = "patch_cvm.mjs";

/// The directory holding `patch_cvm.mjs` beside the installed SDK; installs it on first use.
pub fn installed() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(install)
}

fn install() -> PathBuf {
    let source = Path::new(SOURCE);
    let root = phala_cloud::simulator::anvil::default_install_root()
        .expect("the test binary is in a cargo target directory")
        .join("js-interop");
    fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let lock_path = root.join(".lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("{}: {e}", lock_path.display()));
    lock.lock().unwrap_or_else(|e| panic!("{}: {e}", lock_path.display()));

    let dir = root.join("current");
    let lockfile = fs::read(source.join("package-lock.json")).expect("scripts/js_interop/package-lock.json");
    let up_to_date = fs::read(dir.join("package-lock.json")).is_ok_and(|have| have == lockfile)
        && dir.join("node_modules/@phala/cloud/package.json").is_file();
    if !up_to_date {
        // Leftovers of installs that were killed (a live install would hold the lock).
        for entry in fs::read_dir(&root).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(".staging-") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let staging = root.join(format!(".staging-{}-{}", std::process::id(), nanos()));
        fs::create_dir_all(&staging).unwrap();
        for file in ["package.json", "package-lock.json"] {
            fs::copy(source.join(file), staging.join(file)).unwrap_or_else(|e| panic!("copying {file}: {e}"));
        }
        let output = Command::new(if cfg!(windows) { "npm.cmd" } else { "npm" })
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--omit=peer", "--loglevel=error"])
            .current_dir(&staging)
            .output()
            .unwrap_or_else(|e| {
                panic!("npm could not be run ({e}): Node.js and npm are needed for the JS SDK interop tests")
            });
        assert!(
            output.status.success(),
            "`npm ci` of scripts/js_interop failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        fs::rename(&staging, &dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    // The script on every run, so that an edit takes effect without reinstalling; written
    // beside and renamed, so that a process running the old one never reads half a file.
    let fresh = root.join(format!(".{SCRIPT}-{}-{}", std::process::id(), nanos()));
    fs::copy(source.join(SCRIPT), &fresh).unwrap_or_else(|e| panic!("copying {SCRIPT}: {e}"));
    fs::rename(&fresh, dir.join(SCRIPT)).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    drop(lock);
    dir
}

fn nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// `node patch_cvm.mjs ARGS` against `sim`: the base URL and API key in the SDK's own
/// variables (never on the command line), its stdout read a JSON line at a time, its stdin
/// open for a transaction hash. Killed if dropped before [`PatchScript::finish`].
pub struct PatchScript {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl PatchScript {
    pub fn start(sim: &Simulator, args: &[&str]) -> Self {
        let dir = installed();
        let mut child = Command::new(if cfg!(windows) { "node.exe" } else { "node" })
            .arg(dir.join(SCRIPT))
            .args(args)
            .current_dir(dir)
            .env("PHALA_CLOUD_API_PREFIX", format!("{}/api/v1", sim.base_url()))
            .env("PHALA_CLOUD_API_KEY", sim.api_key())
            .env_remove("PHALA_INTEROP_TX_HASH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("node could not be run ({e}): Node.js is needed for the JS SDK interop tests"));
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Self { child, stdin, lines }
    }

    /// The next line the script printed, as JSON. Blocks: call it off the runtime that serves
    /// the simulator (`spawn_blocking`), or on a multi-threaded one.
    pub fn next_json(&mut self) -> serde_json::Value {
        let line = self
            .lines
            .next()
            .unwrap_or_else(|| panic!("patch_cvm.mjs ended without printing ({:?})", self.child.try_wait()))
            .expect("reading patch_cvm.mjs's stdout");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("patch_cvm.mjs printed no JSON ({e}): {line:?}"))
    }

    /// Writes one line to the script's stdin (the transaction hash phase 2 cites).
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("writing to patch_cvm.mjs");
    }

    /// Closes stdin and waits for the script to end.
    pub fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.child.wait().expect("waiting for patch_cvm.mjs")
    }
}

impl Drop for PatchScript {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
