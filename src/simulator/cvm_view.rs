//! The CVMs as the service describes them: `GET /api/v1/cvms/{cvm_id}`, `GET /api/v1/cvms` and
//! `GET /api/v1/apps/{app_id}/cvms`, with the same authentication and workspace rules as the
//! env update, in the shape the request's `X-Phala-Version` asks for.
//!
//! `2025-10-28` gets the older shapes: `CvmBasicInfo` (the env-encryption key at the top level;
//! `kms_info` the spec's `KMSInfo`, null for a centralized KMS) and, in lists, `HostedCvm`. Any
//! other version (the crate's default `2026-05-22` included) gets the newer ones:
//! `CVMInfoDetail`/`CVMInfo`, whose `kms_info` is `CVMKmsInfo` (with `encrypted_env_pubkey` for
//! a centralized KMS, `dstack_kms_address` for a contract-owned one) beside `kms_type`. As the
//! real service's, a contract-owned CVM's `kms_info` carries more than either schema lists: the
//! KMS's `slug`, `id` and `k256_pubkey`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::Cvm;
use super::{KmsKind, Shared};

/// The path of the CVM description, in axum's (and OpenAPI's) syntax.
pub(crate) const CVM_PATH: &str = "/api/v1/cvms/{cvm_id}";
/// The CVM list.
pub(crate) const LIST_PATH: &str = "/api/v1/cvms";
/// The CVMs of one app (the spec's way to list CVMs by app id).
pub(crate) const APP_CVMS_PATH: &str = "/api/v1/apps/{app_id}/cvms";

/// The API version whose shapes are the older ones.
const OLD_VERSION: &str = "2025-10-28";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `CvmBasicInfo`, `HostedCvm`.
    Basic,
    /// `CVMInfoDetail`, `CVMInfo`.
    Detail,
}

fn shape(headers: &HeaderMap) -> Shape {
    match headers.get("x-phala-version") {
        Some(v) if v.as_bytes() == OLD_VERSION.as_bytes() => Shape::Basic,
        _ => Shape::Detail,
    }
}

fn authenticated(shared: &Shared, headers: &HeaderMap) -> bool {
    headers.get("x-api-key").is_some_and(|key| key.as_bytes() == shared.api_key.as_bytes())
}

fn unauthorized() -> (StatusCode, Value) {
    (StatusCode::UNAUTHORIZED, json!({ "detail": "Invalid or missing API key" }))
}

