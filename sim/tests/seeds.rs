//! The simulator in CI: one seed replays byte for byte; a budget of seeds
//! keeps every promise, the first half in the default profile and the
//! second in the purge-heavy one (`RINGDB_SIM_SEEDS`, default below;
//! `RINGDB_SIM_FIRST` the first); and the seeds that found bugs keep
//! finding them fixed. A failing seed prints the command that replays it
//! and writes its history.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ringdb_sim::{Options, Report, run};

/// Seeds per CI run: a thousand, each with every fault and topology
/// change, half of them purge-heavy (about 15 minutes on two cores).
const CI_SEEDS: u64 = 1_000;

/// The workload a seed runs.
#[derive(Clone, Copy)]
enum Profile {
    Default,
    /// `--purges`.
    Purges,
    /// `--statements`.
    Statements,
}

/// Seeds that found bugs, in the profile that found them, replayed in
/// every run.
const FOUND_BUGS: &[(u64, Profile, &str)] = &[
    (
        9560,
        Profile::Purges,
        "a tombstone written during a repair round, by a coordinator whose clock was behind \
         (past the grace at once), was purged before a replica compared earlier had it",
    ),
    (
        61,
        Profile::Default,
        "a wiped node with a clock behind its removed life retired itself",
    ),
    (
        59,
        Profile::Purges,
        "a repair of one table purged the tombstones of every table",
    ),
    (
        382,
        Profile::Purges,
        "removenode restored a range from one survivor: a delete came back",
    ),
    (
        2585,
        Profile::Purges,
        "removenode restored a range from one survivor: a stale read",
    ),
    (
        2640,
        Profile::Purges,
        "a node whose join failed kept rows it took in while pending",
    ),
    (
        2975,
        Profile::Purges,
        "a node whose join failed kept rows it took in while pending",
    ),
    (
        2969,
        Profile::Purges,
        "a node forming a cluster gave up on a source not yet heard from",
    ),
    (
        3654,
        Profile::Purges,
        "a decommission's receiver dropped tombstones past the grace",
    ),
    (
        4207,
        Profile::Purges,
        "a removal that failed once started was not asked again",
    ),
    (
        20022,
        Profile::Statements,
        "removenode gossiped the ring without the dead node before its ranges were copied: \
         a new replica answered a read at ONE without a write acknowledged at ALL",
    ),
];

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

fn options(seed: u64, profile: Profile) -> Options {
    Options {
        purges: matches!(profile, Profile::Purges),
        statements: matches!(profile, Profile::Statements),
        ..Options::new(seed)
    }
}

#[test]
fn every_seed_of_the_ci_budget_keeps_every_promise() {
    let seeds = env("RINGDB_SIM_SEEDS", CI_SEEDS);
    let first = env("RINGDB_SIM_FIRST", 1);
    let purges_from = first + seeds / 2;
    let runs: Vec<Options> = (first..first + seeds)
        .map(|seed| {
            let profile = if seed >= purges_from {
                Profile::Purges
            } else {
                Profile::Default
            };
            options(seed, profile)
        })
        .collect();
    run_all(&runs, &format!("{seeds} seeds"));
}

/// Seeds per CI run with the statement workload too (CQL on a clustering
/// table), from [`STATEMENT_FIRST`], in the default profile.
const STATEMENT_SEEDS: u64 = 100;
const STATEMENT_FIRST: u64 = 20_001;

#[test]
fn every_seed_of_the_statement_budget_keeps_every_promise() {
    let seeds = env("RINGDB_SIM_STATEMENT_SEEDS", STATEMENT_SEEDS);
    let first = env("RINGDB_SIM_STATEMENT_FIRST", STATEMENT_FIRST);
    let runs: Vec<Options> = (first..first + seeds)
        .map(|seed| options(seed, Profile::Statements))
        .collect();
    run_all(&runs, &format!("{seeds} seeds with statements"));
}

#[test]
fn the_seeds_that_found_bugs_keep_every_promise() {
    let runs: Vec<Options> = FOUND_BUGS
        .iter()
        .map(|&(seed, profile, _)| options(seed, profile))
        .collect();
    run_all(&runs, "the seeds that found bugs");
}

/// Runs `runs` on every core, summarizes them, and fails with the replay
/// command and history of each failing one.
fn run_all(runs: &[Options], what: &str) {
    let next = AtomicUsize::new(0);
    let reports: Mutex<Vec<(Report, String)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(options) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let report = run(options);
                    let mut kept = report.clone();
                    if report.passed() {
                        kept.history.events.clear();
                    }
                    let mut flags = String::new();
                    if options.purges {
                        flags.push_str(" --purges");
                    }
                    if options.statements {
                        flags.push_str(" --statements");
                    }
                    reports.lock().unwrap().push((kept, flags));
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let reports = reports.into_inner().unwrap();
    let all: Vec<Report> = reports.iter().map(|(report, _)| report.clone()).collect();
    summarize(&all, elapsed);
    let failed: Vec<&(Report, String)> = reports.iter().filter(|(r, _)| !r.passed()).collect();
    for (report, flag) in &failed {
        let profile = flag.replace(" --", "-");
        let path =
            std::env::temp_dir().join(format!("ringdb-sim-{}{profile}.history", report.seed));
        std::fs::write(&path, report.history.to_text()).unwrap();
        eprintln!(
            "seed {} failed: {:#?}\n  replay: ringdb sim --seed {}{flag}\n  history: {}",
            report.seed,
            report.violations,
            report.seed,
            path.display()
        );
    }
    assert!(failed.is_empty(), "{} of {what} failed", failed.len());
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
