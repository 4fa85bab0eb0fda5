//! The read-modify-write behind every change of rows, for one row or for
//! several rows of a partition at once: a `BATCH` is made under the
//! partition's lock and stored in one atomic RocksDB write, so that no
//! reader of this replica sees some of its rows and not the others.

use std::sync::atomic::Ordering;

use ringdb_antientropy::tree::{Hash, version_digest};
use ringdb_ring::NodeId;

use super::rows::{Change, RowLimits, Written, retree, stage_row, stamp_write};
use super::{
    Batch, Family, LOCK_STRIPES, RowKey, RowVersion, Storage, StorageError, StoredRow, decode_row,
};
use crate::causality::{Floor, VersionVector};

/// A write of one row coordinated here, as [`Storage::write_rows`] takes
/// it: the context it supersedes (`None`: what this replica holds), the
/// version, whether its columns patch the row's, and its timestamp if the
/// client gave one (see [`Storage::write_stamped`]).
pub struct RowWriteHere {
    pub key: RowKey,
    pub context: Option<VersionVector>,
    pub version: RowVersion,
    pub patch: bool,
    pub explicit: Option<i64>,
}

/// The most bytes the rows of one write made here may take together: they
/// travel to each replica in one message (and are kept as one hint), which
/// must stay well within a frame.
pub const MAX_PARTITION_WRITE_BYTES: usize = ringdb_proto::MAX_FRAME_BYTES / 2;

/// What a change of one row made: the row after it, its encoded bytes, and
/// the change's own outcome.
pub(super) type Modified<T> = (StoredRow, Vec<u8>, T);

impl Storage {
    /// Writes rows of one partition coordinated here by `node`, each as
    /// [`Storage::write_stamped`] writes one, under the partition's lock and
    /// in one atomic write. Refused, with nothing stored, if one row would
    /// break `limits`, if the rows would take more than
    /// [`MAX_PARTITION_WRITE_BYTES`] together, or if a row is named twice.
    pub fn write_rows(
        &self,
        rows: Vec<RowWriteHere>,
        node: &NodeId,
        limits: RowLimits,
    ) -> Result<Vec<Written>, StorageError> {
        let actor = self.actor(node);
        let keys: Vec<RowKey> = rows.iter().map(|row| row.key.clone()).collect();
        let mut rows: Vec<Option<RowWriteHere>> = rows.into_iter().map(Some).collect();
        let modified =
            self.modify_rows(&keys, MAX_PARTITION_WRITE_BYTES, |i, current, floor| {
                let row = rows[i].take().expect("each row is changed once");
                let new = (row.version, row.patch, row.explicit);
                stamp_write(current, floor, row.context.as_ref(), &actor, new, limits)
            })?;
        Ok(modified
            .into_iter()
            .map(|(row, encoded, (dot, context))| Written {
                row,
                encoded,
                dot,
                context,
            })
            .collect())
    }

    /// Merges sibling sets of rows of one partition from another replica
    /// (a `BATCH` replicated, or its hint replayed) in one atomic write.
    pub fn merge_rows(&self, rows: &[(RowKey, StoredRow)]) -> Result<(), StorageError> {
        let keys: Vec<RowKey> = rows.iter().map(|(key, _)| key.clone()).collect();
        self.modify_rows(&keys, usize::MAX, |i, current, _| {
            Ok(Change {
                next: current.sync(&rows[i].1),
                limits: RowLimits::NONE,
                issued: None,
                purged: false,
                out: (),
            })
        })?;
        Ok(())
    }

    /// [`Storage::modify_rows`] for one row.
    pub(super) fn modify<T>(
        &self,
        key: &RowKey,
        wait: bool,
        change: impl FnOnce(&StoredRow, Floor) -> Result<Change<T>, StorageError>,
    ) -> Result<Modified<T>, StorageError> {
        let mut change = Some(change);
        let (modified, sequence) = self.modify_locked(
            std::slice::from_ref(key),
            usize::MAX,
            |_, current, floor| (change.take().expect("one row"))(current, floor),
        )?;
        if wait {
            self.engine.wait_durable(sequence);
        }
        Ok(modified.into_iter().next().expect("one row"))
    }

    /// The read-modify-write under the row locks behind every change of
    /// rows: for each of `keys` (each named once), reads the row and the
    /// floor of this life's dots for it, applies `change` (given the key's
    /// index), and checks the limits; then writes every row (deleted when
    /// empty, remembering the dots this life issued for it), its tree item,
    /// and any dot issued without storing the row, all in one atomic
    /// write, refused if the rows would take more than `max_bytes`. Returns
    /// once the change is as durable as the sync mode promises.
    pub(super) fn modify_rows<T>(
        &self,
        keys: &[RowKey],
        max_bytes: usize,
        change: impl FnMut(usize, &StoredRow, Floor) -> Result<Change<T>, StorageError>,
    ) -> Result<Vec<Modified<T>>, StorageError> {
        let (modified, sequence) = self.modify_locked(keys, max_bytes, change)?;
        self.engine.wait_durable(sequence);
        Ok(modified)
    }

