//! The CVM updates that change its compose, in one call: [`CvmPatch::run`] drives the unified
//! `PATCH /api/v1/cvms/{cvm_id}` and the two multipart uploads (`…/docker-compose`,
//! `…/pre-launch-script`) through the one two-phase driver, phase 2 carried in the
//! `X-Compose-Hash` and `X-Transaction-Hash` headers with exactly the phase-1 body.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;
use tracing::Instrument;

use super::driver::{
    Flow, FlowError, FlowSettings, Phase1Reply, Phases, Registration, Watch, drive, flow_settings_methods,
};
use super::kind::TwoPhaseKind;
use super::registrar::{ComposeHashRegistrar, FlowEvent, Progress};
use crate::client::Client;
use crate::dispatch::{self, Reply};
use crate::error::SdkError;
use crate::hex::TransactionHash;
use crate::update_envs::Phase1Data;
use crate::validate::{self, InputError};

/// The unified PATCH's body (the spec's `UpdateCvmRequest`): only the fields given are
/// applied.
pub use crate::generated::types::UpdateCvmRequest;

/// The errors of the operations a [`CvmPatch`] sends.
pub type CvmPatchError = SdkError<TwoPhaseKind>;

/// What a [`CvmPatch`] sends.
#[derive(Debug, Clone)]
enum Content {
    /// `PATCH /api/v1/cvms/{cvm_id}`, JSON.
    Unified(Box<UpdateCvmRequest>),
    /// A multipart upload of one text file.
    Upload(&'static Upload, String),
}

/// One of the two multipart uploads.
#[derive(Debug, PartialEq, Eq)]
struct Upload {
    /// Its shortened operationId (as `TWO_PHASE_OPERATIONS` names it).
    operation_id: &'static str,
    /// The last segment of its path.
    segment: &'static str,
    /// The file name of the `file` part.
    file_name: &'static str,
    /// The media type of the `file` part.
    media_type: &'static str,
    /// What the file is, for errors.
    what: &'static str,
}

const DOCKER_COMPOSE: Upload = Upload {
    operation_id: "update_cvm_docker_compose",
    segment: "docker-compose",
    file_name: "docker-compose.yml",
    media_type: "application/yaml",
    what: "the docker compose file",
};

const PRE_LAUNCH_SCRIPT: Upload = Upload {
    operation_id: "update_cvm_pre_launch_script",
    segment: "pre-launch-script",
    file_name: "pre-launch.sh",
    media_type: "text/x-shellscript",
    what: "the pre-launch script",
};

/// The multipart form of an upload: one part, `file`, holding `text` as a file named
/// [`Upload::file_name`].
fn upload_form(upload: &Upload, text: &str) -> Result<reqwest::multipart::Form, CvmPatchError> {
    let part = reqwest::multipart::Part::text(text.to_owned())
        .file_name(upload.file_name)
        .mime_str(upload.media_type)
        .map_err(|e| InputError::new("file", e.to_string()))?;
    Ok(reqwest::multipart::Form::new().part("file", part))
}

/// A 2xx of an operation a [`CvmPatch`] sends: the update was accepted and runs in the
/// background.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CvmPatchAccepted {
    /// The HTTP status (202 in the spec).
    pub http_status: StatusCode,
    /// The body's `correlation_id`, if it has one (see `GET /api/v1/cvms/{id}/operations`).
    pub correlation_id: Option<String>,
    /// The body as JSON (the spec gives it no schema).
    pub body: Value,
    /// The request id from the `X-Request-ID` header.
    pub request_id: Option<String>,
    /// The body as received.
    pub raw_body: Bytes,
}

impl CvmPatchAccepted {
    fn from_reply(reply: Reply<Value>) -> Self {
        let correlation_id = reply.get("correlation_id").and_then(Value::as_str).map(str::to_owned);
        Self {
            http_status: reply.status(),
            correlation_id,
            request_id: reply.request_id().map(str::to_owned),
            raw_body: reply.raw_body().clone(),
            body: reply.into_inner(),
        }
    }
}

/// An accepted [`CvmPatch`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CvmPatchOutcome {
    /// The server's 2xx reply.
    pub accepted: CvmPatchAccepted,
    /// The on-chain registration, when phase 1 asked for one: the last of `registrations`.
    pub registration: Option<Registration>,
    /// Every registration this run made, oldest first (two after a 466 restart that gave
    /// another compose hash).
    pub registrations: Vec<Registration>,
}

