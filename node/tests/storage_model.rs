//! Storage against a model, in sled's style: random writes, deletes, merges,
//! reads, range scans and range deletes, checked against an in-memory
//! `BTreeMap` of sibling sets, with the database closed and reopened at random
//! points (in every sync mode).

use std::collections::BTreeMap;

use proptest::prelude::*;
use ringdb_node::causality::{ActorId, VersionVector};
use ringdb_node::storage::{RowKey, RowVersion, Storage, StorageConfig, StoredRow, SyncMode};
use ringdb_proto::{ClusteringKey, PartitionKey, Row, TableId, Value};
use ringdb_ring::{NodeId, Token, TokenRange};

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
    /// A coordinated write at a replica, with or without the current context.
    Write {
        key: usize,
        replica: u8,
        with_context: bool,
        value: i64,
    },
    /// A delete: a tombstone with the current context.
    Delete {
        key: usize,
        replica: u8,
    },
    /// A sibling set from another replica (one fresh write there).
    Merge {
        key: usize,
        replica: u8,
        value: i64,
    },
    Get {
        key: usize,
    },
    Scan {
        range: TokenRange,
    },
    DeleteRange {
        range: TokenRange,
    },
    Reopen,
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
    prop_oneof![
        6 => (key.clone(), 0u8..3, any::<bool>(), any::<i64>())
            .prop_map(|(key, replica, with_context, value)| Op::Write { key, replica, with_context, value }),
        2 => (key.clone(), 0u8..3).prop_map(|(key, replica)| Op::Delete { key, replica }),
        2 => (key.clone(), 3u8..5, any::<i64>()).prop_map(|(key, replica, value)| Op::Merge { key, replica, value }),
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn storage_matches_a_model_across_reopens(
        ops in proptest::collection::vec(op(), 1..80),
        mode in sync_mode(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig { sync: mode };
        let mut storage = Storage::open(dir.path(), &config).unwrap();
        let epoch = storage.epoch();
        let keys = keys();
        let mut model: BTreeMap<Vec<u8>, (RowKey, StoredRow)> = BTreeMap::new();
        let current = |model: &BTreeMap<Vec<u8>, (RowKey, StoredRow)>, key: &RowKey| {
            model.get(&key.encode()).map(|(_, row)| row.clone()).unwrap_or_default()
        };

        for op in ops {
            match op {
                Op::Write { key, replica, with_context, value } => {
                    let key = &keys[key];
                    let before = current(&model, key);
                    let context = if with_context { before.context() } else { VersionVector::new() };
                    let expected = before.update(&context, &actor(replica, epoch), version(Some(value)));
                    let stored = storage.write(key, &context, &actor(replica, epoch), version(Some(value))).unwrap();
                    prop_assert_eq!(&stored, &expected);
                    model.insert(key.encode(), (key.clone(), expected));
                }
                Op::Delete { key, replica } => {
                    let key = &keys[key];
                    let before = current(&model, key);
                    let expected = before.update(&before.context(), &actor(replica, epoch), version(None));
                    let stored = storage.write(key, &before.context(), &actor(replica, epoch), version(None)).unwrap();
                    prop_assert_eq!(&stored, &expected);
                    model.insert(key.encode(), (key.clone(), expected));
                }
                Op::Merge { key, replica, value } => {
                    let key = &keys[key];
                    let incoming = StoredRow::new().update(&VersionVector::new(), &actor(replica, 99), version(Some(value)));
                    let expected = current(&model, key).sync(&incoming);
                    prop_assert_eq!(storage.merge(key, &incoming).unwrap(), expected.clone());
                    model.insert(key.encode(), (key.clone(), expected));
                }
                Op::Get { key } => {
                    let key = &keys[key];
                    let stored = storage.get(key).unwrap();
                    prop_assert_eq!(stored, model.get(&key.encode()).map(|(_, row)| row.clone()));
                }
                Op::Scan { range } => {
                    let scanned: Vec<(RowKey, StoredRow)> =
                        storage.scan(range).collect::<Result<_, _>>().unwrap();
                    let mut expected: Vec<(RowKey, StoredRow)> = model
                        .values()
                        .filter(|(key, _)| range.contains(key.token))
                        .cloned()
                        .collect();
                    // A wrapping range is scanned from MIN up to its end first.
                    expected.sort_by_key(|(key, _)| key.encode());
                    prop_assert_eq!(scanned, expected);
                }
                Op::DeleteRange { range } => {
                    storage.delete_range(range).unwrap();
                    model.retain(|_, (key, _)| !range.contains(key.token));
                }
                Op::Reopen => {
                    drop(storage);
                    storage = Storage::open(dir.path(), &config).unwrap();
                    prop_assert_eq!(storage.epoch(), epoch, "the epoch survives a reopen");
                }
            }
        }
        // Finally, everything through one full scan after one more reopen.
        drop(storage);
        let storage = Storage::open(dir.path(), &config).unwrap();
        let all: Vec<(RowKey, StoredRow)> = storage.scan(TokenRange::full()).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(all, model.into_values().collect::<Vec<_>>());
    }
}

#[test]
fn a_new_data_directory_gets_a_new_epoch() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = StorageConfig::default();
    let first = Storage::open(a.path(), &config).unwrap().epoch();
    let second = Storage::open(b.path(), &config).unwrap().epoch();
    assert_ne!(first, second);
    assert_eq!(Storage::open(a.path(), &config).unwrap().epoch(), first);
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
    storage.delete_hint(&n1, second).unwrap();
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
    let actor = actor(0, storage.epoch());
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
                &VersionVector::new(),
                &actor,
                RowVersion {
                    timestamp_micros: 0,
                    row: Some(row),
                },
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
