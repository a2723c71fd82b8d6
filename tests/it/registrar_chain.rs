//! The on-chain registrar against a real anvil: one registration for many concurrent flows of
//! one app, the gas and fee caps, and the cross-process lock file.
#![cfg(feature = "simulator")]

use crate::support;

use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use k256::ecdsa::SigningKey;
use phala_cloud::KmsSignatureError;
use phala_cloud::onchain::{COMPOSE_HASH_ADDED_TOPIC, KmsCheckError, KmsContract, OnchainError, OnchainRegistrar};
use phala_cloud::simulator::{ChainConfig, CvmSpec, Simulator, SimulatorConfig, deploy_kms_auth};
use phala_cloud::{AppId, ComposeHash, Phase1Data};
use phala_cloud::{ComposeHashRegistrar, FlowError, Progress};
use phala_cloud::{EnvVars, UpdateCvmEnvsBody};
use support::anvil::{AnvilOptions, LocalChain, wallet_provider};

fn vars() -> EnvVars {
    EnvVars::from_pairs([("DATABASE_URL", "postgres://db"), ("API_TOKEN", "flow-secret")]).unwrap()
}

fn registrar(chain: &LocalChain) -> OnchainRegistrar {
    OnchainRegistrar::new(chain.signer(0), chain.endpoint.parse().unwrap()).unwrap()
}

/// A simulator verifying against `chain`, with `n` CVMs of one app contract (owned by dev
/// account 0).
async fn one_app(chain: &LocalChain, n: usize) -> (Simulator, Address) {
    let app = chain.deploy_app_auth(0).await;
    let cvms = (0..n).map(|i| CvmSpec::onchain(format!("cvm-{i}")).app_id(app.into()));
    let config = SimulatorConfig::default().cvms(cvms).chain(ChainConfig::new(chain.endpoint.parse().unwrap()));
    (Simulator::start(config).await.unwrap(), app)
}

async fn registrations(chain: &LocalChain, app: Address) -> usize {
    let filter = Filter::new().address(app).event_signature(COMPOSE_HASH_ADDED_TOPIC).from_block(0);
    wallet_provider(&chain.endpoint, chain.signer(0)).get_logs(&filter).await.unwrap().len()
}

async fn nonce(chain: &LocalChain) -> u64 {
    wallet_provider(&chain.endpoint, chain.signer(0)).get_transaction_count(chain.signer(0).address()).await.unwrap()
}

#[tokio::test]
async fn cvms_of_one_app_with_the_same_env_names_get_one_compose_hash() {
    let app = phala_cloud::AppId([7; 20]);
    let config =
        SimulatorConfig::default().cvms([CvmSpec::onchain("cvm-a").app_id(app), CvmSpec::onchain("cvm-b").app_id(app)]);
    let sim = Simulator::start(config).await.unwrap();
    let client = sim.client_builder().build().unwrap();
    let mut hashes = Vec::new();
    for id in ["cvm-a", "cvm-b"] {
        let blob = phala_cloud::encrypt(&vars(), sim.cvm(id).unwrap().public_key).unwrap();
        let body = UpdateCvmEnvsBody {
            encrypted_env: blob.into_hex(),
            env_keys: Some(vec!["API_TOKEN".into(), "DATABASE_URL".into()]),
            compose_hash: None,
            transaction_hash: None,
        };
        let e = client.update_cvm_envs(id, &body).await.unwrap_err();
        assert!(e.is_registration_required(), "{e:?}");
        hashes.push(e.phase1().unwrap().compose_hash);
    }
    assert_eq!(hashes[0], hashes[1], "one app compose, one hash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_flows_of_one_app_send_one_transaction() {
    let chain = LocalChain::start_with(AnvilOptions { block_time: Some(2), ..AnvilOptions::default() });
    let (sim, app) = one_app(&chain, 8).await;
    let client = sim.client_builder().build().unwrap();
    let before = nonce(&chain).await;
    let shared = registrar(&chain);
    let separate: Vec<OnchainRegistrar> = (0..4).map(|_| registrar(&chain)).collect();

    let started = Instant::now();
    let flows = (0..8).map(|i| {
        let id = format!("cvm-{i}");
        let key = sim.cvm(&id).unwrap().public_key;
        let update = client.env_update(id).env(vars(), key);
        let registrar = if i % 2 == 0 { &shared } else { &separate[i / 2] };
        async move { update.run(registrar).await }
    });
    let outcomes = futures_join_all(flows).await;
    let wall = started.elapsed();

    let mut transactions = Vec::new();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let outcome = outcome.unwrap_or_else(|e| panic!("flow {i}: {e:?}"));
        assert_eq!(outcome.accepted.allowed_envs_changed, Some(true));
        transactions.push(outcome.registration.unwrap().transaction_hash);
        assert_eq!(sim.cvm_env(&format!("cvm-{i}")).unwrap(), vars());
    }
    transactions.dedup();
    assert_eq!(transactions.len(), 1, "every flow cites one transaction: {transactions:?}");
    assert_eq!(registrations(&chain, app).await, 1, "one ComposeHashAdded on the chain");
    assert_eq!(nonce(&chain).await, before + 1, "one transaction sent");
    eprintln!("8 concurrent flows: {wall:.2?}, 1 transaction");
}

