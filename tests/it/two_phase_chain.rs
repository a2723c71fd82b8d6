//! The one-call flow against the simulator and a real anvil node: registration by the on-chain
//! registrar, each way it can fail, restarts, interruptions and concurrent updates. Every test
//! checks what the CVM finally sees; those that must not pay twice count the signer's nonce.
#![cfg(feature = "simulator")]

use crate::support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use phala_cloud::onchain::{OnchainError, OnchainRegistrar};
use phala_cloud::simulator::{ChainConfig, CvmSpec, Simulator, SimulatorConfig};
use phala_cloud::{ComposeHashRegistrar, FlowError, FlowEvent, Progress, RestartReason};
use phala_cloud::{ConflictRetry, EnvVars, Phase1Data, TransactionHash};
use support::Then;
use support::anvil::{AnvilOptions, LocalChain, wallet_provider};

fn vars() -> EnvVars {
    EnvVars::from_pairs([("DATABASE_URL", "postgres://db"), ("API_TOKEN", "flow-secret")]).unwrap()
}

async fn simulator(chain: &LocalChain, cvms: Vec<CvmSpec>) -> Simulator {
    let config = SimulatorConfig::default().cvms(cvms).chain(chain.sim_chain());
    Simulator::start(config).await.unwrap()
}

fn registrar(chain: &LocalChain, signer: PrivateKeySigner) -> OnchainRegistrar {
    OnchainRegistrar::new(signer, chain.endpoint.parse().unwrap()).unwrap()
}

async fn nonce(chain: &LocalChain, address: Address) -> u64 {
    wallet_provider(&chain.endpoint, chain.signer(0)).get_transaction_count(address).await.unwrap()
}

