//! A loopback HTTP/1.1 "server" that answers with exact bytes, or misbehaves on purpose:
//! closes or resets the connection, stalls, or streams a body that never ends.
//!
//! Everything it does is bounded: a stream stops after `limit` bytes or [`MAX_LIFETIME`], a
//! stall after its own duration, and all of it when the test's runtime ends.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A valid phase-1 body for the calls these servers answer.
pub fn body() -> phala_cloud::UpdateCvmEnvsBody {
    phala_cloud::UpdateCvmEnvsBody {
        encrypted_env: "ab".repeat(80),
        env_keys: Some(vec!["FOO".into()]),
        compose_hash: None,
        transaction_hash: None,
    }
}

/// No connection is served for longer than this.
pub const MAX_LIFETIME: Duration = Duration::from_secs(10);

/// What to do with each connection.
#[derive(Clone, Debug)]
pub enum Act {
    /// Read the request, write these bytes, close (FIN).
    Send(Vec<u8>),
    /// Read the request, write `head`, then `chunk` over and over, never finishing: stops
    /// when the client goes away, after `limit` bytes of body, or after [`MAX_LIFETIME`].
    Stream { head: Vec<u8>, chunk: Vec<u8>, limit: u64 },
    /// Read the request, then close without a reply (FIN).
    Close,
    /// Read the request, then reset the connection (RST).
    Reset,
    /// Close as soon as the connection is accepted, without reading the request.
    CloseUnread,
    /// Read the request, write these bytes, then hold the connection open for this long.
    SendThenHold(Vec<u8>, Duration),
}

/// Counters shared with the test.
#[derive(Default, Debug)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Requests read whole (head and body).
    pub requests: AtomicUsize,
    /// Body bytes a [`Act::Stream`] got into the socket.
    pub streamed: AtomicU64,
    /// A [`Act::Stream`] ended because the client closed the connection.
    pub client_hung_up: AtomicBool,
}

pub struct RawServer {
    pub base_url: String,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawServer {
    /// Serves `act` on every connection.
    pub async fn start(act: Act) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let stats = Arc::new(Stats::default());
        let shared = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let stats = shared.clone();
                let act = act.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(MAX_LIFETIME, serve(sock, act, stats)).await;
                });
            }
        });
        Self { base_url, stats, task }
    }

    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    pub fn streamed(&self) -> u64 {
        self.stats.streamed.load(Ordering::SeqCst)
    }

    /// Waits up to `within` for a stream to see the client hang up.
    pub async fn client_hung_up(&self, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.stats.client_hung_up.load(Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// A port that nothing listens on (bound, then released).
pub fn refused_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

async fn serve(mut sock: TcpStream, act: Act, stats: Arc<Stats>) {
    if let Act::CloseUnread = act {
        return;
    }
    if !read_request(&mut sock).await {
        return;
    }
    stats.requests.fetch_add(1, Ordering::SeqCst);
    match act {
        Act::Send(bytes) => {
            let _ = sock.write_all(&bytes).await;
            let _ = sock.shutdown().await;
        }
        Act::SendThenHold(bytes, hold) => {
            let _ = sock.write_all(&bytes).await;
            let _ = sock.flush().await;
            tokio::time::sleep(hold).await;
        }
        Act::Close => {
            let _ = sock.shutdown().await;
        }
        Act::Reset => {
            let _ = sock.set_zero_linger();
            drop(sock);
        }
        Act::CloseUnread => unreachable!(),
        Act::Stream { head, chunk, limit } => {
            if sock.write_all(&head).await.is_err() {
                return;
            }
            let mut sent = 0u64;
            while sent < limit {
                if sock.write_all(&chunk).await.is_err() {
                    stats.client_hung_up.store(true, Ordering::SeqCst);
                    return;
                }
                sent += chunk.len() as u64;
                stats.streamed.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    }
}

/// Reads one request: the head, then as many body bytes as its Content-Length says.
async fn read_request(sock: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// `HTTP/1.1 {status} X` with these headers, `content-length` and this body.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Concatenates byte pieces.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
