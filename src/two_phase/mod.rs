//! The two-phase updates: the env update, and the updates of a CVM's compose.
//!
//! Phase 1 sends the encrypted env and its allowed names. With a contract-owned KMS and a change
//! of allowed names, the server answers 465 with a compose hash to register on the app contract;
//! phase 2 sends the same request again with `compose_hash` and `transaction_hash`.
//!
//! - By hand: [`Client::begin_env_update`](crate::Client::begin_env_update) gives a
//!   [`Phase1Outcome`]; a [`PendingUpdate`] sends phase 2 with [`PendingUpdate::confirm`].
//! - In one call: [`Client::env_update`](crate::Client::env_update) builds an [`EnvUpdate`]
//!   whose [`run`](EnvUpdate::run) does the whole flow with a [`ComposeHashRegistrar`] (the
//!   on-chain one is [`OnchainRegistrar`](crate::onchain::OnchainRegistrar), feature `onchain`).
//! - One driver (`driver::drive`) runs the flow for an operation, given how it sends its two
//!   phases (`driver::Phases`, which says how phase 2 carries the hashes: body fields for the
//!   env update; headers for the operations that take `X-Compose-Hash`) and how its error kind
//!   names 466 and 467 (`driver::RegistrationStatus`). [`EnvUpdate`] is its first user;
//!   [`CvmPatch`] its second: the unified `PATCH /api/v1/cvms/{cvm_id}`
//!   ([`Client::cvm_patch`](crate::Client::cvm_patch)) and the multipart compose and
//!   pre-launch-script uploads ([`Client::docker_compose_patch`](crate::Client::docker_compose_patch),
//!   [`Client::pre_launch_script_patch`](crate::Client::pre_launch_script_patch)), phase 2 in
//!   the `X-Compose-Hash` and `X-Transaction-Hash` headers.
//! - Before signing, the one-call flow refuses a 465 that names another app contract than the
//!   CVM's own ([`AppIdCheckError`]), or than the one pinned with [`EnvUpdate::expect_app_id`].
//! - Over many CVMs: [`Client::env_update_many`](crate::Client::env_update_many) and
//!   [`Client::env_update_app`](crate::Client::env_update_app) build a [`FleetUpdate`]: each
//!   CVM's flow, bounded in concurrency, with one registration per distinct compose hash.

mod checks;
mod cvm_patch;
mod driver;
mod fleet;
mod kind;
mod phases;
mod registrar;
mod spec;

pub use checks::{AppIdCheckError, parse_app_id};
pub use cvm_patch::{CvmPatch, CvmPatchAccepted, CvmPatchError, CvmPatchOutcome, UpdateCvmRequest};
pub use driver::{
    DEFAULT_PHASE2_ATTEMPTS, DEFAULT_VERIFICATION_RETRIES, DEFAULT_VERIFICATION_RETRY_INTERVAL, EnvUpdate, FlowError,
    MAX_REGISTRATIONS_PER_RUN, Registration, UpdateOutcome,
};
pub use fleet::{CvmUpdate, DEFAULT_FLEET_CONCURRENCY, FleetError, FleetEvent, FleetOutcome, FleetUpdate, SameCvm};
pub use kind::TwoPhaseKind;
pub use phases::{EnvUpdateRequest, PendingUpdate, Phase1Outcome};
pub use registrar::{
    BoxedRegistrar, BoxedRegistrarError, ComposeHashRegistrar, FlowEvent, KnownTransaction, OtherComposeHash, Progress,
    RestartReason,
};
pub use spec::{DRIVEN_OPERATIONS, DrivenOperation, Phase2Carrier, TwoPhaseOperation};
