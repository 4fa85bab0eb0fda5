//! Row changes a coordinator makes, on the storage: patches (`UPDATE`)
//! that keep the columns written since a stale context, column deletes,
//! write stamps after what a write supersedes, and the rows of one
//! partition written or merged together, all or none, with Merkle trees
//! maintained as rebuilt.

mod support;

use std::sync::Arc;

use ringdb_node::storage::{
    MemoryDisk, RowKey, RowLimits, RowVersion, RowWriteHere, Storage, StoredRow, SyncMode,
};
use ringdb_node::world::Random;
use ringdb_proto::{ClusteringKey, PartitionKey, Row, TableId, Value};
use ringdb_ring::NodeId;
use support::{tree_ranges, tree_roots};

/// A memory engine's storage.
fn memory_storage() -> Storage {
    let disk = MemoryDisk::new(SyncMode::Always);
    Storage::new(Arc::new(disk.engine()), &Random::from_os()).unwrap()
}

fn patch_of(pairs: &[(&str, Value)]) -> RowVersion {
    let row: Row = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    RowVersion {
        timestamp_micros: 0,
        row: Some(row),
    }
}

/// Row `k` of table 7, which the patch and stamping tests write.
fn row_k() -> RowKey {
    RowKey::new(
        TableId(7),
        PartitionKey::new(b"k".to_vec()).unwrap(),
        ClusteringKey::empty(),
    )
}

/// The live versions of a row, each as its columns.
fn live(storage: &Storage, key: &RowKey) -> Vec<Row> {
    let stored = storage.get(key).unwrap().unwrap_or_default();
    stored.values().filter_map(|v| v.row.clone()).collect()
}

#[test]
fn a_patch_with_a_stale_context_keeps_the_columns_written_since() {
    let storage = memory_storage();
    let me = NodeId::new("n1");
    let key = row_k();
    let at = |micros, version: RowVersion| RowVersion {
        timestamp_micros: micros,
        ..version
    };
    let first = patch_of(&[("a", Value::Int(1)), ("b", Value::Int(1))]);
    let read = storage
        .write(&key, None, &me, (at(1, first), true), RowLimits::NONE)
        .unwrap()
        .context;
    // Another session sets b; then the first writes a with what it read.
    let b = patch_of(&[("b", Value::Int(2))]);
    storage
        .write(&key, None, &me, (at(2, b), true), RowLimits::NONE)
        .unwrap();
    let a = patch_of(&[("a", Value::Int(5))]);
    storage
        .write(&key, Some(&read), &me, (at(3, a), true), RowLimits::NONE)
        .unwrap();
    let versions = live(&storage, &key);
    let latest: Row = [
        ("a".to_string(), Value::Int(5)),
        ("b".to_string(), Value::Int(2)),
    ]
    .into();
    assert!(versions.contains(&latest), "{versions:?}");
    assert!(
        versions.iter().all(|v| v.get("b") == Some(&Value::Int(2))),
        "{versions:?}"
    );
}

#[test]
fn a_column_delete_of_a_missing_row_makes_no_row() {
    let storage = memory_storage();
    let me = NodeId::new("n1");
    let key = row_k();
    let delete = patch_of(&[("a", Value::Null)]);
    storage
        .write(&key, None, &me, (delete, true), RowLimits::NONE)
        .unwrap();
    assert!(live(&storage, &key).is_empty());
    // A row written with no column but its key (an INSERT of the key) is a row.
    storage
        .write(&key, None, &me, (patch_of(&[]), true), RowLimits::NONE)
        .unwrap();
    assert_eq!(live(&storage, &key), vec![Row::new()]);
}

/// The versions of a row, each as (timestamp, columns or a tombstone).
fn stamped_versions(storage: &Storage, key: &RowKey) -> Vec<(i64, Option<Row>)> {
    let stored = storage.get(key).unwrap().unwrap_or_default();
    let mut versions: Vec<(i64, Option<Row>)> = stored
        .values()
        .map(|v| (v.timestamp_micros, v.row.clone()))
        .collect();
    versions.sort_by_key(|(at, _)| *at);
    versions
}