/// `join_all` without a futures dependency: each flow on its own task would need `'static`.
async fn futures_join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

/// Updates `cvm-0` of `sim` (of app contract `app`) with `registrar`, which must refuse before
/// signing: the flow's error, once checked that nothing was sent and nothing registered.
async fn refused_before_signing(
    chain: &LocalChain,
    sim: &Simulator,
    app: Address,
    registrar: OnchainRegistrar,
) -> FlowError<OnchainError> {
    let before = nonce(chain).await;
    let client = sim.client_builder().build().unwrap();
    let e =
        client.env_update("cvm-0").env(vars(), sim.cvm("cvm-0").unwrap().public_key).run(registrar).await.unwrap_err();
    assert_eq!(nonce(chain).await, before, "nothing sent: {e:?}");
    assert_eq!(registrations(chain, app).await, 0, "{e:?}");
    e
}

#[tokio::test]
async fn a_gas_estimate_above_the_cap_is_refused_before_signing() {
    let chain = LocalChain::start();
    let (sim, app) = one_app(&chain, 1).await;
    let e = refused_before_signing(&chain, &sim, app, registrar(&chain).gas_limit_cap(20_000)).await;
    let Some(OnchainError::GasLimitTooHigh { estimate, cap }) = e.registration_error() else { panic!("{e:?}") };
    assert_eq!(*cap, 20_000);
    assert!((20_000..phala_cloud::onchain::DEFAULT_GAS_LIMIT_CAP).contains(estimate), "{estimate}");
}

#[tokio::test]
async fn a_base_fee_above_the_cap_is_refused_before_signing() {
    let chain = LocalChain::start();
    let (sim, app) = one_app(&chain, 1).await;
    let e = refused_before_signing(&chain, &sim, app, registrar(&chain).max_fee_per_gas(1_000)).await;
    let Some(err @ OnchainError::FeeTooHigh { base_fee, cap }) = e.registration_error() else { panic!("{e:?}") };
    assert_eq!(*cap, 1_000);
    assert!(*base_fee > 1_000, "anvil's base fee starts at 1 gwei: {base_fee}");
    let text = err.to_string();
    assert!(text.contains(&base_fee.to_string()) && text.contains("1000 wei"), "{text}");

    // Under a cap above the base fee, the max fee signed is at most the cap.
    let cap = 10_000_000_000u128;
    let client = sim.client_builder().build().unwrap();
    let outcome = client
        .env_update("cvm-0")
        .env(vars(), sim.cvm("cvm-0").unwrap().public_key)
        .run(registrar(&chain).max_fee_per_gas(cap))
        .await
        .unwrap();
    let tx = outcome.registration.unwrap().transaction_hash;
    let provider = wallet_provider(&chain.endpoint, chain.signer(0));
    let sent = provider.get_transaction_by_hash(tx.into()).await.unwrap().unwrap();
    use alloy::consensus::Transaction as _;
    assert!(sent.max_fee_per_gas() <= cap, "{}", sent.max_fee_per_gas());
    assert!(sent.gas_limit() <= phala_cloud::onchain::DEFAULT_GAS_LIMIT_CAP);
}

/// Why the test's confirmation hook declined.
#[derive(Debug, thiserror::Error)]
#[error("the test said no")]
struct SaidNo;

