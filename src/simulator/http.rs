//! The HTTP side: the router, the handler of the four updates of a CVM's app compose
//! (`PATCH /api/v1/cvms/{cvm_id}/envs`, the unified `PATCH /api/v1/cvms/{cvm_id}`, and the
//! multipart `…/docker-compose` and `…/pre-launch-script` uploads), and the replies in the envelopes Phala Cloud uses (FastAPI `detail`, FastAPI validation list,
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
use serde_json::{Map, Value, json};

use super::chain::Verdict;
use super::compose::normalize_names;
use super::state::{Operation, Pending, Phase, Target};
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
/// The multipart compose upload's path.
const DOCKER_COMPOSE_PATH: &str = "/api/v1/cvms/{cvm_id}/docker-compose";
/// The multipart pre-launch-script upload's path.
const PRE_LAUNCH_SCRIPT_PATH: &str = "/api/v1/cvms/{cvm_id}/pre-launch-script";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    // axum's path syntax is OpenAPI's: `{cvm_id}` captures one segment.
    Router::new()
        .route(ENVS_PATH, patch(handler(Route::Envs)))
        .route(super::cvm_view::CVM_PATH, get(super::cvm_view::get_cvm).patch(handler(Route::Unified)))
        .route(DOCKER_COMPOSE_PATH, patch(handler(Route::DockerCompose)))
        .route(PRE_LAUNCH_SCRIPT_PATH, patch(handler(Route::PreLaunchScript)))
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
        /// The envs route's `allowed_envs_changed`.
        allowed_envs_changed: Option<bool>,
        message: &'static str,
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
        Self::invalid_at(vec![json!("body"), json!(field)], msg, kind)
    }

    fn invalid_at(loc: Vec<Value>, msg: impl Into<String>, kind: &'static str) -> Self {
        Reply::Invalid(vec![(loc, msg.into(), kind)])
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
            Reply::Accepted { correlation_id, allowed_envs_changed, message } => {
                let mut body = json!({
                    "status": "in_progress",
                    "message": message,
                    "correlation_id": correlation_id,
                });
                if let Some(changed) = allowed_envs_changed {
                    body["allowed_envs_changed"] = json!(changed);
                }
                axum::Json(body).into_response()
            }
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

/// What a request asks to change, whichever of the four routes it came by.
#[derive(Default)]
struct Change {
    /// The env, encrypted to the CVM (required by the envs route).
    encrypted_env: Option<String>,
    /// The allowed env names (`env_keys` of the envs route, `allowed_envs` of the unified one).
    allowed_envs: Option<Vec<String>>,
    docker_compose_file: Option<String>,
    /// `Some("")` removes the script.
    pre_launch_script: Option<String>,
    /// What does not change the compose (`vcpu`, `memory`, `public_logs` …), as given.
    settings: Map<String, Value>,
    /// Phase 2: in the envs body, or the `X-Compose-Hash` and `X-Transaction-Hash` headers.
    compose_hash: Option<String>,
    transaction_hash: Option<String>,
    /// The unified PATCH's `X-Prepare-Only: true`.
    prepare_only: bool,
}

impl Change {
    /// Whether the request asks for any change (`allow_force_stop` alone is none).
    fn changes_something(&self) -> bool {
        self.encrypted_env.is_some()
            || self.docker_compose_file.is_some()
            || self.pre_launch_script.is_some()
            || self.allowed_envs.is_some()
            || self.settings.keys().any(|k| k != "allow_force_stop")
    }

    /// Phase 2 of the unified PATCH with nothing in its body (the official JS SDK's
    /// `confirmCvmPatch` sends `{}`): the request phase 1 handed the hash out for.
    fn or_pending(self, pending: &Pending) -> Self {
        Self {
            encrypted_env: pending.encrypted_env.clone(),
            allowed_envs: Some(pending.target.allowed.clone()),
            docker_compose_file: Some(pending.target.compose_file.clone()),
            pre_launch_script: Some(pending.target.pre_launch_script.clone().unwrap_or_default()),
            settings: pending.settings.clone(),
            ..self
        }
    }
}

/// The four routes that change a CVM's app compose: how each reads its request, carries phase
/// 2, and words its acceptance.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `PATCH …/envs`: JSON, phase 2 in the body.
    Envs,
    /// `PATCH /api/v1/cvms/{cvm_id}`: JSON `UpdateCvmRequest`, phase 2 in headers.
    Unified,
    /// `PATCH …/docker-compose`: multipart `file`, phase 2 in headers.
    DockerCompose,
    /// `PATCH …/pre-launch-script`: multipart `file`, phase 2 in headers.
    PreLaunchScript,
}

