//! Per-source accounting at the edge, what Kamailio's pike module and
//! fail2ban give a PBX, built in: every source IP has a budget of new
//! requests and of INVITEs per second; sources that flood past it, fail
//! digest authentication or keep asking for numbers that do not exist are
//! banned for a while, and a banned source gets silence. Scanners that say
//! who they are (`friendly-scanner`, `sipvicious`, ...) are banned on sight.
//!
//! Sans-IO like the endpoint that owns it: it is given the time, keeps no
//! timers, and its memory is bounded by `max_sources`.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What the guard enforces. Every limit is per source IP.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// Off: nothing is counted, limited or banned.
    pub enabled: bool,
    /// New requests (not retransmissions or ACKs) a second, sustained.
    pub requests_per_sec: u32,
    /// New requests allowed in a burst.
    pub request_burst: u32,
    /// New INVITEs (outside a dialog) a second, sustained.
    pub invites_per_sec: u32,
    /// New INVITEs allowed in a burst.
    pub invite_burst: u32,
    /// Requests dropped for exceeding the rates, within `window`, that ban
    /// the source (a flood, not a peak).
    pub excess_to_ban: u32,
    /// Failed digest authentications (wrong password, wrong PIN) within
    /// `window` that ban the source.
    pub auth_failures_to_ban: u32,
    /// Calls refused for a number no trunk has, within `window`, that ban
    /// the source (extension scanning, as `svwar` does).
    pub refusals_to_ban: u32,
    /// The window the counts above are kept for.
    pub window: Duration,
    /// How long a ban lasts.
    pub ban_time: Duration,
    /// User-Agent substrings (compared case-insensitively) of scanners,
    /// banned at their first request.
    pub scanner_user_agents: Vec<String>,
    /// Sources never limited nor banned (the operator's own networks).
    pub trusted: Vec<IpNet>,
    /// Most sources tracked at once; past it, the oldest idle ones are
    /// forgotten (bans are kept).
    pub max_sources: usize,
}

impl Default for GuardConfig {
    fn default() -> GuardConfig {
        GuardConfig {
            enabled: true,
            requests_per_sec: 200,
            request_burst: 400,
            invites_per_sec: 50,
            invite_burst: 100,
            excess_to_ban: 500,
            auth_failures_to_ban: 10,
            refusals_to_ban: 30,
            window: Duration::from_secs(60),
            ban_time: Duration::from_secs(600),
            scanner_user_agents: default_scanner_user_agents(),
            trusted: Vec::new(),
            max_sources: 100_000,
        }
    }
}

/// The User-Agents of the common SIP scanners (SIPVicious and its clones,
/// sipcli, SIPBomber, VaxSIPUserAgent...), lowercase.
pub fn default_scanner_user_agents() -> Vec<String> {
    [
        "friendly-scanner",
        "sipvicious",
        "sipcli",
        "sip-scan",
        "sipsak-scanner",
        "sundayddr",
        "iwar",
        "sivus",
        "vaxsipuseragent",
        "vaxipuseragent",
        "sipbomber",
        "pplsip",
        "smap",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Whether `haystack` contains `needle` (lowercase ASCII), ignoring ASCII
/// case, without allocating.
fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (hay, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Why the guard refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The source is banned.
    Banned,
    /// More new requests than the source's budget.
    RateExceeded,
    /// The User-Agent of a scanner (now banned).
    Scanner,
}

/// What the transaction user reports about a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// Wrong digest credentials or a wrong PIN.
    AuthFailure,
    /// A call for a number no trunk has.
    UnknownNumber,
}

/// A ban in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The banned source.
    pub ip: IpAddr,
    /// Time left.
    pub remaining: Duration,
    /// Why.
    pub reason: String,
}

/// A token bucket in thousandths of a token, so rates need no floats:
/// `per_sec` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    milli_tokens: u64,
    last: Instant,
}

