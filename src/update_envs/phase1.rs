//! The data of a 465 reply: what must be registered on-chain before phase 2.
//!
//! Current servers send a StructuredError whose `details` carry `compose_hash`, `app_id`,
//! `device_id` and `kms_info`; older ones send the same four fields flat at the top level.
//! Both are read, hex with or without `0x`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::hex::{AppId, ComposeHash, HexError, strip_0x};

/// Top-level fields of the error envelope itself, not phase-1 data.
const ENVELOPE: [&str; 7] = ["error_code", "message", "request_id", "details", "suggestions", "links", "detail"];

/// What phase 1 asks to be registered.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Phase1Data {
    /// The compose hash to register with `addComposeHash`.
    pub compose_hash: ComposeHash,
    /// The app contract (DstackApp) to register it on.
    pub app_id: AppId,
    /// The device the CVM runs on (hex, lowercase, without `0x`), if sent.
    pub device_id: Option<String>,
    /// The app's KMS, if sent; its `chain_id` names the chain of the app contract.
    pub kms_info: Option<KmsInfo>,
    /// Other fields of the phase-1 data that this crate does not know.
    pub extra: Map<String, Value>,
}

/// The KMS of an app, as phase 1 describes it. Every field is optional; unknown fields are
/// kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct KmsInfo {
    /// KMS id.
    pub id: Option<String>,
    /// KMS slug, as in `/api/v1/kms/{slug}/…`.
    pub slug: Option<String>,
    /// KMS URL.
    pub url: Option<String>,
    /// KMS version.
    pub version: Option<String>,
    /// Chain of the KMS contracts (8453 Base, 1 Ethereum); `None` for a centralized KMS.
    #[serde(deserialize_with = "lenient_u64")]
    pub chain_id: Option<u64>,
    /// The KMS contract.
    pub kms_contract_address: Option<String>,
    /// The gateway's app id.
    pub gateway_app_id: Option<String>,
    /// The KMS's secp256k1 key (compressed, hex), which signs env-encryption public keys.
    pub k256_pubkey: Option<String>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A chain id as a number, a decimal string or a `0x` hex string.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        },
        _ => None,
    })
}

