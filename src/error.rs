//! What every operation's errors share: one shape, [`SdkError`], for any call: input refused
//! before sending, a failure below HTTP split by whether the request may have reached the
//! server ([`TransportError`]), a success reply that does not match the spec
//! ([`InvalidReply`]), or a service reply with an error status, kept whole ([`HttpError`],
//! with the envelopes Phala Cloud uses, [`ErrorEnvelope`]) under an operation's typed kind.
//!
//! An operation the handwritten layer models has its own kind (`UpdateEnvsKind` for
//! `PATCH /api/v1/cvms/{cvm_id}/envs`); every other operation's kind is the [`HttpError`]
//! itself. A kind is anything that implements [`ServiceErrorKind`]: the plumbing (what was
//! sent, what came back) is shared, only the mapping of a reply to a kind is per operation.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::dispatch::RawReply;
use crate::types::ValidationError;
use crate::validate::InputError;

/// The error of any call: [`Client::send`](crate::Client::send) over a generated operation
/// gives `SdkError<HttpError>`; an operation the handwritten layer models gives its own kind
/// `K` (e.g. [`UpdateEnvsError`](crate::UpdateEnvsError) is `SdkError<UpdateEnvsKind>`).
///
/// The variants keep apart what a caller must treat differently: nothing was sent
/// ([`InvalidInput`](Self::InvalidInput), [`NotSent`](Self::NotSent)); the request may have
/// been acted on without a reply saying so ([`MaybeSent`](Self::MaybeSent),
/// [`InvalidReply`](Self::InvalidReply)); the service answered with an error status
/// ([`Service`](Self::Service), raw reply kept).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdkError<K = HttpError> {
    /// The request was refused before sending (nothing was sent).
    #[error(transparent)]
    InvalidInput(#[from] InputError),
    /// The request failed before it was sent: safe to send again.
    #[error(transparent)]
    NotSent(TransportError),
    /// The request failed after it may have reached the server (connection broke, timeout,
    /// reply cut off): the server may have acted on it.
    #[error(transparent)]
    MaybeSent(TransportError),
    /// A 2xx reply whose body is not what the spec says (or exceeded the response-size cap):
    /// the server accepted the request, so it may have acted on it.
    #[error(transparent)]
    InvalidReply(InvalidReply),
    /// The service answered with an error status; the kind says which, the reply is kept.
    #[error("{0}")]
    Service(K),
    /// The call given to [`Client::send`](crate::Client::send) ran outside this client's
    /// hooks (on another task, or through another client), so its reply was not seen: it may
    /// have been sent and acted on.
    #[error(
        "the call's reply was not seen by this client (make one call of the given `api` inside send); it may have been sent"
    )]
    Unobserved,
}

/// How an operation names its error replies: built from the whole reply, and giving it back.
/// [`HttpError`] is its own kind, for the operations without a handwritten model.
pub trait ServiceErrorKind: Sized {
    /// The kind of a reply with a non-2xx status.
    fn from_reply(reply: HttpError) -> Self;
    /// The reply the kind was made from.
    fn reply(&self) -> &HttpError;
}

impl ServiceErrorKind for HttpError {
    fn from_reply(reply: HttpError) -> Self {
        reply
    }

    fn reply(&self) -> &HttpError {
        self
    }
}

impl<K: ServiceErrorKind> SdkError<K> {
    pub(crate) fn from_transport(e: TransportError) -> Self {
        match e.delivery() {
            Delivery::NotSent => Self::NotSent(e),
            Delivery::MaybeSent => Self::MaybeSent(e),
        }
    }

    /// The service's kind of error, when the service answered with an error status.
    pub fn kind(&self) -> Option<&K> {
        match self {
            Self::Service(k) => Some(k),
            _ => None,
        }
    }

    /// The HTTP error reply, when the service answered with an error status.
    pub fn http(&self) -> Option<&HttpError> {
        self.kind().map(K::reply)
    }