#[test]
fn a_write_is_stamped_after_what_it_supersedes_and_an_explicit_older_one_changes_nothing() {
    let storage = memory_storage();
    let me = NodeId::new("n1");
    let key = row_k();
    let at = |micros, pairs: &[(&str, Value)]| RowVersion {
        timestamp_micros: micros,
        ..patch_of(pairs)
    };
    let one = |n| [("a", Value::Int(n))];
    let write = |version: RowVersion, explicit: Option<i64>| {
        storage
            .write_stamped(&key, None, &me, (version, false, explicit), RowLimits::NONE)
            .unwrap()
    };
    // A coordinator whose clock is ahead writes at 1000; one whose clock
    // is behind (at 10) supersedes it, so is stamped after it: 1001.
    write(at(1_000, &one(1)), None);
    write(at(10, &one(2)), None);
    let row = |n| Some(Row::from([("a".to_string(), Value::Int(n))]));
    assert_eq!(stamped_versions(&storage, &key), vec![(1_001, row(2))]);
    // USING TIMESTAMP older than the row's version: the row is unchanged.
    write(at(2_000, &one(3)), Some(500));
    assert_eq!(stamped_versions(&storage, &key), vec![(1_001, row(2))]);
    // Newer: it wins, with its own timestamp (not the coordinator's clock).
    write(at(2_000, &one(4)), Some(1_500));
    assert_eq!(stamped_versions(&storage, &key), vec![(1_500, row(4))]);
    // A tie keeps the version there (a tombstone would win it).
    write(at(2_000, &one(5)), Some(1_500));
    assert_eq!(stamped_versions(&storage, &key), vec![(1_500, row(4))]);
    // A tombstone with its own timestamp keeps it: a later explicit write
    // wins over it (the clock would have hidden it), an earlier one not.
    let tombstone = RowVersion {
        timestamp_micros: 9_000,
        row: None,
    };
    write(tombstone, Some(1_600));
    assert_eq!(stamped_versions(&storage, &key), vec![(1_600, None)]);
    write(at(9_000, &one(6)), Some(1_550));
    assert_eq!(stamped_versions(&storage, &key), vec![(1_600, None)]);
    write(at(9_000, &one(7)), Some(1_700));
    assert_eq!(stamped_versions(&storage, &key), vec![(1_700, row(7))]);
}

/// Rows 0..n of partition `k` of table 7.
fn rows_of_k(n: u8) -> Vec<RowKey> {
    (0..n)
        .map(|c| {
            let partition = PartitionKey::new(b"k".to_vec()).unwrap();
            RowKey::new(TableId(7), partition, ClusteringKey::new(vec![c]).unwrap())
        })
        .collect()
}

fn writes_of(keys: &[RowKey], columns: &[(&str, Value)]) -> Vec<RowWriteHere> {
    keys.iter()
        .map(|key| RowWriteHere {
            key: key.clone(),
            context: None,
            version: patch_of(columns),
            patch: true,
            explicit: None,
        })
        .collect()
}

/// A batch of one partition is stored whole or not at all: when one of
/// its rows would break the limits, none is written.
#[test]
fn rows_written_together_are_stored_all_or_none() {
    let storage = memory_storage();
    let me = NodeId::new("n1");
    let keys = rows_of_k(3);
    let limits = RowLimits {
        max_siblings: 8,
        max_bytes: 512,
    };
    let mut writes = writes_of(&keys[..2], &[("v", Value::Int(1))]);
    writes.extend(writes_of(
        &keys[2..],
        &[("v", Value::Text("x".repeat(1000)))],
    ));
    let refused = storage.write_rows(writes, &me, limits).unwrap_err();
    assert!(
        refused.to_string().contains("the limit is 512 bytes"),
        "{refused}"
    );
    assert!(keys.iter().all(|key| storage.get(key).unwrap().is_none()));

    let written = storage
        .write_rows(writes_of(&keys, &[("v", Value::Int(2))]), &me, limits)
        .unwrap();
    assert_eq!(written.len(), 3);
    let value: Row = [("v".to_string(), Value::Int(2))].into();
    for (key, written) in keys.iter().zip(&written) {
        assert_eq!(live(&storage, key), vec![value.clone()]);
        assert_eq!(
            storage.get(key).unwrap().unwrap().context(),
            written.context
        );
    }
    // A row named twice is refused, and nothing of the write is stored.
    let twice = writes_of(&[keys[0].clone(), keys[1].clone(), keys[0].clone()], &[]);
    assert!(storage.write_rows(twice, &me, limits).is_err());
    assert_eq!(live(&storage, &keys[1]), vec![value.clone()]);
}

/// A replica merges a batch's rows in one write, as it merges one row.
#[test]
fn rows_merged_together_match_rows_merged_one_by_one() {
    let (coordinator, together, alone) = (memory_storage(), memory_storage(), memory_storage());
    let me = NodeId::new("n1");
    let keys = rows_of_k(4);
    for storage in [&together, &alone] {
        storage.rebuild_trees(tree_ranges()).unwrap();
    }
    let written = coordinator
        .write_rows(
            writes_of(&keys, &[("v", Value::Int(3))]),
            &me,
            RowLimits::NONE,
        )
        .unwrap();
    let rows: Vec<(RowKey, StoredRow)> = keys
        .iter()
        .cloned()
        .zip(written.iter().map(|w| w.row.clone()))
        .collect();
    together.merge_rows(&rows).unwrap();
    for (key, row) in &rows {
        alone.merge(key, row).unwrap();
    }
    for key in &keys {
        assert_eq!(together.get(key).unwrap(), alone.get(key).unwrap());
        assert_eq!(together.get(key).unwrap(), coordinator.get(key).unwrap());
    }
    let (maintained, rebuilt) = tree_roots(&together);
    assert_eq!(maintained, rebuilt);
    assert_eq!(tree_roots(&alone).0, maintained);
}
