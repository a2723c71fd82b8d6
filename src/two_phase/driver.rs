//! The whole two-phase flow in one call: [`drive`], and its first user, [`EnvUpdate::run`].
//! The settings every one-call flow shares ([`FlowSettings`], with its builder methods made
//! by [`flow_settings_methods`]) are here too.

use std::collections::HashSet;
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
type EventCallback<'a> = Box<dyn Fn(&FlowEvent) + Send + Sync + 'a>;

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

/// The transactions the registrar reported included ([`FlowEvent::TransactionConfirmed`],
/// [`FlowEvent::AlreadyRegistered`]), for telling a lagging verifier's 467 from a final one.
#[derive(Default)]
pub(crate) struct Included(Mutex<HashSet<TransactionHash>>);

impl Included {
    /// The flow's event sink: notes included transactions, then calls the user's callback.
    pub(crate) fn watch<'s>(
        &'s self,
        user: Option<&'s (dyn Fn(&FlowEvent) + Send + Sync + 's)>,
    ) -> impl Fn(&FlowEvent) + Send + Sync + 's {
        move |event: &FlowEvent| {
            if let FlowEvent::TransactionConfirmed { transaction_hash, .. }
            | FlowEvent::AlreadyRegistered { transaction_hash } = event
            {
                self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(*transaction_hash);
            }
            if let Some(callback) = user {
                callback(event);
            }
        }
    }

    /// Whether the registrar reported `tx` included.
    pub(crate) fn contains(&self, tx: &TransactionHash) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).contains(tx)
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

        /// The app the caller means: a 465 naming another app contract is refused before the
        /// registrar is asked ([`FlowError::AppIdCheck`](crate::FlowError::AppIdCheck)),
        /// whatever the CVM reports.
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
        let span = tracing::info_span!(
            "env_update",
            cvm_id = %self.cvm_id,
            correlation_id = tracing::field::Empty,
            compose_hash = tracing::field::Empty,
            transaction_hash = tracing::field::Empty,
        );
        let EnvUpdate { client, cvm_id, source, env_keys, key_anchor, settings } = self;
        // The registrar reports through `progress`; the flow watches for the transactions it
        // saw included, for telling a lagging verifier's 467 from a final one.
        let included = Included::default();
        let watch = included.watch(settings.on_event.as_deref());
        let progress = Progress::new(&watch);
        let was_included = |tx: &TransactionHash| included.contains(tx);
        async move {
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
            let request = prepare(cvm_id.clone(), source, env_keys, &progress)?;

            let phases = EnvPhases(&request);
            let (accepted, registrations) = drive(
                &phases,
                Drive {
                    client,
                    cvm_id: &cvm_id,
                    resend: &settings.resend,
                    app_id_policy: &settings.app_id_policy,
                    cvm_read: cvm_read.as_ref(),
                },
                &registrar,
                &progress,
                &was_included,
            )
            .await?;
            Ok(accepted_now(accepted, registrations, encryption_key, &progress))
        }
        .instrument(span)
        .await
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
struct EnvPhases<'r>(&'r EnvUpdateRequest);

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

/// What [`drive`] needs besides the operation: the client, the CVM, the resend rules and the
/// app-id check (with the CVM read already made, if any).
pub(crate) struct Drive<'a> {
    pub(crate) client: &'a Client,
    pub(crate) cvm_id: &'a str,
    pub(crate) resend: &'a Phase2Resend,
    pub(crate) app_id_policy: &'a AppIdPolicy,
    pub(crate) cvm_read: Option<&'a CvmRecord>,
}

