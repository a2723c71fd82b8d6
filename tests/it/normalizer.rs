//! Runs the unit tests of `build/normalize.rs`, the 3.1 → 3.0 converter, and checks the whole
//! pipeline of `build/generate.rs` on the vendored spec. Both files are included by path as
//! sibling modules, as `build.rs` includes them.

use crate::generate::{self, MULTIPART_REASON, Selection};
use crate::normalize;
use serde_json::Value;

/// The same list as `build.rs`'s.
const CRATE_OPERATIONS: &[&str] =
    &["update_cvm_envs", "handle_get_cvm", "get_app_env_encrypt_pubkey", "handle_list_cvms", "handle_get_app_cvms"];

fn vendored_spec() -> Value {
    serde_json::from_str(include_str!("../../openapi.json")).unwrap()
}

#[test]
fn vendored_spec_normalizes_to_what_progenitor_reads() {
    let out = normalize::normalize(vendored_spec()).unwrap();
    assert_eq!(out["openapi"], "3.0.3");
    assert_eq!(out["paths"].as_object().unwrap().len(), 160);
    let op = &out["paths"]["/api/v1/cvms/{cvm_id}/envs"]["patch"];
    assert_eq!(op["operationId"], "update_cvm_envs");
    // Error responses without a JSON body are gone; 422 (JSON) stays, as does the 202.
    let statuses: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
    assert_eq!(statuses, ["202", "422"]);
    let body = &out["components"]["schemas"]["Body_update_cvm_envs_api_v1_cvms__cvm_id__envs_patch"];
    assert_eq!(body["properties"]["env_keys"]["nullable"], true);
    assert_eq!(body["properties"]["env_keys"]["type"], "array");
    assert_eq!(
        body["properties"]["compose_hash"],
        serde_json::json!({
            "type": "string", "nullable": true, "title": "Compose Hash",
            "description": "Hash from Phase 1 response (Phase 2 only)"
        })
    );
    let loc = &out["components"]["schemas"]["ValidationError"]["properties"]["loc"]["items"];
    assert_eq!(loc["anyOf"], serde_json::json!([{"type": "string"}, {"type": "integer"}]));
    // The collision is resolved by path, not by document order.
    assert_eq!(
        out["paths"]["/api/v1/cvms/{cvm_id}/replicas"]["post"]["operationId"],
        "handle_replicate_cvm_cvms_replicas"
    );
    assert_eq!(
        out["paths"]["/api/v1/apps/{app_id}/cvms/{vm_uuid}/replicas"]["post"]["operationId"],
        "handle_replicate_cvm_apps_cvms_replicas"
    );
    // What 3.0 would reject is gone.
    let text = serde_json::to_string(&out).unwrap();
    for gone in [r#""type":"null""#, r#""prefixItems""#, r#""propertyNames""#, r#""const""#, r#""examples""#] {
        assert!(!text.contains(gone), "{gone} is still in the normalized document");
    }
}

#[test]
fn whole_spec_generates_all_but_multipart() {
    let generated = generate::generate(vendored_spec(), &Selection::All).unwrap();
    let mut skipped: Vec<(&str, &str)> =
        generated.skipped.iter().map(|s| (s.method.as_str(), s.path.as_str())).collect();
    skipped.sort_unstable();
    assert_eq!(
        skipped,
        [
            ("PATCH", "/api/v1/cvms/{cvm_id}/docker-compose"),
            ("PATCH", "/api/v1/cvms/{cvm_id}/pre-launch-script"),
            ("POST", "/api/v1/attestations/verify"),
            ("PUT", "/api/v1/profiles/me/avatar"),
            ("PUT", "/api/v1/profiles/{entity_type}/{entity_id}/avatar"),
        ]
    );
    assert!(generated.skipped.iter().all(|s| s.reason == MULTIPART_REASON));
    assert_eq!(generated.operations.len() + generated.skipped.len(), 184);
    assert_eq!(generated.operations.len(), 179);

    let file = syn::parse_file(&generated.code).expect("the generated code parses");
    assert!(!file.items.is_empty());
    for (method, path, name) in &generated.operations {
        assert!(generated.code.contains(&format!("pub async fn {name}<")), "no method {name} for {method} {path}");
    }
    // Both colliding operations, under their disambiguated names, and a warning naming both.
    for name in ["handle_replicate_cvm_cvms_replicas", "handle_replicate_cvm_apps_cvms_replicas"] {
        assert!(generated.operations.iter().any(|(_, _, n)| n == name), "{name} not generated");
    }
    assert!(
        generated.warnings.iter().any(|w| w.contains("handle_replicate_cvm ")
            && w.contains("/api/v1/cvms/{cvm_id}/replicas")
            && w.contains("/api/v1/apps/{app_id}/cvms/{vm_uuid}/replicas")),
        "no collision warning in {:#?}",
        generated.warnings
    );
    // The form-urlencoded bodies are generated as such; the HEAD operation is generated.
    assert_eq!(generated.code.matches(".form_urlencoded(&body)?").count(), 2);
    assert!(generated.operations.iter().any(|(m, p, _)| m == "HEAD" && p == "/api/v1/attestations/raw/{checksum}"));
    // The handwritten layer's hook settings are in effect.
    assert!(generated.code.contains("inner: crate::client::Hooks"));
    assert!(!generated.code.contains("ClientHooks<crate::client::Hooks> for &Client"));
}

