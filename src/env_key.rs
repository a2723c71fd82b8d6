//! The CVM's env-encryption key, looked up and verified: [`Client::env_encryption_key`].
//!
//! - A centralized KMS (Phala's): the key is the CVM's `kms_info.encrypted_env_pubkey` (older
//!   API versions: the top-level `encrypted_env_pubkey`). There is no signature to check: the
//!   API is trusted with this key as Phala's KMS is trusted with the env.
//! - A contract-owned KMS: the key comes from `GET /api/v1/kms/{kms}/pubkey/{app_id}` with the
//!   KMS's signature over it, for this app, which is checked before the key is used: against
//!   the key the KMS contract records on-chain (`kmsInfo()`, with the app registered in
//!   `registeredApps`) when an RPC is given, else against `kms_info.k256_pubkey` as the API
//!   reports it. The timestamped form must be fresh ([`KMS_SIGNATURE_MAX_AGE_SECS`]); the
//!   legacy form (no timestamp, no freshness window) is accepted and flagged
//!   ([`VerifiedRecipient::is_legacy_signature`], and a `tracing` warning).
//!
//! `{kms}` is `kms_info.slug`, else `kms_info.id` (the spec's "KMS ID (hashed) or slug"), never
//! `kms_type` (the official CLI passes that and gets "KMS not found"). `{app_id}` is the CVM's app
//! id as 40 lowercase hex digits without `0x`: the spec takes it "with or without 0x prefix", the
//! official clients send the CVM's `app_id` as the API writes it, which is that form.
//!
//! [`KMS_SIGNATURE_MAX_AGE_SECS`]: crate::KMS_SIGNATURE_MAX_AGE_SECS

use std::fmt;

use crate::client::Client;
use crate::cvm_record::CvmRecord;
use crate::envcrypt::{K256PublicKey, KmsSignatureError, RecipientPublicKey, SignedEnvPubkey};
use crate::error::{HttpError, SdkError};
use crate::hex::{AppId, HexError};
use crate::two_phase::parse_app_id;

/// A CVM's env-encryption public key that has been vouched for, and how.
///
/// Made by [`Client::env_encryption_key`] (and, with an RPC, by
/// `Client::env_encryption_key_onchain`, feature `onchain`), which verify it, or by
/// [`VerifiedRecipient::caller_provided`], which says that the caller vouches for it. There is no
/// other way to build one: a `VerifiedRecipient` always says where its key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRecipient {
    public_key: RecipientPublicKey,
    app_id: Option<AppId>,
    verification: KeyVerification,
}

/// How a [`VerifiedRecipient`]'s key was vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyVerification {
    /// The caller gave the key ([`VerifiedRecipient::caller_provided`], `--pubkey`): nothing
    /// was checked here.
    CallerProvided,
    /// A centralized KMS: the key is the API's `encrypted_env_pubkey`. Such a KMS signs nothing
    /// a client could check: the key is the API's word, as the KMS is Phala's.
    CentralizedKms,
    /// A contract-owned KMS: its signature over the key, for this app, recovers to `kms_key`.
    KmsSignature {
        /// The KMS key the signature was checked against.
        kms_key: K256PublicKey,
        /// Where that key came from.
        anchor: KmsKeyAnchor,
        /// The form of the signed message.
        form: SignatureForm,
    },
}

/// Where the KMS key a signature is checked against came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KmsKeyAnchor {
    /// `kms_info.k256_pubkey` as the API reports it: the API vouches for the KMS key, so a
    /// dishonest API could name its own. Check on-chain to rule that out.
    ApiReported,
    /// The key the KMS contract records (`kmsInfo()`), read on-chain, with the app registered
    /// with that contract (`registeredApps`), on the chain `kms_info` names.
    #[cfg(feature = "onchain")]
    Onchain {
        /// The KMS contract.
        kms_contract: alloy::primitives::Address,
        /// The caller named this contract (`Client::env_encryption_key_pinned`,
        /// `EnvUpdate::kms_contract`). When `false` its address is `kms_info`'s, the API's word:
        /// an API could name a contract of its own, so check the address is your KMS's.
        pinned: bool,
    },
}

