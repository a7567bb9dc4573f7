//! The call history on both backends: every check below runs once on the
//! embedded redb file and once on a real redis-server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers, not only #[test] fns

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::RedisServer;
use livekit_protocol::{SipCallInfo, SipUri};
use switchboard_store::{
    CallFilter, CallHistory, CallQuality, CallRecord, CallTrace, HistoryConfig, StoreError,
    TracedMessage, CALL_HISTORY_FILE,
};
use tempfile::TempDir;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Embedded,
    Redis,
}

/// A history and what keeps its data alive.
struct Env {
    history: CallHistory,
    dir: TempDir,
    server: Option<RedisServer>,
    config: HistoryConfig,
}

impl Env {
    async fn new(backend: Backend, config: HistoryConfig) -> Env {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Embedded => Env {
                history: CallHistory::open_embedded(dir.path(), config)
                    .await
                    .unwrap(),
                dir,
                server: None,
                config,
            },
            Backend::Redis => {
                let server = RedisServer::start();
                Env {
                    history: CallHistory::connect_redis(&server.url(), "test:", config)
                        .await
                        .unwrap(),
                    dir,
                    server: Some(server),
                    config,
                }
            }
        }
    }

    /// Drops the handle and opens the same data again.
    async fn reopen(self) -> Env {
        let Env {
            history,
            dir,
            server,
            config,
        } = self;
        drop(history);
        let history = match &server {
            None => CallHistory::open_embedded(dir.path(), config)
                .await
                .unwrap(),
            Some(server) => CallHistory::connect_redis(&server.url(), "test:", config)
                .await
                .unwrap(),
        };
        Env {
            history,
            dir,
            server,
            config,
        }
    }
}

fn now_ns() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

const MS: i64 = 1_000_000;

fn record(id: &str, ended_at_ns: i64) -> CallRecord {
    CallRecord {
        info: Some(SipCallInfo {
            call_id: id.to_owned(),
            trunk_id: "ST_in".to_owned(),
            room_name: "lobby".to_owned(),
            call_direction: 1,
            from_uri: Some(SipUri {
                user: "+15550001111".to_owned(),
                host: "carrier.example".to_owned(),
                ..Default::default()
            }),
            to_uri: Some(SipUri {
                user: "+15559998888".to_owned(),
                host: "switchboard.example".to_owned(),
                ..Default::default()
            }),
            created_at_ns: ended_at_ns.saturating_sub(60_000 * MS),
            ended_at_ns,
            ..Default::default()
        }),
        ringing_at_ns: ended_at_ns.saturating_sub(59_000 * MS),
        transport: "udp".to_owned(),
        remote_address: "192.0.2.1:5060".to_owned(),
        result: "answered".to_owned(),
        quality: Some(CallQuality {
            packets_sent: 3000,
            packets_received: 2990,
            packets_lost: 10,
            jitter_ms: 1.5,
            ..Default::default()
        }),
        trace_messages: 2,
        ..Default::default()
    }
}

fn trace(id: &str) -> CallTrace {
    CallTrace {
        messages: vec![
            TracedMessage {
                at_ns: 1,
                sent: false,
                transport: "udp".to_owned(),
                local: "198.51.100.1:5060".to_owned(),
                remote: "192.0.2.1:5060".to_owned(),
                data: format!("INVITE sip:{id}@example SIP/2.0\r\n\r\n").into_bytes(),
            },
            TracedMessage {
                at_ns: 2,
                sent: true,
                data: vec![0, 159, 146, 150, 255], // not UTF-8: bytes as on the wire
                ..Default::default()
            },
        ],
        truncated: false,
    }
}

fn ids(records: &[CallRecord]) -> Vec<String> {
    records.iter().map(|r| r.call_id().to_owned()).collect()
}

/// Every page of `filter` at `page_size`, as the IDs of each page.
async fn pages(history: &CallHistory, filter: &CallFilter, page_size: usize) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = history.list(filter, page_size, &token).await.unwrap();
        out.push(ids(&page.calls));
        if page.next_page_token.is_empty() {
            return out;
        }
        assert!(out.len() < 1000, "pagination does not end");
        token = page.next_page_token;
    }
}

