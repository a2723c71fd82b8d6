//! Checks made before a compose hash is signed: the app-id cross-check.

use crate::client::Client;
use crate::cvm_record::CvmRecord;
use crate::error::{HttpError, SdkError};
use crate::hex::AppId;

/// The app-id cross-check [`EnvUpdate::run`](super::EnvUpdate::run) makes before it hands a
/// 465 to the registrar, on by default: it reads the CVM (`GET /api/v1/cvms/{cvm_id}`) and
/// refuses, with nothing signed, when the 465's `app_id` is not the CVM's own `app_id` (or not
/// the one pinned with [`EnvUpdate::expect_app_id`](super::EnvUpdate::expect_app_id)).
///
/// A 465 names the contract to sign `addComposeHash` for; without this check a server (or a
/// proxy, or a mix-up of CVM ids) could have the owner's key register a hash on another of the
/// owner's apps. App ids are compared as 20-byte addresses: case, `0x` and `app_` do not matter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppIdPolicy {
    /// Whether to read the CVM at all ([`EnvUpdate::skip_app_id_check`](super::EnvUpdate::skip_app_id_check)).
    pub(crate) enabled: bool,
    /// The app the caller means, if pinned.
    pub(crate) expected: Option<AppId>,
    /// The compose hash the caller means, if pinned (checked in the driver, before the app id).
    pub(crate) expected_compose_hash: Option<crate::hex::ComposeHash>,
}

impl Default for AppIdPolicy {
    fn default() -> Self {
        Self { enabled: true, expected: None, expected_compose_hash: None }
    }
}

impl AppIdPolicy {
    /// Checks phase 1's `app_id` against CVM `cvm_id` as `client` reads it (when enabled; from
    /// `read`, the CVM as this run read it already, if it did), and against the pinned app
    /// (always).
    pub(crate) async fn check(
        &self,
        client: &Client,
        cvm_id: &str,
        phase1: AppId,
        phase1_chain: Option<u64>,
        read: Option<&CvmRecord>,
    ) -> Result<(), AppIdCheckError> {
        let cvm_id = cvm_id.to_owned();
        if self.enabled {
            let fetched;
            let record = match read {
                Some(record) => record,
                None => {
                    fetched = CvmRecord::fetch(client, &cvm_id)
                        .await
                        .map_err(|source| AppIdCheckError::Lookup { cvm_id: cvm_id.clone(), source })?;
                    &fetched
                }
            };
            let cvm = cvm_app_id(record, &cvm_id)?;
            if cvm != phase1 {
                tracing::warn!(%cvm_id, %phase1, %cvm, "phase 1 names another app than the CVM's; not signing");
                return Err(AppIdCheckError::Mismatch { cvm_id, phase1, cvm });
            }
            // The same app address may exist on several chains: sign on the CVM's KMS chain only.
            if let (Some(asked), Some(own)) = (phase1_chain, record.kms().and_then(|k| k.chain_id()))
                && asked != own
            {
                tracing::warn!(%cvm_id, asked, own, "phase 1 names another chain than the CVM's KMS; not signing");
                return Err(AppIdCheckError::ChainMismatch { cvm_id, phase1: asked, cvm: own });
            }
        }
        match self.expected {
            Some(expected) if expected != phase1 => {
                Err(AppIdCheckError::NotExpected { cvm_id, expected, actual: phase1 })
            }
            _ => Ok(()),
        }
    }
}

impl AppIdPolicy {
    /// Before anything is sent: when the caller pinned an app, checks that CVM `cvm_id` (as
    /// `read`, or else as `client` reads it) belongs to it, so that a CVM of another app is
    /// not changed even where no registration is asked for. Nothing to check without a pin; and
    /// with the check skipped ([`EnvUpdate::skip_app_id_check`](super::EnvUpdate::skip_app_id_check))
    /// and no read made, the pin is checked against phase 1's app id only, as before.
    pub(crate) async fn check_before_sending(
        &self,
        client: &Client,
        cvm_id: &str,
        read: Option<&CvmRecord>,
    ) -> Result<(), AppIdCheckError> {
        let Some(expected) = self.expected else { return Ok(()) };
        let actual = match read {
            Some(record) => cvm_app_id(record, cvm_id)?,
            None if !self.enabled => return Ok(()),
            None => {
                let record = CvmRecord::fetch(client, cvm_id)
                    .await
                    .map_err(|source| AppIdCheckError::Lookup { cvm_id: cvm_id.to_owned(), source })?;
                cvm_app_id(&record, cvm_id)?
            }
        };
        if actual != expected {
            tracing::warn!(%cvm_id, %expected, %actual, "the CVM belongs to another app than the expected one; not sending");
            return Err(AppIdCheckError::NotExpected { cvm_id: cvm_id.to_owned(), expected, actual });
        }
        Ok(())
    }
}

/// The CVM's app id, as `record` reports it.
fn cvm_app_id(record: &CvmRecord, cvm_id: &str) -> Result<AppId, AppIdCheckError> {
    let Some(reported) = record.app_id() else {
        return Err(AppIdCheckError::NoAppId { cvm_id: cvm_id.to_owned() });
    };
    parse_app_id(reported)
        .ok_or_else(|| AppIdCheckError::BadAppId { cvm_id: cvm_id.to_owned(), reported: reported.to_owned() })
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

/// Why the flow's app-id check refused phase 1's app; nothing was signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppIdCheckError {
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
    /// Phase 1 names another chain than the one the CVM's KMS is on (`kms_info.chain_id`).
    #[error(
        "phase 1 asks to register on chain {phase1}, but the KMS of CVM {cvm_id} is on chain {cvm}; nothing was signed: do not register this hash, and report this reply to Phala Cloud"
    )]
    ChainMismatch {
        /// The CVM.
        cvm_id: String,
        /// The chain the 465 names.
        phase1: u64,
        /// The chain of the CVM's KMS.
        cvm: u64,
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
