//! X25519 + AES-256-GCM encryption of an [`EnvVars`] into the `encrypted_env` blob, and the
//! recipient's side ([`decrypt`]) for tests and local simulators.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::json::{self, plaintext_len, write_plaintext};
use super::{CryptError, EnvError, EnvVars};
use crate::UpdateCvmEnvsBody;
use crate::hex::{HexError, decode_fixed, strip_0x};
use crate::validate::check_env_key;

const KEY_LEN: usize = 32;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Ephemeral public key and IV, in front of the ciphertext.
const HEADER_LEN: usize = KEY_LEN + IV_LEN;

/// A CVM's X25519 public key, the recipient of an encrypted env (`encrypted_env_pubkey`, or the
/// `public_key` a KMS signs).
///
/// Parsed from 64 hex digits with or without `0x`, or built from 32 bytes; displayed as lowercase
/// hex without `0x`. A low-order key is refused when [`encrypt`] uses it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecipientPublicKey([u8; KEY_LEN]);

impl RecipientPublicKey {
    /// What this value is called in error messages.
    pub const WHAT: &'static str = "recipient public key";

    /// The key from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key from 64 hex digits, with or without `0x`.
    pub fn from_hex(hex: &str) -> Result<Self, HexError> {
        Ok(Self(decode_fixed::<KEY_LEN>(hex, Self::WHAT)?))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Lowercase hex without `0x`.
    pub fn to_hex(&self) -> String {
        const_hex::encode(self.0)
    }
}

impl FromStr for RecipientPublicKey {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, HexError> {
        Self::from_hex(s)
    }
}

impl TryFrom<&str> for RecipientPublicKey {
    type Error = HexError;
    fn try_from(s: &str) -> Result<Self, HexError> {
        Self::from_hex(s)
    }
}

impl TryFrom<&String> for RecipientPublicKey {
    type Error = HexError;
    fn try_from(s: &String) -> Result<Self, HexError> {
        Self::from_hex(s)
    }
}

impl TryFrom<&[u8]> for RecipientPublicKey {
    type Error = HexError;
    fn try_from(bytes: &[u8]) -> Result<Self, HexError> {
        let bytes = <[u8; KEY_LEN]>::try_from(bytes).map_err(|_| HexError::WrongLength {
            what: Self::WHAT,
            expected: KEY_LEN,
            got: bytes.len() * 2,
        })?;
        Ok(Self(bytes))
    }
}

impl From<[u8; KEY_LEN]> for RecipientPublicKey {
    fn from(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }
}

impl From<&[u8; KEY_LEN]> for RecipientPublicKey {
    fn from(bytes: &[u8; KEY_LEN]) -> Self {
        Self(*bytes)
    }
}

impl From<&RecipientPublicKey> for RecipientPublicKey {
    fn from(key: &RecipientPublicKey) -> Self {
        *key
    }
}

impl fmt::Display for RecipientPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RecipientPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientPublicKey({})", self.to_hex())
    }
}

/// The recipient's X25519 secret key: what a CVM holds. This crate needs it only to play the CVM's
/// side in tests and local simulators ([`decrypt`]).
///
/// Wiped on drop; `Debug` shows `<redacted>`; there is no `Display` and no way to read it back.
#[derive(Clone)]
#[cfg_attr(not(any(feature = "simulator", feature = "__internals")), allow(dead_code))]
pub struct RecipientSecretKey(StaticSecret);

#[cfg_attr(not(any(feature = "simulator", feature = "__internals")), allow(dead_code))]
impl RecipientSecretKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self, CryptError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut_slice()).map_err(CryptError::Rng)?;
        Ok(Self(StaticSecret::from(*bytes)))
    }

    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    /// The key from 64 hex digits, with or without `0x`.
    pub fn from_hex(hex: &str) -> Result<Self, HexError> {
        let bytes = Zeroizing::new(decode_fixed::<KEY_LEN>(hex, "recipient secret key")?);
        Ok(Self(StaticSecret::from(*bytes)))
    }

    /// The matching public key, to give to [`encrypt`].
    pub fn public_key(&self) -> RecipientPublicKey {
        RecipientPublicKey(PublicKey::from(&self.0).to_bytes())
    }
}

