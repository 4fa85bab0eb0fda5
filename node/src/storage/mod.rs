//! Storage: rows as sibling sets, hints, and node metadata, over a
//! storage [`Engine`] of ordered bytes (RocksDB in production, memory in
//! the simulator; see `engine.rs`).
//!
//! Four families (RocksDB's column families):
//!
//! - `data`: row key ([`RowKey`], ordered by token) → a versioned
//!   MessagePack [`StoredRow`] (a [`DvvSet`] of [`RowVersion`]s).
//! - `hints`: target node ‖ sequence → a hinted mutation, for hinted handoff.
//! - `meta`: small named values: the storage format, the node's tokens, the
//!   epoch of the current life.
//! - `dots`: row key → the highest counter this life issued for a row it has
//!   since deleted (a purged tombstone, a range cleaned up), so that the
//!   next write of the row never issues one of those dots again. Emptied at
//!   every open: a new life has a new epoch (see [`crate::causality`]).
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
//!
//! Writes coordinated here go through [`Storage::write`], which issues the
//! new version's dot under the row lock (storage is the one place that knows
//! every dot this life issued) and refuses a row over its [`RowLimits`].

mod durability;
mod engine;
mod hint_store;
mod keys;
mod memory;
mod partition;
mod retired;
mod rocks;
mod rows;
mod salvage;
mod snapshots;
mod table_figures;
mod trees;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use ringdb_proto::Row;
use ringdb_ring::{NodeId, Token};
use serde::{Deserialize, Serialize};

pub use durability::SyncMode;
pub use engine::{Batch, Change, Engine, EngineFigures, Family, Item, Job, Reader};
pub use keys::RowKey;
pub use memory::{MemoryDisk, MemoryEngine};
pub use partition::{MAX_PARTITION_WRITE_BYTES, RowWriteHere};
pub use retired::RETIRED_FILE;
pub use rocks::RocksEngine;
pub(crate) use rows::next_prefix;
pub use rows::{RowLimits, SliceRows, Written};
pub use salvage::DamageRecord;
pub use snapshots::snapshots_folder;
pub use table_figures::TableFigures;
pub use trees::GroupTrees;

use crate::causality::format1::DvvSetV1;
use crate::causality::{ActorId, DvvSet, InvalidDvvSet};
use crate::world::Random;

const DATA: &str = Family::Data.name();
const HINTS: &str = Family::Hints.name();
const META: &str = Family::Meta.name();
const DOTS: &str = Family::Dots.name();
const PURGED: &str = Family::Purged.name();

/// The on-disk format this version writes and reads.
const STORAGE_FORMAT: u8 = 1;
/// The format marker this version writes in front of every stored row:
/// values carry their dots (the second format of [`DvvSet`]).
const ROW_FORMAT: u8 = 2;
/// The first row format, still read: values' dots implied by position.
const ROW_FORMAT_1: u8 = 1;
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

/// Whether a row is nothing but tombstones written before `before`.
pub(crate) fn purgeable(row: &StoredRow, before: i64) -> bool {
    !row.is_empty()
        && row
            .values()
            .all(|version| version.row.is_none() && version.timestamp_micros < before)
}

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
    Rocks(rocksdb::Error),
    /// RocksDB found data on disk damaged (a block whose checksum does not
    /// match, a file cut short): nothing damaged is served. The node
    /// salvages what is readable at its next start and restores the rest
    /// from the other replicas (see `salvage.rs`).
    #[error("damaged data on disk: {detail}")]
    Damaged {
        /// RocksDB's description, naming the file when it can.
        detail: String,
    },
    /// Something read from disk does not decode.
    #[error("corrupt {what} on disk: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why it does not decode.
        detail: String,
    },
    /// A write would make a row hold more siblings than the limit.
    #[error(
        "the row would hold {siblings} siblings; the limit is {max}: read it and write with \
         the read's context to resolve them"
    )]
    TooManySiblings {
        /// Siblings the row would hold.
        siblings: usize,
        /// The limit.
        max: usize,
    },
    /// A write would make a row (with its siblings and history) larger than the limit.
    #[error(
        "the row would be {bytes} bytes with its siblings; the limit is {max} bytes: read it \
         and write with the read's context to resolve them, or write smaller values"
    )]
    RowTooLarge {
        /// Encoded bytes the row would take.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A write of several rows names one of them twice.
    #[error("a write of several rows names one of them twice")]
    RowTwice,
    /// The rows of one write would take more bytes together than the limit.
    #[error(
        "the rows written together would take {bytes} bytes; the limit is {max} bytes: write \
         them in smaller batches"
    )]
    WriteTooLarge {
        /// Encoded bytes the rows would take.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The row is in a token span a salvage dropped, not yet restored
    /// from the other replicas: this node cannot say what it holds.
    #[error(
        "token {token:?} is in a span dropped by a salvage, being restored from the other replicas"
    )]
    Restoring {
        /// The row's token.
        token: Token,
    },
    /// Salvaging a damaged data directory failed on the file system.
    #[error("salvaging the data directory: {0}")]
    Salvage(std::io::Error),
    /// The storage's node crashed (in the simulator): its engine is dead,
    /// and the disk belongs to the node's next life.
    #[error("the storage engine of a crashed node")]
    Crashed,
    /// An actor's event counter is exhausted (never in practice).
    #[error(transparent)]
    Exhausted(#[from] crate::causality::CounterExhausted),
    /// The data directory was written by a version that uses another format.
    #[error(
        "data directory has storage format {found}; this version reads format {STORAGE_FORMAT}"
    )]
    UnknownFormat {
        /// The format found.
        found: u8,
    },
}

