//! Many CVMs in one call: [`FleetUpdate::run`].
//!
//! In three stages, each over every CVM, at most `concurrency` CVMs at a time:
//! 1. each CVM's key looked up and verified, its env encrypted to it, and phase 1 sent
//!    ([`EnvUpdate`]'s own steps: a CVM accepted here is done);
//! 2. one registration per distinct (chain, app contract, compose hash) that phase 1 asked
//!    for, reported first with the CVMs that need it ([`FleetEvent::Registering`]): the first
//!    CVM of a group runs the registrar (after its app-id check), the others cite its
//!    transaction or share its failure (a declined question is asked once);
//! 3. phase 2 for every registered CVM, with the one-CVM flow's lost-reply resends and
//!    verification retries; a CVM answered 466 goes back through phase 1 and a registration
//!    on its own, still through the one [`Coalescing`] registrar, so CVMs that restart together
//!    still register each new hash once.
//!
//! Over the whole fleet at most [`MAX_REGISTRATIONS_PER_RUN`](super::MAX_REGISTRATIONS_PER_RUN)
//! distinct compose hashes are registered per app contract (and chain), as for one update: a
//! CVM whose phase 1 asks for one more fails with [`FlowError::TooManyComposeHashes`], nothing
//! registered for it. A CVM that fails leaves the others to go on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use tracing::Instrument;

use super::driver::{
    EnvUpdate, FlowError, FlowState, HashLimit, Phase1Reply, PreparedEnvUpdate, Registration, UpdateOutcome, Watch,
};
use super::registrar::{ComposeHashRegistrar, FlowEvent, Progress};
use crate::client::Client;
use crate::envcrypt::EnvVars;
use crate::error::{HttpError, SdkError};
use crate::hex::{AppId, ComposeHash, TransactionHash};
use crate::update_envs::Phase1Data;

/// How many CVMs a fleet update works on at once, by default.
pub const DEFAULT_FLEET_CONCURRENCY: usize = 8;

/// Where [`FleetUpdate`] reports its events.
type FleetCallback<'a> = Box<dyn Fn(&FleetEvent) + Send + Sync + 'a>;

/// The CVMs of a fleet update.
#[derive(Debug, Clone)]
enum Targets {
    Cvms(Vec<String>),
    App(AppId),
}

/// One env update over many CVMs: every CVM of a list, or every CVM of an app. Built by
/// [`Client::env_update_many`] or [`Client::env_update_app`].
///
/// Each CVM's env-encryption key is looked up and verified, and the env encrypted to it
/// (each CVM has its own key), as [`EnvUpdate::env_with_key_lookup`](super::EnvUpdate::env_with_key_lookup)
/// does. Then, in three stages, at most [`concurrency`](Self::concurrency) CVMs at a time:
/// phase 1 for every CVM; one registration per distinct (chain, app contract, compose hash),
/// announced with its CVMs ([`FleetEvent::Registering`]) before the registrar is asked, once
/// for each whatever the number of CVMs that need it; phase 2 for every registered CVM, with
/// [`EnvUpdate::run`](super::EnvUpdate::run)'s resends, retries and 466 restart. A CVM that
/// fails does not stop the others: the outcome has one result per CVM.
///
/// ```no_run
/// # async fn run(registrar: impl phala_cloud::ComposeHashRegistrar) -> Result<(), Box<dyn std::error::Error>> {
/// use phala_cloud::{AppId, Client, EnvVars};
///
/// let client = Client::from_env()?;
/// let app: AppId = "0x4f2c0a7b9e1d3c5f7a9b1d3e5f7a9c1b3d5e7f90".parse()?;
/// let env = EnvVars::from_pairs([("API_TOKEN", "s3cr3t")])?;
/// let fleet = client
///     .env_update_app(app, env)
///     .on_event(|event| eprintln!("{event:?}"))
///     .run(registrar)
///     .await?;
/// for update in &fleet.updates {
///     println!("{}: {}", update.cvm_id, if update.result.is_ok() { "accepted" } else { "failed" });
/// }
/// # Ok(()) }
/// ```
#[must_use = "a FleetUpdate does nothing until `run`"]
pub struct FleetUpdate<'a> {
    client: &'a Client,
    targets: Targets,
    env: EnvVars,
    env_keys: Option<Vec<String>>,
    concurrency: usize,
    phase2_attempts: Option<u32>,
    verification_retries: Option<u32>,
    verification_retry_interval: Option<Duration>,
    expected_app: Option<AppId>,
    expected_compose_hash: Option<ComposeHash>,
    #[cfg(feature = "onchain")]
    kms_rpc: Option<url::Url>,
    #[cfg(feature = "onchain")]
    kms_contract: Option<alloy::primitives::Address>,
    on_event: Option<FleetCallback<'a>>,
}

