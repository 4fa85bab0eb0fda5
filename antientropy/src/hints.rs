//! The hint queue: mutations kept for replicas that missed them.
//!
//! A hint is a row's sibling set as its coordinator sent it (so replaying it
//! is an ordinary causal merge: a hint never revives a delete, because a
//! tombstone that superseded the hinted version dominates it). The queue
//! decides what is kept and what is dropped, and counts both:
//!
//! - a target down longer than the **hint window** gets no new hints (as
//!   Cassandra's `max_hint_window`: past it, repair is the tool), and a hint
//!   older than the window is dropped at replay rather than delivered;
//! - a target's hints stop at a **size cap**; what does not fit is dropped.
//!
//! Storage is behind [`HintStore`], so the rules are tested here without a
//! disk; the node stores hints in RocksDB.

use std::collections::BTreeMap;
use std::time::Duration;

pub use ringdb_proto::HintCounters;
use serde::{Deserialize, Serialize};

/// The format byte in front of every stored hint of one row.
const HINT_FORMAT: u8 = 1;
/// The format byte of a hint of several rows: a node that knows only
/// [`HINT_FORMAT`] does not decode it, and drops it as malformed (counted
/// in `dropped_other`) rather than replaying its first row alone.
const HINT_FORMAT_ROWS: u8 = 2;

/// One hinted mutation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintRecord {
    /// The row's storage key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The encoded sibling set to merge into the target's row.
    #[serde(with = "serde_bytes")]
    pub versions: Vec<u8>,
    /// When the hint was written, in microseconds since the Unix epoch.
    pub created_micros: i64,
    /// The other rows written with this one, atomically (rows of the same
    /// partition, a `BATCH`): the hint is replayed whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<HintRow>,
}

/// Another row of a hint of several rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintRow {
    /// The row's storage key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The encoded sibling set.
    #[serde(with = "serde_bytes")]
    pub versions: Vec<u8>,
}

/// A stored hint does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed hint: {0}")]
pub struct MalformedHint(String);

impl HintRecord {
    /// The stored form: a format byte and named MessagePack.
    pub fn encode(&self) -> Vec<u8> {
        let format = if self.more.is_empty() {
            HINT_FORMAT
        } else {
            HINT_FORMAT_ROWS
        };
        let mut bytes = vec![format];
        rmp_serde::encode::write_named(&mut bytes, self).expect("a hint always encodes");
        bytes
    }

    /// Decodes what [`HintRecord::encode`] made.
    pub fn decode(bytes: &[u8]) -> Result<HintRecord, MalformedHint> {
        match bytes.split_first() {
            Some((&(HINT_FORMAT | HINT_FORMAT_ROWS), rest)) => {
                rmp_serde::from_slice(rest).map_err(|e| MalformedHint(e.to_string()))
            }
            Some((format, _)) => Err(MalformedHint(format!("unknown hint format {format}"))),
            None => Err(MalformedHint("empty hint".into())),
        }
    }
}

/// Where hints are kept: per target, in sequence order.
pub trait HintStore {
    /// The store's error.
    type Error;
    /// Appends a hint for `target`; returns its sequence number.
    fn append(&self, target: &str, hint: &[u8]) -> Result<u64, Self::Error>;
    /// Up to `limit` hints for `target` after sequence `after`, oldest first.
    fn read(
        &self,
        target: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, Self::Error>;
    /// Deletes a hint; returns whether it was there (two tasks may both
    /// have read it: only the first to delete it counts it).
    fn remove(&self, target: &str, sequence: u64) -> Result<bool, Self::Error>;
    /// Every target with hints, and their total size in bytes (at start).
    fn targets(&self) -> Result<Vec<(String, u64)>, Self::Error>;
}

impl<S: HintStore + ?Sized> HintStore for std::sync::Arc<S> {
    type Error = S::Error;
    fn append(&self, target: &str, hint: &[u8]) -> Result<u64, S::Error> {
        (**self).append(target, hint)
    }
    fn read(
        &self,
        target: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, S::Error> {
        (**self).read(target, after, limit)
    }
    fn remove(&self, target: &str, sequence: u64) -> Result<bool, S::Error> {
        (**self).remove(target, sequence)
    }
    fn targets(&self) -> Result<Vec<(String, u64)>, S::Error> {
        (**self).targets()
    }
}

/// The queue's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HintLimits {
    /// How long hints are written for a down target and kept.
    pub window: Duration,
    /// The most bytes of hints kept per target.
    pub max_bytes_per_target: u64,
}

/// Why a hint was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStored {
    /// The target has been down longer than the hint window.
    DownTooLong,
    /// The target's hints are at the size cap.
    OverCap,
}

