//! Messages: what clients ask nodes and what nodes ask each other (the
//! typed errors both can answer are in `error.rs`).
//!
//! Every message travels in an envelope ([`Request`], [`Response`]) that
//! carries the request id a multiplexed stream matches answers by. A request
//! also carries its remaining time budget in milliseconds (relative, because
//! clocks of different machines disagree): the receiver stops working on it
//! when the budget is spent, since nobody waits for the answer any more.
//!
//! Two protocols share this vocabulary:
//!
//! - the **client protocol** ([`ClientRequest`] → [`ClientReply`]), spoken on a
//!   node's client port: reads, writes and deletes at a consistency level,
//!   and the topology a token-aware client routes by;
//! - the **internode protocol** ([`PeerRequest`] → [`PeerReply`]), spoken on the
//!   internode port under mutual TLS: a coordinator sends versioned rows to
//!   replicas, reads their sibling sets, and forwards writes it cannot
//!   coordinate (a write coordinator must be a replica).
//!
//! A versioned row (a sibling set with its causal history) is opaque here:
//! [`VersionedRow`] holds the bytes the node's causality module encodes, so
//! this crate does not depend on it and a client never decodes one.

use std::fmt;

use ringdb_ring::{Location, NodeId, Replication, Token, TokenRange};
use serde::{Deserialize, Serialize};

use crate::{
    ClusterSettings, ClusteringKey, ConsistencyLevel, NodeTool, OperationStatus, PartitionKey,
    PartitionVersions, Prepared, Query, QueryResult, RepairStats, RepairSummary, Report,
    RequestError, Row, RowWrite, TableId, TraceEvent, TreeItem,
};

/// A request in its envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request<T> {
    /// Chosen by the sender, unique among its requests in flight on the
    /// connection; the response carries it back.
    pub id: u64,
    /// How long the sender will wait for the answer, in milliseconds.
    pub timeout_ms: u32,
    /// The request itself.
    pub body: T,
}

/// A response in its envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response<T> {
    /// The id of the request this answers.
    pub id: u64,
    /// The answer, or why there is none.
    pub body: Result<T, RequestError>,
}

/// How [`RowAddress::table`] names a table by its id: `#` and 16 hex digits.
pub const TABLE_ID_PREFIX: char = '#';

/// Addresses a row by table name, as clients do (tables are named).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RowAddress {
    /// The table's name (a key-value table), or `#` and the id of a CQL
    /// table in 16 hex digits ([`RowAddress::of_table`]).
    pub table: String,
    /// The serialized partition key.
    pub partition: PartitionKey,
    /// The clustering key; empty for a table without clustering columns.
    pub clustering: ClusteringKey,
}

/// Addresses a row by table id, as nodes do among themselves.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RowId {
    /// The table's id.
    pub table: TableId,
    /// The serialized partition key.
    pub partition: PartitionKey,
    /// The clustering key.
    pub clustering: ClusteringKey,
}

impl RowAddress {
    /// A row of a table without clustering columns.
    pub fn new(table: impl Into<String>, partition: PartitionKey) -> RowAddress {
        RowAddress {
            table: table.into(),
            partition,
            clustering: ClusteringKey::empty(),
        }
    }

    /// A row of the table stored under `id` (a CQL table: its rows are
    /// addressed by id, since a name can be dropped and made again).
    pub fn of_table(id: TableId, partition: PartitionKey, clustering: ClusteringKey) -> RowAddress {
        RowAddress {
            table: format!("{TABLE_ID_PREFIX}{:016x}", id.0),
            partition,
            clustering,
        }
    }

    /// The row's partition token, which places it on the ring.
    pub fn token(&self) -> Token {
        Token::of(self.partition.as_bytes())
    }
}

/// A sibling set with its causal history, encoded by the node (opaque here).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionedRow(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for VersionedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VersionedRow({} bytes)", self.0.len())
    }
}

/// An opaque causal context: what a read saw, handed back with the next write
/// of the row so that the write supersedes exactly those siblings.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Context(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl Context {
    /// The empty context: a write with it supersedes only what its
    /// coordinator holds.
    pub fn empty() -> Context {
        Context(Vec::new())
    }

    /// True for the empty context.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Context({} bytes)", self.0.len())
    }
}

