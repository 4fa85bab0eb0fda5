//! Workloads: clients writing unique values, deleting and reading, at
//! every consistency level, on blind rows (writes without a context) and
//! on chain rows (read → write-with-context, write → write with the context
//! the write returned, read → delete), and on each client's own cycle row
//! (write, delete with the write's context, rest past the tombstone grace
//! so that repair may purge the tombstone, write again with the delete's
//! context; in the purge-heavy profile one delete in three is for the rest
//! of the run, and resting rows are read), and an operator's repair
//! schedule. They run against any [`Target`]: the simulator's cluster, or
//! (in the lab) real nodes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use ringdb_proto::{
    ClientReply, ClientRequest, ClusteringKey, ConsistencyLevel, Context, PartitionKey,
    RequestError, Row, RowAddress, Sibling, TableId, Value,
};
use ringdb_ring::NodeId;
use ringdb_wire::multiplex::CallError;
use tokio::time::Instant;

use crate::history::{Event, History, Key, Op, Outcome, Seen};
use crate::statements;

/// How long a client waits for an answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The column every workload writes.
pub const COLUMN: &str = "v";

/// Where the clients send requests.
pub trait Target: Send + Sync {
    /// The nodes a client may ask now.
    fn contact_points(&self) -> Vec<NodeId>;

    /// Sends `request` to `node` and waits for its answer.
    fn call<'a>(
        &'a self,
        node: &'a NodeId,
        request: ClientRequest,
    ) -> ringdb_node::network::BoxFuture<'a, Result<ClientReply, CallError>>;
}

/// Records events with their simulated time.
pub struct Recorder {
    start: Instant,
    history: Mutex<History>,
    next_id: AtomicU64,
    next_value: AtomicU64,
}

impl Recorder {
    /// An empty history starting now.
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            history: Mutex::new(History::default()),
            next_id: AtomicU64::new(1),
            next_value: AtomicU64::new(1),
        })
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// A new operation id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds an event.
    pub fn record(&self, event: Event) {
        self.history.lock().expect("history").events.push(event);
    }

    /// Records a fault.
    pub fn fault(&self, what: impl Into<String>) {
        let at_ms = self.now_ms();
        self.record(Event::Fault {
            at_ms,
            what: what.into(),
        });
    }

    /// `node` died for good, with its data.
    pub fn node_lost(&self, node: &NodeId) {
        let at_ms = self.now_ms();
        self.record(Event::NodeLost {
            at_ms,
            node: node.to_string(),
        });
    }

    /// A copy of the history so far.
    pub fn history(&self) -> History {
        self.history.lock().expect("history").clone()
    }

    pub(crate) fn value(&self) -> u64 {
        self.next_value.fetch_add(1, Ordering::Relaxed)
    }
}

/// The rows and levels a workload uses.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The rows.
    pub keys: Vec<Key>,
    /// The levels drawn from.
    pub levels: Vec<ConsistencyLevel>,
    /// The longest pause between a client's operations.
    pub think: Duration,
    /// Cycle rows per client.
    pub cycle_rows: u32,
    /// Whether one delete of a cycle row in three is for the rest of the
    /// run, and resting rows are read now and then.
    pub resting: bool,
    /// The id of `sim.rows` once made: its rows are in `keys` then (see
    /// `statements.rs`).
    pub cql_table: Option<TableId>,
    /// Added to every row number (the cycle rows' too): the lab's runs on
    /// one cluster each use rows of their own.
    pub key_base: u32,
}

impl Workload {
    /// `blind` blind rows and `chain` chain rows in each of two tables,
    /// at every level that needs at most `replicas` replicas; `purges`:
    /// the purge-heavy profile (four cycle rows per client, deletes for
    /// good, resting rows read).
    pub fn new(blind: u32, chain: u32, replicas: usize, purges: bool) -> Workload {
        let mut keys = Vec::new();
        for table in 0..2 {
            for key in 0..blind {
                keys.push(Key {
                    table,
                    key,
                    chain: false,
                });
            }
            for key in 0..chain {
                keys.push(Key {
                    table,
                    key,
                    chain: true,
                });
            }
        }
        let mut levels = vec![
            ConsistencyLevel::One,
            ConsistencyLevel::Quorum,
            ConsistencyLevel::Quorum,
            ConsistencyLevel::All,
            ConsistencyLevel::Any,
        ];
        if replicas >= 2 {
            levels.push(ConsistencyLevel::Two);
        }
        Workload {
            keys,
            levels,
            think: Duration::from_millis(40),
            cycle_rows: if purges { CYCLE_ROWS } else { 1 },
            resting: purges,
            cql_table: None,
            key_base: 0,
        }
    }

