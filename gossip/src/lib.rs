//! # Membership by gossip, and failure detection
//!
//! Every node keeps a view of every node it knows: an [`EndpointState`] of
//! versioned application states (status, tokens, addresses, datacenter and
//! rack, schema version, load, actor epoch) and a heartbeat. This crate is
//! the state machine that spreads those views, after Cassandra's gossiper
//! (itself after van Renesse, Minsky and Hayden, "A Gossip-Style Failure
//! Detection Service", 1998), and judges liveness with a φ-accrual failure
//! detector ([`detector`]).
//!
//! It does no I/O. The node calls [`Gossiper::tick`] every
//! [`GOSSIP_INTERVAL`] and [`Gossiper::handle`] for each message, passing the
//! time; they return the messages to send. Tests drive many instances by
//! hand with injected time and a simulated network.
//!
//! ## Versions
//!
//! A node's state is ordered by `(generation, version)`. The generation is
//! its process start time, but never below its last life's plus one (the
//! node keeps it on disk, so a clock that went back does not make peers
//! ignore it): a restarted node's state replaces the old one wholesale.
//! What a node knew of the others before it restarted comes back through
//! [`Gossiper::remember`], so removals, departures and the ring outlive a
//! restart of every node at once. Within a generation, each application state and the heartbeat
//! carry a version from one counter the node increments, so "newer" is a
//! comparison of integers and merging is idempotent, commutative and
//! associative.
//!
//! ## A round
//!
//! Each second a node beats its heart (increments its version) and sends a
//! `Syn` of digests — `(node, generation, max version)` for every node it
//! knows, a few dozen bytes each — to one random live peer; with a
//! probability that grows with their share also to an unreachable node (to
//! notice it coming back), and to a seed (so that separated groups of the
//! membership find each other). The peer answers with an `Ack`: the states
//! newer than the digests, and digests of what it lacks; the initiator ends
//! the round with an `Ack2` carrying those. Only states newer than the
//! receiver's version cross the wire. News reaches all `n` nodes in
//! O(log n) rounds (`tests/convergence.rs` measures it).
//!
//! ## Who may say what
//!
//! A node's own state is asserted first-hand only by that node: states
//! about the receiver itself are never taken from others, and the sender of
//! a message is who its certificate says (the node passes that identity to
//! [`Gossiper::handle`]), never a field of the message. States about third
//! nodes are accepted by the version rules. Hearing from a node directly is
//! proof it is alive; a node learned of second-hand is alive only once its
//! heartbeat moves.
//!
//! The one exception is removal: `removenode` ([`Gossiper::remove`]) writes
//! a dead node's state in a generation above its own, as Cassandra does:
//! first as `Removing` (still in the ring while its ranges are copied to
//! their next replicas, which take its writes meanwhile), then as
//! `Removed`, a newer version in that generation. Stale gossip of the old process then loses everywhere,
//! and the node can only come back as a new member (a new generation that
//! announces itself joining). A removed node that comes back anyway is sent
//! its removed state whatever its generation, and hears it as
//! [`Event::RemovedSelf`]: the node then stops.
//!
//! ## Where we differ from Cassandra
//!
//! - The failure detector models heartbeat intervals as a normal
//!   distribution with a minimum deviation and an acceptable pause (as the
//!   φ paper and Akka do), not as an exponential one: with one-second
//!   gossip it convicts a silent node after about 4–5 s at φ = 8, not ~18 s.
//! - Application states are typed values, not strings.
//! - Versions are per node, not one counter shared by every node in the
//!   process (there is one node per gossiper).

pub mod detector;
mod gossiper;
mod state;

pub use detector::DetectorConfig;
pub use gossiper::{
    Event, GOSSIP_INTERVAL, GossipConfig, GossipError, GossipMessage, Gossiper, LOCAL_PAUSE,
    Outbound, Peer, RemovalStep,
};
pub use state::{Digest, EndpointDelta, EndpointState, StateKey, StateValue, Status, Versioned};
