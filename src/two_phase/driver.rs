//! The whole two-phase flow in one call: [`drive`] (and its steps, on [`Flow`]), and its first
//! user, [`EnvUpdate::run`]. The settings every one-call flow shares ([`FlowSettings`], with
//! its builder methods made by [`flow_settings_methods`]) are here too.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tracing::Instrument;

use super::checks::{AppIdCheckError, AppIdPolicy};
use super::phases::{EnvUpdateRequest, PendingUpdate, Phase1Outcome};
use super::registrar::{ComposeHashRegistrar, FlowEvent, Progress, RestartReason};
use crate::UpdateCvmEnvsBody;
use crate::client::Client;
use crate::cvm_record::CvmRecord;
use crate::env_key::{self, Anchor, EncryptionKeyError, VerifiedRecipient};
use crate::envcrypt::{CryptError, EncryptedEnv, EnvVars, RecipientPublicKey, encrypt};
use crate::error::{SdkError, ServiceErrorKind};
use crate::hex::{AppId, ComposeHash, TransactionHash};
use crate::retry;
use crate::update_envs::{EnvsUpdateAccepted, UpdateEnvsError};
use crate::update_envs::{Phase1Data, UpdateEnvsKind};

/// How many times phase 2 is sent when its reply is lost (the same transaction each time).
pub const DEFAULT_PHASE2_ATTEMPTS: u32 = 3;

/// How many times phase 2 is sent again after a 467 for a transaction the registrar saw
/// included (the verifier is behind the chain), by default.
pub const DEFAULT_VERIFICATION_RETRIES: u32 = 5;

/// How long to wait before sending phase 2 again after such a 467, by default: about a block
/// (Base makes one every 2 s).
pub const DEFAULT_VERIFICATION_RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// The most distinct compose hashes one run registers: the first, and one after a 466 restart.
/// Phase 1 asking for a third gives [`FlowError::TooManyComposeHashes`].
pub const MAX_REGISTRATIONS_PER_RUN: usize = 2;

/// Where a one-call flow reports its events.
pub(crate) type EventCallback<'a> = Box<dyn Fn(&FlowEvent) + Send + Sync + 'a>;

/// What every one-call flow ([`EnvUpdate`], [`CvmPatch`](super::CvmPatch)) is told besides its
/// operation: when phase 2 is sent again, the app-id check, and where events go.
pub(crate) struct FlowSettings<'a> {
    pub(crate) resend: Phase2Resend,
    pub(crate) app_id_policy: AppIdPolicy,
    pub(crate) on_event: Option<EventCallback<'a>>,
}

impl Default for FlowSettings<'_> {
    fn default() -> Self {
        Self {
            resend: Phase2Resend {
                attempts: DEFAULT_PHASE2_ATTEMPTS,
                verification_retries: DEFAULT_VERIFICATION_RETRIES,
                verification_retry_interval: DEFAULT_VERIFICATION_RETRY_INTERVAL,
            },
            app_id_policy: AppIdPolicy::default(),
            on_event: None,
        }
    }
}

impl std::fmt::Debug for FlowSettings<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowSettings")
            .field("phase2_attempts", &self.resend.attempts)
            .field("verification_retries", &self.resend.verification_retries)
            .field("verification_retry_interval", &self.resend.verification_retry_interval)
            .field("app_id_policy", &self.app_id_policy)
            .finish_non_exhaustive()
    }
}

/// The builder methods of [`FlowSettings`], for a builder with a `settings` field and
/// lifetime `$lt` (one set of methods and docs for every one-call flow).
macro_rules! flow_settings_methods {
    ($lt:lifetime) => {
        /// Sends for each step of the flow (for progress displays).
        pub fn on_event(mut self, callback: impl Fn(&$crate::FlowEvent) + Send + Sync + $lt) -> Self {
            self.settings.on_event = Some(Box::new(callback));
            self
        }

        /// How many times phase 2 is sent when its reply is lost (default
        /// [`DEFAULT_PHASE2_ATTEMPTS`](crate::DEFAULT_PHASE2_ATTEMPTS), at least 1). Every send
        /// carries the same transaction.
        pub fn phase2_attempts(mut self, attempts: u32) -> Self {
            self.settings.resend.attempts = attempts.max(1);
            self
        }

        /// How many times phase 2 is sent again when it answers 467 (transaction not verified)
        /// although the registrar saw the transaction included (default
        /// [`DEFAULT_VERIFICATION_RETRIES`](crate::DEFAULT_VERIFICATION_RETRIES); 0 makes that
        /// 467 final). A verifier that reads the chain a block or two behind answers so for a
        /// transaction mined a moment ago. A 467 for a transaction the registrar did not report
        /// included ([`FlowEvent::TransactionConfirmed`](crate::FlowEvent::TransactionConfirmed)
        /// or [`FlowEvent::AlreadyRegistered`](crate::FlowEvent::AlreadyRegistered)) is always
        /// final.
        pub fn verification_retries(mut self, retries: u32) -> Self {
            self.settings.resend.verification_retries = retries;
            self
        }

        /// How long to wait before each such resend (default
        /// [`DEFAULT_VERIFICATION_RETRY_INTERVAL`](crate::DEFAULT_VERIFICATION_RETRY_INTERVAL),
        /// about a block).
        pub fn verification_retry_interval(mut self, interval: std::time::Duration) -> Self {
            self.settings.resend.verification_retry_interval = interval;
            self
        }

        /// The compose hash the caller expects phase 1 to ask for, computed on its own side
        /// (from the app compose it means the CVM to boot): a 465 naming another hash is
        /// refused before the registrar is asked
        /// ([`FlowError::ComposeHashNotExpected`](crate::FlowError::ComposeHashNotExpected)).
        /// Without it the flow registers the hash the server names, for the CVM's own app on
        /// its KMS's chain: the server builds the app compose it hashes, and this crate does
        /// not recompute it (dstack's SDKs hash the key-sorted compact JSON of an app compose,
        /// e.g. the one `GET /api/v1/cvms/{cvm_id}/compose_file` returns with the change made;
        /// whether the server normalizes it first is not documented).
        pub fn expect_compose_hash(mut self, compose_hash: $crate::ComposeHash) -> Self {
            self.settings.app_id_policy.expected_compose_hash = Some(compose_hash);
            self
        }

        /// The app the caller means: a CVM of another app is refused before anything is sent
        /// ([`FlowError::NotExpectedApp`](crate::FlowError::NotExpectedApp); the CVM is read
        /// for it, unless read already, or unless [`skip_app_id_check`](Self::skip_app_id_check)
        /// says not to read it), and a 465 naming another app contract before the registrar is
        /// asked ([`FlowError::AppIdCheck`](crate::FlowError::AppIdCheck)), whatever the CVM
        /// reports.
        pub fn expect_app_id(mut self, app_id: $crate::AppId) -> Self {
            self.settings.app_id_policy.expected = Some(app_id);
            self
        }

        /// Hands a 465 to the registrar without first reading the CVM to check that the app id
        /// it names is the CVM's own. For an API key that may update a CVM but not read it, or a
        /// registrar that makes the check itself; an [`expect_app_id`](Self::expect_app_id) pin
        /// still holds.
        pub fn skip_app_id_check(mut self) -> Self {
            self.settings.app_id_policy.enabled = false;
            self
        }
    };
}
pub(crate) use flow_settings_methods;

