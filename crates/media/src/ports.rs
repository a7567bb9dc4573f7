//! RTP port pairs from a configurable range, and their quarantine.
//!
//! Each call gets an even RTP port and the odd port above it for RTCP. When
//! a call ends its sockets are not closed at once: they stay bound and are
//! drained ("draining", as LiveKit calls it) until no stray packet has
//! arrived for `drain_idle` (30 s), or for at most `drain_max` (10 min), so a
//! late packet of an old call never reaches a new one on a reused port.
//!
//! A draining pair is looked at only when its time is up: the quarantine is
//! a queue in the order the checks fall due, and each check reads the pair's
//! sockets once. Strays that arrived meanwhile give it another `drain_idle`
//! from that check (so a pair leaves at most `drain_idle` later than the
//! last stray would have allowed); none, and it is free. Allocating a pair
//! therefore costs the checks that are due, not a read of every socket in
//! quarantine, which made each new call cost O(calls of the last 30 s).
//!
//! When every pair is in use or draining, a call is not refused while some
//! pair has been quiet long enough: the pair released longest ago that has
//! received nothing for `drain_min` (3 s) is handed out early, its sockets
//! read once more first. A high rate of short calls (1,000 calls a second
//! for 30 s would need 30,000 pairs of the default range's 5,000) then
//! costs quarantine length, not calls. A later stray of the old call meets
//! the new call's source check (only the new peer's addresses are taken).
//!
//! The bookkeeping is a plain data structure driven with explicit `now`
//! values ([`PortAllocator::allocate_at`], [`PortAllocator::maintain`]), so
//! the quarantine is tested without waiting.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Port range and quarantine settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    /// First port of the range (inclusive).
    pub first: u16,
    /// Last port of the range (inclusive).
    pub last: u16,
    /// A released pair is reusable after this long without stray packets.
    pub drain_idle: Duration,
    /// ...and in any case after this long.
    pub drain_max: Duration,
    /// When no pair is free, a draining pair quiet for this long is reused
    /// early rather than the call refused. As long as `drain_idle`: never.
    pub drain_min: Duration,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            first: 10_000,
            last: 20_000,
            drain_idle: Duration::from_secs(30),
            drain_max: Duration::from_secs(600),
            drain_min: Duration::from_secs(3),
        }
    }
}

/// Why no pair could be allocated.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Every pair in the range is in use, draining, or taken by another process.
    #[error("no free RTP port pair in {first}-{last}")]
    Exhausted {
        /// Range start.
        first: u16,
        /// Range end.
        last: u16,
    },
    /// The range holds no even/odd pair.
    #[error("RTP port range {first}-{last} holds no even/odd pair")]
    EmptyRange {
        /// Range start.
        first: u16,
        /// Range end.
        last: u16,
    },
    /// A socket option failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}

struct Draining {
    port: u16,
    sockets: Option<(UdpSocket, UdpSocket)>,
    released: Instant,
    /// Since when nothing has arrived: the release, or the last read that
    /// found strays.
    quiet_since: Instant,
    /// When the sockets are next read (the queue is in this order).
    check_at: Instant,
}

impl Draining {
    /// Reads what arrived on the pair; true if anything did.
    fn read_strays(&self) -> bool {
        let mut buf = [0u8; 1500];
        let mut strays = false;
        if let Some((rtp, rtcp)) = &self.sockets {
            for socket in [rtp, rtcp] {
                while socket.recv_from(&mut buf).is_ok() {
                    strays = true;
                }
            }
        }
        strays
    }
}

struct PoolState {
    in_use: Vec<bool>,
    draining: VecDeque<Draining>,
    cursor: usize,
    /// Pairs handed out before their full quarantine, for lack of others.
    reused_early: u64,
}

/// Hands out RTP/RTCP socket pairs. Cheap to clone (shared state).
#[derive(Clone)]
pub struct PortAllocator {
    config: PortConfig,
    state: Arc<Mutex<PoolState>>,
}

/// A bound RTP/RTCP socket pair. Dropping it starts the port's quarantine;
/// [`RtpPorts::release_at`] does so with an explicit time.
pub struct RtpPorts {
    /// The RTP socket (even port), non-blocking.
    pub rtp: UdpSocket,
    /// The RTCP socket (RTP port + 1), non-blocking.
    pub rtcp: UdpSocket,
    port: u16,
    allocator: Option<PortAllocator>,
}

