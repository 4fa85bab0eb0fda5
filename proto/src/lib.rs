//! # ringdb-proto: the shared vocabulary
//!
//! The types every part of ringdb agrees on — keys, rows, consistency levels —
//! and the frame codec that carries messages on a stream, with no I/O, no
//! tokio and no RocksDB, so that a client can speak to a cluster without
//! compiling the server, and the messages of the client and internode
//! protocols with the typed errors that answer them.
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
mod consistency;
mod error;
mod frame;
mod keys;
mod message;
mod operation;
mod repair;
mod value;

pub use cluster::ClusterSettings;
pub use consistency::{ConsistencyLevel, UnknownConsistencyLevel};
pub use error::RequestError;
pub use frame::{
    FrameError, MAX_FRAME_BYTES, PROTOCOL_VERSION, decode_frame, encode_frame, envelope_id,
    split_frame,
};
pub use keys::{
    ClusteringKey, KeyError, MAX_CLUSTERING_KEY_BYTES, MAX_PARTITION_KEY_BYTES, PartitionKey,
    TableId,
};
pub use message::{
    ClientReply, ClientRequest, Context, NodeStatus, PeerReply, PeerRequest, ReadFirst, Receipt,
    Request, Response, RowAddress, RowId, Sibling, StreamedRow, TopologyNode, VersionedRow,
};
pub use operation::{OperationOutcome, OperationStatus};
pub use repair::{HintCounters, RepairStats, RepairSummary, TreeItem};
pub use value::{Row, Value};
