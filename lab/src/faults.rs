//! Faults: what they are, how they are written (`partition n1,n2 / n3`,
//! `isolate n2`, `loss n2 20%`…) and how they are done to the lab.

use std::fmt;
use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use ringdb_proto::{FaultInjection, PeerFault};
use ringdb_ring::NodeId;

use crate::LabError;
use crate::command::iptables_in;
use crate::hosts::{CHAIN, HOST_ADDRESS, LabState, start_node};
use crate::inject::inject;

/// A fault, or the end of one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Fault {
    /// The sides cannot reach each other (every node named once).
    Partition(Vec<Vec<String>>),
    /// One node cannot reach nor be reached by any other.
    Isolate(String),
    /// Two sides that both reach one node in the middle (overlapping
    /// majorities): the first half, the middle node, the second half.
    Bridge,
    /// Every network fault removed.
    Heal,
    /// The node's process is killed (SIGKILL).
    Kill(String),
    /// The node's process is stopped (SIGSTOP).
    Pause(String),
    /// A paused node goes on (SIGCONT).
    Resume(String),
    /// The node is started again (killed first if it runs).
    Restart(String),
    /// The node drops this share (0 to 1) of the packets other nodes send
    /// it.
    Loss(String, f64),
    /// Every message the node sends or receives from another node waits
    /// this long, milliseconds, plus a jitter drawn up to the second
    /// figure (which reorders them): the nodes' own fault hook.
    Delay(String, u64, u64),
    /// This share (0 to 1) of the messages the node and its peers send
    /// each other is sent twice.
    Duplicate(String, f64),
    /// The node's wall clock moves this many milliseconds from the
    /// system's (negative: behind).
    Skew(String, i64),
    /// The node loses its data: killed, its data folder deleted, started
    /// again empty under the same id, streaming its ranges from the others
    /// (auto_bootstrap) before it serves.
    Wipe(String),
    /// A new node joins the lab (in this datacenter, or the first node's):
    /// it streams its ranges from the others before it serves.
    Join(String, Option<String>),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition(sides) => {
                let sides: Vec<String> = sides.iter().map(|side| side.join(",")).collect();
                write!(f, "partition {}", sides.join(" / "))
            }
            Fault::Isolate(node) => write!(f, "isolate {node}"),
            Fault::Bridge => write!(f, "bridge"),
            Fault::Heal => write!(f, "heal"),
            Fault::Kill(node) => write!(f, "kill {node}"),
            Fault::Pause(node) => write!(f, "pause {node}"),
            Fault::Resume(node) => write!(f, "resume {node}"),
            Fault::Restart(node) => write!(f, "restart {node}"),
            Fault::Loss(node, share) => write!(f, "loss {node} {}%", percent(*share)),
            Fault::Wipe(node) => write!(f, "wipe {node}"),
            Fault::Delay(node, delay, 0) => write!(f, "delay {node} {delay}ms"),
            Fault::Delay(node, delay, jitter) => write!(f, "delay {node} {delay}ms {jitter}ms"),
            Fault::Duplicate(node, share) => write!(f, "duplicate {node} {}%", percent(*share)),
            Fault::Skew(node, skew) => write!(f, "skew {node} {skew:+}ms"),
            Fault::Join(node, None) => write!(f, "join {node}"),
            Fault::Join(node, Some(datacenter)) => write!(f, "join {node} {datacenter}"),
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = LabError;

    /// `partition n1,n2 / n3` (or datacenters' names: `partition dc1 /
    /// dc2`), `isolate n2`, `bridge`, `heal`, `kill n2`, `pause n2`,
    /// `resume n2`, `restart n2`, `wipe n2`, `loss n2 20%`, `delay n2
    /// 50ms [20ms]`, `duplicate n2 10%`, `skew n2 +30s`, `join n4 [dc2]`.
    fn from_str(text: &str) -> Result<Fault, LabError> {
        let text = text.trim();
        let (verb, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let rest = rest.trim();
        let node = || -> Result<String, LabError> {
            match rest.split_whitespace().collect::<Vec<_>>()[..] {
                [node] => Ok(node.to_string()),
                _ => Err(LabError::Invalid(format!(
                    "`{verb}` takes one node: `{verb} n2`"
                ))),
            }
        };
        Ok(match verb {
            "partition" => {
                let sides: Vec<Vec<String>> = rest
                    .split('/')
                    .map(|side| {
                        side.split([',', ' '])
                            .filter(|n| !n.is_empty())
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let named: Vec<&String> = sides.iter().flatten().collect();
                if named
                    .iter()
                    .enumerate()
                    .any(|(i, n)| named[..i].contains(n))
                {
                    return Err(LabError::Invalid(
                        "a partition names each node once: `partition n1,n2 / n3`".into(),
                    ));
                }
                if sides.len() < 2 || sides.iter().any(Vec::is_empty) {
                    return Err(LabError::Invalid(
                        "a partition names two sides or more: `partition n1,n2 / n3`".into(),
                    ));
                }
                Fault::Partition(sides)
            }
            "isolate" => Fault::Isolate(node()?),
            "bridge" => Fault::Bridge,
            "heal" => Fault::Heal,
            "kill" => Fault::Kill(node()?),
            "pause" => Fault::Pause(node()?),
            "resume" => Fault::Resume(node()?),
            "restart" => Fault::Restart(node()?),
            "wipe" => Fault::Wipe(node()?),
            "join" => match rest.split_whitespace().collect::<Vec<_>>()[..] {
                [node] => Fault::Join(node.to_string(), None),
                [node, datacenter] => Fault::Join(node.to_string(), Some(datacenter.to_string())),
                _ => {
                    return Err(LabError::Invalid(
                        "`join` takes the new node's name and maybe its datacenter: \
                         `join n4` or `join n4 dc2`"
                            .into(),
                    ));
                }
            },
            "delay" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                let figure = |i: usize| {
                    parts
                        .get(i)
                        .and_then(|p| milliseconds(p))
                        .filter(|ms| (0..=60_000).contains(ms))
                };
                match (parts.len(), figure(1), figure(2)) {
                    (2, Some(delay), _) => Fault::Delay(parts[0].to_string(), delay as u64, 0),
                    (3, Some(delay), Some(jitter)) => {
                        Fault::Delay(parts[0].to_string(), delay as u64, jitter as u64)
                    }
                    _ => {
                        return Err(LabError::Invalid(
                            "`delay` takes a node, a delay and maybe a jitter, up to 60 s each: \
                             `delay n2 50ms` or `delay n2 50ms 20ms`"
                                .into(),
                        ));
                    }
                }
            }
            "skew" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                match (parts.len(), parts.get(1).and_then(|p| milliseconds(p))) {
                    (2, Some(skew)) if skew.abs() <= ringdb_proto::MAX_CLOCK_SKEW_MS => {
                        Fault::Skew(parts[0].to_string(), skew)
                    }
                    _ => {
                        return Err(LabError::Invalid(
                            "`skew` takes a node and how far to move its clock, within a day: \
                             `skew n2 +30s`, `skew n2 -500ms`"
                                .into(),
                        ));
                    }
                }
            }
            "loss" | "duplicate" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                let share = parts
                    .get(1)
                    .and_then(|p| p.strip_suffix('%'))
                    .and_then(|p| p.parse::<f64>().ok())
                    .filter(|p| (0.0..=100.0).contains(p));
                match (parts.len(), share, verb) {
                    (2, Some(percent), "loss") => {
                        Fault::Loss(parts[0].to_string(), percent / 100.0)
                    }
                    (2, Some(percent), _) => {
                        Fault::Duplicate(parts[0].to_string(), percent / 100.0)
                    }
                    _ => {
                        return Err(LabError::Invalid(format!(
                            "`{verb}` takes a node and a share of packets: `{verb} n2 20%`"
                        )));
                    }
                }
            }
            _ => {
                return Err(LabError::Invalid(format!(
                    "unknown fault {verb:?}: partition, isolate, bridge, heal, kill, pause, \
                     resume, restart, loss, delay, duplicate, skew, wipe or join"
                )));
            }
        })
    }
}

