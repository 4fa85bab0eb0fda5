//! Experiments: a schedule of faults played while clients run a
//! workload, then heal, convergence and the final state of every row.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ringdb_proto::ConsistencyLevel;
use ringdb_ring::NodeId;
use ringdb_sim::history::History;
use ringdb_sim::probe::{BOARD_KEYS, Board, FIRST_KEY, run_probe_client};
use ringdb_sim::quorum::Replication;
use ringdb_sim::workload::{Recorder, Target, Workload, run_client};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::LabError;
use crate::faults::Fault;
use crate::hosts::{LabNode, LabState, MAX_NODES, wait_ready};
use crate::target::{LabTarget, Pinned};

mod converge;

pub use converge::Convergence;

/// The row numbers each run has: the probe's boards (four levels at most)
/// above the mixed workload's.
const RUN_KEYS: u32 = FIRST_KEY + 4 * BOARD_KEYS;

/// What the clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// The stale-read probe: each client pinned to a node and a level,
    /// writing fresh rows and reading the rows others wrote.
    Probe,
    /// The simulator's workload: blind writes, deletes, read → write
    /// chains and delete cycles at mixed levels, on any node.
    Mixed,
}

/// A fault at a time from the start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Seconds from the start.
    pub at: f64,
    /// The fault.
    pub fault: String,
}

/// An experiment: a workload, a schedule, a length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// What it shows, for the report.
    #[serde(default)]
    pub description: String,
    /// What the clients do.
    pub workload: WorkloadKind,
    /// Seconds the clients run.
    pub duration: f64,
    /// The faults, in time order.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

/// The built-in experiments and what they show.
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "stale-reads",
        "a 2|1 partition (majority / minority) with writes and reads on both sides at each level",
    ),
    ("partition-halves", "the nodes split into two halves"),
    ("isolate", "one node cut off from the others"),
    (
        "bridge",
        "two sides that cannot reach each other but both reach a node in the middle",
    ),
    (
        "kill-restart",
        "a node killed (SIGKILL) during writes, then restarted",
    ),
    (
        "flapping",
        "a partition made and healed every three seconds",
    ),
    (
        "pause",
        "a node paused (SIGSTOP) past the failure detector, then resumed",
    ),
    (
        "wipe-and-rejoin",
        "a node loses its data and starts again empty under the same id, streaming its ranges",
    ),
    (
        "clock-skew",
        "one node's clock 30 s behind and another's 30 s ahead: versions, not clocks, order writes",
    ),
    (
        "join-under-partition",
        "a new node joins the majority side of a 2|1 split: each range streams from the replica \
         that gives it up, so it refuses to join once it judges the minority node down (unless the \
         heal comes first), and joins when the lab starts it again at the end",
    ),
];

/// The longest run: the checkers compare the operations on each row, and
/// an hour of them would take longer to check than to run.
pub const MAX_DURATION_SECS: f64 = 600.0;

fn check_duration(duration: f64) -> Result<(), LabError> {
    if duration > 0.0 && duration <= MAX_DURATION_SECS {
        Ok(())
    } else {
        Err(LabError::Invalid(format!(
            "the duration must be more than 0 and at most {MAX_DURATION_SECS} seconds, not {duration}"
        )))
    }
}

