//! The official `phala` CLI's saved credentials, read (never written): the API key and prefix
//! of a profile in `$PHALA_CLOUD_DIR/credentials.json` (default `~/.phala-cloud`). They come
//! after the flags and the environment variables, as in the official CLI.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::Failure;
use crate::secret_arg::Secret;

/// The variable naming the official CLI's directory.
pub const DIR_VAR: &str = "PHALA_CLOUD_DIR";

/// Larger than any credentials file the official CLI writes; a bigger one is refused unread.
const MAX_BYTES: u64 = 1 << 20;

/// A profile's key and API prefix.
pub struct Profile {
    pub token: Secret,
    pub api_prefix: Option<String>,
}

#[derive(Deserialize)]
struct File {
    current_profile: Option<String>,
    #[serde(default)]
    profiles: std::collections::HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    token: Option<String>,
    api_prefix: Option<String>,
}

/// The credentials file: `$PHALA_CLOUD_DIR/credentials.json`, else `~/.phala-cloud/…`.
fn path() -> Option<PathBuf> {
    let dir = match std::env::var_os(DIR_VAR).filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".phala-cloud"),
    };
    Some(dir.join("credentials.json"))
}

/// The profile `name` (else the file's `current_profile`), or `None` when there is no
/// credentials file and no profile was asked for. Nothing read is ever shown but the profile
/// name and the path.
pub fn load(name: Option<&str>) -> Result<Option<Profile>, Failure> {
    let Some(path) = path() else {
        return match name {
            Some(_) => Err(Failure::usage("--profile: no home directory to find ~/.phala-cloud/credentials.json in")),
            None => Ok(None),
        };
    };
    let text = match read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && name.is_none() => return Ok(None),
        Err(e) => return Err(Failure::usage(format!("cannot read {}: {e}", path.display()))),
    };
    warn_if_open(&path);
    // The error of a malformed file is not shown: serde's message may quote a token.
    let file: File = serde_json::from_str(&text).map_err(|e| {
        Failure::usage(format!(
            "{} is not the official CLI's credentials.json (line {}, column {}; content not shown)",
            path.display(),
            e.line(),
            e.column()
        ))
    })?;
    let chosen = name.map(str::to_owned).or(file.current_profile).unwrap_or_else(|| "default".to_owned());
    let Some(entry) = file.profiles.into_iter().find_map(|(k, v)| (k == chosen).then_some(v)) else {
        return match name {
            Some(_) => Err(Failure::usage(format!("no profile {chosen:?} in {}", path.display()))),
            None => Ok(None),
        };
    };
    // Moved, not copied, into a buffer wiped on drop.
    let Some(token) = entry.token.map(Zeroizing::new).filter(|t| !t.trim().is_empty()) else {
        return Err(Failure::usage(format!("profile {chosen:?} in {} holds no token", path.display())));
    };
    let origin = format!("profile {chosen:?} of {}", path.display());
    Ok(Some(Profile { token: Secret::new(token, origin), api_prefix: entry.api_prefix }))
}

fn read(path: &Path) -> std::io::Result<Zeroizing<String>> {
    use std::io::Read;
    let mut text = Zeroizing::new(String::new());
    let file = std::fs::File::open(path)?;
    file.take(MAX_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_BYTES {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "larger than 1 MiB"));
    }
    Ok(text)
}

/// The official CLI writes the file with mode 0600; say so when others can read it.
fn warn_if_open(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "phala-cloud: warning: {} is readable by other users (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
}
