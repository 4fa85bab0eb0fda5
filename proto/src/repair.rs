//! The vocabulary of repair: hint counters, tree items, repair summaries.

use ringdb_ring::{NodeId, TokenRange};
use serde::{Deserialize, Serialize};

/// What happened to hints on one node since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintCounters {
    /// Hints stored.
    pub written: u64,
    /// Hints delivered to their target and deleted.
    pub delivered: u64,
    /// Hints of a target that left the ring, delivered to the row's replicas now.
    pub redirected: u64,
    /// Hints dropped at replay because they were older than the hint window.
    pub expired: u64,
    /// Hints not written because the target had been down longer than the window.
    pub dropped_window: u64,
    /// Hints not written because the target's hints were at the size cap.
    pub dropped_cap: u64,
    /// Hints dropped because their target left the ring and they could not
    /// be redirected, or because they did not decode.
    pub dropped_other: u64,
    /// Hints handed over to another node (delivered to their target, or
    /// kept there for it) because this node was leaving the ring.
    #[serde(default)]
    pub handed_over: u64,
}

/// One item of a Merkle leaf: a row's storage key and the blake3 digest of
/// its encoded sibling set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeItem {
    /// The storage key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// blake3 of the encoded sibling set.
    #[serde(with = "serde_bytes")]
    pub digest: Vec<u8>,
}

/// What a repair did (`ringdb repair`, and each background round).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairSummary {
    /// Range exchanges done: one per range and other replica.
    pub ranges_compared: u64,
    /// The ranges where some replica's tree differed, with the replica.
    pub ranges_differing: Vec<(TokenRange, NodeId)>,
    /// Range exchanges that failed (replica down or busy, trees not ready).
    pub ranges_failed: Vec<(TokenRange, NodeId, String)>,
    /// Rows sent or fetched because they differed (each row once per exchange).
    pub keys_repaired: u64,
    /// Bytes of repair messages sent and received (hashes, items, rows).
    pub bytes_sent: u64,
    /// Tombstones purged (every replica held them and the grace had passed).
    pub tombstones_purged: u64,
}

impl RepairSummary {
    /// Adds another summary's figures.
    pub fn add(&mut self, other: RepairSummary) {
        self.ranges_compared += other.ranges_compared;
        self.ranges_differing.extend(other.ranges_differing);
        self.ranges_failed.extend(other.ranges_failed);
        self.keys_repaired += other.keys_repaired;
        self.bytes_sent += other.bytes_sent;
        self.tombstones_purged += other.tombstones_purged;
    }
}

/// A node's repair figures (`ringdb info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairStats {
    /// Hints pending per target node, in bytes.
    pub hints_pending: Vec<(NodeId, u64)>,
    /// What happened to hints since the node started.
    pub hints: HintCounters,
    /// Whether the Merkle trees are built (exchanges need them).
    pub trees_ready: bool,
    /// Ranges with a tree.
    pub tree_ranges: u64,
    /// What anti-entropy did since the node started (background and on demand).
    pub antientropy: RepairSummary,
    /// Rows of ranges the node no longer replicates that it deleted since
    /// it started (cleanup).
    #[serde(default)]
    pub rows_cleaned: u64,
}