/// The env to send: plaintext to encrypt (to a key given, or looked up when the flow runs), or
/// already encrypted.
enum Source {
    Plain { env: EnvVars, recipient: VerifiedRecipient },
    LookUp(EnvVars),
    Encrypted(EncryptedEnv),
    Body(UpdateCvmEnvsBody),
}

/// An env update from plaintext (or an encrypted env) to an accepted update, registering the
/// compose hash on-chain when phase 1 asks for it. Built by [`Client::env_update`].
///
/// ```no_run
/// # async fn run(registrar: impl phala_cloud::ComposeHashRegistrar) -> Result<(), Box<dyn std::error::Error>> {
/// use phala_cloud::{Client, EnvVars, RecipientPublicKey};
///
/// let client = Client::from_env()?;
/// let pubkey: RecipientPublicKey = "0x…".parse()?;
/// let env = EnvVars::from_pairs([("API_TOKEN", "s3cr3t")])?;
/// let outcome = client
///     .env_update("my-cvm-id")
///     .env(env, pubkey)
///     .on_event(|event| eprintln!("{event:?}"))
///     .run(registrar)
///     .await?;
/// println!("accepted: {:?}", outcome.accepted.correlation_id);
/// # Ok(()) }
/// ```
#[must_use = "an EnvUpdate does nothing until `run`"]
pub struct EnvUpdate<'a> {
    client: &'a Client,
    cvm_id: String,
    source: Option<Source>,
    env_keys: Option<Vec<String>>,
    key_anchor: Anchor,
    settings: FlowSettings<'a>,
}

impl std::fmt::Debug for EnvUpdate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvUpdate")
            .field("cvm_id", &self.cvm_id)
            .field("env_keys", &self.env_keys)
            .field("key_anchor", &self.key_anchor)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts building an env update of `cvm_id`; see [`EnvUpdate`].
    pub fn env_update(&self, cvm_id: impl Into<String>) -> EnvUpdate<'_> {
        EnvUpdate {
            client: self,
            cvm_id: cvm_id.into(),
            source: None,
            env_keys: None,
            key_anchor: Anchor::Api,
            settings: FlowSettings::default(),
        }
    }
}

impl<'a> EnvUpdate<'a> {
    /// Plaintext env vars, encrypted when the flow runs to `recipient`, the CVM's X25519 key as
    /// the caller knows it ([`VerifiedRecipient::caller_provided`]: not checked here). To have
    /// the key looked up and verified, use [`env_with_key_lookup`](Self::env_with_key_lookup).
    pub fn env(mut self, env: EnvVars, recipient: RecipientPublicKey) -> Self {
        self.source = Some(Source::Plain { env, recipient: VerifiedRecipient::caller_provided(recipient) });
        self
    }

    /// Plaintext env vars, encrypted to a key verified already (by
    /// [`Client::env_encryption_key`]).
    pub fn env_verified(mut self, env: EnvVars, recipient: VerifiedRecipient) -> Self {
        self.source = Some(Source::Plain { env, recipient });
        self
    }

    /// Plaintext env vars, encrypted to the CVM's env-encryption key, which the flow looks up
    /// and verifies first, as [`Client::env_encryption_key`] does (with
    /// `kms_rpc`, feature `onchain`, on-chain). A key that does not verify stops the flow with
    /// [`FlowError::EncryptionKey`] before anything is encrypted or sent; a verified one is
    /// reported as [`FlowEvent::EncryptionKeyVerified`]. The CVM read for the key also serves
    /// the app-id check: it is read once.
    pub fn env_with_key_lookup(mut self, env: EnvVars) -> Self {
        self.source = Some(Source::LookUp(env));
        self
    }

    /// Check a contract-owned KMS's signature over the looked-up key
    /// ([`env_with_key_lookup`](Self::env_with_key_lookup)) against the key its KMS contract
    /// records on-chain, read over `rpc_url`, as
    /// [`Client::env_encryption_key_onchain`] does. The URL is never logged nor shown.
    #[cfg(feature = "onchain")]
    pub fn kms_rpc(mut self, rpc_url: url::Url) -> Self {
        let pinned = match &self.key_anchor {
            Anchor::Chain { pinned, .. } => *pinned,
            Anchor::Api => None,
        };
        self.key_anchor = Anchor::Chain { rpc_url, pinned };
        self
    }

    /// With [`kms_rpc`](Self::kms_rpc): check the key against this KMS contract, not the one
    /// the CVM's `kms_info` names, as [`Client::env_encryption_key_pinned`] does (a CVM whose
    /// `kms_info` names another is refused). Without `kms_rpc` it has no effect.
    #[cfg(feature = "onchain")]
    pub fn kms_contract(mut self, kms_contract: alloy::primitives::Address) -> Self {
        if let Anchor::Chain { pinned, .. } = &mut self.key_anchor {
            *pinned = Some(kms_contract);
        }
        self
    }

    /// An env encrypted already.
    pub fn encrypted(mut self, encrypted: EncryptedEnv) -> Self {
        self.source = Some(Source::Encrypted(encrypted));
        self
    }

    /// A phase-1 body built elsewhere (an `encrypted_env` from another tool, its `env_keys`).
    pub fn body(mut self, body: UpdateCvmEnvsBody) -> Self {
        self.source = Some(Source::Body(body));
        self
    }

