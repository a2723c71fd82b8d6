//! `PATCH /api/v1/cvms/{cvm_id}/envs` against httpmock: every status with the shared fixture
//! bodies, malformed replies, unknown statuses, and the 409 retry policy.

use crate::support;

use httpmock::MockServer;
use phala_cloud::{Client, ConflictRetry, EnvsUpdateAccepted, ErrorEnvelope, UpdateCvmEnvsBody, UpdateEnvsError};
use std::time::Duration;
use support::{Reply, ScriptedServer};

const CVM: &str = "cvm-123";
const KEY: &str = "test-api-key";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/responses/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn body() -> UpdateCvmEnvsBody {
    UpdateCvmEnvsBody {
        encrypted_env: "ab".repeat(80),
        env_keys: Some(vec!["FOO".into(), "BAR".into()]),
        compose_hash: None,
        transaction_hash: None,
    }
}

fn client(base: &str) -> Client {
    // The prefix form of PHALA_CLOUD_API_PREFIX, with `/api/v1`.
    Client::builder().base_url(format!("{base}/api/v1")).api_key(KEY).build().unwrap()
}

/// Serves `status` with `body` (and `headers`) for the envs endpoint and returns what the
/// client made of it.
async fn reply(
    status: u16,
    reply_body: &[u8],
    headers: &[(&str, &str)],
) -> Result<EnvsUpdateAccepted, UpdateEnvsError> {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method("PATCH").path(format!("/api/v1/cvms/{CVM}/envs"));
            let mut then = then.status(status).body(reply_body);
            for (k, v) in headers {
                then = then.header(*k, *v);
            }
        })
        .await;
    let result = client(&server.base_url()).update_cvm_envs(CVM, &body()).await;
    assert_eq!(mock.calls_async().await, 1, "exactly one request for status {status}");
    result
}

#[tokio::test]
async fn accepted_fixtures() {
    for (name, changed) in [("202_in_progress.json", true), ("202_no_change.json", false)] {
        let raw = fixture(name);
        let ok = reply(202, &raw, &[("x-request-id", "hdr-1")]).await.unwrap();
        assert_eq!(ok.http_status, 202);
        assert_eq!(ok.status.as_deref(), Some("in_progress"));
        assert_eq!(ok.message.as_deref(), Some("Environment update initiated"));
        assert!(ok.correlation_id.as_deref().unwrap().starts_with("c0ffee0"));
        assert_eq!(ok.allowed_envs_changed, Some(changed));
        assert_eq!(ok.request_id.as_deref(), Some("hdr-1"));
        assert_eq!(ok.raw_body, raw);
        assert!(ok.extra.is_empty());
    }
}

#[tokio::test]
async fn a_202_is_accepted_whatever_its_body_another_2xx_only_with_a_correlation_id() {
    for (status, body) in [
        (200, &b"{\"correlation_id\":\"x\",\"extra_field\":[1]}"[..]),
        (201, b"{\"correlation_id\":\"y\"}"),
        (202, b"<html>ok</html>"),
        (202, b"{\"status\":1,\"allowed_envs_changed\":\"yes\"}"),
        (202, b""),
        (202, b"{\"truncat"),
    ] {
        let ok = reply(status, body, &[]).await.unwrap_or_else(|e| panic!("{status} {body:?}: {e}"));
        assert_eq!(ok.http_status, status);
        assert_eq!(ok.raw_body, body);
    }
    // A wrong PHALA_CLOUD_API_PREFIX that lands on a web page, an empty 200, a 204: the server
    // took the request, so the update may have been applied, and nothing proves it was.
    for (status, body) in [
        (200, &b"<!doctype html><title>Phala Cloud</title>"[..]),
        (200, b""),
        (204, b""),
        (200, b"{\"correlation_id\":\"\"}"),
        (201, b"[{\"correlation_id\":\"x\"}]"),
    ] {
        let e = reply(status, body, &[]).await.unwrap_err();
        let UpdateEnvsError::InvalidReply(invalid) = &e else { panic!("{status} {body:?}: {e:?}") };
        assert_eq!((invalid.status().as_u16(), &invalid.raw_body()[..]), (status, body));
        assert!(e.may_have_been_applied() && !e.is_retryable() && !e.is_not_sent());
        let shown = e.to_string();
        assert!(shown.contains("base URL") && shown.contains("may have acted on it"), "{shown}");
    }
    let ok = reply(200, b"{\"correlation_id\":\"x\",\"extra_field\":[1]}", &[]).await.unwrap();
    assert_eq!(ok.correlation_id.as_deref(), Some("x"));
    assert_eq!(ok.extra["extra_field"], serde_json::json!([1]));
    // Wrong types: not an error, the field is absent and the value kept in `extra`.
    let ok = reply(202, b"{\"status\":1,\"allowed_envs_changed\":\"yes\"}", &[]).await.unwrap();
    assert_eq!(ok.status, None);
    assert_eq!(ok.allowed_envs_changed, None);
    assert_eq!(ok.extra["allowed_envs_changed"], "yes");
}