/// Answers 200 with the CVM in the version's shape; 401 without the API key, 404 for no CVM by
/// that id, hashed id, UUID, instance id or app id, 403 for another workspace's, each as FastAPI
/// `{"detail": …}`.
pub(crate) async fn get_cvm(
    State(shared): State<Arc<Shared>>,
    Path(cvm_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (status, body) = if !authenticated(&shared, &headers) {
        unauthorized()
    } else {
        let cvms = super::state::lock(&shared.cvms);
        match super::state::resolve(&cvms, &cvm_id) {
            None => (StatusCode::NOT_FOUND, json!({ "detail": format!("CVM {cvm_id} not found") })),
            Some(id) if cvms[id].workspace != super::DEFAULT_WORKSPACE => {
                (StatusCode::FORBIDDEN, json!({ "detail": "You do not have permission to access this CVM" }))
            }
            Some(id) => (StatusCode::OK, describe(&shared, &cvms, id, shape(&headers))),
        }
    };
    reply("GET cvm", &cvm_id, status, body)
}

/// Answers 200 with the workspace's CVMs, by id, in the version's shape; 401 without the API
/// key. The spec's two filters, `user_id` and `teepod_id`, are admin-only: the simulator's key
/// is no admin's, so either answers 403 (assumed: the spec says only "admin only").
pub(crate) async fn list_cvms(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let admin_filter = uri.query().is_some_and(|query| {
        query.split('&').any(|pair| matches!(pair.split('=').next(), Some("user_id" | "teepod_id")))
    });
    let (status, body) = if !authenticated(&shared, &headers) {
        unauthorized()
    } else if admin_filter {
        (StatusCode::FORBIDDEN, json!({ "detail": "Filtering by user_id or teepod_id is for admins only" }))
    } else {
        (StatusCode::OK, list(&shared, shape(&headers), |_| true))
    };
    reply("GET cvms", "", status, body)
}

/// Answers 200 with the workspace's CVMs of app `app_id` (40 hex digits, `0x` or `app_`
/// optional), by id; 404 when it has none; 401 without the API key.
pub(crate) async fn app_cvms(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (status, body) = if !authenticated(&shared, &headers) {
        unauthorized()
    } else {
        match crate::two_phase::parse_app_id(&app_id) {
            None => (StatusCode::NOT_FOUND, json!({ "detail": format!("App {app_id} not found") })),
            Some(app) => match list(&shared, shape(&headers), |c| c.api_app_id() == app) {
                Value::Array(items) if items.is_empty() => {
                    (StatusCode::NOT_FOUND, json!({ "detail": format!("App {app_id} not found") }))
                }
                items => (StatusCode::OK, items),
            },
        }
    };
    reply("GET app cvms", &app_id, status, body)
}

fn reply(what: &str, id: &str, status: StatusCode, body: Value) -> Response {
    let request_id = super::random_id("req");
    tracing::info!(id, status = status.as_u16(), %request_id, "simulator: {what}");
    let mut response = (status, axum::Json(body)).into_response();
    // The simulator's own id, hex: always a valid header value.
    response.headers_mut().insert("x-request-id", HeaderValue::from_str(&request_id).expect("hex id"));
    response
}

/// The workspace's CVMs that `keep` keeps, by id, as list items.
fn list(shared: &Shared, shape: Shape, keep: impl Fn(&Cvm) -> bool) -> Value {
    let cvms = super::state::lock(&shared.cvms);
    let mut ids: Vec<&String> =
        cvms.iter().filter(|(_, c)| c.workspace == super::DEFAULT_WORKSPACE && keep(c)).map(|(id, _)| id).collect();
    ids.sort();
    let items = ids.into_iter().map(|id| match shape {
        Shape::Detail => describe(shared, &cvms, id, Shape::Detail),
        Shape::Basic => hosted(shared, &cvms[id.as_str()], id),
    });
    Value::Array(items.collect())
}

/// One CVM, as `GET /api/v1/cvms/{cvm_id}` describes it (`CvmBasicInfo` or `CVMInfoDetail`;
/// the latter is also a list's `CVMInfo`).
fn describe(shared: &Shared, cvms: &HashMap<String, Cvm>, id: &str, shape: Shape) -> Value {
    let cvm = &cvms[id];
    let app_id = const_hex::encode(cvm.api_app_id().0);
    let in_progress = cvm.busy_until.is_some_and(|until| until > std::time::Instant::now());
    // The resources an update set, else the seeded ones.
    let setting = |field: &str, default: Value| cvm.settings.get(field).cloned().unwrap_or(default);
    let (vcpu, memory, disk_size) =
        (setting("vcpu", json!(2)), setting("memory", json!(4096)), setting("disk_size", json!(40)));
    let mut described = match shape {
        Shape::Basic => {
            // A stable integer id (the spec's `id` is the internal database id): the rank by id.
            let mut ids: Vec<&String> = cvms.keys().collect();
            ids.sort();
            let rank = ids.iter().position(|other| other.as_str() == id).unwrap_or_default() + 1;
            json!({
                "id": rank,
                "name": id,
                "status": "running",
                "in_progress": in_progress,
                "app_id": app_id,
                "vm_uuid": cvm.vm_uuid,
                "instance_id": cvm.instance_id,
                "vcpu": vcpu,
                "memory": memory,
                "disk_size": disk_size,
                "encrypted_env_pubkey": cvm.secret.public_key().to_hex(),
                "kms_info": basic_kms_info(shared, cvm),
            })
        }
        Shape::Detail => json!({
            "id": cvm.hashed_id,
            "name": id,
            "app_id": app_id,
            "vm_uuid": cvm.vm_uuid,
            "instance_id": cvm.instance_id,
            "resource": {
                "instance_type": "tdx.small",
                "vcpu": vcpu,
                "memory_in_gb": memory.as_f64().map(|mb| mb / 1024.0),
                "disk_in_gb": disk_size,
                "gpus": 0,
            },
            "kms_type": kms_type(shared, cvm),
            "kms_info": detail_kms_info(shared, cvm),
            "status": "running",
            "in_progress": in_progress,
            "gateway": { "base_domain": "simulator.invalid", "cname": null },
            "services": [],
            "public_logs": setting("public_logs", json!(false)),
            "public_sysinfo": setting("public_sysinfo", json!(false)),
            "public_tcbinfo": setting("public_tcbinfo", json!(false)),
        }),
    };
    // The compose it would boot, and its hash (of the app compose, with the app contract's id;
    // a centralized KMS's CVM hashes with its API app id).
    let target = cvm.target();
    described["compose_hash"] = json!(const_hex::encode(target.hash(&cvm.app_id.unwrap_or(cvm.api_app_id())).0));
    described["compose_file"] = json!({
        "docker_compose_file": target.compose_file,
        "pre_launch_script": target.pre_launch_script,
        "allowed_envs": target.allowed,
        "manifest_version": 2,
        "runner": "docker-compose",
        "kms_enabled": true,
    });
    if let Some(image) = cvm.settings.get("image") {
        described["os"] = json!({ "name": image });
    }
    described
}

/// A list item of the older shape (`HostedCvm`).
fn hosted(shared: &Shared, cvm: &Cvm, id: &str) -> Value {
    json!({
        "hosted": {
            "id": cvm.vm_uuid,
            "name": id,
            "status": "running",
            "uptime": "1h",
            "app_id": const_hex::encode(cvm.api_app_id().0),
            "instance_id": cvm.instance_id,
        },
        "name": id,
        "status": "running",
        "in_progress": cvm.busy_until.is_some_and(|until| until > std::time::Instant::now()),
        "public_urls": [],
        "kms_info": basic_kms_info(shared, cvm),
        "vcpu": 2,
        "memory": 4096,
        "disk_size": 40,
    })
}

/// `KMSInfo` (with the KMS key the API reports) for a contract-owned KMS; null for Phala's.
fn basic_kms_info(shared: &Shared, cvm: &Cvm) -> Value {
    if cvm.kms != KmsKind::Onchain {
        return Value::Null;
    }
    let mut info = shared.kms_info.clone();
    info["k256_pubkey"] = json!(super::kms::reported_key(shared, cvm.kms_reply).to_hex());
    info
}

/// `CVMKmsInfo`: the env-encryption key for Phala's KMS; the chain, the contracts and (beyond
/// the schema, as the service sends them) the KMS's slug, id and key for a contract-owned one.
fn detail_kms_info(shared: &Shared, cvm: &Cvm) -> Value {
    if cvm.kms != KmsKind::Onchain {
        return json!({
            "chain_id": null,
            "dstack_kms_address": null,
            "dstack_app_address": null,
            "deployer_address": null,
            "rpc_endpoint": null,
            "encrypted_env_pubkey": cvm.secret.public_key().to_hex(),
        });
    }
    let kms = &shared.kms_info;
    json!({
        "chain_id": kms["chain_id"],
        "dstack_kms_address": kms["kms_contract_address"],
        "dstack_app_address": cvm.app_id.map(|a| a.to_hex()),
        "deployer_address": null,
        "rpc_endpoint": null,
        "encrypted_env_pubkey": null,
        "id": kms["id"],
        "slug": kms["slug"],
        "url": kms["url"],
        "version": kms["version"],
        "k256_pubkey": super::kms::reported_key(shared, cvm.kms_reply).to_hex(),
    })
}

/// The spec's `KmsType`: `phala` for Phala's KMS, `base` or `ethereum` by chain.
fn kms_type(shared: &Shared, cvm: &Cvm) -> &'static str {
    match (cvm.kms, shared.kms_info["chain_id"].as_u64()) {
        (KmsKind::Centralized, _) => "phala",
        (KmsKind::Onchain, Some(8453)) => "base",
        (KmsKind::Onchain, _) => "ethereum",
    }
}