impl Route {
    fn operation(self) -> &'static str {
        match self {
            Route::Envs => "update_cvm_envs",
            Route::Unified => "update_cvm_endpoint",
            Route::DockerCompose => "update_cvm_docker_compose",
            Route::PreLaunchScript => "update_cvm_pre_launch_script",
        }
    }

    /// Reads the request's change (and, but for the envs route, phase 2 from the headers).
    fn read(self, headers: &HeaderMap, body: &[u8]) -> Result<Change, Reply> {
        let mut change = match self {
            Route::Envs => return parse_body(body),
            Route::Unified => parse_unified(body)?,
            Route::DockerCompose => {
                Change { docker_compose_file: Some(multipart_file(headers, body)?), ..Change::default() }
            }
            Route::PreLaunchScript => {
                Change { pre_launch_script: Some(multipart_file(headers, body)?), ..Change::default() }
            }
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        change.compose_hash = header("x-compose-hash");
        change.transaction_hash = header("x-transaction-hash");
        change.prepare_only = self == Route::Unified && header("x-prepare-only").as_deref() == Some("true");
        // Only phase 1 must change something: a phase 2 may cite its hash alone.
        let phase2 = change.compose_hash.is_some() || change.transaction_hash.is_some();
        if self == Route::Unified && !phase2 && !change.changes_something() {
            return Err(Reply::Detail(StatusCode::BAD_REQUEST, "No fields to update".into()));
        }
        Ok(change)
    }

    /// Where a phase-2 value is, for a validation error: a body field or a header.
    fn loc(self, field: &str) -> Vec<Value> {
        match (self, field) {
            (Route::Envs, _) => vec![json!("body"), json!(field)],
            (_, "compose_hash") => vec![json!("header"), json!("X-Compose-Hash")],
            (_, _) => vec![json!("header"), json!("X-Transaction-Hash")],
        }
    }

    fn accepted(self, correlation_id: String, allowed_envs_changed: bool) -> Reply {
        let message = match self {
            Route::Envs => "Environment update initiated",
            _ => "CVM update initiated",
        };
        Reply::Accepted {
            correlation_id,
            allowed_envs_changed: (self == Route::Envs).then_some(allowed_envs_changed),
            message,
        }
    }
}

/// A request's reply, to come.
type Answer = std::pin::Pin<Box<dyn Future<Output = Response> + Send>>;

/// The handler of `route`'s path.
fn handler(
    route: Route,
) -> impl Fn(State<Arc<Shared>>, Path<String>, HeaderMap, Bytes) -> Answer + Clone + Send + Sync + 'static {
    move |State(shared), Path(cvm_id), headers, body| {
        Box::pin(async move { answer(&shared, route, cvm_id, &headers, &body).await })
    }
}

