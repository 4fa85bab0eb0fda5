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
//! See `examples/embedded.rs` for an application that embeds a node and
//! talks to it.

pub use ringdb_client as client;
pub use ringdb_client::{Client, ClientConfig, ClientError};
pub use ringdb_node as node;
pub use ringdb_node::{Config, Node, NodeHandle};
pub use ringdb_proto as proto;
pub use ringdb_ring as ring;
