//! Odd replies, byte-exact, against the real client over real HTTP on loopback: statuses the
//! spec does not list, informational heads, empty, huge, non-UTF-8, HTML and wrongly shaped
//! bodies, and bodies cut off mid-stream. Each row states the exact outcome: variant, status
//! and raw body.

use crate::support;

use phala_cloud::{Client, ConflictRetry, ErrorEnvelope, UpdateEnvsError};
use std::time::{Duration, Instant};
use support::{Reply, ScriptedServer, body, cat, response};

const CVM: &str = "cvm-123";
/// The response-size cap of every client here.
const CAP: usize = 4096;
/// A body far larger than the cap, announced but never sent whole.
const ONE_GIB: u64 = 1 << 30;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/responses/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn client(base: &str) -> Client {
    Client::builder()
        .base_url(base)
        .api_key("test-api-key")
        .max_response_body(CAP)
        .timeout(Some(Duration::from_secs(5)))
        // A retry policy is set: it must still retry nothing but a 409.
        .retry_on_conflict(ConflictRetry {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        })
        .build()
        .unwrap()
}

type Check = fn(&UpdateEnvsError) -> bool;

/// What a row must give.
enum Expect {
    /// `Ok` with this status and exactly this raw body; `true` if cut at the cap.
    Ok(u16, Vec<u8>, bool),
    /// This error variant with this status and exactly this raw body; `true` if cut at the cap.
    Http(Check, u16, Vec<u8>, bool),
    /// `InvalidReply`: a 2xx other than 202 that does not prove acceptance (no JSON object
    /// with a `correlation_id`), with this status and exactly this raw body.
    Invalid(u16, Vec<u8>),
    /// `MaybeSent`: the head (with this status, if any) arrived and then the reply broke;
    /// the body bytes that did arrive are kept.
    Cut(Option<u16>, Vec<u8>),
}

struct Row {
    name: &'static str,
    act: Reply,
    expect: Expect,
}

fn row(name: &'static str, act: Reply, expect: Expect) -> Row {
    Row { name, act, expect }
}

fn send(bytes: Vec<u8>) -> Reply {
    Reply::Raw(bytes)
}

fn unexpected(status: u16, body: &[u8]) -> Expect {
    Expect::Http(UpdateEnvsError::is_unexpected_status, status, body.to_vec(), false)
}

/// `n` bytes of a repeating pattern, and the same pattern as a stream chunk.
fn pattern(n: usize) -> Vec<u8> {
    b"0123456789abcdef".iter().copied().cycle().take(n).collect()
}

