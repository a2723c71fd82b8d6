//! The whole env update in one call: [`EnvUpdate::run`].

use std::time::Duration;

use tracing::Instrument;

use super::phases::{EnvUpdateRequest, Phase1Outcome};
use super::registrar::{ComposeHashRegistrar, FlowEvent, Progress};
use crate::client::Client;
use crate::envcrypt::{EncryptedEnv, EnvCryptError, EnvVars, RecipientPublicKey, encrypt};
use crate::hex::{AppId, ComposeHash, TransactionHash};
use crate::types::UpdateCvmEnvsBody;
use crate::update_envs::{EnvsUpdateAccepted, UpdateEnvsError};

/// How many times phase 2 is sent when its reply is lost (the same transaction each time).
pub const DEFAULT_PHASE2_ATTEMPTS: u32 = 3;

/// Where [`EnvUpdate`] reports its events.
type EventCallback<'a> = Box<dyn Fn(&FlowEvent) + Send + Sync + 'a>;

/// The env to send: plaintext to encrypt, or already encrypted.
enum Source {
    Plain { env: EnvVars, recipient: RecipientPublicKey },
    Encrypted(EncryptedEnv),
    Body(UpdateCvmEnvsBody),
}

/// An env update from plaintext (or an encrypted env) to an accepted update, registering the
/// compose hash on-chain when phase 1 asks for it. Built by [`Client::env_update`].
///
/// ```no_run
/// # async fn run(registrar: impl phala_cloud::two_phase::ComposeHashRegistrar) -> Result<(), Box<dyn std::error::Error>> {
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
    phase2_attempts: u32,
    on_event: Option<EventCallback<'a>>,
}

impl std::fmt::Debug for EnvUpdate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvUpdate")
            .field("cvm_id", &self.cvm_id)
            .field("env_keys", &self.env_keys)
            .field("phase2_attempts", &self.phase2_attempts)
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
            phase2_attempts: DEFAULT_PHASE2_ATTEMPTS,
            on_event: None,
        }
    }
}

