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

mod client;
pub mod envcrypt;
pub mod error;
mod generated;
pub mod hex;
#[cfg(feature = "onchain")]
pub mod onchain;
mod retry;
#[cfg(feature = "simulator")]
pub mod simulator;
pub mod two_phase;
pub mod update_envs;
pub mod validate;

pub use client::{
    API_KEY_ENV, API_PREFIX_ENV, Client, ClientBuilder, ConfigError, DEFAULT_API_VERSION, DEFAULT_BASE_URL,
    DEFAULT_MAX_RESPONSE_BODY, http_client_builder,
};
pub use envcrypt::{EncryptedEnv, EnvCryptError, EnvVars, K256PublicKey, RecipientPublicKey, SignedEnvPubkey, encrypt};
pub use error::{Delivery, ErrorEnvelope, HttpError, StructuredError, TransportError};
pub use hex::{AppId, ComposeHash, TransactionHash};
pub use retry::ConflictRetry;
pub use types::UpdateCvmEnvsBody;
pub use update_envs::{EnvsUpdateAccepted, KmsInfo, Phase1Data, RegistrationRequired, UpdateEnvsError};
pub use validate::InputError;

/// The spec's schemas, generated, under readable names.
pub mod types {
    /// The body of `PATCH /api/v1/cvms/{cvm_id}/envs` (`Body_update_cvm_envs_…` in the spec).
    pub use crate::generated::types::BodyUpdateCvmEnvsApiV1CvmsCvmIdEnvsPatch as UpdateCvmEnvsBody;
    pub use crate::generated::types::{HttpValidationError, LocationItem, ValidationError};
}

/// The README's examples, compiled as doctests (they use the `onchain` feature).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "onchain"))]
pub struct ReadmeDoctests;