/// A change of a CVM's compose (its docker compose file, pre-launch script, allowed env names
/// …) from request to accepted update, registering the new compose hash on-chain when phase 1
/// asks for it (a contract-owned KMS). Built by [`Client::cvm_patch`] (the unified PATCH),
/// [`Client::docker_compose_patch`] and [`Client::pre_launch_script_patch`] (the multipart
/// uploads).
///
/// ```no_run
/// # async fn run(registrar: impl phala_cloud::ComposeHashRegistrar) -> Result<(), Box<dyn std::error::Error>> {
/// use phala_cloud::Client;
///
/// let client = Client::from_env()?;
/// let outcome = client
///     .docker_compose_patch("my-cvm-id", std::fs::read_to_string("docker-compose.yml")?)
///     .on_event(|event| eprintln!("{event:?}"))
///     .run(registrar)
///     .await?;
/// println!("accepted: {:?}", outcome.accepted.correlation_id);
/// # Ok(()) }
/// ```
#[must_use = "a CvmPatch does nothing until `run`"]
pub struct CvmPatch<'a> {
    client: &'a Client,
    cvm_id: String,
    content: Content,
    prepare_only: bool,
    settings: FlowSettings<'a>,
}

impl std::fmt::Debug for CvmPatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let operation = match &self.content {
            Content::Unified(_) => "update_cvm_endpoint",
            Content::Upload(upload, _) => upload.operation_id,
        };
        // The content is not shown: a compose file may hold secrets.
        f.debug_struct("CvmPatch")
            .field("cvm_id", &self.cvm_id)
            .field("operation", &operation)
            .field("prepare_only", &self.prepare_only)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts building the unified `PATCH /api/v1/cvms/{cvm_id}` with `body` (only the fields
    /// given are applied); see [`CvmPatch`].
    pub fn cvm_patch(&self, cvm_id: impl Into<String>, body: UpdateCvmRequest) -> CvmPatch<'_> {
        self.patch_builder(cvm_id.into(), Content::Unified(Box::new(body)))
    }

    /// Starts building `PATCH /api/v1/cvms/{cvm_id}/docker-compose`, uploading `yaml` as the
    /// CVM's `docker-compose.yml` (multipart field `file`); see [`CvmPatch`].
    pub fn docker_compose_patch(&self, cvm_id: impl Into<String>, yaml: impl Into<String>) -> CvmPatch<'_> {
        self.patch_builder(cvm_id.into(), Content::Upload(&DOCKER_COMPOSE, yaml.into()))
    }

    /// Starts building `PATCH /api/v1/cvms/{cvm_id}/pre-launch-script`, uploading `script` as
    /// the CVM's pre-launch script (multipart field `file`); see [`CvmPatch`].
    pub fn pre_launch_script_patch(&self, cvm_id: impl Into<String>, script: impl Into<String>) -> CvmPatch<'_> {
        self.patch_builder(cvm_id.into(), Content::Upload(&PRE_LAUNCH_SCRIPT, script.into()))
    }

    fn patch_builder(&self, cvm_id: String, content: Content) -> CvmPatch<'_> {
        CvmPatch { client: self, cvm_id, content, prepare_only: false, settings: FlowSettings::default() }
    }
}

