//! On-chain registration of compose hashes (feature `onchain`, built on alloy).

pub mod contract;
mod registrar;

use alloy::primitives::Address;
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;

pub use contract::{AppAuth, COMPOSE_HASH_ADDED_TOPIC};
pub use registrar::{DEFAULT_MIN_BALANCE_WEI, OnchainError, OnchainRegistrar};

/// Deploys this repository's app-auth contract (`contracts/AppAuth.sol`) from `signer`, which
/// becomes its owner, and returns its address. For local chains and tests: a real app's
/// contract is deployed by dstack's tooling.
pub async fn deploy_app_auth(rpc_url: &url::Url, signer: PrivateKeySigner) -> Result<Address, alloy::contract::Error> {
    let http = crate::http_client_builder()
        .and_then(|b| b.build().map_err(|e| crate::ConfigError::Http(e.to_string())))
        .map_err(|e| alloy::contract::Error::TransportError(alloy::transports::TransportErrorKind::custom(e)))?;
    let provider = ProviderBuilder::new().wallet(signer).connect_reqwest(http, rpc_url.clone());
    let contract = AppAuth::deploy(&provider).await?;
    Ok(*contract.address())
}
