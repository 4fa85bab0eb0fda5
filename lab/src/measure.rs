//! The figures of a run: the simulator's checkers on the real history,
//! and what an experimenter reads off it (stale reads and availability
//! per level and per side, errors by kind, latency and throughput over
//! time, convergence).

use std::collections::BTreeMap;

use ringdb_sim::checker::{check_placed, freshness};
use ringdb_sim::history::{Event, History, Op, Outcome};
use serde::{Deserialize, Serialize};

use crate::experiment::{Convergence, RunInfo};
use crate::faults::Fault;

/// Everything the report shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Figures {
    /// The experiment's name.
    pub experiment: String,
    /// What it shows.
    pub description: String,
    /// The lab's nodes.
    pub nodes: Vec<String>,
    /// Replicas of each row.
    pub replicas: usize,
    /// Replicas of each row per datacenter, when there are several.
    #[serde(default)]
    pub datacenters: BTreeMap<String, usize>,
    /// When it ran.
    pub started: String,
    /// The clients' seed.
    pub seed: u64,
    /// From the first operation to the last, in milliseconds.
    pub duration_ms: u64,
    /// The faults, each from its start to its end.
    pub windows: Vec<Window>,
    /// What the checkers found.
    pub checks: Checks,
    /// Per consistency level.
    pub levels: Vec<LevelFigures>,
    /// How the replicas came to agree.
    pub convergence: Convergence,
    /// Each second of the run.
    pub timeline: Vec<Second>,
}

/// A fault, from its start to its end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// The fault.
    pub what: String,
    /// When it began, in milliseconds from the start.
    pub start_ms: u64,
    /// When it ended (the end of the run if it did not).
    pub end_ms: u64,
}

/// What the checkers found: every promise is a count that must be 0.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Checks {
    /// Acknowledged writes and deletes.
    pub acknowledged_writes: u64,
    /// Successful reads.
    pub reads: u64,
    /// Operations that failed or whose outcome is unknown.
    pub failed: u64,
    /// Acknowledged writes missing from the final state, superseded by nothing.
    pub lost_writes: u64,
    /// Values read or kept that were never written (to that row).
    pub phantoms: u64,
    /// Values back after an acknowledged write or delete superseded them.
    pub resurrections: u64,
    /// Dots naming two values, or a value under two dots.
    pub dots_reused: u64,
    /// Stale reads where R + W > N promises none.
    pub strict_stale_reads: u64,
    /// Reads that missed what an earlier read at a level they must meet
    /// returned.
    #[serde(default)]
    pub non_monotonic_reads: u64,
    /// The first violations, for people.
    pub violations: Vec<String>,
}

impl Checks {
    /// Whether every promise held.
    pub fn passed(&self) -> bool {
        self.lost_writes
            + self.phantoms
            + self.resurrections
            + self.dots_reused
            + self.strict_stale_reads
            + self.non_monotonic_reads
            == 0
    }
}

/// Operations that succeeded and failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Succeeded.
    pub ok: u64,
    /// Failed or unknown.
    pub failed: u64,
}

impl Tally {
    fn add(&mut self, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
    }

    /// The share that succeeded, in percent (`None` with no operations).
    pub fn percent_ok(&self) -> Option<f64> {
        let all = self.ok + self.failed;
        (all > 0).then(|| 100.0 * self.ok as f64 / all as f64)
    }
}

/// Reads checked for staleness, and the stale ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Staleness {
    /// Successful reads.
    pub reads: u64,
    /// Reads that missed a write acknowledged before they began.
    pub stale: u64,
}

impl Staleness {
    /// The stale share, in percent (`None` with no reads).
    pub fn percent(&self) -> Option<f64> {
        (self.reads > 0).then(|| 100.0 * self.stale as f64 / self.reads as f64)
    }
}

/// One side of the faults (the nodes a client asked), while they lasted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Its nodes.
    pub nodes: Vec<String>,
    /// Writes.
    pub writes: Tally,
    /// Reads.
    pub reads: Tally,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Reads checked, and stale.
    pub staleness: Staleness,
}

