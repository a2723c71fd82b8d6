//! On-chain registration of compose hashes (feature `onchain`, built on alloy).

mod confirm;
pub(crate) mod contract;
pub(crate) mod kms;
mod registrar;
mod transport;

use alloy::signers::local::PrivateKeySigner;

pub use confirm::{DeclineReason, PlannedRegistration};
pub use contract::{COMPOSE_HASH_ADDED_TOPIC, RegistrationCall};
pub use kms::{KmsCheckError, KmsContract};
pub use registrar::{
    DEFAULT_GAS_LIMIT_CAP, DEFAULT_MAX_FEE_PER_GAS_WEI, DEFAULT_MAX_RPC_REPLY_BYTES, DEFAULT_MIN_BALANCE_WEI,
    DEFAULT_RPC_CONNECT_TIMEOUT, DEFAULT_RPC_REQUEST_TIMEOUT, OnchainError, OnchainRegistrar,
};
pub use transport::HttpFailure;

/// An on-chain part that cannot be set up: a private key that is not one, or an RPC client
/// that cannot be built. Found before anything is asked of the chain; never shows a key or an
/// RPC URL.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The private key is not 32 bytes of hex.
    #[error("invalid private key: {0}")]
    PrivateKeyNotHex(#[source] crate::hex::HexError),
    /// 32 bytes, but not a secp256k1 private key (zero, or not below the curve order).
    #[error("invalid private key: not a valid secp256k1 private key (zero or above the curve order)")]
    PrivateKeyOutOfRange,
    /// The RPC's HTTP client could not be built.
    #[error("cannot set up the RPC client: {0}")]
    RpcClient(#[source] crate::ConfigError),
}

/// A signer from a private key given as 64 hex digits (`0x` optional). The error never shows
/// the key; the decoded bytes are wiped.
pub fn signer_from_hex(private_key: &str) -> Result<PrivateKeySigner, SetupError> {
    let bytes = zeroize::Zeroizing::new(
        crate::hex::decode_fixed::<32>(private_key, "private key").map_err(SetupError::PrivateKeyNotHex)?,
    );
    PrivateKeySigner::from_slice(bytes.as_slice()).map_err(|_| SetupError::PrivateKeyOutOfRange)
}

/// An RPC URL as it may be shown: scheme, host and port, with `/…` for any path or query (where
/// providers such as Alchemy put the API key).
pub(crate) fn redact_url(url: &url::Url) -> String {
    let origin = url.origin().ascii_serialization();
    let rest = url.path() != "/" || url.query().is_some();
    if rest { format!("{origin}/…") } else { origin }
}

/// `text` with every occurrence of `url` (as given, and without a trailing slash) redacted.
pub(crate) fn scrub_url(text: &str, url: &url::Url) -> String {
    let full = url.as_str();
    let redacted = redact_url(url);
    let mut out = text.replace(full, &redacted);
    if let Some(trimmed) = full.strip_suffix('/') {
        out = out.replace(trimmed, &redacted);
    }
    if let Some(password) = url.password() {
        out = out.replace(password, "…");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_urls_lose_their_path_when_shown() {
        let url: url::Url = "https://base-mainnet.g.alchemy.com/v2/SECRETKEY".parse().unwrap();
        assert_eq!(redact_url(&url), "https://base-mainnet.g.alchemy.com/…");
        let text = format!("error sending request for url ({url}): timed out");
        let scrubbed = scrub_url(&text, &url);
        assert!(!scrubbed.contains("SECRETKEY"), "{scrubbed}");
        assert_eq!(redact_url(&"http://127.0.0.1:8545".parse().unwrap()), "http://127.0.0.1:8545");
    }

    #[test]
    fn registration_call_is_add_compose_hash_of_the_hash() {
        let app: crate::AppId = "a172cedcae47474b615c54d510a5d84a8dea3032".parse().unwrap();
        let hash = crate::ComposeHash([0x11; 32]);
        let call = RegistrationCall::new(app, hash);
        assert_eq!(call.to, alloy::primitives::Address::from(app));
        let selector = &alloy::primitives::keccak256("addComposeHash(bytes32)")[..4];
        assert_eq!(&call.data[..4], selector);
        assert_eq!(&call.data[4..], hash.as_bytes());
    }
}
