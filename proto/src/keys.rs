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
///
/// At most [`MAX_PARTITION_KEY_BYTES`], whether made with
/// [`PartitionKey::new`] or decoded from the wire or the disk: decoding
/// checks the limit too.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PartitionKey(#[serde(with = "serde_bytes")] Vec<u8>);

/// A serialized clustering key, encoded so that byte order is clustering order.
/// Empty for tables without clustering columns. At most
/// [`MAX_CLUSTERING_KEY_BYTES`], checked when decoded too.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ClusteringKey(#[serde(with = "serde_bytes")] Vec<u8>);

impl<'de> Deserialize<'de> for PartitionKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        PartitionKey::new(bytes.into_vec()).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for ClusteringKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        ClusteringKey::new(bytes.into_vec()).map_err(serde::de::Error::custom)
    }
}

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

    #[test]
    fn decoding_checks_the_limits_too() {
        // What a client that skips the constructor sends: raw bytes.
        let long = serde_bytes::ByteBuf::from(vec![7; MAX_PARTITION_KEY_BYTES + 1]);
        let bytes = rmp_serde::to_vec(&long).unwrap();
        let err = rmp_serde::from_slice::<PartitionKey>(&bytes).unwrap_err();
        assert!(
            err.to_string().contains("partition key is 65536 bytes"),
            "{err}"
        );
        let err = rmp_serde::from_slice::<ClusteringKey>(&bytes).unwrap_err();
        assert!(
            err.to_string().contains("clustering key is 65536 bytes"),
            "{err}"
        );
        let fine = PartitionKey::new(vec![7; MAX_PARTITION_KEY_BYTES]).unwrap();
        let bytes = rmp_serde::to_vec(&fine).unwrap();
        assert_eq!(rmp_serde::from_slice::<PartitionKey>(&bytes).unwrap(), fine);
    }
}