impl std::fmt::Debug for FleetUpdate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetUpdate")
            .field("targets", &self.targets)
            .field("env_keys", &self.env_keys)
            .field("concurrency", &self.concurrency)
            .field("expected_app", &self.expected_app)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts building an update of `env` on each CVM of `cvm_ids` (a CVM named twice is
    /// updated once); see [`FleetUpdate`].
    pub fn env_update_many<I, S>(&self, cvm_ids: I, env: EnvVars) -> FleetUpdate<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut ids: Vec<String> = Vec::new();
        for id in cvm_ids {
            let id = id.into();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        self.fleet(Targets::Cvms(ids), env)
    }

    /// Starts building an update of `env` on every CVM of app `app_id`, as
    /// `GET /api/v1/apps/{app_id}/cvms` lists them when the update runs; see [`FleetUpdate`].
    /// Every CVM's 465 must name `app_id` (as [`EnvUpdate::expect_app_id`](super::EnvUpdate::expect_app_id)).
    pub fn env_update_app(&self, app_id: AppId, env: EnvVars) -> FleetUpdate<'_> {
        let mut fleet = self.fleet(Targets::App(app_id), env);
        fleet.expected_app = Some(app_id);
        fleet
    }

    fn fleet(&self, targets: Targets, env: EnvVars) -> FleetUpdate<'_> {
        FleetUpdate {
            client: self,
            targets,
            env,
            env_keys: None,
            concurrency: DEFAULT_FLEET_CONCURRENCY,
            phase2_attempts: None,
            verification_retries: None,
            verification_retry_interval: None,
            expected_app: None,
            expected_compose_hash: None,
            #[cfg(feature = "onchain")]
            kms_rpc: None,
            #[cfg(feature = "onchain")]
            kms_contract: None,
            on_event: None,
        }
    }
}

impl<'a> FleetUpdate<'a> {
    /// How many CVMs are worked on at once (default [`DEFAULT_FLEET_CONCURRENCY`], at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The allowed env names, as [`EnvUpdate::env_keys`](super::EnvUpdate::env_keys), for every CVM.
    pub fn env_keys<I: IntoIterator<Item = S>, S: Into<String>>(mut self, keys: I) -> Self {
        self.env_keys = Some(keys.into_iter().map(Into::into).collect());
        self
    }

    /// The app every CVM must belong to, as [`EnvUpdate::expect_app_id`](super::EnvUpdate::expect_app_id).
    pub fn expect_app_id(mut self, app_id: AppId) -> Self {
        self.expected_app = Some(app_id);
        self
    }

    /// The compose hash every CVM's phase 1 must ask for, as
    /// [`EnvUpdate::expect_compose_hash`](super::EnvUpdate::expect_compose_hash): a CVM whose
    /// 465 names another fails, nothing registered for it.
    pub fn expect_compose_hash(mut self, compose_hash: ComposeHash) -> Self {
        self.expected_compose_hash = Some(compose_hash);
        self
    }

    /// Check each looked-up key's KMS signature on-chain, as [`EnvUpdate::kms_rpc`](super::EnvUpdate::kms_rpc).
    #[cfg(feature = "onchain")]
    pub fn kms_rpc(mut self, rpc_url: url::Url) -> Self {
        self.kms_rpc = Some(rpc_url);
        self
    }

    /// With [`kms_rpc`](Self::kms_rpc): the KMS contract every key is checked against, as
    /// [`EnvUpdate::kms_contract`](super::EnvUpdate::kms_contract).
    #[cfg(feature = "onchain")]
    pub fn kms_contract(mut self, kms_contract: alloy::primitives::Address) -> Self {
        self.kms_contract = Some(kms_contract);
        self
    }