#[test]
fn crate_selection_generates_only_what_the_layer_wraps() {
    let generated = generate::generate(vendored_spec(), &Selection::Only(CRATE_OPERATIONS)).unwrap();
    let mut ops: Vec<(&str, &str, &str)> =
        generated.operations.iter().map(|(m, p, n)| (m.as_str(), p.as_str(), n.as_str())).collect();
    ops.sort_unstable();
    assert_eq!(
        ops,
        [
            ("GET", "/api/v1/apps/{app_id}/cvms", "handle_get_app_cvms"),
            ("GET", "/api/v1/cvms", "handle_list_cvms"),
            ("GET", "/api/v1/cvms/{cvm_id}", "handle_get_cvm"),
            ("GET", "/api/v1/kms/{kms_id}/pubkey/{app_id}", "get_app_env_encrypt_pubkey"),
            ("PATCH", "/api/v1/cvms/{cvm_id}/envs", "update_cvm_envs"),
        ]
    );
    assert!(generated.skipped.is_empty());
    // The collision is among operations this build does not generate.
    assert!(generated.warnings.iter().all(|w| !w.contains("handle_replicate_cvm")));
    syn::parse_file(&generated.code).expect("the generated code parses");
    // The types the handwritten layer re-exports are there; unrelated schemas are not.
    for wanted in [
        "pub struct BodyUpdateCvmEnvsApiV1CvmsCvmIdEnvsPatch ",
        "pub struct HttpValidationError ",
        "pub struct ValidationError ",
        "pub enum LocationItem ",
        "pub struct TeehouseApiRoutesCvmsManagementCvmBasicInfo ",
    ] {
        assert!(generated.code.contains(wanted), "{wanted} missing");
    }
    for unrelated in ["pub struct DstackAppMinimalResponse ", "pub struct BodyLoginForAccessTokenApiV1AuthTokenPost "] {
        assert!(!generated.code.contains(unrelated), "{unrelated} generated by the crate selection");
    }
    let full = generate::generate(vendored_spec(), &Selection::All).unwrap();
    let structs = |code: &str| code.matches("pub struct ").count();
    assert!(structs(&generated.code) * 5 < structs(&full.code), "the selection does not prune the types");
}

#[test]
fn missing_crate_operation_is_an_error_naming_it() {
    let mut spec = vendored_spec();
    spec["paths"]["/api/v1/cvms/{cvm_id}/envs"].as_object_mut().unwrap().remove("patch");
    let e = generate::generate(spec, &Selection::Only(CRATE_OPERATIONS)).unwrap_err();
    assert!(e.contains("openapi.json has no operation update_cvm_envs"), "{e}");
    assert!(e.contains("the handwritten layer wraps"), "{e}");
    assert!(e.contains("the crate must be changed"), "{e}");

    let e = generate::generate(vendored_spec(), &Selection::Only(&["upload_my_avatar"])).unwrap_err();
    assert!(e.contains("PUT /api/v1/profiles/me/avatar") && e.contains(MULTIPART_REASON), "{e}");
}

#[test]
fn progenitor_failures_name_the_operation() {
    // A text/plain body whose schema is not a plain string: progenitor refuses it.
    let spec = serde_json::json!({
        "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
        "paths": {
            "/ok": {"get": {"operationId": "ok", "responses": {"204": {"description": "none"}}}},
            "/bad": {"post": {
                "operationId": "bad",
                "requestBody": {"content": {"text/plain": {"schema": {"type": "integer"}}}},
                "responses": {"204": {"description": "none"}}
            }}
        }
    });
    let e = generate::generate(spec, &Selection::All).unwrap_err();
    assert!(e.starts_with("openapi.json#/paths/~1bad/post (POST /bad (bad))"), "{e}");
}
