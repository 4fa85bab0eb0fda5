//! The settings every node of a cluster shares, checked when nodes connect.

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
        None
    }
}
