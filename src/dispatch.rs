//! The one sending path. Every generated operation runs through progenitor's hooks here
//! ([`Hooks`]): the request timeout, the response-size cap, a tracing span named by the
//! operationId, request-id capture, and a copy of the raw reply for the caller. [`settle`]
//! turns a generated call's result and that copy into [`SdkError`], so that nothing the
//! server said is lost where progenitor's own `Error` drops it (a consumed error body, the
//! status of a success whose body did not parse).
//!
//! The copy travels in a task-local slot that [`capture`] opens around one call: the hooks
//! are shared by every call of a client, the slot belongs to one call only.

use std::cell::RefCell;
use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, StatusCode};
use progenitor_client::{ClientHooks, ClientInfo, OperationInfo, ResponseValue};
use tracing::Instrument;
use url::Url;

use crate::error::{HttpError, InvalidReply, SdkError, ServiceErrorKind, TransportError};
use crate::generated;
use crate::validate::InputError;

/// What the crate adds to every generated operation, as progenitor's client "inner type":
/// the request timeout and the response-size cap. Built by [`ClientBuilder`](crate::ClientBuilder);
/// the API key, `X-Phala-Version` and user agent are on the `reqwest::Client` itself.
#[derive(Debug, Clone)]
pub struct Hooks {
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_response_body: usize,
}

/// The reply as it came off the wire, before progenitor parsed it.
#[derive(Clone)]
pub(crate) struct RawReply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// The body exceeded the response-size cap: `body` is its first bytes.
    pub(crate) truncated: bool,
}

impl RawReply {
    fn into_http_error(self) -> HttpError {
        HttpError::new(self.status, self.headers, self.body, self.truncated)
    }
}

/// What the hooks saw of one call's reply.
pub(crate) enum Captured {
    /// The whole reply (its body possibly cut at the cap).
    Reply(RawReply),
    /// The head arrived, then reading the body failed.
    BrokenBody { status: StatusCode, headers: HeaderMap, partial: Bytes },
}

tokio::task_local! {
    static CAPTURE: RefCell<Option<Captured>>;
}

/// Puts what the hooks saw in the slot of the running [`capture`]; outside one (a call made
/// straight on `Client::api()`) there is no slot, and it is given back: the caller gets
/// progenitor's result alone.
fn record(captured: Captured) -> Option<Captured> {
    let mut captured = Some(captured);
    let _ = CAPTURE.try_with(|slot| *slot.borrow_mut() = captured.take());
    captured
}

fn clear() {
    let _ = CAPTURE.try_with(|slot| slot.borrow_mut().take());
}

/// Runs one generated call and returns its result with what the hooks saw of its reply.
///
/// A combinator, not an `async` block: an `async fn` awaiting an `async` block that awaits
/// `call` holds `call` three times over (the generated future is kilobytes, and each copy is
/// also moved), `Map` holds it once. Its closure runs inside the scope's poll, slot in reach.
pub(crate) fn capture<F: Future>(call: F) -> impl Future<Output = (F::Output, Option<Captured>)> {
    use futures_util::FutureExt;

    CAPTURE.scope(RefCell::new(None), call.map(|output| (output, CAPTURE.with(|slot| slot.borrow_mut().take()))))
}

/// A generated call's outcome with the raw reply: `Ok` for a 2xx (with the parsed value, or
/// progenitor's reason it did not parse), `Err` for everything else.
pub(crate) type Settled<T> = (Result<ResponseValue<T>, String>, RawReply);

