//! `GET /api/v1/cvms/{cvm_id}`: a CVM as the service describes it (the spec's `CvmBasicInfo`
//! shape), with the same authentication and workspace rules as the env update.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{KmsKind, Shared};

/// The path of the CVM description, in axum's (and OpenAPI's) syntax.
pub(crate) const CVM_PATH: &str = "/api/v1/cvms/{cvm_id}";

/// Answers 200 with `id`, `name`, `status`, `app_id`, `vcpu`, `memory`, `disk_size`,
/// `encrypted_env_pubkey` and `kms_info`; 401 without the API key, 404 for an unknown CVM, 403
/// for another workspace's, each as FastAPI `{"detail": …}`.
pub(crate) async fn get_cvm(
    State(shared): State<Arc<Shared>>,
    Path(cvm_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request_id = super::random_id("req");
    let authenticated = headers.get("x-api-key").is_some_and(|key| key.as_bytes() == shared.api_key.as_bytes());
    let (status, body) = if !authenticated {
        (StatusCode::UNAUTHORIZED, json!({ "detail": "Invalid or missing API key" }))
    } else {
        let cvms = super::state::lock(&shared.cvms);
        // A stable integer id (the spec's `id` is the internal database id): the CVM's rank by id.
        let mut ids: Vec<&String> = cvms.keys().collect();
        ids.sort();
        match cvms.get(&cvm_id) {
            None => (StatusCode::NOT_FOUND, json!({ "detail": format!("CVM {cvm_id} not found") })),
            Some(cvm) if cvm.workspace != super::DEFAULT_WORKSPACE => {
                (StatusCode::FORBIDDEN, json!({ "detail": "You do not have permission to access this CVM" }))
            }
            Some(cvm) => {
                let rank = ids.iter().position(|id| **id == cvm_id).unwrap_or_default() + 1;
                let onchain = cvm.kms == KmsKind::Onchain;
                (
                    StatusCode::OK,
                    json!({
                        "id": rank,
                        "name": cvm_id,
                        "status": "running",
                        "in_progress": cvm.busy_until.is_some_and(|until| until > std::time::Instant::now()),
                        // Centralized CVMs have an app id too; it names no contract.
                        "app_id": cvm.app_id.map_or_else(|| const_hex::encode(&cvm.device_id[..20]), |a| const_hex::encode(a.0)),
                        "vcpu": 2,
                        "memory": 4096,
                        "disk_size": 40,
                        "encrypted_env_pubkey": cvm.secret.public_key().to_hex(),
                        "kms_info": if onchain { shared.kms_info.clone() } else { serde_json::Value::Null },
                    }),
                )
            }
        }
    };
    tracing::info!(%cvm_id, status = status.as_u16(), %request_id, "simulator: GET cvm");
    let mut response = (status, axum::Json(body)).into_response();
    // The simulator's own id, hex: always a valid header value.
    response.headers_mut().insert("x-request-id", HeaderValue::from_str(&request_id).expect("hex id"));
    response
}