    /// The allowed env names (by default the encrypted names). They must cover every encrypted
    /// name: a CVM drops a value whose name is not allowed.
    pub fn env_keys<I: IntoIterator<Item = S>, S: Into<String>>(mut self, keys: I) -> Self {
        self.env_keys = Some(keys.into_iter().map(Into::into).collect());
        self
    }

    flow_settings_methods!('a);

    /// Runs the flow: look the CVM's env-encryption key up and verify it (if asked:
    /// [`env_with_key_lookup`](Self::env_with_key_lookup)) → encrypt (if given plaintext) → phase 1 → on 465 check its app id against
    /// the CVM's (`GET /api/v1/cvms/{cvm_id}`, see [`skip_app_id_check`](Self::skip_app_id_check))
    /// and register the compose hash with `registrar` → phase 2 → accepted.
    ///
    /// On 466 it starts again from phase 1, once (and once more when the 466 follows a lost
    /// phase-2 reply, which may have spent the hash itself). A 409 follows the client's
    /// [`ConflictRetry`](crate::ConflictRetry). A phase 2 whose reply is lost
    /// ([`SdkError::MaybeSent`](crate::SdkError::MaybeSent) or [`NotSent`](crate::SdkError::NotSent)) is sent again
    /// with the same transaction; registration is never repeated for a hash it already
    /// registered, and at most [`MAX_REGISTRATIONS_PER_RUN`] distinct hashes are registered. A
    /// 467 for a transaction the registrar saw included is sent again after
    /// [`verification_retry_interval`](Self::verification_retry_interval), up to
    /// [`verification_retries`](Self::verification_retries) times. Every other error returns
    /// at once; every error after a registration carries the registrations made
    /// ([`FlowError::registrations`]).
    pub async fn run<R: ComposeHashRegistrar>(self, registrar: R) -> Result<UpdateOutcome, FlowError<R::Error>> {
        let span = self.span();
        let (update, on_event) = self.take_callback();
        let watch = &Watch::new(on_event);
        let observe = |event: &FlowEvent| watch.observe(event);
        let progress = Progress::new(&observe);
        async move {
            let prepared = update.prepare(&progress).await?;
            let phases = prepared.phases();
            let flow = prepared.flow(&phases, &progress, watch);
            let (accepted, registrations) = drive(&flow, &registrar).await?;
            Ok(prepared.outcome(accepted, registrations, &progress))
        }
        .instrument(span)
        .await
    }

    /// The span a run of this update goes in.
    pub(crate) fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "env_update",
            cvm_id = %self.cvm_id,
            correlation_id = tracing::field::Empty,
            compose_hash = tracing::field::Empty,
            transaction_hash = tracing::field::Empty,
        )
    }

    /// This update without its event callback, and the callback.
    pub(crate) fn take_callback(mut self) -> (Self, Option<EventCallback<'a>>) {
        let on_event = self.settings.on_event.take();
        (self, on_event)
    }

    /// What comes before phase 1: the CVM's key looked up and verified (if asked for), the env
    /// encrypted (if given plaintext) and the request checked. Nothing is sent to the CVM.
    pub(crate) async fn prepare<E: std::error::Error + 'static>(
        self,
        progress: &Progress<'_>,
    ) -> Result<PreparedEnvUpdate<'a>, FlowError<E>> {
        let EnvUpdate { client, cvm_id, source, env_keys, key_anchor, settings } = self;
        // The CVM's key, looked up and verified if asked for: before anything is encrypted.
        let mut cvm_read: Option<CvmRecord> = None;
        let source = match source {
            Some(Source::LookUp(env)) => {
                let (recipient, record) = env_key::lookup(client, &cvm_id, &key_anchor)
                    .await
                    .map_err(|e| FlowError::EncryptionKey(Box::new(e)))?;
                progress.emit(FlowEvent::EncryptionKeyVerified {
                    public_key: recipient.public_key(),
                    verification: recipient.verification().clone(),
                });
                cvm_read = Some(record);
                Some(Source::Plain { env, recipient })
            }
            other => other,
        };
        let encryption_key = match &source {
            Some(Source::Plain { recipient, .. }) => Some(recipient.clone()),
            _ => None,
        };
        // Encrypt, and check everything that can be checked before sending.
        let request = prepare(cvm_id.clone(), source, env_keys, progress)?;
        Ok(PreparedEnvUpdate {
            client,
            request,
            cvm_read,
            encryption_key,
            resend: settings.resend,
            app_id_policy: settings.app_id_policy,
        })
    }
}

/// An env update ready for phase 1 ([`EnvUpdate::prepare`]): the checked request, the CVM as
/// the key lookup read it, and the flow's settings.
pub(crate) struct PreparedEnvUpdate<'a> {
    client: &'a Client,
    request: EnvUpdateRequest,
    cvm_read: Option<CvmRecord>,
    encryption_key: Option<VerifiedRecipient>,
    resend: Phase2Resend,
    app_id_policy: AppIdPolicy,
}

impl PreparedEnvUpdate<'_> {
    /// This update's phases.
    pub(crate) fn phases(&self) -> EnvPhases<'_> {
        EnvPhases(&self.request)
    }

    /// The flow of this update, over `phases` (this update's [`EnvPhases`]).
    pub(crate) fn flow<'f, P: Phases>(
        &'f self,
        phases: &'f P,
        progress: &'f Progress<'f>,
        watch: &'f Watch<'_>,
    ) -> Flow<'f, P> {
        Flow {
            phases,
            client: self.client,
            cvm_id: self.request.cvm_id(),
            resend: &self.resend,
            app_id_policy: &self.app_id_policy,
            cvm_read: self.cvm_read.as_ref(),
            progress,
            watch,
            hash_limit: None,
        }
    }

    /// Whether this update and `other` are of the same CVM, as the key lookups read them
    /// (under two names, say): false when either did not read its CVM.
    pub(crate) fn same_cvm(&self, other: &Self) -> bool {
        match (&self.cvm_read, &other.cvm_read) {
            (Some(a), Some(b)) => a.same_cvm(b),
            _ => false,
        }
    }

    /// The outcome of an accepted update (reported, and recorded in the span).
    pub(crate) fn outcome(
        &self,
        accepted: EnvsUpdateAccepted,
        registrations: Vec<Registration>,
        progress: &Progress<'_>,
    ) -> UpdateOutcome {
        accepted_now(accepted, registrations, self.encryption_key.clone(), progress)
    }
}