    /// As [`EnvUpdate::phase2_attempts`](super::EnvUpdate::phase2_attempts), for every CVM.
    pub fn phase2_attempts(mut self, attempts: u32) -> Self {
        self.phase2_attempts = Some(attempts);
        self
    }

    /// As [`EnvUpdate::verification_retries`](super::EnvUpdate::verification_retries), for every CVM.
    pub fn verification_retries(mut self, retries: u32) -> Self {
        self.verification_retries = Some(retries);
        self
    }

    /// As [`EnvUpdate::verification_retry_interval`](super::EnvUpdate::verification_retry_interval), for every CVM.
    pub fn verification_retry_interval(mut self, interval: Duration) -> Self {
        self.verification_retry_interval = Some(interval);
        self
    }

    /// Sends every event: the CVMs listed, each CVM's [`FlowEvent`]s tagged with its id, and
    /// each CVM's end.
    pub fn on_event(mut self, callback: impl Fn(&FleetEvent) + Send + Sync + 'a) -> Self {
        self.on_event = Some(Box::new(callback));
        self
    }

    /// Runs the update on every CVM; see [`FleetUpdate`]. Fails only when there is nothing to
    /// update (the app's CVMs cannot be listed, or there are none); otherwise every CVM has its
    /// result in [`FleetOutcome::updates`], in the order given (listed).
    pub async fn run<R: ComposeHashRegistrar>(self, registrar: R) -> Result<FleetOutcome<R::Error>, FleetError> {
        let FleetUpdate {
            client,
            targets,
            env,
            env_keys,
            concurrency,
            phase2_attempts,
            verification_retries,
            verification_retry_interval,
            expected_app,
            expected_compose_hash,
            #[cfg(feature = "onchain")]
            kms_rpc,
            #[cfg(feature = "onchain")]
            kms_contract,
            on_event,
        } = self;
        let emit = |event: FleetEvent| {
            if let Some(callback) = &on_event {
                callback(&event);
            }
        };
        let cvm_ids = match targets {
            Targets::Cvms(ids) if ids.is_empty() => return Err(FleetError::NoCvms { app_id: None }),
            Targets::Cvms(ids) => ids,
            Targets::App(app_id) => {
                let ids = list_app_cvms(client, app_id).await?;
                if ids.is_empty() {
                    return Err(FleetError::NoCvms { app_id: Some(app_id) });
                }
                emit(FleetEvent::Listed { app_id, cvm_ids: ids.clone() });
                ids
            }
        };
        // Each CVM's own update (its key, its env, its checks) and where its events go.
        let updates: Vec<EnvUpdate<'_>> = cvm_ids
            .iter()
            .map(|cvm_id| {
                let mut update = client.env_update(cvm_id.clone()).env_with_key_lookup(env.clone());
                if let Some(keys) = &env_keys {
                    update = update.env_keys(keys.clone());
                }
                if let Some(app_id) = expected_app {
                    update = update.expect_app_id(app_id);
                }
                if let Some(compose_hash) = expected_compose_hash {
                    update = update.expect_compose_hash(compose_hash);
                }
                #[cfg(feature = "onchain")]
                if let Some(url) = &kms_rpc {
                    update = update.kms_rpc(url.clone());
                    if let Some(contract) = kms_contract {
                        update = update.kms_contract(contract);
                    }
                }
                if let Some(attempts) = phase2_attempts {
                    update = update.phase2_attempts(attempts);
                }
                if let Some(retries) = verification_retries {
                    update = update.verification_retries(retries);
                }
                if let Some(interval) = verification_retry_interval {
                    update = update.verification_retry_interval(interval);
                }
                update
            })
            .collect();
        let emit = &emit;
        let watches: Vec<Watch<'_>> = cvm_ids
            .iter()
            .map(|cvm_id| {
                let report =
                    move |event: &FlowEvent| emit(FleetEvent::Cvm { cvm_id: cvm_id.clone(), event: event.clone() });
                Watch::new(Some(Box::new(report)))
            })
            .collect();
        let coalescing = Coalescing::new(&registrar);
        let hash_limit = HashLimit::default();
        let finished = |cvm_id: &str, result: &CvmResult<R::Error>| {
            emit(FleetEvent::Finished { cvm_id: cvm_id.to_owned(), accepted: result.is_ok() })
        };

        // 1. Every CVM: its key looked up and verified, its env encrypted.
        let prepare = updates.into_iter().zip(&watches).map(|(update, watch)| async move {
            let span = update.span();
            let observe = |event: &FlowEvent| watch.observe(event);
            let prepared = update.prepare(&Progress::new(&observe)).instrument(span.clone()).await;
            (prepared, span)
        });
        // A CVM given under two names (its id and its name, say) is updated once, under the
        // first: the key lookups read both, so they tell.
        let mut same_cvm: Vec<SameCvm> = Vec::new();
        let mut steps: Vec<(Step<'_, R::Error>, tracing::Span)> = Vec::with_capacity(cvm_ids.len());
        for (i, (prepared, span)) in bounded(prepare, concurrency).await.into_iter().enumerate() {
            let step = match prepared {
                Err(e) => {
                    let result = Err(e);
                    finished(&cvm_ids[i], &result);
                    Step::Done(result)
                }
                Ok(prepared) => {
                    let first = steps.iter().position(|(step, _)| match step {
                        Step::Prepared(earlier) => earlier.same_cvm(&prepared),
                        _ => false,
                    });
                    match first {
                        Some(first) => {
                            let (cvm_id, same_as) = (cvm_ids[i].clone(), cvm_ids[first].clone());
                            emit(FleetEvent::SameCvm { cvm_id: cvm_id.clone(), same_as: same_as.clone() });
                            same_cvm.push(SameCvm { cvm_id, same_as });
                            Step::SameCvm
                        }
                        None => Step::Prepared(Box::new(prepared)),
                    }
                }
            };
            steps.push((step, span));
        }
        // Then phase 1, for every CVM still to update.
        let first = steps.into_iter().zip(&watches).zip(&cvm_ids).map(|(((step, span), watch), cvm_id)| async move {
            let Step::Prepared(prepared) = step else { return (step, span) };
            let observe = |event: &FlowEvent| watch.observe(event);
            let progress = Progress::new(&observe);
            let step = phase1(*prepared, &progress, watch).instrument(span.clone()).await;
            let step = step.unwrap_or_else(|e| Step::Done(Err(e)));
            if let Step::Done(result) = &step {
                finished(cvm_id, result);
            }
            (step, span)
        });
        let mut steps = bounded(first, concurrency).await;

        // 2. One registration per distinct (chain, app contract, compose hash), for every CVM
        // whose phase 1 asked for it: the first CVM of a group registers, the others cite its
        // transaction (or share its failure).
        for (key, members) in groups(&steps) {
            let (chain_id, app_id, compose_hash) = key;
            let ids = members.iter().map(|&i| cvm_ids[i].clone()).collect();
            emit(FleetEvent::Registering { compose_hash, app_id, chain_id, cvm_ids: ids });
            for i in members {
                let (step, span) = &mut steps[i];
                let Step::Phase1Done { prepared, state, data, transaction_hash } = step else { continue };
                let watch = &watches[i];
                let observe = |event: &FlowEvent| watch.observe(event);
                let progress = Progress::new(&observe);
                let phases = prepared.phases();
                let mut flow = prepared.flow(&phases, &progress, watch);
                flow.hash_limit = Some(&hash_limit);
                match flow.register(state, data, &coalescing).instrument(span.clone()).await {
                    Ok(registered) => *transaction_hash = Some(registered),
                    Err(e) => {
                        let result = Err(e);
                        finished(&cvm_ids[i], &result);
                        *step = Step::Done(result);
                    }
                }
            }
        }

        // 3. Every registered CVM: phase 2 (and, after a 466, its own way back through phase 1
        // and a registration, coalesced with the other CVMs' again).
        let (coalescing, hash_limit) = (&coalescing, &hash_limit);
        let last = steps.into_iter().zip(&watches).zip(&cvm_ids).map(|(((step, span), watch), cvm_id)| async move {
            let (prepared, state, data, transaction_hash) = match step {
                Step::Done(result) => return Some(result),
                Step::SameCvm => return None,
                Step::Phase1Done { prepared, state, data, transaction_hash: Some(tx) } => (prepared, state, data, tx),
                Step::Phase1Done { .. } | Step::Prepared(_) => {
                    unreachable!(
                        "every CVM is past phase 1, and each whose phase 1 asked for a registration in a group"
                    )
                }
            };
            let observe = |event: &FlowEvent| watch.observe(event);
            let progress = Progress::new(&observe);
            let phases = prepared.phases();
            let mut flow = prepared.flow(&phases, &progress, watch);
            flow.hash_limit = Some(hash_limit);
            let result = async {
                let (accepted, registrations) = flow.phase2_onward(state, data, transaction_hash, coalescing).await?;
                Ok(prepared.outcome(accepted, registrations, &progress))
            }
            .instrument(span)
            .await;
            finished(cvm_id, &result);
            Some(result)
        });
        let results = bounded(last, concurrency).await;
        drop(watches);
        let updates = cvm_ids
            .into_iter()
            .zip(results)
            .filter_map(|(cvm_id, result)| Some(CvmUpdate { cvm_id, result: result? }))
            .collect();
        Ok(FleetOutcome { updates, same_cvm })
    }
}

/// One CVM's result.
type CvmResult<E> = Result<UpdateOutcome, FlowError<Arc<E>>>;

/// Where one CVM of a fleet is between the stages.
enum Step<'a, E: std::error::Error + 'static> {
    /// Its key looked up and its env encrypted: ready for phase 1.
    Prepared(Box<PreparedEnvUpdate<'a>>),
    /// Another name of a CVM given before it: nothing more to do.
    SameCvm,
    /// Its flow ended: accepted at phase 1, or failed.
    Done(CvmResult<E>),
    /// Phase 1 asked for a registration; then (stage 2) the transaction phase 2 cites.
    Phase1Done {
        prepared: Box<PreparedEnvUpdate<'a>>,
        state: FlowState,
        data: Phase1Data,
        transaction_hash: Option<TransactionHash>,
    },
}

/// A CVM's phase 1.
async fn phase1<'a, E: std::error::Error + 'static>(
    prepared: PreparedEnvUpdate<'a>,
    progress: &Progress<'_>,
    watch: &Watch<'_>,
) -> Result<Step<'a, E>, FlowError<Arc<E>>> {
    let mut state = FlowState::default();
    let phases = prepared.phases();
    let reply = prepared.flow(&phases, progress, watch).phase1(&mut state).await?;
    Ok(match reply {
        Phase1Reply::Accepted(accepted) => {
            Step::Done(Ok(prepared.outcome(accepted, state.into_registrations(), progress)))
        }
        Phase1Reply::RegistrationRequired(data) => {
            Step::Phase1Done { prepared: Box::new(prepared), state, data: *data, transaction_hash: None }
        }
    })
}

/// The CVMs waiting for a registration, by (chain, app contract, compose hash), in the order
/// first met.
fn groups<E: std::error::Error + 'static>(steps: &[(Step<'_, E>, tracing::Span)]) -> Vec<(GroupKey, Vec<usize>)> {
    let mut groups: Vec<(GroupKey, Vec<usize>)> = Vec::new();
    for (i, (step, _)) in steps.iter().enumerate() {
        let Step::Phase1Done { data, .. } = step else { continue };
        let key = (data.chain_id(), data.app_id, data.compose_hash);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    groups
}

/// Runs `futures` on the current task, at most `limit` at once, and gives their outputs in order.
async fn bounded<F: Future>(futures: impl IntoIterator<Item = F>, limit: usize) -> Vec<F::Output> {
    futures_util::stream::iter(futures).buffered(limit.max(1)).collect().await
}

/// Lists the CVMs of `app_id` (`GET /api/v1/apps/{app_id}/cvms`), by the id each list item
/// gives: `id`, else `vm_uuid`, else (the older `HostedCvm` shape) `hosted.id`, else `name`.
async fn list_app_cvms(client: &Client, app_id: AppId) -> Result<Vec<String>, FleetError> {
    let path_id = const_hex::encode(app_id.0);
    let failed = |source: SdkError<HttpError>| FleetError::List { app_id, source: Box::new(source) };
    let body = match client.send(|api| api.handle_get_app_cvms(&path_id)).await {
        Ok(reply) => reply.raw_body().clone(),
        // A reply the generated type does not take (servers drift) is read all the same.
        Err(SdkError::InvalidReply(reply)) if !reply.body_truncated() => reply.raw_body().clone(),
        Err(e) => return Err(failed(e)),
    };
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items,
        _ => return Err(FleetError::UnreadableList { app_id }),
    };
    let mut ids: Vec<String> = Vec::new();
    for item in &items {
        let id = list_item_id(item).ok_or(FleetError::UnreadableList { app_id })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The id of one CVM of a list.
fn list_item_id(item: &Value) -> Option<String> {
    let field = |value: Option<&Value>| match value {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    field(item.get("id"))
        .or_else(|| field(item.get("vm_uuid")))
        .or_else(|| field(item.get("hosted").and_then(|h| h.get("id"))))
        .or_else(|| field(item.get("name")))
}

/// What registers once for a group: (chain id, app contract, compose hash).
type GroupKey = (Option<u64>, AppId, ComposeHash);

/// A group's registration once settled: the transaction (or the registrar's error), and
/// whether the registrar reported it included.
struct Settled<E> {
    result: Result<TransactionHash, Arc<E>>,
    included: bool,
}

/// A group's registration: settled once, by the first flow that asks.
type Group<E> = Arc<tokio::sync::OnceCell<Settled<E>>>;

impl<E> Clone for Settled<E> {
    fn clone(&self) -> Self {
        Self { result: self.result.clone(), included: self.included }
    }
}

/// A registrar over another that asks it once per (chain, app contract, compose hash): the
/// first flow to ask runs it (its events go to that flow); the others wait for that answer.
/// A flow that did not run it is told [`FlowEvent::AlreadyRegistered`] when the registrar saw
/// the transaction included, so that its phase 2 treats a lagging verifier's 467 as the
/// registering flow's does.
struct Coalescing<'r, R: ComposeHashRegistrar> {
    inner: &'r R,
    groups: Mutex<HashMap<GroupKey, Group<R::Error>>>,
}

impl<'r, R: ComposeHashRegistrar> Coalescing<'r, R> {
    fn new(inner: &'r R) -> Self {
        Self { inner, groups: Mutex::new(HashMap::new()) }
    }
}

impl<R: ComposeHashRegistrar> ComposeHashRegistrar for Coalescing<'_, R> {
    type Error = Arc<R::Error>;

    async fn register(&self, data: &Phase1Data, progress: &Progress<'_>) -> Result<TransactionHash, Self::Error> {
        let key = (data.chain_id(), data.app_id, data.compose_hash);
        let cell = self.groups.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_default().clone();
        let ran = AtomicBool::new(false);
        let settled = cell
            .get_or_init(|| async {
                ran.store(true, Ordering::Relaxed);
                let included = AtomicBool::new(false);
                let watch = |event: &FlowEvent| {
                    if matches!(event, FlowEvent::TransactionConfirmed { .. } | FlowEvent::AlreadyRegistered { .. }) {
                        included.store(true, Ordering::Relaxed);
                    }
                    progress.emit(event.clone());
                };
                let result = self.inner.register(data, &Progress::new(&watch)).await.map_err(Arc::new);
                Settled { result, included: included.load(Ordering::Relaxed) }
            })
            .await
            .clone();
        if !ran.load(Ordering::Relaxed)
            && settled.included
            && let Ok(transaction_hash) = &settled.result
        {
            progress.emit(FlowEvent::AlreadyRegistered { transaction_hash: *transaction_hash });
        }
        settled.result
    }
}

/// Every CVM's result of a [`FleetUpdate`], in the order the CVMs were given (listed). `E` is
/// the registrar's error, shared by the CVMs of a registration that failed.
#[derive(Debug)]
#[non_exhaustive]
pub struct FleetOutcome<E: std::error::Error + 'static> {
    /// One per CVM.
    pub updates: Vec<CvmUpdate<E>>,
    /// The names given for a CVM already given under another, each updated once, under the
    /// first name (its result is in [`updates`](Self::updates)).
    pub same_cvm: Vec<SameCvm>,
}