/// The form of the message a KMS signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureForm {
    /// With a timestamp, checked to be within the freshness window (at most
    /// [`KMS_SIGNATURE_MAX_AGE_SECS`](crate::KMS_SIGNATURE_MAX_AGE_SECS) old).
    Timestamped {
        /// When the KMS signed, Unix seconds.
        signed_at: u64,
    },
    /// The legacy form, without a timestamp: a signature made any time ago still verifies, so a
    /// key the KMS once signed for this app (since rotated, say) cannot be told from a current
    /// one. Accepted, and flagged.
    Legacy,
}

impl VerifiedRecipient {
    /// A key the caller vouches for (given on the command line, read from a trusted source):
    /// nothing is checked, and [`verification`](Self::verification) says so.
    pub fn caller_provided(public_key: RecipientPublicKey) -> Self {
        Self { public_key, app_id: None, verification: KeyVerification::CallerProvided }
    }

    /// The X25519 key to encrypt to.
    pub fn public_key(&self) -> RecipientPublicKey {
        self.public_key
    }

    /// The CVM's app id, when the API reported one (the app the KMS signed the key for).
    pub fn app_id(&self) -> Option<AppId> {
        self.app_id
    }

    /// How the key was vouched for.
    pub fn verification(&self) -> &KeyVerification {
        &self.verification
    }

    /// The KMS signed the key in the legacy form, without a timestamp (no freshness window):
    /// show a warning.
    pub fn is_legacy_signature(&self) -> bool {
        matches!(self.verification, KeyVerification::KmsSignature { form: SignatureForm::Legacy, .. })
    }
}

impl fmt::Display for KeyVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CallerProvided => f.write_str("given by the caller, not checked"),
            Self::CentralizedKms => f.write_str("from the API (centralized KMS: no signature to check)"),
            Self::KmsSignature { kms_key, anchor, form } => {
                write!(f, "signed by the KMS key {kms_key}")?;
                match anchor {
                    KmsKeyAnchor::ApiReported => f.write_str(" that the API reports")?,
                    #[cfg(feature = "onchain")]
                    KmsKeyAnchor::Onchain { kms_contract, pinned } => {
                        write!(f, " that the KMS contract {kms_contract} records on-chain")?;
                        if *pinned {
                            f.write_str(" (the contract the caller named)")?;
                        }
                    }
                }
                match form {
                    SignatureForm::Timestamped { signed_at } => write!(f, " (timestamped {signed_at})"),
                    SignatureForm::Legacy => f.write_str(" (legacy form: no timestamp, no freshness window)"),
                }
            }
        }
    }
}

