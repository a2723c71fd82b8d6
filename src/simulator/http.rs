//! The HTTP side: the router, the handler of `PATCH /api/v1/cvms/{cvm_id}/envs`, and the
//! replies in the envelopes Phala Cloud uses (FastAPI `detail`, FastAPI validation list,
//! StructuredError).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use serde_json::{Value, json};

use super::chain::Verdict;
use super::compose::{compose_hash, normalize_names};
use super::state::{Operation, Pending, Phase};
use super::{KmsKind, Shared};
use crate::envcrypt::{CryptError, decrypt};
use crate::hex::{ComposeHash, TransactionHash};
use crate::validate::is_valid_env_key;

/// The shortest blob: ephemeral X25519 key (32), IV (12) and GCM tag (16).
const MIN_BLOB_BYTES: usize = 32 + 12 + 16;

/// Large enough for the largest env a CVM accepts (1 MiB of plaintext is 2 MiB of hex).
const BODY_LIMIT: usize = 8 << 20;

/// The env update's path, as `openapi.json` names it (axum's `{param}` syntax is the spec's).
const ENVS_PATH: &str = "/api/v1/cvms/{cvm_id}/envs";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    // axum's path syntax is OpenAPI's: `{cvm_id}` captures one segment.
    Router::new()
        .route(ENVS_PATH, patch(update_envs))
        .route(super::cvm_view::CVM_PATH, get(super::cvm_view::get_cvm))
        .route(super::cvm_view::LIST_PATH, get(super::cvm_view::list_cvms))
        .route(super::cvm_view::APP_CVMS_PATH, get(super::cvm_view::app_cvms))
        .route(super::kms::PUBKEY_PATH, get(super::kms::get_pubkey))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

