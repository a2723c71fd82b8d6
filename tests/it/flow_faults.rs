//! Faults in phase 2, from a real server that misbehaves on purpose: a front that passes
//! requests on to the simulator and then, for phase 2, loses the reply in one way or another.
//! The flow must report "may have been sent", resend phase 2 with the same transaction, never
//! register twice, and lose no update.
#![cfg(feature = "simulator")]

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use phala_cloud::simulator::{Simulator, SimulatorConfig};
use phala_cloud::{ComposeHashRegistrar, FlowEvent, Progress, RestartReason};
use phala_cloud::{EnvVars, Phase1Data, TransactionHash};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// What the front does with a phase-2 request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Pass it on, then reset the connection instead of replying.
    ApplyThenReset,
    /// Reset the connection without passing it on.
    ResetBeforeForwarding,
    /// Pass it on, then send nothing until the client gives up.
    ApplyThenStall,
    /// Pass it on, then send the head and half the body, and close.
    ApplyThenCutBody,
}

/// A front for the simulator that applies `fault` to the first `times` phase-2 requests.
async fn faulty_front(sim_url: String, fault: Fault, times: u32) -> (String, Arc<AtomicU32>) {
    faulty_front_after(sim_url, fault, 0, times).await
}

/// As [`faulty_front`], sparing the first `skip` phase-2 requests.
async fn faulty_front_after(sim_url: String, fault: Fault, skip: u32, times: u32) -> (String, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let faults = Arc::new(AtomicU32::new(0));
    let counter = faults.clone();
    tokio::spawn(async move {
        let http = phala_cloud::http_client_builder().unwrap().build().unwrap();
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (http, sim_url, counter) = (http.clone(), sim_url.clone(), counter.clone());
            tokio::spawn(async move {
                let Some(req) = support::read_request(&mut sock).await else { return };
                let phase2 = String::from_utf8_lossy(&req.body).contains("\"compose_hash\":\"");
                let fault = phase2
                    .then(|| counter.fetch_add(1, Ordering::SeqCst))
                    .filter(|n| (skip..skip.saturating_add(times)).contains(n))
                    .map(|_| fault);
                if fault == Some(Fault::ResetBeforeForwarding) {
                    sock.set_zero_linger().unwrap();
                    return drop(sock);
                }
                let mut line = req.request_line().split(' ');
                let method: reqwest::Method = line.next().unwrap().parse().unwrap();
                let path = line.next().unwrap().to_owned();
                let mut forward = http.request(method, format!("{sim_url}{path}")).body(req.body.clone());
                for name in ["x-api-key", "content-type"] {
                    if let Some(v) = req.header(name) {
                        forward = forward.header(name, v);
                    }
                }
                let reply = forward.send().await.unwrap();
                let status = reply.status().as_u16();
                let body = reply.bytes().await.unwrap();
                let reply =
                    support::response(status, &[("content-type", "application/json"), ("connection", "close")], &body);
                match fault {
                    Some(Fault::ApplyThenReset) => {
                        sock.set_zero_linger().unwrap();
                        drop(sock);
                    }
                    Some(Fault::ApplyThenStall) => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    Some(Fault::ApplyThenCutBody) => {
                        // The head and the first half of the body.
                        let _ = sock.write_all(&reply[..reply.len() - (body.len() - body.len() / 2)]).await;
                        let _ = sock.shutdown().await;
                    }
                    _ => {
                        let _ = sock.write_all(&reply).await;
                        let _ = sock.shutdown().await;
                    }
                }
            });
        }
    });
    (url, faults)
}

/// Registers by making up a transaction hash (the offline simulator checks only its form),
/// counting how often it is asked.
#[derive(Default)]
struct CountingRegistrar(AtomicU32);

impl ComposeHashRegistrar for CountingRegistrar {
    type Error = std::convert::Infallible;
    async fn register(&self, _: &Phase1Data, _: &Progress<'_>) -> Result<TransactionHash, Self::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(TransactionHash([0x42; 32]))
    }
}

