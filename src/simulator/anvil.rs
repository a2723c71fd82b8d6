//! An anvil binary for a local chain: `$ANVIL`, else `anvil` on the `PATH`, else the pinned
//! npm package [`ANVIL_NPM_PACKAGE`]@[`ANVIL_NPM_VERSION`], installed once into a directory
//! of the caller's (the cargo target directory for `phala-cloud demo` and the tests).
//!
//! ```no_run
//! use phala_cloud::simulator::anvil;
//!
//! let root = anvil::default_install_root()?;
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
    /// No directory to install into: the executable is not in a cargo target directory, and
    /// neither `XDG_CACHE_HOME` nor `HOME` is set. (A shared temp directory is never used: a
    /// binary another user could plant there would be run.)
    #[error(
        "no directory to install anvil into: not run from a cargo target directory, and neither XDG_CACHE_HOME nor HOME is set"
    )]
    NoInstallRoot,
    /// An installed anvil (or a directory above it, up to the install directory) is not this
    /// user's, or others may write it: someone else could have put it there, so it is not run.
    #[error("{} is not to be trusted ({why}): remove {} and run again to reinstall", path.display(), dir.display())]
    Untrusted {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
        /// The install directory.
        dir: PathBuf,
    },
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
    if !is_executable(&binary) {
        return Ok(None);
    }
    check_private(&binary, install_root)?;
    Ok(Some(FoundAnvil { path: binary, source: AnvilSource::Installed }))
}

/// Where [`install`] puts the package: `<install_root>/anvil-npm/<version>`.
pub fn install_dir(install_root: &Path) -> PathBuf {
    install_root.join("anvil-npm").join(ANVIL_NPM_VERSION)
}

/// The directory to install into when the caller has none: the cargo target directory the
/// running executable was built in, else `$XDG_CACHE_HOME/phala-cloud` or
/// `~/.cache/phala-cloud`; never a shared temp directory ([`AnvilError::NoInstallRoot`]). The
/// target directory is the first of the executable's ancestors holding cargo's `CACHEDIR.TAG`
/// or `.rustc_info.json`, else the parent of the profile directory (the one holding
/// `.fingerprint`) it is in.
pub fn default_install_root() -> Result<PathBuf, AnvilError> {
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
    in_target.or_else(cache).ok_or(AnvilError::NoInstallRoot)
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
        check_private(&binary, install_root)?;
        return Ok(FoundAnvil { path: binary, source: AnvilSource::Installed });
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| AnvilError::Io { path, source }
    };
    let root = installed.parent().expect("install_dir has a parent");
    fs::create_dir_all(root).map_err(io(root))?;
    make_private(root).map_err(io(root))?;
    check_private(root, install_root)?;
    let lock_path = root.join(".lock");
    // Opened without truncating: a lock file is never written, so a link planted in its place
    // cannot make this empty whatever it points at.
    let lock = fs::OpenOptions::new().create(true).append(true).open(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    if is_executable(&binary) {
        // Another process installed it.
        check_private(&binary, install_root)?;
        return Ok(FoundAnvil { path: binary, source: AnvilSource::Installed });
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
                // Whatever the umask: only this user may change what will be run.
                staged
                    .ancestors()
                    .take_while(|p| p.starts_with(&staging))
                    .try_for_each(|p| make_private(p).map_err(io(p)))
                    .and_then(|()| fs::rename(&staging, &installed).map_err(io(&installed)))
            }
        }
    };
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    drop(lock);
    check_private(&binary, install_root)?;
    Ok(FoundAnvil { path: binary, source: AnvilSource::JustInstalled(started.elapsed()) })
}

/// Checks that `path` and every directory above it up to `<install_root>/anvil-npm` are this
/// user's and that no one else may write them (on Unix; elsewhere the file system's ACLs are
/// the user's to set). Symbolic links are refused: what they point to is not checked.
fn check_private(path: &Path, install_root: &Path) -> Result<(), AnvilError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let top = install_dir(install_root);
        let top = top.parent().expect("install_dir has a parent");
        let untrusted = |p: &Path, why: String| AnvilError::Untrusted { path: p.to_owned(), why, dir: top.to_owned() };
        let me = effective_uid(top).map_err(|source| AnvilError::Io { path: top.to_owned(), source })?;
        for p in path.ancestors().take_while(|p| p.starts_with(top)) {
            let meta = fs::symlink_metadata(p).map_err(|source| AnvilError::Io { path: p.to_owned(), source })?;
            if meta.file_type().is_symlink() {
                return Err(untrusted(p, "a symbolic link".into()));
            }
            if meta.uid() != me {
                return Err(untrusted(p, format!("owned by uid {}, not {me}", meta.uid())));
            }
            if meta.mode() & 0o022 != 0 {
                return Err(untrusted(p, format!("mode {:o}: writable by others", meta.mode() & 0o7777)));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, install_root);
    Ok(())
}

