//! Where `envs update` keeps its lock files, so that runs in several processes with one key on
//! one chain take turns registering (and never pay twice).

use std::path::{Path, PathBuf};

/// The variable that overrides the lock directory (as `--lock-dir` does).
pub const LOCK_DIR_VAR: &str = "PHALA_CLOUD_LOCK_DIR";

/// The lock directory to use and whether the user chose it.
pub struct LockDir {
    path: PathBuf,
    chosen: bool,
}

impl LockDir {
    /// `--lock-dir`/`PHALA_CLOUD_LOCK_DIR` if given, else the per-user default:
    /// `$XDG_RUNTIME_DIR/phala-cloud` when that variable holds an absolute path, else
    /// `<temp dir>/phala-cloud-<uid>` (on Unix; `<temp dir>/phala-cloud` elsewhere).
    pub fn resolve(given: Option<PathBuf>) -> Self {
        if let Some(path) = given.filter(|p| !p.as_os_str().is_empty()) {
            return Self { path, chosen: true };
        }
        let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_absolute());
        let path = match runtime {
            Some(dir) => dir.join("phala-cloud"),
            None => std::env::temp_dir().join(per_user_name()),
        };
        Self { path, chosen: false }
    }

    /// Creates the directory if missing (mode 0700 on Unix) and returns it. The default
    /// directory must be a real directory owned by this user and closed to others, since a
    /// shared temp dir lets anyone create it first; a chosen one must be a directory.
    pub fn prepare(&self) -> Result<&Path, LockDirError> {
        let path = &self.path;
        let fail = |problem| LockDirError { path: path.clone(), chosen: self.chosen, problem };
        create_private(path).map_err(|e| fail(Problem::Create(e)))?;
        let meta = std::fs::symlink_metadata(path).map_err(|e| fail(Problem::Read(e)))?;
        let meta = if self.chosen && meta.file_type().is_symlink() {
            std::fs::metadata(path).map_err(|e| fail(Problem::Read(e)))?
        } else {
            meta
        };
        if !meta.is_dir() {
            return Err(fail(Problem::NotADirectory));
        }
        #[cfg(unix)]
        if !self.chosen {
            use std::os::unix::fs::MetadataExt;
            // SAFETY: geteuid has no preconditions and cannot fail.
            let uid = unsafe { libc::geteuid() };
            if meta.uid() != uid || meta.mode() & 0o077 != 0 {
                return Err(fail(Problem::NotPrivate { owner: meta.uid(), mode: meta.mode() & 0o7777 }));
            }
        }
        Ok(path)
    }
}

/// The lock directory cannot be used; the message says what to do.
#[derive(Debug, thiserror::Error)]
#[error("the lock directory {} {problem}; {}", path.display(), if *.chosen {
    "give another --lock-dir (or PHALA_CLOUD_LOCK_DIR)"
} else {
    "set --lock-dir DIR (or PHALA_CLOUD_LOCK_DIR) to a directory of yours"
})]
pub struct LockDirError {
    path: PathBuf,
    /// The user chose it (with the flag or the variable).
    chosen: bool,
    problem: Problem,
}

#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error("cannot be created: {0}")]
    Create(std::io::Error),
    #[error("cannot be read: {0}")]
    Read(std::io::Error),
    #[error("is not a directory")]
    NotADirectory,
    #[error("belongs to another user or is open to others (owner uid {owner}, mode {mode:o})")]
    NotPrivate { owner: u32, mode: u32 },
}

#[cfg(unix)]
fn per_user_name() -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    format!("phala-cloud-{}", unsafe { libc::geteuid() })
}

#[cfg(not(unix))]
fn per_user_name() -> String {
    "phala-cloud".into()
}

/// `create_dir_all`, the last component with mode 0700 on Unix.
fn create_private(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}
