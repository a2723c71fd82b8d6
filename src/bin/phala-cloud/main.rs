//! `phala-cloud`: the command line of the `phala-cloud` crate (feature `cli`).

mod envs;
mod lock_dir;
mod secret_arg;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  anything else (the HTTP client could not be set up, the lock directory is unusable)
  2  bad input (arguments, env file, keys, hashes; a 422 from the server)
  3  authentication (401, 403)
  4  CVM not found (404)
  5  conflict: another operation is still running (409, after retries), or another
     process holds this key's lock for longer than the timeout
  6  on-chain registration (owner, balance, chain, fee and gas caps, a reverted or
     refused transaction; 465-468), or a 465 for another app than the CVM's
  7  server error (500, or a status the API does not define)
  8  network (never sent, or may have been sent; the chain's RPC unreachable; a
     transaction that may have reached the chain)";

/// Phala Cloud from the command line: env updates with on-chain registration, and a local
/// simulator. (No `Debug` on the argument types: they hold the API key and private keys.)
#[derive(Parser)]
#[command(name = "phala-cloud", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Update, encrypt, and check env vars of a CVM.
    #[command(subcommand, after_help = EXIT_CODES)]
    Envs(envs::EnvsCommand),
    /// Serve a local simulator of the env-update endpoint.
    Simulate(simulate::SimulateArgs),
}

/// Exit codes, one per class of failure (see `EXIT_CODES`).
pub mod exit {
    /// Bad input: arguments, env files, keys, hashes; also 422 from the server.
    pub const BAD_INPUT: u8 = 2;
    /// 401 or 403.
    pub const AUTH: u8 = 3;
    /// 404.
    pub const NOT_FOUND: u8 = 4;
    /// 409 after the retries.
    pub const CONFLICT: u8 = 5;
    /// Registration: the registrar's errors and 465–468.
    pub const REGISTRATION: u8 = 6;
    /// 500 and statuses the API does not define.
    pub const SERVER: u8 = 7;
    /// Transport: never sent, or may have been sent; also the chain's RPC.
    pub const NETWORK: u8 = 8;
    /// Anything else.
    pub const OTHER: u8 = 1;
}

/// A failure to report: its exit code, a message that says what to do next, and in `--json`
/// mode the JSON object to print on stdout.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
    json: Option<serde_json::Value>,
}

impl Failure {
    /// Bad input, found before anything was sent.
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: exit::BAD_INPUT, message: message.into(), json: None }
    }
}

/// An error and its sources, joined with ": " (each level says only its own part).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("phala-cloud: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Envs(command) => envs::run(command).await,
            Command::Simulate(args) => simulate::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(json) = &failure.json {
                println!("{json}");
            }
            eprintln!("phala-cloud: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