impl fmt::Debug for RecipientSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecipientSecretKey(<redacted>)")
    }
}

/// An encrypted env: the `encrypted_env` blob and the names it encrypts, which `env_keys` must
/// cover (a CVM silently drops a value whose name is not in `env_keys`).
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedEnv {
    hex: String,
    keys: Vec<String>,
}

impl EncryptedEnv {
    /// The blob, `ephemeral_public_key ‖ iv ‖ ciphertext ‖ tag`, as lowercase hex without `0x`.
    pub fn as_hex(&self) -> &str {
        &self.hex
    }

    /// The blob, without copying it.
    pub fn into_hex(self) -> String {
        self.hex
    }

    /// The encrypted names, in order.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Checks that `env_keys` are valid env names and cover every encrypted name; the error names
    /// the first encrypted name left out. Extra names are allowed.
    pub fn check_env_keys<S: AsRef<str>>(&self, env_keys: &[S]) -> Result<(), EnvError> {
        let mut given = HashSet::with_capacity(env_keys.len());
        for (i, key) in env_keys.iter().enumerate() {
            let key = key.as_ref();
            check_env_key(format!("env_keys[{i}]"), key)?;
            given.insert(key);
        }
        match self.keys.iter().find(|k| !given.contains(k.as_str())) {
            Some(missing) => Err(EnvError::EnvKeysMissing { key: missing.clone() }),
            None => Ok(()),
        }
    }

    /// The body of `PATCH /api/v1/cvms/{cvm_id}/envs`, with `env_keys` set to the encrypted names.
    /// Set `compose_hash` and `transaction_hash` for phase 2.
    pub fn into_body(self) -> UpdateCvmEnvsBody {
        UpdateCvmEnvsBody {
            encrypted_env: self.hex,
            env_keys: Some(self.keys),
            compose_hash: None,
            transaction_hash: None,
        }
    }

    /// Like [`into_body`](Self::into_body) with `env_keys` given: a superset of the encrypted
    /// names, e.g. to keep names the app allows but this update does not set. Refuses an
    /// `env_keys` that leaves out an encrypted name, naming it.
    pub fn into_body_with_env_keys<I, S>(self, env_keys: I) -> Result<UpdateCvmEnvsBody, EnvError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let env_keys: Vec<String> = env_keys.into_iter().map(Into::into).collect();
        self.check_env_keys(&env_keys)?;
        Ok(UpdateCvmEnvsBody {
            encrypted_env: self.hex,
            env_keys: Some(env_keys),
            compose_hash: None,
            transaction_hash: None,
        })
    }
}

impl fmt::Debug for EncryptedEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedEnv")
            .field("keys", &self.keys)
            .field("hex_len", &self.hex.len())
            .field("ephemeral_public_key", &self.hex.get(..2 * KEY_LEN).unwrap_or_default())
            .finish()
    }
}

impl From<EncryptedEnv> for UpdateCvmEnvsBody {
    fn from(encrypted: EncryptedEnv) -> Self {
        encrypted.into_body()
    }
}

/// Encrypts `env` to the recipient's X25519 public key, with a fresh ephemeral key and IV from
/// the operating system for every call.
///
/// `recipient` is a [`RecipientPublicKey`], 32 bytes (`[u8; 32]`, `&[u8; 32]`, `&[u8]`), or hex
/// with or without `0x` (`&str`, `&String`). Errors: malformed hex or wrong length
/// ([`CryptError::Hex`]), a low-order key ([`CryptError::LowOrderPublicKey`]), and a failing
/// OS random number generator. The env itself was checked when it was built.
pub fn encrypt<K>(env: &EnvVars, recipient: K) -> Result<EncryptedEnv, CryptError>
where
    K: TryInto<RecipientPublicKey>,
    CryptError: From<K::Error>,
{
    let recipient = recipient.try_into()?;
    let mut ephemeral = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(ephemeral.as_mut_slice()).map_err(CryptError::Rng)?;
    let mut iv = [0u8; IV_LEN];
    getrandom::fill(&mut iv).map_err(CryptError::Rng)?;
    seal(env, &recipient, StaticSecret::from(*ephemeral), &iv)
}