/// Turns a generated call's result and the captured reply into the crate's error shape.
/// A non-2xx reply becomes `K` from the whole reply, whatever progenitor made of it.
pub(crate) fn settle<T, E, K: ServiceErrorKind>(
    result: Result<ResponseValue<T>, progenitor_client::Error<E>>,
    captured: Option<Captured>,
) -> Result<Settled<T>, SdkError<K>> {
    use progenitor_client::Error as Generated;
    match (captured, result) {
        (Some(Captured::Reply(raw)), _) if !raw.status.is_success() => {
            Err(SdkError::Service(K::from_reply(raw.into_http_error())))
        }
        (Some(Captured::Reply(raw)), _) if raw.truncated => {
            Ok((Err("the body exceeded the response-size cap".to_owned()), raw))
        }
        (Some(Captured::Reply(raw)), result) => {
            let parsed = result.map_err(|e| match e {
                Generated::InvalidResponsePayload(_, e) => e.to_string(),
                Generated::UnexpectedResponse(_) => "a success status the spec does not list".to_owned(),
                Generated::ResponseBodyError(e) => e.to_string(),
                _ => "the reply could not be read as the spec describes".to_owned(),
            });
            Ok((parsed, raw))
        }
        (Some(Captured::BrokenBody { status, headers, partial }), Err(Generated::CommunicationError(e))) => {
            Err(SdkError::from_transport(TransportError::reading_body(status, e).with_reply(headers, partial)))
        }
        (None, Err(Generated::CommunicationError(e))) => Err(SdkError::from_transport(TransportError::sending(e))),
        (None, Err(Generated::InvalidRequest(why) | Generated::Custom(why))) => {
            Err(SdkError::InvalidInput(InputError::new("request", why)))
        }
        // The hooks record every reply and every failure after the head, so these arise only
        // from a call that did not run through this client's hooks on this task: it may well
        // have been sent.
        (_, _) => Err(SdkError::Unobserved),
    }
}

// A header name made once: looked up by `&str`, a name is parsed on every lookup.
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The reply's `X-Request-ID` header.
pub(crate) fn header_request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok())
}

impl ClientHooks<Hooks> for generated::Client {
    /// Refuses a request whose path parameters moved it off its operation's path (a `.` or
    /// `..` value, which the URL parser resolves, or an empty one) and applies the request
    /// timeout. (progenitor's `api-version` header is taken out of the generated code by
    /// `build/generate.rs`: the service reads `X-Phala-Version`, set on the `reqwest::Client`.)
    async fn pre<E>(
        &self,
        request: &mut reqwest::Request,
        info: &OperationInfo,
    ) -> Result<(), progenitor_client::Error<E>> {
        if let Some(template) = operation_path(info.operation_id)
            && !on_template(request.url().path(), template)
        {
            return Err(progenitor_client::Error::InvalidRequest(format!(
                "a path parameter of {} is empty, `.` or `..`: the request would go to {} instead of {}",
                info.operation_id,
                request.url().path(),
                template
            )));
        }
        if request.timeout().is_none() {
            *request.timeout_mut() = self.inner().timeout;
        }
        Ok(())
    }

    /// Sends the request in a span named by the operationId, reads the body up to the cap,
    /// keeps a copy for `Client::send`, and hands progenitor the same reply. A body over the cap
    /// reaches progenitor as a body error, so it is refused on every path.
    ///
    /// A function returning the instrumented block, not an `async fn` awaiting it: that would
    /// hold the request twice (its parameter and the block's) in a future the generated one
    /// embeds. The block runs from the first poll, as the `async fn` body would.
    fn exec(
        &self,
        request: reqwest::Request,
        info: &OperationInfo,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> {
        let span = tracing::info_span!(
            "phala_cloud.request",
            otel.name = info.operation_id,
            operation_id = info.operation_id,
            method = %request.method(),
            status = tracing::field::Empty,
            request_id = tracing::field::Empty,
        );
        let cap = self.inner().max_response_body;
        async move {
            // A slot holds one call's reply: a call that fails before any reply leaves none.
            clear();
            let mut response = self.client().execute(request).await?;
            let status = response.status();
            // Taken, not cloned: reading the body needs no headers (its length hint is the
            // body's own), and the rebuilt reply gets them back.
            let headers = std::mem::take(response.headers_mut());
            let span = tracing::Span::current();
            span.record("status", status.as_u16());
            if let Some(id) = header_request_id(&headers) {
                span.record("request_id", id);
            }
            match read_capped(response, cap).await {
                Ok((body, truncated)) => {
                    tracing::debug!(bytes = body.len(), truncated, "reply read");
                    let reply = RawReply { status, headers, body: body.clone(), truncated };
                    // Inside `capture` the caller reads the headers from the kept copy, and
                    // progenitor's value (all it makes of a reply) is read without them: they
                    // are moved there, not cloned. Outside, progenitor's result is all there is.
                    let headers = match record(Captured::Reply(reply)) {
                        Some(Captured::Reply(reply)) => reply.headers,
                        _ => HeaderMap::new(),
                    };
                    Ok(rebuild(status, headers, body, truncated, cap))
                }
                Err((e, partial)) => {
                    tracing::debug!(bytes = partial.len(), "reply body broke off");
                    let _ = record(Captured::BrokenBody { status, headers, partial });
                    Err(e)
                }
            }
        }
        .instrument(span)
    }
}

/// The path template of the generated operation named `name`.
fn operation_path(name: &str) -> Option<&'static str> {
    let table = generated::OPERATION_PATHS_BY_NAME;
    table.binary_search_by(|(n, _)| (*n).cmp(name)).ok().map(|i| table[i].1)
}

