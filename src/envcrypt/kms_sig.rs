//! Verifying the KMS's signature over an env-encryption public key (contract-owned KMS).

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use sha3::{Digest, Keccak256};

use super::{KmsSignatureError, RecipientPublicKey};
use crate::hex::{AppId, HexError, decode_fixed, strip_0x};

/// The domain prefix of the signed message; `":"` follows it.
pub const KMS_SIGNATURE_PREFIX: &[u8] = b"dstack-env-encrypt-pubkey";
/// How old a timestamped signature may be, in seconds.
pub const KMS_SIGNATURE_MAX_AGE_SECS: u64 = 300;
/// How far in the future a timestamped signature may be dated, in seconds (clock skew).
pub const KMS_SIGNATURE_MAX_SKEW_SECS: u64 = 60;

const SIGNATURE_LEN: usize = 65;
const COMPRESSED_LEN: usize = 33;

/// A secp256k1 public key in compressed SEC1 form (33 bytes): a KMS's `k256_pubkey`, or the
/// signer recovered from a signature.
///
/// Parsed from hex with or without `0x`, compressed (33 bytes) or uncompressed (65 bytes, `04…`),
/// checked to be on the curve; displayed compressed as `0x`-prefixed lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct K256PublicKey([u8; COMPRESSED_LEN]);

impl K256PublicKey {
    /// What this value is called in error messages.
    pub const WHAT: &'static str = "k256 public key";

    /// The key from SEC1 bytes, compressed or uncompressed.
    pub fn from_sec1_bytes(bytes: &[u8]) -> Result<Self, KmsSignatureError> {
        if bytes.len() != COMPRESSED_LEN && bytes.len() != 65 {
            return Err(KmsSignatureError::InvalidK256PublicKey {
                reason: "must be 33 bytes (compressed) or 65 bytes (uncompressed)",
            });
        }
        let key = VerifyingKey::from_sec1_bytes(bytes)
            .map_err(|_| KmsSignatureError::InvalidK256PublicKey { reason: "not a point on secp256k1" })?;
        Ok(Self::from_verifying_key(&key))
    }

    fn from_verifying_key(key: &VerifyingKey) -> Self {
        let point = key.to_sec1_point(true);
        let mut out = [0u8; COMPRESSED_LEN];
        out.copy_from_slice(point.as_bytes());
        Self(out)
    }

    /// The compressed SEC1 bytes.
    pub const fn as_bytes(&self) -> &[u8; COMPRESSED_LEN] {
        &self.0
    }

    /// Compressed, as `0x`-prefixed lowercase hex.
    pub fn to_hex(&self) -> String {
        const_hex::encode_prefixed(self.0)
    }
}

impl FromStr for K256PublicKey {
    type Err = KmsSignatureError;
    fn from_str(s: &str) -> Result<Self, KmsSignatureError> {
        let digits = strip_0x(s.trim());
        let bytes = const_hex::decode(digits).map_err(|_| HexError::NotHex { what: Self::WHAT })?;
        Self::from_sec1_bytes(&bytes)
    }
}

impl TryFrom<&str> for K256PublicKey {
    type Error = KmsSignatureError;
    fn try_from(s: &str) -> Result<Self, KmsSignatureError> {
        s.parse()
    }
}

impl fmt::Display for K256PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for K256PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "K256PublicKey({})", self.to_hex())
    }
}