impl<'a> CvmPatch<'a> {
    flow_settings_methods!('a);

    /// For a multisig- or hardware-wallet-owned app: phase 1 of the unified PATCH carries
    /// `X-Prepare-Only: true` (the spec: "generate a commit token for multisig workflows
    /// instead of expecting immediate on-chain registration"). Phase 2 never carries it.
    ///
    /// The multipart uploads have no such header: for them this changes nothing in what is
    /// sent (their phase 1 registers nothing by itself either). In both cases stopping before
    /// signing is the registrar's to do, as for the env update: a registrar that returns an
    /// error holding the 465's [`Phase1Data`] ends the run with
    /// [`FlowError::Registration`], nothing signed.
    pub fn prepare_only(mut self) -> Self {
        self.prepare_only = true;
        self
    }

    /// Runs the flow: check the request → phase 1 → on 465 check its app id against the
    /// CVM's (see [`skip_app_id_check`](Self::skip_app_id_check)) and register the compose
    /// hash with `registrar` → phase 2 (the same request with `X-Compose-Hash` and
    /// `X-Transaction-Hash`) → accepted; with the same restarts on 466, resends of a lost
    /// phase-2 reply and of a 467 for an included transaction, and never-pay-twice rule as
    /// [`EnvUpdate::run`](crate::EnvUpdate::run). A 409 follows the client's
    /// [`ConflictRetry`](crate::ConflictRetry).
    ///
    /// Bad input (an empty or malformed CVM id, an empty compose file or upload, a body with
    /// nothing to change, an invalid env name …) is [`FlowError::Phase1`] with
    /// [`SdkError::InvalidInput`], nothing sent.
    pub async fn run<R: ComposeHashRegistrar>(
        self,
        registrar: R,
    ) -> Result<CvmPatchOutcome, FlowError<R::Error, TwoPhaseKind>> {
        let CvmPatch { client, cvm_id, content, prepare_only, mut settings } = self;
        let span = tracing::info_span!(
            "cvm_patch",
            cvm_id = %cvm_id,
            operation = tracing::field::Empty,
            correlation_id = tracing::field::Empty,
            compose_hash = tracing::field::Empty,
            transaction_hash = tracing::field::Empty,
        );
        check(&cvm_id, &content).map_err(|e| FlowError::Phase1(e.into()))?;
        // The registrar reports through `progress`; the flow watches for the transactions it
        // saw included, for telling a lagging verifier's 467 from a final one.
        let watch = &Watch::new(settings.on_event.take());
        let observe = |event: &FlowEvent| watch.observe(event);
        let progress = Progress::new(&observe);
        async {
            let phases = PatchPhases { cvm_id: &cvm_id, content: &content, prepare_only };
            tracing::Span::current().record("operation", phases.operation_id());
            let flow = Flow {
                phases: &phases,
                client,
                cvm_id: &cvm_id,
                resend: &settings.resend,
                app_id_policy: &settings.app_id_policy,
                cvm_read: None,
                progress: &progress,
                watch,
                hash_limit: None,
            };
            let (accepted, registrations) = drive(&flow, &registrar).await?;
            if let Some(id) = &accepted.correlation_id {
                tracing::Span::current().record("correlation_id", id.as_str());
            }
            tracing::info!("CVM update accepted");
            progress.emit(FlowEvent::Accepted { correlation_id: accepted.correlation_id.clone() });
            Ok(CvmPatchOutcome { accepted, registration: registrations.last().cloned(), registrations })
        }
        .instrument(span)
        .await
    }
}

/// Checks a request before anything is sent.
fn check(cvm_id: &str, content: &Content) -> Result<(), InputError> {
    validate::check_cvm_id(cvm_id)?;
    match content {
        Content::Upload(upload, text) => {
            if text.trim().is_empty() {
                return Err(InputError::new("file", format!("{} is empty", upload.what)));
            }
            Ok(())
        }
        Content::Unified(body) => check_body(body),
    }
}

/// The unified PATCH's body: something to change, and each field given well-formed.
fn check_body(body: &UpdateCvmRequest) -> Result<(), InputError> {
    let UpdateCvmRequest {
        allow_force_stop,
        allowed_envs,
        disk_size,
        docker_compose_file,
        encrypted_env,
        gpus,
        image,
        memory,
        pre_launch_script,
        public_logs,
        public_sysinfo,
        public_tcbinfo,
        shutdown_timeout,
        user_config,
        vcpu,
    } = body;
    // `allow_force_stop` only says how a restart may stop the CVM: alone it changes nothing.
    let _ = allow_force_stop;
    let changes = [
        allowed_envs.is_some(),
        disk_size.is_some(),
        docker_compose_file.is_some(),
        encrypted_env.is_some(),
        gpus.is_some(),
        image.is_some(),
        memory.is_some(),
        pre_launch_script.is_some(),
        public_logs.is_some(),
        public_sysinfo.is_some(),
        public_tcbinfo.is_some(),
        shutdown_timeout.is_some(),
        user_config.is_some(),
        vcpu.is_some(),
    ];
    if !changes.contains(&true) {
        return Err(InputError::new("body", "nothing to change: give at least one field to update"));
    }
    if docker_compose_file.as_deref().is_some_and(|f| f.trim().is_empty()) {
        return Err(InputError::new("docker_compose_file", "is empty"));
    }
    if let Some(keys) = allowed_envs {
        for (i, key) in keys.iter().enumerate() {
            validate::check_env_key(format!("allowed_envs[{i}]"), key)?;
            if keys[..i].contains(key) {
                return Err(InputError::new(format!("allowed_envs[{i}]"), format!("{key:?} is listed twice")));
            }
        }
    }
    if let Some(blob) = encrypted_env {
        validate::check_encrypted_env(blob)?;
    }
    for (field, value) in [("vcpu", vcpu), ("memory", memory), ("disk_size", disk_size)] {
        if value.is_some_and(|n| n <= 0) {
            return Err(InputError::new(field, "must be positive"));
        }
    }
    if shutdown_timeout.is_some_and(|t| !(10..=1200).contains(&t)) {
        return Err(InputError::new("shutdown_timeout", "must be between 10 and 1200 seconds"));
    }
    if image.as_deref().is_some_and(|i| i.trim().is_empty()) {
        return Err(InputError::new("image", "is empty"));
    }
    Ok(())
}

/// A [`CvmPatch`]'s two phases: the same request both times, phase 2 with the two headers.
struct PatchPhases<'r> {
    cvm_id: &'r str,
    content: &'r Content,
    prepare_only: bool,
}