/// (fixture, status, predicate, request id, text the Display must contain)
type Case = (&'static str, u16, fn(&UpdateEnvsError) -> bool, Option<&'static str>, &'static str);

#[tokio::test]
async fn every_error_status_with_its_fixture() {
    let cases: [Case; 12] = [
        (
            "401_detail.json",
            401,
            UpdateEnvsError::is_unauthorized,
            None,
            "HTTP 401: Not authenticated; check the API key",
        ),
        ("403_detail.json", 403, UpdateEnvsError::is_forbidden, None, "HTTP 403: CVM not in workspace"),
        ("404_detail.json", 404, UpdateEnvsError::is_not_found, None, "HTTP 404: CVM not found; check the CVM id"),
        (
            "409_detail.json",
            409,
            UpdateEnvsError::is_conflict,
            None,
            "HTTP 409: Another operation is in progress for this CVM",
        ),
        (
            "409_structured.json",
            409,
            UpdateEnvsError::is_conflict,
            Some("req-409-e5"),
            "HTTP 409 ERR-01-009: Another operation is in progress",
        ),
        ("422_validation.json", 422, UpdateEnvsError::is_validation, None, "HTTP 422: Field required (and 1 more)"),
        (
            "465_structured.json",
            465,
            UpdateEnvsError::is_registration_required,
            Some("req-465-a1"),
            "HTTP 465 ERR-01-005: Compose hash registration required on-chain; register compose hash 0x18c6844ab5199260711a82b83367e977c1c152129c1e70deb252eae8b276cd49 on app contract 0xa172cedcae47474b615c54d510a5d84a8dea3032 (chain 8453), then send the same request with compose_hash and transaction_hash",
        ),
        (
            "465_legacy_flat.json",
            465,
            UpdateEnvsError::is_registration_required,
            None,
            "HTTP 465: Compose hash verification required; register compose hash 0x18c6844ab5199260711a82b83367e977c1c152129c1e70deb252eae8b276cd49",
        ),
        (
            "466_structured.json",
            466,
            UpdateEnvsError::is_compose_hash_invalid,
            Some("req-466-b2"),
            "HTTP 466 ERR-01-006: Compose hash invalid or expired; start again from phase 1",
        ),
        (
            "467_structured.json",
            467,
            UpdateEnvsError::is_transaction_verification_failed,
            Some("req-467-c3"),
            "HTTP 467 ERR-01-007: Transaction verification failed; check that the transaction was mined",
        ),
        (
            "468_structured.json",
            468,
            UpdateEnvsError::is_compose_hash_not_allowed,
            Some("req-468-d4"),
            "HTTP 468 ERR-01-008: Compose hash not allowed on-chain; register this exact compose hash",
        ),
        ("500_detail.json", 500, UpdateEnvsError::is_server_error, None, "HTTP 500: KMS RPC error: upstream timed out"),
    ];
    for (name, status, predicate, request_id, text) in cases {
        let raw = fixture(name);
        let e = reply(status, &raw, &[]).await.unwrap_err();
        assert!(predicate(&e), "{name}: {e:?}");
        assert_eq!(e.status().map(|s| s.as_u16()), Some(status), "{name}");
        assert_eq!(e.raw_body().unwrap(), &raw, "{name}");
        assert_eq!(e.request_id(), request_id, "{name}");
        let shown = e.to_string();
        assert!(shown.starts_with(text), "{name}: {shown}");
        assert!(!shown.contains('\n'), "{name}: one line");
        assert_eq!(e.is_retryable(), status == 409, "{name}");
        assert!(!matches!(e.envelope(), Some(ErrorEnvelope::Unrecognized)), "{name}: envelope parsed");
    }
}

#[tokio::test]
async fn phase1_data_from_both_forms() {
    for name in ["465_structured.json", "465_legacy_flat.json"] {
        let e = reply(465, &fixture(name), &[]).await.unwrap_err();
        let data = e.phase1().unwrap_or_else(|| panic!("{name}: {e:?}"));
        assert_eq!(data.compose_hash.to_string(), "0x18c6844ab5199260711a82b83367e977c1c152129c1e70deb252eae8b276cd49");
        assert_eq!(data.app_id.to_string(), "0xa172cedcae47474b615c54d510a5d84a8dea3032");
        assert_eq!(data.device_id.as_deref(), Some("263a4dbe41488fb87214b0032339dbb9f0c8da14c16dfcf13084bf3c2552eca5"));
        let kms = data.kms_info.as_ref().unwrap();
        assert_eq!(kms.id.as_deref(), Some("kms_7QmZ2"));
        assert_eq!(kms.slug.as_deref(), Some("kms-base-prod7"));
        assert_eq!(kms.url.as_deref(), Some("https://kms.example.invalid"));
        assert_eq!(kms.version.as_deref(), Some("v0.5.7"));
        assert_eq!(kms.chain_id, Some(8453));
        assert_eq!(kms.kms_contract_address.as_deref(), Some("0x9561ec7060925885f5870d0e0bf5fbfe761a5c5f"));
        assert_eq!(kms.gateway_app_id.as_deref(), Some("0x9716536f62c81fe13e7c21c8807af96fd93f677e"));
        assert_eq!(
            kms.k256_pubkey.as_deref(),
            Some("0x0281db9b102be7c204f3637549660b4262af76de616ed7e6d65beb80d0f25a3dc0")
        );
    }
}

#[tokio::test]
async fn validation_field_errors() {
    let e = reply(422, &fixture("422_validation.json"), &[]).await.unwrap_err();
    let issues = e.validation_errors();
    assert_eq!(issues.len(), 2);
    assert_eq!(issues[0].msg, "Field required");
    assert_eq!(issues[1].type_, "string_type");
    assert_eq!(issues[1].loc.iter().map(ToString::to_string).collect::<Vec<_>>(), ["body", "env_keys", "0"]);
}

#[tokio::test]
async fn malformed_bodies_keep_their_status_variant_and_bytes() {
    let html = fixture("502_gateway.html");
    type Predicate = fn(&UpdateEnvsError) -> bool;
    let cases: [(u16, &[u8], Predicate); 10] = [
        (465, b"", UpdateEnvsError::is_registration_required),
        (465, b"<html>oops</html>", UpdateEnvsError::is_registration_required),
        (
            465,
            b"{\"error_code\":\"ERR-01-005\",\"details\":[{\"field\":\"compose_hash\",",
            UpdateEnvsError::is_registration_required,
        ),
        (465, b"{\"compose_hash\":42,\"app_id\":[]}", UpdateEnvsError::is_registration_required),
        (422, b"{\"detail\":[{\"loc\":\"body\"}]}", UpdateEnvsError::is_validation),
        (422, b"{\"detail\":\"plain text on a 422\"}", UpdateEnvsError::is_validation),
        (401, b"", UpdateEnvsError::is_unauthorized),
        (500, b"Internal Server Error", UpdateEnvsError::is_server_error),
        (467, b"{\"error_code\":7}", UpdateEnvsError::is_transaction_verification_failed),
        (502, &html, UpdateEnvsError::is_unexpected_status),
    ];
    for (status, body, predicate) in cases {
        let e = reply(status, body, &[]).await.unwrap_err();
        assert!(predicate(&e), "{status} {body:?}: {e:?}");
        assert_eq!(e.status().unwrap().as_u16(), status);
        assert_eq!(e.raw_body().unwrap(), body);
        if status == 465 {
            // Every 465 body above is missing or mangles the hash or app id.
            let Some(r) = e.registration_required() else { unreachable!() };
            assert!(e.phase1().is_none() && r.data.is_err(), "{body:?}");
        }
    }
    let e = reply(465, b"", &[]).await.unwrap_err();
    assert!(e.to_string().contains("phase-1 data is unreadable"), "{e}");
    let e = reply(422, b"{\"detail\":\"plain text on a 422\"}", &[]).await.unwrap_err();
    assert!(e.validation_errors().is_empty());
    assert_eq!(e.to_string(), "HTTP 422: plain text on a 422");
}

#[tokio::test]
async fn unknown_statuses() {
    for status in [418u16, 429, 502, 503, 599] {
        let e = reply(status, b"{\"detail\":\"teapot\"}", &[("x-request-id", "rid-9")]).await.unwrap_err();
        assert!(e.is_unexpected_status(), "{status}");
        assert_eq!(e.status().unwrap().as_u16(), status);
        assert_eq!(e.request_id(), Some("rid-9"));
        assert!(e.to_string().contains("not in the API spec"));
        assert!(!e.is_retryable());
    }
}

#[tokio::test]
async fn request_id_prefers_body_over_header() {
    let e = reply(466, &fixture("466_structured.json"), &[("x-request-id", "hdr")]).await.unwrap_err();
    assert_eq!(e.request_id(), Some("req-466-b2"));
    let e = reply(404, &fixture("404_detail.json"), &[("x-request-id", "hdr")]).await.unwrap_err();
    assert_eq!(e.request_id(), Some("hdr"));
}

#[tokio::test]
async fn oversized_body_is_cut_at_the_cap_without_reading_it_all() {
    let server = MockServer::start_async().await;
    let huge = vec![b'x'; 4 << 20];
    server
        .mock_async(|when, then| {
            when.method("PATCH");
            then.status(500).body(huge.clone());
        })
        .await;
    let client = Client::builder().base_url(server.base_url()).api_key(KEY).max_response_body(1024).build().unwrap();
    let e = client.update_cvm_envs(CVM, &body()).await.unwrap_err();
    assert!(e.is_server_error());
    let http = e.http().unwrap();
    assert!(http.body_truncated());
    assert_eq!(http.raw_body().len(), 1024);

    // A 2xx that is too long is still a success, and says it was cut.
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method("PATCH");
            then.status(202).body(huge.clone());
        })
        .await;
    let client = Client::builder().base_url(server.base_url()).api_key(KEY).max_response_body(1024).build().unwrap();
    let ok = client.update_cvm_envs(CVM, &body()).await.unwrap();
    assert!(ok.body_truncated);
    assert_eq!(ok.raw_body.len(), 1024);
}

