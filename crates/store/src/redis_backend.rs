//! The Redis backend, for replicas sharing state. Records live in hashes
//! named as LiveKit names them (protobuf values); a version counter and a
//! pub/sub channel announce changes. Commits are one Lua script: compare the
//! version, apply every op, bump the version, publish. A replica that misses
//! a pub/sub message (reconnect, network blip) still learns of the change by
//! polling the version counter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::{BoxFuture, Loaded, StoreBackend, Table, WriteOp};
use crate::error::StoreError;

/// How to reach Redis and how to name things there.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Prepended to every key and the channel, to share one Redis between deployments.
    pub key_prefix: String,
    /// How often the version counter is polled, the fallback for a lost
    /// pub/sub message. Keep it under a second.
    pub poll_interval: Duration,
}

impl RedisConfig {
    /// Defaults for a URL: no prefix, 250 ms poll.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            key_prefix: String::new(),
            poll_interval: Duration::from_millis(250),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("RedisConfig")
            .field("key_prefix", &self.key_prefix)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// KEYS: version, then one hash per table in `Table::ALL` order.
/// ARGV: expected version ("" = unconditional), channel, op count, then
/// per op: "put"|"del", table's key index (2..), field, value.
const COMMIT_SCRIPT: &str = r#"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[1] ~= '' and current ~= tonumber(ARGV[1]) then
  return -1
end
local n = tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  local key = KEYS[tonumber(ARGV[i + 1])]
  if ARGV[i] == 'put' then
    redis.call('HSET', key, ARGV[i + 2], ARGV[i + 3])
  else
    redis.call('HDEL', key, ARGV[i + 2])
  end
  i = i + 4
end
local v = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[2], v)
return v
"#;

struct Keys {
    version: String,
    channel: String,
    tables: [String; Table::ALL.len()],
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            version: format!("{prefix}switchboard_sip_version"),
            channel: format!("{prefix}switchboard_sip_changes"),
            tables: Table::ALL.map(|t| format!("{prefix}{}", t.name())),
        }
    }

    fn table(&self, table: Table) -> &str {
        &self.tables[table_index(table)]
    }
}

fn table_index(table: Table) -> usize {
    match table {
        Table::InboundTrunks => 0,
        Table::OutboundTrunks => 1,
        Table::DispatchRules => 2,
        Table::PlatformTrunks => 3,
        Table::OutboundDialPlans => 4,
    }
}

struct Shared {
    keys: Keys,
    changes: watch::Sender<u64>,
}

/// The Redis backend. Cheap to clone; the change listener stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct RedisBackend {
    conn: ConnectionManager,
    shared: Arc<Shared>,
    script: Arc<redis::Script>,
    _listener: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("version_key", &self.shared.keys.version)
            .finish()
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn bump(changes: &watch::Sender<u64>, version: u64) {
    // Any difference counts: a FLUSHALL can move the counter backwards.
    changes.send_if_modified(|cur| {
        let changed = *cur != version;
        *cur = version;
        changed
    });
}

impl RedisBackend {
    /// Connects, reads the current version and starts the change listener.
    pub async fn connect(config: RedisConfig) -> Result<RedisBackend, StoreError> {
        let client = redis::Client::open(config.url.as_str())?;
        // Fail an API call in seconds when Redis is gone, instead of retrying
        // for the default ~10 s: the caller gets `unavailable` and can retry.
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let mut conn = client
            .get_connection_manager_with_config(manager_config)
            .await?;
        let keys = Keys::new(&config.key_prefix);
        let version: Option<u64> = redis::cmd("GET")
            .arg(&keys.version)
            .query_async(&mut conn)
            .await?;
        let (changes, _) = watch::channel(version.unwrap_or(0));
        let shared = Arc::new(Shared { keys, changes });
        let listener = tokio::spawn(listen(
            client,
            conn.clone(),
            Arc::downgrade(&shared),
            config.poll_interval,
        ));
        Ok(RedisBackend {
            conn,
            shared,
            script: Arc::new(redis::Script::new(COMMIT_SCRIPT)),
            _listener: Arc::new(AbortOnDrop(listener)),
        })
    }
}

