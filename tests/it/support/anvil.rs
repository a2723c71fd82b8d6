//! A local anvil chain for the on-chain tests, and the test contract `contracts/AppAuth.json`.
//!
//! Which anvil: `$ANVIL` (a path), else `anvil` on the `PATH`, else the npm package
//! `@foundry-rs/anvil@ANVIL_NPM_VERSION`, installed once into the cargo target directory and
//! shared by every test binary and thread after that. Nothing is skipped: when no anvil can be
//! found or installed, the test panics and says how to install one.
//!
//! Each [`LocalChain`] is its own anvil process on a free loopback port; dropping it stops that
//! process (SIGTERM, then SIGKILL after 10 s) by its PID.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, ChainId};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::Signer;
use alloy::signers::local::PrivateKeySigner;

/// The npm package installed when no anvil is given or on the `PATH`.
pub const ANVIL_NPM_PACKAGE: &str = "@foundry-rs/anvil";
/// Its exact version.
pub const ANVIL_NPM_VERSION: &str = "1.7.1";
/// anvil's default chain id, the one the official client knows as "anvil".
pub const ANVIL_CHAIN_ID: ChainId = 31_337;

/// The test stand-in for dstack's app-auth contract: `contracts/AppAuth.sol`, compiled.
pub use phala_cloud::simulator::AppAuth;

/// How to start anvil.
#[derive(Debug, Clone, Copy)]
pub struct AnvilOptions {
    /// Seconds between blocks; `None` mines a block per transaction at once (anvil's default).
    pub block_time: Option<u64>,
    /// The chain id.
    pub chain_id: ChainId,
}

impl Default for AnvilOptions {
    fn default() -> Self {
        Self { block_time: None, chain_id: ANVIL_CHAIN_ID }
    }
}

impl AnvilOptions {
    /// A block every 2 s, as on Base, with anvil's chain id.
    pub fn base_like() -> Self {
        Self { block_time: Some(2), ..Self::default() }
    }
}

/// A running anvil. Dropping it stops the process.
#[derive(Debug)]
pub struct LocalChain {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub chain_id: ChainId,
    /// The funded dev accounts, in anvil's order (10 000 ETH each).
    pub signers: Vec<PrivateKeySigner>,
    instance: AnvilInstance,
}

impl LocalChain {
    /// Starts anvil with anvil's defaults: instant mining, chain id 31337.
    pub fn start() -> Self {
        Self::start_with(AnvilOptions::default())
    }

    pub fn start_with(options: AnvilOptions) -> Self {
        let path = anvil_binary();
        let mut anvil = Anvil::at(path).host("127.0.0.1").chain_id(options.chain_id).timeout(60_000);
        if let Some(seconds) = options.block_time {
            anvil = anvil.block_time(seconds);
        }
        let instance = anvil.try_spawn().unwrap_or_else(|e| panic!("could not start anvil ({}): {e}", path.display()));
        let chain_id = instance.chain_id();
        let signers = instance
            .keys()
            .iter()
            .map(|key| PrivateKeySigner::from(key.clone()).with_chain_id(Some(chain_id)))
            .collect::<Vec<_>>();
        assert!(!signers.is_empty(), "anvil printed no dev accounts");
        Self { endpoint: format!("http://127.0.0.1:{}", instance.port()), chain_id, signers, instance }
    }

    /// The dev account `n` (0 is anvil's first).
    pub fn signer(&self, n: usize) -> PrivateKeySigner {
        self.signers[n].clone()
    }

    /// The anvil process id.
    pub fn pid(&self) -> u32 {
        self.instance.child().id()
    }

    /// A provider signing as dev account `n`.
    pub fn provider(&self, n: usize) -> impl Provider + Clone + use<> {
        wallet_provider(&self.endpoint, self.signer(n))
    }

    /// `addComposeHash(hash)` on `contract`, signed by `signer`, with a fixed gas limit (no
    /// estimate, so a reverting call is still mined); the receipt once mined.
    pub async fn add_compose_hash(
        &self,
        contract: Address,
        hash: alloy::primitives::B256,
        signer: PrivateKeySigner,
    ) -> alloy::rpc::types::TransactionReceipt {
        AppAuth::new(contract, wallet_provider(&self.endpoint, signer))
            .addComposeHash(hash)
            .gas(100_000)
            .send()
            .await
            .unwrap_or_else(|e| panic!("sending addComposeHash failed: {e}"))
            .get_receipt()
            .await
            .unwrap_or_else(|e| panic!("no receipt for addComposeHash: {e}"))
    }

