//! The JSON-RPC transport of the on-chain registrar: JSON over this crate's reqwest client, with
//! a request timeout, a cap on the reply's size, and the RPC URL kept out of every span, log and
//! error (providers put API keys in its path; alloy's `ReqwestTransport` prints it in a DEBUG
//! span).

use std::sync::Arc;
use std::task;
use std::time::Duration;

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};

/// Why one JSON-RPC request failed below JSON-RPC. Its text never holds the RPC URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpFailure {
    /// No reply within the request timeout (connecting included).
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The reply was longer than the cap; reading stopped there.
    #[error("the reply is longer than {limit} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The endpoint could not be reached, or the exchange broke off.
    #[error("{0}")]
    Http(#[source] reqwest::Error),
    /// An HTTP error status without a JSON-RPC error in its body.
    #[error("HTTP status {status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The start of the body (at most 512 bytes).
        body: String,
    },
    /// The reply is not JSON-RPC.
    #[error("the reply is not a JSON-RPC response: {0}")]
    NotJsonRpc(#[source] serde_json::Error),
}

/// The transport: cheap to clone (the client and the URL are shared).
#[derive(Clone)]
pub(crate) struct RpcTransport {
    client: reqwest::Client,
    url: Arc<url::Url>,
    request_timeout: Duration,
    max_reply_bytes: usize,
}

impl std::fmt::Debug for RpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcTransport")
            .field("url", &super::redact_url(&self.url))
            .field("request_timeout", &self.request_timeout)
            .field("max_reply_bytes", &self.max_reply_bytes)
            .finish()
    }
}

impl RpcTransport {
    pub(crate) fn new(
        client: reqwest::Client,
        url: url::Url,
        request_timeout: Duration,
        max_reply_bytes: usize,
    ) -> Self {
        Self { client, url: Arc::new(url), request_timeout, max_reply_bytes }
    }

    /// Over a client from [`crate::http_client_builder`] with the registrar's default timeouts
    /// and reply cap.
    pub(crate) fn default_for(url: &url::Url) -> Result<Self, super::SetupError> {
        let client = crate::client::http_client_builder()
            .map_err(super::SetupError::RpcClient)?
            .connect_timeout(super::DEFAULT_RPC_CONNECT_TIMEOUT)
            .build()
            .map_err(|e| super::SetupError::RpcClient(crate::ConfigError::http(e)))?;
        Ok(Self::new(client, url.clone(), super::DEFAULT_RPC_REQUEST_TIMEOUT, super::DEFAULT_MAX_RPC_REPLY_BYTES))
    }

    pub(crate) fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    pub(crate) fn set_max_reply_bytes(&mut self, bytes: usize) {
        self.max_reply_bytes = bytes;
    }

    pub(crate) fn set_client(&mut self, client: reqwest::Client) {
        self.client = client;
    }

    /// An RPC client over this transport (local URLs polled faster, as alloy does).
    pub(crate) fn rpc_client(&self) -> alloy::rpc::client::RpcClient {
        let local = alloy::transports::utils::guess_local_url(self.url.as_str());
        alloy::rpc::client::RpcClient::new(self.clone(), local)
    }

    async fn post(self, request: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let limit = self.max_reply_bytes;
        let timeout = self.request_timeout;
        let exchange = async move {
            let mut response = self
                .client
                .post(self.url.as_str())
                .headers(request.headers())
                .json(&request)
                .send()
                .await
                .map_err(|e| HttpFailure::Http(e.without_url()))?;
            let status = response.status();
            if response.content_length().is_some_and(|n| n > limit as u64) {
                return Err(HttpFailure::TooLarge { limit });
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| HttpFailure::Http(e.without_url()))? {
                if body.len() + chunk.len() > limit {
                    return Err(HttpFailure::TooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            tracing::trace!(status = status.as_u16(), bytes = body.len(), "JSON-RPC reply");
            match serde_json::from_slice::<ResponsePacket>(&body) {
                Ok(packet) => Ok(packet),
                Err(_) if !status.is_success() => {
                    let end = body.len().min(512);
                    Err(HttpFailure::Status {
                        status: status.as_u16(),
                        body: String::from_utf8_lossy(&body[..end]).into_owned(),
                    })
                }
                Err(e) => Err(HttpFailure::NotJsonRpc(e)),
            }
        };
        // reqwest's own timeout covers the body too, but a slow trickle of chunks is bounded
        // here as well: one deadline for the whole exchange.
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(packet)) => Ok(packet),
            Ok(Err(HttpFailure::Http(e))) if e.is_timeout() => {
                Err(TransportErrorKind::custom(HttpFailure::Timeout(timeout)))
            }
            Ok(Err(e)) => Err(TransportErrorKind::custom(e)),
            Err(_) => Err(TransportErrorKind::custom(HttpFailure::Timeout(timeout))),
        }
    }
}

impl tower::Service<RequestPacket> for RpcTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut task::Context<'_>) -> task::Poll<Result<(), Self::Error>> {
        task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        let span = tracing::debug_span!("rpc", methods = %method_names(&request));
        Box::pin(tracing::Instrument::instrument(self.clone().post(request), span))
    }
}

fn method_names(request: &RequestPacket) -> String {
    request.method_names().take(3).collect::<Vec<_>>().join(", ")
}

/// The [`HttpFailure`] under an alloy error, if the transport failed.
pub(crate) fn http_failure<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a HttpFailure> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(failure) = e.downcast_ref::<HttpFailure>() {
            return Some(failure);
        }
        next = e.source();
    }
    None
}
