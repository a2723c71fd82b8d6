//! What the commands that drive a two-phase update show: progress on stderr ([`Display`]),
//! the result of `--prepare-only`, and a failed run's exit code, message and `--json` error
//! object ([`Failure::from_flow`]), whichever operation the flow drove.

use std::borrow::Borrow;
use std::io::IsTerminal;

use phala_cloud::onchain::OnchainError;
use phala_cloud::{EncryptionKeyError, FlowError, FlowEvent, HttpError, Phase1Data, RestartReason, SdkError};
use serde_json::json;

use crate::registration::{RegisterError, app_id_check_exit_code, registration_exit_code, registration_next_step};
use crate::{Failure, exit};

/// The exit code of an operation's error reply, by its kind, and what to check when the
/// server refused the request's fields.
pub trait ServiceExit: phala_cloud::ServiceErrorKind + std::fmt::Debug + std::fmt::Display + 'static {
    /// What to check after the server refused the request's fields (422, or a 400 where the
    /// operation defines it).
    const REFUSED_FIELDS: &'static str;
    /// The exit code of this reply (see `EXIT_CODES`).
    fn exit_code(&self) -> u8;
}

impl ServiceExit for phala_cloud::UpdateEnvsKind {
    const REFUSED_FIELDS: &'static str = "check the env names and the public key";

    fn exit_code(&self) -> u8 {
        use phala_cloud::UpdateEnvsKind as K;
        match self {
            K::Validation(_) => exit::BAD_INPUT,
            K::Unauthorized(_) | K::Forbidden(_) => exit::AUTH,
            K::NotFound(_) => exit::NOT_FOUND,
            K::Conflict(_) => exit::CONFLICT,
            K::RegistrationRequired(_)
            | K::ComposeHashInvalid(_)
            | K::TransactionVerificationFailed(_)
            | K::ComposeHashNotAllowed(_) => exit::REGISTRATION,
            // 500, a status the spec does not list, and what later versions add.
            _ => exit::SERVER,
        }
    }
}

impl ServiceExit for phala_cloud::TwoPhaseKind {
    const REFUSED_FIELDS: &'static str = "check the compose file, the script and the values given";

    fn exit_code(&self) -> u8 {
        use phala_cloud::TwoPhaseKind as K;
        match self {
            K::Conflict(_) => exit::CONFLICT,
            K::RegistrationRequired(_)
            | K::ComposeHashInvalid(_)
            | K::TransactionVerificationFailed(_)
            | K::ComposeHashNotAllowed(_) => exit::REGISTRATION,
            // The operation's own statuses: these operations define 400 and 422.
            K::Other(http) => match http.status().as_u16() {
                400 | 422 => exit::BAD_INPUT,
                401 | 403 => exit::AUTH,
                404 => exit::NOT_FOUND,
                _ => exit::SERVER,
            },
            _ => exit::SERVER,
        }
    }
}

/// `--prepare-only`'s result: what to register, and the call that does it.
pub fn print_prepared(cvm_id: &str, data: &Phase1Data, json: bool) {
    let call = phala_cloud::onchain::RegistrationCall::new(data.app_id, data.compose_hash);
    // What a server answering `X-Prepare-Only` adds for multisig workflows, passed on as given.
    let commit_token = data.extra.get("commit_token").and_then(|v| v.as_str());
    if json {
        let value = json!({
            "status": "prepared",
            "compose_hash": data.compose_hash.to_hex(),
            "app_id": data.app_id.to_hex(),
            "chain_id": data.chain_id(),
            "kms_contract": data.kms_info.as_ref().and_then(|k| k.kms_contract_address.clone()),
            "to": call.to.to_string(),
            "data": call.data.to_string(),
            "value": "0",
            "commit_token": commit_token,
        });
        println!("{value}");
        return;
    }
    let chain = data.chain_id().map_or_else(String::new, |c| format!(" on chain {c}"));
    println!("prepared: register compose hash {} on app contract {}{chain}", data.compose_hash, data.app_id);
    println!("  send from the app's owner, value 0:");
    println!("  to:   {}", call.to);
    println!("  data: {}", call.data);
    if let Some(token) = commit_token {
        println!("  commit token (from the server, for multisig workflows): {token}");
    }
    println!("then finish with the same command and --transaction-hash <that transaction's hash> (cvm {cvm_id})");
}