/// An env-encryption public key with the KMS's signature over it, as
/// `GET /api/v1/kms/{kms_slug}/pubkey/{app_id}` returns it (`{public_key, signature}`, plus
/// `timestamp` in the newer form). Deserializes from that JSON.
///
/// The signed digest is `keccak256("dstack-env-encrypt-pubkey" ‖ ":" ‖ app_id (20 bytes) ‖
/// [timestamp (u64, big-endian)] ‖ public_key (32 bytes))`; the signature is `r ‖ s ‖ v` with `v`
/// in {0, 1} (27 and 28 are read as 0 and 1). A timestamped signature older than
/// [`KMS_SIGNATURE_MAX_AGE_SECS`] or dated more than [`KMS_SIGNATURE_MAX_SKEW_SECS`] ahead is refused.
///
/// ```
/// use phala_cloud::AppId;
/// use phala_cloud::{K256PublicKey, SignedEnvPubkey};
///
/// let signed: SignedEnvPubkey = serde_json::from_str(r#"{
///     "public_key": "e33a1832c6562067ff8f844a61e51ad051f1180b66ec2551fb0251735f3ee90a",
///     "signature": "8542c49081fbf4e03f62034f13fbf70630bdf256a53032e38465a27c36fd6bed7a5e7111652004aef37f7fd92fbfc1285212c4ae6a6154203a48f5e16cad2cef00"
/// }"#)?;
/// let app_id: AppId = "0x0000000000000000000000000000000000000000".parse()?;
/// let k256_pubkey: K256PublicKey = "0x0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f".parse()?;
/// let recipient = signed.verify(&app_id, &k256_pubkey)?; // now safe to encrypt to
/// # assert_eq!(recipient, signed.public_key);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SignedEnvPubkey {
    /// The X25519 key to encrypt to, once verified.
    pub public_key: RecipientPublicKey,
    /// `r ‖ s ‖ v`.
    pub signature: [u8; SIGNATURE_LEN],
    /// Unix seconds, in the newer form; `None` for the legacy message.
    pub timestamp: Option<u64>,
}

impl SignedEnvPubkey {
    /// From the hex strings of the response (with or without `0x`).
    pub fn from_hex(public_key: &str, signature: &str, timestamp: Option<u64>) -> Result<Self, KmsSignatureError> {
        Ok(Self {
            public_key: RecipientPublicKey::from_hex(public_key)?,
            signature: decode_fixed::<SIGNATURE_LEN>(signature, "KMS signature")?,
            timestamp,
        })
    }

    /// The keccak-256 digest the KMS signs for `app_id`.
    pub fn digest(&self, app_id: &AppId) -> [u8; 32] {
        let mut hasher = Keccak256::new();
        hasher.update(KMS_SIGNATURE_PREFIX);
        hasher.update(b":");
        hasher.update(app_id.as_bytes());
        if let Some(timestamp) = self.timestamp {
            hasher.update(timestamp.to_be_bytes());
        }
        hasher.update(self.public_key.as_bytes());
        hasher.finalize().into()
    }

    /// Checks freshness (timestamped form) against the system clock and recovers the signer.
    pub fn recover_signer(&self, app_id: &AppId) -> Result<K256PublicKey, KmsSignatureError> {
        self.recover_signer_at(app_id, SystemTime::now())
    }

    /// As [`recover_signer`](Self::recover_signer), with the current time given.
    pub fn recover_signer_at(&self, app_id: &AppId, now: SystemTime) -> Result<K256PublicKey, KmsSignatureError> {
        if let Some(timestamp) = self.timestamp {
            check_fresh(timestamp, now)?;
        }
        let v = match self.signature[64] {
            v @ (0 | 1) => v,
            v @ (27 | 28) => v - 27,
            _ => return Err(KmsSignatureError::Malformed { reason: "the recovery id (last byte) must be 0 or 1" }),
        };
        let signature = Signature::from_slice(&self.signature[..64])
            .map_err(|_| KmsSignatureError::Malformed { reason: "r or s is zero or not below the curve order" })?;
        let key = VerifyingKey::recover_from_prehash(&self.digest(app_id), &signature, RecoveryId::new(v == 1, false))
            .map_err(|_| KmsSignatureError::Malformed { reason: "no public key can be recovered from it" })?;
        Ok(K256PublicKey::from_verifying_key(&key))
    }

