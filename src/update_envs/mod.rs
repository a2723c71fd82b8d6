//! `PATCH /api/v1/cvms/{cvm_id}/envs`: one request, its typed success, its typed errors.
//!
//! The request body is the generated [`UpdateCvmEnvsBody`]; the reply is classified here
//! rather than by the generated method, because progenitor's response handling drops what a
//! caller of this endpoint needs: it parses 202 and 422 bodies without keeping the raw bytes,
//! and a body that fails to parse becomes `InvalidResponsePayload` without its status (so a
//! 202 with an odd body would look like a failed 422). [`classify`] keeps status, headers and
//! raw body for every outcome.

mod error;
mod phase1;

pub use error::{RegistrationRequired, UpdateEnvsError};
pub use phase1::{KmsInfo, Phase1Data};

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::client::Client;
use crate::error::{HttpError, TransportError};
use crate::hex::{ComposeHash, TransactionHash};
use crate::types::UpdateCvmEnvsBody;
use crate::validate::{self, InputError};

/// The operation's path in `openapi.json` (checked by the spec-conformance tests).
pub const PATH: &str = "/api/v1/cvms/{cvm_id}/envs";

/// Every status [`classify`] maps to its own outcome: 202 (any 2xx) and each error status
/// the spec lists. Anything else is [`UpdateEnvsError::UnexpectedStatus`].
pub const MAPPED_STATUSES: &[u16] = &[202, 401, 403, 404, 409, 422, 465, 466, 467, 468, 500];

/// A 2xx reply: the update was accepted and runs in the background.
///
/// Parsing is lenient: missing fields are `None`, fields of the wrong type are `None`,
/// unknown fields are in [`extra`](Self::extra), and the raw body is kept.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EnvsUpdateAccepted {
    /// The HTTP status (202 in the spec; any 2xx is accepted).
    pub http_status: StatusCode,
    /// The body's `status`, e.g. `in_progress`.
    pub status: Option<String>,
    /// The body's `message`.
    pub message: Option<String>,
    /// Groups the operations this update started (see `GET /api/v1/cvms/{id}/operations`).
    pub correlation_id: Option<String>,
    /// Whether the allowed env names changed.
    pub allowed_envs_changed: Option<bool>,
    /// Body fields not listed above.
    pub extra: Map<String, Value>,
    /// The request id from the `X-Request-ID` header.
    pub request_id: Option<String>,
    /// The body as received (its first bytes, if it exceeded the response-size cap).
    pub raw_body: Bytes,
    /// The body exceeded the response-size cap: `raw_body` is its start and the fields above
    /// may be missing for that reason.
    pub body_truncated: bool,
}

impl EnvsUpdateAccepted {
    fn parse(http_status: StatusCode, headers: &HeaderMap, raw_body: Bytes, body_truncated: bool) -> Self {
        let mut map = match serde_json::from_slice::<Value>(&raw_body) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let mut take_str = |k: &str| match map.remove(k) {
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                map.insert(k.to_owned(), other);
                None
            }
            None => None,
        };
        let status = take_str("status");
        let message = take_str("message");
        let correlation_id = take_str("correlation_id");
        let allowed_envs_changed = match map.remove("allowed_envs_changed") {
            Some(Value::Bool(b)) => Some(b),
            Some(other) => {
                map.insert("allowed_envs_changed".into(), other);
                None
            }
            None => None,
        };
        let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Self {
            http_status,
            status,
            message,
            correlation_id,
            allowed_envs_changed,
            extra: map,
            request_id,
            raw_body,
            body_truncated,
        }
    }
}

/// Turns a reply into the typed result. Pure and total: any status, headers and body give
/// an outcome that keeps the status and the raw body. `body_truncated` says `body` holds only
/// the first bytes of a longer body.
pub fn classify(
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    body_truncated: bool,
) -> Result<EnvsUpdateAccepted, UpdateEnvsError> {
    if status.is_success() {
        Ok(EnvsUpdateAccepted::parse(status, &headers, body, body_truncated))
    } else {
        Err(UpdateEnvsError::from_http(HttpError::new(status, headers, body, body_truncated)))
    }
}

