//! The tests that capture logs, in a binary of their own and one at a time.
//!
//! `tracing` caches each callsite's interest process-wide: a callsite first reached on a thread
//! of another test, while this test's subscriber is being installed, can stay "never" and hide
//! an event from the capture. A hygiene test that misses an event passes without having looked,
//! so these run apart from `tests/it` and hold [`ONE_AT_A_TIME`] for their whole run. The
//! `log` logger that `rpc_url_hygiene` installs is process-wide as well.
//!
//! | module | what |
//! |---|---|
//! | `request_tracing` | a span per generated call, named by its operationId, with status and request id |
//! | `rpc_url_hygiene` | an RPC URL with a key in its path reaches no log line (tracing and `log`) and no error |
//! | `secret_hygiene` | canaries through every public path and TRACE logs |

#[path = "../it/support/mod.rs"]
mod support;

mod request_tracing;
mod rpc_url_hygiene;
mod secret_hygiene;

/// Held by each test for its whole run.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
