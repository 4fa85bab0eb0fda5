//! `ringdb bench`: a load generator in the manner of cassandra-stress and
//! latte.
//!
//! `--concurrency` workers share one token-aware [`Client`]. Closed loop by
//! default: each worker sends its next request when the last one is
//! answered, so throughput is whatever the cluster sustains. With `--rate`
//! the load is open: operation `i` is due at `start + i / rate`, and its
//! latency is measured from when it was due, not from when a worker got to
//! it, so a stalled cluster shows in the percentiles instead of hiding in a
//! lower send rate (coordinated omission).
//!
//! Every second a progress line reports that second's operations and
//! latencies; the summary reports the whole run: ops/s, latency
//! percentiles from an HDR histogram (1 µs to 60 s, 3 significant digits),
//! and errors by kind. `--json` prints the summary as JSON on stdout (the
//! progress lines go to stderr). Ctrl-C ends a run early with its summary
//! (exit 130); a run in which operations failed exits with 1.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};
use ringdb::client::{
    Client, ClientError, ConsistencyLevel, Context, PartitionKey, RequestError, Row, RowAddress,
    Value,
};
use serde::Serialize;
use tokio::time::Instant;

use super::BadInput;
use super::data::Connection;

/// What the workers do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Write random keys (a value of --value-size random bytes each).
    Write,
    /// Read random keys (run `write` first, or most reads find nothing).
    Read,
    /// Reads and writes of random keys, --read-ratio of them reads.
    Mixed,
}

/// The options of `ringdb bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// What to run: write, read or mixed.
    #[arg(value_enum)]
    pub workload: Workload,
    #[command(flatten)]
    pub connection: Connection,
    /// Consistency level of every request.
    #[arg(long, short = 'c', default_value = "QUORUM")]
    pub consistency: ConsistencyLevel,
    /// Requests in flight at once (one worker each).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long to run (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Size of the key space: keys are bench0 … bench(N-1), chosen uniformly.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Bytes of each written value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Share of reads in the mixed workload (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,
    /// Total operations per second across all workers (open loop); without
    /// it, as fast as the cluster answers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Take the keys in order, bench0 to bench(N-1), once each, and stop
    /// when they are done (or at --duration): fills a key space, as
    /// cassandra-stress's `-pop seq=1..N`.
    #[arg(long)]
    pub sequential: bool,
    /// The table written and read.
    #[arg(long, default_value = "bench")]
    pub table: String,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The kinds an operation can end with, in the order they are reported.
const OUTCOMES: [&str; 13] = [
    "unavailable",
    "timeout",
    "client_timeout",
    "overloaded",
    "invalid",
    "no_connection",
    "connection_lost",
    "server",
    "damaged_data",
    "unexpected_reply",
    "config",
    "socket",
    "bad_topology",
];

fn outcome(error: &ClientError) -> &'static str {
    match error {
        ClientError::Request(
            RequestError::Unavailable { .. }
            | RequestError::UnreachableContext { .. }
            | RequestError::NotAReplica { .. },
        ) => "unavailable",
        ClientError::Request(RequestError::Timeout { .. }) => "timeout",
        ClientError::Request(RequestError::Overloaded { .. }) => "overloaded",
        // A client is never refused for its cluster settings (nodes are).
        ClientError::Request(
            RequestError::InvalidRequest { .. }
            | RequestError::SettingsMismatch { .. }
            | RequestError::InvalidStatement { .. }
            | RequestError::AlreadyExists { .. }
            | RequestError::Unprepared { .. },
        )
        | ClientError::Bind(_) => "invalid",
        ClientError::Request(RequestError::Server { .. }) => "server",
        ClientError::Request(RequestError::DamagedData { .. }) => "damaged_data",
        ClientError::Timeout { .. } => "client_timeout",
        ClientError::NoConnection { .. } => "no_connection",
        ClientError::ConnectionLost { .. } => "connection_lost",
        ClientError::UnexpectedReply(_) => "unexpected_reply",
        ClientError::Config(_) => "config",
        ClientError::Socket(_) => "socket",
        ClientError::BadTopology { .. } => "bad_topology",
        ClientError::ValueTooLarge { .. } => "invalid",
        ClientError::UntrustedNode { .. } => "config",
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
}

