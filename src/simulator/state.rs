//! The simulated CVMs and what an env update does to them.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::envcrypt::{EnvVars, RecipientSecretKey};
use crate::hex::{AppId, ComposeHash, TransactionHash};

use super::{KmsKind, KmsPubkeyReply};

/// The CVM a path names, as the API takes it: its id (the name it was seeded with), its hashed
/// id (`cvm_…`), its VM UUID, its instance id, or its app id (40 hex digits; `0x` or `app_`
/// optional; the first CVM by id when several share the app). Gives the id it is held under.
pub(crate) fn resolve<'a>(cvms: &'a HashMap<String, Cvm>, given: &str) -> Option<&'a str> {
    if let Some((id, _)) = cvms.get_key_value(given) {
        return Some(id);
    }
    let mut ids: Vec<&String> = cvms.keys().collect();
    ids.sort();
    let by = |matches: &dyn Fn(&Cvm) -> bool| ids.iter().find(|id| matches(&cvms[id.as_str()])).map(|id| id.as_str());
    by(&|c| c.hashed_id == given || c.instance_id == given || same_uuid(&c.vm_uuid, given)).or_else(|| {
        let app = crate::two_phase::parse_app_id(given)?;
        by(&|c| c.api_app_id() == app)
    })
}

/// A UUID with or without its dashes (the official JS SDK sends it without), in either case.
fn same_uuid(uuid: &str, given: &str) -> bool {
    let digits = |s: &str| s.bytes().filter(|&b| b != b'-').map(|b| b.to_ascii_lowercase()).collect::<Vec<u8>>();
    !given.is_empty() && (uuid.eq_ignore_ascii_case(given) || digits(uuid) == digits(given))
}

/// Locks a part of the simulator's state, taking over a poisoned lock: every critical section
/// is a lookup, or one insert, remove or [`Cvm::apply`] that completes before it can panic,
/// so a panicking request handler (a bug) leaves no half-made change for the next one to see.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One CVM as the simulator holds it.
pub(crate) struct Cvm {
    pub(crate) kms: KmsKind,
    pub(crate) workspace: String,
    pub(crate) app_id: Option<AppId>,
    /// Its other names, which the API takes in a path as well as its id: the hashed id
    /// (`cvm_…`), the VM's UUID and the instance id.
    pub(crate) hashed_id: String,
    pub(crate) vm_uuid: String,
    pub(crate) instance_id: String,
    /// How the KMS answers for its app's env-encryption key.
    pub(crate) kms_reply: KmsPubkeyReply,
    pub(crate) device_id: [u8; 32],
    pub(crate) compose_file: String,
    /// The pre-launch script, if it has one.
    pub(crate) pre_launch_script: Option<String>,
    /// What updates set that does not change the compose (`vcpu`, `memory`, `public_logs` …),
    /// as last given.
    pub(crate) settings: serde_json::Map<String, serde_json::Value>,
    pub(crate) secret: RecipientSecretKey,
    /// Allowed env names, sorted and unique.
    pub(crate) allowed: Vec<String>,
    /// What the CVM sees: the last accepted env, filtered by `allowed` (empty when the CVM
    /// could not decrypt it).
    pub(crate) env: EnvVars,
    /// Why the CVM could not decrypt the last accepted env, if it could not.
    pub(crate) env_error: Option<String>,
    /// Compose hashes handed out by phase 1 and not yet used.
    pub(crate) pending: HashMap<ComposeHash, Pending>,
    /// An accepted update is running until then.
    pub(crate) busy_until: Option<Instant>,
}

/// A compose hash waiting for phase 2.
pub(crate) struct Pending {
    /// The app compose it stands for.
    pub(crate) target: Target,
    /// The rest of the phase-1 request it was handed out for (its env and settings), for a
    /// phase 2 that cites the hash without sending the request again (the official JS SDK's
    /// `confirmCvmPatch` sends `{}`).
    pub(crate) encrypted_env: Option<String>,
    pub(crate) settings: serde_json::Map<String, serde_json::Value>,
    pub(crate) expires_at: Instant,
}

/// The parts of an app compose an update changes: what the CVM would boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) compose_file: String,
    pub(crate) pre_launch_script: Option<String>,
    /// Sorted and unique.
    pub(crate) allowed: Vec<String>,
}

impl Target {
    /// Its compose hash for app `app_id`.
    pub(crate) fn hash(&self, app_id: &AppId) -> ComposeHash {
        super::compose::compose_hash(app_id, &self.compose_file, self.pre_launch_script.as_deref(), &self.allowed)
    }
}

