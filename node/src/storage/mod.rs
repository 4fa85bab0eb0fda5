//! Storage on RocksDB: rows as sibling sets, hints, and node metadata.
//!
//! Three column families:
//!
//! - `data`: row key ([`RowKey`], ordered by token) → a versioned
//!   MessagePack [`StoredRow`] (a [`DvvSet`] of [`RowVersion`]s).
//! - `hints`: target node ‖ sequence → a hinted mutation, for hinted handoff.
//! - `meta`: small named values: the storage format, the data directory's epoch.
//!
//! A row is changed by read-modify-write ([`Storage::update`]): read the sibling
//! set, compute the new one, write it. Concurrent writers to one row are
//! serialised by a striped lock chosen by the row's token (rows of a partition
//! share a stripe); writers to different stripes run in parallel, so there is no
//! global lock. RocksDB's optimistic transactions would serialise the same
//! way; measured here (`cargo bench -p ringdb-node --bench storage`, three
//! runs, 1024 hot rows, one and two threads) the two were within noise of each
//! other (striped/transaction throughput 0.85–1.10). Striping keeps the plain
//! `DB` type, and a conflict is a short wait rather than a retried transaction.

mod durability;
mod keys;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ringdb_antientropy::hints::HintStore;
use ringdb_antientropy::tree::{Trees, item_hash, leaf_range, version_digest};
use ringdb_proto::{TableId, TreeItem};

use ringdb_proto::Row;
use ringdb_ring::{NodeId, Token, TokenRange};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};

pub use durability::SyncMode;
pub use keys::RowKey;

use crate::causality::{ActorId, DvvSet, VersionVector};
use durability::Syncer;

const DATA: &str = "data";
const HINTS: &str = "hints";
const META: &str = "meta";

/// The on-disk format this version writes and reads.
const STORAGE_FORMAT: u8 = 1;
/// The format marker in front of every stored row.
const ROW_FORMAT: u8 = 1;
/// Stripes of the row lock; a power of two.
const LOCK_STRIPES: usize = 1024;

/// One version of a row: its columns, or a tombstone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowVersion {
    /// When the coordinator wrote it, in microseconds since the Unix epoch
    /// (for display, last-write-wins tables and tombstone expiry).
    pub timestamp_micros: i64,
    /// The columns; `None` is a tombstone (the row was deleted).
    pub row: Option<Row>,
}

/// A row's state at a replica: its sibling versions and causal history.
pub type StoredRow = DvvSet<RowVersion>;

/// Storage settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageConfig {
    /// When writes are acknowledged relative to fsync. Default: periodic, 10 s.
    pub sync: SyncMode,
}