/// A hint due for replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// Its sequence number, to acknowledge it with.
    pub sequence: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// The mutation.
    pub record: HintRecord,
}

/// The hint queue over a store.
pub struct HintQueue<S> {
    store: S,
    limits: HintLimits,
    pending: BTreeMap<String, u64>,
    counters: HintCounters,
}

impl<S: HintStore> HintQueue<S> {
    /// Opens the queue over what `store` holds.
    pub fn open(store: S, limits: HintLimits) -> Result<HintQueue<S>, S::Error> {
        let pending = store.targets()?.into_iter().collect();
        Ok(HintQueue {
            store,
            limits,
            pending,
            counters: HintCounters::default(),
        })
    }

    /// Stores a hint for `target`, which has been down for `down_for` (zero
    /// when it is up but did not acknowledge).
    pub fn store(
        &mut self,
        target: &str,
        record: &HintRecord,
        down_for: Duration,
    ) -> Result<Result<(), NotStored>, S::Error> {
        if down_for > self.limits.window {
            self.counters.dropped_window += 1;
            return Ok(Err(NotStored::DownTooLong));
        }
        let bytes = record.encode();
        let pending = self.pending.get(target).copied().unwrap_or(0);
        if pending + bytes.len() as u64 > self.limits.max_bytes_per_target {
            self.counters.dropped_cap += 1;
            return Ok(Err(NotStored::OverCap));
        }
        self.store.append(target, &bytes)?;
        *self.pending.entry(target.to_owned()).or_default() += bytes.len() as u64;
        self.counters.written += 1;
        Ok(Ok(()))
    }

    /// Up to `limit` hints for `target` after `after`, oldest first, to
    /// deliver; empty only when `target` has no more hints after `after`.
    /// Hints older than the window at `now_micros`, and hints that do not
    /// decode, are deleted and counted on the way.
    pub fn due(
        &mut self,
        target: &str,
        after: Option<u64>,
        limit: usize,
        now_micros: i64,
    ) -> Result<Vec<Due>, S::Error> {
        let window = i64::try_from(self.limits.window.as_micros()).unwrap_or(i64::MAX);
        loop {
            let read = self.store.read(target, after, limit)?;
            if read.is_empty() {
                return Ok(Vec::new());
            }
            let mut due = Vec::new();
            for (sequence, bytes) in read {
                let size = bytes.len() as u64;
                match HintRecord::decode(&bytes) {
                    Ok(record) if now_micros.saturating_sub(record.created_micros) <= window => {
                        due.push(Due {
                            sequence,
                            bytes: size,
                            record,
                        });
                    }
                    Ok(_) => {
                        if self.forget(target, sequence, size)? {
                            self.counters.expired += 1;
                        }
                    }
                    Err(_) => {
                        if self.forget(target, sequence, size)? {
                            self.counters.dropped_other += 1;
                        }
                    }
                }
            }
            // A batch that had only expired hints is gone: read on, so that
            // a caller never takes an empty batch for the end.
            if !due.is_empty() {
                return Ok(due);
            }
        }
    }

    /// A hint was delivered to its target: delete it.
    pub fn delivered(&mut self, target: &str, hint: &Due) -> Result<(), S::Error> {
        if self.forget(target, hint.sequence, hint.bytes)? {
            self.counters.delivered += 1;
        }
        Ok(())
    }

    /// A hint was handed over to another node (this one is leaving the
    /// ring), which keeps it for the target: delete it here.
    pub fn handed_over(&mut self, target: &str, hint: &Due) -> Result<(), S::Error> {
        if self.forget(target, hint.sequence, hint.bytes)? {
            self.counters.handed_over += 1;
        }
        Ok(())
    }

    /// A hint of a target that left the ring was sent to the row's
    /// replicas now (`redirected`), or could not be: delete it.
    pub fn retired(&mut self, target: &str, hint: &Due, redirected: bool) -> Result<(), S::Error> {
        if !self.forget(target, hint.sequence, hint.bytes)? {
            // Another task dealt with it first.
        } else if redirected {
            self.counters.redirected += 1;
        } else {
            self.counters.dropped_other += 1;
        }
        Ok(())
    }

