//! Storage keys: `token ‖ table ‖ partition key ‖ clustering key`, ordered.
//!
//! | bytes | field |
//! |---|---|
//! | 8 | token, big-endian with the sign bit flipped: byte order = token order |
//! | 8 | table id, big-endian |
//! | 2 | partition key length, big-endian (keys are limited to 65535 bytes) |
//! | n | partition key |
//! | rest | clustering key, already order-preserving |
//!
//! A token range is one or two contiguous scans; a partition is one prefix.

use ringdb_proto::{ClusteringKey, PartitionKey, TableId};
use ringdb_ring::Token;

use crate::storage::StorageError;

/// The key of one row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowKey {
    /// The partition key's token (derived, kept for ordering and placement).
    pub token: Token,
    /// The row's table.
    pub table: TableId,
    /// The partition.
    pub partition: PartitionKey,
    /// The row within the partition.
    pub clustering: ClusteringKey,
}

const FIXED_BYTES: usize = 8 + 8 + 2;

impl RowKey {
    /// The key of a row; its token is computed from the partition key.
    pub fn new(table: TableId, partition: PartitionKey, clustering: ClusteringKey) -> RowKey {
        RowKey {
            token: Token::of(partition.as_bytes()),
            table,
            partition,
            clustering,
        }
    }

    /// The storage encoding.
    pub fn encode(&self) -> Vec<u8> {
        let pk = self.partition.as_bytes();
        let mut bytes =
            Vec::with_capacity(FIXED_BYTES + pk.len() + self.clustering.as_bytes().len());
        bytes.extend_from_slice(&self.token.to_ordered_bytes());
        bytes.extend_from_slice(&self.table.0.to_be_bytes());
        // PartitionKey guarantees the length fits in two bytes, however it
        // was made (decoding checks it too); never store a truncated length.
        let length = u16::try_from(pk.len()).expect("a partition key is at most 65535 bytes");
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(pk);
        bytes.extend_from_slice(self.clustering.as_bytes());
        bytes
    }

    /// The table of an encoded storage key, if it is long enough to say.
    pub fn table_of(encoded: &[u8]) -> Option<TableId> {
        let bytes = encoded.get(8..16)?;
        Some(TableId(u64::from_be_bytes(
            bytes.try_into().expect("8 bytes"),
        )))
    }

    /// Decodes a storage key.
    pub fn decode(bytes: &[u8]) -> Result<RowKey, StorageError> {
        let corrupt = |detail: &str| StorageError::Corrupt {
            what: "row key",
            detail: format!("{detail} ({} bytes)", bytes.len()),
        };
        if bytes.len() < FIXED_BYTES {
            return Err(corrupt("shorter than its fixed fields"));
        }
        let token = Token::from_ordered_bytes(bytes[..8].try_into().expect("8 bytes"));
        let table = TableId(u64::from_be_bytes(
            bytes[8..16].try_into().expect("8 bytes"),
        ));
        let len = u16::from_be_bytes(bytes[16..18].try_into().expect("2 bytes")) as usize;
        let rest = &bytes[FIXED_BYTES..];
        if rest.len() < len {
            return Err(corrupt("partition key longer than the key"));
        }
        let partition = PartitionKey::stored(&rest[..len]).map_err(|e| corrupt(&e.to_string()))?;
        let clustering = ClusteringKey::new(&rest[len..]).map_err(|e| corrupt(&e.to_string()))?;
        Ok(RowKey {
            token,
            table,
            partition,
            clustering,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key() -> impl Strategy<Value = RowKey> {
        (
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 1..40),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(table, pk, ck)| {
                RowKey::new(
                    TableId(table),
                    PartitionKey::new(pk).unwrap(),
                    ClusteringKey::new(ck).unwrap(),
                )
            })
    }

    proptest! {
        #[test]
        fn keys_round_trip(key in key()) {
            prop_assert_eq!(RowKey::decode(&key.encode()).unwrap(), key);
        }

        #[test]
        fn byte_order_is_token_then_table_then_partition_then_clustering(a in key(), b in key()) {
            // RowKey's derived order compares partition keys by content; the
            // encoding compares them by length first. Both agree on token,
            // table and, within a partition, clustering order.
            let (ea, eb) = (a.encode(), b.encode());
            if a.token != b.token {
                prop_assert_eq!(a.token.cmp(&b.token), ea.cmp(&eb));
            } else if a.table != b.table {
                prop_assert_eq!(a.table.cmp(&b.table), ea.cmp(&eb));
            } else if a.partition == b.partition {
                prop_assert_eq!(a.clustering.cmp(&b.clustering), ea.cmp(&eb));
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = RowKey::decode(&bytes);
        }
    }
}
