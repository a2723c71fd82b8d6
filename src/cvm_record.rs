//! What the handwritten layer reads of a CVM (`GET /api/v1/cvms/{cvm_id}`): its app id and its
//! KMS, from either shape of the reply.
//!
//! The reply is `anyOf [CvmBasicInfo, CVMInfoDetail]`, by API version. Older versions
//! (`2025-10-28`) send `CvmBasicInfo`: `kms_info` is the spec's `KMSInfo` (`id`, `slug`,
//! `chain_id`, `kms_contract_address`, …) and the env-encryption key is the top-level
//! `encrypted_env_pubkey`. Newer ones send `CVMInfoDetail`: `kms_info` is `CVMKmsInfo`
//! (`chain_id`, `dstack_kms_address`, `encrypted_env_pubkey`, …) and `kms_type`. Servers send
//! more than the generated types know (`k256_pubkey` and `slug` are in neither schema, and the
//! official CLI reads both), so the raw body is read, leniently, not the generated value.

use serde_json::{Map, Value};

use crate::client::Client;
use crate::error::{HttpError, SdkError};

/// A CVM as the API describes it, read from the raw reply.
#[derive(Debug, Clone)]
pub(crate) struct CvmRecord {
    /// The reply's JSON object.
    fields: Map<String, Value>,
}

impl CvmRecord {
    /// Reads CVM `cvm_id`. A 200 that is not quite the spec's shape (a field the generated type
    /// requires left out, as servers drift) is read all the same; one that is not a JSON object
    /// is the [`SdkError::InvalidReply`] it came as.
    pub(crate) async fn fetch(client: &Client, cvm_id: &str) -> Result<Self, Box<SdkError<HttpError>>> {
        crate::validate::check_cvm_id(cvm_id).map_err(|e| Box::new(SdkError::InvalidInput(e)))?;
        match client.send(|api| api.handle_get_cvm(cvm_id)).await {
            Ok(reply) => match serde_json::from_slice(reply.raw_body()) {
                Ok(Value::Object(fields)) => Ok(Self { fields }),
                // The generated type parsed it, so it is an object; kept total all the same.
                _ => Ok(Self { fields: Map::new() }),
            },
            Err(SdkError::InvalidReply(reply)) if !reply.body_truncated() => {
                match serde_json::from_slice(reply.raw_body()) {
                    Ok(Value::Object(fields)) => Ok(Self { fields }),
                    _ => Err(Box::new(SdkError::InvalidReply(reply))),
                }
            }
            Err(e) => Err(Box::new(e)),
        }
    }

    /// From a reply's JSON object (for the unit tests).
    #[cfg(test)]
    pub(crate) fn from_value(value: Value) -> Self {
        match value {
            Value::Object(fields) => Self { fields },
            _ => Self { fields: Map::new() },
        }
    }

    /// `app_id`, as written (both shapes carry it).
    pub(crate) fn app_id(&self) -> Option<&str> {
        text(&self.fields, "app_id")
    }

    /// Whether `other` describes the same CVM: the same `vm_uuid`, or the same `id` (a hashed
    /// id in one API version, the database id in the other; both records come from one client,
    /// so from one version). A record with neither is the same as none, so an unreadable
    /// reply never merges two CVMs.
    pub(crate) fn same_cvm(&self, other: &Self) -> bool {
        let same = |key: &str| match (id_field(&self.fields, key), id_field(&other.fields, key)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        same("vm_uuid") || same("id")
    }

    /// The KMS, when `kms_info` is an object.
    pub(crate) fn kms(&self) -> Option<CvmKms<'_>> {
        match self.fields.get("kms_info") {
            Some(Value::Object(info)) => Some(CvmKms { info, kms_type: text(&self.fields, "kms_type") }),
            _ => None,
        }
    }

