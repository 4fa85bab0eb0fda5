//! The stale-read probe, the workload of the lab's `stale-reads`
//! experiment: each client writes rows no one wrote before, one unique
//! value each, and reads rows other clients wrote, preferring the latest
//! one another node coordinated. With every row written once, a read that
//! misses a write acknowledged before it began is stale beyond doubt: no
//! later write can have superseded it. Clients are pinned to a node each
//! (an application server on one side of a partition), one level per
//! client.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringdb_proto::{ConsistencyLevel, Context};
use tokio::time::Instant;

use crate::history::{Key, Op, Seen};
use crate::workload::{Recorder, Session, Target};

/// The first key number the probe writes, above a run's key base (the
/// other workloads' keys are below it).
pub const FIRST_KEY: u32 = 1_000_000;
/// How many rows one board numbers.
pub const BOARD_KEYS: u32 = 2_000_000;

/// The rows written so far, shared by the clients of one level: the row,
/// and the node whose client wrote it.
pub struct Board {
    next_key: AtomicU32,
    written: Mutex<Vec<(Key, String)>>,
}

impl Board {
    /// An empty board whose rows are numbered from `first` (each level's
    /// board its own range, so that every row is written once).
    pub fn starting_at(first: u32) -> Arc<Board> {
        Arc::new(Board {
            next_key: AtomicU32::new(first),
            written: Mutex::new(Vec::new()),
        })
    }

    fn fresh_key(&self) -> Key {
        Key {
            table: 0,
            key: self.next_key.fetch_add(1, Ordering::Relaxed),
            chain: false,
        }
    }

    /// Every row written and acknowledged so far.
    pub fn keys(&self) -> Vec<Key> {
        let written = self.written.lock().expect("board");
        written.iter().map(|(key, _)| *key).collect()
    }

    /// A row to read from `node`: mostly the latest row another node's
    /// client wrote, else one of the latest few.
    fn pick(&self, node: &str, rng: &mut StdRng) -> Option<Key> {
        let written = self.written.lock().expect("board");
        if rng.random_bool(0.75)
            && let Some((key, _)) = written.iter().rev().find(|(_, by)| by != node)
        {
            return Some(*key);
        }
        let recent = &written[written.len().saturating_sub(20)..];
        if recent.is_empty() {
            return None;
        }
        Some(recent[rng.random_range(0..recent.len())].0)
    }
}

/// One probe client: until `until`, writes a fresh row at `level`, then
/// reads a row from the board at `level`, pausing up to `think` between
/// operations. Every request goes to the target's first contact point.
#[allow(clippy::too_many_arguments)]
pub async fn run_probe_client(
    client: u32,
    seed: u64,
    level: ConsistencyLevel,
    think: Duration,
    board: Arc<Board>,
    target: Arc<dyn Target>,
    recorder: Arc<Recorder>,
    until: Instant,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let node = target
        .contact_points()
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let session = Session {
        client,
        target,
        recorder,
    };
    let pause =
        |rng: &mut StdRng| Duration::from_millis(rng.random_range(0..=think.as_millis() as u64));
    while Instant::now() < until {
        let key = board.fresh_key();
        let put = Op::Put {
            key,
            value: session.recorder.value(),
            consistency: level,
            seen: Seen::Blind,
        };
        if session.run(put, Context::empty(), &mut rng).await.is_some() {
            board
                .written
                .lock()
                .expect("board")
                .push((key, node.clone()));
        }
        tokio::time::sleep(pause(&mut rng)).await;
        if let Some(key) = board.pick(&node, &mut rng) {
            let read_level = match level {
                ConsistencyLevel::Any => ConsistencyLevel::One,
                level => level,
            };
            let get = Op::Get {
                key,
                consistency: read_level,
            };
            session.run(get, Context::empty(), &mut rng).await;
        }
        tokio::time::sleep(pause(&mut rng)).await;
    }
}