impl Fault {
    /// Whether `heal` ends it: a network fault, or a clock's skew.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            Fault::Partition(_)
                | Fault::Isolate(_)
                | Fault::Bridge
                | Fault::Loss(..)
                | Fault::Delay(..)
                | Fault::Duplicate(..)
                | Fault::Skew(..)
        )
    }

    /// Whether it ends a fault: `heal`, `resume`, `restart` (and `wipe`,
    /// which starts the node again at once).
    pub fn ends_fault(&self) -> bool {
        matches!(
            self,
            Fault::Heal | Fault::Resume(_) | Fault::Restart(_) | Fault::Wipe(_)
        )
    }

    /// Which nodes cannot reach which (pairs, both ways), for a partition,
    /// an isolation or a bridge of the lab's `names`.
    pub fn cuts(&self, names: &[String]) -> Vec<(String, String)> {
        let sides = match self {
            Fault::Partition(sides) => sides.clone(),
            Fault::Isolate(node) => vec![
                vec![node.clone()],
                names.iter().filter(|n| *n != node).cloned().collect(),
            ],
            Fault::Bridge => {
                let (left, right) = bridge_sides(names);
                vec![left, right]
            }
            _ => return Vec::new(),
        };
        let mut cuts = Vec::new();
        for (i, side) in sides.iter().enumerate() {
            for other in sides.iter().skip(i + 1) {
                for a in side {
                    for b in other {
                        cuts.push((a.clone(), b.clone()));
                    }
                }
            }
        }
        cuts
    }

    /// The sides a client's node is on during this fault: the partition's
    /// sides (a bridge's middle node is a side of its own).
    pub fn sides(&self, names: &[String]) -> Vec<Vec<String>> {
        match self {
            Fault::Partition(sides) => sides.clone(),
            Fault::Isolate(node) => vec![
                names.iter().filter(|n| *n != node).cloned().collect(),
                vec![node.clone()],
            ],
            Fault::Bridge => {
                let (left, right) = bridge_sides(names);
                let middle: Vec<String> = names
                    .iter()
                    .filter(|n| !left.contains(n) && !right.contains(n))
                    .cloned()
                    .collect();
                vec![left, middle, right]
            }
            _ => vec![names.to_vec()],
        }
    }

    /// The fault with datacenters' names in a partition's sides replaced
    /// by their nodes (`partition dc1 / dc2`).
    pub fn resolve(self, state: &LabState) -> Result<Fault, LabError> {
        let Fault::Partition(sides) = self else {
            return Ok(self);
        };
        let sides: Vec<Vec<String>> = sides
            .into_iter()
            .map(|side| {
                side.into_iter()
                    .flat_map(|name| match state.in_datacenter(&name) {
                        nodes if nodes.is_empty() || state.node(&name).is_ok() => vec![name],
                        nodes => nodes,
                    })
                    .collect()
            })
            .collect();
        Fault::Partition(sides).to_string().parse()
    }

    /// Does it to the lab in `dir`: `exe` restarts nodes.
    pub fn apply(&self, dir: &Path, state: &mut LabState, exe: &Path) -> Result<(), LabError> {
        // What was done is recorded even when a step fails half-way.
        let done = self.apply_steps(dir, state, exe);
        let saved = state.save(dir);
        done.and(saved)
    }

    fn apply_steps(&self, dir: &Path, state: &mut LabState, exe: &Path) -> Result<(), LabError> {
        let names = state.names();
        for name in self.named_nodes() {
            state.node(&name)?;
        }
        match self {
            Fault::Partition(_) | Fault::Isolate(_) | Fault::Bridge => {
                for (a, b) in self.cuts(&names) {
                    cut(state, &a, &b)?;
                }
                state.faults.push(self.to_string());
            }
            Fault::Loss(node, share) => {
                let namespace = state.node(node)?.namespace();
                let probability = format!("{share:.4}");
                let host = HOST_ADDRESS.to_string();
                iptables_in(
                    &namespace,
                    &[
                        "-A",
                        CHAIN,
                        "!",
                        "-s",
                        &host,
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        &probability,
                        "-j",
                        "DROP",
                    ],
                )?;
                state.faults.push(self.to_string());
            }
            Fault::Heal => {
                for node in &state.nodes {
                    iptables_in(&node.namespace(), &["-F", CHAIN])?;
                }
                // A paused node keeps its entry (and its faults) until it
                // goes on and is healed; one that does not run has none.
                let injected: Vec<String> = state.injected.keys().cloned().collect();
                let mut failed = Vec::new();
                for name in injected {
                    let node = state.node(&name)?.clone();
                    if state.paused.contains(&name) {
                        continue;
                    }
                    if node.running()
                        && let Err(error) = block_on(inject(dir, &node, FaultInjection::default()))
                    {
                        failed.push(error.to_string());
                        continue;
                    }
                    state.injected.remove(&name);
                }
                state.faults.clear();
                if !failed.is_empty() {
                    return Err(LabError::Invalid(failed.join("; ")));
                }
            }
            Fault::Delay(..) | Fault::Duplicate(..) | Fault::Skew(..) => {
                for name in self.named_nodes() {
                    if !state.node(&name)?.running() || state.paused.contains(&name) {
                        return Err(LabError::Invalid(format!(
                            "{name} does not run or is paused: restart or resume it first"
                        )));
                    }
                }
                for name in self.inject_into(state) {
                    let node = state.node(&name)?.clone();
                    let injection = state.injected.get(&name).cloned().unwrap_or_default();
                    block_on(inject(dir, &node, injection))?;
                }
                state.faults.push(self.to_string());
            }
            Fault::Kill(name) => {
                signal(state, name, Signal::SIGKILL)?;
                state.paused.retain(|n| n != name);
                // Its injected faults die with the process.
                state.injected.remove(name);
            }
            Fault::Pause(name) => {
                signal(state, name, Signal::SIGSTOP)?;
                state.paused.push(name.clone());
            }
            Fault::Resume(name) => {
                signal(state, name, Signal::SIGCONT)?;
                state.paused.retain(|n| n != name);
            }
            Fault::Restart(name) => restart(state, name, exe, false)?,
            Fault::Wipe(name) => restart(state, name, exe, true)?,
            Fault::Join(name, datacenter) => {
                if state.faults.iter().any(|f| f == "bridge") {
                    return Err(LabError::Invalid(
                        "a node cannot join while a bridge is in force (its sides follow the \
                         nodes' order): heal first"
                            .into(),
                    ));
                }
                crate::hosts::add_node(dir, state, name, datacenter.as_deref(), |state| {
                    place_in_faults(state, name)?;
                    let pid = start_node(state.node(name)?, exe)?;
                    state.nodes.last_mut().expect("the node just added").pid = Some(pid);
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// Records a delay, duplication or skew in the state's injections
    /// (a node's messages both ways: its own to every peer, and every
    /// peer's to it); returns the nodes whose injection changed.
    fn inject_into(&self, state: &mut LabState) -> Vec<String> {
        let names = state.names();
        let (node, change): (&String, &dyn Fn(&mut PeerFault)) = match self {
            Fault::Skew(node, skew) => {
                state
                    .injected
                    .entry(node.clone())
                    .or_default()
                    .clock_skew_ms = *skew;
                return vec![node.clone()];
            }
            Fault::Delay(node, delay, jitter) => (node, &|fault: &mut PeerFault| {
                fault.delay_ms = *delay;
                fault.jitter_ms = *jitter;
            }),
            Fault::Duplicate(node, share) => (node, &|fault: &mut PeerFault| {
                fault.duplicate = *share;
            }),
            _ => return Vec::new(),
        };
        let mut changed = Vec::new();
        // Nodes that do not run, or are paused, are left out: a process
        // started again has no injected faults.
        let reachable: Vec<String> = state
            .nodes
            .iter()
            .filter(|n| n.running() && !state.paused.contains(&n.name))
            .map(|n| n.name.clone())
            .collect();
        for other in names.iter().filter(|n| *n != node && reachable.contains(n)) {
            for (from, to) in [(node, other), (other, node)] {
                let injection = state.injected.entry(from.clone()).or_default();
                change(peer_fault(injection, to));
                if !changed.contains(from) {
                    changed.push(from.clone());
                }
            }
        }
        changed
    }

    /// The nodes it names (not a node it adds: [`Fault::joins`]).
    pub fn named_nodes(&self) -> Vec<String> {
        match self {
            Fault::Partition(sides) => sides.concat(),
            Fault::Isolate(n)
            | Fault::Kill(n)
            | Fault::Pause(n)
            | Fault::Resume(n)
            | Fault::Restart(n)
            | Fault::Wipe(n)
            | Fault::Delay(n, ..)
            | Fault::Duplicate(n, _)
            | Fault::Skew(n, _)
            | Fault::Loss(n, _) => vec![n.clone()],
            Fault::Bridge | Fault::Heal | Fault::Join(..) => Vec::new(),
        }
    }

    /// The node it adds to the lab.
    pub fn joins(&self) -> Option<&str> {
        match self {
            Fault::Join(node, _) => Some(node),
            _ => None,
        }
    }
}

/// Gives node `name`, joining, its place in the network faults in force:
/// on the side of a partition its seed (its datacenter's first node) is
/// on, cut from an isolated node. (Delays, duplication and loss injected
/// before it joined leave it out.)
fn place_in_faults(state: &mut LabState, name: &str) -> Result<(), LabError> {
    let datacenter = state.node(name)?.datacenter.clone();
    let seed = state
        .in_datacenter(&datacenter)
        .into_iter()
        .next()
        .unwrap_or_default();
    let names = state.names();
    let mut faults = Vec::new();
    for text in state.faults.clone() {
        let fault = match text.parse::<Fault>()? {
            Fault::Partition(mut sides) => {
                if let Some(side) = sides.iter_mut().find(|side| side.contains(&seed)) {
                    side.push(name.to_string());
                }
                Fault::Partition(sides)
            }
            other => other,
        };
        for (a, b) in fault.cuts(&names) {
            if a == name || b == name {
                cut(state, &a, &b)?;
            }
        }
        faults.push(fault.to_string());
    }
    state.faults = faults;
    Ok(())
}

/// Starts node `name` again, killing it first if it runs; `wipe`: with
/// its data deleted, to stream its ranges from the others before serving.
fn restart(state: &mut LabState, name: &str, exe: &Path, wipe: bool) -> Result<(), LabError> {
    if state.node(name)?.running() {
        signal(state, name, Signal::SIGKILL)?;
        wait_exit(state.node(name)?);
    }
    state.paused.retain(|n| n != name);
    state.injected.remove(name);
    let node = state.node(name)?.clone();
    if wipe {
        let mut config = ringdb_node::Config::load(&node.config).map_err(|e| {
            LabError::Invalid(format!("cannot read {}: {e}", node.config.display()))
        })?;
        let data = config.data_dir.clone();
        if data.exists() {
            std::fs::remove_dir_all(&data)
                .map_err(LabError::io(format!("cannot delete {}", data.display())))?;
        }
        // Written as `up` wrote it (paths relative to the node's folder).
        config.data_dir = "data".into();
        config.tls.ca_certificate = "../ca.pem".into();
        config.tls.certificate = format!("{name}.pem").into();
        config.tls.key = format!("{name}.key").into();
        config.cluster.auto_bootstrap = true;
        std::fs::write(&node.config, config.to_toml()).map_err(LabError::io(format!(
            "cannot write {}",
            node.config.display()
        )))?;
    }
    let pid = start_node(&node, exe)?;
    let at = state
        .nodes
        .iter()
        .position(|n| n.name == name)
        .expect("a known node");
    state.nodes[at].pid = Some(pid);
    Ok(())
}

/// The fault of `injection` on messages to `peer`, made if there is none.
fn peer_fault<'a>(injection: &'a mut FaultInjection, peer: &str) -> &'a mut PeerFault {
    let at = match injection.peers.iter().position(|f| f.peer.as_str() == peer) {
        Some(at) => at,
        None => {
            injection.peers.push(PeerFault {
                peer: NodeId::new(peer),
                drop: 0.0,
                delay_ms: 0,
                jitter_ms: 0,
                duplicate: 0.0,
            });
            injection.peers.len() - 1
        }
    };
    &mut injection.peers[at]
}

/// Waits for `future` from the blocking section of a multi-threaded
/// runtime (the lab's commands run inside `block_in_place`).
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Handle::current().block_on(future)
}

/// A share as a percentage, without float noise (0.07 is `7`).
fn percent(share: f64) -> f64 {
    (share * 100.0 * 1e6).round() / 1e6
}

/// `50ms`, `+30s`, `-2s`, `0`: milliseconds.
fn milliseconds(text: &str) -> Option<i64> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1000.0)
    } else {
        (text, 1.0)
    };
    let value = number.parse::<f64>().ok()? * scale;
    (value.is_finite() && value.abs() < 1e12).then_some(value.round() as i64)
}

