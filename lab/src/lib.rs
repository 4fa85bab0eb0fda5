//! # ringdb-lab: partition experiments on real nodes
//!
//! The exercise every course on distributed databases sets: start three
//! nodes, cut the network, and watch what ONE and QUORUM do. `ringdb lab`
//! makes it one command, on the real thing: each node is a real `ringdb`
//! process in its own Linux network namespace, joined to the others by a
//! bridge, and the faults are real:
//!
//! - **hosts** ([`hosts`]): `lab up` makes a bridge (`rdblab0`,
//!   10.77.0.254/24, a range used only inside the lab), a namespace per
//!   node (`rdblab-n1`…) with a veth pair to the bridge and the address
//!   10.77.0.*i*, a CA, certificates and a `node.toml` per node, and starts
//!   the nodes one by one (spread over datacenters with `--dcs`; a node
//!   is added to a running lab by `join`). Everything it makes is named
//!   with the lab's
//!   prefix, so `lab down` finds and removes it (processes, namespaces and
//!   with them their rules, the bridge) even when the command that made it
//!   was killed half-way and its state file is stale;
//! - **faults** ([`faults`]): partitions are iptables DROP rules on INPUT
//!   inside the namespaces (a chain of the lab's own, flushed by `heal`),
//!   packet loss is iptables' `statistic` match, processes are killed
//!   (SIGKILL), paused (SIGSTOP) past the failure detector, resumed and
//!   restarted. The lab's own clients connect from the bridge's address,
//!   which no rule drops: they reach both sides of a partition, as the
//!   application servers on each side would;
//! - **experiments** ([`experiment`]): a schedule of faults plays while the
//!   simulator's workloads run against the real nodes (through
//!   [`target::LabTarget`]) and record every operation (invocation and
//!   completion times, node, level, result, value) into a history; after
//!   the last fault everything is healed and the lab measures how long the
//!   replicas take to agree by themselves (hints, read repair,
//!   anti-entropy), repairing if they do not;
//! - **checkers and figures** ([`measure`]): the simulator's checkers run on
//!   the real history (acknowledged writes lost, values never written,
//!   resurrected deletes, dots reused, stale reads where the levels must
//!   overlap: R + W > N, or across datacenters as
//!   [`ringdb_sim::quorum`] works it out, reads going back where the
//!   levels must overlap), and
//!   the lab adds what an experimenter wants to see: stale reads at every
//!   level (a read missing a write acknowledged before it began), during
//!   the faults and outside them, availability per level and per side of a
//!   partition, errors by kind, latency and throughput over time;
//! - **reports** ([`report`]): a self-contained HTML page with the charts
//!   (plotters, as SVG), a Markdown summary and the figures as JSON, made
//!   again from a history by `lab report`.
//!
//! Its commands run inside a multi-threaded tokio runtime (they wait for
//! the system's commands in `block_in_place`).
//!
//! The lab needs root (namespaces, veth, iptables) and the `ip` and
//! `iptables` commands; without them it says what is missing and how to
//! install it. This kernel has no `tc netem`, so delay, jitter (which
//! reorders messages), duplication and clock skew go through the nodes'
//! own fault hook and clock ([`inject`]): the lab proves itself with a
//! certificate of the cluster's CA, and its nodes' configs allow it.

use std::path::PathBuf;

pub mod command;
pub mod experiment;
pub mod faults;
pub mod hosts;
pub mod inject;
pub mod measure;
pub mod report;
pub mod target;

mod charts;

/// Why a lab command failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Namespaces and iptables need root.
    #[error(
        "ringdb lab needs root to make network namespaces, veth pairs and iptables rules: \
         run it as root (sudo)"
    )]
    NotRoot,
    /// A command the lab runs is not installed.
    #[error("`{tool}` is not installed; on Debian or Ubuntu: apt-get install {package}")]
    Missing {
        /// The command.
        tool: &'static str,
        /// The package that has it.
        package: &'static str,
    },
    /// A command the lab ran failed.
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },
    /// A file of the lab could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What the lab was doing.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// `lab up` found a lab already up.
    #[error(
        "a lab is already up ({0}); see it with `ringdb lab status`, remove it with `ringdb lab down`"
    )]
    AlreadyUp(String),
    /// No lab is up in the folder.
    #[error("no lab is up in {}: start one with `ringdb lab up`", .0.display())]
    NotUp(PathBuf),
    /// A node name the lab does not have.
    #[error("the lab has no node {name:?} (it has {known})")]
    UnknownNode {
        /// The name given.
        name: String,
        /// The lab's nodes.
        known: String,
    },
    /// A fault, schedule or option that does not make sense.
    #[error("{0}")]
    Invalid(String),
    /// A node did not start or did not join the others.
    #[error("{node} did not start: {why}")]
    NodeStart {
        /// The node.
        node: String,
        /// Why, with the end of its log.
        why: String,
    },
    /// Certificates could not be made.
    #[error(transparent)]
    Tls(#[from] ringdb_node::tls::TlsError),
    /// The lab's clients could not reach the cluster.
    #[error(transparent)]
    Client(#[from] ringdb_client::ClientError),
    /// A state or history file is not what the lab wrote.
    #[error("{what}: {source}")]
    Format {
        /// Which file.
        what: String,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// A chart could not be drawn.
    #[error("cannot draw {chart}: {why}")]
    Chart {
        /// Which chart.
        chart: &'static str,
        /// Why.
        why: String,
    },
}

impl LabError {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
        let what = what.into();
        move |source| LabError::Io { what, source }
    }
}