/// One consistency level's figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LevelFigures {
    /// The level.
    pub level: String,
    /// Writes and deletes over the whole run.
    pub writes: Tally,
    /// Reads over the whole run.
    pub reads: Tally,
    /// Reads that began while a fault lasted.
    pub during_faults: Staleness,
    /// The other reads.
    pub outside_faults: Staleness,
    /// While the faults lasted, per side.
    pub sides: Vec<Side>,
    /// Failures by kind, over the whole run.
    pub errors: BTreeMap<String, u64>,
    /// Latency of successful writes, milliseconds: p50, p99, max.
    pub write_latency_ms: [f64; 3],
    /// Latency of successful reads.
    pub read_latency_ms: [f64; 3],
}

/// One second of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Second {
    /// Seconds from the start.
    pub second: u64,
    /// Operations that succeeded, by level.
    pub ok: BTreeMap<String, u64>,
    /// Operations that failed, by level.
    pub failed: BTreeMap<String, u64>,
    /// Latency of the operations that completed, milliseconds: p50, p99.
    pub latency_ms: [f64; 2],
}

/// What kind of failure an outcome is.
pub fn error_kind(outcome: &Outcome) -> Option<&'static str> {
    let text = match outcome {
        Outcome::Refused(text) | Outcome::Unknown(text) => text.as_str(),
        _ => return None,
    };
    Some(if text.starts_with("unavailable") {
        "unavailable"
    } else if text.starts_with("timeout") || text.starts_with("no answer") {
        "timeout"
    } else if text.starts_with("not sent") {
        "no connection"
    } else if text.starts_with("connection lost") {
        "connection lost"
    } else if text.starts_with("overloaded") {
        "overloaded"
    } else if text.starts_with("the context names versions") {
        // A write after a read whose versions only the other side holds.
        "unreachable context"
    } else {
        "other"
    })
}

/// An operation with its ends.
struct Operation<'a> {
    node: &'a str,
    op: &'a Op,
    invoked_ms: u64,
    completed: Option<(u64, &'a Outcome)>,
}

