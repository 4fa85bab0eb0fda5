//! A storage engine in memory: the simulator's disk.
//!
//! A [`MemoryDisk`] outlives the node that uses it, as a disk outlives a
//! process. Every write is applied at once (reads see it) and, unless it
//! was synced, also queued as not yet durable; a sync makes the queue
//! durable. [`MemoryDisk::crash`] models a machine crash as FoundationDB's
//! non-durable file does: of the writes not yet durable, only a prefix of
//! the given length survives (a log's tail is lost, never a write before a
//! surviving one), and every engine opened before the crash is dead (its
//! calls fail), so a crashed node's stray work cannot touch the disk of its
//! next life.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use super::StorageError;
use super::SyncMode;
use super::engine::{Batch, Change, Engine, Family, Item, Job, Reader};

type Families = BTreeMap<Family, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Default)]
struct DiskState {
    /// Every write, durable or not: what reads see.
    current: Families,
    /// What survives a crash.
    durable: Families,
    /// Writes not yet durable, oldest first, with their sequence numbers.
    pending: Vec<(u64, Batch)>,
    sequence: u64,
    /// Bumped by every crash; engines of an earlier life are dead.
    life: u64,
    syncs: u64,
}

/// A disk in memory that survives its node (see the module docs).
pub struct MemoryDisk {
    state: Mutex<DiskState>,
    sync: SyncMode,
}

impl MemoryDisk {
    /// An empty disk whose engines acknowledge writes as `sync` says.
    pub fn new(sync: SyncMode) -> Arc<MemoryDisk> {
        Arc::new(MemoryDisk {
            state: Mutex::new(DiskState::default()),
            sync,
        })
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().expect("memory disk")
    }

    /// An engine over this disk, for one life of its node.
    pub fn engine(self: &Arc<Self>) -> MemoryEngine {
        MemoryEngine {
            life: self.state().life,
            disk: self.clone(),
        }
    }

    /// Makes every write so far durable.
    pub fn sync(&self) {
        let mut state = self.state();
        state.syncs += 1;
        for (_, batch) in std::mem::take(&mut state.pending) {
            apply(&mut state.durable, batch);
        }
    }

    /// Writes not yet durable.
    pub fn pending_writes(&self) -> usize {
        self.state().pending.len()
    }

    /// A machine crash: of the writes not yet durable, the oldest `keep`
    /// survive; every engine opened so far is dead. Returns how many
    /// writes were lost.
    pub fn crash(&self, keep: usize) -> usize {
        let mut state = self.state();
        let pending = std::mem::take(&mut state.pending);
        let lost = pending.len().saturating_sub(keep);
        for (_, batch) in pending.into_iter().take(keep) {
            apply(&mut state.durable, batch);
        }
        state.current = state.durable.clone();
        state.life += 1;
        lost
    }

    /// Erases everything (a disk replaced); every engine opened so far is dead.
    pub fn wipe(&self) {
        let mut state = self.state();
        let life = state.life + 1;
        *state = DiskState {
            life,
            ..DiskState::default()
        };
    }
}

fn apply(families: &mut Families, batch: Batch) {
    for change in batch.changes {
        match change {
            Change::Put(family, key, value) => {
                families.entry(family).or_default().insert(key, value);
            }
            Change::Delete(family, key) => {
                if let Some(keys) = families.get_mut(&family) {
                    keys.remove(&key);
                }
            }
        }
    }
}

/// One life's handle on a [`MemoryDisk`].
pub struct MemoryEngine {
    disk: Arc<MemoryDisk>,
    life: u64,
}

impl MemoryEngine {
    /// The disk's state, if this engine's life is the disk's.
    fn live(&self) -> Result<MutexGuard<'_, DiskState>, StorageError> {
        let state = self.disk.state();
        if state.life != self.life {
            return Err(StorageError::Crashed);
        }
        Ok(state)
    }
}

