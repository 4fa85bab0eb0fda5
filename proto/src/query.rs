//! Statements over the client protocol: a CQL statement with its session
//! (keyspace, consistency, paging, contexts), and what it returns.
//!
//! The node parses and executes the statement (`ringdb-cql` and the node's
//! statement engine): the shell, the typed Rust client and, later,
//! Cassandra's drivers over the native protocol all reach the same code.

use serde::{Deserialize, Serialize};

use crate::{ConsistencyLevel, CqlType, Value};

/// The most bind values a statement can carry.
pub const MAX_BOUND_VALUES: usize = 65_535;

/// One statement and the session it runs in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// The statement's CQL text.
    pub cql: String,
    /// Values for its bind markers, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Value>,
    /// The session's keyspace (`USE`), for names without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    /// How many replicas a data statement needs.
    pub consistency: ConsistencyLevel,
    /// Return the coordinator's trace of the statement.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tracing: bool,
}

/// What a statement did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum QueryResult {
    /// Done; nothing to show.
    Void,
    /// `USE`: the session's keyspace is now this one.
    SetKeyspace(String),
    /// A DDL statement changed the schema (or, with `IF [NOT] EXISTS`,
    /// had nothing to do: `version` is then `None`).
    SchemaChange {
        /// What changed: `CREATED KEYSPACE shop`, `DROPPED TABLE shop.t`…
        change: String,
        /// The schema version after it, on the node that ran it.
        version: Option<String>,
    },
    /// Rows, with their columns.
    Rows(Rows),
    /// `DESCRIBE`: CQL text.
    Description(String),
}

/// Rows a statement returned.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// The columns: name and type.
    pub columns: Vec<(String, CqlType)>,
    /// The rows, each with a value per column.
    pub rows: Vec<Vec<Value>>,
}