    /// Whether the KMS is contract-owned: `kms_info` carries anything of a chain — a
    /// `chain_id` (as the official clients decide; any value but `null`, readable or not), a
    /// KMS contract address or a `k256_pubkey` — or `kms_type` names a chain (`ethereum`,
    /// `base`). Only a CVM with none of these is taken for a centralized KMS, whose key is the
    /// API's word: a reply that mixes the two is held to the contract-owned checks, so an API
    /// cannot skip them by writing `chain_id` as `null` or as `8453.0` beside a KMS contract.
    pub(crate) fn is_contract_owned(&self) -> bool {
        let kms_type = text(&self.fields, "kms_type");
        let chain_facts = self.kms().is_some_and(|k| {
            k.info.get("chain_id").is_some_and(|v| !v.is_null())
                || k.contract_address().is_some()
                || k.k256_pubkey().is_some()
        });
        chain_facts || kms_type.is_some_and(|t| t.eq_ignore_ascii_case("ethereum") || t.eq_ignore_ascii_case("base"))
    }

    /// The env-encryption key of a centralized KMS: `kms_info.encrypted_env_pubkey` (newer API
    /// versions), else the top-level `encrypted_env_pubkey` (older ones).
    pub(crate) fn encrypted_env_pubkey(&self) -> Option<&str> {
        self.kms()
            .and_then(|k| text(k.info, "encrypted_env_pubkey"))
            .or_else(|| text(&self.fields, "encrypted_env_pubkey"))
    }
}

/// A CVM's `kms_info`, in either shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CvmKms<'a> {
    info: &'a Map<String, Value>,
    kms_type: Option<&'a str>,
}

impl<'a> CvmKms<'a> {
    /// What names the KMS in `/api/v1/kms/{kms_id}/…`: its `slug`, else its `id` (the spec:
    /// "KMS ID (hashed) or slug"). Never `kms_type`, which names a kind of KMS, not one KMS
    /// (the official CLI passes it, and gets "KMS not found").
    pub(crate) fn path_id(&self) -> Option<String> {
        text(self.info, "slug").map(str::to_owned).or_else(|| match self.info.get("id") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    }

    /// `chain_id`, as a number, a decimal string or a `0x` hex string.
    pub(crate) fn chain_id(&self) -> Option<u64> {
        match self.info.get("chain_id")? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            },
            _ => None,
        }
    }

    /// The KMS's secp256k1 key as the API reports it (`k256_pubkey`).
    pub(crate) fn k256_pubkey(&self) -> Option<&'a str> {
        text(self.info, "k256_pubkey")
    }

    /// The KMS contract: `kms_contract_address` (`KMSInfo`), else `dstack_kms_address`
    /// (`CVMKmsInfo`).
    pub(crate) fn contract_address(&self) -> Option<&'a str> {
        text(self.info, "kms_contract_address").or_else(|| text(self.info, "dstack_kms_address"))
    }

    /// `kms_type` of the CVM (`CVMInfoDetail` only), for messages.
    pub(crate) fn kms_type(&self) -> Option<&'a str> {
        self.kms_type
    }
}

