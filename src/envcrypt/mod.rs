//! Env encryption for `PATCH /api/v1/cvms/{cvm_id}/envs`, the checks a CVM applies, and
//! verification of the KMS signature over the recipient key.
//!
//! The flow: build an [`EnvVars`] (from pairs, `KEY=VALUE` strings or dotenv text), which refuses
//! anything a CVM would silently drop; [`encrypt`] it to the CVM's X25519 public key; send the
//! result with [`EncryptedEnv::into_body`], whose `env_keys` covers every encrypted name.
//!
//! ```
//! use phala_cloud::{EnvVars, encrypt};
//!
//! let env = EnvVars::from_pairs([("DATABASE_URL", "postgres://…"), ("API_TOKEN", "s3cr3t")])?;
//! // The CVM's `encrypted_env_pubkey` (hex, with or without `0x`).
//! let recipient = "b5ee2e67280ef8c9540850e90e6b7ee1b5e7ef011301bde95a2e6f953d04d201";
//! let encrypted = encrypt(&env, recipient)?;
//! assert_eq!(encrypted.keys(), ["DATABASE_URL", "API_TOKEN"]);
//! let body = encrypted.into_body();
//! assert_eq!(body.env_keys.as_deref(), Some(&["DATABASE_URL".to_string(), "API_TOKEN".to_string()][..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Format
//! The plaintext is the JSON `{"env":[{"key":"NAME","value":"text"},…]}`. X25519 between a fresh
//! ephemeral secret and the recipient key gives the raw AES-256-GCM key (no KDF, no associated
//! data); the IV is 12 random bytes. The blob is `ephemeral_public_key (32) ‖ iv (12) ‖
//! ciphertext ‖ tag (16)` as lowercase hex without `0x`.
//!
//! # Secrets
//! Env values are secrets: they are wiped from memory when an [`EnvVars`] is dropped, shown as
//! `<redacted>` by `Debug`, and never appear in `Display` or in an error (env names do, since they
//! are not secret). [`encrypt`] writes the JSON plaintext straight into one buffer sized exactly
//! up front (so it never reallocates), encrypts it in place and wipes it on every error path; the
//! ephemeral secret and the shared secret are wiped on drop. The dotenv parser decodes each value
//! into one buffer sized up front, and a dotenv file is read into one buffer that is wiped. What
//! this cannot reach: copies a caller keeps, and register or stack spills.
//!
//! # KMS signature
//! With a contract-owned KMS the recipient key comes from `GET /api/v1/kms/{slug}/pubkey/{app_id}`
//! with a signature; [`SignedEnvPubkey::verify`] checks it against `kms_info.k256_pubkey` before the
//! key is used.

mod encrypt;
mod env_vars;
mod json;
mod kms_sig;

pub use encrypt::{EncryptedEnv, RecipientPublicKey, encrypt};
// The CVM's side: the simulator decrypts what it is sent (and re-exports these).
#[cfg_attr(not(any(feature = "simulator", feature = "__internals")), allow(unused_imports))]
pub use encrypt::{RecipientSecretKey, decrypt, decrypt_bytes};
pub use env_vars::{EnvVars, MAX_DOTENV_FILE_BYTES, MAX_ENV_ENTRIES, MAX_ENV_TOTAL_BYTES, MAX_ENV_VALUE_BYTES};
pub use kms_sig::{
    K256PublicKey, KMS_SIGNATURE_MAX_AGE_SECS, KMS_SIGNATURE_MAX_SKEW_SECS, KMS_SIGNATURE_PREFIX, SignedEnvPubkey,
};

use crate::hex::HexError;
use crate::validate::InputError;

