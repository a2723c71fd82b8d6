//! The CVM updates that change its compose ([`CvmPatch`]: the unified `PATCH
//! /api/v1/cvms/{cvm_id}` and the multipart docker-compose and pre-launch-script uploads),
//! driven by the one two-phase driver: against a scripted server (what each phase sends, the
//! multipart body, a 465 that cannot be read, input refused before sending) and, with the
//! simulator, on anvil (each operation's happy path and its 466 restart).

use crate::support;

use phala_cloud::{Client, ComposeHash, CvmPatch, KnownTransaction, TransactionHash, UpdateCvmRequest};
use serde_json::{Value, json};
use support::{Recorded, Reply, ScriptedServer};

const NEW_COMPOSE: &str = "services:\n  app:\n    image: nginx:1.27\n";
const SCRIPT: &str = "#!/bin/sh\necho ready\n";

fn unified_body() -> UpdateCvmRequest {
    serde_json::from_value(json!({ "docker_compose_file": NEW_COMPOSE, "memory": 8192 })).unwrap()
}

/// The three operations, each with the same CVM.
fn each_operation<'a>(client: &'a Client, cvm: &str) -> Vec<(&'static str, CvmPatch<'a>)> {
    vec![
        ("update_cvm_endpoint", client.cvm_patch(cvm, unified_body())),
        ("update_cvm_docker_compose", client.docker_compose_patch(cvm, NEW_COMPOSE)),
        ("update_cvm_pre_launch_script", client.pre_launch_script_patch(cvm, SCRIPT)),
    ]
}

/// A 465 asking for `hash`, in the StructuredError form of the shared fixture.
fn reply_465(hash: ComposeHash) -> Reply {
    let fixture = include_str!("../fixtures/responses/465_structured.json");
    let mut body: Value = serde_json::from_str(fixture).unwrap();
    body["details"][0]["value"] = hash.to_hex().into();
    Reply::json(465, &body.to_string())
}