/// Where a flow's events go: the caller's callback; and the transactions the registrar saw
/// included, which the flow watches for telling a lagging verifier's 467 from a final one.
pub(crate) struct Watch<'a> {
    included: Mutex<HashSet<TransactionHash>>,
    user: Option<EventCallback<'a>>,
}

impl<'a> Watch<'a> {
    /// Reporting to `user`, if any.
    pub(crate) fn new(user: Option<EventCallback<'a>>) -> Self {
        Self { included: Mutex::new(HashSet::new()), user }
    }

    /// Takes note of one event and passes it on.
    pub(crate) fn observe(&self, event: &FlowEvent) {
        if let FlowEvent::TransactionConfirmed { transaction_hash, .. }
        | FlowEvent::AlreadyRegistered { transaction_hash } = event
        {
            self.included.lock().unwrap_or_else(PoisonError::into_inner).insert(*transaction_hash);
        }
        if let Some(callback) = &self.user {
            callback(event);
        }
    }

    /// Whether the registrar reported `transaction_hash` included.
    fn was_included(&self, transaction_hash: &TransactionHash) -> bool {
        self.included.lock().unwrap_or_else(PoisonError::into_inner).contains(transaction_hash)
    }
}

/// One operation's two phases, the parameter of [`drive`]: how phase 1 is sent and read, and
/// how phase 2 carries the registered compose hash and its transaction (body fields for the
/// env update, headers for the operations that take `X-Compose-Hash`).
pub(crate) trait Phases {
    /// The operation's accepted reply.
    type Accepted;
    /// The operation's error kind.
    type Kind: ServiceErrorKind + RegistrationStatus;
    /// Phase 1: accepted at once, or a 465 with readable phase-1 data (any other error,
    /// including a 465 whose data cannot be read, as it is).
    fn phase1(
        &self,
        client: &Client,
    ) -> impl Future<Output = Result<Phase1Reply<Self::Accepted>, SdkError<Self::Kind>>>;
    /// Phase 2: exactly the phase-1 request, carrying `data`'s compose hash and
    /// `transaction_hash` as the operation carries them.
    fn phase2(
        &self,
        client: &Client,
        data: &Phase1Data,
        transaction_hash: TransactionHash,
    ) -> impl Future<Output = Result<Self::Accepted, SdkError<Self::Kind>>>;
}

/// What phase 1 gave, for [`drive`].
pub(crate) enum Phase1Reply<A> {
    /// Accepted at once.
    Accepted(A),
    /// 465: register this, then send phase 2.
    RegistrationRequired(Box<Phase1Data>),
}

/// The statuses [`drive`] acts on, named by each operation's kind.
pub(crate) trait RegistrationStatus: Sized {
    /// 466: the compose hash is unknown or expired.
    fn is_compose_hash_invalid(e: &SdkError<Self>) -> bool;
    /// 467: the transaction could not be verified.
    fn is_transaction_verification_failed(e: &SdkError<Self>) -> bool;
}

impl RegistrationStatus for UpdateEnvsKind {
    fn is_compose_hash_invalid(e: &SdkError<Self>) -> bool {
        e.is_compose_hash_invalid()
    }

    fn is_transaction_verification_failed(e: &SdkError<Self>) -> bool {
        e.is_transaction_verification_failed()
    }
}

/// The env update's phases: phase 2 in the body's `compose_hash` and `transaction_hash`.
pub(crate) struct EnvPhases<'r>(&'r EnvUpdateRequest);

impl Phases for EnvPhases<'_> {
    type Accepted = EnvsUpdateAccepted;
    type Kind = UpdateEnvsKind;

    async fn phase1(&self, client: &Client) -> Result<Phase1Reply<EnvsUpdateAccepted>, UpdateEnvsError> {
        Ok(match client.begin_env_update(self.0).await? {
            Phase1Outcome::Accepted(accepted) => Phase1Reply::Accepted(accepted),
            Phase1Outcome::RegistrationRequired(pending) => {
                Phase1Reply::RegistrationRequired(Box::new(pending.data().clone()))
            }
        })
    }

    async fn phase2(
        &self,
        client: &Client,
        data: &Phase1Data,
        transaction_hash: TransactionHash,
    ) -> Result<EnvsUpdateAccepted, UpdateEnvsError> {
        PendingUpdate::new(self.0.clone(), data.clone()).confirm(client, transaction_hash).await
    }
}

/// One operation's flow on one CVM, for [`drive`] and its steps: the operation's phases, the
/// client, the CVM, the resend rules, the app-id check (with the CVM read already made, if
/// any), and where events go.
pub(crate) struct Flow<'a, P> {
    pub(crate) phases: &'a P,
    pub(crate) client: &'a Client,
    pub(crate) cvm_id: &'a str,
    pub(crate) resend: &'a Phase2Resend,
    pub(crate) app_id_policy: &'a AppIdPolicy,
    pub(crate) cvm_read: Option<&'a CvmRecord>,
    pub(crate) progress: &'a Progress<'a>,
    pub(crate) watch: &'a Watch<'a>,
    /// The limit shared by the flows of a fleet, if this flow is one of them.
    pub(crate) hash_limit: Option<&'a HashLimit>,
}

/// The distinct compose hashes the flows of one run (a fleet's) may register per app contract
/// (and chain): at most [`MAX_REGISTRATIONS_PER_RUN`] over all of them, as for one flow, so
/// that a server answering each CVM (or each restart) with a fresh hash gets no more
/// transactions out of a fleet than out of one update.
#[derive(Default)]
pub(crate) struct HashLimit(Mutex<HashMap<AppOnChain, Vec<ComposeHash>>>);

/// An app contract on a chain (as phase 1's `kms_info` names it).
type AppOnChain = (Option<u64>, AppId);

impl HashLimit {
    /// Whether `data`'s hash may be registered: one admitted already, or a new one within the
    /// limit (then admitted).
    fn admit(&self, data: &Phase1Data) -> bool {
        let mut admitted = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let hashes = admitted.entry((data.chain_id(), data.app_id)).or_default();
        if hashes.contains(&data.compose_hash) {
            return true;
        }
        if hashes.len() >= MAX_REGISTRATIONS_PER_RUN {
            return false;
        }
        hashes.push(data.compose_hash);
        true
    }
}