/// Why no verified env-encryption key could be had for a CVM; nothing was encrypted with it.
///
/// A failed request keeps its [`SdkError`] (status, request id, raw body). No variant holds an
/// RPC URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptionKeyError {
    /// The CVM could not be read.
    #[error("cannot read CVM {cvm_id} (GET /api/v1/cvms/{cvm_id}) to find its env-encryption key")]
    CvmLookup {
        /// The CVM as given.
        cvm_id: String,
        /// Why.
        #[source]
        source: Box<SdkError<HttpError>>,
    },
    /// A centralized-KMS CVM whose description has no `encrypted_env_pubkey`.
    #[error(
        "CVM {cvm_id} reports no env-encryption key (kms_info.encrypted_env_pubkey or encrypted_env_pubkey): it may not take encrypted env vars; give the key with --pubkey if you have it"
    )]
    NoPublicKey {
        /// The CVM.
        cvm_id: String,
    },
    /// The key the API reports, or the one the KMS returned, is not 32 bytes of hex.
    #[error("the env-encryption key reported for CVM {cvm_id} is not an X25519 public key")]
    InvalidPublicKey {
        /// The CVM.
        cvm_id: String,
        /// What is wrong with it.
        #[source]
        source: HexError,
    },
    /// A contract-owned-KMS CVM whose description has no app id.
    #[error("CVM {cvm_id} reports no app id, which its KMS signs the env-encryption key for")]
    NoAppId {
        /// The CVM.
        cvm_id: String,
    },
    /// The CVM's app id is not a 20-byte address.
    #[error("CVM {cvm_id} reports app id {reported:?}, which is not an app contract address (40 hex digits)")]
    InvalidAppId {
        /// The CVM.
        cvm_id: String,
        /// What it reported.
        reported: String,
    },
    /// A contract-owned-KMS CVM whose `kms_info` names no KMS (neither `slug` nor `id`).
    #[error(
        "CVM {cvm_id} has a contract-owned KMS{} but its kms_info has neither slug nor id, so its env-encryption key cannot be asked for",
        kms_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default()
    )]
    NoKms {
        /// The CVM.
        cvm_id: String,
        /// Its `kms_type`, if reported (not usable in the path: it names a kind of KMS).
        kms_type: Option<String>,
    },
    /// `GET /api/v1/kms/{kms}/pubkey/{app_id}` failed.
    #[error("cannot get the env-encryption key of app {app_id} from KMS {kms} (GET /api/v1/kms/{kms}/pubkey/…)")]
    KmsLookup {
        /// The KMS slug or id asked.
        kms: String,
        /// The app.
        app_id: AppId,
        /// Why.
        #[source]
        source: Box<SdkError<HttpError>>,
    },
    /// The KMS answered 200 with something else than `{public_key, signature[, timestamp]}`.
    #[error("KMS {kms} answered for app {app_id} with something else than a signed public key")]
    InvalidKmsReply {
        /// The KMS slug or id asked.
        kms: String,
        /// The app.
        app_id: AppId,
        /// The parser's reason.
        #[source]
        source: serde_json::Error,
    },
    /// A contract-owned KMS, and no KMS key to check its signature against: `kms_info` has no
    /// `k256_pubkey`, and no chain was asked.
    #[error(
        "CVM {cvm_id}'s kms_info reports no k256_pubkey to check the KMS signature against; refusing to encrypt to an unverified key: check it against the KMS contract on-chain (give an RPC URL)"
    )]
    NoKmsKey {
        /// The CVM.
        cvm_id: String,
    },
    /// `kms_info.k256_pubkey` is not a secp256k1 public key.
    #[error("CVM {cvm_id}'s kms_info.k256_pubkey is not a secp256k1 public key")]
    InvalidKmsKey {
        /// The CVM.
        cvm_id: String,
        /// What is wrong with it.
        #[source]
        source: KmsSignatureError,
    },
    /// The KMS signature does not check out against the KMS key the API reports: another
    /// signer (a substituted key, a tampered signature, a key signed for another app), a stale
    /// or future timestamp, or a malformed signature.
    #[error("the env-encryption key of app {app_id} is not vouched for by the KMS key {kms_key}: {source}")]
    Signature {
        /// The app.
        app_id: AppId,
        /// The KMS key the API reports.
        kms_key: K256PublicKey,
        /// What the check found.
        #[source]
        source: KmsSignatureError,
    },
    /// Asked to check on-chain, but `kms_info` names no KMS contract.
    #[cfg(feature = "onchain")]
    #[error(
        "CVM {cvm_id}'s kms_info names no KMS contract (kms_contract_address or dstack_kms_address) to check the KMS signature against on-chain"
    )]
    NoKmsContract {
        /// The CVM.
        cvm_id: String,
    },
    /// The CVM's `kms_info` names another KMS contract than the one the caller named.
    #[cfg(feature = "onchain")]
    #[error(
        "CVM {cvm_id}'s kms_info names the KMS contract {reported}, not the one given ({pinned}): refusing to encrypt to a key that contract vouches for"
    )]
    KmsContractNotPinned {
        /// The CVM.
        cvm_id: String,
        /// The contract `kms_info` names.
        reported: alloy::primitives::Address,
        /// The contract the caller named.
        pinned: alloy::primitives::Address,
    },
    /// The on-chain check refused (or could not make) the verification: the app is not
    /// registered with the KMS contract, the signature does not recover to the key the contract
    /// records, the address is no KMS contract, or the chain could not be asked.
    #[cfg(feature = "onchain")]
    #[error(transparent)]
    Onchain(crate::onchain::KmsCheckError),
    /// The RPC client could not be set up.
    #[cfg(feature = "onchain")]
    #[error(transparent)]
    RpcSetup(crate::onchain::SetupError),
}

