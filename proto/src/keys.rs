//! Keys: which table, which partition, which row in the partition.

use serde::{Deserialize, Serialize};

use crate::clustering::{Input, Order, decode_component, encode_component};
use crate::{CqlType, Value};

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
/// checks the limit too. A new key is not empty (Cassandra refuses an
/// empty key too): [`PartitionKey::new`] refuses one, and so does a node
/// asked by a client. Decoding does not, so that a row written with an
/// empty key before they were refused can still be read back from disk,
/// repaired, streamed and deleted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PartitionKey(#[serde(with = "serde_bytes")] Vec<u8>);

/// A serialized clustering key, encoded so that byte order is clustering order.
/// Empty for tables without clustering columns. At most
/// [`MAX_CLUSTERING_KEY_BYTES`], checked when decoded too.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ClusteringKey(#[serde(with = "serde_bytes")] Vec<u8>);

impl<'de> Deserialize<'de> for PartitionKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        PartitionKey::stored(bytes.into_vec()).map_err(serde::de::Error::custom)
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
    /// A key column with no value: key columns cannot be null.
    #[error("a key column cannot be null")]
    NullComponent,
    /// A key column's value of the wrong type.
    #[error("key column of type {expected} given a {got}")]
    WrongType {
        /// The column's type.
        expected: CqlType,
        /// What the value is.
        got: String,
    },
    /// An empty partition key, which Cassandra refuses too ("Key may not
    /// be empty").
    #[error("the partition key is empty: a row needs a key of at least one byte")]
    EmptyPartitionKey,
    /// Partition key bytes that do not decode as the table's key columns.
    #[error("partition key bytes do not decode as the table's key columns")]
    MalformedPartition,
    /// Clustering key bytes that do not decode as the table's clustering columns.
    #[error("clustering key bytes do not decode as the table's clustering columns")]
    MalformedClustering,
}

impl PartitionKey {
    /// A new partition key from its serialized bytes: not empty, and
    /// within the limit.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<PartitionKey, KeyError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(KeyError::EmptyPartitionKey);
        }
        PartitionKey::stored(bytes)
    }

    /// A partition key read back (from the disk, or a peer): only the limit
    /// is checked, since a key stored before empty keys were refused may be
    /// empty.
    pub fn stored(bytes: impl Into<Vec<u8>>) -> Result<PartitionKey, KeyError> {
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

    /// The partition key of a table whose partition key columns hold
    /// `values`, serialized as Cassandra does, so that its token is the
    /// one Cassandra and its drivers compute: one column is its value's
    /// bytes; several are each `length (u16) ‖ bytes ‖ 0x00`.
    pub fn from_values(values: &[(&Value, CqlType)]) -> Result<PartitionKey, KeyError> {
        let mut bytes = Vec::new();
        for (value, ty) in values {
            if matches!(value, Value::Null) {
                return Err(KeyError::NullComponent);
            }
            if !value.fits(*ty) {
                return Err(KeyError::WrongType {
                    expected: *ty,
                    got: value.kind().to_string(),
                });
            }
            let serialized = value.to_cassandra_bytes();
            if values.len() == 1 {
                bytes = serialized;
                continue;
            }
            let len =
                u16::try_from(serialized.len()).map_err(|_| KeyError::PartitionKeyTooLong {
                    len: serialized.len(),
                    max: MAX_PARTITION_KEY_BYTES,
                })?;
            bytes.extend(len.to_be_bytes());
            bytes.extend(serialized);
            bytes.push(0);
        }
        PartitionKey::new(bytes)
    }

    /// The values of the partition key columns, of `types`, that
    /// [`PartitionKey::from_values`] serialized.
    pub fn decode(&self, types: &[CqlType]) -> Result<Vec<Value>, KeyError> {
        let decode = |ty: CqlType, bytes: &[u8]| {
            Value::from_cassandra_bytes(ty, bytes).map_err(|_| KeyError::MalformedPartition)
        };
        if let [ty] = types {
            return Ok(vec![decode(*ty, &self.0)?]);
        }
        let mut rest = self.0.as_slice();
        let mut values = Vec::with_capacity(types.len());
        for ty in types {
            let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                return Err(KeyError::MalformedPartition);
            };
            let len = usize::from(u16::from_be_bytes(*len));
            if tail.len() < len + 1 || tail[len] != 0 {
                return Err(KeyError::MalformedPartition);
            }
            values.push(decode(*ty, &tail[..len])?);
            rest = &tail[len + 1..];
        }
        if !rest.is_empty() {
            return Err(KeyError::MalformedPartition);
        }
        Ok(values)
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

    /// The clustering key of the clustering column values `values`, each
    /// with its column's type and order: the full key, or a prefix of it
    /// (the first columns, for a slice), whose bytes are a prefix of the
    /// full keys that start with these values. See `clustering.rs`.
    pub fn encode(values: &[(&Value, CqlType, Order)]) -> Result<ClusteringKey, KeyError> {
        let mut bytes = Vec::new();
        for (value, ty, order) in values {
            encode_component(value, *ty, *order, &mut bytes)?;
            if bytes.len() > MAX_CLUSTERING_KEY_BYTES {
                break;
            }
        }
        ClusteringKey::new(bytes)
    }

    /// The clustering column values [`ClusteringKey::encode`] encoded, for
    /// columns of `columns` (type and order); a prefix decodes to as many
    /// values as it holds.
    pub fn decode(&self, columns: &[(CqlType, Order)]) -> Result<Vec<Value>, KeyError> {
        let mut input = Input::new(&self.0);
        let mut values = Vec::with_capacity(columns.len());
        for (ty, order) in columns {
            if input.is_empty() {
                break;
            }
            values.push(decode_component(&mut input, *ty, *order)?);
        }
        if !input.is_empty() {
            return Err(KeyError::MalformedClustering);
        }
        // Only the bytes `encode` makes: two keys never decode alike.
        let again: Vec<(&Value, CqlType, Order)> = values
            .iter()
            .zip(columns)
            .map(|(value, (ty, order))| (value, *ty, *order))
            .collect();
        if ClusteringKey::encode(&again).as_ref() != Ok(self) {
            return Err(KeyError::MalformedClustering);
        }
        Ok(values)
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