fn env() -> EnvVars {
    EnvVars::from_pairs([("API_TOKEN", "fault-secret"), ("MODE", "prod")]).unwrap()
}

#[tokio::test]
async fn a_lost_phase_2_reply_is_resent_without_registering_again() {
    for fault in [Fault::ApplyThenReset, Fault::ResetBeforeForwarding, Fault::ApplyThenStall, Fault::ApplyThenCutBody] {
        let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
        let (front, faults) = faulty_front(sim.base_url().to_owned(), fault, 1).await;
        let client = sim.client_builder().base_url(front).timeout(Some(Duration::from_millis(700))).build().unwrap();
        let registrar = CountingRegistrar::default();
        let update = client.env_update("cvm-onchain").env(env(), sim.cvm("cvm-onchain").unwrap().public_key);
        let (outcome, events) = support::run_recording(update, &registrar).await;
        let outcome = outcome.unwrap_or_else(|e| panic!("{fault:?}: {e:?}"));

        assert_eq!(faults.load(Ordering::SeqCst), 2, "{fault:?}: phase 2 was sent twice");
        assert_eq!(registrar.0.load(Ordering::SeqCst), 1, "{fault:?}: registered once");
        assert!(events.contains(&FlowEvent::Phase2Sent { attempt: 2 }), "{fault:?}");
        assert_eq!(outcome.registration.unwrap().transaction_hash, TransactionHash([0x42; 32]));
        assert_eq!(sim.cvm_env("cvm-onchain").unwrap(), env(), "{fault:?}: the update is not lost");
        let applied = sim.operations().iter().filter(|op| op.status == 202).count();
        let expected = if fault == Fault::ResetBeforeForwarding { 1 } else { 2 };
        assert!(applied <= expected, "{fault:?}: {:?}", sim.operations());
    }
}

#[tokio::test]
async fn phase_2_that_keeps_failing_surfaces_as_maybe_sent_with_the_registration_kept() {
    let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
    let (front, _) = faulty_front(sim.base_url().to_owned(), Fault::ResetBeforeForwarding, u32::MAX).await;
    let client = sim.client_builder().base_url(front).build().unwrap();
    let registrar = CountingRegistrar::default();
    let e = client
        .env_update("cvm-onchain")
        .env(env(), sim.cvm("cvm-onchain").unwrap().public_key)
        .phase2_attempts(3)
        .run(&registrar)
        .await
        .unwrap_err();
    let update = e.update_error().unwrap();
    assert!(update.is_maybe_sent() && update.may_have_been_applied(), "{e:?}");
    assert_eq!(e.registration().unwrap().transaction_hash, TransactionHash([0x42; 32]));
    assert_eq!(registrar.0.load(Ordering::SeqCst), 1);

    // Refused connections in phase 2 (the server went away after phase 1): never sent.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let pending = {
        let request = phala_cloud::EnvUpdateRequest::new(
            "cvm-onchain",
            phala_cloud::encrypt(&env(), sim.cvm("cvm-onchain").unwrap().public_key).unwrap(),
            Some(vec!["API_TOKEN".into(), "MODE".into(), "EXTRA".into()]),
        )
        .unwrap();
        match sim.client_builder().build().unwrap().begin_env_update(&request).await.unwrap() {
            phala_cloud::Phase1Outcome::RegistrationRequired(p) => p,
            other => panic!("{other:?}"),
        }
    };
    let refused = sim.client_builder().base_url(gone).build().unwrap();
    let e = pending.confirm(&refused, TransactionHash([0x42; 32])).await.unwrap_err();
    assert!(e.is_not_sent() && e.is_retryable() && !e.may_have_been_applied(), "{e:?}");
    // …and confirming again once the server is back applies it, with the same transaction.
    pending.confirm(&sim.client_builder().build().unwrap(), TransactionHash([0x42; 32])).await.unwrap();
    assert_eq!(sim.allowed_env_names("cvm-onchain").unwrap(), ["API_TOKEN", "EXTRA", "MODE"]);
}

