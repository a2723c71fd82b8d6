//! The typed `update_cvm_envs` call (the generated operation through the crate's hooks, reply
//! classified from the raw bytes) against a local keep-alive server, beside a raw `reqwest`
//! PATCH of the same body to the same server, measured in the same run.
//!
//! Run: `cargo bench --bench typed_call`. Prints the median time per call of each and the
//! ratio typed / raw (goal: at most 1.10).
//!
//! Instruction counts, which a loaded machine does not disturb: `TYPED_CALL_ONLY=raw` (or
//! `typed`) with `TYPED_CALL_COUNT=N` makes one warm-up call and then N calls of that kind only.
//! Run each under `valgrind --tool=callgrind` for two values of N: the difference of the totals
//! over the difference of the Ns is the cost of one call, the server's side included, without
//! the set-up.

use axum::{Router, http::StatusCode, routing::patch};
use phala_cloud::{Client, UpdateCvmEnvsBody};
use std::time::{Duration, Instant};

const ACCEPTED: &str = include_str!("../tests/fixtures/responses/202_in_progress.json");
const BATCHES: usize = 30;
const PER_BATCH: usize = 200;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let app = Router::new().route(
        "/api/v1/cvms/{cvm_id}/envs",
        patch(|body: axum::body::Bytes| async move {
            assert!(!body.is_empty());
            (StatusCode::ACCEPTED, [("content-type", "application/json")], ACCEPTED)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
            axum::serve(listener, app).await.unwrap();
        })
    });
    drop(server);

    let body = UpdateCvmEnvsBody {
        encrypted_env: "ab".repeat(1024),
        env_keys: Some((0..10).map(|i| format!("KEY_{i}")).collect()),
        compose_hash: None,
        transaction_hash: None,
    };
    let http = phala_cloud::http_client_builder().unwrap().build().unwrap();
    // The same HTTP stack for both; the typed client sets its headers on its own copy.
    let typed = Client::builder()
        .base_url(&base)
        .api_key("bench-key")
        .http(phala_cloud::http_client_builder().unwrap())
        .build()
        .unwrap();
    let url = format!("{base}/api/v1/cvms/cvm-1/envs");

    let raw_call = || async {
        let response = http
            .patch(&url)
            .header("x-api-key", "bench-key")
            .header("x-phala-version", phala_cloud::DEFAULT_API_VERSION)
            .header("user-agent", "bench")
            .header("accept", "application/json")
            // The typed client's default request timeout, so both do the same transport work.
            .timeout(Duration::from_secs(60))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let bytes = response.bytes().await.unwrap();
        assert!(!bytes.is_empty());
    };
    let typed_call = || async {
        let accepted = typed.update_cvm_envs("cvm-1", &body).await.unwrap();
        assert!(accepted.correlation_id.is_some());
    };

    if let Ok(only) = std::env::var("TYPED_CALL_ONLY") {
        let n: usize = std::env::var("TYPED_CALL_COUNT").ok().and_then(|n| n.parse().ok()).unwrap_or(1000);
        for _ in 0..=n {
            match only.as_str() {
                "raw" => raw_call().await,
                "typed" => typed_call().await,
                other => panic!("TYPED_CALL_ONLY is raw or typed, not {other:?}"),
            }
        }
        println!("{only}: 1 + {n} calls");
        return;
    }

    // Warm up the pool and both paths.
    for _ in 0..200 {
        raw_call().await;
        typed_call().await;
    }
    let (mut raw, mut typed_times) = (Vec::new(), Vec::new());
    for batch in 0..BATCHES {
        // Alternate which goes first so neither always runs on a warmer cache.
        for turn in 0..2 {
            let start = Instant::now();
            for _ in 0..PER_BATCH {
                if (batch + turn) % 2 == 0 { raw_call().await } else { typed_call().await }
            }
            let per_call = start.elapsed() / PER_BATCH as u32;
            if (batch + turn) % 2 == 0 { raw.push(per_call) } else { typed_times.push(per_call) }
        }
    }
    let (raw, typed_med) = (median(raw), median(typed_times));
    println!(
        "baseline raw reqwest PATCH (same body, headers, timeout, server): {raw:?} per call (median of {BATCHES} batches of {PER_BATCH})"
    );
    println!("typed update_cvm_envs:                                         {typed_med:?} per call");
    println!("ratio typed / raw reqwest: {:.3} (goal <= 1.10)", typed_med.as_secs_f64() / raw.as_secs_f64());
}
