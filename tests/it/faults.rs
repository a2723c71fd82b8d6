//! Faults at the level of one call, against a loopback server that misbehaves on purpose:
//! nothing listening, the connection closed or reset after the request was read, a reply that
//! stalls past the client's timeout (before its head, or in its body), a body cut off.
//!
//! The rule under test: `NotSent` only when the request cannot have reached the server;
//! `MaybeSent` (and `may_have_been_applied()`) whenever it may have; and a reply whose head
//! arrived keeps its status, headers and the body bytes received.

use crate::support;

use phala_cloud::{Client, ConflictRetry, Delivery, UpdateEnvsError};
use std::time::{Duration, Instant};
use support::{Reply, ScriptedServer, body, refused_url};

const CVM: &str = "cvm-123";
/// The client's request timeout in these tests.
const TIMEOUT: Duration = Duration::from_millis(300);

fn client(base: &str) -> Client {
    Client::builder()
        .base_url(base)
        .api_key("test-api-key")
        .timeout(Some(TIMEOUT))
        .connect_timeout(Duration::from_secs(2))
        // Even with a retry policy, only a 409 is retried.
        .retry_on_conflict(ConflictRetry::default())
        .build()
        .unwrap()
}

/// Runs one call; returns its error and how long it took.
async fn fail(base: &str) -> (UpdateEnvsError, Duration) {
    let started = Instant::now();
    let e = client(base).update_cvm_envs(CVM, &body()).await.expect_err("the call must fail");
    (e, started.elapsed())
}

fn transport(e: &UpdateEnvsError) -> &phala_cloud::TransportError {
    match e {
        UpdateEnvsError::NotSent(t) | UpdateEnvsError::MaybeSent(t) => t,
        other => panic!("not a transport error: {other:?}"),
    }
}

/// One line, and it names the kind of failure.
fn assert_display(e: &UpdateEnvsError, needle: &str) {
    let shown = e.to_string();
    assert!(shown.contains(needle) && !shown.contains('\n'), "{shown:?}");
    assert!(std::error::Error::source(e).is_some(), "the cause is kept: {e:?}");
}

#[tokio::test]
async fn connection_refused_is_not_sent() {
    let (e, took) = fail(&refused_url()).await;
    assert!(e.is_not_sent(), "{e:?}");
    assert!(e.is_retryable() && !e.may_have_been_applied());
    let t = transport(&e);
    assert_eq!(t.delivery(), Delivery::NotSent);
    assert_eq!((t.status(), e.status(), t.headers(), t.partial_body()), (None, None, None, None));
    assert!(!t.is_timeout());
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_display(&e, "before it was sent");
}

#[tokio::test]
async fn closed_after_reading_the_request_is_maybe_sent() {
    let server = ScriptedServer::start(vec![Reply::Close]).await;
    let (e, _) = fail(&server.base_url).await;
    assert!(e.is_maybe_sent() && e.may_have_been_applied() && !e.is_retryable(), "{e:?}");
    let t = transport(&e);
    assert_eq!((t.status(), t.headers(), t.partial_body()), (None, None, None));
    assert!(!t.is_timeout());
    assert_eq!(server.requests(), 1, "the request reached the server, and was sent once");
    assert_display(&e, "it may have reached the server");
}

#[tokio::test]
async fn reset_after_reading_the_request_is_maybe_sent() {
    let server = ScriptedServer::start(vec![Reply::Reset]).await;
    let (e, _) = fail(&server.base_url).await;
    assert!(e.is_maybe_sent() && e.may_have_been_applied(), "{e:?}");
    assert_eq!(e.status(), None);
    assert!(!transport(&e).is_timeout());
    assert_eq!(server.requests(), 1);
}

/// The server hangs up without reading: it did not act, but the client cannot know that, so
/// it must say "may have been sent" (the conservative answer).
#[tokio::test]
async fn closed_before_reading_the_request_is_still_maybe_sent() {
    let server = ScriptedServer::start(vec![Reply::CloseUnread]).await;
    let (e, _) = fail(&server.base_url).await;
    assert!(e.is_maybe_sent() && e.may_have_been_applied(), "{e:?}");
    assert_eq!(server.requests(), 0);
    assert_eq!(server.connections(), 1, "no retry");
}