#[tokio::test]
async fn conflict_is_not_retried_unless_asked() {
    let server = ScriptedServer::start(vec![
        Reply::Status(409, vec![("retry-after", "0".into())], fixture("409_structured.json")),
        Reply::json(202, &String::from_utf8(fixture("202_in_progress.json")).unwrap()),
    ])
    .await;
    let e = client(&server.base_url).update_cvm_envs(CVM, &body()).await.unwrap_err();
    assert!(e.is_conflict());
    assert_eq!(server.recorded().len(), 1);
}

#[tokio::test]
async fn conflict_retry_policy_retries_then_succeeds() {
    let conflict = Reply::Status(409, vec![("retry-after", "0".into())], fixture("409_detail.json"));
    let server = ScriptedServer::start(vec![
        conflict.clone(),
        conflict,
        Reply::json(202, &String::from_utf8(fixture("202_in_progress.json")).unwrap()),
    ])
    .await;
    let policy = ConflictRetry {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    };
    let client = Client::builder().base_url(&server.base_url).api_key(KEY).retry_on_conflict(policy).build().unwrap();
    let ok = client.update_cvm_envs(CVM, &body()).await.unwrap();
    assert_eq!(ok.allowed_envs_changed, Some(true));
    let recorded = server.recorded();
    assert_eq!(recorded.len(), 3);
    assert!(recorded.windows(2).all(|w| w[0].body == w[1].body), "every retry sends the same body");
}

