//! A scripted HTTP/1.1 server on loopback: it answers each connection with the next act of a
//! script (the last one repeats), byte-exact or misbehaving on purpose (closing or resetting the
//! connection, stalling, streaming a body that never ends), and records every request. For
//! tests that need replies in sequence or socket-level control (httpmock answers one fixed
//! reply per mock).
//!
//! Everything it does is bounded: a stream stops after `limit` bytes, and no connection is
//! served for longer than [`MAX_LIFETIME`]; all of it stops when the server is dropped or the
//! test's runtime ends.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// No connection is served for longer than this.
pub const MAX_LIFETIME: Duration = Duration::from_secs(10);

/// What to do with one connection.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Read the request, write these bytes, close (FIN).
    Raw(Vec<u8>),
    /// Read the request, answer with this status, extra headers and body (with
    /// `content-length` and `connection: close`), close (FIN).
    Status(u16, Vec<(&'static str, String)>, Vec<u8>),
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

impl Reply {
    /// A JSON reply with this status.
    pub fn json(status: u16, body: &str) -> Self {
        Reply::Status(status, vec![("content-type", "application/json".into())], body.as_bytes().to_vec())
    }
}

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub head: String,
    /// The body bytes that arrived (all of them when `complete`).
    pub body: Vec<u8>,
    /// The body arrived whole (as long as its Content-Length says).
    pub complete: bool,
}

impl Recorded {
    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }
}

/// What the server saw, shared with the test.
#[derive(Default, Debug)]
struct Seen {
    /// Connections accepted.
    connections: AtomicUsize,
    /// Requests read whole (head and body).
    requests: AtomicUsize,
    /// Every request whose head arrived, in order of arrival.
    recorded: Mutex<Vec<Recorded>>,
    /// Body bytes a [`Reply::Stream`] got into the socket.
    streamed: AtomicU64,
    /// A [`Reply::Stream`] ended because the client closed the connection.
    client_hung_up: AtomicBool,
}

pub struct ScriptedServer {
    pub base_url: String,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedServer {
    /// Serves `script` in order, one act per connection; the last one repeats.
    pub async fn start(script: Vec<Reply>) -> Self {
        assert!(!script.is_empty(), "a script needs at least one act");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                let n = shared.connections.fetch_add(1, Ordering::SeqCst);
                let reply = script[n.min(script.len() - 1)].clone();
                let seen = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(MAX_LIFETIME, serve(sock, reply, seen)).await;
                });
            }
        });
        Self { base_url, seen, task }
    }

    /// The requests whose head arrived, in order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.seen.recorded.lock().unwrap().clone()
    }

    /// Connections accepted.
    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    /// Requests read whole (head and body).
    pub fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// Body bytes the [`Reply::Stream`]s got into the socket.
    pub fn streamed(&self) -> u64 {
        self.seen.streamed.load(Ordering::SeqCst)
    }

    /// Waits up to `within` for a stream to see the client hang up.
    pub async fn client_hung_up(&self, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.seen.client_hung_up.load(Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

async fn serve(mut sock: TcpStream, reply: Reply, seen: Arc<Seen>) {
    if let Reply::CloseUnread = reply {
        return;
    }
    let Some(request) = read_request(&mut sock).await else { return };
    let complete = request.complete;
    seen.recorded.lock().unwrap().push(request);
    if !complete {
        return;
    }
    seen.requests.fetch_add(1, Ordering::SeqCst);
    match reply {
        Reply::Raw(bytes) => {
            let _ = sock.write_all(&bytes).await;
            let _ = sock.shutdown().await;
        }
        Reply::Status(status, headers, body) => {
            let mut all = vec![("connection", "close")];
            all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            let _ = sock.write_all(&response(status, &all, &body)).await;
            let _ = sock.shutdown().await;
        }
        Reply::SendThenHold(bytes, hold) => {
            let _ = sock.write_all(&bytes).await;
            let _ = sock.flush().await;
            tokio::time::sleep(hold).await;
        }
        Reply::Close => {
            let _ = sock.shutdown().await;
        }
        Reply::Reset => {
            let _ = sock.set_zero_linger();
            drop(sock);
        }
        Reply::CloseUnread => unreachable!(),
        Reply::Stream { head, chunk, limit } => {
            if sock.write_all(&head).await.is_err() {
                return;
            }
            let mut sent = 0u64;
            while sent < limit {
                if sock.write_all(&chunk).await.is_err() {
                    seen.client_hung_up.store(true, Ordering::SeqCst);
                    return;
                }
                sent += chunk.len() as u64;
                seen.streamed.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    }
}

/// Reads one HTTP/1.1 request: the head, then as many body bytes as its Content-Length says.
/// `None` if the connection ends before the head does; a body cut short is `complete: false`.
pub async fn read_request(sock: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    let mut complete = true;
    while buf.len() < head_end + len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                complete = false;
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(Recorded { head, body: buf[head_end..].to_vec(), complete })
}

/// `HTTP/1.1 {status} X` with `content-length`, these headers and this body.
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

/// A port that nothing listens on (bound, then released).
pub fn refused_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

/// A valid phase-1 body for the calls these servers answer.
pub fn body() -> phala_cloud::UpdateCvmEnvsBody {
    phala_cloud::UpdateCvmEnvsBody {
        encrypted_env: "ab".repeat(80),
        env_keys: Some(vec!["FOO".into()]),
        compose_hash: None,
        transaction_hash: None,
    }
}