/// What a client asks a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Read a row: its live siblings and the context to write back with.
    Get {
        /// Which row.
        row: RowAddress,
        /// How many replicas must answer.
        consistency: ConsistencyLevel,
    },
    /// Write a row's columns. The new version supersedes the siblings the
    /// context has seen; with an empty context, what the coordinator holds.
    Put {
        /// Which row.
        row: RowAddress,
        /// The columns.
        columns: Row,
        /// The context of the read this write follows, or empty.
        context: Context,
        /// How many replicas must acknowledge.
        consistency: ConsistencyLevel,
        /// Sloppy quorum: a down replica's write goes to a fallback node as
        /// a hint, and the fallback's acknowledgement counts.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        sloppy: bool,
    },
    /// Write some of a row's columns (CQL's `INSERT` and `UPDATE`): the new
    /// version holds these columns and, for every column not given, its
    /// value in the versions it supersedes (the latest written, when they
    /// differ); a `null` column is removed. Answered like [`ClientRequest::Put`].
    Update {
        /// Which row.
        row: RowAddress,
        /// The columns written; `null` removes one.
        columns: Row,
        /// The context of the read this write follows, or empty.
        context: Context,
        /// How many replicas must acknowledge.
        consistency: ConsistencyLevel,
        /// The version's timestamp (CQL's `USING TIMESTAMP`), for a
        /// last-write-wins table; the coordinator's clock without it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp: Option<i64>,
    },
    /// Delete a row: a tombstone that supersedes what the context has seen.
    Delete {
        /// Which row.
        row: RowAddress,
        /// The context of the read this delete follows, or empty.
        context: Context,
        /// How many replicas must acknowledge.
        consistency: ConsistencyLevel,
        /// Sloppy quorum, as for [`ClientRequest::Put`].
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        sloppy: bool,
    },
    /// Write rows of one partition together (a `BATCH`): each row's new
    /// version is made under the partition's lock, and every replica stores
    /// the set in one atomic write. Answered with
    /// [`ClientReply::WrittenRows`].
    WriteRows {
        /// The table, named as in [`RowAddress::table`].
        table: String,
        /// The serialized partition key.
        partition: PartitionKey,
        /// The rows, each named once.
        rows: Vec<RowWrite>,
        /// How many replicas must acknowledge.
        consistency: ConsistencyLevel,
    },
    /// Run a CQL statement (answered with [`ClientReply::Result`]).
    Query(Query),
    /// Parse and check a CQL statement once, to run it many times with
    /// different values ([`Query::prepared`]). Answered with
    /// [`ClientReply::Prepared`].
    Prepare {
        /// The statement.
        cql: String,
        /// The keyspace its unqualified names are in.
        keyspace: Option<String>,
    },
    /// The cluster's nodes, their client addresses and tokens, and the
    /// replication, so that a client can send each request to a replica.
    Topology,
    /// Every node the answering node knows of, as it sees them: up or down,
    /// status, addresses, load, tokens, ownership (`ringdb status`).
    Status,
    /// The row as the answering node alone stores it, whatever the ring says
    /// (a diagnostic: `ringdb getlocal`). Answered with [`ClientReply::Read`].
    LocalGet {
        /// Which row.
        row: RowAddress,
    },
    /// Start streaming the answering node's ranges to their next owners,
    /// then leave the ring (`ringdb decommission`): a task of the node,
    /// which outlives the request. Answered at once with
    /// [`ClientReply::Operation`] (the same operation's status when it is
    /// already running); follow it with [`ClientRequest::Operation`].
    Decommission,
    /// Start removing a dead node from the ring and restoring the replicas
    /// of its ranges from the survivors (`ringdb removenode`), as a task of
    /// the answering node; answered like [`ClientRequest::Decommission`].
    /// Asked again for a node already removed, it restores what a cut
    /// removal left unrestored.
    RemoveNode {
        /// The dead node.
        node: NodeId,
    },
    /// The topology operation the answering node runs, or ran last in
    /// this life (`--follow`); with `abort`, asks it to stop first (a
    /// decommission goes back to normal, a removal stops restoring).
    /// Answered with [`ClientReply::Operation`].
    Operation {
        /// Stop the running operation.
        abort: bool,
    },
    /// Compare the answering node's Merkle trees with the other replicas'
    /// and exchange the rows that differ (`ringdb repair`). Answered with
    /// [`ClientReply::Repaired`].
    Repair {
        /// Only this table's rows (all tables without it).
        table: Option<String>,
        /// These of the node's ranges; every range it replicates when empty.
        ranges: Vec<TokenRange>,
    },
    /// The answering node's hint and anti-entropy figures. Answered with
    /// [`ClientReply::RepairStats`].
    RepairStats,
    /// Delete the rows of every range the answering node no longer
    /// replicates (`ringdb cleanup`; nodes also do it by themselves after a
    /// change takes ranges from them). Refused while a topology change is
    /// in progress. Answered with [`ClientReply::Done`].
    Cleanup,
    /// An operator's request about the answering node (nodetool's flush,
    /// drain, describecluster, gossipinfo, …). Answered with
    /// [`ClientReply::Reports`].
    NodeTool(NodeTool),
}

