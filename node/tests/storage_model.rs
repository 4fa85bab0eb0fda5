//! Storage against a model, in sled's style: random writes, deletes, merges,
//! purges, reads, range scans and range deletes, checked against an in-memory
//! `BTreeMap` of sibling sets, with the database closed and reopened at random
//! points (in every sync mode, on RocksDB and on the simulator's memory
//! engine: one suite for both); dots never issued twice; Merkle trees
//! maintained on every change equal to trees rebuilt from the data.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use ringdb_node::causality::{ActorId, Dot, Floor, VersionVector};
use ringdb_node::storage::{
    MemoryDisk, RowKey, RowLimits, RowVersion, Storage, StorageConfig, StoredRow, SyncMode,
};
use ringdb_node::world::Random;
use ringdb_proto::{ClusteringKey, PartitionKey, Row, TableId, Value};
use ringdb_ring::{NodeId, Token, TokenRange};
use support::{tree_ranges, tree_roots};

/// The keys the operations draw from: hashed keys in two tables, several
/// rows per partition, and hand-placed keys at the ends of the token space.
fn keys() -> Vec<RowKey> {
    let mut keys = Vec::new();
    for table in [1, 2] {
        for partition in ["alpha", "beta", "gamma", "delta", "epsilon"] {
            for clustering in [&b""[..], b"\x00", b"\x01\x02"] {
                keys.push(RowKey::new(
                    TableId(table),
                    PartitionKey::new(partition).unwrap(),
                    ClusteringKey::new(clustering).unwrap(),
                ));
            }
        }
    }
    for token in [Token::MAX, Token(i64::MIN + 1), Token(0)] {
        keys.push(RowKey {
            token,
            table: TableId(1),
            partition: PartitionKey::new(format!("edge{}", token.0)).unwrap(),
            clustering: ClusteringKey::empty(),
        });
    }
    keys
}

#[derive(Clone, Debug)]
enum Op {
    /// A write coordinated here: without a context (supersede what is
    /// held), with the row's context, or with a context naming dots that
    /// were never issued (clamped away).
    Write {
        key: usize,
        context: Context,
        value: i64,
    },
    /// A delete: a tombstone with the current context.
    Delete {
        key: usize,
    },
    /// A sibling set from another replica (one fresh write there).
    Merge {
        key: usize,
        replica: u8,
        value: i64,
    },
    /// The row deleted here (a purged tombstone).
    Forget {
        key: usize,
    },
    Get {
        key: usize,
    },
    Scan {
        range: TokenRange,
    },
    /// Rows deleted by range (a cleanup).
    DeleteRange {
        range: TokenRange,
    },
    Reopen,
}

#[derive(Clone, Copy, Debug)]
enum Context {
    None,
    Row,
    Forged,
}