#[tokio::test]
async fn contract_owned_cvm_end_to_end() {
    let chain = LocalChain::start();
    let sim = simulator(&chain, vec![CvmSpec::onchain("cvm-1")]).await;
    let client = sim.client_builder().build().unwrap();
    let owner = chain.signer(0);
    let before = nonce(&chain, owner.address()).await;

    let update = client.env_update("cvm-1").env(vars(), sim.cvm("cvm-1").unwrap().public_key);
    let (outcome, events) = support::run_recording(update, registrar(&chain, owner.clone())).await;
    let outcome = outcome.unwrap();

    assert_eq!(outcome.accepted.allowed_envs_changed, Some(true));
    let registration = outcome.registration.unwrap();
    assert_eq!(Some(registration.app_id), sim.cvm("cvm-1").unwrap().app_id);
    assert_eq!(registration.chain_id, Some(chain.chain_id));
    assert_eq!(sim.cvm_env("cvm-1").unwrap(), vars());
    assert_eq!(nonce(&chain, owner.address()).await, before + 1, "one transaction");

    let names: Vec<&str> = events
        .iter()
        .map(|e| match e {
            FlowEvent::Encrypted { .. } => "encrypted",
            FlowEvent::Phase1Sent { .. } => "phase1",
            FlowEvent::RegistrationRequired { .. } => "465",
            FlowEvent::TransactionSent { .. } => "sent",
            FlowEvent::TransactionConfirmed { .. } => "confirmed",
            FlowEvent::Phase2Sent { .. } => "phase2",
            FlowEvent::Accepted { .. } => "accepted",
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(names, ["encrypted", "phase1", "465", "sent", "confirmed", "phase2", "accepted"]);
    assert!(matches!(&events[4], FlowEvent::TransactionConfirmed { transaction_hash, .. }
        if *transaction_hash == registration.transaction_hash));
}

/// Counts calls and refuses to register: for flows that must not register.
#[derive(Default)]
struct MustNotRegister(AtomicU32);

impl ComposeHashRegistrar for MustNotRegister {
    type Error = std::io::Error;
    async fn register(&self, _: &Phase1Data, _: &Progress<'_>) -> Result<TransactionHash, std::io::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(std::io::Error::other("registration was not expected"))
    }
}

#[tokio::test]
async fn centralized_cvm_needs_no_registration() {
    let chain = LocalChain::start();
    let sim = simulator(&chain, vec![CvmSpec::centralized("cvm-c")]).await;
    let client = sim.client_builder().build().unwrap();
    let never = MustNotRegister::default();
    let outcome =
        client.env_update("cvm-c").env(vars(), sim.cvm("cvm-c").unwrap().public_key).run(&never).await.unwrap();
    assert!(outcome.registration.is_none());
    assert_eq!(never.0.load(Ordering::SeqCst), 0);
    assert_eq!(sim.cvm_env("cvm-c").unwrap(), vars());
}

#[tokio::test]
async fn wrong_owner_is_refused_before_sending() {
    let chain = LocalChain::start();
    let sim = simulator(&chain, vec![CvmSpec::onchain("cvm-1")]).await;
    let client = sim.client_builder().build().unwrap();
    let stranger = chain.signer(4);
    let e = client
        .env_update("cvm-1")
        .env(vars(), sim.cvm("cvm-1").unwrap().public_key)
        .run(registrar(&chain, stranger.clone()))
        .await
        .unwrap_err();
    let Some(OnchainError::NotOwner { owner, signer, .. }) = e.registration_error() else { panic!("{e:?}") };
    assert_eq!((*owner, *signer), (chain.signer(0).address(), stranger.address()));
    let text = e.registration_error().unwrap().to_string();
    assert!(text.contains(&owner.to_string()) && text.contains(&stranger.address().to_string()), "{text}");
    assert_eq!(nonce(&chain, stranger.address()).await, 0, "nothing sent");
    assert!(sim.cvm_env("cvm-1").unwrap().is_empty());
}

#[tokio::test]
async fn balance_too_low_is_refused_before_sending() {
    let chain = LocalChain::start();
    // A fresh owner with 0.0005 ETH after deploying its own app contract.
    let poor = PrivateKeySigner::random();
    let funding = alloy::rpc::types::TransactionRequest::default()
        .to(poor.address())
        .value(U256::from(1_000_000_000_000_000u128));
    let rich = wallet_provider(&chain.endpoint, chain.signer(0));
    rich.send_transaction(funding).await.unwrap().get_receipt().await.unwrap();
    let app = support::anvil::deploy_app_auth(&chain.endpoint, poor.clone()).await;
    let balance = rich.get_balance(poor.address()).await.unwrap();
    assert!(balance < U256::from(phala_cloud::onchain::DEFAULT_MIN_BALANCE_WEI));

    let sim = simulator(&chain, vec![CvmSpec::onchain("cvm-1").app_id(app.into())]).await;
    let client = sim.client_builder().build().unwrap();
    let sent_before = nonce(&chain, poor.address()).await;
    let e = client
        .env_update("cvm-1")
        .env(vars(), sim.cvm("cvm-1").unwrap().public_key)
        .run(registrar(&chain, poor.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e.registration_error(), Some(OnchainError::InsufficientBalance { .. })), "{e:?}");
    assert_eq!(nonce(&chain, poor.address()).await, sent_before, "nothing sent");
    assert!(sim.cvm_env("cvm-1").unwrap().is_empty());
}

#[tokio::test]
async fn chain_id_mismatch_is_refused() {
    let chain = LocalChain::start();
    let other = LocalChain::start_with(AnvilOptions { chain_id: 8453, ..AnvilOptions::default() });
    let sim = simulator(&chain, vec![CvmSpec::onchain("cvm-1")]).await;
    let client = sim.client_builder().build().unwrap();
    let e = client
        .env_update("cvm-1")
        .env(vars(), sim.cvm("cvm-1").unwrap().public_key)
        .run(registrar(&other, chain.signer(0)))
        .await
        .unwrap_err();
    assert!(matches!(e.registration_error(), Some(OnchainError::WrongChain { rpc: 8453, expected: 31337 })), "{e:?}");
    assert!(sim.cvm_env("cvm-1").unwrap().is_empty());
}

#[tokio::test]
async fn expired_hash_restarts_once_without_a_second_transaction() {
    let chain = LocalChain::start();
    let sim = simulator(&chain, vec![CvmSpec::onchain("cvm-1")]).await;
    let client = sim.client_builder().build().unwrap();
    let owner = registrar(&chain, chain.signer(0));
    let before = nonce(&chain, chain.signer(0).address()).await;
    let expire = Then {
        inner: &owner,
        after: |tx| {
            sim.expire_compose_hashes();
            Ok(tx)
        },
    };
    let update = client.env_update("cvm-1").env(vars(), sim.cvm("cvm-1").unwrap().public_key);
    let (outcome, events) = support::run_recording(update, &expire).await;
    let outcome = outcome.unwrap();
    assert!(events.contains(&FlowEvent::Restarting { reason: RestartReason::Expired }));
    assert_eq!(outcome.accepted.allowed_envs_changed, Some(true));
    assert_eq!(sim.cvm_env("cvm-1").unwrap(), vars());
    assert_eq!(nonce(&chain, chain.signer(0).address()).await, before + 1, "one transaction in all");
    let statuses: Vec<u16> = sim.operations().iter().map(|op| op.status).collect();
    assert_eq!(statuses, [465, 466, 465, 202]);
}

#[tokio::test]
async fn a_hash_that_keeps_expiring_restarts_once_then_fails() {
    let chain = LocalChain::start();
    let config = chain.sim_with_one_onchain_cvm().compose_hash_ttl(Duration::ZERO);
    let sim = Simulator::start(config).await.unwrap();
    let client = sim.client_builder().build().unwrap();
    let before = nonce(&chain, chain.signer(0).address()).await;
    let e = client
        .env_update("cvm-1")
        .env(vars(), sim.cvm("cvm-1").unwrap().public_key)
        .run(registrar(&chain, chain.signer(0)))
        .await
        .unwrap_err();
    assert!(e.update_error().unwrap().is_compose_hash_invalid(), "{e:?}");
    assert!(e.registration().is_some(), "the registration is kept for a retry");
    assert_eq!(nonce(&chain, chain.signer(0).address()).await, before + 1, "registered once");
    let statuses: Vec<u16> = sim.operations().iter().map(|op| op.status).collect();
    assert_eq!(statuses, [465, 466, 465, 466]);
    assert!(sim.cvm_env("cvm-1").unwrap().is_empty());
}

#[tokio::test]
async fn a_transaction_for_another_hash_gives_467() {
    let chain = LocalChain::start();
    let sim = simulator(&chain, vec![CvmSpec::onchain("cvm-1")]).await;
    let client = sim.client_builder().build().unwrap();
    let app: Address = sim.cvm("cvm-1").unwrap().app_id.unwrap().into();
    let owner = registrar(&chain, chain.signer(0));
    // Register the right hash, then cite a transaction that registered another one.
    let other_tx =
        TransactionHash::from(chain.add_compose_hash(app, [9u8; 32].into(), chain.signer(0)).await.transaction_hash);
    let wrong = Then { inner: &owner, after: move |_| Ok(other_tx) };
    let e = client.env_update("cvm-1").env(vars(), sim.cvm("cvm-1").unwrap().public_key).run(&wrong).await.unwrap_err();
    assert!(e.update_error().unwrap().is_transaction_verification_failed(), "{e:?}");
    assert_eq!(e.registration().unwrap().transaction_hash, other_tx);
    assert!(sim.cvm_env("cvm-1").unwrap().is_empty());
}

/// Registers the hash on another app contract owned by the same key (dev account 0).
struct OnOtherContract<'a> {
    chain: &'a LocalChain,
    other: Address,
}

impl ComposeHashRegistrar for OnOtherContract<'_> {
    type Error = std::convert::Infallible;
    async fn register(&self, data: &Phase1Data, _: &Progress<'_>) -> Result<TransactionHash, Self::Error> {
        let receipt = self.chain.add_compose_hash(self.other, data.compose_hash.into(), self.chain.signer(0)).await;
        Ok(receipt.transaction_hash.into())
    }
}