    /// The HTTP status, when a reply (or its head) arrived.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::InvalidInput(_) | Self::Unobserved => None,
            Self::NotSent(t) | Self::MaybeSent(t) => t.status(),
            Self::InvalidReply(r) => Some(r.status()),
            Self::Service(k) => Some(k.reply().status()),
        }
    }

    /// The request id (body `request_id`, else header `X-Request-ID`; for a reply cut off
    /// after its head, the header).
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::InvalidInput(_) | Self::Unobserved => None,
            Self::NotSent(t) | Self::MaybeSent(t) => t.request_id(),
            Self::InvalidReply(r) => r.request_id(),
            Self::Service(k) => k.reply().request_id(),
        }
    }

    /// The raw body bytes of the reply (an error reply's, or an invalid success reply's).
    pub fn raw_body(&self) -> Option<&Bytes> {
        match self {
            Self::InvalidReply(r) => Some(r.raw_body()),
            _ => self.http().map(HttpError::raw_body),
        }
    }

    /// The parsed error envelope of an error reply.
    pub fn envelope(&self) -> Option<&ErrorEnvelope> {
        self.http().map(HttpError::envelope)
    }

    /// Refused before sending.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::InvalidInput(_))
    }

    /// Failed before sending.
    pub fn is_not_sent(&self) -> bool {
        matches!(self, Self::NotSent(_))
    }

    /// Failed after it may have been sent.
    pub fn is_maybe_sent(&self) -> bool {
        matches!(self, Self::MaybeSent(_))
    }

    /// A 2xx reply that does not match the spec.
    pub fn is_invalid_reply(&self) -> bool {
        matches!(self, Self::InvalidReply(_))
    }

    /// The service answered with an error status.
    pub fn is_service(&self) -> bool {
        matches!(self, Self::Service(_))
    }

    /// The server may have acted on the request although no reply says it did: a transport
    /// failure after sending, a 2xx reply that could not be read, a call whose reply was not
    /// seen, or a gateway's 502/504 (the service behind it may have acted before the gateway
    /// gave up).
    pub fn may_have_been_applied(&self) -> bool {
        let gateway = self.http().is_some_and(|h| matches!(h.status().as_u16(), 502 | 504));
        self.is_maybe_sent() || self.is_invalid_reply() || matches!(self, Self::Unobserved) || gateway
    }
}

/// A 2xx reply whose body does not parse as the operation's success type in the spec, or
/// that exceeded the response-size cap. Status, headers and raw body are kept.
///
/// Boxed inside, like [`HttpError`], so that error enums holding it stay small.
#[derive(Clone)]
pub struct InvalidReply(Box<InvalidReplyParts>);

#[derive(Clone)]
struct InvalidReplyParts {
    reply: RawReply,
    reason: String,
}

/// The accessors of a kept reply, the same on [`HttpError`] and [`InvalidReply`] (each holds
/// its [`RawReply`] as `self.0.reply`).
macro_rules! reply_accessors {
    () => {
        /// The HTTP status.
        pub fn status(&self) -> StatusCode {
            self.0.reply.status
        }

        /// The response headers.
        pub fn headers(&self) -> &HeaderMap {
            &self.0.reply.headers
        }

        /// The body as received (its first bytes only when [`body_truncated`](Self::body_truncated)).
        pub fn raw_body(&self) -> &Bytes {
            &self.0.reply.body
        }

        /// The body was longer than the client's response-size cap and was not read to its end.
        pub fn body_truncated(&self) -> bool {
            self.0.reply.truncated
        }
    };
}

impl InvalidReply {
    pub(crate) fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        body_truncated: bool,
        reason: String,
    ) -> Self {
        Self(Box::new(InvalidReplyParts {
            reply: RawReply { status, headers, body, truncated: body_truncated },
            reason,
        }))
    }

    reply_accessors!();

    /// The `X-Request-ID` header.
    pub fn request_id(&self) -> Option<&str> {
        crate::dispatch::header_request_id(&self.0.reply.headers)
    }

    /// Why the body was not accepted (the parser's message; it may quote part of the body).
    pub fn reason(&self) -> &str {
        &self.0.reason
    }
}

impl fmt::Display for InvalidReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the HTTP {} reply ", self.status().as_u16())?;
        if self.body_truncated() {
            f.write_str("exceeded the response-size cap")?;
        } else {
            f.write_str("does not match the API spec (is the base URL the Phala Cloud API?)")?;
        }
        f.write_str("; the server accepted the request and may have acted on it")
    }
}

impl fmt::Debug for InvalidReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidReply")
            .field("status", &self.status())
            .field("request_id", &self.request_id())
            .field("body_len", &self.raw_body().len())
            .field("body_truncated", &self.body_truncated())
            .finish()
    }
}

impl std::error::Error for InvalidReply {}

/// An HTTP reply with a status other than 2xx, kept whole: status, headers, the raw body bytes
/// and, where the body is one of the known envelopes, its parsed form.
///
/// Boxed inside, so that error enums holding it stay small.
#[derive(Clone)]
pub struct HttpError(Box<HttpErrorParts>);