/// What a flow has done so far: its registrations (oldest first), its restart budget, its
/// phase-1 sends. Owned, so that a flow can stop between steps and go on later (a fleet runs
/// each step for every CVM before the next).
#[derive(Default)]
pub(crate) struct FlowState {
    registrations: Vec<Registration>,
    restarts: RestartBudget,
    phase1_attempt: u32,
    /// A phase-2 reply was lost after the request may have reached the server: from then on
    /// the update may have been applied, whatever fails next.
    lost_phase2_reply: bool,
}

impl FlowState {
    /// The registrations made, oldest first.
    pub(crate) fn into_registrations(self) -> Vec<Registration> {
        self.registrations
    }
}

/// The two-phase flow of one operation, top to bottom: phase 1 → on 465 check its app id and
/// register the compose hash (once per hash, at most [`MAX_REGISTRATIONS_PER_RUN`]) → phase 2
/// (sent again on a lost reply, and on a 467 for an included transaction) → back to phase 1
/// on a 466 while the restart budget lasts. Returns the accepted reply and every registration
/// made, oldest first.
pub(crate) async fn drive<P: Phases, R: ComposeHashRegistrar>(
    flow: &Flow<'_, P>,
    registrar: &R,
) -> Result<(P::Accepted, Vec<Registration>), FlowError<R::Error, P::Kind>>
where
    P::Kind: std::fmt::Debug + std::fmt::Display + 'static,
{
    let mut state = FlowState::default();
    let data = match flow.phase1(&mut state).await? {
        Phase1Reply::Accepted(accepted) => return Ok((accepted, state.registrations)),
        Phase1Reply::RegistrationRequired(data) => *data,
    };
    let transaction_hash = flow.register(&mut state, &data, registrar).await?;
    flow.phase2_onward(state, data, transaction_hash, registrar).await
}

impl<P: Phases> Flow<'_, P>
where
    P::Kind: std::fmt::Debug + std::fmt::Display + 'static,
{
    /// Phase 1: accepted, or a 465's phase-1 data (reported).
    pub(crate) async fn phase1<E: std::error::Error + 'static>(
        &self,
        state: &mut FlowState,
    ) -> Result<Phase1Reply<P::Accepted>, FlowError<E, P::Kind>> {
        if state.phase1_attempt == 0
            && let Err(source) = self.app_id_policy.check_before_sending(self.client, self.cvm_id, self.cvm_read).await
        {
            return Err(FlowError::NotExpectedApp(Box::new(source)));
        }
        state.phase1_attempt += 1;
        self.progress.emit(FlowEvent::Phase1Sent { attempt: state.phase1_attempt });
        let data = match self.phases.phase1(self.client).await {
            Ok(Phase1Reply::RegistrationRequired(data)) => data,
            Ok(accepted) => return Ok(accepted),
            Err(source) if state.registrations.is_empty() => return Err(FlowError::Phase1(source)),
            Err(source) => {
                let registrations = std::mem::take(&mut state.registrations);
                // The hash is registered now: this phase 1 itself may have applied the update.
                let may_have_applied = state.lost_phase2_reply || source.may_have_been_applied();
                return Err(FlowError::Phase1AfterRegistration { registrations, source, may_have_applied });
            }
        };
        tracing::Span::current().record("compose_hash", tracing::field::display(data.compose_hash));
        self.progress.emit(FlowEvent::RegistrationRequired {
            compose_hash: data.compose_hash,
            app_id: data.app_id,
            chain_id: data.chain_id(),
        });
        Ok(Phase1Reply::RegistrationRequired(data))
    }

    /// Registers phase 1's compose hash, unless this flow did already; never a third one; only
    /// for the app the caller means. Gives the transaction phase 2 cites.
    pub(crate) async fn register<R: ComposeHashRegistrar>(
        &self,
        state: &mut FlowState,
        data: &Phase1Data,
        registrar: &R,
    ) -> Result<TransactionHash, FlowError<R::Error, P::Kind>> {
        let earlier =
            state.registrations.iter().find(|r| r.compose_hash == data.compose_hash && r.app_id == data.app_id);
        let transaction_hash = match earlier {
            Some(r) => r.transaction_hash,
            None if state.registrations.len() >= MAX_REGISTRATIONS_PER_RUN => return Err(too_many(state, data)),
            None => {
                // Sign only the hash the caller computed, when pinned.
                if let Some(expected) = self.app_id_policy.expected_compose_hash
                    && expected != data.compose_hash
                {
                    tracing::warn!(%expected, asked = %data.compose_hash, "phase 1 asks for another compose hash than the expected one; not signing");
                    return Err(FlowError::ComposeHashNotExpected {
                        expected,
                        refused: data.compose_hash,
                        registrations: std::mem::take(&mut state.registrations),
                        may_have_applied: state.lost_phase2_reply,
                    });
                }
                // Sign only for the app the user means.
                if let Err(source) = self
                    .app_id_policy
                    .check(self.client, self.cvm_id, data.app_id, data.chain_id(), self.cvm_read)
                    .await
                {
                    return Err(FlowError::AppIdCheck {
                        compose_hash: data.compose_hash,
                        app_id: data.app_id,
                        source: Box::new(source),
                        registrations: std::mem::take(&mut state.registrations),
                        may_have_applied: state.lost_phase2_reply,
                    });
                }
                // Within the fleet's limit: counted only for a hash that passed every check.
                if self.hash_limit.is_some_and(|limit| !limit.admit(data)) {
                    return Err(too_many(state, data));
                }
                let transaction_hash = match registrar.register(data, self.progress).await {
                    Ok(transaction_hash) => transaction_hash,
                    Err(source) => {
                        return Err(FlowError::Registration {
                            compose_hash: data.compose_hash,
                            app_id: data.app_id,
                            source,
                            registrations: std::mem::take(&mut state.registrations),
                            may_have_applied: state.lost_phase2_reply,
                        });
                    }
                };
                state.registrations.push(Registration {
                    compose_hash: data.compose_hash,
                    app_id: data.app_id,
                    chain_id: data.chain_id(),
                    transaction_hash,
                });
                transaction_hash
            }
        };
        tracing::Span::current().record("transaction_hash", tracing::field::display(transaction_hash));
        Ok(transaction_hash)
    }

    /// Phase 2 citing `transaction_hash`; back to phase 1 (and a registration, and phase 2) on
    /// a 466 while the restart budget lasts.
    pub(crate) async fn phase2_onward<R: ComposeHashRegistrar>(
        &self,
        mut state: FlowState,
        mut data: Phase1Data,
        mut transaction_hash: TransactionHash,
        registrar: &R,
    ) -> Result<(P::Accepted, Vec<Registration>), FlowError<R::Error, P::Kind>> {
        loop {
            let (result, lost_reply) = self.send_phase2(&data, transaction_hash).await;
            state.lost_phase2_reply |= lost_reply;
            match result {
                Ok(accepted) => return Ok((accepted, state.registrations)),
                Err(e)
                    if P::Kind::is_compose_hash_invalid(&e)
                        && let Some(reason) = state.restarts.spend(lost_reply) =>
                {
                    match reason {
                        RestartReason::LostPhase2Reply => {
                            tracing::info!("466 after a lost phase-2 reply: asking phase 1 whether it was applied")
                        }
                        _ => tracing::info!("466: compose hash invalid or expired; starting again from phase 1"),
                    }
                    self.progress.emit(FlowEvent::Restarting { reason });
                }
                Err(source) => {
                    let registration = Registration {
                        compose_hash: data.compose_hash,
                        app_id: data.app_id,
                        chain_id: data.chain_id(),
                        transaction_hash,
                    };
                    let may_have_applied = state.lost_phase2_reply || source.may_have_been_applied();
                    return Err(FlowError::Phase2 {
                        registration: Box::new(registration),
                        registrations: state.registrations,
                        source,
                        may_have_applied,
                    });
                }
            }
            data = match self.phase1(&mut state).await? {
                Phase1Reply::Accepted(accepted) => return Ok((accepted, state.registrations)),
                Phase1Reply::RegistrationRequired(data) => *data,
            };
            transaction_hash = self.register(&mut state, &data, registrar).await?;
        }
    }
}

