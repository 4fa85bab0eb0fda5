//! Rows: read, write under the row lock, merge, scan, delete, and the
//! Merkle trees kept in step with every change.

use std::sync::atomic::Ordering;

use ringdb_antientropy::tree::{Hash, Tree, item_hash};
use ringdb_proto::{ClusteringKey, Row, SliceRead, TableId, Value};
use ringdb_ring::{NodeId, TokenRange};

use super::{
    Batch, Family, ROW_FORMAT, Reader, RowKey, RowVersion, Storage, StorageError, StoredRow,
    decode_row, encode_row, exclusive_end,
};
use crate::causality::{ActorId, Dot, Floor, VersionVector};

/// Limits a write coordinated here must keep the row within (Riak's
/// `verify_object_limits`): concurrent writes pile up as siblings, and a row
/// must still fit in a message to its replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowLimits {
    /// The most siblings (tombstones included) a row may hold.
    pub max_siblings: usize,
    /// The most bytes a row may take, encoded with its siblings and history.
    pub max_bytes: usize,
}

impl RowLimits {
    /// No limits (merges from other replicas are never refused).
    pub const NONE: RowLimits = RowLimits {
        max_siblings: usize::MAX,
        max_bytes: usize::MAX,
    };

    fn check(&self, row: &StoredRow, bytes: usize) -> Result<(), StorageError> {
        if row.len() > self.max_siblings {
            return Err(StorageError::TooManySiblings {
                siblings: row.len(),
                max: self.max_siblings,
            });
        }
        if bytes > self.max_bytes {
            return Err(StorageError::RowTooLarge {
                bytes,
                max: self.max_bytes,
            });
        }
        Ok(())
    }
}

/// What a write coordinated here did.
#[derive(Clone, Debug)]
pub struct Written {
    /// The row after the write.
    pub row: StoredRow,
    /// The row's encoded bytes, as stored (what replicas are sent).
    pub encoded: Vec<u8>,
    /// The new version's dot.
    pub dot: Dot,
    /// What the write superseded (the writer's context, clamped to the
    /// row's history; without one, the row's history here) and its own dot:
    /// a following write with it supersedes exactly these.
    pub context: VersionVector,
}

/// A change of one row, computed under its lock.
pub(super) struct Change<T> {
    pub(super) next: StoredRow,
    /// Refuse the change if the row would break these.
    pub(super) limits: RowLimits,
    /// A dot to remember issuing without storing the row (a write kept only
    /// as hints).
    pub(super) issued: Option<u64>,
    /// The row is deleted because every replica holds it superseded (a
    /// purged tombstone): its dots may be counted as seen by the next write.
    pub(super) purged: bool,
    pub(super) out: T,
}