async fn all(history: &CallHistory, filter: &CallFilter) -> Vec<String> {
    pages(history, filter, 1000).await.concat()
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Embedded).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Redis).await;
                }
            )*
        }
    };
}

both_backends!(
    round_trip,
    newest_first_across_pages,
    filters,
    retention_by_count,
    retention_by_age,
    traces_go_before_records,
    re_put_replaces,
    forged_page_tokens,
    damaged_record,
    survives_reopen,
    scan_is_bounded,
);

async fn round_trip(backend: Backend) {
    let env = Env::new(backend, HistoryConfig::default()).await;
    let h = &env.history;
    let end = now_ns();
    let a = record("SCL_a", end);
    let b = record("SCL_b", end - MS);
    let mut unfinished = record("SCL_live", 0);
    unfinished.result = "in progress".to_owned();
    let odd = record("SCL_not ok", end);
    h.put(vec![
        (a.clone(), Some(trace("SCL_a"))),
        (b.clone(), None),
        (unfinished, Some(trace("SCL_live"))),
        (odd, None),
    ])
    .await
    .unwrap();

    assert_eq!(h.get("SCL_a").await.unwrap(), Some(a));
    assert_eq!(h.get("SCL_b").await.unwrap(), Some(b));
    assert_eq!(h.trace("SCL_a").await.unwrap(), Some(trace("SCL_a")));
    assert_eq!(h.trace("SCL_b").await.unwrap(), None);
    // Not ended, or an ID a page token could not carry: not kept.
    assert_eq!(h.get("SCL_live").await.unwrap(), None);
    assert_eq!(h.trace("SCL_live").await.unwrap(), None);
    assert_eq!(h.get("SCL_not ok").await.unwrap(), None);
    assert_eq!(h.get("SCL_missing").await.unwrap(), None);
    assert_eq!(h.trace("SCL_missing").await.unwrap(), None);
    assert_eq!(h.len().await.unwrap(), 2);
    // An empty batch is fine (and only applies retention).
    h.put(Vec::new()).await.unwrap();
    assert_eq!(h.len().await.unwrap(), 2);
}

async fn newest_first_across_pages(backend: Backend) {
    let env = Env::new(backend, HistoryConfig::default()).await;
    let h = &env.history;
    let base = now_ns() - 10_000 * MS;
    // 25 calls; every third shares its end with the next two, so equal
    // ends (equal Redis scores) are paged through too.
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..25i64 {
        let id = format!("SCL_{:02}", (i * 7) % 25); // IDs not in end order
        let end = base + (i / 3) * MS;
        batch.push((record(&id, end), None));
        expected.push((end, id));
    }
    // Written in three batches, in no particular order.
    let later = batch.split_off(15);
    let middle = batch.split_off(5);
    for part in [middle, later, batch] {
        h.put(part).await.unwrap();
    }
    expected.sort();
    expected.reverse();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();

    let by_ten = pages(h, &CallFilter::default(), 10).await;
    assert_eq!(by_ten.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!(by_ten.concat(), expected);

    // One at a time walks through every tie.
    let by_one = pages(h, &CallFilter::default(), 1).await;
    assert_eq!(by_one.len(), 25);
    assert_eq!(by_one.concat(), expected);
    // 0 is taken as 1, more than 1000 as 1000.
    let first = h.list(&CallFilter::default(), 0, "").await.unwrap();
    assert_eq!(ids(&first.calls), expected[..1]);
    let whole = h.list(&CallFilter::default(), 5000, "").await.unwrap();
    assert_eq!(ids(&whole.calls), expected);
    assert_eq!(whole.next_page_token, "");

    // Writes between pages neither repeat nor skip what was there.
    let page = h.list(&CallFilter::default(), 10, "").await.unwrap();
    h.put(vec![(record("SCL_newer", now_ns()), None)])
        .await
        .unwrap();
    let mut seen = ids(&page.calls);
    let mut token = page.next_page_token;
    while !token.is_empty() {
        let page = h.list(&CallFilter::default(), 10, &token).await.unwrap();
        seen.extend(ids(&page.calls));
        token = page.next_page_token;
    }
    assert_eq!(seen, expected);
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 25);
}

