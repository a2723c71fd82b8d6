//! A scripted HTTP/1.1 server on loopback for tests that need replies in sequence or
//! byte-level control of what is sent back (httpmock answers one fixed reply per mock).
#![allow(dead_code)]

#[cfg(feature = "simulator")]
pub mod anvil;
#[cfg(feature = "onchain")]
pub mod fake_rpc;

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub head: String,
    pub body: Vec<u8>,
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

/// What to do with one connection.
#[derive(Clone)]
pub enum Reply {
    /// Write these bytes and close.
    Raw(Vec<u8>),
    /// A complete response with this status, extra headers and body.
    Status(u16, Vec<(&'static str, String)>, Vec<u8>),
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Self {
        Reply::Status(status, vec![("content-type", "application/json".into())], body.as_bytes().to_vec())
    }
}

pub struct ScriptedServer {
    pub base_url: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedServer {
    /// Serves `replies` in order, one per connection; the last one repeats.
    pub async fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let task = tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let reply = replies[n.min(replies.len() - 1)].clone();
                n += 1;
                let log = log.clone();
                tokio::spawn(async move {
                    let Some(recorded) = read_request(&mut sock).await else { return };
                    log.lock().unwrap().push(recorded);
                    let bytes = match reply {
                        Reply::Raw(bytes) => bytes,
                        Reply::Status(status, headers, body) => {
                            let mut out = format!(
                                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                                body.len()
                            );
                            for (k, v) in headers {
                                out.push_str(&format!("{k}: {v}\r\n"));
                            }
                            out.push_str("\r\n");
                            let mut out = out.into_bytes();
                            out.extend_from_slice(&body);
                            out
                        }
                    };
                    let _ = sock.write_all(&bytes).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self { base_url, requests, task }
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request (head and a Content-Length body).
pub async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Recorded { head, body: buf[head_end..].to_vec() })
}

/// A fresh X25519 public key to encrypt to (its secret is dropped: nothing decrypts with it).
pub fn random_recipient() -> phala_cloud::RecipientPublicKey {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("CSPRNG");
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
    phala_cloud::RecipientPublicKey::from(*public.as_bytes())
}

/// An env-encryption public key of a fresh CVM, signed by `kms` for `app_id` (timestamped form
/// with `timestamp`, legacy form without), as a KMS's `GET /kms/{slug}/pubkey/{app_id}` answers.
pub fn sign_env_pubkey(
    kms: &k256::ecdsa::SigningKey,
    app_id: &phala_cloud::AppId,
    timestamp: Option<u64>,
) -> phala_cloud::SignedEnvPubkey {
    let public_key = random_recipient();
    let mut signed = phala_cloud::SignedEnvPubkey { public_key, signature: [0; 65], timestamp };
    let (signature, recovery_id) = kms.sign_prehash_recoverable(&signed.digest(app_id));
    signed.signature[..64].copy_from_slice(&signature.to_bytes());
    signed.signature[64] = recovery_id.to_byte();
    signed
}

/// `key`'s public key, compressed.
pub fn k256_public(key: &k256::ecdsa::SigningKey) -> phala_cloud::K256PublicKey {
    phala_cloud::K256PublicKey::from_sec1_bytes(key.verifying_key().to_sec1_point(true).as_bytes())
        .expect("a signing key's point is on the curve")
}
