//! Registering a compose hash: the [`ComposeHashRegistrar`] trait, and the progress events the
//! flow reports.

use std::future::Future;

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
        tracing::debug!(?event, "env update progress");
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
