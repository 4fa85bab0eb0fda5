//! Kill -9 test: no acknowledged write is lost when the process dies.
//!
//! The test binary runs itself as a child that writes rows from four threads
//! and prints an acknowledgement line after each write returns. The parent
//! reads the acknowledgements, kills the child with SIGKILL at a random moment
//! mid-stream, reads what was already acknowledged from the pipe, reopens the
//! storage and checks that every acknowledged write is there. Each sync mode
//! is crashed twice in the same directory, so recovery after a crash is itself
//! crashed. (A harness-less test: it must re-execute itself as the child.)

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::Rng;
use ringdb_node::storage::{RowKey, RowLimits, RowVersion, Storage, StorageConfig, SyncMode};
use ringdb_proto::{ClusteringKey, PartitionKey, Row, TableId, Value};
use ringdb_ring::NodeId;

const CHILD_DIR: &str = "RINGDB_CRASH_CHILD_DIR";
const CHILD_MODE: &str = "RINGDB_CRASH_CHILD_MODE";
const CHILD_ROUND: &str = "RINGDB_CRASH_CHILD_ROUND";
const THREADS: u64 = 4;
/// Rows per thread; each write updates row `i % ROWS` to the value `i`.
const ROWS: u64 = 64;

fn key(round: u64, thread: u64, row: u64) -> RowKey {
    let partition = PartitionKey::new(format!("r{round}-t{thread}-{row}")).unwrap();
    RowKey::new(TableId(1), partition, ClusteringKey::empty())
}

fn mode_config(name: &str) -> StorageConfig {
    let sync = match name {
        "always" => SyncMode::Always,
        "group" => SyncMode::Group { window_ms: 2 },
        "periodic" => SyncMode::Periodic { interval_ms: 1000 },
        other => panic!("unknown sync mode {other}"),
    };
    StorageConfig { sync }
}

/// The child: writes until killed (or 200,000 writes per thread), printing
/// `thread value` after each acknowledged write.
fn child(dir: &Path, mode: &str, round: u64) {
    let storage = Storage::open(dir, &mode_config(mode)).unwrap();
    let node = NodeId::new("crash");
    let stdout = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (storage, node, stdout) = (&storage, &node, &stdout);
            scope.spawn(move || {
                for i in 0..200_000u64 {
                    let row = Row::from([("v".to_string(), Value::BigInt(i as i64))]);
                    let version = RowVersion {
                        timestamp_micros: i as i64,
                        row: Some(row),
                    };
                    storage
                        .write(
                            &key(round, thread, i % ROWS),
                            None,
                            node,
                            (version, false),
                            RowLimits::NONE,
                        )
                        .unwrap();
                    let mut out = stdout.lock().unwrap();
                    writeln!(out, "{thread} {i}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

/// One crash: returns how many writes were acknowledged before the kill.
fn crash_once(dir: &Path, mode: &str, round: u64) -> Result<usize, String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_DIR, dir)
        .env(CHILD_MODE, mode)
        .env(CHILD_ROUND, round.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn the child: {e}"))?;
    let (sender, acks) = mpsc::channel::<(u64, u64)>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let (thread, value) = line.split_once(' ').unwrap();
            if sender
                .send((thread.parse().unwrap(), value.parse().unwrap()))
                .is_err()
            {
                break;
            }
        }
    });

    // Wait for the stream to be flowing, then kill at a random moment.
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 50 {
        match acks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(ack) => acked.push(ack),
            Err(_) => return Err(format!("only {} acknowledgements in 60 s", acked.len())),
        }
    }
    let kill_at = Instant::now() + Duration::from_millis(rand::rng().random_range(0..300));
    while let Ok(ack) = acks.recv_timeout(kill_at.saturating_duration_since(Instant::now())) {
        acked.push(ack);
    }
    child.kill().map_err(|e| format!("kill -9: {e}"))?;
    child.wait().map_err(|e| format!("wait: {e}"))?;
    // Lines already in the pipe were acknowledged before the kill.
    reader.join().unwrap();
    acked.extend(acks.try_iter());

    // Every acknowledged write is there: each row holds at least the latest
    // value acknowledged for it (a later, unacknowledged one may have landed).
    let storage = Storage::open(dir, &mode_config(mode)).map_err(|e| format!("reopen: {e}"))?;
    let mut latest = std::collections::BTreeMap::new();
    for &(thread, value) in &acked {
        let entry = latest.entry((thread, value % ROWS)).or_insert(value);
        *entry = (*entry).max(value);
    }
    for (&(thread, row), &value) in &latest {
        let stored = storage
            .get(&key(round, thread, row))
            .map_err(|e| e.to_string())?;
        let found = stored.as_ref().and_then(|s| {
            s.values()
                .filter_map(|v| match v.row.as_ref()?.get("v")? {
                    Value::BigInt(x) => Some(*x as u64),
                    _ => None,
                })
                .max()
        });
        if found.is_none_or(|found| found < value) {
            return Err(format!(
                "{mode}: row t{thread}-{row} acknowledged at value {value}, found {found:?} after kill -9"
            ));
        }
    }
    Ok(acked.len())
}

fn main() {
    if let (Ok(dir), Ok(mode), Ok(round)) = (
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_MODE),
        std::env::var(CHILD_ROUND),
    ) {
        child(Path::new(&dir), &mode, round.parse().unwrap());
        return;
    }
    let mut failures = Vec::new();
    let mut passed = 0;
    for mode in ["always", "group", "periodic"] {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..2 {
            match crash_once(dir.path(), mode, round) {
                Ok(acked) => {
                    passed += 1;
                    println!(
                        "kill -9 in sync mode {mode}, round {round}: all {acked} acknowledged writes present"
                    );
                }
                Err(error) => failures.push(error),
            }
        }
    }
    for failure in &failures {
        eprintln!("FAILED: {failure}");
    }
    println!(
        "test result: {}. {passed} passed; {} failed",
        if failures.is_empty() { "ok" } else { "FAILED" },
        failures.len()
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