/// A name given for a CVM that was given before it under another name ([`FleetOutcome::same_cvm`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SameCvm {
    /// The name given later.
    pub cvm_id: String,
    /// The name the CVM was updated under.
    pub same_as: String,
}

/// One CVM's result in a [`FleetOutcome`].
#[derive(Debug)]
#[non_exhaustive]
pub struct CvmUpdate<E: std::error::Error + 'static> {
    /// The CVM.
    pub cvm_id: String,
    /// Its update: accepted, or why not. A failed registration's error is shared (an [`Arc`])
    /// by every CVM that needed it.
    pub result: Result<UpdateOutcome, FlowError<Arc<E>>>,
}

impl<E: std::error::Error + 'static> FleetOutcome<E> {
    /// Whether every CVM's update was accepted.
    pub fn all_accepted(&self) -> bool {
        self.updates.iter().all(|u| u.result.is_ok())
    }

    /// The CVMs whose update failed, with why.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &FlowError<Arc<E>>)> {
        self.updates.iter().filter_map(|u| u.result.as_ref().err().map(|e| (u.cvm_id.as_str(), e)))
    }

    /// The distinct registrations the CVMs cited or made (accepted or not), in the order first
    /// met: one per transaction.
    pub fn registrations(&self) -> Vec<Registration> {
        let mut seen: Vec<Registration> = Vec::new();
        for update in &self.updates {
            let made = match &update.result {
                Ok(outcome) => outcome.registrations.as_slice(),
                Err(e) => e.registrations(),
            };
            for registration in made {
                if !seen.iter().any(|r| r.transaction_hash == registration.transaction_hash) {
                    seen.push(registration.clone());
                }
            }
        }
        seen
    }
}

