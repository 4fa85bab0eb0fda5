//! Salvage of a data directory with a damaged SST block: the open after
//! the damage was found copies every readable row, drops a token span
//! around the damaged block (and nothing outside it), records the span to
//! restore, keeps the damaged file aside, and survives a crash mid-swap.

use std::collections::BTreeSet;
use std::path::Path;

use ringdb_node::storage::{RowKey, RowLimits, RowVersion, Storage, StorageConfig};
use ringdb_proto::{ClusteringKey, PartitionKey, Row, TableId, Value};
use ringdb_ring::{NodeId, TokenRange};

const ROWS: usize = 4000;

fn key(i: usize) -> RowKey {
    RowKey::new(
        TableId(1),
        PartitionKey::new(format!("key{i}")).unwrap(),
        ClusteringKey::empty(),
    )
}

fn version(i: usize) -> RowVersion {
    RowVersion {
        timestamp_micros: 1,
        row: Some(Row::from([(
            "value".to_string(),
            Value::Text(format!("value of row {i} {}", "x".repeat(64))),
        )])),
    }
}

/// Writes the rows, flushes them into SST files and flips bytes in the
/// middle of the largest; returns its name.
fn damaged_store(data: &Path) -> String {
    let storage = Storage::open(data, &StorageConfig::default()).unwrap();
    let me = NodeId::new("n1");
    for i in 0..ROWS {
        storage
            .write(&key(i), None, &me, (version(i), false), RowLimits::NONE)
            .unwrap();
    }
    storage.flush().unwrap();
    drop(storage);
    let sst = std::fs::read_dir(data)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sst"))
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&sst).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 16] {
        *byte ^= 0x5A;
    }
    std::fs::write(&sst, bytes).unwrap();
    sst.file_name().unwrap().to_string_lossy().into_owned()
}

/// Opens the store, reads everything (finding the damage) and returns the
/// error the scan met.
fn find_damage(data: &Path) -> Storage {
    let storage = Storage::open(data, &StorageConfig::default()).unwrap();
    let error = storage
        .scan(TokenRange::full())
        .find_map(Result::err)
        .expect("the scan meets the damage");
    assert!(error.is_damage(), "{error}");
    assert!(storage.note_damage(&error));
    assert!(storage.salvage_requested());
    storage
}

#[test]
fn a_salvage_drops_only_a_span_around_the_damaged_block_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let name = damaged_store(&data);
    drop(find_damage(&data));

    let storage = Storage::open(&data, &StorageConfig::default()).unwrap();
    assert!(!storage.salvage_requested());
    let record = storage.damage_record().unwrap().expect("a damage record");
    assert!(!record.restored);
    assert_eq!(record.quarantined, std::slice::from_ref(&name));
    assert!(!record.spans.is_empty());
    // Every row reads back whole, and the missing ones are all in a span.
    let mut present = BTreeSet::new();
    for item in storage.scan(TokenRange::full()) {
        let (key, row) = item.expect("no damage left");
        let i: usize = std::str::from_utf8(key.partition.as_bytes()).unwrap()[3..]
            .parse()
            .unwrap();
        let (_, value) = row.siblings().next().unwrap();
        assert_eq!(*value, version(i));
        present.insert(i);
    }
    let in_span = |i: usize| {
        let token = key(i).token;
        record
            .spans
            .iter()
            .any(|(first, last)| *first <= token && token <= *last)
    };
    for i in 0..ROWS {
        assert!(
            present.contains(&i) || in_span(i),
            "row {i} lost outside the spans"
        );
    }
    let dropped = ROWS - present.len();
    assert!(dropped > 0);
    // Not the whole file: about one block's rows (4 KiB blocks of ~100-byte rows).
    assert!(dropped < ROWS / 10, "{dropped} of {ROWS} rows dropped");
    let kept: Vec<String> = std::fs::read_dir(dir.path().join("quarantine"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(kept.iter().any(|file| file.ends_with(&name)), "{kept:?}");

    // Until restored, a dropped row is refused, not read as absent (a read
    // would take the absence for the truth).
    let gone = (0..ROWS).find(|i| !present.contains(i)).unwrap();
    let refused = storage.get(&key(gone)).unwrap_err();
    assert!(refused.to_string().contains("being restored"), "{refused}");
    // Restored: the record says so, and is forgotten by the open after.
    storage.mark_restored().unwrap();
    assert_eq!(storage.get(&key(gone)).unwrap(), None);
    assert!(storage.damage_record().unwrap().unwrap().restored);
    drop(storage);
    let storage = Storage::open(&data, &StorageConfig::default()).unwrap();
    assert_eq!(storage.damage_record().unwrap(), None);
}

#[test]
fn a_swap_cut_short_is_finished_or_undone_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    damaged_store(&data);
    drop(find_damage(&data));
    // A copy that never completed (no done marker) is thrown away, and the
    // salvage runs again.
    std::fs::create_dir_all(dir.path().join("data.salvage")).unwrap();
    std::fs::write(dir.path().join("data.salvage/junk"), b"partial").unwrap();
    let storage = Storage::open(&data, &StorageConfig::default()).unwrap();
    assert!(storage.damage_record().unwrap().is_some());
    assert!(!dir.path().join("data.salvage").exists());
    drop(storage);
    // A swap cut between its two renames is completed.
    std::fs::rename(&data, dir.path().join("data.salvage")).unwrap();
    std::fs::create_dir_all(dir.path().join("data.damaged")).unwrap();
    std::fs::write(dir.path().join("data.salvage.done"), b"").unwrap();
    let storage = Storage::open(&data, &StorageConfig::default()).unwrap();
    assert!(storage.damage_record().unwrap().is_some());
    assert!(!dir.path().join("data.damaged").exists());
    assert!(!dir.path().join("data.salvage.done").exists());
    assert!(storage.scan(TokenRange::full()).all(|item| item.is_ok()));
}