/// Progress on stderr: lines, and a spinner while waiting for the chain when stderr is a
/// terminal. Nothing in `--json` mode but the spinner.
pub struct Display {
    lines: bool,
    /// `--rpc-url` was given (a looked-up key is checked on-chain).
    rpc_given: bool,
    spinner: Option<indicatif::ProgressBar>,
}

impl Display {
    pub fn new(json: bool, rpc_given: bool) -> Self {
        // Drawn on stderr only while the transaction is being mined: drawn before, indicatif
        // shows an empty bar under every line, and under the question before signing.
        let spinner = std::io::stderr().is_terminal().then(indicatif::ProgressBar::hidden);
        Self { lines: !json, rpc_given, spinner }
    }

    /// A line on stderr even in `--json` mode (a warning).
    fn warn(&self, line: String) {
        match &self.spinner {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }

    /// A progress line on stderr, unless `--json`.
    pub fn say(&self, line: String) {
        if self.lines {
            self.warn(line);
        }
    }

    /// Clears the spinner and hides it until the next transaction.
    fn stop_spinner(&self) {
        if let Some(bar) = &self.spinner {
            bar.finish_and_clear();
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
    }

    /// Shows one step; in a fleet (`cvm` given) each line starts with the CVM's id.
    pub fn event(&self, cvm: Option<&str>, event: &FlowEvent) {
        let tag = |line: String| match cvm {
            Some(id) => format!("{id}: {line}"),
            None => line,
        };
        let say = |line: String| self.say(tag(line));
        match event {
            FlowEvent::EncryptionKeyVerified { public_key, verification } => {
                // The warning always; the line as the other progress lines.
                let notes = crate::envs::KeyNotes { lines: self.lines, rpc_given: self.rpc_given };
                notes.print_parts(*public_key, verification, &mut |line| self.warn(tag(line)));
            }
            FlowEvent::Encrypted { keys } => say(format!("encrypted {} env vars: {}", keys.len(), keys.join(", "))),
            FlowEvent::Phase1Sent { attempt } => {
                say(format!("phase 1 sent{}", if *attempt > 1 { " again" } else { "" }));
            }
            FlowEvent::RegistrationRequired { compose_hash, app_id, chain_id } => say(format!(
                "465: compose hash {compose_hash} must be registered on app contract {app_id} (chain {})",
                chain_id.map_or("unknown".into(), |c| c.to_string())
            )),
            FlowEvent::AlreadyRegistered { transaction_hash } => {
                say(format!("already registered by transaction {transaction_hash}; nothing sent"));
            }
            FlowEvent::TransactionSent { transaction_hash } => {
                say(format!("transaction sent: {transaction_hash}"));
                if let Some(bar) = &self.spinner {
                    bar.reset();
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("template"),
                    );
                    bar.set_message("waiting for the transaction to be mined");
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    bar.enable_steady_tick(std::time::Duration::from_millis(100));
                }
            }
            FlowEvent::TransactionConfirmed { transaction_hash, block_number } => {
                self.stop_spinner();
                say(format!("transaction {transaction_hash} mined in block {block_number}"));
            }
            FlowEvent::Phase2Sent { attempt } => say(format!("phase 2 sent (attempt {attempt})")),
            FlowEvent::Restarting { reason: RestartReason::LostPhase2Reply } => {
                say("466 after a lost phase-2 reply: asking phase 1 whether the update was already applied".into())
            }
            FlowEvent::Restarting { .. } => say("466: the compose hash expired; starting again from phase 1".into()),
            FlowEvent::Accepted { .. } => {}
            _ => {}
        }
    }

    pub fn finish(&self) {
        self.stop_spinner();
    }
}

impl Failure {
    /// The exit code and message of a failed update; every message ends with what to do. `E`
    /// is the CLI's registrar error, as it is or shared by a fleet's CVMs.
    pub fn from_flow<E, K>(e: &FlowError<E, K>, json: bool, user_gave_transaction: bool) -> Self
    where
        E: std::error::Error + Borrow<RegisterError> + 'static,
        K: ServiceExit,
    {
        // A request whose reply was lost earlier in the run (not the last error's own doing,
        // which its status says): "may have been sent", whatever failed after it.
        let lost_earlier = e.may_have_applied() && !e.update_error().is_some_and(|u| u.may_have_been_applied());
        let code = match e {
            _ if lost_earlier => exit::NETWORK,
            FlowError::EncryptionKey(k) => key_error_exit_code(k),
            FlowError::Encrypt(_) => exit::BAD_INPUT,
            FlowError::AppIdCheck { source, .. } | FlowError::NotExpectedApp(source) => app_id_check_exit_code(source),
            FlowError::ComposeHashNotExpected { .. } | FlowError::TooManyComposeHashes { .. } => exit::REGISTRATION,
            FlowError::Registration { source, .. } => {
                registration_exit_code(<E as Borrow<RegisterError>>::borrow(source))
            }
            _ => match e.update_error() {
                Some(u) if u.is_invalid_input() => exit::BAD_INPUT,
                Some(u) if u.is_not_sent() || u.is_maybe_sent() => exit::NETWORK,
                Some(u) => u.kind().map_or(exit::SERVER, K::exit_code),
                None => exit::SERVER,
            },
        };
        let mut message = crate::error_chain(e);
        let hint = match e {
            _ if lost_earlier => Some(
                "check the CVM (GET /api/v1/cvms/{id}) before treating the update as not applied; running the same command again is safe"
                    .into(),
            ),
            FlowError::Registration { source, .. } => {
                registration_next_step(<E as Borrow<RegisterError>>::borrow(source))
            }
            FlowError::EncryptionKey(k) => key_next_step(k),
            _ => e.update_error().and_then(next_step),
        };
        if let Some(hint) = hint {
            message.push_str("; ");
            message.push_str(&hint);
        }
        let onchain = e.registration_error().and_then(|r| match <E as Borrow<RegisterError>>::borrow(r) {
            RegisterError::Onchain(o) => Some(o),
            _ => None,
        });
        // The transaction this run sent, as a fact (for --json).
        let sent = match onchain {
            Some(o) => o.transaction_hash(),
            None => e.registration().map(|r| r.transaction_hash),
        };
        // Whether phase 2 may cite it in a retry: not after it reverted, registered nothing, or
        // was refused by the node or by the server.
        let reusable = match onchain {
            Some(OnchainError::Timeout { .. }) => true,
            Some(OnchainError::SendFailed { maybe_sent, .. }) => *maybe_sent,
            Some(_) => false,
            None => !e
                .update_error()
                // 467 (not verified) and 468 (not allowed): the server refused the transaction.
                .and_then(|u| u.http())
                .is_some_and(|h| matches!(h.status().as_u16(), 467 | 468)),
        };
        if let (Some(tx), true, false) = (sent, reusable, user_gave_transaction) {
            message.push_str(&format!(
                "\ntransaction {tx} was sent: to retry without a new transaction, run the same command with --transaction-hash {tx} once it is mined"
            ));
        }
        let json = json.then(|| {
            let u = e.update_error();
            let k = e.encryption_key_error().and_then(EncryptionKeyError::request_error);
            json!({
                "error": {
                    "exit_code": code,
                    "message": message,
                    "status": u.and_then(|u| u.status()).or_else(|| k.and_then(|k| k.status())).map(|s| s.as_u16()),
                    "request_id": u.and_then(|u| u.request_id()).or_else(|| k.and_then(|k| k.request_id())),
                    // The hash being registered when that failed, else the last one registered.
                    "compose_hash": match e {
                        FlowError::Registration { compose_hash, .. } => Some(compose_hash.to_hex()),
                        _ => e.registration().map(|r| r.compose_hash.to_hex()),
                    },
                    "transaction_hash": sent.map(|tx| tx.to_hex()),
                    "transaction_reusable": sent.map(|_| reusable),
                    "may_have_applied": e.may_have_applied(),
                }
            })
        });
        Self { code, message, json }
    }
}

/// The exit code of a failed GET (the CVM, the KMS's key) that stopped the run before anything
/// was sent.
pub fn lookup_exit_code(source: &SdkError<HttpError>) -> u8 {
    match source.status().map(|s| s.as_u16()) {
        Some(404) => exit::NOT_FOUND,
        Some(401 | 403) => exit::AUTH,
        Some(400 | 422) => exit::BAD_INPUT,
        Some(_) => exit::SERVER,
        None if source.is_invalid_input() => exit::BAD_INPUT,
        None if source.is_not_sent() || source.is_maybe_sent() => exit::NETWORK,
        None => exit::SERVER,
    }
}

/// `--json`'s error object for a failure of one request (reading the CVM, its list, the KMS key).
pub fn request_error_json(
    code: u8,
    message: &str,
    request: Option<&phala_cloud::SdkError<phala_cloud::HttpError>>,
) -> serde_json::Value {
    json!({
        "error": {
            "exit_code": code,
            "message": message,
            "status": request.and_then(|r| r.status()).map(|s| s.as_u16()),
            "request_id": request.and_then(|r| r.request_id()),
        }
    })
}

/// What to do next, for the errors whose own message does not say.
fn next_step<K: ServiceExit>(e: &SdkError<K>) -> Option<String> {
    let request_id = e.request_id().map(|id| format!(" (request id {id})")).unwrap_or_default();
    if e.is_not_sent() {
        Some(
            "nothing was sent: check the network and the API URL (PHALA_CLOUD_API_PREFIX), then run the command again"
                .into(),
        )
    } else if e.is_maybe_sent() {
        Some("the server may have applied the update: run the same command again to make sure".into())
    } else if e.is_invalid_reply() {
        Some(
            "the server may have applied the update: check that PHALA_CLOUD_API_PREFIX is the Phala Cloud API, then run the same command again"
                .into(),
        )
    } else if e.kind().is_some_and(|k| k.exit_code() == exit::SERVER) {
        Some(format!("the server failed{request_id}: try again later, and quote the request id if you contact support"))
    } else if e.kind().is_some_and(|k| k.exit_code() == exit::BAD_INPUT) {
        Some(format!("the server refused the request's fields: {}", K::REFUSED_FIELDS))
    } else {
        None
    }
}

/// The exit code of a key lookup that failed or refused the key: a refusal (the signature,
/// the app's registration, a missing or malformed key) is 6, as `verify-pubkey`'s.
pub fn key_error_exit_code(e: &EncryptionKeyError) -> u8 {
    match e.request_error() {
        Some(source) => lookup_exit_code(source),
        None if e.is_rpc() => exit::NETWORK,
        None if e.is_verification_failure() => exit::REGISTRATION,
        None => exit::OTHER,
    }
}

/// What to do after a key lookup failed or refused the key (the error's own message says
/// that nothing was encrypted).
pub fn key_next_step(e: &EncryptionKeyError) -> Option<String> {
    if e.is_verification_failure() {
        Some("do not encrypt to this key; if you know the CVM's key from elsewhere, give it with --pubkey".into())
    } else if e.is_rpc() {
        Some("check the RPC URL (--rpc-url or ETH_RPC_URL) and the network, then run the command again".into())
    } else if e.request_error().is_some_and(|r| r.is_not_sent() || r.is_maybe_sent()) {
        Some("check the network and the API URL (PHALA_CLOUD_API_PREFIX), then run the command again".into())
    } else {
        None
    }
}

/// The end of a one-CVM run: the accepted update, printed by `print_accepted`; what
/// `--prepare-only` stopped at (not a failure); or the failure to report.
pub fn finish<T, K: ServiceExit>(
    result: Result<T, FlowError<RegisterError, K>>,
    cvm_id: &str,
    json: bool,
    user_gave_transaction: bool,
    print_accepted: impl FnOnce(&T),
) -> Result<(), Failure> {
    match result {
        Ok(outcome) => {
            print_accepted(&outcome);
            Ok(())
        }
        Err(FlowError::Registration { source: RegisterError::Prepared(data), .. }) => {
            print_prepared(cvm_id, &data, json);
            Ok(())
        }
        Err(e) => Err(Failure::from_flow(&e, json, user_gave_transaction)),
    }
}

/// The registration an accepted update made (the last, after a 466 restart), as `--json`
/// fields: `compose_hash`, `transaction_hash`, `app_id`, `chain_id`, null without one.
pub fn registration_json(
    registration: Option<&phala_cloud::Registration>,
) -> serde_json::Map<String, serde_json::Value> {
    let fields = json!({
        "compose_hash": registration.map(|r| r.compose_hash.to_hex()),
        "transaction_hash": registration.map(|r| r.transaction_hash.to_hex()),
        "app_id": registration.map(|r| r.app_id.to_hex()),
        "chain_id": registration.and_then(|r| r.chain_id),
    });
    match fields {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("json! of an object"),
    }
}

/// The registration an accepted update made, as a line of text.
pub fn registration_line(r: &phala_cloud::Registration) -> String {
    format!("registered compose hash {} on app {} by transaction {}", r.compose_hash, r.app_id, r.transaction_hash)
}
