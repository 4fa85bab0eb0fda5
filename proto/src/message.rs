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
    ClusterSettings, ClusteringKey, ConsistencyLevel, OperationStatus, PartitionKey, RepairStats,
    RepairSummary, RequestError, Row, TableId, TreeItem,
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

/// Addresses a row by table name, as clients do (tables are named).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RowAddress {
    /// The table's name.
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
}

/// What a node answers a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientReply {
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
        /// How data is replicated.
        replication: Replication,
    },
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
    },
    /// Fetch every row of `range` from `source` and store it (a new
    /// replica of a removed node's range). Answered with
    /// [`PeerReply::Applied`] once done.
    FetchRange {
        /// The token range.
        range: TokenRange,
        /// The replica to stream it from.
        source: NodeId,
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
    },
    /// The stored sibling sets of these rows, by storage key. Answered with
    /// [`PeerReply::Rows`] (rows not stored are left out), in key order; a
    /// page ends after a few MiB, with `more` set if keys were left.
    ReadRows {
        /// Storage keys.
        keys: Vec<serde_bytes::ByteBuf>,
    },
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
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{MAX_FRAME_BYTES, OperationOutcome, Value, decode_frame, encode_frame};

    fn address() -> impl Strategy<Value = RowAddress> {
        (
            "[a-z_]{1,12}",
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(|(table, partition, clustering)| RowAddress {
                table,
                partition: PartitionKey::new(partition).unwrap(),
                clustering: ClusteringKey::new(clustering).unwrap(),
            })
    }

    fn columns() -> impl Strategy<Value = Row> {
        proptest::collection::btree_map(
            "[a-z]{1,6}",
            prop_oneof![
                any::<i64>().prop_map(Value::BigInt),
                ".{0,12}".prop_map(Value::Text),
                proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Blob),
            ],
            0..4,
        )
    }

    fn level() -> impl Strategy<Value = ConsistencyLevel> {
        (0..ConsistencyLevel::ALL_LEVELS.len()).prop_map(|i| ConsistencyLevel::ALL_LEVELS[i])
    }

    fn client_request() -> impl Strategy<Value = ClientRequest> {
        let context = proptest::collection::vec(any::<u8>(), 0..24).prop_map(Context);
        prop_oneof![
            (address(), level())
                .prop_map(|(row, consistency)| ClientRequest::Get { row, consistency }),
            (address(), columns(), context.clone(), level()).prop_map(
                |(row, columns, context, consistency)| ClientRequest::Put {
                    row,
                    columns,
                    context,
                    consistency,
                    sloppy: consistency == ConsistencyLevel::Two,
                }
            ),
            (address(), context, level()).prop_map(|(row, context, consistency)| {
                ClientRequest::Delete {
                    row,
                    context,
                    consistency,
                    sloppy: consistency == ConsistencyLevel::One,
                }
            }),
            proptest::option::of("[a-z_]{1,8}").prop_map(|table| ClientRequest::Repair {
                table,
                ranges: vec![TokenRange::new(Token(-4), Token(8)), TokenRange::full()]
            }),
            Just(ClientRequest::RepairStats),
            Just(ClientRequest::Cleanup),
            Just(ClientRequest::Topology),
            Just(ClientRequest::Status),
            Just(ClientRequest::Decommission),
            any::<bool>().prop_map(|abort| ClientRequest::Operation { abort }),
            address().prop_map(|row| ClientRequest::LocalGet { row }),
            "[a-z0-9]{1,8}".prop_map(|n| ClientRequest::RemoveNode {
                node: NodeId::new(n)
            }),
        ]
    }

    fn request_error() -> impl Strategy<Value = RequestError> {
        prop_oneof![
            (0..10usize, 0..10usize)
                .prop_map(|(required, alive)| RequestError::Unavailable { required, alive }),
            (0..10usize, 0..10usize, any::<bool>()).prop_map(|(required, acknowledged, write)| {
                RequestError::Timeout {
                    required,
                    acknowledged,
                    write,
                }
            }),
            ".{0,20}".prop_map(RequestError::overloaded),
            ".{0,20}".prop_map(RequestError::invalid),
            ".{0,20}".prop_map(|setting| RequestError::SettingsMismatch {
                node: NodeId::new("n1"),
                setting,
                theirs: "3".into(),
                ours: "1".into(),
            }),
            "[a-z0-9]{1,8}".prop_map(|node| RequestError::UnreachableContext {
                node: NodeId::new(node),
            }),
        ]
    }

    fn round_trip<T>(message: &T) -> T
    where
        T: Serialize + serde::de::DeserializeOwned,
    {
        let mut buffer = Vec::new();
        encode_frame(message, MAX_FRAME_BYTES, &mut buffer).unwrap();
        let (back, used) = decode_frame(&buffer, MAX_FRAME_BYTES).unwrap().unwrap();
        assert_eq!(used, buffer.len());
        back
    }

    proptest! {
        #[test]
        fn client_requests_round_trip(id in any::<u64>(), timeout_ms in any::<u32>(), body in client_request()) {
            let request = Request { id, timeout_ms, body };
            prop_assert_eq!(round_trip(&request), request);
        }

        #[test]
        fn peer_messages_round_trip(body in client_request(), versions in proptest::collection::vec(any::<u8>(), 0..64), error in request_error()) {
            let requests = [
                PeerRequest::Coordinate { id: 3, request: body },
                PeerRequest::Hello { generation: 7, settings: None },
                PeerRequest::Hello { generation: 8, settings: Some(ClusterSettings { name: "c".into(), replication_factor: 3 }) },
                PeerRequest::Gossip(versions.clone()),
                PeerRequest::StreamRange { range: TokenRange::new(Token(-5), Token(9)), after: Some(versions.clone()), max_rows: 100 },
                PeerRequest::StreamRange { range: TokenRange::full(), after: None, max_rows: 1 },
                PeerRequest::FetchRange { range: TokenRange::new(Token(3), Token(-3)), source: NodeId::new("n2") },
                PeerRequest::Sees { node: NodeId::new("n4") },
                PeerRequest::StoreRows { rows: vec![StreamedRow { key: versions.clone(), versions: VersionedRow(versions.clone()) }], handover: false },
                PeerRequest::StoreRows { rows: Vec::new(), handover: true },
                PeerRequest::Read { row: RowId { table: TableId(7), partition: PartitionKey::new(versions.clone()).unwrap(), clustering: ClusteringKey::empty() } },
                PeerRequest::Replicate { row: RowId { table: TableId(u64::MAX), partition: PartitionKey::default(), clustering: ClusteringKey::empty() }, versions: VersionedRow(versions.clone()) },
                PeerRequest::StoreHint { target: NodeId::new("n3"), row: RowId { table: TableId(1), partition: PartitionKey::default(), clustering: ClusteringKey::empty() }, versions: VersionedRow(versions.clone()), created_micros: Some(-7) },
                PeerRequest::TreeHashes { range: TokenRange::full(), level: 2, nodes: vec![0, 31, 1023] },
                PeerRequest::LeafItems { range: TokenRange::new(Token(1), Token(2)), leaves: vec![5], table: Some(TableId(3)), after: Some(serde_bytes::ByteBuf::from(versions.clone())) },
                PeerRequest::ReadRows { keys: vec![serde_bytes::ByteBuf::from(versions.clone())] },
            ];
            for request in requests {
                prop_assert_eq!(round_trip(&request), request);
            }
            let responses = [
                Response { id: 1, body: Ok(PeerReply::Row(Some(VersionedRow(versions.clone())))) },
                Response { id: 2, body: Ok(PeerReply::Applied) },
                Response { id: 4, body: Ok(PeerReply::Gossip(Some(serde_bytes::ByteBuf::from(versions.clone())))) },
                Response { id: 5, body: Ok(PeerReply::Gossip(None)) },
                Response { id: 6, body: Ok(PeerReply::Rows { rows: vec![StreamedRow { key: versions.clone(), versions: VersionedRow(versions.clone()) }], more: true }) },
                Response { id: 7, body: Ok(PeerReply::Hashes(versions.clone())) },
                Response { id: 8, body: Ok(PeerReply::Sees { in_ring: false, in_future: true }) },
                Response { id: 8, body: Ok(PeerReply::Items { items: vec![TreeItem { key: versions.clone(), digest: vec![1; 32] }], resume: Some((3, serde_bytes::ByteBuf::from(versions.clone()))) }) },
                Response { id: 3, body: Err(error) },
            ];
            for response in responses {
                prop_assert_eq!(round_trip(&response), response);
            }
        }

        #[test]
        fn client_replies_round_trip(columns in columns(), error in request_error(), reachable in any::<bool>()) {
            let receipt = Receipt { coordinator: Some(NodeId::new("n1")), acknowledged: vec![NodeId::new("n1"), NodeId::new("n4")], repaired: vec![], hinted: vec![NodeId::new("n2")], fallbacks: vec![(NodeId::new("n4"), NodeId::new("n2"))], read_first: Some(ReadFirst { replicas: vec![NodeId::new("n2")], siblings: 2, context: Context(vec![2, 3]) }) };
            let replies = [
                Ok(ClientReply::Read { siblings: vec![Sibling { columns, timestamp_micros: -5, writer: "n1@3:1".into() }], context: Context(vec![1, 2]), receipt: receipt.clone() }),
                Ok(ClientReply::Written { context: Context::empty(), receipt }),
                Ok(ClientReply::Topology { nodes: vec![TopologyNode { id: NodeId::new("n1"), client_address: "127.0.0.1:9042".into(), location: Location::default(), tokens: vec![Token(-3), Token(i64::MAX)], reachable }], replication: Replication::Simple { factor: 3 } }),
                Ok(ClientReply::Status { answered_by: NodeId::new("n2"), nodes: vec![NodeStatus { id: NodeId::new("n1"), up: reachable, status: "Normal".into(), internode_address: Some("127.0.0.1:7000".into()), client_address: None, load_bytes: Some(12345), tokens: vec![Token(1)], owns: 0.5, location: Location::default(), generation: 17, clock_offset_ms: Some(-3), damage: Some("restoring".into()), operation: Some("decommission: streaming range 1 of 2".into()) }], replication: Replication::Simple { factor: 3 } }),
                Ok(ClientReply::Done { summary: "left the ring".into() }),
                Ok(ClientReply::Operation(OperationStatus { node: NodeId::new("n1"), kind: "decommission n1".into(), started_micros: 1, progress: "done".into(), outcome: OperationOutcome::Aborted { summary: "normal again".into() } })),
                Ok(ClientReply::Repaired(RepairSummary { ranges_compared: 4, ranges_differing: vec![(TokenRange::full(), NodeId::new("n3"))], ranges_failed: vec![], keys_repaired: 1, bytes_sent: 4096, tombstones_purged: 0 })),
                Ok(ClientReply::RepairStats(RepairStats { hints_pending: vec![(NodeId::new("n3"), 100)], trees_ready: reachable, ..RepairStats::default() })),
                Err(error),
            ];
            for body in replies {
                let response = Response { id: 9, body };
                prop_assert_eq!(round_trip(&response), response);
            }
        }

        #[test]
        fn garbage_never_panics_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_frame::<Request<ClientRequest>>(&bytes, MAX_FRAME_BYTES);
            let _ = decode_frame::<Request<PeerRequest>>(&bytes, MAX_FRAME_BYTES);
            let _ = decode_frame::<Response<ClientReply>>(&bytes, MAX_FRAME_BYTES);
        }
    }

    #[test]
    fn errors_tell_the_user_what_happened() {
        let timeout = RequestError::Timeout {
            required: 2,
            acknowledged: 1,
            write: true,
        };
        assert_eq!(
            timeout.to_string(),
            "timeout: 1/2 replicas answered in time; the write may still have been applied"
        );
        let unavailable = RequestError::Unavailable {
            required: 3,
            alive: 2,
        };
        assert_eq!(
            unavailable.to_string(),
            "unavailable: 3 replicas required but only 2 alive; nothing was written"
        );
    }

    /// `StoreRows` gained `handover`: a node that does not know it sends
    /// none (read as `false`, a repair's rows), and ignores it when sent.
    #[test]
    fn store_rows_without_handover_is_understood_both_ways() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum Before {
            StoreRows { rows: Vec<StreamedRow> },
        }
        let rows = vec![StreamedRow {
            key: vec![1, 2],
            versions: VersionedRow(vec![3]),
        }];
        let before = Before::StoreRows { rows: rows.clone() };
        let mut frame = Vec::new();
        encode_frame(&before, MAX_FRAME_BYTES, &mut frame).unwrap();
        let (now, _): (PeerRequest, _) = decode_frame(&frame, MAX_FRAME_BYTES).unwrap().unwrap();
        assert_eq!(
            now,
            PeerRequest::StoreRows {
                rows: rows.clone(),
                handover: false
            }
        );
        let handover = PeerRequest::StoreRows {
            rows: rows.clone(),
            handover: true,
        };
        frame.clear();
        encode_frame(&handover, MAX_FRAME_BYTES, &mut frame).unwrap();
        let (old, _): (Before, _) = decode_frame(&frame, MAX_FRAME_BYTES).unwrap().unwrap();
        assert_eq!(old, before);
    }
}
