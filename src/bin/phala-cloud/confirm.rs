//! `envs update`'s question before signing: what will be signed (chain, app contract, compose
//! hash, signer, cost), asked on the terminal, answered there.
//!
//! The terminal is stdin when it is one: without a terminal (a pipe, /dev/null, CI) there is no
//! one to ask, and nothing is signed without `--yes`. The question is written to, and the
//! answer read from, the controlling terminal (`/dev/tty`), so that `--json` output on stdout
//! and a redirected stderr stay as they are; where it cannot be opened, stderr and stdin. Input
//! typed before the question is shown is discarded, so no keystroke typed ahead answers it.
//! stdin is only ever a terminal here, so a `-` flag that read a key or an env file from it
//! took a line typed at that terminal, never the answer: with a piped stdin there is no question.

use std::io::{BufRead, IsTerminal, Write};

use alloy::primitives::U256;
use phala_cloud::onchain::PlannedRegistration;

/// Why nothing was signed.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No terminal to ask on, and no `--yes`.
    #[error("stdin is not a terminal, so there is no one to ask before signing{}", read_by(*.stdin_read_by))]
    NoTerminal {
        /// The flag that read stdin with `-` (`--private-key-file`, …), if one did.
        stdin_read_by: Option<&'static str>,
    },
    /// The answer was not yes.
    #[error("the answer at the prompt was not yes")]
    Declined,
    /// The terminal could not be written or read.
    #[error("cannot ask on the terminal: {0}")]
    Terminal(#[source] std::io::Error),
}

fn read_by(flag: Option<&'static str>) -> String {
    flag.map(|flag| format!(" ({flag} - read it)")).unwrap_or_default()
}

impl Refusal {
    /// What to do next.
    pub fn next_step(&self) -> &'static str {
        match self {
            Self::NoTerminal { stdin_read_by: Some(_) } => {
                "pass --yes to sign without being asked, or give that secret in a file or its variable and run from a terminal to be asked, or use --prepare-only to sign elsewhere"
            }
            Self::NoTerminal { stdin_read_by: None } => {
                "pass --yes to sign without being asked (scripts, CI), or use --prepare-only to get the transaction for a wallet to sign"
            }
            Self::Declined => {
                "run the same command again to be asked again, or use --prepare-only to sign it elsewhere"
            }
            Self::Terminal(_) => "pass --yes to sign without being asked",
        }
    }
}

/// Asks before signing, for one run.
#[derive(Clone)]
pub struct Prompt {
    /// What is being updated, named in the question: `CVM <id>`, or the CVMs of a fleet.
    pub subject: String,
    /// The flag that read stdin, if one did (for the message without a terminal).
    pub stdin_read_by: Option<&'static str>,
}

impl Prompt {
    /// Shows `plan` on the terminal and asks; `Ok` only for a yes. Blocks: run it with
    /// `spawn_blocking`.
    pub fn ask(&self, plan: &PlannedRegistration) -> Result<(), Refusal> {
        if !std::io::stdin().is_terminal() {
            return Err(Refusal::NoTerminal { stdin_read_by: self.stdin_read_by });
        }
        let question = question(plan, &self.subject);
        let answer = Terminal::open().and_then(|mut t| t.ask(&question)).map_err(Refusal::Terminal)?;
        if is_yes(&answer) { Ok(()) } else { Err(Refusal::Declined) }
    }
}

