//! An anvil binary for a local chain: `$ANVIL`, else `anvil` on the `PATH`, else the pinned
//! npm package [`ANVIL_NPM_PACKAGE`]@[`ANVIL_NPM_VERSION`], installed once into a directory
//! of the caller's (the cargo target directory for `phala-cloud demo` and the tests).
//!
//! ```no_run
//! use phala_cloud::simulator::anvil;
//!
//! let root = anvil::default_install_root();
//! let found = match anvil::find(&root)? {
//!     Some(found) => found,
//!     None => {
//!         eprintln!("installing {} into {}", anvil::npm_spec(), anvil::install_dir(&root).display());
//!         anvil::install(&root)?
//!     }
//! };
//! let node = alloy::node_bindings::Anvil::at(&found.path).try_spawn()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The npm package installed when no anvil is given or on the `PATH`.
pub const ANVIL_NPM_PACKAGE: &str = "@foundry-rs/anvil";
/// Its exact version.
pub const ANVIL_NPM_VERSION: &str = "1.7.1";

/// `@foundry-rs/anvil@<version>`, as npm takes it.
pub fn npm_spec() -> String {
    format!("{ANVIL_NPM_PACKAGE}@{ANVIL_NPM_VERSION}")
}

/// Where an anvil binary came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnvilSource {
    /// The `ANVIL` variable.
    Env,
    /// `anvil` on the `PATH`.
    Path,
    /// The npm package, installed in the install directory by an earlier run.
    Installed,
    /// The npm package, installed by this call to [`install`], which took this long.
    JustInstalled(Duration),
}

/// An anvil binary to run: the native one (never npm's node wrapper, which would outlive its
/// process being stopped).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FoundAnvil {
    /// The binary.
    pub path: PathBuf,
    /// Where it came from.
    pub source: AnvilSource,
}

/// Why no anvil could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnvilError {
    /// `ANVIL` names no file.
    #[error("ANVIL={} is not a file", .0.display())]
    NotAFile(PathBuf),
    /// The npm package has no binary for this machine.
    #[error("{ANVIL_NPM_PACKAGE} has no binary for {os}-{arch}")]
    UnsupportedPlatform {
        /// `std::env::consts::OS`.
        os: &'static str,
        /// `std::env::consts::ARCH`.
        arch: &'static str,
    },
    /// Node.js or npm is not installed (`program` could not be run).
    #[error("{program} could not be run ({source}): Node.js and npm are needed to install {ANVIL_NPM_PACKAGE}")]
    NoNodeJs {
        /// `node` or `npm`.
        program: &'static str,
        /// Why it could not be run.
        #[source]
        source: std::io::Error,
    },
    /// `npm install` failed (no network, a registry error, …).
    #[error("`npm install {spec}` failed ({status}): {stderr}")]
    NpmFailed {
        /// What was installed.
        spec: String,
        /// npm's exit status.
        status: String,
        /// What npm said.
        stderr: String,
    },
    /// npm installed the package, but not the binary for this machine.
    #[error("npm installed {ANVIL_NPM_PACKAGE} but no executable {}", .0.display())]
    NoBinary(PathBuf),
    /// The install directory could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl AnvilError {
    /// There is no Node.js or npm to install anvil with: the one case where running without a
    /// chain (the simulator's offline mode) is the way to go on.
    pub fn is_no_node_js(&self) -> bool {
        matches!(self, Self::NoNodeJs { .. })
    }
}

/// How to get an anvil by hand.
pub fn how_to_install() -> String {
    format!(
        "set ANVIL=/path/to/anvil, or put anvil on the PATH (`npm install -g {}`, or foundryup); \
         with Node.js, npm and the npm registry at hand it is installed for you",
        npm_spec()
    )
}

/// `$ANVIL` if set, else `anvil` on the `PATH`, else the npm package if installed in
/// [`install_dir(install_root)`](install_dir); `None` if none of them is there (then
/// [`install`] it). npm's node wrapper is resolved to the native binary beside it.
pub fn find(install_root: &Path) -> Result<Option<FoundAnvil>, AnvilError> {
    if let Some(given) = std::env::var_os("ANVIL").filter(|v| !v.is_empty()) {
        let given = PathBuf::from(given);
        if !given.is_file() {
            return Err(AnvilError::NotAFile(given));
        }
        return Ok(Some(FoundAnvil { path: native_binary(&given), source: AnvilSource::Env }));
    }
    if let Some(on_path) = search_path(OsStr::new(binary_name())) {
        return Ok(Some(FoundAnvil { path: native_binary(&on_path), source: AnvilSource::Path }));
    }
    let Some(platform) = platform_package() else { return Ok(None) };
    let binary = installed_binary(install_root, &platform);
    Ok(is_executable(&binary).then_some(FoundAnvil { path: binary, source: AnvilSource::Installed }))
}