/// One version of a row as a reader sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sibling {
    /// The columns.
    pub columns: Row,
    /// When its coordinator wrote it, in microseconds since the Unix epoch.
    pub timestamp_micros: i64,
    /// The dot that wrote it, for display: `node@epoch:counter`, the epoch
    /// in hexadecimal.
    pub writer: String,
}

/// Which replicas took part in a request: the receipt every answer carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The node that coordinated the request.
    pub coordinator: Option<NodeId>,
    /// The replicas that acknowledged the write or answered the read, in the
    /// order they did.
    pub acknowledged: Vec<NodeId>,
    /// The replicas a read found behind and repaired before answering.
    pub repaired: Vec<NodeId>,
    /// The replicas a write stored a hint for (down, or silent until the
    /// deadline), to be replayed when they are back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hinted: Vec<NodeId>,
    /// Acknowledgements from fallback nodes that stored a hint for a down
    /// replica (sloppy quorum): `(fallback, replica)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<(NodeId, NodeId)>,
    /// A delete without a context first reads the row at its consistency
    /// level, and deletes what that read returned: what it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_first: Option<ReadFirst>,
}

/// The read a delete without a context made first, to know what to delete.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadFirst {
    /// The replicas that answered it.
    pub replicas: Vec<NodeId>,
    /// The live versions it found, which the delete superseded.
    pub siblings: usize,
    /// The context the delete used: what the read saw.
    pub context: Context,
}

/// A node as the topology describes it to clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopologyNode {
    /// The node's id.
    pub id: NodeId,
    /// Where it serves clients (`host:port`).
    pub client_address: String,
    /// Its datacenter and rack.
    pub location: Location,
    /// Its vnode tokens.
    pub tokens: Vec<Token>,
    /// Whether the answering node has a connection to it.
    pub reachable: bool,
}

/// One node as another sees it, for `ringdb status` (nodetool's columns).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id (its host id: the name in its certificate).
    pub id: NodeId,
    /// Whether the answering node believes it alive (failure detector).
    pub up: bool,
    /// `Joining`, `Normal`, `Leaving`, `Left` or `Removed`.
    pub status: String,
    /// Where it serves other nodes.
    pub internode_address: Option<String>,
    /// Where it serves clients.
    pub client_address: Option<String>,
    /// Bytes of data it reports storing (estimated), if it said.
    pub load_bytes: Option<u64>,
    /// Its vnode tokens.
    pub tokens: Vec<Token>,
    /// The share of the data it replicates, from 0 to 1 (with replication).
    pub owns: f64,
    /// Its datacenter and rack.
    pub location: Location,
    /// Its generation (process start, microseconds since the epoch).
    pub generation: u64,
    /// How far its wall clock is ahead of the answering node's (negative:
    /// behind), in milliseconds, as measured when the answering node last
    /// connected to it; `None` for the answering node itself and for nodes
    /// it is not connected to.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
    /// Damaged data the node found on its disk, and where restoring it
    /// stands; `None` when it found none.
    #[serde(default)]
    pub damage: Option<String>,
    /// The topology operation it runs, and where it stands.
    #[serde(default)]
    pub operation: Option<String>,
    /// When the answering node first saw it leave the ring or be removed
    /// (microseconds since the Unix epoch, by the answering node's clock),
    /// if it did; `ringdb status` hides nodes that departed long ago.
    #[serde(default)]
    pub departed_micros: Option<i64>,
}

