//! # ringdb
//!
//! A leaderless, Dynamo/Cassandra-style, eventually consistent store. This
//! crate is what an application depends on; it re-exports the pieces:
//!
//! - [`ring`]: tokens (Cassandra's Murmur3), the vnode ring, replica placement
//!   and balanced token allocation.
//! - [`proto`]: keys, rows, consistency levels: the shared vocabulary.
//! - [`node`]: the server's foundations: dotted version vector sets and
//!   storage on RocksDB.
//!
//! The embedded `Node` and the remote `Client` arrive with the cluster
//! (DESIGN.md, "A running cluster").

pub use ringdb_node as node;
pub use ringdb_proto as proto;
pub use ringdb_ring as ring;
