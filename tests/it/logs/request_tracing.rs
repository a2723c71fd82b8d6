//! Every generated call runs in a tracing span named by its operationId, with its status and
//! request id, and the API key in no log line. Alone in a process (see `super`): tracing caches
//! callsite interest process-wide, so a test running beside it without the subscriber could
//! hide events.

use super::Captured;
use httpmock::MockServer;
use phala_cloud::Client;
use serde_json::json;

const KEY: &str = "tracing-canary-key";
const CVM: &str = "cvm-42";

#[test]
fn every_call_is_traced_under_its_operation_id() {
    crate::support::alone::run_child(module_path!(), |_| ());
}

#[tokio::test]
#[ignore = "run by every_call_is_traced_under_its_operation_id, alone in a process of its own"]
async fn child() {
    crate::support::alone::assert_child(module_path!());
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method("GET").path(format!("/api/v1/cvms/{CVM}"));
            then.status(200).header("x-request-id", "rid-traced").json_body(json!({"id": 42, "name": "n", "status": "running", "app_id": "ab", "vcpu": 1, "memory": 1, "disk_size": 1}));
        })
        .await;
    let sink = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(sink.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let client = Client::builder().base_url(server.base_url()).api_key(KEY).build().unwrap();
    let _guard = tracing::subscriber::set_default(subscriber);
    client.send(|api| api.handle_get_cvm(CVM)).await.unwrap();
    let logs = sink.text();
    assert!(logs.contains("operation_id=\"handle_get_cvm\""), "{logs}");
    assert!(logs.contains("request_id=\"rid-traced\""), "{logs}");
    assert!(!logs.contains(KEY), "the API key must not reach the logs: {logs}");
}
