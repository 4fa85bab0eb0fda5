//! # ringdb
//!
//! A leaderless, Dynamo/Cassandra-style, eventually consistent store. This
//! crate is what an application depends on; it re-exports the pieces:
//!
//! - [`ring`]: tokens (Cassandra's Murmur3), the vnode ring, replica placement
//!   and balanced token allocation.
//! - [`proto`]: keys, rows, consistency levels: the shared vocabulary.
//! - [`node`]: the server: dotted version vector sets, storage on RocksDB,
//!   the QUIC transport, the coordinator; [`Node::start`] runs one inside
//!   your process.
//! - [`client`]: the async, token-aware [`Client`].
//!
//! What a client application names is also at the top, one import path:
//! `use ringdb::{Client, ConsistencyLevel, Context, PartitionKey, Row,
//! RowAddress, Value};`, with [`ClientBuilder`], the typed rows
//! ([`FromRow`], [`RowView`]) and [`Query`] for CQL. An application that
//! only talks to a cluster can depend on `ringdb-client` alone, without
//! RocksDB.
//!
//! See `examples/embedded.rs` for an application that embeds a node and
//! talks to it.

pub use ringdb_client as client;
pub use ringdb_client::{
    Client, ClientBuilder, ClientConfig, ClientError, ConsistencyLevel, Context, FromRow,
    FromValue, MappingError, PartitionKey, Query, QueryResult, ReadResult, Row, RowAddress,
    RowView, Rows, Value, WriteResult,
};
pub use ringdb_node as node;
pub use ringdb_node::{Config, Node, NodeHandle};
pub use ringdb_proto as proto;
pub use ringdb_ring as ring;
