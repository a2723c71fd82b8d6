//! The KMS contract (dstack's `DstackKms`): the chain's word on a KMS's key and on its apps.
//!
//! The API's `kms_info` names the contract and repeats its key (`k256_pubkey`), but the API is
//! the party these checks guard against: before signing for an app, [`KmsContract::check_app`]
//! asks the contract whether the app is registered with it (`registeredApps`), and before
//! encrypting to an env-encryption key, [`KmsContract::verify_env_pubkey`] checks the key's
//! signature against the key the contract records (`kmsInfo()`).
//!
//! The binding is generated from `contracts/KmsAuth.json`, the compiled form of
//! `contracts/KmsAuth.sol`: a minimal contract with `DstackKms`'s two views, which the simulator
//! and the tests deploy on a local chain.

use alloy::primitives::{Address, Bytes};
use alloy::providers::{DynProvider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;

use crate::envcrypt::{K256PublicKey, KmsSignatureError, RecipientPublicKey, SignedEnvPubkey};
use crate::hex::AppId;

alloy::sol!(
    /// The KMS contract: `kmsInfo()` (its keys and attestation), `registeredApps(address)`,
    /// and, in the test stand-in only, owner-only `setKmsInfo` and `registerApp`.
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    KmsAuth,
    "contracts/KmsAuth.json"
);

/// Why the KMS contract does not vouch for an app or a key. Never holds the RPC URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsCheckError {
    /// `kms_info.kms_contract_address` is not an address.
    #[error("kms_info.kms_contract_address {value:?} is not a 20-byte hex address")]
    BadAddress {
        /// What phase 1 gave.
        value: String,
    },
    /// `registeredApps(app)` is false: the KMS does not serve this app, so its compose hashes
    /// are not this KMS's to allow.
    #[error(
        "app {app} is not registered with the KMS contract {kms} (registeredApps is false); refusing to sign for it"
    )]
    AppNotRegistered {
        /// The KMS contract.
        kms: Address,
        /// The app contract.
        app: Address,
    },
    /// The contract answered, but not as a KMS contract does (no code at the address, or
    /// another contract): it is not the KMS `kms_info` claims.
    #[error("{kms} did not answer {call} as a KMS contract does; is it the KMS contract on this chain?")]
    NotKmsContract {
        /// The address asked.
        kms: Address,
        /// The view called.
        call: &'static str,
        /// The decoding or revert error.
        #[source]
        source: Box<alloy::contract::Error>,
    },
    /// `kmsInfo()`'s key is not a secp256k1 public key.
    #[error("the KMS contract {kms} records no usable k256 key in kmsInfo()")]
    InvalidKey {
        /// The KMS contract.
        kms: Address,
        /// Why the key was refused.
        #[source]
        source: KmsSignatureError,
    },
    /// The env-encryption key's signature does not check out against the contract's key
    /// (another signer, a stale or future timestamp, a malformed signature).
    #[error("the env-encryption public key is not vouched for by the KMS contract {kms}: {source}")]
    Signature {
        /// The KMS contract.
        kms: Address,
        /// What the signature check found.
        #[source]
        source: KmsSignatureError,
    },
    /// The RPC serves another chain than the one `kms_info` names (or `kms_info` names none
    /// that can be read): a KMS contract is the KMS's only on its own chain.
    #[error(
        "the RPC serves chain {rpc}, but the CVM's kms_info names {}: the KMS contract {kms} is checked only on its own chain; give an RPC URL of that chain",
        reported.map_or_else(|| "no readable chain id".to_owned(), |c| format!("chain {c}"))
    )]
    WrongChain {
        /// The KMS contract.
        kms: Address,
        /// The chain `kms_info.chain_id` names, if readable.
        reported: Option<u64>,
        /// The chain the RPC serves.
        rpc: u64,
    },
    /// The chain could not be asked.
    #[error("{call} on the KMS contract {kms} failed")]
    Rpc {
        /// The KMS contract.
        kms: Address,
        /// The view called.
        call: &'static str,
        /// The transport error (the crate's transport keeps the RPC URL out of it).
        #[source]
        source: Box<alloy::contract::Error>,
    },
}

impl KmsCheckError {
    /// The chain could not be reached or answered with an error.
    pub fn is_rpc(&self) -> bool {
        matches!(self, Self::Rpc { .. })
    }
}

/// A KMS contract on a chain, read through the crate's bounded transport.
#[derive(Clone)]
pub struct KmsContract {
    address: Address,
    provider: DynProvider,
}

impl std::fmt::Debug for KmsContract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsContract").field("address", &self.address).finish_non_exhaustive()
    }
}

impl KmsContract {
    /// The contract at `address`, asked over `rpc_url` (which no log line or error shows).
    pub fn new(address: Address, rpc_url: &url::Url) -> Result<Self, super::SetupError> {
        Ok(Self::over(address, super::contract::read_provider(rpc_url)?))
    }

    pub(crate) fn over(address: Address, provider: DynProvider) -> Self {
        Self { address, provider }
    }

    /// The contract's address.
    pub fn address(&self) -> Address {
        self.address
    }