/// The confirmation hook sees the whole planned transaction once every check passed; a decline
/// signs nothing (the hook's own error is the source), an accept signs the plan it was shown,
/// and a hash that is already allowed asks nothing (nothing is to be signed).
#[tokio::test]
async fn the_confirmation_hook_sees_the_plan_and_a_decline_signs_nothing() {
    use phala_cloud::onchain::PlannedRegistration;
    use std::sync::{Arc, Mutex};
    let chain = LocalChain::start();
    let (sim, app) = one_app(&chain, 2).await;
    let asked: Arc<Mutex<Vec<PlannedRegistration>>> = Arc::default();
    let asking = |yes: bool| {
        let asked = asked.clone();
        registrar(&chain).confirm_before_signing(move |plan| {
            asked.lock().unwrap().push(plan);
            async move { if yes { Ok(()) } else { Err(SaidNo) } }
        })
    };

    let before = nonce(&chain).await;
    let e = refused_before_signing(&chain, &sim, app, asking(false)).await;
    let Some(OnchainError::NotConfirmed { reason }) = e.registration_error() else { panic!("{e:?}") };
    assert!(reason.downcast_ref::<SaidNo>().is_some(), "{reason:?}");
    let plan = asked.lock().unwrap().pop().expect("asked once");
    assert_eq!(plan.chain_id, chain.chain_id);
    assert_eq!(Address::from(plan.app_id), app);
    assert_eq!(plan.from, chain.signer(0).address());
    assert_eq!(plan.nonce, before);
    assert_eq!(plan.call.to, app);
    assert_eq!(&plan.call.data[4..], plan.compose_hash.as_bytes());
    assert!(plan.gas_estimate > 21_000 && plan.gas_limit >= plan.gas_estimate, "{plan:?}");
    assert!(plan.max_fee_per_gas >= plan.base_fee_per_gas, "{plan:?}");
    assert_eq!(
        plan.estimated_cost_wei(),
        alloy::primitives::U256::from(plan.gas_estimate) * alloy::primitives::U256::from(plan.expected_gas_price())
    );

    let client = sim.client_builder().build().unwrap();
    let key = |id: &str| sim.cvm(id).unwrap().public_key;
    let outcome = client.env_update("cvm-0").env(vars(), key("cvm-0")).run(asking(true)).await.unwrap();
    let signed = asked.lock().unwrap().pop().expect("asked again");
    assert!(asked.lock().unwrap().is_empty());
    let registration = outcome.registration.unwrap();
    assert_eq!(signed.compose_hash, registration.compose_hash, "the hash shown is the one registered");
    assert_eq!((signed.nonce, nonce(&chain).await), (before, before + 1), "one transaction, on the nonce shown");
    assert_eq!(registrations(&chain, app).await, 1);

    // cvm-1, same app and names: the hash is allowed already, so nothing is signed or asked.
    let outcome = client.env_update("cvm-1").env(vars(), key("cvm-1")).run(asking(false)).await.unwrap();
    assert_eq!(outcome.registration.unwrap().transaction_hash, registration.transaction_hash);
    assert!(asked.lock().unwrap().is_empty(), "not asked when nothing is signed");
}