    /// With every row number moved up by `base` (rows no earlier run on
    /// the same cluster wrote).
    pub fn with_key_base(mut self, base: u32) -> Workload {
        for key in &mut self.keys {
            key.key += base;
        }
        self.key_base = base;
        self
    }

    /// With the statement workload on `sim.rows`, stored under `table`.
    pub fn with_statements(mut self, table: TableId) -> Workload {
        self.cql_table = Some(table);
        self.keys.extend((0..statements::CQL_ROWS).map(|key| Key {
            table: statements::CQL_TABLE,
            key,
            chain: false,
        }));
        self
    }
}

/// The address of a workload row (of `sim.rows`, stored under `cql_table`).
pub fn address_in(key: &Key, cql_table: Option<TableId>) -> RowAddress {
    match cql_table {
        Some(table) if key.table == statements::CQL_TABLE => statements::address(key, table),
        _ => address(key),
    }
}

/// The address of a workload row of the key-value tables.
pub fn address(key: &Key) -> RowAddress {
    RowAddress {
        table: key.table_name(),
        partition: PartitionKey::new(key.partition().into_bytes()).expect("a short key"),
        clustering: ClusteringKey::empty(),
    }
}

/// The most clients a run has.
pub const MAX_CLIENTS: u32 = 6;

/// How long a cycle row rests deleted before it is written again: past
/// the simulated nodes' tombstone grace, so that its tombstone may be
/// purged in between.
const CYCLE_REST_SECS: std::ops::RangeInclusive<u64> = 9..=20;

/// The most cycle rows a client owns.
pub const CYCLE_ROWS: u32 = 4;

/// Client `client`'s own cycle row `row` of `workload`: a chain row no
/// other client touches.
pub fn cycle_key(workload: &Workload, client: u32, row: u32) -> Key {
    Key {
        table: ((client + row) % 2) as u8,
        key: workload.key_base + 100 + client * CYCLE_ROWS + row,
        chain: true,
    }
}

/// Every row a run may write: the workload's and each client's cycle rows.
pub fn all_keys(workload: &Workload) -> Vec<Key> {
    let mut keys = workload.keys.clone();
    for client in 0..MAX_CLIENTS {
        keys.extend((0..CYCLE_ROWS).map(|row| cycle_key(workload, client, row)));
    }
    keys
}

/// Where a client's cycle row stands, as far as the client knows.
enum Cycle {
    /// Not known (an operation on it failed): read it first.
    Unknown,
    /// Written: the write's context and the values it covers.
    Written(Context, Vec<u64>),
    /// Deleted, with the delete's context, until it is due again.
    Deleted(Context, Instant),
}

/// Runs one client until `until`: `seed` draws its operations.
pub async fn run_client(
    client: u32,
    seed: u64,
    workload: Arc<Workload>,
    target: Arc<dyn Target>,
    recorder: Arc<Recorder>,
    until: Instant,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let session = Session {
        client,
        target,
        recorder,
    };
    let mut cycles: Vec<Cycle> = (0..workload.cycle_rows).map(|_| Cycle::Unknown).collect();
    while Instant::now() < until {
        let key = *workload.keys.choose(&mut rng).expect("keys");
        let level = |rng: &mut StdRng| *workload.levels.choose(rng).expect("levels");
        if key.table == statements::CQL_TABLE {
            session.statement(key, level(&mut rng), &mut rng).await;
        } else if rng.random_bool(0.1) {
            let level = level(&mut rng);
            let row = rng.random_range(0..workload.cycle_rows);
            let cycle_key = cycle_key(&workload, client, row);
            let cycle = std::mem::replace(&mut cycles[row as usize], Cycle::Unknown);
            match cycle {
                Cycle::Deleted(context, due) if Instant::now() < due => {
                    cycles[row as usize] = Cycle::Deleted(context, due);
                    if workload.resting && rng.random_bool(0.1) {
                        // Resting deleted: a read must not find it back (now
                        // and then: a read may repair a replica that missed
                        // the delete).
                        let get = Op::Get {
                            key: cycle_key,
                            consistency: read_level(level),
                        };
                        session.run(get, Context::empty(), &mut rng).await;
                    }
                }
                cycle => {
                    cycles[row as usize] = session
                        .cycle(cycle_key, cycle, level, workload.resting, &mut rng)
                        .await;
                }
            }
        } else if key.chain {
            session
                .chain(key, level(&mut rng), level(&mut rng), &mut rng)
                .await;
        } else {
            let op = match rng.random_range(0..10) {
                0..=4 => Op::Put {
                    key,
                    value: session.recorder.value(),
                    consistency: level(&mut rng),
                    seen: Seen::Blind,
                },
                5 => Op::Delete {
                    key,
                    consistency: level(&mut rng),
                    seen: Seen::Blind,
                },
                _ => Op::Get {
                    key,
                    consistency: read_level(level(&mut rng)),
                },
            };
            session.run(op, Context::empty(), &mut rng).await;
        }
        let think = rng.random_range(0..=workload.think.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
}

/// An operator's repair schedule (as Cassandra's Reaper runs one): until
/// `until`, every 2–6 s, `ringdb repair` on a node, mostly of one table
/// (repaired more often than the others, as busy tables are), else of
/// another or of all. Returns how many repairs it ran.
pub async fn run_repairs(
    seed: u64,
    tables: u8,
    target: Arc<dyn Target>,
    recorder: Arc<Recorder>,
    until: Instant,
) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut repairs = 0;
    let often = rng.random_range(0..tables);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(2000..=6000))).await;
        let nodes = target.contact_points();
        let Some(node) = nodes.choose(&mut rng) else {
            continue;
        };
        let table = if rng.random_bool(0.75) {
            Some(Key::table_name_of(often))
        } else {
            match rng.random_range(0..=tables) {
                0 => None,
                t => Some(Key::table_name_of(t - 1)),
            }
        };
        recorder.fault(format!("scheduled repair on {node}, table {table:?}"));
        repairs += 1;
        let request = ClientRequest::Repair {
            table,
            ranges: Vec::new(),
        };
        // A repair that fails under faults is run again by a later one.
        let answer = target.call(node, request).await;
        recorder.fault(format!("repair on {node}: {}", repaired(&answer)));
    }
    repairs
}