impl PatchPhases<'_> {
    fn operation_id(&self) -> &'static str {
        match self.content {
            Content::Unified(_) => "update_cvm_endpoint",
            Content::Upload(upload, _) => upload.operation_id,
        }
    }

    /// One request; `phase2` the compose hash and transaction to carry.
    async fn send(
        &self,
        client: &Client,
        phase2: Option<(&Phase1Data, TransactionHash)>,
    ) -> Result<CvmPatchAccepted, CvmPatchError> {
        let compose_hash = phase2.map(|(data, _)| data.compose_hash.to_hex());
        let transaction_hash = phase2.map(|(_, tx)| tx.to_hex());
        let reply = client
            .retrying_conflicts(|| async {
                match self.content {
                    Content::Unified(body) => {
                        // Phase 2 never carries X-Prepare-Only: it registers nothing.
                        let prepare_only = (self.prepare_only && phase2.is_none()).then_some("true");
                        client
                            .send_two_phase(|api| {
                                api.update_cvm_endpoint(
                                    self.cvm_id,
                                    compose_hash.as_deref(),
                                    prepare_only,
                                    transaction_hash.as_deref(),
                                    body,
                                )
                            })
                            .await
                    }
                    Content::Upload(upload, text) => {
                        let mut headers = HeaderMap::new();
                        if let (Some(c), Some(t)) = (&compose_hash, &transaction_hash) {
                            // Hex digits with `0x`: always a valid header value.
                            headers.insert("x-compose-hash", HeaderValue::from_str(c).expect("hex"));
                            headers.insert("x-transaction-hash", HeaderValue::from_str(t).expect("hex"));
                        }
                        let path =
                            format!("/api/v1/cvms/{}/{}", progenitor_client::encode_path(self.cvm_id), upload.segment);
                        let form = upload_form(upload, text)?;
                        client
                            .send_two_phase(|api| {
                                dispatch::multipart_patch(api, upload.operation_id, path, headers, form)
                            })
                            .await
                    }
                }
            })
            .await?;
        Ok(CvmPatchAccepted::from_reply(reply))
    }
}

impl Phases for PatchPhases<'_> {
    type Accepted = CvmPatchAccepted;
    type Kind = TwoPhaseKind;

    async fn phase1(&self, client: &Client) -> Result<Phase1Reply<CvmPatchAccepted>, CvmPatchError> {
        match self.send(client, None).await {
            Ok(accepted) => Ok(Phase1Reply::Accepted(accepted)),
            Err(e) => match e.phase1() {
                Some(data) => Ok(Phase1Reply::RegistrationRequired(Box::new(data.clone()))),
                None => Err(e),
            },
        }
    }

    async fn phase2(
        &self,
        client: &Client,
        data: &Phase1Data,
        transaction_hash: TransactionHash,
    ) -> Result<CvmPatchAccepted, CvmPatchError> {
        self.send(client, Some((data, transaction_hash))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> UpdateCvmRequest {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_body_must_change_something_well_formed() {
        let refused = |v: Value| check_body(&body(v)).unwrap_err().field;
        assert_eq!(refused(serde_json::json!({})), "body");
        assert_eq!(refused(serde_json::json!({"allow_force_stop": true})), "body");
        assert_eq!(refused(serde_json::json!({"docker_compose_file": "  \n"})), "docker_compose_file");
        assert_eq!(refused(serde_json::json!({"allowed_envs": ["A", "1B"]})), "allowed_envs[1]");
        assert_eq!(refused(serde_json::json!({"allowed_envs": ["A", "A"]})), "allowed_envs[1]");
        assert_eq!(refused(serde_json::json!({"encrypted_env": "0xab"})), "encrypted_env");
        assert_eq!(refused(serde_json::json!({"vcpu": 0})), "vcpu");
        assert_eq!(refused(serde_json::json!({"shutdown_timeout": 5})), "shutdown_timeout");
        for ok in [
            serde_json::json!({"docker_compose_file": "services: {}"}),
            serde_json::json!({"pre_launch_script": ""}),
            serde_json::json!({"allowed_envs": []}),
            serde_json::json!({"memory": 2048, "public_logs": false}),
        ] {
            assert_eq!(check_body(&body(ok.clone())), Ok(()), "{ok}");
        }
    }

    #[test]
    fn an_empty_upload_or_cvm_id_is_refused() {
        let compose = Content::Upload(&DOCKER_COMPOSE, "services: {}".into());
        assert_eq!(check("", &compose).unwrap_err().field, "cvm_id");
        assert_eq!(check("a/b", &compose).unwrap_err().field, "cvm_id");
        let e = check("cvm", &Content::Upload(&PRE_LAUNCH_SCRIPT, " \n".into())).unwrap_err();
        assert_eq!((e.field.as_str(), e.reason.as_str()), ("file", "the pre-launch script is empty"));
        assert_eq!(check("cvm", &compose), Ok(()));
    }
}
