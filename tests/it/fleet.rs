//! The fleet update (`Client::env_update_many`, `Client::env_update_app`): one registration per
//! distinct compose hash, per-CVM results and events, a failing CVM that stops no other, and a
//! rerun that sends no second transaction; offline with a counting registrar, and on anvil.
#![cfg(feature = "simulator")]

use crate::support;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use phala_cloud::onchain::{COMPOSE_HASH_ADDED_TOPIC, OnchainRegistrar};
use phala_cloud::simulator::{CvmSpec, Simulator, SimulatorConfig};
use phala_cloud::{AppId, ComposeHashRegistrar, EnvVars, FleetError, FleetEvent, FlowEvent, Phase1Data, Progress};
use phala_cloud::{FlowError, TransactionHash};
use support::anvil::{AnvilOptions, LocalChain, wallet_provider};

fn vars() -> EnvVars {
    EnvVars::from_pairs([("DATABASE_URL", "postgres://db"), ("API_TOKEN", "fleet-secret")]).unwrap()
}

/// Answers every registration with a made-up transaction (the offline simulator verifies
/// none), counting the calls per compose hash.
#[derive(Default)]
struct Counting {
    calls: AtomicUsize,
    asked: Mutex<Vec<(AppId, phala_cloud::ComposeHash)>>,
}

impl ComposeHashRegistrar for Counting {
    type Error = std::io::Error;

    async fn register(&self, data: &Phase1Data, progress: &Progress<'_>) -> Result<TransactionHash, std::io::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.asked.lock().unwrap().push((data.app_id, data.compose_hash));
        // Long enough for the other flows to ask meanwhile.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let transaction_hash = TransactionHash([data.app_id.0[0]; 32]);
        progress.emit(FlowEvent::TransactionConfirmed { transaction_hash, block_number: 1 });
        Ok(transaction_hash)
    }
}

/// An offline simulator with the contract-owned CVMs `a-0`… of app `a` and `b-0`… of app `b`.
async fn two_apps((a, na): (AppId, usize), (b, nb): (AppId, usize)) -> Simulator {
    let cvms = (0..na)
        .map(|i| CvmSpec::onchain(format!("a-{i}")).app_id(a))
        .chain((0..nb).map(|i| CvmSpec::onchain(format!("b-{i}")).app_id(b)));
    Simulator::start(SimulatorConfig::default().cvms(cvms)).await.unwrap()
}