impl StorageConfig {
    /// Checks the settings: sync periods must be at least one millisecond.
    pub fn validate(&self) -> Result<(), StorageError> {
        match self.sync {
            SyncMode::Group { window_ms: 0 } | SyncMode::Periodic { interval_ms: 0 } => {
                Err(StorageError::InvalidConfig {
                    detail: "sync window_ms and interval_ms must be at least 1".into(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Errors from storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage settings are not usable.
    #[error("invalid storage config: {detail}")]
    InvalidConfig {
        /// What is wrong.
        detail: String,
    },
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Something read from disk does not decode.
    #[error("corrupt {what} on disk: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why it does not decode.
        detail: String,
    },
    /// The data directory was written by a version that uses another format.
    #[error(
        "data directory has storage format {found}; this version reads format {STORAGE_FORMAT}"
    )]
    UnknownFormat {
        /// The format found.
        found: u8,
    },
}

/// The node's storage. Share it between threads with an `Arc`.
pub struct Storage {
    // Field order matters: the syncer stops before the database closes.
    syncer: Syncer,
    db: Arc<DB>,
    locks: Box<[Mutex<()>]>,
    epoch: u64,
    next_hint: AtomicU64,
    path: PathBuf,
    /// The Merkle trees of the ranges this node replicates. Writers hold
    /// the read lock from their RocksDB write to their tree update, so a
    /// rebuild's snapshot (taken under the write lock) sees every write
    /// whose update went to the trees it replaces, and none of the others.
    trees: RwLock<Arc<Trees>>,
}

impl Storage {
    /// Opens (or creates) the storage in `path`. A new data directory gets a
    /// new random epoch, so its actor ids are new (see [`ActorId`]).
    pub fn open(path: &Path, config: &StorageConfig) -> Result<Storage, StorageError> {
        config.validate()?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let families = [DATA, HINTS, META]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, options.clone()));
        let db = Arc::new(DB::open_cf_descriptors(&options, path, families)?);
        let syncer = Syncer::start(db.clone(), config.sync);
        let locks = (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect();
        let mut storage = Storage {
            syncer,
            db,
            locks,
            epoch: 0,
            next_hint: AtomicU64::new(0),
            path: path.to_path_buf(),
            trees: RwLock::new(Arc::new(Trees::new([]))),
        };
        storage.epoch = storage.open_metadata()?;
        storage.next_hint = AtomicU64::new(storage.last_hint_sequence()? + 1);
        Ok(storage)
    }

    /// Checks the format and reads (or creates) the epoch.
    fn open_metadata(&self) -> Result<u64, StorageError> {
        match self.get_meta("format")?.as_deref() {
            None => self.put_meta("format", &[STORAGE_FORMAT])?,
            Some([STORAGE_FORMAT]) => {}
            Some(other) => return Err(StorageError::UnknownFormat { found: other[0] }),
        }
        if let Some(bytes) = self.get_meta("epoch")? {
            let bytes: [u8; 8] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| StorageError::Corrupt {
                        what: "epoch",
                        detail: format!("{} bytes, expected 8", bytes.len()),
                    })?;
            return Ok(u64::from_be_bytes(bytes));
        }
        let epoch = rand::random::<u64>().max(1);
        self.put_meta("epoch", &epoch.to_be_bytes())?;
        Ok(epoch)
    }

    /// The epoch of this data directory: random, chosen when it was created.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The actor id under which `node` writes to this data directory.
    pub fn actor(&self, node: &NodeId) -> ActorId {
        ActorId {
            node: node.clone(),
            epoch: self.epoch,
        }
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    /// Writes a batch, and returns once it is as durable as the sync mode promises.
    fn commit(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let sequence = self.write_batch(batch)?;
        self.syncer.wait(sequence);
        Ok(())
    }

    /// Writes a batch to the WAL and memtable (synced in `always` mode);
    /// returns a sequence number to wait on for the other modes.
    fn write_batch(&self, batch: WriteBatch) -> Result<u64, StorageError> {
        let mut options = WriteOptions::default();
        options.set_sync(self.syncer.sync_each_write());
        self.db.write_opt(batch, &options)?;
        Ok(self.db.latest_sequence_number())
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether writes wait for an fsync (sync modes `always` and `group`):
    /// callers on an async runtime must then call from a blocking thread.
    pub fn writes_wait_for_disk(&self) -> bool {
        self.syncer.writes_wait_for_disk()
    }

    /// Reads a row's sibling set.
    pub fn get(&self, key: &RowKey) -> Result<Option<StoredRow>, StorageError> {
        match self.db.get_pinned_cf(self.cf(DATA), key.encode())? {
            Some(bytes) => Ok(Some(decode_row(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Atomically replaces a row's sibling set with `change(current)`, where a
    /// row never written is the empty set. Writers to the same row wait for
    /// each other; the write is skipped when nothing changed. Returns the new
    /// set once it is durable. The row lock is released before the wait for
    /// a group fsync, so writers of one stripe share fsyncs too.
    pub fn update(
        &self,
        key: &RowKey,
        change: impl FnOnce(&StoredRow) -> StoredRow,
    ) -> Result<StoredRow, StorageError> {
        let encoded = key.encode();
        let stripe = (key.token.offset() as usize) & (LOCK_STRIPES - 1);
        let (next, sequence) = {
            let _guard = self.locks[stripe].lock().expect("row lock");
            let trees = self.trees.read().expect("trees lock");
            // Only a row of a range this node keeps a tree for is hashed.
            let tree = trees.tree_of(key.token);
            let (current, old_digest) = match self.db.get_pinned_cf(self.cf(DATA), &encoded)? {
                Some(bytes) => (decode_row(&bytes)?, tree.map(|_| version_digest(&bytes))),
                None => (StoredRow::new(), None),
            };
            let next = change(&current);
            if next == current {
                // Nothing to write, but what we read may be another writer's
                // not yet durable write: wait for it like for our own.
                (next, self.db.latest_sequence_number())
            } else {
                let bytes = encode_row(&next);
                let new_item = tree
                    .filter(|_| !next.is_empty())
                    .map(|_| item_hash(&encoded, &version_digest(&bytes)));
                let mut batch = WriteBatch::default();
                if next.is_empty() {
                    batch.delete_cf(self.cf(DATA), &encoded);
                } else {
                    batch.put_cf(self.cf(DATA), &encoded, bytes);
                }
                let sequence = self.write_batch(batch)?;
                if let Some(tree) = tree {
                    if let Some(old) = old_digest {
                        tree.toggle(key.token, &item_hash(&encoded, &old));
                    }
                    if let Some(new) = new_item {
                        tree.toggle(key.token, &new);
                    }
                }
                (next, sequence)
            }
        };
        self.syncer.wait(sequence);
        Ok(next)
    }

    /// A write coordinated here: `version` supersedes what `context` has seen.
    pub fn write(
        &self,
        key: &RowKey,
        context: &VersionVector,
        actor: &ActorId,
        version: RowVersion,
    ) -> Result<StoredRow, StorageError> {
        self.update(key, |current| current.update(context, actor, version))
    }

    /// Merges a sibling set from another replica (replication, read repair,
    /// anti-entropy).
    pub fn merge(&self, key: &RowKey, incoming: &StoredRow) -> Result<StoredRow, StorageError> {
        self.update(key, |current| current.sync(incoming))
    }

    /// The rows whose tokens lie in `range`, in key order.
    pub fn scan(
        &self,
        range: TokenRange,
    ) -> impl Iterator<Item = Result<(RowKey, StoredRow), StorageError>> + '_ {
        self.scan_encoded(range, None).map(|item| {
            let (key, value) = item?;
            Ok((RowKey::decode(&key)?, decode_row(&value)?))
        })
    }

    /// The rows in `range` whose storage key comes after `after` (all of
    /// them without it), in key order, as stored: the storage key and the
    /// encoded sibling set ([`encode_row`]'s bytes, what a stream ships
    /// without decoding). One page of a stream at a time, resumable from
    /// the last key received.
    pub fn scan_encoded(
        &self,
        range: TokenRange,
        after: Option<Vec<u8>>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StorageError>> + '_ {
        self.scan_at(range, after, None)
    }

    /// [`Storage::scan_encoded`], as of `snapshot` when given.
    fn scan_at<'a>(
        &'a self,
        range: TokenRange,
        after: Option<Vec<u8>>,
        snapshot: Option<&'a rocksdb::Snapshot<'a>>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StorageError>> + 'a {
        // The intervals of a range come in token order, so keys do too.
        range
            .intervals()
            .into_iter()
            .flat_map(move |(first, last)| {
                let mut options = ReadOptions::default();
                if let Some(snapshot) = snapshot {
                    options.set_snapshot(snapshot);
                }
                if let Some(end) = exclusive_end(last) {
                    options.set_iterate_upper_bound(end);
                }
                let first = first.to_ordered_bytes().to_vec();
                let start = match &after {
                    Some(after) if *after > first => after.clone(),
                    _ => first,
                };
                let after = after.clone();
                self.db
                    .iterator_cf_opt(
                        self.cf(DATA),
                        options,
                        IteratorMode::From(&start, Direction::Forward),
                    )
                    .filter(move |item| {
                        !matches!((item, &after), (Ok((key, _)), Some(after)) if **key == **after)
                    })
                    .map(|item| {
                        let (key, value) = item?;
                        Ok((key.to_vec(), value.to_vec()))
                    })
            })
    }

    /// Deletes every row whose token lies in `range` (after streaming it away).
    pub fn delete_range(&self, range: TokenRange) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        for (first, last) in range.intervals() {
            let start = first.to_ordered_bytes().to_vec();
            match exclusive_end(last) {
                Some(end) => batch.delete_range_cf(self.cf(DATA), start, end),
                None => {
                    // No finite key bounds the keys of token MAX from above:
                    // delete up to them by range, then them one by one.
                    batch.delete_range_cf(
                        self.cf(DATA),
                        start,
                        Token::MAX.to_ordered_bytes().to_vec(),
                    );
                    let mode =
                        IteratorMode::From(&Token::MAX.to_ordered_bytes(), Direction::Forward);
                    for item in self.db.iterator_cf(self.cf(DATA), mode) {
                        batch.delete_cf(self.cf(DATA), item?.0);
                    }
                }
            }
        }
        self.commit(batch)
    }

    /// The approximate bytes on disk of the rows in `range`. Counts data
    /// flushed to SST files only, not the memtable.
    pub fn approximate_size(&self, range: TokenRange) -> u64 {
        let bounds: Vec<([u8; 8], Vec<u8>)> = range
            .intervals()
            .into_iter()
            .map(|(first, last)| {
                (
                    first.to_ordered_bytes(),
                    exclusive_end(last).unwrap_or_else(|| vec![0xff; 9]),
                )
            })
            .collect();
        let ranges: Vec<rocksdb::Range> = bounds
            .iter()
            .map(|(start, end)| rocksdb::Range::new(start, end))
            .collect();
        self.db
            .get_approximate_sizes_cf(self.cf(DATA), &ranges)
            .iter()
            .sum()
    }

    /// Flushes the data memtable to an SST file (for size estimates and tests;
    /// durability never needs it, the WAL has every write).
    pub fn flush(&self) -> Result<(), StorageError> {
        Ok(self.db.flush_cf(self.cf(DATA))?)
    }

    /// Replaces the Merkle trees with trees over `ranges`, built from the
    /// stored rows (a scan of each range). Writes made meanwhile update
    /// the new trees already; the trees are ready once the scan is done.
    pub fn rebuild_trees(&self, ranges: Vec<TokenRange>) -> Result<Arc<Trees>, StorageError> {
        let fresh = Arc::new(Trees::new(ranges.iter().copied()));
        let snapshot = {
            let mut trees = self.trees.write().expect("trees lock");
            *trees = fresh.clone();
            self.db.snapshot()
        };
        for range in ranges {
            for item in self.scan_at(range, None, Some(&snapshot)) {
                let (key, value) = item?;
                let token = RowKey::decode(&key)?.token;
                fresh.toggle(token, &item_hash(&key, &version_digest(&value)));
            }
        }
        fresh.set_ready();
        Ok(fresh)
    }

    /// The current Merkle trees.
    pub fn trees(&self) -> Arc<Trees> {
        self.trees.read().expect("trees lock").clone()
    }

    /// The items (storage key, version digest) of `leaves` of `range`'s
    /// tree, sorted by key; only `table`'s when given.
    pub fn leaf_items(
        &self,
        range: TokenRange,
        leaves: &[u32],
        table: Option<TableId>,
    ) -> Result<Vec<TreeItem>, StorageError> {
        let mut items = Vec::new();
        for &leaf in leaves {
            let Some(tokens) = leaf_range(range, leaf as usize) else {
                continue;
            };
            for item in self.scan_encoded(tokens, None) {
                let (key, value) = item?;
                if table.is_some_and(|t| key.get(8..16) != Some(&t.0.to_be_bytes()[..])) {
                    continue;
                }
                items.push(TreeItem {
                    key,
                    digest: version_digest(&value).to_vec(),
                });
            }
        }
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(items)
    }

    /// The stored bytes of a row, by storage key.
    pub fn get_encoded(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(DATA), key)?)
    }

    /// Stores a hint for `target`; returns its sequence number.
    pub fn put_hint(&self, target: &NodeId, mutation: &[u8]) -> Result<u64, StorageError> {
        let sequence = self.next_hint.fetch_add(1, Ordering::Relaxed);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(HINTS), hint_key(target, Some(sequence)), mutation);
        self.commit(batch)?;
        Ok(sequence)
    }

    /// The hints stored for `target`, oldest first.
    pub fn hints(&self, target: &NodeId) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        self.hints_after(target, None, usize::MAX)
    }

    /// Deletes a delivered hint.
    pub fn delete_hint(&self, target: &NodeId, sequence: u64) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(HINTS), hint_key(target, Some(sequence)));
        self.commit(batch)
    }

    /// Up to `limit` hints for `target` after sequence `after`, oldest first.
    pub fn hints_after(
        &self,
        target: &NodeId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let prefix = hint_key(target, None);
        let start = match after {
            Some(after) => hint_key(target, Some(after.saturating_add(1))),
            None => prefix.clone(),
        };
        let mut hints = Vec::new();
        let mode = IteratorMode::From(&start, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(HINTS), mode) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) || hints.len() >= limit {
                break;
            }
            hints.push((hint_sequence(&key)?, value.to_vec()));
        }
        Ok(hints)
    }

    /// Every target with hints and the bytes of its hints.
    pub fn hint_targets(&self) -> Result<Vec<(NodeId, u64)>, StorageError> {
        let mut targets: Vec<(NodeId, u64)> = Vec::new();
        for item in self.db.iterator_cf(self.cf(HINTS), IteratorMode::Start) {
            let (key, value) = item?;
            let target = hint_target(&key)?;
            match targets.last_mut() {
                Some((last, bytes)) if *last == target => *bytes += value.len() as u64,
                _ => targets.push((target, value.len() as u64)),
            }
        }
        Ok(targets)
    }

    fn last_hint_sequence(&self) -> Result<u64, StorageError> {
        let mut last = 0;
        for item in self.db.iterator_cf(self.cf(HINTS), IteratorMode::Start) {
            last = last.max(hint_sequence(&item?.0)?);
        }
        Ok(last)
    }

    /// Reads a named metadata value.
    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(META), name)?)
    }

    /// Writes a named metadata value, synced to disk whatever the sync mode.
    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(META), name, value);
        Ok(self.db.write_opt(batch, &options)?)
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        // Whatever the mode, a clean close leaves every write on disk.
        if let Err(error) = self.db.flush_wal(true) {
            tracing::error!(%error, "final WAL fsync failed");
        }
    }
}