/// A bridge's two sides: the nodes before the middle one, and after it.
fn bridge_sides(names: &[String]) -> (Vec<String>, Vec<String>) {
    let middle = names.len() / 2;
    (names[..middle].to_vec(), names[middle + 1..].to_vec())
}

/// Cuts nodes `a` and `b` apart, both ways: each drops what the other
/// sends.
fn cut(state: &LabState, a: &str, b: &str) -> Result<(), LabError> {
    let (a, b) = (state.node(a)?, state.node(b)?);
    drop_from(&a.namespace(), &b.address.to_string())?;
    drop_from(&b.namespace(), &a.address.to_string())
}

/// Drops what `from` sends, inside `namespace`.
fn drop_from(namespace: &str, from: &str) -> Result<(), LabError> {
    iptables_in(namespace, &["-A", CHAIN, "-s", from, "-j", "DROP"]).map(|_| ())
}

/// Sends `signal` to node `name`'s process; refused when it does not run.
fn signal(state: &LabState, name: &str, signal: Signal) -> Result<(), LabError> {
    let node = state.node(name)?;
    match node.pid.filter(|_| node.running()) {
        Some(pid) => kill(Pid::from_raw(pid as i32), signal)
            .map_err(|e| LabError::Invalid(format!("cannot signal {name}: {e}"))),
        None => Err(LabError::Invalid(format!(
            "{name} does not run (start it with `ringdb lab restart {name}`)"
        ))),
    }
}

