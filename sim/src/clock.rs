//! Simulated wall clocks: the run's simulated time, plus a per-node offset
//! that skews it and jumps (forward, or back as NTP may step a clock).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use ringdb_node::world::Clock;
use tokio::time::Instant;

/// Where simulated wall time starts: 2026-01-01T00:00:00Z, in microseconds.
pub const EPOCH_MICROS: i64 = 1_767_225_600_000_000;

/// One node's wall clock.
#[derive(Debug)]
pub struct SimClock {
    start: Instant,
    offset_micros: AtomicI64,
}

impl SimClock {
    /// A clock reading [`EPOCH_MICROS`] at `start` (the run's start),
    /// plus `offset_micros`.
    pub fn new(start: Instant, offset_micros: i64) -> Arc<SimClock> {
        Arc::new(SimClock {
            start,
            offset_micros: AtomicI64::new(offset_micros),
        })
    }

    /// Moves the clock by `micros` (negative: back).
    pub fn jump(&self, micros: i64) {
        self.offset_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// How far the clock is from true simulated time.
    pub fn offset_micros(&self) -> i64 {
        self.offset_micros.load(Ordering::Relaxed)
    }
}

impl Clock for SimClock {
    fn now_micros(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_micros()).unwrap_or(i64::MAX);
        EPOCH_MICROS
            .saturating_add(elapsed)
            .saturating_add(self.offset_micros())
    }
}
