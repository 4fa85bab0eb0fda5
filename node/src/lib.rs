//! # ringdb-node: the server
//!
//! For now, the foundations every later piece of the server stands on:
//!
//! - [`causality`]: dotted version vector sets, the per-row record of which
//!   writes superseded which, so that concurrent writes are kept as siblings
//!   and nothing a client did not see is lost (Preguiça et al., DAIS 2012;
//!   Riak's `dvvset`).
//! - [`storage`]: RocksDB holding each row's sibling set under a key ordered by
//!   token (so a token range is one scan), hints for hinted handoff, and the
//!   data directory's epoch, with the sync modes of DESIGN.md "Durability".
//! - [`tls`]: mutual TLS between nodes: a cluster CA (rcgen), node
//!   certificates whose DNS name is the node id, the QUIC server and client
//!   configurations that require them, and the peer's id read from its
//!   certificate. The transport that uses them comes next.
//!
//! The write path of a coordinator in one line: `storage.write(key, context,
//! actor, version)` reads the row's sibling set, applies
//! [`DvvSet::update`](causality::DvvSet::update) under a striped row lock, and
//! stores the result before returning it for replication; a replica applies
//! what it receives with `storage.merge` ([`DvvSet::sync`](causality::DvvSet::sync)).
//!
//! ```
//! use ringdb_node::causality::{ActorId, DvvSet, VersionVector};
//! use ringdb_ring::NodeId;
//!
//! let (a, b) = (ActorId { node: NodeId::new("a"), epoch: 1 }, ActorId { node: NodeId::new("b"), epoch: 1 });
//! // Two clients write without having read: siblings.
//! let at_a = DvvSet::new().update(&VersionVector::new(), &a, "red");
//! let at_b = DvvSet::new().update(&VersionVector::new(), &b, "blue");
//! let merged = at_a.sync(&at_b);
//! assert_eq!(merged.len(), 2);
//! // A client reads both and writes with the read's context: one value.
//! let resolved = merged.update(&merged.context(), &a, "purple");
//! assert_eq!(resolved.values().collect::<Vec<_>>(), [&"purple"]);
//! ```

pub mod causality;
pub mod config;
mod coordinator;
mod node;
pub mod storage;
pub mod tls;
pub mod transport;

pub use config::Config;
pub use coordinator::table_id;
pub use node::{Node, NodeError, NodeHandle};
