//! Checks on user input, run before anything is sent. Each failure names the field it is about
//! and never echoes a secret value.

/// Input that cannot be sent, found before any network call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InputError {
    /// The argument or field, e.g. `cvm_id`, `env_keys[2]`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InputError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

/// Smallest encrypted env blob: ephemeral key (32) + IV (12) + tag (16) bytes.
pub const MIN_ENCRYPTED_ENV_BYTES: usize = 32 + 12 + 16;

/// An env name as a CVM accepts it: `^[a-zA-Z_][a-zA-Z0-9_]*$`.
pub fn is_valid_env_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks an env name, naming it in the error (names are not secret).
pub(crate) fn check_env_key(field: impl Into<String>, key: &str) -> Result<(), InputError> {
    if is_valid_env_key(key) {
        Ok(())
    } else {
        Err(InputError::new(
            field,
            format!("{key:?} is not a valid env name (letters, digits and _, not starting with a digit)"),
        ))
    }
}

/// A CVM id: not empty, not `.` or `..`, no path separators, whitespace or control characters.
pub(crate) fn check_cvm_id(cvm_id: &str) -> Result<(), InputError> {
    if cvm_id.is_empty() {
        return Err(InputError::new("cvm_id", "is empty"));
    }
    if cvm_id == "." || cvm_id == ".." {
        // Left as they are by path encoding, then resolved away by URL parsing.
        return Err(InputError::new("cvm_id", format!("{cvm_id:?} is a path segment, not an id")));
    }
    if cvm_id.contains(['/', '\\']) {
        // Percent-encoded, it would reach the server as an id no CVM has.
        return Err(InputError::new("cvm_id", format!("{cvm_id:?} contains a path separator")));
    }
    if cvm_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InputError::new("cvm_id", format!("{cvm_id:?} contains whitespace or control characters")));
    }
    Ok(())
}

/// An `encrypted_env` blob: lowercase or uppercase hex without `0x`, whole bytes, at least
/// [`MIN_ENCRYPTED_ENV_BYTES`].
pub(crate) fn check_encrypted_env(hex: &str) -> Result<(), InputError> {
    let field = "encrypted_env";
    if hex.starts_with("0x") || hex.starts_with("0X") {
        return Err(InputError::new(field, "must be hex without a 0x prefix"));
    }
    // The SIMD check first (a blob is kilobytes); the byte-wise scan only to name the bad byte.
    if !const_hex::check_raw(hex)
        && let Some(pos) = hex.bytes().position(|b| !b.is_ascii_hexdigit())
    {
        return Err(InputError::new(field, format!("is not hex (byte {pos})")));
    }
    if !hex.len().is_multiple_of(2) {
        return Err(InputError::new(field, "has an odd number of hex digits"));
    }
    if hex.len() / 2 < MIN_ENCRYPTED_ENV_BYTES {
        return Err(InputError::new(
            field,
            format!("is {} bytes, shorter than the {MIN_ENCRYPTED_ENV_BYTES} bytes of key, IV and tag", hex.len() / 2),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys() {
        for ok in ["A", "_", "a_1", "FOO_BAR", "_9"] {
            assert!(is_valid_env_key(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "É", "A=B", "a.b"] {
            assert!(!is_valid_env_key(bad), "{bad}");
        }
        assert_eq!(check_env_key("env_keys[0]", "1A").unwrap_err().field, "env_keys[0]");
    }

    #[test]
    fn blobs_and_ids() {
        assert!(check_encrypted_env(&"ab".repeat(60)).is_ok());
        assert!(check_encrypted_env(&"ab".repeat(59)).unwrap_err().reason.contains("59 bytes"));
        assert!(check_encrypted_env(&format!("0x{}", "ab".repeat(60))).is_err());
        assert!(check_encrypted_env(&"zz".repeat(60)).unwrap_err().reason.contains("not hex"));
        assert!(check_encrypted_env(&"a".repeat(121)).unwrap_err().reason.contains("odd"));
        // The fast check agrees with the byte-wise definition for every byte, wherever it is
        // (inside a SIMD chunk or in the tail) and names the same position.
        for len in [120, 122, 190] {
            for pos in [0, 31, 32, 63, 64, len - 1] {
                for b in 0..=255u8 {
                    let mut blob = "ab".repeat(len / 2).into_bytes();
                    blob[pos] = b;
                    let Ok(blob) = String::from_utf8(blob) else { continue };
                    match check_encrypted_env(&blob) {
                        Ok(()) => assert!(b.is_ascii_hexdigit(), "{b:#x} at {pos} accepted"),
                        Err(e) => {
                            assert!(!b.is_ascii_hexdigit(), "{b:#x} at {pos} refused");
                            assert_eq!(e.reason, format!("is not hex (byte {pos})"));
                        }
                    }
                }
            }
        }
        let mut blob = "ab".repeat(60);
        blob.replace_range(40..42, "é");
        assert_eq!(check_encrypted_env(&blob).unwrap_err().reason, "is not hex (byte 40)");
        assert!(check_cvm_id("").is_err());
        assert!(check_cvm_id("a b").is_err());
        assert!(check_cvm_id("app_123-abc").is_ok());
        assert!(check_cvm_id("..").is_err() && check_cvm_id(".").is_err());
    }
}