/// Latencies and counts of one kind of operation over some interval.
#[derive(Clone)]
struct Stats {
    /// Latencies of successful operations, in microseconds.
    latency: Histogram<u64>,
    /// Failed operations by kind.
    errors: BTreeMap<&'static str, u64>,
    /// Reads that found no row.
    not_found: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            errors: BTreeMap::new(),
            not_found: 0,
        }
    }

    fn add(&mut self, other: &Stats) {
        self.latency
            .add(&other.latency)
            .expect("histograms of the same bounds");
        for (kind, n) in &other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.not_found += other.not_found;
    }

    fn operations(&self) -> u64 {
        self.latency.len() + self.errors.values().sum::<u64>()
    }
}

/// What the workers record into; the reporter takes it every second.
struct Interval {
    reads: Stats,
    writes: Stats,
}

impl Interval {
    fn new() -> Interval {
        Interval {
            reads: Stats::new(),
            writes: Stats::new(),
        }
    }

    fn record(&mut self, op: Op, latency: Duration, result: Result<bool, &ClientError>) {
        let stats = match op {
            Op::Read => &mut self.reads,
            Op::Write => &mut self.writes,
        };
        match result {
            Ok(found) => {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                stats.latency.saturating_record(micros.max(1));
                if !found {
                    stats.not_found += 1;
                }
            }
            Err(error) => *stats.errors.entry(outcome(error)).or_default() += 1,
        }
    }
}

/// Why the arguments cannot make a run, if they cannot.
fn check(args: &BenchArgs) -> Result<(), BadInput> {
    let refusal = if args.concurrency == 0 {
        "--concurrency must be at least 1"
    } else if args.keys == 0 {
        "--keys must be at least 1"
    } else if !(0.0..=1.0).contains(&args.read_ratio) {
        "--read-ratio must be between 0 and 1"
    } else if args
        .rate
        .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
    {
        "--rate must be a positive number of operations per second"
    } else if args.duration.is_zero() {
        "--duration must be more than zero"
    } else {
        return Ok(());
    };
    Err(BadInput(refusal.into()))
}