    /// Deletes a hint; returns whether it was still there. A hint read by
    /// two tasks (replay and a decommission's hand-over) is deleted and
    /// counted once, so `pending` stays exact and its target stays listed
    /// while it has hints.
    fn forget(&mut self, target: &str, sequence: u64, bytes: u64) -> Result<bool, S::Error> {
        if !self.store.remove(target, sequence)? {
            return Ok(false);
        }
        if let Some(pending) = self.pending.get_mut(target) {
            *pending = pending.saturating_sub(bytes);
            if *pending == 0 {
                self.pending.remove(target);
            }
        }
        Ok(true)
    }

    /// Targets with hints, and their bytes.
    pub fn pending(&self) -> &BTreeMap<String, u64> {
        &self.pending
    }

    /// What happened so far.
    pub fn counters(&self) -> HintCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::convert::Infallible;

    use super::*;

    #[derive(Default)]
    struct Memory {
        hints: RefCell<BTreeMap<(String, u64), Vec<u8>>>,
        next: RefCell<u64>,
    }

    impl HintStore for &Memory {
        type Error = Infallible;
        fn append(&self, target: &str, hint: &[u8]) -> Result<u64, Infallible> {
            let mut next = self.next.borrow_mut();
            *next += 1;
            self.hints
                .borrow_mut()
                .insert((target.into(), *next), hint.to_vec());
            Ok(*next)
        }
        fn read(
            &self,
            target: &str,
            after: Option<u64>,
            limit: usize,
        ) -> Result<Vec<(u64, Vec<u8>)>, Infallible> {
            Ok(self
                .hints
                .borrow()
                .iter()
                .filter(|((t, s), _)| t == target && after.is_none_or(|a| *s > a))
                .take(limit)
                .map(|((_, s), h)| (*s, h.clone()))
                .collect())
        }
        fn remove(&self, target: &str, sequence: u64) -> Result<bool, Infallible> {
            Ok(self
                .hints
                .borrow_mut()
                .remove(&(target.into(), sequence))
                .is_some())
        }
        fn targets(&self) -> Result<Vec<(String, u64)>, Infallible> {
            let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
            for ((t, _), h) in self.hints.borrow().iter() {
                *sizes.entry(t.clone()).or_default() += h.len() as u64;
            }
            Ok(sizes.into_iter().collect())
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn record(key: &str, created_micros: i64) -> HintRecord {
        HintRecord {
            key: key.as_bytes().to_vec(),
            versions: vec![7; 100],
            created_micros,
            more: Vec::new(),
        }
    }

    /// A hint of several rows is one record, and a node that knows hints of
    /// one row only refuses it (format byte 2) rather than replaying part.
    #[test]
    fn a_hint_of_several_rows_round_trips_under_its_own_format() {
        let mut hint = record("a", 5);
        assert_eq!(hint.encode()[0], 1);
        hint.more.push(HintRow {
            key: b"b".to_vec(),
            versions: vec![8; 10],
        });
        let bytes = hint.encode();
        assert_eq!(bytes[0], 2);
        assert_eq!(HintRecord::decode(&bytes), Ok(hint));
        let error = HintRecord::decode(&[3, 0x80]).unwrap_err();
        assert!(
            error.to_string().contains("unknown hint format 3"),
            "{error}"
        );
    }

    fn limits(cap: u64) -> HintLimits {
        HintLimits {
            window: HOUR,
            max_bytes_per_target: cap,
        }
    }

    #[test]
    fn a_hint_round_trips_through_its_encoding() {
        let hint = record("k", 42);
        assert_eq!(HintRecord::decode(&hint.encode()), Ok(hint));
        assert!(HintRecord::decode(&[9, 1, 2]).is_err());
        assert!(HintRecord::decode(&[]).is_err());
    }

    #[test]
    fn hints_are_delivered_oldest_first_and_deleted() {
        let memory = Memory::default();
        let mut queue = HintQueue::open(&memory, limits(1 << 20)).unwrap();
        for key in ["a", "b", "c"] {
            queue
                .store("n3", &record(key, 0), Duration::ZERO)
                .unwrap()
                .unwrap();
        }
        assert!(queue.pending()["n3"] > 300);
        let due = queue.due("n3", None, 2, 10).unwrap();
        assert_eq!(
            due.iter().map(|d| d.record.key.clone()).collect::<Vec<_>>(),
            [b"a", b"b"]
        );
        for hint in &due {
            queue.delivered("n3", hint).unwrap();
        }
        let rest = queue
            .due("n3", due.last().map(|d| d.sequence), 10, 10)
            .unwrap();
        assert_eq!(rest.len(), 1);
        queue.delivered("n3", &rest[0]).unwrap();
        assert!(queue.pending().is_empty());
        assert_eq!(queue.counters().delivered, 3);
        assert!(memory.hints.borrow().is_empty());
    }

    #[test]
    fn the_window_stops_new_hints_and_expires_old_ones() {
        let memory = Memory::default();
        let mut queue = HintQueue::open(&memory, limits(1 << 20)).unwrap();
        let refused = queue.store("n3", &record("late", 0), HOUR + Duration::from_secs(1));
        assert_eq!(refused.unwrap(), Err(NotStored::DownTooLong));
        queue
            .store("n3", &record("old", 0), Duration::ZERO)
            .unwrap()
            .unwrap();
        let hour = HOUR.as_micros() as i64;
        queue
            .store("n3", &record("new", hour), Duration::ZERO)
            .unwrap()
            .unwrap();
        let due = queue.due("n3", None, 10, hour + 1).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].record.key, b"new");
        let counters = queue.counters();
        assert_eq!(
            (counters.expired, counters.dropped_window, counters.written),
            (1, 1, 2)
        );
    }

