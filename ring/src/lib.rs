//! # ringdb-ring: where data lives
//!
//! ringdb places data the way Dynamo (DeCandia et al., SOSP 2007, §4.2–4.3) and
//! Cassandra do: the token space — the signed 64-bit outputs of Cassandra's
//! Murmur3 partitioner — is a ring, and each node owns `num_tokens` points on
//! it (virtual nodes, default 16). A partition key hashes to a token; the node
//! owning the first vnode token at or after it is the key's *primary* replica,
//! and walking on clockwise yields the other replicas, one per distinct node,
//! until the replication factor is met. Walking further yields the *fallback
//! list*: the nodes that take a hint when a replica is down (Dynamo's sloppy
//! quorum and hinted handoff, §4.6).
//!
//! ## Invariants
//!
//! - A vnode token `t` makes its owner primary for the range `(previous, t]`.
//!   A token is owned by exactly one node.
//! - The replicas of a token are min(factor, eligible nodes) distinct nodes.
//! - Over all nodes, the vnode ranges each node replicates never overlap and
//!   cover the ring exactly replication-factor times.
//! - Placement is a pure function of the ring: no I/O, no clock, no `std`
//!   hasher. The token function is pinned by known-answer vectors from an
//!   independent implementation (the `cassandra-driver` Python package).
//!
//! ## Where we differ
//!
//! - Token choice: Dynamo and early Cassandra pick random tokens, which with 16
//!   vnodes leave some nodes with 30% more data than others. ringdb always
//!   allocates tokens for balance (like Cassandra 4's
//!   `allocate_tokens_for_local_replication_factor`), see [`Ring::allocate_tokens`].
//! - Placement strategies are a closed enum ([`Replication`]) rather than
//!   pluggable classes; the rack- and datacenter-aware ones follow
//!   `NetworkTopologyStrategy`'s rules.
//! - Range movements ([`RangeChanges::between`]) are computed by comparing any
//!   two rings, so joining, leaving and moving tokens share one code path.
//!
//! ## Example
//!
//! ```
//! use ringdb_ring::{Location, NodeId, Replication, Ring, Token};
//!
//! let mut ring = Ring::new();
//! for name in ["a", "b", "c", "d"] {
//!     ring.join(NodeId::new(name), Location::default(), 16, 3).unwrap();
//! }
//! // Cassandra's token for the partition key "hello".
//! let token = Token::of(b"hello");
//! assert_eq!(token, Token(-3758069500696749310));
//! let replicas = ring.replicas(token, &Replication::Simple { factor: 3 });
//! assert_eq!(replicas.len(), 3);
//! // The fourth node is where a hint goes if a replica is down.
//! assert_eq!(ring.fallbacks(token, &Replication::Simple { factor: 3 }).len(), 1);
//! ```

mod allocation;
mod placement;
mod range;
mod ring;
mod token;

pub use placement::Replication;
pub use range::{RangeChanges, RangeMovement, TokenRange};
pub use ring::{Location, Member, NodeId, Ring};
pub use token::{Token, murmur3_x64_128_cassandra};

/// Errors from changing the ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The node is already a member.
    #[error("node {node} is already a member of the ring")]
    DuplicateNode {
        /// The node.
        node: NodeId,
    },
    /// A token is already owned by another node.
    #[error("token {token} is already owned by {owner}")]
    TokenTaken {
        /// The token asked for.
        token: Token,
        /// Its current owner.
        owner: NodeId,
    },
    /// A node must own at least one token.
    #[error("node {node} has no tokens")]
    NoTokens {
        /// The node.
        node: NodeId,
    },
}
