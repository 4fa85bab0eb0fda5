//! Keys: which table, which partition, which row in the partition.

use serde::{Deserialize, Serialize};

/// The largest serialized partition key, in bytes (Cassandra's limit: 64 KiB − 1).
pub const MAX_PARTITION_KEY_BYTES: usize = u16::MAX as usize;
/// The largest serialized clustering key, in bytes.
pub const MAX_CLUSTERING_KEY_BYTES: usize = u16::MAX as usize;

/// A table's id, unique in the cluster and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableId(pub u64);

/// A serialized partition key: the bytes whose Murmur3 token places the partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionKey(#[serde(with = "serde_bytes")] Vec<u8>);

/// A serialized clustering key, encoded so that byte order is clustering order.
/// Empty for tables without clustering columns.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClusteringKey(#[serde(with = "serde_bytes")] Vec<u8>);

/// A key that breaks a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The partition key is longer than [`MAX_PARTITION_KEY_BYTES`].
    #[error("partition key is {len} bytes; the limit is {max}")]
    PartitionKeyTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The clustering key is longer than [`MAX_CLUSTERING_KEY_BYTES`].
    #[error("clustering key is {len} bytes; the limit is {max}")]
    ClusteringKeyTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl PartitionKey {
    /// A partition key from its serialized bytes, checked against the limit.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<PartitionKey, KeyError> {
        let bytes = bytes.into();
        if bytes.len() > MAX_PARTITION_KEY_BYTES {
            return Err(KeyError::PartitionKeyTooLong {
                len: bytes.len(),
                max: MAX_PARTITION_KEY_BYTES,
            });
        }
        Ok(PartitionKey(bytes))
    }

    /// The serialized bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl ClusteringKey {
    /// A clustering key from its order-preserving bytes, checked against the limit.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<ClusteringKey, KeyError> {
        let bytes = bytes.into();
        if bytes.len() > MAX_CLUSTERING_KEY_BYTES {
            return Err(KeyError::ClusteringKeyTooLong {
                len: bytes.len(),
                max: MAX_CLUSTERING_KEY_BYTES,
            });
        }
        Ok(ClusteringKey(bytes))
    }

    /// The empty clustering key of a table without clustering columns.
    pub fn empty() -> ClusteringKey {
        ClusteringKey(Vec::new())
    }

    /// The order-preserving bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_keys_are_refused_with_their_length() {
        let err = PartitionKey::new(vec![0; MAX_PARTITION_KEY_BYTES + 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "partition key is 65536 bytes; the limit is 65535"
        );
        assert!(PartitionKey::new(vec![0; MAX_PARTITION_KEY_BYTES]).is_ok());
        assert!(ClusteringKey::new(vec![0; MAX_CLUSTERING_KEY_BYTES + 1]).is_err());
    }
}
