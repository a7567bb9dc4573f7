//! Call records: every call, inbound or outbound, has one from its first
//! message. While the call lasts the record is in memory (the API lists
//! live calls from here); when it ends, the record and its SIP trace go to
//! the call history through one writer task that stores them in batches,
//! so a call never waits for the store and a store that is down costs
//! records, not calls.
//!
//! The writer takes a call's trace [`TRACE_GRACE`] after the call ended,
//! so the messages that close it (the ACK of a refusal, the answer to our
//! BYE, a retransmission) are in it. Meanwhile the record is *finishing*:
//! no longer live, not yet stored, still found by [`CallRecords::call`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use switchboard_store::{CallHistory, CallRecord, CallTrace};
use tokio::sync::mpsc;
use tracing::warn;

use crate::trace::SipTraces;
use switchboard_sip::Bucket;

/// Most finished calls waiting for the writer; beyond it records are
/// dropped (and counted).
const QUEUE: usize = 8192;
/// Most records stored in one write.
const BATCH: usize = 2048;
/// How long after its end a call's trace still takes messages.
pub const TRACE_GRACE: Duration = Duration::from_secs(1);
/// The shortest time between two writes to the history: at a high call
/// rate each write (a commit, an fsync on the embedded store) carries many
/// calls instead of a few.
const WRITE_INTERVAL: Duration = Duration::from_millis(250);

/// A finished call on its way to the history.
struct Finishing {
    record: CallRecord,
    sip_call_id: String,
}

/// A live call's record, shared by its task and the live-calls listing.
pub(crate) type SharedRecord = Arc<Mutex<CallRecord>>;

/// The live calls' records and the way to the history.
pub struct CallRecords {
    live: Mutex<HashMap<String, SharedRecord>>,
    finishing: Arc<Mutex<HashMap<String, Finishing>>>,
    traces: Arc<SipTraces>,
    /// Call IDs of finished calls, with when their trace may be taken.
    finished: Option<mpsc::Sender<(tokio::time::Instant, String)>>,
    dropped: Arc<AtomicU64>,
    stored: Arc<AtomicU64>,
    /// Refused calls kept per second, so a scanner's flood of INVITEs
    /// neither pushes real calls out of the history nor costs a write each.
    refused_budget: Mutex<RefusedBudget>,
    skipped_refused: AtomicU64,
}

/// Refused-call records allowed: `per_second` a second, as many in a
/// burst.
#[derive(Debug)]
struct RefusedBudget {
    per_second: u32,
    bucket: Bucket,
}

impl RefusedBudget {
    fn new(per_second: u32, now: std::time::Instant) -> RefusedBudget {
        RefusedBudget {
            per_second,
            bucket: Bucket::full(per_second, now),
        }
    }

    fn take(&mut self, now: std::time::Instant) -> bool {
        self.bucket.take(self.per_second, self.per_second, now)
    }
}

