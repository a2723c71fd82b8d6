//! A generated operation other than the env update, called through the `Client` a user
//! already has: the API key, `X-Phala-Version` and user agent are sent, progenitor's
//! `api-version` is not, the response-size cap holds, and `Client::send` keeps every reply
//! in the shared `SdkError` shape.

use httpmock::MockServer;
use phala_cloud::{Client, SdkError};
use serde_json::{Value, json};

const KEY: &str = "generated-ops-key";
const CVM: &str = "cvm-42";

fn cvm_json() -> Value {
    json!({
        "id": 42, "name": "my-cvm", "status": "running", "app_id": "0123456789abcdef0123456789abcdef01234567",
        "vcpu": 2, "memory": 4096, "disk_size": 40,
        "encrypted_env_pubkey": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    })
}

fn client(base: &str, cap: usize) -> Client {
    Client::builder().base_url(base).api_key(KEY).max_response_body(cap).build().unwrap()
}

#[tokio::test]
async fn generated_get_sends_key_version_and_user_agent() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method("GET")
                .path(format!("/api/v1/cvms/{CVM}"))
                .header("x-api-key", KEY)
                .header("x-phala-version", phala_cloud::DEFAULT_API_VERSION)
                .header("accept", "application/json")
                .header_prefix("user-agent", "phala-cloud-rs/")
                .header_missing("api-version");
            then.status(200)
                .header("content-type", "application/json")
                .header("x-request-id", "rid-7")
                .json_body(cvm_json());
        })
        .await;
    let client = client(&server.base_url(), 1 << 20);

    // Through `send`: value, status, request id and raw body.
    let reply = client.send(|api| api.handle_get_cvm(CVM)).await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.request_id(), Some("rid-7"));
    assert_eq!(serde_json::from_slice::<Value>(reply.raw_body()).unwrap(), cvm_json());
    let value = serde_json::to_value(reply.into_inner()).unwrap();
    assert_eq!(value["app_id"], cvm_json()["app_id"]);
    assert_eq!(value["encrypted_env_pubkey"], cvm_json()["encrypted_env_pubkey"]);

    // Straight on the generated client: the same request, the same headers, and progenitor's
    // value keeps the reply's headers.
    let direct = client.api().handle_get_cvm(CVM).await.unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(direct.headers().get("x-request-id").unwrap(), "rid-7");
    assert_eq!(mock.calls_async().await, 2, "both calls matched the key, version and user agent");
}

#[tokio::test]
async fn reply_over_the_cap_is_refused_on_both_paths() {
    let server = MockServer::start_async().await;
    let mut big = cvm_json();
    big["name"] = json!("x".repeat(4096));
    server
        .mock_async(|when, then| {
            when.method("GET").path(format!("/api/v1/cvms/{CVM}"));
            then.status(200).header("content-type", "application/json").json_body(big);
        })
        .await;
    let client = client(&server.base_url(), 1024);

    let e = client.send(|api| api.handle_get_cvm(CVM)).await.unwrap_err();
    let SdkError::InvalidReply(invalid) = &e else { panic!("expected InvalidReply, got {e:?}") };
    assert!(invalid.body_truncated());
    assert_eq!(invalid.status(), 200);
    assert_eq!(invalid.raw_body().len(), 1024, "the first bytes, up to the cap");
    assert!(e.may_have_been_applied());
    assert!(e.to_string().contains("response-size cap"), "{e}");

    let direct = client.api().handle_get_cvm(CVM).await.unwrap_err();
    assert!(matches!(direct, phala_cloud::api::Error::ResponseBodyError(_)), "{direct:?}");
}

