//! The typed errors a node answers requests with, on both protocols: each
//! says what happened and carries what a client needs to act on it.

use ringdb_ring::NodeId;
use serde::{Deserialize, Serialize};

/// Why a request has no answer. Crosses the wire with its fields, so that a
/// client can act on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RequestError {
    /// Too few replicas were reachable to meet the consistency level, known
    /// before anything was sent to them.
    #[error(
        "unavailable: {required} replicas required but only {alive} alive; nothing was sent to them"
    )]
    Unavailable {
        /// Replicas the consistency level needs.
        required: usize,
        /// Replicas reachable when the request arrived.
        alive: usize,
    },
    /// Not enough replicas answered in time. For a write, the write may
    /// still have happened on some replicas (and may spread from them).
    #[error(
        "timeout: {acknowledged}/{required} replicas answered in time{}",
        if *write { "; the write may still have been applied" } else { "" }
    )]
    Timeout {
        /// Replicas the consistency level needs.
        required: usize,
        /// Replicas that answered before the deadline.
        acknowledged: usize,
        /// Whether the request was a write (whose outcome is then unknown).
        write: bool,
    },
    /// The node (or the connection to it) has too many requests in flight;
    /// retry later or elsewhere. Nothing was done.
    #[error("overloaded: {reason}; nothing was done, retry later")]
    Overloaded {
        /// Which limit was reached.
        reason: String,
    },
    /// The request cannot be served as asked (a key or value over a limit,
    /// a consistency level that cannot be met, a malformed context).
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong with it.
        reason: String,
    },
    /// A node refused a connection from a node whose cluster settings
    /// differ from its own (see [`ClusterSettings`]).
    #[error("{node} refused this node: {setting} is {theirs} on {node} but {ours} here")]
    SettingsMismatch {
        /// The node that refused.
        node: NodeId,
        /// Which setting differs.
        setting: String,
        /// Its value on the refusing node.
        theirs: String,
        /// Its value on the refused node.
        ours: String,
    },
    /// A replica found its copy of the data damaged on disk (a checksum
    /// that does not match): it serves nothing damaged, and is restoring
    /// the data from the other replicas. Another level, or a moment, may
    /// succeed.
    #[error("damaged data on {node}: {detail}; it is being restored from the other replicas")]
    DamagedData {
        /// The replica with damaged data.
        node: NodeId,
        /// What the storage found.
        detail: String,
    },
    /// A write's context names versions that no replica the coordinator
    /// can reach holds (they are on replicas that are down or cut off, or
    /// were purged since the read). Superseding what it cannot see would
    /// let those versions come back, so nothing was written.
    #[error(
        "the context names versions that no replica reachable from {node} holds; nothing was \
         written: retry once the row's replicas are back, or read the row again"
    )]
    UnreachableContext {
        /// The coordinator.
        node: NodeId,
    },
    /// A node asked to read or apply a row it does not replicate in its
    /// view of the ring, current or pending (it left, gave the range away
    /// while a node joined, or was removed and started again empty): what
    /// it holds may be stale and what it stores no read would find, so it
    /// serves nothing and the coordinator reads another replica (or hints
    /// the write). Seen by a client only when no other replica could answer.
    #[error("{node} does not replicate this row in its view of the ring; read another replica")]
    NotAReplica {
        /// The node that refused.
        node: NodeId,
    },
    /// A statement that is not CQL, uses a feature ringdb does not have,
    /// or does not fit the schema: where, and what is wrong there.
    #[error("line {line}:{column}: {message}")]
    InvalidStatement {
        /// The line, from 1.
        line: u32,
        /// The column, from 1.
        column: u32,
        /// What was expected there, or the feature refused.
        message: String,
    },
    /// A statement creates a keyspace or table that exists (without `IF
    /// NOT EXISTS`).
    #[error("{what} already exists")]
    AlreadyExists {
        /// `keyspace shop`, `table shop.t`.
        what: String,
    },
    /// A query names a prepared statement ([`Query::prepared`]) this node
    /// does not hold (it restarted since, or it was prepared elsewhere):
    /// send it again with its text. Nothing was done.
    ///
    /// [`Query::prepared`]: crate::Query::prepared
    #[error("statement {id} is not prepared on this node; send it again with its text")]
    Unprepared {
        /// The prepared statement's id, in hex.
        id: String,
    },
    /// The node failed while serving the request (storage error); the
    /// outcome of a write is unknown.
    #[error("server error on {node}: {reason}")]
    Server {
        /// The node that failed.
        node: NodeId,
        /// What failed.
        reason: String,
    },
}

impl RequestError {
    /// An [`RequestError::Overloaded`] with its reason.
    pub fn overloaded(reason: impl Into<String>) -> RequestError {
        RequestError::Overloaded {
            reason: reason.into(),
        }
    }

    /// An [`RequestError::InvalidRequest`] with its reason.
    pub fn invalid(reason: impl Into<String>) -> RequestError {
        RequestError::InvalidRequest {
            reason: reason.into(),
        }
    }
}