impl std::fmt::Debug for RtpPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpPorts")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl RtpPorts {
    /// The RTP port (RTCP is one above).
    pub fn rtp_port(&self) -> u16 {
        self.port
    }

    /// Duplicates of the pair's (non-blocking) descriptors registered with
    /// the tokio reactor, RTP's first; the pair keeps its own. Must run on
    /// a tokio runtime.
    pub fn register(&self) -> io::Result<(tokio::net::UdpSocket, tokio::net::UdpSocket)> {
        let rtp = tokio::net::UdpSocket::from_std(self.rtp.try_clone()?)?;
        let rtcp = tokio::net::UdpSocket::from_std(self.rtcp.try_clone()?)?;
        Ok((rtp, rtcp))
    }

    /// Local address of the RTP socket.
    pub fn rtp_local(&self) -> io::Result<SocketAddr> {
        self.rtp.local_addr()
    }

    /// Binds an unmanaged pair on OS-chosen ports (even RTP, RTCP above it),
    /// for tests and tools that have no allocator.
    pub fn bind_ephemeral(ip: IpAddr) -> Result<RtpPorts, PortError> {
        for _ in 0..64 {
            let rtp = UdpSocket::bind(SocketAddr::new(ip, 0))?;
            let port = rtp.local_addr()?.port();
            if port % 2 == 1 || port == u16::MAX {
                continue;
            }
            if let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(ip, port + 1)) {
                rtp.set_nonblocking(true)?;
                rtcp.set_nonblocking(true)?;
                return Ok(RtpPorts {
                    rtp,
                    rtcp,
                    port,
                    allocator: None,
                });
            }
        }
        Err(PortError::Exhausted {
            first: 0,
            last: u16::MAX,
        })
    }

    /// Releases the pair at `now`: it drains before reuse.
    pub fn release_at(mut self, now: Instant) {
        self.release_inner(now);
    }

    fn release_inner(&mut self, now: Instant) {
        let Some(allocator) = self.allocator.take() else {
            return;
        };
        let sockets = match (self.rtp.try_clone(), self.rtcp.try_clone()) {
            (Ok(a), Ok(b)) => Some((a, b)),
            _ => None,
        };
        allocator.release(self.port, sockets, now);
    }
}

/// Two UDP sockets on the tokio reactor for a WebRTC peer's two
/// transports (LiveKit's subscriber and publisher): one RTP pair of the
/// range when there is an allocator (a firewall opened for RTP lets them
/// through; the pair drains like a call's once dropped), else an
/// unmanaged pair ([`RtpPorts::bind_ephemeral`]).
pub struct TransportSockets {
    first: tokio::net::UdpSocket,
    second: tokio::net::UdpSocket,
    /// Its own descriptors drain the ports once the sockets are done with.
    pair: RtpPorts,
}

impl std::fmt::Debug for TransportSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportSockets")
            .field("port", &self.pair.port)
            .finish_non_exhaustive()
    }
}

impl TransportSockets {
    /// Binds the two sockets on `ip`, from `ports` when given. Must run on
    /// a tokio runtime.
    pub fn bind(ports: Option<&PortAllocator>, ip: IpAddr) -> io::Result<TransportSockets> {
        let pair = match ports {
            Some(ports) => ports.allocate(ip),
            None => RtpPorts::bind_ephemeral(ip),
        }
        .map_err(|e| io::Error::new(io::ErrorKind::AddrNotAvailable, e.to_string()))?;
        let (first, second) = pair.register()?;
        Ok(TransportSockets {
            first,
            second,
            pair,
        })
    }

    /// The two sockets' addresses as peers reach them: `advertised` (the
    /// media address; they may be bound to 0.0.0.0) with their ports.
    pub fn advertised(&self, advertised: IpAddr) -> (SocketAddr, SocketAddr) {
        (
            SocketAddr::new(advertised, self.pair.port),
            SocketAddr::new(advertised, self.pair.port.saturating_add(1)),
        )
    }

    /// Splits into the two sockets (the even port's first) and the guard
    /// of their port pair, to be dropped after the sockets.
    pub fn into_parts(self) -> (tokio::net::UdpSocket, tokio::net::UdpSocket, PortGuard) {
        (self.first, self.second, PortGuard { _pair: self.pair })
    }
}

/// Holds a [`TransportSockets`] pair out of the range until dropped.
#[derive(Debug)]
pub struct PortGuard {
    _pair: RtpPorts,
}

