//! Storage benchmark: ringdb's row writes and reads against raw RocksDB in the
//! same run, and the atomic read-modify-write (striped locks) against RocksDB's
//! optimistic transactions.
//!
//! `cargo bench -p ringdb-node --bench storage [-- ROWS]` (default 100,000 rows).
//! Every store writes without fsync (the WAL is written, not synced), so the
//! figures compare the code paths, not the disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringdb_node::storage::{RowKey, RowLimits, RowVersion, Storage, StorageConfig, SyncMode};
use ringdb_proto::{ClusteringKey, PartitionKey, Row, TableId, Value};
use ringdb_ring::NodeId;
use rocksdb::{DB, OptimisticTransactionDB, Options};

struct Outcome {
    name: String,
    ops: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Outcome {
    fn ops_per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `op(thread, i)` for i in 0..ops on `threads` threads, timing each call.
fn measure(name: &str, threads: u64, ops: u64, op: impl Fn(u64, u64) + Sync) -> Outcome {
    let start = Instant::now();
    let histograms: Vec<Histogram<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let op = &op;
                scope.spawn(move || {
                    let mut latency =
                        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
                    for i in (thread..ops).step_by(threads as usize) {
                        let t = Instant::now();
                        op(thread, i);
                        latency
                            .record(t.elapsed().as_nanos().max(1) as u64)
                            .unwrap();
                    }
                    latency
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    for h in histograms {
        latency.add(h).unwrap();
    }
    Outcome {
        name: name.to_string(),
        ops,
        elapsed,
        latency,
    }
}

fn key(i: u64) -> RowKey {
    RowKey::new(
        TableId(1),
        PartitionKey::new(format!("user{i:08}")).unwrap(),
        ClusteringKey::empty(),
    )
}

fn version(i: u64) -> RowVersion {
    let row = Row::from([
        ("name".to_string(), Value::Text(format!("name of user {i}"))),
        ("payload".to_string(), Value::Blob(vec![i as u8; 64])),
    ]);
    RowVersion {
        timestamp_micros: i as i64,
        row: Some(row),
    }
}

fn raw_options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    options
}

fn main() {
    let rows: u64 = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(100_000);
    let config = StorageConfig {
        sync: SyncMode::Periodic {
            interval_ms: 10_000,
        },
    };
    let keys: Vec<Vec<u8>> = (0..rows).map(|i| key(i).encode()).collect();
    // The raw store writes a value of the size ringdb stores for the same row.
    let sample = {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), &config).unwrap();
        let node = NodeId::new("bench");
        let written = storage
            .write(&key(0), None, &node, (version(0), false), RowLimits::NONE)
            .unwrap();
        written.encoded.len()
    };
    let raw_value = vec![7u8; sample];
    let mut outcomes = Vec::new();

    for threads in [1, 2] {
        let raw_dir = tempfile::tempdir().unwrap();
        let raw = DB::open(&raw_options(), raw_dir.path()).unwrap();
        outcomes.push(measure(
            &format!("raw rocksdb put, {threads} thread(s)"),
            threads,
            rows,
            |_, i| {
                raw.put(&keys[i as usize], &raw_value).unwrap();
            },
        ));
        outcomes.push(measure(
            &format!("raw rocksdb get, {threads} thread(s)"),
            threads,
            rows,
            |_, i| {
                assert!(raw.get_pinned(&keys[i as usize]).unwrap().is_some());
            },
        ));

        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path(), &config).unwrap());
        let node = NodeId::new("bench");
        outcomes.push(measure(
            &format!("ringdb write (read-modify-write), {threads} thread(s)"),
            threads,
            rows,
            |_, i| {
                storage
                    .write(&key(i), None, &node, (version(i), false), RowLimits::NONE)
                    .unwrap();
            },
        ));
        outcomes.push(measure(
            &format!("ringdb get (decode siblings), {threads} thread(s)"),
            threads,
            rows,
            |_, i| {
                assert!(storage.get(&key(i)).unwrap().is_some());
            },
        ));

        // Read-modify-write of a small hot set (contention) both ways.
        let hot = 1024;
        outcomes.push(measure(
            &format!("ringdb update, 1024 hot rows, {threads} thread(s)"),
            threads,
            rows,
            |_, i| {
                let k = key(i % hot);
                storage
                    .write(&k, None, &node, (version(i), false), RowLimits::NONE)
                    .unwrap();
            },
        ));
        let txn_dir = tempfile::tempdir().unwrap();
        let txn_db: OptimisticTransactionDB =
            OptimisticTransactionDB::open(&raw_options(), txn_dir.path()).unwrap();
        outcomes.push(measure(
            &format!("raw optimistic txn RMW, 1024 hot rows, {threads} thread(s)"),
            threads,
            rows,
            |_, i| {
                let k = &keys[(i % hot) as usize];
                loop {
                    let txn = txn_db.transaction();
                    let _current = txn.get_for_update(k, true).unwrap();
                    txn.put(k, &raw_value).unwrap();
                    match txn.commit() {
                        Ok(()) => break,
                        Err(e) if e.kind() == rocksdb::ErrorKind::Busy => continue,
                        Err(e) => panic!("commit: {e}"),
                    }
                }
            },
        ));
    }

    println!("\n{rows} rows, value {sample} bytes, no fsync\n");
    println!(
        "{:<56} {:>12} {:>9} {:>9} {:>9}",
        "operation", "ops/s", "p50 µs", "p99 µs", "p99.9 µs"
    );
    for o in &outcomes {
        let q = |p: f64| o.latency.value_at_quantile(p) as f64 / 1000.0;
        println!(
            "{:<56} {:>12.0} {:>9.1} {:>9.1} {:>9.1}",
            o.name,
            o.ops_per_second(),
            q(0.5),
            q(0.99),
            q(0.999)
        );
    }
    println!();
    for chunk in outcomes.chunks(6) {
        let ratio = |a: usize, b: usize| chunk[a].ops_per_second() / chunk[b].ops_per_second();
        println!(
            "{}: write/raw put {:.2}, get/raw get {:.2}, striped RMW/txn RMW {:.2}",
            chunk[0].name.rsplit(", ").next().unwrap(),
            ratio(2, 0),
            ratio(3, 1),
            ratio(4, 5)
        );
    }
}
