//! [`EnvVars`]: ordered env names and secret values, checked against what a CVM accepts.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use zeroize::{Zeroize, Zeroizing};

use super::{EnvCryptError, json};
use crate::validate::check_env_key;

/// Most entries a CVM accepts in one env.
pub const MAX_ENV_ENTRIES: usize = 1024;
/// Longest value, in bytes, a CVM accepts.
pub const MAX_ENV_VALUE_BYTES: usize = 128 * 1024;
/// Most bytes of names and values together a CVM accepts. Names are counted too, which is the
/// conservative reading of the CVM's "1 MiB in all".
pub const MAX_ENV_TOTAL_BYTES: usize = 1024 * 1024;

#[derive(Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    value: Zeroizing<String>,
    /// Length of the value inside a JSON string, escapes included.
    value_json_len: usize,
}

/// Env vars to encrypt: ordered `(name, value)` pairs whose values are secrets.
///
/// An `EnvVars` is valid by construction: every constructor and [`push`](Self::push) refuses, with
/// an error that names the offending env name, what a CVM would silently drop:
/// - a name that does not match `^[a-zA-Z_][a-zA-Z0-9_]*$`,
/// - a name given twice,
/// - more than [`MAX_ENV_ENTRIES`] entries,
/// - a value longer than [`MAX_ENV_VALUE_BYTES`],
/// - more than [`MAX_ENV_TOTAL_BYTES`] of names and values in all.
///
/// Values are wiped from memory on drop and shown as `<redacted>` by `Debug`; there is no
/// `Display`. Names are not secret.
///
/// ```
/// use phala_cloud::envcrypt::EnvVars;
///
/// let env = EnvVars::from_assignments(["A=1", "B=two=2"])?;
/// assert_eq!(env.get("B"), Some("two=2"));
/// assert_eq!(format!("{env:?}"), r#"EnvVars {"A": <redacted>, "B": <redacted>}"#);
/// assert!(EnvVars::from_assignments(["A=1", "A=2"]).unwrap_err().to_string().contains("`A`"));
/// # Ok::<(), phala_cloud::envcrypt::EnvCryptError>(())
/// ```
#[derive(Clone, Default)]
pub struct EnvVars {
    entries: Vec<Entry>,
    /// Name → position in `entries`.
    index: HashMap<String, usize>,
    /// Bytes of names and values.
    total: usize,
}