#[derive(Clone)]
struct HttpErrorParts {
    reply: RawReply,
    envelope: ErrorEnvelope,
    body_request_id: Option<String>,
}

impl HttpError {
    /// Builds the error from a reply. `body_truncated` says the body was longer than the
    /// client's cap and `body` holds its first bytes only.
    pub fn new(status: StatusCode, headers: HeaderMap, body: Bytes, body_truncated: bool) -> Self {
        let (envelope, body_request_id) = if body_truncated {
            (ErrorEnvelope::Unrecognized, None)
        } else {
            ErrorEnvelope::parse_with_request_id(&body)
        };
        let reply = RawReply { status, headers, body, truncated: body_truncated };
        Self(Box::new(HttpErrorParts { reply, envelope, body_request_id }))
    }

    reply_accessors!();

    /// The parsed body, where it is a known envelope.
    pub fn envelope(&self) -> &ErrorEnvelope {
        &self.0.envelope
    }

    /// The request id: the body's `request_id`, else the `X-Request-ID` header.
    pub fn request_id(&self) -> Option<&str> {
        self.0
            .body_request_id
            .as_deref()
            .or_else(|| self.0.reply.headers.get("x-request-id").and_then(|v| v.to_str().ok()))
    }

    /// The `error_code` of a StructuredError body (e.g. `ERR-01-005`).
    pub fn error_code(&self) -> Option<&str> {
        match &self.0.envelope {
            ErrorEnvelope::Structured(s) => s.error_code.as_deref(),
            _ => None,
        }
    }

    /// The server's message: StructuredError `message`, FastAPI `detail` text, or the first
    /// validation message.
    pub fn message(&self) -> Option<&str> {
        match &self.0.envelope {
            ErrorEnvelope::Structured(s) => s.message.as_deref(),
            ErrorEnvelope::Detail(d) => Some(d),
            ErrorEnvelope::Validation(v) => v.first().map(|e| e.msg.as_str()),
            ErrorEnvelope::Unrecognized => None,
        }
    }

    /// The delay asked for by `Retry-After` (seconds or an HTTP date), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.0.reply.headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let at = httpdate::parse_http_date(value).ok()?;
        Some(at.duration_since(SystemTime::now()).unwrap_or_default())
    }
}

/// `HTTP 404: CVM not found`, `HTTP 465 ERR-01-005: Compose hash registration required`.
impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.0.reply.status.as_u16())?;
        if let Some(code) = self.error_code() {
            // The code comes from the body as much as the message does: one line, bounded.
            write!(f, " {}", one_line(code))?;
        }
        if let Some(message) = self.message() {
            write!(f, ": {}", one_line(message))?;
        } else if let Some(reason) = self.0.reply.status.canonical_reason() {
            write!(f, " {reason}")?;
        }
        if let ErrorEnvelope::Validation(issues) = &self.0.envelope
            && issues.len() > 1
        {
            write!(f, " (and {} more)", issues.len() - 1)?;
        }
        Ok(())
    }
}

impl fmt::Debug for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpError")
            .field("status", &self.0.reply.status)
            .field("request_id", &self.request_id())
            .field("envelope", &self.0.envelope)
            .field("body_len", &self.0.reply.body.len())
            .field("body_truncated", &self.0.reply.truncated)
            .finish()
    }
}