/// A non-empty string field.
fn text<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    fields.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// An identifier field, string or number, as text.
fn id_field(fields: &Map<String, Value>, key: &str) -> Option<String> {
    match fields.get(key) {
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => text(fields, key).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::CvmRecord;

    #[test]
    fn both_shapes_give_the_same_facts() {
        // CvmBasicInfo (2025-10-28): KMSInfo, top-level key.
        let basic = CvmRecord::from_value(json!({
            "id": 7, "name": "c", "status": "running", "app_id": "app_a172cedcae47474b615c54d510a5d84a8dea3032",
            "vcpu": 1, "memory": 1, "disk_size": 1, "encrypted_env_pubkey": "0xaa",
            "kms_info": { "id": "kms_1", "slug": "base-prod", "url": "u", "version": "v", "chain_id": 8453,
                          "kms_contract_address": "0x01", "k256_pubkey": "0x02" }
        }));
        // CVMInfoDetail (2026-01-21 and later): CVMKmsInfo, nested key.
        let detail = CvmRecord::from_value(json!({
            "id": "cvm_1", "name": "c", "status": "running", "resource": {}, "gateway": {},
            "app_id": "a172cedcae47474b615c54d510a5d84a8dea3032", "kms_type": "base",
            "kms_info": { "chain_id": "0x2105", "dstack_kms_address": "0x01", "encrypted_env_pubkey": null,
                          "slug": "base-prod", "k256_pubkey": "0x02" }
        }));
        for record in [&basic, &detail] {
            assert!(record.is_contract_owned());
            let kms = record.kms().unwrap();
            assert_eq!(kms.path_id().as_deref(), Some("base-prod"));
            assert_eq!(kms.chain_id(), Some(8453));
            assert_eq!(kms.contract_address(), Some("0x01"));
            assert_eq!(kms.k256_pubkey(), Some("0x02"));
        }
        assert_eq!(basic.encrypted_env_pubkey(), Some("0xaa"));
        assert_eq!(detail.encrypted_env_pubkey(), None);
    }

    #[test]
    fn any_chain_fact_makes_the_kms_contract_owned() {
        let contract = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0";
        for kms_info in [
            serde_json::json!({"chain_id": null, "kms_contract_address": contract}),
            serde_json::json!({"chain_id": 8453.0}),
            serde_json::json!({"chain_id": "base"}),
            serde_json::json!({"dstack_kms_address": contract}),
            serde_json::json!({"k256_pubkey": "0x02aa"}),
        ] {
            let record = CvmRecord::from_value(
                serde_json::json!({"app_id": "ab", "encrypted_env_pubkey": "11".repeat(32), "kms_info": kms_info}),
            );
            assert!(record.is_contract_owned(), "{kms_info}");
        }
        let centralized = CvmRecord::from_value(serde_json::json!({
            "kms_info": {"chain_id": null, "slug": "phala", "encrypted_env_pubkey": "11".repeat(32)}
        }));
        assert!(!centralized.is_contract_owned());
    }

    #[test]
    fn the_same_cvm_by_uuid_or_id_never_by_nothing() {
        let a = CvmRecord::from_value(json!({ "id": "cvm_1", "vm_uuid": "u-1", "name": "web" }));
        let by_uuid = CvmRecord::from_value(json!({ "id": "cvm_9", "vm_uuid": " u-1 " }));
        let by_id = CvmRecord::from_value(json!({ "id": "cvm_1", "vm_uuid": null }));
        let numeric = CvmRecord::from_value(json!({ "id": 7 }));
        let other = CvmRecord::from_value(json!({ "id": "cvm_2", "vm_uuid": "u-2", "name": "web" }));
        let bare = CvmRecord::from_value(json!({ "name": "web" }));
        assert!(a.same_cvm(&by_uuid) && a.same_cvm(&by_id));
        assert!(numeric.same_cvm(&CvmRecord::from_value(json!({ "id": 7 }))));
        // A name is not an identity, and a record with no identifier merges with nothing.
        assert!(!a.same_cvm(&other));
        assert!(!bare.same_cvm(&bare) && !a.same_cvm(&bare));
    }

    #[test]
    fn centralized_key_nested_first_then_top_level() {
        let nested = CvmRecord::from_value(json!({
            "encrypted_env_pubkey": "top", "kms_info": { "chain_id": null, "encrypted_env_pubkey": "nested" }
        }));
        assert!(!nested.is_contract_owned());
        assert_eq!(nested.encrypted_env_pubkey(), Some("nested"));
        let top = CvmRecord::from_value(json!({ "encrypted_env_pubkey": "top", "kms_info": null }));
        assert_eq!(top.encrypted_env_pubkey(), Some("top"));
        assert!(!top.is_contract_owned());
        // A kind that names a chain is contract-owned even without chain_id; the id names the KMS
        // when there is no slug, kms_type never does.
        let typed = CvmRecord::from_value(json!({ "kms_type": "ethereum", "kms_info": { "id": 12 } }));
        assert!(typed.is_contract_owned());
        assert_eq!(typed.kms().unwrap().path_id().as_deref(), Some("12"));
        let bare = CvmRecord::from_value(json!({ "kms_type": "base", "kms_info": {} }));
        assert_eq!(bare.kms().unwrap().path_id(), None);
        assert_eq!(bare.kms().unwrap().kms_type(), Some("base"));
    }
}
