//! # phala-cloud
//!
//! A Rust client for the [Phala Cloud](https://cloud.phala.com) confidential-VM API,
//! generated at build time from the vendored `openapi.json` by
//! [progenitor](https://github.com/oxidecomputer/progenitor), with a handwritten layer for
//! what the generated code cannot say: typed errors for every status of
//! `PATCH /api/v1/cvms/{cvm_id}/envs`, the two-phase on-chain flow, and the checks that
//! keep bad input from ever being sent.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use phala_cloud::{Client, UpdateCvmEnvsBody};
//!
//! let client = Client::from_env()?; // PHALA_CLOUD_API_KEY, PHALA_CLOUD_API_PREFIX
//! let body = UpdateCvmEnvsBody {
//!     encrypted_env: "…hex blob…".into(),
//!     env_keys: Some(vec!["DATABASE_URL".into()]),
//!     compose_hash: None,
//!     transaction_hash: None,
//! };
//! match client.update_cvm_envs("my-cvm-id", &body).await {
//!     Ok(accepted) => println!("accepted: {:?}", accepted.correlation_id),
//!     Err(e) if e.is_registration_required() => {
//!         if let Some(data) = e.phase1() {
//!             println!("register {} on {}", data.compose_hash, data.app_id);
//!         }
//!     }
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod client;
mod cvm_record;
mod dispatch;
mod env_key;
mod envcrypt;
mod error;
mod generated;
mod hex;
#[cfg(feature = "onchain")]
pub mod onchain;
mod retry;
#[cfg(feature = "simulator")]
pub mod simulator;
mod two_phase;
mod update_envs;
mod validate;

// Everything of the default build is reachable from the root, once; the feature-gated parts
// (`onchain`, `simulator`) and the generated code (`api`, `types`) are modules.
pub use client::{
    API_KEY_ENV, API_PREFIX_ENV, Client, ClientBuilder, ConfigError, DEFAULT_API_VERSION, DEFAULT_BASE_URL,
    DEFAULT_MAX_RESPONSE_BODY, http_client_builder,
};
pub use dispatch::{Hooks, Reply};
pub use env_key::{EncryptionKeyError, KeyVerification, KmsKeyAnchor, SignatureForm, VerifiedRecipient};
pub use envcrypt::{
    CryptError, EncryptedEnv, EnvError, EnvVars, K256PublicKey, KMS_SIGNATURE_MAX_AGE_SECS,
    KMS_SIGNATURE_MAX_SKEW_SECS, KMS_SIGNATURE_PREFIX, KmsSignatureError, MAX_DOTENV_FILE_BYTES, MAX_ENV_ENTRIES,
    MAX_ENV_TOTAL_BYTES, MAX_ENV_VALUE_BYTES, RecipientPublicKey, SignedEnvPubkey, encrypt,
};
pub use error::{
    Delivery, ErrorDetail, ErrorEnvelope, ErrorLink, HttpError, InvalidReply, SdkError, ServiceErrorKind,
    StructuredError, TransportError,
};
/// The body of `PATCH /api/v1/cvms/{cvm_id}/envs` (`Body_update_cvm_envs_…` in the spec).
pub use generated::types::BodyUpdateCvmEnvsApiV1CvmsCvmIdEnvsPatch as UpdateCvmEnvsBody;
pub use hex::{AppId, ComposeHash, HexError, TransactionHash};
pub use retry::ConflictRetry;
pub use two_phase::{
    AppIdCheckError, BoxedRegistrar, BoxedRegistrarError, ComposeHashRegistrar, CvmUpdate, DEFAULT_FLEET_CONCURRENCY,
    DEFAULT_PHASE2_ATTEMPTS, DEFAULT_VERIFICATION_RETRIES, DEFAULT_VERIFICATION_RETRY_INTERVAL, EnvUpdate,
    EnvUpdateRequest, FleetError, FleetEvent, FleetOutcome, FleetUpdate, FlowError, FlowEvent, KnownTransaction,
    MAX_REGISTRATIONS_PER_RUN, OtherComposeHash, PendingUpdate, Phase1Outcome, Progress, Registration, RestartReason,
    SameCvm, UpdateOutcome, parse_app_id,
};
pub use two_phase::{CvmPatch, CvmPatchAccepted, CvmPatchError, CvmPatchOutcome, UpdateCvmRequest};
pub use two_phase::{DRIVEN_OPERATIONS, DrivenOperation, Phase2Carrier, TwoPhaseKind, TwoPhaseOperation};
pub use update_envs::{
    EnvsUpdateAccepted, KmsInfo, Phase1Data, Phase1Error, RegistrationRequired, UpdateEnvsError, UpdateEnvsKind,
};
pub use validate::{InputError, MIN_ENCRYPTED_ENV_BYTES, is_valid_env_key};

/// The crate's internals, for its fuzz target and its tests in a build without the simulator
/// (feature `__internals`, not part of the API: no semver promise): the reply classifier, and
/// the CVM's side of env encryption (which the simulator exports).
#[cfg(feature = "__internals")]
#[doc(hidden)]
pub mod __internals {
    pub use crate::envcrypt::{RecipientSecretKey, decrypt, decrypt_bytes};
    pub use crate::update_envs::classify;
}

/// An operation of `openapi.json` generated in this build (see [`GENERATED_OPERATIONS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedOperation {
    /// `GET`, `PATCH`, …
    pub method: &'static str,
    /// The path template, e.g. `/api/v1/cvms/{cvm_id}`.
    pub path: &'static str,
    /// The method's name on [`api::Operations`] (the shortened operationId).
    pub name: &'static str,
}

/// An operation of `openapi.json` that could not be generated (see [`SKIPPED_OPERATIONS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippedOperation {
    /// `GET`, `PATCH`, …
    pub method: &'static str,
    /// The path template.
    pub path: &'static str,
    /// Its shortened operationId.
    pub operation_id: &'static str,
    /// Why it was not generated.
    pub reason: &'static str,
}

/// The operations generated in this build: those the crate uses by default, every one the
/// generator can express with feature `full-api`.
pub use generated::GENERATED_OPERATIONS;
/// The operations of the spec that could not be generated in this build, each with why.
pub use generated::SKIPPED_OPERATIONS;
/// Every operation of the spec whose responses include 465, read from the spec at build time
/// (whether generated in this build or not), with how its request carries phase 2.
pub use generated::TWO_PHASE_OPERATIONS;

/// The generated client of every operation in `openapi.json` (reached through
/// [`Client::api`]), progenitor's result types, and every generated schema type.
pub mod api {
    pub use crate::generated::Client as Operations;
    pub use crate::generated::types;
    pub use progenitor_client::{ByteStream, Error, ResponseValue};
}

/// The spec's schemas, generated, under readable names.
pub mod types {
    // The env update's body is at the root: `phala_cloud::UpdateCvmEnvsBody`.
    pub use crate::generated::types::{HttpValidationError, LocationItem, ValidationError};

    /// A CVM as newer API versions describe it.
    pub use crate::generated::types::CvmInfoDetail;
    /// The reply of `GET /api/v1/cvms/{cvm_id}` (`handle_get_cvm`): one of two shapes,
    /// depending on the API version.
    pub use crate::generated::types::ResponseHandleGetCvmApiV1CvmsCvmIdGet as Cvm;
    /// A CVM as older API versions describe it (`CvmBasicInfo` in the spec).
    pub use crate::generated::types::TeehouseApiRoutesCvmsManagementCvmBasicInfo as CvmBasicInfo;
}

/// The README's examples, compiled as doctests (they use the `onchain` feature).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "onchain"))]
pub struct ReadmeDoctests;
