//! Secrets given as arguments or variables: parsed without ever echoing them.

use alloy::signers::local::PrivateKeySigner;

use crate::Failure;

/// A secp256k1 private key as 64 hex digits, with or without `0x`. The error names the flag,
/// never the value.
pub fn private_key(value: &str, flag: &str) -> Result<PrivateKeySigner, Failure> {
    let bytes = phala_cloud::hex::decode_fixed::<32>(value, "private key")
        .map_err(|e| Failure::usage(format!("{flag}: {e}")))?;
    let bytes = zeroize::Zeroizing::new(bytes);
    PrivateKeySigner::from_slice(bytes.as_slice()).map_err(|_| {
        Failure::usage(format!("{flag}: not a valid secp256k1 private key (zero or above the curve order)"))
    })
}
