//! # Repair: Merkle-tree anti-entropy and hinted handoff, without I/O
//!
//! Replicas that missed writes converge without anyone reading the data,
//! by two mechanisms (DESIGN.md "Write path" step 4 and "Anti-entropy"):
//!
//! - **Hinted handoff** ([`hints`]): a coordinator keeps the mutation a
//!   down or silent replica missed, and replays it when gossip sees the
//!   replica up again, within a window and a size cap.
//! - **Anti-entropy** ([`tree`], [`exchange`]): every node keeps a Merkle
//!   tree per token range it replicates, updated on every write (leaf =
//!   XOR of its items' hashes, so an update is O(1)); two replicas compare
//!   roots, descend only into differing subtrees, and exchange only the
//!   rows of differing leaves, merged with causality.
//!
//! This crate holds the rules and the data structures; it does no I/O. The
//! node feeds the trees from its storage, carries the exchange's steps over
//! its transport and keeps hints in RocksDB behind [`hints::HintStore`].
//!
//! ```
//! use ringdb_antientropy::exchange::{Exchange, Step};
//! use ringdb_antientropy::tree::{item_hash, version_digest, Tree};
//! use ringdb_ring::{Token, TokenRange};
//!
//! let range = TokenRange::new(Token::from_offset(0), Token::from_offset(1 << 40));
//! let (here, there) = (Tree::new(range), Tree::new(range));
//! for tree in [&here, &there] {
//!     tree.toggle(Token::from_offset(77), &item_hash(b"alice", &version_digest(b"v1")));
//! }
//! here.toggle(Token::from_offset(999), &item_hash(b"bob", &version_digest(b"v1")));
//!
//! let (mut exchange, mut step) = Exchange::start();
//! while let Step::Hashes { level, nodes } = step {
//!     let theirs = there.hashes(level, &nodes).unwrap(); // over the wire
//!     step = exchange.on_hashes(&here, &theirs).unwrap();
//! }
//! assert_eq!(step, Step::Items { leaves: vec![0] }); // only bob's leaf differs
//! ```

pub mod exchange;
pub mod hints;
pub mod tree;