/// Where [`install`] puts the package: `<install_root>/anvil-npm/<version>`.
pub fn install_dir(install_root: &Path) -> PathBuf {
    install_root.join("anvil-npm").join(ANVIL_NPM_VERSION)
}

/// The directory to install into when the caller has none: the cargo target directory the
/// running executable was built in, else `$XDG_CACHE_HOME/phala-cloud` or
/// `~/.cache/phala-cloud`, else `phala-cloud` in the temp dir. The target directory is the
/// first of the executable's ancestors holding cargo's `CACHEDIR.TAG` or `.rustc_info.json`,
/// else the parent of the profile directory (the one holding `.fingerprint`) it is in.
pub fn default_install_root() -> PathBuf {
    let exe = std::env::current_exe().ok().and_then(|p| fs::canonicalize(p).ok());
    let in_target = exe.as_deref().and_then(|exe| {
        let near = || exe.ancestors().skip(1).take(4);
        near()
            .find(|dir| dir.join("CACHEDIR.TAG").is_file() || dir.join(".rustc_info.json").is_file())
            .or_else(|| near().find(|dir| dir.join(".fingerprint").is_dir()).and_then(Path::parent))
            .map(Path::to_path_buf)
    });
    let cache = || {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .map(|dir| dir.join("phala-cloud"))
    };
    in_target.or_else(cache).unwrap_or_else(|| std::env::temp_dir().join("phala-cloud"))
}

/// Installs the pinned npm package into [`install_dir(install_root)`](install_dir) unless it
/// is there, and returns the native binary in it. Callers may race here (test binaries,
/// several runs): they take turns on a lock file, and each install goes to a fresh directory
/// that is renamed into place only when complete, so a killed install never leaves a
/// half-installed package behind. Needs Node.js and npm ([`AnvilError::NoNodeJs`] otherwise)
/// and the npm registry.
pub fn install(install_root: &Path) -> Result<FoundAnvil, AnvilError> {
    let platform = platform_package()
        .ok_or(AnvilError::UnsupportedPlatform { os: std::env::consts::OS, arch: std::env::consts::ARCH })?;
    let installed = install_dir(install_root);
    let binary = installed_binary(install_root, &platform);
    if is_executable(&binary) {
        return Ok(FoundAnvil { path: binary, source: AnvilSource::Installed });
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| AnvilError::Io { path, source }
    };
    let root = installed.parent().expect("install_dir has a parent");
    fs::create_dir_all(root).map_err(io(root))?;
    let lock_path = root.join(".lock");
    // Opened without truncating: a lock file is never written, so a link planted in its place
    // cannot make this empty whatever it points at.
    let lock = fs::OpenOptions::new().create(true).append(true).open(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    if is_executable(&binary) {
        return Ok(FoundAnvil { path: binary, source: AnvilSource::Installed }); // another process installed it
    }
    if installed.exists() {
        // There but without the binary: not ours to trust.
        fs::remove_dir_all(&installed).map_err(io(&installed))?;
    }
    // Leftovers of installs that were killed (a live install would hold the lock).
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(".staging-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }

    // npm runs on node: tell "no Node.js" (offline mode is the way on) from a failed install.
    let node = if cfg!(windows) { "node.exe" } else { "node" };
    if let Err(source) = Command::new(node).arg("--version").output() {
        return Err(AnvilError::NoNodeJs { program: "node", source });
    }
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let staging = root.join(format!(".staging-{}-{nonce}", std::process::id()));
    fs::create_dir_all(&staging).map_err(io(&staging))?;
    let spec = npm_spec();
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let started = Instant::now();
    let output = Command::new(npm)
        .arg("install")
        .arg("--prefix")
        .arg(&staging)
        .args(["--no-audit", "--no-fund", "--no-save", "--no-package-lock", "--ignore-scripts", "--loglevel=error"])
        .arg(&spec)
        .output();
    let result = match output {
        Err(source) => Err(AnvilError::NoNodeJs { program: "npm", source }),
        Ok(out) if !out.status.success() => Err(AnvilError::NpmFailed {
            spec,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }),
        Ok(_) => {
            let staged = staging.join("node_modules").join(&platform).join("bin").join(binary_name());
            if !is_executable(&staged) {
                Err(AnvilError::NoBinary(staged))
            } else {
                fs::rename(&staging, &installed).map_err(io(&installed))
            }
        }
    };
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    drop(lock);
    Ok(FoundAnvil { path: binary, source: AnvilSource::JustInstalled(started.elapsed()) })
}

fn installed_binary(install_root: &Path, platform: &str) -> PathBuf {
    install_dir(install_root).join("node_modules").join(platform).join("bin").join(binary_name())
}

fn binary_name() -> &'static str {
    if cfg!(windows) { "anvil.exe" } else { "anvil" }
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
            tracing::warn!(
                wrapper = %path.display(),
                "npm's node wrapper for anvil, without the native binary next to it: set ANVIL to the native binary"
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
    Some(format!("{ANVIL_NPM_PACKAGE}-{os}-{arch}"))
}