impl Experiment {
    /// The built-in experiment `name` for a lab of `names`, lasting
    /// `duration` seconds: the faults start at a quarter of it and end
    /// before two thirds, leaving time to heal.
    pub fn built_in(name: &str, names: &[String], duration: f64) -> Result<Experiment, LabError> {
        let description = BUILT_IN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d.to_string())
            .ok_or_else(|| {
                let known: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
                LabError::Invalid(format!(
                    "unknown experiment {name:?}: {} (or a schedule FILE.toml)",
                    known.join(", ")
                ))
            })?;
        check_duration(duration)?;
        if names.len() < 2 {
            return Err(LabError::Invalid(format!(
                "{name} needs a lab of two nodes or more (`ringdb lab up --nodes 3`)"
            )));
        }
        let first = names[0].clone();
        let last = names.last().expect("two nodes or more").clone();
        let majority = names.len() / 2 + 1;
        let split = |at: usize| {
            format!(
                "partition {} / {}",
                names[..at].join(","),
                names[at..].join(",")
            )
        };
        let (start, end) = (duration * 0.25, duration * 0.65);
        let window = |fault: String, end_fault: String| {
            vec![
                Step { at: start, fault },
                Step {
                    at: end,
                    fault: end_fault,
                },
            ]
        };
        let (workload, steps) = match name {
            "stale-reads" => (WorkloadKind::Probe, window(split(majority), "heal".into())),
            "partition-halves" => (
                WorkloadKind::Mixed,
                window(split(names.len().div_ceil(2)), "heal".into()),
            ),
            "isolate" => (
                WorkloadKind::Mixed,
                window(format!("isolate {last}"), "heal".into()),
            ),
            "bridge" => (WorkloadKind::Mixed, window("bridge".into(), "heal".into())),
            "kill-restart" => (
                WorkloadKind::Mixed,
                window(format!("kill {last}"), format!("restart {last}")),
            ),
            "pause" => (
                WorkloadKind::Mixed,
                window(format!("pause {last}"), format!("resume {last}")),
            ),
            "clock-skew" => (
                WorkloadKind::Mixed,
                vec![
                    Step {
                        at: start,
                        fault: format!("skew {first} -30s"),
                    },
                    Step {
                        at: start,
                        fault: format!("skew {last} +30s"),
                    },
                    Step {
                        at: end,
                        fault: "heal".into(),
                    },
                ],
            ),
            "join-under-partition" => (
                WorkloadKind::Mixed,
                vec![
                    Step {
                        at: start,
                        fault: split(majority),
                    },
                    Step {
                        at: start + 1.0,
                        fault: format!("join n{}", names.len() + 1),
                    },
                    Step {
                        at: end,
                        fault: "heal".into(),
                    },
                ],
            ),
            "wipe-and-rejoin" => (
                WorkloadKind::Mixed,
                vec![Step {
                    at: start,
                    fault: format!("wipe {last}"),
                }],
            ),
            "flapping" => {
                let mut steps = Vec::new();
                let mut at = start;
                let mut cut = true;
                while at < end {
                    let fault = if cut { split(majority) } else { "heal".into() };
                    steps.push(Step { at, fault });
                    at += 3.0;
                    cut = !cut;
                }
                steps.push(Step {
                    at: end,
                    fault: "heal".into(),
                });
                (WorkloadKind::Mixed, steps)
            }
            _ => unreachable!("a built-in name"),
        };
        Ok(Experiment {
            name: name.to_string(),
            description,
            workload,
            duration,
            steps,
        })
    }

    /// A user's schedule from a TOML file:
    ///
    /// ```toml
    /// description = "n3 cut off for 15 s"
    /// workload = "probe"        # or "mixed"
    /// duration = 40             # seconds
    /// [[step]]
    /// at = 10
    /// fault = "isolate n3"
    /// [[step]]
    /// at = 25
    /// fault = "heal"
    /// ```
    pub fn from_file(path: &Path) -> Result<Experiment, LabError> {
        let text = std::fs::read_to_string(path)
            .map_err(LabError::io(format!("cannot read {}", path.display())))?;
        let mut experiment: Experiment = toml::from_str(&text)
            .map_err(|e| LabError::Invalid(format!("{}: {e}", path.display())))?;
        if experiment.name.is_empty() {
            experiment.name = path
                .file_stem()
                .map_or("schedule".into(), |s| s.to_string_lossy().into_owned());
        }
        Ok(experiment)
    }

    /// Checks the schedule against the lab: every fault reads, names
    /// known nodes (a partition's sides may name datacenters; a node an
    /// earlier step adds is known from then), and falls inside the run.
    pub fn validate(&self, state: &LabState) -> Result<Vec<(f64, Fault)>, LabError> {
        check_duration(self.duration)?;
        let mut faults = Vec::new();
        let mut last = 0.0;
        // The lab as the steps so far leave it.
        let mut lab = state.clone();
        for step in &self.steps {
            let fault: Fault = step.fault.parse()?;
            for name in fault.clone().resolve(&lab)?.named_nodes() {
                lab.node(&name)?;
            }
            if let Fault::Join(name, datacenter) = &fault {
                if *name != lab.next_name() || lab.nodes.len() >= MAX_NODES {
                    return Err(LabError::Invalid(format!(
                        "step `{}`: the node added next is {} (at most {MAX_NODES} nodes)",
                        step.fault,
                        lab.next_name()
                    )));
                }
                let datacenter = lab.datacenter_for(datacenter.as_deref())?;
                lab.nodes.push(LabNode {
                    name: name.clone(),
                    address: std::net::Ipv4Addr::UNSPECIFIED,
                    config: Default::default(),
                    datacenter,
                    pid: None,
                });
            }
            if !(step.at >= last && step.at <= self.duration) {
                return Err(LabError::Invalid(format!(
                    "step `{}` at {} s: steps go in time order, within the duration ({} s)",
                    step.fault, step.at, self.duration
                )));
            }
            last = step.at;
            faults.push((step.at, fault));
        }
        Ok(faults)
    }
}

