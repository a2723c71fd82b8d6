//! Canary secrets (an env value, an API key, a private key) pass through every public path:
//! success, each error, `Debug` of the public types, and `tracing` at TRACE level (this crate,
//! reqwest, hyper, alloy). The test fails if a canary shows up anywhere. The CLI's output is
//! checked the same way in `tests/it/cli.rs`.
#![cfg(feature = "simulator")]

use super::Captured;
use crate::support;

use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use phala_cloud::EnvUpdateRequest;
use phala_cloud::onchain::OnchainRegistrar;
use phala_cloud::simulator::RecipientSecretKey;
use phala_cloud::simulator::{ChainConfig, CvmSpec, Simulator, SimulatorConfig};
use phala_cloud::{Client, UpdateCvmEnvsBody};
use phala_cloud::{EnvVars, encrypt};
use support::{Reply, ScriptedServer};

const ENV_CANARY: &str = "ENVCANARY-41c9e2d7";
const API_KEY_CANARY: &str = "phak_APIKEYCANARY_8d02f1";

fn canaries(key: &PrivateKeySigner) -> Vec<String> {
    let hex = const_hex::encode(key.to_bytes());
    vec![ENV_CANARY.into(), API_KEY_CANARY.into(), hex.clone(), hex.to_uppercase()]
}

fn assert_clean(what: &str, text: &str, canaries: &[String]) {
    for canary in canaries {
        assert!(!text.contains(canary.as_str()), "{what} contains a secret canary:\n{text}");
    }
}

