//! # ringdb-proto: the shared vocabulary
//!
//! The types every part of ringdb agrees on — keys, rows, consistency levels —
//! and the frame codec that carries messages on a stream, with no I/O, no
//! tokio and no RocksDB, so that a client can speak to a cluster without
//! compiling the server, and the messages of the client and internode
//! protocols with the typed errors that answer them.
//!
//! Rows are typed: a [`Value`] is one of the CQL types ([`CqlType`]), a
//! table ([`TableDefinition`]) names its partition key, clustering and
//! regular columns, and a keyspace ([`KeyspaceDefinition`]) its
//! replication. Keys are built from values so that placement and order
//! agree with Cassandra: [`PartitionKey::from_values`] serializes a
//! (composite) partition key exactly as Cassandra does, so its Murmur3
//! token is the one Cassandra's drivers compute (pinned by known answers
//! from the `cassandra-driver` package), and [`ClusteringKey::encode`]
//! makes bytes whose order is the clustering order, `ASC` or `DESC`, so a
//! slice of a partition is one scan (`clustering.rs` says how).
//!
//! Everything here crosses the wire or the disk as MessagePack with named
//! fields; keys and blobs go through `serde_bytes` (a MessagePack `bin`, not
//! an array of integers: about four times cheaper to encode).
//!
//! ```
//! use ringdb_proto::ConsistencyLevel;
//!
//! let level: ConsistencyLevel = "local_quorum".parse().unwrap();
//! assert_eq!(level, ConsistencyLevel::LocalQuorum);
//! assert_eq!(level.required(5), 3);
//! ```

mod cluster;
mod clustering;
mod consistency;
mod error;
mod frame;
mod injection;
mod keys;
mod mapping;
mod message;
mod nodetool;
mod operation;
mod partition;
mod query;
mod repair;
mod schema;
mod types;
mod value;

pub use cluster::ClusterSettings;
pub use clustering::Order;
pub use consistency::{ConsistencyLevel, UnknownConsistencyLevel};
pub use error::RequestError;
pub use frame::{
    FrameError, MAX_FRAME_BYTES, PROTOCOL_VERSION, decode_frame, encode_frame, envelope_id,
    split_frame,
};
pub use injection::{FaultInjection, MAX_CLOCK_SKEW_MS, MAX_FAULT_DELAY_MS, PeerFault};
pub use keys::{
    ClusteringKey, KeyError, MAX_CLUSTERING_KEY_BYTES, MAX_PARTITION_KEY_BYTES, PartitionKey,
    TableId,
};
pub use mapping::{FromRow, FromValue, MappingError, RowView};
pub use message::{
    ClientReply, ClientRequest, Context, NodeStatus, PeerReply, PeerRequest, ReadFirst, Receipt,
    Request, Response, RowAddress, RowId, SchemaBytes, Sibling, SliceRead, StreamedRow,
    TABLE_ID_PREFIX, TopologyNode, VersionedRow,
};
pub use nodetool::{MAX_SNAPSHOT_TAG, NodeTool, Report, check_snapshot_tag};
pub use operation::{OperationOutcome, OperationStatus};
pub use partition::{
    MAX_PARTITION_ROWS, PartitionVersions, RowChange, RowWrite, check_partition_rows,
};
pub use query::{
    BindError, MAX_BOUND_VALUES, MAX_SESSION_CONTEXTS, Marker, PagingState, Prepared, PreparedId,
    Query, QueryResult, RowContext, RowRef, Rows, SiblingMark, TraceEvent,
};
pub use repair::{HintCounters, RepairStats, RepairSummary, TreeItem};
pub use schema::{
    ColumnDefinition, ColumnKind, ConflictMode, KeyspaceDefinition, MAX_COLUMNS, MAX_NAME_CHARS,
    MAX_REPLICATION_FACTOR, RESERVED_WORDS, SchemaError, TableDefinition, check_name, is_reserved,
    quoted, replication_cql,
};
pub use types::{CqlType, UnknownType};
pub use value::{NANOS_PER_DAY, Row, Value, ValueError};