impl EncryptionKeyError {
    /// The key was refused, or cannot be verified from what the API and the chain say: its
    /// signature does not check out, the app is not registered with the KMS, the KMS key or the
    /// key itself is missing or malformed. Not a failed request, nor an unreachable chain.
    pub fn is_verification_failure(&self) -> bool {
        match self {
            Self::CvmLookup { .. } | Self::KmsLookup { .. } => false,
            #[cfg(feature = "onchain")]
            Self::Onchain(e) => !e.is_rpc(),
            #[cfg(feature = "onchain")]
            Self::RpcSetup(_) => false,
            _ => true,
        }
    }

    /// The failed request (reading the CVM or the KMS's key), with its status, request id and
    /// raw body.
    pub fn request_error(&self) -> Option<&SdkError<HttpError>> {
        match self {
            Self::CvmLookup { source, .. } | Self::KmsLookup { source, .. } => Some(source),
            _ => None,
        }
    }

    /// What the signature check found, when it refused the signature (against either key).
    pub fn signature_error(&self) -> Option<&KmsSignatureError> {
        match self {
            Self::Signature { source, .. } => Some(source),
            #[cfg(feature = "onchain")]
            Self::Onchain(crate::onchain::KmsCheckError::Signature { source, .. }) => Some(source),
            _ => None,
        }
    }

    /// The chain could not be asked (only when checking on-chain).
    pub fn is_rpc(&self) -> bool {
        match self {
            #[cfg(feature = "onchain")]
            Self::Onchain(e) => e.is_rpc(),
            _ => false,
        }
    }
}

/// Which KMS key a contract-owned KMS's signature is checked against.
#[derive(Clone)]
pub(crate) enum Anchor {
    /// `kms_info.k256_pubkey`.
    Api,
    /// The KMS contract's `kmsInfo()`, over this RPC: the contract the caller named, else
    /// `kms_info`'s.
    #[cfg(feature = "onchain")]
    Chain { rpc_url: url::Url, pinned: Option<alloy::primitives::Address> },
}

impl fmt::Debug for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: providers put API keys in it.
        f.write_str(match self {
            Self::Api => "Api",
            #[cfg(feature = "onchain")]
            Self::Chain { .. } => "Chain(…)",
        })
    }
}

impl Client {
    /// The env-encryption key of CVM `cvm` (its id, UUID, app id with or without `app_`,
    /// instance id or name: whatever `GET /api/v1/cvms/{cvm_id}` accepts), verified: see
    /// [`VerifiedRecipient`]. For a contract-owned KMS the signature is checked against the KMS
    /// key the API reports; `env_encryption_key_onchain` (feature `onchain`)
    /// checks it against the KMS contract instead.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use phala_cloud::{Client, EnvVars, encrypt};
    ///
    /// let client = Client::from_env()?;
    /// let recipient = client.env_encryption_key("my-cvm").await?;
    /// if recipient.is_legacy_signature() {
    ///     eprintln!("warning: the KMS signed this key without a timestamp");
    /// }
    /// println!("encrypting to {}: {}", recipient.public_key(), recipient.verification());
    /// let encrypted = encrypt(&EnvVars::from_pairs([("TOKEN", "s3cr3t")])?, recipient.public_key())?;
    /// # let _ = encrypted;
    /// # Ok(()) }
    /// ```
    pub async fn env_encryption_key(&self, cvm: &str) -> Result<VerifiedRecipient, EncryptionKeyError> {
        lookup(self, cvm, &Anchor::Api).await.map(|(recipient, _)| recipient)
    }

    /// As [`env_encryption_key`](Self::env_encryption_key), with a contract-owned KMS's
    /// signature checked against the key its KMS contract (`kms_info`'s) records on-chain,
    /// read over `rpc_url` (which no log line or error shows): the app must be registered with
    /// the contract, and the signature must recover to `kmsInfo()`'s key, whatever
    /// `kms_info.k256_pubkey` says. A centralized KMS's key is read from the API as before.
    #[cfg(feature = "onchain")]
    pub async fn env_encryption_key_onchain(
        &self,
        cvm: &str,
        rpc_url: &url::Url,
    ) -> Result<VerifiedRecipient, EncryptionKeyError> {
        let anchor = Anchor::Chain { rpc_url: rpc_url.clone(), pinned: None };
        lookup(self, cvm, &anchor).await.map(|(recipient, _)| recipient)
    }