/// What a repair did, in a few words.
pub fn repaired(answer: &Result<ClientReply, CallError>) -> String {
    match answer {
        Ok(ClientReply::Repaired(summary)) => format!(
            "{} ranges compared, {} failed, {} rows repaired, {} tombstones purged",
            summary.ranges_compared,
            summary.ranges_failed.len(),
            summary.keys_repaired,
            summary.tombstones_purged
        ),
        Ok(other) => format!("unexpected answer {other:?}"),
        Err(error) => format!("failed: {error}"),
    }
}

/// ANY is a write level; a read asks for ONE instead.
fn read_level(level: ConsistencyLevel) -> ConsistencyLevel {
    match level {
        ConsistencyLevel::Any => ConsistencyLevel::One,
        level => level,
    }
}

pub(crate) struct Session {
    pub(crate) client: u32,
    pub(crate) target: Arc<dyn Target>,
    pub(crate) recorder: Arc<Recorder>,
}

impl Session {
    /// Read, then write with the read's context (and maybe again with the
    /// write's), or delete with it.
    async fn chain(
        &self,
        key: Key,
        read: ConsistencyLevel,
        write: ConsistencyLevel,
        rng: &mut StdRng,
    ) {
        let get = Op::Get {
            key,
            consistency: read_level(read),
        };
        let Some((ClientReply::Read { context, .. }, Outcome::Read { values, .. })) =
            self.run(get, Context::empty(), rng).await
        else {
            return;
        };
        if rng.random_bool(0.2) {
            let delete = Op::Delete {
                key,
                consistency: write,
                seen: Seen::Values(values),
            };
            self.run(delete, context, rng).await;
            return;
        }
        let value = self.recorder.value();
        let put = Op::Put {
            key,
            value,
            consistency: write,
            seen: Seen::Values(values.clone()),
        };
        let Some((ClientReply::Written { context, .. }, _)) = self.run(put, context, rng).await
        else {
            return;
        };
        if rng.random_bool(0.5) {
            let mut seen = values;
            seen.push(value);
            let again = Op::Put {
                key,
                value: self.recorder.value(),
                consistency: write,
                seen: Seen::Values(seen),
            };
            self.run(again, context, rng).await;
        }
    }

