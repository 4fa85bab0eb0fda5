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
    /// The statement prepared as this ([`ClientRequest::Prepare`]): the node
    /// runs the statement it parsed then, and `cql` may be left empty. A
    /// node that does not hold it (restarted, or never asked) answers
    /// [`RequestError::Unprepared`]; sent again with `cql`, the node parses
    /// it once more (checking that it is the statement prepared as `id`)
    /// and keeps it. [`Prepared::bind`] makes such a query, and the client
    /// resends it with its text by itself.
    ///
    /// [`ClientRequest::Prepare`]: crate::ClientRequest::Prepare
    /// [`RequestError::Unprepared`]: crate::RequestError::Unprepared
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared: Option<PreparedId>,
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
            prepared: None,
        }
    }
}

/// A prepared statement's name: the same on every node for the same text
/// and keyspace (a hash of both), so a query prepared through one node
/// runs through any other that prepared it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PreparedId(pub [u8; 16]);

impl std::fmt::Display for PreparedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// One bind marker of a prepared statement: what value it takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The column it is compared with or written to (as cqlsh and
    /// Cassandra's drivers name it), or `[limit]`, `[timestamp]`…
    pub name: String,
    /// The type of value it takes.
    pub ty: CqlType,
}

/// A statement parsed and checked once by a node, to run many times with
/// different values ([`ClientRequest::Prepare`]).
///
/// [`ClientRequest::Prepare`]: crate::ClientRequest::Prepare
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    /// Its name on the nodes.
    pub id: PreparedId,
    /// Its text.
    pub cql: String,
    /// The keyspace its unqualified names are in.
    pub keyspace: Option<String>,
    /// Its bind markers, in order.
    pub markers: Vec<Marker>,
}

/// Values that do not fit a prepared statement's markers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// Not one value per marker.
    #[error("the statement takes {expected} values, not {given}")]
    Count {
        /// Markers.
        expected: usize,
        /// Values given.
        given: usize,
    },
    /// A value of the wrong type.
    #[error("value {position} ({name}): {error}")]
    Type {
        /// Its position, from 1.
        position: usize,
        /// Its marker's name.
        name: String,
        /// What does not fit.
        error: crate::ValueError,
    },
}

impl Prepared {
    /// A query running this statement with `values` (one per marker, each
    /// of its marker's type; `null` fits any) at `consistency`.
    pub fn bind(
        &self,
        values: Vec<Value>,
        consistency: ConsistencyLevel,
    ) -> Result<Query, BindError> {
        if values.len() != self.markers.len() {
            return Err(BindError::Count {
                expected: self.markers.len(),
                given: values.len(),
            });
        }
        let values = values
            .into_iter()
            .zip(&self.markers)
            .enumerate()
            .map(|(index, (value, marker))| {
                value.checked(marker.ty).map_err(|error| BindError::Type {
                    position: index + 1,
                    name: marker.name.clone(),
                    error,
                })
            })
            .collect::<Result<Vec<Value>, BindError>>()?;
        Ok(Query {
            values,
            keyspace: self.keyspace.clone(),
            prepared: Some(self.id),
            ..Query::new(self.cql.clone(), consistency)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_checks_every_value_against_its_marker() {
        let prepared = Prepared {
            id: PreparedId([7; 16]),
            cql: "SELECT * FROM t WHERE k = ? LIMIT ?".into(),
            keyspace: Some("ks".into()),
            markers: vec![
                Marker {
                    name: "k".into(),
                    ty: CqlType::Text,
                },
                Marker {
                    name: "[limit]".into(),
                    ty: CqlType::Int,
                },
            ],
        };
        let level = ConsistencyLevel::One;
        let query = prepared
            .bind(vec![Value::Text("a".into()), Value::Null], level)
            .unwrap();
        assert_eq!(query.prepared, Some(PreparedId([7; 16])));
        assert_eq!(query.keyspace.as_deref(), Some("ks"));
        assert_eq!(query.cql, prepared.cql);
        let short = prepared.bind(vec![Value::Text("a".into())], level);
        assert_eq!(
            short.unwrap_err().to_string(),
            "the statement takes 2 values, not 1"
        );
        let wrong = prepared.bind(vec![Value::Text("a".into()), Value::BigInt(3)], level);
        assert_eq!(
            wrong.unwrap_err().to_string(),
            "value 2 ([limit]): expected a value of type int, got bigint"
        );
    }
}