/// `path` (after the base URL's own path) has the template's segments: its literals as
/// written, a non-empty segment for each `{parameter}`. Compared from the end, segment by
/// segment, as bytes, without collecting either.
fn on_template(path: &str, template: &str) -> bool {
    let mut have = segments_from_end(path);
    segments_from_end(template).all(|w| match have.next() {
        None => false,
        Some(h) if w.starts_with(b"{") && w.ends_with(b"}") => !h.is_empty(),
        Some(h) => w == h,
    })
}

/// The `/`-separated segments of `path` less its leading and trailing `/`s, last first (one
/// empty segment for a path of only `/`s).
fn segments_from_end(path: &str) -> impl Iterator<Item = &[u8]> {
    let bytes = path.as_bytes();
    let start = bytes.iter().position(|&b| b != b'/').unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| b != b'/').map_or(start, |last| last + 1);
    bytes[start..end].rsplit(|&b| b == b'/')
}

#[cfg(test)]
mod tests {
    use super::{on_template, operation_path, rebuild};
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, StatusCode};

    #[tokio::test]
    async fn a_rebuilt_reply_is_what_reqwest_makes_of_an_http_response() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("req-1"));
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        let mut plain = http::Response::new(reqwest::Body::from("{}"));
        *plain.status_mut() = StatusCode::ACCEPTED;
        *plain.headers_mut() = headers.clone();
        let plain = reqwest::Response::from(plain);

        let rebuilt = rebuild(StatusCode::ACCEPTED, headers, Bytes::from_static(b"{}"), false, 1024);
        assert_eq!(rebuilt.url(), plain.url());
        assert_eq!(rebuilt.status(), plain.status());
        assert_eq!(rebuilt.headers(), plain.headers());
        assert_eq!(rebuilt.content_length(), plain.content_length());
        assert_eq!(rebuilt.bytes().await.unwrap(), plain.bytes().await.unwrap());

        let cut = rebuild(StatusCode::OK, HeaderMap::new(), Bytes::from_static(b"{"), true, 1);
        let e = cut.bytes().await.unwrap_err();
        let mut why = Some(&e as &dyn std::error::Error);
        while let Some(inner) = why.and_then(std::error::Error::source) {
            why = Some(inner);
        }
        assert_eq!(why.unwrap().to_string(), "the response body exceeds the client's cap of 1 bytes");
    }

    #[test]
    fn every_generated_operation_is_found_by_name() {
        assert_eq!(crate::generated::OPERATION_PATHS_BY_NAME.len(), crate::GENERATED_OPERATIONS.len());
        for op in crate::GENERATED_OPERATIONS {
            assert_eq!(operation_path(op.name), Some(op.path), "{}", op.name);
        }
        assert_eq!(operation_path("no_such_operation"), None);
        assert_eq!(operation_path(""), None);
    }

    #[test]
    fn paths_stay_on_their_template() {
        assert!(on_template("/api/v1/cvms/abc", "/api/v1/cvms/{cvm_id}"));
        assert!(on_template("/proxy/api/v1/cvms/a%2Fb/envs", "/api/v1/cvms/{cvm_id}/envs"));
        // `..` resolved by the URL parser, `.` dropped, an empty parameter.
        assert!(!on_template("/api/v1/", "/api/v1/cvms/{cvm_id}"));
        assert!(!on_template("/api/v1/cvms/envs", "/api/v1/cvms/{cvm_id}/envs"));
        assert!(!on_template("/api/v1/cvms//envs", "/api/v1/cvms/{cvm_id}/envs"));
        assert!(!on_template("/api/v1/kms", "/api/v1/cvms/{cvm_id}"));
        // Shorter than the template; the template's trailing parameter empty; the root.
        assert!(!on_template("/cvms/abc", "/api/v1/cvms/{cvm_id}"));
        assert!(!on_template("/api/v1/cvms/", "/api/v1/cvms/{cvm_id}"));
        assert!(!on_template("/", "/api/v1/cvms/{cvm_id}"));
        assert!(on_template("/api/v1/cvms", "/api/v1/cvms"));
        assert!(on_template("/api/v1/cvms/", "/api/v1/cvms"));
    }

    /// The first form of `on_template`, collecting both paths' segments.
    fn on_template_collected(path: &str, template: &str) -> bool {
        let want: Vec<&str> = template.trim_matches('/').split('/').collect();
        let have: Vec<&str> = path.trim_matches('/').split('/').collect();
        let Some(tail) = have.len().checked_sub(want.len()).map(|start| &have[start..]) else {
            return false;
        };
        want.iter().zip(tail).all(|(w, h)| if w.starts_with('{') && w.ends_with('}') { !h.is_empty() } else { w == h })
    }

    #[test]
    fn on_template_agrees_with_collecting_the_segments() {
        // Every path and template of up to four segments over these.
        fn all(parts: &[&str]) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..4 {
                last = last.iter().flat_map(|p| parts.iter().map(move |s| format!("{p}/{s}"))).collect();
                out.extend(last.iter().cloned());
            }
            out
        }
        let paths = all(&["a", "b", "", "{p}", "//"]);
        let templates = all(&["a", "b", "{p}", "{q}"]);
        for path in &paths {
            for template in &templates {
                for path in [path.clone(), format!("{path}/")] {
                    assert_eq!(
                        on_template(&path, template),
                        on_template_collected(&path, template),
                        "{path:?} {template:?}"
                    );
                }
            }
        }
    }
}

