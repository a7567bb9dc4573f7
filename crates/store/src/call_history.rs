//! The history of finished calls: each call's [`CallRecord`] and, when it
//! was traced, its [`CallTrace`], kept for a configurable retention
//! ([`HistoryConfig`]) and listed newest-ended first.
//!
//! Two backends, picked like the routing store's: an embedded redb file
//! ([`CALL_HISTORY_FILE`]) or keys in a Redis shared by replicas. The
//! embedded file is separate from the routing store's so that a stream of
//! call records never bumps that store's version, which would rebuild the
//! routing index each time.
//!
//! Retention runs inside every [`CallHistory::put`], in the same write, so
//! the history never grows past its limits by more than one batch and
//! needs no background task. Reads hide what has aged out since the last
//! put, so both backends answer the same between puts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livekit_protocol::SipCallInfo;
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition, WriteTransaction};
use redis::aio::ConnectionManager;

use crate::call_record::{CallRecord, CallTrace};
use crate::error::StoreError;

/// The embedded history's page cache.
const HISTORY_CACHE_BYTES: usize = 16 << 20;

/// The call history's file inside the data directory, separate from
/// [`crate::DATABASE_FILE`] so that writing call records never bumps the
/// routing store's version (which rebuilds the routing index).
pub const CALL_HISTORY_FILE: &str = "calls.redb";

/// The largest page [`CallHistory::list`] returns.
const MAX_PAGE_SIZE: usize = 1000;
/// Records one [`CallHistory::list`] call looks at before it answers with
/// what it found, so a filter that matches nothing takes bounded time.
const MAX_SCAN: usize = 50_000;
/// The longest call ID kept (and accepted inside a page token).
const MAX_ID_LEN: usize = 64;
/// Redis: the largest number of IDs fetched (and records MGET) at once.
const REDIS_CHUNK: usize = 1000;
/// Redis: the most records one put prunes per rule, so a limit lowered by
/// a lot catches up over several puts instead of blocking Redis for one
/// long script.
const REDIS_PRUNE_LIMIT: usize = 10_000;
/// Redis: the longest expiry set (100 years), far below where Redis
/// rejects an expiry as overflowing.
const MAX_EXPIRE_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// Retention of finished calls.
#[derive(Debug, Clone, Copy)]
pub struct HistoryConfig {
    /// The most records kept; the oldest-ended go first. Default 10,000.
    pub max_records: usize,
    /// How long after it ended a record is kept. Default 7 days.
    pub max_age: Duration,
    /// How long after it was stored a trace is kept. Default 24 h: traces
    /// are much larger than records, so they are dropped earlier.
    pub trace_max_age: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            max_records: 10_000,
            max_age: Duration::from_secs(7 * 24 * 3600),
            trace_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// Which calls [`CallHistory::list`] returns; every field set must match.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// A `livekit_protocol::SipCallDirection` value (inbound 1, outbound
    /// 2), compared with `info.call_direction`.
    pub direction: Option<i32>,
    /// [`CallRecord::result`] equals this.
    pub result: Option<String>,
    /// `info.room_name` equals this.
    pub room: Option<String>,
    /// `info.trunk_id` equals this.
    pub trunk_id: Option<String>,
    /// A substring of the user part of `info.from_uri` or `info.to_uri`.
    pub number: Option<String>,
    /// `info.ended_at_ns` is at or after this.
    pub ended_after_ns: Option<i64>,
    /// `info.ended_at_ns` is before this.
    pub ended_before_ns: Option<i64>,
}

impl CallFilter {
    /// Whether `record` passes every condition set.
    pub fn matches(&self, record: &CallRecord) -> bool {
        let empty;
        let info = match record.info.as_ref() {
            Some(info) => info,
            None => {
                empty = SipCallInfo::default();
                &empty
            }
        };
        let equals =
            |wanted: &Option<String>, actual: &str| wanted.as_deref().is_none_or(|w| w == actual);
        let user_contains = |uri: &Option<livekit_protocol::SipUri>, number: &str| {
            uri.as_ref().is_some_and(|u| u.user.contains(number))
        };
        self.direction.is_none_or(|d| d == info.call_direction)
            && equals(&self.result, &record.result)
            && equals(&self.room, &info.room_name)
            && equals(&self.trunk_id, &info.trunk_id)
            && self
                .number
                .as_deref()
                .is_none_or(|n| user_contains(&info.from_uri, n) || user_contains(&info.to_uri, n))
            && self.ended_after_ns.is_none_or(|a| info.ended_at_ns >= a)
            && self.ended_before_ns.is_none_or(|b| info.ended_at_ns < b)
    }
}