/// Runs the benchmark and prints its report. Exits with 0 when every
/// operation succeeded, 1 when some failed, 130 when interrupted (Ctrl-C
/// stops the run early, and the summary covers what ran).
pub async fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    check(args)?;
    let client = Client::connect(args.connection.config()?)
        .await
        .context("cannot connect to the cluster")?;
    // A request the cluster refuses outright (a bad table name) would fail
    // every operation: refuse it once, here.
    let probe = RowAddress::new(args.table.clone(), PartitionKey::new(b"bench0".to_vec())?);
    if let Err(error @ ClientError::Request(RequestError::InvalidRequest { .. })) =
        client.get(&probe, args.consistency).await
    {
        bail!("{error}");
    }
    let client = Arc::new(client);
    let read_share = match args.workload {
        Workload::Write => 0.0,
        Workload::Read => 1.0,
        Workload::Mixed => args.read_ratio,
    };
    say!(
        "ringdb bench {}: {}, concurrency {}, {}, {} keys, {}-byte values{}{}",
        format!("{:?}", args.workload).to_lowercase(),
        args.consistency,
        args.concurrency,
        humantime::format_duration(args.duration),
        args.keys,
        args.value_size,
        if args.workload == Workload::Mixed {
            format!(", {:.0}% reads", read_share * 100.0)
        } else {
            String::new()
        },
        args.rate
            .map(|rate| format!(", {rate} ops/s target"))
            .unwrap_or_default(),
    );

    let interval = Arc::new(Mutex::new(Interval::new()));
    let next_op = Arc::new(AtomicU64::new(0));
    let next_key = args.sequential.then(|| Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let end = start + args.duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.concurrency {
        let worker = Worker {
            client: client.clone(),
            interval: interval.clone(),
            next_op: next_op.clone(),
            next_key: next_key.clone(),
            rng: SmallRng::seed_from_u64(rand::rng().random::<u64>() ^ worker as u64),
            table: args.table.clone(),
            keys: args.keys,
            value_size: args.value_size,
            read_share,
            consistency: args.consistency,
            rate: args.rate,
            start,
            end,
        };
        workers.spawn(worker.run());
    }

    let mut total = Interval::new();
    let mut ticker =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = start;
    print_progress_header(args.workload);
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    let mut interrupted = false;
    loop {
        let finished = tokio::select! {
            _ = ticker.tick() => false,
            _ = async { while workers.join_next().await.is_some() {} } => true,
            _ = &mut interrupt, if !interrupted => {
                interrupted = true;
                false
            }
        };
        if interrupted && !workers.is_empty() {
            // Requests in flight are dropped, uncounted.
            workers.shutdown().await;
        }
        let finished = finished || interrupted;
        let now = Instant::now();
        let taken = std::mem::replace(&mut *interval.lock().expect("interval"), Interval::new());
        // The tail after the last full second (requests in flight at the
        // end) is too short for a rate; it still counts in the summary.
        if !finished || now - last >= Duration::from_millis(500) {
            print_progress(now - start, now - last, &taken, args.workload);
        }
        total.reads.add(&taken.reads);
        total.writes.add(&taken.writes);
        last = now;
        if finished {
            break;
        }
    }
    let elapsed = last - start;
    let report = Report::new(args, elapsed, &total);
    if args.json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    if args.workload != Workload::Write && total.reads.not_found > total.reads.latency.len() / 2 {
        say!(
            "note: most reads found no row; fill the key space first with \
             `ringdb bench write --keys {}`",
            args.keys
        );
    }
    let operations = total.reads.operations() + total.writes.operations();
    let failed: u64 = (total.reads.errors.values())
        .chain(total.writes.errors.values())
        .sum();
    if interrupted {
        say!("interrupted after {:.1} s", elapsed.as_secs_f64());
        return Ok(ExitCode::from(130));
    }
    if failed > 0 {
        say!("{failed} of {operations} operations failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

struct Worker {
    client: Arc<Client>,
    interval: Arc<Mutex<Interval>>,
    next_op: Arc<AtomicU64>,
    /// With --sequential: the next key to take.
    next_key: Option<Arc<AtomicU64>>,
    rng: SmallRng,
    table: String,
    keys: u64,
    value_size: usize,
    read_share: f64,
    consistency: ConsistencyLevel,
    rate: Option<f64>,
    start: Instant,
    end: Instant,
}

impl Worker {
    async fn run(mut self) {
        let mut value = vec![0u8; self.value_size];
        loop {
            // With a rate, operation i is due at start + i / rate and its
            // latency counts from then.
            let due = match self.rate {
                Some(rate) => {
                    let i = self.next_op.fetch_add(1, Ordering::Relaxed);
                    let due = self.start + Duration::from_secs_f64(i as f64 / rate);
                    if due >= self.end {
                        return;
                    }
                    tokio::time::sleep_until(due).await;
                    due
                }
                None => {
                    let now = Instant::now();
                    if now >= self.end {
                        return;
                    }
                    now
                }
            };
            let index = match &self.next_key {
                Some(next) => {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= self.keys {
                        return;
                    }
                    index
                }
                None => self.rng.random_range(0..self.keys),
            };
            let key = format!("bench{index}");
            let row = RowAddress::new(
                self.table.clone(),
                PartitionKey::new(key.into_bytes()).expect("a short key"),
            );
            let op = if self.rng.random_bool(self.read_share) {
                Op::Read
            } else {
                Op::Write
            };
            let result = match op {
                Op::Read => self
                    .client
                    .get(&row, self.consistency)
                    .await
                    .map(|read| !read.siblings.is_empty()),
                Op::Write => {
                    self.rng.fill_bytes(&mut value);
                    let columns = Row::from([("value".to_string(), Value::Blob(value.clone()))]);
                    self.client
                        .put(&row, columns, Context::empty(), self.consistency)
                        .await
                        .map(|_| true)
                }
            };
            let latency = due.elapsed();
            self.interval.lock().expect("interval").record(
                op,
                latency,
                result.as_ref().map(|found| *found),
            );
        }
    }
}

fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn print_progress_header(workload: Workload) {
    let kinds: &[&str] = match workload {
        Workload::Write => &["write"],
        Workload::Read => &["read"],
        Workload::Mixed => &["read", "write"],
    };
    let mut line = format!("{:>6}", "time");
    for kind in kinds {
        line += &format!(
            " {:>9} {:>8} {:>8} {:>8} {:>6}",
            format!("{kind} op/s"),
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors"
        );
    }
    say!("{line}");
}

fn print_progress(at: Duration, over: Duration, interval: &Interval, workload: Workload) {
    let mut line = format!("{:>5.0}s", at.as_secs_f64());
    let parts: &[&Stats] = match workload {
        Workload::Write => &[&interval.writes],
        Workload::Read => &[&interval.reads],
        Workload::Mixed => &[&interval.reads, &interval.writes],
    };
    for stats in parts {
        let h = &stats.latency;
        let errors: u64 = stats.errors.values().sum();
        line += &format!(
            " {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>6}",
            stats.operations() as f64 / over.as_secs_f64(),
            millis(h.value_at_quantile(0.5)),
            millis(h.value_at_quantile(0.99)),
            millis(h.max()),
            errors
        );
    }
    say!("{line}");
}

/// The summary of a run (also its JSON form).
#[derive(Serialize)]
struct Report {
    workload: Workload,
    consistency: String,
    concurrency: usize,
    duration_secs: f64,
    keys: u64,
    value_size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_rate: Option<f64>,
    /// Successful and failed operations per second, all kinds.
    ops_per_sec: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reads: Option<OpReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    writes: Option<OpReport>,
}

#[derive(Serialize)]
struct OpReport {
    operations: u64,
    ops_per_sec: f64,
    succeeded: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_found: Option<u64>,
    errors: BTreeMap<&'static str, u64>,
    latency_ms: Latency,
}

#[derive(Serialize)]
struct Latency {
    mean: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Report {
    fn new(args: &BenchArgs, elapsed: Duration, total: &Interval) -> Report {
        let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let op_report = |stats: &Stats, op: Op| {
            let h = &stats.latency;
            let mut errors = BTreeMap::new();
            for kind in OUTCOMES {
                if let Some(n) = stats.errors.get(kind) {
                    errors.insert(kind, *n);
                }
            }
            OpReport {
                operations: stats.operations(),
                ops_per_sec: stats.operations() as f64 / secs,
                succeeded: h.len(),
                not_found: (op == Op::Read).then_some(stats.not_found),
                errors,
                latency_ms: Latency {
                    mean: h.mean() / 1000.0,
                    p50: millis(h.value_at_quantile(0.50)),
                    p95: millis(h.value_at_quantile(0.95)),
                    p99: millis(h.value_at_quantile(0.99)),
                    p999: millis(h.value_at_quantile(0.999)),
                    max: millis(h.max()),
                },
            }
        };
        let reads = (args.workload != Workload::Write).then(|| op_report(&total.reads, Op::Read));
        let writes = (args.workload != Workload::Read).then(|| op_report(&total.writes, Op::Write));
        Report {
            workload: args.workload,
            consistency: args.consistency.to_string(),
            concurrency: args.concurrency,
            duration_secs: secs,
            keys: args.keys,
            value_size: args.value_size,
            target_rate: args.rate,
            ops_per_sec: (total.reads.operations() + total.writes.operations()) as f64 / secs,
            reads,
            writes,
        }
    }

    fn print(&self) {
        out!();
        out!(
            "{:.1} s, {:.0} ops/s in all",
            self.duration_secs,
            self.ops_per_sec
        );
        for (name, report) in [("reads", &self.reads), ("writes", &self.writes)] {
            let Some(r) = report else { continue };
            out!(
                "{name:<7} {} operations, {:.0} ops/s, {} succeeded{}",
                r.operations,
                r.ops_per_sec,
                r.succeeded,
                r.not_found
                    .map(|n| format!(" ({n} found no row)"))
                    .unwrap_or_default()
            );
            let l = &r.latency_ms;
            out!(
                "        latency ms: mean {:.3}  p50 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                l.mean,
                l.p50,
                l.p95,
                l.p99,
                l.p999,
                l.max
            );
            if r.errors.is_empty() {
                out!("        errors: none");
            } else {
                let errors: Vec<String> = r
                    .errors
                    .iter()
                    .map(|(kind, n)| format!("{kind} {n}"))
                    .collect();
                out!("        errors: {}", errors.join(", "));
            }
        }
    }
}
