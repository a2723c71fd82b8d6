//! `phala-cloud`: the command line of the `phala-cloud` crate (feature `cli`).

mod secret_arg;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Phala Cloud from the command line: env updates with on-chain registration, and a local
/// simulator.
#[derive(Parser, Debug)]
#[command(name = "phala-cloud", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a local simulator of the env-update endpoint.
    Simulate(simulate::SimulateArgs),
}

/// Exit codes, one per class of failure.
pub mod exit {
    /// Bad input: arguments, env files, keys, hashes; also 422 from the server.
    pub const BAD_INPUT: u8 = 2;
}

/// A failure to report: its exit code and a message that says what to do next.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Bad input, found before anything was sent.
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: exit::BAD_INPUT, message: message.into() }
    }
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
            Command::Simulate(args) => simulate::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("phala-cloud: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
