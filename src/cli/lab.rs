//! `ringdb lab`: real nodes in network namespaces, faults, experiments
//! and their reports (the `ringdb-lab` crate does the work).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use ringdb::client::ConsistencyLevel;
use ringdb_lab::experiment::{self, BUILT_IN, Experiment, RunOptions};
use ringdb_lab::faults::Fault;
use ringdb_lab::hosts::{self, CHAIN, LabState};
use ringdb_lab::report;

#[derive(Args)]
pub struct LabArgs {
    /// The lab's folder: node configs, certificates, data, logs, runs.
    #[arg(long, global = true, default_value = "ringdb-lab")]
    dir: PathBuf,
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Make the lab and start its nodes: a bridge, a network namespace per
    /// node (n1 at 10.77.0.1, n2 at 10.77.0.2…), a real node in each.
    ///
    /// With --dcs, the nodes are spread over datacenters dc1, dc2… (each
    /// a run of nodes: 6 nodes in 2 are n1-n3 and n4-n6), each row has
    /// min(3, its nodes) replicas in each, and the first node of each is
    /// a seed; `partition dc1 / dc2` cuts them apart.
    Up {
        /// How many nodes (replication factor min(3, N) per datacenter).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// How many datacenters.
        #[arg(long, default_value_t = 1)]
        dcs: usize,
    },
    /// Show the lab's hosts, their processes and the faults in force.
    Status,
    /// Remove everything the lab made: processes, namespaces, rules,
    /// bridge (also after a killed `up` or `run`). The folder stays.
    Down,
    /// Run an experiment: clients run a workload while a schedule of
    /// faults plays; then heal, convergence, the checkers and a report
    /// (HTML with charts, Markdown, JSON) in DIR/runs/.
    ///
    /// Built-in: stale-reads, partition-halves, isolate, bridge,
    /// kill-restart, flapping, pause, wipe-and-rejoin, clock-skew,
    /// join-under-partition; or a schedule FILE.toml
    /// (`ringdb lab experiments` shows them and the file's format).
    /// Exits with 1 when a promise was broken (an acknowledged write
    /// lost, a value never written, a delete undone, a dot reused, a
    /// stale read where R + W > N).
    Run {
        /// A built-in experiment's name, or a schedule file.
        experiment: String,
        /// The levels the clients use, e.g. ONE,QUORUM,ALL (stale-reads
        /// default); the mixed workload's default mixes ONE, TWO,
        /// QUORUM, ALL and ANY.
        #[arg(long = "cl", value_delimiter = ',')]
        levels: Vec<ConsistencyLevel>,
        /// Seconds the clients run (the schedule of a built-in experiment
        /// scales to it).
        #[arg(long)]
        duration: Option<f64>,
        /// stale-reads: clients per node and level; the others: clients
        /// in all.
        #[arg(long)]
        clients: Option<u32>,
        /// Seeds the clients' choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The longest pause between a client's operations, milliseconds.
        #[arg(long, default_value_t = 30)]
        think_ms: u64,
        /// Seconds the replicas have to agree by themselves after the last
        /// fault ends, before the lab repairs every node.
        #[arg(long, default_value_t = 60)]
        converge_within: u64,
        /// Where the run's files go (default DIR/runs/NAME-TIME).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the built-in experiments and the schedule file's format.
    Experiments,
    /// Make a run's report again from its folder (history.jsonl, run.json).
    Report {
        /// The run's folder, or its history.jsonl.
        run: PathBuf,
    },
    /// Cut the lab in sides that cannot reach each other:
    /// `partition n1,n2 / n3`, or by datacenter: `partition dc1 / dc2`.
    Partition {
        /// The sides, nodes (or datacenters) separated by commas, sides by
        /// `/`.
        #[arg(required = true, num_args = 1..)]
        sides: Vec<String>,
    },
    /// Cut one node off from every other.
    Isolate { node: String },
    /// Two sides that both reach the middle node but not each other.
    Bridge,
    /// Remove every network fault (partitions, loss, delay, duplication)
    /// and clock skew.
    Heal,
    /// Kill a node's process (SIGKILL).
    Kill { node: String },
    /// Stop a node's process (SIGSTOP): it holds its connections and
    /// answers nothing.
    Pause { node: String },
    /// Let a paused node go on (SIGCONT).
    Resume { node: String },
    /// Start a node again (killing it first if it runs).
    Restart { node: String },
    /// Drop a share of the packets other nodes send a node: `loss n2 20%`.
    Loss { node: String, share: String },
    /// Delay the messages a node and its peers send each other, with a
    /// jitter that reorders them: `delay n2 50ms` or `delay n2 50ms 20ms`
    /// (the nodes' own fault hook: this kernel has no netem).
    Delay {
        node: String,
        delay: String,
        jitter: Option<String>,
    },
    /// Send a share of the messages between a node and its peers twice:
    /// `duplicate n2 10%`.
    Duplicate { node: String, share: String },
    /// Move a node's wall clock: `skew n2 +30s`, `skew n2 -500ms`.
    Skew {
        node: String,
        #[arg(allow_hyphen_values = true)]
        by: String,
    },
    /// Lose a node's data: kill it, delete its data folder, start it again
    /// empty under the same id (it streams its ranges before serving).
    Wipe { node: String },
    /// Add a node to the lab (the next name, n4 after n3): it streams its
    /// ranges from the others, then serves.
    Join {
        /// Its datacenter (default: the first node's).
        #[arg(long)]
        dc: Option<String>,
    },
}

pub async fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir;
    let exe = std::env::current_exe().context("cannot find the ringdb executable")?;
    let fault = match args.command {
        LabCommand::Up { nodes, dcs } => return up(&dir, nodes, dcs, &exe).await,
        LabCommand::Status => return status(&dir),
        LabCommand::Down => {
            let removed = hosts::down(&dir)?;
            if removed.is_empty() {
                out!("no lab was up; nothing to remove");
            } else {
                out!("removed {}", removed.join(", "));
            }
            return Ok(ExitCode::SUCCESS);
        }
        LabCommand::Experiments => {
            experiments();
            return Ok(ExitCode::SUCCESS);
        }
        LabCommand::Report { run } => {
            let (figures, page) = report::rebuild(&run)?;
            print!("{}", report::markdown(&figures));
            out!("\nreport: {}", page.display());
            return Ok(ExitCode::SUCCESS);
        }
        LabCommand::Run {
            experiment,
            levels,
            duration,
            clients,
            seed,
            think_ms,
            converge_within,
            out,
        } => {
            let options = RunOptions {
                levels,
                clients: clients.unwrap_or(0),
                seed,
                think: Duration::from_millis(think_ms),
                converge_within: Duration::from_secs(converge_within),
            };
            return run_experiment(&dir, &experiment, duration, options, out, &exe).await;
        }
        LabCommand::Partition { sides } => format!("partition {}", sides.join(" ")),
        LabCommand::Isolate { node } => format!("isolate {node}"),
        LabCommand::Bridge => "bridge".into(),
        LabCommand::Heal => "heal".into(),
        LabCommand::Kill { node } => format!("kill {node}"),
        LabCommand::Pause { node } => format!("pause {node}"),
        LabCommand::Resume { node } => format!("resume {node}"),
        LabCommand::Restart { node } => format!("restart {node}"),
        LabCommand::Loss { node, share } => format!("loss {node} {share}"),
        LabCommand::Wipe { node } => format!("wipe {node}"),
        LabCommand::Delay {
            node,
            delay,
            jitter,
        } => format!("delay {node} {delay} {}", jitter.unwrap_or_default()),
        LabCommand::Duplicate { node, share } => format!("duplicate {node} {share}"),
        LabCommand::Skew { node, by } => format!("skew {node} {by}"),
        LabCommand::Join { dc } => {
            let next = LabState::load(&dir)?.next_name();
            format!("join {next} {}", dc.unwrap_or_default())
        }
    };
    ringdb_lab::command::check_tools()?;
    let mut state = LabState::load(&dir)?;
    let fault: Fault = fault.parse::<Fault>()?.resolve(&state)?;
    tokio::task::block_in_place(|| fault.apply(&dir, &mut state, &exe))?;
    if let Fault::Restart(name) | Fault::Wipe(name) | Fault::Join(name, _) = &fault {
        let node = state.node(name)?.clone();
        hosts::wait_ready(&dir, std::slice::from_ref(&node)).await?;
    }
    out!("{fault}: done");
    Ok(ExitCode::SUCCESS)
}