/// One page of [`CallHistory::list`].
#[derive(Debug, Clone, Default)]
pub struct CallPage {
    /// The calls, newest-ended first.
    pub calls: Vec<CallRecord>,
    /// Pass it back for the next page; empty when there is no more.
    pub next_page_token: String,
}

/// The history of finished calls, on the embedded file or in Redis.
/// Cheap to clone; clones share the database or the connection.
#[derive(Clone)]
pub struct CallHistory {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Embedded(Embedded),
    Redis(RedisHistory),
}

impl std::fmt::Debug for CallHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Embedded(e) => f
                .debug_struct("CallHistory")
                .field("path", &e.path)
                .field("config", &e.config)
                .finish(),
            // The URL may carry a password: show the key only.
            Inner::Redis(r) => f
                .debug_struct("CallHistory")
                .field("key", &r.calls_key)
                .field("config", &r.config)
                .finish(),
        }
    }
}

impl CallHistory {
    /// Opens (creating if needed) `<data_dir>/calls.redb`.
    pub async fn open_embedded(
        data_dir: impl AsRef<Path>,
        config: HistoryConfig,
    ) -> Result<CallHistory, StoreError> {
        let dir = data_dir.as_ref().to_owned();
        let embedded = blocking(move || Embedded::open(&dir, config)).await?;
        Ok(CallHistory {
            inner: Inner::Embedded(embedded),
        })
    }

    /// Connects to the Redis at `url`; keys start with `key_prefix`.
    pub async fn connect_redis(
        url: &str,
        key_prefix: &str,
        config: HistoryConfig,
    ) -> Result<CallHistory, StoreError> {
        let conn = crate::bans::manager(url, Duration::from_secs(5)).await?;
        Ok(CallHistory {
            inner: Inner::Redis(RedisHistory {
                conn,
                calls_key: format!("{key_prefix}switchboard_calls"),
                record_prefix: format!("{key_prefix}switchboard_call:"),
                trace_prefix: format!("{key_prefix}switchboard_call_trace:"),
                put_script: Arc::new(redis::Script::new(PUT_SCRIPT)),
                config,
            }),
        })
    }

    /// Stores finished calls (records with `info.ended_at_ns` set) and
    /// their traces in one write, then applies retention. A record with an
    /// ID already stored replaces it, trace included: a re-put without a
    /// trace removes the old one. Records that have not ended, or whose
    /// call ID is not 1 to 64 of `[A-Za-z0-9_-]`, are skipped with a
    /// warning rather than failing the batch (the rest of it is good).
    pub async fn put(&self, batch: Vec<(CallRecord, Option<CallTrace>)>) -> Result<(), StoreError> {
        let prepared = prepare(batch);
        match &self.inner {
            Inner::Embedded(e) => e.put(prepared).await,
            Inner::Redis(r) => r.put(prepared).await,
        }
    }

    /// The record of call `call_id`, if kept.
    pub async fn get(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        match &self.inner {
            Inner::Embedded(e) => e.get(call_id).await,
            Inner::Redis(r) => r.get(call_id).await,
        }
    }

    /// The SIP trace of call `call_id`, if it was traced and is kept.
    pub async fn trace(&self, call_id: &str) -> Result<Option<CallTrace>, StoreError> {
        match &self.inner {
            Inner::Embedded(e) => e.trace(call_id).await,
            Inner::Redis(r) => r.trace(call_id).await,
        }
    }

    /// The calls matching `filter`, newest-ended first, `page_size`
    /// (clamped to 1..=1000) at a time from `page_token` ("" for the first
    /// page). Looks at no more than 50,000 records per call: when a filter
    /// matches few, the page may be short (even empty) with a
    /// `next_page_token` that continues the scan. A token that does not
    /// decode is [`StoreError::BadPageToken`].
    pub async fn list(
        &self,
        filter: &CallFilter,
        page_size: usize,
        page_token: &str,
    ) -> Result<CallPage, StoreError> {
        let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
        match &self.inner {
            Inner::Embedded(e) => {
                let after = Cursor::decode(page_token, EMBEDDED_TOKEN)?;
                e.list(filter.clone(), page_size, after).await
            }
            Inner::Redis(r) => {
                let after = Cursor::decode(page_token, REDIS_TOKEN)?;
                r.list(filter, page_size, after).await
            }
        }
    }