/// [`FlowError::TooManyComposeHashes`] for `data`'s hash, with the registrations made.
fn too_many<E: std::error::Error + 'static, K: std::fmt::Debug + std::fmt::Display + 'static>(
    state: &mut FlowState,
    data: &Phase1Data,
) -> FlowError<E, K> {
    FlowError::TooManyComposeHashes {
        refused: data.compose_hash,
        registrations: std::mem::take(&mut state.registrations),
        may_have_applied: state.lost_phase2_reply,
    }
}

/// How many times [`EnvUpdate::run`] goes back to phase 1 after a 466: once for an expired
/// hash, and once more after a lost phase-2 reply (our own phase 2 may have spent the hash:
/// phase 1 tells whether the update was applied).
struct RestartBudget {
    expired: u32,
    lost_reply: u32,
}

impl Default for RestartBudget {
    fn default() -> Self {
        Self { expired: 1, lost_reply: 1 }
    }
}

impl RestartBudget {
    /// Spends a restart for a 466 (`lost_reply`: a phase-2 reply of this attempt was lost after
    /// the request may have arrived), or `None` when none is left.
    fn spend(&mut self, lost_reply: bool) -> Option<RestartReason> {
        if lost_reply && self.lost_reply > 0 {
            self.lost_reply -= 1;
            Some(RestartReason::LostPhase2Reply)
        } else if self.expired > 0 {
            self.expired -= 1;
            Some(RestartReason::Expired)
        } else {
            None
        }
    }
}

/// When phase 2 is sent again: a lost reply, up to `attempts` sends in all (after
/// [`retry::phase2_resend_delay`]); a 467 for a transaction the registrar saw included, up to
/// `verification_retries` times, `verification_retry_interval` apart.
pub(crate) struct Phase2Resend {
    pub(crate) attempts: u32,
    pub(crate) verification_retries: u32,
    pub(crate) verification_retry_interval: Duration,
}

impl<P: Phases> Flow<'_, P>
where
    P::Kind: std::fmt::Debug + std::fmt::Display,
{
    /// Phase 2: the phase-1 request plus the two hashes, sent again as the resend rules allow.
    /// Returns the last reply, and whether a reply was lost after the request may have reached
    /// the server (so that a 466 may be our own phase 2 having spent the hash).
    async fn send_phase2(
        &self,
        data: &Phase1Data,
        transaction_hash: TransactionHash,
    ) -> (Result<P::Accepted, SdkError<P::Kind>>, bool) {
        let resend = self.resend;
        let (mut attempt, mut lost, mut lost_reply, mut unverified) = (1, 1, false, 0);
        loop {
            self.progress.emit(FlowEvent::Phase2Sent { attempt });
            match self.phases.phase2(self.client, data, transaction_hash).await {
                Err(e) if (e.is_maybe_sent() || e.is_not_sent()) && lost < resend.attempts => {
                    tracing::warn!(attempt, error = %e, "phase 2 reply lost; sending it again");
                    lost_reply |= e.is_maybe_sent();
                    tokio::time::sleep(retry::phase2_resend_delay(lost)).await;
                    lost += 1;
                }
                Err(e)
                    if P::Kind::is_transaction_verification_failed(&e)
                        && unverified < resend.verification_retries
                        && self.watch.was_included(&transaction_hash) =>
                {
                    unverified += 1;
                    tracing::info!(
                        attempt,
                        %transaction_hash,
                        "467 for an included transaction: the verifier is behind; sending phase 2 again"
                    );
                    self.progress.emit(FlowEvent::VerificationPending {
                        transaction_hash,
                        retry: unverified,
                        retry_in: resend.verification_retry_interval,
                    });
                    tokio::time::sleep(resend.verification_retry_interval).await;
                }
                result => return (result, lost_reply),
            }
            attempt += 1;
        }
    }
}