/// How to run an experiment.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The levels the clients use.
    pub levels: Vec<ConsistencyLevel>,
    /// Probe: clients per node and level. Mixed: clients in all.
    pub clients: u32,
    /// Seeds the clients' choices.
    pub seed: u64,
    /// The longest pause between a client's operations.
    pub think: Duration,
    /// How long the replicas have to agree by themselves after the last
    /// fault ends, before the lab repairs.
    pub converge_within: Duration,
}

impl RunOptions {
    /// Checks the options for `workload`.
    pub fn check(&self, workload: WorkloadKind) -> Result<(), LabError> {
        if self.levels.len() > 4 {
            return Err(LabError::Invalid("at most four levels in one run".into()));
        }
        if workload == WorkloadKind::Probe && self.levels.contains(&ConsistencyLevel::Any) {
            return Err(LabError::Invalid(
                "ANY is a write level: the stale-read probe reads at the level it writes".into(),
            ));
        }
        if !(1..=64).contains(&self.clients) {
            return Err(LabError::Invalid("--clients must be 1 to 64".into()));
        }
        if self.think > Duration::from_secs(10) || self.converge_within > Duration::from_secs(3600)
        {
            return Err(LabError::Invalid(
                "--think-ms is at most 10000 and --converge-within at most 3600".into(),
            ));
        }
        Ok(())
    }
}

/// What a run produced.
pub struct RunOutcome {
    /// Every operation, fault and final state.
    pub history: History,
    /// What the run was.
    pub info: RunInfo,
}

/// What a run was, beside its history: enough to make its report again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    /// The experiment.
    pub experiment: Experiment,
    /// The lab's nodes.
    pub nodes: Vec<String>,
    /// Replicas of each row.
    pub replicas: usize,
    /// Replicas of each row per datacenter, when there are several.
    #[serde(default)]
    pub datacenters: BTreeMap<String, usize>,
    /// Each node's datacenter, when there are several.
    #[serde(default)]
    pub node_datacenters: BTreeMap<String, String>,
    /// The levels the clients used.
    pub levels: Vec<String>,
    /// The seed.
    pub seed: u64,
    /// When it ran (UTC, RFC 3339).
    pub started: String,
    /// How the replicas came to agree after the faults.
    pub convergence: Convergence,
}

impl RunInfo {
    /// How rows were replicated, for the checkers.
    pub fn replication(&self) -> Replication {
        if self.datacenters.is_empty() {
            Replication::simple(self.replicas)
        } else {
            Replication::datacenters(self.datacenters.clone(), self.node_datacenters.clone())
        }
    }
}

