//! What the one-call flow does with its registrations, against a scripted server (real HTTP,
//! replies in sequence): a 467 for a transaction the registrar saw included is sent again;
//! every error after a registration carries it; a run registers at most two distinct hashes.
//! The script answers the env update only, so the flows skip the app-id check (which reads the
//! CVM first; `two_phase.rs` tests it).
#![cfg(feature = "simulator")]

use crate::support;

use std::sync::Mutex;
use std::time::Duration;

use phala_cloud::{
    BoxedRegistrar, ComposeHashRegistrar, FlowError, FlowEvent, KnownTransaction, OtherComposeHash, Progress,
};
use phala_cloud::{Client, ComposeHash, EnvVars, Phase1Data, TransactionHash};
use support::{Reply, ScriptedServer};

/// A 465 asking for `hash`, in the StructuredError form of the shared fixture.
fn reply_465(hash: ComposeHash) -> Reply {
    let fixture = include_str!("../fixtures/responses/465_structured.json");
    let mut body: serde_json::Value = serde_json::from_str(fixture).unwrap();
    body["details"][0]["value"] = hash.to_hex().into();
    Reply::json(465, &body.to_string())
}

fn reply_466() -> Reply {
    Reply::json(466, r#"{"error_code":"ERR-01-006","message":"Compose hash invalid or expired","details":[]}"#)
}

fn reply_467() -> Reply {
    Reply::json(467, r#"{"error_code":"ERR-01-007","message":"Transaction verification failed","details":[]}"#)
}

fn reply_202() -> Reply {
    Reply::json(202, r#"{"status":"in_progress","message":"ok","correlation_id":"c-1","allowed_envs_changed":true}"#)
}

/// A reply cut in the middle of its body: the request was sent and may have been applied.
fn cut_reply() -> Reply {
    Reply::Raw(b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{\"st".to_vec())
}

/// Registers every hash with a made-up transaction (`[n; 32]` for the n-th call), reporting it
/// included as the on-chain registrar does, and remembers which hashes it was asked for.
#[derive(Default)]
struct Recording(Mutex<Vec<ComposeHash>>);

impl Recording {
    fn asked(&self) -> Vec<ComposeHash> {
        self.0.lock().unwrap().clone()
    }
}

impl ComposeHashRegistrar for Recording {
    type Error = std::convert::Infallible;
    async fn register(&self, data: &Phase1Data, progress: &Progress<'_>) -> Result<TransactionHash, Self::Error> {
        let n = {
            let mut asked = self.0.lock().unwrap();
            asked.push(data.compose_hash);
            asked.len() as u8
        };
        let transaction_hash = TransactionHash([n; 32]);
        progress.emit(FlowEvent::TransactionSent { transaction_hash });
        progress.emit(FlowEvent::TransactionConfirmed { transaction_hash, block_number: u64::from(n) });
        Ok(transaction_hash)
    }
}

fn client(server: &ScriptedServer) -> Client {
    Client::builder().base_url(server.base_url.clone()).api_key("k").build().unwrap()
}

fn env() -> EnvVars {
    EnvVars::from_pairs([("API_TOKEN", "scripted")]).unwrap()
}

fn pubkey() -> phala_cloud::RecipientPublicKey {
    phala_cloud::simulator::RecipientSecretKey::generate().unwrap().public_key()
}

/// Defect: a 467 right after the registrar saw its transaction included was final. A verifier
/// that lags the chain answers so; phase 2 must be sent again, without registering again.
#[tokio::test]
async fn a_467_for_an_included_transaction_is_sent_again() {
    let h1 = ComposeHash([0x11; 32]);
    let server = ScriptedServer::start(vec![reply_465(h1), reply_467(), reply_467(), reply_202()]).await;
    let registrar = Recording::default();
    let client = client(&server);
    let update = client
        .env_update("cvm-1")
        .skip_app_id_check()
        .env(env(), pubkey())
        .verification_retry_interval(Duration::from_millis(50));
    let (outcome, events) = support::run_recording(update, &registrar).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("a lagging verifier's 467 is not final: {e:?}"));
    assert_eq!(registrar.asked(), [h1], "registered once");
    assert_eq!(server.recorded().len(), 4, "phase 1, then phase 2 three times");
    assert_eq!(outcome.registration.unwrap().transaction_hash, TransactionHash([1; 32]));
    let pending: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            FlowEvent::VerificationPending { retry, transaction_hash, .. } => {
                assert_eq!(*transaction_hash, TransactionHash([1; 32]));
                Some(*retry)
            }
            _ => None,
        })
        .collect();
    assert_eq!(pending, [1, 2]);
}

/// The resends are bounded, and a 467 for a transaction nobody reported included is final.
#[tokio::test]
async fn a_467_is_resent_a_bounded_number_of_times_and_only_for_an_included_transaction() {
    let h1 = ComposeHash([0x11; 32]);
    let server = ScriptedServer::start(vec![reply_465(h1), reply_467()]).await;
    let e = client(&server)
        .env_update("cvm-1")
        .skip_app_id_check()
        .env(env(), pubkey())
        .verification_retries(2)
        .verification_retry_interval(Duration::from_millis(10))
        .run(Recording::default())
        .await
        .unwrap_err();
    assert!(e.update_error().unwrap().is_transaction_verification_failed(), "{e:?}");
    assert_eq!(server.recorded().len(), 1 + 3, "phase 1, phase 2 and two resends");

    // A transaction registered elsewhere is not reported included (a person pasting a hash);
    // boxed, as a registrar chosen at run time is.
    let pasted = BoxedRegistrar::new(KnownTransaction::new(TransactionHash([9; 32])));
    let server = ScriptedServer::start(vec![reply_465(h1), reply_467()]).await;
    let e = client(&server).env_update("cvm-1").skip_app_id_check().env(env(), pubkey()).run(pasted).await.unwrap_err();
    assert!(e.update_error().unwrap().is_transaction_verification_failed(), "{e:?}");
    assert_eq!(server.recorded().len(), 2, "that 467 is final");
    assert_eq!(e.registration().unwrap().transaction_hash, TransactionHash([9; 32]));
}

/// Defect: phase 1 failing after a 466 restart returned `FlowError::Phase1` without the
/// registration, so a caller could not reuse the transaction it had paid for.
#[tokio::test]
async fn phase_1_failing_after_a_restart_keeps_the_registration() {
    let h1 = ComposeHash([0x11; 32]);
    let server =
        ScriptedServer::start(vec![reply_465(h1), reply_466(), Reply::json(500, r#"{"detail":"boom"}"#)]).await;
    let e = client(&server)
        .env_update("cvm-1")
        .skip_app_id_check()
        .env(env(), pubkey())
        .run(Recording::default())
        .await
        .unwrap_err();
    assert_eq!(e.update_error().and_then(|u| u.status()).map(|s| s.as_u16()), Some(500), "{e:?}");
    let registration = e.registration().unwrap_or_else(|| panic!("the registration is lost: {e:?}"));
    assert_eq!((registration.compose_hash, registration.transaction_hash), (h1, TransactionHash([1; 32])));
    assert_eq!(e.registrations().len(), 1);
    assert!(e.to_string().contains(&TransactionHash([1; 32]).to_string()), "{e}");
}

/// A registrar failing on the second hash of a run still reports the first registration.
#[tokio::test]
async fn a_registration_failing_after_a_restart_keeps_the_first_registration() {
    /// Registers the first hash, fails on any other.
    struct FirstOnly(Recording);
    impl ComposeHashRegistrar for FirstOnly {
        type Error = std::io::Error;
        async fn register(&self, data: &Phase1Data, progress: &Progress<'_>) -> Result<TransactionHash, Self::Error> {
            if !self.0.asked().is_empty() {
                return Err(std::io::Error::other("the wallet went away"));
            }
            Ok(self.0.register(data, progress).await.unwrap_or_else(|never| match never {}))
        }
    }
    let (h1, h2) = (ComposeHash([0x11; 32]), ComposeHash([0x22; 32]));
    let server = ScriptedServer::start(vec![reply_465(h1), reply_466(), reply_465(h2)]).await;
    let e = client(&server)
        .env_update("cvm-1")
        .skip_app_id_check()
        .env(env(), pubkey())
        .run(FirstOnly(Recording::default()))
        .await;
    let e = e.unwrap_err();
    let FlowError::Registration { compose_hash, .. } = &e else { panic!("{e:?}") };
    assert_eq!(*compose_hash, h2);
    let earlier: Vec<_> = e.registrations().iter().map(|r| (r.compose_hash, r.transaction_hash)).collect();
    assert_eq!(earlier, [(h1, TransactionHash([1; 32]))]);
}

/// Defect: a run could register three distinct hashes (a 466 after a lost phase-2 reply, then
/// an expired hash). The third is refused with a typed error naming the hashes, and a
/// successful run lists every transaction it sent.
#[tokio::test]
async fn a_run_registers_at_most_two_distinct_hashes() {
    let (h1, h2, h3) = (ComposeHash([0x11; 32]), ComposeHash([0x22; 32]), ComposeHash([0x33; 32]));
    let script = vec![reply_465(h1), cut_reply(), reply_466(), reply_465(h2), reply_466(), reply_465(h3)];
    let server = ScriptedServer::start(script).await;
    let registrar = Recording::default();
    let e =
        client(&server).env_update("cvm-1").skip_app_id_check().env(env(), pubkey()).run(&registrar).await.unwrap_err();
    assert_eq!(registrar.asked(), [h1, h2], "no third registration");
    let FlowError::TooManyComposeHashes { refused, registrations, .. } = &e else { panic!("{e:?}") };
    assert_eq!(*refused, h3);
    assert_eq!(registrations.iter().map(|r| r.compose_hash).collect::<Vec<_>>(), [h1, h2]);
    let text = e.to_string();
    assert!([h1, h2, h3].iter().all(|h| text.contains(&h.to_string())), "{text}");
    assert_eq!(e.registrations().len(), 2);

    // Two hashes, accepted: the outcome lists both transactions, the last one as before.
    let server = ScriptedServer::start(vec![reply_465(h1), reply_466(), reply_465(h2), reply_202()]).await;
    let registrar = Recording::default();
    let outcome =
        client(&server).env_update("cvm-1").skip_app_id_check().env(env(), pubkey()).run(&registrar).await.unwrap();
    let sent: Vec<_> = outcome.registrations.iter().map(|r| (r.compose_hash, r.transaction_hash)).collect();
    assert_eq!(sent, [(h1, TransactionHash([1; 32])), (h2, TransactionHash([2; 32]))]);
    assert_eq!(outcome.registration.as_ref(), outcome.registrations.last());
}

/// A transaction registered elsewhere, tied to its hash, is cited for that hash only: after a
/// 466 restart that yields another hash, the run stops and says which hash now needs
/// registering, instead of citing the old transaction for the new hash. The error comes
/// through the boxed registrar with its own type.
#[tokio::test]
async fn a_known_transaction_is_cited_for_its_own_hash_only() {
    let (h1, h2, tx) = (ComposeHash([0x11; 32]), ComposeHash([0x22; 32]), TransactionHash([9; 32]));
    let known = KnownTransaction::new(tx).for_compose_hash(h1);

    let server = ScriptedServer::start(vec![reply_465(h1), reply_202()]).await;
    let done = client(&server).env_update("cvm-1").skip_app_id_check().env(env(), pubkey()).run(known).await.unwrap();
    assert_eq!(done.registration.unwrap().transaction_hash, tx);
    let sent: serde_json::Value = serde_json::from_slice(&server.recorded()[1].body).unwrap();
    assert_eq!(sent["transaction_hash"], tx.to_hex());

    let server = ScriptedServer::start(vec![reply_465(h1), reply_466(), reply_465(h2)]).await;
    let e = client(&server)
        .env_update("cvm-1")
        .skip_app_id_check()
        .env(env(), pubkey())
        .run(BoxedRegistrar::new(known))
        .await
        .unwrap_err();
    let FlowError::Registration { compose_hash, source, .. } = &e else { panic!("{e:?}") };
    assert_eq!(*compose_hash, h2);
    let other = source.downcast_ref::<OtherComposeHash>().unwrap_or_else(|| panic!("{source:?}"));
    assert_eq!((other.registered, other.asked, other.transaction_hash), (h1, h2, tx));
    assert!(other.to_string().contains(&h2.to_string()), "{other}");
    assert_eq!(server.recorded().len(), 3, "phase 1, phase 2, phase 1 again; no phase 2 for the new hash");
}
