//! Runs the unit tests of `build/normalize.rs`, the 3.1 → 3.0 converter that `build.rs`
//! includes by path, and checks it on the vendored spec.

#[path = "../build/normalize.rs"]
#[allow(dead_code)]
mod normalize;

use serde_json::Value;

fn vendored_spec() -> Value {
    serde_json::from_str(include_str!("../openapi.json")).unwrap()
}

#[test]
fn vendored_spec_normalizes_to_what_progenitor_reads() {
    let out = normalize::normalize(vendored_spec()).unwrap();
    assert_eq!(out["openapi"], "3.0.3");
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
    // What 3.0 would reject is gone.
    assert!(!serde_json::to_string(&out).unwrap().contains(r#""type":"null""#));
}
