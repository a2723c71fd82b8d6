//! A KMS signature in the legacy form (no timestamp, no freshness window) is accepted with a
//! `tracing` warning; a timestamped one is logged at INFO only. Alone in a process (see `super`).
#![cfg(feature = "simulator")]

use super::Captured;
use phala_cloud::simulator::{CvmSpec, KmsPubkeyReply, Simulator, SimulatorConfig};

#[test]
fn a_legacy_kms_signature_is_a_tracing_warning() {
    crate::support::alone::run_child(module_path!(), |_| ());
}

#[tokio::test]
#[ignore = "run by a_legacy_kms_signature_is_a_tracing_warning, alone in a process of its own"]
async fn child() {
    crate::support::alone::assert_child(module_path!());
    let sim = Simulator::start(SimulatorConfig::default().cvms([
        CvmSpec::onchain("cvm-legacy").kms_pubkey_reply(KmsPubkeyReply::Legacy),
        CvmSpec::onchain("cvm-fresh"),
    ]))
    .await
    .unwrap();
    let client = sim.client_builder().build().unwrap();
    let sink = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(sink.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    client.env_encryption_key("cvm-fresh").await.unwrap();
    assert!(!sink.text().contains("legacy form"), "a timestamped signature warns of nothing: {}", sink.text());
    let key = client.env_encryption_key("cvm-legacy").await.unwrap();
    assert!(key.is_legacy_signature());
    let logs = sink.text();
    let warning = logs.lines().find(|l| l.contains("legacy form")).unwrap_or_else(|| panic!("no warning: {logs}"));
    assert!(warning.contains("WARN") && warning.contains("cvm_id=cvm-legacy"), "{warning}");
    assert!(!logs.contains(sim.api_key()), "the API key must not reach the logs: {logs}");
}