/// Why a 465 reply's phase-1 data could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Phase1Error {
    /// The body exceeded the response-size cap, so only its start was kept.
    #[error("the body exceeded the response-size cap")]
    Truncated,
    /// The body is not JSON.
    #[error("body is not JSON: {0}")]
    NotJson(#[source] std::sync::Arc<serde_json::Error>),
    /// The body is JSON, but not an object.
    #[error("body is not a JSON object")]
    NotObject,
    /// A field phase 2 needs is missing (or not a string).
    #[error("no {0}")]
    Missing(&'static str),
    /// A field phase 2 needs is not the hex value it should be.
    #[error(transparent)]
    Malformed(#[from] HexError),
}

impl Phase1Data {
    /// Reads the phase-1 data of a 465 body, structured or flat. The error says which field
    /// is missing or malformed.
    pub fn parse(body: &[u8]) -> Result<Self, Phase1Error> {
        let value: Value = serde_json::from_slice(body).map_err(|e| Phase1Error::NotJson(std::sync::Arc::new(e)))?;
        let Value::Object(mut top) = value else {
            return Err(Phase1Error::NotObject);
        };
        // Structured form: details = [{field, value}]; they win over flat fields.
        let mut fields = Map::new();
        if let Some(Value::Array(details)) = top.remove("details") {
            for detail in details {
                if let (Some(Value::String(field)), Some(value)) = (detail.get("field").cloned(), detail.get("value")) {
                    fields.insert(field, value.clone());
                }
            }
        }
        // Flat form: every top-level field but the envelope's own.
        for (key, v) in top {
            if !ENVELOPE.contains(&key.as_str()) {
                fields.entry(key).or_insert(v);
            }
        }
        let text = |fields: &Map<String, Value>, key: &str| -> Option<String> {
            fields.get(key).and_then(Value::as_str).map(str::to_owned)
        };
        let compose_hash: ComposeHash =
            text(&fields, "compose_hash").ok_or(Phase1Error::Missing("compose_hash"))?.parse()?;
        let app_id: AppId = text(&fields, "app_id").ok_or(Phase1Error::Missing("app_id"))?.parse()?;
        let device_id = text(&fields, "device_id").map(|d| strip_0x(&d).to_ascii_lowercase());
        // kms_info is informative: one of its fields in an unexpected shape must not lose the
        // hash and app id, so an unreadable kms_info stays, raw, in `extra`.
        let kms_info = match fields.remove("kms_info") {
            None | Some(Value::Null) => None,
            Some(v) => match KmsInfo::deserialize(&v) {
                Ok(info) => Some(info),
                Err(_) => {
                    fields.insert("kms_info".into(), v);
                    None
                }
            },
        };
        for key in ["compose_hash", "app_id", "device_id"] {
            fields.remove(key);
        }
        Ok(Self { compose_hash, app_id, device_id, kms_info, extra: fields })
    }

    /// The chain the app contract is on, from `kms_info.chain_id`.
    pub fn chain_id(&self) -> Option<u64> {
        self.kms_info.as_ref().and_then(|k| k.chain_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_and_structured_agree() {
        let structured = br#"{"error_code":"ERR-01-005","details":[
            {"field":"compose_hash","value":"0x18c6844ab5199260711a82b83367e977c1c152129c1e70deb252eae8b276cd49"},
            {"field":"app_id","value":"0xA172cedcae47474b615c54d510a5d84a8dea3032"},
            {"field":"device_id","value":"0xAB"},
            {"field":"kms_info","value":{"chain_id":"8453","slug":"s","new_field":1}},
            {"field":"future","value":[1]}]}"#;
        let flat = br#"{"compose_hash":"18c6844ab5199260711a82b83367e977c1c152129c1e70deb252eae8b276cd49",
            "app_id":"a172cedcae47474b615c54d510a5d84a8dea3032","device_id":"ab",
            "kms_info":{"chain_id":8453,"slug":"s","new_field":1},"future":[1]}"#;
        let a = Phase1Data::parse(structured).unwrap();
        let b = Phase1Data::parse(flat).unwrap();
        assert_eq!(a.compose_hash, b.compose_hash);
        assert_eq!(a.app_id, b.app_id);
        assert_eq!(a.device_id.as_deref(), Some("ab"));
        assert_eq!(a.kms_info, b.kms_info);
        assert_eq!(a.chain_id(), Some(8453));
        assert_eq!(a.kms_info.as_ref().unwrap().extra["new_field"], 1);
        assert_eq!(a.extra["future"], serde_json::json!([1]));
        assert_eq!(b.extra["future"], serde_json::json!([1]));
    }

    #[test]
    fn missing_or_bad_fields_are_named() {
        let e = Phase1Data::parse(br#"{"app_id":"00"}"#).unwrap_err();
        assert!(matches!(e, Phase1Error::Missing("compose_hash")), "{e:?}");
        assert_eq!(e.to_string(), "no compose_hash");
        let e = Phase1Data::parse(br#"{"compose_hash":"12","app_id":"00"}"#).unwrap_err();
        assert!(matches!(e, Phase1Error::Malformed(HexError::WrongLength { what: "compose hash", .. })), "{e:?}");
        assert!(e.to_string().contains("compose hash must be 32 bytes"), "{e}");
        let e = Phase1Data::parse(b"<html>").unwrap_err();
        assert!(matches!(e, Phase1Error::NotJson(_)) && e.to_string().contains("not JSON"), "{e}");
        // An odd kms_info keeps the hash and app id; the raw value stays in `extra`.
        let data = Phase1Data::parse(
            br#"{"compose_hash":"18c6844ab5199260711a82b83367e977c1c152129c1e70deb252eae8b276cd49","app_id":"a172cedcae47474b615c54d510a5d84a8dea3032","kms_info":{"version":5}}"#,
        )
        .unwrap();
        assert_eq!(data.kms_info, None);
        assert_eq!(data.extra["kms_info"], serde_json::json!({"version": 5}));
    }
}
