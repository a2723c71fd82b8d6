//! `PATCH /api/v1/cvms/{cvm_id}/envs`: one request, its typed success, its typed errors.
//!
//! The request is the generated `update_cvm_envs`, sent through the crate's hooks like every
//! operation. The reply is classified here from the raw reply the hooks keep, not from what
//! progenitor made of it: its response handling drops what a caller of this endpoint needs (it
//! parses 202 and 422 bodies without keeping the raw bytes, and a body that fails to parse
//! becomes `InvalidResponsePayload` without its status, so a 202 with an odd body would look
//! like a failed 422). [`classify`] keeps status, headers and raw body for every outcome; only
//! a 202's JSON value, when progenitor parsed the whole body, is taken rather than parsed again.

mod error;
mod phase1;

pub(crate) use error::RegistrationDisplay;
pub(crate) use error::kind_predicates;
pub use error::{RegistrationRequired, UpdateEnvsError, UpdateEnvsKind};
pub use phase1::{KmsInfo, Phase1Data, Phase1Error};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::UpdateCvmEnvsBody;
use crate::client::Client;
use crate::dispatch;
use crate::error::{HttpError, InvalidReply, SdkError, ServiceErrorKind};
use crate::hex::{ComposeHash, TransactionHash};
use crate::validate::{self, InputError};

/// A 202 (or a 2xx whose body proves acceptance): the update was accepted and runs in the
/// background.
///
/// Parsing is lenient: missing fields are `None`, fields of the wrong type are `None`,
/// unknown fields are in [`extra`](Self::extra), and the raw body is kept.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EnvsUpdateAccepted {
    /// The HTTP status (202 in the spec; another 2xx only with a `correlation_id`).
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
        let value = serde_json::from_slice::<Value>(&raw_body).unwrap_or(Value::Null);
        Self::from_value(http_status, headers, value, raw_body, body_truncated)
    }

    /// As [`parse`](Self::parse), from `value`, the JSON `raw_body` holds.
    fn from_value(
        http_status: StatusCode,
        headers: &HeaderMap,
        value: Value,
        raw_body: Bytes,
        body_truncated: bool,
    ) -> Self {
        let map = match value {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        // One pass: a known field of the right type is taken, anything else stays in `extra`.
        let (mut status, mut message, mut correlation_id, mut allowed_envs_changed) = (None, None, None, None);
        let mut extra = Map::new();
        for (key, value) in map {
            match (key.as_str(), value) {
                ("status", Value::String(s)) => status = Some(s),
                ("message", Value::String(s)) => message = Some(s),
                ("correlation_id", Value::String(s)) => correlation_id = Some(s),
                ("allowed_envs_changed", Value::Bool(b)) => allowed_envs_changed = Some(b),
                (_, value) => {
                    extra.insert(key, value);
                }
            }
        }
        let request_id = dispatch::header_request_id(headers).map(str::to_owned);
        Self {
            http_status,
            status,
            message,
            correlation_id,
            allowed_envs_changed,
            extra,
            request_id,
            raw_body,
            body_truncated,
        }
    }
}

/// Turns a reply into the typed result. Pure and total: any status, headers and body give
/// an outcome that keeps the status and the raw body. `body_truncated` says `body` holds only
/// the first bytes of a longer body.
///
/// Acceptance is proven, not assumed: a 202 (the spec's success status) is accepted whatever
/// its body; any other 2xx only when its body is a JSON object carrying the spec's
/// `correlation_id`. A 200 HTML page from a wrong base URL, an empty 200 or a 204 is
/// [`SdkError::InvalidReply`]: the update may have been applied, and nothing says it was.
pub fn classify(
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    body_truncated: bool,
) -> Result<EnvsUpdateAccepted, UpdateEnvsError> {
    if !status.is_success() {
        return Err(SdkError::Service(UpdateEnvsKind::from_reply(HttpError::new(
            status,
            headers,
            body,
            body_truncated,
        ))));
    }
    if status != StatusCode::ACCEPTED && (body_truncated || !carries_success_fields(&body)) {
        let reason = format!(
            "HTTP {} is not the spec's 202, and its body is not a JSON object with a correlation_id",
            status.as_u16()
        );
        return Err(SdkError::InvalidReply(InvalidReply::new(status, headers, body, body_truncated, reason)));
    }
    Ok(EnvsUpdateAccepted::parse(status, &headers, body, body_truncated))
}