    /// As [`env_encryption_key_onchain`](Self::env_encryption_key_onchain), against the KMS
    /// contract `kms_contract` that the caller names, not the one `kms_info` names: a CVM whose
    /// `kms_info` names another contract is refused ([`EncryptionKeyError::KmsContractNotPinned`]).
    /// The on-chain check then guards against the API itself, which otherwise picks the
    /// contract the key is checked against.
    #[cfg(feature = "onchain")]
    pub async fn env_encryption_key_pinned(
        &self,
        cvm: &str,
        rpc_url: &url::Url,
        kms_contract: alloy::primitives::Address,
    ) -> Result<VerifiedRecipient, EncryptionKeyError> {
        let anchor = Anchor::Chain { rpc_url: rpc_url.clone(), pinned: Some(kms_contract) };
        lookup(self, cvm, &anchor).await.map(|(recipient, _)| recipient)
    }
}

/// Looks the key up and verifies it; gives the CVM as read too (for the flow's app-id check).
pub(crate) async fn lookup(
    client: &Client,
    cvm_id: &str,
    anchor: &Anchor,
) -> Result<(VerifiedRecipient, CvmRecord), EncryptionKeyError> {
    let record = CvmRecord::fetch(client, cvm_id)
        .await
        .map_err(|source| EncryptionKeyError::CvmLookup { cvm_id: cvm_id.to_owned(), source })?;
    let recipient = verify(client, cvm_id, &record, anchor).await?;
    match &recipient.verification {
        KeyVerification::KmsSignature { form: SignatureForm::Legacy, kms_key, .. } => tracing::warn!(
            %cvm_id,
            %kms_key,
            "the KMS signed the env-encryption key in the legacy form, without a timestamp: no freshness window"
        ),
        verification => {
            tracing::info!(%cvm_id, public_key = %recipient.public_key, %verification, "env-encryption key verified")
        }
    }
    Ok((recipient, record))
}

/// The key the KMS's signature is checked against, settled before the KMS is asked: a key that
/// cannot be checked is not fetched.
enum Against {
    Api(K256PublicKey),
    #[cfg(feature = "onchain")]
    Chain(crate::onchain::KmsContract),
}