/// What a node answers a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientReply {
    /// What a [`ClientRequest::Query`] did.
    Result(QueryResult),
    /// What a [`ClientRequest::Query`] with `tracing` did, and its trace.
    Traced {
        /// What it did.
        result: QueryResult,
        /// The coordinator's events, in order.
        trace: Vec<TraceEvent>,
    },
    /// A [`ClientRequest::Query`] with `tracing` failed: why, and the
    /// coordinator's events up to then.
    TracedFailure {
        /// Why it failed.
        error: RequestError,
        /// The coordinator's events, in order.
        trace: Vec<TraceEvent>,
    },
    /// The answer to [`ClientRequest::Prepare`].
    Prepared(Prepared),
    /// The answer to [`ClientRequest::Get`]. No siblings means not found (or
    /// deleted); the context is worth passing back even then, so that a
    /// write after it supersedes the tombstone it saw.
    Read {
        /// The live versions; more than one when writes were concurrent.
        siblings: Vec<Sibling>,
        /// What the read saw.
        context: Context,
        /// Who answered.
        receipt: Receipt,
    },
    /// The answer to [`ClientRequest::Put`] and [`ClientRequest::Delete`].
    Written {
        /// The context of the row after the write at its coordinator: a
        /// following write with it supersedes this one.
        context: Context,
        /// Who acknowledged.
        receipt: Receipt,
    },
    /// The answer to [`ClientRequest::WriteRows`].
    WrittenRows {
        /// Each row's context after the write at its coordinator, in the
        /// request's order.
        contexts: Vec<Context>,
        /// Who acknowledged.
        receipt: Receipt,
    },
    /// The answer to [`ClientRequest::Topology`].
    Topology {
        /// Every node of the ring.
        nodes: Vec<TopologyNode>,
        /// How data is replicated.
        replication: Replication,
    },
    /// The answer to an admin request that completed.
    Done {
        /// What was done, for the operator.
        summary: String,
    },
    /// The answer to [`ClientRequest::Repair`].
    Repaired(RepairSummary),
    /// Where a topology operation stands.
    Operation(OperationStatus),
    /// The answer to [`ClientRequest::RepairStats`].
    RepairStats(RepairStats),
    /// The answer to [`ClientRequest::Status`].
    Status {
        /// The node that answered.
        answered_by: NodeId,
        /// Every node it knows of.
        nodes: Vec<NodeStatus>,
        /// How data is replicated (the cluster's replication).
        replication: Replication,
        /// The other replications keyspaces place their tables' rows by.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        placements: Vec<Replication>,
    },
    /// The answer to [`ClientRequest::NodeTool`]: tables for the operator.
    Reports(Vec<Report>),
}