#[tokio::test]
async fn conflict_retry_gives_up_after_max_attempts_and_on_long_retry_after() {
    let server = ScriptedServer::start(vec![Reply::Status(409, vec![], fixture("409_detail.json"))]).await;
    let policy = ConflictRetry {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
    };
    let client =
        Client::builder().base_url(&server.base_url).api_key(KEY).retry_on_conflict(policy.clone()).build().unwrap();
    assert!(client.update_cvm_envs(CVM, &body()).await.unwrap_err().is_conflict());
    assert_eq!(server.recorded().len(), 2);

    let server = ScriptedServer::start(vec![Reply::Status(409, vec![("retry-after", "3600".into())], vec![])]).await;
    let client = Client::builder().base_url(&server.base_url).api_key(KEY).retry_on_conflict(policy).build().unwrap();
    let e = client.update_cvm_envs(CVM, &body()).await.unwrap_err();
    assert_eq!(e.http().unwrap().retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(server.recorded().len(), 1, "a Retry-After beyond the policy's bound is not waited for");
}

#[tokio::test]
async fn transport_errors_tell_not_sent_from_maybe_sent() {
    // Nothing listens on a port we just released: the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = client(&format!("http://127.0.0.1:{port}")).update_cvm_envs(CVM, &body()).await.unwrap_err();
    assert!(e.is_not_sent() && e.is_retryable(), "{e:?}");
    assert_eq!(e.to_string(), "request failed before it was sent");
    assert!(std::error::Error::source(&e).is_some());

    // A reply cut in the middle of its body: the server got the request.
    let server = ScriptedServer::start(vec![Reply::Raw(
        b"HTTP/1.1 202 Accepted\r\ncontent-length: 100\r\n\r\n{\"status\":\"in_pro".to_vec(),
    )])
    .await;
    let e = client(&server.base_url).update_cvm_envs(CVM, &body()).await.unwrap_err();
    assert!(e.is_maybe_sent() && !e.is_retryable() && e.may_have_been_applied(), "{e:?}");
    assert_eq!(e.status().map(|s| s.as_u16()), Some(202));
}

#[tokio::test]
async fn bad_input_is_refused_before_sending() {
    let server = ScriptedServer::start(vec![Reply::json(202, "{}")]).await;
    let client = client(&server.base_url);
    let hash = format!("0x{}", "11".repeat(32));
    let cases: Vec<(&str, UpdateCvmEnvsBody, &str)> = vec![
        ("", body(), "cvm_id"),
        ("a/b c", body(), "cvm_id"),
        (CVM, UpdateCvmEnvsBody { encrypted_env: "xyz".into(), ..body() }, "encrypted_env"),
        (CVM, UpdateCvmEnvsBody { env_keys: Some(vec!["OK".into(), "1BAD".into()]), ..body() }, "env_keys[1]"),
        (CVM, UpdateCvmEnvsBody { env_keys: Some(vec!["A".into(), "A".into()]), ..body() }, "env_keys[1]"),
        (CVM, UpdateCvmEnvsBody { compose_hash: Some(hash.clone()), ..body() }, "transaction_hash"),
        (
            CVM,
            UpdateCvmEnvsBody { compose_hash: Some("0x12".into()), transaction_hash: Some(hash.clone()), ..body() },
            "compose_hash",
        ),
    ];
    for (cvm, b, field) in cases {
        let e = client.update_cvm_envs(cvm, &b).await.unwrap_err();
        assert!(e.is_invalid_input(), "{e:?}");
        let UpdateEnvsError::InvalidInput(input) = &e else { unreachable!() };
        assert_eq!(input.field, field, "{e}");
    }
    assert!(server.recorded().is_empty(), "nothing was sent");
}