    /// [`Storage::modify_rows`] up to the durability wait, which is left
    /// to the caller (at the returned sequence), outside the locks: the
    /// locks are taken in stripe order, so writers of several rows never
    /// wait for each other in a cycle, and writers of one stripe share
    /// fsyncs.
    fn modify_locked<T>(
        &self,
        keys: &[RowKey],
        max_bytes: usize,
        mut change: impl FnMut(usize, &StoredRow, Floor) -> Result<Change<T>, StorageError>,
    ) -> Result<(Vec<Modified<T>>, u64), StorageError> {
        let encoded: Vec<Vec<u8>> = keys.iter().map(RowKey::encode).collect();
        let mut sorted: Vec<&Vec<u8>> = encoded.iter().collect();
        sorted.sort();
        if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(StorageError::RowTwice);
        }
        let mut stripes: Vec<usize> = keys
            .iter()
            .map(|key| (key.token.offset() as usize) & (LOCK_STRIPES - 1))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _guards: Vec<_> = (stripes.iter())
            .map(|stripe| self.locks[*stripe].lock().expect("row lock"))
            .collect();
        let trees = self.trees.read().expect("trees lock");
        let mut batch = Batch::default();
        let mut staged = Vec::with_capacity(keys.len());
        let mut forgotten = false;
        for (i, (key, encoded)) in keys.iter().zip(&encoded).enumerate() {
            let hashed = trees.tree_of(key.table, key.token).is_some();
            let (row, remembered) = self.stage(encoded, hashed, &mut batch, |current, floor| {
                change(i, current, floor)
            })?;
            forgotten |= remembered;
            staged.push(row);
        }
        // What the rows take in a message: their keys and sibling sets.
        let key_bytes: usize = encoded.iter().map(Vec::len).sum();
        let bytes = key_bytes + staged.iter().map(|row| row.bytes.len()).sum::<usize>();
        if bytes > max_bytes {
            return Err(StorageError::WriteTooLarge {
                bytes,
                max: max_bytes,
            });
        }
        if batch.is_empty() {
            // Nothing to write, but what we read may be another writer's
            // not yet durable write: wait for it like for our own.
            let modified = staged.into_iter().map(Staged::modified).collect();
            return Ok((modified, self.engine.latest_sequence()));
        }
        let sequence = self.engine.write(batch, false)?;
        if forgotten {
            self.forgotten.store(true, Ordering::Release);
        }
        for ((key, encoded), row) in keys.iter().zip(&encoded).zip(&staged) {
            // Only a row of a range this node keeps a tree for is hashed.
            if let (Some(tree), true) = (trees.tree_of(key.table, key.token), row.changed) {
                let new = (!row.next.is_empty()).then(|| version_digest(&row.bytes));
                retree(tree, key, encoded, row.old_digest, new);
            }
        }
        let modified = staged.into_iter().map(Staged::modified).collect();
        Ok((modified, sequence))
    }

    /// Reads one row under its lock, applies `change`, and adds the row
    /// and the dots to remember to `batch`; also returns whether the floor
    /// of this life's dots for the row changed.
    fn stage<T>(
        &self,
        encoded: &[u8],
        hashed: bool,
        batch: &mut Batch,
        change: impl FnOnce(&StoredRow, Floor) -> Result<Change<T>, StorageError>,
    ) -> Result<(Staged<T>, bool), StorageError> {
        let stored = self.engine.get(Family::Data, encoded)?;
        let (current, old_digest) = match &stored {
            Some(bytes) => (decode_row(bytes)?, hashed.then(|| version_digest(bytes))),
            None => (StoredRow::new(), None),
        };
        let floor = self.floor(encoded)?;
        let change = change(&current, floor)?;
        let remember = self.remember(encoded, &current, floor, &change, batch)?;
        let Change {
            next, limits, out, ..
        } = change;
        let (changed, bytes) = stage_row(encoded, stored, &current, &next, limits, batch)?;
        let staged = Staged {
            next,
            bytes,
            out,
            changed,
            old_digest,
        };
        Ok((staged, remember != floor))
    }
}

/// A row's change, staged in a write.
struct Staged<T> {
    next: StoredRow,
    bytes: Vec<u8>,
    out: T,
    changed: bool,
    old_digest: Option<Hash>,
}

impl<T> Staged<T> {
    fn modified(self) -> Modified<T> {
        (self.next, self.bytes, self.out)
    }
}