async fn filters(backend: Backend) {
    let env = Env::new(backend, HistoryConfig::default()).await;
    let h = &env.history;
    let base = now_ns() - 1000 * MS;
    let mut calls = Vec::new();
    for i in 0..6i64 {
        calls.push(record(&format!("SCL_f{i}"), base + i * MS));
    }
    // f1 outbound, f2 failed, f3 another room, f4 another trunk, f5 other numbers.
    calls[1].info.as_mut().unwrap().call_direction = 2;
    calls[2].result = "failed".to_owned();
    calls[3].info.as_mut().unwrap().room_name = "back-office".to_owned();
    calls[4].info.as_mut().unwrap().trunk_id = "ST_other".to_owned();
    let i5 = calls[5].info.as_mut().unwrap();
    i5.from_uri.as_mut().unwrap().user = "alice".to_owned();
    i5.to_uri.as_mut().unwrap().user = "+4930123456".to_owned();
    h.put(calls.iter().cloned().map(|c| (c, None)).collect())
        .await
        .unwrap();

    let list = |f: CallFilter| async move { all(h, &f).await };
    let everything = ["SCL_f5", "SCL_f4", "SCL_f3", "SCL_f2", "SCL_f1", "SCL_f0"];
    assert_eq!(list(CallFilter::default()).await, everything);
    assert_eq!(
        list(CallFilter {
            direction: Some(2),
            ..Default::default()
        })
        .await,
        ["SCL_f1"]
    );
    assert_eq!(
        list(CallFilter {
            direction: Some(1),
            ..Default::default()
        })
        .await,
        ["SCL_f5", "SCL_f4", "SCL_f3", "SCL_f2", "SCL_f0"]
    );
    assert_eq!(
        list(CallFilter {
            result: Some("failed".to_owned()),
            ..Default::default()
        })
        .await,
        ["SCL_f2"]
    );
    assert_eq!(
        list(CallFilter {
            room: Some("back-office".to_owned()),
            ..Default::default()
        })
        .await,
        ["SCL_f3"]
    );
    assert_eq!(
        list(CallFilter {
            trunk_id: Some("ST_other".to_owned()),
            ..Default::default()
        })
        .await,
        ["SCL_f4"]
    );
    // A substring of the caller or of the called number.
    assert_eq!(
        list(CallFilter {
            number: Some("5550001".to_owned()),
            ..Default::default()
        })
        .await,
        ["SCL_f4", "SCL_f3", "SCL_f2", "SCL_f1", "SCL_f0"]
    );
    assert_eq!(
        list(CallFilter {
            number: Some("lic".to_owned()),
            ..Default::default()
        })
        .await,
        ["SCL_f5"]
    );
    assert_eq!(
        list(CallFilter {
            number: Some("30123".to_owned()),
            ..Default::default()
        })
        .await,
        ["SCL_f5"]
    );
    // After is inclusive, before exclusive.
    assert_eq!(
        list(CallFilter {
            ended_after_ns: Some(base + 2 * MS),
            ended_before_ns: Some(base + 4 * MS),
            ..Default::default()
        })
        .await,
        ["SCL_f3", "SCL_f2"]
    );
    assert_eq!(
        list(CallFilter {
            ended_after_ns: Some(base + 4 * MS + 1),
            ..Default::default()
        })
        .await,
        ["SCL_f5"]
    );
    assert_eq!(
        list(CallFilter {
            ended_before_ns: Some(base + 1),
            ..Default::default()
        })
        .await,
        ["SCL_f0"]
    );
    // Conditions combine.
    assert_eq!(
        list(CallFilter {
            direction: Some(1),
            number: Some("5550001".to_owned()),
            ended_before_ns: Some(base + 3 * MS),
            ..Default::default()
        })
        .await,
        ["SCL_f2", "SCL_f0"]
    );
    assert!(list(CallFilter {
        room: Some("nowhere".to_owned()),
        ..Default::default()
    })
    .await
    .is_empty());
    // Filtered pages hold only matches and continue where they stopped.
    let by_two = pages(
        h,
        &CallFilter {
            direction: Some(1),
            ..Default::default()
        },
        2,
    )
    .await;
    assert_eq!(
        by_two.concat(),
        ["SCL_f5", "SCL_f4", "SCL_f3", "SCL_f2", "SCL_f0"]
    );
    assert!(by_two.iter().all(|p| p.len() <= 2));
}