#[tokio::test]
async fn a_held_lock_file_keeps_the_registrar_from_sending() {
    let chain = LocalChain::start();
    let (sim, app) = one_app(&chain, 1).await;
    let client = sim.client_builder().build().unwrap();
    let dir = std::env::temp_dir().join(format!("phala-cloud-lock-{}-{}", std::process::id(), chain.chain_id));
    let locked = registrar(&chain).lock_dir(&dir).timeout(Duration::from_millis(800));
    let path = locked.lock_path(chain.chain_id).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    // Another process's run, as far as flock is concerned: a separate open file.
    let other = std::fs::File::create(&path).unwrap();
    other.lock().unwrap();
    let before = nonce(&chain).await;
    let key = sim.cvm("cvm-0").unwrap().public_key;
    let e = client.env_update("cvm-0").env(vars(), key).run(&locked).await.unwrap_err();
    assert!(matches!(e.registration_error(), Some(OnchainError::LockBusy { path: p, .. }) if *p == path), "{e:?}");
    assert_eq!(nonce(&chain).await, before, "nothing sent while the lock is held");

    other.unlock().unwrap();
    client.env_update("cvm-0").env(vars(), key).run(&locked).await.unwrap();
    assert_eq!(registrations(&chain, app).await, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The KMS contract's word on anvil: which apps it serves (`registeredApps`) and which key
/// signs their env-encryption keys (`kmsInfo()`), whatever the API says.
#[tokio::test]
async fn the_kms_contract_vouches_for_its_apps_and_their_env_keys() {
    let chain = LocalChain::start();
    let url: url::Url = chain.endpoint.parse().unwrap();
    let app = AppId::from(chain.deploy_app_auth(0).await);
    let unserved = AppId([9; 20]);
    let kms_key = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let address = deploy_kms_auth(&url, chain.signer(0), &support::k256_public(&kms_key), &[app]).await.unwrap();
    let kms = KmsContract::new(address, &url).unwrap();
    assert!(kms.is_registered(app).await.unwrap());
    assert!(!kms.is_registered(unserved).await.unwrap());
    assert_eq!(kms.k256_pubkey().await.unwrap(), support::k256_public(&kms_key));

    let now = now_secs();
    let signed = support::sign_env_pubkey(&kms_key, &app, Some(now));
    assert_eq!(kms.verify_env_pubkey(&signed, &app).await.unwrap(), signed.public_key);
    let legacy = support::sign_env_pubkey(&kms_key, &app, None);
    assert_eq!(kms.verify_env_pubkey(&legacy, &app).await.unwrap(), legacy.public_key);

    // A key the API signed itself (and named as kms_info.k256_pubkey): not the chain's key.
    let forged = support::sign_env_pubkey(&SigningKey::from_slice(&[0x43; 32]).unwrap(), &app, Some(now));
    let e = kms.verify_env_pubkey(&forged, &app).await.unwrap_err();
    assert!(matches!(e, KmsCheckError::Signature { source: KmsSignatureError::SignerMismatch { .. }, .. }), "{e:?}");
    // A stale signature by the right key.
    let stale = support::sign_env_pubkey(&kms_key, &app, Some(now - 301));
    let e = kms.verify_env_pubkey(&stale, &app).await.unwrap_err();
    assert!(matches!(e, KmsCheckError::Signature { source: KmsSignatureError::Expired { .. }, .. }), "{e:?}");
    // A key signed for another app: not this app's, and that app is not this KMS's.
    let for_other = support::sign_env_pubkey(&kms_key, &unserved, Some(now));
    let e = kms.verify_env_pubkey(&for_other, &app).await.unwrap_err();
    assert!(matches!(e, KmsCheckError::Signature { .. }), "{e:?}");
    let e = kms.verify_env_pubkey(&for_other, &unserved).await.unwrap_err();
    assert!(matches!(e, KmsCheckError::AppNotRegistered { .. }), "{e:?}");
    assert!(e.to_string().contains("not registered with the KMS contract"), "{e}");

    // Addresses that are no KMS contract: an app contract, an account without code.
    for not_kms in [Address::from(app), chain.signer(1).address()] {
        let e = KmsContract::new(not_kms, &url).unwrap().k256_pubkey().await.unwrap_err();
        assert!(matches!(e, KmsCheckError::NotKmsContract { .. }), "{not_kms}: {e:?}");
        assert!(!e.is_rpc());
    }
}

/// Phase 1 for `app` whose `kms_info` names the KMS contract `kms`.
fn phase1(app: AppId, kms: Option<Address>, hash_byte: u8) -> Phase1Data {
    let body = serde_json::json!({
        "compose_hash": ComposeHash([hash_byte; 32]).to_hex(),
        "app_id": app.to_hex(),
        "device_id": "00".repeat(32),
        "kms_info": { "chain_id": support::anvil::ANVIL_CHAIN_ID, "kms_contract_address": kms.map(|k| k.to_string()) },
    });
    Phase1Data::parse(body.to_string().as_bytes()).unwrap()
}

/// A 465 naming an app the KMS contract does not serve is refused before anything is signed;
/// the same app with a KMS that lists it registers.
#[tokio::test]
async fn the_registrar_refuses_an_app_its_kms_does_not_list_before_signing() {
    let chain = LocalChain::start();
    let url: url::Url = chain.endpoint.parse().unwrap();
    let app = chain.deploy_app_auth(0).await;
    let kms_pub = support::k256_public(&SigningKey::from_slice(&[0x42; 32]).unwrap());
    let stranger = deploy_kms_auth(&url, chain.signer(1), &kms_pub, &[]).await.unwrap();
    let serving = deploy_kms_auth(&url, chain.signer(1), &kms_pub, &[app.into()]).await.unwrap();
    let registrar = registrar(&chain);

    let before = nonce(&chain).await;
    let e = registrar.register(&phase1(app.into(), Some(stranger), 1), &Progress::none()).await.unwrap_err();
    assert!(matches!(e, OnchainError::Kms(KmsCheckError::AppNotRegistered { .. })), "{e:?}");
    let e = registrar.register(&phase1(app.into(), Some(app), 1), &Progress::none()).await.unwrap_err();
    assert!(matches!(e, OnchainError::Kms(KmsCheckError::NotKmsContract { .. })), "{e:?}");
    assert_eq!(nonce(&chain).await, before, "nothing signed");
    assert_eq!(registrations(&chain, app).await, 0);

    let tx = registrar.register(&phase1(app.into(), Some(serving), 1), &Progress::none()).await.unwrap();
    assert_eq!(registrations(&chain, app).await, 1, "{tx}");
    // Without a KMS contract in kms_info (an older server) the check cannot run; it is logged.
    registrar.register(&phase1(app.into(), None, 2), &Progress::none()).await.unwrap();
    assert_eq!(registrations(&chain, app).await, 2);
}