#[tokio::test]
async fn offline_two_apps_register_once_each_and_a_missing_cvm_stops_no_other() {
    let (a, b) = (AppId([1; 20]), AppId([2; 20]));
    let sim = two_apps((a, 5), (b, 3)).await;
    let client = sim.client_builder().build().unwrap();
    let registrar = Counting::default();
    let events = Mutex::new(Vec::new());
    let mut ids: Vec<String> = (0..5).map(|i| format!("a-{i}")).collect();
    ids.insert(2, "no-such-cvm".into());
    ids.extend((0..3).map(|i| format!("b-{i}")));
    ids.push("a-0".into()); // named twice: updated once
    let fleet = client
        .env_update_many(ids, vars())
        .concurrency(3)
        .on_event(|e| events.lock().unwrap().push(e.clone()))
        .run(&registrar)
        .await
        .unwrap();

    assert_eq!(registrar.calls.load(Ordering::SeqCst), 2, "one registration per app: {:?}", registrar.asked);
    let order: Vec<&str> = fleet.updates.iter().map(|u| u.cvm_id.as_str()).collect();
    assert_eq!(order, ["a-0", "a-1", "no-such-cvm", "a-2", "a-3", "a-4", "b-0", "b-1", "b-2"]);
    for update in &fleet.updates {
        if update.cvm_id == "no-such-cvm" {
            let e = update.result.as_ref().unwrap_err();
            let status = e.encryption_key_error().and_then(|k| k.request_error()).and_then(|r| r.status());
            assert_eq!(status.map(|s| s.as_u16()), Some(404), "{e:?}");
            continue;
        }
        let outcome = update.result.as_ref().unwrap_or_else(|e| panic!("{}: {e:?}", update.cvm_id));
        let registration = outcome.registration.as_ref().unwrap();
        let app = if update.cvm_id.starts_with("a-") { a } else { b };
        assert_eq!(registration.app_id, app);
        assert_eq!(registration.transaction_hash, TransactionHash([app.0[0]; 32]));
        assert_eq!(sim.cvm_env(&update.cvm_id).unwrap(), vars(), "{}", update.cvm_id);
    }
    assert!(!fleet.all_accepted());
    assert_eq!(fleet.failures().count(), 1);
    assert_eq!(fleet.registrations().len(), 2);

    // Events are tagged: each registered CVM saw its registration confirmed (by its own call)
    // or already registered (the shared one), and each CVM finished once.
    let events = events.into_inner().unwrap();
    for update in fleet.updates.iter().filter(|u| u.result.is_ok()) {
        let mine: Vec<&FlowEvent> = events
            .iter()
            .filter_map(|e| match e {
                FleetEvent::Cvm { cvm_id, event } if *cvm_id == update.cvm_id => Some(event),
                _ => None,
            })
            .collect();
        assert!(
            mine.iter()
                .any(|e| matches!(e, FlowEvent::TransactionConfirmed { .. } | FlowEvent::AlreadyRegistered { .. })),
            "{}: {mine:?}",
            update.cvm_id
        );
        assert!(mine.iter().any(|e| matches!(e, FlowEvent::Accepted { .. })));
    }
    let confirmed = events
        .iter()
        .filter(|e| matches!(e, FleetEvent::Cvm { event: FlowEvent::TransactionConfirmed { .. }, .. }))
        .count();
    assert_eq!(confirmed, 2, "the registrar ran twice, each run reported to one CVM");
    let finished = events.iter().filter(|e| matches!(e, FleetEvent::Finished { .. })).count();
    assert_eq!(finished, 9);
}

/// The three stages, in order, whatever the concurrency: phase 1 for every CVM, then one
/// registration per group (announced with its CVMs, before the registrar is asked), then
/// phase 2 for every CVM.
#[tokio::test]
async fn offline_phase_1_for_all_then_the_registrations_then_phase_2_for_all() {
    let (a, b) = (AppId([4; 20]), AppId([5; 20]));
    let sim = two_apps((a, 4), (b, 3)).await;
    let client = sim.client_builder().build().unwrap();
    let registrar = Counting::default();
    let events = Mutex::new(Vec::new());
    let ids = ["b-0", "a-0", "a-1", "b-1", "a-2", "a-3", "b-2"];
    let fleet = client
        .env_update_many(ids, vars())
        .concurrency(2)
        .on_event(|e| events.lock().unwrap().push(e.clone()))
        .run(&registrar)
        .await
        .unwrap();
    assert!(fleet.all_accepted(), "{:?}", fleet.failures().collect::<Vec<_>>());
    assert_eq!(registrar.calls.load(Ordering::SeqCst), 2);

    let events = events.into_inner().unwrap();
    let positions = |wanted: fn(&FleetEvent) -> bool| -> Vec<usize> {
        events.iter().enumerate().filter(|(_, e)| wanted(e)).map(|(i, _)| i).collect()
    };
    let phase1 = positions(|e| matches!(e, FleetEvent::Cvm { event: FlowEvent::Phase1Sent { .. }, .. }));
    let registering = positions(|e| matches!(e, FleetEvent::Registering { .. }));
    let registered = positions(|e| matches!(e, FleetEvent::Cvm { event: FlowEvent::TransactionConfirmed { .. }, .. }));
    let phase2 = positions(|e| matches!(e, FleetEvent::Cvm { event: FlowEvent::Phase2Sent { .. }, .. }));
    assert_eq!((phase1.len(), registering.len(), registered.len(), phase2.len()), (7, 2, 2, 7), "{events:#?}");
    assert!(phase1.iter().max() < registering.iter().min(), "every phase 1 before any registration: {events:#?}");
    assert!(registering[0] < registered[0] && registered[0] < registering[1] && registering[1] < registered[1]);
    assert!(registered.iter().max() < phase2.iter().min(), "every registration before any phase 2: {events:#?}");

    // Each group is announced once, with its CVMs in the order given, first-met group first.
    let groups: Vec<(AppId, Vec<String>)> = events
        .iter()
        .filter_map(|e| match e {
            FleetEvent::Registering { app_id, cvm_ids, .. } => Some((*app_id, cvm_ids.clone())),
            _ => None,
        })
        .collect();
    let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(groups, [(b, names(&["b-0", "b-1", "b-2"])), (a, names(&["a-0", "a-1", "a-2", "a-3"]))]);
}

