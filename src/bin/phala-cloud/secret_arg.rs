//! Secrets given as arguments or variables: parsed without ever echoing them.

use alloy::signers::local::PrivateKeySigner;

use crate::Failure;

/// A secp256k1 private key as 64 hex digits, with or without `0x`. The error names the flag,
/// never the value.
pub fn private_key(value: &str, flag: &str) -> Result<PrivateKeySigner, Failure> {
    phala_cloud::onchain::signer_from_hex(value).map_err(|e| Failure::usage(format!("{flag}: {e}")))
}
