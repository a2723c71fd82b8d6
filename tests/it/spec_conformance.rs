//! Spec conformance, driven by `openapi.json` itself. When a maintainer drops in a new spec,
//! these tests say what the handwritten layer must now handle.

use crate::support;

use phala_cloud::{Client, GENERATED_OPERATIONS, UpdateCvmEnvsBody};
use serde_json::{Value, json};
use support::{Reply, ScriptedServer};

fn spec() -> Value {
    serde_json::from_str(include_str!("../../openapi.json")).unwrap()
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The operations the handwritten layer wraps, by their generated names. Their method and path
/// come from the build (which fails, saying so, when the spec drops one).
const WRAPPED: &[&str] = &["update_cvm_envs"];

fn wrapped() -> Vec<(String, &'static str, &'static str)> {
    WRAPPED
        .iter()
        .map(|name| {
            let op = GENERATED_OPERATIONS.iter().find(|op| op.name == *name).expect("the build generates it");
            (op.method.to_lowercase(), op.path, op.name)
        })
        .collect()
}

fn envs_path() -> &'static str {
    wrapped()[0].1
}

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

fn body() -> UpdateCvmEnvsBody {
    UpdateCvmEnvsBody { encrypted_env: "ab".repeat(80), env_keys: None, compose_hash: None, transaction_hash: None }
}

/// Every status the spec lists for a wrapped operation has its own outcome: each is answered
/// over real HTTP, and none may fall through to `UnexpectedStatus` (a success status must be
/// a success). A spec update that adds a status fails here, naming it.
#[tokio::test]
async fn every_status_of_every_wrapped_operation_is_mapped() {
    let spec = spec();
    let mut problems = Vec::new();
    for (method, path, _) in wrapped() {
        let op = &spec["paths"][path][&method];
        let id = op["operationId"].as_str().unwrap_or("?");
        for status in op["responses"].as_object().unwrap().keys() {
            let named = format!("{} {path} ({id}): response {status}", method.to_uppercase());
            let Ok(code) = status.parse::<u16>() else {
                problems.push(format!("{named} is not a single status the handwritten layer can map"));
                continue;
            };
            let server = ScriptedServer::start(vec![Reply::json(code, "{}")]).await;
            let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
            match client.update_cvm_envs("cvm-1", &body()).await {
                Ok(_) if (200..300).contains(&code) => {}
                Ok(ok) => problems.push(format!("{named} is taken for a success: {ok:?}")),
                Err(e) if e.is_unexpected_status() => {
                    problems.push(format!("{named} has no mapping in the handwritten layer"))
                }
                Err(e) => assert_eq!(e.status().map(|s| s.as_u16()), Some(code), "{named}: {e}"),
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
        let wanted = cfg!(feature = "full-api") || wrapped().iter().any(|(m, p, _)| m == method && p == path);
        if wanted && !found(&generated) && !found(&skipped) {
            missing.push(format!("{} {path} ({})", key.0, op["operationId"]));
        }
    }
    assert!(missing.is_empty(), "operations neither generated nor skipped:\n{}", missing.join("\n"));
    if cfg!(feature = "full-api") {
        assert_eq!(generated.len() + skipped.len(), all.len());
    }
}

/// A status the spec does not list falls through to `UnexpectedStatus`, with its status.
#[tokio::test]
async fn a_status_the_spec_does_not_list_is_unexpected() {
    let listed: Vec<u16> = spec()["paths"][envs_path()]["patch"]["responses"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|s| s.parse().ok())
        .collect();
    for code in [418u16, 429, 502] {
        assert!(!listed.contains(&code), "{code} is in the spec now: pick another");
        let server = ScriptedServer::start(vec![Reply::json(code, "{}")]).await;
        let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
        let e = client.update_cvm_envs("cvm-1", &body()).await.unwrap_err();
        assert!(e.is_unexpected_status(), "{code}: {e}");
        assert_eq!(e.status().map(|s| s.as_u16()), Some(code));
    }
}

#[test]
fn the_wrapped_operation_is_in_the_spec_as_the_code_assumes() {
    let spec = spec();
    let op = &spec["paths"][envs_path()]["patch"];
    assert_eq!(op["operationId"], "update_cvm_envs_api_v1_cvms__cvm_id__envs_patch");
    assert_eq!(op["parameters"][0]["name"], "cvm_id");
    assert_eq!(op["parameters"][0]["in"], "path");
}

/// A validator for the spec's request schema of the envs operation, JSON Schema 2020-12 (the
/// dialect of OpenAPI 3.1), with `#/components/...` references resolved in the spec itself.
fn request_validator() -> jsonschema::Validator {
    let spec = spec();
    let schema_ref =
        spec["paths"][envs_path()]["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].clone();
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
