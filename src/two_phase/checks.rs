//! Checks made before a compose hash is signed: [`AppIdCheck`], the app-id cross-check.

use super::registrar::{ComposeHashRegistrar, Progress};
use crate::client::Client;
use crate::error::{HttpError, SdkError};
use crate::hex::{AppId, TransactionHash};
use crate::update_envs::Phase1Data;

/// A registrar that registers only for the app the CVM belongs to: before handing phase 1's
/// data to the registrar it wraps, it reads the CVM (`GET /api/v1/cvms/{cvm_id}`) and refuses,
/// with nothing signed, when the 465's `app_id` is not the CVM's own `app_id` (or not the one
/// pinned with [`AppIdCheck::expect_app_id`]).
///
/// A 465 names the contract to sign `addComposeHash` for; without this check a server (or a
/// proxy, or a mix-up of CVM ids) could have the owner's key register a hash on another of the
/// owner's apps. App ids are compared as 20-byte addresses: case, `0x` and `app_` do not matter.
///
/// ```no_run
/// # use phala_cloud::two_phase::ComposeHashRegistrar;
/// # async fn run<R>(registrar: R) -> Result<(), Box<dyn std::error::Error>>
/// # where R: ComposeHashRegistrar + Send + Sync, R::Error: Send + Sync + 'static {
/// // `registrar`: an `OnchainRegistrar` (feature `onchain`), a multisig's, …
/// use phala_cloud::two_phase::AppIdCheck;
/// use phala_cloud::{Client, EnvVars};
///
/// let client = Client::from_env()?;
/// let env = EnvVars::from_pairs([("API_TOKEN", "s3cr3t")])?;
/// let checked = AppIdCheck::new(&client, "my-cvm-id", registrar)
///     .expect_app_id("0xa172cedcae47474b615c54d510a5d84a8dea3032".parse()?);
/// client.env_update("my-cvm-id").env(env, "0x…".parse()?).run(checked).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AppIdCheck<'c, R> {
    client: &'c Client,
    cvm_id: String,
    expected: Option<AppId>,
    inner: R,
}

impl<'c, R> AppIdCheck<'c, R> {
    /// Checks phase 1's app id against CVM `cvm_id` (the one being updated) as `client` reads
    /// it, then registers with `inner`.
    pub fn new(client: &'c Client, cvm_id: impl Into<String>, inner: R) -> Self {
        Self { client, cvm_id: cvm_id.into(), expected: None, inner }
    }

    /// The app the caller means: the CVM's app id and phase 1's must both be this one.
    pub fn expect_app_id(mut self, app_id: AppId) -> Self {
        self.expected = Some(app_id);
        self
    }

    /// Reads the CVM's app id.
    async fn cvm_app_id<E: std::error::Error + 'static>(&self) -> Result<AppId, AppIdCheckError<E>> {
        let cvm_id = self.cvm_id.clone();
        let reply = self
            .client
            .send(|api| api.handle_get_cvm(&self.cvm_id))
            .await
            .map_err(|source| AppIdCheckError::Lookup { cvm_id: cvm_id.clone(), source: Box::new(source) })?;
        // Both shapes of the reply (`CvmBasicInfo`, `CvmInfoDetail`) carry `app_id`.
        let value = serde_json::to_value(reply.into_inner()).unwrap_or_default();
        let Some(reported) = value.get("app_id").and_then(|v| v.as_str()).map(str::to_owned) else {
            return Err(AppIdCheckError::NoAppId { cvm_id });
        };
        parse_app_id(&reported).ok_or(AppIdCheckError::BadAppId { cvm_id, reported })
    }
}

/// An app id as the API writes it: 40 hex digits in either case, with `0x` or `app_` or
/// neither. `None` when it is not one.
pub fn parse_app_id(text: &str) -> Option<AppId> {
    let text = text.trim();
    let digits = match text.get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case("app_") => &text[4..],
        _ => text,
    };
    digits.parse().ok()
}