/// Answers one request of `route` and logs it.
async fn answer(shared: &Shared, route: Route, cvm_id: String, headers: &HeaderMap, body: &[u8]) -> Response {
    let request_id = super::random_id("req");
    let mut op = Operation {
        at: SystemTime::now(),
        request_id: request_id.clone(),
        operation: route.operation(),
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
    let reply = handle(shared, route, &cvm_id, headers, body, &mut op).await;
    op.status = reply.status().as_u16();
    op.message = reply.message();
    match &reply {
        Reply::Accepted { correlation_id, allowed_envs_changed, .. } => {
            op.correlation_id = Some(correlation_id.clone());
            op.allowed_envs_changed = *allowed_envs_changed;
        }
        Reply::Structured { code, .. } => op.error_code = Some((*code).to_owned()),
        _ => {}
    }
    if !matches!(reply, Reply::Accepted { .. }) {
        op.cvm_decrypts = None;
    }
    tracing::info!(cvm_id = %op.cvm_id, status = op.status, request_id = %request_id, "simulator: PATCH {}", route.operation());
    super::state::lock(&shared.log).push(op);
    reply.into_response(&request_id)
}

/// The endpoint's logic, top to bottom: authenticate, find the CVM (by any of its names), read
/// the request, refuse while busy, decrypt the env if one is sent, then phase 1 (accept, or 465
/// with the compose hash of the app compose the CVM would boot) or phase 2 (466 for an unknown
/// hash or one issued for another change, 467/468 from the chain, else accept).
async fn handle(
    shared: &Shared,
    route: Route,
    cvm_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    op: &mut Operation,
) -> Reply {
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
    let mut change = {
        let cvms = super::state::lock(&shared.cvms);
        let Some(cvm) = cvms.get(cvm_id) else {
            return Reply::Detail(StatusCode::NOT_FOUND, format!("CVM {cvm_id} not found"));
        };
        if cvm.workspace != super::DEFAULT_WORKSPACE {
            return Reply::Detail(StatusCode::FORBIDDEN, "You do not have permission to access this CVM".into());
        }
        let change = match route.read(headers, body) {
            Ok(change) => change,
            Err(reply) => return reply,
        };
        op.phase = Some(if change.compose_hash.is_some() || change.transaction_hash.is_some() {
            Phase::Two
        } else {
            Phase::One
        });
        op.env_keys = change.allowed_envs.clone();
        if let Some(retry_after) = cvm.busy_for(now) {
            return Reply::Conflict { retry_after };
        }
        change
    };

    let phase2 = match (&change.compose_hash, &change.transaction_hash) {
        (None, None) => None,
        (Some(hash), Some(tx)) => {
            let hash: ComposeHash = match hash.parse() {
                Ok(hash) => hash,
                Err(e) => {
                    return Reply::invalid_at(route.loc("compose_hash"), format!("Value error, {e}"), "value_error");
                }
            };
            let tx: TransactionHash = match tx.parse() {
                Ok(tx) => tx,
                Err(e) => {
                    return Reply::invalid_at(
                        route.loc("transaction_hash"),
                        format!("Value error, {e}"),
                        "value_error",
                    );
                }
            };
            op.compose_hash = Some(hash);
            op.transaction_hash = Some(tx);
            Some((hash, tx))
        }
        (Some(_), None) => {
            return Reply::invalid_at(
                route.loc("transaction_hash"),
                "Value error, required with compose_hash",
                "value_error",
            );
        }
        (None, Some(_)) => {
            return Reply::invalid_at(
                route.loc("compose_hash"),
                "Value error, required with transaction_hash",
                "value_error",
            );
        }
    };

    // A phase 2 that sends nothing but the hash takes the request phase 1 handed it out for
    // (an unknown hash stays an empty request, refused below with 466).
    if let Some((hash, _)) = phase2
        && !change.changes_something()
    {
        let cvms = super::state::lock(&shared.cvms);
        if let Some(pending) = cvms.get(cvm_id).and_then(|cvm| cvm.pending.get(&hash)) {
            change = change.or_pending(pending);
        }
    }

    // The server cannot decrypt the env (it is encrypted to the CVM): it checks only the
    // blob's shape, and a blob too short to hold key, IV and tag is a validation error. The
    // CVM's side is played here: whether it will decrypt is recorded when the update is
    // applied, and an env it cannot decrypt is still accepted.
    if let Some(blob) = &change.encrypted_env
        && blob.len() / 2 < MIN_BLOB_BYTES
    {
        return Reply::invalid(
            "encrypted_env",
            format!(
                "Value error, encrypted_env is malformed: {} bytes, shorter than the {MIN_BLOB_BYTES} of key, IV and tag",
                blob.len() / 2
            ),
            "value_error",
        );
    }
    let (decrypted, kms, app_id) = {
        let cvms = super::state::lock(&shared.cvms);
        let Some(cvm) = cvms.get(cvm_id) else {
            return Reply::Detail(StatusCode::NOT_FOUND, format!("CVM {cvm_id} not found"));
        };
        let decrypted =
            change.encrypted_env.as_ref().map(|blob| decrypt(blob, &cvm.secret).map_err(|e| cvm_decrypt_error(&e)));
        (decrypted, cvm.kms, cvm.app_id)
    };
    op.cvm_decrypts = decrypted.as_ref().map(Result::is_ok);
    let decrypted = decrypted.as_ref().map(|d| d.as_ref().map_err(String::as_str));
    // The app compose asked for: each part as given, else the CVM's (read under the lock that
    // decides). The allowed names as a set.
    let Change { encrypted_env, allowed_envs, docker_compose_file, pre_launch_script, settings, prepare_only, .. } =
        change;
    let target = |cvm: &super::state::Cvm| Target {
        compose_file: docker_compose_file.clone().unwrap_or_else(|| cvm.compose_file.clone()),
        pre_launch_script: match &pre_launch_script {
            Some(script) if script.is_empty() => None,
            Some(script) => Some(script.clone()),
            None => cvm.pre_launch_script.clone(),
        },
        allowed: allowed_envs.clone().map_or_else(|| cvm.allowed.clone(), normalize_names),
    };

    let Some((hash, tx)) = phase2 else {
        // Phase 1 decides and applies under one lock: another request may have changed the
        // CVM since the checks above, so they are made again here.
        let mut cvms = super::state::lock(&shared.cvms);
        let now = Instant::now();
        let cvm = match idle_cvm(&mut cvms, cvm_id, now) {
            Ok(cvm) => cvm,
            Err(reply) => return reply,
        };
        let target = target(cvm);
        let current = cvm.target();
        let envs_changed = target.allowed != current.allowed;
        if target != current && kms == KmsKind::Onchain {
            // The app's compose, shared by every CVM of the app: one hash for one compose.
            let Some(app_id) = app_id else {
                return Reply::Detail(StatusCode::INTERNAL_SERVER_ERROR, "CVM has no app contract".into());
            };
            let hash = target.hash(&app_id);
            let pending = Pending {
                target,
                encrypted_env: encrypted_env.clone(),
                settings: settings.clone(),
                expires_at: now + shared.compose_hash_ttl,
            };
            cvm.pending.insert(hash, pending);
            op.compose_hash = Some(hash);
            return Reply::Structured {
                status: 465,
                code: "ERR-01-005",
                message: "Compose hash registration required on-chain".into(),
                details: {
                    let mut details = vec![
                        json!({ "field": "compose_hash", "value": hash.to_hex(), "message": null }),
                        json!({ "field": "app_id", "value": app_id.to_hex(), "message": null }),
                        json!({ "field": "device_id", "value": const_hex::encode_prefixed(cvm.device_id), "message": null }),
                        json!({ "field": "kms_info", "value": shared.kms_info, "message": null }),
                    ];
                    // `X-Prepare-Only: true` (multisig workflows): a commit token, a string, as
                    // the official JS SDK reads it.
                    if prepare_only {
                        details.push(
                            json!({ "field": "commit_token", "value": super::random_id("commit"), "message": null }),
                        );
                    }
                    Value::Array(details)
                },
                suggestion: match route {
                    Route::Envs => {
                        "Register the compose hash on the app contract, then send the same request with compose_hash and transaction_hash"
                    }
                    _ => {
                        "Register the compose hash on the app contract, then send the same request with the X-Compose-Hash and X-Transaction-Hash headers"
                    }
                },
            };
        }
        cvm.apply_update(target, decrypted, settings, shared.operation_duration, now);
        return route.accepted(super::correlation_id(), envs_changed);
    };

    // Phase 2: the hash must be one phase 1 handed out, unexpired, for this very change.
    {
        let cvms = super::state::lock(&shared.cvms);
        let Some(cvm) = cvms.get(cvm_id) else {
            return Reply::Detail(StatusCode::NOT_FOUND, format!("CVM {cvm_id} not found"));
        };
        let target = target(cvm);
        let pending = cvm.pending.get(&hash).filter(|p| p.expires_at > now);
        match pending {
            None => return invalid_hash(route, hash, "No pending registration matches this hash, or it has expired"),
            Some(p) if p.target != target => {
                return invalid_hash(
                    route,
                    hash,
                    "This compose hash was issued for another change than this request's",
                );
            }
            Some(_) => {}
        }
    }
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
    let Some(pending) = cvm.pending.remove(&hash) else {
        return invalid_hash(route, hash, "This compose hash was used by a concurrent request");
    };
    let envs_changed = pending.target.allowed != cvm.allowed;
    cvm.apply_update(pending.target, decrypted, settings, shared.operation_duration, now);
    route.accepted(super::correlation_id(), envs_changed)
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

fn invalid_hash(route: Route, hash: ComposeHash, message: &str) -> Reply {
    Reply::Structured {
        status: 466,
        code: "ERR-01-006",
        message: "Compose hash invalid or expired".into(),
        details: json!([{ "field": "compose_hash", "value": hash.to_hex(), "message": message }]),
        suggestion: match route {
            Route::Envs => "Send the update again without compose_hash to obtain a fresh compose hash",
            _ => "Send the update again without the X-Compose-Hash header to obtain a fresh compose hash",
        },
    }
}

/// Why the CVM cannot use an env it was sent (the CVM's side; never in a reply).
fn cvm_decrypt_error(e: &CryptError) -> String {
    format!("the CVM cannot decrypt this encrypted_env: {e}")
}

/// A validation error's location, message and type, as FastAPI lists them.
type Problem = (Vec<Value>, String, &'static str);

/// The JSON body as an object, or FastAPI's error for it.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, Reply> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Reply::Invalid(vec![(vec![json!("body"), json!(e.column())], "JSON decode error".into(), "json_invalid")])
    })?;
    let Value::Object(fields) = value else {
        return Err(Reply::Invalid(vec![(
            vec![json!("body")],
            "Input should be a valid dictionary or object to extract fields from".into(),
            "model_attributes_type",
        )]));
    };
    Ok(fields)
}

