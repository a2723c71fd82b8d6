//! [`UpdateEnvsError`]: every way `PATCH /api/v1/cvms/{cvm_id}/envs` can fail, as the shared
//! [`SdkError`] with the operation's own [`UpdateEnvsKind`].

use std::fmt;

use super::phase1::{Phase1Data, Phase1Error};
use crate::error::{ErrorEnvelope, HttpError, SdkError, ServiceErrorKind};
use crate::types::ValidationError;

/// The error of [`Client::update_cvm_envs`](crate::Client::update_cvm_envs): the shared
/// [`SdkError`] shape with [`UpdateEnvsKind`], a variant per error status the spec lists and
/// one for any other status. Input refused before sending and transport failures (split by
/// whether the request may have reached the server) are [`SdkError`]'s own variants.
///
/// Every HTTP error keeps the whole reply ([`http`](SdkError::http)): status, headers, raw
/// body and parsed envelope, even when the body is empty, HTML or cut off.
pub type UpdateEnvsError = SdkError<UpdateEnvsKind>;

/// What an error reply of `PATCH /api/v1/cvms/{cvm_id}/envs` means: one variant per status
/// the spec lists, and [`UnexpectedStatus`](Self::UnexpectedStatus) for the rest. Its
/// `Display` says what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateEnvsKind {
    /// 401: no valid API key.
    #[error("{0}; check the API key ({key})", key = crate::client::API_KEY_ENV)]
    Unauthorized(HttpError),
    /// 403: the CVM is not in the API key's workspace.
    #[error("{0}; the API key's workspace does not own this CVM")]
    Forbidden(HttpError),
    /// 404: no such CVM.
    #[error("{0}; check the CVM id")]
    NotFound(HttpError),
    /// 409: another operation on this CVM is in progress. Safe to retry later.
    #[error("{0}; wait for the running operation to finish, then retry")]
    Conflict(HttpError),
    /// 422: the body broke the schema; [`validation_errors`](SdkError::validation_errors)
    /// lists the fields.
    #[error("{0}")]
    Validation(HttpError),
    /// 465 (phase 1): the compose hash must be registered on-chain before the update can
    /// go on. [`phase1`](SdkError::phase1) holds what to register.
    #[error("{}", RegistrationDisplay(.0, "send the same request with compose_hash and transaction_hash"))]
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
    /// 500: KMS configuration or RPC error on the server.
    #[error("{0}")]
    ServerError(HttpError),
    /// A status the spec does not list for this operation.
    #[error("{0} (a status not in the API spec)")]
    UnexpectedStatus(HttpError),
}

/// The 465 reply and its phase-1 data.
#[derive(Debug, Clone)]
pub struct RegistrationRequired {
    /// The reply.
    pub http: HttpError,
    /// The phase-1 data, or why it could not be read from the body.
    pub data: Result<Phase1Data, Phase1Error>,
}

impl RegistrationRequired {
    /// Reads the phase-1 data of a 465 reply: the one parser for every operation that answers
    /// 465 (a body cut at the response-size cap is not read).
    pub(crate) fn from_http(http: HttpError) -> Self {
        let data = if http.body_truncated() { Err(Phase1Error::Truncated) } else { Phase1Data::parse(http.raw_body()) };
        Self { http, data }
    }
}

/// A 465's message: what to register, then `then` (how the operation carries phase 2).
pub(crate) struct RegistrationDisplay<'a>(pub(crate) &'a RegistrationRequired, pub(crate) &'static str);

impl fmt::Display for RegistrationDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (r, then) = (self.0, self.1);
        write!(f, "{}; ", r.http)?;
        match &r.data {
            Ok(d) => {
                write!(f, "register compose hash {} on app contract {}", d.compose_hash, d.app_id)?;
                if let Some(chain) = d.chain_id() {
                    write!(f, " (chain {chain})")?;
                }
                write!(f, ", then {then}")
            }
            Err(why) => write!(f, "register the compose hash on-chain (the reply's phase-1 data is unreadable: {why})"),
        }
    }
}

impl ServiceErrorKind for UpdateEnvsKind {
    /// Maps a non-2xx reply to its variant.
    fn from_reply(http: HttpError) -> Self {
        match http.status().as_u16() {
            401 => Self::Unauthorized(http),
            403 => Self::Forbidden(http),
            404 => Self::NotFound(http),
            409 => Self::Conflict(http),
            422 => Self::Validation(http),
            465 => Self::RegistrationRequired(Box::new(RegistrationRequired::from_http(http))),
            466 => Self::ComposeHashInvalid(http),
            467 => Self::TransactionVerificationFailed(http),
            468 => Self::ComposeHashNotAllowed(http),
            500 => Self::ServerError(http),
            _ => Self::UnexpectedStatus(http),
        }
    }

    fn reply(&self) -> &HttpError {
        match self {
            Self::Unauthorized(h)
            | Self::Forbidden(h)
            | Self::NotFound(h)
            | Self::Conflict(h)
            | Self::Validation(h)
            | Self::ComposeHashInvalid(h)
            | Self::TransactionVerificationFailed(h)
            | Self::ComposeHashNotAllowed(h)
            | Self::ServerError(h)
            | Self::UnexpectedStatus(h) => h,
            Self::RegistrationRequired(r) => &r.http,
        }
    }
}

/// What only the env update's errors can say.
impl SdkError<UpdateEnvsKind> {
    /// The 465 reply and its phase-1 data (readable or not).
    pub fn registration_required(&self) -> Option<&RegistrationRequired> {
        match self.kind() {
            Some(UpdateEnvsKind::RegistrationRequired(r)) => Some(r),
            _ => None,
        }
    }

    /// The phase-1 data of a 465 whose body could be read.
    pub fn phase1(&self) -> Option<&Phase1Data> {
        self.registration_required().and_then(|r| r.data.as_ref().ok())
    }

    /// The field errors of a 422 (empty for other variants or an unreadable body).
    pub fn validation_errors(&self) -> &[ValidationError] {
        match self.envelope() {
            Some(ErrorEnvelope::Validation(v)) if self.is_validation() => v,
            _ => &[],
        }
    }

    /// Sending the same request again may succeed and cannot apply it twice: a 409, or a
    /// request that was never sent.
    pub fn is_retryable(&self) -> bool {
        self.is_conflict() || self.is_not_sent()
    }
}

/// One `is_…()` predicate per variant of a kind, on `SdkError<Kind>`.
macro_rules! kind_predicates {
    ($kind:ident: $($(#[$doc:meta])* $name:ident => $variant:ident),* $(,)?) => {
        impl $crate::error::SdkError<$kind> {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> bool {
                    matches!(self.kind(), Some($kind::$variant(..)))
                }
            )*
        }
    };
}
pub(crate) use kind_predicates;

kind_predicates! { UpdateEnvsKind:
    /// 401.
    is_unauthorized => Unauthorized,
    /// 403.
    is_forbidden => Forbidden,
    /// 404.
    is_not_found => NotFound,
    /// 409.
    is_conflict => Conflict,
    /// 422.
    is_validation => Validation,
    /// 465: register the compose hash, then send phase 2.
    is_registration_required => RegistrationRequired,
    /// 466.
    is_compose_hash_invalid => ComposeHashInvalid,
    /// 467.
    is_transaction_verification_failed => TransactionVerificationFailed,
    /// 468.
    is_compose_hash_not_allowed => ComposeHashNotAllowed,
    /// 500.
    is_server_error => ServerError,
    /// A status not in the spec.
    is_unexpected_status => UnexpectedStatus,
}