async fn retention_by_count(backend: Backend) {
    let config = HistoryConfig {
        max_records: 5,
        ..Default::default()
    };
    let env = Env::new(backend, config).await;
    let h = &env.history;
    let base = now_ns() - 100 * MS;
    let call = |i: i64| {
        let id = format!("SCL_c{i}");
        (record(&id, base + i * MS), Some(trace(&id)))
    };
    // 6 in one batch (over the limit within a batch), then 2 more.
    h.put((0..6).map(call).collect()).await.unwrap();
    assert_eq!(h.len().await.unwrap(), 5);
    assert_eq!(h.get("SCL_c0").await.unwrap(), None);
    h.put(vec![call(7), call(6)]).await.unwrap();
    assert_eq!(h.len().await.unwrap(), 5);
    assert_eq!(
        all(h, &CallFilter::default()).await,
        ["SCL_c7", "SCL_c6", "SCL_c5", "SCL_c4", "SCL_c3"]
    );
    for i in 0..3 {
        let id = format!("SCL_c{i}");
        assert_eq!(h.get(&id).await.unwrap(), None, "{id}");
        assert_eq!(h.trace(&id).await.unwrap(), None, "{id}");
    }
    for i in 3..8 {
        let id = format!("SCL_c{i}");
        assert_eq!(h.trace(&id).await.unwrap(), Some(trace(&id)), "{id}");
    }
    // An old call arriving late goes straight out again.
    h.put(vec![call(-1)]).await.unwrap();
    assert_eq!(h.get("SCL_c-1").await.unwrap(), None);
    assert_eq!(h.len().await.unwrap(), 5);
    // What pruned calls leave behind is deleted, not only hidden (or, on
    // Redis, left to expire).
    match &env.server {
        Some(server) => {
            assert_eq!(redis_keys(server, "test:switchboard_call:*").await, 5);
            assert_eq!(redis_keys(server, "test:switchboard_call_trace:*").await, 5);
        }
        None => {
            file_counts(env, 5, 5).await;
        }
    }
}

/// Embedded only: what the file holds, pruned entries included.
async fn file_counts(env: Env, records: u64, traces: u64) -> Env {
    env.reopen_raw(|db| {
        assert_eq!(raw_len::<&str, &[u8]>(db, "calls_by_id"), records);
        assert_eq!(raw_len::<&[u8], &[u8]>(db, "calls_by_end"), records);
        assert_eq!(raw_len::<&str, &[u8]>(db, "call_traces"), traces);
        assert_eq!(raw_len::<&[u8], ()>(db, "call_traces_by_time"), traces);
    })
    .await
}

/// Entries in one table of the embedded file.
fn raw_len<K: redb::Key + 'static, V: redb::Value + 'static>(
    db: &redb::Database,
    table: &str,
) -> u64 {
    use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
    let read = db.begin_read().unwrap();
    let t = read
        .open_table(TableDefinition::<K, V>::new(table))
        .unwrap();
    t.len().unwrap()
}

async fn redis_keys(server: &RedisServer, pattern: &str) -> usize {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.len()
}