async fn up(dir: &Path, nodes: usize, dcs: usize, exe: &Path) -> anyhow::Result<ExitCode> {
    let state = hosts::up(dir, nodes, dcs, exe).await?;
    out!("ringdb lab is up in {}:", dir.display());
    for node in &state.nodes {
        out!(
            "  {:<4} {:<11} namespace {:<10} client {}  pid {}  log {}",
            node.name,
            node.datacenter,
            node.namespace(),
            node.client_address(),
            node.pid.unwrap_or_default(),
            node.log().display()
        );
    }
    out!("try:  ringdb lab run stale-reads --dir {}", dir.display());
    out!("then: ringdb lab down --dir {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn status(dir: &Path) -> anyhow::Result<ExitCode> {
    let state = LabState::load(dir)?;
    let left = hosts::leftovers()?;
    out!("lab in {}:", dir.display());
    for node in &state.nodes {
        let process = match node.pid {
            Some(pid) if node.running() && state.paused.contains(&node.name) => {
                format!("paused (pid {pid})")
            }
            Some(pid) if node.running() => format!("running (pid {pid})"),
            _ => "not running".into(),
        };
        let namespace = node.namespace();
        let present = left.iter().any(|l| *l == format!("namespace {namespace}"));
        let rules = if present {
            ringdb_lab::command::iptables_in(&namespace, &["-S", CHAIN])
                .map(|text| {
                    text.lines()
                        .filter(|l| l.starts_with("-A"))
                        .map(|l| l.trim_start_matches(&format!("-A {CHAIN} ")).to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|e| e.to_string())
        } else {
            "namespace missing".into()
        };
        out!(
            "  {:<4} {:<11} {:<15} {:<26} rules: {}",
            node.name,
            node.datacenter,
            node.address,
            process,
            if rules.is_empty() {
                "none".into()
            } else {
                rules
            }
        );
    }
    if state.faults.is_empty() {
        out!("network faults: none");
    } else {
        out!("network faults: {}", state.faults.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

fn experiments() {
    out!("built-in experiments (ringdb lab run NAME):");
    for (name, description) in BUILT_IN {
        out!("  {name:<17} {description}");
    }
    out!(
        "\nor a schedule file (ringdb lab run FILE.toml):\n\n\
         description = \"n3 cut off for 15 s\"\n\
         workload = \"probe\"     # the stale-read probe; or \"mixed\"\n\
         duration = 40          # seconds\n\
         [[step]]\n\
         at = 10\n\
         fault = \"isolate n3\"\n\
         [[step]]\n\
         at = 25\n\
         fault = \"heal\"\n\n\
         faults: partition n1,n2 / n3 (or dc1 / dc2) | isolate N | bridge | heal | \
         kill N | pause N | resume N | restart N | loss N 20% | delay N 50ms [20ms] | \
         duplicate N 10% | skew N +30s | wipe N | join N [DC]"
    );
}

async fn run_experiment(
    dir: &Path,
    name: &str,
    duration: Option<f64>,
    mut options: RunOptions,
    out: Option<PathBuf>,
    exe: &Path,
) -> anyhow::Result<ExitCode> {
    ringdb_lab::command::check_tools()?;
    let state = LabState::load(dir)?;
    let mut experiment = if name.ends_with(".toml") || Path::new(name).is_file() {
        Experiment::from_file(Path::new(name))?
    } else {
        Experiment::built_in(name, &state.names(), duration.unwrap_or(40.0))?
    };
    if let Some(duration) = duration {
        experiment.duration = duration;
    }
    let probe = experiment.workload == experiment::WorkloadKind::Probe;
    if options.clients == 0 {
        options.clients = if probe { 1 } else { 6 };
    }
    if probe && options.levels.is_empty() {
        options.levels = vec![
            ConsistencyLevel::One,
            ConsistencyLevel::Quorum,
            ConsistencyLevel::All,
        ];
    }
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]-[hour][minute][second]"
        ))
        .unwrap_or_default();
    let folder = out.unwrap_or_else(|| {
        dir.join("runs")
            .join(format!("{}-{stamp}", experiment.name))
    });
    out!(
        "running {} on {} for {} s ({}); its files go to {}",
        experiment.name,
        state.names().join(", "),
        experiment.duration,
        experiment.description,
        folder.display()
    );
    let outcome = experiment::run(dir, &experiment, &options, exe).await?;
    let figures = report::write(&folder, &outcome.history, &outcome.info)?;
    print!("\n{}", report::markdown(&figures));
    out!("\nreport: {}", folder.join("report.html").display());
    Ok(if figures.checks.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
