//! [`TwoPhaseKind`]: the error kind of any operation whose responses include 465, for
//! [`Client::send_two_phase`](crate::Client::send_two_phase). Its 465 carries the phase-1
//! data, read by the same parser as the env update's ([`Phase1Data::parse`]).

use crate::error::{HttpError, SdkError, ServiceErrorKind};
use crate::update_envs::{Phase1Data, RegistrationDisplay, RegistrationRequired};

/// What an error reply of an operation that answers 465 means: the registration statuses
/// (465–468) and 409 by name, every other status as [`Other`](Self::Other), its reply kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TwoPhaseKind {
    /// 409: another operation on the CVM is in progress. Safe to retry later.
    #[error("{0}; wait for the running operation to finish, then retry")]
    Conflict(HttpError),
    /// 465: the compose hash must be allowed on the app contract first.
    /// `SdkError::phase1` holds what to register.
    #[error("{}", RegistrationDisplay(.0, "send phase 2"))]
    RegistrationRequired(Box<RegistrationRequired>),
    /// 466: the compose hash is unknown or expired.
    #[error("{0}; start again from phase 1 to get a fresh compose hash")]
    ComposeHashInvalid(HttpError),
    /// 467: the transaction could not be verified.
    #[error(
        "{0}; check that the transaction was mined on the KMS chain, succeeded, and emitted ComposeHashAdded for this compose hash on the app contract"
    )]
    TransactionVerificationFailed(HttpError),
    /// 468: the compose hash is not in the app contract's allow-list.
    #[error("{0}; register this exact compose hash on the app contract, then send phase 2 again")]
    ComposeHashNotAllowed(HttpError),
    /// Any other error status (the operation's own 4xx and 5xx).
    #[error("{0}")]
    Other(HttpError),
}

impl ServiceErrorKind for TwoPhaseKind {
    fn from_reply(http: HttpError) -> Self {
        match http.status().as_u16() {
            409 => Self::Conflict(http),
            465 => Self::RegistrationRequired(Box::new(RegistrationRequired::from_http(http))),
            466 => Self::ComposeHashInvalid(http),
            467 => Self::TransactionVerificationFailed(http),
            468 => Self::ComposeHashNotAllowed(http),
            _ => Self::Other(http),
        }
    }

    fn reply(&self) -> &HttpError {
        match self {
            Self::Conflict(h)
            | Self::ComposeHashInvalid(h)
            | Self::TransactionVerificationFailed(h)
            | Self::ComposeHashNotAllowed(h)
            | Self::Other(h) => h,
            Self::RegistrationRequired(r) => &r.http,
        }
    }
}

/// The statuses the one driver acts on.
impl super::driver::RegistrationStatus for TwoPhaseKind {
    fn is_compose_hash_invalid(e: &SdkError<Self>) -> bool {
        e.is_compose_hash_invalid()
    }

    fn is_transaction_verification_failed(e: &SdkError<Self>) -> bool {
        e.is_transaction_verification_failed()
    }
}

/// What only the errors of an operation that answers 465 can say.
impl SdkError<TwoPhaseKind> {
    /// The 465 reply and its phase-1 data (readable or not).
    pub fn registration_required(&self) -> Option<&RegistrationRequired> {
        match self.kind() {
            Some(TwoPhaseKind::RegistrationRequired(r)) => Some(r),
            _ => None,
        }
    }

    /// The phase-1 data of a 465 whose body could be read.
    pub fn phase1(&self) -> Option<&Phase1Data> {
        self.registration_required().and_then(|r| r.data.as_ref().ok())
    }
}

crate::update_envs::kind_predicates! { TwoPhaseKind:
    /// 409.
    is_conflict => Conflict,
    /// 465: allow the compose hash on-chain, then send phase 2.
    is_registration_required => RegistrationRequired,
    /// 466.
    is_compose_hash_invalid => ComposeHashInvalid,
    /// 467.
    is_transaction_verification_failed => TransactionVerificationFailed,
    /// 468.
    is_compose_hash_not_allowed => ComposeHashNotAllowed,
    /// Any other error status.
    is_other => Other,
}
