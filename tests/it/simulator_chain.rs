//! The simulator verifying phase 2 against a real anvil node: the app contract is deployed by
//! the simulator, the compose hash registered by hand, and each way a transaction can fail to
//! prove the registration gives its status.
#![cfg(feature = "simulator")]

use crate::support;

use alloy::primitives::U256;
use alloy::providers::Provider;
use phala_cloud::simulator::AppAuth;
use phala_cloud::simulator::Simulator;
use phala_cloud::{ComposeHash, TransactionHash, UpdateCvmEnvsBody, UpdateEnvsError};
use phala_cloud::{EnvVars, encrypt};
use support::anvil::{LocalChain, wallet_provider};

struct Setup {
    chain: LocalChain,
    sim: Simulator,
    body: UpdateCvmEnvsBody,
    hash: ComposeHash,
    vars: EnvVars,
}

/// anvil, a simulator on it with one contract-owned CVM (owner: dev account 0), and phase 1 done.
async fn setup() -> Setup {
    let chain = LocalChain::start();
    let config = chain.sim_with_one_onchain_cvm();
    let sim = Simulator::start(config).await.unwrap();
    assert!(sim.verifies_chain());
    assert_eq!(sim.chain().unwrap().chain_id, chain.chain_id);
    let vars = EnvVars::from_pairs([("API_TOKEN", "chain-secret")]).unwrap();
    let body = encrypt(&vars, sim.cvm("cvm-1").unwrap().public_key).unwrap().into_body();
    let client = sim.client_builder().build().unwrap();
    let e = client.update_cvm_envs("cvm-1", &body).await.unwrap_err();
    let data = e.phase1().expect("465 with phase-1 data");
    assert_eq!(data.kms_info.as_ref().unwrap().chain_id, Some(chain.chain_id));
    assert_eq!(Some(data.app_id), sim.cvm("cvm-1").unwrap().app_id);
    Setup { hash: data.compose_hash, chain, sim, body, vars }
}

impl Setup {
    fn app(&self) -> alloy::primitives::Address {
        self.sim.cvm("cvm-1").unwrap().app_id.unwrap().into()
    }

    /// `addComposeHash(hash)` on `contract` from dev account `from`; the mined transaction's hash.
    async fn register(&self, contract: alloy::primitives::Address, hash: ComposeHash, from: usize) -> TransactionHash {
        let receipt = self.chain.add_compose_hash(contract, hash.into(), self.chain.signer(from)).await;
        receipt.transaction_hash.into()
    }

    async fn phase2(&self, tx: TransactionHash) -> Result<phala_cloud::EnvsUpdateAccepted, UpdateEnvsError> {
        let mut body = self.body.clone();
        body.compose_hash = Some(self.hash.to_hex());
        body.transaction_hash = Some(tx.to_hex());
        self.sim.client_builder().build().unwrap().update_cvm_envs("cvm-1", &body).await
    }
}

#[tokio::test]
async fn registered_hash_is_accepted_and_the_cvm_sees_the_values() {
    let s = setup().await;
    let provider = wallet_provider(&s.chain.endpoint, s.chain.signer(0));
    let owner = AppAuth::new(s.app(), &provider).owner().call().await.unwrap();
    assert_eq!(owner, s.chain.signer(0).address(), "the deployer key owns the app contract");

    let tx = s.register(s.app(), s.hash, 0).await;
    let accepted = s.phase2(tx).await.unwrap();
    assert_eq!(accepted.allowed_envs_changed, Some(true));
    assert_eq!(s.sim.cvm_env("cvm-1").unwrap(), s.vars);
}

#[tokio::test]
async fn transactions_that_prove_nothing_give_467() {
    let s = setup().await;
    let good = s.register(s.app(), s.hash, 0).await; // the hash is allowed: 468 is out of the way

    // Missing: a hash no transaction has.
    let e = s.phase2(TransactionHash([0xab; 32])).await.unwrap_err();
    assert!(e.is_transaction_verification_failed(), "{e}");
    assert!(e.to_string().contains("not found"), "{e}");

    // Reverted: addComposeHash from an account that is not the owner.
    let reverted = s.register(s.app(), s.hash, 1).await;
    let e = s.phase2(reverted).await.unwrap_err();
    assert!(e.is_transaction_verification_failed() && e.to_string().contains("reverted"), "{e}");

    // Sent to another contract (which also registered the hash).
    let other = s.chain.deploy_app_auth(0).await;
    let elsewhere = s.register(other, s.hash, 0).await;
    let e = s.phase2(elsewhere).await.unwrap_err();
    assert!(e.is_transaction_verification_failed() && e.to_string().contains("not to the app contract"), "{e}");

    // A transaction of the app contract that registered another hash.
    let another = s.register(s.app(), ComposeHash([5; 32]), 0).await;
    let e = s.phase2(another).await.unwrap_err();
    assert!(e.is_transaction_verification_failed() && e.to_string().contains("no ComposeHashAdded"), "{e}");

    // A plain transfer to the app contract's owner: not a registration either.
    let provider = wallet_provider(&s.chain.endpoint, s.chain.signer(0));
    let transfer =
        alloy::rpc::types::TransactionRequest::default().to(s.chain.signer(2).address()).value(U256::from(1));
    let receipt = provider.send_transaction(transfer).await.unwrap().get_receipt().await.unwrap();
    let e = s.phase2(receipt.transaction_hash.into()).await.unwrap_err();
    assert!(e.is_transaction_verification_failed(), "{e}");

    assert!(s.sim.cvm_env("cvm-1").unwrap().is_empty(), "nothing applied");
    // The pending hash survived the refusals: the right transaction still goes through.
    s.phase2(good).await.unwrap();
    assert_eq!(s.sim.cvm_env("cvm-1").unwrap(), s.vars);
}