/// A CVM given under several names (its id, its UUID, its instance id) is updated once, under
/// the first name: one phase 1 and one phase 2 reach it, and the outcome says which names were
/// the same CVM. Two CVMs that share a name in nothing stay two.
#[tokio::test]
async fn offline_a_cvm_given_under_two_names_is_updated_once() {
    let app = AppId([7; 20]);
    let sim = two_apps((app, 2), (AppId([8; 20]), 0)).await;
    let client = sim.client_builder().build().unwrap();
    let (a0, a1) = (sim.cvm("a-0").unwrap().clone(), sim.cvm("a-1").unwrap().clone());
    let ids = ["a-0".to_owned(), a1.vm_uuid.clone(), a0.vm_uuid.clone(), "a-1".to_owned(), a0.instance_id.clone()];
    let registrar = Counting::default();
    let events = Mutex::new(Vec::new());
    let fleet = client
        .env_update_many(ids.clone(), vars())
        .on_event(|e| events.lock().unwrap().push(e.clone()))
        .run(&registrar)
        .await
        .unwrap();

    assert!(fleet.all_accepted(), "{:?}", fleet.failures().collect::<Vec<_>>());
    let updated: Vec<&str> = fleet.updates.iter().map(|u| u.cvm_id.as_str()).collect();
    assert_eq!(updated, ["a-0", a1.vm_uuid.as_str()]);
    let same: Vec<(String, String)> = fleet.same_cvm.iter().map(|s| (s.cvm_id.clone(), s.same_as.clone())).collect();
    assert_eq!(
        same,
        [
            (a0.vm_uuid.clone(), "a-0".to_owned()),
            ("a-1".to_owned(), a1.vm_uuid.clone()),
            (a0.instance_id.clone(), "a-0".to_owned())
        ]
    );
    assert_eq!(registrar.calls.load(Ordering::SeqCst), 1);
    for cvm in [&a0, &a1] {
        let sent: Vec<_> = sim
            .operations()
            .into_iter()
            .filter(|op| [&cvm.id, &cvm.hashed_id, &cvm.vm_uuid, &cvm.instance_id].contains(&&op.cvm_id))
            .map(|op| op.phase)
            .collect();
        assert_eq!(sent.len(), 2, "{}: one phase 1 and one phase 2, not {sent:?}", cvm.id);
        assert_eq!(sim.cvm_env(&cvm.id).unwrap(), vars());
    }
    // The names reported before any phase 1; no CVM finished twice.
    let events = events.into_inner().unwrap();
    let first_phase1 =
        events.iter().position(|e| matches!(e, FleetEvent::Cvm { event: FlowEvent::Phase1Sent { .. }, .. })).unwrap();
    let same_events: Vec<usize> =
        (0..events.len()).filter(|&i| matches!(events[i], FleetEvent::SameCvm { .. })).collect();
    assert_eq!(same_events.len(), 3);
    assert!(same_events.iter().all(|&i| i < first_phase1), "{events:#?}");
    assert_eq!(events.iter().filter(|e| matches!(e, FleetEvent::Finished { .. })).count(), 2);
}

