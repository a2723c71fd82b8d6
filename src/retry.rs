//! Every wait before sending again: the opt-in retry policy for 409 "another operation in
//! progress", and the two-phase flow's resend of a phase 2 whose reply was lost.
//!
//! A 409 means the server refused the request without acting on it, so sending it again is
//! safe. A phase 2 is safe to send again because the server applies a compose hash once.
//! Nothing else is retried once a request may have reached the server.

use std::time::Duration;

/// Bounded retries of a 409 with exponential backoff, "equal jitter" (half the backoff fixed, half random), and `Retry-After`.
///
/// The defaults follow the official Go client: 1 s doubling to at most 20 s; here at most 5
/// attempts in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictRetry {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry, before jitter.
    pub initial_backoff: Duration,
    /// Upper bound of any one delay. A `Retry-After` longer than this ends the retries: the
    /// 409 is returned rather than waiting longer than the caller allowed.
    pub max_backoff: Duration,
}

impl Default for ConflictRetry {
    fn default() -> Self {
        Self { max_attempts: 5, initial_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(20) }
    }
}

impl ConflictRetry {
    /// The delay before attempt `attempt + 1` after `attempt` attempts (1-based) failed with
    /// 409, or `None` to stop. `jitter` is a number in `[0, 1)`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let exp = self.initial_backoff.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
        let ceiling = exp.min(self.max_backoff);
        // "Equal jitter": half the ceiling fixed, half random, so a retry never comes at once.
        let jitter = if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) };
        let backoff = ceiling / 2 + ceiling.mul_f64(jitter / 2.0);
        match retry_after {
            Some(asked) if asked > self.max_backoff => None,
            Some(asked) => Some(asked.max(backoff)),
            None => Some(backoff),
        }
    }
}

/// The wait before sending a phase 2 again after its `lost`-th lost reply (1-based): 250 ms
/// more each time, so a server that is restarting gets a moment and a flaky link no storm.
pub(crate) fn phase2_resend_delay(lost: u32) -> Duration {
    Duration::from_millis(250).saturating_mul(lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_bounded_and_stops() {
        let p = ConflictRetry::default();
        assert_eq!(p.delay(0, None, 0.0), Some(Duration::from_millis(500)));
        assert_eq!(p.delay(1, None, 0.0), Some(Duration::from_millis(500)));
        assert_eq!(p.delay(1, None, 0.999_999).map(|d| d.as_millis()), Some(999));
        assert_eq!(p.delay(2, None, 0.0), Some(Duration::from_secs(1)));
        assert_eq!(p.delay(4, None, 0.0), Some(Duration::from_secs(4)));
        assert_eq!(p.delay(5, None, 0.0), None);
        let long = ConflictRetry { max_attempts: 100, ..p.clone() };
        assert_eq!(long.delay(60, None, 0.0), Some(Duration::from_secs(10)));
        assert!(long.delay(60, None, 0.99).unwrap() <= Duration::from_secs(20));
        // Any jitter at all, even NaN or infinite, gives a bounded delay.
        for jitter in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 2.0] {
            assert!(p.delay(1, None, jitter).unwrap() <= Duration::from_secs(1), "{jitter}");
        }
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = ConflictRetry::default();
        assert_eq!(p.delay(1, Some(Duration::from_secs(3)), 0.0), Some(Duration::from_secs(3)));
        assert_eq!(p.delay(1, Some(Duration::ZERO), 0.0), Some(Duration::from_millis(500)));
        assert_eq!(p.delay(1, Some(Duration::from_secs(60)), 0.0), None);
    }
}