    fn call_error(&self, call: &'static str) -> impl FnOnce(alloy::contract::Error) -> KmsCheckError + '_ {
        // A revert (the node answers it as a JSON-RPC error) or an undecodable answer: the
        // address holds something else. Any other transport error: the chain was not asked.
        move |e| match e {
            alloy::contract::Error::TransportError(_) if e.as_revert_data().is_none() => {
                KmsCheckError::Rpc { kms: self.address, call, source: Box::new(e) }
            }
            e => KmsCheckError::NotKmsContract { kms: self.address, call, source: Box::new(e) },
        }
    }

    /// `registeredApps(app)`.
    pub async fn is_registered(&self, app: AppId) -> Result<bool, KmsCheckError> {
        KmsAuth::new(self.address, &self.provider)
            .registeredApps(Address::from(app))
            .call()
            .await
            .map_err(self.call_error("registeredApps(address)"))
    }

    /// Refuses an RPC of another chain than `expected` (`kms_info.chain_id`; `None` when the
    /// API gave none that can be read, which is refused too).
    pub async fn check_chain(&self, expected: Option<u64>) -> Result<(), KmsCheckError> {
        use alloy::providers::Provider;
        let rpc = self.provider.get_chain_id().await.map_err(|e| KmsCheckError::Rpc {
            kms: self.address,
            call: "eth_chainId",
            source: Box::new(alloy::contract::Error::TransportError(e)),
        })?;
        match expected {
            Some(chain) if chain == rpc => Ok(()),
            reported => Err(KmsCheckError::WrongChain { kms: self.address, reported, rpc }),
        }
    }

    /// Refuses an app the contract does not list in `registeredApps`.
    pub async fn check_app(&self, app: AppId) -> Result<(), KmsCheckError> {
        if self.is_registered(app).await? {
            Ok(())
        } else {
            Err(KmsCheckError::AppNotRegistered { kms: self.address, app: app.into() })
        }
    }

    /// The KMS's secp256k1 key as the contract records it (`kmsInfo().k256Pubkey`).
    pub async fn k256_pubkey(&self) -> Result<K256PublicKey, KmsCheckError> {
        let info =
            KmsAuth::new(self.address, &self.provider).kmsInfo().call().await.map_err(self.call_error("kmsInfo()"))?;
        K256PublicKey::from_sec1_bytes(&info.k256Pubkey)
            .map_err(|source| KmsCheckError::InvalidKey { kms: self.address, source })
    }

    /// Checks that `app_id` is registered with this KMS and that `signed` is signed by the key
    /// the contract records (with the timestamped form's freshness window); returns the key,
    /// now safe to encrypt to.
    pub async fn verify_env_pubkey(
        &self,
        signed: &SignedEnvPubkey,
        app_id: &AppId,
    ) -> Result<RecipientPublicKey, KmsCheckError> {
        self.check_app(*app_id).await?;
        let key = self.k256_pubkey().await?;
        signed.verify(app_id, &key).map_err(|source| KmsCheckError::Signature { kms: self.address, source })
    }
}

/// `kms_info.kms_contract_address`, if given, as an address.
pub(crate) fn parse_address(kms_info: &crate::KmsInfo) -> Result<Option<Address>, KmsCheckError> {
    let Some(raw) = kms_info.kms_contract_address.as_deref() else { return Ok(None) };
    raw.parse().map(Some).map_err(|_| KmsCheckError::BadAddress { value: raw.to_owned() })
}

/// Deploys this repository's KMS contract (`contracts/KmsAuth.sol`) from `signer`, records
/// `k256_pubkey` as its key and registers `apps` with it; returns its address. For local chains
/// and tests: a real KMS contract is deployed by dstack's tooling.
pub async fn deploy_kms_auth(
    rpc_url: &url::Url,
    signer: PrivateKeySigner,
    k256_pubkey: &K256PublicKey,
    apps: &[AppId],
) -> Result<Address, alloy::contract::Error> {
    let transport = super::transport::RpcTransport::default_for(rpc_url)
        .map_err(|e| alloy::contract::Error::TransportError(alloy::transports::TransportErrorKind::custom(e)))?;
    let provider = ProviderBuilder::new().wallet(signer).connect_client(transport.rpc_client());
    let contract = KmsAuth::deploy(&provider).await?;
    let info = KmsAuth::KmsInfo {
        k256Pubkey: Bytes::copy_from_slice(k256_pubkey.as_bytes()),
        caPubkey: Bytes::new(),
        quote: Bytes::new(),
        eventlog: Bytes::new(),
    };
    contract.setKmsInfo(info).send().await?.get_receipt().await?;
    for app in apps {
        contract.registerApp(Address::from(*app)).send().await?.get_receipt().await?;
    }
    Ok(*contract.address())
}

#[cfg(test)]
mod tests {
    use alloy::sol_types::SolCall;

    use super::KmsAuth;

    #[test]
    fn selectors_are_dstack_kms_ones() {
        // API-FACTS: DstackKms's kmsInfo() is 0x09177063, registeredApps(address) 0xa6c4cce9.
        assert_eq!(KmsAuth::kmsInfoCall::SELECTOR, [0x09, 0x17, 0x70, 0x63]);
        assert_eq!(KmsAuth::registeredAppsCall::SELECTOR, [0xa6, 0xc4, 0xcc, 0xe9]);
    }
}