    /// Deploys `AppAuth` from dev account `n`, which becomes its owner.
    pub async fn deploy_app_auth(&self, n: usize) -> Address {
        deploy_app_auth(&self.endpoint, self.signer(n)).await
    }

    /// A simulator's chain settings for this node, its contracts deployed by dev account 0.
    pub fn sim_chain(&self) -> phala_cloud::simulator::ChainConfig {
        phala_cloud::simulator::ChainConfig::new(self.endpoint.parse().unwrap()).deployer(self.signer(0))
    }

    /// A simulator verifying against this node ([`Self::sim_chain`]) with one contract-owned
    /// CVM, `cvm-1`, owned by dev account 0.
    pub fn sim_with_one_onchain_cvm(&self) -> phala_cloud::simulator::SimulatorConfig {
        phala_cloud::simulator::SimulatorConfig::default()
            .cvms([phala_cloud::simulator::CvmSpec::onchain("cvm-1")])
            .chain(self.sim_chain())
    }
}

/// A provider that signs with `signer` and fills nonce, gas and chain id, over the crate's own
/// HTTP client (`phala_cloud::http_client_builder`): reqwest has no process-wide TLS provider
/// here, so alloy's `connect_http` would panic building its client.
pub fn wallet_provider(endpoint: &str, signer: PrivateKeySigner) -> impl Provider + Clone + use<> {
    let url = endpoint.parse().unwrap_or_else(|e| panic!("bad endpoint {endpoint}: {e}"));
    let http = phala_cloud::http_client_builder().expect("HTTP client settings").build().expect("HTTP client");
    ProviderBuilder::new().wallet(signer).connect_reqwest(http, url)
}

/// Deploys `AppAuth` with `signer`, which becomes its owner, and returns the contract's address
/// once the deployment is mined.
pub async fn deploy_app_auth(endpoint: &str, signer: PrivateKeySigner) -> Address {
    let url = endpoint.parse().unwrap_or_else(|e| panic!("bad endpoint {endpoint}: {e}"));
    phala_cloud::simulator::deploy_app_auth(&url, signer)
        .await
        .unwrap_or_else(|e| panic!("deploying AppAuth failed: {e}"))
}

/// The anvil binary to run, found (or installed) once per test binary.
pub fn anvil_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(find_anvil)
}

fn find_anvil() -> PathBuf {
    if let Some(given) = std::env::var_os("ANVIL").filter(|v| !v.is_empty()) {
        let given = PathBuf::from(given);
        assert!(given.is_file(), "ANVIL={} is not a file; {}", given.display(), how_to_install());
        return native_binary(&given);
    }
    if let Some(on_path) = search_path(OsStr::new(binary_name())) {
        return native_binary(&on_path);
    }
    install_from_npm()
}

fn binary_name() -> &'static str {
    if cfg!(windows) { "anvil.exe" } else { "anvil" }
}

fn how_to_install() -> String {
    format!(
        "install anvil with `npm install -g {ANVIL_NPM_PACKAGE}@{ANVIL_NPM_VERSION}` (or foundryup), \
         or set ANVIL=/path/to/anvil"
    )
}

fn search_path(name: &OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// The npm package's own `anvil` command (`bin.mjs`) is a node script that runs the real binary
/// as its child: stopping the script by its PID would leave anvil running. Run the real binary.
fn native_binary(path: &Path) -> PathBuf {
    let resolved = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    if !is_node_script(&resolved) {
        return path.to_owned();
    }
    let package_dir = resolved.parent().unwrap_or(Path::new("."));
    let candidates = platform_package().into_iter().flat_map(|platform| {
        let in_platform = format!("{platform}/bin/{}", binary_name());
        [
            // nested: <pkg>/node_modules/@foundry-rs/anvil-<os>-<arch>/bin/anvil
            package_dir.join("node_modules").join(&in_platform),
            // hoisted: <node_modules>/@foundry-rs/anvil-<os>-<arch>/bin/anvil
            package_dir.join("../..").join(&in_platform),
        ]
    });
    // The postinstall script's fallback download, then bin.mjs's own fallback.
    let fallbacks = [package_dir.join(binary_name()), package_dir.join("../dist").join(binary_name())];
    match candidates.chain(fallbacks).find(|c| is_executable(c)) {
        Some(found) => fs::canonicalize(&found).unwrap_or(found),
        None => {
            eprintln!(
                "note: {} is npm's node wrapper and the native anvil next to it was not found; \
                 using the wrapper (set ANVIL to the native binary to avoid it)",
                path.display()
            );
            path.to_owned()
        }
    }
}

fn is_node_script(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "mjs" || e == "js" || e == "cjs") {
        return true;
    }
    let mut head = [0u8; 64];
    let n = File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).unwrap_or(0);
    let head = &head[..n];
    head.starts_with(b"#!") && head.split(|b| *b == b'\n').next().is_some_and(|l| l.windows(4).any(|w| w == b"node"))
}