impl Drop for RtpPorts {
    fn drop(&mut self) {
        self.release_inner(Instant::now());
    }
}

impl PortAllocator {
    /// An allocator over `config.first..=config.last`.
    pub fn new(mut config: PortConfig) -> Result<PortAllocator, PortError> {
        // Times are added to clock readings: a configured drain of years
        // would overflow them. A day is already far past any stray packet.
        const LONGEST_DRAIN: Duration = Duration::from_secs(24 * 3600);
        config.drain_idle = config.drain_idle.min(LONGEST_DRAIN);
        config.drain_max = config.drain_max.min(LONGEST_DRAIN);
        config.drain_min = config.drain_min.min(config.drain_idle);
        let first_even = config.first + (config.first & 1);
        if config.last < first_even.saturating_add(1) || first_even < config.first {
            return Err(PortError::EmptyRange {
                first: config.first,
                last: config.last,
            });
        }
        let pairs = usize::from((config.last - first_even - 1) / 2 + 1);
        Ok(PortAllocator {
            config,
            state: Arc::new(Mutex::new(PoolState {
                in_use: vec![false; pairs],
                draining: VecDeque::new(),
                cursor: 0,
                reused_early: 0,
            })),
        })
    }

    fn first_even(&self) -> u16 {
        self.config.first + (self.config.first & 1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // A poisoned lock only means another thread panicked mid-update of
        // plain bookkeeping; the data is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pairs currently in quarantine.
    pub fn draining_count(&self) -> usize {
        self.lock().draining.len()
    }

    /// Pairs handed out early (quiet for `drain_min` but not yet for
    /// `drain_idle`) because no other pair was free, since start.
    pub fn reused_early_count(&self) -> u64 {
        self.lock().reused_early
    }

    /// Pairs held by calls now (allocated and not yet released): what a
    /// leak check expects back at zero once every call has ended.
    pub fn active_count(&self) -> usize {
        let state = self.lock();
        let taken = state.in_use.iter().filter(|used| **used).count();
        taken.saturating_sub(state.draining.len())
    }

    /// Allocates a pair bound on `ip` now.
    pub fn allocate(&self, ip: IpAddr) -> Result<RtpPorts, PortError> {
        self.allocate_at(ip, Instant::now())
    }

    /// Allocates a pair bound on `ip`, with `now` as the current time.
    pub fn allocate_at(&self, ip: IpAddr, now: Instant) -> Result<RtpPorts, PortError> {
        self.maintain(now);
        let mut state = self.lock();
        let pairs = state.in_use.len();
        // A random start: the next call's port cannot be predicted from
        // this one's (released ports sit in quarantine, so a random pick
        // does not reuse one early).
        let mut random = [0u8; 8];
        if getrandom::fill(&mut random).is_ok() && pairs > 0 {
            state.cursor = (u64::from_le_bytes(random) % pairs as u64) as usize;
        }
        for step in 0..pairs {
            let index = (state.cursor + step) % pairs;
            if state.in_use[index] {
                continue;
            }
            let port = self.first_even() + 2 * index as u16;
            let Some((rtp, rtcp)) = bind_pair(ip, port) else {
                continue;
            };
            rtp.set_nonblocking(true)?;
            rtcp.set_nonblocking(true)?;
            state.in_use[index] = true;
            state.cursor = (index + 1) % pairs;
            return Ok(RtpPorts {
                rtp,
                rtcp,
                port,
                allocator: Some(self.clone()),
            });
        }
        if let Some((port, (rtp, rtcp))) = self.reuse_quiet_pair(&mut state, ip, now) {
            state.reused_early = state.reused_early.saturating_add(1);
            return Ok(RtpPorts {
                rtp,
                rtcp,
                port,
                allocator: Some(self.clone()),
            });
        }
        Err(PortError::Exhausted {
            first: self.config.first,
            last: self.config.last,
        })
    }

    fn release(&self, port: u16, sockets: Option<(UdpSocket, UdpSocket)>, now: Instant) {
        let check_at = now + self.config.drain_idle.min(self.config.drain_max);
        let mut state = self.lock();
        state.draining.push_back(Draining {
            port,
            sockets,
            released: now,
            quiet_since: now,
            check_at,
        });
    }

    /// The draining pair quiet longest, if nothing has arrived on it for
    /// `drain_min` (its sockets read once more now); with its sockets, still
    /// marked in use.
    fn reuse_quiet_pair(
        &self,
        state: &mut PoolState,
        ip: IpAddr,
        now: Instant,
    ) -> Option<(u16, (UdpSocket, UdpSocket))> {
        // A burst of strays on many old pairs must not make one allocation
        // read them all.
        const MOST_PAIRS_READ: usize = 32;
        for _ in 0..MOST_PAIRS_READ.min(state.draining.len()) {
            let front = state.draining.front()?;
            if now.saturating_duration_since(front.quiet_since) < self.config.drain_min {
                return None;
            }
            let mut d = state.draining.pop_front()?;
            if d.read_strays() {
                self.check_again(state, d, now);
                continue;
            }
            let bound_ip = d.sockets.as_ref().map(|(rtp, _)| rtp.local_addr());
            match (bound_ip, d.sockets.take()) {
                (Some(Ok(local)), Some(pair)) if local.ip() == ip => return Some((d.port, pair)),
                // Bound for another address: not what this call asks for.
                (_, Some(pair)) => {
                    d.sockets = Some(pair);
                    state.draining.push_front(d);
                    return None;
                }
                // Its duplicates could not be made (descriptors ran out), so
                // nothing of ours holds the port: it is simply free.
                (_, None) => self.free(state, d.port),
            }
        }
        None
    }

    /// Puts a pair that had strays back in the queue, for another
    /// `drain_idle` (at most until `drain_max` after its release).
    fn check_again(&self, state: &mut PoolState, mut d: Draining, now: Instant) {
        let cap = d.released + self.config.drain_max;
        d.quiet_since = now;
        d.check_at = (now + self.config.drain_idle).min(cap);
        state.draining.push_back(d);
    }

    fn free(&self, state: &mut PoolState, port: u16) {
        let index = usize::from(port.saturating_sub(self.first_even()) / 2);
        if let Some(slot) = state.in_use.get_mut(index) {
            *slot = false;
        }
    }

    /// Checks the quarantined pairs whose time is up: a pair with no stray
    /// packet since its last check, or past `drain_max`, is freed; one with
    /// strays is checked again `drain_idle` later. Called by
    /// [`Self::allocate_at`]; a worker may also call it periodically.
    pub fn maintain(&self, now: Instant) {
        let mut state = self.lock();
        while state.draining.front().is_some_and(|d| d.check_at <= now) {
            let Some(d) = state.draining.pop_front() else {
                break;
            };
            if d.read_strays() && now < d.released + self.config.drain_max {
                self.check_again(&mut state, d, now);
            } else {
                self.free(&mut state, d.port);
            }
        }
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> Option<(UdpSocket, UdpSocket)> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, port)).ok()?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port.checked_add(1)?)).ok()?;
    Some((rtp, rtcp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A small range the OS is unlikely to be using right now: around a port
    /// it just handed out and took back.
    fn free_range(pairs: u16) -> PortConfig {
        let probe = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        let base = probe.local_addr().unwrap().port().clamp(20_000, 60_000) & !1;
        drop(probe);
        PortConfig {
            first: base,
            last: base + 2 * pairs - 1,
            drain_idle: Duration::from_secs(30),
            drain_max: Duration::from_secs(600),
            drain_min: Duration::from_secs(3),
        }
    }

    #[test]
    fn a_full_range_reuses_the_longest_quiet_pair_early_but_never_one_with_strays() {
        let allocator = PortAllocator::new(free_range(2)).unwrap();
        let t0 = Instant::now();
        let a = allocator.allocate_at(LOOPBACK, t0).unwrap();
        let b = allocator.allocate_at(LOOPBACK, t0).unwrap();
        let (a_port, b_port) = (a.rtp_port(), b.rtp_port());
        let stray_to_b = b.rtp_local().unwrap();
        a.release_at(t0);
        b.release_at(t0 + Duration::from_millis(10));

        // Both draining, neither quiet for drain_min yet: refused.
        let early = t0 + Duration::from_secs(2);
        assert!(matches!(
            allocator.allocate_at(LOOPBACK, early),
            Err(PortError::Exhausted { .. })
        ));

        // A late packet of b's old call arrives; a has heard nothing.
        let sender = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        sender.send_to(b"late rtp", stray_to_b).unwrap();
        std::thread::sleep(Duration::from_millis(50));

        let later = t0 + Duration::from_secs(4);
        let first = allocator.allocate_at(LOOPBACK, later).unwrap();
        assert_eq!(
            first.rtp_port(),
            a_port,
            "the pair released first, and quiet"
        );
        assert_eq!(allocator.reused_early_count(), 1);
        // b had a stray: it is read and kept in quarantine, not handed out.
        assert!(matches!(
            allocator.allocate_at(LOOPBACK, later),
            Err(PortError::Exhausted { .. })
        ));
        assert_eq!(allocator.draining_count(), 1);
        // Quiet for drain_min after that check, b may go too, and the new
        // call's socket holds nothing of the old call.
        let b_again = allocator
            .allocate_at(LOOPBACK, later + Duration::from_secs(3))
            .unwrap();
        assert_eq!(b_again.rtp_port(), b_port);
        assert_eq!(allocator.reused_early_count(), 2);
        let mut buf = [0u8; 64];
        assert!(
            b_again.rtp.recv_from(&mut buf).is_err(),
            "the stray was drained"
        );
    }

    #[test]
    fn pairs_are_even_and_odd_and_not_reused_while_draining() {
        // drain_min as long as drain_idle: no early reuse, full quarantine.
        let config = PortConfig {
            drain_min: Duration::from_secs(30),
            ..free_range(2)
        };
        let allocator = PortAllocator::new(config).unwrap();
        let t0 = Instant::now();
        let first = allocator.allocate_at(LOOPBACK, t0).unwrap();
        let port = first.rtp_port();
        assert_eq!(port % 2, 0);
        assert_eq!(first.rtcp.local_addr().unwrap().port(), port + 1);
        let second = allocator.allocate_at(LOOPBACK, t0).unwrap();
        assert_ne!(second.rtp_port(), port);
        assert_eq!(allocator.active_count(), 2);
        assert!(matches!(
            allocator.allocate_at(LOOPBACK, t0),
            Err(PortError::Exhausted { .. })
        ));

        // A stray packet reaches the released port 20 s later. The pair's
        // check is due at 30 s; the allocation at 45 s makes it, finds the
        // stray, and sets the next check 30 s on, at 75 s.
        let stray_target = first.rtp_local().unwrap();
        first.release_at(t0);
        assert_eq!(allocator.active_count(), 1, "draining pairs are not active");
        let sender = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        sender.send_to(b"late RTP", stray_target).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        allocator.maintain(t0 + Duration::from_secs(20));
        for at in [29, 45, 74] {
            assert!(
                matches!(
                    allocator.allocate_at(LOOPBACK, t0 + Duration::from_secs(at)),
                    Err(PortError::Exhausted { .. })
                ),
                "free at {at} s"
            );
        }
        // No stray since that check: free at the next one.
        let again = allocator
            .allocate_at(LOOPBACK, t0 + Duration::from_secs(75))
            .unwrap();
        assert_eq!(again.rtp_port(), port);
        assert_eq!(allocator.draining_count(), 0);
        drop(second);
        assert_eq!(allocator.draining_count(), 1);
    }

    #[test]
    fn quarantine_ends_at_the_cap_even_under_a_stream_of_strays() {
        let config = PortConfig {
            drain_min: Duration::from_secs(30),
            ..free_range(1)
        };
        let allocator = PortAllocator::new(config).unwrap();
        let t0 = Instant::now();
        let ports = allocator.allocate_at(LOOPBACK, t0).unwrap();
        let target = ports.rtp_local().unwrap();
        ports.release_at(t0);
        let sender = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        for second in (20..=580).step_by(20) {
            sender.send_to(b"x", target).unwrap();
            std::thread::sleep(Duration::from_millis(2));
            allocator.maintain(t0 + Duration::from_secs(second));
        }
        assert!(allocator
            .allocate_at(LOOPBACK, t0 + Duration::from_secs(590))
            .is_err());
        assert!(allocator
            .allocate_at(LOOPBACK, t0 + Duration::from_secs(600))
            .is_ok());
    }

    #[test]
    fn rejects_a_range_without_a_pair() {
        let one = PortConfig {
            first: 10_001,
            last: 10_002,
            ..PortConfig::default()
        };
        assert!(matches!(
            PortAllocator::new(one),
            Err(PortError::EmptyRange { .. })
        ));
        assert_eq!(
            PortAllocator::new(PortConfig::default())
                .unwrap()
                .lock()
                .in_use
                .len(),
            5000
        );
    }
}
