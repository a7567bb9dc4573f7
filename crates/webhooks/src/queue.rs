//! The durable queue: a redb file holding the events not yet delivered to
//! every receiver, and each receiver's cursor.
//!
//! - `webhook_events`: sequence → (enqueued at, unix ms; body). Sequences
//!   only grow, even across restarts and after the table empties (the next
//!   one is kept in `webhook_meta`), so a cursor never points past a new
//!   event.
//! - `webhook_cursors`: URL → the last sequence that receiver is done with
//!   (delivered or given up). Its next event is the first one above.
//! - An event is deleted once every receiver's cursor has passed it, or
//!   when the bound drops it.
//!
//! Every commit is immediate (fsync): an event is on disk before
//! [`enqueue`](crate::Webhooks::enqueue) returns, and a delivered one is
//! not sent again after a restart (unless the process died between the
//! receiver's 2xx and the cursor's commit: delivery is at least once).
//! The methods block (file I/O, fsync): run them off the async threads.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

const EVENTS: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("webhook_events");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("webhook_cursors");
const META: TableDefinition<&str, u64> = TableDefinition::new("webhook_meta");
const NEXT_SEQ: &str = "next_seq";

/// An event read back from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub seq: u64,
    /// Wall-clock time it was enqueued, unix milliseconds.
    pub enqueued_ms: u64,
    pub body: Vec<u8>,
}

/// What opening found.
#[derive(Debug)]
pub(crate) struct Opened {
    /// Each configured URL's cursor.
    pub cursors: BTreeMap<String, u64>,
    /// Events dropped at once because the file held more than `max_queued`
    /// (the bound was lowered since the last run).
    pub dropped: u64,
}

/// The queue file.
pub(crate) struct Queue {
    db: Database,
    /// The configured URLs: an event is done when all of their cursors
    /// passed it.
    urls: Vec<String>,
    max_queued: u64,
    /// Held across each write transaction and the update of `queued`, so
    /// that `queued` is always the length of the latest commit. (redb lets
    /// one writer in at a time anyway, so this adds no waiting.)
    write: Mutex<()>,
    queued: AtomicU64,
}

impl Queue {
    /// Opens or creates the file, gives every configured URL a cursor (a
    /// new URL starts after the last event enqueued so far), forgets the
    /// cursors of URLs no longer configured, deletes what every receiver
    /// is done with and applies the bound.
    pub(crate) fn open(
        path: &Path,
        urls: Vec<String>,
        max_queued: u64,
    ) -> Result<(Queue, Opened), redb::Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        let (cursors, dropped, queued) = {
            let mut events = txn.open_table(EVENTS)?;
            let mut meta = txn.open_table(META)?;
            let mut cursor_table = txn.open_table(CURSORS)?;
            let last_event = events.last()?.map(|(k, _)| k.value()).unwrap_or(0);
            let stored_next = meta.get(NEXT_SEQ)?.map(|g| g.value()).unwrap_or(1);
            // Defensive: never hand out a sequence that an event has.
            let next_seq = stored_next.max(last_event + 1);
            meta.insert(NEXT_SEQ, next_seq)?;

            let configured: HashSet<&str> = urls.iter().map(String::as_str).collect();
            let mut stale = Vec::new();
            for entry in cursor_table.iter()? {
                let (url, _) = entry?;
                if !configured.contains(url.value()) {
                    stale.push(url.value().to_string());
                }
            }
            for url in &stale {
                cursor_table.remove(url.as_str())?;
            }
            if !stale.is_empty() {
                tracing::info!(
                    count = stale.len(),
                    "webhook URLs no longer configured: their queue cursors are removed"
                );
            }

            let mut cursors = BTreeMap::new();
            for url in &urls {
                let stored = cursor_table.get(url.as_str())?.map(|g| g.value());
                let cursor = match stored {
                    Some(c) => c,
                    None => {
                        cursor_table.insert(url.as_str(), next_seq - 1)?;
                        next_seq - 1
                    }
                };
                cursors.insert(url.clone(), cursor);
            }
            if let Some(&done) = cursors.values().min() {
                prune(&mut events, done)?;
            }
            let dropped = bound(&mut events, max_queued)?;
            (cursors, dropped, events.len()?)
        };
        txn.commit()?;
        let queue = Queue {
            db,
            urls,
            max_queued,
            write: Mutex::new(()),
            queued: AtomicU64::new(queued),
        };
        Ok((queue, Opened { cursors, dropped }))
    }

    /// Appends `body`, durably, and returns its sequence and how many of
    /// the oldest events the bound dropped to make room.
    pub(crate) fn enqueue(&self, body: &[u8], now_ms: u64) -> Result<(u64, u64), redb::Error> {
        let _write = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let txn = self.db.begin_write()?;
        let (seq, dropped, queued) = {
            let mut events = txn.open_table(EVENTS)?;
            let mut meta = txn.open_table(META)?;
            let seq = meta.get(NEXT_SEQ)?.map(|g| g.value()).unwrap_or(1);
            meta.insert(NEXT_SEQ, seq + 1)?;
            events.insert(seq, (now_ms, body))?;
            let dropped = bound(&mut events, self.max_queued)?;
            (seq, dropped, events.len()?)
        };
        txn.commit()?;
        self.queued.store(queued, Ordering::Relaxed);
        Ok((seq, dropped))
    }

    /// The first event above `cursor`, if any. Events the bound dropped are
    /// skipped over, so the sequence may jump.
    pub(crate) fn next_after(&self, cursor: u64) -> Result<Option<Event>, redb::Error> {
        let txn = self.db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let mut range = events.range(cursor.saturating_add(1)..)?;
        match range.next() {
            None => Ok(None),
            Some(entry) => {
                let (seq, value) = entry?;
                let (enqueued_ms, body) = value.value();
                Ok(Some(Event {
                    seq: seq.value(),
                    enqueued_ms,
                    body: body.to_vec(),
                }))
            }
        }
    }

    /// Moves `url`'s cursor to `seq` (that receiver is done with it) and
    /// deletes the events every receiver is done with.
    pub(crate) fn advance(&self, url: &str, seq: u64) -> Result<(), redb::Error> {
        let _write = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let txn = self.db.begin_write()?;
        let queued = {
            let mut cursors = txn.open_table(CURSORS)?;
            cursors.insert(url, seq)?;
            let mut done = u64::MAX;
            for url in &self.urls {
                let cursor = cursors.get(url.as_str())?.map(|g| g.value()).unwrap_or(0);
                done = done.min(cursor);
            }
            let mut events = txn.open_table(EVENTS)?;
            prune(&mut events, done)?;
            events.len()?
        };
        txn.commit()?;
        self.queued.store(queued, Ordering::Relaxed);
        Ok(())
    }

    /// Events held (not yet done by every receiver), as of the last commit.
    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }
}