fn token() -> impl Strategy<Value = Token> {
    prop_oneof![
        any::<i64>().prop_map(Token),
        Just(Token::MIN),
        Just(Token::MAX),
        Just(Token(0)),
        // Tokens of the hashed keys, to cut ranges right at them.
        (0usize..30).prop_map(|i| keys()[i].token),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..keys().len();
    let context = prop_oneof![
        Just(Context::None),
        Just(Context::Row),
        Just(Context::Forged)
    ];
    prop_oneof![
        6 => (key.clone(), context, any::<i64>())
            .prop_map(|(key, context, value)| Op::Write { key, context, value }),
        2 => key.clone().prop_map(|key| Op::Delete { key }),
        2 => (key.clone(), 3u8..5, any::<i64>()).prop_map(|(key, replica, value)| Op::Merge { key, replica, value }),
        2 => key.clone().prop_map(|key| Op::Forget { key }),
        3 => key.prop_map(|key| Op::Get { key }),
        2 => (token(), token()).prop_map(|(start, end)| Op::Scan { range: TokenRange::new(start, end) }),
        1 => (token(), token()).prop_map(|(start, end)| Op::DeleteRange { range: TokenRange::new(start, end) }),
        1 => Just(Op::Reopen),
    ]
}

fn sync_mode() -> impl Strategy<Value = SyncMode> {
    prop_oneof![
        Just(SyncMode::Always),
        Just(SyncMode::Group { window_ms: 1 }),
        Just(SyncMode::Periodic { interval_ms: 50 }),
    ]
}

/// Where the storage under test keeps its bytes.
#[derive(Clone, Debug)]
enum Engine {
    Rocks,
    Memory,
}

/// Opens the storage again after a clean close, on its engine.
struct Opener {
    dir: tempfile::TempDir,
    disk: Option<Arc<MemoryDisk>>,
    config: StorageConfig,
}

impl Opener {
    fn new(engine: Engine, sync: SyncMode) -> Opener {
        Opener {
            dir: tempfile::tempdir().unwrap(),
            disk: matches!(engine, Engine::Memory).then(|| MemoryDisk::new(sync)),
            config: StorageConfig { sync },
        }
    }

    fn open(&self) -> Storage {
        match &self.disk {
            Some(disk) => Storage::new(Arc::new(disk.engine()), &Random::from_os()).unwrap(),
            None => Storage::open(self.path(), &self.config).unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn actor(replica: u8, epoch: u64) -> ActorId {
    ActorId {
        node: NodeId::new(format!("n{replica}")),
        epoch,
    }
}

fn version(value: Option<i64>) -> RowVersion {
    let row = value.map(|v| Row::from([("v".to_string(), Value::BigInt(v))]));
    RowVersion {
        timestamp_micros: 1,
        row,
    }
}

/// `version` as a write that supersedes what `seen` covers of `before`
/// stamps it: after every version it supersedes.
fn stamped_after(before: &StoredRow, seen: &VersionVector, version: RowVersion) -> RowVersion {
    let latest = before
        .siblings()
        .filter(|(dot, _)| seen.contains(dot))
        .map(|(_, superseded)| superseded.timestamp_micros)
        .max();
    RowVersion {
        timestamp_micros: latest.map_or(version.timestamp_micros, |at| {
            version.timestamp_micros.max(at + 1)
        }),
        ..version
    }
}

/// The model's side of the storage: rows, and per row what this life
/// issued for it before deleting it (and, for a purge, knew superseded).
#[derive(Default)]
struct Model {
    rows: BTreeMap<Vec<u8>, (RowKey, StoredRow)>,
    floors: BTreeMap<Vec<u8>, Floor>,
}

impl Model {
    fn current(&self, key: &RowKey) -> StoredRow {
        self.rows
            .get(&key.encode())
            .map(|(_, row)| row.clone())
            .unwrap_or_default()
    }

    fn forget(&mut self, key: &RowKey, epoch: u64, purged: bool) {
        if let Some((_, row)) = self.rows.remove(&key.encode()) {
            let floor = self.floors.entry(key.encode()).or_default();
            floor.issued = floor.issued.max(row.max_counter_of_epoch(epoch));
            if purged {
                floor.superseded = floor.superseded.max(row.contiguous_counter_of_epoch(epoch));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Storage agrees with a model of sibling sets; no write coordinated
    /// here ever gets a dot issued before, whatever was deleted or reopened
    /// in between; and the Merkle trees maintained on every change equal
    /// trees rebuilt from the data.
    #[test]
    fn storage_matches_a_model_across_reopens(
        ops in proptest::collection::vec(op(), 1..80),
        mode in sync_mode(),
        engine in prop_oneof![Just(Engine::Rocks), Just(Engine::Memory)],
    ) {
        let opener = Opener::new(engine, mode);
        let mut storage = opener.open();
        storage.rebuild_trees(tree_ranges()).unwrap();
        let mut epoch = storage.epoch();
        let me = NodeId::new("n0");
        let keys = keys();
        let mut model = Model::default();
        let mut issued: BTreeSet<(Vec<u8>, Dot)> = BTreeSet::new();

        for op in ops {
            match op {
                Op::Write { key, context, value } => {
                    let key = &keys[key];
                    let before = model.current(key);
                    let floor = model.floors.get(&key.encode()).copied().unwrap_or_default();
                    let given = match context {
                        Context::None => None,
                        Context::Row => Some(before.context()),
                        Context::Forged => Some(before.context().with(Dot { actor: actor(7, 1), counter: 5 })),
                    };
                    let seen = given.clone().map_or_else(|| before.context(), |c| c.intersection(&before.context()));
                    let new = stamped_after(&before, &seen, version(Some(value)));
                    let (expected, dot) = before.write(&seen, &actor(0, epoch), floor, new).unwrap();
                    let written = storage.write(key, given.as_ref(), &me, (version(Some(value)), false), RowLimits::NONE).unwrap();
                    prop_assert_eq!(&written.row, &expected);
                    prop_assert_eq!(&written.dot, &dot);
                    prop_assert_eq!(&written.context, &seen.with(dot.clone()));
                    prop_assert!(issued.insert((key.encode(), dot.clone())), "dot {:?} issued twice", dot);
                    model.rows.insert(key.encode(), (key.clone(), expected));
                }
                Op::Delete { key } => {
                    let key = &keys[key];
                    let before = model.current(key);
                    let floor = model.floors.get(&key.encode()).copied().unwrap_or_default();
                    let new = stamped_after(&before, &before.context(), version(None));
                    let (expected, dot) = before.write(&before.context(), &actor(0, epoch), floor, new).unwrap();
                    let written = storage.write(key, Some(&before.context()), &me, (version(None), false), RowLimits::NONE).unwrap();
                    prop_assert_eq!(&written.row, &expected);
                    prop_assert!(issued.insert((key.encode(), dot.clone())), "dot {:?} issued twice", dot);
                    model.rows.insert(key.encode(), (key.clone(), expected));
                }
                Op::Merge { key, replica, value } => {
                    let key = &keys[key];
                    let incoming = StoredRow::new().update(&VersionVector::new(), &actor(replica, 99), version(Some(value)));
                    let expected = model.current(key).sync(&incoming);
                    prop_assert_eq!(storage.merge(key, &incoming).unwrap(), expected.clone());
                    model.rows.insert(key.encode(), (key.clone(), expected));
                }
                Op::Forget { key } => {
                    let key = &keys[key];
                    let purged = storage.purge(key, |_| true).unwrap();
                    prop_assert_eq!(purged, model.rows.contains_key(&key.encode()));
                    model.forget(key, epoch, true);
                }
                Op::Get { key } => {
                    let key = &keys[key];
                    let stored = storage.get(key).unwrap();
                    prop_assert_eq!(stored, model.rows.get(&key.encode()).map(|(_, row)| row.clone()));
                }
                Op::Scan { range } => {
                    let scanned: Vec<(RowKey, StoredRow)> =
                        storage.scan(range).collect::<Result<_, _>>().unwrap();
                    let mut expected: Vec<(RowKey, StoredRow)> = model
                        .rows
                        .values()
                        .filter(|(key, _)| range.contains(key.token))
                        .cloned()
                        .collect();
                    // A wrapping range is scanned from MIN up to its end first.
                    expected.sort_by_key(|(key, _)| key.encode());
                    prop_assert_eq!(scanned, expected);
                }
                Op::DeleteRange { range } => {
                    let deleted = storage.delete_range(range).unwrap();
                    let doomed: Vec<RowKey> = model
                        .rows
                        .values()
                        .filter(|(key, _)| range.contains(key.token))
                        .map(|(key, _)| key.clone())
                        .collect();
                    prop_assert_eq!(deleted, doomed.len() as u64);
                    for key in doomed {
                        model.forget(&key, epoch, false);
                    }
                }
                Op::Reopen => {
                    drop(storage);
                    storage = opener.open();
                    storage.rebuild_trees(tree_ranges()).unwrap();
                    prop_assert_ne!(storage.epoch(), epoch, "every open is a new life");
                    epoch = storage.epoch();
                    model.floors.clear();
                }
            }
            let (maintained, rebuilt) = tree_roots(&storage);
            prop_assert_eq!(maintained, rebuilt, "after {:?}", op);
        }
        // Finally, everything through one full scan after one more reopen.
        drop(storage);
        let storage = opener.open();
        let all: Vec<(RowKey, StoredRow)> = storage.scan(TokenRange::full()).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(all, model.rows.into_values().collect::<Vec<_>>());
    }
}

#[test]
fn every_open_draws_a_new_epoch() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = StorageConfig::default();
    let first = Storage::open(a.path(), &config).unwrap().epoch();
    let second = Storage::open(b.path(), &config).unwrap().epoch();
    assert_ne!(first, second);
    assert_ne!(Storage::open(a.path(), &config).unwrap().epoch(), first);
}

/// A data directory restored from a backup (or one whose WAL tail was lost)
/// rolls a row's history back; the node's next write of the row must still
/// get a dot it never issued.
#[test]
fn a_restored_backup_never_reissues_a_dot() {
    let (live, backup) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = StorageConfig::default();
    let me = NodeId::new("n0");
    let key = &keys()[0];
    let write = |storage: &Storage, value: i64| {
        storage
            .write(
                key,
                None,
                &me,
                (version(Some(value)), false),
                RowLimits::NONE,
            )
            .unwrap()
            .dot
    };
    let mut issued = BTreeSet::new();
    {
        let storage = Storage::open(live.path(), &config).unwrap();
        issued.insert(write(&storage, 1));
    }
    copy_dir(live.path(), backup.path());
    {
        let storage = Storage::open(live.path(), &config).unwrap();
        for value in 2..5 {
            issued.insert(write(&storage, value));
        }
    }
    // Restore the backup: the row is back at its first version.
    let storage = Storage::open(backup.path(), &config).unwrap();
    assert_eq!(storage.get(key).unwrap().unwrap().len(), 1);
    let dot = write(&storage, 5);
    assert!(
        !issued.contains(&dot),
        "{dot:?} was issued before the backup was restored"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn hints_are_kept_per_target_in_order_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig::default();
    let (n1, n2) = (NodeId::new("n1"), NodeId::new("n2"));
    let storage = Storage::open(dir.path(), &config).unwrap();
    let first = storage.put_hint(&n1, b"one").unwrap();
    storage.put_hint(&n2, b"other").unwrap();
    let second = storage.put_hint(&n1, b"two").unwrap();
    drop(storage);
    let storage = Storage::open(dir.path(), &config).unwrap();
    let third = storage.put_hint(&n1, b"three").unwrap();
    assert!(
        first < second && second < third,
        "sequences keep growing after a reopen"
    );
    let hints: Vec<Vec<u8>> = storage
        .hints(&n1)
        .unwrap()
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    assert_eq!(hints, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
    assert!(storage.delete_hint(&n1, second).unwrap());
    assert!(!storage.delete_hint(&n1, second).unwrap());
    assert_eq!(storage.hints(&n1).unwrap().len(), 2);
    let other: Vec<Vec<u8>> = storage
        .hints(&n2)
        .unwrap()
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    assert_eq!(other, [b"other".to_vec()]);
}

#[test]
fn size_estimates_grow_with_flushed_data() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path(), &StorageConfig::default()).unwrap();
    let me = NodeId::new("n0");
    for i in 0..2000 {
        let key = RowKey::new(
            TableId(1),
            PartitionKey::new(format!("k{i}")).unwrap(),
            ClusteringKey::empty(),
        );
        // Random bytes: LZ4 would shrink repeated ones to almost nothing.
        let blob: Vec<u8> = (0..200).map(|_| rand::random()).collect();
        let row = Row::from([("v".to_string(), Value::Blob(blob))]);
        storage
            .write(
                &key,
                None,
                &me,
                (
                    RowVersion {
                        timestamp_micros: 0,
                        row: Some(row),
                    },
                    false,
                ),
                RowLimits::NONE,
            )
            .unwrap();
    }
    drop(storage);
    // Reopening replays the WAL into a memtable; a flush puts it in SST files.
    let storage = Storage::open(dir.path(), &StorageConfig::default()).unwrap();
    storage.flush().unwrap();
    let whole = storage.approximate_size(TokenRange::full());
    let half = storage.approximate_size(TokenRange::new(Token::MIN, Token(0)));
    assert!(
        whole > 100_000,
        "2000 rows of 200 bytes, estimated at {whole} bytes"
    );
    assert!(
        half > whole / 4 && half < whole * 3 / 4,
        "half the ring: {half} of {whole}"
    );
}

#[test]
fn a_zero_sync_period_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        sync: SyncMode::Group { window_ms: 0 },
    };
    let error = Storage::open(dir.path(), &config).err().expect("refused");
    assert_eq!(
        error.to_string(),
        "invalid storage config: sync window_ms and interval_ms must be at least 1"
    );
}

/// A row whose tombstone was purged (every replica held it) and that is
/// then written again and again through this node keeps a history of one
/// counter per actor: its new dots follow the purged ones without a gap, so
/// they do not pile up as loose dots until contexts and the row outgrow
/// their limits.
#[test]
fn a_row_written_again_after_its_purge_keeps_a_bounded_history() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path(), &StorageConfig::default()).unwrap();
    let me = NodeId::new("n0");
    let key = &keys()[0];
    let write = |value: Option<i64>| {
        let context = storage.get(key).unwrap().unwrap_or_default().context();
        storage
            .write(
                key,
                Some(&context),
                &me,
                (version(value), false),
                RowLimits::NONE,
            )
            .unwrap()
    };
    for value in 0..5 {
        write(Some(value));
    }
    write(None);
    assert!(storage.purge(key, |_| true).unwrap());
    let mut dots = BTreeSet::new();
    let mut last = None;
    for value in 0..500 {
        let written = write(Some(value));
        assert!(
            dots.insert(written.dot.clone()),
            "{:?} issued twice",
            written.dot
        );
        last = Some(written);
    }
    let last = last.unwrap();
    assert_eq!(last.row.len(), 1);
    assert!(
        last.encoded.len() < 200,
        "after 500 writes the row is {} bytes: its history grows with every write",
        last.encoded.len()
    );
}

/// A purged row leaves its history behind, across reopens: a write whose
/// context names the purged tombstones (the context the delete returned)
/// is known to supersede nothing that could come back.
#[test]
fn a_purged_row_keeps_its_history_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let me = NodeId::new("n0");
    let key = &keys()[0];
    let deleted = {
        let storage = Storage::open(dir.path(), &StorageConfig::default()).unwrap();
        assert!(storage.purged_history(key).unwrap().is_empty());
        let written = storage
            .write(key, None, &me, (version(Some(1)), false), RowLimits::NONE)
            .unwrap();
        let deleted = storage
            .write(
                key,
                Some(&written.context),
                &me,
                (version(None), false),
                RowLimits::NONE,
            )
            .unwrap();
        assert!(storage.purge(key, |_| true).unwrap());
        assert!(storage.get(key).unwrap().is_none());
        deleted.context
    };
    let storage = Storage::open(dir.path(), &StorageConfig::default()).unwrap();
    let history = storage.purged_history(key).unwrap();
    assert!(history.dominates(&deleted), "{history:?} lacks {deleted:?}");
    assert!(storage.purged_history(&keys()[1]).unwrap().is_empty());
}
