//! Secrets for the command line: taken from a variable or a file (`-` for stdin), never from an
//! argument's value, which every user of the machine can read in the process list. Parsed and
//! reported without ever echoing them.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, Read};
use std::path::Path;

use alloy::signers::local::PrivateKeySigner;
use zeroize::Zeroizing;

use crate::Failure;

/// Longest key file read: far more than any key, far less than a mistaken path could cost.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A secret flag of earlier versions and where its value goes now.
pub struct Removed {
    /// The flag, e.g. `--private-key`.
    pub flag: &'static str,
    /// The variable that holds the secret instead.
    pub var: &'static str,
    /// The flag that names a file holding it instead.
    pub file_flag: &'static str,
}

/// Refuses a removed secret flag if it was given, without using or showing its value.
pub fn refuse_removed(removed: &Removed, given: &[OsString]) -> Result<(), Failure> {
    if given.is_empty() {
        return Ok(());
    }
    let Removed { flag, var, file_flag } = removed;
    Err(Failure::usage(format!(
        "{flag} no longer takes the secret on the command line, where other users of this machine can read it \
         in the process list: set {var}, or use {file_flag} PATH (`-` reads one line from stdin). \
         The value given was neither used nor shown"
    )))
}

/// Refuses more than one of `files` reading stdin (`-`): there is only one.
pub fn one_stdin(files: &[(&str, Option<&Path>)]) -> Result<(), Failure> {
    let readers: Vec<&str> = files.iter().filter(|(_, p)| p.is_some_and(is_stdin)).map(|(flag, _)| *flag).collect();
    if readers.len() > 1 {
        return Err(Failure::usage(format!(
            "{} all read stdin (`-`), which holds one secret: give the others as files or variables",
            readers.join(" and ")
        )));
    }
    Ok(())
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// A secret and where it came from (for messages; the value is never shown).
pub struct Secret {
    value: Zeroizing<String>,
    origin: String,
}

impl Secret {
    /// A secret read elsewhere (the official CLI's credentials), with where it came from.
    pub fn new(value: Zeroizing<String>, origin: String) -> Self {
        Self { value, origin }
    }

    /// The secret. Keep it out of messages.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where it came from: the variable, `--x-file PATH`, or `--x-file - (stdin)`.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// The secret in the file `file_flag` names (`-`: one line of stdin) if given, else in the
/// variable `var`; `None` if neither is set. A file is one line, trimmed; the variable is taken
/// as it is (an empty one counts as unset).
pub fn load(file: Option<&Path>, file_flag: &str, var: &str) -> Result<Option<Secret>, Failure> {
    match file {
        Some(path) if is_stdin(path) => {
            let origin = format!("{file_flag} - (stdin)");
            let value = read_stdin_line(&origin)?;
            Ok(Some(Secret { value, origin }))
        }
        Some(path) => {
            let origin = format!("{file_flag} {}", path.display());
            let value = read_file(path, &origin)?;
            Ok(Some(Secret { value, origin }))
        }
        None => match std::env::var(var) {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(Failure::usage(format!("{var} is not valid UTF-8: set it to the key itself")))
            }
            Ok(value) => {
                let value = Zeroizing::new(value);
                Ok((!value.is_empty()).then(|| Secret { value, origin: var.to_owned() }))
            }
        },
    }
}

/// A copy in a buffer of exactly its size, wiped on drop.
fn copy(text: &str) -> Zeroizing<String> {
    let mut value = Zeroizing::new(String::with_capacity(text.len()));
    value.push_str(text);
    value
}

/// One line of stdin, trimmed; nothing after its newline is read.
fn read_stdin_line(origin: &str) -> Result<Zeroizing<String>, Failure> {
    let cap = MAX_SECRET_FILE_BYTES as usize;
    let mut bytes = Zeroizing::new(Vec::with_capacity(cap + 1));
    std::io::stdin()
        .lock()
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_until(b'\n', &mut bytes)
        .map_err(|e| Failure::usage(format!("{origin}: cannot read stdin: {e}")))?;
    if bytes.len() > cap {
        return Err(Failure::usage(format!(
            "{origin}: the first line of stdin is longer than {MAX_SECRET_FILE_BYTES} bytes: pipe in only the key"
        )));
    }
    one_line(&bytes, origin, false)
}

/// A regular file of at most [`MAX_SECRET_FILE_BYTES`], refused before reading otherwise.
fn read_file(path: &Path, origin: &str) -> Result<Zeroizing<String>, Failure> {
    let io = |e: std::io::Error| Failure::usage(format!("{origin}: cannot read it: {e}"));
    let check = |metadata: std::fs::Metadata| {
        if !metadata.is_file() {
            return Err(Failure::usage(format!(
                "{origin}: not a regular file (a FIFO, a device or a directory): give the path of a file holding the key, or `-` for stdin"
            )));
        }
        if metadata.len() > MAX_SECRET_FILE_BYTES {
            return Err(Failure::usage(format!(
                "{origin}: {} bytes, more than the {MAX_SECRET_FILE_BYTES} a key file may hold: check the path",
                metadata.len()
            )));
        }
        Ok(metadata.len())
    };
    // On the path first: opening a FIFO for reading blocks until a writer appears.
    check(std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::File::open(path).map_err(io)?;
    let len = check(file.metadata().map_err(io)?)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(len as usize + 1));
    file.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(Failure::usage(format!("{origin}: the file grew past {MAX_SECRET_FILE_BYTES} bytes while read")));
    }
    one_line(&bytes, origin, true)
}