/// What a node asks another node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Merge this sibling set into the row (replication of a write, read
    /// repair). Answered with [`PeerReply::Applied`] once durable per the
    /// replica's sync mode.
    Replicate {
        /// Which row.
        row: RowId,
        /// The sibling set to merge.
        versions: VersionedRow,
    },
    /// Send the row's sibling set, for a read. Answered with [`PeerReply::Row`].
    Read {
        /// Which row.
        row: RowId,
    },
    /// Coordinate this client request (sent by a node that is not a replica
    /// of the row to one that is). Answered with [`PeerReply::Coordinated`].
    Coordinate {
        /// Drawn by the sender: a request delivered twice with the same id
        /// from the same sender is run once (a write is not idempotent).
        id: u64,
        /// The client's request.
        request: ClientRequest,
    },
    /// The first request on a new connection: the sender's generation (set
    /// when its process started). A node that learns a newer generation of
    /// a peer drops its own, older connection to it: the peer restarted.
    /// Answered with [`PeerReply::Hello`].
    Hello {
        /// The sender's generation.
        generation: u64,
        /// The sender's cluster settings, which the receiver checks against
        /// its own (absent from nodes that predate the check).
        #[serde(default)]
        settings: Option<ClusterSettings>,
    },
    /// A gossip message (`ringdb-gossip`'s `GossipMessage`, encoded: the
    /// gossip crate sits above this one). Answered with
    /// [`PeerReply::Gossip`].
    Gossip(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Send a page of the rows stored in `range` (streaming, for a joining
    /// node or a new replica), in key order after `after`. Answered with
    /// [`PeerReply::Rows`].
    StreamRange {
        /// The token range.
        range: TokenRange,
        /// The storage key of the last row received, or `None` to start.
        #[serde(with = "serde_bytes")]
        after: Option<Vec<u8>>,
        /// Most rows in one page.
        max_rows: u32,
        /// The placement group whose tree or rows are meant: the tables
        /// this replication places (`None`: the cluster's replication,
        /// every table no keyspace places otherwise).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placement: Option<Replication>,
    },
    /// Fetch every row of `range` from `source` and store it (a new
    /// replica of a removed node's range). Answered with
    /// [`PeerReply::Applied`] once done.
    FetchRange {
        /// The token range.
        range: TokenRange,
        /// The replica to stream it from.
        source: NodeId,
        /// The placement group whose tree or rows are meant: the tables
        /// this replication places (`None`: the cluster's replication,
        /// every table no keyspace places otherwise).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placement: Option<Replication>,
    },
    /// Store these rows, merging them with what is stored (a repair, or a
    /// leaving node handing its ranges over). Answered with
    /// [`PeerReply::Applied`].
    StoreRows {
        /// The rows.
        rows: Vec<StreamedRow>,
        /// A leaving node hands its ranges over: every row is stored as it
        /// is, tombstones past the grace included. The receiver takes the
        /// leaver's place, and a tombstone it dropped would no longer cover
        /// a value another replica (or a hint) still holds. A repair sends
        /// `false`: a tombstone past the grace that the receiver lacks was
        /// purged there, and storing it again would make it bounce.
        #[serde(default)]
        handover: bool,
    },
    /// Merge these sibling sets of rows of one partition, all in one
    /// atomic write (see [`PartitionVersions`]). Answered with
    /// [`PeerReply::Applied`] once durable per the replica's sync mode.
    ReplicateRows(PartitionVersions),
    /// Keep these sibling sets of rows of one partition as one hint for
    /// `target`, replayed whole ([`PeerRequest::StoreHint`] for several rows).
    StoreHintRows {
        /// The replica the write was for.
        target: NodeId,
        /// The rows.
        rows: PartitionVersions,
        /// As for [`PeerRequest::StoreHint`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created_micros: Option<i64>,
    },
    /// Keep this sibling set as a hint for `target`, which is down (a
    /// fallback in a sloppy quorum, or a node handing its hints over before
    /// it leaves). Answered with [`PeerReply::Applied`] once the hint is
    /// durable.
    StoreHint {
        /// The replica the write was for.
        target: NodeId,
        /// Which row.
        row: RowId,
        /// The sibling set.
        versions: VersionedRow,
        /// When the hint was first written (microseconds since the Unix
        /// epoch), for a hint handed over: it expires when it would have.
        /// `None`: now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created_micros: Option<i64>,
    },
    /// Where the receiver's view of the ring places `node` (a joining node
    /// asks every live member before it streams, so that no member still
    /// writes without it). Answered with [`PeerReply::Sees`].
    Sees {
        /// The node asked about.
        node: NodeId,
    },
    /// The hashes of `nodes` at `level` of the Merkle tree of `range`
    /// (anti-entropy). Answered with [`PeerReply::Hashes`].
    TreeHashes {
        /// The range; it must be one the receiver keeps a tree for.
        range: TokenRange,
        /// 0 is the root.
        level: u8,
        /// Node indexes at that level.
        nodes: Vec<u32>,
        /// The placement group whose tree or rows are meant: the tables
        /// this replication places (`None`: the cluster's replication,
        /// every table no keyspace places otherwise).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placement: Option<Replication>,
    },
    /// The items (key, version digest) of these leaves of `range`'s tree,
    /// in leaf order. Answered with [`PeerReply::Items`], a page at a time:
    /// a page ends after a few MiB, and says where the next one starts.
    LeafItems {
        /// The range.
        range: TokenRange,
        /// Leaf indexes.
        leaves: Vec<u32>,
        /// Only this table's rows.
        table: Option<TableId>,
        /// Resume the first leaf after this storage key (a page left off there).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<serde_bytes::ByteBuf>,
        /// The placement group whose tree or rows are meant: the tables
        /// this replication places (`None`: the cluster's replication,
        /// every table no keyspace places otherwise).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placement: Option<Replication>,
    },
    /// The stored sibling sets of these rows, by storage key. Answered with
    /// [`PeerReply::Rows`] (rows not stored are left out), in key order; a
    /// page ends after a few MiB, with `more` set if keys were left.
    ReadRows {
        /// Storage keys.
        keys: Vec<serde_bytes::ByteBuf>,
    },
    /// A page of one partition's rows, for a `SELECT`: the rows whose
    /// clustering keys lie in `[start, end)` (bytes of order-preserving
    /// clustering keys; no `end`: the partition's last), in clustering
    /// order or in reverse, at most `limit` of them (tombstones count).
    /// Answered with [`PeerReply::Rows`], whose keys are storage keys;
    /// `more` says the page stopped at the limit.
    ReadSlice(SliceRead),
    /// The receiver's whole schema, asked by a node whose schema version
    /// differs from the one the receiver gossips. Answered with
    /// [`PeerReply::Schema`].
    PullSchema,
    /// Schema entries a node changed (a DDL statement ran there), pushed at
    /// once so that every node has them before gossip would tell it: the
    /// receiver merges them into its own (answered with
    /// [`PeerReply::Applied`]).
    PushSchema(SchemaBytes),
    /// Faults for the receiver to inject into itself, replacing those set
    /// before (`ringdb lab`); taken only by a node whose config allows it.
    /// Answered with [`PeerReply::Applied`].
    InjectFaults(crate::FaultInjection),
}

/// Which rows of a partition [`PeerRequest::ReadSlice`] asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceRead {
    /// The table.
    pub table: TableId,
    /// The partition.
    pub partition: PartitionKey,
    /// The first clustering key included (bytes; empty: the first row).
    #[serde(with = "serde_bytes")]
    pub start: Vec<u8>,
    /// The clustering key the slice ends before (bytes; `None`: the end).
    #[serde(with = "serde_bytes")]
    pub end: Option<Vec<u8>>,
    /// From the end of the slice backwards.
    pub reverse: bool,
    /// The most rows, tombstones included.
    pub limit: u32,
}