    /// Recovers the signer (checking freshness against the system clock) and compares it with
    /// the KMS's `k256_pubkey`; returns the public key, now safe to encrypt to.
    pub fn verify(&self, app_id: &AppId, expected: &K256PublicKey) -> Result<RecipientPublicKey, KmsSignatureError> {
        self.verify_at(app_id, expected, SystemTime::now())
    }

    /// As [`verify`](Self::verify), with the current time given.
    pub fn verify_at(
        &self,
        app_id: &AppId,
        expected: &K256PublicKey,
        now: SystemTime,
    ) -> Result<RecipientPublicKey, KmsSignatureError> {
        let recovered = self.recover_signer_at(app_id, now)?;
        if recovered != *expected {
            return Err(KmsSignatureError::SignerMismatch { expected: *expected, recovered });
        }
        Ok(self.public_key)
    }
}

fn check_fresh(timestamp: u64, now: SystemTime) -> Result<(), KmsSignatureError> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if timestamp > now {
        let ahead_secs = timestamp - now;
        if ahead_secs > KMS_SIGNATURE_MAX_SKEW_SECS {
            return Err(KmsSignatureError::FromFuture { ahead_secs, max_secs: KMS_SIGNATURE_MAX_SKEW_SECS });
        }
    } else {
        let age_secs = now - timestamp;
        if age_secs > KMS_SIGNATURE_MAX_AGE_SECS {
            return Err(KmsSignatureError::Expired { age_secs, max_secs: KMS_SIGNATURE_MAX_AGE_SECS });
        }
    }
    Ok(())
}

impl<'de> serde::Deserialize<'de> for SignedEnvPubkey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Raw<'a> {
            #[serde(borrow)]
            public_key: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            signature: std::borrow::Cow<'a, str>,
            #[serde(default)]
            timestamp: Option<u64>,
        }
        let raw = Raw::deserialize(d)?;
        Self::from_hex(&raw.public_key, &raw.signature, raw.timestamp).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const PUBLIC_KEY: &str = "e33a1832c6562067ff8f844a61e51ad051f1180b66ec2551fb0251735f3ee90a";
    const SIGNATURE: &str = "8542c49081fbf4e03f62034f13fbf70630bdf256a53032e38465a27c36fd6bed7a5e7111652004aef37f7fd92fbfc1285212c4ae6a6154203a48f5e16cad2cef00";
    const SIGNER: &str = "0x0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f";

    #[test]
    fn legacy_vector_recovers() {
        let signed = SignedEnvPubkey::from_hex(PUBLIC_KEY, SIGNATURE, None).unwrap();
        let app_id = AppId([0; 20]);
        assert_eq!(signed.recover_signer(&app_id).unwrap().to_string(), SIGNER);
    }

    #[test]
    fn freshness_bounds() {
        let t = 1_700_000_000;
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert!(check_fresh(t, at(t + 300)).is_ok());
        assert!(matches!(check_fresh(t, at(t + 301)), Err(KmsSignatureError::Expired { age_secs: 301, .. })));
        assert!(check_fresh(t, at(t - 60)).is_ok());
        assert!(matches!(check_fresh(t, at(t - 61)), Err(KmsSignatureError::FromFuture { ahead_secs: 61, .. })));
    }

    #[test]
    fn uncompressed_and_compressed_parse_alike() {
        let compressed: K256PublicKey = SIGNER.parse().unwrap();
        let uncompressed = VerifyingKey::from_sec1_bytes(compressed.as_bytes()).unwrap().to_sec1_point(false);
        let again: K256PublicKey = const_hex::encode(uncompressed.as_bytes()).parse().unwrap();
        assert_eq!(again, compressed);
        assert!(matches!("0x02".parse::<K256PublicKey>(), Err(KmsSignatureError::InvalidK256PublicKey { .. })));
        assert!(matches!("zz".parse::<K256PublicKey>(), Err(KmsSignatureError::Hex(_))));
    }
}
