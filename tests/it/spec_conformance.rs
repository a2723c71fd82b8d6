//! Spec conformance, driven by `openapi.json` itself. When a maintainer drops in a new spec,
//! these tests say what the handwritten layer must now handle.

use crate::support;

use http::{HeaderMap, StatusCode};
use phala_cloud::{Client, UpdateCvmEnvsBody, update_envs};
use serde_json::{Value, json};
use support::{Reply, ScriptedServer};

fn spec() -> Value {
    serde_json::from_str(include_str!("../../openapi.json")).unwrap()
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The operations the handwritten layer wraps: (method, path, statuses it maps).
const WRAPPED: &[(&str, &str, &[u16])] = &[("patch", update_envs::PATH, update_envs::MAPPED_STATUSES)];

fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_owned(), path.clone(), op.clone()));
            }
        }
    }
    out
}

#[test]
fn every_status_of_every_wrapped_operation_is_mapped() {
    let spec = spec();
    let mut problems = Vec::new();
    for (method, path, statuses) in WRAPPED {
        let Some(op) = spec["paths"].get(*path).and_then(|item| item.get(*method)) else {
            problems.push(format!(
                "{} {path} is wrapped by the handwritten layer but gone from the spec",
                method.to_uppercase()
            ));
            continue;
        };
        let id = op["operationId"].as_str().unwrap_or("?");
        for status in op["responses"].as_object().unwrap().keys() {
            let mapped_here = status.parse::<u16>().is_ok_and(|s| statuses.contains(&s));
            if !mapped_here {
                problems.push(format!(
                    "{} {path} ({id}): response {status} has no mapping in the handwritten layer",
                    method.to_uppercase()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "the spec has changed:\n{}", problems.join("\n"));
}

/// Operations the handwritten layer does not wrap are not its concern: they are generated
/// (with `full-api`) and reached through `Client::api`, or skipped by name with a reason.
/// Nothing in the spec is lost silently.
#[test]
fn every_operation_is_generated_or_skipped_by_name() {
    let spec = spec();
    let all = operations(&spec);
    let generated: Vec<(&str, &str)> = phala_cloud::GENERATED_OPERATIONS.iter().map(|o| (o.method, o.path)).collect();
    let skipped: Vec<(&str, &str)> = phala_cloud::SKIPPED_OPERATIONS.iter().map(|o| (o.method, o.path)).collect();
    for op in phala_cloud::SKIPPED_OPERATIONS {
        assert!(!op.reason.is_empty(), "{op:?}");
    }
    let mut missing = Vec::new();
    for (method, path, op) in &all {
        let key = (method.to_uppercase(), path.as_str());
        let found = |list: &[(&str, &str)]| list.iter().any(|(m, p)| *m == key.0 && *p == key.1);
        let wanted = cfg!(feature = "full-api") || WRAPPED.iter().any(|(m, p, _)| m == method && p == path);
        if wanted && !found(&generated) && !found(&skipped) {
            missing.push(format!("{} {path} ({})", key.0, op["operationId"]));
        }
    }
    assert!(missing.is_empty(), "operations neither generated nor skipped:\n{}", missing.join("\n"));
    if cfg!(feature = "full-api") {
        assert_eq!(generated.len() + skipped.len(), all.len());
    }
}

#[test]
fn every_mapped_error_status_has_its_own_variant() {
    for &status in update_envs::MAPPED_STATUSES {
        let status = StatusCode::from_u16(status).unwrap();
        let result = update_envs::classify(status, HeaderMap::new(), bytes::Bytes::new(), false);
        match result {
            Ok(ok) => assert!(status.is_success(), "{status} classified as success: {ok:?}"),
            Err(e) => {
                assert!(!e.is_unexpected_status(), "{status} falls through to UnexpectedStatus");
                assert_eq!(e.status(), Some(status));
            }
        }
    }
    // And one that is not in the spec does fall through.
    let e = update_envs::classify(StatusCode::IM_A_TEAPOT, HeaderMap::new(), bytes::Bytes::new(), false).unwrap_err();
    assert!(e.is_unexpected_status());
}

#[test]
fn the_wrapped_operation_is_in_the_spec_as_the_code_assumes() {
    let spec = spec();
    let op = &spec["paths"][update_envs::PATH]["patch"];
    assert_eq!(op["operationId"], "update_cvm_envs_api_v1_cvms__cvm_id__envs_patch");
    assert_eq!(op["parameters"][0]["name"], "cvm_id");
    assert_eq!(op["parameters"][0]["in"], "path");
}

/// A validator for the spec's request schema of the envs operation, JSON Schema 2020-12 (the
/// dialect of OpenAPI 3.1), with `#/components/...` references resolved in the spec itself.
fn request_validator() -> jsonschema::Validator {
    let spec = spec();
    let schema_ref = spec["paths"][update_envs::PATH]["patch"]["requestBody"]["content"]["application/json"]["schema"]
        ["$ref"]
        .clone();
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": schema_ref,
        "components": spec["components"],
    });
    jsonschema::draft202012::new(&root).unwrap()
}

#[tokio::test]
async fn request_bodies_sent_match_the_spec_schema_and_headers() {
    let validator = request_validator();
    // The validator is not vacuous.
    assert!(!validator.is_valid(&json!({"env_keys": ["A"]})));
    assert!(!validator.is_valid(&json!({"encrypted_env": "ab", "env_keys": "A"})));

    let server = ScriptedServer::start(vec![Reply::json(202, "{}")]).await;
    let client = Client::builder().base_url(&server.base_url).api_key("key-abc").build().unwrap();
    let blob = "ab".repeat(80);
    let hash = format!("0x{}", "11".repeat(32));
    let tx = "22".repeat(32);
    let bodies = [
        // Phase 1, with and without env_keys.
        UpdateCvmEnvsBody {
            encrypted_env: blob.clone(),
            env_keys: Some(vec!["A".into()]),
            compose_hash: None,
            transaction_hash: None,
        },
        UpdateCvmEnvsBody { encrypted_env: blob.clone(), env_keys: None, compose_hash: None, transaction_hash: None },
        UpdateCvmEnvsBody {
            encrypted_env: blob.clone(),
            env_keys: Some(vec![]),
            compose_hash: None,
            transaction_hash: None,
        },
        // Phase 2.
        UpdateCvmEnvsBody {
            encrypted_env: blob.clone(),
            env_keys: Some(vec!["A".into(), "B_2".into()]),
            compose_hash: Some(hash.clone()),
            transaction_hash: Some(tx.clone()),
        },
    ];
    for body in &bodies {
        client.update_cvm_envs("cvm?1#é", body).await.unwrap();
    }
    let recorded = server.recorded();
    assert_eq!(recorded.len(), bodies.len());
    for (sent, body) in recorded.iter().zip(&bodies) {
        let json: Value = serde_json::from_slice(&sent.body).unwrap();
        let errors: Vec<String> = validator.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{json}: {errors:?}");
        assert_eq!(json, serde_json::to_value(body).unwrap());
        // Phase-1 bodies carry no phase-2 fields at all (not even null).
        assert_eq!(json.get("compose_hash").is_some(), body.compose_hash.is_some());

        assert_eq!(sent.request_line(), "PATCH /api/v1/cvms/cvm%3F1%23%C3%A9/envs HTTP/1.1");
        assert_eq!(sent.header("x-api-key").as_deref(), Some("key-abc"));
        assert_eq!(sent.header("x-phala-version").as_deref(), Some(phala_cloud::DEFAULT_API_VERSION));
        assert_eq!(sent.header("user-agent"), Some(format!("phala-cloud-rs/{}", env!("CARGO_PKG_VERSION"))));
        assert_eq!(sent.header("content-type").as_deref(), Some("application/json"));
        assert_eq!(sent.header("accept").as_deref(), Some("application/json"));
    }

    // A configured version header is sent as given.
    let client = Client::builder().base_url(&server.base_url).api_key("k").api_version("LATEST").build().unwrap();
    client.update_cvm_envs("c", &bodies[0]).await.unwrap();
    assert_eq!(server.recorded().last().unwrap().header("x-phala-version").as_deref(), Some("LATEST"));
}
