//! The tests that capture logs. Each runs alone in a process of its own
//! ([`alone`](crate::support::alone)): `tracing` caches each callsite's interest process-wide, so
//! a test running beside one of these could hide an event from its capture, and a hygiene test
//! that misses an event passes without having looked. The `log` logger that `rpc_url_hygiene`
//! installs is process-wide as well.
//!
//! | module | what |
//! |---|---|
//! | `key_lookup_tracing` | a legacy-form KMS signature over the env-encryption key is a warning |
//! | `request_tracing` | a span per generated call, named by its operationId, with status and request id |
//! | `rpc_url_hygiene` | an RPC URL with a key in its path reaches no log line (tracing and `log`) and no error |
//! | `secret_hygiene` | canaries through every public path and TRACE logs |

mod key_lookup_tracing;
mod request_tracing;
mod rpc_url_hygiene;
mod secret_hygiene;

/// What a test's subscriber (and `log` logger) wrote, shared by the writer and the test.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}
