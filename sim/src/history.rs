//! What happened in a run, in order: every client operation's invocation
//! and completion, and every fault. The checkers read it; a failing run
//! writes it out; two runs of one seed produce it byte for byte.

use std::fmt::Write as _;

use ringdb_proto::ConsistencyLevel;
use serde::{Deserialize, Serialize};

/// A row the workloads use: `table` (0 or 1) and `key`, and whether
/// writes to it carry contexts (chain keys) or never do (blind keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    /// Which table: `t0` or `t1`.
    pub table: u8,
    /// Which row of it.
    pub key: u32,
    /// Written only with contexts (read → write chains), or only without.
    pub chain: bool,
}

impl Key {
    /// The table's name.
    pub fn table_name(&self) -> String {
        Key::table_name_of(self.table)
    }

    /// The name of table number `table`.
    pub fn table_name_of(table: u8) -> String {
        format!("t{table}")
    }

    /// The partition key's text.
    pub fn partition(&self) -> String {
        let kind = if self.chain { "chain" } else { "blind" };
        format!("{kind}{}", self.key)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.table_name(), self.partition())
    }
}

/// What a write superseded, as far as its client knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seen {
    /// No context: the write supersedes whatever its coordinator holds.
    Blind,
    /// A context covering these values (from the read or write it follows).
    Values(Vec<u64>),
}

/// A client operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Write `value` (unique in the run) to `key`.
    Put {
        /// The row.
        key: Key,
        /// The value: unique in the run.
        value: u64,
        /// The consistency level.
        consistency: ConsistencyLevel,
        /// What it supersedes.
        seen: Seen,
    },
    /// Delete `key`.
    Delete {
        /// The row.
        key: Key,
        /// The consistency level.
        consistency: ConsistencyLevel,
        /// What it supersedes.
        seen: Seen,
    },
    /// Read `key`.
    Get {
        /// The row.
        key: Key,
        /// The consistency level.
        consistency: ConsistencyLevel,
    },
}

impl Op {
    /// The row it touches.
    pub fn key(&self) -> Key {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } | Op::Get { key, .. } => *key,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A write acknowledged by its consistency level.
    Written {
        /// The receipt: who coordinated, acknowledged, was hinted.
        receipt: String,
    },
    /// A read: the live siblings' values and the dots that wrote them
    /// (`node@epoch:counter`).
    Read {
        /// The values, sorted.
        values: Vec<u64>,
        /// Each value's writer, in the same order.
        writers: Vec<String>,
        /// The receipt: who coordinated and answered.
        receipt: String,
    },
    /// Failed before anything was done (`Unavailable`, refused, not sent).
    Refused(String),
    /// Failed with an unknown outcome (a timeout, a lost connection): a
    /// write may have been applied.
    Unknown(String),
}

/// One entry of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A client started an operation.
    Invoke {
        /// Simulated milliseconds since the run started.
        at_ms: u64,
        /// The operation's id (unique in the run).
        id: u64,
        /// The client.
        client: u32,
        /// The node it asked.
        node: String,
        /// What it asked.
        op: Op,
    },
    /// An operation ended.
    Complete {
        /// Simulated milliseconds since the run started.
        at_ms: u64,
        /// The operation's id.
        id: u64,
        /// How.
        outcome: Outcome,
    },
    /// The nemesis did something.
    Fault {
        /// Simulated milliseconds since the run started.
        at_ms: u64,
        /// What, for people.
        what: String,
    },
    /// A node died for good, its data with it, and was removed: what only
    /// it held is gone (a write at ONE it took and had not yet passed on).
    NodeLost {
        /// Simulated milliseconds since the run started.
        at_ms: u64,
        /// The node.
        node: String,
    },
    /// The final state of a row, after heal and repair.
    Final {
        /// The row.
        key: Key,
        /// Its values, sorted.
        values: Vec<u64>,
        /// Each value's writer.
        writers: Vec<String>,
    },
}

/// A run's history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The events, in order.
    pub events: Vec<Event>,
}

impl History {
    /// One JSON object per line: what a failing run writes out, and what
    /// two runs of one seed must agree on byte for byte.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for event in &self.events {
            let line = serde_json::to_string(event).expect("an event encodes");
            let _ = writeln!(text, "{line}");
        }
        text
    }
}