impl Bucket {
    /// A bucket holding its whole burst.
    pub fn full(burst: u32, now: Instant) -> Bucket {
        Bucket {
            milli_tokens: u64::from(burst).saturating_mul(1000),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, per_sec: u32, burst: u32, now: Instant) -> bool {
        let elapsed_ms = now.saturating_duration_since(self.last).as_millis();
        let elapsed_ms = u64::try_from(elapsed_ms).unwrap_or(u64::MAX);
        let refill = elapsed_ms.saturating_mul(u64::from(per_sec));
        let cap = u64::from(burst).saturating_mul(1000);
        self.milli_tokens = self.milli_tokens.saturating_add(refill).min(cap);
        self.last = now;
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// A count that forgets itself after a window.
#[derive(Debug, Clone, Copy, Default)]
struct WindowCount {
    count: u32,
    since: Option<Instant>,
}

impl WindowCount {
    fn bump(&mut self, window: Duration, now: Instant) -> u32 {
        match self.since {
            Some(since) if now.saturating_duration_since(since) <= window => {}
            _ => {
                self.count = 0;
                self.since = Some(now);
            }
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

#[derive(Debug, Clone)]
struct Source {
    requests: Bucket,
    invites: Bucket,
    excess: WindowCount,
    auth_failures: WindowCount,
    refusals: WindowCount,
    banned_until: Option<Instant>,
    ban_reason: &'static str,
    last_seen: Instant,
}

impl Source {
    fn new(config: &GuardConfig, now: Instant) -> Source {
        Source {
            requests: Bucket::full(config.request_burst, now),
            invites: Bucket::full(config.invite_burst, now),
            excess: WindowCount::default(),
            auth_failures: WindowCount::default(),
            refusals: WindowCount::default(),
            banned_until: None,
            ban_reason: "",
            last_seen: now,
        }
    }

    fn banned(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|until| now < until)
    }
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// Bans made since start.
    pub bans: u64,
    /// Datagrams and messages dropped from banned sources.
    pub dropped_banned: u64,
    /// Requests dropped for exceeding a rate.
    pub dropped_rate: u64,
    /// Requests from scanners' User-Agents.
    pub dropped_scanner: u64,
    /// Bans in force now.
    pub active_bans: u64,
}

/// Per-source budgets and bans.
#[derive(Debug)]
pub struct SourceGuard {
    config: GuardConfig,
    sources: HashMap<IpAddr, Source>,
    /// Sources exempt besides `config.trusted`: trunks' allowed addresses,
    /// kept current by the application.
    exempt: Vec<IpNet>,
    stats: GuardStats,
    /// Bans made here since the application last took them (to share with
    /// other replicas).
    new_bans: Vec<Ban>,
}

impl SourceGuard {
    /// A guard with `config`.
    pub fn new(mut config: GuardConfig) -> SourceGuard {
        // Lowercased once here, so a request's User-Agent is matched
        // without allocating.
        config.scanner_user_agents = config
            .scanner_user_agents
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.to_ascii_lowercase())
            .collect();
        SourceGuard {
            config,
            sources: HashMap::new(),
            exempt: Vec::new(),
            stats: GuardStats::default(),
            new_bans: Vec::new(),
        }
    }

    /// Replaces the exempt networks besides the configured trusted ones.
    pub fn set_exempt(&mut self, networks: Vec<IpNet>) {
        self.exempt = networks;
    }

    /// Whether a source is trusted or exempt.
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.config
            .trusted
            .iter()
            .chain(&self.exempt)
            .any(|net| net.contains(&ip))
    }

    /// Whether `ip` is banned now, without counting anything.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.config.enabled
            && self
                .sources
                .get(&ip.to_canonical())
                .is_some_and(|s| s.banned(now))
    }

    /// Whether `ip` is banned now; counts the drop when it is.
    pub fn check_banned(&mut self, ip: IpAddr, now: Instant) -> bool {
        let banned = self.is_banned(ip, now);
        if banned {
            self.stats.dropped_banned += 1;
        }
        banned
    }

    /// Admits a new request (not a retransmission, not an ACK) or says why
    /// not. `new_invite` is an INVITE outside a dialog.
    pub fn admit(
        &mut self,
        ip: IpAddr,
        now: Instant,
        new_invite: bool,
        user_agent: Option<&str>,
    ) -> Result<(), Refused> {
        if !self.config.enabled {
            return Ok(());
        }
        let ip = ip.to_canonical();
        // Exemption is looked up only on the way to a refusal: the networks
        // are many (every trunk's), the refusals few.
        let scanner = user_agent.is_some_and(|agent| {
            self.config
                .scanner_user_agents
                .iter()
                .any(|s| contains_ignore_ascii_case(agent, s))
        });
        if scanner && !self.is_exempt(ip) {
            self.stats.dropped_scanner += 1;
            self.ban(ip, now, "scanner User-Agent");
            return Err(Refused::Scanner);
        }
        let GuardConfig {
            requests_per_sec,
            request_burst,
            invites_per_sec,
            invite_burst,
            window,
            excess_to_ban,
            ..
        } = self.config;
        let source = self.source(ip, now);
        if source.banned(now) {
            self.stats.dropped_banned += 1;
            return Err(Refused::Banned);
        }
        source.last_seen = now;
        let admitted = source.requests.take(requests_per_sec, request_burst, now)
            && (!new_invite || source.invites.take(invites_per_sec, invite_burst, now));
        if admitted {
            return Ok(());
        }
        let excess = source.excess.bump(window, now);
        if self.is_exempt(ip) {
            return Ok(());
        }
        self.stats.dropped_rate += 1;
        if excess >= excess_to_ban {
            self.ban(ip, now, "flood");
        }
        Err(Refused::RateExceeded)
    }

    /// Counts an offence; bans the source when its threshold is reached.
    /// Returns whether the source is banned now.
    pub fn report(&mut self, ip: IpAddr, now: Instant, offence: Offence) -> bool {
        if !self.config.enabled || self.is_exempt(ip) {
            return false;
        }
        let ip = ip.to_canonical();
        let (window, auth_limit, refusal_limit) = (
            self.config.window,
            self.config.auth_failures_to_ban,
            self.config.refusals_to_ban,
        );
        let source = self.source(ip, now);
        let (count, limit, reason) = match offence {
            Offence::AuthFailure => (
                source.auth_failures.bump(window, now),
                auth_limit,
                "failed authentications",
            ),
            Offence::UnknownNumber => (
                source.refusals.bump(window, now),
                refusal_limit,
                "calls to unknown numbers",
            ),
        };
        if count >= limit {
            self.ban(ip, now, reason);
        }
        self.sources.get(&ip).is_some_and(|s| s.banned(now))
    }

    /// Bans `ip` for the configured time.
    pub fn ban(&mut self, ip: IpAddr, now: Instant, reason: &'static str) {
        let ban_time = self.config.ban_time;
        if self.apply_ban(ip, now, ban_time, reason) {
            self.new_bans.push(Ban {
                ip: ip.to_canonical(),
                remaining: ban_time,
                reason: reason.to_string(),
            });
            tracing::warn!(source = %ip, reason, ban_secs = ban_time.as_secs(), "source banned");
        }
    }

    /// Applies a ban another replica made (not reported as new).
    pub fn ban_from_peer(&mut self, ip: IpAddr, now: Instant, remaining: Duration) {
        if !self.config.enabled || self.is_exempt(ip) {
            return;
        }
        if self.apply_ban(ip, now, remaining, "banned by another replica") {
            tracing::info!(source = %ip, ban_secs = remaining.as_secs(), "source banned by another replica");
        }
    }

    /// Bans made here since the last call (for sharing).
    pub fn take_new_bans(&mut self) -> Vec<Ban> {
        std::mem::take(&mut self.new_bans)
    }

    fn apply_ban(
        &mut self,
        ip: IpAddr,
        now: Instant,
        time: Duration,
        reason: &'static str,
    ) -> bool {
        let source = self.source(ip.to_canonical(), now);
        if source.banned(now) {
            return false;
        }
        source.banned_until = now.checked_add(time);
        source.ban_reason = reason;
        self.stats.bans += 1;
        true
    }

    /// Lifts a ban (and forgets the source's counts); whether there was one.
    pub fn lift(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = ip.to_canonical();
        let was = self.sources.get(&ip).is_some_and(|s| s.banned(now));
        self.sources.remove(&ip);
        if was {
            tracing::info!(source = %ip, "ban lifted");
        }
        was
    }

    /// The bans in force.
    pub fn bans(&self, now: Instant) -> Vec<Ban> {
        let mut bans: Vec<Ban> = self
            .sources
            .iter()
            .filter_map(|(ip, s)| {
                let until = s.banned_until.filter(|until| now < *until)?;
                Some(Ban {
                    ip: *ip,
                    remaining: until.saturating_duration_since(now),
                    reason: s.ban_reason.to_string(),
                })
            })
            .collect();
        bans.sort_by_key(|b| b.ip);
        bans
    }

    /// Counters, with the bans in force now.
    pub fn stats(&self, now: Instant) -> GuardStats {
        let mut stats = self.stats;
        stats.active_bans = self.sources.values().filter(|s| s.banned(now)).count() as u64;
        stats
    }

    fn source(&mut self, ip: IpAddr, now: Instant) -> &mut Source {
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.config.max_sources {
            self.forget_idle(now);
        }
        let config = &self.config;
        self.sources
            .entry(ip)
            .or_insert_with(|| Source::new(config, now))
    }

    /// Forgets the sources that are not banned and were idle longest, down
    /// to three quarters of `max_sources`: O(sources) once in a while, not
    /// per request.
    fn forget_idle(&mut self, now: Instant) {
        let keep = self.config.max_sources.saturating_mul(3) / 4;
        let mut idle: Vec<(Instant, IpAddr)> = self
            .sources
            .iter()
            .filter(|(_, s)| !s.banned(now))
            .map(|(ip, s)| (s.last_seen, *ip))
            .collect();
        idle.sort();
        let excess = self.sources.len().saturating_sub(keep);
        for (_, ip) in idle.into_iter().take(excess) {
            self.sources.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    fn guard() -> SourceGuard {
        SourceGuard::new(GuardConfig {
            requests_per_sec: 10,
            request_burst: 20,
            invites_per_sec: 2,
            invite_burst: 4,
            excess_to_ban: 50,
            auth_failures_to_ban: 3,
            refusals_to_ban: 5,
            ..GuardConfig::default()
        })
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_a_flood_is_banned() {
        let mut g = guard();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let admitted = (0..4)
            .filter(|_| g.admit(a, t0, true, None).is_ok())
            .count();
        assert_eq!(admitted, 4, "the INVITE burst");
        assert_eq!(g.admit(a, t0, true, None), Err(Refused::RateExceeded));
        // Half a second later one more INVITE (2 a second).
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(g.admit(a, t1, true, None), Ok(()));
        assert_eq!(g.admit(a, t1, true, None), Err(Refused::RateExceeded));
        // Another source is not affected.
        assert_eq!(g.admit(ip("192.0.2.2"), t1, true, None), Ok(()));
        // Keep flooding: banned after 50 refused requests.
        let mut refused = 0;
        while !g.check_banned(a, t1) {
            let _ = g.admit(a, t1, true, None);
            refused += 1;
            assert!(refused < 100, "never banned");
        }
        assert_eq!(g.bans(t1)[0].reason, "flood");
        // Silence until the ban ends.
        assert_eq!(g.admit(a, t1, false, None), Err(Refused::Banned));
        let after = t1 + Duration::from_secs(601);
        assert!(!g.check_banned(a, after));
        assert_eq!(g.admit(a, after, true, None), Ok(()));
    }

    #[test]
    fn failed_authentications_and_unknown_numbers_ban_at_their_thresholds() {
        let mut g = guard();
        let now = Instant::now();
        let a = ip("198.51.100.7");
        assert!(!g.report(a, now, Offence::AuthFailure));
        assert!(!g.report(a, now, Offence::AuthFailure));
        assert!(g.report(a, now, Offence::AuthFailure));
        assert_eq!(g.stats(now).active_bans, 1);
        // Counts forget themselves after the window.
        let b = ip("198.51.100.8");
        for n in 0..4 {
            g.report(b, now + Duration::from_secs(61) * n, Offence::UnknownNumber);
        }
        let later = now + Duration::from_secs(300);
        assert!(!g.check_banned(b, later));
        for _ in 0..4 {
            assert!(!g.report(b, later, Offence::UnknownNumber));
        }
        assert!(g.report(b, later, Offence::UnknownNumber));
        assert!(g.lift(b, later));
        assert!(!g.check_banned(b, later));
        assert!(!g.lift(b, later));
    }

    #[test]
    fn scanners_are_banned_on_sight_and_trusted_sources_never() {
        let mut g = SourceGuard::new(GuardConfig {
            trusted: vec!["10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())],
            auth_failures_to_ban: 1,
            ..GuardConfig::default()
        });
        let now = Instant::now();
        let scanner = ip("203.0.113.9");
        assert_eq!(
            g.admit(scanner, now, false, Some("friendly-scanner")),
            Err(Refused::Scanner)
        );
        assert!(g.check_banned(scanner, now));
        let inside = ip("10.1.2.3");
        assert_eq!(g.admit(inside, now, false, Some("sipvicious")), Ok(()));
        assert!(!g.report(inside, now, Offence::AuthFailure));
        g.set_exempt(vec!["192.0.2.0/24"
            .parse()
            .unwrap_or_else(|_| unreachable!())]);
        assert!(!g.report(ip("192.0.2.5"), now, Offence::AuthFailure));
        assert!(g.report(ip("192.0.3.5"), now, Offence::AuthFailure));
        // A mapped IPv4 address is the same source.
        assert!(g.check_banned(ip("::ffff:192.0.3.5"), now));
    }

    #[test]
    fn memory_is_bounded_and_bans_survive_the_sweep() {
        let mut g = SourceGuard::new(GuardConfig {
            max_sources: 100,
            ..GuardConfig::default()
        });
        let now = Instant::now();
        let banned = ip("203.0.113.1");
        g.ban(banned, now, "test");
        for n in 0..1000u32 {
            let source = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            let _ = g.admit(
                source,
                now + Duration::from_millis(u64::from(n)),
                false,
                None,
            );
        }
        assert!(g.sources.len() <= 100, "{}", g.sources.len());
        assert!(g.check_banned(banned, now));
    }
}