/// The body exceeded the client's response-size cap.
#[derive(Debug, thiserror::Error)]
#[error("the response body exceeds the client's cap of {cap} bytes")]
struct BodyTooLarge {
    cap: usize,
}

/// The URL `reqwest` gives a `Response` built from an `http::Response` without one. Parsed
/// once: converting without a URL parses it again on every call.
static NO_URL: LazyLock<Url> = LazyLock::new(|| Url::parse("http://no.url.provided.local").expect("a valid URL"));

/// The reply again, for progenitor to parse; a body over the cap as a stream that fails.
fn rebuild(status: StatusCode, headers: HeaderMap, body: Bytes, truncated: bool, cap: usize) -> reqwest::Response {
    use reqwest::ResponseBuilderExt;

    let body = if truncated {
        let failing = futures_util::stream::once(async move { Err::<Bytes, _>(BodyTooLarge { cap }) });
        reqwest::Body::wrap_stream(failing)
    } else {
        reqwest::Body::from(body)
    };
    // The builder fails only on a status or header given in a form that does not convert:
    // none is given here.
    let (mut parts, ()) = http::Response::builder().url(NO_URL.clone()).body(()).unwrap_or_default().into_parts();
    parts.status = status;
    parts.headers = headers;
    reqwest::Response::from(http::Response::from_parts(parts, body))
}

/// Reads at most `cap` bytes of the body; a longer body is cut there and not read further.
/// On a failure, the error comes with the bytes read before it.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(Bytes, bool), (reqwest::Error, Bytes)> {
    // The server's Content-Length is a hint, not a promise: never reserve more than 64 KiB on
    // its word (a cap of usize::MAX would otherwise let it ask for any allocation).
    let hint = response.content_length().map_or(0, |n| n.min(cap as u64).min(64 * 1024) as usize);
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

/// A 2xx reply of a generated operation: the value the spec describes, with the reply it came
/// in (status, headers, raw body).
pub struct Reply<T> {
    value: T,
    raw: RawReply,
}

impl<T> Reply<T> {
    pub(crate) fn new(value: T, raw: RawReply) -> Self {
        Self { value, raw }
    }

    /// The parsed value.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The HTTP status (a 2xx).
    pub fn status(&self) -> StatusCode {
        self.raw.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.raw.headers
    }

    /// The request id from the `X-Request-ID` header.
    pub fn request_id(&self) -> Option<&str> {
        header_request_id(&self.raw.headers)
    }

    /// The body as received.
    pub fn raw_body(&self) -> &Bytes {
        &self.raw.body
    }
}

impl<T> std::ops::Deref for Reply<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.raw.status)
            .field("request_id", &self.request_id())
            .field("value", &self.value)
            .finish()
    }
}

