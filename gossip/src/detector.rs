//! The phi-accrual failure detector (Hayashibara, Défago, Yared and
//! Katayama, "The φ Accrual Failure Detector", SRDS 2004).
//!
//! Instead of a yes/no verdict after a fixed timeout, the detector says how
//! suspicious the silence is: φ = −log₁₀ P(the next heartbeat arrives later
//! than now), where the distribution of inter-arrival times is estimated from
//! the last [`WINDOW`] arrivals. φ = 8 means: if the node were alive, a
//! silence this long would happen once in 10⁸ intervals.
//!
//! As in the paper, the intervals are modelled as a normal distribution. As
//! in Akka (not Cassandra, which uses an exponential distribution and needs
//! ~18 s to convict at φ = 8 with one-second gossip), two settings keep it
//! from being too eager:
//!
//! - the standard deviation is at least [`DetectorConfig::min_std_deviation_ms`],
//!   so a node that gossiped like clockwork is not convicted after a
//!   few milliseconds of jitter;
//! - [`DetectorConfig::acceptable_pause_ms`] is added to the mean, the pause
//!   (a GC, a busy machine, a lost gossip round) that is not yet suspicious.
//!
//! Intervals longer than [`DetectorConfig::max_interval_ms`] are not learned
//! from (as in Cassandra), so an outage does not teach the detector that long
//! silences are normal.
//!
//! With heartbeats every second, 200 ms minimum deviation and a 1 s
//! acceptable pause, φ crosses 8 about 3 s after the last heartbeat; through
//! gossip relays, where arrivals are irregular, later (see the crate's
//! tests for measured figures).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How many inter-arrival times the detector remembers (Cassandra's
/// default).
pub const WINDOW: usize = 1000;

/// Settings of the failure detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// φ above which a node is considered down. Default 8 (Cassandra's
    /// `phi_convict_threshold`).
    pub phi_threshold: f64,
    /// Smallest standard deviation of inter-arrival times used, in
    /// milliseconds. Default 200.
    pub min_std_deviation_ms: u64,
    /// Silence added to the mean interval before it becomes suspicious, in
    /// milliseconds. Default 1000.
    pub acceptable_pause_ms: u64,
    /// The interval assumed before the first two heartbeats, in
    /// milliseconds. Default 1000 (the gossip interval).
    pub first_interval_ms: u64,
    /// Intervals longer than this, in milliseconds, are not learned from: a
    /// node that was down or partitioned for a minute must not teach the
    /// detector that minutes of silence are normal. Default 5000
    /// (Cassandra uses 2 s, which in a simulated 100-node cluster convicted live nodes hundreds of times a minute: relayed heartbeats arrive more than 2 s apart).
    pub max_interval_ms: u64,
}

impl Default for DetectorConfig {
    fn default() -> DetectorConfig {
        DetectorConfig {
            phi_threshold: 8.0,
            min_std_deviation_ms: 200,
            acceptable_pause_ms: 1000,
            first_interval_ms: 1000,
            max_interval_ms: 5000,
        }
    }
}

impl DetectorConfig {
    /// Checks that the settings make sense.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.phi_threshold.is_finite() && self.phi_threshold > 0.0) {
            return Err("phi_threshold must be a positive number".into());
        }
        if self.min_std_deviation_ms == 0 || self.first_interval_ms == 0 {
            return Err("min_std_deviation_ms and first_interval_ms must be at least 1".into());
        }
        Ok(())
    }

    fn min_std_deviation(&self) -> Duration {
        Duration::from_millis(self.min_std_deviation_ms)
    }

    fn acceptable_pause(&self) -> Duration {
        Duration::from_millis(self.acceptable_pause_ms)
    }
}

/// The heartbeat arrivals of one node.
#[derive(Clone, Debug)]
pub struct ArrivalWindow {
    last: Option<Instant>,
    /// Inter-arrival times in milliseconds, newest last.
    intervals: VecDeque<f64>,
    sum: f64,
    sum_of_squares: f64,
}

impl ArrivalWindow {
    /// A window with no arrivals yet, seeded with the assumed first interval.
    pub fn new(config: &DetectorConfig) -> ArrivalWindow {
        let mut window = ArrivalWindow {
            last: None,
            intervals: VecDeque::new(),
            sum: 0.0,
            sum_of_squares: 0.0,
        };
        // Two samples around the first estimate, so the deviation starts at
        // a quarter of it (Akka's choice) rather than at zero.
        let first = config.first_interval_ms as f64;
        window.push(first - first / 4.0);
        window.push(first + first / 4.0);
        window
    }

    fn push(&mut self, interval_ms: f64) {
        if self.intervals.len() == WINDOW
            && let Some(old) = self.intervals.pop_front()
        {
            self.sum -= old;
            self.sum_of_squares -= old * old;
        }
        self.intervals.push_back(interval_ms);
        self.sum += interval_ms;
        self.sum_of_squares += interval_ms * interval_ms;
    }