async fn retention_by_age(backend: Backend) {
    let config = HistoryConfig {
        max_age: Duration::from_millis(1500),
        ..Default::default()
    };
    let env = Env::new(backend, config).await;
    let h = &env.history;
    let now = now_ns();
    h.put(vec![
        (
            record("SCL_ancient", now - 3000 * MS),
            Some(trace("SCL_ancient")),
        ),
        (record("SCL_old", now - 700 * MS), Some(trace("SCL_old"))),
    ])
    .await
    .unwrap();
    // Already past max_age when it arrived: pruned by the same put.
    assert_eq!(h.get("SCL_ancient").await.unwrap(), None);
    assert_eq!(h.trace("SCL_ancient").await.unwrap(), None);
    assert!(h.get("SCL_old").await.unwrap().is_some());
    assert_eq!(h.len().await.unwrap(), 1);

    tokio::time::sleep(Duration::from_millis(900)).await;
    // Aged out: hidden at once, removed by the next put.
    assert_eq!(h.get("SCL_old").await.unwrap(), None);
    assert_eq!(h.len().await.unwrap(), 0);
    assert!(all(h, &CallFilter::default()).await.is_empty());
    h.put(vec![(record("SCL_new", now_ns()), None)])
        .await
        .unwrap();
    assert_eq!(h.get("SCL_old").await.unwrap(), None);
    assert_eq!(h.trace("SCL_old").await.unwrap(), None);
    assert_eq!(all(h, &CallFilter::default()).await, ["SCL_new"]);
    assert_eq!(h.len().await.unwrap(), 1);
    match &env.server {
        Some(server) => assert_eq!(redis_keys(server, "test:switchboard_call*").await, 2),
        None => {
            file_counts(env, 1, 0).await;
        }
    }
}

async fn traces_go_before_records(backend: Backend) {
    let config = HistoryConfig {
        trace_max_age: Duration::from_millis(600),
        ..Default::default()
    };
    let env = Env::new(backend, config).await;
    let h = &env.history;
    h.put(vec![(record("SCL_t1", now_ns()), Some(trace("SCL_t1")))])
        .await
        .unwrap();
    assert_eq!(h.trace("SCL_t1").await.unwrap(), Some(trace("SCL_t1")));
    tokio::time::sleep(Duration::from_millis(800)).await;
    // The trace is gone (before any put), the record stays.
    assert_eq!(h.trace("SCL_t1").await.unwrap(), None);
    h.put(vec![(record("SCL_t2", now_ns()), Some(trace("SCL_t2")))])
        .await
        .unwrap();
    assert_eq!(h.trace("SCL_t1").await.unwrap(), None);
    assert!(h.get("SCL_t1").await.unwrap().is_some());
    assert_eq!(h.trace("SCL_t2").await.unwrap(), Some(trace("SCL_t2")));
    assert_eq!(h.len().await.unwrap(), 2);
    match &env.server {
        Some(server) => {
            assert_eq!(redis_keys(server, "test:switchboard_call_trace:*").await, 1);
        }
        None => {
            file_counts(env, 2, 1).await;
        }
    }
}

async fn re_put_replaces(backend: Backend) {
    let env = Env::new(backend, HistoryConfig::default()).await;
    let h = &env.history;
    let now = now_ns();
    let mut first = record("SCL_r", now - 50 * MS);
    first.result = "failed".to_owned();
    h.put(vec![
        (first, Some(trace("SCL_r"))),
        (record("SCL_other", now - 20 * MS), None),
    ])
    .await
    .unwrap();
    // Same ID, a later end, no trace: the pair is replaced.
    let second = record("SCL_r", now - 10 * MS);
    h.put(vec![(second.clone(), None)]).await.unwrap();
    assert_eq!(h.get("SCL_r").await.unwrap(), Some(second.clone()));
    assert_eq!(h.trace("SCL_r").await.unwrap(), None);
    assert_eq!(h.len().await.unwrap(), 2);
    assert_eq!(all(h, &CallFilter::default()).await, ["SCL_r", "SCL_other"]);
    assert!(all(
        h,
        &CallFilter {
            result: Some("failed".to_owned()),
            ..Default::default()
        }
    )
    .await
    .is_empty());
    // Twice in one batch: the later one wins.
    let mut third = record("SCL_r", now - 30 * MS);
    third.result = "cancelled".to_owned();
    h.put(vec![
        (record("SCL_r", now - 5 * MS), None),
        (third.clone(), Some(trace("SCL_r"))),
    ])
    .await
    .unwrap();
    assert_eq!(h.get("SCL_r").await.unwrap(), Some(third));
    assert_eq!(h.trace("SCL_r").await.unwrap(), Some(trace("SCL_r")));
    assert_eq!(all(h, &CallFilter::default()).await, ["SCL_other", "SCL_r"]);
    assert_eq!(h.len().await.unwrap(), 2);
}

