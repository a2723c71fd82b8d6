//! The on-chain registrar against a fake JSON-RPC endpoint, for what a real node rarely does:
//! a send that fails after signing, a receipt that never comes or comes without a block, a
//! 50 MB reply, log ranges refused, logs that must not count, a `latest` that lags.
#![cfg(feature = "onchain")]

use crate::support;

use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use phala_cloud::onchain::{COMPOSE_HASH_ADDED_TOPIC, OnchainError, OnchainRegistrar};
use phala_cloud::{ComposeHashRegistrar, Progress};
use phala_cloud::{Phase1Data, TransactionHash};
use serde_json::json;
use support::fake_rpc::{Answer, Call, FakeRpc, healthy_after, log_json, registration_receipt};

const APP: Address = Address::repeat_byte(0xaa);
const HASH: B256 = B256::repeat_byte(0x11);

fn phase1() -> Phase1Data {
    let body = json!({
        "compose_hash": HASH, "app_id": APP, "device_id": "00",
        "kms_info": { "chain_id": 31337 },
    });
    Phase1Data::parse(body.to_string().as_bytes()).unwrap()
}

fn key() -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::repeat_byte(0x42)).unwrap()
}

fn registrar(rpc: &FakeRpc) -> OnchainRegistrar {
    OnchainRegistrar::new(key(), rpc.url.parse().unwrap()).unwrap().poll_interval(Duration::from_millis(20))
}

async fn register(registrar: &OnchainRegistrar) -> Result<TransactionHash, OnchainError> {
    // The outer bound only keeps a broken registrar from hanging the test run.
    tokio::time::timeout(Duration::from_secs(30), registrar.register(&phase1(), &Progress::none()))
        .await
        .expect("the registrar's own timeout must end the call")
}

/// The hash of the one transaction the fake endpoint received.
fn sent_hash(rpc: &FakeRpc) -> TransactionHash {
    let raw = rpc.raw_transactions();
    assert_eq!(raw.len(), 1, "one transaction sent");
    keccak256(&raw[0]).into()
}

fn not_allowed(
    answer: impl Fn(&Call) -> Option<Answer> + Send + Sync + 'static,
) -> impl Fn(&Call) -> Answer + Send + Sync + 'static {
    healthy_after(key().address(), false, answer)
}

fn allowed(
    answer: impl Fn(&Call) -> Option<Answer> + Send + Sync + 'static,
) -> impl Fn(&Call) -> Answer + Send + Sync + 'static {
    healthy_after(key().address(), true, answer)
}

/// The sent transaction's receipt with its `ComposeHashAdded` log, mined in `block`.
fn receipt(call: &Call, block: Option<u64>) -> Option<Answer> {
    registration_receipt(call, key().address(), APP, HASH, block)
}

#[tokio::test]
async fn a_refused_send_carries_the_signed_transactions_hash() {
    let rpc = FakeRpc::start(not_allowed(|call| {
        (call.method == "eth_sendRawTransaction").then(|| Answer::Error(-32000, "internal error".into()))
    }))
    .await;
    let e = register(&registrar(&rpc)).await.unwrap_err();
    let OnchainError::SendFailed { transaction_hash, maybe_sent, .. } = &e else { panic!("{e:?}") };
    assert_eq!(*transaction_hash, sent_hash(&rpc));
    assert!(!maybe_sent, "the node answered: it refused it");
    assert_eq!(e.transaction_hash(), Some(sent_hash(&rpc)));
    assert!(e.to_string().contains(&sent_hash(&rpc).to_string()), "{e}");
}

#[tokio::test]
async fn a_send_without_reply_carries_the_hash_and_may_have_been_sent() {
    let rpc =
        FakeRpc::start(not_allowed(|call| (call.method == "eth_sendRawTransaction").then_some(Answer::Hang))).await;
    let started = Instant::now();
    let e = register(&registrar(&rpc).rpc_request_timeout(Duration::from_secs(1))).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let OnchainError::SendFailed { transaction_hash, maybe_sent: true, .. } = &e else { panic!("{e:?}") };
    assert_eq!(*transaction_hash, sent_hash(&rpc));
}

#[tokio::test]
async fn a_receipt_that_never_comes_ends_at_the_timeout_with_the_hash() {
    // One call hangs far longer than the registrar's timeout: the timeout still holds.
    let rpc =
        FakeRpc::start(not_allowed(|call| (call.method == "eth_getTransactionReceipt").then_some(Answer::Hang))).await;
    let registrar = registrar(&rpc).timeout(Duration::from_secs(2)).rpc_request_timeout(Duration::from_secs(600));
    let started = Instant::now();
    let e = register(&registrar).await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let OnchainError::Timeout { transaction_hash, .. } = e else { panic!("{e:?}") };
    assert_eq!(transaction_hash, sent_hash(&rpc));
}

