//! Registering a compose hash: the [`ComposeHashRegistrar`] trait, and the progress events the
//! flow reports.

use std::future::Future;
use std::pin::Pin;

use crate::env_key::KeyVerification;
use crate::envcrypt::RecipientPublicKey;
use crate::hex::{AppId, ComposeHash, TransactionHash};
use crate::update_envs::Phase1Data;

/// Makes sure a compose hash is registered on its app contract and says which transaction did
/// it. The on-chain registrar (feature `onchain`) sends `addComposeHash` from a key; plug in your
/// own for a hardware wallet, a multisig, or a person pasting a hash.
///
/// An implementation should be idempotent: asked again for a hash that is already registered,
/// it returns the registering transaction without sending another.
pub trait ComposeHashRegistrar: Send + Sync {
    /// Why registration failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Registers `data.compose_hash` on `data.app_id` (on the chain `data.kms_info` names) and
    /// returns the transaction hash to send in phase 2. Report steps through `progress`.
    fn register(
        &self,
        data: &Phase1Data,
        progress: &Progress<'_>,
    ) -> impl Future<Output = Result<TransactionHash, Self::Error>> + Send;
}

impl<R: ComposeHashRegistrar> ComposeHashRegistrar for &R {
    type Error = R::Error;

    fn register(
        &self,
        data: &Phase1Data,
        progress: &Progress<'_>,
    ) -> impl Future<Output = Result<TransactionHash, Self::Error>> + Send {
        (**self).register(data, progress)
    }
}

/// Any [`ComposeHashRegistrar`] as one type, for a registrar chosen at run time (a key, a
/// multisig, a hash registered elsewhere): `BoxedRegistrar::new(r)`. Its error is
/// [`BoxedRegistrarError`], which keeps the registrar's own error as its source (reach it with
/// [`downcast_ref`](BoxedRegistrarError::downcast_ref)).
///
/// ```
/// use phala_cloud::{BoxedRegistrar, KnownTransaction, TransactionHash};
/// # fn from_key() -> BoxedRegistrar { unimplemented!() }
/// # let pasted: Option<TransactionHash> = Some(TransactionHash([7; 32]));
/// let registrar = match pasted {
///     Some(tx) => BoxedRegistrar::new(KnownTransaction::new(tx)),
///     None => from_key(),
/// };
/// # let _ = registrar;
/// ```
pub struct BoxedRegistrar(Box<dyn DynRegistrar>);

impl BoxedRegistrar {
    /// Boxes `registrar`.
    pub fn new<R: ComposeHashRegistrar + 'static>(registrar: R) -> Self {
        Self(Box::new(registrar))
    }
}

impl std::fmt::Debug for BoxedRegistrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxedRegistrar").finish_non_exhaustive()
    }
}

type RegisterFuture<'a> = Pin<Box<dyn Future<Output = Result<TransactionHash, BoxedRegistrarError>> + Send + 'a>>;

/// [`ComposeHashRegistrar`] with the future boxed and the error erased, so that it can be a
/// trait object.
trait DynRegistrar: Send + Sync {
    fn register_boxed<'a>(&'a self, data: &'a Phase1Data, progress: &'a Progress<'a>) -> RegisterFuture<'a>;
}

impl<R: ComposeHashRegistrar> DynRegistrar for R {
    fn register_boxed<'a>(&'a self, data: &'a Phase1Data, progress: &'a Progress<'a>) -> RegisterFuture<'a> {
        Box::pin(async move { self.register(data, progress).await.map_err(|e| BoxedRegistrarError(Box::new(e))) })
    }
}

impl ComposeHashRegistrar for BoxedRegistrar {
    type Error = BoxedRegistrarError;

    async fn register(&self, data: &Phase1Data, progress: &Progress<'_>) -> Result<TransactionHash, Self::Error> {
        self.0.register_boxed(data, progress).await
    }
}

/// The error of a [`BoxedRegistrar`]: the boxed registrar's own error, shown as it shows itself.
#[derive(Debug)]
pub struct BoxedRegistrarError(Box<dyn std::error::Error + Send + Sync>);

impl BoxedRegistrarError {
    /// The registrar's error as its own type, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

impl std::fmt::Display for BoxedRegistrarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BoxedRegistrarError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A registrar for a compose hash registered elsewhere (a multisig, a hardware wallet, an
/// earlier run): it sends nothing and answers with the transaction it was given. Tied to a
/// hash with [`for_compose_hash`](Self::for_compose_hash), it refuses any other (a 466 restart
/// that yields a new hash needs a new registration), so phase 2 never cites a transaction for
/// the wrong hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownTransaction {
    transaction_hash: TransactionHash,
    compose_hash: Option<ComposeHash>,
}

impl KnownTransaction {
    /// Answers every registration with `transaction_hash`.
    pub fn new(transaction_hash: TransactionHash) -> Self {
        Self { transaction_hash, compose_hash: None }
    }

