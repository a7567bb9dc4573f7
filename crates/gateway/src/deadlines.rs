//! What a call waits for by time, kept without a clock: the call's task
//! sleeps until [`Deadlines::next`] and asks [`Deadlines::expired`] what
//! came due, so one branch of each of its loops serves every timer, and
//! tests drive the timers with instants they make up, at the real values
//! (a 24 h limit, 30 min session timers) in microseconds.

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
    fn a_day_long_call_ends_at_24_hours_and_not_a_microsecond_before() {
        let answered = Instant::now();
        let mut deadlines = Deadlines::default();
        deadlines.set(Timer::MaxDuration, answered, 24 * HOUR);
        let almost = answered + 24 * HOUR - Duration::from_micros(1);
        assert_eq!(deadlines.expired(almost), None);
        assert_eq!(deadlines.next(), Some(answered + 24 * HOUR));
        assert_eq!(
            deadlines.expired(answered + 24 * HOUR),
            Some(Timer::MaxDuration)
        );
        assert_eq!(deadlines.expired(answered + 25 * HOUR), None, "fires once");
        assert_eq!(deadlines.next(), None);
    }

    #[test]
    fn we_refresh_a_1800_s_session_every_900_s() {
        let start = Instant::now();
        let timer = SessionTimer {
            interval: Duration::from_secs(1800),
            we_refresh: true,
        };
        let mut deadlines = Deadlines::default();
        deadlines.arm_session(Some(timer), start);
        let mut now = start;
        for refresh in 1..=48 {
            // A day of refreshes, each answered at once.
            now = deadlines.next().unwrap_or_else(|| unreachable!());
            assert_eq!(now - start, Duration::from_secs(900 * refresh));
            assert_eq!(deadlines.expired(now), Some(Timer::SessionRefresh));
            deadlines.arm_session(Some(timer), now);
        }
        assert_eq!(now - start, 12 * HOUR);
        assert_eq!(deadlines.get(Timer::SessionExpiry), None);
    }

    #[test]
    fn a_peer_that_stops_refreshing_a_1800_s_session_loses_it_32_s_early() {
        let start = Instant::now();
        let timer = SessionTimer {
            interval: Duration::from_secs(1800),
            we_refresh: false,
        };
        let mut deadlines = Deadlines::default();
        deadlines.arm_session(Some(timer), start);
        // Two refreshes by the peer, then silence.
        for at in [1000, 2500] {
            let now = start + Duration::from_secs(at);
            assert_eq!(deadlines.expired(now), None);
            deadlines.arm_session(Some(timer), now);
        }
        let last = start + Duration::from_secs(2500);
        assert_eq!(deadlines.expired(last + Duration::from_secs(1767)), None);
        assert_eq!(
            deadlines.expired(last + Duration::from_secs(1768)),
            Some(Timer::SessionExpiry)
        );
        assert_eq!(deadlines.get(Timer::SessionRefresh), None);
    }

    #[test]
    fn an_inbound_call_rings_again_at_1_2_4_s_then_a_minute_apart_until_180_s() {
        let started = Instant::now();
        let mut deadlines = Deadlines::default();
        deadlines.set(Timer::RingingTimeout, started, Duration::from_secs(180));
        let mut gap = Duration::from_secs(1);
        deadlines.set(Timer::RingAgain, started, gap);
        let mut rang_at = Vec::new();
        loop {
            let now = deadlines.next().unwrap_or_else(|| unreachable!());
            match deadlines.expired(now) {
                Some(Timer::RingAgain) => {
                    rang_at.push((now - started).as_secs());
                    gap = (gap * 2).min(Duration::from_secs(60));
                    deadlines.set(Timer::RingAgain, now, gap);
                }
                Some(Timer::RingingTimeout) => {
                    assert_eq!(now - started, Duration::from_secs(180));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(rang_at, [1, 3, 7, 15, 31, 63, 123]);
    }

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
