//! The CVM's env-encryption key, looked up and verified (`Client::env_encryption_key`, and the
//! one-call flow without a key) against the simulator: a centralized KMS's key from either
//! shape of the CVM, a contract-owned KMS's signed key (timestamped, legacy), the faults that
//! must be refused before anything is encrypted or sent, and the check against the KMS
//! contract on anvil. Also the three GETs the simulator serves for it.
#![cfg(feature = "simulator")]

use crate::support;

use std::time::{SystemTime, UNIX_EPOCH};

use phala_cloud::onchain::{KmsCheckError, OnchainRegistrar};
use phala_cloud::simulator::{CvmSpec, KmsPubkeyReply, RecipientSecretKey, Simulator, SimulatorConfig, decrypt};
use phala_cloud::{
    AppId, Client, EncryptionKeyError, EnvVars, FlowError, FlowEvent, KeyVerification, KmsKeyAnchor, KmsSignatureError,
    KnownTransaction, SignatureForm, TransactionHash, VerifiedRecipient,
};
use serde_json::{Value, json};
use support::anvil::LocalChain;
use support::{Reply, ScriptedServer};

/// The older API version, whose CVM shape carries the key at the top level.
const OLD_VERSION: &str = "2025-10-28";

fn vars() -> EnvVars {
    EnvVars::from_pairs([("DATABASE_URL", "postgres://db"), ("API_TOKEN", "lookup-secret")]).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A registrar for the offline simulator (which does not check phase 2's transaction on any chain).
fn offline_registrar() -> KnownTransaction {
    KnownTransaction::new(TransactionHash([7; 32]))
}

/// A raw GET to the simulator, with the API key and this `X-Phala-Version` (if any).
async fn raw_get(sim: &Simulator, path: &str, version: Option<&str>) -> (u16, Value) {
    let http = phala_cloud::http_client_builder().unwrap().build().unwrap();
    let mut req = http.get(format!("{}{path}", sim.base_url())).header("x-api-key", sim.api_key());
    if let Some(version) = version {
        req = req.header("x-phala-version", version);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.headers().contains_key("x-request-id"), "{path}");
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn centralized_key_from_either_shape_and_by_any_name_of_the_cvm() {
    let secret = RecipientSecretKey::generate().unwrap();
    let sim = Simulator::start(
        SimulatorConfig::default()
            .cvms([CvmSpec::centralized("cvm-0"), CvmSpec::centralized("cvm-a").secret_key(secret.clone())]),
    )
    .await
    .unwrap();
    let cvm = sim.cvm("cvm-a").unwrap().clone();
    let newer = sim.client_builder().build().unwrap();
    let older = sim.client_builder().api_version(OLD_VERSION).build().unwrap();

    // The newer shape nests the key in kms_info, the older one has it at the top level.
    let (_, detail) = raw_get(&sim, "/api/v1/cvms/cvm-a", None).await;
    assert_eq!(detail["kms_info"]["encrypted_env_pubkey"], cvm.public_key.to_hex());
    assert!(detail.get("encrypted_env_pubkey").is_none(), "{detail}");
    let (_, basic) = raw_get(&sim, "/api/v1/cvms/cvm-a", Some(OLD_VERSION)).await;
    assert_eq!(basic["encrypted_env_pubkey"], cvm.public_key.to_hex());
    assert!(basic["kms_info"].is_null(), "{basic}");

    let app = const_hex::encode(cvm.api_app_id.0);
    let names = [
        "cvm-a".to_owned(),
        cvm.hashed_id.clone(),
        cvm.vm_uuid.to_uppercase(),
        cvm.instance_id.clone(),
        format!("app_{app}"),
        app.clone(),
        format!("0x{app}"),
    ];
    for client in [&newer, &older] {
        for name in &names {
            let key = client.env_encryption_key(name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(key.public_key(), cvm.public_key, "{name}");
            assert_eq!(key.verification(), &KeyVerification::CentralizedKms, "{name}");
            assert_eq!(key.app_id(), Some(cvm.api_app_id));
            assert!(!key.is_legacy_signature());
        }
    }

    // The key it found is the CVM's: what is encrypted to it, the CVM decrypts.
    let key = newer.env_encryption_key("cvm-a").await.unwrap();
    let blob = phala_cloud::encrypt(&vars(), key.public_key()).unwrap();
    assert_eq!(decrypt(blob.as_hex(), &secret).unwrap(), vars());
    assert!(sim.operations().is_empty(), "a lookup sends no PATCH");
}

#[tokio::test]
async fn contract_owned_key_is_checked_against_the_kms_key_the_api_reports() {
    let sim = Simulator::start(
        SimulatorConfig::default()
            .cvms([CvmSpec::onchain("cvm-t"), CvmSpec::onchain("cvm-l").kms_pubkey_reply(KmsPubkeyReply::Legacy)]),
    )
    .await
    .unwrap();
    for version in [None, Some(OLD_VERSION)] {
        let mut builder = sim.client_builder();
        if let Some(v) = version {
            builder = builder.api_version(v);
        }
        let client = builder.build().unwrap();
        let before = now();
        let key = client.env_encryption_key("cvm-t").await.unwrap();
        assert_eq!(key.public_key(), sim.cvm("cvm-t").unwrap().public_key, "{version:?}");
        assert_eq!(key.app_id(), sim.cvm("cvm-t").unwrap().app_id);
        let KeyVerification::KmsSignature { kms_key, anchor, form } = key.verification().clone() else {
            panic!("{version:?}: {:?}", key.verification())
        };
        assert_eq!(kms_key, sim.kms_public_key());
        assert_eq!(anchor, KmsKeyAnchor::ApiReported);
        let SignatureForm::Timestamped { signed_at } = form else { panic!("{form:?}") };
        assert!((before..=now()).contains(&signed_at), "{signed_at}");
        assert!(!key.is_legacy_signature());
        assert!(key.verification().to_string().contains("that the API reports"), "{}", key.verification());

        // The legacy form verifies, and says so.
        let legacy = client.env_encryption_key("cvm-l").await.unwrap();
        assert!(legacy.is_legacy_signature(), "{:?}", legacy.verification());
        assert!(matches!(legacy.verification(), KeyVerification::KmsSignature { form: SignatureForm::Legacy, .. }));
        assert!(legacy.verification().to_string().contains("no freshness window"));
    }
    assert!(sim.operations().is_empty());
}

/// Each fault the KMS reply can carry, and how the check refuses it.
fn assert_refused(reply: KmsPubkeyReply, e: &EncryptionKeyError, kms: phala_cloud::K256PublicKey) {
    assert!(e.is_verification_failure(), "{reply:?}: {e:?}");
    let source = e.signature_error().unwrap_or_else(|| panic!("{reply:?}: {e:?}"));
    match reply {
        KmsPubkeyReply::StaleTimestamp => {
            assert!(matches!(source, KmsSignatureError::Expired { age_secs: 600.., max_secs: 300 }), "{source:?}")
        }
        _ => assert!(
            matches!(source, KmsSignatureError::SignerMismatch { expected, recovered } if *expected == kms && *recovered != kms),
            "{reply:?}: {source:?}"
        ),
    }
}

#[tokio::test]
async fn a_tampered_stale_or_other_app_signature_is_refused_and_nothing_is_sent() {
    let faults = [KmsPubkeyReply::TamperedSignature, KmsPubkeyReply::StaleTimestamp, KmsPubkeyReply::SignedForOtherApp];
    let sim = Simulator::start(
        SimulatorConfig::default()
            .cvms(faults.iter().enumerate().map(|(i, f)| CvmSpec::onchain(format!("cvm-{i}")).kms_pubkey_reply(*f))),
    )
    .await
    .unwrap();
    let client = sim.client_builder().build().unwrap();
    for (i, fault) in faults.iter().enumerate() {
        let cvm = format!("cvm-{i}");
        let e = client.env_encryption_key(&cvm).await.unwrap_err();
        assert_refused(*fault, &e, sim.kms_public_key());
        assert!(
            matches!(&e, EncryptionKeyError::Signature { app_id, .. } if Some(*app_id) == sim.cvm(&cvm).unwrap().app_id)
        );
        assert!(e.to_string().contains("is not vouched for by the KMS key"), "{e}");

        // The one-call flow stops before encrypting: no event, no PATCH.
        let update = client.env_update(cvm.clone()).env_with_key_lookup(vars());
        let (outcome, events) = support::run_recording(update, offline_registrar()).await;
        let e = outcome.unwrap_err();
        let FlowError::EncryptionKey(key_error) = &e else { panic!("{fault:?}: {e:?}") };
        assert_refused(*fault, key_error, sim.kms_public_key());
        assert!(e.registrations().is_empty() && !e.is_input());
        assert!(events.is_empty(), "{fault:?}: {events:?}");
    }
    assert!(sim.operations().is_empty(), "no PATCH was sent: {:?}", sim.operations());
}

#[tokio::test]
async fn the_one_call_flow_looks_the_key_up_when_none_is_given() {
    let sim = Simulator::start(SimulatorConfig::default().cvms([
        CvmSpec::centralized("cvm-c"),
        CvmSpec::onchain("cvm-o"),
        CvmSpec::onchain("cvm-l").kms_pubkey_reply(KmsPubkeyReply::Legacy),
    ]))
    .await
    .unwrap();
    let client = sim.client_builder().build().unwrap();
    for cvm in ["cvm-c", "cvm-o", "cvm-l"] {
        let update = client.env_update(cvm).env_with_key_lookup(vars());
        let (outcome, events) = support::run_recording(update, offline_registrar()).await;
        let outcome = outcome.unwrap_or_else(|e| panic!("{cvm}: {e:?}"));
        // Encrypted to the CVM's own key: it sees the env.
        assert_eq!(sim.cvm_env(cvm).unwrap(), vars(), "{cvm}");
        let key = outcome.encryption_key.clone().unwrap();
        assert_eq!(key.public_key(), sim.cvm(cvm).unwrap().public_key);
        let FlowEvent::EncryptionKeyVerified { public_key, verification } = &events[0] else {
            panic!("{cvm}: the key comes first: {events:?}")
        };
        assert_eq!((*public_key, verification), (key.public_key(), key.verification()));
        assert!(matches!(events[1], FlowEvent::Encrypted { .. }), "{events:?}");
        match cvm {
            "cvm-c" => {
                assert_eq!(verification, &KeyVerification::CentralizedKms);
                assert!(outcome.registration.is_none());
            }
            _ => {
                assert!(matches!(
                    verification,
                    KeyVerification::KmsSignature { anchor: KmsKeyAnchor::ApiReported, .. }
                ));
                assert_eq!(key.is_legacy_signature(), cvm == "cvm-l");
                // The app-id check found the CVM's app: the registration is for it.
                assert_eq!(outcome.registration.unwrap().app_id, sim.cvm(cvm).unwrap().app_id.unwrap());
            }
        }
    }

    // A key given is used as given, and the outcome says so.
    let given = sim.cvm("cvm-c").unwrap().public_key;
    let outcome = client.env_update("cvm-c").env(vars(), given).run(offline_registrar()).await.unwrap();
    assert_eq!(outcome.encryption_key, Some(VerifiedRecipient::caller_provided(given)));
    assert_eq!(
        VerifiedRecipient::caller_provided(given).verification().to_string(),
        "given by the caller, not checked"
    );
}

/// The lookup as the wire sees it, on a scripted server: the CVM, then the KMS's key at
/// `/kms/{slug}/pubkey/{app id, 40 hex digits without 0x}`, then phase 1 and phase 2, with the
/// CVM read once (the app-id check reuses the lookup's read).
#[tokio::test]
async fn the_kms_is_asked_by_slug_for_the_bare_app_id_and_the_cvm_is_read_once() {
    let kms = k256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let app: AppId = "0xA172cedcae47474b615c54d510a5d84a8dea3032".parse().unwrap();
    let signed = support::sign_env_pubkey(&kms, &app, Some(now()));
    let cvm = json!({
        "id": "cvm_7", "name": "web", "status": "running", "resource": {}, "gateway": {},
        "app_id": "app_A172CEDCAE47474B615C54D510A5D84A8DEA3032", "kms_type": "base",
        "kms_info": { "chain_id": 8453, "dstack_kms_address": "0x0000000000000000000000000000000000000001",
                      "slug": "base-prod", "id": "kms_9", "k256_pubkey": support::k256_public(&kms).to_hex() }
    });
    let pubkey = json!({ "public_key": signed.public_key.to_hex(), "signature": const_hex::encode(signed.signature),
                          "timestamp": signed.timestamp });
    let hash = "18c6844ab5199260711a82b83367e977c1c152129c1e70deb252eae8b276cd49";
    let phase1 = json!({ "error_code": "ERR-01-005", "details": [
        { "field": "compose_hash", "value": hash }, { "field": "app_id", "value": app.to_hex() },
        { "field": "device_id", "value": "ab" }, { "field": "kms_info", "value": { "chain_id": 8453 } } ] });
    let accepted = json!({ "status": "in_progress", "correlation_id": "c-1", "allowed_envs_changed": true });
    let server = ScriptedServer::start(vec![
        Reply::json(200, &cvm.to_string()),
        Reply::json(200, &pubkey.to_string()),
        Reply::json(465, &phase1.to_string()),
        Reply::json(202, &accepted.to_string()),
    ])
    .await;
    let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
    let outcome = client.env_update("web").env_with_key_lookup(vars()).run(offline_registrar()).await.unwrap();
    assert_eq!(outcome.accepted.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(outcome.registration.unwrap().app_id, app);
    let lines: Vec<String> = server.recorded().iter().map(|r| r.request_line().to_owned()).collect();
    assert_eq!(
        lines,
        [
            "GET /api/v1/cvms/web HTTP/1.1",
            "GET /api/v1/kms/base-prod/pubkey/a172cedcae47474b615c54d510a5d84a8dea3032 HTTP/1.1",
            "PATCH /api/v1/cvms/web/envs HTTP/1.1",
            "PATCH /api/v1/cvms/web/envs HTTP/1.1",
        ]
    );
}

/// What the API leaves out or gets wrong stops the lookup with a typed error, the failed
/// request kept whole; nothing that cannot be checked is fetched.
#[tokio::test]
async fn missing_or_malformed_facts_are_typed_errors() {
    let kms = k256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let app = "a172cedcae47474b615c54d510a5d84a8dea3032";
    let k256 = support::k256_public(&kms).to_hex();
    let run = |replies: Vec<Reply>| async move {
        let server = ScriptedServer::start(replies).await;
        let client = Client::builder().base_url(&server.base_url).api_key("k").build().unwrap();
        let e = client.env_encryption_key("web").await.unwrap_err();
        (e, server.recorded().len())
    };
    let cvm = |kms_info: Value| {
        Reply::json(200, &json!({ "app_id": app, "kms_type": "base", "kms_info": kms_info }).to_string())
    };

    // A kms_type is no KMS's name (the official CLI's bug): without slug or id, nothing is asked.
    let (e, requests) = run(vec![cvm(json!({ "chain_id": 8453, "k256_pubkey": k256 }))]).await;
    assert!(matches!(&e, EncryptionKeyError::NoKms { kms_type: Some(t), .. } if t == "base"), "{e:?}");
    assert_eq!(requests, 1);
    // No KMS key to check against: the signed key is not even fetched.
    let (e, requests) = run(vec![cvm(json!({ "chain_id": 8453, "slug": "s" }))]).await;
    assert!(matches!(e, EncryptionKeyError::NoKmsKey { .. }) && e.is_verification_failure(), "{e:?}");
    assert_eq!(requests, 1);
    let (e, _) = run(vec![cvm(json!({ "chain_id": 8453, "slug": "s", "k256_pubkey": "0x02" }))]).await;
    assert!(matches!(e, EncryptionKeyError::InvalidKmsKey { .. }), "{e:?}");
    // A centralized CVM without a key; one whose key is not one.
    let (e, _) =
        run(vec![Reply::json(200, &json!({ "app_id": app, "kms_info": { "chain_id": null } }).to_string())]).await;
    assert!(matches!(e, EncryptionKeyError::NoPublicKey { .. }), "{e:?}");
    let (e, _) =
        run(vec![Reply::json(200, &json!({ "app_id": app, "encrypted_env_pubkey": "0x12" }).to_string())]).await;
    assert!(matches!(e, EncryptionKeyError::InvalidPublicKey { .. }), "{e:?}");
    // A contract-owned CVM whose app id is not an address.
    let (e, _) =
        run(vec![Reply::json(200, &json!({ "app_id": "my-app", "kms_info": { "chain_id": 1 } }).to_string())]).await;
    assert!(matches!(&e, EncryptionKeyError::InvalidAppId { reported, .. } if reported == "my-app"), "{e:?}");

    // The CVM's 404 and the KMS's 404 keep status, request id and body.
    let (e, _) = run(vec![Reply::Status(
        404,
        vec![("content-type", "application/json".into()), ("x-request-id", "rid-404".into())],
        br#"{"detail":"CVM web not found"}"#.to_vec(),
    )])
    .await;
    let EncryptionKeyError::CvmLookup { source, .. } = &e else { panic!("{e:?}") };
    assert_eq!(source.status().map(|s| s.as_u16()), Some(404));
    assert_eq!(source.request_id(), Some("rid-404"));
    assert!(!e.is_verification_failure());
    let (e, requests) = run(vec![
        cvm(json!({ "chain_id": 8453, "slug": "s", "k256_pubkey": k256 })),
        Reply::json(404, r#"{"detail":"KMS not found"}"#),
    ])
    .await;
    assert_eq!(requests, 2);
    let EncryptionKeyError::KmsLookup { kms, source, .. } = &e else { panic!("{e:?}") };
    assert_eq!(kms, "s");
    assert_eq!(source.http().and_then(|h| h.message()), Some("KMS not found"));
    // A 200 that is no signed key.
    let (e, _) = run(vec![
        cvm(json!({ "chain_id": 8453, "slug": "s", "k256_pubkey": k256 })),
        Reply::json(200, r#"{"public_key":"zz"}"#),
    ])
    .await;
    assert!(matches!(e, EncryptionKeyError::InvalidKmsReply { .. }) && e.is_verification_failure(), "{e:?}");
}

/// With an RPC, the KMS key is the one the KMS contract records: an impostor KMS key that the
/// API reports (and signs with) passes the API-reported check, and is refused on-chain.
#[tokio::test]
async fn onchain_check_against_the_kms_contract() {
    let chain = LocalChain::start();
    let rpc: url::Url = chain.endpoint.parse().unwrap();
    let sim = Simulator::start(
        SimulatorConfig::default()
            .cvms([
                CvmSpec::onchain("cvm-1"),
                CvmSpec::onchain("cvm-imp").kms_pubkey_reply(KmsPubkeyReply::ImpostorKms),
                CvmSpec::onchain("cvm-old").kms_pubkey_reply(KmsPubkeyReply::StaleTimestamp),
            ])
            .chain(chain.sim_chain()),
    )
    .await
    .unwrap();
    let kms_contract = sim.chain().unwrap().kms_contract.unwrap();
    let client = sim.client_builder().build().unwrap();

    let key = client.env_encryption_key_onchain("cvm-1", &rpc).await.unwrap();
    assert_eq!(key.public_key(), sim.cvm("cvm-1").unwrap().public_key);
    assert!(
        matches!(
            key.verification(),
            KeyVerification::KmsSignature { kms_key, anchor: KmsKeyAnchor::Onchain { kms_contract: c, pinned: false }, form: SignatureForm::Timestamped { .. } }
                if *kms_key == sim.kms_public_key() && *c == kms_contract
        ),
        "{:?}",
        key.verification()
    );
    assert!(key.verification().to_string().contains("records on-chain"), "{}", key.verification());

    // The contract named by the caller: the same key, said to be pinned; a kms_info naming
    // another contract is refused, in the call and in the flow, before anything is sent.
    let pinned = client.env_encryption_key_pinned("cvm-1", &rpc, kms_contract).await.unwrap();
    assert_eq!(pinned.public_key(), key.public_key());
    assert!(
        matches!(
            pinned.verification(),
            KeyVerification::KmsSignature { anchor: KmsKeyAnchor::Onchain { pinned: true, .. }, .. }
        ),
        "{:?}",
        pinned.verification()
    );
    let other = alloy::primitives::Address::repeat_byte(0x42);
    let e = client.env_encryption_key_pinned("cvm-1", &rpc, other).await.unwrap_err();
    assert!(
        matches!(&e, EncryptionKeyError::KmsContractNotPinned { reported, pinned, .. } if *reported == kms_contract && *pinned == other),
        "{e:?}"
    );
    assert!(e.is_verification_failure());
    let registrar = OnchainRegistrar::new(chain.signer(0), rpc.clone()).unwrap();
    let update = client.env_update("cvm-1").env_with_key_lookup(vars()).kms_rpc(rpc.clone()).kms_contract(other);
    let e = update.run(&registrar).await.unwrap_err();
    assert!(matches!(e, FlowError::EncryptionKey(ref k) if k.is_verification_failure()), "{e:?}");
    assert!(sim.operations().is_empty(), "nothing was sent: {:?}", sim.operations());

    // The impostor: vouched for by the key the API names, not by the chain's.
    let trusting = client.env_encryption_key("cvm-imp").await.unwrap();
    assert!(
        matches!(trusting.verification(), KeyVerification::KmsSignature { kms_key, .. } if *kms_key != sim.kms_public_key())
    );
    let e = client.env_encryption_key_onchain("cvm-imp", &rpc).await.unwrap_err();
    assert!(
        matches!(
            &e,
            EncryptionKeyError::Onchain(KmsCheckError::Signature { kms, source: KmsSignatureError::SignerMismatch { expected, .. } })
                if *kms == kms_contract && *expected == sim.kms_public_key()
        ),
        "{e:?}"
    );
    assert!(e.is_verification_failure() && !e.is_rpc());
    let e = client.env_encryption_key_onchain("cvm-old", &rpc).await.unwrap_err();
    assert!(matches!(e.signature_error(), Some(KmsSignatureError::Expired { .. })), "{e:?}");

    // The one-call flow with the RPC: the impostor stops it, the honest KMS gets through.
    let update = client.env_update("cvm-imp").env_with_key_lookup(vars()).kms_rpc(rpc.clone());
    let e = update.run(&registrar).await.unwrap_err();
    assert!(matches!(e, FlowError::EncryptionKey(ref k) if k.is_verification_failure()), "{e:?}");
    assert!(sim.operations().is_empty(), "nothing was sent: {:?}", sim.operations());
    let update = client.env_update("cvm-1").env_with_key_lookup(vars()).kms_rpc(rpc.clone());
    let outcome = update.run(&registrar).await.unwrap();
    assert!(matches!(
        outcome.encryption_key.unwrap().verification(),
        KeyVerification::KmsSignature { anchor: KmsKeyAnchor::Onchain { .. }, .. }
    ));
    assert!(outcome.registration.is_some());
    assert_eq!(sim.cvm_env("cvm-1").unwrap(), vars());

    // An RPC that is not there: a network failure, not a refusal; no URL in the error.
    let gone: url::Url = "http://127.0.0.1:9/v2/RPCKEY".parse().unwrap();
    let e = client.env_encryption_key_onchain("cvm-1", &gone).await.unwrap_err();
    assert!(e.is_rpc() && !e.is_verification_failure(), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("RPCKEY"), "{e:?}");
}

/// The simulator's three GETs and the app filter, as a client in another language would call
/// them: both shapes parse as the spec's types, the list holds the workspace's CVMs, the KMS
/// answers by slug or id only.
#[tokio::test]
async fn the_simulator_serves_the_cvm_the_list_and_the_kms_key() {
    let app = AppId([5; 20]);
    let sim = Simulator::start(SimulatorConfig::default().cvms([
        CvmSpec::centralized("cvm-c"),
        CvmSpec::onchain("cvm-o1").app_id(app),
        CvmSpec::onchain("cvm-o2").app_id(app),
        CvmSpec::centralized("cvm-x").workspace("elsewhere"),
    ]))
    .await
    .unwrap();
    // The second CVM of the app shares the first's key, as a KMS derives one per app; the app
    // id names the first.
    assert_eq!(sim.cvm("cvm-o2").unwrap().public_key, sim.cvm("cvm-o1").unwrap().public_key);
    let (_, first) = raw_get(&sim, &format!("/api/v1/cvms/app_{}", const_hex::encode(app.0)), None).await;
    assert_eq!(first["name"], "cvm-o1");
    let (_, one) = raw_get(&sim, "/api/v1/cvms/cvm-o1", None).await;
    assert_eq!(one["kms_type"], "ethereum");
    assert_eq!(one["kms_info"]["slug"], sim.kms_slug());
    assert_eq!(one["kms_info"]["k256_pubkey"], sim.kms_public_key().to_hex());
    assert!(one["id"].as_str().unwrap().starts_with("cvm_"));

    // Both shapes are the spec's (the generated types parse them).
    for version in [None, Some(OLD_VERSION)] {
        let mut builder = sim.client_builder();
        if let Some(v) = version {
            builder = builder.api_version(v);
        }
        let client = builder.build().unwrap();
        for cvm in ["cvm-c", "cvm-o1"] {
            let reply = client.send(|api| api.handle_get_cvm(cvm)).await.unwrap();
            let is_detail = matches!(reply.into_inner(), phala_cloud::types::Cvm::CvmInfoDetail(_));
            assert_eq!(is_detail, version.is_none(), "{cvm} {version:?}");
        }
    }

    // The list: the workspace's CVMs, by id, in either shape; the admin filters are refused.
    let (status, list) = raw_get(&sim, "/api/v1/cvms", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cvm-c", "cvm-o1", "cvm-o2"]);
    let (_, hosted) = raw_get(&sim, "/api/v1/cvms", Some(OLD_VERSION)).await;
    assert_eq!(hosted[1]["hosted"]["app_id"], const_hex::encode(app.0));
    assert_eq!(hosted[1]["hosted"]["id"], sim.cvm("cvm-o1").unwrap().vm_uuid);
    // The generated list operation parses either shape (an `anyOf` of two array types).
    for version in [None, Some(OLD_VERSION)] {
        let mut builder = sim.client_builder();
        if let Some(v) = version {
            builder = builder.api_version(v);
        }
        let client = builder.build().unwrap();
        let reply = client.send(|api| api.handle_list_cvms(None, None)).await.unwrap();
        let parsed = serde_json::to_value(reply.into_inner()).unwrap();
        let name = |c: &serde_json::Value| c["name"].as_str().unwrap().to_owned();
        assert_eq!(parsed.as_array().unwrap().iter().map(name).collect::<Vec<_>>(), ["cvm-c", "cvm-o1", "cvm-o2"]);
    }
    for query in ["user_id=usr_1", "teepod_id=3"] {
        let (status, _) = raw_get(&sim, &format!("/api/v1/cvms?{query}"), None).await;
        assert_eq!(status, 403, "{query}");
    }
    // By app, the spec's way (`GET /api/v1/apps/{app_id}/cvms`).
    let (status, by_app) = raw_get(&sim, &format!("/api/v1/apps/app_{}/cvms", const_hex::encode(app.0)), None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = by_app.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cvm-o1", "cvm-o2"]);
    let (status, _) = raw_get(&sim, &format!("/api/v1/apps/{}/cvms", AppId([9; 20])), None).await;
    assert_eq!(status, 404);

    // The KMS: by slug or id; a kms_type is not a KMS; a bad app id is 400; an app it does
    // not serve is 404.
    let bare = const_hex::encode(app.0);
    for kms in [sim.kms_slug(), "kms_sim"] {
        for app_id in [bare.clone(), format!("0x{bare}")] {
            let (status, body) = raw_get(&sim, &format!("/api/v1/kms/{kms}/pubkey/{app_id}"), None).await;
            assert_eq!(status, 200, "{kms} {app_id}: {body}");
            let signed: phala_cloud::SignedEnvPubkey = serde_json::from_value(body).unwrap();
            assert_eq!(signed.verify(&app, &sim.kms_public_key()).unwrap(), sim.cvm("cvm-o1").unwrap().public_key);
        }
    }
    let (status, body) = raw_get(&sim, &format!("/api/v1/kms/ethereum/pubkey/{bare}"), None).await;
    assert_eq!((status, body), (404, json!({ "detail": "KMS not found" })));
    let (status, _) = raw_get(&sim, &format!("/api/v1/kms/{}/pubkey/0x12", sim.kms_slug()), None).await;
    assert_eq!(status, 400);
    let (status, _) = raw_get(&sim, &format!("/api/v1/kms/{}/pubkey/{}", sim.kms_slug(), AppId([9; 20])), None).await;
    assert_eq!(status, 404);
}

/// Serves `GET /api/v1/cvms/{cvm}`: a CVM of app `0xabab…` with `fields` (its key, its KMS).
async fn serve_cvm(server: &httpmock::MockServer, cvm: &str, fields: Value) {
    let mut body = json!({
        "id": 1, "name": cvm, "status": "running", "vcpu": 1, "memory": 1, "disk_size": 1,
        "app_id": "ab".repeat(20),
    });
    body.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    server
        .mock_async(|when, then| {
            when.method("GET").path(format!("/api/v1/cvms/{cvm}"));
            then.status(200).json_body(body);
        })
        .await;
}

/// An API cannot skip the contract-owned checks by describing a CVM with a KMS contract (or a
/// KMS key) as centralized, e.g. with `chain_id: null` or `8453.0`: the key it reports beside
/// them is not taken on its word.
#[tokio::test]
async fn a_cvm_with_any_chain_fact_is_not_taken_for_a_centralized_kms() {
    let server = httpmock::MockServer::start_async().await;
    let contract = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0";
    let cases = [
        ("null-chain", json!({"chain_id": null, "kms_contract_address": contract, "slug": "k"})),
        ("float-chain", json!({"chain_id": 8453.0, "slug": "k"})),
        ("key-only", json!({"k256_pubkey": "0x0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f"})),
    ];
    for (cvm, kms_info) in &cases {
        serve_cvm(&server, cvm, json!({"encrypted_env_pubkey": "11".repeat(32), "kms_info": kms_info})).await;
    }
    let client = Client::builder().base_url(server.base_url()).api_key("k").build().unwrap();
    for (cvm, _) in cases {
        let e = client.env_encryption_key(cvm).await.unwrap_err();
        // Not the API's key: the contract-owned path asks for the KMS's signed key (which this
        // server does not serve) or a KMS key to check it against (which it does not report).
        assert!(
            matches!(
                e,
                EncryptionKeyError::KmsLookup { .. }
                    | EncryptionKeyError::NoKmsKey { .. }
                    | EncryptionKeyError::NoKms { .. }
            ),
            "{cvm}: {e:?}"
        );
    }
}

/// The KMS contract is checked only on the chain `kms_info` names: an RPC of another chain
/// (or a `kms_info` without a readable chain id) is refused before the contract is asked.
#[tokio::test]
async fn the_kms_contract_is_checked_only_on_its_own_chain() {
    let chain = LocalChain::start();
    let server = httpmock::MockServer::start_async().await;
    let contract = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0";
    for (cvm, chain_id) in [("base", json!(8453)), ("unreadable", json!("base"))] {
        let kms_info = json!({"chain_id": chain_id, "kms_contract_address": contract, "slug": "k"});
        serve_cvm(&server, cvm, json!({ "kms_info": kms_info })).await;
    }
    let kms = server
        .mock_async(|when, then| {
            when.method("GET").path_prefix("/api/v1/kms/");
            then.status(500);
        })
        .await;
    let client = Client::builder().base_url(server.base_url()).api_key("k").build().unwrap();
    let rpc: url::Url = chain.endpoint.parse().unwrap();
    for (cvm, reported) in [("base", Some(8453)), ("unreadable", None)] {
        let e = client.env_encryption_key_onchain(cvm, &rpc).await.unwrap_err();
        match &e {
            EncryptionKeyError::Onchain(KmsCheckError::WrongChain { reported: r, rpc, .. }) => {
                assert_eq!((*r, *rpc), (reported, 31_337), "{cvm}");
            }
            other => panic!("{cvm}: {other:?}"),
        }
        assert!(e.is_verification_failure(), "{cvm}");
        assert!(!format!("{e} {e:?}").contains(&chain.endpoint), "no RPC URL in the error");
    }
    assert_eq!(kms.calls_async().await, 0, "the KMS is not asked for a key that cannot be checked");
}