    /// Only for `compose_hash`: asked for another, it fails with
    /// [`OtherComposeHash`].
    pub fn for_compose_hash(mut self, compose_hash: ComposeHash) -> Self {
        self.compose_hash = Some(compose_hash);
        self
    }
}

/// Phase 1 asked [`KnownTransaction`] for another compose hash than the one its transaction
/// registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "transaction {transaction_hash} registered compose hash {registered}, but phase 1 asks for {asked}: register {asked} and pass that transaction"
)]
pub struct OtherComposeHash {
    /// The transaction given.
    pub transaction_hash: TransactionHash,
    /// The hash it was given for.
    pub registered: ComposeHash,
    /// The hash phase 1 asked for.
    pub asked: ComposeHash,
}

impl ComposeHashRegistrar for KnownTransaction {
    type Error = OtherComposeHash;

    async fn register(&self, data: &Phase1Data, _: &Progress<'_>) -> Result<TransactionHash, OtherComposeHash> {
        match self.compose_hash {
            Some(registered) if registered != data.compose_hash => {
                Err(OtherComposeHash { transaction_hash: self.transaction_hash, registered, asked: data.compose_hash })
            }
            _ => Ok(self.transaction_hash),
        }
    }
}

/// Why a run starts again from phase 1 ([`FlowEvent::Restarting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestartReason {
    /// The compose hash expired (or was invalid) before phase 2 used it: phase 1 gives a new
    /// one, registered again only if it differs.
    Expired,
    /// A phase-2 reply was lost and the resend answered 466: the lost phase 2 may have been
    /// applied and spent the hash, so phase 1 is asked whether the update is already in.
    LostPhase2Reply,
}

/// A step of an env update, for progress displays. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowEvent {
    /// The CVM's env-encryption key was looked up and verified
    /// ([`EnvUpdate::env_with_key_lookup`](crate::EnvUpdate::env_with_key_lookup)), before
    /// anything was encrypted. A legacy-form KMS signature
    /// ([`SignatureForm::Legacy`](crate::SignatureForm::Legacy)) deserves a warning.
    EncryptionKeyVerified {
        /// The key the env is encrypted to.
        public_key: RecipientPublicKey,
        /// How it was vouched for.
        verification: KeyVerification,
    },
    /// The env was encrypted to the CVM's key; these are its names.
    Encrypted {
        /// The encrypted names.
        keys: Vec<String>,
    },
    /// Phase 1 was sent (`attempt` > 1 after a restart).
    Phase1Sent {
        /// 1 for the first send; 2 or 3 after [`FlowEvent::Restarting`] (a run restarts at most
        /// once per [`RestartReason`]).
        attempt: u32,
    },
    /// Phase 1 answered 465.
    RegistrationRequired {
        /// The hash to register.
        compose_hash: ComposeHash,
        /// The app contract.
        app_id: AppId,
        /// The chain, as `kms_info` names it.
        chain_id: Option<u64>,
    },
    /// The hash was already allowed on-chain; this transaction registered it earlier.
    AlreadyRegistered {
        /// The earlier transaction.
        transaction_hash: TransactionHash,
    },
    /// The registration transaction was sent.
    TransactionSent {
        /// Its hash.
        transaction_hash: TransactionHash,
    },
    /// The registration transaction was mined (with the confirmations asked for).
    TransactionConfirmed {
        /// Its hash.
        transaction_hash: TransactionHash,
        /// The block it is in.
        block_number: u64,
    },
    /// Phase 2 was sent (`attempt` > 1 when resent after a reply was lost).
    Phase2Sent {
        /// 1 for the first send.
        attempt: u32,
    },
    /// Phase 2 answered 466; starting again from phase 1.
    Restarting {
        /// Why phase 1 is asked again.
        reason: RestartReason,
    },
    /// Phase 2 answered 467 (transaction not verified) for a transaction the registrar saw
    /// included: the server's verifier is behind the chain. Phase 2 is sent again with the same
    /// transaction after `retry_in`.
    VerificationPending {
        /// The transaction phase 2 cites.
        transaction_hash: TransactionHash,
        /// 1 for the first resend.
        retry: u32,
        /// How long the flow waits before sending phase 2 again.
        retry_in: std::time::Duration,
    },
    /// The update was accepted.
    Accepted {
        /// Its correlation id.
        correlation_id: Option<String>,
    },
}

/// Where a flow reports its [`FlowEvent`]s: a callback, or nowhere.
#[derive(Clone, Copy, Default)]
pub struct Progress<'a>(Option<&'a (dyn Fn(&FlowEvent) + Send + Sync)>);

impl<'a> Progress<'a> {
    /// Reports to `callback`.
    pub fn new(callback: &'a (dyn Fn(&FlowEvent) + Send + Sync)) -> Self {
        Self(Some(callback))
    }

    /// Reports nowhere.
    pub fn none() -> Self {
        Self(None)
    }

    /// Reports one event.
    pub fn emit(&self, event: FlowEvent) {
        tracing::debug!(?event, "two-phase progress");
        if let Some(callback) = self.0 {
            callback(&event);
        }
    }
}

impl std::fmt::Debug for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Progress(callback)" } else { "Progress(none)" })
    }
}
