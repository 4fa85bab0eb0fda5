//! Consistency levels: how many replicas must answer before a request succeeds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How many replicas must acknowledge a write, or answer a read, before the
/// coordinator answers the client. Chosen per request, as in Cassandra.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConsistencyLevel {
    /// Writes only: any node may take the write, a stored hint counts.
    Any,
    /// One replica.
    One,
    /// Two replicas.
    Two,
    /// Three replicas.
    Three,
    /// A majority of all replicas: ⌊RF/2⌋ + 1.
    Quorum,
    /// A majority of the replicas in the coordinator's datacenter.
    LocalQuorum,
    /// A majority of the replicas in every datacenter.
    EachQuorum,
    /// One replica in the coordinator's datacenter.
    LocalOne,
    /// Every replica.
    All,
}

impl ConsistencyLevel {
    /// Every level, in the order the shell lists them.
    pub const ALL_LEVELS: [ConsistencyLevel; 9] = [
        ConsistencyLevel::Any,
        ConsistencyLevel::One,
        ConsistencyLevel::Two,
        ConsistencyLevel::Three,
        ConsistencyLevel::Quorum,
        ConsistencyLevel::LocalQuorum,
        ConsistencyLevel::EachQuorum,
        ConsistencyLevel::LocalOne,
        ConsistencyLevel::All,
    ];

    /// The number of replicas that must answer, for a replication factor of
    /// `replication_factor` (in the datacenter concerned, for the local and
    /// per-datacenter levels). `Any` needs one acknowledgement, which may be a hint.
    pub fn required(self, replication_factor: usize) -> usize {
        let quorum = replication_factor / 2 + 1;
        match self {
            ConsistencyLevel::Any | ConsistencyLevel::One | ConsistencyLevel::LocalOne => 1,
            ConsistencyLevel::Two => 2,
            ConsistencyLevel::Three => 3,
            ConsistencyLevel::Quorum
            | ConsistencyLevel::LocalQuorum
            | ConsistencyLevel::EachQuorum => quorum,
            ConsistencyLevel::All => replication_factor,
        }
    }

    /// The level's name as CQL writes it.
    pub fn name(self) -> &'static str {
        match self {
            ConsistencyLevel::Any => "ANY",
            ConsistencyLevel::One => "ONE",
            ConsistencyLevel::Two => "TWO",
            ConsistencyLevel::Three => "THREE",
            ConsistencyLevel::Quorum => "QUORUM",
            ConsistencyLevel::LocalQuorum => "LOCAL_QUORUM",
            ConsistencyLevel::EachQuorum => "EACH_QUORUM",
            ConsistencyLevel::LocalOne => "LOCAL_ONE",
            ConsistencyLevel::All => "ALL",
        }
    }
}

impl fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A consistency level name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown consistency level {0:?}; expected one of ANY, ONE, TWO, THREE, QUORUM, LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE, ALL"
)]
pub struct UnknownConsistencyLevel(pub String);

impl FromStr for ConsistencyLevel {
    type Err = UnknownConsistencyLevel;

    fn from_str(s: &str) -> Result<ConsistencyLevel, UnknownConsistencyLevel> {
        ConsistencyLevel::ALL_LEVELS
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownConsistencyLevel(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_a_majority() {
        assert_eq!(ConsistencyLevel::Quorum.required(3), 2);
        assert_eq!(ConsistencyLevel::Quorum.required(4), 3);
        assert_eq!(ConsistencyLevel::Quorum.required(5), 3);
        assert_eq!(ConsistencyLevel::All.required(5), 5);
    }

    #[test]
    fn names_parse_back_case_insensitively() {
        for level in ConsistencyLevel::ALL_LEVELS {
            assert_eq!(
                level.name().to_lowercase().parse::<ConsistencyLevel>(),
                Ok(level)
            );
        }
        assert!("QUORUMS".parse::<ConsistencyLevel>().is_err());
    }
}