/// Scans `families` one key at a time, so no lock is held between items.
fn scan_from<'a>(
    read: impl Fn(&Bound<Vec<u8>>) -> Option<Item> + 'a,
    start: &[u8],
) -> Box<dyn Iterator<Item = Item> + 'a> {
    let mut from = Bound::Included(start.to_vec());
    let mut failed = false;
    Box::new(std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let item = read(&from)?;
        match &item {
            Ok((key, _)) => from = Bound::Excluded(key.clone()),
            Err(_) => failed = true,
        }
        Some(item)
    }))
}

/// [`scan_from`] backwards: from the last key under `end` down to `start`.
fn scan_back<'a>(
    read: impl Fn(&Bound<Vec<u8>>) -> Option<Item> + 'a,
    end: Option<&[u8]>,
) -> Box<dyn Iterator<Item = Item> + 'a> {
    let mut upto = match end {
        Some(end) => Bound::Excluded(end.to_vec()),
        None => Bound::Unbounded,
    };
    let mut failed = false;
    Box::new(std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let item = read(&upto)?;
        match &item {
            Ok((key, _)) => upto = Bound::Excluded(key.clone()),
            Err(_) => failed = true,
        }
        Some(item)
    }))
}

/// The last item of `family` at or after `start` and under `upto`.
fn previous_item(
    families: &Families,
    family: Family,
    start: &[u8],
    upto: &Bound<Vec<u8>>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let keys = families.get(&family)?;
    // An upper bound below the start is an empty range (`range` panics).
    if matches!(upto, Bound::Excluded(end) if end.as_slice() < start) {
        return None;
    }
    let (key, value) = keys
        .range((Bound::Included(start.to_vec()), upto.clone()))
        .next_back()?;
    Some((key.clone(), value.clone()))
}

fn next_item(
    families: &Families,
    family: Family,
    from: &Bound<Vec<u8>>,
    end: Option<&[u8]>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let keys = families.get(&family)?;
    let (key, value) = keys.range((from.clone(), Bound::Unbounded)).next()?;
    if end.is_some_and(|end| key.as_slice() >= end) {
        return None;
    }
    Some((key.clone(), value.clone()))
}

impl Reader for MemoryEngine {
    fn scan<'a>(
        &'a self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Item> + 'a> {
        let end = end.map(<[u8]>::to_vec);
        scan_from(
            move |from| match self.live() {
                Ok(state) => next_item(&state.current, family, from, end.as_deref()).map(Ok),
                Err(error) => Some(Err(error)),
            },
            start,
        )
    }

    fn scan_reverse<'a>(
        &'a self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Item> + 'a> {
        let start = start.to_vec();
        scan_back(
            move |upto| match self.live() {
                Ok(state) => previous_item(&state.current, family, &start, upto).map(Ok),
                Err(error) => Some(Err(error)),
            },
            end,
        )
    }
}

/// A copy of every family.
struct Snapshot(Families);

impl Reader for Snapshot {
    fn scan<'a>(
        &'a self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Item> + 'a> {
        let end = end.map(<[u8]>::to_vec);
        scan_from(
            move |from| next_item(&self.0, family, from, end.as_deref()).map(Ok),
            start,
        )
    }

    fn scan_reverse<'a>(
        &'a self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Item> + 'a> {
        let start = start.to_vec();
        scan_back(
            move |upto| previous_item(&self.0, family, &start, upto).map(Ok),
            end,
        )
    }
}