/// A schema (or some of its entries), encoded by the node's schema module
/// (opaque here, like [`VersionedRow`]): what nodes exchange so that every
/// one of them converges to the same keyspaces and tables.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaBytes(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for SchemaBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SchemaBytes({} bytes)", self.0.len())
    }
}

/// One row in a stream between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamedRow {
    /// The row's storage key (token, table, partition, clustering).
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Its sibling set.
    pub versions: VersionedRow,
}

/// What a node answers another node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerReply {
    /// The sibling set was merged and stored.
    Applied,
    /// The row's sibling set, or `None` if the replica has never seen it.
    Row(Option<VersionedRow>),
    /// The answer to a forwarded client request.
    Coordinated(ClientReply),
    /// The answer to [`PeerRequest::Hello`]: the receiver's generation.
    Hello {
        /// The receiver's generation.
        generation: u64,
        /// The receiver's wall clock when it answered (microseconds since
        /// the epoch), from which the caller estimates how far apart their
        /// clocks are.
        #[serde(default)]
        wall_micros: Option<i64>,
    },
    /// The answer to [`PeerRequest::Gossip`]: the gossip reply, if any.
    Gossip(Option<serde_bytes::ByteBuf>),
    /// The answer to [`PeerRequest::Sees`].
    Sees {
        /// Whether the node is in the receiver's ring.
        in_ring: bool,
        /// Whether it is in the ring the receiver expects once the
        /// topology change in progress completes.
        in_future: bool,
    },
    /// Merkle tree hashes, 32 bytes each, in the order asked.
    Hashes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A page of the items of Merkle leaves.
    Items {
        /// Items, leaf by leaf.
        items: Vec<TreeItem>,
        /// Where the next page starts (the leaf, and the last key sent of
        /// it), if the leaves asked have more items.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<(u32, serde_bytes::ByteBuf)>,
    },
    /// A page of a stream: rows in key order, and whether more follow.
    Rows {
        /// The rows.
        rows: Vec<StreamedRow>,
        /// Whether the range has more rows after these.
        more: bool,
    },
    /// The answer to [`PeerRequest::PullSchema`]: the whole schema.
    Schema(SchemaBytes),
}

#[cfg(test)]
mod tests;