/// The encryption proper, with the ephemeral secret and IV given (tests inject fixed ones).
fn seal(
    env: &EnvVars,
    recipient: &RecipientPublicKey,
    ephemeral: StaticSecret,
    iv: &[u8; IV_LEN],
) -> Result<EncryptedEnv, CryptError> {
    let ephemeral_public = PublicKey::from(&ephemeral);
    let shared = ephemeral.diffie_hellman(&PublicKey::from(recipient.0));
    drop(ephemeral);
    if !shared.was_contributory() {
        return Err(CryptError::LowOrderPublicKey);
    }
    // Both wipe themselves on drop (x25519-dalek and aes-gcm `zeroize` features).
    let cipher = Aes256Gcm::new(shared.as_bytes().into());
    drop(shared);

    // One buffer, sized exactly up front so it never reallocates (a reallocation would leave a
    // copy of the plaintext behind): header, JSON plaintext (encrypted in place), tag.
    let json_len = plaintext_len(env);
    let blob_len = HEADER_LEN + json_len + TAG_LEN;
    let mut buf = Zeroizing::new(Vec::with_capacity(blob_len));
    let start = buf.as_ptr();
    buf.extend_from_slice(ephemeral_public.as_bytes());
    buf.extend_from_slice(iv);
    write_plaintext(env, &mut buf);
    debug_assert_eq!(buf.len(), HEADER_LEN + json_len, "plaintext_len and write_plaintext disagree");
    let tag = cipher
        .encrypt_inout_detached(iv.into(), &[], (&mut buf[HEADER_LEN..]).into())
        .expect("AES-GCM accepts up to 64 GiB; an env's plaintext is at most a few MiB");
    buf.extend_from_slice(&tag);
    debug_assert!(buf.len() == blob_len && buf.as_ptr() == start, "the plaintext buffer was reallocated");

    // Every plaintext byte is now ciphertext: take the buffer out of `Zeroizing` so dropping it
    // does not wipe public bytes (up to 1 MiB) for nothing. Error paths above still wipe.
    let blob = std::mem::take(&mut *buf);
    Ok(EncryptedEnv { hex: const_hex::encode(&blob), keys: env.keys().map(str::to_owned).collect() })
}

/// Decrypts a blob with the recipient's secret key and returns the plaintext bytes, wiped on drop.
/// This is the CVM's side, for tests and local simulators; it accepts any plaintext (the
/// published dstack vector's is a bare JSON array).
#[cfg_attr(not(any(feature = "simulator", feature = "__internals")), allow(dead_code))]
pub fn decrypt_bytes(encrypted_env: &str, secret: &RecipientSecretKey) -> Result<Zeroizing<Vec<u8>>, CryptError> {
    let digits = strip_0x(encrypted_env.trim());
    if !digits.len().is_multiple_of(2) {
        return Err(CryptError::MalformedBlob { reason: "odd number of hex digits".into() });
    }
    let len = digits.len() / 2;
    if len < HEADER_LEN + TAG_LEN {
        return Err(CryptError::MalformedBlob {
            reason: format!("{len} bytes, shorter than the {} of key, IV and tag", HEADER_LEN + TAG_LEN),
        });
    }
    let mut buf = Zeroizing::new(vec![0u8; len]);
    const_hex::decode_to_slice(digits, &mut buf).map_err(|_| CryptError::MalformedBlob { reason: "not hex".into() })?;

    let (header, body) = buf.split_at_mut(HEADER_LEN);
    let (ephemeral_public, iv) = header.split_at(KEY_LEN);
    let ephemeral_public: [u8; KEY_LEN] = ephemeral_public.try_into().expect("split at KEY_LEN");
    let iv: &[u8; IV_LEN] = iv.try_into().expect("header is key and IV");
    let shared = secret.0.diffie_hellman(&PublicKey::from(ephemeral_public));
    if !shared.was_contributory() {
        return Err(CryptError::MalformedBlob { reason: "the ephemeral public key is a low-order point".into() });
    }
    let cipher = Aes256Gcm::new(shared.as_bytes().into());
    drop(shared);
    let (ciphertext, tag) = body.split_at_mut(body.len() - TAG_LEN);
    let tag: &[u8; TAG_LEN] = (&*tag).try_into().expect("split at TAG_LEN");
    cipher.decrypt_inout_detached(iv.into(), &[], ciphertext.into(), tag.into()).map_err(|_| CryptError::Decrypt)?;

    let plaintext_len = len - HEADER_LEN - TAG_LEN;
    buf.copy_within(HEADER_LEN..HEADER_LEN + plaintext_len, 0);
    buf.truncate(plaintext_len); // the tail stays allocated and is wiped on drop with the rest
    Ok(buf)
}

