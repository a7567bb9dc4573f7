//! Bans shared between replicas through Redis: one sorted set of banned
//! source addresses scored by when each ban ends. The SIP edge of every
//! replica publishes the bans it makes and applies the others', so a
//! scanner banned by one replica behind a load balancer is silenced by all.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;

use crate::error::StoreError;

/// A ban as shared: the address and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedBan {
    /// The banned source.
    pub ip: IpAddr,
    /// When the ban ends.
    pub until: SystemTime,
}

/// The replicas' common ban list.
#[derive(Clone)]
pub struct SharedBans {
    conn: ConnectionManager,
    key_prefix: String,
    key: String,
}

impl std::fmt::Debug for SharedBans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBans")
            .field("key", &self.key)
            .finish()
    }
}

/// A connection to `url` that gives up on a command after `patience`
/// rather than retrying for the client's default ~10 s.
pub(crate) async fn manager(
    url: &str,
    patience: Duration,
) -> Result<ConnectionManager, StoreError> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200))
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(patience));
    Ok(client.get_connection_manager_with_config(config).await?)
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SharedBans {
    /// Connects to the Redis at `url`; keys start with `key_prefix`.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<SharedBans, StoreError> {
        Ok(SharedBans {
            conn: manager(url, Duration::from_secs(2)).await?,
            key_prefix: key_prefix.to_string(),
            key: format!("{key_prefix}switchboard:sip_bans"),
        })
    }

    /// Adds bans (a later end wins for an address already banned).
    pub async fn publish(&self, bans: &[SharedBan]) -> Result<(), StoreError> {
        if bans.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&self.key).arg("GT");
        for ban in bans {
            cmd.arg(unix(ban.until)).arg(ban.ip.to_string());
        }
        let mut conn = self.conn.clone();
        let _: i64 = cmd.query_async(&mut conn).await?;
        Ok(())
    }

    /// The bans in force now (expired ones are removed on the way).
    pub async fn current(&self, now: SystemTime) -> Result<Vec<SharedBan>, StoreError> {
        let now = unix(now);
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("ZREMRANGEBYSCORE")
            .arg(&self.key)
            .arg("-inf")
            .arg(now)
            .query_async(&mut conn)
            .await?;
        let entries: Vec<(String, u64)> = redis::cmd("ZRANGE")
            .arg(&self.key)
            .arg(format!("({now}"))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|(ip, until)| {
                Some(SharedBan {
                    ip: ip.parse().ok()?,
                    until: UNIX_EPOCH + Duration::from_secs(until),
                })
            })
            .collect())
    }

    /// The replicas' digest nonce counts, over the same connection.
    pub fn nonce_counts(&self) -> NonceCounts {
        NonceCounts {
            conn: self.conn.clone(),
            prefix: format!("{}switchboard:nonce:", self.key_prefix),
            script: std::sync::Arc::new(redis::Script::new(CLAIM_SCRIPT)),
        }
    }

    /// Removes a ban (an operator lifted it on some replica).
    pub async fn remove(&self, ip: IpAddr) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("ZREM")
            .arg(&self.key)
            .arg(ip.to_string())
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// Digest nonce counts claimed by any replica: a captured response replayed
/// to another replica is refused there too.
#[derive(Clone)]
pub struct NonceCounts {
    conn: ConnectionManager,
    prefix: String,
    script: std::sync::Arc<redis::Script>,
}

impl std::fmt::Debug for NonceCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceCounts")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Sets the count when it is higher than the one stored; 1 when it was.
const CLAIM_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
";

impl NonceCounts {
    /// Claims `count` for `nonce`: true when no replica claimed it or a
    /// higher one before. The record lasts `ttl` (the nonce's lifetime).
    pub async fn claim(&self, nonce: &str, count: u32, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let claimed: i64 = self
            .script
            .key(format!("{}{nonce}", self.prefix))
            .arg(count)
            .arg(ttl.as_secs().max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(claimed == 1)
    }
}
