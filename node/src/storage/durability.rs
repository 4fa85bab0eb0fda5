//! When a write is durable: the sync modes of DESIGN.md "Durability".
//!
//! Every write goes to RocksDB's write-ahead log before it is acknowledged, so
//! a process crash (kill -9) loses nothing in any mode: the log is in the
//! operating system's page cache. The modes differ on a *machine* crash:
//!
//! - `always`: the log is fsynced before the write returns. RocksDB groups
//!   concurrent synced writes behind one leader, so concurrent writers share
//!   fsyncs. Loses nothing.
//! - `group`: writes return once a background syncer has fsynced the log past
//!   them; it syncs at most once per window, so a write waits up to one window
//!   plus one fsync, and many writes share each fsync. Loses nothing.
//! - `periodic`: writes return at once; the log is fsynced every interval.
//!   A machine crash loses up to one interval of acknowledged writes.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rocksdb::DB;
use serde::{Deserialize, Serialize};

/// How writes reach the disk before they are acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// fsync before every acknowledgement (concurrent writes share fsyncs).
    Always,
    /// Acknowledge after the next group fsync, at most one per window.
    Group {
        /// The shortest time between two fsyncs, in milliseconds.
        window_ms: u64,
    },
    /// Acknowledge at once; fsync every interval (the loss window on a machine crash).
    Periodic {
        /// Time between fsyncs, in milliseconds.
        interval_ms: u64,
    },
}

impl Default for SyncMode {
    /// Cassandra's default: periodic, every 10 seconds.
    fn default() -> SyncMode {
        SyncMode::Periodic {
            interval_ms: 10_000,
        }
    }
}

#[derive(Default)]
struct SyncState {
    /// Every write with a sequence number ≤ this is on disk.
    synced: u64,
    /// The highest sequence number a writer waits for.
    wanted: u64,
    stopping: bool,
}

/// The background syncer of the `group` and `periodic` modes.
pub(crate) struct Syncer {
    shared: Arc<(Mutex<SyncState>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    mode: SyncMode,
}

impl Syncer {
    pub(crate) fn start(db: Arc<DB>, mode: SyncMode) -> Syncer {
        let shared = Arc::new((Mutex::new(SyncState::default()), Condvar::new()));
        let period = match mode {
            SyncMode::Always => None,
            SyncMode::Group { window_ms } => Some(Duration::from_millis(window_ms)),
            SyncMode::Periodic { interval_ms } => Some(Duration::from_millis(interval_ms)),
        };
        let thread = period.map(|period| {
            let shared = shared.clone();
            let on_demand = matches!(mode, SyncMode::Group { .. });
            std::thread::Builder::new()
                .name("ringdb-wal-sync".into())
                .spawn(move || sync_loop(&db, &shared, period, on_demand))
                .expect("spawn the WAL sync thread")
        });
        Syncer {
            shared,
            thread,
            mode,
        }
    }

    /// Whether each write must be fsynced by RocksDB itself.
    /// Whether a write waits for an fsync before it returns.
    pub(crate) fn writes_wait_for_disk(&self) -> bool {
        !matches!(self.mode, SyncMode::Periodic { .. })
    }

    pub(crate) fn sync_each_write(&self) -> bool {
        self.mode == SyncMode::Always
    }

    /// Blocks until the write with sequence number `sequence` is as durable as
    /// the mode promises.
    pub(crate) fn wait(&self, sequence: u64) {
        if !matches!(self.mode, SyncMode::Group { .. }) {
            return;
        }
        let (lock, condvar) = &*self.shared;
        let mut state = lock.lock().expect("sync state lock");
        state.wanted = state.wanted.max(sequence);
        condvar.notify_all();
        while state.synced < sequence && !state.stopping {
            state = condvar.wait(state).expect("sync state lock");
        }
    }
}

fn sync_loop(db: &DB, shared: &(Mutex<SyncState>, Condvar), period: Duration, on_demand: bool) {
    let (lock, condvar) = shared;
    let mut last_sync = Instant::now();
    loop {
        let mut state = lock.lock().expect("sync state lock");
        // Wait for a reason to sync (a waiting writer, or the period in
        // periodic mode) and for the window since the last sync to pass.
        loop {
            if state.stopping {
                return;
            }
            let due = last_sync + period;
            let now = Instant::now();
            let work = !on_demand || state.wanted > state.synced;
            if work && now >= due {
                break;
            }
            let wait = if work { due - now } else { period };
            state = condvar
                .wait_timeout(state, wait)
                .expect("sync state lock")
                .0;
        }
        drop(state);
        let target = db.latest_sequence_number();
        last_sync = Instant::now();
        if let Err(error) = db.flush_wal(true) {
            tracing::error!(%error, "WAL fsync failed; retrying next period");
            continue;
        }
        let mut state = lock.lock().expect("sync state lock");
        state.synced = state.synced.max(target);
        condvar.notify_all();
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        let (lock, condvar) = &*self.shared;
        lock.lock().expect("sync state lock").stopping = true;
        condvar.notify_all();
        if let Some(thread) = self.thread.take() {
            // A panicked syncer has nothing left to flush; the final WAL flush
            // happens in Storage::drop either way.
            let _ = thread.join();
        }
    }
}