    /// Records kept now.
    // An async, fallible count is not a collection's len: is_empty would
    // only be one more round trip for callers that want the number anyway.
    #[allow(clippy::len_without_is_empty)]
    pub async fn len(&self) -> Result<usize, StoreError> {
        match &self.inner {
            Inner::Embedded(e) => e.len().await,
            Inner::Redis(r) => r.len().await,
        }
    }
}

/// A record ready to store.
struct Prepared {
    id: String,
    ended_at_ns: i64,
    record: Vec<u8>,
    trace: Option<Vec<u8>>,
}

fn prepare(batch: Vec<(CallRecord, Option<CallTrace>)>) -> Vec<Prepared> {
    batch
        .into_iter()
        .filter_map(|(record, trace)| {
            let id = record.call_id();
            let ended_at_ns = record.ended_at_ns();
            if !valid_id(id.as_bytes()) {
                tracing::warn!(call_id = %id.escape_debug(), "call history: call ID not kept (empty, too long or odd characters)");
                return None;
            }
            if ended_at_ns <= 0 {
                tracing::warn!(call_id = %id, "call history: call has not ended; not kept");
                return None;
            }
            Some(Prepared {
                id: id.to_owned(),
                ended_at_ns,
                record: record.encode_to_vec(),
                trace: trace.map(|t| t.encode_to_vec()),
            })
        })
        .collect()
}

/// A call ID as accepted in the history and in page tokens: 1 to 64 of
/// `[A-Za-z0-9_-]` (every `SCL_` ID is). What the API and the CLI accept
/// as a call ID, too: such an ID is safe in a URL path and a header.
pub fn is_call_id(id: &str) -> bool {
    valid_id(id.as_bytes())
}

fn valid_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The earliest end (or store time) still kept `max_age` before `now`.
fn cutoff(now: i64, max_age: Duration) -> i64 {
    now.saturating_sub(duration_ns(max_age))
}

fn decode_record(id: &str, bytes: &[u8]) -> Result<CallRecord, StoreError> {
    CallRecord::decode(bytes).map_err(|source| StoreError::CorruptHistory {
        what: "call record",
        id: id.to_owned(),
        source,
    })
}

fn decode_trace(id: &str, bytes: &[u8]) -> Result<CallTrace, StoreError> {
    CallTrace::decode(bytes).map_err(|source| StoreError::CorruptHistory {
        what: "call trace",
        id: id.to_owned(),
        source,
    })
}

/// Decodes a record found while listing; a damaged one is skipped (one bad
/// record must not hide the rest of the history) but logged.
fn decode_listed(id: &str, bytes: &[u8]) -> Option<CallRecord> {
    match decode_record(id, bytes) {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::warn!(error = %e, "call history: skipping a record that does not decode");
            None
        }
    }
}

/// First byte of an embedded backend's token: its position is `ended_at_ns`.
const EMBEDDED_TOKEN: u8 = b'e';
/// First byte of a Redis backend's token: its position is the ZSET score (µs).
const REDIS_TOKEN: u8 = b'r';

/// Where a listing stopped: the last record looked at, in the backend's
/// order (position descending, then ID descending).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    position: u64,
    id: String,
}

