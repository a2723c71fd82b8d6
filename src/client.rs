//! The configured client: base URL, API key, version header, timeouts, and the HTTP stack.

use http::HeaderValue;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use progenitor_client::ClientInfo;

pub(crate) use crate::dispatch::Hooks;
use crate::generated;
use crate::retry::ConflictRetry;

/// The Phala Cloud API server (every path of `openapi.json` starts with `/api/v1` there).
pub const DEFAULT_BASE_URL: &str = "https://cloud-api.phala.com";
/// `X-Phala-Version` sent unless [`ClientBuilder::api_version`] says otherwise (the official
/// SDKs' default).
pub const DEFAULT_API_VERSION: &str = "2026-05-22";
/// Variable holding the API key (as the official SDKs and CLI read it).
pub const API_KEY_ENV: &str = "PHALA_CLOUD_API_KEY";
/// Variable holding the API prefix, e.g. `https://cloud-api.phala.com/api/v1`.
pub const API_PREFIX_ENV: &str = "PHALA_CLOUD_API_PREFIX";
/// Largest response body read by default (bytes); see [`ClientBuilder::max_response_body`].
pub const DEFAULT_MAX_RESPONSE_BODY: usize = 1 << 20;

const USER_AGENT: &str = concat!("phala-cloud-rs/", env!("CARGO_PKG_VERSION"));

/// A configuration that cannot work, found before any request is made.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No API key was given.
    #[error("no API key: set {API_KEY_ENV} or call ClientBuilder::api_key")]
    MissingApiKey,
    /// The API key has characters an HTTP header cannot carry. The key itself is not shown.
    #[error("the API key contains characters that cannot be sent in a header")]
    InvalidApiKey,
    /// The base URL is not an absolute http(s) URL.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `X-Phala-Version` value cannot be sent in a header.
    #[error("invalid API version {0:?}")]
    InvalidApiVersion(String),
    /// An environment variable is set but not valid Unicode.
    #[error("environment variable {0} is not valid Unicode")]
    NotUnicode(&'static str),
    /// The TLS configuration could not be set up (protocol versions, the platform's verifier).
    #[error("cannot set up TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(#[source] Arc<reqwest::Error>),
}

impl ConfigError {
    pub(crate) fn http(e: reqwest::Error) -> Self {
        Self::Http(Arc::new(e))
    }
}

/// A Phala Cloud API client: the generated client of every operation in `openapi.json`
/// ([`api`](Self::api)), with the crate's behaviour around it, plus the handwritten calls
/// (the env update and its two-phase flow). Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The generated client: base URL, the `reqwest::Client` (API key, `X-Phala-Version`
    /// and user agent set on it once), and the [`Hooks`] every operation runs through.
    pub(crate) api: generated::Client,
    pub(crate) api_version: HeaderValue,
    pub(crate) conflict_retry: Option<ConflictRetry>,
}

impl Client {
    /// A builder with the defaults (spec server, `X-Phala-Version` [`DEFAULT_API_VERSION`]).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured from `PHALA_CLOUD_API_KEY` and, if set, `PHALA_CLOUD_API_PREFIX`.
    pub fn from_env() -> Result<Self, ConfigError> {
        ClientBuilder::from_env()?.build()
    }

    /// The generated client: one method per operation of `openapi.json`, named by its
    /// operationId (`handle_get_cvm`, `update_cvm_envs`, …), sending the API key, version and
    /// user agent, with this client's timeout, response-size cap and tracing. Wrap a call in
    /// [`send`](Self::send) to get [`SdkError`](crate::SdkError) with the whole reply kept.
    pub fn api(&self) -> &generated::Client {
        &self.inner.api
    }

    /// The base URL requests go to (without `/api/v1`).
    pub fn base_url(&self) -> &str {
        self.inner.api.baseurl()
    }