/// A server that gives each CVM of an app a compose hash of its own gets no more registrations
/// out of a fleet than out of one update: two distinct hashes per app contract; the CVMs that
/// ask for more fail, saying so, with nothing registered for them.
#[tokio::test]
async fn offline_a_fleet_registers_at_most_two_distinct_hashes_per_app() {
    let app = AppId([6; 20]);
    let cvms =
        (0..4).map(|i| CvmSpec::onchain(format!("d-{i}")).app_id(app).compose_file(format!("services: {{}} # {i}")));
    let sim = Simulator::start(SimulatorConfig::default().cvms(cvms)).await.unwrap();
    let client = sim.client_builder().build().unwrap();
    let registrar = Counting::default();
    let ids = ["d-0", "d-1", "d-2", "d-3"];
    let fleet = client.env_update_many(ids, vars()).concurrency(4).run(&registrar).await.unwrap();

    assert_eq!(registrar.calls.load(Ordering::SeqCst), 2, "{:?}", registrar.asked);
    let outcomes: Vec<(&str, bool)> = fleet.updates.iter().map(|u| (u.cvm_id.as_str(), u.result.is_ok())).collect();
    assert_eq!(outcomes, [("d-0", true), ("d-1", true), ("d-2", false), ("d-3", false)]);
    for (cvm_id, e) in fleet.failures() {
        let FlowError::TooManyComposeHashes { registrations, .. } = e else { panic!("{cvm_id}: {e:?}") };
        assert!(registrations.is_empty(), "{cvm_id}: nothing registered for it");
        assert!(e.to_string().contains("distinct ones one run registers for an app contract"), "{e}");
        assert!(sim.cvm_env(cvm_id).is_none_or(|env| env != vars()), "{cvm_id}: not updated");
    }
    let asked = registrar.asked.lock().unwrap();
    assert!(asked[0] != asked[1], "two distinct hashes: {asked:?}");
}

/// A registrar that fails: every CVM of the group fails with the one error, asked once.
#[derive(Default)]
struct Failing {
    calls: AtomicUsize,
}

impl ComposeHashRegistrar for Failing {
    type Error = std::io::Error;

    async fn register(&self, _: &Phase1Data, _: &Progress<'_>) -> Result<TransactionHash, std::io::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        Err(std::io::Error::other("declined"))
    }
}

#[tokio::test]
async fn offline_a_failed_registration_is_asked_once_and_fails_its_group() {
    let app = AppId([3; 20]);
    let sim = Simulator::start(
        SimulatorConfig::default().cvms((0..4).map(|i| CvmSpec::onchain(format!("c-{i}")).app_id(app))),
    )
    .await
    .unwrap();
    let client = sim.client_builder().build().unwrap();
    let registrar = Failing::default();
    let fleet = client.env_update_app(app, vars()).run(&registrar).await.unwrap();
    assert_eq!(registrar.calls.load(Ordering::SeqCst), 1);
    assert_eq!(fleet.updates.len(), 4);
    for update in &fleet.updates {
        let e = update.result.as_ref().unwrap_err();
        assert!(matches!(e, FlowError::Registration { .. }), "{e:?}");
        assert_eq!(e.registration_error().unwrap().to_string(), "declined");
    }
}

#[tokio::test]
async fn an_app_without_cvms_is_an_error_before_anything_is_sent() {
    let sim = Simulator::start(SimulatorConfig::default().cvms([CvmSpec::onchain("x").app_id(AppId([4; 20]))]))
        .await
        .unwrap();
    let client = sim.client_builder().build().unwrap();
    let e = client.env_update_app(AppId([5; 20]), vars()).run(Counting::default()).await.unwrap_err();
    assert!(matches!(e, FleetError::List { .. }), "{e:?}");
    assert_eq!(e.request_error().and_then(|r| r.status()).map(|s| s.as_u16()), Some(404));
    let e = client.env_update_many(Vec::<String>::new(), vars()).run(Counting::default()).await.unwrap_err();
    assert!(matches!(e, FleetError::NoCvms { .. }), "{e:?}");
}

async fn registrations(chain: &LocalChain, app: Address) -> usize {
    let filter = Filter::new().address(app).event_signature(COMPOSE_HASH_ADDED_TOPIC).from_block(0);
    wallet_provider(&chain.endpoint, chain.signer(0)).get_logs(&filter).await.unwrap().len()
}