#[tokio::test]
async fn a_hash_registered_on_another_contract_gives_468() {
    let chain = LocalChain::start();
    let sim = simulator(&chain, vec![CvmSpec::onchain("cvm-1")]).await;
    let client = sim.client_builder().build().unwrap();
    let other = chain.deploy_app_auth(0).await;
    let elsewhere = OnOtherContract { chain: &chain, other };
    let e =
        client.env_update("cvm-1").env(vars(), sim.cvm("cvm-1").unwrap().public_key).run(elsewhere).await.unwrap_err();
    assert!(e.update_error().unwrap().is_compose_hash_not_allowed(), "{e:?}");
    assert!(sim.cvm_env("cvm-1").unwrap().is_empty());
}

#[tokio::test]
async fn a_run_interrupted_after_the_transaction_is_repeated_without_paying_twice() {
    let chain = LocalChain::start();
    let sim = simulator(&chain, vec![CvmSpec::onchain("cvm-1")]).await;
    let client = sim.client_builder().build().unwrap();
    let owner = registrar(&chain, chain.signer(0));
    let address = chain.signer(0).address();
    let before = nonce(&chain, address).await;

    let crash = Then { inner: &owner, after: |_| Err(std::io::Error::other("process killed")) };
    let e = client.env_update("cvm-1").env(vars(), sim.cvm("cvm-1").unwrap().public_key).run(&crash).await.unwrap_err();
    assert!(matches!(e, FlowError::Registration { .. }), "{e:?}");
    assert_eq!(nonce(&chain, address).await, before + 1);
    assert!(sim.cvm_env("cvm-1").unwrap().is_empty());

    let update = client.env_update("cvm-1").env(vars(), sim.cvm("cvm-1").unwrap().public_key);
    let (outcome, events) = support::run_recording(update, &owner).await;
    let outcome = outcome.unwrap();
    assert_eq!(nonce(&chain, address).await, before + 1, "no second transaction");
    let found = events.iter().find_map(|e| match e {
        FlowEvent::AlreadyRegistered { transaction_hash } => Some(*transaction_hash),
        _ => None,
    });
    assert_eq!(found, Some(outcome.registration.unwrap().transaction_hash));
    assert_eq!(sim.cvm_env("cvm-1").unwrap(), vars());
}

