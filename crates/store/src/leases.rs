//! Leases in Redis: which replica owns a room, and which replica holds a
//! SIP participant's call. A lease is one key whose value is its holder
//! (the replica's API URL) and which expires unless the holder renews it,
//! so a replica that dies (kill -9, lost node) loses its leases within one
//! lease time and nobody has to clean up after it.
//!
//! Every operation is one round trip: claim is `SET NX PX` then `GET` in one
//! script, renew and release compare the holder first, so a replica never
//! extends or deletes a lease another replica took after its own expired.

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::error::StoreError;

/// What a lease is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseKey {
    /// The replica whose embedded room this is.
    Room(String),
    /// The replica holding the call of a SIP participant in a room.
    Participant {
        /// The (shared) room's name.
        room: String,
        /// The participant's identity.
        identity: String,
    },
}

impl LeaseKey {
    /// The Redis key: names are length-prefixed so that no room or
    /// identity can make its key collide with another's.
    fn redis_key(&self, prefix: &str) -> String {
        match self {
            LeaseKey::Room(room) => format!("{prefix}switchboard:room:{}:{room}", room.len()),
            LeaseKey::Participant { room, identity } => format!(
                "{prefix}switchboard:sip-participant:{}:{room}:{identity}",
                room.len()
            ),
        }
    }
}

/// KEYS[1]: the lease. ARGV: holder, milliseconds. Returns the holder after
/// the claim (ours if the lease was free).
const CLAIM: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return redis.call('GET', KEYS[1])
"#;

/// KEYS: leases. ARGV: holder, milliseconds. Returns 1 per lease still ours
/// (extended), 0 per lease lost.
const RENEW: &str = r#"
local kept = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    kept[i] = 1
  else
    kept[i] = 0
  end
end
return kept
"#;

/// KEYS[1]: the lease. ARGV[1]: holder. Deletes it if it is still ours.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// KEYS[1]: a set of replicas (those up, those with an agent's workers).
/// ARGV: replica, milliseconds. The member's score is when it expires, by
/// Redis's own clock (replicas' clocks may differ).
const ADVERTISE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1
"#;

/// KEYS[1]: a set of replicas. Drops the expired members; returns the rest.
const MEMBERS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"#;

/// The replicas' leases, in one Redis. Cheap to clone.
#[derive(Clone)]
pub struct Leases {
    conn: ConnectionManager,
    key_prefix: String,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Leases {
    /// Connects to the Redis at `url`; keys start with `key_prefix`. A
    /// command gives up after two seconds: a call waits on the claim.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Leases, StoreError> {
        Ok(Leases {
            conn: crate::bans::manager(url, Duration::from_secs(2)).await?,
            key_prefix: key_prefix.to_string(),
        })
    }

    /// Takes `key` for `holder` for `ttl` unless someone holds it; returns
    /// whoever holds it now (`holder` if the claim succeeded or it was
    /// already ours).
    pub async fn claim(
        &self,
        key: &LeaseKey,
        holder: &str,
        ttl: Duration,
    ) -> Result<String, StoreError> {
        let mut conn = self.conn.clone();
        let now: Option<String> = redis::Script::new(CLAIM)
            .key(key.redis_key(&self.key_prefix))
            .arg(holder)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        // Gone between the SET and the GET only if the TTL is shorter than
        // the script: treat as ours, the next renewal will say otherwise.
        Ok(now.unwrap_or_else(|| holder.to_string()))
    }

    /// Takes `key` for `holder` whoever holds it (a participant's call is
    /// where it is: the newest registration wins).
    pub async fn put(&self, key: &LeaseKey, holder: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(key.redis_key(&self.key_prefix))
            .arg(holder)
            .arg("PX")
            .arg(millis(ttl))
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Who holds `key`, if anyone.
    pub async fn holder(&self, key: &LeaseKey) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(key.redis_key(&self.key_prefix))
            .query_async(&mut conn)
            .await?)
    }

    /// Extends every lease of `keys` that `holder` still holds; says which
    /// were kept (in order).
    pub async fn renew(
        &self,
        keys: &[LeaseKey],
        holder: &str,
        ttl: Duration,
    ) -> Result<Vec<bool>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let script = redis::Script::new(RENEW);
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key.redis_key(&self.key_prefix));
        }
        invocation.arg(holder).arg(millis(ttl));
        let mut conn = self.conn.clone();
        let kept: Vec<i64> = invocation.invoke_async(&mut conn).await?;
        Ok(kept.into_iter().map(|k| k == 1).collect())
    }

    /// Gives `key` up if `holder` still holds it.
    pub async fn release(&self, key: &LeaseKey, holder: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::Script::new(RELEASE)
            .key(key.redis_key(&self.key_prefix))
            .arg(holder)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    fn agent_key(&self, agent_name: &str) -> String {
        format!(
            "{}switchboard:agent-workers:{}:{agent_name}",
            self.key_prefix,
            agent_name.len()
        )
    }

    fn replicas_key(&self) -> String {
        format!("{}switchboard:replicas", self.key_prefix)
    }

    async fn advertise(&self, set: String, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::Script::new(ADVERTISE)
            .key(set)
            .arg(member)
            .arg(millis(ttl))
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    async fn members(&self, set: String) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(redis::Script::new(MEMBERS)
            .key(set)
            .invoke_async(&mut conn)
            .await?)
    }

    async fn withdraw(&self, set: String, member: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZREM")
            .arg(set)
            .arg(member)
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// Says for `ttl` that `holder` has workers of agent `agent_name` (the
    /// empty name: LiveKit's unnamed agents).
    pub async fn advertise_agent(
        &self,
        agent_name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.advertise(self.agent_key(agent_name), holder, ttl)
            .await
    }

    /// The replicas that said they have workers of agent `agent_name`.
    pub async fn agent_hosts(&self, agent_name: &str) -> Result<Vec<String>, StoreError> {
        self.members(self.agent_key(agent_name)).await
    }

    /// Withdraws `holder` from agent `agent_name`'s hosts.
    pub async fn withdraw_agent(&self, agent_name: &str, holder: &str) -> Result<(), StoreError> {
        self.withdraw(self.agent_key(agent_name), holder).await
    }

    /// Says for `ttl` that replica `url` is up (ListRooms asks every one).
    pub async fn advertise_replica(&self, url: &str, ttl: Duration) -> Result<(), StoreError> {
        self.advertise(self.replicas_key(), url, ttl).await
    }

    /// The replicas that said they are up.
    pub async fn replicas(&self) -> Result<Vec<String>, StoreError> {
        self.members(self.replicas_key()).await
    }

    /// Withdraws replica `url` (it exits).
    pub async fn withdraw_replica(&self, url: &str) -> Result<(), StoreError> {
        self.withdraw(self.replicas_key(), url).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_collide_across_room_and_identity() {
        let a = LeaseKey::Participant {
            room: "a:b".into(),
            identity: "c".into(),
        };
        let b = LeaseKey::Participant {
            room: "a".into(),
            identity: "b:c".into(),
        };
        assert_ne!(a.redis_key(""), b.redis_key(""));
        assert_eq!(
            LeaseKey::Room("r".into()).redis_key("p:"),
            "p:switchboard:room:1:r"
        );
    }
}