fn loc(field: &str) -> Vec<Value> {
    vec![json!("body"), json!(field)]
}

/// Takes an optional string field.
fn optional_string(fields: &mut Map<String, Value>, field: &str, errors: &mut Vec<Problem>) -> Option<String> {
    match fields.remove(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.push((loc(field), "Input should be a valid string".into(), "string_type"));
            None
        }
    }
}

/// Takes an optional list of env names.
fn env_names(fields: &mut Map<String, Value>, field: &str, errors: &mut Vec<Problem>) -> Option<Vec<String>> {
    match fields.remove(field) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut keys = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(key) if is_valid_env_key(&key) => keys.push(key),
                    Value::String(_) => errors.push((
                        vec![json!("body"), json!(field), json!(i)],
                        "Value error, not a valid env name (letters, digits and _, not starting with a digit)".into(),
                        "value_error",
                    )),
                    _ => errors.push((
                        vec![json!("body"), json!(field), json!(i)],
                        "Input should be a valid string".into(),
                        "string_type",
                    )),
                }
            }
            Some(keys)
        }
        Some(_) => {
            errors.push((loc(field), "Input should be a valid list".into(), "list_type"));
            None
        }
    }
}

/// An `encrypted_env` must be hex.
fn check_hex(encrypted_env: Option<&str>, errors: &mut Vec<Problem>) {
    if let Some(hex) = encrypted_env
        && (hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || hex.len() % 2 == 1)
    {
        errors.push((loc("encrypted_env"), "Value error, encrypted_env must be a hex string".into(), "value_error"));
    }
}