impl Cvm {
    /// The app id the API reports: the app contract's, or (a centralized KMS's CVM has an app
    /// id too, naming no contract) one derived from the device id.
    pub(crate) fn api_app_id(&self) -> AppId {
        self.app_id.unwrap_or_else(|| {
            let mut bytes = [0u8; 20];
            bytes.copy_from_slice(&self.device_id[..20]);
            AppId(bytes)
        })
    }

    /// What it boots now.
    pub(crate) fn target(&self) -> Target {
        Target {
            compose_file: self.compose_file.clone(),
            pre_launch_script: self.pre_launch_script.clone(),
            allowed: self.allowed.clone(),
        }
    }

    /// Applies an accepted update: the compose `target`, the settings given, and the env
    /// (`Some`: the update's; `None`: the one it has, as the new allowed names keep it).
    pub(crate) fn apply_update(
        &mut self,
        target: Target,
        decrypted: Option<Result<&EnvVars, &str>>,
        settings: serde_json::Map<String, serde_json::Value>,
        busy_for: Duration,
        now: Instant,
    ) {
        let Target { compose_file, pre_launch_script, allowed } = target;
        self.compose_file = compose_file;
        self.pre_launch_script = pre_launch_script;
        self.settings.extend(settings);
        match decrypted {
            Some(decrypted) => self.apply(allowed, decrypted, busy_for, now),
            None => {
                let (current, error) = (self.env.clone(), self.env_error.take());
                self.apply(allowed, Ok(&current), busy_for, now);
                self.env_error = self.env_error.take().or(error);
            }
        }
    }

    /// The time left of a running update, if any.
    pub(crate) fn busy_for(&self, now: Instant) -> Option<Duration> {
        self.busy_until.and_then(|until| until.checked_duration_since(now)).filter(|d| !d.is_zero())
    }

    /// Applies an accepted update as a CVM does: the new allowed names take effect, and of the
    /// decrypted env only the allowed names are kept (the rest are dropped silently). An env the
    /// CVM cannot decrypt (`Err(why)`) leaves it with no env and `why` recorded: the server
    /// cannot decrypt, so it accepted the update; the CVM is where it fails.
    pub(crate) fn apply(
        &mut self,
        allowed: Vec<String>,
        decrypted: Result<&EnvVars, &str>,
        busy_for: Duration,
        now: Instant,
    ) {
        let mut env = EnvVars::new();
        match decrypted {
            Ok(decrypted) => {
                let mut error = None;
                for (key, value) in decrypted.iter() {
                    if allowed.binary_search_by(|name| name.as_str().cmp(key)).is_ok()
                        && let Err(e) = env.push(key, value)
                    {
                        // A subset of a valid env is valid; should it not be, the CVM fails.
                        error.get_or_insert_with(|| e.to_string());
                    }
                }
                self.env_error = error;
            }
            Err(why) => self.env_error = Some(why.to_owned()),
        }
        self.allowed = allowed;
        self.env = env;
        self.busy_until = (!busy_for.is_zero()).then(|| now + busy_for);
    }
}

/// Which phase a request was, judged by its body (its headers, for the CVM patches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// No `compose_hash` or `transaction_hash`.
    One,
    /// With `compose_hash` and/or `transaction_hash` (or their headers).
    Two,
}

/// One request the simulator answered. Holds no env value and no API key.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct Operation {
    /// When it was answered.
    pub at: SystemTime,
    /// The reply's request id (`X-Request-ID`).
    pub request_id: String,
    /// The operation answered (its shortened operationId: `update_cvm_envs`,
    /// `update_cvm_endpoint`, `update_cvm_docker_compose`, `update_cvm_pre_launch_script`).
    pub operation: &'static str,
    /// The CVM id from the path.
    pub cvm_id: String,
    /// Phase 1 or 2, when the body could be read.
    pub phase: Option<Phase>,
    /// The status answered.
    pub status: u16,
    /// The StructuredError code, for 465–468.
    pub error_code: Option<String>,
    /// Why the request was refused, as the reply says.
    pub message: Option<String>,
    /// The correlation id of an accepted update.
    pub correlation_id: Option<String>,
    /// `env_keys` as sent.
    pub env_keys: Option<Vec<String>>,
    /// The compose hash handed out (465) or sent (phase 2).
    pub compose_hash: Option<ComposeHash>,
    /// The transaction hash sent in phase 2.
    pub transaction_hash: Option<TransactionHash>,
    /// Whether the allowed env names changed, for an accepted update.
    pub allowed_envs_changed: Option<bool>,
    /// For an accepted update: whether the CVM can decrypt its env (the server cannot tell,
    /// so it accepts an env encrypted to another key, which the CVM then fails to decrypt).
    pub cvm_decrypts: Option<bool>,
}