/// The checked phase-1 request: encrypted if given plaintext, `env_keys` applied.
fn prepare<E: std::error::Error + 'static>(
    cvm_id: String,
    source: Option<Source>,
    env_keys: Option<Vec<String>>,
    progress: &Progress<'_>,
) -> Result<EnvUpdateRequest, FlowError<E>> {
    let request = match source {
        Some(Source::Plain { env, recipient }) => {
            let encrypted = encrypt(&env, recipient.public_key()).map_err(FlowError::Encrypt)?;
            progress.emit(FlowEvent::Encrypted { keys: encrypted.keys().to_vec() });
            EnvUpdateRequest::new(cvm_id, encrypted, env_keys)
        }
        Some(Source::Encrypted(encrypted)) => EnvUpdateRequest::new(cvm_id, encrypted, env_keys),
        Some(Source::Body(mut body)) => {
            if env_keys.is_some() {
                body.env_keys = env_keys;
            }
            EnvUpdateRequest::from_body(cvm_id, body)
        }
        // Looked up before `prepare` is called.
        Some(Source::LookUp(_)) | None => Err(no_env()),
    };
    request.map_err(FlowError::Phase1)
}

fn no_env() -> UpdateEnvsError {
    crate::InputError::new(
        "encrypted_env",
        "no env given: call .env(), .env_with_key_lookup(), .env_verified(), .encrypted() or .body()",
    )
    .into()
}

fn accepted_now(
    accepted: EnvsUpdateAccepted,
    registrations: Vec<Registration>,
    encryption_key: Option<VerifiedRecipient>,
    progress: &Progress<'_>,
) -> UpdateOutcome {
    if let Some(id) = &accepted.correlation_id {
        tracing::Span::current().record("correlation_id", id.as_str());
    }
    tracing::info!(allowed_envs_changed = accepted.allowed_envs_changed, "env update accepted");
    progress.emit(FlowEvent::Accepted { correlation_id: accepted.correlation_id.clone() });
    UpdateOutcome { accepted, registration: registrations.last().cloned(), registrations, encryption_key }
}

/// An accepted env update.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UpdateOutcome {
    /// The server's 2xx reply.
    pub accepted: EnvsUpdateAccepted,
    /// The on-chain registration, when phase 1 asked for one: the last of `registrations`.
    pub registration: Option<Registration>,
    /// Every registration this run made, oldest first: one per transaction the registrar
    /// returned (two after a 466 restart that gave another compose hash).
    pub registrations: Vec<Registration>,
    /// The key the env was encrypted to, and how it was vouched for; `None` for an env
    /// encrypted elsewhere ([`EnvUpdate::encrypted`], [`EnvUpdate::body`]).
    pub encryption_key: Option<VerifiedRecipient>,
}

/// A compose hash registered for an update, and the transaction phase 2 cited.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Registration {
    /// The compose hash.
    pub compose_hash: ComposeHash,
    /// The app contract it is registered on.
    pub app_id: AppId,
    /// The chain, as phase 1's `kms_info` named it.
    pub chain_id: Option<u64>,
    /// The transaction that registered it.
    pub transaction_hash: TransactionHash,
}

/// Why a two-phase update (an env update, a CVM patch) did not go through. `E` is the
/// registrar's error; `K` the operation's error kind (the env update's by default;
/// [`TwoPhaseKind`](crate::TwoPhaseKind) for a [`CvmPatch`](crate::CvmPatch)).
///
/// `Display` says which step failed; the cause is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError<E: std::error::Error + 'static, K: std::fmt::Debug + std::fmt::Display + 'static = UpdateEnvsKind> {
    /// No verified env-encryption key for the CVM
    /// ([`EnvUpdate::env_with_key_lookup`]): it could not be read, or it did not verify.
    /// Nothing was encrypted or sent.
    #[error("no verified env-encryption key; nothing was encrypted or sent")]
    EncryptionKey(#[source] Box<EncryptionKeyError>),
    /// The env could not be encrypted; nothing was sent.
    #[error("could not encrypt the env")]
    Encrypt(#[source] CryptError),
    /// The CVM is not of the app the caller pinned
    /// ([`EnvUpdate::expect_app_id`]), or could not be read to tell; nothing was sent.
    #[error("not updating the CVM: it could not be confirmed to be the expected app's; nothing was sent")]
    NotExpectedApp(#[source] Box<AppIdCheckError>),
    /// Phase 1 failed (including input refused before sending).
    #[error("{}", if matches!(.0, SdkError::InvalidInput(_)) { "refused before sending phase 1; nothing was sent" } else { "phase 1 failed" })]
    Phase1(#[source] SdkError<K>),
    /// The app-id check refused phase 1's app contract; the registrar was not asked.
    #[error(
        "not registering compose hash {compose_hash} on app contract {app_id}{}{}",
        earlier(registrations),
        maybe_applied(*may_have_applied)
    )]
    AppIdCheck {
        /// The hash.
        compose_hash: ComposeHash,
        /// The app contract phase 1 named.
        app_id: AppId,
        /// Why it was refused.
        #[source]
        source: Box<AppIdCheckError>,
        /// The registrations this run made before (another hash, before a 466 restart).
        registrations: Vec<Registration>,
        /// An earlier phase 2's reply was lost: the update may have been applied.
        may_have_applied: bool,
    },
    /// Phase 1 asked to register another compose hash than the one the caller pinned
    /// ([`EnvUpdate::expect_compose_hash`]); the registrar was not asked.
    #[error(
        "not registering compose hash {refused}: the expected compose hash is {expected}; nothing was signed (do not register a hash you did not compute, and report this reply to Phala Cloud){}{}",
        earlier(registrations),
        maybe_applied(*may_have_applied)
    )]
    ComposeHashNotExpected {
        /// The hash the caller pinned.
        expected: ComposeHash,
        /// The hash phase 1 asked for.
        refused: ComposeHash,
        /// The registrations this run made before (another hash, before a 466 restart).
        registrations: Vec<Registration>,
        /// An earlier phase 2's reply was lost: the update may have been applied.
        may_have_applied: bool,
    },
    /// Registering the compose hash failed; phase 2 was not sent for it.
    #[error(
        "registering compose hash {compose_hash} on app contract {app_id} failed{}{}",
        earlier(registrations),
        maybe_applied(*may_have_applied)
    )]
    Registration {
        /// The hash.
        compose_hash: ComposeHash,
        /// The app contract.
        app_id: AppId,
        /// The registrar's error.
        #[source]
        source: E,
        /// The registrations this run made before (another hash, before a 466 restart).
        registrations: Vec<Registration>,
        /// An earlier phase 2's reply was lost: the update may have been applied.
        may_have_applied: bool,
    },
    /// The hash was registered but phase 2 failed. Phase 2 can be sent again with
    /// `registration.transaction_hash`, without registering again.
    #[error(
        "phase 2 failed (compose hash {} registered by transaction {}){}",
        registration.compose_hash,
        registration.transaction_hash,
        maybe_applied(*may_have_applied)
    )]
    Phase2 {
        /// The registration phase 2 cited.
        registration: Box<Registration>,
        /// Every registration this run made, oldest first (the last is `registration`'s).
        registrations: Vec<Registration>,
        /// The phase-2 error.
        #[source]
        source: SdkError<K>,
        /// A phase-2 request may have reached the server (its reply was lost, this time or
        /// before a restart): the update may have been applied.
        may_have_applied: bool,
    },
    /// Phase 1 failed after a 466 restart, when this run had registered a compose hash
    /// already: the transactions were paid for, and a later run can reuse them.
    #[error("phase 1 failed after a restart{}{}", earlier(registrations), maybe_applied(*may_have_applied))]
    Phase1AfterRegistration {
        /// Every registration this run made, oldest first.
        registrations: Vec<Registration>,
        /// The phase-1 error.
        #[source]
        source: SdkError<K>,
        /// The restart followed a lost phase-2 reply: the update may have been applied.
        may_have_applied: bool,
    },
    /// Phase 1 asked for a compose hash other than the [`MAX_REGISTRATIONS_PER_RUN`] this run
    /// registered already (for a fleet: over all its CVMs of that app contract); it was not
    /// registered.
    #[error(
        "phase 1 asked to register compose hash {refused}, beyond the {MAX_REGISTRATIONS_PER_RUN} distinct ones one run registers for an app contract (a fleet's CVMs together){}; refusing{}",
        earlier(registrations),
        maybe_applied(*may_have_applied)
    )]
    TooManyComposeHashes {
        /// The hash phase 1 asked for last, not registered.
        refused: ComposeHash,
        /// The registrations this run made, oldest first.
        registrations: Vec<Registration>,
        /// An earlier phase 2's reply was lost: the update may have been applied.
        may_have_applied: bool,
    },
}