/// A step of a [`FleetUpdate`], for progress displays. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetEvent {
    /// The app's CVMs were listed ([`Client::env_update_app`]).
    Listed {
        /// The app.
        app_id: AppId,
        /// Its CVMs, in the order they are updated.
        cvm_ids: Vec<String>,
    },
    /// Phase 1 went through for every CVM: one registration for these CVMs, whose phase 1
    /// asked to register this compose hash on this app contract. Sent before the registrar is
    /// asked (and before its question, if it asks one).
    Registering {
        /// The compose hash.
        compose_hash: ComposeHash,
        /// The app contract.
        app_id: AppId,
        /// The chain, as phase 1's `kms_info` named it.
        chain_id: Option<u64>,
        /// The CVMs that need it, in the order given (listed).
        cvm_ids: Vec<String>,
    },
    /// `cvm_id` names the same CVM as `same_as`, given before it (the key lookups read the
    /// same CVM): it is updated once, under `same_as`. Sent after every key lookup, before any
    /// phase 1.
    SameCvm {
        /// The name given later.
        cvm_id: String,
        /// The name the CVM is updated under.
        same_as: String,
    },
    /// A step of one CVM's flow.
    Cvm {
        /// The CVM.
        cvm_id: String,
        /// The step.
        event: FlowEvent,
    },
    /// One CVM's flow ended.
    Finished {
        /// The CVM.
        cvm_id: String,
        /// Whether its update was accepted.
        accepted: bool,
    },
}

/// Why a [`FleetUpdate`] updated no CVM at all. (A CVM that fails is a result in
/// [`FleetOutcome::updates`], not this.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// `GET /api/v1/apps/{app_id}/cvms` failed.
    #[error("listing the CVMs of app {app_id} failed")]
    List {
        /// The app.
        app_id: AppId,
        /// The request's error.
        #[source]
        source: Box<SdkError<HttpError>>,
    },
    /// The list of the app's CVMs is not a JSON array of CVMs with ids.
    #[error("the list of the CVMs of app {app_id} cannot be read (not an array of CVMs with ids)")]
    UnreadableList {
        /// The app.
        app_id: AppId,
    },
    /// No CVM to update: none given, or the app has none.
    #[error("no CVM to update{}", app_id.as_ref().map_or_else(String::new, |a| format!(": app {a} has no CVMs")))]
    NoCvms {
        /// The app, when its CVMs were listed.
        app_id: Option<AppId>,
    },
}

impl FleetError {
    /// The listing request's error, if that is what failed.
    pub fn request_error(&self) -> Option<&SdkError<HttpError>> {
        match self {
            Self::List { source, .. } => Some(source),
            _ => None,
        }
    }
}
