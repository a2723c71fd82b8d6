//! The two phases as values: phase 1 gives [`Phase1Outcome`]; a [`PendingUpdate`] can only be
//! confirmed with a transaction hash, which sends phase 2 with exactly the phase-1 request.

use crate::UpdateCvmEnvsBody;
use crate::client::Client;
use crate::envcrypt::{EncryptedEnv, EnvError};
use crate::error::SdkError;
use crate::hex::{ComposeHash, TransactionHash};
use crate::update_envs::{EnvsUpdateAccepted, Phase1Data, UpdateEnvsError, UpdateEnvsKind, check_request};

/// A checked phase-1 request: the CVM id, the encrypted env and the allowed env names.
#[derive(Debug, Clone)]
pub struct EnvUpdateRequest {
    cvm_id: String,
    body: UpdateCvmEnvsBody,
}

impl EnvUpdateRequest {
    /// From an encrypted env; `env_keys` are its encrypted names unless given, and must cover
    /// them (a CVM silently drops a value whose name is not allowed).
    pub fn new(
        cvm_id: impl Into<String>,
        encrypted: EncryptedEnv,
        env_keys: Option<Vec<String>>,
    ) -> Result<Self, UpdateEnvsError> {
        let body = match env_keys {
            None => encrypted.into_body(),
            Some(keys) => encrypted.into_body_with_env_keys(keys).map_err(input_error)?,
        };
        Self::from_body(cvm_id, body)
    }

    /// From a phase-1 body built elsewhere (an `encrypted_env` from another tool). The body
    /// must not carry `compose_hash` or `transaction_hash`: those come from the flow.
    pub fn from_body(cvm_id: impl Into<String>, body: UpdateCvmEnvsBody) -> Result<Self, UpdateEnvsError> {
        let cvm_id = cvm_id.into();
        check_request(&cvm_id, &body)?;
        if body.compose_hash.is_some() || body.transaction_hash.is_some() {
            return Err(crate::InputError::new("compose_hash", "a phase-1 request carries no compose_hash").into());
        }
        Ok(Self { cvm_id, body })
    }

    /// The CVM id.
    pub fn cvm_id(&self) -> &str {
        &self.cvm_id
    }

    /// The phase-1 body.
    pub fn body(&self) -> &UpdateCvmEnvsBody {
        &self.body
    }
}

fn input_error(e: EnvError) -> UpdateEnvsError {
    match e {
        EnvError::Input(input) => input.into(),
        other => crate::InputError::new("env_keys", other.to_string()).into(),
    }
}

/// What phase 1 gave.
#[derive(Debug)]
#[non_exhaustive]
pub enum Phase1Outcome {
    /// Accepted at once (centralized KMS, or the allowed env names did not change).
    Accepted(EnvsUpdateAccepted),
    /// 465: register the compose hash on-chain, then [`PendingUpdate::confirm`].
    RegistrationRequired(Box<PendingUpdate>),
}

/// A phase-1 request that answered 465, waiting for the transaction that registers its
/// compose hash. Its phase 2 is the same request plus `compose_hash` and `transaction_hash`;
/// there is no other way to build one.
#[derive(Debug, Clone)]
pub struct PendingUpdate {
    request: EnvUpdateRequest,
    data: Phase1Data,
}

impl PendingUpdate {
    /// The request phase 1 sent and the phase-1 data its 465 carried.
    pub(crate) fn new(request: EnvUpdateRequest, data: Phase1Data) -> Self {
        Self { request, data }
    }

    /// What to register: compose hash, app contract, device, KMS (with its chain id).
    pub fn data(&self) -> &Phase1Data {
        &self.data
    }

    /// The compose hash to register.
    pub fn compose_hash(&self) -> ComposeHash {
        self.data.compose_hash
    }

    /// The phase-1 request this answers.
    pub fn request(&self) -> &EnvUpdateRequest {
        &self.request
    }

    /// The phase-2 body for `transaction_hash`: the phase-1 body plus the two hashes.
    pub fn phase2_body(&self, transaction_hash: TransactionHash) -> UpdateCvmEnvsBody {
        UpdateCvmEnvsBody {
            compose_hash: Some(self.data.compose_hash.to_hex()),
            transaction_hash: Some(transaction_hash.to_hex()),
            ..self.request.body.clone()
        }
    }

    /// Sends phase 2 with the transaction that registered the compose hash. A transaction hash
    /// given as text is checked (32 bytes of hex, `0x` optional) before anything is sent.
    ///
    /// Confirming again with the same transaction is safe (the same phase 2 is sent again);
    /// that is what to do after [`SdkError::MaybeSent`].
    pub async fn confirm<T>(&self, client: &Client, transaction_hash: T) -> Result<EnvsUpdateAccepted, UpdateEnvsError>
    where
        T: TryInto<TransactionHash>,
        T::Error: std::fmt::Display,
    {
        let tx = transaction_hash.try_into().map_err(|e| crate::InputError::new("transaction_hash", e.to_string()))?;
        client.update_cvm_envs(&self.request.cvm_id, &self.phase2_body(tx)).await
    }
}

impl Client {
    /// Sends phase 1 of an env update. A 465 with readable phase-1 data becomes
    /// [`Phase1Outcome::RegistrationRequired`]; every other error, including a 465 whose body
    /// cannot be read (it stays [`UpdateEnvsKind::RegistrationRequired`], with its raw body),
    /// is returned as it is.
    pub async fn begin_env_update(&self, request: &EnvUpdateRequest) -> Result<Phase1Outcome, UpdateEnvsError> {
        match self.update_cvm_envs(&request.cvm_id, &request.body).await {
            Ok(accepted) => Ok(Phase1Outcome::Accepted(accepted)),
            Err(SdkError::Service(UpdateEnvsKind::RegistrationRequired(r))) => match r.data {
                Ok(data) => {
                    Ok(Phase1Outcome::RegistrationRequired(Box::new(PendingUpdate { request: request.clone(), data })))
                }
                Err(why) => Err(SdkError::Service(UpdateEnvsKind::RegistrationRequired(Box::new(
                    crate::RegistrationRequired { http: r.http, data: Err(why) },
                )))),
            },
            Err(e) => Err(e),
        }
    }
}