impl<'a> EnvUpdate<'a> {
    /// Plaintext env vars, encrypted to the CVM's X25519 key when the flow runs.
    pub fn env(mut self, env: EnvVars, recipient: RecipientPublicKey) -> Self {
        self.source = Some(Source::Plain { env, recipient });
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

    /// Sends for each step of the flow (for progress displays).
    pub fn on_event(mut self, callback: impl Fn(&FlowEvent) + Send + Sync + 'a) -> Self {
        self.on_event = Some(Box::new(callback));
        self
    }

    /// How many times phase 2 is sent when its reply is lost (default
    /// [`DEFAULT_PHASE2_ATTEMPTS`], at least 1). Every send carries the same transaction.
    pub fn phase2_attempts(mut self, attempts: u32) -> Self {
        self.phase2_attempts = attempts.max(1);
        self
    }

    /// Runs the flow: encrypt (if given plaintext) → phase 1 → on 465 register the compose hash
    /// with `registrar` → phase 2 → accepted.
    ///
    /// On 466 it starts again from phase 1, once (and once more when the 466 follows a lost
    /// phase-2 reply, which may have spent the hash itself). A 409 follows the client's
    /// [`ConflictRetry`](crate::ConflictRetry). A phase 2 whose reply is lost
    /// ([`SdkError::MaybeSent`](crate::SdkError::MaybeSent) or [`NotSent`](crate::SdkError::NotSent)) is sent again
    /// with the same transaction; registration is never repeated for a hash it already
    /// registered. Every other error returns at once.
    pub async fn run<R: ComposeHashRegistrar>(self, registrar: R) -> Result<UpdateOutcome, FlowError<R::Error>> {
        let span = tracing::info_span!(
            "env_update",
            cvm_id = %self.cvm_id,
            correlation_id = tracing::field::Empty,
            compose_hash = tracing::field::Empty,
            transaction_hash = tracing::field::Empty,
        );
        let EnvUpdate { client, cvm_id, source, env_keys, phase2_attempts, on_event } = self;
        let progress = on_event.as_deref().map_or_else(Progress::none, Progress::new);
        async move {
            // Encrypt, and check everything that can be checked before sending.
            let request = prepare(cvm_id, source, env_keys, &progress)?;

            let mut registered: Option<Registration> = None;
            // 466 restarts from phase 1: one for an expired hash, and one more after a lost
            // phase-2 reply (our own phase 2 may have spent the hash: phase 1 tells).
            let (mut restarts_left, mut lost_reply_checks_left) = (1, 1);
            let mut phase1_attempt = 0;
            loop {
                // Phase 1.
                phase1_attempt += 1;
                progress.emit(FlowEvent::Phase1Sent { attempt: phase1_attempt });
                let pending = match client.begin_env_update(&request).await.map_err(FlowError::Phase1)? {
                    Phase1Outcome::Accepted(accepted) => return Ok(accepted_now(accepted, registered, &progress)),
                    Phase1Outcome::RegistrationRequired(pending) => pending,
                };
                let data = pending.data();
                tracing::Span::current().record("compose_hash", tracing::field::display(data.compose_hash));
                progress.emit(FlowEvent::RegistrationRequired {
                    compose_hash: data.compose_hash,
                    app_id: data.app_id,
                    chain_id: data.chain_id(),
                });

                // Register the compose hash, unless this run already did.
                let transaction_hash = match &registered {
                    Some(r) if r.compose_hash == data.compose_hash => r.transaction_hash,
                    _ => registrar.register(data, &progress).await.map_err(|source| FlowError::Registration {
                        compose_hash: data.compose_hash,
                        app_id: data.app_id,
                        source,
                    })?,
                };
                tracing::Span::current().record("transaction_hash", tracing::field::display(transaction_hash));
                let registration = Registration {
                    compose_hash: data.compose_hash,
                    app_id: data.app_id,
                    chain_id: data.chain_id(),
                    transaction_hash,
                };
                registered = Some(registration.clone());

                // Phase 2: the same request plus the two hashes, sent again if its reply is lost.
                let (mut attempt, mut lost_reply) = (1, false);
                let result = loop {
                    progress.emit(FlowEvent::Phase2Sent { attempt });
                    match pending.confirm(client, transaction_hash).await {
                        Err(e) if (e.is_maybe_sent() || e.is_not_sent()) && attempt < phase2_attempts => {
                            tracing::warn!(attempt, error = %e, "phase 2 reply lost; sending it again");
                            lost_reply |= e.is_maybe_sent();
                            tokio::time::sleep(Duration::from_millis(250) * attempt).await;
                            attempt += 1;
                        }
                        result => break result,
                    }
                };
                match result {
                    Ok(accepted) => return Ok(accepted_now(accepted, registered, &progress)),
                    Err(e) if e.is_compose_hash_invalid() && lost_reply && lost_reply_checks_left > 0 => {
                        lost_reply_checks_left -= 1;
                        tracing::info!("466 after a lost phase-2 reply: asking phase 1 whether it was applied");
                        progress.emit(FlowEvent::Restarting);
                    }
                    Err(e) if e.is_compose_hash_invalid() && restarts_left > 0 => {
                        restarts_left -= 1;
                        tracing::info!("466: compose hash invalid or expired; starting again from phase 1");
                        progress.emit(FlowEvent::Restarting);
                    }
                    Err(source) => return Err(FlowError::Phase2 { registration: Box::new(registration), source }),
                }
            }
        }
        .instrument(span)
        .await
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
            let encrypted = encrypt(&env, recipient).map_err(FlowError::Encrypt)?;
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
        None => Err(no_env()),
    };
    request.map_err(FlowError::Phase1)
}

fn no_env() -> UpdateEnvsError {
    crate::InputError::new("encrypted_env", "no env given: call .env(), .encrypted() or .body()").into()
}

fn accepted_now(
    accepted: EnvsUpdateAccepted,
    registration: Option<Registration>,
    progress: &Progress<'_>,
) -> UpdateOutcome {
    if let Some(id) = &accepted.correlation_id {
        tracing::Span::current().record("correlation_id", id.as_str());
    }
    tracing::info!(allowed_envs_changed = accepted.allowed_envs_changed, "env update accepted");
    progress.emit(FlowEvent::Accepted { correlation_id: accepted.correlation_id.clone() });
    UpdateOutcome { accepted, registration }
}

/// An accepted env update.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UpdateOutcome {
    /// The server's 2xx reply.
    pub accepted: EnvsUpdateAccepted,
    /// The on-chain registration, when phase 1 asked for one.
    pub registration: Option<Registration>,
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

/// Why an env update did not go through. `E` is the registrar's error.
///
/// `Display` says which step failed; the cause is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError<E: std::error::Error + 'static> {
    /// The env could not be encrypted; nothing was sent.
    #[error("could not encrypt the env")]
    Encrypt(#[source] EnvCryptError),
    /// Phase 1 failed (including input refused before sending).
    #[error("phase 1 of the env update failed")]
    Phase1(#[source] UpdateEnvsError),
    /// Registering the compose hash failed; phase 2 was not sent.
    #[error("registering compose hash {compose_hash} on app contract {app_id} failed")]
    Registration {
        /// The hash.
        compose_hash: ComposeHash,
        /// The app contract.
        app_id: AppId,
        /// The registrar's error.
        #[source]
        source: E,
    },
    /// The hash was registered but phase 2 failed. Phase 2 can be sent again with
    /// `registration.transaction_hash`, without registering again.
    #[error("phase 2 failed (compose hash {} registered by transaction {})", registration.compose_hash, registration.transaction_hash)]
    Phase2 {
        /// The registration phase 2 cited.
        registration: Box<Registration>,
        /// The phase-2 error.
        #[source]
        source: UpdateEnvsError,
    },
}

impl<E: std::error::Error + 'static> FlowError<E> {
    /// The server's (or the client's input) error, from either phase.
    pub fn update_error(&self) -> Option<&UpdateEnvsError> {
        match self {
            Self::Phase1(e) | Self::Phase2 { source: e, .. } => Some(e),
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

    /// The registration made before the failure, if any: phase 2 can be retried with it.
    pub fn registration(&self) -> Option<&Registration> {
        match self {
            Self::Phase2 { registration, .. } => Some(registration.as_ref()),
            _ => None,
        }
    }

    /// Nothing was sent: the input was refused or could not be encrypted.
    pub fn is_input(&self) -> bool {
        matches!(self, Self::Encrypt(_)) || matches!(self, Self::Phase1(e) if e.is_invalid_input())
    }
}