impl Storage {
    /// Reads a row's sibling set; refused for a row a salvage dropped
    /// until it is restored (its absence here says nothing).
    pub fn get(&self, key: &RowKey) -> Result<Option<StoredRow>, StorageError> {
        self.check_restored(key.token)?;
        match self.engine.get(Family::Data, &key.encode())? {
            Some(bytes) => Ok(Some(decode_row(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The history of the tombstones purged from a row (empty when none
    /// were): every replica held them superseded, so a write whose context
    /// names them supersedes nothing that could come back. Kept (a version
    /// vector per purged row) so that a client re-creating a row with the
    /// context its delete returned is not refused once the tombstone is gone.
    pub fn purged_history(&self, key: &RowKey) -> Result<VersionVector, StorageError> {
        self.purged_history_of(&key.encode())
    }

    fn purged_history_of(&self, encoded: &[u8]) -> Result<VersionVector, StorageError> {
        match self.engine.get(Family::Purged, encoded)? {
            None => Ok(VersionVector::new()),
            Some(bytes) => decode_history(&bytes),
        }
    }

    /// What this life issued for a row it has deleted since (nothing when
    /// it deleted none).
    pub(super) fn floor(&self, encoded: &[u8]) -> Result<Floor, StorageError> {
        if !self.forgotten.load(Ordering::Acquire) {
            return Ok(Floor::default());
        }
        Ok(match self.engine.get(Family::Dots, encoded)? {
            Some(bytes) => parse_floor(&bytes, self.epoch),
            None => Floor::default(),
        })
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
        let (next, _, ()) = self.modify(key, true, |current, _| {
            Ok(Change {
                next: change(current),
                limits: RowLimits::NONE,
                issued: None,
                purged: false,
                out: (),
            })
        })?;
        Ok(next)
    }

    /// Deletes a row whose every replica holds it superseded (tombstones
    /// past the grace, after a repair that reconciled every replica), if
    /// `purgeable` still says so under the row lock; returns whether it
    /// did. Unlike other deletes, the next write of the row by this node
    /// counts the purged dots as seen ([`Floor::superseded`]).
    pub fn purge(
        &self,
        key: &RowKey,
        purgeable: impl FnOnce(&StoredRow) -> bool,
    ) -> Result<bool, StorageError> {
        let (_, _, purged) = self.modify(key, false, |current, _| {
            let purged = !current.is_empty() && purgeable(current);
            Ok(Change {
                next: if purged {
                    StoredRow::new()
                } else {
                    current.clone()
                },
                limits: RowLimits::NONE,
                issued: None,
                purged,
                out: purged,
            })
        })?;
        Ok(purged)
    }

    /// A write coordinated here, by `node`: `version` supersedes what
    /// `context` has seen (clamped to the row's history here: a context is a
    /// client's word), or without a context what this replica holds. The
    /// new dot comes after every dot of this life's actor that the row, the
    /// context or a deleted copy of the row ever held. Refused, with nothing
    /// stored, if the row would break `limits`.
    ///
    /// With `patch`, the version's columns are written over those of the
    /// versions it supersedes (CQL's `INSERT` and `UPDATE`; see [`patched`]).
    ///
    /// The version is stamped after every version it supersedes (a hybrid
    /// logical clock per row): a write that follows another, causally, is
    /// the later one for a last-write-wins table and `writetime`, whatever
    /// the coordinators' clocks.
    pub fn write(
        &self,
        key: &RowKey,
        context: Option<&VersionVector>,
        node: &NodeId,
        (version, patch): (RowVersion, bool),
        limits: RowLimits,
    ) -> Result<Written, StorageError> {
        self.write_stamped(key, context, node, (version, patch, None), limits)
    }

    /// [`Storage::write`], with the version stamped `explicit` (CQL's
    /// `USING TIMESTAMP`, last-write-wins tables only) rather than after
    /// what it supersedes: if a superseded version is as late or later,
    /// that version wins and the new one takes its place unchanged (a
    /// tombstone wins a tie, as in Cassandra). Either way the version is as
    /// late as every version it supersedes, so a tombstone made this way is
    /// no sooner purgeable than one stamped by the clock.
    pub fn write_stamped(
        &self,
        key: &RowKey,
        context: Option<&VersionVector>,
        node: &NodeId,
        new: (RowVersion, bool, Option<i64>),
        limits: RowLimits,
    ) -> Result<Written, StorageError> {
        let actor = self.actor(node);
        let (row, encoded, (dot, context)) = self.modify(key, true, |current, floor| {
            stamp_write(current, floor, context, &actor, new, limits)
        })?;
        Ok(Written {
            row,
            encoded,
            dot,
            context,
        })
    }

    /// A write coordinated here by `node` for a row this node does not
    /// replicate (consistency ANY with every replica down): the new version
    /// is made and its dot remembered, but the row is not stored here; the
    /// caller keeps it as hints. `context` is clamped to what this node
    /// holds of the row, usually nothing.
    pub fn write_elsewhere(
        &self,
        key: &RowKey,
        context: Option<&VersionVector>,
        node: &NodeId,
        version: RowVersion,
    ) -> Result<Written, StorageError> {
        let actor = self.actor(node);
        let (_, _, written) = self.modify(key, false, |current, floor| {
            let history = current.context();
            let seen = match context {
                Some(context) => context.intersection(&history),
                None => history,
            };
            // Start from nothing: what this node holds is not the row's
            // state, only a floor for the dot.
            let floor = Floor {
                issued: floor.issued.max(current.max_counter_of_epoch(actor.epoch)),
                ..floor
            };
            let (row, dot) = StoredRow::new().write(&seen, &actor, floor, version)?;
            let encoded = encode_row(&row);
            Ok(Change {
                next: current.clone(),
                limits: RowLimits::NONE,
                issued: Some(dot.counter),
                purged: false,
                out: Written {
                    row,
                    encoded,
                    context: seen.with(dot.clone()),
                    dot,
                },
            })
        })?;
        Ok(written)
    }

    /// The floor of this life's dots for a row after `change`: every dot
    /// it issued, and, when the row goes, every dot the row held (and, for
    /// a purge, the row's history, kept in the purged family). Adds what
    /// changed to `batch`.
    pub(super) fn remember<T>(
        &self,
        encoded: &[u8],
        current: &StoredRow,
        floor: Floor,
        change: &Change<T>,
        batch: &mut Batch,
    ) -> Result<Floor, StorageError> {
        let mut remember = Floor {
            issued: floor.issued.max(change.issued.unwrap_or(0)),
            ..floor
        };
        if change.next.is_empty() {
            remember.issued = remember
                .issued
                .max(current.max_counter_of_epoch(self.epoch));
            if change.purged {
                let superseded = current.contiguous_counter_of_epoch(self.epoch);
                remember.superseded = remember.superseded.max(superseded);
                let history = self.purged_history_of(encoded)?.merge(&current.context());
                batch.put(Family::Purged, encoded.to_vec(), encode_history(&history));
            }
        }
        if remember != floor {
            batch.put(
                Family::Dots,
                encoded.to_vec(),
                floor_bytes(self.epoch, remember),
            );
        }
        Ok(remember)
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
        self.scan_at(&*self.engine, range, after)
    }

    /// [`Storage::scan_encoded`] in `reader` (the engine, or a snapshot).
    pub(super) fn scan_at<'a>(
        &self,
        reader: &'a dyn Reader,
        range: TokenRange,
        after: Option<Vec<u8>>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StorageError>> + 'a {
        // The intervals of a range come in token order, so keys do too.
        range
            .intervals()
            .into_iter()
            .flat_map(move |(first, last)| {
                let end = exclusive_end(last);
                let first = first.to_ordered_bytes().to_vec();
                let start = match &after {
                    Some(after) if *after > first => after.clone(),
                    _ => first,
                };
                let after = after.clone();
                reader
                    .scan(Family::Data, &start, end.as_deref())
                    .filter(move |item| {
                        !matches!((item, &after), (Ok((key, _)), Some(after)) if key == after)
                    })
            })
    }

    /// A page of one partition's rows, for a `SELECT` ([`SliceRead`]): the
    /// storage keys and encoded sibling sets of the rows whose clustering
    /// keys lie in `[start, end)`, forwards or in reverse, at most `limit`
    /// (tombstones included); and whether the page stopped at the limit.
    ///
    /// [`SliceRead`]: ringdb_proto::SliceRead
    pub fn slice(&self, read: &SliceRead) -> Result<SliceRows, StorageError> {
        let key = RowKey::new(read.table, read.partition.clone(), ClusteringKey::empty());
        self.check_restored(key.token)?;
        let prefix = key.encode();
        let mut start = prefix.clone();
        start.extend_from_slice(&read.start);
        let end = match &read.end {
            Some(end) => Some([prefix.as_slice(), end].concat()),
            None => next_prefix(&prefix),
        };
        let items = if read.reverse {
            self.engine
                .scan_reverse(Family::Data, &start, end.as_deref())
        } else {
            self.engine.scan(Family::Data, &start, end.as_deref())
        };
        let limit = read.limit.max(1) as usize;
        let (mut rows, mut bytes) = (Vec::new(), 0);
        for item in items {
            if rows.len() == limit || bytes >= MAX_SLICE_BYTES {
                return Ok((rows, true));
            }
            let (key, value) = item?;
            bytes += key.len() + value.len();
            rows.push((key, value));
        }
        Ok((rows, false))
    }

    /// Deletes every row whose token lies in `range` (a range this node no
    /// longer replicates), one row at a time under its lock, so that the
    /// trees and the floors of this life's dots stay exact; returns how many
    /// rows it deleted. Not synced: a delete lost to a machine crash only
    /// leaves a row to clean up again.
    pub fn delete_range(&self, range: TokenRange) -> Result<u64, StorageError> {
        Ok(self
            .delete_range_while(range, |_| true, || true, || true)?
            .0)
    }

    /// [`Storage::delete_range`] of the tables `holds` holds, asking
    /// `keep_going` before each batch of rows and `still` under each row's
    /// lock, before deleting it; returns the rows deleted and whether the
    /// range is done.
    pub fn delete_range_while(
        &self,
        range: TokenRange,
        holds: impl Fn(TableId) -> bool,
        mut keep_going: impl FnMut() -> bool,
        still: impl Fn() -> bool,
    ) -> Result<(u64, bool), StorageError> {
        let mut deleted = 0;
        let mut after = None;
        loop {
            let keys: Vec<Vec<u8>> = self
                .scan_encoded(range, after.take())
                .take(1024)
                .map(|item| item.map(|(key, _)| key))
                .collect::<Result<_, _>>()?;
            let Some(last) = keys.last().cloned() else {
                return Ok((deleted, true));
            };
            if !keep_going() {
                return Ok((deleted, false));
            }
            for key in keys {
                let key = RowKey::decode(&key)?;
                if !holds(key.table) {
                    continue;
                }
                let (_, _, stopped) = self.modify(&key, false, |current, _| {
                    let stopped = !still();
                    deleted += u64::from(!stopped && !current.is_empty());
                    Ok(Change {
                        next: if stopped {
                            current.clone()
                        } else {
                            StoredRow::new()
                        },
                        limits: RowLimits::NONE,
                        issued: None,
                        purged: false,
                        out: stopped,
                    })
                })?;
                if stopped {
                    return Ok((deleted, false));
                }
            }
            after = Some(last);
        }
    }

    /// The approximate bytes on disk of the rows in `range`. Counts data
    /// flushed to SST files only, not the memtable.
    pub fn approximate_size(&self, range: TokenRange) -> u64 {
        let bounds: Vec<(Vec<u8>, Vec<u8>)> = range
            .intervals()
            .into_iter()
            .map(|(first, last)| {
                (
                    first.to_ordered_bytes().to_vec(),
                    exclusive_end(last).unwrap_or_else(|| vec![0xff; 9]),
                )
            })
            .collect();
        self.engine.approximate_size(Family::Data, &bounds)
    }

    /// Flushes the data memtable to an SST file (for size estimates and tests;
    /// durability never needs it, the WAL has every write).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.engine.flush(Family::Data)
    }

    /// Flushes every family's memtables to files and syncs the log
    /// (`nodetool flush`): a restart then replays nothing.
    pub fn flush_all(&self) -> Result<(), StorageError> {
        for family in Family::ALL {
            self.engine.flush(family)?;
        }
        self.engine.sync()
    }

    /// A consistent copy of every family in the folder `into`, which must
    /// not exist (a RocksDB checkpoint: hard links where it can).
    pub fn checkpoint(&self, into: &std::path::Path) -> Result<(), StorageError> {
        self.engine.checkpoint(into)
    }

    /// The stored bytes of a row, by storage key.
    pub fn get_encoded(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.engine.get(Family::Data, key)
    }
}

/// The stored floor: the epoch it belongs to, the counter issued and the
/// counter known superseded.
fn floor_bytes(epoch: u64, floor: Floor) -> [u8; 24] {
    let mut bytes = [0; 24];
    bytes[..8].copy_from_slice(&epoch.to_be_bytes());
    bytes[8..16].copy_from_slice(&floor.issued.to_be_bytes());
    bytes[16..].copy_from_slice(&floor.superseded.to_be_bytes());
    bytes
}

/// A stored floor if it belongs to `epoch` (nothing otherwise).
fn parse_floor(bytes: &[u8], epoch: u64) -> Floor {
    let word = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("eight bytes")))
    };
    match (word(0), word(8), word(16)) {
        (Some(e), Some(issued), Some(superseded)) if e == epoch => Floor {
            issued,
            superseded: superseded.min(issued),
        },
        _ => Floor::default(),
    }
}

/// The format byte in front of a purged history.
const HISTORY_FORMAT: u8 = 1;

fn encode_history(history: &VersionVector) -> Vec<u8> {
    let mut bytes = vec![HISTORY_FORMAT];
    rmp_serde::encode::write(&mut bytes, history).expect("a version vector always encodes");
    bytes
}

fn decode_history(bytes: &[u8]) -> Result<VersionVector, StorageError> {
    let corrupt = |detail: String| StorageError::Corrupt {
        what: "purged history",
        detail,
    };
    match bytes.split_first() {
        Some((&HISTORY_FORMAT, rest)) => {
            let mut history: VersionVector =
                rmp_serde::from_slice(rest).map_err(|e| corrupt(e.to_string()))?;
            history.normalize();
            Ok(history)
        }
        _ => Err(corrupt("unknown format".into())),
    }
}

/// Whether a row changed from `current` (stored as `stored`) to `next`,
/// and its bytes; a change, within `limits`, is added to `batch`. A row
/// stored in an older format is rewritten when touched, so that replicas
/// agree on its bytes (and Merkle digests).
pub(super) fn stage_row(
    encoded: &[u8],
    stored: Option<Vec<u8>>,
    current: &StoredRow,
    next: &StoredRow,
    limits: RowLimits,
    batch: &mut Batch,
) -> Result<(bool, Vec<u8>), StorageError> {
    let outdated = stored
        .as_ref()
        .is_some_and(|b| b.first() != Some(&ROW_FORMAT));
    let changed = *next != *current || (outdated && !next.is_empty());
    if !changed {
        return Ok((false, stored.unwrap_or_default()));
    }
    let bytes = encode_row(next);
    limits.check(next, bytes.len())?;
    if next.is_empty() {
        batch.delete(Family::Data, encoded.to_vec());
    } else {
        batch.put(Family::Data, encoded.to_vec(), bytes.clone());
    }
    Ok((true, bytes))
}

/// Moves a row's item in its range's tree from its old version (if it had
/// one) to its new one (if it has one).
pub(super) fn retree(
    tree: &Tree,
    key: &RowKey,
    encoded: &[u8],
    old: Option<Hash>,
    new: Option<Hash>,
) {
    for digest in [old, new].into_iter().flatten() {
        tree.toggle(key.token, &item_hash(encoded, &digest));
    }
}

/// The bytes of rows past which a page of a slice stops (it holds one row
/// at least), so that it fits in a message with room to spare.
const MAX_SLICE_BYTES: usize = 4 << 20;

/// A page of a slice: storage keys and encoded sibling sets, and whether
/// the page stopped at its limit.
pub type SliceRows = (Vec<(Vec<u8>, Vec<u8>)>, bool);

/// The first key after every key that starts with `prefix` (`None`: no
/// such key, the prefix is all `0xFF`).
pub(crate) fn next_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

/// The change a write coordinated here makes to `current` (see
/// [`Storage::write_stamped`]), and its dot and context.
pub(super) fn stamp_write(
    current: &StoredRow,
    floor: Floor,
    context: Option<&VersionVector>,
    actor: &ActorId,
    (version, patch, explicit): (RowVersion, bool, Option<i64>),
    limits: RowLimits,
) -> Result<Change<(Dot, VersionVector)>, StorageError> {
    let history = current.context();
    let seen = match context {
        Some(context) => context.intersection(&history),
        None => history,
    };
    let version = match (patch, version.row.clone()) {
        (true, Some(columns)) => RowVersion {
            row: patched(current, columns),
            ..version
        },
        _ => version,
    };
    let version = stamped(current, &seen, version, explicit);
    let (next, dot) = current.write(&seen, actor, floor, version)?;
    Ok(Change {
        next,
        limits,
        issued: None,
        purged: false,
        out: (dot.clone(), seen.with(dot)),
    })
}

/// `version` stamped for a write superseding what `seen` covers of
/// `current` (see [`Storage::write_stamped`]).
fn stamped(
    current: &StoredRow,
    seen: &VersionVector,
    version: RowVersion,
    explicit: Option<i64>,
) -> RowVersion {
    // The latest superseded version; a tombstone first among equals.
    let latest = current
        .siblings()
        .filter(|(dot, _)| seen.contains(dot))
        .map(|(_, superseded)| superseded)
        .max_by_key(|v| (v.timestamp_micros, v.row.is_none()));
    match (explicit, latest) {
        (Some(at), Some(latest))
            if (latest.timestamp_micros, latest.row.is_none()) >= (at, version.row.is_none()) =>
        {
            latest.clone()
        }
        // Later than every version it supersedes, so as safe from an early
        // purge as a write stamped by the clock (see `Storage::write`); a
        // tombstone that supersedes nothing deletes nothing if purged.
        (Some(at), _) => RowVersion {
            timestamp_micros: at,
            row: version.row,
        },
        (None, Some(latest)) => RowVersion {
            timestamp_micros: version
                .timestamp_micros
                .max(latest.timestamp_micros.saturating_add(1)),
            row: version.row,
        },
        (None, None) => version,
    }
}

/// The columns of a patch write (CQL's `INSERT` and `UPDATE`): those of
/// the row's versions here, oldest first (the latest written wins a
/// column they disagree on), a tombstone clearing what came before it;
/// then `patch` over them, a `null` removing its column. Every version
/// counts, not only those the write supersedes: a session whose context
/// is out of date (another session wrote the row since its read) must not
/// write the other's columns away. A patch of only `null`s that leaves no
/// column (a column `DELETE` of a row that has no other) is a tombstone,
/// so that it does not make a row appear.
fn patched(current: &StoredRow, patch: Row) -> Option<Row> {
    let mut versions: Vec<&RowVersion> = current.values().collect();
    versions.sort_by_key(|version| version.timestamp_micros);
    let mut row = Row::new();
    for version in versions {
        match &version.row {
            Some(columns) => row.extend(columns.iter().map(|(k, v)| (k.clone(), v.clone()))),
            None => row.clear(),
        }
    }
    let only_nulls = patch.values().all(|value| *value == Value::Null) && !patch.is_empty();
    for (name, value) in patch {
        if value == Value::Null {
            row.remove(&name);
        } else {
            row.insert(name, value);
        }
    }
    (!(only_nulls && row.is_empty())).then_some(row)
}
