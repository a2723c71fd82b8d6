//! The test contract `contracts/AppAuth.json` on a local anvil: deployment, the owner, and what
//! `addComposeHash` does for the owner and for anyone else.
#![cfg(feature = "simulator")]

use crate::support;

use alloy::primitives::{Address, B256, b256};
use alloy::providers::Provider;
use alloy::sol_types::SolEvent;
use support::anvil::{AnvilOptions, AppAuth, LocalChain};

/// `ComposeHashAdded(bytes32)`'s topic 0, as API-FACTS.md gives it.
const COMPOSE_HASH_ADDED_TOPIC: B256 = b256!("fecb34306dd9d8b785b54d65489d06afc8822a0893ddacedff40c50a4942d0af");
const COMPOSE_HASH: B256 = b256!("0101010101010101010101010101010101010101010101010101010101010101");

#[test]
fn abi_matches_the_interface_in_api_facts() {
    use alloy::sol_types::{SolCall, SolError};
    assert_eq!(AppAuth::addComposeHashCall::SELECTOR, [0xdf, 0xc7, 0x72, 0x23]);
    assert_eq!(AppAuth::ownerCall::SELECTOR, [0x8d, 0xa5, 0xcb, 0x5b]);
    assert_eq!(AppAuth::allowedComposeHashesCall::SELECTOR, [0x2f, 0x66, 0x22, 0xe5]);
    assert_eq!(AppAuth::ComposeHashAdded::SIGNATURE_HASH, COMPOSE_HASH_ADDED_TOPIC);
    // OpenZeppelin's Ownable error, as DstackApp reverts with.
    assert_eq!(AppAuth::OwnableUnauthorizedAccount::SELECTOR, [0x11, 0x8c, 0xda, 0xa7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_adds_a_compose_hash_and_others_cannot() {
    let chain = LocalChain::start();
    let owner = chain.signer(0);
    let other = chain.signer(1);
    assert_eq!(chain.provider(0).get_chain_id().await.unwrap(), chain.chain_id);

    let address = chain.deploy_app_auth(0).await;
    let as_owner = AppAuth::new(address, chain.provider(0));
    assert_eq!(as_owner.owner().call().await.unwrap(), owner.address());
    assert!(!as_owner.allowedComposeHashes(COMPOSE_HASH).call().await.unwrap());

    // The owner: mined, successful, one non-indexed ComposeHashAdded with the hash as its data.
    let receipt = as_owner.addComposeHash(COMPOSE_HASH).send().await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status(), "{receipt:?}");
    assert_eq!(receipt.to, Some(address));
    let logs = receipt.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    assert_eq!(log.address(), address);
    assert_eq!(log.topics(), &[COMPOSE_HASH_ADDED_TOPIC]);
    assert_eq!(log.data().data.as_ref(), COMPOSE_HASH.as_slice());
    assert_eq!(log.log_decode::<AppAuth::ComposeHashAdded>().unwrap().inner.data.composeHash, COMPOSE_HASH);
    assert!(as_owner.allowedComposeHashes(COMPOSE_HASH).call().await.unwrap());

    // Anyone else: the call reverts with OwnableUnauthorizedAccount(sender)...
    let other_hash = b256!("0202020202020202020202020202020202020202020202020202020202020202");
    let as_other = AppAuth::new(address, chain.provider(1));
    let expected = AppAuth::AppAuthErrors::OwnableUnauthorizedAccount(AppAuth::OwnableUnauthorizedAccount {
        account: other.address(),
    });
    let err = as_other.addComposeHash(other_hash).call().await.unwrap_err();
    assert_eq!(err.as_decoded_interface_error::<AppAuth::AppAuthErrors>(), Some(expected.clone()), "{err}");
    // ... sending it fails at gas estimation, with the same error ...
    let err = as_other.addComposeHash(other_hash).send().await.unwrap_err();
    assert_eq!(err.as_decoded_interface_error::<AppAuth::AppAuthErrors>(), Some(expected), "{err}");
    // ... and mined anyway (fixed gas) it fails, with no log and nothing changed.
    // (A fresh provider: alloy's cached nonce counts the failed send above as used.)
    let receipt = chain.add_compose_hash(address, other_hash, other.clone()).await;
    assert!(!receipt.status(), "{receipt:?}");
    assert!(receipt.logs().is_empty());
    assert!(!as_owner.allowedComposeHashes(other_hash).call().await.unwrap());
    assert_eq!(as_owner.owner().call().await.unwrap(), owner.address());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_like_chain_mines_every_two_seconds() {
    let chain = LocalChain::start_with(AnvilOptions { chain_id: 8453, ..AnvilOptions::base_like() });
    let provider = chain.provider(0);
    assert_eq!(provider.get_chain_id().await.unwrap(), 8453);

    let address = chain.deploy_app_auth(0).await;
    assert_ne!(address, Address::ZERO);
    let before = provider.get_block_number().await.unwrap();
    let started = std::time::Instant::now();
    let receipt = chain.add_compose_hash(address, COMPOSE_HASH, chain.signer(0)).await;
    assert!(receipt.status());
    assert!(receipt.block_number.unwrap() > before);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());

    // Blocks keep coming with nothing sent, about one every 2 s.
    let a = provider.get_block_by_number(Default::default()).await.unwrap().unwrap().header;
    tokio::time::sleep(std::time::Duration::from_millis(4_500)).await;
    let b = provider.get_block_by_number(Default::default()).await.unwrap().unwrap().header;
    assert!(b.number >= a.number + 2, "{} then {}", a.number, b.number);
    assert_eq!((b.timestamp - a.timestamp) % 2, 0, "block timestamps {} and {}", a.timestamp, b.timestamp);
}

#[cfg(target_os = "linux")]
#[test]
fn dropping_the_chain_stops_anvil() {
    let chain = LocalChain::start();
    let proc_entry = std::path::PathBuf::from(format!("/proc/{}", chain.pid()));
    assert!(proc_entry.exists());
    drop(chain);
    assert!(!proc_entry.exists(), "anvil ({}) still running", proc_entry.display());
}