/// An env that cannot be built as a CVM would take it: a bad or repeated name, a limit, dotenv
/// syntax or I/O, or `env_keys` that do not match the blob.
///
/// No variant carries an env value; env names are not secret and are named where they help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// An env name or an `env_keys` entry is not what a CVM accepts.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The same env name was given twice.
    #[error("duplicate env name `{key}`")]
    DuplicateKey {
        /// The repeated name.
        key: String,
    },
    /// More entries than a CVM accepts.
    #[error("too many env vars: adding `{key}` makes {count}, more than the {max} a CVM accepts")]
    TooManyEntries {
        /// The name whose addition went over the limit.
        key: String,
        /// Entries including that one.
        count: usize,
        /// The limit, [`MAX_ENV_ENTRIES`].
        max: usize,
    },
    /// One value is longer than a CVM accepts.
    #[error("the value of `{key}` is {len} bytes, more than the {max} a CVM accepts")]
    ValueTooLarge {
        /// The name whose value is too long.
        key: String,
        /// Its length in bytes.
        len: usize,
        /// The limit, [`MAX_ENV_VALUE_BYTES`].
        max: usize,
    },
    /// Names and values together are larger than a CVM accepts.
    #[error("adding `{key}` makes the env {total} bytes (names and values), more than the {max} a CVM accepts")]
    TotalTooLarge {
        /// The name whose addition went over the limit.
        key: String,
        /// Bytes of names and values including that entry.
        total: usize,
        /// The limit, [`MAX_ENV_TOTAL_BYTES`].
        max: usize,
    },
    /// A `KEY=VALUE` string has no `=`. The string itself is not shown: it may be a secret.
    #[error("assignment #{index} is not of the form KEY=VALUE (no `=`)")]
    MissingEquals {
        /// Zero-based position among the strings given.
        index: usize,
    },
    /// In a `KEY=VALUE` string, the text before the first `=` is not a valid env name. It is
    /// not shown: a secret containing `=` given without its key would put part of the secret
    /// there.
    #[error(
        "assignment #{index}: the text before the first `=` is not a valid env name (not shown, it may be part of a secret)"
    )]
    InvalidAssignmentKey {
        /// Zero-based position among the strings given.
        index: usize,
    },
    /// Dotenv text the parser rejects. The offending line is not shown: it may hold a secret.
    #[error(
        "dotenv syntax error on line {line}, column {column} ({}; the line is not shown, it may hold a secret): {reason}",
        describe_after(after_key.as_deref())
    )]
    Dotenv {
        /// The last name parsed before the error, if any.
        after_key: Option<String>,
        /// 1-based line of the error (for an unterminated quote, the line it opens on).
        line: usize,
        /// 1-based column of the error, in characters.
        column: usize,
        /// What is wrong and what to write instead.
        reason: &'static str,
    },
    /// A dotenv file is not a regular file: a FIFO, a device (`/dev/zero`), a socket or a
    /// directory. Nothing was read from it.
    #[error("dotenv file {} is not a regular file (a FIFO, a device or a directory): give the path of a file", path.display())]
    DotenvFileNotRegular {
        /// The path given.
        path: std::path::PathBuf,
    },
    /// A dotenv file is larger than [`MAX_DOTENV_FILE_BYTES`]. Nothing was parsed.
    #[error(
        "dotenv file {} is {len} bytes, more than the {max} read (a CVM takes at most {MAX_ENV_TOTAL_BYTES} bytes of env): check the path, or split the env",
        path.display()
    )]
    DotenvFileTooLarge {
        /// The path given.
        path: std::path::PathBuf,
        /// Its size in bytes (at least `max + 1` if it grew while being read).
        len: u64,
        /// The limit, [`MAX_DOTENV_FILE_BYTES`].
        max: u64,
    },
    /// A dotenv file could not be read.
    #[error("cannot read dotenv file {}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `env_keys` leaves out a name that the blob encrypts; the CVM would drop that value silently.
    #[error("env_keys does not include `{key}`, which is encrypted in encrypted_env; the CVM would drop it silently")]
    EnvKeysMissing {
        /// The encrypted name that `env_keys` leaves out.
        key: String,
    },
}

/// Encryption or decryption of an env failed: the recipient key, the system's randomness, or
/// (on the CVM's side) the blob.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptError {
    /// The recipient key (or the CVM's secret) is not 32 bytes of hex.
    #[error(transparent)]
    Hex(#[from] HexError),
    /// The recipient public key is a low-order point: the shared secret would be all zeros, and
    /// anyone could decrypt.
    #[error("the recipient public key is a low-order point (the X25519 shared secret would be all zeros)")]
    LowOrderPublicKey,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Rng(getrandom::Error),
    /// An `encrypted_env` blob is not well formed (not hex, or too short).
    #[error("malformed encrypted_env: {reason}")]
    MalformedBlob {
        /// What is wrong.
        reason: String,
    },
    /// Decryption failed: a different recipient key, or a corrupted blob.
    #[error("decryption failed: the blob was not encrypted to this key, or it was altered")]
    Decrypt,
    /// The decrypted plaintext is not the expected JSON. Its content is not shown.
    #[error("the decrypted plaintext is not {{\"env\":[{{\"key\",\"value\"}},…]}} JSON (line {line}, column {column})")]
    MalformedPlaintext {
        /// Line of the JSON error (1-based).
        line: usize,
        /// Column of the JSON error (1-based).
        column: usize,
    },
    /// The decrypted env is not one a CVM accepts.
    #[error(transparent)]
    Env(#[from] EnvError),
}

/// A KMS key or its signature over an env-encryption public key does not check out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsSignatureError {
    /// A key or the signature is not hex of the right length.
    #[error(transparent)]
    Hex(#[from] HexError),
    /// A secp256k1 key (`k256_pubkey`) is not a valid SEC1 point.
    #[error("invalid secp256k1 public key: {reason}")]
    InvalidK256PublicKey {
        /// What is wrong.
        reason: &'static str,
    },
    /// The KMS signature is malformed or no signer can be recovered from it.
    #[error("invalid KMS signature: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The signature was made by another key than the KMS's `k256_pubkey`.
    #[error(
        "the env-encryption public key is not signed by the KMS: the signer is {recovered}, kms_info.k256_pubkey is {expected}"
    )]
    SignerMismatch {
        /// The key the KMS should have signed with.
        expected: K256PublicKey,
        /// The key that did sign.
        recovered: K256PublicKey,
    },
    /// The timestamped signature is older than [`KMS_SIGNATURE_MAX_AGE_SECS`].
    #[error("the KMS signature is {age_secs} s old, older than the {max_secs} s allowed")]
    Expired {
        /// Its age in seconds.
        age_secs: u64,
        /// The limit.
        max_secs: u64,
    },
    /// The timestamped signature is more than [`KMS_SIGNATURE_MAX_SKEW_SECS`] in the future.
    #[error("the KMS signature is dated {ahead_secs} s in the future, more than the {max_secs} s allowed")]
    FromFuture {
        /// How far ahead, in seconds.
        ahead_secs: u64,
        /// The limit.
        max_secs: u64,
    },
}

fn describe_after(after_key: Option<&str>) -> String {
    match after_key {
        Some(key) => format!("in the entry after `{key}`"),
        None => "in the first entry".to_string(),
    }
}

impl From<std::convert::Infallible> for CryptError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}