/// Checks a request before it is sent: the CVM id, the blob, the env names (valid, no
/// duplicates) and the phase-2 pair (both or neither, 32-byte hex each).
pub fn check_request(cvm_id: &str, body: &UpdateCvmEnvsBody) -> Result<(), InputError> {
    validate::check_cvm_id(cvm_id)?;
    validate::check_encrypted_env(&body.encrypted_env)?;
    if let Some(keys) = &body.env_keys {
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            validate::check_env_key(format!("env_keys[{i}]"), key)?;
            if !seen.insert(key.as_str()) {
                return Err(InputError::new(format!("env_keys[{i}]"), format!("{key:?} is listed twice")));
            }
        }
    }
    match (&body.compose_hash, &body.transaction_hash) {
        (None, None) => Ok(()),
        (Some(c), Some(t)) => {
            c.parse::<ComposeHash>().map_err(|e| InputError::new("compose_hash", e.to_string()))?;
            t.parse::<TransactionHash>().map_err(|e| InputError::new("transaction_hash", e.to_string()))?;
            Ok(())
        }
        (Some(_), None) => Err(InputError::new("transaction_hash", "phase 2 needs it beside compose_hash")),
        (None, Some(_)) => Err(InputError::new("compose_hash", "phase 2 needs it beside transaction_hash")),
    }
}

impl Client {
    /// `PATCH /api/v1/cvms/{cvm_id}/envs`: sends one update (phase 1, or phase 2 when the
    /// body carries `compose_hash` and `transaction_hash`).
    ///
    /// The request is checked first ([`check_request`]); bad input returns
    /// [`UpdateEnvsError::InvalidInput`] with nothing sent. A 409 is retried only if the
    /// client was built with [`retry_on_conflict`](crate::ClientBuilder::retry_on_conflict);
    /// nothing else is retried.
    pub async fn update_cvm_envs(
        &self,
        cvm_id: &str,
        body: &UpdateCvmEnvsBody,
    ) -> Result<EnvsUpdateAccepted, UpdateEnvsError> {
        check_request(cvm_id, body)?;
        let payload = Bytes::from(serde_json::to_vec(body).expect("the body serializes to JSON"));
        let phase = if body.compose_hash.is_some() { 2 } else { 1 };
        let span = tracing::info_span!("update_cvm_envs", cvm_id, phase, status = tracing::field::Empty);
        async {
            let mut attempt = 1;
            loop {
                let result = self.send_update(cvm_id, payload.clone()).await;
                let status = match &result {
                    Ok(accepted) => Some(accepted.http_status),
                    Err(e) => e.status(),
                };
                if let Some(status) = status {
                    tracing::Span::current().record("status", status.as_u16());
                }
                let retry = match (&result, &self.inner.conflict_retry) {
                    (Err(UpdateEnvsError::Conflict(http)), Some(policy)) => {
                        policy.delay(attempt, http.retry_after(), rand::random::<f64>())
                    }
                    _ => None,
                };
                let Some(delay) = retry else {
                    if let Ok(accepted) = &result {
                        tracing::info!(correlation_id = accepted.correlation_id.as_deref(), "update accepted");
                    }
                    return result;
                };
                tracing::info!(attempt, ?delay, "409: another operation is running; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
        .instrument(span)
        .await
    }

    /// One PATCH, no retries.
    async fn send_update(&self, cvm_id: &str, payload: Bytes) -> Result<EnvsUpdateAccepted, UpdateEnvsError> {
        let inner = &self.inner;
        let (before, after) = PATH.split_once("{cvm_id}").expect("PATH has the cvm_id parameter");
        let url = [self.base_url(), before, &progenitor_client::encode_path(cvm_id), after].concat();
        let mut request = self
            .http()
            .patch(url)
            .header("x-api-key", inner.api_key.clone())
            .header("x-phala-version", inner.api_version.clone())
            .header(USER_AGENT, HeaderValue::from_static(crate::client::user_agent()))
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(payload);
        if let Some(timeout) = inner.timeout {
            request = request.timeout(timeout);
        }
        let mut response =
            request.send().await.map_err(|e| UpdateEnvsError::from_transport(TransportError::sending(e)))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        match read_capped(response, inner.max_response_body).await {
            Ok((body, truncated)) => classify(status, headers, body, truncated),
            // The head arrived, the body broke: keep what came.
            Err((e, partial)) => Err(UpdateEnvsError::from_transport(
                TransportError::reading_body(status, e).with_reply(headers, partial),
            )),
        }
    }
}

/// Reads at most `cap` bytes of the body; a longer body is cut there and not read further.
/// On a failure, the error comes with the bytes read before it.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(Bytes, bool), (reqwest::Error, Bytes)> {
    let hint = response.content_length().map_or(0, |n| n.min(cap as u64) as usize);
    let mut buf = BytesMut::with_capacity(hint);
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err((e, buf.freeze())),
        };
        let room = cap - buf.len();
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf.freeze(), true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf.freeze(), false))
}