    /// Records a heartbeat arriving at `now`.
    pub fn heartbeat(&mut self, now: Instant, config: &DetectorConfig) {
        if let Some(last) = self.last {
            let interval = now.saturating_duration_since(last);
            if interval <= Duration::from_millis(config.max_interval_ms) {
                self.push(interval.as_secs_f64() * 1000.0);
            }
        }
        self.last = Some(now);
    }

    /// Takes a silence that ends at `now` as this node's own (it was paused
    /// and could not hear): the silence starts again from `now`, and no
    /// interval is recorded.
    pub fn forgive(&mut self, now: Instant) {
        if self.last.is_some() {
            self.last = Some(now);
        }
    }

    /// The time of the last heartbeat, if any arrived.
    pub fn last(&self) -> Option<Instant> {
        self.last
    }

    /// φ at `now`: 0 before the first heartbeat, then growing with the
    /// silence since the last one.
    pub fn phi(&self, now: Instant, config: &DetectorConfig) -> f64 {
        let Some(last) = self.last else {
            return 0.0;
        };
        let n = self.intervals.len() as f64;
        let mean = self.sum / n;
        let variance = (self.sum_of_squares / n - mean * mean).max(0.0);
        let min_std = config.min_std_deviation().as_secs_f64() * 1000.0;
        let std_deviation = variance.sqrt().max(min_std);
        let mean = mean + config.acceptable_pause().as_secs_f64() * 1000.0;
        let silence = now.saturating_duration_since(last).as_secs_f64() * 1000.0;
        phi(silence, mean, std_deviation)
    }
}

/// −log₁₀ of the probability that a normal variable of `mean` and
/// `std_deviation` exceeds `silence`.
///
/// The normal tail uses the logistic approximation of the cumulative
/// distribution, Φ(y) ≈ 1 / (1 + e^(−y(1.5976 + 0.070566 y²))) (Bowling et
/// al., "A logistic approximation to the cumulative normal distribution",
/// 2009), whose error is below 1.4·10⁻⁴ and which, unlike `erfc`, needs no
/// special function.
pub fn phi(silence: f64, mean: f64, std_deviation: f64) -> f64 {
    let y = (silence - mean) / std_deviation;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    // P(later) = 1 − Φ(y) = e / (1 + e); computed in the form that keeps
    // precision on each side of the mean.
    let later = if silence > mean {
        e / (1.0 + e)
    } else {
        1.0 - 1.0 / (1.0 + e)
    };
    if later <= 0.0 {
        // Past double precision: as suspicious as it gets.
        return f64::MAX;
    }
    -later.log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_grows_with_silence_and_crosses_the_threshold_after_the_pause() {
        let config = DetectorConfig::default();
        let start = Instant::now();
        let mut window = ArrivalWindow::new(&config);
        for i in 0..20 {
            window.heartbeat(start + Duration::from_secs(i), &config);
        }
        let last = start + Duration::from_secs(19);
        let at = |ms: u64| window.phi(last + Duration::from_millis(ms), &config);
        assert!(at(0) < 0.01, "no silence, no suspicion: {}", at(0));
        assert!(at(1000) < 1.0, "one ordinary interval: {}", at(1000));
        assert!(at(2500) < config.phi_threshold);
        let mut previous = 0.0;
        for ms in (0..10_000).step_by(100) {
            assert!(at(ms) >= previous, "phi must not fall as silence grows");
            previous = at(ms);
        }
        // Mean 1 s + 1 s pause, deviation 200 ms: φ = 8 at about 2 s + 5.3σ.
        assert!(at(2900) < config.phi_threshold, "{}", at(2900));
        assert!(at(3200) > config.phi_threshold, "{}", at(3200));
    }

    #[test]
    fn irregular_heartbeats_widen_the_distribution() {
        let config = DetectorConfig::default();
        let start = Instant::now();
        let mut steady = ArrivalWindow::new(&config);
        let mut jittery = ArrivalWindow::new(&config);
        let mut t = Duration::ZERO;
        let mut u = Duration::ZERO;
        for i in 0..100u64 {
            t += Duration::from_millis(1000);
            u += Duration::from_millis(if i % 2 == 0 { 200 } else { 1800 });
            steady.heartbeat(start + t, &config);
            jittery.heartbeat(start + u, &config);
        }
        let later = Duration::from_millis(4000);
        assert!(
            jittery.phi(start + u + later, &config) < steady.phi(start + t + later, &config),
            "the same silence is less suspicious after irregular heartbeats"
        );
    }

    #[test]
    fn the_window_forgets_old_intervals() {
        let config = DetectorConfig::default();
        let start = Instant::now();
        let mut window = ArrivalWindow::new(&config);
        let mut t = Duration::ZERO;
        for _ in 0..WINDOW {
            t += Duration::from_millis(1500);
            window.heartbeat(start + t, &config);
        }
        for _ in 0..WINDOW {
            t += Duration::from_millis(500);
            window.heartbeat(start + t, &config);
        }
        assert_eq!(window.intervals.len(), WINDOW);
        let mean = window.sum / WINDOW as f64;
        assert!((mean - 500.0).abs() < 1.0, "mean {mean}");
    }
}
