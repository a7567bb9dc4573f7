//! When a draining process may exit.

use std::time::{Duration, Instant};

/// The drain that starts on SIGTERM: new calls are refused from the start;
/// the process exits once no call remains and the minimum time has passed
/// (so health checks and carriers' OPTIONS pings see the 503), or at the
/// maximum time whatever remains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    started: Instant,
    min: Duration,
    max: Duration,
}

impl Drain {
    /// A drain starting at `now`.
    pub fn new(now: Instant, min: Duration, max: Duration) -> Drain {
        Drain {
            started: now,
            min,
            max: max.max(min),
        }
    }

    /// True when the process should exit.
    pub fn should_exit(&self, now: Instant, active_calls: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.started);
        elapsed >= self.max || (elapsed >= self.min && active_calls == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_minimum_then_for_calls_then_gives_up_at_the_maximum() {
        let t0 = Instant::now();
        let drain = Drain::new(t0, Duration::from_secs(5), Duration::from_secs(60));
        assert!(!drain.should_exit(t0, 0));
        assert!(!drain.should_exit(t0 + Duration::from_secs(4), 0));
        assert!(drain.should_exit(t0 + Duration::from_secs(5), 0));
        assert!(!drain.should_exit(t0 + Duration::from_secs(30), 3));
        assert!(drain.should_exit(t0 + Duration::from_secs(60), 3));
    }

    #[test]
    fn a_maximum_below_the_minimum_is_raised_to_it() {
        let t0 = Instant::now();
        let drain = Drain::new(t0, Duration::from_secs(10), Duration::from_secs(1));
        assert!(!drain.should_exit(t0 + Duration::from_secs(5), 1));
        assert!(drain.should_exit(t0 + Duration::from_secs(10), 1));
    }
}