/// This process's effective user id, as the owner of a file it creates in `dir` (std has no
/// call for it, and this crate has no unsafe code).
#[cfg(unix)]
fn effective_uid(dir: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let probe = dir.join(format!(".uid-probe-{}-{nonce}", std::process::id()));
    let file = fs::OpenOptions::new().write(true).create_new(true).open(&probe)?;
    let uid = file.metadata().map(|m| m.uid());
    let _ = fs::remove_file(&probe);
    uid
}

/// Takes the group's and others' write permission off `path` (Unix).
fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::symlink_metadata(path)?;
        let mode = meta.permissions().mode();
        // A link is left as it is (and refused by `check_private`): chmod would follow it.
        if !meta.file_type().is_symlink() && mode & 0o022 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(mode & !0o022))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
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

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A made-up installed package under a fresh root: `<root>/anvil-npm/<version>/…/anvil`.
    fn planted(name: &str) -> (PathBuf, PathBuf) {
        let root = std::env::temp_dir().join(format!("phala-anvil-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let platform = platform_package().unwrap_or_else(|| "@foundry-rs/anvil-linux-amd64".into());
        let binary = installed_binary(&root, &platform);
        fs::create_dir_all(binary.parent().unwrap()).unwrap();
        fs::write(&binary, b"#!/bin/sh\n").unwrap();
        for p in binary.ancestors().take_while(|p| p.starts_with(&root)) {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        (root, binary)
    }

    #[test]
    fn an_installed_anvil_only_this_user_can_write_is_run() {
        let (root, binary) = planted("private");
        assert!(check_private(&binary, &root).is_ok());
        // Another user's binary (testable only where this process may give files away).
        if effective_uid(&root).unwrap() == 0 {
            std::os::unix::fs::chown(&binary, Some(65534), None).unwrap();
            match check_private(&binary, &root) {
                Err(AnvilError::Untrusted { path, why, .. }) => {
                    assert_eq!(path, binary);
                    assert_eq!(why, "owned by uid 65534, not 0");
                }
                other => panic!("{other:?}"),
            }
        }
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_installed_anvil_others_may_write_is_refused() {
        for (what, writable) in [("the binary", 0), ("its version directory", 1), ("anvil-npm", 2)] {
            let (root, binary) = planted(&format!("open-{writable}"));
            let top = root.join("anvil-npm");
            let target = match writable {
                0 => binary.clone(),
                1 => install_dir(&root),
                _ => top.clone(),
            };
            let mode = fs::metadata(&target).unwrap().permissions().mode();
            fs::set_permissions(&target, fs::Permissions::from_mode(mode | 0o002)).unwrap();
            match check_private(&binary, &root) {
                Err(AnvilError::Untrusted { path, why, dir }) => {
                    assert_eq!(path, target, "{what}");
                    assert!(why.contains("writable by others"), "{what}: {why}");
                    assert_eq!(dir, top);
                }
                other => panic!("{what} writable by others: {other:?}"),
            }
            // `find` does not run it either.
            if std::env::var_os("ANVIL").is_none() && search_path(OsStr::new(binary_name())).is_none() {
                assert!(matches!(find(&root), Err(AnvilError::Untrusted { .. })), "{what}");
            }
            make_private(&target).unwrap();
            assert!(check_private(&binary, &root).is_ok(), "{what} made private again");
            fs::remove_dir_all(&root).unwrap();
        }
    }

    #[test]
    fn a_link_in_the_install_directory_is_refused() {
        let (root, binary) = planted("link");
        let elsewhere = root.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let version_dir = install_dir(&root);
        fs::rename(&version_dir, elsewhere.join("v")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("v"), &version_dir).unwrap();
        match check_private(&binary, &root) {
            Err(AnvilError::Untrusted { path, why, .. }) => {
                assert_eq!(path, version_dir);
                assert_eq!(why, "a symbolic link");
            }
            other => panic!("{other:?}"),
        }
        fs::remove_dir_all(&root).unwrap();
    }
}
