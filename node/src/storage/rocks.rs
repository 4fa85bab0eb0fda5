//! The production storage engine: RocksDB, one column family per
//! [`Family`], with the sync modes of `durability.rs` and the salvage of a
//! damaged directory (`salvage.rs`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions,
};

use super::durability::Syncer;
use super::engine::{Batch, Change, Engine, EngineFigures, Family, Item, Job, Reader};
use super::{Storage, StorageConfig, StorageError, salvage};
use crate::world::Random;

/// RocksDB as a storage [`Engine`].
pub struct RocksEngine {
    // Field order matters: the syncer stops before the database closes.
    syncer: Syncer,
    db: Arc<DB>,
    path: PathBuf,
}

impl RocksEngine {
    /// Opens (or creates) the database in `path`, as it is.
    pub fn open(path: &Path, config: &StorageConfig) -> Result<RocksEngine, StorageError> {
        let options = options();
        let families = Family::ALL
            .into_iter()
            .map(|family| ColumnFamilyDescriptor::new(family.name(), options.clone()));
        let db = Arc::new(DB::open_cf_descriptors(&options, path, families)?);
        Ok(RocksEngine {
            syncer: Syncer::start(db.clone(), config.sync),
            db,
            path: path.to_path_buf(),
        })
    }

    fn cf(&self, family: Family) -> &ColumnFamily {
        self.db
            .cf_handle(family.name())
            .expect("column families are created at open")
    }
}

/// The database options (the salvage opens with them too).
pub(super) fn options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    options
}

impl Storage {
    /// Opens (or creates) the storage in `path` on RocksDB, and starts a
    /// new life: a new random epoch, so that the dots of writes coordinated
    /// from now on are new, whatever the directory lost or rolled back to
    /// (see [`crate::causality`]).
    ///
    /// When the last life found damaged data, the open first salvages what
    /// is readable (see `salvage.rs`); [`Storage::damage_record`] then says
    /// what was dropped, to restore from the other replicas.
    pub fn open(path: &Path, config: &StorageConfig) -> Result<Storage, StorageError> {
        Storage::open_with(path, config, &Random::from_os())
    }

    /// [`Storage::open`], drawing the epoch from `random`.
    pub fn open_with(
        path: &Path,
        config: &StorageConfig,
        random: &Random,
    ) -> Result<Storage, StorageError> {
        config.validate()?;
        // Absolute: the salvage works beside the directory and syncs its parent.
        let path = &std::path::absolute(path).map_err(StorageError::Salvage)?;
        salvage::finish_interrupted(path)?;
        let open = || -> Result<Storage, StorageError> {
            Storage::new(Arc::new(RocksEngine::open(path, config)?), random)
        };
        match salvage::requested(path)? {
            Some(found) => {
                salvage::salvage(path, &options(), &found)?;
                open()
            }
            None => match open() {
                // Damage read while opening (hints, floors): salvage now.
                Err(error) if error.is_damage() => {
                    salvage::request(path, &error.to_string())?;
                    salvage::salvage(path, &options(), &error.to_string())?;
                    open()
                }
                opened => opened,
            },
        }
    }
}

fn scan<'a>(
    db: &'a DB,
    cf: &ColumnFamily,
    (start, end): (&[u8], Option<&[u8]>),
    direction: Direction,
    snapshot: Option<&'a rocksdb::Snapshot<'a>>,
) -> Box<dyn Iterator<Item = Item> + 'a> {
    let mut options = ReadOptions::default();
    if let Some(snapshot) = snapshot {
        options.set_snapshot(snapshot);
    }
    if let Some(end) = end {
        options.set_iterate_upper_bound(end.to_vec());
    }
    let mode = match direction {
        Direction::Forward => IteratorMode::From(start, Direction::Forward),
        // From the last key under the upper bound, down to `start`.
        Direction::Reverse => {
            options.set_iterate_lower_bound(start.to_vec());
            IteratorMode::End
        }
    };
    Box::new(db.iterator_cf_opt(cf, options, mode).map(|item| {
        let (key, value) = item?;
        Ok((key.into_vec(), value.into_vec()))
    }))
}

impl Reader for RocksEngine {
    fn scan<'a>(
        &'a self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Item> + 'a> {
        let bounds = (start, end);
        scan(&self.db, self.cf(family), bounds, Direction::Forward, None)
    }

    fn scan_reverse<'a>(
        &'a self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Item> + 'a> {
        let bounds = (start, end);
        scan(&self.db, self.cf(family), bounds, Direction::Reverse, None)
    }
}