fn reply_202() -> Reply {
    Reply::json(202, r#"{"status":"in_progress","message":"CVM update initiated","correlation_id":"c-9"}"#)
}

/// The multipart boundary of a recorded request, from its `Content-Type`.
fn boundary(request: &Recorded) -> Option<String> {
    let content_type = request.header("content-type")?;
    let rest = content_type.strip_prefix("multipart/form-data; boundary=")?;
    Some(rest.trim_matches('"').to_owned())
}

/// A request's body with its multipart boundary (random per request) replaced by `BOUNDARY`.
fn normalized_body(request: &Recorded) -> String {
    let body = String::from_utf8(request.body.clone()).unwrap();
    match boundary(request) {
        Some(b) => body.replace(&b, "BOUNDARY"),
        None => body,
    }
}

/// Phase 1 sends no phase-2 header; phase 2 sends exactly the two, with the 465's hash and
/// the registrar's transaction, and the same body (multipart: the same parts) to the same path.
#[tokio::test]
async fn phase_2_adds_exactly_the_two_headers_to_the_same_request() {
    let hash = ComposeHash([0x5a; 32]);
    let tx = TransactionHash([0x7b; 32]);
    for op in 0..3 {
        let server = ScriptedServer::start(vec![reply_465(hash), reply_202()]).await;
        let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
        let (name, patch) = each_operation(&client, "cvm-1").swap_remove(op);
        let outcome = patch.skip_app_id_check().run(KnownTransaction::new(tx)).await.unwrap();
        assert_eq!(outcome.accepted.http_status, 202, "{name}");
        assert_eq!(outcome.accepted.correlation_id.as_deref(), Some("c-9"), "{name}");
        assert_eq!(outcome.accepted.body["message"], "CVM update initiated", "{name}");
        assert_eq!(outcome.registration.as_ref().map(|r| (r.compose_hash, r.transaction_hash)), Some((hash, tx)));

        let [one, two] = <[Recorded; 2]>::try_from(server.recorded()).unwrap();
        assert_eq!(one.request_line(), two.request_line(), "{name}");
        assert!(one.request_line().starts_with("PATCH /api/v1/cvms/cvm-1"), "{name}: {}", one.request_line());
        assert_eq!((one.header("x-compose-hash"), one.header("x-transaction-hash")), (None, None), "{name}");
        assert_eq!(two.header("x-compose-hash"), Some(hash.to_hex()), "{name}");
        assert_eq!(two.header("x-transaction-hash"), Some(tx.to_hex()), "{name}");
        assert_eq!(one.header("x-prepare-only"), None, "{name}");
        assert_eq!(two.header("x-prepare-only"), None, "{name}");
        assert_eq!(normalized_body(&one), normalized_body(&two), "{name}");
        assert_eq!(one.header("x-api-key").as_deref(), Some("k"), "{name}: the same sending path");
    }
}

/// The unified PATCH's body is the JSON `UpdateCvmRequest` as given; `prepare_only` puts
/// `X-Prepare-Only: true` on phase 1 only.
#[tokio::test]
async fn prepare_only_marks_phase_1_of_the_unified_patch() {
    let (hash, tx) = (ComposeHash([1; 32]), TransactionHash([2; 32]));
    let server = ScriptedServer::start(vec![reply_465(hash), reply_202()]).await;
    let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
    client
        .cvm_patch("cvm-1", unified_body())
        .prepare_only()
        .skip_app_id_check()
        .run(KnownTransaction::new(tx))
        .await
        .unwrap();
    let recorded = server.recorded();
    assert_eq!(recorded[0].header("x-prepare-only").as_deref(), Some("true"));
    assert_eq!(recorded[1].header("x-prepare-only"), None);
    assert_eq!(recorded[0].header("content-type").as_deref(), Some("application/json"));
    let sent: Value = serde_json::from_slice(&recorded[0].body).unwrap();
    assert_eq!(sent["docker_compose_file"], NEW_COMPOSE);
    assert_eq!(sent["memory"], 8192);
}

/// A phase 2 whose reply is lost is sent again, the same request with the same two headers
/// (an upload's form made anew), and nothing is registered twice.
#[tokio::test]
async fn a_lost_phase_2_reply_is_sent_again_with_the_same_headers() {
    let (hash, tx) = (ComposeHash([4; 32]), TransactionHash([5; 32]));
    let cut = Reply::Raw(
        b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 90\r\n\r\n{\"st".to_vec(),
    );
    for op in 0..3 {
        let server = ScriptedServer::start(vec![reply_465(hash), cut.clone(), reply_202()]).await;
        let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
        let (name, patch) = each_operation(&client, "cvm-1").swap_remove(op);
        let outcome = patch.skip_app_id_check().run(KnownTransaction::new(tx)).await.unwrap();
        assert_eq!(outcome.registrations.len(), 1, "{name}");
        let recorded = server.recorded();
        assert_eq!(recorded.len(), 3, "{name}");
        for again in &recorded[1..] {
            assert_eq!(again.header("x-compose-hash"), Some(hash.to_hex()), "{name}");
            assert_eq!(again.header("x-transaction-hash"), Some(tx.to_hex()), "{name}");
            assert_eq!(normalized_body(again), normalized_body(&recorded[0]), "{name}");
        }
    }
}

/// A phase 2 whose reply was lost, then refused (409: most likely our own update running; 500;
/// 468) is never reported as not applied: the error says the update may have been applied.
/// Refused without a lost reply before it, it is a plain refusal.
#[tokio::test]
async fn a_refusal_after_a_lost_phase_2_reply_may_have_been_applied() {
    let (hash, tx) = (ComposeHash([6; 32]), TransactionHash([7; 32]));
    let cut = Reply::Raw(
        b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 90\r\n\r\n{\"st".to_vec(),
    );
    let refusals = [
        (409, r#"{"detail":"Another operation in progress"}"#),
        (500, r#"{"detail":"boom"}"#),
        (468, r#"{"detail":"Compose hash not allowed"}"#),
    ];
    for (status, body) in refusals {
        for lost in [true, false] {
            let mut script = vec![reply_465(hash)];
            if lost {
                script.push(cut.clone());
            }
            script.push(Reply::json(status, body));
            let server = ScriptedServer::start(script).await;
            let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
            let e = client
                .docker_compose_patch("cvm-1", NEW_COMPOSE)
                .skip_app_id_check()
                .run(KnownTransaction::new(tx))
                .await
                .unwrap_err();
            let phala_cloud::FlowError::Phase2 { source, may_have_applied, .. } = &e else { panic!("{e:?}") };
            assert_eq!(source.status().map(|s| s.as_u16()), Some(status), "{e:?}");
            assert_eq!((*may_have_applied, e.may_have_applied()), (lost, lost), "{status}, lost {lost}: {e}");
            assert_eq!(e.to_string().contains("the update may have been applied"), lost, "{e}");
        }
    }
}

/// The unified PATCH's bodies, phase 1 and phase 2, are valid `UpdateCvmRequest`s as the spec
/// describes them, and carry only the fields given (no nulls).
#[tokio::test]
async fn the_unified_bodies_match_the_spec_schema() {
    let validator = crate::spec_conformance::json_request_validator("/api/v1/cvms/{cvm_id}", "patch");
    assert!(!validator.is_valid(&json!({"vcpu": "four"})), "not vacuous");
    let server = ScriptedServer::start(vec![reply_465(ComposeHash([1; 32])), reply_202()]).await;
    let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
    let body: UpdateCvmRequest = serde_json::from_value(json!({
        "docker_compose_file": NEW_COMPOSE,
        "pre_launch_script": SCRIPT,
        "allowed_envs": ["API_TOKEN"],
        "public_logs": true,
        "shutdown_timeout": 60,
    }))
    .unwrap();
    client
        .cvm_patch("cvm-1", body)
        .skip_app_id_check()
        .run(KnownTransaction::new(TransactionHash([2; 32])))
        .await
        .unwrap();
    for sent in server.recorded() {
        let sent: Value = serde_json::from_slice(&sent.body).unwrap();
        let errors: Vec<String> = validator.iter_errors(&sent).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{sent}: {errors:?}");
        assert!(sent.as_object().unwrap().values().all(|v| !v.is_null()), "{sent}");
        assert_eq!(sent["allowed_envs"], json!(["API_TOKEN"]));
    }
}

/// An upload is one multipart part, `file`, holding the text as a named file.
#[tokio::test]
async fn an_upload_is_one_file_part() {
    for (op, file_name, media_type, text) in
        [(1, "docker-compose.yml", "application/yaml", NEW_COMPOSE), (2, "pre-launch.sh", "text/x-shellscript", SCRIPT)]
    {
        let server = ScriptedServer::start(vec![reply_202()]).await;
        let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
        let (name, patch) = each_operation(&client, "cvm-1").swap_remove(op);
        let outcome = patch.run(KnownTransaction::new(TransactionHash([3; 32]))).await.unwrap();
        assert!(outcome.registration.is_none(), "{name}");
        let request = &server.recorded()[0];
        let length: usize = request.header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, request.body.len(), "{name}: a known length");
        let expected = format!(
            "--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {media_type}\r\n\r\n{text}\r\n--BOUNDARY--\r\n"
        );
        assert_eq!(normalized_body(request), expected, "{name}");
    }
}

/// A 465 whose body cannot be read stops the run at phase 1, with its status and raw body.
#[tokio::test]
async fn a_465_that_cannot_be_read_keeps_its_status_and_body() {
    for op in 0..3 {
        let server = ScriptedServer::start(vec![Reply::json(465, r#"{"detail":"register it"}"#)]).await;
        let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
        let (name, patch) = each_operation(&client, "cvm-1").swap_remove(op);
        let e = patch.skip_app_id_check().run(KnownTransaction::new(TransactionHash([3; 32]))).await.unwrap_err();
        assert!(matches!(e, phala_cloud::FlowError::Phase1(_)), "{name}: {e:?}");
        assert_eq!(e.to_string(), "phase 1 failed", "{name}");
        let update = e.update_error().unwrap();
        let required = update.registration_required().expect("a 465");
        assert!(required.data.is_err(), "{name}");
        assert_eq!(required.http.status(), 465, "{name}");
        assert_eq!(&required.http.raw_body()[..], br#"{"detail":"register it"}"#, "{name}");
        assert_eq!(server.requests(), 1, "{name}");
    }
}

/// A 409 follows the client's `ConflictRetry`, as the env update's does: with it, the same
/// request is sent again; without it, the 409 ends the run at phase 1.
#[tokio::test]
async fn a_409_follows_the_clients_conflict_retry() {
    let conflict = || Reply::json(409, r#"{"detail":"Another operation is in progress for this CVM"}"#);
    let retry = phala_cloud::ConflictRetry {
        max_attempts: 2,
        initial_backoff: std::time::Duration::from_millis(10),
        max_backoff: std::time::Duration::from_millis(20),
    };
    let server = ScriptedServer::start(vec![conflict(), reply_202()]).await;
    let client = Client::builder().base_url(&server.base_url).api_key("k").retry_on_conflict(retry).build().unwrap();
    let outcome =
        client.docker_compose_patch("cvm-1", NEW_COMPOSE).run(KnownTransaction::new(TransactionHash([3; 32])));
    assert_eq!(outcome.await.unwrap().accepted.http_status, 202);
    assert_eq!(server.requests(), 2);

    let server = ScriptedServer::start(vec![conflict()]).await;
    let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
    let e = client.cvm_patch("cvm-1", unified_body()).run(KnownTransaction::new(TransactionHash([3; 32]))).await;
    let e = e.unwrap_err();
    assert!(e.update_error().is_some_and(|u| u.is_conflict()), "{e:?}");
    assert_eq!(server.requests(), 1);
}

/// Bad input is refused before anything is sent.
#[tokio::test]
async fn bad_input_sends_nothing() {
    let server = ScriptedServer::start(vec![reply_202()]).await;
    let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
    let body = |v: Value| -> UpdateCvmRequest { serde_json::from_value(v).unwrap() };
    let cases: Vec<(&str, CvmPatch<'_>)> = vec![
        ("cvm_id", client.cvm_patch("", unified_body())),
        ("cvm_id", client.docker_compose_patch("..", NEW_COMPOSE)),
        ("body", client.cvm_patch("cvm-1", body(json!({})))),
        ("body", client.cvm_patch("cvm-1", body(json!({"allow_force_stop": true})))),
        ("docker_compose_file", client.cvm_patch("cvm-1", body(json!({"docker_compose_file": ""})))),
        ("allowed_envs[0]", client.cvm_patch("cvm-1", body(json!({"allowed_envs": ["1X"]})))),
        ("file", client.docker_compose_patch("cvm-1", "")),
        ("file", client.pre_launch_script_patch("cvm-1", "  \n")),
    ];
    for (field, patch) in cases {
        let e = patch.run(KnownTransaction::new(TransactionHash([3; 32]))).await.unwrap_err();
        assert!(e.is_input(), "{field}: {e:?}");
        assert_eq!(e.to_string(), "refused before sending phase 1; nothing was sent", "{field}");
        let Some(phala_cloud::SdkError::InvalidInput(input)) = e.update_error() else { panic!("{e:?}") };
        assert_eq!(input.field, field);
    }
    assert_eq!(server.requests(), 0);
}

#[cfg(feature = "simulator")]
mod on_chain {
    use super::*;

    use phala_cloud::onchain::OnchainRegistrar;
    use phala_cloud::simulator::{CvmSpec, Phase, Simulator, SimulatorConfig};
    use phala_cloud::{FlowEvent, RestartReason};
    use support::Then;
    use support::anvil::LocalChain;

    async fn simulator(chain: &LocalChain, cvms: Vec<CvmSpec>) -> Simulator {
        Simulator::start(SimulatorConfig::default().cvms(cvms).chain(chain.sim_chain())).await.unwrap()
    }

    fn registrar(chain: &LocalChain) -> OnchainRegistrar {
        OnchainRegistrar::new(chain.signer(0), chain.endpoint.parse().unwrap()).unwrap()
    }

    /// A simulator with one contract-owned CVM, `cvm-1`, its client and its app contract.
    async fn one_onchain_cvm(chain: &LocalChain) -> (Simulator, Client, phala_cloud::AppId) {
        let sim = simulator(chain, vec![CvmSpec::onchain("cvm-1")]).await;
        let client = sim.client_builder().build().unwrap();
        let app = sim.cvm("cvm-1").unwrap().app_id.unwrap();
        (sim, client, app)
    }

    /// The CVM as `GET /api/v1/cvms/{id}` describes it, as sent.
    async fn view(client: &Client, cvm: &str) -> Value {
        let reply = client.send(|api| api.handle_get_cvm(cvm)).await.unwrap();
        serde_json::from_slice(reply.raw_body()).unwrap()
    }

    /// What each operation should leave the CVM booting: (compose file, pre-launch script).
    fn expected(op: usize, seeded_compose: &str) -> (String, Value) {
        match op {
            2 => (seeded_compose.to_owned(), json!(SCRIPT)),
            _ => (NEW_COMPOSE.to_owned(), Value::Null),
        }
    }

    /// Each operation on a contract-owned CVM: 465 → the hash registered on anvil (one
    /// `ComposeHashAdded`) → phase 2 in headers → 202; the CVM view shows the new compose and
    /// the hash that was registered.
    #[tokio::test]
    async fn each_operation_registers_the_new_compose_and_is_accepted() {
        let chain = LocalChain::start();
        for op in 0..3 {
            let (sim, client, app) = one_onchain_cvm(&chain).await;
            let seeded = view(&client, "cvm-1").await;
            let seeded_compose = seeded["compose_file"]["docker_compose_file"].as_str().unwrap().to_owned();
            let (name, patch) = each_operation(&client, "cvm-1").swap_remove(op);

            let outcome = patch.run(registrar(&chain)).await.unwrap();
            let registration = outcome.registration.expect(name);
            assert_eq!(registration.app_id, app, "{name}");
            assert_eq!(outcome.registrations.len(), 1, "{name}");
            assert!(outcome.accepted.correlation_id.is_some(), "{name}");
            assert_eq!(chain.compose_hashes_added(app.into()).await, 1, "{name}: one ComposeHashAdded");

            let ops = sim.operations();
            let seen: Vec<_> = ops.iter().map(|o| (o.operation, o.phase, o.status)).collect();
            assert_eq!(seen, [(name, Some(Phase::One), 465), (name, Some(Phase::Two), 202)]);
            assert_eq!(ops[1].compose_hash, Some(registration.compose_hash));
            assert_eq!(ops[1].transaction_hash, Some(registration.transaction_hash));

            let now = view(&client, "cvm-1").await;
            let (compose, script) = expected(op, &seeded_compose);
            assert_eq!(now["compose_file"]["docker_compose_file"], compose, "{name}");
            assert_eq!(now["compose_file"]["pre_launch_script"], script, "{name}");
            assert_eq!(
                now["compose_hash"].as_str().unwrap(),
                registration.compose_hash.to_hex().trim_start_matches("0x"),
                "{name}: the view's hash is the registered one"
            );
            assert_ne!(now["compose_hash"], seeded["compose_hash"], "{name}");
            if op == 0 {
                assert_eq!(now["resource"]["memory_in_gb"], 8.0, "the unified PATCH's other fields are applied");
            }
        }
    }

    /// The hash expires between registration and phase 2: 466, phase 1 again gives the same
    /// hash, which is not registered again; phase 2 then goes through. One transaction.
    #[tokio::test]
    async fn each_operation_restarts_once_after_466_without_paying_twice() {
        let chain = LocalChain::start();
        for op in 0..3 {
            let (sim, client, app) = one_onchain_cvm(&chain).await;
            let owner = registrar(&chain);
            let expire = Then {
                inner: &owner,
                after: |tx| {
                    sim.expire_compose_hashes();
                    Ok(tx)
                },
            };
            let events = std::sync::Mutex::new(Vec::new());
            let (name, patch) = each_operation(&client, "cvm-1").swap_remove(op);
            let outcome = patch.on_event(|e| events.lock().unwrap().push(e.clone())).run(&expire).await.unwrap();
            assert!(events.lock().unwrap().contains(&FlowEvent::Restarting { reason: RestartReason::Expired }));
            assert_eq!(outcome.registrations.len(), 1, "{name}");
            assert_eq!(chain.compose_hashes_added(app.into()).await, 1, "{name}: one transaction in all");
            let statuses: Vec<u16> = sim.operations().iter().map(|o| o.status).collect();
            assert_eq!(statuses, [465, 466, 465, 202], "{name}");
        }
    }

    /// As the official JS SDK runs the unified PATCH: phase 1 with `X-Prepare-Only: true` (its
    /// 465 then carries a `commit_token` string), the hash registered elsewhere, and a phase 2
    /// that sends `{}` with the two headers: the simulator applies the change phase 1 handed the
    /// hash out for. A raw `text/yaml` upload (the SDK's, not the spec's multipart) is read too.
    #[tokio::test]
    async fn a_phase_2_citing_its_hash_alone_applies_phase_1s_change() {
        let chain = LocalChain::start();
        let (sim, client, app) = one_onchain_cvm(&chain).await;

        let body = unified_body();
        let e = client.send_two_phase(|api| api.update_cvm_endpoint("cvm-1", None, Some("true"), None, &body)).await;
        let e = e.unwrap_err();
        let hash = e.phase1().expect("a 465").compose_hash;
        let sent: Value = serde_json::from_slice(e.registration_required().unwrap().http.raw_body()).unwrap();
        let token = sent["details"].as_array().unwrap().iter().find(|d| d["field"] == "commit_token");
        assert!(token.is_some_and(|t| t["value"].is_string()), "{sent}");

        let tx = chain.add_compose_hash(app.into(), hash.0.into(), chain.signer(0)).await.transaction_hash;
        let (hash_hex, tx_hex) = (hash.to_hex(), TransactionHash::from(tx).to_hex());
        let empty = UpdateCvmRequest::default();
        let reply = client
            .send_two_phase(|api| api.update_cvm_endpoint("cvm-1", Some(&hash_hex), None, Some(&tx_hex), &empty))
            .await
            .unwrap();
        assert_eq!(reply.status(), 202);
        let now = view(&client, "cvm-1").await;
        assert_eq!(now["compose_file"]["docker_compose_file"], NEW_COMPOSE);
        assert_eq!(now["resource"]["memory_in_gb"], 8.0);

        // The SDK's raw-text upload: a 465 for the compose it would boot.
        let raw = phala_cloud::http_client_builder()
            .unwrap()
            .build()
            .unwrap()
            .patch(format!("{}/api/v1/cvms/cvm-1/pre-launch-script", sim.base_url()))
            .header("x-api-key", sim.api_key())
            .header("content-type", "text/plain")
            .body(SCRIPT)
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status(), 465);
    }

    /// One raw request to the simulator: (status, JSON body).
    async fn raw(
        sim: &Simulator,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let http = phala_cloud::http_client_builder().unwrap().build().unwrap();
        let mut request = http.patch(format!("{}{path}", sim.base_url())).header("x-api-key", sim.api_key());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let reply = request.body(body).send().await.unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap())
    }

    /// What the three routes refuse, as the spec says: a phase 1 that changes nothing, an
    /// upload that is neither multipart nor text, a multipart body without its `file`, half a
    /// phase-2 pair of headers (named by its header), another workspace's CVM; and 409 while an
    /// accepted update runs.
    #[tokio::test]
    async fn the_simulator_refuses_what_the_spec_refuses() {
        let config = SimulatorConfig::default().operation_duration(std::time::Duration::from_secs(30));
        let sim = Simulator::start(config).await.unwrap();
        let json = ("content-type", "application/json");
        let (status, body) = raw(&sim, "/api/v1/cvms/cvm-onchain", &[json], "{}").await;
        assert_eq!((status, body["detail"].as_str()), (400, Some("No fields to update")));
        let (status, _) = raw(&sim, "/api/v1/cvms/cvm-onchain/docker-compose", &[json], "{}").await;
        assert_eq!(status, 400);
        let multipart = ("content-type", "multipart/form-data; boundary=XYZ");
        let no_file = "--XYZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--XYZ--\r\n";
        let (status, body) = raw(&sim, "/api/v1/cvms/cvm-onchain/pre-launch-script", &[multipart], no_file).await;
        assert_eq!(status, 400, "{body}");
        let hash = ComposeHash([1; 32]).to_hex();
        let half = [json, ("x-compose-hash", hash.as_str())];
        let (status, body) = raw(&sim, "/api/v1/cvms/cvm-onchain", &half, r#"{"vcpu": 4}"#).await;
        assert_eq!((status, body["detail"][0]["loc"].clone()), (422, json!(["header", "X-Transaction-Hash"])));
        let (status, _) = raw(&sim, "/api/v1/cvms/cvm-foreign", &[json], r#"{"vcpu": 4}"#).await;
        assert_eq!(status, 403);

        // A change accepted on a centralized CVM keeps it busy: the next one gets 409.
        let client = sim.client_builder().build().unwrap();
        let never = KnownTransaction::new(TransactionHash([9; 32]));
        client.docker_compose_patch("cvm-central", NEW_COMPOSE).run(never).await.unwrap();
        let e = client.pre_launch_script_patch("cvm-central", SCRIPT).run(never).await.unwrap_err();
        assert!(e.update_error().is_some_and(|u| u.is_conflict()), "{e:?}");
    }

    /// Phase 2 citing a transaction that registered another hash, as for envs: 468 while the
    /// hash is not allowed; once it is (registered elsewhere), 467, final for a transaction the
    /// registrar did not report included. Nothing is applied.
    #[tokio::test]
    async fn a_transaction_for_another_hash_gives_468_then_467() {
        let chain = LocalChain::start();
        let (sim, client, app) = one_onchain_cvm(&chain).await;
        let seeded = view(&client, "cvm-1").await;
        let other = chain.add_compose_hash(app.into(), [9u8; 32].into(), chain.signer(0)).await.transaction_hash;
        let cite_other = || client.docker_compose_patch("cvm-1", NEW_COMPOSE).run(KnownTransaction::new(other.into()));

        let e = cite_other().await.unwrap_err();
        assert!(matches!(e, phala_cloud::FlowError::Phase2 { .. }), "{e:?}");
        assert!(e.update_error().unwrap().is_compose_hash_not_allowed(), "{e:?}");
        let hash = e.registration().unwrap().compose_hash;

        chain.add_compose_hash(app.into(), hash.0.into(), chain.signer(0)).await;
        let e = cite_other().await.unwrap_err();
        assert!(e.update_error().unwrap().is_transaction_verification_failed(), "{e:?}");
        let statuses: Vec<u16> = sim.operations().iter().map(|o| o.status).collect();
        assert_eq!(statuses, [465, 468, 465, 467]);
        assert_eq!(view(&client, "cvm-1").await["compose_hash"], seeded["compose_hash"]);
    }

    /// A centralized KMS's CVM takes a compose change at once, with nothing to register; a
    /// change that leaves the compose as it is (resources only) is accepted at once on a
    /// contract-owned CVM too.
    #[tokio::test]
    async fn no_registration_without_a_contract_owned_compose_change() {
        let chain = LocalChain::start();
        let sim = simulator(&chain, vec![CvmSpec::centralized("cvm-c"), CvmSpec::onchain("cvm-1")]).await;
        let client = sim.client_builder().build().unwrap();
        let never = KnownTransaction::new(TransactionHash([9; 32])).for_compose_hash(ComposeHash([0; 32]));

        let outcome = client.docker_compose_patch("cvm-c", NEW_COMPOSE).run(never).await.unwrap();
        assert!(outcome.registration.is_none());
        assert_eq!(outcome.accepted.http_status, 202);
        assert_eq!(view(&client, "cvm-c").await["compose_file"]["docker_compose_file"], NEW_COMPOSE);

        let resources: UpdateCvmRequest = serde_json::from_value(json!({"vcpu": 4, "public_logs": true})).unwrap();
        let outcome = client.cvm_patch("cvm-1", resources).run(never).await.unwrap();
        assert!(outcome.registration.is_none());
        let now = view(&client, "cvm-1").await;
        assert_eq!((now["resource"]["vcpu"].clone(), now["public_logs"].clone()), (json!(4), json!(true)));
        let statuses: Vec<u16> = sim.operations().iter().map(|o| o.status).collect();
        assert_eq!(statuses, [202, 202]);
    }
}
