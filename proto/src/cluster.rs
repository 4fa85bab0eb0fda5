//! The settings every node of a cluster shares, checked when nodes connect.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The settings every node of a cluster must share, told in the hello of
/// each internode connection: a node with another cluster name belongs to
/// another cluster, and one with another replication factor would disagree
/// with the others about who replicates what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// The cluster's name (`cluster.name`).
    pub name: String,
    /// The replication factor (`cluster.replication_factor`).
    pub replication_factor: usize,
    /// Replicas per datacenter (`cluster.datacenter_replication`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub datacenter_replication: BTreeMap<String, usize>,
}

impl ClusterSettings {
    /// The first setting in which `other` differs from these: its name,
    /// this value, the other value.
    pub fn mismatch(&self, other: &ClusterSettings) -> Option<(&'static str, String, String)> {
        if self.name != other.name {
            return Some(("cluster.name", self.name.clone(), other.name.clone()));
        }
        if self.replication_factor != other.replication_factor {
            return Some((
                "cluster.replication_factor",
                self.replication_factor.to_string(),
                other.replication_factor.to_string(),
            ));
        }
        if self.datacenter_replication != other.datacenter_replication {
            let show = |factors: &BTreeMap<String, usize>| format!("{factors:?}");
            return Some((
                "cluster.datacenter_replication",
                show(&self.datacenter_replication),
                show(&other.datacenter_replication),
            ));
        }
        None
    }
}