    /// The next step of the client's cycle row: read it when its state is
    /// unknown, delete it when written, write it again once it has rested.
    async fn cycle(
        &self,
        key: Key,
        cycle: Cycle,
        level: ConsistencyLevel,
        for_good: bool,
        rng: &mut StdRng,
    ) -> Cycle {
        match cycle {
            Cycle::Unknown => {
                let get = Op::Get {
                    key,
                    consistency: read_level(level),
                };
                match self.run(get, Context::empty(), rng).await {
                    Some((ClientReply::Read { context, .. }, Outcome::Read { values, .. })) => {
                        if values.is_empty() {
                            Cycle::Deleted(context, Instant::now())
                        } else {
                            Cycle::Written(context, values)
                        }
                    }
                    _ => Cycle::Unknown,
                }
            }
            Cycle::Written(context, values) => {
                let delete = Op::Delete {
                    key,
                    consistency: level,
                    seen: Seen::Values(values),
                };
                match self.run(delete, context, rng).await {
                    Some((ClientReply::Written { context, .. }, _)) => {
                        // With `for_good`, one delete in three is for the
                        // run: a value that comes back then stays to the end.
                        let rest = if for_good && rng.random_bool(1.0 / 3.0) {
                            Duration::from_secs(24 * 3600)
                        } else {
                            Duration::from_secs(rng.random_range(CYCLE_REST_SECS))
                        };
                        Cycle::Deleted(context, Instant::now() + rest)
                    }
                    _ => Cycle::Unknown,
                }
            }
            Cycle::Deleted(context, _) => {
                let value = self.recorder.value();
                let put = Op::Put {
                    key,
                    value,
                    consistency: level,
                    seen: Seen::Values(Vec::new()),
                };
                match self.run(put, context, rng).await {
                    Some((ClientReply::Written { context, .. }, _)) => {
                        Cycle::Written(context, vec![value])
                    }
                    _ => Cycle::Unknown,
                }
            }
        }
    }

    /// Runs one operation against a random contact point, recording it.
    pub(crate) async fn run(
        &self,
        op: Op,
        context: Context,
        rng: &mut StdRng,
    ) -> Option<(ClientReply, Outcome)> {
        let nodes = self.target.contact_points();
        let node = nodes.choose(rng)?.clone();
        let id = self.recorder.next_id.fetch_add(1, Ordering::Relaxed);
        self.recorder.record(Event::Invoke {
            at_ms: self.recorder.now_ms(),
            id,
            client: self.client,
            node: node.to_string(),
            op: op.clone(),
        });
        let answer = self.target.call(&node, request(&op, context)).await;
        let outcome = outcome(&answer);
        self.recorder.record(Event::Complete {
            at_ms: self.recorder.now_ms(),
            id,
            outcome: outcome.clone(),
        });
        answer.ok().map(|reply| (reply, outcome))
    }
}

fn request(op: &Op, context: Context) -> ClientRequest {
    match op {
        Op::Put {
            key,
            value,
            consistency,
            ..
        } => ClientRequest::Put {
            row: address(key),
            columns: Row::from([(COLUMN.to_string(), Value::BigInt(*value as i64))]),
            context,
            consistency: *consistency,
            sloppy: false,
        },
        Op::Delete {
            key, consistency, ..
        } => ClientRequest::Delete {
            row: address(key),
            context,
            consistency: *consistency,
            sloppy: false,
        },
        Op::Get { key, consistency } => ClientRequest::Get {
            row: address(key),
            consistency: *consistency,
        },
    }
}

/// The values and writers of siblings, sorted by value.
pub fn values_of(siblings: &[Sibling]) -> (Vec<u64>, Vec<String>) {
    let mut pairs: Vec<(u64, String)> = siblings
        .iter()
        .map(|sibling| {
            let value = match sibling.columns.get(COLUMN) {
                Some(Value::BigInt(value)) => *value as u64,
                _ => 0,
            };
            (value, sibling.writer.clone())
        })
        .collect();
    pairs.sort();
    pairs.into_iter().unzip()
}

/// A receipt in a few words: `by n1, acks [n1, n2], repaired [n3]`.
fn describe(receipt: &ringdb_proto::Receipt) -> String {
    let name = |nodes: &[NodeId]| {
        nodes
            .iter()
            .map(NodeId::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut text = format!(
        "by {} acks [{}]",
        receipt
            .coordinator
            .as_ref()
            .map_or("?".into(), NodeId::to_string),
        name(&receipt.acknowledged)
    );
    if !receipt.repaired.is_empty() {
        text.push_str(&format!(" repaired [{}]", name(&receipt.repaired)));
    }
    if !receipt.hinted.is_empty() {
        text.push_str(&format!(" hinted [{}]", name(&receipt.hinted)));
    }
    text
}

pub(crate) fn outcome(answer: &Result<ClientReply, CallError>) -> Outcome {
    match answer {
        Ok(ClientReply::Read {
            siblings, receipt, ..
        }) => {
            let (values, writers) = values_of(siblings);
            let receipt = describe(receipt);
            Outcome::Read {
                values,
                writers,
                receipt,
            }
        }
        Ok(ClientReply::Written { receipt, .. }) => Outcome::Written {
            receipt: describe(receipt),
        },
        Ok(other) => Outcome::Unknown(format!("unexpected answer {other:?}")),
        Err(error) if error.was_not_sent() => Outcome::Refused(error.to_string()),
        Err(error @ CallError::Remote(RequestError::InvalidRequest { .. })) => {
            Outcome::Refused(error.to_string())
        }
        Err(error) => Outcome::Unknown(error.to_string()),
    }
}