impl From<rocksdb::Error> for StorageError {
    fn from(error: rocksdb::Error) -> StorageError {
        match error.kind() {
            rocksdb::ErrorKind::Corruption => StorageError::Damaged {
                detail: error.into_string(),
            },
            _ => StorageError::Rocks(error),
        }
    }
}

impl StorageError {
    /// Whether the error is damaged data on disk (RocksDB's corruption: a
    /// checksum that does not match). A row that does not decode passed
    /// its checksum: a software fault, not the disk's.
    pub fn is_damage(&self) -> bool {
        matches!(self, StorageError::Damaged { .. })
    }
}

/// The node's storage. Share it between threads with an `Arc`.
pub struct Storage {
    engine: Arc<dyn Engine>,
    locks: Box<[Mutex<()>]>,
    /// The epoch of this life: the actor id of writes coordinated here.
    epoch: u64,
    /// Whether this life deleted a row whose history held its dots (and
    /// so `dots` may hold a floor for some row).
    forgotten: AtomicBool,
    next_hint: AtomicU64,
    /// The Merkle trees of the ranges this node replicates, per placement
    /// group (`trees.rs`). Writers hold
    /// the read lock from their engine write to their tree update, so a
    /// rebuild's snapshot (taken under the write lock) sees every write
    /// whose update went to the trees it replaces, and none of the others.
    trees: RwLock<Arc<GroupTrees>>,
    /// Damage found in this life (see [`Storage::note_damage`]).
    damage_found: Mutex<Option<String>>,
    /// Told when damage is first found.
    damage_alarm: tokio::sync::watch::Sender<bool>,
    /// Token spans a salvage dropped and the restore has not brought back.
    restoring: RwLock<Vec<(Token, Token)>>,
}

impl Storage {
    /// The engine's figures (sizes, compactions).
    pub fn figures(&self) -> EngineFigures {
        self.engine.figures()
    }

    /// The node's load, as `status` shows it: the rows' live SST files
    /// (compressed) and their memtables (writes not flushed yet, not
    /// compressed, with the memtable's own arena: a few hundred KB on an
    /// idle node), so it grows with every write and may shrink at a
    /// flush. An engine without figures gives its estimate of the rows'
    /// bytes.
    pub fn load(&self) -> u64 {
        self.load_given(&self.engine.figures())
    }

    /// [`Storage::load`] from figures just read.
    pub fn load_given(&self, figures: &EngineFigures) -> u64 {
        match figures.data_bytes {
            0 => self.approximate_size(ringdb_ring::TokenRange::full()),
            bytes => bytes,
        }
    }