async fn nonce(chain: &LocalChain) -> u64 {
    wallet_provider(&chain.endpoint, chain.signer(0)).get_transaction_count(chain.signer(0).address()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_anvil_a_fleet_sends_one_transaction_and_a_rerun_none() {
    let chain = LocalChain::start_with(AnvilOptions { block_time: Some(1), ..AnvilOptions::default() });
    let app = chain.deploy_app_auth(0).await;
    let cvms = (0..6).map(|i| CvmSpec::onchain(format!("cvm-{i}")).app_id(app.into()));
    // With a deployer key, the simulator's KMS contract lists the app.
    let config = SimulatorConfig::default().cvms(cvms).chain(chain.sim_chain());
    let sim = Simulator::start(config).await.unwrap();
    let client = sim.client_builder().build().unwrap();
    let registrar = OnchainRegistrar::new(chain.signer(0), chain.endpoint.parse().unwrap()).unwrap();
    let before = nonce(&chain).await;

    // A partial run: three CVMs and one that does not exist.
    let fleet = client.env_update_many(["cvm-0", "cvm-1", "missing", "cvm-2"], vars()).run(&registrar).await.unwrap();
    assert_eq!(fleet.failures().map(|(id, _)| id).collect::<Vec<_>>(), ["missing"]);
    assert_eq!(fleet.registrations().len(), 1);
    assert_eq!(registrations(&chain, app).await, 1, "one ComposeHashAdded");
    assert_eq!(nonce(&chain).await, before + 1, "one transaction");
    let tx = fleet.registrations()[0].transaction_hash;

    // The whole app: the three others need the same hash, registered already: nothing sent.
    let fleet = client.env_update_app(app.into(), vars()).run(&registrar).await.unwrap();
    assert_eq!(fleet.updates.len(), 6);
    assert!(fleet.all_accepted(), "{:?}", fleet.failures().collect::<Vec<_>>());
    for i in 0..6 {
        assert_eq!(sim.cvm_env(&format!("cvm-{i}")), Some(vars()), "cvm-{i}");
    }
    // The list names each CVM by its (hashed) id, which the API takes wherever a CVM id goes.
    for update in &fleet.updates {
        let outcome = update.result.as_ref().unwrap();
        if let Some(r) = &outcome.registration {
            assert_eq!(r.transaction_hash, tx, "{}", update.cvm_id);
        }
    }
    assert_eq!(registrations(&chain, app).await, 1, "still one ComposeHashAdded");
    assert_eq!(nonce(&chain).await, before + 1, "no second transaction");
}

/// Hashes refused by the compose-hash pin take none of the fleet's two slots: the CVM whose
/// hash matches the pin is registered, the others refused, nothing registered for them.
#[tokio::test]
async fn refused_hashes_do_not_crowd_out_the_pinned_one() {
    let app = AppId([6; 20]);
    let specs = || {
        (0..3)
            .map(move |i| CvmSpec::onchain(format!("d-{i}")).app_id(app).compose_file(format!("services: {{}} # {i}")))
    };
    // d-2's hash, learnt on a twin simulator.
    let twin = Simulator::start(SimulatorConfig::default().cvms(specs())).await.unwrap();
    let probe = Counting::default();
    twin.client_builder().build().unwrap().env_update_many(["d-2"], vars()).run(&probe).await.unwrap();
    let pinned = probe.asked.lock().unwrap()[0].1;

    let sim = Simulator::start(SimulatorConfig::default().cvms(specs())).await.unwrap();
    let client = sim.client_builder().build().unwrap();
    let registrar = Counting::default();
    let fleet = client
        .env_update_many(["d-0", "d-1", "d-2"], vars())
        .expect_compose_hash(pinned)
        .run(&registrar)
        .await
        .unwrap();
    let d2 = &fleet.updates[2];
    assert!(d2.result.is_ok(), "d-2 matches the pin but: {:?}", d2.result.as_ref().err().map(|e| e.to_string()));
    for refused in &fleet.updates[..2] {
        let e = refused.result.as_ref().unwrap_err();
        assert!(matches!(e, FlowError::ComposeHashNotExpected { .. }), "{}: {e:?}", refused.cvm_id);
    }
    assert_eq!(registrar.calls.load(Ordering::SeqCst), 1, "only the pinned hash");
}
