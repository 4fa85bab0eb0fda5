//! # ringdb-sim: whole clusters in one process, driven by one seed
//!
//! The most trusted distributed databases are tested by running their real
//! node logic for whole clusters inside one process, on a simulated
//! network, clock and disk, driven by a seed (FoundationDB's simulator,
//! TigerBeetle's VOPR). This crate does that for ringdb: every node is the
//! real `ringdb-node`, started with [`Node::start_in`](ringdb_node::Node::start_in)
//! in a simulated [`World`](ringdb_node::World):
//!
//! - **time**: one single-threaded tokio runtime with paused time, which
//!   jumps to the next timer whenever every task waits, so a minute of
//!   cluster life takes a fraction of a second; each node's wall clock is
//!   that time plus its own skew, which the nemesis jumps ([`clock`]);
//! - **network**: [`network::Net`] delays every message (with jitter, so
//!   messages overtake each other), loses, duplicates and holds them, and
//!   cuts links (halves, one node isolated, a bridge node that sees both
//!   sides); every message is encoded and decoded on its way, as on the wire;
//! - **disk**: each node's [`MemoryDisk`](ringdb_node::storage::MemoryDisk)
//!   outlives its lives; a crash keeps only what was synced and a prefix of
//!   the rest;
//! - **processes** ([`cluster`]): crash and restart, pause and resume past
//!   the failure detector;
//! - **topology**: a node joins, a node is decommissioned, a node dies for
//!   good and another removes it, while the other faults go on.
//!
//! Clients run the [`workload`]s (shared with the lab: unique-value writes
//! and deletes at every consistency level, read → write-with-context
//! chains, rows deleted and left to rest past the tombstone grace) and
//! record a [`history`]; in some runs an operator's repair schedule
//! replaces frequent background anti-entropy. After the faults the run heals
//! everything, repairs until every replica agrees (the time it took is
//! reported, in simulated time), and the [`checker`]s look for lost,
//! phantom and resurrected writes, stale reads at R + W > N and dots
//! issued twice.
//!
//! Everything random comes from the seed: the cluster's size and settings,
//! the clients' operations, the nemesis, the network's dice and every
//! node's own random source. One seed gives the same history byte for byte,
//! so a failing seed replays exactly: `ringdb sim --seed N`.
//!
//! Where we differ from a real deployment: a paused node's tasks keep
//! running (one runtime drives every node) but it can neither send nor
//! receive until it resumes, which is what its peers see of a stopped
//! process; connections are modelled as QUIC's are seen by the node (up
//! while both directions are open, down an idle timeout after they stop),
//! not packet by packet.

pub mod checker;
pub mod clock;
pub mod cluster;
pub mod history;
pub mod network;
pub mod probe;
pub mod quorum;
pub mod run;
pub mod statements;
pub mod workload;

pub use run::{Options, Report, run};
