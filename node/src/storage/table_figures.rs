//! What each table holds on this node (`nodetool tablestats`), counted by
//! a scan of the node's whole data: seconds per million rows, so it is
//! for an operator's question, not for a dashboard's polling.

use std::collections::BTreeMap;

use ringdb_proto::TableId;

use super::{Family, RowKey, Storage, StorageError};

/// One table's rows on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableFigures {
    /// Rows stored, deleted ones included until their tombstones are
    /// purged.
    pub rows: u64,
    /// Partitions stored.
    pub partitions: u64,
    /// Bytes of their keys and versions, as stored (before compression).
    pub bytes: u64,
}

impl Storage {
    /// Every table's figures, by a scan of the data. Blocks on the disk.
    pub fn table_figures(&self) -> Result<BTreeMap<TableId, TableFigures>, StorageError> {
        let mut figures: BTreeMap<TableId, TableFigures> = BTreeMap::new();
        // Keys go token, table, partition, clustering: a partition's rows
        // are next to each other.
        let mut last: Option<(TableId, Vec<u8>)> = None;
        for item in self.engine.scan(Family::Data, &[], None) {
            let (key, value) = item?;
            let row = RowKey::decode(&key)?;
            let table = figures.entry(row.table).or_default();
            table.rows += 1;
            table.bytes += (key.len() + value.len()) as u64;
            let partition = (row.table, row.partition.as_bytes().to_vec());
            if last.as_ref() != Some(&partition) {
                table.partitions += 1;
                last = Some(partition);
            }
        }
        Ok(figures)
    }
}
