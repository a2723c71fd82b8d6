//! The phases as values, against the offline simulator: a pending update's phase 2 is its
//! phase 1 plus the two hashes, and bad hashes or input are refused before anything is sent.
#![cfg(feature = "simulator")]

use phala_cloud::envcrypt::encrypt;
use phala_cloud::simulator::{Simulator, SimulatorConfig};
use phala_cloud::two_phase::{EnvUpdateRequest, Phase1Outcome};
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
    let key = phala_cloud::envcrypt::RecipientSecretKey::generate().unwrap().public_key();
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