/// Why [`AppIdCheck`] did not register. `E` is the wrapped registrar's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppIdCheckError<E: std::error::Error + 'static> {
    /// The CVM could not be read, so phase 1's app id could not be checked; nothing was signed.
    #[error(
        "cannot read CVM {cvm_id} (GET /api/v1/cvms/{cvm_id}) to check the app id phase 1 names; nothing was signed: check the CVM id and the network, then run again"
    )]
    Lookup {
        /// The CVM.
        cvm_id: String,
        /// Why it could not be read.
        #[source]
        source: Box<SdkError<HttpError>>,
    },
    /// The CVM's description has no app id.
    #[error(
        "CVM {cvm_id} reports no app id, so phase 1's app contract cannot be checked; nothing was signed: check that it is a CVM with a contract-owned KMS"
    )]
    NoAppId {
        /// The CVM.
        cvm_id: String,
    },
    /// The CVM's app id is not a 20-byte address.
    #[error(
        "CVM {cvm_id} reports app id {reported:?}, which is not an app contract address (40 hex digits); nothing was signed"
    )]
    BadAppId {
        /// The CVM.
        cvm_id: String,
        /// What it reported.
        reported: String,
    },
    /// Phase 1 names another app contract than the CVM's own.
    #[error(
        "phase 1 asks to register on app contract {phase1}, but CVM {cvm_id} belongs to app {cvm}; nothing was signed: do not register this hash, and report this reply to Phala Cloud"
    )]
    Mismatch {
        /// The CVM.
        cvm_id: String,
        /// The app id of the 465.
        phase1: AppId,
        /// The CVM's own app id.
        cvm: AppId,
    },
    /// The CVM (and phase 1) belong to another app than the one the caller pinned.
    #[error(
        "CVM {cvm_id} belongs to app {actual}, not to the expected app {expected}; nothing was signed: check the CVM id and the expected app id"
    )]
    NotExpected {
        /// The CVM.
        cvm_id: String,
        /// The app id the caller pinned.
        expected: AppId,
        /// The CVM's (and phase 1's) app id.
        actual: AppId,
    },
    /// The wrapped registrar failed.
    #[error(transparent)]
    Registrar(E),
}

impl<E: std::error::Error + 'static> AppIdCheckError<E> {
    /// The wrapped registrar's error, when the checks passed and it failed.
    pub fn registrar_error(&self) -> Option<&E> {
        match self {
            Self::Registrar(e) => Some(e),
            _ => None,
        }
    }
}

impl<R: ComposeHashRegistrar> ComposeHashRegistrar for AppIdCheck<'_, R> {
    type Error = AppIdCheckError<R::Error>;

    /// Reads the CVM, compares app ids, and only then calls the wrapped registrar.
    async fn register(&self, data: &Phase1Data, progress: &Progress<'_>) -> Result<TransactionHash, Self::Error> {
        let cvm = self.cvm_app_id().await?;
        if cvm != data.app_id {
            tracing::warn!(cvm_id = %self.cvm_id, phase1 = %data.app_id, %cvm, "phase 1 names another app than the CVM's; not signing");
            return Err(AppIdCheckError::Mismatch { cvm_id: self.cvm_id.clone(), phase1: data.app_id, cvm });
        }
        if let Some(expected) = self.expected
            && expected != cvm
        {
            return Err(AppIdCheckError::NotExpected { cvm_id: self.cvm_id.clone(), expected, actual: cvm });
        }
        self.inner.register(data, progress).await.map_err(AppIdCheckError::Registrar)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_app_id;

    #[test]
    fn app_ids_compare_whatever_their_prefix_and_case() {
        let plain = parse_app_id("a172cedcae47474b615c54d510a5d84a8dea3032").unwrap();
        for form in [
            "0xA172CEDCAE47474B615C54D510A5D84A8DEA3032",
            "app_a172cedcae47474b615c54d510a5d84a8dea3032",
            "APP_A172cedcae47474b615c54d510a5d84a8dea3032",
            " 0Xa172cedcae47474b615c54d510a5d84a8dea3032 ",
        ] {
            assert_eq!(parse_app_id(form), Some(plain), "{form}");
        }
        for bad in ["", "app_", "0x1234", "app_0xzz72cedcae47474b615c54d510a5d84a8dea3032", "nope"] {
            assert_eq!(parse_app_id(bad), None, "{bad}");
        }
    }
}