/// `y` or `yes`, in any case; anything else (an empty line, end of input) is no.
fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// The question: everything about the transaction, then `[y/N]`.
pub fn question(plan: &PlannedRegistration, subject: &str) -> String {
    let gwei = crate::registration::gwei;
    format!(
        "\nAbout to sign and send a transaction that registers the compose hash of {subject}:\n\
         \x20 chain          {chain}\n\
         \x20 app contract   {app} (the transaction's to; addComposeHash, value 0)\n\
         \x20 compose hash   {hash}\n\
         \x20 signer         {from} (nonce {nonce}, balance {balance} ETH)\n\
         \x20 gas            estimated {estimate}, limit {limit}\n\
         \x20 fee per gas    {price} gwei expected (base {base} + priority {priority}), at most {max_fee} gwei\n\
         \x20 estimated cost {cost} ETH (at most {max_cost} ETH)\n\
         Sign and send it? [y/N] ",
        chain = chain_name(plan.chain_id),
        app = plan.app_id,
        hash = plan.compose_hash,
        from = plan.from,
        nonce = plan.nonce,
        balance = eth(plan.balance),
        estimate = plan.gas_estimate,
        limit = plan.gas_limit,
        price = gwei(plan.expected_gas_price()),
        base = gwei(plan.base_fee_per_gas),
        priority = gwei(plan.max_priority_fee_per_gas),
        max_fee = gwei(plan.max_fee_per_gas),
        cost = eth(plan.estimated_cost_wei()),
        max_cost = eth(plan.max_cost_wei()),
    )
}

/// The chains the official client knows by name, and the others by id.
fn chain_name(chain_id: u64) -> String {
    match chain_id {
        1 => "Ethereum (chain 1)".into(),
        8453 => "Base (chain 8453)".into(),
        31337 => "anvil, a local development chain (chain 31337)".into(),
        id => format!("chain {id}"),
    }
}

/// Wei as ETH, with up to 18 decimals and no trailing zeros.
pub fn eth(wei: U256) -> String {
    let unit = U256::from(1_000_000_000_000_000_000u64);
    let (whole, frac) = (wei / unit, wei % unit);
    if frac.is_zero() {
        return whole.to_string();
    }
    let frac = format!("{:0>18}", frac.to_string());
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// Where the question is asked: the controlling terminal, else stderr and stdin.
enum Terminal {
    #[cfg(unix)]
    Tty(std::fs::File),
    Std,
}

impl Terminal {
    fn open() -> std::io::Result<Self> {
        #[cfg(unix)]
        if let Ok(tty) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty") {
            return Ok(Self::Tty(tty));
        }
        Ok(Self::Std)
    }

    /// Discards what was typed ahead, writes `question`, reads one line.
    fn ask(&mut self, question: &str) -> std::io::Result<String> {
        let mut answer = String::new();
        match self {
            #[cfg(unix)]
            Self::Tty(tty) => {
                discard_typed_ahead(std::os::fd::AsRawFd::as_raw_fd(tty));
                tty.write_all(question.as_bytes())?;
                tty.flush()?;
                std::io::BufReader::new(&*tty).read_line(&mut answer)?;
            }
            Self::Std => {
                #[cfg(unix)]
                discard_typed_ahead(0);
                let mut stderr = std::io::stderr().lock();
                stderr.write_all(question.as_bytes())?;
                stderr.flush()?;
                std::io::stdin().lock().read_line(&mut answer)?;
            }
        }
        if !answer.ends_with('\n') {
            // End of input: the answer is no; end the prompt's line.
            let _ = match self {
                #[cfg(unix)]
                Self::Tty(tty) => tty.write_all(b"\n"),
                Self::Std => std::io::stderr().write_all(b"\n"),
            };
        }
        Ok(answer)
    }
}

/// Drops input the terminal received but nothing read yet.
#[cfg(unix)]
fn discard_typed_ahead(fd: std::os::fd::RawFd) {
    // SAFETY: tcflush only acts on the descriptor, which is open for the call's duration; on a
    // descriptor that is not a terminal it fails, harmlessly.
    unsafe {
        libc::tcflush(fd, libc::TCIFLUSH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_is_y_or_yes_and_anything_else_is_no() {
        for yes in ["y\n", "Y\n", "yes\n", " YES \r\n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n\n", "no\n", "yep\n", "sure\n", "y es\n"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    #[test]
    fn wei_as_eth() {
        assert_eq!(eth(U256::ZERO), "0");
        assert_eq!(eth(U256::from(1_000_000_000_000_000_000u64)), "1");
        assert_eq!(eth(U256::from(55_000_000_000_000u64)), "0.000055");
        assert_eq!(eth(U256::from(1u64)), "0.000000000000000001");
        assert_eq!(eth(U256::from(12_500_000_000_000_000_000u128)), "12.5");
    }
}
