//! `phala-cloud`: the command line of the `phala-cloud` crate (feature `cli`).

mod api;
mod confirm;
mod credentials;
mod demo;
mod envs;
mod lock_dir;
mod output;
mod patch;
mod registration;
mod secret_arg;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  anything else (the HTTP client could not be set up, the lock directory is unusable)
  2  bad input (arguments, env and compose files, keys, hashes; a CVM that is not the
     --app-id's app, found before anything is sent; a 422 (or for a compose or CVM
     update a 400) from the server; a registration to sign without a terminal to
     confirm it on and without --yes)
  3  authentication (401, 403)
  4  CVM not found (404)
  5  conflict: another operation is still running (409, after retries), or another
     process holds this key's lock for longer than the timeout
  6  on-chain registration (owner, balance, chain, fee and gas caps, a reverted or
     refused transaction; 465-468), a 465 for another app or chain than the CVM's, for
     another hash than --expect-compose-hash, or for a third distinct hash, or a CVM
     env-encryption key that does not verify (its KMS signature, the app's registration
     with the KMS contract, the RPC's chain, a missing KMS key; for these nothing was
     encrypted or sent)
  7  server error (500, or a status the API does not define)
  8  network (never sent, or may have been sent; the chain's RPC unreachable; a
     transaction that may have reached the chain); also any failure after a request
     that may have reached the server lost its reply: the update may have been applied
  9  not confirmed: the answer to \"Sign and send it?\" was not yes; nothing was
     signed or sent";

/// Phala Cloud from the command line: env, compose and CVM updates with on-chain registration,
/// and a local simulator. (No `Debug` on the argument types: they hold the API key and private keys.)
#[derive(Parser)]
#[command(name = "phala-cloud", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// Trace to stderr: -v this crate's steps (requests, registration), -vv with details.
    /// RUST_LOG (`target=level,…`, e.g. `phala_cloud=debug,hyper=info`) sets it exactly.
    /// `--json` output stays one object on stdout whatever the verbosity.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Update, encrypt, and check env vars of a CVM.
    #[command(subcommand, after_help = EXIT_CODES)]
    Envs(envs::EnvsCommand),
    /// Update a CVM's docker compose file and pre-launch script.
    #[command(subcommand, after_help = EXIT_CODES)]
    Compose(patch::ComposeCommand),
    /// Update a CVM's compose, resources, image and visibility (the unified PATCH).
    #[command(subcommand, after_help = EXIT_CODES)]
    Cvms(patch::CvmsCommand),
    /// Serve a local simulator of the update endpoints (envs, compose, the unified PATCH).
    #[command(after_help = simulate::EXAMPLES)]
    Simulate(simulate::SimulateArgs),
    /// The main job end to end on an embedded default: a local anvil chain (installed with npm
    /// into the cargo target directory when none is found), the simulator, and an env update
    /// through phase 1 → 465 → addComposeHash → phase 2, each step printed.
    #[command(after_help = "Examples:
  cargo run --features cli -- demo
  ANVIL=/opt/foundry/bin/anvil phala-cloud demo")]
    Demo,
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) on stdout.
    #[command(after_help = "Examples:
  phala-cloud completions bash > ~/.local/share/bash-completion/completions/phala-cloud
  phala-cloud completions zsh > \"${fpath[1]}/_phala-cloud\"
  phala-cloud completions fish > ~/.config/fish/completions/phala-cloud.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Tracing to stderr, as `-v` or `RUST_LOG` asks; nothing without either. The crate's events
/// carry no secret (its hygiene tests check every level); `-v` shows only this crate's.
fn init_tracing(verbose: u8) -> Result<(), String> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => directives
            .parse::<Targets>()
            .map_err(|e| format!("RUST_LOG: {e} (write target=level pairs, e.g. phala_cloud=debug)"))?,
        _ => match verbose {
            0 => return Ok(()),
            1 => Targets::new().with_target("phala_cloud", LevelFilter::INFO),
            _ => Targets::new().with_target("phala_cloud", LevelFilter::DEBUG).with_default(LevelFilter::WARN),
        },
    };
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false);
    tracing_subscriber::registry().with(layer.with_filter(filter)).init();
    Ok(())
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
    /// Registration and the trust checks around it: the registrar's errors, 465–468, the
    /// app-id check, and a KMS signature (or env-encryption key) that does not verify.
    pub const REGISTRATION: u8 = 6;
    /// 500 and statuses the API does not define.
    pub const SERVER: u8 = 7;
    /// Transport: never sent, or may have been sent; also the chain's RPC.
    pub const NETWORK: u8 = 8;
    /// The question before signing was not answered yes: nothing was signed or sent.
    pub const DECLINED: u8 = 9;
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
        // Some errors (reqwest's, alloy's transport) write their source into their own
        // message too: say each cause once.
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(shell, &mut Cli::command(), "phala-cloud", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Err(message) = init_tracing(cli.verbose) {
        eprintln!("phala-cloud: error: {message}");
        return ExitCode::from(exit::BAD_INPUT);
    }
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
            Command::Compose(command) => patch::run_compose(command).await,
            Command::Cvms(command) => patch::run_cvms(command).await,
            Command::Simulate(args) => simulate::run(args).await,
            Command::Demo => demo::run().await.map_err(|e| Failure {
                code: exit::OTHER,
                message: format!("demo: {}", error_chain(e.as_ref())),
                json: None,
            }),
            Command::Completions { .. } => unreachable!("answered before the runtime starts"),
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