/// Follows the pub/sub channel and polls the version counter, forever.
async fn listen(
    client: redis::Client,
    mut conn: ConnectionManager,
    weak: std::sync::Weak<Shared>,
    poll_interval: Duration,
) {
    let Some(channel) = weak.upgrade().map(|s| s.keys.channel.clone()) else {
        return;
    };
    let version_key = match weak.upgrade() {
        Some(s) => s.keys.version.clone(),
        None => return,
    };
    let mut poll = tokio::time::interval(poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(mut p) => match p.subscribe(&channel).await {
                Ok(()) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "redis store: subscribe failed; polling only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "redis store: pub/sub connection failed; polling only");
                None
            }
        };
        let mut stream = pubsub.as_mut().map(|p| p.on_message());
        loop {
            if weak.strong_count() == 0 {
                return;
            }
            tokio::select! {
                message = async {
                    match stream.as_mut() {
                        Some(s) => s.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Some(message) = message else {
                        tracing::warn!("redis store: pub/sub stream ended; reconnecting");
                        break;
                    };
                    let Some(shared) = weak.upgrade() else { return };
                    match message.get_payload::<u64>() {
                        Ok(v) => bump(&shared.changes, v),
                        Err(e) => tracing::warn!(error = %e, "redis store: unreadable change message"),
                    }
                }
                _ = poll.tick() => {
                    let polled: Result<Option<u64>, _> =
                        redis::cmd("GET").arg(&version_key).query_async(&mut conn).await;
                    let Some(shared) = weak.upgrade() else { return };
                    match polled {
                        Ok(v) => bump(&shared.changes, v.unwrap_or(0)),
                        Err(e) => tracing::warn!(error = %e, "redis store: version poll failed"),
                    }
                    if stream.is_none() {
                        // Try pub/sub again on the next outer loop.
                        break;
                    }
                }
            }
        }
    }
}

impl StoreBackend for RedisBackend {
    fn load(&self, tables: &[Table]) -> BoxFuture<'_, Result<Loaded, StoreError>> {
        let tables = tables.to_vec();
        Box::pin(async move {
            let mut conn = self.conn.clone();
            // MULTI/EXEC: the version and the hashes are read at one instant.
            let mut pipe = redis::pipe();
            pipe.atomic().get(&self.shared.keys.version);
            for t in &tables {
                pipe.hgetall(self.shared.keys.table(*t));
            }
            let values: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
            let mut values = values.into_iter();
            let version: Option<u64> =
                redis::from_redis_value(values.next().unwrap_or(redis::Value::Nil))
                    .map_err(redis::RedisError::from)?;
            let mut out = Vec::with_capacity(tables.len());
            for _ in &tables {
                let map: HashMap<String, Vec<u8>> =
                    redis::from_redis_value(values.next().unwrap_or(redis::Value::Nil))
                        .map_err(redis::RedisError::from)?;
                let mut records: Vec<(String, Vec<u8>)> = map.into_iter().collect();
                records.sort_by(|a, b| a.0.cmp(&b.0));
                out.push(records);
            }
            Ok(Loaded {
                version: version.unwrap_or(0),
                tables: out,
            })
        })
    }

    fn get(&self, table: Table, id: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        let id = id.to_owned();
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let value: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(self.shared.keys.table(table))
                .arg(&id)
                .query_async(&mut conn)
                .await?;
            Ok(value)
        })
    }

    fn commit(
        &self,
        expected: Option<u64>,
        ops: Vec<WriteOp>,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let keys = &self.shared.keys;
            let mut invocation = self.script.prepare_invoke();
            invocation.key(&keys.version);
            for t in &keys.tables {
                invocation.key(t);
            }
            invocation
                .arg(expected.map(|v| v.to_string()).unwrap_or_default())
                .arg(&keys.channel)
                .arg(ops.len());
            for op in &ops {
                match op {
                    WriteOp::Put { table, id, value } => {
                        invocation
                            .arg("put")
                            .arg(table_index(*table) + 2)
                            .arg(id)
                            .arg(value.as_slice());
                    }
                    WriteOp::Delete { table, id } => {
                        invocation
                            .arg("del")
                            .arg(table_index(*table) + 2)
                            .arg(id)
                            .arg("");
                    }
                }
            }
            let result: i64 = invocation.invoke_async(&mut conn).await?;
            if result < 0 {
                return Ok(None);
            }
            let version = result.unsigned_abs();
            bump(&self.shared.changes, version);
            Ok(Some(version))
        })
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }
}