impl Cursor {
    /// Lowercase hex of the backend byte, the position (8 bytes, big
    /// endian) and the ID. The backend byte makes a token from the other
    /// backend fail instead of landing somewhere odd.
    fn encode(&self, backend: u8) -> String {
        let mut bytes = Vec::with_capacity(9usize.saturating_add(self.id.len()));
        bytes.push(backend);
        bytes.extend_from_slice(&self.position.to_be_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(bytes.len().saturating_mul(2));
        for b in bytes {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }

    /// `None` for the first page ("").
    fn decode(token: &str, backend: u8) -> Result<Option<Cursor>, StoreError> {
        if token.is_empty() {
            return Ok(None);
        }
        let hex = token.as_bytes();
        // Checked before decoding so a huge token costs nothing.
        let max_len = (1 + 8 + MAX_ID_LEN) * 2;
        if !hex.len().is_multiple_of(2) || hex.len() > max_len {
            return Err(StoreError::BadPageToken);
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        for pair in hex.chunks_exact(2) {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(hi), Some(lo)) => bytes.push(hi << 4 | lo),
                _ => return Err(StoreError::BadPageToken),
            }
        }
        let Some((&kind, rest)) = bytes.split_first() else {
            return Err(StoreError::BadPageToken);
        };
        if kind != backend || rest.len() < 9 {
            return Err(StoreError::BadPageToken);
        }
        let (position, id) = rest.split_at(8);
        let position: [u8; 8] = position.try_into().map_err(|_| StoreError::BadPageToken)?;
        if !valid_id(id) {
            return Err(StoreError::BadPageToken);
        }
        let id = String::from_utf8(id.to_vec()).map_err(|_| StoreError::BadPageToken)?;
        Ok(Some(Cursor {
            position: u64::from_be_bytes(position),
            id,
        }))
    }
}

// ---------------------------------------------------------------- embedded

/// Records by end: 8-byte big-endian `ended_at_ns` then the call ID, so the
/// table's order is end order and retention and listing are range scans.
const CALLS_BY_END: TableDefinition<&[u8], &[u8]> = TableDefinition::new("calls_by_end");
/// Call ID -> its key in [`CALLS_BY_END`].
const CALLS_BY_ID: TableDefinition<&str, &[u8]> = TableDefinition::new("calls_by_id");
/// Call ID -> 8-byte big-endian stored-at ns, then the encoded trace.
const CALL_TRACES: TableDefinition<&str, &[u8]> = TableDefinition::new("call_traces");
/// Stored-at key (as [`CALLS_BY_END`]'s) of every trace, for pruning by age.
const CALL_TRACES_BY_TIME: TableDefinition<&[u8], ()> = TableDefinition::new("call_traces_by_time");

/// `at` (negatives as 0, which sorts them first and ages them out) then `id`.
fn time_key(at_ns: i64, id: &str) -> Vec<u8> {
    let at = u64::try_from(at_ns).unwrap_or(0);
    let mut key = Vec::with_capacity(8usize.saturating_add(id.len()));
    key.extend_from_slice(&at.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// The time and the ID of a [`time_key`].
fn split_time_key(key: &[u8]) -> (u64, &str) {
    let (at, id) = key.split_at(key.len().min(8));
    let at = <[u8; 8]>::try_from(at).map(u64::from_be_bytes).unwrap_or(0);
    // Keys are only ever made from `&str` IDs.
    (at, std::str::from_utf8(id).unwrap_or(""))
}

#[derive(Clone)]
struct Embedded {
    db: Arc<Database>,
    path: PathBuf,
    config: HistoryConfig,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

impl Embedded {
    fn open(dir: &Path, config: HistoryConfig) -> Result<Embedded, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Redb(format!("{}: {e}", dir.display())))?;
        let path = dir.join(CALL_HISTORY_FILE);
        // redb's default cache may grow to a gigabyte as the file is
        // written: the history is write-mostly and read a page at a time.
        let db = redb::Builder::new()
            .set_cache_size(HISTORY_CACHE_BYTES)
            .create(&path)?;
        // Create the tables once, so readers never meet a missing one.
        let txn = db.begin_write()?;
        txn.open_table(CALLS_BY_END)?;
        txn.open_table(CALLS_BY_ID)?;
        txn.open_table(CALL_TRACES)?;
        txn.open_table(CALL_TRACES_BY_TIME)?;
        txn.commit()?;
        Ok(Embedded {
            db: Arc::new(db),
            path,
            config,
        })
    }

    async fn put(&self, batch: Vec<Prepared>) -> Result<(), StoreError> {
        let db = self.db.clone();
        let config = self.config;
        blocking(move || {
            let now = now_ns();
            let txn = db.begin_write()?;
            {
                let mut tables = WriteTables::open(&txn)?;
                for call in &batch {
                    tables.store(call, now)?;
                }
                tables.apply_retention(&config, now)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn get(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        let db = self.db.clone();
        let config = self.config;
        let id = call_id.to_owned();
        blocking(move || {
            let txn = db.begin_read()?;
            let by_id = txn.open_table(CALLS_BY_ID)?;
            let Some(key) = by_id.get(id.as_str())? else {
                return Ok(None);
            };
            let key = key.value().to_vec();
            if !still_kept(&key, &config) {
                return Ok(None);
            }
            let by_end = txn.open_table(CALLS_BY_END)?;
            let Some(bytes) = by_end.get(key.as_slice())? else {
                return Ok(None);
            };
            decode_record(&id, bytes.value()).map(Some)
        })
        .await
    }

    async fn trace(&self, call_id: &str) -> Result<Option<CallTrace>, StoreError> {
        let db = self.db.clone();
        let config = self.config;
        let id = call_id.to_owned();
        blocking(move || {
            let txn = db.begin_read()?;
            // A trace goes with its record: none once the record aged out.
            let by_id = txn.open_table(CALLS_BY_ID)?;
            match by_id.get(id.as_str())? {
                Some(key) if still_kept(key.value(), &config) => {}
                _ => return Ok(None),
            }
            let traces = txn.open_table(CALL_TRACES)?;
            let Some(stored) = traces.get(id.as_str())? else {
                return Ok(None);
            };
            // The stored-at prefix, then the trace.
            let (stored_at, bytes) = stored.value().split_at(stored.value().len().min(8));
            let stored_at = <[u8; 8]>::try_from(stored_at)
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let trace_cutoff = cutoff(now_ns(), config.trace_max_age);
            if i64::try_from(stored_at).unwrap_or(i64::MAX) < trace_cutoff {
                return Ok(None);
            }
            decode_trace(&id, bytes).map(Some)
        })
        .await
    }

    async fn list(
        &self,
        filter: CallFilter,
        page_size: usize,
        after: Option<Cursor>,
    ) -> Result<CallPage, StoreError> {
        let db = self.db.clone();
        let config = self.config;
        blocking(move || {
            // The range holds only what can match: kept, within the filter's
            // end bounds, and before the cursor.
            let mut lower = time_key(cutoff(now_ns(), config.max_age), "");
            if let Some(after_ns) = filter.ended_after_ns {
                lower = lower.max(time_key(after_ns, ""));
            }
            let mut upper: Option<Vec<u8>> = filter.ended_before_ns.map(|b| time_key(b, ""));
            if let Some(cursor) = &after {
                let at = i64::try_from(cursor.position).unwrap_or(i64::MAX);
                let key = time_key(at, &cursor.id);
                upper = Some(match upper {
                    Some(u) => u.min(key),
                    None => key,
                });
            }
            let mut page = CallPage::default();
            if upper.as_ref().is_some_and(|u| *u <= lower) {
                return Ok(page);
            }
            let txn = db.begin_read()?;
            let by_end = txn.open_table(CALLS_BY_END)?;
            let range = match &upper {
                Some(u) => by_end.range::<&[u8]>(lower.as_slice()..u.as_slice())?,
                None => by_end.range::<&[u8]>(lower.as_slice()..)?,
            };
            let mut scanned = 0usize;
            let mut last: Option<Vec<u8>> = None;
            for entry in range.rev() {
                if page.calls.len() >= page_size || scanned >= MAX_SCAN {
                    // There is more; continue after the last one looked at.
                    if let Some(key) = &last {
                        let (position, id) = split_time_key(key);
                        page.next_page_token = Cursor {
                            position,
                            id: id.to_owned(),
                        }
                        .encode(EMBEDDED_TOKEN);
                    }
                    break;
                }
                let (key, value) = entry?;
                scanned = scanned.saturating_add(1);
                let key = key.value().to_vec();
                let (_, id) = split_time_key(&key);
                if let Some(record) = decode_listed(id, value.value()) {
                    if filter.matches(&record) {
                        page.calls.push(record);
                    }
                }
                last = Some(key);
            }
            Ok(page)
        })
        .await
    }

    async fn len(&self) -> Result<usize, StoreError> {
        let db = self.db.clone();
        let config = self.config;
        blocking(move || {
            let txn = db.begin_read()?;
            let by_end = txn.open_table(CALLS_BY_END)?;
            // Not counting what aged out since the last put; that range is
            // short, the total is kept by redb.
            let expired = time_key(cutoff(now_ns(), config.max_age), "");
            let mut stale = 0u64;
            for entry in by_end.range::<&[u8]>(..expired.as_slice())? {
                entry?;
                stale = stale.saturating_add(1);
            }
            let kept = by_end.len()?.saturating_sub(stale);
            Ok(usize::try_from(kept).unwrap_or(usize::MAX))
        })
        .await
    }
}

/// Whether a record with this [`CALLS_BY_END`] key is within `max_age`.
fn still_kept(key: &[u8], config: &HistoryConfig) -> bool {
    let (ended_at, _) = split_time_key(key);
    let ended_at = i64::try_from(ended_at).unwrap_or(i64::MAX);
    ended_at >= cutoff(now_ns(), config.max_age)
}

/// The history's tables inside one write transaction, opened once per put
/// rather than once per call of the batch.
struct WriteTables<'txn> {
    by_end: redb::Table<'txn, &'static [u8], &'static [u8]>,
    by_id: redb::Table<'txn, &'static str, &'static [u8]>,
    traces: redb::Table<'txn, &'static str, &'static [u8]>,
    traces_by_time: redb::Table<'txn, &'static [u8], ()>,
}

impl<'txn> WriteTables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<WriteTables<'txn>, StoreError> {
        Ok(WriteTables {
            by_end: txn.open_table(CALLS_BY_END)?,
            by_id: txn.open_table(CALLS_BY_ID)?,
            traces: txn.open_table(CALL_TRACES)?,
            traces_by_time: txn.open_table(CALL_TRACES_BY_TIME)?,
        })
    }

    /// Writes one call, replacing a record (and trace) stored under its ID.
    fn store(&mut self, call: &Prepared, now: i64) -> Result<(), StoreError> {
        let key = time_key(call.ended_at_ns, &call.id);
        let old = self
            .by_id
            .insert(call.id.as_str(), key.as_slice())?
            .map(|g| g.value().to_vec());
        if let Some(old) = old {
            // Its end may have moved: the old key would list it twice.
            if old != key {
                self.by_end.remove(old.as_slice())?;
            }
        }
        self.by_end.insert(key.as_slice(), call.record.as_slice())?;
        self.remove_trace(&call.id)?;
        if let Some(trace) = &call.trace {
            let stored_at = time_key(now, &call.id);
            let mut value = Vec::with_capacity(8usize.saturating_add(trace.len()));
            value.extend_from_slice(stored_at.get(..8).unwrap_or_default());
            value.extend_from_slice(trace);
            self.traces.insert(call.id.as_str(), value.as_slice())?;
            self.traces_by_time.insert(stored_at.as_slice(), ())?;
        }
        Ok(())
    }

    /// Removes the trace of `id` and its time index entry, if any.
    fn remove_trace(&mut self, id: &str) -> Result<(), StoreError> {
        let stored_at = self
            .traces
            .remove(id)?
            .and_then(|g| g.value().get(..8).map(<[u8]>::to_vec));
        if let Some(mut key) = stored_at {
            key.extend_from_slice(id.as_bytes());
            self.traces_by_time.remove(key.as_slice())?;
        }
        Ok(())
    }

    /// Drops records older than `max_age`, then the oldest beyond
    /// `max_records`, with their traces; then traces older than
    /// `trace_max_age`.
    fn apply_retention(&mut self, config: &HistoryConfig, now: i64) -> Result<(), StoreError> {
        let mut dropped: Vec<Vec<u8>> = Vec::new();
        let expired = time_key(cutoff(now, config.max_age), "");
        for entry in self
            .by_end
            .extract_from_if::<&[u8], _>(..expired.as_slice(), |_, _| true)?
        {
            let (key, _) = entry?;
            dropped.push(key.value().to_vec());
        }
        let max = u64::try_from(config.max_records).unwrap_or(u64::MAX);
        while self.by_end.len()? > max {
            let Some((key, _)) = self.by_end.pop_first()? else {
                break;
            };
            dropped.push(key.value().to_vec());
        }
        for key in &dropped {
            let (_, id) = split_time_key(key);
            self.by_id.remove(id)?;
            self.remove_trace(id)?;
        }
        let mut aged: Vec<Vec<u8>> = Vec::new();
        let expired = time_key(cutoff(now, config.trace_max_age), "");
        for entry in self
            .traces_by_time
            .extract_from_if::<&[u8], _>(..expired.as_slice(), |_, _| true)?
        {
            let (key, _) = entry?;
            aged.push(key.value().to_vec());
        }
        for key in &aged {
            let (_, id) = split_time_key(key);
            self.traces.remove(id)?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------- redis

#[derive(Clone)]
struct RedisHistory {
    conn: ConnectionManager,
    /// ZSET of call IDs scored by end, in µs (exact in a double).
    calls_key: String,
    /// Plus the ID: the encoded record, expiring when it ages out.
    record_prefix: String,
    /// Plus the ID: the encoded trace, expiring after `trace_max_age`.
    trace_prefix: String,
    put_script: Arc<redis::Script>,
    config: HistoryConfig,
}

/// Writes a batch and applies retention in one atomic step, so no replica
/// sees the ZSET and the record keys disagree, and a pruned ID's keys are
/// deleted before anyone can re-put it.
///
/// KEYS[1]: the ZSET. ARGV: record key prefix, trace key prefix, cutoff
/// score (lower ones are pruned), max records, prune limit, record count,
/// then per record: ID, score, record, its PX, trace, its PX ("0": none).
const PUT_SCRIPT: &str = r"
local zset = KEYS[1]
local rec, tr = ARGV[1], ARGV[2]
local limit = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local i = 7
for _ = 1, n do
  local id = ARGV[i]
  redis.call('ZADD', zset, ARGV[i + 1], id)
  redis.call('SET', rec .. id, ARGV[i + 2], 'PX', ARGV[i + 3])
  if ARGV[i + 5] == '0' then
    redis.call('DEL', tr .. id)
  else
    redis.call('SET', tr .. id, ARGV[i + 4], 'PX', ARGV[i + 5])
  end
  i = i + 6
end
local function drop(ids)
  for _, id in ipairs(ids) do
    redis.call('DEL', rec .. id, tr .. id)
    redis.call('ZREM', zset, id)
  end
end
drop(redis.call('ZRANGEBYSCORE', zset, '-inf', '(' .. ARGV[3], 'LIMIT', 0, limit))
local over = redis.call('ZCARD', zset) - tonumber(ARGV[4])
if over > 0 then
  drop(redis.call('ZRANGE', zset, 0, math.min(over, limit) - 1))
end
return 0
";

/// The ZSET score of an end time: µs, negatives as 0.
fn score(at_ns: i64) -> u64 {
    u64::try_from(at_ns.div_euclid(1000)).unwrap_or(0)
}

/// Milliseconds for a PX, at least 1 (0 is an error in Redis).
fn px(ns: i64) -> i64 {
    ns.div_euclid(1_000_000).clamp(1, MAX_EXPIRE_MS)
}

/// An upper score bound for ZREVRANGEBYSCORE: inclusive or exclusive.
#[derive(Debug, Clone, Copy)]
enum Upper {
    Inclusive(u64),
    Exclusive(u64),
    Infinite,
}

impl Upper {
    fn arg(self) -> String {
        match self {
            Upper::Inclusive(s) => s.to_string(),
            Upper::Exclusive(s) => format!("({s}"),
            Upper::Infinite => "+inf".to_owned(),
        }
    }
}

impl RedisHistory {
    async fn put(&self, batch: Vec<Prepared>) -> Result<(), StoreError> {
        let now = now_ns();
        let max_age = duration_ns(self.config.max_age);
        let trace_max_age = duration_ns(self.config.trace_max_age);
        let mut invocation = self.put_script.prepare_invoke();
        invocation
            .key(&self.calls_key)
            .arg(&self.record_prefix)
            .arg(&self.trace_prefix)
            .arg(score(cutoff(now, self.config.max_age)))
            .arg(self.config.max_records)
            .arg(REDIS_PRUNE_LIMIT)
            .arg(batch.len());
        for call in &batch {
            // The record key expires when the ZSET entry would be pruned,
            // so an ID pruned by age needs no DEL from anyone.
            let remaining = call.ended_at_ns.saturating_add(max_age).saturating_sub(now);
            let record_px = px(remaining);
            invocation
                .arg(&call.id)
                .arg(score(call.ended_at_ns))
                .arg(call.record.as_slice())
                .arg(record_px);
            match &call.trace {
                Some(trace) => {
                    // Not past its record: a trace is useless without it.
                    let trace_px = px(trace_max_age).min(record_px);
                    invocation.arg(trace.as_slice()).arg(trace_px);
                }
                None => {
                    invocation.arg("").arg(0);
                }
            }
        }
        let mut conn = self.conn.clone();
        let _: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(())
    }

    async fn get(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let bytes: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("{}{call_id}", self.record_prefix))
            .query_async(&mut conn)
            .await?;
        bytes.map(|b| decode_record(call_id, &b)).transpose()
    }

    async fn trace(&self, call_id: &str) -> Result<Option<CallTrace>, StoreError> {
        let mut conn = self.conn.clone();
        let bytes: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("{}{call_id}", self.trace_prefix))
            .query_async(&mut conn)
            .await?;
        bytes.map(|b| decode_trace(call_id, &b)).transpose()
    }

    async fn len(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        // Not counting what aged out since the last put (its keys expired).
        let count: u64 = redis::cmd("ZCOUNT")
            .arg(&self.calls_key)
            .arg(score(cutoff(now_ns(), self.config.max_age)))
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    async fn list(
        &self,
        filter: &CallFilter,
        page_size: usize,
        mut cursor: Option<Cursor>,
    ) -> Result<CallPage, StoreError> {
        // Scores are µs, so these bounds are loose by under a µs; the
        // filter checks the exact ns.
        let mut lowest = score(cutoff(now_ns(), self.config.max_age));
        if let Some(after) = filter.ended_after_ns {
            lowest = lowest.max(score(after));
        }
        let highest = match filter.ended_before_ns {
            Some(before) if before <= 0 => return Ok(CallPage::default()),
            Some(before) => Upper::Inclusive(score(before.saturating_sub(1))),
            None => Upper::Infinite,
        };
        let mut page = CallPage::default();
        let mut scanned = 0usize;
        // Grows while the filter rejects, so a selective filter costs few
        // round trips and an unfiltered page fetches only what it shows.
        let mut wanted = page_size;
        loop {
            let full = page.calls.len() >= page_size || scanned >= MAX_SCAN;
            let n = if full {
                1 // only to learn whether there is more
            } else {
                wanted
                    .min(REDIS_CHUNK)
                    .min(MAX_SCAN.saturating_sub(scanned))
            };
            let chunk = self.next_ids(cursor.as_ref(), lowest, highest, n).await?;
            if chunk.is_empty() {
                return Ok(page);
            }
            if full {
                if let Some(c) = &cursor {
                    page.next_page_token = c.encode(REDIS_TOKEN);
                }
                return Ok(page);
            }
            let keys: Vec<String> = chunk
                .iter()
                .map(|c| format!("{}{}", self.record_prefix, c.id))
                .collect();
            let mut conn = self.conn.clone();
            let values: Vec<Option<Vec<u8>>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
            for (entry, value) in chunk.into_iter().zip(values) {
                if page.calls.len() >= page_size {
                    // More in this chunk: continue after the last one taken.
                    if let Some(c) = &cursor {
                        page.next_page_token = c.encode(REDIS_TOKEN);
                    }
                    return Ok(page);
                }
                scanned = scanned.saturating_add(1);
                // None: the key expired before the ZSET entry was pruned.
                if let Some(bytes) = value {
                    if let Some(record) = decode_listed(&entry.id, &bytes) {
                        if filter.matches(&record) {
                            page.calls.push(record);
                        }
                    }
                }
                cursor = Some(entry);
            }
            wanted = wanted.saturating_mul(2);
        }
    }

    /// Up to `n` IDs after `cursor` in (score, ID) descending order, with
    /// scores from `lowest` to `highest`.
    async fn next_ids(
        &self,
        cursor: Option<&Cursor>,
        lowest: u64,
        highest: Upper,
        n: usize,
    ) -> Result<Vec<Cursor>, StoreError> {
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        let mut below = highest;
        if let Some(cursor) = cursor {
            let s = cursor.position;
            let in_range = s >= lowest
                && match highest {
                    Upper::Inclusive(h) => s <= h,
                    Upper::Exclusive(h) => s < h,
                    Upper::Infinite => true,
                };
            if in_range {
                // Equal scores come in descending ID order: the ones after
                // the cursor are those with a smaller ID. Such ties (calls
                // ending in the same µs) are rare and few.
                let mut offset = 0usize;
                loop {
                    let ids: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
                        .arg(&self.calls_key)
                        .arg(s)
                        .arg(s)
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(REDIS_CHUNK)
                        .query_async(&mut conn)
                        .await?;
                    let got = ids.len();
                    for id in ids {
                        if id.as_str() < cursor.id.as_str() {
                            out.push(Cursor { position: s, id });
                            if out.len() >= n {
                                return Ok(out);
                            }
                        }
                    }
                    if got < REDIS_CHUNK {
                        break;
                    }
                    offset = offset.saturating_add(got);
                }
            }
            below = match highest {
                Upper::Inclusive(h) if h < s => highest,
                Upper::Exclusive(h) if h <= s => highest,
                _ => Upper::Exclusive(s),
            };
        }
        let rest = n.saturating_sub(out.len());
        let entries: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(&self.calls_key)
            .arg(below.arg())
            .arg(lowest)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(rest)
            .query_async(&mut conn)
            .await?;
        for (id, score) in entries {
            // Scores are whole µs below 2^53, written by `put`.
            if !(score.is_finite() && score >= 0.0) {
                continue;
            }
            let position = score as u64;
            if !valid_id(id.as_bytes()) {
                // Not written by `put`; a token could not carry it.
                tracing::warn!(id = %id.escape_debug(), "call history: skipping an odd ZSET member");
                continue;
            }
            out.push(Cursor { position, id });
        }
        Ok(out)
    }
}