/// The text as one line, trimmed. A file with more after its first line is refused (it is not
/// a key file: a `.env`, say), without showing any of it.
fn one_line(bytes: &[u8], origin: &str, is_file: bool) -> Result<Zeroizing<String>, Failure> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Failure::usage(format!("{origin}: not UTF-8 text: it should hold only the key")))?;
    let text = text.trim();
    if is_file && text.contains('\n') {
        return Err(Failure::usage(format!(
            "{origin}: more than one line (not shown): the file should hold only the key, on one line"
        )));
    }
    if text.is_empty() {
        return Err(Failure::usage(format!("{origin}: empty: it should hold the key, on one line")));
    }
    Ok(copy(text))
}

/// A secp256k1 private key as 64 hex digits, with or without `0x`. The error names where the key
/// came from, never the value.
pub fn private_key(value: &str, origin: &str) -> Result<PrivateKeySigner, Failure> {
    phala_cloud::onchain::signer_from_hex(value).map_err(|e| Failure::usage(format!("{origin}: {e}")))
}

/// An RPC URL from `--rpc-url` or its variable, checked after clap so that no error shows it:
/// providers put API keys in the path. `label` names the flag and variable.
pub fn rpc_url(value: Option<&OsStr>, label: &str, variable: &str) -> Result<Option<url::Url>, Failure> {
    let Some(value) = value else { return Ok(None) };
    let refuse = |what: String| {
        Failure::usage(format!(
            "{label}: {what} (the value is not shown: RPC URLs often carry an API key): give an http:// or https:// URL"
        ))
    };
    let text = value.to_str().ok_or_else(|| refuse("not valid UTF-8".into()))?;
    let url = url::Url::parse(text).map_err(|e| refuse(format!("not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(refuse("not an http or https URL with a host".into()));
    }
    // On the command line (`--rpc-url URL` or `--rpc-url=URL`, even if a variable holds the
    // same), anyone on the machine can read it in the process list: one that looks like it
    // carries a key is refused, pointing at the variable.
    if on_command_line(value) && carries_key(&url) {
        return Err(Failure::usage(format!(
            "{label}: this URL seems to carry an API key (a user, a query, or a long token in its path), and a command-line argument shows in the process list: set {variable} instead (the value is not shown)"
        )));
    }
    Ok(Some(url))
}

/// Whether `value` is one of this process's arguments, alone or after `=`.
fn on_command_line(value: &OsStr) -> bool {
    std::env::args_os().skip(1).any(|arg| {
        arg.as_os_str() == value
            || arg.to_str().and_then(|a| a.split_once('=')).is_some_and(|(_, v)| OsStr::new(v) == value)
    })
}

/// Whether an RPC URL looks like it carries a credential: a user or password, a query, or a
/// path segment of 16 or more token characters (as providers put their keys in).
fn carries_key(url: &url::Url) -> bool {
    let token = |segment: &str| {
        segment.len() >= 16 && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.path_segments().is_some_and(|mut segments| segments.any(token))
}

#[cfg(test)]
mod tests {
    use super::carries_key;

    #[test]
    fn rpc_urls_that_carry_a_key_are_told_apart() {
        for keyed in [
            "https://base-mainnet.g.alchemy.com/v2/AbCdEf0123456789xyz",
            "https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef",
            "https://user:pass@rpc.example.com",
            "https://rpc.example.com/?apikey=x",
        ] {
            assert!(carries_key(&keyed.parse().unwrap()), "{keyed}");
        }
        for plain in ["http://localhost:8545", "https://mainnet.base.org", "https://ethereum-rpc.publicnode.com/"] {
            assert!(!carries_key(&plain.parse().unwrap()), "{plain}");
        }
    }
}
