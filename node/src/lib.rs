//! # ringdb-node: the server
//!
//! A node: [`Node::start`] opens its storage, binds its two QUIC ports, joins
//! the cluster by gossip and serves until [`NodeHandle::shutdown`]
//! ([`NodeHandle::abort`] stops it at once, as `kill -9` would). Its parts:
//!
//! - [`causality`]: dotted version vector sets, the per-row record of which
//!   writes superseded which, so that concurrent writes are kept as siblings
//!   and nothing a client did not see is lost (Preguiça et al., DAIS 2012;
//!   Riak's `dvvset`).
//! - [`storage`]: a storage engine (RocksDB) holding each row's sibling set under a key ordered by
//!   token (so a token range is one scan), hints for hinted handoff, and the
//!   data directory's epoch and the node's tokens, with the sync modes of
//!   DESIGN.md "Durability".
//! - [`tls`]: mutual TLS between nodes: a cluster CA (rcgen), node
//!   certificates whose DNS name is the node id, and the peer's id read from
//!   its certificate.
//! - [`transport`]: QUIC (quinn) with multiplexed long-lived streams, one
//!   connection per peer, deadlines, `Overloaded` when full, and the fault
//!   hook the tests and the lab use.
//! - [`membership`]: the gossip task that drives `ringdb-gossip` over the
//!   transport and publishes the [`View`](membership::View) the services
//!   read: the ring of normal members and who is up. A replica counts as
//!   alive when the phi-accrual detector says so and its connection is up.
//! - the coordinator (private): the write and read paths of DESIGN.md.
//! - [`schema`]: keyspaces and typed tables, a state every node converges
//!   to (entries stamped by a Lamport clock, merged by incarnation, drop
//!   and stamp; deterministic table ids), DDL planning, and the service
//!   that stores the schema, pushes changes to live peers and pulls a
//!   peer's when gossip shows another version.
//! - the statement engine (private, `statements/`): CQL statements from
//!   the client protocol, parsed with `ringdb-cql` and run: `USE`, DDL,
//!   `DESCRIBE`, and `SELECT`/`INSERT`/`UPDATE`/`DELETE`/`BATCH` on the
//!   coordinator's data path (a `SELECT` reads partition slices:
//!   `coordinator/slice.rs`; an `INSERT` or `UPDATE` is a patch write of
//!   the columns it names; the rows a statement or `BATCH` writes in one
//!   partition go as one request, applied atomically by every replica:
//!   `coordinator/rows.rs`). With `tracing`, the coordinator's events are
//!   recorded (`trace.rs`) and returned.
//!
//! **Layers.** The services (the coordinator, hinted handoff, anti-entropy,
//! cleanup, topology changes and their operations, schema, statements) each hold the node's
//! `Replica` handle (who it is, its storage, peers, view, settings and
//! clock) and their own state, never one another whole; the dispatcher
//! (`dispatch.rs`) is the node's [`network::Incoming`] and routes every
//! request to the service that owns it. The modules form layers with no
//! import cycle (`tests/layers.rs` keeps it so): `world`, `storage`,
//! `network` at the bottom, then `membership`, `streaming` and `replica`,
//! the services, and `dispatch` and `node` on top. Tasks fail with typed
//! errors (`error.rs`), never strings.
//!
//! **Seams.** The node's logic touches the world only through four seams,
//! so that the same code runs in production and, whole clusters at once,
//! in the simulator (`ringdb-sim`), with [`Node::start_in`] and a
//! [`World`]: wall time through a [`Clock`](world::Clock),
//! every random number from one seeded [`Random`](world::Random), peers
//! through a [`Network`](network::Network) (QUIC's
//! [`QuicNetwork`](transport::QuicNetwork) in production, decorated by
//! the fault hook [`Faulty`](network::Faulty)), and bytes through a
//! storage [`Engine`](storage::Engine) (RocksDB, or a
//! [`MemoryDisk`](storage::MemoryDisk) that loses what was not synced when
//! its node crashes). Monotonic time is tokio's, which the simulator pauses
//! and advances. Work that may block (an fsync, a long scan) goes through
//! [`Storage::blocking`](storage::Storage::blocking): the RocksDB engine
//! runs it on tokio's blocking pool, the memory engine in place. The
//! clock is wrapped in a [`SkewedClock`](world::SkewedClock); a node whose
//! config says `[faults] injectable = true` lets a caller the cluster's CA
//! signed set its fault hook and clock skew (`PeerRequest::InjectFaults`,
//! `injection.rs`): that is how `ringdb lab` delays, reorders and
//! duplicates messages and skews clocks on a kernel without `tc netem`.
//!
//! **Repair.** A write whose replica is down, or has not acknowledged by
//! the deadline, leaves a hint on its coordinator (or, in a sloppy quorum,
//! on a live fallback node past the replicas, whose acknowledgement then
//! counts); `ANY` is met by a hint. A task replays a target's hints, oldest
//! first and throttled, once the view shows it up, and sends the hints of a
//! node that left the ring to the rows' replicas now (`hints.rs`, with the
//! queue's rules in `ringdb-antientropy`). Storage keeps a Merkle tree per
//! range this node replicates, changed by every write under the row lock
//! (XOR out the old item, XOR in the new), rebuilt from a snapshot scan at
//! start and when the ring changes; background rounds and `ringdb repair`
//! compare trees with the other replicas and exchange only the rows of
//! differing leaves; a range whose every replica was reconciled purges the
//! repaired table's tombstones older than the grace (`repair.rs`; a purged
//! row's issued dots are remembered, see [`causality`], and its history is
//! kept in the `purged` family, so that a write naming the purged
//! tombstones is known to supersede nothing out of reach). Hints and repaired
//! rows are merged with [`DvvSet::sync`](causality::DvvSet::sync), so
//! neither can bring back what a delete superseded. Rows are exchanged in
//! pages, so a range of large rows repairs and streams within the frame
//! limit.
//!
//! **Joining.** A node's tokens are chosen once, at its first start, and
//! kept in its data directory. At that first start it gossips with the seeds
//! until it knows the ring, lets it settle for two rounds, takes tokens that
//! split the largest ranges (`Ring::join`), and announces them. A seed that
//! is the only seed, or finds nobody, founds the cluster (with tokens turned
//! by a random offset, so that two clusters never share one) — unless
//! another seed with a smaller node id is starting at the same time, which
//! then founds it. New nodes take turns by node id: each announces its
//! tokens, lets the ring settle, and gives way (choosing again later) when a
//! node with a smaller id announced at once; tokens are kept only then. The
//! first hello on every internode connection carries the cluster name and
//! replication factor, and a node refuses a peer whose differ, naming the
//! setting (the joining node stops at once), and a node refuses to start
//! with a certificate that names another node. A node joining a
//! cluster that has members (and `cluster.auto_bootstrap`, the default)
//! announces itself *joining* and streams every range it will replicate
//! from the replica that gives the range up (Cassandra's consistent range
//! movement: the one replica sure to hold every write acknowledged by a
//! quorum that the new ring's quorums need), or, with
//! `streaming.consistent_range_movement = false` and that replica down,
//! from any current replica, before it becomes normal; its progress is kept
//! page by page, so a restart resumes it. Meanwhile the others send it the
//! writes of those ranges (pending ranges: the coordinator also waits for
//! them).
//!
//! **Leaving.** `decommission` streams a node's ranges to the nodes that the
//! ring without it adds and hands the hints it holds over to their targets'
//! replicas, then the node announces it has left; `removenode`
//! marks a dead node removing (still in the ring, never counted alive, its
//! ranges' next replicas pending as for a leaving node), has each new
//! replica fetch its ranges from every survivor, and only then marks it
//! removed, so that no new replica serves a read before it holds the
//! range (a node that died joining is removed with its pending ranges, and
//! nothing to fetch). One topology change at a time. A
//! node that left or was removed marks its data directory and never serves
//! it again. Both run as a task of the node asked (`operations.rs`), not
//! of the request: the command follows them and may go away, `--abort`
//! stops them (a decommission until it starts to leave), `status` shows
//! where they stand, and a removal keeps its plan in the data directory to
//! resume after a restart.
//!
//! **Damaged data.** A block whose checksum does not match is never served
//! (`StorageError::Damaged`, `RequestError::DamagedData`): the node says so
//! in gossip, stops, and its next open (in the same process with `ringdb
//! start`) copies what is readable into a new data directory, dropping a
//! token span around the damage and keeping the damaged file aside
//! (`storage/salvage.rs`); it refuses reads of that span until a repair has
//! brought the rows back from the other replicas (`restore.rs`).
//!
//! **Restarts.** Each node keeps its generation and what it knows of every
//! other node (status, tokens, addresses: `known_peers.rs`) in its data
//! directory, so a restart of every node at once keeps removals and
//! departures, and nodes whose seeds are gone find each other through the
//! peers they knew (and log that the seed is unreachable). The generation
//! only grows, even when the clock went back.
//!
//! **Cleanup.** Once a change that took ranges away from a node has
//! completed, the node deletes its rows of those ranges (`cleanup.rs`;
//! `ringdb cleanup` on demand), so a stale copy cannot come back if a range
//! returns to it.
//!
//! The write path of a coordinator in one line: `storage.write(key, context,
//! node, version, limits)` reads the row's sibling set, issues the next dot of this node's
//! actor for the row (never one it issued before, in this life or any other),
//! applies [`DvvSet::write`](causality::DvvSet::write) under a striped row
//! lock, and stores the result before returning it for replication; a replica applies
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
mod cleanup;
pub mod config;
mod coordinator;
mod dispatch;
mod error;
mod hints;
mod http;
mod injection;
mod known_peers;
pub mod membership;
mod metrics;
pub mod network;
mod node;
mod nodetool;
mod operations;
pub mod placement;
mod repair;
mod replica;
mod restore;
pub mod schema;
mod statements;
pub mod storage;
mod streaming;
pub mod tls;
mod topology;
mod trace;
pub mod transport;
pub mod world;

pub use config::Config;
pub use coordinator::table_id;
pub use node::{Node, NodeError, NodeHandle, World};
pub use nodetool::set_log_control;
pub use storage::RETIRED_FILE;
