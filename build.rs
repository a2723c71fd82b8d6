//! Generates the API client from `openapi.json` at compile time.
//!
//! `build/generate.rs` does the work (it is shared with `tests/normalizer.rs`): it converts the
//! OpenAPI 3.1 document to 3.0.3 (`build/normalize.rs`), keeps the operations this build
//! wants, and runs progenitor. Without the `full-api` feature only the operations the
//! handwritten layer wraps are generated ([`CRATE_OPERATIONS`]); with it, every operation that
//! progenitor can generate. The client lands in `$OUT_DIR/codegen.rs` (included by
//! `src/generated.rs`), ending with two lists: `GENERATED_OPERATIONS` and
//! `SKIPPED_OPERATIONS` (the operations not generated, each with why), and the generated
//! operations' paths sorted by name for the hooks (`OPERATION_PATHS_BY_NAME`). One file, so that the
//! build-time bench can pre-expand it. Nothing generated is committed.

// Both are shared with tests/normalizer.rs, which uses what this script does not.
#[path = "build/normalize.rs"]
#[allow(dead_code)]
mod normalize;

#[path = "build/generate.rs"]
#[allow(dead_code)]
mod generate;

use std::{env, fs, path::PathBuf, process::ExitCode};

const SPEC: &str = "openapi.json";

/// The operations the handwritten layer uses (the envs PATCH) or builds on next (the CVM and
/// KMS-key lookups, the CVM lists), by shortened operationId:
/// `PATCH /api/v1/cvms/{cvm_id}/envs`, `GET /api/v1/cvms/{cvm_id}`,
/// `GET /api/v1/kms/{kms_id}/pubkey/{app_id}`, `GET /api/v1/cvms`, and
/// `GET /api/v1/apps/{app_id}/cvms` (an app's CVMs, for the fleet update), and
/// `PATCH /api/v1/cvms/{cvm_id}` (the unified CVM update, driven by `Client::cvm_patch`).
const CRATE_OPERATIONS: &[&str] = &[
    "update_cvm_envs",
    "handle_get_cvm",
    "get_app_env_encrypt_pubkey",
    "handle_list_cvms",
    "handle_get_app_cvms",
    "update_cvm_endpoint",
];

fn main() -> ExitCode {
    println!("cargo::rerun-if-changed={SPEC}");
    println!("cargo::rerun-if-changed=build/normalize.rs");
    println!("cargo::rerun-if-changed=build/generate.rs");
    println!("cargo::rerun-if-changed=build.rs");
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // `cargo::error` shows the message at the top of a failed build.
            println!("cargo::error={}", message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let text = fs::read_to_string(SPEC).map_err(|e| format!("cannot read {SPEC}: {e}"))?;
    let spec: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{SPEC} is not valid JSON: {e}"))?;
    let selection = if env::var_os("CARGO_FEATURE_FULL_API").is_some() {
        generate::Selection::All
    } else {
        generate::Selection::Only(CRATE_OPERATIONS)
    };
    let generated = generate::generate(spec, &selection)?;
    // With every operation selected, the ones the handwritten layer wraps must still be there
    // (the `Only` selection checks this itself).
    for name in CRATE_OPERATIONS {
        if !generated.operations.iter().any(|(_, _, generated)| generated == name) {
            return Err(format!(
                "{SPEC} has no operation {name}, which the handwritten layer uses; if the spec renamed or removed it, the crate must be changed"
            ));
        }
    }
    for warning in &generated.warnings {
        println!("cargo::warning={}", warning.replace('\n', " "));
    }
    for s in &generated.skipped {
        println!("cargo::warning=not generated: {} {} ({}): {}", s.method, s.path, s.operation_id, s.reason);
    }

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let mut code = generated.code;
    code.push_str(&operation_lists(&generated.operations, &generated.skipped));
    code.push_str(&two_phase_list(&generated.two_phase));
    write(&out_dir.join("codegen.rs"), &code)
}

fn write(path: &std::path::Path, contents: &str) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The two lists, as Rust items; each string a literal (`{:?}` escapes it).
fn operation_lists(operations: &[(String, String, String)], skipped: &[generate::Skipped]) -> String {
    let mut out = String::from(
        "\n/// The operations generated in this build: method, path, and the method name on the client.\n\
         pub const GENERATED_OPERATIONS: &[crate::GeneratedOperation] = &[\n",
    );
    for (method, path, name) in operations {
        out.push_str(&format!(
            "    crate::GeneratedOperation {{ method: {method:?}, path: {path:?}, name: {name:?} }},\n"
        ));
    }
    // The hooks look an operation's path template up by name on every call: a list sorted by
    // name for a binary search.
    let mut by_name: Vec<_> = operations.iter().map(|(_, path, name)| (name, path)).collect();
    by_name.sort();
    out.push_str(
        "];\n\n/// `(name, path template)` of each generated operation, sorted by name.\n\
         pub(crate) const OPERATION_PATHS_BY_NAME: &[(&str, &str)] = &[\n",
    );
    for (name, path) in by_name {
        out.push_str(&format!("    ({name:?}, {path:?}),\n"));
    }
    out.push_str(
        "];\n\n/// The operations of the spec that could not be generated, each with why.\n\
         pub const SKIPPED_OPERATIONS: &[crate::SkippedOperation] = &[\n",
    );
    for s in skipped {
        out.push_str(&format!(
            "    crate::SkippedOperation {{ method: {:?}, path: {:?}, operation_id: {:?}, reason: {:?} }},\n",
            s.method, s.path, s.operation_id, s.reason
        ));
    }
    out.push_str("];\n");
    out
}

/// `TWO_PHASE_OPERATIONS`: every operation of the spec (generated in this build or not) whose
/// responses include 465, derived from the spec, with how it carries phase 2.
fn two_phase_list(ops: &[generate::TwoPhaseOp]) -> String {
    let mut out = String::from(
        "\n/// Every operation of the spec whose responses include 465 (a compose hash to allow \
         on-chain first), read from the spec at build time, with how its request carries phase 2.\n\
         pub const TWO_PHASE_OPERATIONS: &[crate::TwoPhaseOperation] = &[\n",
    );
    for op in ops {
        out.push_str(&format!(
            "    crate::TwoPhaseOperation {{ method: {:?}, path: {:?}, name: {:?}, statuses: &{:?}, carrier: crate::Phase2Carrier::{} }},\n",
            op.method, op.path, op.operation_id, op.statuses, op.carrier
        ));
    }
    out.push_str("];\n");
    out
}