/// Runs `experiment` on the lab in `dir` (`exe` restarts nodes).
pub async fn run(
    dir: &Path,
    experiment: &Experiment,
    options: &RunOptions,
    exe: &Path,
) -> Result<RunOutcome, LabError> {
    let mut state = LabState::load(dir)?;
    if let Some(node) = state.nodes.iter().find(|n| !n.running()) {
        return Err(LabError::Invalid(format!(
            "{} does not run: `ringdb lab restart {}` (or `ringdb lab down` and `up`)",
            node.name, node.name
        )));
    }
    let faults = experiment.validate(&state)?;
    options.check(experiment.workload)?;
    // Each run writes rows no earlier run on this lab wrote.
    let key_base = state
        .runs
        .checked_mul(RUN_KEYS)
        .filter(|base| base.checked_add(RUN_KEYS).is_some());
    let Some(key_base) = key_base else {
        return Err(LabError::Invalid(format!(
            "this lab ran {} experiments, all it has rows for: `ringdb lab down` and `up` again",
            state.runs
        )));
    };
    state.runs += 1;
    state.save(dir)?;
    // A run starts from a whole lab: no fault left from the command line.
    for name in state.paused.clone() {
        blocking(|| Fault::Resume(name).apply(dir, &mut state, exe))?;
    }
    blocking(|| Fault::Heal.apply(dir, &mut state, exe))?;
    wait_ready(dir, &state.nodes).await?;
    let started = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let target = LabTarget::connect(&state, LabState::ca_pem(dir)?).await?;
    let recorder = Recorder::new();
    recorder.fault(format!("start: {}", experiment.name));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(experiment.duration);
    let clients = spawn_clients(
        experiment.workload,
        options,
        &target,
        &recorder,
        until,
        key_base,
        state.replication().total(),
    );
    // The replicas are watched from the moment the last fault ends (when
    // the schedule ends one), while the clients go on.
    let any_fault = !faults.is_empty();
    let mut streaming = JoinSet::new();
    for (at, fault) in faults {
        tokio::time::sleep_until(start + Duration::from_secs_f64(at)).await;
        let fault = fault.resolve(&state)?;
        apply(dir, &mut state, exe, &fault, &recorder)?;
        let (serves, name) = match &fault {
            Fault::Wipe(name) => ("rejoined", name),
            Fault::Join(name, _) => ("joined", name),
            _ => continue,
        };
        // Its window ends when it serves (it streams first).
        let node = state.node(name)?.clone();
        target.add(NodeId::new(&node.name), node.client_address());
        let (dir, recorder) = (dir.to_path_buf(), recorder.clone());
        streaming.spawn(async move {
            match wait_ready(&dir, std::slice::from_ref(&node)).await {
                Ok(()) => recorder.fault(format!("{serves} {}", node.name)),
                // Its window lasts until it is started again.
                Err(error) => recorder.fault(format!("{} did not serve: {error}", node.name)),
            }
        });
    }
    // The replicas are compared once every node serves.
    streaming.join_all().await;
    let within = options.converge_within;
    let whole = state.faults.is_empty()
        && state.paused.is_empty()
        && state.nodes.iter().all(|n| n.running());
    let watch = (any_fault && whole).then(|| {
        let healed_ms = recorder.now_ms();
        tokio::spawn(converge::watch(
            target.clone(),
            recorder.clone(),
            healed_ms,
            within,
        ))
    });
    clients.join_all().await;
    // Whatever the schedule left broken is mended: the lab is whole again.
    // Paused nodes go on first: a heal clears what was injected into them.
    let mut mend: Vec<Fault> = state.paused.iter().cloned().map(Fault::Resume).collect();
    if !state.faults.is_empty() {
        mend.push(Fault::Heal);
    }
    mend.extend(
        state
            .nodes
            .iter()
            .filter(|n| !n.running())
            .map(|n| Fault::Restart(n.name.clone())),
    );
    for fault in mend {
        apply(dir, &mut state, exe, &fault, &recorder)?;
    }
    wait_ready(dir, &state.nodes).await?;
    let watched = match watch {
        Some(watch) => watch
            .await
            .map_err(|e| LabError::Invalid(format!("the watch failed: {e}")))?,
        None => {
            // Without faults, the rows are compared from the end of the run.
            let history = recorder.history();
            let healed_ms = if any_fault {
                last_mend_ms(&history)
            } else {
                recorder.now_ms()
            };
            converge::watch(target.clone(), recorder.clone(), healed_ms, within).await
        }
    };
    let convergence = converge::finish(&target, &recorder, watched).await;
    let replicas = state.replication().total();
    let multi = state.datacenters().len() > 1;
    let info = RunInfo {
        experiment: experiment.clone(),
        nodes: state.names(),
        replicas,
        datacenters: if multi {
            state.replication.clone()
        } else {
            BTreeMap::new()
        },
        node_datacenters: if multi {
            state
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.datacenter.clone()))
                .collect()
        } else {
            BTreeMap::new()
        },
        levels: if options.levels.is_empty() {
            Workload::new(0, 0, replicas, false).levels
        } else {
            options.levels.clone()
        }
        .iter()
        .map(|l| l.to_string())
        .collect(),
        seed: options.seed,
        started,
        convergence,
    };
    Ok(RunOutcome {
        history: recorder.history(),
        info,
    })
}