#[test]
fn canaries_appear_in_no_output_log_or_debug() {
    crate::support::alone::run_child(module_path!(), |_| ());
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "run by canaries_appear_in_no_output_log_or_debug, alone in a process of its own"]
async fn child() {
    crate::support::alone::assert_child(module_path!());
    // The chain is the test's fixture, started before capture: anvil prints its well-known dev
    // keys at start, and alloy logs anvil's output at TRACE.
    let chain = support::anvil::LocalChain::start();
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let owner = chain.signer(0);
    let canaries = canaries(&owner);
    let mut seen = Vec::<String>::new(); // every Display and Debug text produced below

    let env = EnvVars::from_pairs([("TOKEN", ENV_CANARY)]).unwrap();
    let config = SimulatorConfig::default()
        .api_key(API_KEY_CANARY)
        .cvms([
            CvmSpec::onchain("cvm-1"),
            CvmSpec::centralized("cvm-c"),
            CvmSpec::centralized("cvm-x").workspace("other"),
        ])
        .chain(ChainConfig::new(chain.endpoint.parse().unwrap()).deployer(owner.clone()))
        .operation_duration(Duration::from_millis(300));
    seen.push(format!("{config:?}"));
    let sim = Simulator::start(config).await.unwrap();
    seen.push(format!("{sim:?}"));
    let client = sim.client_builder().build().unwrap();
    seen.push(format!("{:?}", sim.client_builder()));
    seen.push(format!("{client:?}"));
    seen.push(format!("{env:?}"));
    let pubkey = sim.cvm("cvm-1").unwrap().public_key;
    let encrypted = encrypt(&env, pubkey).unwrap();
    seen.push(format!("{encrypted:?}"));
    let request = EnvUpdateRequest::new("cvm-1", encrypted.clone(), None).unwrap();
    seen.push(format!("{request:?}"));
    let registrar = OnchainRegistrar::new(owner.clone(), chain.endpoint.parse().unwrap()).unwrap();
    seen.push(format!("{registrar:?}"));
    let from_key =
        OnchainRegistrar::from_private_key(&const_hex::encode(owner.to_bytes()), chain.endpoint.parse().unwrap())
            .unwrap();
    seen.push(format!("{from_key:?}"));
    seen.push(format!("{:?}", RecipientSecretKey::generate().unwrap()));

    // Success: the whole flow with a registration.
    let update = client.env_update("cvm-1").env(env.clone(), pubkey);
    seen.push(format!("{update:?}"));
    let (outcome, events) = support::run_recording(update, &registrar).await;
    let outcome = outcome.unwrap();
    seen.push(format!("{outcome:?}"));
    seen.extend(events.iter().map(|e| format!("{e:?}")));
    assert_eq!(sim.cvm_env("cvm-1").unwrap(), env);

    // Each error the simulator gives, through the typed error's Display and Debug.
    let body = |cvm: &str| encrypt(&env, sim.cvm(cvm).unwrap().public_key).unwrap().into_body();
    let wrong_key = sim.client_builder().api_key(format!("{API_KEY_CANARY}-wrong")).build().unwrap();
    let mut errors = vec![
        wrong_key.update_cvm_envs("cvm-c", &body("cvm-c")).await.unwrap_err(), // 401
        client.update_cvm_envs("cvm-x", &body("cvm-x")).await.unwrap_err(),    // 403
        client.update_cvm_envs("cvm-none", &body("cvm-c")).await.unwrap_err(), // 404
    ];
    client.update_cvm_envs("cvm-c", &body("cvm-c")).await.unwrap();
    errors.push(client.update_cvm_envs("cvm-c", &body("cvm-c")).await.unwrap_err()); // 409
    // A FastAPI 422 from a scripted server. (This was the simulator's 422 for an env encrypted
    // to another key until issue 12: the real server cannot decrypt, so it accepts that env and
    // the CVM fails to decrypt it; and every body the client lets through passes the schema.)
    let validation = ScriptedServer::start(vec![Reply::json(
        422,
        r#"{"detail":[{"loc":["body","encrypted_env"],"msg":"Value error, encrypted_env is malformed","type":"value_error"}]}"#,
    )])
    .await;
    let c = Client::builder().base_url(validation.base_url.clone()).api_key(API_KEY_CANARY).build().unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    errors.push(c.update_cvm_envs("cvm-c", &body("cvm-c")).await.unwrap_err()); // 422
    let mut more = body("cvm-1");
    more.env_keys = Some(vec!["TOKEN".into(), "NEW".into()]);
    errors.push(client.update_cvm_envs("cvm-1", &more).await.unwrap_err()); // 465
    more.compose_hash = Some("ab".repeat(32));
    more.transaction_hash = Some("cd".repeat(32));
    errors.push(client.update_cvm_envs("cvm-1", &more).await.unwrap_err()); // 466
    errors.push(client.update_cvm_envs("bad id", &body("cvm-c")).await.unwrap_err()); // input
    let bad_hex = UpdateCvmEnvsBody { encrypted_env: format!("{ENV_CANARY}00"), ..body("cvm-c") };
    errors.push(client.update_cvm_envs("cvm-c", &bad_hex).await.unwrap_err()); // input, the blob is not echoed
    for status in [500, 502] {
        let server = ScriptedServer::start(vec![Reply::json(status, r#"{"detail":"boom"}"#)]).await;
        let c = Client::builder().base_url(server.base_url.clone()).api_key(API_KEY_CANARY).build().unwrap();
        errors.push(c.update_cvm_envs("cvm-c", &body("cvm-c")).await.unwrap_err());
    }
    let refused = Client::builder().base_url("http://127.0.0.1:9").api_key(API_KEY_CANARY).build().unwrap();
    errors.push(refused.update_cvm_envs("cvm-c", &body("cvm-c")).await.unwrap_err());
    for e in &errors {
        seen.push(format!("{e}"));
        seen.push(format!("{e:?}"));
    }
    let statuses: Vec<Option<u16>> = errors.iter().map(|e| e.status().map(|s| s.as_u16())).collect();
    assert_eq!(
        statuses,
        [
            Some(401),
            Some(403),
            Some(404),
            Some(409),
            Some(422),
            Some(465),
            Some(466),
            None,
            None,
            Some(500),
            Some(502),
            None
        ]
    );

    // Flow errors: a registrar that is not the owner.
    let stranger = OnchainRegistrar::new(chain.signer(5), chain.endpoint.parse().unwrap()).unwrap();
    let flow_err = client
        .env_update("cvm-1")
        .env(EnvVars::from_pairs([("OTHER", ENV_CANARY)]).unwrap(), pubkey)
        .run(&stranger)
        .await
        .unwrap_err();
    seen.push(format!("{flow_err}"));
    seen.push(format!("{flow_err:?}"));
    seen.push(format!("{:?}", sim.operations()));

    for text in &seen {
        assert_clean("Display/Debug", text, &canaries);
    }
    let logs = logs.text();
    assert!(logs.contains("TRACE") && logs.contains("env_update"), "TRACE logs were captured");
    assert_clean("the TRACE log", &logs, &canaries);
}