/// Hints in RocksDB, for the hint queue.
impl HintStore for Storage {
    type Error = StorageError;

    fn append(&self, target: &str, hint: &[u8]) -> Result<u64, StorageError> {
        self.put_hint(&NodeId::new(target), hint)
    }

    fn read(
        &self,
        target: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        self.hints_after(&NodeId::new(target), after, limit)
    }

    fn remove(&self, target: &str, sequence: u64) -> Result<(), StorageError> {
        self.delete_hint(&NodeId::new(target), sequence)
    }

    fn targets(&self) -> Result<Vec<(String, u64)>, StorageError> {
        Ok(self
            .hint_targets()?
            .into_iter()
            .map(|(target, bytes)| (target.as_str().to_owned(), bytes))
            .collect())
    }
}

/// The first key after every key of token `last`, if there is one.
fn exclusive_end(last: Token) -> Option<Vec<u8>> {
    (last != Token::MAX).then(|| Token(last.0 + 1).to_ordered_bytes().to_vec())
}

fn hint_key(target: &NodeId, sequence: Option<u64>) -> Vec<u8> {
    let name = target.as_str().as_bytes();
    let mut key = Vec::with_capacity(2 + name.len() + 8);
    key.extend_from_slice(&(name.len() as u16).to_be_bytes());
    key.extend_from_slice(name);
    if let Some(sequence) = sequence {
        key.extend_from_slice(&sequence.to_be_bytes());
    }
    key
}

