//! What a call waits for by time, kept without a clock: the call's machine
//! (`crate::machine`) sets and clears its timers here, says when it must
//! wake next ([`Deadlines::next`]) and takes what came due
//! ([`Deadlines::expired`]). The machine's tests run them at their real
//! values (a 24 h limit, 30 min session timers, 180 s of ringing); these
//! check the arithmetic.

use crate::session_timer::{expire_after, refresh_after, SessionTimer};
use std::time::{Duration, Instant};

/// A timer of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Nobody answered in time: an inbound call is refused, an outbound
    /// one cancelled.
    RingingTimeout,
    /// An inbound call's 180 goes again (in case the first was lost).
    RingAgain,
    /// The caller entered no complete PIN in time.
    PinTimeout,
    /// Our CANCEL of an outbound call got no final response in time.
    CancelGiveUp,
    /// The call's maximum duration is reached.
    MaxDuration,
    /// Time to refresh the session (we are the refresher, RFC 4028).
    SessionRefresh,
    /// The peer, the refresher, did not refresh in time: the session ends.
    SessionExpiry,
    /// The transfer got no final NOTIFY in time.
    Transfer,
    /// The peer did not hang up after a successful transfer: we do.
    ByeAfterTransfer,
    /// The wrong-PIN prompt took too long to play: the BYE goes anyway.
    WrongPinPrompt,
    /// Our BYE got no answer in time: the call is over anyway.
    ByeGiveUp,
}

const TIMERS: [Timer; 11] = [
    Timer::RingingTimeout,
    Timer::RingAgain,
    Timer::PinTimeout,
    Timer::CancelGiveUp,
    Timer::MaxDuration,
    Timer::SessionRefresh,
    Timer::SessionExpiry,
    Timer::Transfer,
    Timer::ByeAfterTransfer,
    Timer::WrongPinPrompt,
    Timer::ByeGiveUp,
];

/// Far enough ahead to mean "never" for a call, near enough that adding it
/// to a clock reading cannot overflow.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// When each [`Timer`] of a call fires, if it is set.
#[derive(Debug, Default, Clone)]
pub(crate) struct Deadlines {
    at: [Option<Instant>; TIMERS.len()],
}

impl Deadlines {
    /// Sets `timer` to fire `after` from `now`. Durations come from peers
    /// and API users, so the sum saturates at a century ahead.
    pub(crate) fn set(&mut self, timer: Timer, now: Instant, after: Duration) {
        let at = now
            .checked_add(after)
            .or_else(|| now.checked_add(NEVER))
            .unwrap_or(now);
        self.at[timer as usize] = Some(at);
    }

    /// Stops `timer`.
    pub(crate) fn clear(&mut self, timer: Timer) {
        self.at[timer as usize] = None;
    }

    /// When `timer` fires, if set.
    #[cfg(test)]
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer as usize]
    }

    /// The session timer's next act from `now`: our refresh half-way
    /// through the interval, or, when the peer refreshes, giving up a little
    /// before the interval ends (RFC 4028 §10); neither without a timer.
    pub(crate) fn arm_session(&mut self, timer: Option<SessionTimer>, now: Instant) {
        self.clear(Timer::SessionRefresh);
        self.clear(Timer::SessionExpiry);
        match timer {
            Some(t) if t.we_refresh => {
                self.set(Timer::SessionRefresh, now, refresh_after(t.interval))
            }
            Some(t) => self.set(Timer::SessionExpiry, now, expire_after(t.interval)),
            None => {}
        }
    }

    /// The earliest instant a set timer fires: when the call's task must
    /// wake up. `None`: nothing to wait for.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// The earliest timer due at `now`, which is cleared; call again until
    /// `None` (several may come due at once).
    pub(crate) fn expired(&mut self, now: Instant) -> Option<Timer> {
        let (index, _) = self
            .at
            .iter()
            .enumerate()
            .filter_map(|(i, at)| at.filter(|at| *at <= now).map(|at| (i, at)))
            .min_by_key(|(_, at)| *at)?;
        self.at[index] = None;
        TIMERS.get(index).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn timers_due_together_come_out_in_order_and_each_once() {
        let start = Instant::now();
        let mut deadlines = Deadlines::default();
        deadlines.set(Timer::Transfer, start, Duration::from_secs(30));
        deadlines.set(Timer::MaxDuration, start, Duration::from_secs(20));
        deadlines.set(Timer::ByeAfterTransfer, start, Duration::from_secs(40));
        deadlines.clear(Timer::ByeAfterTransfer);
        let later = start + HOUR;
        assert_eq!(deadlines.expired(later), Some(Timer::MaxDuration));
        assert_eq!(deadlines.expired(later), Some(Timer::Transfer));
        assert_eq!(deadlines.expired(later), None);
    }

    #[test]
    fn durations_from_peers_and_users_cannot_overflow_the_clock() {
        let start = Instant::now();
        let mut deadlines = Deadlines::default();
        deadlines.set(Timer::MaxDuration, start, Duration::MAX);
        let at = deadlines
            .get(Timer::MaxDuration)
            .unwrap_or_else(|| unreachable!());
        assert!(at > start + 99 * 365 * 24 * HOUR);
        deadlines.arm_session(
            Some(SessionTimer {
                interval: Duration::MAX,
                we_refresh: false,
            }),
            start,
        );
        assert!(deadlines.get(Timer::SessionExpiry).is_some());
    }
}
