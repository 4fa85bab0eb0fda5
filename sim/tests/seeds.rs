//! The simulator in CI: one seed replays byte for byte, and a budget of
//! seeds (`RINGDB_SIM_SEEDS`, default below; `RINGDB_SIM_FIRST` the first)
//! keeps every promise. A failing seed prints the command that replays it
//! and writes its history.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringdb_sim::{Options, Report, run};

/// Seeds per CI run: a thousand, each with every fault and topology
/// change (about 12 minutes on two cores).
const CI_SEEDS: u64 = 1_000;

#[test]
fn one_seed_replays_byte_for_byte() {
    let first = run(&Options::new(7));
    let second = run(&Options::new(7));
    assert!(!first.history.events.is_empty());
    assert!(first.checked.acknowledged_writes > 0, "the clients wrote");
    assert_eq!(first.history.to_text(), second.history.to_text());
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn every_seed_of_the_ci_budget_keeps_every_promise() {
    let seeds = env("RINGDB_SIM_SEEDS", CI_SEEDS);
    let first = env("RINGDB_SIM_FIRST", 1);
    let next = AtomicU64::new(first);
    let reports: Mutex<Vec<Report>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + seeds {
                        break;
                    }
                    let report = run(&Options::new(seed));
                    let mut kept = report.clone();
                    if report.passed() {
                        kept.history.events.clear();
                    }
                    reports.lock().unwrap().push(kept);
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let reports = reports.into_inner().unwrap();
    summarize(&reports, elapsed);
    let failed: Vec<&Report> = reports.iter().filter(|r| !r.passed()).collect();
    for report in &failed {
        let path = std::env::temp_dir().join(format!("ringdb-sim-{}.history", report.seed));
        std::fs::write(&path, report.history.to_text()).unwrap();
        eprintln!(
            "seed {} failed: {:#?}\n  replay: ringdb sim --seed {}\n  history: {}",
            report.seed,
            report.violations,
            report.seed,
            path.display()
        );
    }
    assert!(
        failed.is_empty(),
        "{} of {seeds} seeds failed",
        failed.len()
    );
}

fn summarize(reports: &[Report], elapsed: Duration) {
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut simulated, mut writes, mut reads, mut lost) = (Duration::ZERO, 0, 0, 0);
    let mut converge = Vec::new();
    for report in reports {
        for (kind, count) in &report.faults {
            *faults.entry(kind).or_default() += count;
        }
        simulated += report.simulated;
        writes += report.checked.acknowledged_writes;
        reads += report.checked.reads;
        lost += report.lost_unsynced;
        converge.extend(report.converged_after);
    }
    converge.sort();
    let median = converge
        .get(converge.len() / 2)
        .copied()
        .unwrap_or_default();
    eprintln!(
        "{} seeds in {elapsed:.1?} ({:.2} seeds/s), {:.1} simulated hours; \
         {writes} acknowledged writes and {reads} reads checked; \
         {lost} unsynced writes lost to crashes; median convergence after heal {median:?}",
        reports.len(),
        reports.len() as f64 / elapsed.as_secs_f64(),
        simulated.as_secs_f64() / 3600.0,
    );
    eprintln!("faults injected: {faults:?}");
}