fn hint_target(key: &[u8]) -> Result<NodeId, StorageError> {
    let corrupt = || StorageError::Corrupt {
        what: "hint key",
        detail: format!("{} bytes", key.len()),
    };
    let length = u16::from_be_bytes(key.get(..2).ok_or_else(corrupt)?.try_into().expect("two"));
    let name = key.get(2..2 + length as usize).ok_or_else(corrupt)?;
    Ok(NodeId::new(String::from_utf8_lossy(name)))
}

fn hint_sequence(key: &[u8]) -> Result<u64, StorageError> {
    let tail: Option<[u8; 8]> = key
        .len()
        .checked_sub(8)
        .and_then(|at| key[at..].try_into().ok());
    tail.map(u64::from_be_bytes)
        .ok_or_else(|| StorageError::Corrupt {
            what: "hint key",
            detail: format!("{} bytes", key.len()),
        })
}

/// Encodes a sibling set: a format byte and named MessagePack. The same
/// bytes are stored and sent to other replicas.
pub fn encode_row(row: &StoredRow) -> Vec<u8> {
    let mut bytes = vec![ROW_FORMAT];
    rmp_serde::encode::write_named(&mut bytes, row).expect("a stored row always encodes");
    bytes
}

/// Decodes and checks a sibling set made by [`encode_row`] (read from disk or
/// received from a peer); the error says what is wrong with it.
pub fn decode_versions(bytes: &[u8]) -> Result<StoredRow, String> {
    match bytes.split_first() {
        Some((&ROW_FORMAT, rest)) => {
            let row: StoredRow = rmp_serde::from_slice(rest).map_err(|e| e.to_string())?;
            row.check().map_err(|e| e.to_string())?;
            Ok(row)
        }
        Some((format, _)) => Err(format!("unknown row format {format}")),
        None => Err("empty value".into()),
    }
}

fn decode_row(bytes: &[u8]) -> Result<StoredRow, StorageError> {
    decode_versions(bytes).map_err(|detail| StorageError::Corrupt {
        what: "row",
        detail,
    })
}