    /// Opens the storage kept by `engine` and starts a new life: a new
    /// epoch drawn from `random` (see [`Storage::open`]), and what a
    /// salvage left to restore.
    pub fn new(engine: Arc<dyn Engine>, random: &Random) -> Result<Storage, StorageError> {
        let locks = (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect();
        let mut storage = Storage {
            engine,
            locks,
            epoch: 0,
            forgotten: AtomicBool::new(false),
            next_hint: AtomicU64::new(0),
            trees: RwLock::new(Arc::new(GroupTrees::default())),
            damage_found: Mutex::new(None),
            damage_alarm: tokio::sync::watch::Sender::new(false),
            restoring: RwLock::new(Vec::new()),
        };
        storage.epoch = storage.open_metadata(random)?;
        storage.next_hint = AtomicU64::new(storage.last_hint_sequence()? + 1);
        match storage.damage_record() {
            // A record restored in an earlier life has been seen.
            Ok(Some(record)) if record.restored => storage.delete_meta(salvage::DAMAGE_KEY)?,
            Ok(Some(record)) => *storage.restoring.write().expect("restoring") = record.spans,
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "the damage record does not decode; forgetting it");
                storage.delete_meta(salvage::DAMAGE_KEY)?;
            }
        }
        Ok(storage)
    }

    /// Checks the format, draws this life's epoch and forgets the floors
    /// of the previous life.
    fn open_metadata(&self, random: &Random) -> Result<u64, StorageError> {
        match self.get_meta("format")?.as_deref() {
            None => self.put_meta("format", &[STORAGE_FORMAT])?,
            Some([STORAGE_FORMAT]) => {}
            Some(other) => return Err(StorageError::UnknownFormat { found: other[0] }),
        }
        let previous = self.get_meta("epoch")?;
        let epoch = loop {
            let epoch = random.next_u64().max(1);
            if previous.as_deref() != Some(&epoch.to_be_bytes()[..]) {
                break epoch;
            }
        };
        let mut stale = Batch::default();
        for item in self.engine.scan(Family::Dots, &[], None) {
            stale.delete(Family::Dots, item?.0);
        }
        self.engine.write(stale, false)?;
        // For operators and tools; nothing reads it back.
        self.put_meta("epoch", &epoch.to_be_bytes())?;
        Ok(epoch)
    }

    /// The epoch of this life of the storage: random, drawn at each open.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The actor id under which `node` writes in this life.
    pub fn actor(&self, node: &NodeId) -> ActorId {
        ActorId {
            node: node.clone(),
            epoch: self.epoch,
        }
    }

    /// Writes a batch, and returns once it is as durable as the sync mode promises.
    fn commit(&self, batch: Batch) -> Result<(), StorageError> {
        let sequence = self.engine.write(batch, false)?;
        self.engine.wait_durable(sequence);
        Ok(())
    }

    /// The data directory, for storage on disk.
    pub fn path(&self) -> Option<&Path> {
        self.engine.path()
    }

    /// Runs `work` on this storage where blocking is allowed (the engine's
    /// choice: tokio's blocking pool for RocksDB, in place in memory): for
    /// scans and anything else that may take a while. A panic in `work` is
    /// resumed here.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Storage) -> T + Send + 'static,
    ) -> T {
        let storage = self.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The receiver is gone only if the caller was cancelled.
            let _ = done.send(work(&storage));
        });
        self.engine.run(job).await;
        result.await.expect("storage work finishes or panics")
    }

    /// Runs a short call (one row): in place, unless writes wait for an
    /// fsync (sync modes `always` and `group`), then as
    /// [`Storage::blocking`].
    pub async fn call<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Storage) -> T + Send + 'static,
    ) -> T {
        if self.engine.writes_wait_for_disk() {
            self.blocking(work).await
        } else {
            work(self)
        }
    }

    /// Makes every write so far durable (a clean close).
    pub fn sync(&self) -> Result<(), StorageError> {
        self.engine.sync()
    }

    /// Reads a named metadata value.
    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.engine.get(Family::Meta, name.as_bytes())
    }

    /// Writes a named metadata value, synced to disk whatever the sync mode.
    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        let mut batch = Batch::default();
        batch.put(Family::Meta, name, value);
        self.engine.write(batch, true).map(drop)
    }
}

/// Damaged data: what was found, and its salvage.
impl Storage {
    /// Records damage that `error` shows (if it does): logged once, a
    /// salvage requested for the next open, and [`Storage::damage_alarm`]
    /// told. Returns whether the error was damage.
    pub fn note_damage(&self, error: &StorageError) -> bool {
        if !error.is_damage() {
            return false;
        }
        let mut found = self.damage_found.lock().expect("damage");
        if found.is_none() {
            let detail = error.to_string();
            tracing::error!(%detail, data = ?self.path(), "damaged data found on disk; \
                the node serves nothing damaged, and salvages its data directory and restores \
                the rest from the other replicas");
            // Beside the database, which may refuse writes by now.
            if let Err(error) = self.engine.request_salvage(&detail) {
                tracing::error!(%error, "cannot record that a salvage is needed");
            }
            *found = Some(detail);
            self.damage_alarm.send_replace(true);
        }
        true
    }

