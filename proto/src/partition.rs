//! Writes of several rows of one partition, applied together.
//!
//! A CQL `BATCH`, or one statement naming several rows, writes each
//! partition it touches as one [`ClientRequest::WriteRows`]: its
//! coordinator makes every row's new version under the partition's lock and
//! stores them in one atomic write, and each replica applies the set the
//! same way ([`PeerRequest::ReplicateRows`]), so that no reader of a
//! replica sees some of the rows written and not the others. A hint keeps
//! the set as one entry, replayed whole.
//!
//! [`ClientRequest::WriteRows`]: crate::ClientRequest::WriteRows
//! [`PeerRequest::ReplicateRows`]: crate::PeerRequest::ReplicateRows

use serde::{Deserialize, Serialize};

use crate::{
    ClusteringKey, Context, PartitionKey, RequestError, Row, RowId, TableId, VersionedRow,
};

/// The most rows one partition write may carry (Cassandra warns of large
/// batches; a write this large is better split).
pub const MAX_PARTITION_ROWS: usize = 10_000;

/// What a write does to one row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RowChange {
    /// Writes these columns over the row's others (CQL's `INSERT` and
    /// `UPDATE`); a `null` removes one.
    Update(Row),
    /// Replaces the row by one holding just these columns (a `DELETE` of
    /// the row followed, in the same batch, by an `INSERT`).
    Replace(Row),
    /// Deletes the row.
    Delete,
}

/// One row of a [`ClientRequest::WriteRows`](crate::ClientRequest::WriteRows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowWrite {
    /// The row's clustering key.
    pub clustering: ClusteringKey,
    /// What is written.
    pub change: RowChange,
    /// The context of the read this write follows, or empty.
    pub context: Context,
    /// The version's timestamp (`USING TIMESTAMP`, last-write-wins tables
    /// only); the coordinator's clock without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Besides `context`, the write supersedes what an empty context would
    /// have it supersede: what its coordinator holds, and for a delete or a
    /// replace what a read at its level finds. Set when a change made
    /// after a read is combined with one made without (in a batch).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub and_unread: bool,
}

/// Checks the rows of a partition write: some, not too many, and each
/// named once.
pub fn check_partition_rows<'a>(
    rows: impl ExactSizeIterator<Item = &'a ClusteringKey>,
) -> Result<(), RequestError> {
    let count = rows.len();
    if count == 0 {
        return Err(RequestError::invalid("a partition write names no row"));
    }
    if count > MAX_PARTITION_ROWS {
        return Err(RequestError::invalid(format!(
            "a write of {count} rows of one partition; at most {MAX_PARTITION_ROWS} are written \
             together: split the batch"
        )));
    }
    let mut keys: Vec<&ClusteringKey> = rows.collect();
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    if keys.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(RequestError::invalid("a partition write names a row twice"));
    }
    Ok(())
}

/// New sibling sets of rows of one partition, as replicas and hints take
/// them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionVersions {
    /// The table's id.
    pub table: TableId,
    /// The serialized partition key.
    pub partition: PartitionKey,
    /// Each row's clustering key and sibling set.
    pub rows: Vec<(ClusteringKey, VersionedRow)>,
}

impl PartitionVersions {
    /// The sibling set of one row.
    pub fn one(row: &RowId, versions: VersionedRow) -> PartitionVersions {
        PartitionVersions {
            table: row.table,
            partition: row.partition.clone(),
            rows: vec![(row.clustering.clone(), versions)],
        }
    }

    /// Each row's id and sibling set.
    pub fn row_ids(&self) -> impl Iterator<Item = (RowId, &VersionedRow)> + '_ {
        self.rows.iter().map(|(clustering, versions)| {
            let id = RowId {
                table: self.table,
                partition: self.partition.clone(),
                clustering: clustering.clone(),
            };
            (id, versions)
        })
    }

    /// Checks what came from the network: some rows, not too many, each
    /// once.
    pub fn check(&self) -> Result<(), RequestError> {
        check_partition_rows(self.rows.iter().map(|(clustering, _)| clustering))
    }

    /// The request that has a replica merge these rows: a
    /// [`PeerRequest::Replicate`](crate::PeerRequest::Replicate) for one
    /// row (which every node version takes), else a
    /// [`PeerRequest::ReplicateRows`](crate::PeerRequest::ReplicateRows).
    pub fn replicate(&self) -> crate::PeerRequest {
        match self.row_ids().collect::<Vec<_>>().as_slice() {
            [(row, versions)] => crate::PeerRequest::Replicate {
                row: row.clone(),
                versions: (*versions).clone(),
            },
            _ => crate::PeerRequest::ReplicateRows(self.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clustering(n: u8) -> ClusteringKey {
        ClusteringKey::new(vec![n]).unwrap()
    }

    #[test]
    fn a_partition_write_names_each_row_once_and_not_too_many() {
        let keys = [clustering(1), clustering(2)];
        assert!(check_partition_rows(keys.iter()).is_ok());
        let twice = [clustering(1), clustering(2), clustering(1)];
        let error = check_partition_rows(twice.iter()).unwrap_err();
        assert!(error.to_string().contains("names a row twice"), "{error}");
        let none: [ClusteringKey; 0] = [];
        assert!(check_partition_rows(none.iter()).is_err());
        let many = vec![ClusteringKey::empty(); MAX_PARTITION_ROWS + 1];
        let error = check_partition_rows(many.iter()).unwrap_err();
        assert!(error.to_string().contains("split the batch"), "{error}");
    }
}
