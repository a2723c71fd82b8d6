//! An RPC URL with a key in its path (as Alchemy and Infura give them) appears in no log line
//! at any level, the dependencies' included (`tracing` at TRACE and the `log` records of
//! reqwest), and in no error text or `Debug`.
#![cfg(feature = "onchain")]

use super::Captured;
use crate::support;

use std::io::Write;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use phala_cloud::Phase1Data;
use phala_cloud::onchain::OnchainRegistrar;
use phala_cloud::{ComposeHashRegistrar, Progress};
use serde_json::json;
use support::fake_rpc::{FakeRpc, healthy_after, registration_receipt};

const CANARY: &str = "RPCKEYCANARY9f3e1a";

/// `log` records (reqwest logs through `log`), into the same buffer.
struct LogCapture(Captured);

impl log::Log for LogCapture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let _ = writeln!(self.0.clone(), "log {} {}: {}", record.level(), record.target(), record.args());
    }
    fn flush(&self) {}
}

#[test]
fn the_rpc_url_path_is_in_no_log_line_and_no_error() {
    crate::support::alone::run_child(module_path!(), |_| ());
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "run by the_rpc_url_path_is_in_no_log_line_and_no_error, alone in a process of its own"]
async fn child() {
    crate::support::alone::assert_child(module_path!());
    let captured = Captured::default();
    log::set_boxed_logger(Box::new(LogCapture(captured.clone()))).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = Address::repeat_byte(0xaa);
    let hash = B256::repeat_byte(0x11);
    let key = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x42)).unwrap();
    let owner = key.address();
    let rpc = FakeRpc::start(healthy_after(owner, false, move |call| {
        registration_receipt(call, owner, app, hash, Some(101))
    }))
    .await;
    let url: url::Url = format!("{}/v2/{CANARY}?key={CANARY}", rpc.url).parse().unwrap();
    let phase1 = Phase1Data::parse(
        json!({"compose_hash": hash, "app_id": app, "device_id": "00", "kms_info": {"chain_id": 31337}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();

    // A registration that succeeds, one that fails at the chain id, one whose endpoint is gone.
    let registrar = OnchainRegistrar::new(key.clone(), url.clone()).unwrap();
    registrar.register(&phase1, &Progress::none()).await.unwrap();
    let mut texts = vec![format!("{registrar:?}")];
    let mut wrong_chain = phase1.clone();
    wrong_chain.kms_info.as_mut().unwrap().chain_id = Some(8453);
    let e = registrar.register(&wrong_chain, &Progress::none()).await.unwrap_err();
    texts.push(format!("{e} {e:?}"));
    drop(rpc);
    let gone = OnchainRegistrar::new(key, url).unwrap().rpc_request_timeout(Duration::from_secs(2));
    let e = gone.register(&phase1, &Progress::none()).await.unwrap_err();
    assert!(e.is_rpc(), "{e:?}");
    let mut chain = format!("{e} {e:?}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push_str(&format!(" / {s}"));
        source = s.source();
    }
    texts.push(chain);

    let logs = captured.text();
    assert!(logs.lines().count() > 20, "the capture saw the run:\n{logs}");
    assert!(logs.contains("eth_sendRawTransaction"), "TRACE reached the transport:\n{logs}");
    for line in logs.lines() {
        assert!(!line.contains(CANARY), "a log line holds the RPC URL's path: {line}");
    }
    for text in texts {
        assert!(!text.contains(CANARY), "{text}");
    }
}
