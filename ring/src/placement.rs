//! Replica placement strategies: which nodes, met walking clockwise, are replicas.
//!
//! `Simple` takes the first N distinct nodes. `RackAware` and `PerDatacenter`
//! follow Cassandra's `NetworkTopologyStrategy`: within a datacenter, the walk
//! first takes nodes on racks it has not used yet; nodes it skipped because
//! their rack was taken are used, in the order met, once every rack of the
//! datacenter has a replica. So replicas spread over as many racks as there are,
//! and the list is still filled when racks are fewer than the factor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ring::{Ring, Topology};

/// How many replicas a keyspace keeps, and how they are spread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Replication {
    /// The first `factor` distinct nodes clockwise, ignoring racks and datacenters.
    Simple {
        /// Number of replicas.
        factor: usize,
    },
    /// `factor` replicas over all nodes, on distinct racks first.
    RackAware {
        /// Number of replicas.
        factor: usize,
    },
    /// A number of replicas per datacenter, rack-aware within each.
    PerDatacenter {
        /// Replicas per datacenter name; datacenters not listed hold none.
        factors: BTreeMap<String, usize>,
    },
}

/// In words, as `status` prints it: `3 replicas (SimpleStrategy)`,
/// `3 replicas on distinct racks`, `dc1: 3, dc2: 2
/// (NetworkTopologyStrategy)`.
impl std::fmt::Display for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        match self {
            Replication::Simple { factor } => {
                write!(f, "{factor} replica{} (SimpleStrategy)", plural(*factor))
            }
            Replication::RackAware { factor } => {
                write!(f, "{factor} replica{} on distinct racks", plural(*factor))
            }
            Replication::PerDatacenter { factors } => {
                let each: Vec<String> =
                    factors.iter().map(|(dc, n)| format!("{dc}: {n}")).collect();
                write!(f, "{} (NetworkTopologyStrategy)", each.join(", "))
            }
        }
    }
}

impl Replication {
    /// The total number of replicas asked for.
    pub fn total_factor(&self) -> usize {
        match self {
            Replication::Simple { factor } | Replication::RackAware { factor } => *factor,
            Replication::PerDatacenter { factors } => factors.values().sum(),
        }
    }
}

/// One datacenter's (or the whole ring's) selection in progress.
struct Group {
    /// The datacenter number this group draws from; `None` for every node.
    datacenter: Option<u32>,
    wanted: usize,
    rack_aware: bool,
    /// The number of distinct racks among the group's nodes.
    racks_total: usize,
    /// Rack numbers that hold a replica already.
    racks_used: Vec<u32>,
    /// Nodes met whose rack was already used, in the order met.
    skipped: Vec<usize>,
    chosen: usize,
}

/// A replica selection fed by a clockwise walk, one owner at a time.
pub(crate) struct Selection<'r> {
    topology: &'r Topology,
    groups: Vec<Group>,
    replicas: Vec<usize>,
}

impl<'r> Selection<'r> {
    pub(crate) fn new(ring: &'r Ring, replication: &Replication) -> Selection<'r> {
        let topology = ring.topology();
        let group = |datacenter: Option<u32>, wanted: usize, rack_aware: bool| {
            let (members, racks) = match datacenter {
                None => (topology.positions.len(), topology.racks),
                Some(d) => topology
                    .datacenter_sizes
                    .get(d as usize)
                    .copied()
                    .unwrap_or((0, 0)),
            };
            Group {
                datacenter,
                wanted: wanted.min(members),
                rack_aware,
                racks_total: racks,
                racks_used: Vec::new(),
                skipped: Vec::new(),
                chosen: 0,
            }
        };
        let groups = match replication {
            Replication::Simple { factor } => vec![group(None, *factor, false)],
            Replication::RackAware { factor } => vec![group(None, *factor, true)],
            Replication::PerDatacenter { factors } => factors
                .iter()
                .map(|(name, &factor)| {
                    // A datacenter the ring does not have holds no replicas.
                    let number = topology.datacenters.iter().position(|d| d == name);
                    let number = number.map_or(u32::MAX, |n| n as u32);
                    group(Some(number), factor, true)
                })
                .collect(),
        };
        Selection {
            topology,
            groups,
            replicas: Vec::with_capacity(replication.total_factor()),
        }
    }

    /// Offers the owner (by position in the ring's id list) of the next token
    /// met. Returns true once every group is complete.
    pub(crate) fn offer(&mut self, owner: usize) -> bool {
        if !self.replicas.contains(&owner) {
            let (datacenter, rack) = self.topology.positions[owner];
            let group = self
                .groups
                .iter_mut()
                .find(|g| g.datacenter.is_none_or(|d| d == datacenter));
            if let Some(group) = group
                && group.chosen < group.wanted
            {
                let mut added = Vec::new();
                if !group.rack_aware || group.racks_used.len() == group.racks_total {
                    added.push(owner);
                } else if !group.racks_used.contains(&rack) {
                    group.racks_used.push(rack);
                    added.push(owner);
                    if group.racks_used.len() == group.racks_total {
                        // Every rack is used: the skipped nodes come next, in order.
                        added.append(&mut group.skipped);
                    }
                } else if !group.skipped.contains(&owner) {
                    group.skipped.push(owner);
                }
                for node in added {
                    if group.chosen < group.wanted {
                        group.chosen += 1;
                        self.replicas.push(node);
                    }
                }
            }
        }
        self.groups.iter().all(|g| g.chosen >= g.wanted)
    }

    pub(crate) fn into_replicas(self) -> Vec<usize> {
        self.replicas
    }
}