#[tokio::test]
async fn two_concurrent_updates_of_one_cvm_both_land() {
    let chain = LocalChain::start();
    let config = SimulatorConfig::default()
        .cvms([CvmSpec::centralized("cvm-c")])
        .operation_duration(Duration::from_millis(800))
        .chain(ChainConfig::new(chain.endpoint.parse().unwrap()));
    let sim = Simulator::start(config).await.unwrap();
    let client = sim.client_builder().retry_on_conflict(ConflictRetry::default()).build().unwrap();
    let key = sim.cvm("cvm-c").unwrap().public_key;
    let first = EnvVars::from_pairs([("A", "first")]).unwrap();
    let second = EnvVars::from_pairs([("A", "second")]).unwrap();
    let never = MustNotRegister::default();
    let (a, b) = tokio::join!(
        client.env_update("cvm-c").env(first.clone(), key).run(&never),
        client.env_update("cvm-c").env(second.clone(), key).run(&never),
    );
    a.unwrap();
    b.unwrap();
    let statuses: Vec<u16> = sim.operations().iter().map(|op| op.status).collect();
    assert!(statuses.contains(&409), "one had to wait: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 2, "{statuses:?}");
    let seen = sim.cvm_env("cvm-c").unwrap();
    assert!(seen == first || seen == second, "the CVM sees one whole update");
    let last_accepted = sim.operations().iter().rev().find(|op| op.status == 202).unwrap().request_id.clone();
    assert!(!last_accepted.is_empty());
}

#[tokio::test]
async fn a_registrar_reused_after_the_key_signed_elsewhere_still_registers() {
    let chain = LocalChain::start();
    let sim = simulator(&chain, vec![CvmSpec::onchain("cvm-1")]).await;
    let client = sim.client_builder().build().unwrap();
    let owner = registrar(&chain, chain.signer(0));
    let key = sim.cvm("cvm-1").unwrap().public_key;
    client.env_update("cvm-1").env(vars(), key).run(&owner).await.unwrap();

    // The same key sends a transaction through another tool between the two updates.
    let elsewhere = wallet_provider(&chain.endpoint, chain.signer(0));
    let transfer = alloy::rpc::types::TransactionRequest::default().to(chain.signer(1).address()).value(U256::from(1));
    elsewhere.send_transaction(transfer).await.unwrap().get_receipt().await.unwrap();

    let next = EnvVars::from_pairs([("SECOND", "update")]).unwrap();
    let outcome =
        tokio::time::timeout(Duration::from_secs(30), client.env_update("cvm-1").env(next.clone(), key).run(&owner))
            .await
            .expect("not stuck behind a stale nonce")
            .unwrap();
    assert!(outcome.registration.is_some());
    assert_eq!(sim.cvm_env("cvm-1").unwrap(), next);
    // The simulator's deployer is the owner: it deployed the app and the KMS contract, set the
    // KMS key and registered the app; then two registrations and the transfer.
    assert_eq!(
        nonce(&chain, chain.signer(0).address()).await,
        7,
        "four set-up transactions, two registrations, one transfer"
    );
}

/// Defect: with 2 s blocks and a verifier one block behind, phase 2 sent as soon as the
/// registration was included got 467, and the flow took that 467 as final. It must send phase 2
/// again about a block later, with the same (single) registration transaction.
#[tokio::test]
async fn a_verifier_one_block_behind_still_accepts_the_update_with_one_transaction() {
    let chain = LocalChain::start_with(AnvilOptions::base_like());
    let config = chain.sim_with_one_onchain_cvm().verifier_lag(1);
    let sim = Simulator::start(config).await.unwrap();
    let client = sim.client_builder().build().unwrap();
    let owner = chain.signer(0);
    let before = nonce(&chain, owner.address()).await;

    let update = client.env_update("cvm-1").env(vars(), sim.cvm("cvm-1").unwrap().public_key);
    let started = std::time::Instant::now();
    let (outcome, events) = support::run_recording(update, registrar(&chain, owner.clone())).await;
    let elapsed = started.elapsed();
    let outcome = outcome.unwrap_or_else(|e| panic!("the lagging verifier's 467 is not final: {e:?}"));

    let sent = nonce(&chain, owner.address()).await - before;
    assert_eq!(sent, 1, "exactly one registration transaction");
    assert_eq!(outcome.registrations.len(), 1);
    assert_eq!(sim.cvm_env("cvm-1").unwrap(), vars());
    let retries = events.iter().filter(|e| matches!(e, FlowEvent::VerificationPending { .. })).count();
    assert!(retries >= 1, "the first phase 2 met the lag: {events:?}");
    let statuses: Vec<u16> = sim.operations().iter().map(|op| op.status).collect();
    assert_eq!(statuses.first(), Some(&465));
    assert_eq!(statuses.last(), Some(&202));
    assert!(statuses[1..statuses.len() - 1].iter().all(|s| *s == 467), "{statuses:?}");
    eprintln!(
        "lag test: accepted in {elapsed:.2?} with {sent} transaction(s), {retries} resend(s) after 467; statuses {statuses:?}"
    );
}