/// A `PATCH` with a multipart body, which progenitor cannot generate, made as a generated
/// operation makes its request and sent through the same hooks (`pre`, `exec`, `post`: the
/// timeout, the response-size cap, the span named `operation_id`, the reply kept for
/// [`capture`]), so that [`Client::send_two_phase`](crate::Client::send_two_phase) settles it as
/// any operation. `path` is the path after the base URL, its parameters encoded already; its
/// success is the spec's 202 with a JSON body.
pub(crate) async fn multipart_patch(
    api: &generated::Client,
    operation_id: &'static str,
    path: String,
    headers: HeaderMap,
    form: reqwest::multipart::Form,
) -> Result<ResponseValue<serde_json::Value>, progenitor_client::Error<()>> {
    use progenitor_client::ClientInfo;

    let mut request = api
        .client()
        .patch(format!("{}{path}", api.baseurl()))
        .header(http::header::ACCEPT, http::HeaderValue::from_static("application/json"))
        .headers(headers)
        .multipart(form)
        .build()?;
    let info = OperationInfo { operation_id };
    api.pre(&mut request, &info).await?;
    let result = api.exec(request, &info).await;
    api.post(&result, &info).await?;
    let response = result?;
    match response.status().as_u16() {
        202 => ResponseValue::from_response(response).await,
        _ => Err(progenitor_client::Error::UnexpectedResponse(response)),
    }
}

impl crate::Client {
    /// Sends with `send` until it is not a 409 the client's
    /// [`ConflictRetry`](crate::ConflictRetry) retries (without one, once).
    pub(crate) async fn retrying_conflicts<T, K, F, Fut>(&self, mut send: F) -> Result<T, SdkError<K>>
    where
        K: ServiceErrorKind,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<K>>>,
    {
        let mut attempt = 1;
        loop {
            let result = send().await;
            let delay = match (&result, &self.inner.conflict_retry) {
                (Err(SdkError::Service(kind)), Some(policy)) if kind.reply().status() == StatusCode::CONFLICT => {
                    policy.delay(attempt, kind.reply().retry_after(), rand::random::<f64>())
                }
                _ => None,
            };
            let Some(delay) = delay else { return result };
            tracing::info!(attempt, ?delay, "409: another operation is running; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Runs one generated operation of [`api()`](crate::Client::api) and returns its value
    /// with the reply, or an [`SdkError`] that keeps everything the server said:
    ///
    /// ```no_run
    /// # async fn run(client: phala_cloud::Client) -> Result<(), phala_cloud::SdkError> {
    /// let cvm = client.send(|api| api.handle_get_cvm("my-cvm-id")).await?;
    /// println!("{:?} (request id {:?})", cvm.status(), cvm.request_id());
    /// # Ok(()) }
    /// ```
    ///
    /// Calling `client.api().op(…)` directly sends the same request through the same hooks,
    /// with progenitor's `Error` as the result: a body over the cap fails there too, but an
    /// error reply's raw body and a success's status on a parse failure are only kept here.
    pub async fn send<'a, T, E, F, Fut>(&'a self, call: F) -> Result<Reply<T>, SdkError<HttpError>>
    where
        F: FnOnce(&'a generated::Client) -> Fut,
        Fut: Future<Output = Result<ResponseValue<T>, progenitor_client::Error<E>>>,
    {
        self.send_as(call).await
    }

    /// As [`send`](Self::send), for an operation whose responses include 465 (one of
    /// [`TWO_PHASE_OPERATIONS`](crate::TWO_PHASE_OPERATIONS)): its error replies are
    /// [`TwoPhaseKind`](crate::TwoPhaseKind), a 465 with its phase-1 data read as the env
    /// update reads it (`SdkError::phase1`).
    pub async fn send_two_phase<'a, T, E, F, Fut>(&'a self, call: F) -> Result<Reply<T>, SdkError<crate::TwoPhaseKind>>
    where
        F: FnOnce(&'a generated::Client) -> Fut,
        Fut: Future<Output = Result<ResponseValue<T>, progenitor_client::Error<E>>>,
    {
        self.send_as(call).await
    }

    /// One generated call, its error replies as the kind `K`.
    async fn send_as<'a, K, T, E, F, Fut>(&'a self, call: F) -> Result<Reply<T>, SdkError<K>>
    where
        K: ServiceErrorKind,
        F: FnOnce(&'a generated::Client) -> Fut,
        Fut: Future<Output = Result<ResponseValue<T>, progenitor_client::Error<E>>>,
    {
        let (result, captured) = capture(call(self.api())).await;
        let (parsed, raw) = settle(result, captured)?;
        match parsed {
            Ok(value) => Ok(Reply::new(value.into_inner(), raw)),
            Err(reason) => {
                Err(SdkError::InvalidReply(InvalidReply::new(raw.status, raw.headers, raw.body, raw.truncated, reason)))
            }
        }
    }
}