    /// A batch of expired hints is not the end: a decommission's hand-over
    /// or a redirection that stopped at it would leave the live hints
    /// behind it.
    #[test]
    fn due_reads_past_a_batch_of_expired_hints() {
        let memory = Memory::default();
        let mut queue = HintQueue::open(&memory, limits(1 << 20)).unwrap();
        let hour = HOUR.as_micros() as i64;
        for i in 0..5 {
            queue
                .store("n3", &record(&format!("old{i}"), 0), Duration::ZERO)
                .unwrap()
                .unwrap();
        }
        queue
            .store("n3", &record("live", hour), Duration::ZERO)
            .unwrap()
            .unwrap();
        let due = queue.due("n3", None, 2, hour + 1).unwrap();
        assert_eq!(
            due.iter().map(|d| d.record.key.clone()).collect::<Vec<_>>(),
            [b"live"]
        );
        assert_eq!(queue.counters().expired, 5);
        queue.delivered("n3", &due[0]).unwrap();
        assert!(queue.due("n3", None, 2, hour + 1).unwrap().is_empty());
        assert!(queue.pending().is_empty());
    }

    /// Replay and a hand-over can read the same hint; the second to finish
    /// must not count it again, or `pending` would drop a target that
    /// still has hints.
    #[test]
    fn a_hint_dealt_with_twice_is_counted_once() {
        let memory = Memory::default();
        let mut queue = HintQueue::open(&memory, limits(1 << 20)).unwrap();
        for key in ["a", "b"] {
            queue
                .store("n3", &record(key, 0), Duration::ZERO)
                .unwrap()
                .unwrap();
        }
        let first = queue.due("n3", None, 1, 10).unwrap().remove(0);
        queue.delivered("n3", &first).unwrap();
        queue.handed_over("n3", &first).unwrap();
        assert_eq!(
            (queue.counters().delivered, queue.counters().handed_over),
            (1, 0)
        );
        assert!(queue.pending().contains_key("n3"), "b is still queued");
        assert_eq!(queue.due("n3", None, 10, 10).unwrap().len(), 1);
    }

    #[test]
    fn the_cap_drops_what_does_not_fit_per_target() {
        let memory = Memory::default();
        let one = record("k", 0).encode().len() as u64;
        let mut queue = HintQueue::open(&memory, limits(2 * one)).unwrap();
        for _ in 0..2 {
            queue
                .store("n3", &record("k", 0), Duration::ZERO)
                .unwrap()
                .unwrap();
        }
        let full = queue.store("n3", &record("k", 0), Duration::ZERO).unwrap();
        assert_eq!(full, Err(NotStored::OverCap));
        // Another target has its own cap.
        queue
            .store("n2", &record("k", 0), Duration::ZERO)
            .unwrap()
            .unwrap();
        assert_eq!(queue.counters().dropped_cap, 1);
        // Reopening counts what is stored.
        let reopened = HintQueue::open(&memory, limits(2 * one)).unwrap();
        assert_eq!(reopened.pending()["n3"], 2 * one);
    }
}
