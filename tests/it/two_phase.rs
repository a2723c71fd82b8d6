//! The phases as values, against the offline simulator: a pending update's phase 2 is its
//! phase 1 plus the two hashes, and bad hashes or input are refused before anything is sent.
#![cfg(feature = "simulator")]

use phala_cloud::encrypt;
use phala_cloud::simulator::{Simulator, SimulatorConfig};
use phala_cloud::{EnvUpdateRequest, Phase1Outcome};
use phala_cloud::{EnvVars, TransactionHash};

#[tokio::test]
async fn pending_update_sends_exactly_its_phase_1_request_plus_the_hashes() {
    let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
    let client = sim.client_builder().build().unwrap();
    let env = EnvVars::from_pairs([("A", "1"), ("B", "2")]).unwrap();
    let encrypted = encrypt(&env, sim.cvm("cvm-onchain").unwrap().public_key).unwrap();
    let request =
        EnvUpdateRequest::new("cvm-onchain", encrypted, Some(vec!["A".into(), "B".into(), "C".into()])).unwrap();

    let Phase1Outcome::RegistrationRequired(pending) = client.begin_env_update(&request).await.unwrap() else {
        panic!("a contract-owned CVM with new names answers 465")
    };
    let tx = TransactionHash([3; 32]);
    let phase2 = pending.phase2_body(tx);
    assert_eq!(phase2.encrypted_env, request.body().encrypted_env);
    assert_eq!(phase2.env_keys, request.body().env_keys);
    assert_eq!(phase2.compose_hash, Some(pending.compose_hash().to_hex()));
    assert_eq!(phase2.transaction_hash, Some(tx.to_hex()));

    // Bad transaction hashes are refused before sending.
    let sent = sim.operations().len();
    for bad in ["", "0x12", "zz".repeat(32).as_str(), &"ab".repeat(33)] {
        let e = pending.confirm(&client, bad).await.unwrap_err();
        assert!(e.is_invalid_input(), "{bad}: {e}");
    }
    assert_eq!(sim.operations().len(), sent, "nothing was sent");

    // With or without 0x, upper or lower case: accepted (offline mode checks no chain).
    let accepted = pending.confirm(&client, format!("0X{}", "AB".repeat(32)).as_str()).await.unwrap();
    assert_eq!(accepted.allowed_envs_changed, Some(true));
    assert_eq!(sim.cvm_env("cvm-onchain").unwrap(), env);
}

#[tokio::test]
async fn requests_that_cannot_be_right_are_refused_before_sending() {
    let key = phala_cloud::simulator::RecipientSecretKey::generate().unwrap().public_key();
    let env = EnvVars::from_pairs([("A", "1"), ("B", "2")]).unwrap();
    // env_keys that miss an encrypted name: the CVM would drop B silently.
    let e = EnvUpdateRequest::new("cvm", encrypt(&env, key).unwrap(), Some(vec!["A".into()])).unwrap_err();
    assert!(e.is_invalid_input() && e.to_string().contains('B'), "{e}");
    // A bad CVM id.
    assert!(EnvUpdateRequest::new("..", encrypt(&env, key).unwrap(), None).unwrap_err().is_invalid_input());
    // A phase-1 body that already carries phase-2 fields.
    let mut body = encrypt(&env, key).unwrap().into_body();
    body.compose_hash = Some("ab".repeat(32));
    body.transaction_hash = Some("cd".repeat(32));
    assert!(EnvUpdateRequest::from_body("cvm", body).unwrap_err().is_invalid_input());
}

/// A registrar that counts its calls and never signs anything.
#[derive(Default)]
struct Counting(std::sync::atomic::AtomicU32);

impl phala_cloud::ComposeHashRegistrar for Counting {
    type Error = std::convert::Infallible;
    async fn register(
        &self,
        _: &phala_cloud::Phase1Data,
        _: &phala_cloud::Progress<'_>,
    ) -> Result<TransactionHash, Self::Error> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(TransactionHash([0x42; 32]))
    }
}

