//! Keeps this replica's SIP bans and the other replicas' in step through
//! Redis (when the store is Redis): bans made here are published, bans made
//! elsewhere are applied here, and a ban lifted on any replica is lifted on
//! all. A second's delay is the price of not touching Redis per packet.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use switchboard_sip::transport::SipHandle;
use switchboard_store::{SharedBan, SharedBans};
use tracing::warn;

/// How often bans are exchanged.
const EXCHANGE_EVERY: Duration = Duration::from_secs(1);

/// Runs for the life of the process.
pub async fn share_bans(sip: SipHandle, shared: SharedBans) {
    let mut tick = tokio::time::interval(EXCHANGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Bans made here and not yet in Redis (kept across a Redis outage).
    let mut unpublished: Vec<SharedBan> = Vec::new();
    // Addresses seen in the shared list last time: one of them gone from
    // it was lifted by an operator somewhere.
    let mut seen: HashSet<IpAddr> = HashSet::new();
    loop {
        tick.tick().await;
        let now = SystemTime::now();
        unpublished.extend(sip.take_new_bans().into_iter().map(|ban| SharedBan {
            ip: ban.ip,
            until: now + ban.remaining,
        }));
        if let Err(e) = shared.publish(&unpublished).await {
            warn!(error = %e, "cannot share SIP bans through Redis");
            continue;
        }
        unpublished.clear();
        let listed = match shared.current(now).await {
            Ok(listed) => listed,
            Err(e) => {
                warn!(error = %e, "cannot read the shared SIP bans");
                continue;
            }
        };
        let mut listed_ips = HashSet::new();
        for ban in &listed {
            let remaining = ban.until.duration_since(now).unwrap_or_default();
            sip.ban_from_peer(ban.ip, remaining);
            listed_ips.insert(ban.ip);
        }
        for ip in seen.difference(&listed_ips) {
            sip.lift_ban(*ip);
        }
        seen = listed_ips;
    }
}

/// Removes a lifted ban from the shared list, in the background.
pub fn lift_shared(shared: &SharedBans, ip: IpAddr) {
    let shared = shared.clone();
    tokio::spawn(async move {
        if let Err(e) = shared.remove(ip).await {
            warn!(error = %e, source = %ip, "cannot lift the shared SIP ban");
        }
    });
}

/// The replicas' shared digest nonce counts, over the store's Redis.
pub struct RedisNonceLedger {
    counts: switchboard_store::NonceCounts,
}

impl RedisNonceLedger {
    /// Over these counts.
    pub fn new(counts: switchboard_store::NonceCounts) -> RedisNonceLedger {
        RedisNonceLedger { counts }
    }
}

/// How long a claimed count is kept: longer than a nonce lives (60 s) plus
/// the clock skew replicas tolerate (30 s).
const NONCE_RECORD_TTL: Duration = Duration::from_secs(120);

impl switchboard_gateway::NonceLedger for RedisNonceLedger {
    fn claim<'a>(
        &'a self,
        nonce: &'a str,
        count: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            match self.counts.claim(nonce, count, NONCE_RECORD_TTL).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    // Fail open: this replica's own replay check still ran.
                    warn!(error = %e, "cannot check the shared nonce counts");
                    true
                }
            }
        })
    }
}