    fn hooks(&self) -> &Hooks {
        self.inner.api.inner()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url())
            .field("api_key", &"[redacted]")
            .field("api_version", &self.inner.api_version)
            .field("timeout", &self.hooks().timeout)
            .field("max_response_body", &self.hooks().max_response_body)
            .field("conflict_retry", &self.inner.conflict_retry)
            .finish()
    }
}

/// Builds a [`Client`].
#[must_use = "a ClientBuilder does nothing until `build`"]
pub struct ClientBuilder {
    base_url: String,
    api_key: Option<String>,
    api_version: String,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    http: Option<reqwest::ClientBuilder>,
    max_response_body: usize,
    conflict_retry: Option<ConflictRetry>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            api_version: DEFAULT_API_VERSION.to_owned(),
            connect_timeout: Duration::from_secs(10),
            timeout: Some(Duration::from_secs(60)),
            http: None,
            max_response_body: DEFAULT_MAX_RESPONSE_BODY,
            conflict_retry: None,
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("api_version", &self.api_version)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("custom_http_client", &self.http.is_some())
            .field("max_response_body", &self.max_response_body)
            .field("conflict_retry", &self.conflict_retry)
            .finish()
    }
}

fn env_var(name: &'static str) -> Result<Option<String>, ConfigError> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::NotUnicode(name)),
    }
}

impl ClientBuilder {
    /// A builder preset from `PHALA_CLOUD_API_KEY` and `PHALA_CLOUD_API_PREFIX`; the key must be set.
    pub fn from_env() -> Result<Self, ConfigError> {
        let api_key = env_var(API_KEY_ENV)?.ok_or(ConfigError::MissingApiKey)?;
        let base_url = env_var(API_PREFIX_ENV)?.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        Ok(Self { api_key: Some(api_key), base_url, ..Self::default() })
    }

    /// The server, e.g. `https://cloud-api.phala.com`. A prefix ending in `/api/v1` (the form
    /// `PHALA_CLOUD_API_PREFIX` holds) is accepted too.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The API key, sent as `X-API-Key` and marked sensitive (kept out of `Debug` and of
    /// HTTP/2 header compression).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The `X-Phala-Version` header (default [`DEFAULT_API_VERSION`]).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// Time allowed to open a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for a whole request, reply included (default 60 s); `None` for no limit.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Build the HTTP client from this `reqwest::ClientBuilder` (its TLS, proxy and pool
    /// settings); start from [`http_client_builder`]. The client adds the API key, version and
    /// user agent to it as default headers, sets its connect timeout to
    /// [`connect_timeout`](Self::connect_timeout), turns redirects off, and applies
    /// [`timeout`](Self::timeout) to each request (replacing a timeout set on the builder).
    pub fn http(mut self, builder: reqwest::ClientBuilder) -> Self {
        self.http = Some(builder);
        self
    }

    /// The largest response body read (default 1 MiB). A longer body is not read to its end:
    /// the error keeps its first bytes and says it was truncated.
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.max_response_body = bytes;
        self
    }

    /// Retry a 409 "another operation in progress" by this policy. Off by default.
    pub fn retry_on_conflict(mut self, policy: ConflictRetry) -> Self {
        self.conflict_retry = Some(policy);
        self
    }

    /// Checks the configuration and builds the client.
    pub fn build(self) -> Result<Client, ConfigError> {
        let key = self.api_key.ok_or(ConfigError::MissingApiKey)?;
        let mut api_key = HeaderValue::from_str(key.trim()).map_err(|_| ConfigError::InvalidApiKey)?;
        if api_key.is_empty() {
            return Err(ConfigError::MissingApiKey);
        }
        api_key.set_sensitive(true);
        let api_version = HeaderValue::from_str(&self.api_version)
            .map_err(|_| ConfigError::InvalidApiVersion(self.api_version.clone()))?;
        let base_url = normalize_base_url(&self.base_url)?;
        let mut headers = http::HeaderMap::new();
        headers.insert("x-api-key", api_key);
        headers.insert("x-phala-version", api_version.clone());
        let builder = match self.http {
            Some(builder) => builder,
            None => http_client_builder()?,
        };
        let http = builder
            .default_headers(headers)
            .user_agent(USER_AGENT)
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ConfigError::http)?;
        let hooks = Hooks { timeout: self.timeout, max_response_body: self.max_response_body };
        Ok(Client {
            inner: Arc::new(Inner {
                api: generated::Client::new_with_client(&base_url, http, hooks),
                api_version,
                conflict_retry: self.conflict_retry,
            }),
        })
    }
}

