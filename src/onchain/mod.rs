//! On-chain registration of compose hashes (feature `onchain`, built on alloy).

pub mod contract;
mod kms;
mod registrar;
mod transport;

use alloy::primitives::Address;
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;

pub use contract::{AppAuth, COMPOSE_HASH_ADDED_TOPIC};
pub use kms::{KmsAuth, KmsCheckError, KmsContract, deploy_kms_auth};
pub use registrar::{
    DEFAULT_GAS_LIMIT_CAP, DEFAULT_MAX_FEE_PER_GAS_WEI, DEFAULT_MAX_RPC_REPLY_BYTES, DEFAULT_MIN_BALANCE_WEI,
    DEFAULT_RPC_CONNECT_TIMEOUT, DEFAULT_RPC_REQUEST_TIMEOUT, OnchainError, OnchainRegistrar,
};
pub use transport::HttpFailure;

/// A signer from a private key given as 64 hex digits (`0x` optional). The error never shows
/// the key; the decoded bytes are wiped.
pub fn signer_from_hex(private_key: &str) -> Result<PrivateKeySigner, crate::ConfigError> {
    let bytes = zeroize::Zeroizing::new(
        crate::hex::decode_fixed::<32>(private_key, "private key")
            .map_err(|e| crate::ConfigError::InvalidPrivateKey(e.to_string()))?,
    );
    PrivateKeySigner::from_slice(bytes.as_slice()).map_err(|_| {
        crate::ConfigError::InvalidPrivateKey(
            "not a valid secp256k1 private key (zero or above the curve order)".into(),
        )
    })
}

/// Deploys this repository's app-auth contract (`contracts/AppAuth.sol`) from `signer`, which
/// becomes its owner, and returns its address. For local chains and tests: a real app's
/// contract is deployed by dstack's tooling.
pub async fn deploy_app_auth(rpc_url: &url::Url, signer: PrivateKeySigner) -> Result<Address, alloy::contract::Error> {
    let transport = transport::RpcTransport::default_for(rpc_url)
        .map_err(|e| alloy::contract::Error::TransportError(alloy::transports::TransportErrorKind::custom(e)))?;
    let provider = ProviderBuilder::new().wallet(signer).connect_client(transport.rpc_client());
    let contract = AppAuth::deploy(&provider).await?;
    Ok(*contract.address())
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
}
