//! The statement workload: CQL on a table with a clustering column,
//! `sim.rows (p text, c int, v bigint, PRIMARY KEY (p, c)) WITH
//! CLUSTERING ORDER BY (c DESC)`, through the nodes' statement engine.
//!
//! Its rows are workload keys of table [`CQL_TABLE`]: key `k` is partition
//! `p{k / 4}`, clustering key `c = k % 4`, so the checkers check them as
//! they check the key-value rows. A statement that touches several rows is
//! recorded as one operation per row, invoked and completed together:
//!
//! - `INSERT` of a unique value (a blind write: no context);
//! - a `BATCH` of inserts of unique values into two rows of the partition
//!   and, half the time, the delete of a third (blind): written together,
//!   atomically on each replica;
//! - a slice `SELECT … WHERE p = ? AND c >= ? AND c <= ?`, in either
//!   order: a read of every row of the slice (a row it does not return was
//!   read empty);
//! - a range `DELETE … WHERE p = ? AND c >= ? AND c <= ?`: a blind delete
//!   of every row of the range (it deletes what a read at its level finds,
//!   as a blind delete of one row does);
//! - a chain, as a session does: `SELECT` of one row, then an `INSERT` or a
//!   `DELETE` of it handing back the context the read returned, which
//!   supersedes exactly the values the read saw (so the checkers can tell
//!   a resurrected value); a row the read did not find has no context, and
//!   the write after it is a blind one.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use ringdb_proto::{
    ClientReply, ClientRequest, ClusteringKey, ConsistencyLevel, CqlType, Order, PartitionKey,
    Query, QueryResult, RowAddress, TableId, Value,
};
use ringdb_wire::multiplex::CallError;

use crate::history::{Event, Key, Op, Outcome, Seen};
use crate::workload::{Session, outcome};

/// The workload table number of `sim.rows`' rows.
pub const CQL_TABLE: u8 = 2;
/// Rows of `sim.rows` the workload uses (two partitions).
pub const CQL_ROWS: u32 = 8;
/// Clustering keys per partition.
const PER_PARTITION: u32 = 4;
/// The replication of the `sim` keyspace.
pub fn keyspace_replication() -> ringdb_ring::Replication {
    ringdb_ring::Replication::PerDatacenter {
        factors: [("datacenter1".to_string(), 3)].into(),
    }
}

/// The statements that make the schema, in order.
pub const SCHEMA: [&str; 2] = [
    // Placed by another replication than the cluster's (SimpleStrategy,
    // 3), with as many replicas: the keyspace's rows have their own
    // Merkle trees, streams and cleanup, and the checkers' quorums hold.
    "CREATE KEYSPACE IF NOT EXISTS sim WITH replication = \
     {'class': 'NetworkTopologyStrategy', 'datacenter1': 3}",
    "CREATE TABLE IF NOT EXISTS sim.rows (p text, c int, v bigint, PRIMARY KEY (p, c)) \
     WITH CLUSTERING ORDER BY (c DESC)",
];

/// The partition and clustering key of workload key `key` of `sim.rows`.
fn keys_of(key: &Key) -> (String, i32) {
    (
        format!("p{}", key.key / PER_PARTITION),
        (key.key % PER_PARTITION) as i32,
    )
}

/// The address of a row of `sim.rows`, stored under table id `table`.
pub fn address(key: &Key, table: TableId) -> RowAddress {
    let (partition, clustering) = keys_of(key);
    let partition = PartitionKey::from_values(&[(&Value::Text(partition), CqlType::Text)])
        .expect("a short text key");
    let clustering = ClusteringKey::encode(&[(&Value::Int(clustering), CqlType::Int, Order::Desc)])
        .expect("an int key");
    RowAddress::of_table(table, partition, clustering)
}

/// ANY is not for partial writes (statements refuse it): ONE instead.
fn statement_level(level: ConsistencyLevel) -> ConsistencyLevel {
    match level {
        ConsistencyLevel::Any => ConsistencyLevel::One,
        level => level,
    }
}