#[tokio::test]
async fn a_receipt_without_a_block_number_is_not_confirmed() {
    let rpc = FakeRpc::start(not_allowed(|call| receipt(call, None))).await;
    let e = register(&registrar(&rpc).timeout(Duration::from_secs(1))).await.unwrap_err();
    let OnchainError::Timeout { transaction_hash, .. } = e else {
        panic!("a pending receipt counted as confirmed: {e:?}")
    };
    assert_eq!(transaction_hash, sent_hash(&rpc));
}

#[tokio::test]
async fn a_50_mb_log_reply_ends_in_time_with_a_typed_error() {
    let rpc = FakeRpc::start(allowed(|call| (call.method == "eth_getLogs").then_some(Answer::Huge(50 << 20)))).await;
    let registrar = registrar(&rpc).timeout(Duration::from_secs(10)).max_rpc_reply_bytes(1 << 20);
    let started = Instant::now();
    let e = register(&registrar).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(matches!(e, OnchainError::ReplyTooLarge { step: "eth_getLogs", limit } if limit == 1 << 20), "{e:?}");
    assert!(rpc.raw_transactions().is_empty(), "nothing sent for an allowed hash");
}

/// Range in blocks of an `eth_getLogs` call, `latest` read as `latest`.
fn range(call: &Call, latest: u64) -> (u64, u64) {
    let block = |v: &serde_json::Value| match v.as_str().unwrap() {
        "latest" => latest,
        hex => u64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap(),
    };
    (block(&call.params[0]["fromBlock"]), block(&call.params[0]["toBlock"]))
}

#[tokio::test]
async fn a_refused_log_range_is_asked_again_smaller() {
    let tx = B256::repeat_byte(0x77);
    let rpc = FakeRpc::start(allowed(move |call| {
        if call.method != "eth_getLogs" {
            return None;
        }
        let (from, to) = range(call, 100);
        Some(if to - from + 1 > 30 {
            Answer::Error(-32005, "query returned more than 10000 results".into())
        } else if (from..=to).contains(&60) {
            Answer::Result(json!([log_json(APP, COMPOSE_HASH_ADDED_TOPIC, HASH, 60, tx, false)]))
        } else {
            Answer::Result(json!([]))
        })
    }))
    .await;
    let found = register(&registrar(&rpc).log_search(1_000, 10_000)).await.unwrap();
    assert_eq!(found, tx.into());
    assert!(rpc.raw_transactions().is_empty());
}

#[tokio::test]
async fn removed_and_foreign_logs_do_not_count() {
    let genuine = B256::repeat_byte(0x01);
    let rpc = FakeRpc::start(allowed(move |call| {
        (call.method == "eth_getLogs").then(|| {
            Answer::Result(json!([
                log_json(APP, COMPOSE_HASH_ADDED_TOPIC, HASH, 90, genuine, false),
                log_json(
                    Address::repeat_byte(0xee),
                    COMPOSE_HASH_ADDED_TOPIC,
                    HASH,
                    95,
                    B256::repeat_byte(0x02),
                    false
                ),
                log_json(APP, B256::repeat_byte(0x99), HASH, 96, B256::repeat_byte(0x03), false),
                log_json(APP, COMPOSE_HASH_ADDED_TOPIC, HASH, 97, B256::repeat_byte(0x04), true),
            ]))
        })
    }))
    .await;
    assert_eq!(register(&registrar(&rpc)).await.unwrap(), genuine.into());
}

#[tokio::test]
async fn a_log_above_a_lagging_latest_is_found() {
    // `eth_blockNumber` says 100; the node answering `eth_getLogs` has block 105 with the log.
    let tx = B256::repeat_byte(0x55);
    let rpc = FakeRpc::start(allowed(move |call| {
        if call.method != "eth_getLogs" {
            return None;
        }
        let (from, to) = range(call, 105);
        Some(Answer::Result(if (from..=to).contains(&105) {
            json!([log_json(APP, COMPOSE_HASH_ADDED_TOPIC, HASH, 105, tx, false)])
        } else {
            json!([])
        }))
    }))
    .await;
    assert_eq!(register(&registrar(&rpc).log_search(1_000, 10_000)).await.unwrap(), tx.into());
}

#[tokio::test]
async fn a_confirmed_receipt_registers() {
    // The fake chain end to end, so that the faults above are faults and not fake-server gaps.
    let rpc = FakeRpc::start(not_allowed(|call| receipt(call, Some(101)))).await;
    assert_eq!(register(&registrar(&rpc)).await.unwrap(), sent_hash(&rpc));
}