/// A RocksDB snapshot, read through its engine.
struct Snapshot<'a> {
    engine: &'a RocksEngine,
    snapshot: rocksdb::Snapshot<'a>,
}

impl Reader for Snapshot<'_> {
    fn scan<'a>(
        &'a self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Item> + 'a> {
        let engine = self.engine;
        let (bounds, forward) = ((start, end), Direction::Forward);
        scan(
            &engine.db,
            engine.cf(family),
            bounds,
            forward,
            Some(&self.snapshot),
        )
    }

    fn scan_reverse<'a>(
        &'a self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Item> + 'a> {
        let engine = self.engine;
        let (bounds, reverse) = ((start, end), Direction::Reverse);
        scan(
            &engine.db,
            engine.cf(family),
            bounds,
            reverse,
            Some(&self.snapshot),
        )
    }
}

impl Engine for RocksEngine {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(family), key)?)
    }

    fn write(&self, batch: Batch, synced: bool) -> Result<u64, StorageError> {
        let mut rocks = WriteBatch::default();
        for change in batch.changes {
            match change {
                Change::Put(family, key, value) => rocks.put_cf(self.cf(family), key, value),
                Change::Delete(family, key) => rocks.delete_cf(self.cf(family), key),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(synced || self.syncer.sync_each_write());
        self.db.write_opt(rocks, &options)?;
        Ok(self.db.latest_sequence_number())
    }

    fn latest_sequence(&self) -> u64 {
        self.db.latest_sequence_number()
    }

    fn wait_durable(&self, sequence: u64) {
        self.syncer.wait(sequence);
    }

    fn sync_each_write(&self) -> bool {
        self.syncer.sync_each_write()
    }

    fn writes_wait_for_disk(&self) -> bool {
        self.syncer.writes_wait_for_disk()
    }

    fn run(&self, job: Job) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let task = tokio::task::spawn_blocking(job);
        Box::pin(async move {
            if let Err(error) = task.await
                && error.is_panic()
            {
                std::panic::resume_unwind(error.into_panic());
            }
        })
    }

    fn snapshot(&self) -> Box<dyn Reader + '_> {
        Box::new(Snapshot {
            engine: self,
            snapshot: self.db.snapshot(),
        })
    }

    fn approximate_size(&self, family: Family, ranges: &[(Vec<u8>, Vec<u8>)]) -> u64 {
        let ranges: Vec<rocksdb::Range> = ranges
            .iter()
            .map(|(start, end)| rocksdb::Range::new(start, end))
            .collect();
        self.db
            .get_approximate_sizes_cf(self.cf(family), &ranges)
            .iter()
            .sum()
    }

    fn figures(&self) -> EngineFigures {
        let sum = |property: &str| -> u64 {
            Family::ALL
                .into_iter()
                .filter_map(|family| {
                    self.db
                        .property_int_value_cf(self.cf(family), property)
                        .ok()
                        .flatten()
                })
                .sum()
        };
        let data = |property: &str| -> u64 {
            (self.db)
                .property_int_value_cf(self.cf(Family::Data), property)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        EngineFigures {
            data_bytes: data("rocksdb.live-sst-files-size")
                + data("rocksdb.cur-size-all-mem-tables"),
            live_data_bytes: sum("rocksdb.estimate-live-data-size"),
            sst_bytes: sum("rocksdb.total-sst-files-size"),
            memtable_bytes: sum("rocksdb.cur-size-all-mem-tables"),
            pending_compaction_bytes: sum("rocksdb.estimate-pending-compaction-bytes"),
            running_compactions: self
                .db
                .property_int_value("rocksdb.num-running-compactions")
                .ok()
                .flatten()
                .unwrap_or(0),
        }
    }

    fn flush(&self, family: Family) -> Result<(), StorageError> {
        Ok(self.db.flush_cf(self.cf(family))?)
    }

    fn sync(&self) -> Result<(), StorageError> {
        Ok(self.db.flush_wal(true)?)
    }

    fn checkpoint(&self, into: &Path) -> Result<(), StorageError> {
        if let Some(parent) = into.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::InvalidConfig {
                detail: format!("cannot create {}: {e}", parent.display()),
            })?;
        }
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db)?;
        Ok(checkpoint.create_checkpoint(into)?)
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn request_salvage(&self, detail: &str) -> Result<(), StorageError> {
        salvage::request(&self.path, detail)
    }
}

impl Drop for RocksEngine {
    fn drop(&mut self) {
        // Whatever the mode, a clean close leaves every write on disk.
        if let Err(error) = self.db.flush_wal(true) {
            tracing::error!(%error, "final WAL fsync failed");
        }
    }
}