#[tokio::test]
async fn a_hash_registered_on_another_contract_gives_468() {
    let s = setup().await;
    let other = s.chain.deploy_app_auth(0).await;
    let tx = s.register(other, s.hash, 0).await;
    let e = s.phase2(tx).await.unwrap_err();
    assert!(e.is_compose_hash_not_allowed(), "{e}");
    assert!(e.to_string().contains("register"), "says what to do: {e}");
    assert!(s.sim.cvm_env("cvm-1").unwrap().is_empty(), "nothing applied");
}

/// Runtime code of a minimal forwarder, as a multisig or a relayer is to the app contract: it
/// calls `target` with its own calldata, and reverts when that call reverts.
fn forwarder_code(target: alloy::primitives::Address) -> Vec<u8> {
    // CALLDATACOPY(0, 0, CALLDATASIZE); CALL(GAS, target, 0, 0, CALLDATASIZE, 0, 0);
    // ISZERO → JUMPI to REVERT(0, 0) at 0x2b; else STOP.
    let mut code = vec![0x36, 0x60, 0x00, 0x60, 0x00, 0x37, 0x60, 0x00, 0x60, 0x00, 0x36, 0x60, 0x00, 0x60, 0x00, 0x73];
    code.extend_from_slice(target.as_slice());
    code.extend_from_slice(&[0x5a, 0xf1, 0x15, 0x60, 0x2b, 0x57, 0x00, 0x5b, 0x60, 0x00, 0x60, 0x00, 0xfd]);
    code
}

/// Defect: a registration relayed through another contract (a multisig, a forwarder) was
/// refused with 467 because the transaction's `to` is not the app contract, although the app
/// contract emitted `ComposeHashAdded(hash)` in it. The forwarder is installed with anvil's
/// `anvil_setCode` and made the app contract's owner (storage slot 0 of `AppAuth`).
#[tokio::test]
async fn a_registration_relayed_through_another_contract_is_accepted() {
    use alloy::primitives::{Address, B256, Bytes};
    use alloy::sol_types::SolCall;

    let s = setup().await;
    let provider = wallet_provider(&s.chain.endpoint, s.chain.signer(0));
    let forwarder = Address::repeat_byte(0x5f);
    let _: serde_json::Value =
        provider.raw_request("anvil_setCode".into(), (forwarder, Bytes::from(forwarder_code(s.app())))).await.unwrap();
    let _: serde_json::Value = provider
        .raw_request("anvil_setStorageAt".into(), (s.app(), U256::ZERO, B256::left_padding_from(forwarder.as_slice())))
        .await
        .unwrap();
    assert_eq!(AppAuth::new(s.app(), &provider).owner().call().await.unwrap(), forwarder, "the forwarder owns the app");

    let call = phala_cloud::simulator::AppAuth::addComposeHashCall { composeHash: s.hash.into() }.abi_encode();
    let relay = alloy::rpc::types::TransactionRequest::default()
        .to(forwarder)
        .input(Bytes::from(call).into())
        .gas_limit(200_000);
    let receipt = provider.send_transaction(relay).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status(), "the forwarded addComposeHash succeeded");
    assert_eq!(receipt.to, Some(forwarder), "the transaction went to the forwarder, not to the app");
    assert!(AppAuth::new(s.app(), &provider).allowedComposeHashes(s.hash.into()).call().await.unwrap());

    let accepted = s.phase2(receipt.transaction_hash.into()).await.unwrap_or_else(|e| panic!("relayed: {e}"));
    assert_eq!(accepted.allowed_envs_changed, Some(true));
    assert_eq!(s.sim.cvm_env("cvm-1").unwrap(), s.vars);
}

/// A verifier `n` blocks behind sees a transaction only once `latest - n` reaches its block:
/// until then phase 2 gets 467 (and the pending hash survives it).
#[tokio::test]
async fn a_lagging_verifier_answers_467_until_its_view_includes_the_block() {
    let chain = LocalChain::start();
    let config = chain.sim_with_one_onchain_cvm().verifier_lag(1);
    let sim = Simulator::start(config).await.unwrap();
    let vars = EnvVars::from_pairs([("API_TOKEN", "lagging")]).unwrap();
    let mut body = encrypt(&vars, sim.cvm("cvm-1").unwrap().public_key).unwrap().into_body();
    let client = sim.client_builder().build().unwrap();
    let hash = client.update_cvm_envs("cvm-1", &body).await.unwrap_err().phase1().unwrap().compose_hash;
    let app = sim.cvm("cvm-1").unwrap().app_id.unwrap().into();
    let receipt = chain.add_compose_hash(app, hash.into(), chain.signer(0)).await;
    body.compose_hash = Some(hash.to_hex());
    body.transaction_hash = Some(TransactionHash::from(receipt.transaction_hash).to_hex());

    let e = client.update_cvm_envs("cvm-1", &body).await.unwrap_err();
    assert!(e.is_transaction_verification_failed(), "mined in the latest block, not yet seen: {e}");
    assert!(e.to_string().contains("verifier sees the chain up to block"), "{e}");

    // One more block (anvil mines one per transaction here): the verifier's view now has it.
    let provider = wallet_provider(&chain.endpoint, chain.signer(0));
    let _: serde_json::Value = provider.raw_request("anvil_mine".into(), (1u64,)).await.unwrap();
    let accepted = client.update_cvm_envs("cvm-1", &body).await.unwrap();
    assert_eq!(accepted.allowed_envs_changed, Some(true));
    assert_eq!(sim.cvm_env("cvm-1").unwrap(), vars);
}