impl Session {
    /// One statement on `key`'s partition: an insert of `key` (half the
    /// time), a slice read around it, or a range delete.
    pub(crate) async fn statement(&self, key: Key, level: ConsistencyLevel, rng: &mut StdRng) {
        let level = statement_level(level);
        let (partition, clustering) = keys_of(&key);
        if rng.random_bool(0.2) {
            self.statement_chain(key, level, rng).await;
            return;
        }
        if rng.random_bool(0.15) {
            self.statement_batch(key, level, rng).await;
            return;
        }
        if rng.random_bool(0.5) {
            let value = self.recorder.value();
            let op = Op::Put {
                key,
                value,
                consistency: level,
                seen: Seen::Blind,
            };
            let cql = format!(
                "INSERT INTO sim.rows (p, c, v) VALUES ('{partition}', {clustering}, {value})"
            );
            self.run_statement(vec![op], Query::new(cql, level), rng)
                .await;
            return;
        }
        // A range of the partition's clustering keys.
        let first = key.key - key.key % PER_PARTITION;
        let (a, b) = (
            rng.random_range(0..PER_PARTITION),
            rng.random_range(0..PER_PARTITION),
        );
        let (low, high) = (a.min(b), a.max(b));
        let rows: Vec<Key> = (low..=high)
            .map(|c| Key {
                key: first + c,
                ..key
            })
            .collect();
        let range = format!("p = '{partition}' AND c >= {low} AND c <= {high}");
        if rng.random_bool(0.2) {
            let ops = rows
                .iter()
                .map(|key| Op::Delete {
                    key: *key,
                    consistency: level,
                    seen: Seen::Blind,
                })
                .collect();
            let cql = format!("DELETE FROM sim.rows WHERE {range}");
            self.run_statement(ops, Query::new(cql, level), rng).await;
            return;
        }
        let order = *["ASC", "DESC"].choose(rng).expect("orders");
        let ops = rows
            .iter()
            .map(|key| Op::Get {
                key: *key,
                consistency: level,
            })
            .collect();
        let cql = format!("SELECT c, v FROM sim.rows WHERE {range} ORDER BY c {order}");
        self.run_statement(ops, Query::new(cql, level), rng).await;
    }

    /// A batch on `key`'s partition: inserts into `key` and another row,
    /// and half the time the delete of a third.
    async fn statement_batch(&self, key: Key, level: ConsistencyLevel, rng: &mut StdRng) {
        let first = key.key - key.key % PER_PARTITION;
        let mut others: Vec<u32> = (0..PER_PARTITION)
            .map(|c| first + c)
            .filter(|k| *k != key.key)
            .collect();
        others.shuffle(rng);
        let deletes = usize::from(rng.random_bool(0.5));
        let mut ops = Vec::new();
        let mut statements = Vec::new();
        for (index, row) in [key.key]
            .into_iter()
            .chain(others)
            .take(2 + deletes)
            .enumerate()
        {
            let row = Key { key: row, ..key };
            let (partition, clustering) = keys_of(&row);
            if index < 2 {
                let value = self.recorder.value();
                ops.push(Op::Put {
                    key: row,
                    value,
                    consistency: level,
                    seen: Seen::Blind,
                });
                statements.push(format!(
                    "INSERT INTO sim.rows (p, c, v) VALUES ('{partition}', {clustering}, {value})"
                ));
            } else {
                ops.push(Op::Delete {
                    key: row,
                    consistency: level,
                    seen: Seen::Blind,
                });
                statements.push(format!(
                    "DELETE FROM sim.rows WHERE p = '{partition}' AND c = {clustering}"
                ));
            }
        }
        let cql = format!("BEGIN BATCH\n  {};\nAPPLY BATCH", statements.join(";\n  "));
        self.run_statement(ops, Query::new(cql, level), rng).await;
    }