/// The figures of `history`, a run of `info`.
pub fn figures(history: &History, info: &RunInfo) -> Figures {
    let (violations, checked) = check_placed(history, &info.replication());
    let count = |kinds: &[&str]| {
        violations
            .iter()
            .filter(|v| kinds.contains(&v.kind))
            .count() as u64
    };
    let checks = Checks {
        acknowledged_writes: checked.acknowledged_writes,
        reads: checked.reads,
        failed: checked.failed,
        lost_writes: count(&["lost write"]),
        phantoms: count(&["phantom"]),
        resurrections: count(&["resurrection"]),
        dots_reused: count(&["dot reuse", "written twice"]),
        strict_stale_reads: count(&["stale read"]),
        non_monotonic_reads: count(&["non-monotonic read"]),
        violations: violations
            .iter()
            .take(20)
            .map(ToString::to_string)
            .collect(),
    };
    let mut operations: BTreeMap<u64, Operation<'_>> = BTreeMap::new();
    let mut end_ms = 0;
    for event in &history.events {
        match event {
            Event::Invoke {
                at_ms,
                id,
                node,
                op,
                ..
            } => {
                operations.insert(
                    *id,
                    Operation {
                        node,
                        op,
                        invoked_ms: *at_ms,
                        completed: None,
                    },
                );
                end_ms = end_ms.max(*at_ms);
            }
            Event::Complete { at_ms, id, outcome } => {
                if let Some(operation) = operations.get_mut(id) {
                    operation.completed = Some((*at_ms, outcome));
                }
                end_ms = end_ms.max(*at_ms);
            }
            _ => {}
        }
    }
    let windows = windows(history, end_ms);
    let stale: BTreeMap<u64, bool> = freshness(history)
        .into_iter()
        .map(|r| (r.id, r.stale))
        .collect();
    let window_sides: Vec<Vec<Vec<String>>> =
        windows.iter().map(|w| sides_of(w, &info.nodes)).collect();
    let mut sides: Vec<Vec<String>> = Vec::new();
    for side in window_sides.iter().flatten() {
        if !sides.contains(side) {
            sides.push(side.clone());
        }
    }
    let mut levels: BTreeMap<String, LevelFigures> = BTreeMap::new();
    let mut latencies: BTreeMap<(String, bool), Vec<f64>> = BTreeMap::new();
    for (id, operation) in &operations {
        let level = level_of(operation.op);
        let figures = levels.entry(level.clone()).or_insert_with(|| LevelFigures {
            level: level.clone(),
            sides: sides
                .iter()
                .map(|nodes| Side {
                    nodes: nodes.clone(),
                    ..Side::default()
                })
                .collect(),
            ..LevelFigures::default()
        });
        let is_read = matches!(operation.op, Op::Get { .. });
        let outcome = operation.completed.map(|(_, outcome)| outcome);
        let ok = matches!(
            outcome,
            Some(Outcome::Written { .. } | Outcome::Read { .. })
        );
        let kind = match outcome {
            Some(outcome) => error_kind(outcome),
            None => Some("no end"),
        };
        let window = windows
            .iter()
            .position(|w| (w.start_ms..w.end_ms).contains(&operation.invoked_ms));
        let during = window.is_some();
        if is_read {
            figures.reads.add(ok);
        } else {
            figures.writes.add(ok);
        }
        if let Some(kind) = kind {
            *figures.errors.entry(kind.to_string()).or_default() += 1;
        }
        if let Some((end, _)) = operation.completed.filter(|_| ok) {
            latencies
                .entry((level.clone(), is_read))
                .or_default()
                .push(end.saturating_sub(operation.invoked_ms) as f64);
        }
        let stale_read = stale.get(id).copied();
        if let Some(stale_read) = stale_read {
            let phase = if during {
                &mut figures.during_faults
            } else {
                &mut figures.outside_faults
            };
            phase.reads += 1;
            phase.stale += stale_read as u64;
        }
        let Some(window) = window else {
            continue;
        };
        // The side of the node it asked, in the fault it began in (a node
        // a partition does not name is a side of its own).
        let nodes = window_sides[window]
            .iter()
            .find(|side| side.iter().any(|n| n == operation.node))
            .cloned()
            .unwrap_or_else(|| vec![operation.node.to_string()]);
        if !figures.sides.iter().any(|s| s.nodes == nodes) {
            figures.sides.push(Side {
                nodes: nodes.clone(),
                ..Side::default()
            });
        }
        if let Some(side) = figures.sides.iter_mut().find(|s| s.nodes == nodes) {
            if is_read {
                side.reads.add(ok);
            } else {
                side.writes.add(ok);
            }
            if let Some(kind) = kind {
                *side.errors.entry(kind.to_string()).or_default() += 1;
            }
            if let Some(stale_read) = stale_read {
                side.staleness.reads += 1;
                side.staleness.stale += stale_read as u64;
            }
        }
    }
    for ((level, is_read), mut values) in latencies {
        let figures = levels.get_mut(&level).expect("a level with operations");
        let percentiles = [
            percentile(&mut values, 0.5),
            percentile(&mut values, 0.99),
            percentile(&mut values, 1.0),
        ];
        if is_read {
            figures.read_latency_ms = percentiles;
        } else {
            figures.write_latency_ms = percentiles;
        }
    }
    Figures {
        experiment: info.experiment.name.clone(),
        description: info.experiment.description.clone(),
        nodes: info.nodes.clone(),
        replicas: info.replicas,
        datacenters: info.datacenters.clone(),
        started: info.started.clone(),
        seed: info.seed,
        duration_ms: end_ms,
        timeline: timeline(&operations, end_ms),
        windows,
        checks,
        levels: order_levels(levels),
        convergence: info.convergence.clone(),
    }
}

/// The levels, weakest first.
fn order_levels(levels: BTreeMap<String, LevelFigures>) -> Vec<LevelFigures> {
    const ORDER: &[&str] = &[
        "ANY",
        "ONE",
        "LOCAL_ONE",
        "TWO",
        "THREE",
        "LOCAL_QUORUM",
        "QUORUM",
        "EACH_QUORUM",
        "ALL",
    ];
    let mut levels: Vec<LevelFigures> = levels.into_values().collect();
    levels.sort_by_key(|l| {
        ORDER
            .iter()
            .position(|o| *o == l.level)
            .unwrap_or(ORDER.len())
    });
    levels
}

fn level_of(op: &Op) -> String {
    match op {
        Op::Put { consistency, .. }
        | Op::Delete { consistency, .. }
        | Op::Get { consistency, .. } => consistency.to_string(),
    }
}

/// The `q` quantile of `values` (sorted here).
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let at = ((values.len() - 1) as f64 * q).round() as usize;
    values[at]
}

