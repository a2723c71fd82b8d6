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

/// The operations of the spec that answer 465 but that the one-call flow does not drive yet,
/// each with why. An operation the spec adds 465 to must be driven or named here: the test
/// below fails, naming it, until it is.
const NOT_DRIVEN: &[(&str, &str)] = &[
    ("handle_replicate_cvm_cvms_replicas", "465 is an allow-list rejection: no phase 2 in the request, no 466-468"),
    ("redeploy_cvm_revision", "phase 2 is a transaction_hash query parameter only; no 466-468"),
    ("redeploy_app_revision", "phase 2 is a transaction_hash query parameter only; no 466-468"),
];

/// `TWO_PHASE_OPERATIONS` is what the spec says, read here again independently: every
/// operation whose responses include 465, the registration statuses it lists, and how its
/// request carries phase 2.
#[test]
fn two_phase_operations_are_read_from_the_spec() {
    use phala_cloud::{Phase2Carrier, TWO_PHASE_OPERATIONS};
    let spec = spec();
    let mut expected = Vec::new();
    for (method, path, op) in operations(&spec) {
        let responses = op["responses"].as_object().unwrap();
        if !responses.contains_key("465") {
            continue;
        }
        let statuses: Vec<u16> =
            [465, 466, 467, 468].into_iter().filter(|s| responses.contains_key(&s.to_string())).collect();
        let params: Vec<(String, String)> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| (p["in"].as_str().unwrap().to_owned(), p["name"].as_str().unwrap().to_ascii_lowercase()))
            .collect();
        let has = |at: &str, name: &str| params.iter().any(|(a, n)| a == at && n == name);
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        let schema = match schema["$ref"].as_str() {
            Some(r) => spec.pointer(r.strip_prefix('#').unwrap()).unwrap().clone(),
            None => schema.clone(),
        };
        let body_has = |name: &str| schema["properties"].get(name).is_some();
        let carrier = if has("header", "x-compose-hash") && has("header", "x-transaction-hash") {
            Phase2Carrier::Headers
        } else if body_has("compose_hash") && body_has("transaction_hash") {
            Phase2Carrier::BodyFields
        } else if has("query", "transaction_hash") {
            Phase2Carrier::TransactionQuery
        } else {
            Phase2Carrier::NotCarried
        };
        expected.push((method.to_uppercase(), path, statuses, carrier));
    }
    let built: Vec<_> = TWO_PHASE_OPERATIONS
        .iter()
        .map(|o| (o.method.to_owned(), o.path.to_owned(), o.statuses.to_vec(), o.carrier))
        .collect();
    assert_eq!(built, expected);
    // The published spec has seven; the envs PATCH is one of them, with its phase 2 in the body.
    assert_eq!(built.len(), 7, "{built:?}");
    let envs = TWO_PHASE_OPERATIONS.iter().find(|o| o.name == "update_cvm_envs").unwrap();
    assert_eq!((envs.method, envs.path, envs.carrier), ("PATCH", envs_path(), Phase2Carrier::BodyFields));
    assert_eq!(envs.statuses, [465, 466, 467, 468]);
    let unified = TWO_PHASE_OPERATIONS.iter().find(|o| o.path == "/api/v1/cvms/{cvm_id}").unwrap();
    assert_eq!((unified.name, unified.carrier), ("update_cvm_endpoint", Phase2Carrier::Headers));
}

/// Every operation that answers 465 is driven by the one-call flow with the carrier the spec
/// gives it, or named in `NOT_DRIVEN` with why. A spec update that adds 465 to another
/// operation fails here, naming it.
#[test]
fn every_operation_that_answers_465_is_driven_or_named() {
    let problems = undriven(phala_cloud::TWO_PHASE_OPERATIONS);
    assert!(problems.is_empty(), "the spec has changed:\n{}", problems.join("\n"));
}

/// What `every_operation_that_answers_465_is_driven_or_named` reports for a list of operations.
fn undriven(ops: &[phala_cloud::TwoPhaseOperation]) -> Vec<String> {
    let mut problems = Vec::new();
    for op in ops {
        let named = format!("{} {} ({})", op.method, op.path, op.name);
        match (op.driven_by(), NOT_DRIVEN.iter().find(|(n, _)| *n == op.name)) {
            (Some(d), None) if d.carrier == op.carrier => {}
            (Some(d), None) => problems.push(format!(
                "{named}: the spec carries phase 2 as {:?}, {} sends it as {:?}",
                op.carrier, d.entry_point, d.carrier
            )),
            (Some(d), Some(_)) => {
                problems.push(format!("{named} is driven by {} now: drop it from NOT_DRIVEN", d.entry_point))
            }
            (None, Some(_)) => {}
            (None, None) => problems
                .push(format!("{named} answers 465 ({:?}) and the two-phase layer cannot drive it", op.statuses)),
        }
    }
    for (name, _) in NOT_DRIVEN {
        if !ops.iter().any(|op| op.name == *name) {
            problems.push(format!("{name} is in NOT_DRIVEN but the spec has no such operation answering 465"));
        }
    }
    for d in phala_cloud::DRIVEN_OPERATIONS {
        if !ops.iter().any(|op| op.name == d.name) {
            problems.push(format!(
                "{} ({}) is driven but the spec has no such operation answering 465",
                d.name, d.entry_point
            ));
        }
    }
    problems
}

