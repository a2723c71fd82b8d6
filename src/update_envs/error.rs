//! [`UpdateEnvsError`]: every way `PATCH /api/v1/cvms/{cvm_id}/envs` can fail.

use bytes::Bytes;
use http::StatusCode;
use std::fmt;

use super::phase1::Phase1Data;
use crate::error::{Delivery, ErrorEnvelope, HttpError, TransportError};
use crate::types::ValidationError;
use crate::validate::InputError;

/// The error of [`Client::update_cvm_envs`](crate::Client::update_cvm_envs): one variant per
/// status the spec lists, one for any other status, input refused before sending, and
/// transport failures split by whether the request may have reached the server.
///
/// Every HTTP variant keeps the whole reply ([`http`](Self::http)): status, headers, raw body
/// and parsed envelope, even when the body is empty, HTML or cut off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateEnvsError {
    /// The request was refused before sending (nothing was sent).
    #[error(transparent)]
    InvalidInput(#[from] InputError),
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
    /// 422: the body broke the schema; [`validation_errors`](Self::validation_errors) lists
    /// the fields.
    #[error("{0}")]
    Validation(HttpError),
    /// 465 (phase 1): the compose hash must be registered on-chain before the update can
    /// go on. [`phase1`](Self::phase1) holds what to register.
    #[error("{}", RegistrationDisplay(.0))]
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
    /// The request failed before it was sent: safe to send again.
    #[error(transparent)]
    NotSent(TransportError),
    /// The request failed after it may have reached the server (connection broke, timeout,
    /// reply cut off): the server may have acted on it.
    #[error(transparent)]
    MaybeSent(TransportError),
}

/// The 465 reply and its phase-1 data.
#[derive(Debug, Clone)]
pub struct RegistrationRequired {
    /// The reply.
    pub http: HttpError,
    /// The phase-1 data, or why it could not be read from the body.
    pub data: Result<Phase1Data, String>,
}

struct RegistrationDisplay<'a>(&'a RegistrationRequired);

impl fmt::Display for RegistrationDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "{}; ", r.http)?;
        match &r.data {
            Ok(d) => {
                write!(f, "register compose hash {} on app contract {}", d.compose_hash, d.app_id)?;
                if let Some(chain) = d.chain_id() {
                    write!(f, " (chain {chain})")?;
                }
                write!(f, ", then send the same request with compose_hash and transaction_hash")
            }
            Err(why) => write!(f, "register the compose hash on-chain (the reply's phase-1 data is unreadable: {why})"),
        }
    }
}

impl UpdateEnvsError {
    /// Maps a non-2xx reply to its variant.
    pub(crate) fn from_http(http: HttpError) -> Self {
        match http.status().as_u16() {
            401 => Self::Unauthorized(http),
            403 => Self::Forbidden(http),
            404 => Self::NotFound(http),
            409 => Self::Conflict(http),
            422 => Self::Validation(http),
            465 => {
                let data = if http.body_truncated() {
                    Err("the body exceeded the response-size cap".to_owned())
                } else {
                    Phase1Data::parse(http.raw_body())
                };
                Self::RegistrationRequired(Box::new(RegistrationRequired { http, data }))
            }
            466 => Self::ComposeHashInvalid(http),
            467 => Self::TransactionVerificationFailed(http),
            468 => Self::ComposeHashNotAllowed(http),
            500 => Self::ServerError(http),
            _ => Self::UnexpectedStatus(http),
        }
    }

    pub(crate) fn from_transport(e: TransportError) -> Self {
        match e.delivery() {
            Delivery::NotSent => Self::NotSent(e),
            Delivery::MaybeSent => Self::MaybeSent(e),
        }
    }

    /// The HTTP reply, for every variant that has one.
    pub fn http(&self) -> Option<&HttpError> {
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
            | Self::UnexpectedStatus(h) => Some(h),
            Self::RegistrationRequired(r) => Some(&r.http),
            Self::InvalidInput(_) | Self::NotSent(_) | Self::MaybeSent(_) => None,
        }
    }

    /// The HTTP status, when a reply (or its head) arrived.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::NotSent(t) | Self::MaybeSent(t) => t.status(),
            _ => self.http().map(HttpError::status),
        }
    }

    /// The request id (body `request_id`, else header `X-Request-ID`; for a reply cut off
    /// after its head, the header).
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::NotSent(t) | Self::MaybeSent(t) => t.request_id(),
            _ => self.http().and_then(HttpError::request_id),
        }
    }

    /// The raw body bytes of the reply.
    pub fn raw_body(&self) -> Option<&Bytes> {
        self.http().map(HttpError::raw_body)
    }

    /// The parsed error envelope of the reply.
    pub fn envelope(&self) -> Option<&ErrorEnvelope> {
        self.http().map(HttpError::envelope)
    }

    /// The phase-1 data of a 465 whose body could be read.
    pub fn phase1(&self) -> Option<&Phase1Data> {
        match self {
            Self::RegistrationRequired(r) => r.data.as_ref().ok(),
            _ => None,
        }
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

    /// The server may have acted on the request although no reply says so.
    pub fn may_have_been_applied(&self) -> bool {
        self.is_maybe_sent()
    }
}

macro_rules! predicates {
    ($($(#[$doc:meta])* $name:ident => $variant:ident),* $(,)?) => {
        impl UpdateEnvsError {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> bool {
                    matches!(self, Self::$variant(..))
                }
            )*
        }
    };
}

predicates! {
    /// Refused before sending.
    is_invalid_input => InvalidInput,
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
    /// Failed before sending.
    is_not_sent => NotSent,
    /// Failed after it may have been sent.
    is_maybe_sent => MaybeSent,
}