async fn verify(
    client: &Client,
    cvm_id: &str,
    record: &CvmRecord,
    anchor: &Anchor,
) -> Result<VerifiedRecipient, EncryptionKeyError> {
    let cvm = || cvm_id.to_owned();
    if !record.is_contract_owned() {
        let text = record.encrypted_env_pubkey().ok_or_else(|| EncryptionKeyError::NoPublicKey { cvm_id: cvm() })?;
        let public_key = RecipientPublicKey::from_hex(text)
            .map_err(|source| EncryptionKeyError::InvalidPublicKey { cvm_id: cvm(), source })?;
        let app_id = record.app_id().and_then(parse_app_id);
        return Ok(VerifiedRecipient { public_key, app_id, verification: KeyVerification::CentralizedKms });
    }

    // A contract-owned KMS: its signed key, for this app.
    let app_id = match record.app_id() {
        None => return Err(EncryptionKeyError::NoAppId { cvm_id: cvm() }),
        Some(reported) => parse_app_id(reported)
            .ok_or_else(|| EncryptionKeyError::InvalidAppId { cvm_id: cvm(), reported: reported.to_owned() })?,
    };
    let kms = record.kms();
    let kms_id = kms.and_then(|k| k.path_id()).ok_or_else(|| EncryptionKeyError::NoKms {
        cvm_id: cvm(),
        kms_type: kms.and_then(|k| k.kms_type()).map(str::to_owned),
    })?;
    let reported_key = kms.and_then(|k| k.k256_pubkey());
    let against = match anchor {
        Anchor::Api => {
            let text = reported_key.ok_or_else(|| EncryptionKeyError::NoKmsKey { cvm_id: cvm() })?;
            Against::Api(text.parse().map_err(|source| EncryptionKeyError::InvalidKmsKey { cvm_id: cvm(), source })?)
        }
        #[cfg(feature = "onchain")]
        Anchor::Chain { rpc_url, pinned } => {
            use crate::onchain::{KmsCheckError, KmsContract};
            let reported = kms.and_then(|k| k.contract_address());
            let address = match (reported, pinned) {
                (None, None) => return Err(EncryptionKeyError::NoKmsContract { cvm_id: cvm() }),
                (None, Some(pinned)) => *pinned,
                (Some(text), pinned) => {
                    let address: alloy::primitives::Address = text.parse().map_err(|_| {
                        EncryptionKeyError::Onchain(KmsCheckError::BadAddress { value: text.to_owned() })
                    })?;
                    match pinned {
                        Some(pinned) if *pinned != address => {
                            return Err(EncryptionKeyError::KmsContractNotPinned {
                                cvm_id: cvm(),
                                reported: address,
                                pinned: *pinned,
                            });
                        }
                        _ => address,
                    }
                }
            };
            let contract = KmsContract::new(address, rpc_url).map_err(EncryptionKeyError::RpcSetup)?;
            // Only on the chain `kms_info` names is the contract the KMS's.
            contract.check_chain(kms.and_then(|k| k.chain_id())).await.map_err(EncryptionKeyError::Onchain)?;
            Against::Chain(contract)
        }
    };

    let signed = fetch_signed(client, &kms_id, app_id).await?;
    let form = match signed.timestamp {
        Some(signed_at) => SignatureForm::Timestamped { signed_at },
        None => SignatureForm::Legacy,
    };
    let (kms_key, anchor) = match against {
        Against::Api(kms_key) => {
            signed.verify(&app_id, &kms_key).map_err(|source| EncryptionKeyError::Signature {
                app_id,
                kms_key,
                source,
            })?;
            (kms_key, KmsKeyAnchor::ApiReported)
        }
        #[cfg(feature = "onchain")]
        Against::Chain(contract) => {
            use crate::onchain::KmsCheckError;
            // As `KmsContract::verify_env_pubkey`, keeping the key it checked against.
            let kms_contract = contract.address();
            contract.check_app(app_id).await.map_err(EncryptionKeyError::Onchain)?;
            let kms_key = contract.k256_pubkey().await.map_err(EncryptionKeyError::Onchain)?;
            signed.verify(&app_id, &kms_key).map_err(|source| {
                EncryptionKeyError::Onchain(KmsCheckError::Signature { kms: kms_contract, source })
            })?;
            if reported_key.is_some_and(|text| text.parse::<K256PublicKey>().ok() != Some(kms_key)) {
                tracing::warn!(
                    %cvm_id,
                    %kms_key,
                    "kms_info.k256_pubkey is not the key the KMS contract records; the contract's was checked"
                );
            }
            let pinned = matches!(anchor, Anchor::Chain { pinned: Some(_), .. });
            (kms_key, KmsKeyAnchor::Onchain { kms_contract, pinned })
        }
    };
    Ok(VerifiedRecipient {
        public_key: signed.public_key,
        app_id: Some(app_id),
        verification: KeyVerification::KmsSignature { kms_key, anchor, form },
    })
}

/// `GET /api/v1/kms/{kms_id}/pubkey/{app_id}`, read as a [`SignedEnvPubkey`].
async fn fetch_signed(client: &Client, kms_id: &str, app_id: AppId) -> Result<SignedEnvPubkey, EncryptionKeyError> {
    // 40 lowercase hex digits, no `0x`: the form the API writes app ids in, which the spec takes.
    let app_hex = const_hex::encode(app_id.as_bytes());
    let reply = client
        .send(|api| api.get_app_env_encrypt_pubkey(kms_id, &app_hex))
        .await
        .map_err(|source| EncryptionKeyError::KmsLookup { kms: kms_id.to_owned(), app_id, source: Box::new(source) })?;
    serde_json::from_slice(reply.raw_body()).map_err(|source| EncryptionKeyError::InvalidKmsReply {
        kms: kms_id.to_owned(),
        app_id,
        source,
    })
}
