//! # ringdb-wire: the QUIC framing the node and the client share
//!
//! Everything that crosses a QUIC connection between ringdb processes goes
//! through this crate, so that the node and the client agree on it and
//! neither depends on the other (an application should not compile RocksDB
//! to talk to a cluster, and the server should not depend on its client):
//!
//! - [`multiplex`]: requests as length-prefixed MessagePack frames
//!   (`ringdb_proto`'s frame codec) over a few long-lived bidirectional
//!   streams per connection, matched to their answers by request id, with
//!   frames written in batches (DESIGN.md "Wire": a stream per request
//!   manages ~60k round trips/s here, one long-lived stream with batched
//!   frames ~1.25M). A full queue answers `Overloaded` at once; every call
//!   has a deadline; a frame's size is checked before anything is
//!   allocated for it.
//! - [`tls`]: the cluster certificate authority's verifier, used by clients
//!   and by nodes dialling a seed they know only by address.
//!
//! The node's side of a connection (accepting, serving requests, mutual
//! TLS between nodes) is in `ringdb-node`'s `transport` module, built on
//! the same writer and reader.

pub mod multiplex;
pub mod tls;