/// `@foundry-rs/anvil-<os>-<arch>`, the optional dependency holding the binary for this machine.
fn platform_package() -> Option<String> {
    let os = match std::env::consts::OS {
        "linux" => "linux",
        "macos" => "darwin",
        "windows" => "win32",
        _ => return None,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => return None,
    };
    Some(format!("@foundry-rs/anvil-{os}-{arch}"))
}

/// Installs the pinned npm package into `<target>/anvil-npm/<version>` unless it is there, and
/// returns the native binary in it. Several test binaries may race here: they take turns on a
/// lock file, and each install goes to a fresh directory that is renamed into place only when
/// complete, so a killed install never leaves a half-installed package behind.
fn install_from_npm() -> PathBuf {
    let Some(platform) = platform_package() else {
        panic!(
            "no anvil given (ANVIL) or on the PATH, and {ANVIL_NPM_PACKAGE} has no binary for {}-{}; {}",
            std::env::consts::OS,
            std::env::consts::ARCH,
            how_to_install()
        )
    };
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("CARGO_TARGET_TMPDIR has a parent");
    let root = target.join("anvil-npm");
    let installed = root.join(ANVIL_NPM_VERSION);
    let binary = installed.join("node_modules").join(&platform).join("bin").join(binary_name());
    if is_executable(&binary) {
        return binary;
    }

    fs::create_dir_all(&root).unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    let lock_path = root.join(".lock");
    let lock = File::create(&lock_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock().unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    if is_executable(&binary) {
        return binary; // another process installed it while we waited
    }
    if installed.exists() {
        // There but without the binary: not ours to trust.
        fs::remove_dir_all(&installed).unwrap_or_else(|e| panic!("cannot remove {}: {e}", installed.display()));
    }

    // Leftovers of installs that were killed (a live install would hold the lock).
    for entry in fs::read_dir(&root).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(".staging-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }

    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let staging = root.join(format!(".staging-{}-{nonce}", std::process::id()));
    fs::create_dir_all(&staging).unwrap_or_else(|e| panic!("cannot create {}: {e}", staging.display()));
    let spec = format!("{ANVIL_NPM_PACKAGE}@{ANVIL_NPM_VERSION}");
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    eprintln!("anvil: none given (ANVIL) or on the PATH; installing {spec} with npm into {}", installed.display());
    let started = Instant::now();
    let output = Command::new(npm)
        .arg("install")
        .arg("--prefix")
        .arg(&staging)
        .args(["--no-audit", "--no-fund", "--no-save", "--no-package-lock", "--ignore-scripts", "--loglevel=error"])
        .arg(&spec)
        .output();
    let failure = match output {
        Err(e) => Some(format!("cannot run {npm}: {e}")),
        Ok(out) if !out.status.success() => {
            Some(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
        }
        Ok(_) => {
            let staged = staging.join("node_modules").join(&platform).join("bin").join(binary_name());
            if !is_executable(&staged) {
                Some(format!("it installed no executable {}", staged.display()))
            } else {
                fs::rename(&staging, &installed)
                    .err()
                    .map(|e| format!("cannot move it to {}: {e}", installed.display()))
            }
        }
    };
    if let Some(why) = failure {
        let _ = fs::remove_dir_all(&staging);
        panic!("no anvil given (ANVIL) or on the PATH, and `{npm} install {spec}` failed: {why}; {}", how_to_install());
    }
    eprintln!("anvil: installed {spec} in {:.1?}", started.elapsed());
    drop(lock);
    binary
}