async fn forged_page_tokens(backend: Backend) {
    let env = Env::new(backend, HistoryConfig::default()).await;
    let h = &env.history;
    let now = now_ns();
    h.put(
        (0..3)
            .map(|i| (record(&format!("SCL_p{i}"), now - i * MS), None))
            .collect(),
    )
    .await
    .unwrap();
    let real = h.list(&CallFilter::default(), 1, "").await.unwrap();
    assert!(!real.next_page_token.is_empty());
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let token = |kind: u8, id: &[u8]| {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(id);
        hex(&bytes)
    };
    let other_kind = match backend {
        Backend::Embedded => b'r',
        Backend::Redis => b'e',
    };
    let forged = [
        "not a token".to_owned(),
        "abc".to_owned(),                      // odd length
        real.next_page_token.to_uppercase(),   // not as given
        format!("{}zz", real.next_page_token), // not hex
        real.next_page_token[..10].to_owned(), // cut short
        token(other_kind, b"SCL_p0"),          // the other backend's
        token(b'x', b"SCL_p0"),                // no backend's
        token(b'e', b"SCL_p 0"),               // a space in the ID
        token(b'r', b"SCL_p\xff"),             // not UTF-8
        token(b'e', &[b'a'; 65]),              // ID too long
        token(b'r', &[b'a'; 65]),
        token(b'e', b""),    // no ID
        "ff".repeat(10_000), // huge
    ];
    for bad in forged {
        let err = h.list(&CallFilter::default(), 10, &bad).await.unwrap_err();
        assert!(matches!(err, StoreError::BadPageToken), "{bad}: {err}");
        assert_eq!(err.to_string(), "page_token is not one this server gave");
        assert_eq!(err.code(), switchboard_routing::ErrorCode::InvalidArgument);
    }
    // Well-formed but made up: a position like any other.
    let mine = match backend {
        Backend::Embedded => b'e',
        Backend::Redis => b'r',
    };
    let made_up = h
        .list(&CallFilter::default(), 10, &token(mine, &[b'z'; 64]))
        .await
        .unwrap();
    assert!(made_up.calls.is_empty());
    let rest = h
        .list(&CallFilter::default(), 10, &real.next_page_token)
        .await
        .unwrap();
    assert_eq!(ids(&rest.calls), ["SCL_p1", "SCL_p2"]);
}

async fn damaged_record(backend: Backend) {
    let env = Env::new(backend, HistoryConfig::default()).await;
    let now = now_ns();
    env.history
        .put(vec![
            (record("SCL_d1", now - 2 * MS), None),
            (record("SCL_d2", now - MS), Some(trace("SCL_d2"))),
        ])
        .await
        .unwrap();
    let garbage: &[u8] = &[0xff, 0xff, 0xff];
    let env = match backend {
        // Overwrite SCL_d2's record and trace in the file itself.
        Backend::Embedded => env.reopen_raw(|db| damage_file(db, garbage)).await,
        Backend::Redis => {
            let server = env.server.as_ref().unwrap();
            let client = redis::Client::open(server.url()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            for key in [
                "test:switchboard_call:SCL_d2",
                "test:switchboard_call_trace:SCL_d2",
            ] {
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(garbage)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            env
        }
    };
    let h = &env.history;
    let err = h.get("SCL_d2").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::CorruptHistory { what: "call record", id, .. } if id == "SCL_d2"),
        "{err}"
    );
    let err = h.trace("SCL_d2").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::CorruptHistory { what: "call trace", id, .. } if id == "SCL_d2"),
        "{err}"
    );
    // Listing skips it and shows the rest.
    assert_eq!(all(h, &CallFilter::default()).await, ["SCL_d1"]);
    assert!(h.get("SCL_d1").await.unwrap().is_some());
}