/// A pinned app is checked before anything is sent, so that a change that needs no
/// registration (no 465 to check) does not reach a CVM of another app.
#[tokio::test]
async fn a_cvm_of_another_app_than_the_pinned_one_gets_nothing_sent() {
    use phala_cloud::{AppIdCheckError, FlowError};
    let server = httpmock::MockServer::start_async().await;
    let patch = server.mock(|when, then| {
        when.method(httpmock::Method::PATCH).path("/api/v1/cvms/cvm-1/envs");
        then.status(202)
            .header("content-type", "application/json")
            .body(include_str!("../fixtures/responses/202_in_progress.json"));
    });
    let cvm = server.mock(|when, then| {
        when.method(httpmock::Method::GET).path("/api/v1/cvms/cvm-1");
        then.status(200)
            .header("content-type", "application/json")
            .body(r#"{"id":"cvm-1","name":"one","app_id":"app_00000000000000000000000000000000000000aa"}"#);
    });
    let client = phala_cloud::Client::builder().base_url(server.base_url()).api_key("phak_test").build().unwrap();
    let key = phala_cloud::simulator::RecipientSecretKey::generate().unwrap().public_key();
    let env = || EnvVars::from_pairs([("A", "1")]).unwrap();
    let registrar = Counting::default();

    let other = "0x00000000000000000000000000000000000000bb".parse().unwrap();
    let e = client.env_update("cvm-1").env(env(), key).expect_app_id(other).run(&registrar).await.unwrap_err();
    let FlowError::NotExpectedApp(source) = &e else { panic!("{e:?}") };
    assert!(matches!(**source, AppIdCheckError::NotExpected { .. }), "{source:?}");
    assert!(e.to_string().contains("nothing was sent"), "{e}");
    assert_eq!((cvm.calls(), patch.calls()), (1, 0), "read, and nothing sent");

    // The CVM's own app: sent.
    let own = "0x00000000000000000000000000000000000000aa".parse().unwrap();
    client.env_update("cvm-1").env(env(), key).expect_app_id(own).run(&registrar).await.unwrap();
    assert_eq!((cvm.calls(), patch.calls()), (2, 1));
    assert_eq!(registrar.0.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// The same app address can exist on several chains: a 465 naming another chain than the
/// CVM's KMS is on is refused before the registrar is asked (it would pick that chain's RPC).
#[tokio::test]
async fn a_465_for_another_chain_than_the_cvms_kms_is_refused() {
    use phala_cloud::{AppIdCheckError, FlowError};
    let server = httpmock::MockServer::start_async().await;
    let phase1 = include_str!("../fixtures/responses/465_structured.json"); // app a172cedc…, chain 8453
    server.mock(|when, then| {
        when.method(httpmock::Method::PATCH).path("/api/v1/cvms/cvm-1/envs");
        then.status(465).header("content-type", "application/json").body(phase1);
    });
    let cvm = |chain: u64| {
        format!(
            r#"{{"id":"cvm-1","name":"one","app_id":"a172cedcae47474b615c54d510a5d84a8dea3032","kms_info":{{"slug":"k","chain_id":{chain}}}}}"#
        )
    };
    let mut read = server.mock(|when, then| {
        when.method(httpmock::Method::GET).path("/api/v1/cvms/cvm-1");
        then.status(200).header("content-type", "application/json").body(cvm(1));
    });
    let client = phala_cloud::Client::builder().base_url(server.base_url()).api_key("phak_test").build().unwrap();
    let key = phala_cloud::simulator::RecipientSecretKey::generate().unwrap().public_key();
    let env = || EnvVars::from_pairs([("A", "1")]).unwrap();
    let registrar = Counting::default();

    let e = client.env_update("cvm-1").env(env(), key).run(&registrar).await.unwrap_err();
    let FlowError::AppIdCheck { source, .. } = &e else { panic!("{e:?}") };
    assert!(matches!(**source, AppIdCheckError::ChainMismatch { phase1: 8453, cvm: 1, .. }), "{source:?}");
    assert_eq!(registrar.0.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing was signed");

    // The CVM's own chain: handed to the registrar.
    read.delete();
    server.mock(|when, then| {
        when.method(httpmock::Method::GET).path("/api/v1/cvms/cvm-1");
        then.status(200).header("content-type", "application/json").body(cvm(8453));
    });
    let e = client.env_update("cvm-1").env(env(), key).run(&registrar).await.unwrap_err();
    assert!(matches!(e, FlowError::Phase2 { .. }), "{e:?}"); // the mock answers 465 again
    assert_eq!(registrar.0.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// The one-call flow checks a 465's app id against the CVM's own before the registrar is
/// asked, by default: a server answering 465 for another app gets nothing signed.
#[tokio::test]
async fn a_465_for_another_app_than_the_cvms_is_refused_before_the_registrar_is_asked() {
    use phala_cloud::{AppIdCheckError, FlowError};
    let server = httpmock::MockServer::start_async().await;
    let phase1 = include_str!("../fixtures/responses/465_structured.json"); // app a172cedc…
    server.mock(|when, then| {
        when.method(httpmock::Method::PATCH).path("/api/v1/cvms/cvm-1/envs");
        then.status(465).header("content-type", "application/json").body(phase1);
    });
    let cvm = server.mock(|when, then| {
        when.method(httpmock::Method::GET).path("/api/v1/cvms/cvm-1").header("x-api-key", "phak_test");
        then.status(200)
            .header("content-type", "application/json")
            .body(r#"{"id":"cvm-1","name":"one","app_id":"app_00000000000000000000000000000000000000aa"}"#);
    });
    let client = phala_cloud::Client::builder().base_url(server.base_url()).api_key("phak_test").build().unwrap();
    let key = phala_cloud::simulator::RecipientSecretKey::generate().unwrap().public_key();
    let env = || EnvVars::from_pairs([("A", "1")]).unwrap();

    let registrar = Counting::default();
    let e = client.env_update("cvm-1").env(env(), key).run(&registrar).await.unwrap_err();
    let FlowError::AppIdCheck { source, app_id, .. } = &e else { panic!("{e:?}") };
    assert!(matches!(**source, AppIdCheckError::Mismatch { .. }), "{source:?}");
    assert_eq!(app_id.to_hex(), "0xa172cedcae47474b615c54d510a5d84a8dea3032");
    assert!(std::error::Error::source(&e).unwrap().to_string().contains("nothing was signed"), "{e}");
    assert_eq!(cvm.calls(), 1);

    // A pin holds with the lookup skipped; without a pin, skipping hands the 465 on.
    let pinned = "0x00000000000000000000000000000000000000aa".parse().unwrap();
    let e = client.env_update("cvm-1").env(env(), key).skip_app_id_check().expect_app_id(pinned).run(&registrar).await;
    assert!(
        matches!(&e, Err(FlowError::AppIdCheck { source, .. }) if matches!(**source, AppIdCheckError::NotExpected { .. })),
        "{e:?}"
    );
    assert_eq!(registrar.0.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing was signed");
    assert_eq!(cvm.calls(), 1, "skipped: the CVM was not read");
    let e = client.env_update("cvm-1").env(env(), key).skip_app_id_check().run(&registrar).await.unwrap_err();
    assert!(matches!(e, FlowError::Phase2 { .. }), "{e:?}"); // the mock answers 465 again
    assert_eq!(registrar.0.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A CVM that cannot be read: refused too (the check cannot be made), nothing signed.
    let gone = server.mock(|when, then| {
        when.method(httpmock::Method::GET).path("/api/v1/cvms/cvm-2");
        then.status(403);
    });
    server.mock(|when, then| {
        when.method(httpmock::Method::PATCH).path("/api/v1/cvms/cvm-2/envs");
        then.status(465).header("content-type", "application/json").body(phase1);
    });
    let e = client.env_update("cvm-2").env(env(), key).run(&registrar).await.unwrap_err();
    assert!(
        matches!(&e, FlowError::AppIdCheck { source, .. } if matches!(**source, AppIdCheckError::Lookup { .. })),
        "{e:?}"
    );
    assert_eq!(gone.calls(), 1);
    assert_eq!(registrar.0.load(std::sync::atomic::Ordering::SeqCst), 1);
}
