//! The node's seams to the world it runs in: wall time and randomness.
//!
//! The node reads wall time (versions' timestamps, hint windows, tombstone
//! grace, generations) only through a [`Clock`], and draws every random
//! number (storage epochs, tokens of a new cluster, gossip peers, fault
//! dice) from one [`Random`]. In production they are the system clock and
//! a source seeded from the operating system; the simulator gives each node
//! a clock with its own skew and jumps and a source seeded from the run's
//! seed, so that one seed replays a whole cluster exactly. Monotonic time
//! is tokio's, which the simulator pauses and advances. The storage engine
//! ([`crate::storage::Engine`]) and the peer network ([`crate::network`])
//! are the other seams; a node starts in a [`crate::World`] of all four.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;

use rand::{Rng, SeedableRng};

/// Wall time.
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch (0 for a clock set before it).
    fn now_micros(&self) -> i64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock moved by an adjustable skew from another: every node's clock,
/// so that a test harness may move it (`ringdb lab`'s `skew`); no skew
/// until one is set.
pub struct SkewedClock {
    inner: Arc<dyn Clock>,
    skew_micros: AtomicI64,
}

impl SkewedClock {
    /// `inner`, not moved.
    pub fn new(inner: Arc<dyn Clock>) -> SkewedClock {
        SkewedClock {
            inner,
            skew_micros: AtomicI64::new(0),
        }
    }

    /// Moves the clock `skew_micros` from `inner` (negative: behind).
    pub fn set_skew(&self, skew_micros: i64) {
        self.skew_micros.store(skew_micros, Ordering::Relaxed);
    }
}

impl Clock for SkewedClock {
    fn now_micros(&self) -> i64 {
        self.inner
            .now_micros()
            .saturating_add(self.skew_micros.load(Ordering::Relaxed))
            .max(0)
    }
}

/// The node's source of random numbers: seeded, so that a simulated run
/// replays from its seed.
#[derive(Debug)]
pub struct Random {
    rng: Mutex<StdRng>,
}

impl Random {
    /// A source seeded from the operating system (production).
    pub fn from_os() -> Random {
        Random {
            rng: Mutex::new(StdRng::from_os_rng()),
        }
    }

    /// A source that always draws the same numbers for `seed`.
    pub fn seeded(seed: u64) -> Random {
        Random {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// A random 64-bit number.
    pub fn next_u64(&self) -> u64 {
        self.rng.lock().expect("random").random()
    }

    /// True with probability `p` (clamped to 0..=1).
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().expect("random").random_bool(p.min(1.0))
    }
}

impl Default for Random {
    fn default() -> Random {
        Random::from_os()
    }
}