/// A reply before it gets its request id.
enum Reply {
    Accepted {
        correlation_id: String,
        allowed_envs_changed: bool,
    },
    /// FastAPI `{"detail": "…"}`.
    Detail(StatusCode, String),
    Conflict {
        retry_after: Duration,
    },
    /// FastAPI validation list: (loc, msg, type).
    Invalid(Vec<(Vec<Value>, String, &'static str)>),
    Structured {
        status: u16,
        code: &'static str,
        message: String,
        details: Value,
        suggestion: &'static str,
    },
}

impl Reply {
    fn invalid(field: &str, msg: impl Into<String>, kind: &'static str) -> Self {
        Reply::Invalid(vec![(vec![json!("body"), json!(field)], msg.into(), kind)])
    }

    fn status(&self) -> StatusCode {
        match self {
            Reply::Accepted { .. } => StatusCode::ACCEPTED,
            Reply::Detail(status, _) => *status,
            Reply::Conflict { .. } => StatusCode::CONFLICT,
            Reply::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Reply::Structured { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    fn message(&self) -> Option<String> {
        match self {
            Reply::Accepted { .. } => None,
            Reply::Detail(_, text) => Some(text.clone()),
            Reply::Conflict { .. } => Some(CONFLICT.into()),
            Reply::Invalid(items) => Some(items.iter().map(|(_, msg, _)| msg.as_str()).collect::<Vec<_>>().join("; ")),
            Reply::Structured { message, .. } => Some(message.clone()),
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        let status = self.status();
        let mut response = match self {
            Reply::Accepted { correlation_id, allowed_envs_changed } => axum::Json(json!({
                "status": "in_progress",
                "message": "Environment update initiated",
                "correlation_id": correlation_id,
                "allowed_envs_changed": allowed_envs_changed,
            }))
            .into_response(),
            Reply::Detail(_, detail) => axum::Json(json!({ "detail": detail })).into_response(),
            Reply::Conflict { retry_after } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let mut r = axum::Json(json!({ "detail": CONFLICT })).into_response();
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                r
            }
            Reply::Invalid(items) => {
                let detail: Vec<Value> =
                    items.into_iter().map(|(loc, msg, kind)| json!({ "loc": loc, "msg": msg, "type": kind })).collect();
                axum::Json(json!({ "detail": detail })).into_response()
            }
            Reply::Structured { code, message, details, suggestion, .. } => axum::Json(json!({
                "error_code": code,
                "message": message,
                "request_id": request_id,
                "details": details,
                "suggestions": [suggestion],
                "links": [],
            }))
            .into_response(),
        };
        *response.status_mut() = status;
        // The simulator's own id, hex: always a valid header value.
        response.headers_mut().insert("x-request-id", HeaderValue::from_str(request_id).expect("hex id"));
        response
    }
}

const CONFLICT: &str = "Another operation is in progress for this CVM";

/// The body of a PATCH, as the spec's schema allows it.
struct UpdateRequest {
    encrypted_env: String,
    env_keys: Option<Vec<String>>,
    compose_hash: Option<String>,
    transaction_hash: Option<String>,
}

async fn update_envs(
    State(shared): State<Arc<Shared>>,
    Path(cvm_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = super::random_id("req");
    let mut op = Operation {
        at: SystemTime::now(),
        request_id: request_id.clone(),
        cvm_id: cvm_id.clone(),
        phase: None,
        status: 0,
        error_code: None,
        message: None,
        correlation_id: None,
        env_keys: None,
        compose_hash: None,
        transaction_hash: None,
        allowed_envs_changed: None,
        cvm_decrypts: None,
    };
    let reply = handle(&shared, &cvm_id, &headers, &body, &mut op).await;
    op.status = reply.status().as_u16();
    op.message = reply.message();
    match &reply {
        Reply::Accepted { correlation_id, allowed_envs_changed } => {
            op.correlation_id = Some(correlation_id.clone());
            op.allowed_envs_changed = Some(*allowed_envs_changed);
        }
        Reply::Structured { code, .. } => op.error_code = Some((*code).to_owned()),
        _ => {}
    }
    if !matches!(reply, Reply::Accepted { .. }) {
        op.cvm_decrypts = None;
    }
    tracing::info!(cvm_id = %op.cvm_id, status = op.status, request_id = %request_id, "simulator: PATCH envs");
    super::state::lock(&shared.log).push(op);
    reply.into_response(&request_id)
}

/// The endpoint's logic, top to bottom: authenticate, find the CVM (by any of its names), read the body, refuse
/// while busy, decrypt, then phase 1 (accept, or 465 with a compose hash to register) or
/// phase 2 (466 for an unknown hash, 467/468 from the chain, else accept).
async fn handle(shared: &Shared, cvm_id: &str, headers: &HeaderMap, body: &[u8], op: &mut Operation) -> Reply {
    let authenticated = headers.get("x-api-key").is_some_and(|key| key.as_bytes() == shared.api_key.as_bytes());
    if !authenticated {
        return Reply::Detail(StatusCode::UNAUTHORIZED, "Invalid or missing API key".into());
    }
    // The CVM by any name the API takes (id, hashed id, UUID, instance id, app id); held by id.
    let resolved = match super::state::resolve(&super::state::lock(&shared.cvms), cvm_id) {
        Some(id) => id.to_owned(),
        None => return Reply::Detail(StatusCode::NOT_FOUND, format!("CVM {cvm_id} not found")),
    };
    let cvm_id = resolved.as_str();
    let now = Instant::now();
    let request = {
        let cvms = super::state::lock(&shared.cvms);
        let Some(cvm) = cvms.get(cvm_id) else {
            return Reply::Detail(StatusCode::NOT_FOUND, format!("CVM {cvm_id} not found"));
        };
        if cvm.workspace != super::DEFAULT_WORKSPACE {
            return Reply::Detail(StatusCode::FORBIDDEN, "You do not have permission to access this CVM".into());
        }
        let request = match parse_body(body) {
            Ok(request) => request,
            Err(reply) => return reply,
        };
        op.phase = Some(if request.compose_hash.is_some() || request.transaction_hash.is_some() {
            Phase::Two
        } else {
            Phase::One
        });
        op.env_keys = request.env_keys.clone();
        if let Some(retry_after) = cvm.busy_for(now) {
            return Reply::Conflict { retry_after };
        }
        request
    };

    let phase2 = match (&request.compose_hash, &request.transaction_hash) {
        (None, None) => None,
        (Some(hash), Some(tx)) => {
            let hash: ComposeHash = match hash.parse() {
                Ok(hash) => hash,
                Err(e) => return Reply::invalid("compose_hash", format!("Value error, {e}"), "value_error"),
            };
            let tx: TransactionHash = match tx.parse() {
                Ok(tx) => tx,
                Err(e) => return Reply::invalid("transaction_hash", format!("Value error, {e}"), "value_error"),
            };
            op.compose_hash = Some(hash);
            op.transaction_hash = Some(tx);
            Some((hash, tx))
        }
        (Some(_), None) => {
            return Reply::invalid("transaction_hash", "Value error, required with compose_hash", "value_error");
        }
        (None, Some(_)) => {
            return Reply::invalid("compose_hash", "Value error, required with transaction_hash", "value_error");
        }
    };

    // The server cannot decrypt the env (it is encrypted to the CVM): it checks only the
    // blob's shape, and a blob too short to hold key, IV and tag is a validation error. The
    // CVM's side is played here: whether it will decrypt is recorded when the update is
    // applied, and an env it cannot decrypt is still accepted. The allowed names asked for:
    // `env_keys` as a set, or (without it) the CVM's current names, read under the lock that
    // decides.
    if request.encrypted_env.len() / 2 < MIN_BLOB_BYTES {
        return Reply::invalid(
            "encrypted_env",
            format!(
                "Value error, encrypted_env is malformed: {} bytes, shorter than the {MIN_BLOB_BYTES} of key, IV and tag",
                request.encrypted_env.len() / 2
            ),
            "value_error",
        );
    }
    let requested = request.env_keys.clone().map(normalize_names);
    let (decrypted, kms, app_id) = {
        let cvms = super::state::lock(&shared.cvms);
        let Some(cvm) = cvms.get(cvm_id) else {
            return Reply::Detail(StatusCode::NOT_FOUND, format!("CVM {cvm_id} not found"));
        };
        let decrypted = decrypt(&request.encrypted_env, &cvm.secret).map_err(|e| cvm_decrypt_error(&e));
        (decrypted, cvm.kms, cvm.app_id)
    };
    op.cvm_decrypts = Some(decrypted.is_ok());

    let Some((hash, tx)) = phase2 else {
        // Phase 1 decides and applies under one lock: another request may have changed the
        // CVM since the checks above, so they are made again here.
        let mut cvms = super::state::lock(&shared.cvms);
        let now = Instant::now();
        let cvm = match idle_cvm(&mut cvms, cvm_id, now) {
            Ok(cvm) => cvm,
            Err(reply) => return reply,
        };
        let allowed = requested.unwrap_or_else(|| cvm.allowed.clone());
        let changed = allowed != cvm.allowed;
        if changed && kms == KmsKind::Onchain {
            // The app's compose, shared by every CVM of the app: one hash for one set of names.
            let Some(app_id) = app_id else {
                return Reply::Detail(StatusCode::INTERNAL_SERVER_ERROR, "CVM has no app contract".into());
            };
            let hash = compose_hash(&app_id, &cvm.compose_file, &allowed);
            cvm.pending.insert(hash, Pending { allowed, expires_at: now + shared.compose_hash_ttl });
            op.compose_hash = Some(hash);
            return Reply::Structured {
                status: 465,
                code: "ERR-01-005",
                message: "Compose hash registration required on-chain".into(),
                details: json!([
                    { "field": "compose_hash", "value": hash.to_hex(), "message": null },
                    { "field": "app_id", "value": app_id.to_hex(), "message": null },
                    { "field": "device_id", "value": const_hex::encode_prefixed(cvm.device_id), "message": null },
                    { "field": "kms_info", "value": shared.kms_info, "message": null },
                ]),
                suggestion: "Register the compose hash on the app contract, then send the same request with compose_hash and transaction_hash",
            };
        }
        cvm.apply(allowed, decrypted.as_ref().map_err(String::as_str), shared.operation_duration, now);
        return Reply::Accepted { correlation_id: super::correlation_id(), allowed_envs_changed: changed };
    };

    // Phase 2: the hash must be one phase 1 handed out, unexpired, for these env names.
    let allowed = {
        let cvms = super::state::lock(&shared.cvms);
        let Some(cvm) = cvms.get(cvm_id) else {
            return Reply::Detail(StatusCode::NOT_FOUND, format!("CVM {cvm_id} not found"));
        };
        let allowed = requested.unwrap_or_else(|| cvm.allowed.clone());
        let pending = cvm.pending.get(&hash).filter(|p| p.expires_at > now);
        match pending {
            None => return invalid_hash(hash, "No pending registration matches this hash, or it has expired"),
            Some(p) if p.allowed != allowed => {
                return invalid_hash(hash, "This compose hash was issued for other env_keys than this request's");
            }
            Some(_) => {}
        }
        allowed
    };
    if let (Some(chain), Some(app_id)) = (&shared.chain, app_id)
        && let Err(refusal) = chain.verify(app_id.into(), hash.into(), tx.into()).await
    {
        let message = chain.message(&refusal);
        let (status, code, what, field, value, suggestion) = match refusal.verdict() {
            Verdict::NotAllowed => (
                468,
                "ERR-01-008",
                "Compose hash not allowed on-chain",
                "compose_hash",
                hash.to_hex(),
                "Register this exact compose hash on the app contract, then send phase 2 again",
            ),
            Verdict::BadTransaction => (
                467,
                "ERR-01-007",
                "Transaction verification failed",
                "transaction_hash",
                tx.to_hex(),
                "Send the hash of the transaction that called addComposeHash on the app contract",
            ),
            Verdict::ChainUnreachable => {
                return Reply::Detail(StatusCode::INTERNAL_SERVER_ERROR, format!("Chain RPC error: {message}"));
            }
        };
        return Reply::Structured {
            status,
            code,
            message: format!("{what}: {message}"),
            details: json!([{ "field": field, "value": value, "message": message }]),
            suggestion,
        };
    }
    let mut cvms = super::state::lock(&shared.cvms);
    let now = Instant::now();
    let cvm = match idle_cvm(&mut cvms, cvm_id, now) {
        Ok(cvm) => cvm,
        Err(reply) => return reply,
    };
    if cvm.pending.remove(&hash).is_none() {
        return invalid_hash(hash, "This compose hash was used by a concurrent request");
    }
    let changed = allowed != cvm.allowed;
    cvm.apply(allowed, decrypted.as_ref().map_err(String::as_str), shared.operation_duration, now);
    Reply::Accepted { correlation_id: super::correlation_id(), allowed_envs_changed: changed }
}

/// The CVM an update may change now: a 404 when there is none, a 409 while an earlier update
/// still runs.
fn idle_cvm<'a>(
    cvms: &'a mut HashMap<String, super::state::Cvm>,
    cvm_id: &str,
    now: Instant,
) -> Result<&'a mut super::state::Cvm, Reply> {
    let cvm =
        cvms.get_mut(cvm_id).ok_or_else(|| Reply::Detail(StatusCode::NOT_FOUND, format!("CVM {cvm_id} not found")))?;
    match cvm.busy_for(now) {
        Some(retry_after) => Err(Reply::Conflict { retry_after }),
        None => Ok(cvm),
    }
}

fn invalid_hash(hash: ComposeHash, message: &str) -> Reply {
    Reply::Structured {
        status: 466,
        code: "ERR-01-006",
        message: "Compose hash invalid or expired".into(),
        details: json!([{ "field": "compose_hash", "value": hash.to_hex(), "message": message }]),
        suggestion: "Send the update again without compose_hash to obtain a fresh compose hash",
    }
}

/// Why the CVM cannot use an env it was sent (the CVM's side; never in a reply).
fn cvm_decrypt_error(e: &CryptError) -> String {
    format!("the CVM cannot decrypt this encrypted_env: {e}")
}

/// Reads the body as the spec's schema says, collecting every error as FastAPI does.
fn parse_body(body: &[u8]) -> Result<UpdateRequest, Reply> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Reply::Invalid(vec![(vec![json!("body"), json!(e.column())], "JSON decode error".into(), "json_invalid")])
    })?;
    let Value::Object(mut fields) = value else {
        return Err(Reply::Invalid(vec![(
            vec![json!("body")],
            "Input should be a valid dictionary or object to extract fields from".into(),
            "model_attributes_type",
        )]));
    };
    let mut errors = Vec::new();
    let loc = |field: &str| vec![json!("body"), json!(field)];
    let mut optional_string = |field: &str, errors: &mut Vec<_>| match fields.remove(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.push((loc(field), "Input should be a valid string".into(), "string_type"));
            None
        }
    };
    let encrypted_env = optional_string("encrypted_env", &mut errors);
    let compose_hash = optional_string("compose_hash", &mut errors);
    let transaction_hash = optional_string("transaction_hash", &mut errors);
    let env_keys = match fields.remove("env_keys") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut keys = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(key) if is_valid_env_key(&key) => keys.push(key),
                    Value::String(_) => errors.push((
                        vec![json!("body"), json!("env_keys"), json!(i)],
                        "Value error, not a valid env name (letters, digits and _, not starting with a digit)".into(),
                        "value_error",
                    )),
                    _ => errors.push((
                        vec![json!("body"), json!("env_keys"), json!(i)],
                        "Input should be a valid string".into(),
                        "string_type",
                    )),
                }
            }
            Some(keys)
        }
        Some(_) => {
            errors.push((loc("env_keys"), "Input should be a valid list".into(), "list_type"));
            None
        }
    };
    match &encrypted_env {
        None if !errors.iter().any(|(l, _, _)| l == &loc("encrypted_env")) => {
            errors.push((loc("encrypted_env"), "Field required".into(), "missing"));
        }
        Some(hex) if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || hex.len() % 2 == 1 => {
            errors.push((
                loc("encrypted_env"),
                "Value error, encrypted_env must be a hex string".into(),
                "value_error",
            ));
        }
        _ => {}
    }
    match encrypted_env {
        Some(encrypted_env) if errors.is_empty() => {
            Ok(UpdateRequest { encrypted_env, env_keys, compose_hash, transaction_hash })
        }
        _ => Err(Reply::Invalid(errors)),
    }
}
