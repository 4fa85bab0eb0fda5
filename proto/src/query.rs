//! Statements over the client protocol: a CQL statement with its session
//! (keyspace, consistency, paging, contexts), and what it returns.
//!
//! The node parses and executes the statement (`ringdb-cql` and the node's
//! statement engine): the shell, the typed Rust client and, later,
//! Cassandra's drivers over the native protocol all reach the same code.

use serde::{Deserialize, Serialize};

use crate::{ConsistencyLevel, Context, CqlType, Value};

/// The most bind values a statement can carry.
pub const MAX_BOUND_VALUES: usize = 65_535;
/// The most row contexts a statement can carry.
pub const MAX_SESSION_CONTEXTS: usize = 10_000;

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
    /// The most rows a `SELECT` returns at once; the rest follow, a page at
    /// a time, with [`Rows::paging_state`]. `None`: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// Where the previous page of this same `SELECT` ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging_state: Option<PagingState>,
    /// The contexts of rows the session read lately ([`Rows::contexts`]):
    /// a write of one of these rows supersedes what its read saw (every
    /// sibling it showed), not only what the coordinator holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<RowContext>,
}

impl Query {
    /// A statement with nothing bound, run at `consistency`.
    pub fn new(cql: impl Into<String>, consistency: ConsistencyLevel) -> Query {
        Query {
            cql: cql.into(),
            values: Vec::new(),
            keyspace: None,
            consistency,
            tracing: false,
            page_size: None,
            paging_state: None,
            contexts: Vec::new(),
        }
    }
}

/// Where a page of a `SELECT` ended: opaque, handed back for the next page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagingState(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// A row, as a session names it when it hands its context back: opaque
/// (the row's table, partition and clustering keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RowRef(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// What a read saw of one row: the context a following write of the row
/// hands back, so that it supersedes those versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowContext {
    /// The row.
    pub row: RowRef,
    /// What the read saw of it.
    pub context: Context,
}

/// Which version of its row a row of a result is (more than one when
/// writes were concurrent: siblings), and who wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiblingMark {
    /// Its position among its row's versions, from 1.
    pub index: u32,
    /// How many versions the row has.
    pub count: u32,
    /// The dot that wrote it: `node@epoch:counter`.
    pub writer: String,
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
    /// `INSERT`, `UPDATE`, `DELETE` or `BATCH` wrote: each row's context
    /// after the write, for the session's next write of it (which then
    /// supersedes this one rather than standing beside it).
    Written {
        /// The rows written.
        contexts: Vec<RowContext>,
    },
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
    /// For each row, in order, which version of its row it is and who
    /// wrote it (a row with concurrent versions, siblings, comes once per
    /// version); empty for results that are not rows of a table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub siblings: Vec<Option<SiblingMark>>,
    /// The context of every row read (once per row, whatever its siblings),
    /// for the session to hand back with its next writes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<RowContext>,
    /// Set when more rows follow: ask again with it for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging_state: Option<PagingState>,
}

/// One event of a statement's trace, as its coordinator recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// What happened: `asked node2 for partition …`, `node2 answered`…
    pub activity: String,
    /// The node that recorded it (the coordinator).
    pub source: String,
    /// Microseconds since the statement arrived at the node.
    pub elapsed_micros: u64,
}
