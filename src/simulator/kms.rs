//! `GET /api/v1/kms/{kms_id}/pubkey/{app_id}`: an app's env-encryption key, signed by the
//! simulated KMS as dstack's KMS signs it (see [`SignedEnvPubkey`]), or with the fault the app's
//! first CVM asks for ([`KmsPubkeyReply`]).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use k256::ecdsa::SigningKey;
use serde_json::{Value, json};

use super::{KmsKind, KmsPubkeyReply, Shared};
use crate::envcrypt::{K256PublicKey, RecipientPublicKey, SignedEnvPubkey};
use crate::hex::AppId;

/// The path, in axum's (and OpenAPI's) syntax.
pub(crate) const PUBKEY_PATH: &str = "/api/v1/kms/{kms_id}/pubkey/{app_id}";
/// The simulated KMS's slug, as `kms_info.slug` reports it.
pub(crate) const SLUG: &str = "kms-simulator";
/// Its hashed id, as `kms_info.id` reports it.
pub(crate) const ID: &str = "kms_sim";

/// How old a [`KmsPubkeyReply::StaleTimestamp`] signature is.
const STALE_SECS: u64 = 600;

/// `key`'s public key, compressed.
pub(crate) fn public_key(key: &SigningKey) -> K256PublicKey {
    // A signing key's point is on the curve, so this cannot fail; kept total all the same.
    let point = key.verifying_key().to_sec1_point(true);
    K256PublicKey::from_sec1_bytes(point.as_bytes()).unwrap_or_else(|_| unreachable!("a signing key's point"))
}

/// The KMS key the API reports for a contract-owned CVM whose KMS answers `reply`.
pub(crate) fn reported_key(shared: &Shared, reply: KmsPubkeyReply) -> K256PublicKey {
    match reply {
        KmsPubkeyReply::ImpostorKms => public_key(&shared.impostor_key),
        _ => public_key(&shared.kms_key),
    }
}

/// Answers 200 with `{public_key, signature[, timestamp]}` for an app of a contract-owned CVM;
/// 404 (`{"detail": "KMS not found"}`) for a `kms_id` that is neither the KMS's slug nor its id
/// (a `kms_type` such as `base` included), 400 for an app id that is not 40 hex digits (`0x`
/// optional), 404 for an app no contract-owned CVM belongs to. The spec lists no
/// authentication for it; the API key is not asked for.
pub(crate) async fn get_pubkey(
    State(shared): State<Arc<Shared>>,
    Path((kms_id, app_id)): Path<(String, String)>,
) -> Response {
    let request_id = super::random_id("req");
    let (status, body) = answer(&shared, &kms_id, &app_id);
    tracing::info!(%kms_id, %app_id, status = status.as_u16(), %request_id, "simulator: GET kms pubkey");
    let mut response = (status, axum::Json(body)).into_response();
    // The simulator's own id, hex: always a valid header value.
    response.headers_mut().insert("x-request-id", HeaderValue::from_str(&request_id).expect("hex id"));
    response
}

fn answer(shared: &Shared, kms_id: &str, app_id: &str) -> (StatusCode, Value) {
    if kms_id != SLUG && kms_id != ID {
        return (StatusCode::NOT_FOUND, json!({ "detail": "KMS not found" }));
    }
    let digits = app_id.strip_prefix("0x").unwrap_or(app_id);
    let Ok(app) = digits.parse::<AppId>().map_err(drop).and_then(|a| if digits.len() == 40 { Ok(a) } else { Err(()) })
    else {
        return (StatusCode::BAD_REQUEST, json!({ "detail": "Invalid app ID format" }));
    };
    // The app's first contract-owned CVM (by id) holds its key and says how to answer.
    let found = {
        let cvms = super::state::lock(&shared.cvms);
        let mut ids: Vec<&String> = cvms.keys().collect();
        ids.sort();
        ids.into_iter()
            .map(|id| &cvms[id])
            .find(|c| c.kms == KmsKind::Onchain && c.app_id == Some(app))
            .map(|c| (c.secret.public_key(), c.kms_reply))
    };
    let Some((public_key, reply)) = found else {
        return (StatusCode::NOT_FOUND, json!({ "detail": "App not found for this KMS" }));
    };
    let signed = sign(shared, app, public_key, reply, now());
    let mut body = json!({
        "public_key": signed.public_key.to_hex(),
        "signature": const_hex::encode(signed.signature),
    });
    if let Some(timestamp) = signed.timestamp {
        body["timestamp"] = json!(timestamp);
    }
    (StatusCode::OK, body)
}

/// The signed key as `reply` makes it.
fn sign(
    shared: &Shared,
    app: AppId,
    public_key: RecipientPublicKey,
    reply: KmsPubkeyReply,
    now: u64,
) -> SignedEnvPubkey {
    let (timestamp, signed_for, key) = match reply {
        KmsPubkeyReply::Legacy => (None, app, &shared.kms_key),
        KmsPubkeyReply::StaleTimestamp => (Some(now.saturating_sub(STALE_SECS)), app, &shared.kms_key),
        KmsPubkeyReply::SignedForOtherApp => (Some(now), other_app(app), &shared.kms_key),
        KmsPubkeyReply::ImpostorKms => (Some(now), app, &shared.impostor_key),
        KmsPubkeyReply::Timestamped | KmsPubkeyReply::TamperedSignature => (Some(now), app, &shared.kms_key),
    };
    let mut signed = SignedEnvPubkey { public_key, signature: [0; 65], timestamp };
    let (signature, recovery_id) = key.sign_prehash_recoverable(&signed.digest(&signed_for));
    signed.signature[..64].copy_from_slice(&signature.to_bytes());
    signed.signature[64] = recovery_id.to_byte();
    if reply == KmsPubkeyReply::TamperedSignature {
        // The low bit of `s`: still a valid signature, of another message or by another key.
        signed.signature[63] ^= 1;
    }
    signed
}

/// An app id that is not `app`.
fn other_app(app: AppId) -> AppId {
    let mut bytes = app.0;
    bytes[19] ^= 0xff;
    AppId(bytes)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