/// Replaces SCL_d2's record and trace (keeping its stored-at prefix) with
/// bytes that do not decode.
fn damage_file(db: &redb::Database, garbage: &[u8]) {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    let by_id: TableDefinition<&str, &[u8]> = TableDefinition::new("calls_by_id");
    let by_end: TableDefinition<&[u8], &[u8]> = TableDefinition::new("calls_by_end");
    let traces: TableDefinition<&str, &[u8]> = TableDefinition::new("call_traces");
    let key = {
        let read = db.begin_read().unwrap();
        let table = read.open_table(by_id).unwrap();
        let key = table.get("SCL_d2").unwrap().unwrap().value().to_vec();
        key
    };
    let txn = db.begin_write().unwrap();
    txn.open_table(by_end)
        .unwrap()
        .insert(key.as_slice(), garbage)
        .unwrap();
    {
        let mut t = txn.open_table(traces).unwrap();
        let old = t.get("SCL_d2").unwrap().unwrap().value().to_vec();
        let mut value = old[..8].to_vec();
        value.extend_from_slice(garbage);
        t.insert("SCL_d2", value.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

impl Env {
    /// Embedded only: closes the history, lets `edit` change the file with
    /// redb directly, and opens it again.
    async fn reopen_raw(self, edit: impl FnOnce(&redb::Database)) -> Env {
        let Env {
            history,
            dir,
            server,
            config,
        } = self;
        drop(history);
        {
            let db = redb::Database::open(dir.path().join(CALL_HISTORY_FILE)).unwrap();
            edit(&db);
        }
        Env {
            history: CallHistory::open_embedded(dir.path(), config)
                .await
                .unwrap(),
            dir,
            server,
            config,
        }
    }
}

async fn survives_reopen(backend: Backend) {
    let env = Env::new(backend, HistoryConfig::default()).await;
    let now = now_ns();
    let calls: Vec<CallRecord> = (0..4)
        .map(|i| record(&format!("SCL_s{i}"), now - i * MS))
        .collect();
    env.history
        .put(
            calls
                .iter()
                .map(|c| (c.clone(), Some(trace(c.call_id()))))
                .collect(),
        )
        .await
        .unwrap();
    let first = env
        .history
        .list(&CallFilter::default(), 2, "")
        .await
        .unwrap();
    let env = env.reopen().await;
    let h = &env.history;
    assert_eq!(h.len().await.unwrap(), 4);
    assert_eq!(h.get("SCL_s2").await.unwrap(), Some(calls[2].clone()));
    assert_eq!(h.trace("SCL_s3").await.unwrap(), Some(trace("SCL_s3")));
    // A token outlives the process that gave it.
    let rest = h
        .list(&CallFilter::default(), 2, &first.next_page_token)
        .await
        .unwrap();
    assert_eq!(ids(&first.calls), ["SCL_s0", "SCL_s1"]);
    assert_eq!(ids(&rest.calls), ["SCL_s2", "SCL_s3"]);
    assert_eq!(rest.next_page_token, "");
    if matches!(backend, Backend::Embedded) {
        assert!(env.dir.path().join(CALL_HISTORY_FILE).exists());
        assert!(!env.dir.path().join("switchboard.redb").exists());
    }
}

async fn scan_is_bounded(backend: Backend) {
    let env = Env::new(
        backend,
        HistoryConfig {
            max_records: 60_000,
            ..Default::default()
        },
    )
    .await;
    let h = &env.history;
    let base = now_ns() - 100_000 * MS;
    // One list call looks at 50,000 records at most; the one match is the
    // oldest of 50,010.
    let mut batch: Vec<(CallRecord, Option<CallTrace>)> = (0..50_010i64)
        .map(|i| (record(&format!("SCL_{i:05}"), base + i * MS), None))
        .collect();
    batch[0].0.result = "failed".to_owned();
    for part in batch.chunks(10_000) {
        h.put(part.to_vec()).await.unwrap();
    }
    let failed = CallFilter {
        result: Some("failed".to_owned()),
        ..Default::default()
    };
    let first = h.list(&failed, 10, "").await.unwrap();
    assert!(first.calls.is_empty());
    assert!(
        !first.next_page_token.is_empty(),
        "the scan stopped, not the history"
    );
    let second = h.list(&failed, 10, &first.next_page_token).await.unwrap();
    assert_eq!(ids(&second.calls), ["SCL_00000"]);
    assert_eq!(second.next_page_token, "");
}