/// The first `n` bytes of an endless chunked body whose chunks each carry `chunk`.
fn chunked_stream(chunk: &[u8]) -> Vec<u8> {
    cat(&[format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"])
}

fn rows() -> Vec<Row> {
    let html = fixture("502_gateway.html");
    let p465 = fixture("465_structured.json");
    let j409 = fixture("409_detail.json");
    let accepted = fixture("202_in_progress.json");
    let not_utf8: &[u8] = b"\xff\xfe{\"detail\":\"\xc3\x28 bad \xa0\xa1\"}\x80";
    let utf16: Vec<u8> = "{\"detail\":\"x\"}".encode_utf16().flat_map(u16::to_le_bytes).collect();
    vec![
        // --- 2xx that the spec does not list: success, whatever the body.
        row("200 with HTML", send(response(200, &[], &html)), Expect::Invalid(200, html.clone())),
        row("201 empty", send(response(201, &[], b"")), Expect::Invalid(201, vec![])),
        row(
            "203 non-authoritative JSON",
            send(response(203, &[("content-type", "application/json")], &accepted)),
            Expect::Ok(203, accepted.clone(), false),
        ),
        row("204 no content", send(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()), Expect::Invalid(204, vec![])),
        row(
            "204 that claims a body: HTTP says it has none",
            send(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello".to_vec()),
            Expect::Invalid(204, vec![]),
        ),
        row("205 reset content", send(response(205, &[], b"")), Expect::Invalid(205, vec![])),
        row(
            "206 partial content",
            send(response(206, &[("content-range", "bytes 0-3/99")], b"{\"st")),
            Expect::Invalid(206, b"{\"st".to_vec()),
        ),
        row(
            "299 unknown success, not UTF-8",
            send(response(299, &[], not_utf8)),
            Expect::Invalid(299, not_utf8.to_vec()),
        ),
        row(
            "202 chunked with a trailer",
            send(
                b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n\
                5\r\n{\"a\":\r\n3\r\n1}\n\r\n0\r\nx-trailer: t\r\n\r\n"
                    .to_vec(),
            ),
            Expect::Ok(202, b"{\"a\":1}\n".to_vec(), false),
        ),
        row(
            "202 HTTP/1.0, body delimited by close",
            send(cat(&[b"HTTP/1.0 202 Accepted\r\n\r\n", &accepted])),
            Expect::Ok(202, accepted.clone(), false),
        ),
        row(
            "202 content-encoding gzip on a plain body: bytes kept as sent",
            send(response(202, &[("content-encoding", "gzip")], &accepted)),
            Expect::Ok(202, accepted.clone(), false),
        ),
        // --- informational heads: hyper skips them and reads the final reply.
        row(
            "100 Continue, then 404",
            send(cat(&[b"HTTP/1.1 100 Continue\r\n\r\n", &response(404, &[], b"{\"detail\":\"CVM not found\"}")])),
            Expect::Http(UpdateEnvsError::is_not_found, 404, b"{\"detail\":\"CVM not found\"}".to_vec(), false),
        ),
        row(
            "103 Early Hints, then 202",
            send(cat(&[b"HTTP/1.1 103 Early Hints\r\nlink: </x>; rel=preload\r\n\r\n", &response(202, &[], b"{}")])),
            Expect::Ok(202, b"{}".to_vec(), false),
        ),
        // --- 3xx: never followed (the API key must not go elsewhere).
        row("300 without Location", send(response(300, &[], b"choose")), unexpected(300, b"choose")),
        row(
            "301 to another host",
            send(response(301, &[("location", "http://127.0.0.2:9/elsewhere")], b"")),
            unexpected(301, b""),
        ),
        row(
            "307 to the same server",
            send(response(307, &[("location", "/api/v1/cvms/other/envs")], b"moved")),
            unexpected(307, b"moved"),
        ),
        row("304 not modified", send(b"HTTP/1.1 304 Not Modified\r\n\r\n".to_vec()), unexpected(304, b"")),
        // --- 4xx the spec does not list.
        row(
            "400 with a FastAPI detail",
            send(response(400, &[], b"{\"detail\":\"bad\"}")),
            unexpected(400, b"{\"detail\":\"bad\"}"),
        ),
        row("402", send(response(402, &[], b"pay")), unexpected(402, b"pay")),
        row(
            "405 with Allow, text body",
            send(response(405, &[("allow", "GET")], b"Method Not Allowed")),
            unexpected(405, b"Method Not Allowed"),
        ),
        row("410 gone, empty", send(response(410, &[], b"")), unexpected(410, b"")),
        row("413 from a proxy, HTML", send(response(413, &[], &html)), unexpected(413, &html)),
        row("418", send(response(418, &[], b"I'm a teapot")), unexpected(418, b"I'm a teapot")),
        row(
            "429 with Retry-After: not retried",
            send(response(429, &[("retry-after", "1")], b"{\"detail\":\"slow down\"}")),
            unexpected(429, b"{\"detail\":\"slow down\"}"),
        ),
        row("451", send(response(451, &[], b"")), unexpected(451, b"")),
        row("464 with a 465 body: no phase-1 data", send(response(464, &[], &p465)), unexpected(464, &p465)),
        row(
            "469",
            send(response(469, &[], b"{\"error_code\":\"ERR-01-009\"}")),
            unexpected(469, b"{\"error_code\":\"ERR-01-009\"}"),
        ),
        row("499 from nginx", send(response(499, &[], b"")), unexpected(499, b"")),
        // --- 5xx the spec does not list.
        row("501", send(response(501, &[], b"Not Implemented")), unexpected(501, b"Not Implemented")),
        row("502 with HTML", send(response(502, &[("content-type", "text/html")], &html)), unexpected(502, &html)),
        row("503 with Retry-After", send(response(503, &[("retry-after", "120")], b"")), unexpected(503, b"")),
        row("504 with HTML", send(response(504, &[], &html)), unexpected(504, &html)),
        row("599", send(response(599, &[], not_utf8)), unexpected(599, not_utf8)),
        row("600: beyond 599, still a status", send(response(600, &[], b"?")), unexpected(600, b"?")),
        // --- mapped statuses with odd bodies and heads.
        row(
            "404 with an empty reason phrase",
            send(b"HTTP/1.1 404 \r\ncontent-length: 2\r\n\r\n{}".to_vec()),
            Expect::Http(UpdateEnvsError::is_not_found, 404, b"{}".to_vec(), false),
        ),
        row(
            "465 with a non-ASCII reason phrase and a non-UTF-8 body",
            send(cat(&[b"HTTP/1.1 465 R\xe9gistre\r\ncontent-length: 12\r\n\r\n", not_utf8])),
            Expect::Http(UpdateEnvsError::is_registration_required, 465, not_utf8[..12].to_vec(), false),
        ),
        row(
            "409 with JSON of the wrong shape",
            send(response(409, &[("retry-after", "0")], b"[1,2,3]")),
            Expect::Http(UpdateEnvsError::is_conflict, 409, b"[1,2,3]".to_vec(), false),
        ),
        row(
            "422 whose detail is an object",
            send(response(422, &[], b"{\"detail\":{\"loc\":1}}")),
            Expect::Http(UpdateEnvsError::is_validation, 422, b"{\"detail\":{\"loc\":1}}".to_vec(), false),
        ),
        row(
            "500 in UTF-16",
            send(response(500, &[("content-type", "application/json; charset=utf-16")], &utf16)),
            Expect::Http(UpdateEnvsError::is_server_error, 500, utf16.clone(), false),
        ),
        // --- the cap.
        row(
            "500 exactly at the cap: whole",
            send(response(500, &[], &pattern(CAP))),
            Expect::Http(UpdateEnvsError::is_server_error, 500, pattern(CAP), false),
        ),
        row(
            "500 one byte over the cap: cut",
            send(response(500, &[], &pattern(CAP + 1))),
            Expect::Http(UpdateEnvsError::is_server_error, 500, pattern(CAP), true),
        ),
        row(
            "202 over the cap, HTTP/1.0 close-delimited",
            send(cat(&[b"HTTP/1.0 202 Accepted\r\n\r\n", &pattern(3 * CAP)])),
            Expect::Ok(202, pattern(CAP), true),
        ),
        row(
            "465 announcing 1 GiB by Content-Length, never finishing",
            Reply::Stream {
                head: format!("HTTP/1.1 465 X\r\ncontent-length: {ONE_GIB}\r\n\r\n").into_bytes(),
                chunk: pattern(16 * 1024),
                limit: ONE_GIB,
            },
            Expect::Http(UpdateEnvsError::is_registration_required, 465, pattern(CAP), true),
        ),
        row(
            "202 chunked, endless",
            Reply::Stream {
                head: b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
                chunk: chunked_stream(&pattern(16 * 1024)),
                limit: ONE_GIB,
            },
            Expect::Ok(202, pattern(CAP), true),
        ),
        row(
            "502 HTML announcing 1 GiB",
            Reply::Stream {
                head: format!(
                    "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\n\
                    content-length: {ONE_GIB}\r\n\r\n"
                )
                .into_bytes(),
                chunk: pattern(16 * 1024),
                limit: ONE_GIB,
            },
            Expect::Http(UpdateEnvsError::is_unexpected_status, 502, pattern(CAP), true),
        ),
        // --- cut off mid-stream.
        row(
            "404 whose Content-Length is longer than what is sent",
            send(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 100\r\nx-request-id: rid-cut\r\n\r\n\
                {\"detail\":\"CVM n"
                    .to_vec(),
            ),
            Expect::Cut(Some(404), b"{\"detail\":\"CVM n".to_vec()),
        ),
        row(
            "202 chunked, closed before the last chunk",
            send(b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"st\r\n".to_vec()),
            Expect::Cut(Some(202), b"{\"st".to_vec()),
        ),
        row(
            "409 with a malformed chunk size",
            send(b"HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec()),
            Expect::Cut(Some(409), vec![]),
        ),
        row(
            "465 cut inside its phase-1 data",
            send(cat(&[format!("HTTP/1.1 465 X\r\ncontent-length: {}\r\n\r\n", p465.len()).as_bytes(), &p465[..200]])),
            Expect::Cut(Some(465), p465[..200].to_vec()),
        ),
        row("100 Continue, then nothing", send(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()), Expect::Cut(None, vec![])),
        row(
            "101 Switching Protocols that nobody asked for: a final status",
            send(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n".to_vec()),
            unexpected(101, b""),
        ),
        row(
            "a head with 1000 headers",
            send(cat(&[b"HTTP/1.1 404 X\r\n", &b"x-junk: 1\r\n".repeat(1000), b"content-length: 0\r\n\r\n"])),
            Expect::Cut(None, vec![]),
        ),
        row("a head that is not HTTP", send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()), Expect::Cut(None, vec![])),
        row("a head cut before its end", send(b"HTTP/1.1 202 Acc".to_vec()), Expect::Cut(None, vec![])),
        row(
            "an unparseable Content-Length",
            send(b"HTTP/1.1 500 X\r\ncontent-length: lots\r\n\r\n{}".to_vec()),
            Expect::Cut(None, vec![]),
        ),
        row(
            "409 with the body in a 1xx: hyper reads the final head",
            send(cat(&[b"HTTP/1.1 102 Processing\r\n\r\n", &response(409, &[], &j409)])),
            Expect::Http(UpdateEnvsError::is_conflict, 409, j409.clone(), false),
        ),
    ]
}

#[tokio::test]
async fn odd_replies_table() {
    let rows = rows();
    assert!(rows.len() >= 30, "{} rows", rows.len());
    let mut failures = Vec::new();
    for Row { name, act, expect } in rows {
        let streaming = matches!(act, Reply::Stream { .. });
        let server = ScriptedServer::start(vec![act]).await;
        let started = Instant::now();
        let result = client(&server.base_url).update_cvm_envs(CVM, &body()).await;
        let elapsed = started.elapsed();
        if let Err(problem) = check(&result, &expect) {
            failures.push(format!("{name}: {problem}; got {result:?}"));
            continue;
        }
        // 409 aside, nothing is retried and no redirect is followed.
        let conflict = matches!(&result, Err(e) if e.is_conflict());
        let requests = server.requests();
        if requests != if conflict { 2 } else { 1 } {
            failures.push(format!("{name}: {requests} requests reached the server"));
        }
        if let Err(e) = &result {
            let shown = e.to_string();
            if shown.is_empty() || shown.contains('\n') {
                failures.push(format!("{name}: Display {shown:?}"));
            }
        }
        if streaming {
            // The client took its CAP bytes and hung up: far less than the 1 GiB was sent (the
            // rest is what the loopback socket buffers and hyper's read buffer hold), promptly.
            if elapsed > Duration::from_secs(3) {
                failures.push(format!("{name}: took {elapsed:?}"));
            }
            if !server.client_hung_up(Duration::from_secs(3)).await {
                failures.push(format!("{name}: the client did not hang up"));
            }
            let streamed = server.streamed();
            eprintln!("{name}: returned in {elapsed:?}; {streamed} body bytes streamed before the client hung up");
            if streamed > 64 << 20 {
                failures.push(format!("{name}: {streamed} bytes were streamed"));
            }
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

fn check(result: &Result<phala_cloud::EnvsUpdateAccepted, UpdateEnvsError>, expect: &Expect) -> Result<(), String> {
    match (result, expect) {
        (Ok(ok), Expect::Ok(status, body, truncated)) => {
            if ok.http_status.as_u16() != *status {
                return Err(format!("status {}", ok.http_status));
            }
            if ok.raw_body != body[..] {
                return Err(format!("raw body {:?}", String::from_utf8_lossy(&ok.raw_body)));
            }
            if ok.body_truncated != *truncated {
                return Err(format!("body_truncated {}", ok.body_truncated));
            }
            Ok(())
        }
        (Err(e), Expect::Http(variant, status, body, truncated)) => {
            if !variant(e) {
                return Err("wrong variant".into());
            }
            if e.status().map(|s| s.as_u16()) != Some(*status) {
                return Err(format!("status {:?}", e.status()));
            }
            let http = e.http().ok_or("no HTTP reply")?;
            if http.raw_body() != body {
                return Err(format!("raw body {:?}", String::from_utf8_lossy(http.raw_body())));
            }
            if http.body_truncated() != *truncated {
                return Err(format!("body_truncated {}", http.body_truncated()));
            }
            if e.is_maybe_sent() || e.is_not_sent() {
                return Err("an HTTP reply said to be a transport failure".into());
            }
            if e.may_have_been_applied() != matches!(status, 502 | 504) {
                return Err("only a gateway's 502/504 may have been applied".into());
            }
            Ok(())
        }
        (Err(e @ UpdateEnvsError::InvalidReply(invalid)), Expect::Invalid(status, body)) => {
            if invalid.status().as_u16() != *status || e.status().map(|s| s.as_u16()) != Some(*status) {
                return Err(format!("status {}", invalid.status()));
            }
            if invalid.raw_body() != body || e.raw_body() != Some(invalid.raw_body()) {
                return Err(format!("raw body {:?}", String::from_utf8_lossy(invalid.raw_body())));
            }
            if !e.may_have_been_applied() || e.is_retryable() {
                return Err("an unproven 2xx must say it may have been applied, and not be retryable".into());
            }
            Ok(())
        }
        (Err(e @ UpdateEnvsError::MaybeSent(t)), Expect::Cut(status, partial)) => {
            if !e.may_have_been_applied() || e.is_retryable() {
                return Err("a cut reply must say it may have been applied, and not be retryable".into());
            }
            if t.status().map(|s| s.as_u16()) != *status || e.status() != t.status() {
                return Err(format!("status {:?}", t.status()));
            }
            let kept = t.partial_body().map(|b| b.to_vec()).unwrap_or_default();
            if kept != *partial {
                return Err(format!("partial body {:?}", String::from_utf8_lossy(&kept)));
            }
            if status.is_some() != t.headers().is_some() {
                return Err("the head's headers are kept exactly when the head arrived".into());
            }
            Ok(())
        }
        _ => Err("wrong outcome".into()),
    }
}

/// A few rows say more than variant, status and body.
#[tokio::test]
async fn odd_replies_details() {
    // Retry-After on a status that is not retried is still readable.
    let server = ScriptedServer::start(vec![Reply::Raw(response(503, &[("retry-after", "120")], b""))]).await;
    let e = client(&server.base_url).update_cvm_envs(CVM, &body()).await.unwrap_err();
    assert_eq!(e.http().unwrap().retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(e.to_string(), "HTTP 503 Service Unavailable (a status not in the API spec)");

    // HTML from a proxy: no envelope, the canonical reason, and the bytes.
    let html = fixture("502_gateway.html");
    let server = ScriptedServer::start(vec![Reply::Raw(response(502, &[("content-type", "text/html")], &html))]).await;
    let e = client(&server.base_url).update_cvm_envs(CVM, &body()).await.unwrap_err();
    assert_eq!(e.envelope(), Some(&ErrorEnvelope::Unrecognized));
    assert_eq!(e.to_string(), "HTTP 502 Bad Gateway (a status not in the API spec)");

    // A 465 cut at the cap: the variant stays, the phase-1 data is refused, not misread.
    let server = ScriptedServer::start(vec![Reply::Stream {
        head: format!("HTTP/1.1 465 X\r\ncontent-length: {ONE_GIB}\r\n\r\n").into_bytes(),
        chunk: fixture("465_structured.json"),
        limit: ONE_GIB,
    }])
    .await;
    let e = client(&server.base_url).update_cvm_envs(CVM, &body()).await.unwrap_err();
    let Some(r) = e.registration_required() else { panic!("{e:?}") };
    assert!(matches!(r.data, Err(phala_cloud::Phase1Error::Truncated)), "{:?}", r.data);
    assert_eq!(r.data.as_ref().unwrap_err().to_string(), "the body exceeded the response-size cap");
    assert!(e.to_string().contains("phase-1 data is unreadable"), "{e}");

    // A 404 cut mid-body keeps its request id.
    let server = ScriptedServer::start(vec![Reply::Raw(
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 100\r\nx-request-id: rid-cut\r\n\r\n{\"detail\"".to_vec(),
    )])
    .await;
    let e = client(&server.base_url).update_cvm_envs(CVM, &body()).await.unwrap_err();
    assert!(e.is_maybe_sent());
    assert_eq!(e.request_id(), Some("rid-cut"));
    assert_eq!(e.raw_body(), None, "raw_body() is for whole replies; the partial body is on the transport error");
    assert!(!format!("{e:?}").contains("detail"), "Debug shows the partial body's length, not its bytes: {e:?}");
}

/// Every status from 100 to 599 that the spec does not list, each over real HTTP: a 2xx is a
/// success with its body, a 1xx (which HTTP treats as informational, not as the reply) leaves
/// the request "may have been sent", and anything else is `UnexpectedStatus` with its status
/// and raw body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_the_spec_does_not_list() {
    let spec: serde_json::Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    let listed: Vec<u16> = spec["paths"]["/api/v1/cvms/{cvm_id}/envs"]["patch"]["responses"]
        .as_object()
        .unwrap()
        .keys()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(listed.contains(&202) && listed.contains(&465), "{listed:?}");
    let statuses: Vec<u16> = (100u16..=599).filter(|s| !listed.contains(s)).collect();
    assert_eq!(statuses.len(), 500 - listed.len());
    // A few at a time: hundreds of loopback servers at once would only measure the scheduler.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let mut calls = tokio::task::JoinSet::new();
    for status in statuses {
        let slots = slots.clone();
        calls.spawn(async move {
            let _slot = slots.acquire_owned().await.unwrap();
            // HTTP gives 204, 205 and 304 no body.
            let sent: Vec<u8> = if matches!(status, 204 | 205 | 304) {
                vec![]
            } else {
                format!("{{\"detail\":\"status {status}\"}}").into_bytes()
            };
            let server = ScriptedServer::start(vec![Reply::Raw(response(status, &[], &sent))]).await;
            let result = client(&server.base_url).update_cvm_envs("cvm-1", &body()).await;
            match status {
                101 => {
                    let e = result.unwrap_err();
                    assert!(e.is_unexpected_status() && e.status().map(|s| s.as_u16()) == Some(101), "{status}: {e:?}");
                }
                100..=199 => assert!(result.unwrap_err().is_maybe_sent(), "{status}"),
                202 => {
                    let accepted = result.unwrap_or_else(|e| panic!("{status}: {e:?}"));
                    assert_eq!((accepted.http_status.as_u16(), &accepted.raw_body[..]), (status, &sent[..]));
                }
                // Not the spec's 202 and no correlation_id: not proven accepted.
                200..=299 => {
                    let e = result.unwrap_err();
                    assert!(e.is_invalid_reply() && e.may_have_been_applied(), "{status}: {e:?}");
                    assert_eq!(
                        (e.status().map(|s| s.as_u16()), e.raw_body().map(|b| &b[..])),
                        (Some(status), Some(&sent[..]))
                    );
                }
                _ => {
                    let e = result.unwrap_err();
                    assert!(e.is_unexpected_status(), "{status}: {e:?}");
                    assert_eq!(e.status().map(|s| s.as_u16()), Some(status));
                    assert_eq!(e.raw_body().map(|b| &b[..]), Some(&sent[..]), "{status}");
                    assert!(e.to_string().contains(&status.to_string()), "{e}");
                }
            }
            assert_eq!(server.requests(), 1, "{status}: sent once, never retried");
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
}
