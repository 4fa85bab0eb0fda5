//! `ringdb sim`: whole clusters in this process on a simulated network,
//! clock and disk, one seed at a time (see the `ringdb-sim` crate).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringdb_sim::{Options, Report, run};

/// The arguments of `ringdb sim`.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Run this one seed and print what it did (a failing seed replays
    /// exactly); its history is written with --history-dir.
    #[arg(long)]
    seed: Option<u64>,
    /// How many seeds to run, from --first, on every core.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Where to write the history of each failing seed (and of --seed), as
    /// `ringdb-sim-<seed>.history`: one JSON event per line.
    #[arg(long)]
    history_dir: Option<PathBuf>,
    /// Leave the ring alone: no node joins, is decommissioned or dies for
    /// good and is removed while the other faults run.
    #[arg(long)]
    no_topology: bool,

    /// The purge-heavy profile: four cycle rows per client, one delete in
    /// three for the rest of the run, resting rows read, hinted handoff
    /// off in half the runs, and in half of them background anti-entropy
    /// every 600 s with an operator's repair schedule instead
    #[arg(long)]
    purges: bool,

    /// Clients also run CQL statements on a table with a clustering column
    /// (inserts, slice reads in either order, range deletes), checked as
    /// the key-value rows are
    #[arg(long)]
    statements: bool,
}

impl SimArgs {
    fn options(&self, seed: u64) -> Options {
        Options {
            topology: !self.no_topology,
            purges: self.purges,
            statements: self.statements,
            ..Options::new(seed)
        }
    }

    fn replay(&self, seed: u64) -> String {
        let topology = if self.no_topology {
            " --no-topology"
        } else {
            ""
        };
        let purges = if self.purges { " --purges" } else { "" };
        let statements = if self.statements { " --statements" } else { "" };
        format!("ringdb sim --seed {seed}{topology}{purges}{statements}")
    }
}

/// Runs the seeds; fails if any broke a promise.
pub fn run_seeds(args: &SimArgs) -> anyhow::Result<ExitCode> {
    if let Some(seed) = args.seed {
        let report = run(&args.options(seed));
        print_report(&report);
        write_history(args, &report)?;
        return Ok(exit(report.passed()));
    }
    let next = AtomicU64::new(args.first);
    let end = args.first.saturating_add(args.seeds);
    let reports = Mutex::new(Vec::new());
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let mut report = run(&args.options(seed));
                    if !report.passed() {
                        println!("seed {seed} FAILED: replay with `{}`", args.replay(seed));
                        for violation in &report.violations {
                            println!("  {violation}");
                        }
                        if let Err(error) = write_history(args, &report) {
                            println!("  cannot write its history: {error:#}");
                        }
                    }
                    report.history.events.clear();
                    reports.lock().expect("reports").push(report);
                }
            });
        }
    });
    let reports = reports.into_inner().expect("reports");
    summarize(&reports, started.elapsed());
    Ok(exit(reports.iter().all(Report::passed)))
}

fn exit(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn write_history(args: &SimArgs, report: &Report) -> anyhow::Result<()> {
    let Some(dir) = &args.history_dir else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("ringdb-sim-{}.history", report.seed));
    std::fs::write(&path, report.history.to_text())?;
    println!("history written to {}", path.display());
    Ok(())
}

fn print_report(report: &Report) {
    println!(
        "seed {}: {} nodes, {:.1?} simulated, faults {:?}",
        report.seed, report.nodes, report.simulated, report.faults
    );
    println!(
        "  {} acknowledged writes, {} reads, {} failed or unknown; {} unsynced writes lost to \
         crashes; net {:?}",
        report.checked.acknowledged_writes,
        report.checked.reads,
        report.checked.failed,
        report.lost_unsynced,
        report.net
    );
    match report.converged_after {
        Some(after) => println!("  replicas converged {after:.1?} after heal"),
        None => println!("  replicas did not converge"),
    }
    if report.passed() {
        println!("  every promise kept");
    }
    for violation in &report.violations {
        println!("  VIOLATION {violation}");
    }
}

fn summarize(reports: &[Report], elapsed: Duration) {
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut simulated, mut writes, mut reads) = (Duration::ZERO, 0, 0);
    for report in reports {
        for (kind, count) in &report.faults {
            *faults.entry(kind).or_default() += count;
        }
        simulated += report.simulated;
        writes += report.checked.acknowledged_writes;
        reads += report.checked.reads;
    }
    let failed = reports.iter().filter(|r| !r.passed()).count();
    println!(
        "{} seeds in {elapsed:.1?} ({:.2} seeds/s): {:.1} simulated hours, {} faults injected, \
         {writes} acknowledged writes and {reads} reads checked, {failed} seeds with violations",
        reports.len(),
        reports.len() as f64 / elapsed.as_secs_f64(),
        simulated.as_secs_f64() / 3600.0,
        faults.values().sum::<u64>(),
    );
    println!("faults: {faults:?}");
}