/// Decrypts a blob with the recipient's secret key and parses `{"env":[{"key","value"},…]}` into
/// [`EnvVars`], applying the same checks as every other constructor. This is the CVM's side, for
/// tests and local simulators.
///
/// Values are moved from the parser into wiped storage; a value containing JSON escapes also
/// passes through serde_json's scratch buffer, which is not wiped.
#[cfg_attr(not(any(feature = "simulator", feature = "__internals")), allow(dead_code))]
pub fn decrypt(encrypted_env: &str, secret: &RecipientSecretKey) -> Result<EnvVars, CryptError> {
    let plaintext = decrypt_bytes(encrypted_env, secret)?;
    let envelope: json::de::Envelope = serde_json::from_slice(&plaintext)
        .map_err(|e| CryptError::MalformedPlaintext { line: e.line(), column: e.column() })?;
    let mut env = EnvVars::new();
    for mut entry in envelope.env {
        env.push(entry.key, std::mem::take(&mut *entry.value.0))?;
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vector {
        recipient_secret_key: String,
        recipient_public_key: String,
        ephemeral_secret_key: Option<String>,
        iv: Option<String>,
        plaintext: String,
        encrypted_env: String,
    }

    fn vectors() -> Vec<Vector> {
        let all: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/crypto/vectors.json")).unwrap();
        let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        all["env_encryption"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| Vector {
                recipient_secret_key: s(v, "recipient_secret_key").unwrap(),
                recipient_public_key: s(v, "recipient_public_key").unwrap(),
                ephemeral_secret_key: s(v, "ephemeral_secret_key"),
                iv: s(v, "iv"),
                plaintext: s(v, "plaintext").unwrap(),
                encrypted_env: s(v, "encrypted_env").unwrap(),
            })
            .collect()
    }

    #[test]
    fn first_vector_byte_for_byte() {
        let v = &vectors()[0];
        let env = EnvVars::from_pairs([("FOO", "bar")]).unwrap();
        let mut plaintext = Vec::new();
        write_plaintext(&env, &mut plaintext);
        assert_eq!(plaintext, v.plaintext.as_bytes());
        assert_eq!(plaintext_len(&env), plaintext.len());

        let ephemeral = decode_fixed::<32>(v.ephemeral_secret_key.as_deref().unwrap(), "eph").unwrap();
        let iv = decode_fixed::<12>(v.iv.as_deref().unwrap(), "iv").unwrap();
        let recipient: RecipientPublicKey = v.recipient_public_key.parse().unwrap();
        let out = seal(&env, &recipient, StaticSecret::from(ephemeral), &iv).unwrap();
        assert_eq!(out.as_hex(), v.encrypted_env);
        assert_eq!(out.keys(), ["FOO"]);

        let secret = RecipientSecretKey::from_hex(&v.recipient_secret_key).unwrap();
        assert_eq!(secret.public_key(), recipient);
        assert_eq!(decrypt(out.as_hex(), &secret).unwrap(), env);
    }

    #[test]
    fn dstack_vector_decrypts() {
        let v = &vectors()[1];
        let secret = RecipientSecretKey::from_hex(&v.recipient_secret_key).unwrap();
        assert_eq!(secret.public_key().to_hex(), v.recipient_public_key);
        let plaintext = decrypt_bytes(&v.encrypted_env, &secret).unwrap();
        assert_eq!(plaintext.as_slice(), v.plaintext.as_bytes());
    }

    #[test]
    fn low_order_key_is_refused_before_anything_is_written() {
        let env = EnvVars::from_pairs([("A", "canary")]).unwrap();
        for key in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert!(matches!(encrypt(&env, key), Err(CryptError::LowOrderPublicKey)));
        }
    }
}