    /// Reads one row, then writes or deletes it with the read's context.
    async fn statement_chain(&self, key: Key, level: ConsistencyLevel, rng: &mut StdRng) {
        let (partition, clustering) = keys_of(&key);
        let row = format!("p = '{partition}' AND c = {clustering}");
        let get = Op::Get {
            key,
            consistency: level,
        };
        let cql = format!("SELECT c, v FROM sim.rows WHERE {row}");
        let answer = self
            .run_statement(vec![get.clone()], Query::new(cql, level), rng)
            .await;
        let Some(ClientReply::Result(QueryResult::Rows(rows))) = answer else {
            return;
        };
        let contexts = rows.contexts.clone();
        let read = Ok(ClientReply::Result(QueryResult::Rows(rows)));
        let Outcome::Read { values, .. } = row_outcome(&read, &get) else {
            return;
        };
        // A row the read did not find comes without a context: the write
        // is then a blind one (it supersedes what its coordinator holds).
        let seen = if values.is_empty() {
            Seen::Blind
        } else {
            Seen::Values(values)
        };
        let (op, cql) = if rng.random_bool(0.3) {
            let op = Op::Delete {
                key,
                consistency: level,
                seen,
            };
            (op, format!("DELETE FROM sim.rows WHERE {row}"))
        } else {
            let value = self.recorder.value();
            let op = Op::Put {
                key,
                value,
                consistency: level,
                seen,
            };
            let cql = format!(
                "INSERT INTO sim.rows (p, c, v) VALUES ('{partition}', {clustering}, {value})"
            );
            (op, cql)
        };
        let query = Query {
            contexts,
            ..Query::new(cql, level)
        };
        self.run_statement(vec![op], query, rng).await;
    }

    /// Runs `query` against a random contact point, recorded as `ops`
    /// (one per row it touches), invoked and completed together; returns
    /// the answer.
    async fn run_statement(
        &self,
        ops: Vec<Op>,
        query: Query,
        rng: &mut StdRng,
    ) -> Option<ClientReply> {
        let nodes = self.target.contact_points();
        let node = nodes.choose(rng).cloned()?;
        let invoked = self.recorder.now_ms();
        let ids: Vec<u64> = ops.iter().map(|_| self.recorder.next_id()).collect();
        for (op, id) in ops.iter().zip(&ids) {
            self.recorder.record(Event::Invoke {
                at_ms: invoked,
                id: *id,
                client: self.client,
                node: node.to_string(),
                op: op.clone(),
            });
        }
        let answer = self.target.call(&node, ClientRequest::Query(query)).await;
        let completed = self.recorder.now_ms();
        let several = ops.len() > 1;
        for (op, id) in ops.iter().zip(ids) {
            let mut outcome = row_outcome(&answer, op);
            // A statement of several rows that failed may have written
            // some of them before it did.
            if let (true, Outcome::Refused(why)) = (several, &outcome) {
                outcome = Outcome::Unknown(why.clone());
            }
            self.recorder.record(Event::Complete {
                at_ms: completed,
                id,
                outcome,
            });
        }
        answer.ok()
    }
}

/// What a statement's answer says of one of the rows it touched.
fn row_outcome(answer: &Result<ClientReply, CallError>, op: &Op) -> Outcome {
    let rows = match answer {
        Ok(ClientReply::Result(QueryResult::Written { .. })) => {
            return Outcome::Written {
                receipt: "a statement".into(),
            };
        }
        Ok(ClientReply::Result(QueryResult::Rows(rows))) => rows,
        Ok(ClientReply::Result(other)) => {
            return Outcome::Unknown(format!("unexpected result {other:?}"));
        }
        // The rest as a key-value request's answer.
        _ => return outcome(answer),
    };
    let (_, clustering) = keys_of(&op.key());
    let mut versions: Vec<(u64, String)> = Vec::new();
    for (index, row) in rows.rows.iter().enumerate() {
        let (Some(Value::Int(c)), Some(Value::BigInt(v))) = (row.first(), row.get(1)) else {
            continue;
        };
        if *c != clustering {
            continue;
        }
        let writer = match rows.siblings.get(index) {
            Some(Some(mark)) => mark.writer.clone(),
            _ => String::new(),
        };
        versions.push((*v as u64, writer));
    }
    versions.sort();
    let (values, writers) = versions.into_iter().unzip();
    Outcome::Read {
        values,
        writers,
        receipt: "a statement".into(),
    }
}
