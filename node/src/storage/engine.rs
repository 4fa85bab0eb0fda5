//! The storage engine seam: ordered bytes in four families, batches,
//! forward scans, snapshots and a durability barrier.
//!
//! [`Storage`](super::Storage) keeps every rule about rows (sibling sets,
//! dots, floors, Merkle trees, hints) above this trait; an engine only
//! stores bytes. Two implement it: RocksDB ([`RocksEngine`](super::RocksEngine),
//! production) and memory ([`MemoryEngine`](super::MemoryEngine), the
//! simulator's disk, which loses what was not made durable when its node
//! crashes).

use std::future::Future;
use std::pin::Pin;

use super::StorageError;

/// A family of keys (RocksDB's column family): see [`super`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// Rows: row key → encoded sibling set.
    Data,
    /// Hints: target ‖ sequence → hinted mutation.
    Hints,
    /// Small named values.
    Meta,
    /// Floors of the dots this life issued for rows it deleted.
    Dots,
    /// Row key → the history of the tombstones purged from it.
    Purged,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 5] = [
        Family::Data,
        Family::Hints,
        Family::Meta,
        Family::Dots,
        Family::Purged,
    ];

    /// The family's name (RocksDB's column family name).
    pub const fn name(self) -> &'static str {
        match self {
            Family::Data => "data",
            Family::Hints => "hints",
            Family::Meta => "meta",
            Family::Dots => "dots",
            Family::Purged => "purged",
        }
    }
}

/// One change of a [`Batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Sets a key's value.
    Put(Family, Vec<u8>, Vec<u8>),
    /// Removes a key.
    Delete(Family, Vec<u8>),
}

/// Changes written together: all or none survive a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The changes, in order.
    pub changes: Vec<Change>,
}

impl Batch {
    /// Sets `key` to `value` in `family`.
    pub fn put(&mut self, family: Family, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.changes
            .push(Change::Put(family, key.into(), value.into()));
    }

    /// Removes `key` from `family`.
    pub fn delete(&mut self, family: Family, key: impl Into<Vec<u8>>) {
        self.changes.push(Change::Delete(family, key.into()));
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// A key and its value, as a scan yields them.
pub type Item = Result<(Vec<u8>, Vec<u8>), StorageError>;

/// Ordered reads: the engine itself, or a snapshot of it.
pub trait Reader {
    /// The items of `family` from `start` (inclusive) up to `end`
    /// (exclusive; the family's end without it), in key order.
    fn scan<'a>(
        &'a self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Item> + 'a>;

    /// The items of `family` from `start` (inclusive) up to `end`
    /// (exclusive; the family's end without it), in reverse key order.
    fn scan_reverse<'a>(
        &'a self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Item> + 'a>;
}

/// Work handed to [`Engine::run`].
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// A storage engine.
pub trait Engine: Reader + Send + Sync + 'static {
    /// The value of `key` in `family`.
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Writes `batch` atomically (durable before returning when `synced`);
    /// returns its sequence number, for [`Engine::wait_durable`].
    fn write(&self, batch: Batch, synced: bool) -> Result<u64, StorageError>;

    /// The sequence number of the last write.
    fn latest_sequence(&self) -> u64;

    /// Returns once every write up to `sequence` is as durable as the
    /// engine's sync mode promises an acknowledged write is.
    fn wait_durable(&self, sequence: u64);

    /// Whether each write is fsynced by the engine itself (sync mode
    /// `always`): writes pass `synced`.
    fn sync_each_write(&self) -> bool;

    /// Whether a write waits for an fsync before it is acknowledged (sync
    /// modes `always` and `group`): callers on an async runtime then write
    /// through [`Engine::run`].
    fn writes_wait_for_disk(&self) -> bool;

    /// Runs `job` where blocking is allowed: tokio's blocking pool for
    /// RocksDB, in place for memory.
    fn run(&self, job: Job) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

    /// A consistent view of every family as of now.
    fn snapshot(&self) -> Box<dyn Reader + '_>;

    /// The approximate bytes on disk of `family`'s keys in each
    /// `[start, end)`.
    fn approximate_size(&self, family: Family, ranges: &[(Vec<u8>, Vec<u8>)]) -> u64;

    /// The engine's own figures (sizes, compactions), for metrics and
    /// `status`'s load; zero where the engine keeps none.
    fn figures(&self) -> EngineFigures {
        EngineFigures::default()
    }

    /// Flushes `family`'s memory to its files (for size estimates and tests).
    fn flush(&self, family: Family) -> Result<(), StorageError>;

    /// Makes every write so far durable (the last call on a clean close).
    fn sync(&self) -> Result<(), StorageError>;

    /// A consistent copy of the data in the folder `into` (a snapshot),
    /// for an engine on disk.
    fn checkpoint(&self, into: &std::path::Path) -> Result<(), StorageError> {
        let _ = into;
        Err(StorageError::InvalidConfig {
            detail: "this storage engine keeps no files to snapshot".into(),
        })
    }

    /// The data directory, for an engine on disk.
    fn path(&self) -> Option<&std::path::Path>;

    /// Records, beside the data, that the next open must salvage the data
    /// directory (damage was found: see `salvage.rs`).
    fn request_salvage(&self, detail: &str) -> Result<(), StorageError>;
}

/// What a storage engine says about itself, summed over its families.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineFigures {
    /// Estimated bytes of live data (what a full compaction would keep).
    pub live_data_bytes: u64,
    /// Bytes of the SST files.
    pub sst_bytes: u64,
    /// Bytes of the memtables (writes not yet flushed to files).
    pub memtable_bytes: u64,
    /// Estimated bytes compaction has yet to rewrite.
    pub pending_compaction_bytes: u64,
    /// Compactions running now.
    pub running_compactions: u64,
    /// The rows' bytes: their live SST files (compressed) and their
    /// memtables (not), which is what `status` calls load.
    pub data_bytes: u64,
}