impl CallRecords {
    /// Records whose finished calls go to `history` (none kept when
    /// `None`), with SIP traces from `traces`. Starts the writer task on
    /// the current runtime.
    pub fn new(
        history: Option<CallHistory>,
        traces: Arc<SipTraces>,
        refused_per_second: u32,
    ) -> CallRecords {
        let dropped = Arc::new(AtomicU64::new(0));
        let stored = Arc::new(AtomicU64::new(0));
        let finishing = Arc::new(Mutex::new(HashMap::new()));
        let finished = history.map(|history| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let writer = Writer {
                history,
                finishing: finishing.clone(),
                traces: traces.clone(),
                dropped: dropped.clone(),
                stored: stored.clone(),
            };
            tokio::spawn(writer.run(rx));
            tx
        });
        CallRecords {
            live: Mutex::new(HashMap::new()),
            finishing,
            traces,
            finished,
            dropped,
            stored,
            refused_budget: Mutex::new(RefusedBudget::new(
                refused_per_second,
                std::time::Instant::now(),
            )),
            skipped_refused: AtomicU64::new(0),
        }
    }

    fn live(&self) -> MutexGuard<'_, HashMap<String, SharedRecord>> {
        lock(&self.live)
    }

    /// The traces calls are recorded from.
    pub fn traces(&self) -> &Arc<SipTraces> {
        &self.traces
    }

    /// Starts the record of a new call.
    pub(crate) fn open(
        &self,
        call_id: &str,
        sip_call_id: &str,
        record: CallRecord,
    ) -> SharedRecord {
        self.traces.claim(sip_call_id);
        let shared = Arc::new(Mutex::new(record));
        self.live().insert(call_id.to_owned(), shared.clone());
        shared
    }

    /// Ends a call's record: out of the live list, into the history with
    /// its trace (a challenged call leaves its trace for its retry and is
    /// not kept).
    pub(crate) fn close(&self, call_id: &str, sip_call_id: &str, record: Option<CallRecord>) {
        let Some(record) = record else {
            self.live().remove(call_id);
            self.traces.release(sip_call_id, std::time::Instant::now());
            return;
        };
        let over_budget = record.result == "refused"
            && !lock(&self.refused_budget).take(std::time::Instant::now());
        if over_budget {
            self.skipped_refused.fetch_add(1, Ordering::Relaxed);
        }
        let Some(finished) = self.finished.as_ref().filter(|_| !over_budget) else {
            self.live().remove(call_id);
            self.traces.take(sip_call_id);
            return;
        };
        // Finishing before it leaves the live list: a lookup in between
        // finds it in one or the other.
        lock(&self.finishing).insert(
            call_id.to_owned(),
            Finishing {
                record,
                sip_call_id: sip_call_id.to_owned(),
            },
        );
        self.live().remove(call_id);
        let ready = tokio::time::Instant::now() + TRACE_GRACE;
        if finished.try_send((ready, call_id.to_owned())).is_err() {
            if let Some(gone) = lock(&self.finishing).remove(call_id) {
                self.traces.take(&gone.sip_call_id);
            }
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A call that is live or has just ended (and is not stored yet); an
    /// ended one has `ended_at_ns` set.
    pub fn call(&self, call_id: &str) -> Option<CallRecord> {
        if let Some(record) = self.live_call(call_id) {
            return Some(record);
        }
        let (mut record, sip_call_id) = {
            let finishing = lock(&self.finishing);
            let found = finishing.get(call_id)?;
            (found.record.clone(), found.sip_call_id.clone())
        };
        if let Some(trace) = self.traces.snapshot(&sip_call_id) {
            record.trace_messages = u32::try_from(trace.messages.len()).unwrap_or(u32::MAX);
            record.trace_truncated = trace.truncated;
        }
        Some(record)
    }

    /// The SIP Call-ID of a live or finishing call.
    pub(crate) fn sip_call_id(&self, call_id: &str) -> Option<String> {
        if let Some(finishing) = lock(&self.finishing).get(call_id) {
            return Some(finishing.sip_call_id.clone());
        }
        let record = self.live_call(call_id)?;
        record.info.map(|i| i.sip_call_id)
    }

    /// The records of the calls in progress, oldest first.
    pub fn live_calls(&self) -> Vec<CallRecord> {
        let shared: Vec<SharedRecord> = self.live().values().cloned().collect();
        let mut records: Vec<CallRecord> = shared.iter().map(|r| lock(r).clone()).collect();
        records.sort_by_key(|r| r.info.as_ref().map(|i| i.created_at_ns).unwrap_or(0));
        records
    }

    /// The record of one call in progress.
    pub fn live_call(&self, call_id: &str) -> Option<CallRecord> {
        let shared = self.live().get(call_id).cloned()?;
        let record = lock(&shared).clone();
        Some(record)
    }

    /// Calls in progress with a record (leak checks: back to zero).
    pub fn live_count(&self) -> usize {
        self.live().len()
    }

    /// The record counters in Prometheus' text format.
    pub(crate) fn metrics_text(&self) -> String {
        format!(
            "# HELP switchboard_call_records_stored_total Finished calls written to the call history.\n\
             # TYPE switchboard_call_records_stored_total counter\n\
             switchboard_call_records_stored_total {}\n\
             # HELP switchboard_call_records_dropped_total Finished calls not kept: the history writer was behind or the store failed.\n\
             # TYPE switchboard_call_records_dropped_total counter\n\
             switchboard_call_records_dropped_total {}\n\
             # HELP switchboard_call_records_skipped_total Refused calls not kept because more were refused than call_history.max_refused_per_sec (a flood).\n\
             # TYPE switchboard_call_records_skipped_total counter\n\
             switchboard_call_records_skipped_total {}\n\
             # HELP switchboard_sip_traces_held SIP traces in memory (calls in progress and messages no call claimed yet).\n\
             # TYPE switchboard_sip_traces_held gauge\n\
             switchboard_sip_traces_held {}\n",
            self.stored.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.skipped_refused.load(Ordering::Relaxed),
            self.traces.len(),
        )
    }
}

/// The mutex's value, also after a panic elsewhere left it poisoned (the
/// records are still the best there are).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The task that stores finished calls.
struct Writer {
    history: CallHistory,
    finishing: Arc<Mutex<HashMap<String, Finishing>>>,
    traces: Arc<SipTraces>,
    dropped: Arc<AtomicU64>,
    stored: Arc<AtomicU64>,
}

impl Writer {
    /// Stores finished calls in batches, each once its trace's grace has
    /// passed; a failed write is retried once after a second, then its
    /// records are dropped and counted.
    async fn run(self, mut finished: mpsc::Receiver<(tokio::time::Instant, String)>) {
        // In the order they finished; one grace for all, so also in the
        // order they become ready.
        let mut waiting: VecDeque<(tokio::time::Instant, String)> = VecDeque::new();
        let mut next_write = tokio::time::Instant::now();
        loop {
            if waiting.is_empty() {
                match finished.recv().await {
                    Some(next) => waiting.push_back(next),
                    None => return,
                }
            }
            if let Some((ready_at, _)) = waiting.front() {
                tokio::time::sleep_until((*ready_at).max(next_write)).await;
            }
            while let Ok(next) = finished.try_recv() {
                waiting.push_back(next);
            }
            let now = tokio::time::Instant::now();
            let mut batch = Vec::new();
            while batch.len() < BATCH && waiting.front().is_some_and(|(at, _)| *at <= now) {
                let Some((_, call_id)) = waiting.pop_front() else {
                    break;
                };
                let finishing = lock(&self.finishing).remove(&call_id);
                if let Some(finishing) = finishing {
                    batch.push(self.with_trace(finishing));
                }
            }
            self.store(batch).await;
            next_write = tokio::time::Instant::now() + WRITE_INTERVAL;
        }
    }

    fn with_trace(&self, finishing: Finishing) -> (CallRecord, Option<CallTrace>) {
        let mut record = finishing.record;
        let trace = self.traces.take(&finishing.sip_call_id);
        if let Some(trace) = &trace {
            record.trace_messages = u32::try_from(trace.messages.len()).unwrap_or(u32::MAX);
            record.trace_truncated = trace.truncated;
        }
        (record, trace)
    }

    async fn store(&self, batch: Vec<(CallRecord, Option<CallTrace>)>) {
        let count = batch.len() as u64;
        if count == 0 {
            return;
        }
        let mut result = self.history.put(batch.clone()).await;
        if let Err(e) = &result {
            warn!(error = %e, records = count, "call records not stored; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            result = self.history.put(batch).await;
        }
        match result {
            Ok(()) => {
                self.stored.fetch_add(count, Ordering::Relaxed);
            }
            Err(e) => {
                warn!(error = %e, records = count, "call records dropped");
                self.dropped.fetch_add(count, Ordering::Relaxed);
            }
        }
    }
}

/// Now, in ns since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    crate::trace::unix_ns(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_refused_budget_allows_a_burst_then_its_rate() {
        let start = Instant::now();
        let mut budget = RefusedBudget::new(10, start);
        let burst = (0..20).filter(|_| budget.take(start)).count();
        assert_eq!(burst, 10);
        let later = start + Duration::from_millis(500);
        let refilled = (0..20).filter(|_| budget.take(later)).count();
        assert_eq!(refilled, 5);
        let much_later = start + Duration::from_secs(60);
        let capped = (0..20).filter(|_| budget.take(much_later)).count();
        assert_eq!(capped, 10, "never more than a second's worth");
    }
}
