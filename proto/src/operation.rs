//! Topology operations (decommission, removenode) that a node runs as
//! tasks of its own, as a client follows them.

use ringdb_ring::NodeId;
use serde::{Deserialize, Serialize};

/// A topology operation (decommission, removenode) a node runs as a task
/// of its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationStatus {
    /// The node that runs it.
    pub node: NodeId,
    /// What it does: `decommission node4`, `removenode node3`.
    pub kind: String,
    /// When it started, in microseconds since the Unix epoch.
    pub started_micros: i64,
    /// Where it stands (`streaming range 12 of 48`).
    pub progress: String,
    /// How it ended; [`OperationOutcome::Running`] until then.
    pub outcome: OperationOutcome,
}

/// How a topology operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationOutcome {
    /// Still running.
    Running,
    /// Done.
    Succeeded {
        /// What it did.
        summary: String,
    },
    /// Stopped by an error; the error says what state it left.
    Failed {
        /// Why.
        error: String,
    },
    /// Stopped by `--abort`.
    Aborted {
        /// What state it left.
        summary: String,
    },
}