#[tokio::test]
async fn stalled_before_the_head_times_out_as_maybe_sent() {
    let server = ScriptedServer::start(vec![Reply::SendThenHold(vec![], Duration::from_secs(5))]).await;
    let (e, took) = fail(&server.base_url).await;
    assert!(e.is_maybe_sent() && e.may_have_been_applied(), "{e:?}");
    let t = transport(&e);
    assert!(t.is_timeout(), "{e:?}");
    assert_eq!((t.status(), t.headers()), (None, None));
    assert!(took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(2), "{took:?}");
    assert_eq!(server.requests(), 1);
    assert_display(&e, "timed out; it may have reached the server");
}

#[tokio::test]
async fn stalled_in_the_body_times_out_and_keeps_status_and_partial_body() {
    let server = ScriptedServer::start(vec![Reply::SendThenHold(
        b"HTTP/1.1 465 X\r\ncontent-length: 500\r\nx-request-id: rid-stall\r\n\r\n\
            {\"error_code\":\"ERR-01-005\""
            .to_vec(),
        Duration::from_secs(5),
    )])
    .await;
    let (e, took) = fail(&server.base_url).await;
    assert!(e.is_maybe_sent() && e.may_have_been_applied(), "{e:?}");
    assert!(!e.is_registration_required(), "half a 465 is not read as a 465");
    let t = transport(&e);
    assert!(t.is_timeout(), "{e:?}");
    assert_eq!(e.status().map(|s| s.as_u16()), Some(465));
    assert_eq!(t.partial_body().unwrap(), &b"{\"error_code\":\"ERR-01-005\""[..]);
    assert_eq!(e.request_id(), Some("rid-stall"));
    assert!(took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(2), "{took:?}");
    assert_display(&e, "reading the HTTP 465 reply timed out; the server received the request");
}

#[tokio::test]
async fn body_cut_mid_way_keeps_status_headers_and_partial_body() {
    for (status, reply, partial) in [
        (
            202u16,
            &b"HTTP/1.1 202 Accepted\r\ncontent-length: 167\r\nx-request-id: rid-202\r\n\r\n\
                {\"status\":\"in_progress\",\"corr"[..],
            &b"{\"status\":\"in_progress\",\"corr"[..],
        ),
        (
            409,
            b"HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\nx-request-id: rid-409\r\n\r\n6\r\n{\"deta\r\n",
            b"{\"deta",
        ),
        (500, b"HTTP/1.1 500 X\r\ncontent-length: 10\r\nx-request-id: rid-500\r\n\r\n", b""),
    ] {
        let server = ScriptedServer::start(vec![Reply::Raw(reply.to_vec())]).await;
        let (e, _) = fail(&server.base_url).await;
        assert!(e.is_maybe_sent() && e.may_have_been_applied(), "{status}: {e:?}");
        let t = transport(&e);
        assert!(!t.is_timeout());
        assert_eq!(e.status().map(|s| s.as_u16()), Some(status));
        assert_eq!(t.partial_body().unwrap(), partial, "{status}");
        assert_eq!(e.request_id(), Some(format!("rid-{status}").as_str()));
        assert_eq!(t.headers().unwrap()["x-request-id"], format!("rid-{status}").as_str());
        // A cut 409 is not retried: its body never said "conflict" whole.
        assert_eq!(server.requests(), 1, "{status}");
        assert_display(&e, &format!("reading the HTTP {status} reply failed"));
    }
}

/// A listener whose accept queue is full drops new SYNs: the connection never opens, the
/// connect timeout fires, and the request cannot have been sent.
#[tokio::test]
async fn connect_timeout_is_not_sent() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the accept queue (never accepted) until a connection no longer opens.
    let mut held = Vec::new();
    let full = loop {
        match tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(e)) => panic!("connect failed: {e}"),
            Err(_) => break true,
        }
        if held.len() > 64 {
            break false;
        }
    };
    assert!(full, "the accept queue never filled");
    let client = Client::builder()
        .base_url(format!("http://{addr}"))
        .api_key("test-api-key")
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = Instant::now();
    let e = client.update_cvm_envs(CVM, &body()).await.unwrap_err();
    assert!(e.is_not_sent() && e.is_retryable() && !e.may_have_been_applied(), "{e:?}");
    assert!(transport(&e).is_timeout(), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_display(&e, "timed out before it was sent");
    drop(listener);
}
