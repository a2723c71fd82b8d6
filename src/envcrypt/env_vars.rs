//! [`EnvVars`]: ordered env names and secret values, checked against what a CVM accepts.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use zeroize::Zeroizing;

use super::{EnvError, json};
use crate::validate::check_env_key;

/// Most entries a CVM accepts in one env.
pub const MAX_ENV_ENTRIES: usize = 1024;
/// Longest value, in bytes, a CVM accepts.
pub const MAX_ENV_VALUE_BYTES: usize = 128 * 1024;
/// Most bytes of names and values together a CVM accepts. Names are counted too, which is the
/// conservative reading of the CVM's "1 MiB in all".
pub const MAX_ENV_TOTAL_BYTES: usize = 1024 * 1024;
/// Largest dotenv file [`EnvVars::from_dotenv_file`] reads: the CVM's [`MAX_ENV_TOTAL_BYTES`]
/// plus as much again for names, quotes, comments and blank lines.
pub const MAX_DOTENV_FILE_BYTES: u64 = 2 * 1024 * 1024;

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
/// use phala_cloud::EnvVars;
///
/// let env = EnvVars::from_assignments(["A=1", "B=two=2"])?;
/// assert_eq!(env.get("B"), Some("two=2"));
/// assert_eq!(format!("{env:?}"), r#"EnvVars {"A": <redacted>, "B": <redacted>}"#);
/// assert!(EnvVars::from_assignments(["A=1", "A=2"]).unwrap_err().to_string().contains("`A`"));
/// # Ok::<(), phala_cloud::EnvError>(())
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
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, EnvError>
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
    pub fn from_assignments<I, S>(assignments: I) -> Result<Self, EnvError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut env = Self::new();
        for (index, assignment) in assignments.into_iter().enumerate() {
            let (key, value) = assignment.as_ref().split_once('=').ok_or(EnvError::MissingEquals { index })?;
            if !crate::validate::is_valid_env_key(key) {
                return Err(EnvError::InvalidAssignmentKey { index });
            }
            env.push(key, value)?;
        }
        Ok(env)
    }

    /// Parses dotenv text. Values are taken literally: `$NAME` and `${NAME}` are never
    /// substituted, from this process's environment or from names defined earlier, so a file
    /// cannot pull a variable of the machine it is read on (a wallet key, say) into the env.
    ///
    /// The syntax:
    /// - one `NAME=VALUE` entry per line, with an optional `export ` prefix; blank lines and lines
    ///   starting with `#` are skipped; spaces and tabs around the name and the `=` are allowed;
    ///   names may contain `.` here, and are then refused as the CVM would;
    /// - an unquoted value runs to the end of the line, stops before a ` #` or `\t#` comment, and
    ///   is trimmed; everything in it is literal, `\`, quotes and a `#` not preceded by a space
    ///   included;
    /// - a value in single quotes is literal up to the next `'`, and may span lines;
    /// - a value in double quotes may span lines and decodes the escapes `\n`, `\r`, `\t`, `\"`,
    ///   `\\`, `\'` and `\$`; any other `\` is kept as written;
    /// - after a closing quote only spaces and a `#` comment may follow;
    /// - `\r\n` line endings and a leading byte-order mark are accepted.
    ///
    /// Errors give the line and column and the last name parsed, never the text (it may hold a
    /// secret). Each value is decoded into one buffer sized up front, so the parser leaves no
    /// copies behind; the caller's `text` is the caller's to wipe.
    ///
    /// ```
    /// use phala_cloud::EnvVars;
    ///
    /// let env = EnvVars::from_dotenv_str("export A=pa$sw0rd # comment\nB=\"${A}\\n\"\nC='x'\n")?;
    /// assert_eq!(env.iter().collect::<Vec<_>>(), [("A", "pa$sw0rd"), ("B", "${A}\n"), ("C", "x")]);
    /// # Ok::<(), phala_cloud::EnvError>(())
    /// ```
    pub fn from_dotenv_str(text: &str) -> Result<Self, EnvError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut env = Self::new();
        let mut parser = dotenv::Parser::new(text);
        loop {
            match parser.next_entry() {
                Ok(Some((key, value))) => env.push(key, value)?,
                Ok(None) => return Ok(env),
                Err(error) => {
                    return Err(EnvError::Dotenv {
                        after_key: env.entries.last().map(|e| e.key.clone()),
                        line: error.line,
                        column: error.column,
                        reason: error.reason,
                    });
                }
            }
        }
    }

    /// Reads a dotenv file and parses it as [`from_dotenv_str`](Self::from_dotenv_str) does.
    ///
    /// The file must be a regular file (a symlink to one is followed) of at most
    /// [`MAX_DOTENV_FILE_BYTES`]: a FIFO, a device such as `/dev/zero`, a directory or a larger
    /// file is refused before anything is read from it. The bytes are read into one buffer of the
    /// file's size, never more than the limit even if the file grows meanwhile, and wiped
    /// afterwards.
    pub fn from_dotenv_file(path: impl AsRef<Path>) -> Result<Self, EnvError> {
        let path = path.as_ref();
        let io_err = |source| EnvError::Io { path: path.to_path_buf(), source };
        // Checked on the path first: opening a FIFO for reading blocks until a writer appears.
        let check = |metadata: std::fs::Metadata| {
            if !metadata.is_file() {
                return Err(EnvError::DotenvFileNotRegular { path: path.to_path_buf() });
            }
            if metadata.len() > MAX_DOTENV_FILE_BYTES {
                return Err(EnvError::DotenvFileTooLarge {
                    path: path.to_path_buf(),
                    len: metadata.len(),
                    max: MAX_DOTENV_FILE_BYTES,
                });
            }
            Ok(metadata.len())
        };
        check(std::fs::metadata(path).map_err(io_err)?)?;
        let file = std::fs::File::open(path).map_err(io_err)?;
        // And again on what was opened, in case the path was replaced in between.
        let len = check(file.metadata().map_err(io_err)?)?;
        let capacity = usize::try_from(len).unwrap_or(usize::MAX).saturating_add(1);
        let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
        file.take(MAX_DOTENV_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io_err)?;
        if bytes.len() as u64 > MAX_DOTENV_FILE_BYTES {
            return Err(EnvError::DotenvFileTooLarge {
                path: path.to_path_buf(),
                len: bytes.len() as u64,
                max: MAX_DOTENV_FILE_BYTES,
            });
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| io_err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is not UTF-8")))?;
        Self::from_dotenv_str(text)
    }

    /// Appends one entry, after checking it and the env it makes against the CVM's limits. On
    /// error the env is unchanged and the refused value is wiped.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<(), EnvError> {
        let value = Zeroizing::new(value.into());
        let key = key.into();
        check_env_key(format!("env[{}]", self.entries.len()), &key)?;
        if self.index.contains_key(&key) {
            return Err(EnvError::DuplicateKey { key });
        }
        if value.len() > MAX_ENV_VALUE_BYTES {
            return Err(EnvError::ValueTooLarge { key, len: value.len(), max: MAX_ENV_VALUE_BYTES });
        }
        let count = self.entries.len() + 1;
        if count > MAX_ENV_ENTRIES {
            return Err(EnvError::TooManyEntries { key, count, max: MAX_ENV_ENTRIES });
        }
        let total = self.total + key.len() + value.len();
        if total > MAX_ENV_TOTAL_BYTES {
            return Err(EnvError::TotalTooLarge { key, total, max: MAX_ENV_TOTAL_BYTES });
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

/// The dotenv parser: literal values, no substitution. See [`EnvVars::from_dotenv_str`].
mod dotenv {
    /// Where and why the text is not dotenv. It holds no part of the text.
    pub(super) struct SyntaxError {
        /// 1-based line.
        pub line: usize,
        /// 1-based column, in characters.
        pub column: usize,
        /// What is wrong, and what to write instead.
        pub reason: &'static str,
    }

    pub(super) struct Parser<'a> {
        text: &'a str,
        /// Byte offset of the next character.
        pos: usize,
    }

    fn is_space(b: u8) -> bool {
        matches!(b, b' ' | b'\t' | b'\r')
    }

    fn is_name_start(b: u8) -> bool {
        b.is_ascii_alphabetic() || b == b'_'
    }

    /// Dotenv names may contain `.`; the CVM's stricter rule is applied by [`super::EnvVars::push`],
    /// which names the refused name. Scanning stops at anything else, so text that is not a name
    /// followed by `=` is never shown.
    fn is_name_char(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
    }

    impl<'a> Parser<'a> {
        pub(super) fn new(text: &'a str) -> Self {
            Self { text, pos: 0 }
        }

        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.pos).copied()
        }

        fn error_at(&self, pos: usize, reason: &'static str) -> SyntaxError {
            let before = &self.text[..pos];
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let line = 1 + before.bytes().filter(|&b| b == b'\n').count();
            SyntaxError { line, column: 1 + self.text[line_start..pos].chars().count(), reason }
        }

        fn error(&self, reason: &'static str) -> SyntaxError {
            self.error_at(self.pos, reason)
        }

        fn skip_spaces(&mut self) {
            while self.peek().is_some_and(is_space) {
                self.pos += 1;
            }
        }

        /// Moves past the end of the current line (its `\n`, if any).
        fn next_line(&mut self) {
            match self.text[self.pos..].find('\n') {
                Some(i) => self.pos += i + 1,
                None => self.pos = self.text.len(),
            }
        }

        fn at_line_end(&self) -> bool {
            matches!(self.peek(), None | Some(b'\n'))
        }

        fn name(&mut self) -> Result<&'a str, SyntaxError> {
            if !self.peek().is_some_and(is_name_start) {
                return Err(self.error("expected an env name (a letter or `_`, then letters, digits, `_`)"));
            }
            let start = self.pos;
            while self.peek().is_some_and(is_name_char) {
                self.pos += 1;
            }
            Ok(&self.text[start..self.pos])
        }

        fn equals(&mut self) -> Result<(), SyntaxError> {
            if self.peek() != Some(b'=') {
                return Err(self
                    .error("expected `=` after the name (names hold only letters, digits and `_`): write NAME=VALUE"));
            }
            self.pos += 1;
            Ok(())
        }

        /// The next `(name, value)`, or `None` at the end of the text.
        pub(super) fn next_entry(&mut self) -> Result<Option<(String, String)>, SyntaxError> {
            loop {
                self.skip_spaces();
                match self.peek() {
                    None => return Ok(None),
                    Some(b'\n' | b'#') => self.next_line(),
                    Some(_) => break,
                }
            }
            let mut name = self.name()?;
            let name_end = self.pos;
            self.skip_spaces();
            // `export NAME=…`; `export=…` and `export = …` define a variable named `export`.
            if name == "export" && self.pos > name_end && !matches!(self.peek(), Some(b'=') | Some(b'\n') | None) {
                name = self.name()?;
                self.skip_spaces();
            }
            self.equals()?;
            self.skip_spaces();
            let value = match self.peek() {
                Some(b'\'') => self.quoted(b'\'')?,
                Some(b'"') => self.quoted(b'"')?,
                _ => self.unquoted(),
            };
            self.next_line();
            Ok(Some((name.to_owned(), value)))
        }

        /// An unquoted value: to the end of the line or a ` #` comment, trimmed, literal.
        fn unquoted(&mut self) -> String {
            let bytes = self.text.as_bytes();
            let start = self.pos;
            let mut end = start;
            while let Some(&b) = bytes.get(self.pos) {
                if b == b'\n' || (b == b'#' && (self.pos == start || is_space(bytes[self.pos - 1]))) {
                    break;
                }
                self.pos += 1;
                if !is_space(b) {
                    end = self.pos;
                }
            }
            let mut value = String::with_capacity(end - start);
            value.push_str(&self.text[start..end]);
            value
        }

        /// A value in `quote`s, which may span lines; then only spaces and a comment.
        fn quoted(&mut self, quote: u8) -> Result<String, SyntaxError> {
            let open = self.pos;
            self.pos += 1;
            let start = self.pos;
            let bytes = self.text.as_bytes();
            let close = loop {
                match bytes.get(self.pos) {
                    None => {
                        return Err(self.error_at(
                            open,
                            if quote == b'"' {
                                "unterminated double quote: close the value with `\"`"
                            } else {
                                "unterminated single quote: close the value with `'`"
                            },
                        ));
                    }
                    Some(b'\\') if quote == b'"' => self.pos += 2.min(bytes.len() - self.pos),
                    Some(&b) if b == quote => break self.pos,
                    Some(_) => self.pos += 1,
                }
            };
            self.pos = close + 1;
            let raw = &self.text[start..close];
            let mut value = String::with_capacity(raw.len());
            if quote == b'"' {
                let mut chars = raw.chars();
                while let Some(c) = chars.next() {
                    if c != '\\' {
                        value.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        Some(c @ ('"' | '\\' | '\'' | '$')) => value.push(c),
                        Some(other) => {
                            value.push('\\');
                            value.push(other);
                        }
                        None => value.push('\\'),
                    }
                }
            } else {
                value.push_str(raw);
            }
            self.skip_spaces();
            if !self.at_line_end() && self.peek() != Some(b'#') {
                // The value is wiped by `Zeroizing` on the way out.
                drop(zeroize::Zeroizing::new(value));
                return Err(self.error(
                    "unexpected text after the closing quote: quote the whole value, and put `#` before a comment",
                ));
            }
            Ok(value)
        }
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
        assert!(matches!(&e, EnvError::Input(i) if i.field == "env[1]"), "{e:?}");
        assert!(e.to_string().contains("\"1A\""), "{e}");
        assert!(matches!(env.push("A", "2").unwrap_err(), EnvError::DuplicateKey { key } if key == "A"));
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
        assert!(matches!(e, EnvError::Dotenv { after_key: Some(ref k), .. } if k == "OK"), "{e:?}");
    }

    #[test]
    fn dotenv_errors_give_line_and_column_in_characters() {
        let err = |text: &str| match EnvVars::from_dotenv_str(text).unwrap_err() {
            EnvError::Dotenv { line, column, reason, .. } => (line, column, reason),
            other => panic!("{other:?}"),
        };
        // The column counts characters, not bytes.
        assert_eq!(err("A=1\nÉ=2\n").0, 2);
        let (line, column, reason) = err("A=1\nB=\"é\" x\n");
        assert_eq!((line, column), (2, 7));
        assert!(reason.contains("after the closing quote"), "{reason}");
        // An unterminated quote is reported where it opens, lines later.
        let (line, column, reason) = err("A=1\nB = 'x\ny\nz\n");
        assert_eq!((line, column), (2, 5));
        assert!(reason.contains("single quote"), "{reason}");
        // An escaped closing quote does not close the value.
        assert!(err("A=\"abc\\\"").2.contains("double quote"));
        assert!(err("A=\"abc\\").2.contains("double quote"));
        // `export` alone is a name without `=`.
        assert!(err("export\n").2.contains("`=`"));
        assert!(err("export A\n").2.contains("`=`"));
    }

    #[test]
    fn dotenv_edge_cases() {
        let pairs = |text: &str| {
            let env = EnvVars::from_dotenv_str(text).unwrap();
            env.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>()
        };
        let one = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert_eq!(pairs(""), vec![]);
        assert_eq!(pairs("\n\n# only comments\n   \n"), vec![]);
        assert_eq!(pairs("A=#not a value"), one("A", ""));
        assert_eq!(pairs("A=x#y #z"), one("A", "x#y"));
        assert_eq!(pairs("A=\"x\"#c"), one("A", "x"));
        assert_eq!(pairs("A=\"é\\ü\""), one("A", "é\\ü"));
        assert_eq!(pairs("A=\"ends with a backslash\\\\\""), one("A", "ends with a backslash\\"));
        assert_eq!(pairs("A='a \"b\" c'"), one("A", "a \"b\" c"));
        assert_eq!(pairs("A=\"a 'b' c\""), one("A", "a 'b' c"));
        assert_eq!(pairs("A=\"x\r\ny\"\r\n"), one("A", "x\r\ny"));
        assert_eq!(pairs("A=  spaced out  \t"), one("A", "spaced out"));
    }

    #[test]
    fn bom_is_ignored() {
        let env = EnvVars::from_dotenv_str("\u{feff}A=1\n").unwrap();
        assert_eq!(env.get("A"), Some("1"));
    }
}
