//! Generates the API client from `openapi.json` at compile time.
//!
//! `openapi.json` is OpenAPI 3.1; progenitor reads 3.0. `build/normalize.rs` converts it
//! (and fails with a JSON pointer on what it cannot convert), then progenitor generates the
//! client, prettyplease formats it, and it lands in `$OUT_DIR/codegen.rs`, which
//! `src/generated.rs` includes. Nothing generated is committed.

#[path = "build/normalize.rs"]
mod normalize;

use std::{env, fs, path::PathBuf, process::ExitCode};

const SPEC: &str = "openapi.json";

fn main() -> ExitCode {
    println!("cargo::rerun-if-changed={SPEC}");
    println!("cargo::rerun-if-changed=build/normalize.rs");
    println!("cargo::rerun-if-changed=build.rs");
    match generate() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // `cargo::error` shows the message at the top of a failed build.
            println!("cargo::error={}", message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn generate() -> Result<(), String> {
    let text = fs::read_to_string(SPEC).map_err(|e| format!("cannot read {SPEC}: {e}"))?;
    let spec: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{SPEC} is not valid JSON: {e}"))?;
    let normalized = normalize::normalize(spec).map_err(|e| e.to_string())?;
    let openapi: openapiv3::OpenAPI = serde_json::from_value(normalized)
        .map_err(|e| format!("{SPEC} is not OpenAPI 3.0 after normalization: {e}"))?;

    let mut settings = progenitor::GenerationSettings::new();
    settings.with_interface(progenitor::InterfaceStyle::Positional).with_derive("PartialEq");
    let mut generator = progenitor::Generator::new(&settings);

    // The normalizer removes the shapes progenitor is known to panic on; should a new one
    // appear, report it as a build error rather than a backtrace.
    std::panic::set_hook(Box::new(|_| {}));
    let tokens = std::panic::catch_unwind(move || generator.generate_tokens(&openapi))
        .map_err(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            format!("progenitor panicked on the normalized {SPEC} (teach build/normalize.rs this shape): {what}")
        })?
        .map_err(|e| format!("progenitor rejected the normalized {SPEC}: {e}"))?;
    let _ = std::panic::take_hook();

    let file = syn::parse2(tokens).map_err(|e| format!("progenitor produced invalid Rust: {e}"))?;
    let code = prettyplease::unparse(&file);
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?).join("codegen.rs");
    fs::write(&out, code).map_err(|e| format!("cannot write {}: {e}", out.display()))
}