/// Waits (a little) for a killed node's process to be gone.
fn wait_exit(node: &crate::hosts::LabNode) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while node.running() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["n1", "n2", "n3"].map(String::from).to_vec()
    }

    #[test]
    fn faults_read_as_they_are_written() {
        for text in [
            "partition n1,n2 / n3",
            "isolate n2",
            "bridge",
            "heal",
            "kill n2",
            "pause n3",
            "resume n3",
            "restart n1",
            "loss n2 20%",
            "loss n2 7%",
            "wipe n2",
            "delay n2 50ms",
            "delay n2 50ms 20ms",
            "duplicate n1 10%",
            "skew n3 +30000ms",
            "skew n3 -500ms",
            "join n4",
            "join n5 dc2",
        ] {
            let fault: Fault = text.parse().unwrap();
            assert_eq!(fault.to_string(), text);
        }
        let spaced: Fault = "partition n1 n2/n3".parse().unwrap();
        assert_eq!(spaced.to_string(), "partition n1,n2 / n3");
        for bad in [
            "partition n1",
            "partition n1,n2 / n2,n3",
            "isolate",
            "loss n2 120%",
            "flood n1",
            "kill n1 n2",
            "join",
            "join n4 dc2 rack1",
        ] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }

    #[test]
    fn datacenters_names_stand_for_their_nodes_in_a_partition() {
        let node = |name: &str, datacenter: &str| crate::hosts::LabNode {
            name: name.into(),
            address: std::net::Ipv4Addr::LOCALHOST,
            config: format!("/lab/{name}/node.toml").into(),
            datacenter: datacenter.into(),
            pid: None,
        };
        let state = LabState {
            nodes: vec![node("n1", "dc1"), node("n2", "dc1"), node("n3", "dc2")],
            ..LabState::default()
        };
        let resolve = |text: &str| text.parse::<Fault>().unwrap().resolve(&state);
        assert_eq!(
            resolve("partition dc1 / dc2").unwrap().to_string(),
            "partition n1,n2 / n3"
        );
        assert_eq!(
            resolve("partition n1 / n2,dc2").unwrap().to_string(),
            "partition n1 / n2,n3"
        );
        assert!(resolve("partition dc1 / n1,n3").is_err());
        assert_eq!(resolve("isolate n3").unwrap(), Fault::Isolate("n3".into()));
    }

    #[test]
    fn cuts_separate_the_sides_and_a_bridge_keeps_its_middle() {
        let partition: Fault = "partition n1,n2 / n3".parse().unwrap();
        assert_eq!(
            partition.cuts(&names()),
            [("n1".into(), "n3".into()), ("n2".into(), "n3".into())]
        );
        assert_eq!(
            Fault::Isolate("n1".into()).cuts(&names()),
            [("n1".into(), "n2".into()), ("n1".into(), "n3".into())]
        );
        assert_eq!(Fault::Bridge.cuts(&names()), [("n1".into(), "n3".into())]);
        assert_eq!(
            Fault::Bridge.sides(&names()),
            [vec!["n1".to_string()], vec!["n2".into()], vec!["n3".into()]]
        );
    }
}