/// The two-phase flow of one operation, top to bottom: phase 1 → on 465 check its app id and
/// register the compose hash (once per hash, at most [`MAX_REGISTRATIONS_PER_RUN`]) → phase 2
/// (sent again on a lost reply, and on a 467 for an included transaction) → back to phase 1
/// on a 466 while the restart budget lasts. Returns the accepted reply and every registration
/// made, oldest first.
pub(crate) async fn drive<P: Phases, R: ComposeHashRegistrar>(
    phases: &P,
    at: Drive<'_>,
    registrar: &R,
    progress: &Progress<'_>,
    was_included: &dyn Fn(&TransactionHash) -> bool,
) -> Result<(P::Accepted, Vec<Registration>), FlowError<R::Error, P::Kind>>
where
    P::Kind: std::fmt::Debug + std::fmt::Display + 'static,
{
    let Drive { client, cvm_id, resend, app_id_policy, cvm_read } = at;
    // Every registration of this run, oldest first.
    let mut registrations: Vec<Registration> = Vec::new();
    let mut restarts = RestartBudget::default();
    let mut phase1_attempt = 0;
    loop {
        // Phase 1.
        phase1_attempt += 1;
        progress.emit(FlowEvent::Phase1Sent { attempt: phase1_attempt });
        let data = match phases.phase1(client).await {
            Ok(Phase1Reply::Accepted(accepted)) => return Ok((accepted, registrations)),
            Ok(Phase1Reply::RegistrationRequired(data)) => data,
            Err(source) if registrations.is_empty() => return Err(FlowError::Phase1(source)),
            Err(source) => return Err(FlowError::Phase1AfterRegistration { registrations, source }),
        };
        let data = &*data;
        tracing::Span::current().record("compose_hash", tracing::field::display(data.compose_hash));
        progress.emit(FlowEvent::RegistrationRequired {
            compose_hash: data.compose_hash,
            app_id: data.app_id,
            chain_id: data.chain_id(),
        });

        // Register the compose hash, unless this run already did; never a third one.
        let earlier = registrations.iter().find(|r| r.compose_hash == data.compose_hash && r.app_id == data.app_id);
        let transaction_hash = match earlier {
            Some(r) => r.transaction_hash,
            None if registrations.len() >= MAX_REGISTRATIONS_PER_RUN => {
                return Err(FlowError::TooManyComposeHashes { refused: data.compose_hash, registrations });
            }
            None => {
                // Sign only for the app the user means.
                if let Err(source) = app_id_policy.check(client, cvm_id, data.app_id, cvm_read).await {
                    return Err(FlowError::AppIdCheck {
                        compose_hash: data.compose_hash,
                        app_id: data.app_id,
                        source: Box::new(source),
                        registrations,
                    });
                }
                let registration = match registrar.register(data, progress).await {
                    Ok(transaction_hash) => Registration {
                        compose_hash: data.compose_hash,
                        app_id: data.app_id,
                        chain_id: data.chain_id(),
                        transaction_hash,
                    },
                    Err(source) => {
                        return Err(FlowError::Registration {
                            compose_hash: data.compose_hash,
                            app_id: data.app_id,
                            source,
                            registrations,
                        });
                    }
                };
                let transaction_hash = registration.transaction_hash;
                registrations.push(registration);
                transaction_hash
            }
        };
        tracing::Span::current().record("transaction_hash", tracing::field::display(transaction_hash));
        let registration = Registration {
            compose_hash: data.compose_hash,
            app_id: data.app_id,
            chain_id: data.chain_id(),
            transaction_hash,
        };

        // Phase 2; back to phase 1 on a 466 while the restart budget lasts.
        let (result, lost_reply) =
            send_phase2(client, phases, data, transaction_hash, resend, was_included, progress).await;
        match result {
            Ok(accepted) => return Ok((accepted, registrations)),
            Err(e)
                if P::Kind::is_compose_hash_invalid(&e)
                    && let Some(reason) = restarts.spend(lost_reply) =>
            {
                match reason {
                    RestartReason::LostPhase2Reply => {
                        tracing::info!("466 after a lost phase-2 reply: asking phase 1 whether it was applied")
                    }
                    _ => tracing::info!("466: compose hash invalid or expired; starting again from phase 1"),
                }
                progress.emit(FlowEvent::Restarting { reason });
            }
            Err(source) => {
                return Err(FlowError::Phase2 { registration: Box::new(registration), registrations, source });
            }
        }
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

/// Phase 2: the phase-1 request plus the two hashes, sent again as `resend` allows. Returns
/// the last reply, and whether a reply was lost after the request may have reached the server
/// (so that a 466 may be our own phase 2 having spent the hash).
async fn send_phase2<P: Phases>(
    client: &Client,
    phases: &P,
    data: &Phase1Data,
    transaction_hash: TransactionHash,
    resend: &Phase2Resend,
    was_included: &dyn Fn(&TransactionHash) -> bool,
    progress: &Progress<'_>,
) -> (Result<P::Accepted, SdkError<P::Kind>>, bool)
where
    P::Kind: std::fmt::Debug + std::fmt::Display,
{
    let (mut attempt, mut lost, mut lost_reply, mut unverified) = (1, 1, false, 0);
    loop {
        progress.emit(FlowEvent::Phase2Sent { attempt });
        match phases.phase2(client, data, transaction_hash).await {
            Err(e) if (e.is_maybe_sent() || e.is_not_sent()) && lost < resend.attempts => {
                tracing::warn!(attempt, error = %e, "phase 2 reply lost; sending it again");
                lost_reply |= e.is_maybe_sent();
                tokio::time::sleep(retry::phase2_resend_delay(lost)).await;
                lost += 1;
            }
            Err(e)
                if P::Kind::is_transaction_verification_failed(&e)
                    && unverified < resend.verification_retries
                    && was_included(&transaction_hash) =>
            {
                unverified += 1;
                tracing::info!(
                    attempt,
                    %transaction_hash,
                    "467 for an included transaction: the verifier is behind; sending phase 2 again"
                );
                progress.emit(FlowEvent::VerificationPending {
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
    /// Phase 1 failed (including input refused before sending).
    #[error("phase 1 failed")]
    Phase1(#[source] SdkError<K>),
    /// The app-id check refused phase 1's app contract; the registrar was not asked.
    #[error("not registering compose hash {compose_hash} on app contract {app_id}{}", earlier(registrations))]
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
    },
    /// Registering the compose hash failed; phase 2 was not sent for it.
    #[error("registering compose hash {compose_hash} on app contract {app_id} failed{}", earlier(registrations))]
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
    },
    /// The hash was registered but phase 2 failed. Phase 2 can be sent again with
    /// `registration.transaction_hash`, without registering again.
    #[error("phase 2 failed (compose hash {} registered by transaction {})", registration.compose_hash, registration.transaction_hash)]
    Phase2 {
        /// The registration phase 2 cited.
        registration: Box<Registration>,
        /// Every registration this run made, oldest first (the last is `registration`'s).
        registrations: Vec<Registration>,
        /// The phase-2 error.
        #[source]
        source: SdkError<K>,
    },
    /// Phase 1 failed after a 466 restart, when this run had registered a compose hash
    /// already: the transactions were paid for, and a later run can reuse them.
    #[error("phase 1 failed after a restart{}", earlier(registrations))]
    Phase1AfterRegistration {
        /// Every registration this run made, oldest first.
        registrations: Vec<Registration>,
        /// The phase-1 error.
        #[source]
        source: SdkError<K>,
    },
    /// Phase 1 asked for a compose hash other than the [`MAX_REGISTRATIONS_PER_RUN`] this run
    /// registered already; it was not registered.
    #[error(
        "phase 1 asked to register a third compose hash, {refused}, after registering{}; refusing to register more than {MAX_REGISTRATIONS_PER_RUN} in one run",
        hashes(registrations)
    )]
    TooManyComposeHashes {
        /// The hash phase 1 asked for last, not registered.
        refused: ComposeHash,
        /// The registrations this run made, oldest first.
        registrations: Vec<Registration>,
    },
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
            | Self::Phase2 { registrations, .. }
            | Self::Phase1AfterRegistration { registrations, .. }
            | Self::TooManyComposeHashes { registrations, .. } => registrations,
            Self::EncryptionKey(_) | Self::Encrypt(_) | Self::Phase1(_) => &[],
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