/// Applies `fault` and records it.
fn apply(
    dir: &Path,
    state: &mut LabState,
    exe: &Path,
    fault: &Fault,
    recorder: &Recorder,
) -> Result<(), LabError> {
    // A window holds only the time a fault was wholly in force: it begins
    // once the fault is in place and ends when its end begins (operations
    // in between count as outside it).
    if fault.ends_fault() {
        recorder.fault(fault.to_string());
    }
    blocking(|| fault.apply(dir, state, exe))?;
    if !fault.ends_fault() {
        recorder.fault(fault.to_string());
    }
    if let Fault::Wipe(node) = fault {
        // What only it held (a write at ONE it had not passed on) is gone.
        recorder.node_lost(&NodeId::new(node));
    }
    Ok(())
}

/// Runs the system's commands without stalling the clients' tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// When the last fault ended (a heal, resume or restart), in
/// milliseconds from the start; the start when there was none.
pub fn last_mend_ms(history: &History) -> u64 {
    history
        .events
        .iter()
        .filter_map(|event| match event {
            ringdb_sim::history::Event::Fault { at_ms, what }
                if what == "heal" || what.starts_with("resume") || what.starts_with("restart") =>
            {
                Some(*at_ms)
            }
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Starts the clients of `workload`.
fn spawn_clients(
    workload: WorkloadKind,
    options: &RunOptions,
    lab: &Arc<LabTarget>,
    recorder: &Arc<Recorder>,
    until: Instant,
    key_base: u32,
    replicas: usize,
) -> JoinSet<()> {
    let mut clients = JoinSet::new();
    let mut client = 0;
    match workload {
        WorkloadKind::Probe => {
            for (i, level) in options.levels.iter().enumerate() {
                let board = Board::starting_at(key_base + FIRST_KEY + i as u32 * BOARD_KEYS);
                for node in lab.contact_points() {
                    for _ in 0..options.clients {
                        let target: Arc<dyn Target> = Arc::new(Pinned {
                            lab: lab.clone(),
                            node: node.clone(),
                        });
                        clients.spawn(run_probe_client(
                            client,
                            options.seed.wrapping_add(client as u64),
                            *level,
                            options.think,
                            board.clone(),
                            target,
                            recorder.clone(),
                            until,
                        ));
                        client += 1;
                    }
                }
            }
        }
        WorkloadKind::Mixed => {
            let mut shared = Workload::new(8, 8, replicas, false).with_key_base(key_base);
            if !options.levels.is_empty() {
                shared.levels = options.levels.clone();
            }
            shared.think = options.think;
            let shared = Arc::new(shared);
            for _ in 0..options.clients {
                let target: Arc<dyn Target> = lab.clone();
                clients.spawn(run_client(
                    client,
                    options.seed.wrapping_add(client as u64),
                    shared.clone(),
                    target,
                    recorder.clone(),
                    until,
                ));
                client += 1;
            }
        }
    }
    clients
}

/// The nodes as the workloads name them.
pub fn node_ids(state: &LabState) -> Vec<NodeId> {
    state.nodes.iter().map(|n| NodeId::new(&n.name)).collect()
}