/// The faults of the history, each from its start to the event that
/// ended it (a heal ends the network faults, a resume its pause, a
/// restart its kill), or to `end_ms`.
pub fn windows(history: &History, end_ms: u64) -> Vec<Window> {
    let mut open: Vec<(Fault, Window)> = Vec::new();
    let mut closed = Vec::new();
    for event in &history.events {
        let Event::Fault { at_ms, what } = event else {
            continue;
        };
        let serves = what
            .strip_prefix("rejoined ")
            .or_else(|| what.strip_prefix("joined "));
        if let Some(node) = serves {
            // A wiped or new node serves.
            if let Some(at) = open
                .iter()
                .position(|(f, _)| matches!(f, Fault::Wipe(n) | Fault::Join(n, _) if n == node))
            {
                let (_, mut window) = open.remove(at);
                window.end_ms = *at_ms;
                closed.push(window);
            }
            continue;
        }
        let Ok(fault) = what.parse::<Fault>() else {
            continue;
        };
        let ends = |started: &Fault| match (&fault, started) {
            (Fault::Heal, started) => started.is_network(),
            (Fault::Resume(a) | Fault::Restart(a) | Fault::Wipe(a), Fault::Pause(b))
            | (Fault::Restart(a) | Fault::Wipe(a), Fault::Kill(b))
            | (Fault::Restart(a), Fault::Join(b, _) | Fault::Wipe(b)) => a == b,
            _ => false,
        };
        let mut i = 0;
        while i < open.len() {
            if ends(&open[i].0) {
                let (_, mut window) = open.remove(i);
                window.end_ms = *at_ms;
                closed.push(window);
            } else {
                i += 1;
            }
        }
        if !fault.ends_fault() || matches!(fault, Fault::Wipe(_)) {
            let window = Window {
                what: what.clone(),
                start_ms: *at_ms,
                end_ms,
            };
            open.push((fault, window));
        }
    }
    closed.extend(open.into_iter().map(|(_, w)| w));
    closed.sort_by_key(|w| w.start_ms);
    closed
}

/// The sides of a fault: a partition's, or the node a fault struck
/// against the others.
fn sides_of(window: &Window, nodes: &[String]) -> Vec<Vec<String>> {
    let Ok(fault) = window.what.parse::<Fault>() else {
        return vec![nodes.to_vec()];
    };
    let alone = match &fault {
        Fault::Kill(node)
        | Fault::Pause(node)
        | Fault::Loss(node, _)
        | Fault::Wipe(node)
        | Fault::Delay(node, ..)
        | Fault::Duplicate(node, _)
        | Fault::Skew(node, _)
        | Fault::Join(node, _) => Some(node.clone()),
        _ => None,
    };
    match alone {
        Some(node) => {
            let others = nodes.iter().filter(|n| **n != node).cloned().collect();
            vec![others, vec![node]]
        }
        None => fault.sides(nodes),
    }
}

/// Operations per second by level, and latency.
fn timeline(operations: &BTreeMap<u64, Operation<'_>>, end_ms: u64) -> Vec<Second> {
    let mut seconds: Vec<Second> = (0..=end_ms / 1000)
        .map(|second| Second {
            second,
            ..Second::default()
        })
        .collect();
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); seconds.len()];
    for operation in operations.values() {
        let Some((end, outcome)) = operation.completed else {
            continue;
        };
        let at = (end / 1000) as usize;
        let Some(second) = seconds.get_mut(at) else {
            continue;
        };
        let level = level_of(operation.op);
        if matches!(outcome, Outcome::Written { .. } | Outcome::Read { .. }) {
            *second.ok.entry(level).or_default() += 1;
            latencies[at].push(end.saturating_sub(operation.invoked_ms) as f64);
        } else {
            *second.failed.entry(level).or_default() += 1;
        }
    }
    for (second, mut values) in seconds.iter_mut().zip(latencies) {
        second.latency_ms = [percentile(&mut values, 0.5), percentile(&mut values, 0.99)];
    }
    seconds
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringdb_client::transport::CallError;
    use ringdb_proto::RequestError;
    use ringdb_ring::NodeId;

    #[test]
    fn failures_are_named_by_kind() {
        let refused = |error: RequestError| Outcome::Refused(CallError::Remote(error).to_string());
        let kind = |error: RequestError| error_kind(&refused(error));
        assert_eq!(
            kind(RequestError::UnreachableContext {
                node: NodeId::new("n3")
            }),
            Some("unreachable context")
        );
        assert_eq!(
            kind(RequestError::Unavailable {
                required: 2,
                alive: 1
            }),
            Some("unavailable")
        );
        assert_eq!(
            error_kind(&Outcome::Written {
                receipt: String::new()
            }),
            None
        );
    }
}