/// The check above is not vacuous: 465 on another operation, a driven operation whose carrier
/// the spec changes, and a named operation the spec dropped are each reported by name.
#[test]
fn a_spec_that_adds_465_elsewhere_fails_by_name() {
    use phala_cloud::{Phase2Carrier, TWO_PHASE_OPERATIONS, TwoPhaseOperation};
    let mut ops = TWO_PHASE_OPERATIONS.to_vec();
    ops.push(TwoPhaseOperation {
        method: "POST",
        path: "/api/v1/cvms/{cvm_id}/restart",
        name: "restart_cvm",
        statuses: &[465, 466],
        carrier: Phase2Carrier::Headers,
    });
    assert_eq!(
        undriven(&ops),
        [
            "POST /api/v1/cvms/{cvm_id}/restart (restart_cvm) answers 465 ([465, 466]) and the two-phase layer cannot drive it"
        ]
    );

    let mut ops = TWO_PHASE_OPERATIONS.to_vec();
    let envs = ops.iter_mut().find(|o| o.name == "update_cvm_envs").unwrap();
    envs.carrier = Phase2Carrier::Headers;
    let problems = undriven(&ops);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("(update_cvm_envs): the spec carries phase 2 as Headers"), "{problems:?}");

    let ops: Vec<_> = TWO_PHASE_OPERATIONS.iter().copied().filter(|o| o.name != "redeploy_app_revision").collect();
    assert_eq!(
        undriven(&ops),
        ["redeploy_app_revision is in NOT_DRIVEN but the spec has no such operation answering 465"]
    );
}

/// Any operation that answers 465, sent through `send_two_phase`, gets the typed kind: its 465
/// carries the phase-1 data read as the env update's own error reads it (structured and flat
/// bodies), and 409, 466, 467, 468 are named; other statuses are `Other`, reply kept.
#[tokio::test]
async fn a_465_reads_the_same_through_the_generic_kind() {
    let hash = "18c6844ab5199260711a82b83367e977c1c152129c1e70deb252eae8b276cd49";
    let app = "a172cedcae47474b615c54d510a5d84a8dea3032";
    let structured = json!({"error_code": "ERR-01-005", "message": "Compose hash registration required", "details": [
        {"field": "compose_hash", "value": format!("0x{hash}")},
        {"field": "app_id", "value": format!("0x{app}")},
        {"field": "device_id", "value": "ab"},
        {"field": "kms_info", "value": {"chain_id": 8453, "slug": "base"}}]})
    .to_string();
    let flat = json!({"compose_hash": hash, "app_id": app, "kms_info": {"chain_id": "8453"}}).to_string();
    let sent = body();
    for body465 in [structured, flat] {
        let server = ScriptedServer::start(vec![Reply::json(465, &body465)]).await;
        let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
        let ours = client.update_cvm_envs("cvm-1", &body()).await.unwrap_err();
        let generic = client.send_two_phase(|api| api.update_cvm_envs("cvm-1", &sent)).await.unwrap_err();
        assert!(generic.is_registration_required(), "{generic}");
        let data = generic.phase1().expect("phase-1 data");
        assert_eq!(Some(data), ours.phase1());
        assert_eq!(data.compose_hash.to_hex(), format!("0x{hash}"));
        assert_eq!(data.chain_id(), Some(8453));
        let text = generic.to_string();
        assert!(
            text.contains(&format!("register compose hash 0x{hash}")) && text.ends_with(", then send phase 2"),
            "{text}"
        );
    }

    type Is = fn(&phala_cloud::SdkError<phala_cloud::TwoPhaseKind>) -> bool;
    let checks: [(u16, Is); 6] = [
        (409, |e| e.is_conflict()),
        (466, |e| e.is_compose_hash_invalid()),
        (467, |e| e.is_transaction_verification_failed()),
        (468, |e| e.is_compose_hash_not_allowed()),
        (404, |e| e.is_other()),
        (500, |e| e.is_other()),
    ];
    for (code, is) in checks {
        let server = ScriptedServer::start(vec![Reply::json(code, r#"{"detail":"d"}"#)]).await;
        let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
        let e = client.send_two_phase(|api| api.update_cvm_envs("cvm-1", &sent)).await.unwrap_err();
        assert!(is(&e), "{code}: {e:?}");
        assert_eq!(e.status().map(|s| s.as_u16()), Some(code));
        assert!(e.phase1().is_none());
        assert_eq!(e.http().and_then(|h| h.message()), Some("d"));
    }
    // An unreadable 465 body is still a 465, with why its data could not be read.
    let server = ScriptedServer::start(vec![Reply::json(465, "<html>")]).await;
    let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
    let e = client.send_two_phase(|api| api.update_cvm_envs("cvm-1", &sent)).await.unwrap_err();
    assert!(e.is_registration_required() && e.phase1().is_none(), "{e}");
    assert!(e.registration_required().unwrap().data.is_err());
}
