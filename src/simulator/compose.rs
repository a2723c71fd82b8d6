//! The compose hash: SHA-256 of a canonical app-compose JSON, as dstack hashes `app-compose.json`.
//!
//! The docker compose file, the pre-launch script and the allowed env names are part of the app
//! compose, which is why changing any of them needs a new hash registered on-chain when the KMS
//! is contract-owned.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::hex::{AppId, ComposeHash};

/// The fields of an app compose that the simulator models, in sorted order so the serialized
/// JSON is canonical (no whitespace, keys sorted).
///
/// The app compose belongs to the app, not to one CVM: every CVM of an app runs the same
/// compose, so it holds no CVM id and CVMs of one app with the same allowed env names share
/// one compose hash (and one registration on the app contract).
#[derive(Serialize)]
struct AppCompose<'a> {
    allowed_envs: &'a [String],
    app_id: String,
    docker_compose_file: &'a str,
    kms_enabled: bool,
    manifest_version: u32,
    /// Left out when there is none, as dstack leaves it out: a compose without one hashes as
    /// before the script was modelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pre_launch_script: Option<&'a str>,
    runner: &'static str,
}

/// The compose hash of an app's compose: its docker compose file, pre-launch script and
/// allowed env names (sorted, no duplicates).
pub(crate) fn compose_hash(
    app_id: &AppId,
    docker_compose_file: &str,
    pre_launch_script: Option<&str>,
    allowed_envs: &[String],
) -> ComposeHash {
    debug_assert!(allowed_envs.windows(2).all(|w| w[0] < w[1]), "allowed env names must be sorted and unique");
    let compose = AppCompose {
        allowed_envs,
        app_id: app_id.to_hex(),
        docker_compose_file,
        kms_enabled: true,
        manifest_version: 2,
        pre_launch_script,
        runner: "docker-compose",
    };
    let json = serde_json::to_vec(&compose).expect("serializing strings and numbers cannot fail");
    ComposeHash(Sha256::digest(&json).into())
}

/// Env names as a set: sorted, duplicates removed.
pub(crate) fn normalize_names(mut names: Vec<String>) -> Vec<String> {
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_is_hashed() {
        let names = normalize_names(vec!["B".into(), "A".into(), "B".into()]);
        assert_eq!(names, ["A", "B"]);
        let app = AppId([0xab; 20]);
        let json = format!(
            r#"{{"allowed_envs":["A","B"],"app_id":"{}","docker_compose_file":"f","kms_enabled":true,"manifest_version":2,"runner":"docker-compose"}}"#,
            app.to_hex()
        );
        let expected: [u8; 32] = Sha256::digest(json.as_bytes()).into();
        assert_eq!(compose_hash(&app, "f", None, &names).0, expected);
        assert_ne!(compose_hash(&app, "f", None, &names[..1]), compose_hash(&app, "f", None, &names));
        assert_ne!(compose_hash(&AppId([0xcd; 20]), "f", None, &names), compose_hash(&app, "f", None, &names));
        assert_ne!(compose_hash(&app, "g", None, &names), compose_hash(&app, "f", None, &names));

        // With a pre-launch script, in its sorted place.
        let json = format!(
            r#"{{"allowed_envs":["A","B"],"app_id":"{}","docker_compose_file":"f","kms_enabled":true,"manifest_version":2,"pre_launch_script":"s","runner":"docker-compose"}}"#,
            app.to_hex()
        );
        let expected: [u8; 32] = Sha256::digest(json.as_bytes()).into();
        assert_eq!(compose_hash(&app, "f", Some("s"), &names).0, expected);
    }
}