/// Collapses a server message to one line of bounded length for `Display`, with control
/// characters (a terminal escape sequence, say) shown as U+FFFD rather than acted on.
fn one_line(s: &str) -> String {
    const MAX: usize = 300;
    let words: Vec<_> = s.split_whitespace().collect();
    let mut out: String =
        words.join(" ").chars().map(|c| if c.is_control() { char::REPLACEMENT_CHARACTER } else { c }).collect();
    if out.len() > MAX {
        let cut = (0..=MAX).rev().find(|i| out.is_char_boundary(*i)).unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// The error bodies Phala Cloud sends.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ErrorEnvelope {
    /// `{"error_code","message","request_id","details","suggestions","links"}`.
    Structured(StructuredError),
    /// FastAPI's `{"detail": "text"}`.
    Detail(String),
    /// FastAPI's validation list `{"detail": [{"loc","msg","type"}]}`, parsed into the
    /// spec's `ValidationError`.
    Validation(Vec<ValidationError>),
    /// Empty, not JSON, truncated, or JSON of another shape: only the raw body is kept.
    Unrecognized,
}

impl ErrorEnvelope {
    /// Parses a body; never fails, an unknown body gives [`ErrorEnvelope::Unrecognized`].
    pub fn parse(body: &[u8]) -> Self {
        Self::parse_with_request_id(body).0
    }

    /// Parses a body and reads its top-level `request_id`, whatever the envelope.
    fn parse_with_request_id(body: &[u8]) -> (Self, Option<String>) {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            return (Self::Unrecognized, None);
        };
        let request_id = map.get("request_id").and_then(Value::as_str).map(str::to_owned);
        (Self::from_object(map), request_id)
    }

    fn from_object(mut map: Map<String, Value>) -> Self {
        match map.remove("detail") {
            Some(Value::String(text)) => return Self::Detail(text),
            Some(list @ Value::Array(_)) => {
                if let Ok(issues) = serde_json::from_value::<Vec<ValidationError>>(list) {
                    return Self::Validation(issues);
                }
                return Self::Unrecognized;
            }
            Some(other) => {
                map.insert("detail".into(), other);
            }
            None => {}
        }
        let has_text = |k: &str| map.get(k).is_some_and(Value::is_string);
        if (has_text("error_code") || has_text("message"))
            && let Ok(s) = serde_json::from_value::<StructuredError>(Value::Object(map))
        {
            return Self::Structured(s);
        }
        Self::Unrecognized
    }
}

/// Phala Cloud's structured error body. Every field is optional so that a body that differs
/// from the documented shape still parses; fields the crate does not know are in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StructuredError {
    /// E.g. `ERR-01-005`.
    pub error_code: Option<String>,
    /// Human-readable message.
    pub message: Option<String>,
    /// Server-side request id.
    pub request_id: Option<String>,
    /// Field-level details. For 465 they carry the phase-1 data.
    pub details: Vec<ErrorDetail>,
    /// What the server suggests doing.
    pub suggestions: Vec<String>,
    /// Documentation links.
    pub links: Vec<ErrorLink>,
    /// Top-level fields not listed above (older servers put the 465 data here).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One entry of [`StructuredError::details`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ErrorDetail {
    /// The field the detail is about.
    pub field: Option<String>,
    /// Its value (any JSON).
    pub value: Value,
    /// What is wrong with it.
    pub message: Option<String>,
}

/// One entry of [`StructuredError::links`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ErrorLink {
    /// Where.
    pub url: Option<String>,
    /// Its title.
    pub label: Option<String>,
}

/// Whether a request that failed below HTTP reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The request never left the client (no connection, or it could not be built): it is
    /// safe to send it again.
    NotSent,
    /// The request may have reached the server (the connection broke, a timeout fired, or the
    /// reply was cut off): the server may have acted on it.
    MaybeSent,
}

/// A failure below HTTP: connection, timeout, or an unreadable reply.
///
/// When the reply's head arrived before the failure (the body was cut off or timed out), its
/// status, headers and the body bytes received so far are kept.
pub struct TransportError {
    delivery: Delivery,
    status: Option<StatusCode>,
    /// The head's headers and the body bytes read before the failure.
    reply: Option<Box<(HeaderMap, Bytes)>>,
    source: reqwest::Error,
}

impl TransportError {
    /// Classifies a reqwest error raised while sending (no status yet).
    pub(crate) fn sending(source: reqwest::Error) -> Self {
        let delivery = if source.is_connect() || source.is_builder() { Delivery::NotSent } else { Delivery::MaybeSent };
        Self { delivery, status: None, reply: None, source }
    }

    /// A reply whose status arrived but whose body could not be read to its end.
    pub(crate) fn reading_body(status: StatusCode, source: reqwest::Error) -> Self {
        Self { delivery: Delivery::MaybeSent, status: Some(status), reply: None, source }
    }

    /// Keeps the headers of the reply whose body broke, and the body bytes read before it did.
    pub(crate) fn with_reply(mut self, headers: HeaderMap, partial_body: Bytes) -> Self {
        self.reply = Some(Box::new((headers, partial_body)));
        self
    }

    /// Whether the request may have reached the server.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// The status, when the reply's head arrived before the failure.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The reply's headers, when its head arrived before the failure.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.reply.as_ref().map(|r| &r.0)
    }

    /// The body bytes received before the failure, when the reply's head arrived (possibly
    /// empty; never more than the client's response-size cap).
    pub fn partial_body(&self) -> Option<&Bytes> {
        self.reply.as_ref().map(|r| &r.1)
    }

    /// The `X-Request-ID` header of the reply, when its head arrived before the failure.
    pub fn request_id(&self) -> Option<&str> {
        self.headers()?.get("x-request-id")?.to_str().ok()
    }

    /// A timeout fired (connect or request).
    pub fn is_timeout(&self) -> bool {
        self.source.is_timeout()
    }
}