/// Reads the envs body as the spec's schema says, collecting every error as FastAPI does.
fn parse_body(body: &[u8]) -> Result<Change, Reply> {
    let mut fields = json_object(body)?;
    let mut errors = Vec::new();
    let encrypted_env = optional_string(&mut fields, "encrypted_env", &mut errors);
    let compose_hash = optional_string(&mut fields, "compose_hash", &mut errors);
    let transaction_hash = optional_string(&mut fields, "transaction_hash", &mut errors);
    let env_keys = env_names(&mut fields, "env_keys", &mut errors);
    if encrypted_env.is_none() && !errors.iter().any(|(l, _, _)| l == &loc("encrypted_env")) {
        errors.push((loc("encrypted_env"), "Field required".into(), "missing"));
    }
    check_hex(encrypted_env.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(Reply::Invalid(errors));
    }
    Ok(Change { encrypted_env, allowed_envs: env_keys, compose_hash, transaction_hash, ..Change::default() })
}

/// A JSON type check.
type IsType = fn(&Value) -> bool;

/// The fields of `UpdateCvmRequest` that do not change the app compose, each with the JSON
/// type it must have: recorded as given.
const SETTINGS: &[(&str, IsType)] = &[
    ("public_logs", Value::is_boolean),
    ("public_sysinfo", Value::is_boolean),
    ("public_tcbinfo", Value::is_boolean),
    ("user_config", Value::is_string),
    ("gpus", Value::is_object),
    ("vcpu", Value::is_i64),
    ("memory", Value::is_i64),
    ("disk_size", Value::is_i64),
    ("image", Value::is_string),
    ("shutdown_timeout", Value::is_i64),
    ("allow_force_stop", Value::is_boolean),
];