impl EnvVars {
    /// An empty env. Encrypting it clears the CVM's env.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an env from `(name, value)` pairs, in order.
    ///
    /// Values passed as `String` are moved in, not copied.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, EnvCryptError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut env = Self::new();
        for (key, value) in pairs {
            env.push(key, value)?;
        }
        Ok(env)
    }

    /// Builds an env from `KEY=VALUE` strings (as given to a CLI's `-e`), split at the first `=`.
    ///
    /// The value is copied; the caller's strings are left as they are. A string without `=` is
    /// refused by position, without echoing it (it may be a secret given by mistake).
    pub fn from_assignments<I, S>(assignments: I) -> Result<Self, EnvCryptError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut env = Self::new();
        for (index, assignment) in assignments.into_iter().enumerate() {
            let (key, value) = assignment.as_ref().split_once('=').ok_or(EnvCryptError::MissingEquals { index })?;
            if !crate::validate::is_valid_env_key(key) {
                return Err(EnvCryptError::InvalidAssignmentKey { index });
            }
            env.push(key, value)?;
        }
        Ok(env)
    }

    /// Parses dotenv text with [`dotenvy`], which decides the syntax: `#` comments, blank lines,
    /// an optional `export ` prefix, single quotes (literal), double quotes (with `\` escapes), and
    /// values spanning several lines inside quotes.
    ///
    /// Like dotenvy, `$NAME` and `${NAME}` in unquoted or double-quoted values are substituted,
    /// from this process's environment first and then from names defined earlier in the text; use
    /// single quotes to keep a `$` literally. A leading byte-order mark is ignored.
    ///
    /// Parse errors give the character position and the last name parsed, never the line (it may
    /// hold a secret). dotenvy's own line buffers are not wiped.
    pub fn from_dotenv_str(text: &str) -> Result<Self, EnvCryptError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut env = Self::new();
        for item in dotenvy::from_read_iter(text.as_bytes()) {
            match item {
                Ok((key, value)) => env.push(key, value)?,
                Err(err) => {
                    let position = match err {
                        dotenvy::Error::LineParse(mut line, position) => {
                            line.zeroize();
                            position
                        }
                        _ => 0,
                    };
                    let after_key = env.entries.last().map(|e| e.key.clone());
                    return Err(EnvCryptError::Dotenv { after_key, position });
                }
            }
        }
        Ok(env)
    }

    /// Reads a dotenv file and parses it as [`from_dotenv_str`](Self::from_dotenv_str) does. The
    /// file's bytes are read into one buffer of the file's size and wiped afterwards.
    pub fn from_dotenv_file(path: impl AsRef<Path>) -> Result<Self, EnvCryptError> {
        let path = path.as_ref();
        let io_err = |source| EnvCryptError::Io { path: path.to_path_buf(), source };
        let bytes = Zeroizing::new(std::fs::read(path).map_err(io_err)?);
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| io_err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is not UTF-8")))?;
        Self::from_dotenv_str(text)
    }

    /// Appends one entry, after checking it and the env it makes against the CVM's limits. On
    /// error the env is unchanged and the refused value is wiped.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<(), EnvCryptError> {
        let value = Zeroizing::new(value.into());
        let key = key.into();
        check_env_key(format!("env[{}]", self.entries.len()), &key)?;
        if self.index.contains_key(&key) {
            return Err(EnvCryptError::DuplicateKey { key });
        }
        if value.len() > MAX_ENV_VALUE_BYTES {
            return Err(EnvCryptError::ValueTooLarge { key, len: value.len(), max: MAX_ENV_VALUE_BYTES });
        }
        let count = self.entries.len() + 1;
        if count > MAX_ENV_ENTRIES {
            return Err(EnvCryptError::TooManyEntries { key, count, max: MAX_ENV_ENTRIES });
        }
        let total = self.total + key.len() + value.len();
        if total > MAX_ENV_TOTAL_BYTES {
            return Err(EnvCryptError::TotalTooLarge { key, total, max: MAX_ENV_TOTAL_BYTES });
        }
        let value_json_len = json::escaped_len(value.as_bytes());
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push(Entry { key, value, value_json_len });
        self.total = total;
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of names and values together, the figure checked against [`MAX_ENV_TOTAL_BYTES`].
    pub fn total_bytes(&self) -> usize {
        self.total
    }

    /// Whether `key` is one of the names.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The value of `key`. It is a secret: keep it out of logs.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.index.get(key).map(|&i| self.entries[i].value.as_str())
    }

    /// The names, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries.iter().map(|e| e.key.as_str())
    }

    /// `(name, value)` pairs, in order. Values are secrets: keep them out of logs.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|e| (e.key.as_str(), e.value.as_str()))
    }

    /// `(name, value, escaped length of the value)`, for the JSON writer.
    pub(super) fn json_entries(&self) -> impl Iterator<Item = (&str, &str, usize)> + '_ {
        self.entries.iter().map(|e| (e.key.as_str(), e.value.as_str(), e.value_json_len))
    }
}

impl PartialEq for EnvVars {
    /// Same names and values in the same order.
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for EnvVars {}

impl fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted;
        impl fmt::Debug for Redacted {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }
        f.write_str("EnvVars ")?;
        f.debug_map().entries(self.entries.iter().map(|e| (&e.key, Redacted))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_checks_in_order_and_leaves_env_unchanged_on_error() {
        let mut env = EnvVars::new();
        env.push("A", "1").unwrap();
        let e = env.push("1A", "x").unwrap_err();
        assert!(matches!(&e, EnvCryptError::Input(i) if i.field == "env[1]"), "{e:?}");
        assert!(e.to_string().contains("\"1A\""), "{e}");
        assert!(matches!(env.push("A", "2").unwrap_err(), EnvCryptError::DuplicateKey { key } if key == "A"));
        assert_eq!(env.len(), 1);
        assert_eq!(env.total_bytes(), 2);
        assert_eq!(env.get("A"), Some("1"));
        assert!(env.contains_key("A") && !env.contains_key("B"));
    }

    #[test]
    fn dotenv_error_hides_the_line() {
        let e = EnvVars::from_dotenv_str("OK=1\nBAD=\"canary-secret\nmore").unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(!text.contains("canary"), "{text}");
        assert!(matches!(e, EnvCryptError::Dotenv { after_key: Some(ref k), .. } if k == "OK"), "{e:?}");
    }

    #[test]
    fn bom_is_ignored() {
        let env = EnvVars::from_dotenv_str("\u{feff}A=1\n").unwrap();
        assert_eq!(env.get("A"), Some("1"));
    }
}