/// What `Display` adds when a lost reply leaves the update possibly applied.
fn maybe_applied(may_have_applied: bool) -> &'static str {
    if may_have_applied {
        "; a phase-2 request may have reached the server before (its reply was lost), so the update may have been applied"
    } else {
        ""
    }
}

/// `" (after registering …)"` for a non-empty list, for `Display`.
fn earlier(registrations: &[Registration]) -> String {
    if registrations.is_empty() { String::new() } else { format!(" (after registering{})", hashes(registrations)) }
}

/// `" H1 by transaction T1, H2 by transaction T2"`, for `Display`.
fn hashes(registrations: &[Registration]) -> String {
    registrations
        .iter()
        .map(|r| format!(" {} by transaction {}", r.compose_hash, r.transaction_hash))
        .collect::<Vec<_>>()
        .join(",")
}

impl<E: std::error::Error + 'static, K: ServiceErrorKind + std::fmt::Debug + std::fmt::Display + 'static>
    FlowError<E, K>
{
    /// The server's (or the client's input) error, from either phase.
    pub fn update_error(&self) -> Option<&SdkError<K>> {
        match self {
            Self::Phase1(e) | Self::Phase2 { source: e, .. } | Self::Phase1AfterRegistration { source: e, .. } => {
                Some(e)
            }
            _ => None,
        }
    }

    /// The registrar's error.
    pub fn registration_error(&self) -> Option<&E> {
        match self {
            Self::Registration { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The last registration made before the failure, if any (for [`FlowError::Phase2`], the
    /// one phase 2 cited): phase 2 can be retried with it.
    pub fn registration(&self) -> Option<&Registration> {
        match self {
            Self::Phase2 { registration, .. } => Some(registration.as_ref()),
            _ => self.registrations().last(),
        }
    }

    /// Every registration this run made before the failure, oldest first: each is a
    /// transaction paid for, which a caller (with a custom registrar, say) can reuse instead
    /// of registering again. Empty when nothing was registered.
    pub fn registrations(&self) -> &[Registration] {
        match self {
            Self::Registration { registrations, .. }
            | Self::AppIdCheck { registrations, .. }
            | Self::ComposeHashNotExpected { registrations, .. }
            | Self::Phase2 { registrations, .. }
            | Self::Phase1AfterRegistration { registrations, .. }
            | Self::TooManyComposeHashes { registrations, .. } => registrations,
            Self::EncryptionKey(_) | Self::Encrypt(_) | Self::NotExpectedApp(_) | Self::Phase1(_) => &[],
        }
    }

    /// Whether the update may have been applied although this run failed: a request that may
    /// have reached the server lost its reply (phase 1's, for a change that needed no
    /// registration, or a phase 2's, now or before a restart). Check the CVM before treating
    /// the update as not applied; sending the same update again is safe.
    pub fn may_have_applied(&self) -> bool {
        match self {
            Self::Phase1(e) => e.may_have_been_applied(),
            Self::Phase2 { may_have_applied, .. }
            | Self::Phase1AfterRegistration { may_have_applied, .. }
            | Self::TooManyComposeHashes { may_have_applied, .. }
            | Self::AppIdCheck { may_have_applied, .. }
            | Self::ComposeHashNotExpected { may_have_applied, .. }
            | Self::Registration { may_have_applied, .. } => *may_have_applied,
            Self::EncryptionKey(_) | Self::Encrypt(_) | Self::NotExpectedApp(_) => false,
        }
    }

    /// The env-encryption key lookup failed or refused the key ([`FlowError::EncryptionKey`]).
    pub fn encryption_key_error(&self) -> Option<&EncryptionKeyError> {
        match self {
            Self::EncryptionKey(e) => Some(e),
            _ => None,
        }
    }

    /// Nothing was sent: the input was refused or could not be encrypted.
    pub fn is_input(&self) -> bool {
        matches!(self, Self::Encrypt(_))
            || matches!(self, Self::Phase1(e) if e.is_invalid_input())
            || matches!(self, Self::EncryptionKey(e) if e.request_error().is_some_and(|r| r.is_invalid_input()))
    }
}