#[tokio::test]
async fn error_replies_keep_status_request_id_and_raw_body() {
    let server = MockServer::start_async().await;
    // 404 has no body in the spec: progenitor calls it an unexpected response; the raw
    // reply is kept all the same.
    server
        .mock_async(|when, then| {
            when.method("GET").path("/api/v1/cvms/gone");
            then.status(404).header("x-request-id", "rid-404").body(r#"{"detail":"CVM not found"}"#);
        })
        .await;
    // 422 is typed in the spec: progenitor consumes the body; the raw reply is kept.
    server
        .mock_async(|when, then| {
            when.method("GET").path("/api/v1/cvms/bad");
            then.status(422).body(r#"{"detail":[{"loc":["path","cvm_id"],"msg":"bad id","type":"value_error"}]}"#);
        })
        .await;
    // A 200 whose body is not the spec's: status and raw body kept.
    server
        .mock_async(|when, then| {
            when.method("GET").path("/api/v1/cvms/odd");
            then.status(200).body("<html>proxy</html>");
        })
        .await;
    let client = client(&server.base_url(), 1 << 20);

    let e = client.send(|api| api.handle_get_cvm("gone")).await.unwrap_err();
    let http = e.http().expect("a service reply");
    assert_eq!(http.status(), 404);
    assert_eq!(e.request_id(), Some("rid-404"));
    assert_eq!(http.message(), Some("CVM not found"));
    assert_eq!(&http.raw_body()[..], br#"{"detail":"CVM not found"}"#);
    assert_eq!(e.to_string(), "HTTP 404: CVM not found");

    let e = client.send(|api| api.handle_get_cvm("bad")).await.unwrap_err();
    assert!(e.is_service());
    assert_eq!(e.status().map(|s| s.as_u16()), Some(422));
    assert_eq!(e.http().unwrap().message(), Some("bad id"));

    let e = client.send(|api| api.handle_get_cvm("odd")).await.unwrap_err();
    let SdkError::InvalidReply(invalid) = &e else { panic!("{e:?}") };
    assert_eq!(invalid.status(), 200);
    assert_eq!(&invalid.raw_body()[..], b"<html>proxy</html>");
    assert!(!invalid.reason().is_empty());
}

#[tokio::test]
async fn refused_connection_is_not_sent() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let e = client(&base, 1024).send(|api| api.handle_get_cvm(CVM)).await.unwrap_err();
    assert!(e.is_not_sent(), "{e:?}");
    assert!(!e.may_have_been_applied());
}

#[tokio::test]
async fn dot_segments_in_path_parameters_are_refused_before_sending() {
    let server = MockServer::start_async().await;
    let any = server
        .mock_async(|when, then| {
            when.any_request();
            then.status(200).json_body(cvm_json());
        })
        .await;
    let client = client(&server.base_url(), 1 << 20);
    // (`%2e%2e` is sent encoded as `%252e%252e`: a literal segment, on the path.)
    for bad in ["..", ".", ""] {
        let e = client.send(|api| api.handle_get_cvm(bad)).await.unwrap_err();
        assert!(e.is_invalid_input(), "{bad:?}: {e:?}");
    }
    assert_eq!(any.calls_async().await, 0, "nothing was sent");
}

#[tokio::test]
async fn a_gateway_timeout_may_have_been_applied() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method("GET");
            then.status(504).body("<html>gateway timeout</html>");
        })
        .await;
    let e = client(&server.base_url(), 1 << 20).send(|api| api.handle_get_cvm(CVM)).await.unwrap_err();
    assert!(e.is_service() && e.may_have_been_applied(), "{e:?}");
}

/// An operation with header parameters of its own keeps them when `build/generate.rs` takes
/// progenitor's `api-version` out: `PATCH /api/v1/cvms/{cvm_id}` sends `X-Compose-Hash` and
/// `X-Transaction-Hash` when given, nothing when not.
#[cfg(feature = "full-api")]
#[tokio::test]
async fn header_parameters_are_sent_and_api_version_is_not() {
    let server = MockServer::start_async().await;
    let (compose, transaction) = ("ab".repeat(32), "cd".repeat(32));
    let with = server
        .mock_async(|when, then| {
            when.method("PATCH")
                .path(format!("/api/v1/cvms/{CVM}"))
                .header("x-api-key", KEY)
                .header("x-compose-hash", &compose)
                .header("x-transaction-hash", &transaction)
                .header_missing("x-prepare-only")
                .header_missing("api-version");
            then.status(202).json_body(json!({"correlation_id": "c-1"}));
        })
        .await;
    let client = client(&server.base_url(), 1 << 20);
    let body: phala_cloud::api::types::UpdateCvmRequest = serde_json::from_value(json!({"memory": 2048})).unwrap();
    let reply =
        client.send(|api| api.update_cvm_endpoint(CVM, Some(&compose), None, Some(&transaction), &body)).await.unwrap();
    assert_eq!(reply.status(), 202);
    assert_eq!(with.calls_async().await, 1);
    with.delete_async().await;

    let without = server
        .mock_async(|when, then| {
            when.method("PATCH")
                .path(format!("/api/v1/cvms/{CVM}"))
                .header_missing("x-compose-hash")
                .header_missing("x-transaction-hash")
                .header_missing("api-version");
            then.status(202).json_body(json!({"correlation_id": "c-2"}));
        })
        .await;
    client.send(|api| api.update_cvm_endpoint(CVM, None, None, None, &body)).await.unwrap();
    assert_eq!(without.calls_async().await, 1);
}