    /// The damage found in this life, if any.
    pub fn damage_found(&self) -> Option<String> {
        self.damage_found.lock().expect("damage").clone()
    }

    /// Turns true when damage is first found in this life.
    pub fn damage_alarm(&self) -> tokio::sync::watch::Receiver<bool> {
        self.damage_alarm.subscribe()
    }

    /// Whether the next open salvages the data directory.
    pub fn salvage_requested(&self) -> bool {
        self.damage_found().is_some()
    }

    /// What the last salvage dropped, until the life after the one that
    /// restored it.
    pub fn damage_record(&self) -> Result<Option<DamageRecord>, StorageError> {
        let Some(bytes) = self.get_meta(salvage::DAMAGE_KEY)? else {
            return Ok(None);
        };
        rmp_serde::from_slice(&bytes)
            .map(Some)
            .map_err(|error| StorageError::Corrupt {
                what: "damage record",
                detail: error.to_string(),
            })
    }

    /// Refuses a row in a span a salvage dropped and the restore has not
    /// brought back yet.
    pub(crate) fn check_restored(&self, token: Token) -> Result<(), StorageError> {
        let restoring = self.restoring.read().expect("restoring");
        if restoring
            .iter()
            .any(|(first, last)| *first <= token && token <= *last)
        {
            return Err(StorageError::Restoring { token });
        }
        Ok(())
    }

    /// Records that the rows the last salvage dropped have been restored.
    pub fn mark_restored(&self) -> Result<(), StorageError> {
        self.restoring.write().expect("restoring").clear();
        if let Some(mut record) = self.damage_record()? {
            record.restored = true;
            let bytes = rmp_serde::to_vec_named(&record).expect("a damage record encodes");
            self.put_meta(salvage::DAMAGE_KEY, &bytes)?;
        }
        Ok(())
    }

    /// Deletes a named metadata value, synced to disk.
    pub fn delete_meta(&self, name: &str) -> Result<(), StorageError> {
        let mut batch = Batch::default();
        batch.delete(Family::Meta, name);
        self.engine.write(batch, true).map(drop)
    }
}

/// The first key after every key of token `last`, if there is one.
fn exclusive_end(last: Token) -> Option<Vec<u8>> {
    (last != Token::MAX).then(|| Token(last.0 + 1).to_ordered_bytes().to_vec())
}

/// Encodes a sibling set: a format byte and named MessagePack. The same
/// bytes are stored and sent to other replicas.
pub fn encode_row(row: &StoredRow) -> Vec<u8> {
    let mut bytes = vec![ROW_FORMAT];
    rmp_serde::encode::write_named(&mut bytes, row).expect("a stored row always encodes");
    bytes
}

/// Why bytes are not a sibling set.
#[derive(Debug, thiserror::Error)]
pub enum RowFormatError {
    /// No bytes at all.
    #[error("empty value")]
    Empty,
    /// A format byte this version does not know.
    #[error("unknown row format {0}")]
    UnknownFormat(u8),
    /// The MessagePack does not decode as a sibling set.
    #[error(transparent)]
    Decode(#[from] rmp_serde::decode::Error),
    /// It decodes, but breaks the set's invariants.
    #[error(transparent)]
    Invalid(#[from] InvalidDvvSet),
}

/// Decodes and checks a sibling set made by [`encode_row`] (read from disk or
/// received from a peer), in this format or the first; the error says what
/// is wrong with it.
pub fn decode_versions(bytes: &[u8]) -> Result<StoredRow, RowFormatError> {
    let row = match bytes.split_first() {
        Some((&ROW_FORMAT, rest)) => rmp_serde::from_slice::<StoredRow>(rest)?,
        Some((&ROW_FORMAT_1, rest)) => {
            rmp_serde::from_slice::<DvvSetV1<RowVersion>>(rest)?.upgrade()?
        }
        Some((format, _)) => return Err(RowFormatError::UnknownFormat(*format)),
        None => return Err(RowFormatError::Empty),
    };
    row.check()?;
    Ok(row)
}

fn decode_row(bytes: &[u8]) -> Result<StoredRow, StorageError> {
    decode_versions(bytes).map_err(|e| StorageError::Corrupt {
        what: "row",
        detail: e.to_string(),
    })
}