impl Engine for MemoryEngine {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let state = self.live()?;
        Ok(state
            .current
            .get(&family)
            .and_then(|keys| keys.get(key))
            .cloned())
    }

    fn write(&self, batch: Batch, synced: bool) -> Result<u64, StorageError> {
        let mut state = self.live()?;
        state.sequence += 1;
        let sequence = state.sequence;
        apply(&mut state.current, batch.clone());
        state.pending.push((sequence, batch));
        drop(state);
        if synced || self.sync_each_write() {
            self.disk.sync();
        }
        Ok(sequence)
    }

    fn latest_sequence(&self) -> u64 {
        self.disk.state().sequence
    }

    fn wait_durable(&self, sequence: u64) {
        // A group commit with no window: the waiter syncs.
        let group = matches!(self.disk.sync, SyncMode::Group { .. });
        let waiting = self.disk.state().pending.first().map(|(s, _)| *s) <= Some(sequence);
        if group && waiting && self.live().is_ok() {
            self.disk.sync();
        }
    }

    fn sync_each_write(&self) -> bool {
        self.disk.sync == SyncMode::Always
    }

    fn writes_wait_for_disk(&self) -> bool {
        false
    }

    fn run(&self, job: Job) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        job();
        Box::pin(std::future::ready(()))
    }

    fn snapshot(&self) -> Box<dyn Reader + '_> {
        let families = match self.live() {
            Ok(state) => state.current.clone(),
            Err(_) => Families::new(),
        };
        Box::new(Snapshot(families))
    }

    fn approximate_size(&self, family: Family, ranges: &[(Vec<u8>, Vec<u8>)]) -> u64 {
        let state = self.disk.state();
        let Some(keys) = state.current.get(&family) else {
            return 0;
        };
        ranges
            .iter()
            .flat_map(|(start, end)| keys.range(start.clone()..end.clone()))
            .map(|(key, value)| (key.len() + value.len()) as u64)
            .sum()
    }

    fn flush(&self, _family: Family) -> Result<(), StorageError> {
        self.live().map(drop)
    }

    fn sync(&self) -> Result<(), StorageError> {
        drop(self.live()?);
        self.disk.sync();
        Ok(())
    }

    fn path(&self) -> Option<&Path> {
        None
    }

    fn request_salvage(&self, _detail: &str) -> Result<(), StorageError> {
        // Memory is never damaged.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(engine: &MemoryEngine, key: &str, synced: bool) {
        let mut batch = Batch::default();
        batch.put(Family::Data, key, "v");
        engine.write(batch, synced).unwrap();
    }

    fn keys(engine: &MemoryEngine) -> Vec<Vec<u8>> {
        engine
            .scan(Family::Data, &[], None)
            .map(|item| item.unwrap().0)
            .collect()
    }

    #[test]
    fn a_crash_keeps_what_was_synced_and_a_prefix_of_the_rest() {
        let disk = MemoryDisk::new(SyncMode::Periodic { interval_ms: 10 });
        let engine = disk.engine();
        put(&engine, "a", false);
        put(&engine, "b", true);
        put(&engine, "c", false);
        put(&engine, "d", false);
        put(&engine, "e", false);
        assert_eq!(disk.pending_writes(), 3);
        assert_eq!(
            disk.crash(1),
            2,
            "two of the three unsynced writes are lost"
        );
        assert!(
            engine.get(Family::Data, b"a").is_err(),
            "the old life is dead"
        );
        let next = disk.engine();
        assert_eq!(keys(&next), [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn group_mode_makes_a_waited_write_durable() {
        let disk = MemoryDisk::new(SyncMode::Group { window_ms: 1 });
        let engine = disk.engine();
        let mut batch = Batch::default();
        batch.put(Family::Data, "a", "v");
        let sequence = engine.write(batch, false).unwrap();
        put(&engine, "b", false);
        engine.wait_durable(sequence);
        disk.crash(0);
        assert_eq!(
            keys(&disk.engine()).len(),
            2,
            "the sync covered every write before it"
        );
    }

    #[test]
    fn scans_respect_bounds_and_snapshots_do_not_move() {
        let disk = MemoryDisk::new(SyncMode::Always);
        let engine = disk.engine();
        for key in ["a", "b", "c", "d"] {
            put(&engine, key, false);
        }
        let snapshot = engine.snapshot();
        put(&engine, "bb", false);
        let scanned: Vec<Vec<u8>> = engine
            .scan(Family::Data, b"b", Some(b"d"))
            .map(|item| item.unwrap().0)
            .collect();
        assert_eq!(scanned, [b"b".to_vec(), b"bb".to_vec(), b"c".to_vec()]);
        assert_eq!(snapshot.scan(Family::Data, b"b", Some(b"d")).count(), 2);
        disk.wipe();
        assert!(keys(&disk.engine()).is_empty());
    }
}