type Events<'t> = redb::Table<'t, u64, (u64, &'static [u8])>;

/// Deletes the events up to `done`, which every receiver is done with.
fn prune(events: &mut Events<'_>, done: u64) -> Result<(), redb::Error> {
    if done > 0 {
        events.retain_in(..=done, |_, _| false)?;
    }
    Ok(())
}

/// Drops the oldest events beyond `max_queued`; returns how many.
fn bound(events: &mut Events<'_>, max_queued: u64) -> Result<u64, redb::Error> {
    let mut dropped = 0;
    while events.len()? > max_queued {
        if events.pop_first()?.is_none() {
            break;
        }
        dropped += 1;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn events_are_kept_until_every_url_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let (q, opened) = Queue::open(&path, urls(&["a", "b"]), 100).unwrap();
        assert_eq!(opened.cursors.values().copied().collect::<Vec<_>>(), [0, 0]);
        assert_eq!(q.enqueue(b"1", 10).unwrap(), (1, 0));
        assert_eq!(q.enqueue(b"2", 11).unwrap(), (2, 0));
        let first = q.next_after(0).unwrap().unwrap();
        assert_eq!(
            (first.seq, first.enqueued_ms, &first.body[..]),
            (1, 10, &b"1"[..])
        );
        q.advance("a", 2).unwrap();
        assert_eq!(q.queued(), 2, "b still needs both");
        q.advance("b", 1).unwrap();
        assert_eq!(q.queued(), 1);
        assert_eq!(q.next_after(1).unwrap().unwrap().seq, 2);
        q.advance("b", 2).unwrap();
        assert_eq!(q.queued(), 0);
        assert_eq!(q.next_after(0).unwrap(), None);
        drop(q);

        // Sequences keep growing after the table emptied and a restart.
        let (q, opened) = Queue::open(&path, urls(&["a", "b", "c"]), 100).unwrap();
        assert_eq!(
            opened.cursors["c"], 2,
            "a new URL starts after the last event"
        );
        assert_eq!(q.enqueue(b"3", 12).unwrap().0, 3);
    }

    #[test]
    fn bound_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let (q, _) = Queue::open(&path, urls(&["a"]), 3).unwrap();
        for i in 1..=3 {
            assert_eq!(q.enqueue(b"x", 0).unwrap(), (i, 0));
        }
        assert_eq!(q.enqueue(b"x", 0).unwrap(), (4, 1));
        assert_eq!(q.queued(), 3);
        assert_eq!(q.next_after(0).unwrap().unwrap().seq, 2);
        drop(q);
        // A lower bound on reopening drops at once.
        let (q, opened) = Queue::open(&path, urls(&["a"]), 1).unwrap();
        assert_eq!(opened.dropped, 2);
        assert_eq!(q.next_after(0).unwrap().unwrap().seq, 4);
    }

    #[test]
    fn removed_urls_no_longer_hold_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let (q, _) = Queue::open(&path, urls(&["a", "b"]), 100).unwrap();
        q.enqueue(b"1", 0).unwrap();
        q.advance("a", 1).unwrap();
        assert_eq!(q.queued(), 1);
        drop(q);
        let (q, opened) = Queue::open(&path, urls(&["a"]), 100).unwrap();
        assert_eq!(q.queued(), 0);
        assert_eq!(opened.cursors.len(), 1);
    }
}