/// The body is a JSON object with a non-empty string `correlation_id`, as the spec's 202
/// describes (read as [`EnvsUpdateAccepted::parse`] reads it, so an accepted reply has it).
fn carries_success_fields(body: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map.get("correlation_id").and_then(Value::as_str).is_some_and(|c| !c.is_empty()),
        _ => false,
    }
}

/// Up to this many env names are checked for duplicates by comparing each with those before it.
const SCAN_KEYS: usize = 16;

/// Checks a request before it is sent: the CVM id, the blob, the env names (valid, no
/// duplicates) and the phase-2 pair (both or neither, 32-byte hex each).
pub(crate) fn check_request(cvm_id: &str, body: &UpdateCvmEnvsBody) -> Result<(), InputError> {
    validate::check_cvm_id(cvm_id)?;
    validate::check_encrypted_env(&body.encrypted_env)?;
    if let Some(keys) = &body.env_keys {
        // A short list is searched (no hashing, no allocation); a long one goes through a set.
        let mut seen = (keys.len() > SCAN_KEYS).then(|| std::collections::HashSet::with_capacity(keys.len()));
        for (i, key) in keys.iter().enumerate() {
            // The field name is built only for an error.
            if !validate::is_valid_env_key(key) {
                validate::check_env_key(format!("env_keys[{i}]"), key)?;
            }
            let repeated = match &mut seen {
                Some(seen) => !seen.insert(key.as_str()),
                // Compared from the end, inline: names often share a prefix.
                None => keys[..i].iter().any(|k| k.len() == key.len() && k.bytes().rev().eq(key.bytes().rev())),
            };
            if repeated {
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
    /// The request is checked first (the CVM id, the blob, the env names: valid and not
    /// repeated, and the phase-2 pair: both or neither, 32-byte hex each); bad input returns
    /// [`SdkError::InvalidInput`] with nothing sent. A 409 is retried only if the
    /// client was built with [`retry_on_conflict`](crate::ClientBuilder::retry_on_conflict);
    /// nothing else is retried.
    pub async fn update_cvm_envs(
        &self,
        cvm_id: &str,
        body: &UpdateCvmEnvsBody,
    ) -> Result<EnvsUpdateAccepted, UpdateEnvsError> {
        check_request(cvm_id, body)?;
        let phase = if body.compose_hash.is_some() { 2 } else { 1 };
        let span = tracing::info_span!("update_cvm_envs", cvm_id, phase, status = tracing::field::Empty);
        async {
            let result = self.retrying_conflicts(|| self.send_update(cvm_id, body)).await;
            let status = match &result {
                Ok(accepted) => Some(accepted.http_status),
                Err(e) => e.status(),
            };
            if let Some(status) = status {
                tracing::Span::current().record("status", status.as_u16());
            }
            if let Ok(accepted) = &result {
                tracing::info!(correlation_id = accepted.correlation_id.as_deref(), "update accepted");
            }
            result
        }
        .instrument(span)
        .await
    }

    /// One PATCH through the generated operation, no retries.
    async fn send_update(&self, cvm_id: &str, body: &UpdateCvmEnvsBody) -> Result<EnvsUpdateAccepted, UpdateEnvsError> {
        let (result, captured) = dispatch::capture(self.api().update_cvm_envs(cvm_id, body)).await;
        let (parsed, raw) = dispatch::settle(result, captured)?;
        match parsed {
            // A 202 whose whole body progenitor parsed as JSON: the value `classify` would parse
            // from the same bytes, so it is not parsed again.
            Ok(value) if raw.status == StatusCode::ACCEPTED => Ok(EnvsUpdateAccepted::from_value(
                raw.status,
                &raw.headers,
                value.into_inner(),
                raw.body,
                raw.truncated,
            )),
            // Anything else is classified from the raw reply, leniently.
            _ => classify(raw.status, raw.headers, raw.body, raw.truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_keys(keys: Vec<String>) -> UpdateCvmEnvsBody {
        UpdateCvmEnvsBody {
            encrypted_env: "ab".repeat(60),
            env_keys: Some(keys),
            compose_hash: None,
            transaction_hash: None,
        }
    }

    /// The first form of the field split: each known field removed, put back if of another type.
    fn split_by_removing(mut map: Map<String, Value>) -> (Vec<Option<Value>>, Map<String, Value>) {
        let mut taken = Vec::new();
        for (k, string) in
            [("status", true), ("message", true), ("correlation_id", true), ("allowed_envs_changed", false)]
        {
            taken.push(match map.remove(k) {
                Some(v) if (string && v.is_string()) || (!string && v.is_boolean()) => Some(v),
                Some(other) => {
                    map.insert(k.to_owned(), other);
                    None
                }
                None => None,
            });
        }
        (taken, map)
    }

    #[test]
    fn fields_are_split_as_by_removing_them() {
        let values = [Value::Null, Value::Bool(false), Value::from("s"), Value::from(1), serde_json::json!({"a": [1]})];
        let keys = ["status", "message", "correlation_id", "allowed_envs_changed", "other", "Status"];
        // Each key absent or holding each value, two keys at a time.
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i..] {
                for va in &values {
                    for vb in &values {
                        let mut map = Map::new();
                        map.insert((*a).to_owned(), va.clone());
                        map.insert((*b).to_owned(), vb.clone());
                        let body = Bytes::from(serde_json::to_vec(&map).unwrap());
                        let ok = EnvsUpdateAccepted::from_value(
                            StatusCode::ACCEPTED,
                            &HeaderMap::new(),
                            Value::Object(map.clone()),
                            body,
                            false,
                        );
                        let (taken, extra) = split_by_removing(map);
                        let got = [
                            ok.status.map(Value::from),
                            ok.message.map(Value::from),
                            ok.correlation_id.map(Value::from),
                            ok.allowed_envs_changed.map(Value::from),
                        ];
                        assert_eq!(got.to_vec(), taken, "{a}={va} {b}={vb}");
                        assert_eq!(ok.extra, extra, "{a}={va} {b}={vb}");
                    }
                }
            }
        }
    }

    #[test]
    fn env_keys_are_checked_in_order_on_short_and_long_lists() {
        for len in [2, SCAN_KEYS, SCAN_KEYS + 1, 3 * SCAN_KEYS] {
            let keys: Vec<String> = (0..len).map(|i| format!("K{i}")).collect();
            assert_eq!(check_request("cvm", &with_keys(keys.clone())), Ok(()), "{len}");

            // The first repeat is named, at its second place.
            let mut repeated = keys.clone();
            repeated[len - 1] = "K0".into();
            let e = check_request("cvm", &with_keys(repeated)).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.reason.as_str()),
                (&*format!("env_keys[{}]", len - 1), "\"K0\" is listed twice")
            );

            // An invalid name before a repeat is reported first.
            let mut both = keys.clone();
            both[1] = "1BAD".into();
            both[len - 1] = "K0".into();
            assert_eq!(check_request("cvm", &with_keys(both)).unwrap_err().field, "env_keys[1]");

            let mut invalid = keys;
            invalid[len - 1] = "A-B".into();
            let e = check_request("cvm", &with_keys(invalid)).unwrap_err();
            assert_eq!(e.field, format!("env_keys[{}]", len - 1));
            assert!(e.reason.contains("not a valid env name"), "{}", e.reason);
        }
    }
}