/// Checks a base URL and strips a trailing `/` and `/api/v1` (every path in the spec starts
/// with `/api/v1`).
pub(crate) fn normalize_base_url(input: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(input.trim()).map_err(|e| ConfigError::InvalidBaseUrl {
        url: "(unparseable, not shown)".to_owned(),
        reason: e.to_string(),
    })?;
    let invalid = |reason: &str| {
        // The URL as given, less any password in it.
        let mut shown = url.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("redacted"));
        }
        ConfigError::InvalidBaseUrl { url: shown.to_string(), reason: reason.to_owned() }
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a base URL takes no query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials go in the API key, not the URL"));
    }
    let mut s = url.as_str().trim_end_matches('/').to_owned();
    if let Some(stripped) = s.strip_suffix("/api/v1") {
        s = stripped.to_owned();
    }
    Ok(s)
}

/// A `reqwest::ClientBuilder` set up as this crate builds its own: rustls with the *ring*
/// provider (it builds in a fraction of aws-lc-rs's time and needs no C toolchain beyond a C
/// compiler) and the platform's certificate verifier. Start from it to pass a customised
/// client to [`ClientBuilder::http`]: with only this crate in the tree, reqwest has no
/// process-wide TLS provider, and `reqwest::Client::new()` would panic.
pub fn http_client_builder() -> Result<reqwest::ClientBuilder, ConfigError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ConfigError::Tls)?
        .with_platform_verifier()
        .map_err(ConfigError::Tls)?
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // No redirects: reqwest strips only the standard credential headers on a cross-host
    // redirect, so `X-API-Key` (and a 307/308's PATCH body) would follow to the other host.
    Ok(reqwest::Client::builder().tls_backend_preconfigured(tls).redirect(reqwest::redirect::Policy::none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(normalize_base_url("https://cloud-api.phala.com").unwrap(), "https://cloud-api.phala.com");
        assert_eq!(normalize_base_url("https://cloud-api.phala.com/api/v1/").unwrap(), "https://cloud-api.phala.com");
        assert_eq!(normalize_base_url("http://127.0.0.1:8080/proxy/api/v1").unwrap(), "http://127.0.0.1:8080/proxy");
        for bad in ["ftp://x", "not a url", "https://h/?q=1", "https://u:p@h", "/api/v1"] {
            assert!(matches!(normalize_base_url(bad), Err(ConfigError::InvalidBaseUrl { .. })), "{bad}");
        }
        let e = normalize_base_url("https://user:hunter2@host/api/v1").unwrap_err();
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");
    }

    #[test]
    fn key_is_required_and_redacted() {
        assert!(matches!(Client::builder().build().unwrap_err(), ConfigError::MissingApiKey));
        assert!(matches!(Client::builder().api_key("  ").build().unwrap_err(), ConfigError::MissingApiKey));
        assert!(matches!(Client::builder().api_key("a\nb").build().unwrap_err(), ConfigError::InvalidApiKey));
        let builder = Client::builder().api_key("canary-key-123");
        assert!(!format!("{builder:?}").contains("canary"));
        let client = builder.build().unwrap();
        assert!(!format!("{client:?}").contains("canary"));
        assert_eq!(client.base_url(), DEFAULT_BASE_URL);
    }
}