/// Reads the unified PATCH's `UpdateCvmRequest` (only the fields given are applied; unknown
/// fields are ignored, as pydantic does). A phase 1 that changes nothing is a 400 (see
/// [`Route::read`]).
fn parse_unified(body: &[u8]) -> Result<Change, Reply> {
    let mut fields = json_object(body)?;
    let mut errors = Vec::new();
    let encrypted_env = optional_string(&mut fields, "encrypted_env", &mut errors);
    let docker_compose_file = optional_string(&mut fields, "docker_compose_file", &mut errors);
    let pre_launch_script = optional_string(&mut fields, "pre_launch_script", &mut errors);
    let allowed_envs = env_names(&mut fields, "allowed_envs", &mut errors);
    check_hex(encrypted_env.as_deref(), &mut errors);
    let mut settings = Map::new();
    for (field, right_type) in SETTINGS {
        match fields.remove(*field) {
            None | Some(Value::Null) => {}
            Some(value) if right_type(&value) => {
                settings.insert((*field).to_owned(), value);
            }
            Some(_) => errors.push((loc(field), "Input has the wrong type".into(), "type_error")),
        }
    }
    if !errors.is_empty() {
        return Err(Reply::Invalid(errors));
    }
    if docker_compose_file.as_deref().is_some_and(|f| f.trim().is_empty()) {
        return Err(Reply::Detail(StatusCode::BAD_REQUEST, "docker_compose_file is empty".into()));
    }
    Ok(Change { encrypted_env, allowed_envs, docker_compose_file, pre_launch_script, settings, ..Change::default() })
}

/// The text of an upload: the spec's multipart `file` part, or a raw `text/*` body (what the
/// official JS SDK sends: `text/yaml`, `text/plain`). Any other body, no `file` part, or an
/// empty file, is the spec's 400 ("Invalid content type or empty body").
fn multipart_file(headers: &HeaderMap, body: &[u8]) -> Result<String, Reply> {
    let bad = |why: &str| Reply::Detail(StatusCode::BAD_REQUEST, format!("Invalid content type or empty body: {why}"));
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut params = content_type.split(';').map(str::trim);
    let media_type = params.next().unwrap_or("").to_ascii_lowercase();
    if media_type.starts_with("text/") {
        let text = std::str::from_utf8(body).map_err(|_| bad("the text is not UTF-8"))?;
        if text.trim().is_empty() {
            return Err(bad("the file is empty"));
        }
        return Ok(text.to_owned());
    }
    if media_type != "multipart/form-data" {
        return Err(bad("expected multipart/form-data"));
    }
    let boundary = params
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| bad("no multipart boundary"))?;
    let delimiter = format!("--{boundary}");
    let body = String::from_utf8_lossy(body);
    // The parts between delimiters; the preamble before the first and the epilogue after the
    // closing `--` are not parts.
    for part in body.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((head, content)) = part.split_once("\r\n\r\n") else { continue };
        let is_file = head.lines().any(|line| {
            let line = line.to_ascii_lowercase();
            line.starts_with("content-disposition:") && line.contains("name=\"file\"")
        });
        if is_file {
            let content = content.strip_suffix("\r\n").unwrap_or(content);
            if content.trim().is_empty() {
                return Err(bad("the file is empty"));
            }
            return Ok(content.to_owned());
        }
    }
    Err(bad("no file part"))
}
