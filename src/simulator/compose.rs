//! The compose hash: SHA-256 of a canonical app-compose JSON, as dstack hashes `app-compose.json`.
//!
//! The allowed env names are part of the app compose, which is why changing them needs a new
//! hash registered on-chain when the KMS is contract-owned.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::hex::ComposeHash;

/// The fields of an app compose that the simulator models, in sorted order so the serialized
/// JSON is canonical (no whitespace, keys sorted).
#[derive(Serialize)]
struct AppCompose<'a> {
    allowed_envs: &'a [String],
    docker_compose_file: &'a str,
    kms_enabled: bool,
    manifest_version: u32,
    name: &'a str,
    runner: &'static str,
}

/// The compose hash of a CVM's app compose with these allowed env names (sorted, no duplicates).
pub(crate) fn compose_hash(name: &str, docker_compose_file: &str, allowed_envs: &[String]) -> ComposeHash {
    debug_assert!(allowed_envs.windows(2).all(|w| w[0] < w[1]), "allowed env names must be sorted and unique");
    let compose = AppCompose {
        allowed_envs,
        docker_compose_file,
        kms_enabled: true,
        manifest_version: 2,
        name,
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
        let json = r#"{"allowed_envs":["A","B"],"docker_compose_file":"f","kms_enabled":true,"manifest_version":2,"name":"n","runner":"docker-compose"}"#;
        let expected: [u8; 32] = Sha256::digest(json.as_bytes()).into();
        assert_eq!(compose_hash("n", "f", &names).0, expected);
        assert_ne!(compose_hash("n", "f", &names[..1]), compose_hash("n", "f", &names));
    }
}