/// Expires every compose hash the first time it is asked to register.
struct ExpireOnce<'a> {
    sim: &'a Simulator,
    calls: AtomicU32,
}

impl ComposeHashRegistrar for ExpireOnce<'_> {
    type Error = std::convert::Infallible;
    async fn register(&self, _: &Phase1Data, _: &Progress<'_>) -> Result<TransactionHash, Self::Error> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            self.sim.expire_compose_hashes();
        }
        Ok(TransactionHash([0x42; 32]))
    }
}

#[tokio::test]
async fn a_lost_reply_after_the_one_restart_is_still_found_applied() {
    // Phase 2 #1: 466 (the hash expired) -> restart. Phase 2 #2: applied, reply lost. Phase 2 #3:
    // 466 (our own #2 spent the hash). Phase 1 then answers 202: the update went through.
    let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
    let (front, phase2s) = faulty_front_after(sim.base_url().to_owned(), Fault::ApplyThenReset, 1, 1).await;
    let client = sim.client_builder().base_url(front).build().unwrap();
    let registrar = ExpireOnce { sim: &sim, calls: AtomicU32::new(0) };
    let update = client.env_update("cvm-onchain").env(env(), sim.cvm("cvm-onchain").unwrap().public_key);
    let (outcome, events) = support::run_recording(update, &registrar).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(phase2s.load(Ordering::SeqCst), 3);
    assert_eq!(registrar.calls.load(Ordering::SeqCst), 1, "registered once");
    assert!(outcome.registration.is_some());
    assert_eq!(sim.cvm_env("cvm-onchain").unwrap(), env());
    let statuses: Vec<u16> = sim.operations().iter().map(|op| op.status).collect();
    assert_eq!(statuses, [465, 466, 465, 202, 466, 202]);
    let restarts: Vec<RestartReason> = events
        .iter()
        .filter_map(|e| match e {
            FlowEvent::Restarting { reason } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(restarts, [RestartReason::Expired, RestartReason::LostPhase2Reply]);
}

/// After a 466 restart, a phase 1 whose reply is lost may have applied the update (the hash is
/// registered now): reported as may-have-applied.
#[tokio::test]
async fn a_phase_1_lost_after_a_restart_may_have_applied_the_update() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let patches = Arc::new(AtomicU32::new(0));
    let counter = patches.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                let Some(req) = support::read_request(&mut sock).await else { return };
                let reply = if req.request_line().starts_with("GET") {
                    support::response(
                        200,
                        &[("content-type", "application/json"), ("connection", "close")],
                        br#"{"id":"cvm-1","name":"one","app_id":"a172cedcae47474b615c54d510a5d84a8dea3032","kms_info":{"slug":"k","chain_id":8453}}"#,
                    )
                } else {
                    match counter.fetch_add(1, Ordering::SeqCst) {
                        0 => support::response(
                            465,
                            &[("content-type", "application/json"), ("connection", "close")],
                            include_bytes!("../fixtures/responses/465_structured.json"),
                        ),
                        1 => support::response(
                            466,
                            &[("content-type", "application/json"), ("connection", "close")],
                            include_bytes!("../fixtures/responses/466_structured.json"),
                        ),
                        _ => {
                            sock.set_zero_linger().unwrap();
                            return drop(sock);
                        }
                    }
                };
                let _ = sock.write_all(&reply).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    let client = phala_cloud::Client::builder().base_url(url).api_key("phak_test").build().unwrap();
    let key = phala_cloud::simulator::RecipientSecretKey::generate().unwrap().public_key();
    let e = client.env_update("cvm-1").env(env(), key).run(&CountingRegistrar::default()).await.unwrap_err();
    assert_eq!(patches.load(Ordering::SeqCst), 3, "phase 1, phase 2, phase 1 again");
    assert!(matches!(e, phala_cloud::FlowError::Phase1AfterRegistration { .. }), "{e:?}");
    assert!(e.may_have_applied(), "phase 1 after the restart may have applied the update");
}