/// Like [`HttpError`]'s: the body's length, not its bytes.
impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportError")
            .field("delivery", &self.delivery)
            .field("status", &self.status)
            .field("request_id", &self.request_id())
            .field("partial_body_len", &self.partial_body().map(Bytes::len))
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.is_timeout() { "timed out" } else { "failed" };
        match (self.delivery, self.status) {
            (Delivery::NotSent, _) => write!(f, "request {what} before it was sent"),
            (Delivery::MaybeSent, Some(status)) => {
                write!(f, "reading the HTTP {} reply {what}; the server received the request", status.as_u16())
            }
            (Delivery::MaybeSent, None) => write!(f, "request {what}; it may have reached the server"),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        assert_eq!(ErrorEnvelope::parse(br#"{"detail":"nope"}"#), ErrorEnvelope::Detail("nope".into()));
        let v = ErrorEnvelope::parse(br#"{"detail":[{"loc":["body",0],"msg":"m","type":"t"}]}"#);
        assert!(matches!(v, ErrorEnvelope::Validation(ref issues) if issues.len() == 1 && issues[0].msg == "m"));
        assert_eq!(ErrorEnvelope::parse(br#"{"detail":[{"msg":1}]}"#), ErrorEnvelope::Unrecognized);
        assert_eq!(ErrorEnvelope::parse(b""), ErrorEnvelope::Unrecognized);
        assert_eq!(ErrorEnvelope::parse(b"<html>"), ErrorEnvelope::Unrecognized);
        assert_eq!(ErrorEnvelope::parse(br#"{"error_code":"E""#), ErrorEnvelope::Unrecognized);
        assert_eq!(ErrorEnvelope::parse(br#"[1]"#), ErrorEnvelope::Unrecognized);
        assert_eq!(ErrorEnvelope::parse(br#"{"error_code":5}"#), ErrorEnvelope::Unrecognized);
        let ErrorEnvelope::Structured(s) =
            ErrorEnvelope::parse(br#"{"error_code":"E","details":[{"field":"f","value":1}],"x":2}"#)
        else {
            panic!("structured");
        };
        assert_eq!(s.error_code.as_deref(), Some("E"));
        assert_eq!(s.details[0].value, 1);
        assert_eq!(s.extra["x"], 2);
        // Wrong field types inside a structured body: not a panic, not structured.
        assert_eq!(ErrorEnvelope::parse(br#"{"message":"m","details":"oops"}"#), ErrorEnvelope::Unrecognized);
    }

    #[test]
    fn display_is_one_line_and_bounded() {
        let long = format!(r#"{{"detail":"a\nb {}"}}"#, "x".repeat(1000));
        let e = HttpError::new(StatusCode::NOT_FOUND, HeaderMap::new(), Bytes::from(long), false);
        let shown = e.to_string();
        assert!(shown.starts_with("HTTP 404: a b xxx"));
        assert!(!shown.contains('\n'));
        assert!(shown.len() < 320);
        let body = Bytes::from_static(b"{\"error_code\":\"E\\u001b[2J\\nX\",\"message\":\"\\u001b]0;title\\u0007m\"}");
        let e = HttpError::new(StatusCode::CONFLICT, HeaderMap::new(), body, false);
        assert_eq!(e.to_string(), "HTTP 409 E\u{fffd}[2J X: \u{fffd}]0;title\u{fffd}m");
        let e = HttpError::new(StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::from_static(b"<html>"), false);
        assert_eq!(e.to_string(), "HTTP 502 Bad Gateway");
        let body = Bytes::from_static(br#"{"detail":"d","request_id":"rid"}"#);
        assert_eq!(HttpError::new(StatusCode::NOT_FOUND, HeaderMap::new(), body, false).request_id(), Some("rid"));
    }

    #[test]
    fn retry_after_forms() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        let e = HttpError::new(StatusCode::CONFLICT, headers, Bytes::new(), false);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let mut headers = HeaderMap::new();
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        headers.insert(http::header::RETRY_AFTER, later.parse().unwrap());
        let e = HttpError::new(StatusCode::CONFLICT, headers, Bytes::new(), false);
        let d = e.retry_after().unwrap();
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30), "{d:?}");
    }
}
