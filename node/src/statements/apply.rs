//! What a write statement does, row by row, and how it is applied: the
//! rows it changes are gathered by partition first (a `BATCH` of several
//! statements, or one statement naming several rows), and each partition
//! is then written as one request, which its replicas apply atomically
//! ([`ClientRequest::WriteRows`]). Two changes of one row in a batch are
//! combined into one, in statement order: an `UPDATE` after a `DELETE`
//! leaves just the columns it sets.
//!
//! Partitions are written one after another; a batch over several
//! partitions is atomic per partition only: when one partition's write
//! fails, the partitions before it stay written and the ones after it are
//! not tried (there is no batchlog). At consistency ANY (deletes only: an
//! `INSERT` or `UPDATE` needs a replica) rows are written one by one.
//!
//! A change combined from two supersedes what both would have: the
//! contexts of both reads, and when either was made without one what the
//! coordinator holds (and for a delete what a read at the statement's level
//! finds: [`RowWrite::and_unread`]); `USING TIMESTAMP` may not be combined
//! with another change of the row stamped otherwise, nor with a delete.

use std::collections::HashMap;

use ringdb_proto::{
    ClientReply, ClientRequest, ClusteringKey, ConsistencyLevel, Context, MAX_PARTITION_ROWS,
    PartitionKey, RequestError, Row, RowAddress, RowChange, RowContext, RowRef, RowWrite,
    TableDefinition, TableId, Value,
};
use tokio::time::Instant;

use super::Statements;
use crate::causality::CausalContext;
use crate::storage::RowKey;

/// The most bytes (keys and columns, roughly) a statement may write to
/// one partition: the partition's rows travel together, in one message.
const MAX_PARTITION_BYTES: usize = ringdb_proto::MAX_FRAME_BYTES / 4;

/// The rows a write statement changes, by partition, in the order first
/// named.
#[derive(Default)]
pub(super) struct Changes {
    partitions: Vec<PartitionChanges>,
    /// Where each (table, partition) is in `partitions`.
    index: HashMap<(TableId, PartitionKey), usize>,
    /// The context of each row applied so far.
    pub(super) applied: Vec<RowContext>,
    /// The changes are a batch's, applied together at its end (else a
    /// range delete is applied a page at a time).
    pub(super) in_batch: bool,
}

struct PartitionChanges {
    table: TableId,
    partition: PartitionKey,
    rows: Vec<RowWrite>,
    /// Roughly the bytes of the rows' keys and columns.
    bytes: usize,
    /// Where each clustering key is in `rows`.
    index: HashMap<ClusteringKey, usize>,
}

impl Changes {
    /// Adds a change of one row, combined with an earlier one of the same
    /// row. Refused past [`MAX_PARTITION_ROWS`] rows of one partition.
    pub(super) fn add(
        &mut self,
        table: &TableDefinition,
        partition: PartitionKey,
        row: RowWrite,
    ) -> Result<(), RequestError> {
        let key = (table.id, partition.clone());
        let at = *self.index.entry(key).or_insert_with(|| {
            self.partitions.push(PartitionChanges {
                table: table.id,
                partition,
                rows: Vec::new(),
                bytes: 0,
                index: HashMap::new(),
            });
            self.partitions.len() - 1
        });
        let changes = &mut self.partitions[at];
        changes.bytes += row_bytes(&row);
        if changes.bytes > MAX_PARTITION_BYTES {
            return Err(RequestError::invalid(format!(
                "the statement writes more than {MAX_PARTITION_BYTES} bytes to one partition of \
                 {}; write them in smaller batches (or delete smaller ranges)",
                table.name
            )));
        }
        if let Some(&earlier) = changes.index.get(&row.clustering) {
            let combined = combine(&changes.rows[earlier], row)?;
            changes.rows[earlier] = combined;
            return Ok(());
        }
        if changes.rows.len() == MAX_PARTITION_ROWS {
            return Err(RequestError::invalid(format!(
                "the statement writes more than {MAX_PARTITION_ROWS} rows of one partition of {}; \
                 write them in smaller batches (or delete smaller ranges)",
                table.name
            )));
        }
        changes
            .index
            .insert(row.clustering.clone(), changes.rows.len());
        changes.rows.push(row);
        Ok(())
    }

    /// Roughly the bytes planned and not yet applied.
    pub(super) fn bytes(&self) -> usize {
        self.partitions.iter().map(|p| p.bytes).sum()
    }

    /// The clustering keys of the rows of a partition already planned
    /// (by an earlier statement of the batch) from `start` to before `end`
    /// (`None`: the partition's end), in byte order.
    pub(super) fn planned_in(
        &self,
        table: TableId,
        partition: &PartitionKey,
        (start, end): (&[u8], Option<&[u8]>),
    ) -> Vec<ClusteringKey> {
        let Some(&at) = self.index.get(&(table, partition.clone())) else {
            return Vec::new();
        };
        (self.partitions[at].rows.iter())
            .map(|row| &row.clustering)
            .filter(|c| c.as_bytes() >= start && end.is_none_or(|end| c.as_bytes() < end))
            .cloned()
            .collect()
    }
}

/// Roughly the bytes a row's change takes in a message.
fn row_bytes(row: &RowWrite) -> usize {
    let columns = match &row.change {
        RowChange::Update(columns) | RowChange::Replace(columns) => {
            rmp_serde::to_vec_named(columns).map_or(usize::MAX / 2, |bytes| bytes.len())
        }
        RowChange::Delete => 0,
    };
    row.clustering.as_bytes().len() + row.context.0.len() + columns
}

/// Two changes of one row in one batch, as one: what running `earlier`
/// then `later` leaves.
fn combine(earlier: &RowWrite, later: RowWrite) -> Result<RowWrite, RequestError> {
    let deletes = matches!(earlier.change, RowChange::Delete) || later.change == RowChange::Delete;
    let stamped = earlier.timestamp.is_some() || later.timestamp.is_some();
    if stamped && (deletes || earlier.timestamp != later.timestamp) {
        return Err(RequestError::invalid(
            "a batch changes a row twice, one of them USING TIMESTAMP: changes of one row in a \
             batch take the same timestamp, and a DELETE none",
        ));
    }
    let change = match (&earlier.change, later.change) {
        (_, RowChange::Delete) => RowChange::Delete,
        (_, RowChange::Replace(columns)) => RowChange::Replace(columns),
        (RowChange::Update(before), RowChange::Update(columns)) => {
            let mut row = before.clone();
            row.extend(columns);
            RowChange::Update(row)
        }
        (RowChange::Replace(before), RowChange::Update(columns)) => {
            RowChange::Replace(patch(before.clone(), columns))
        }
        (RowChange::Delete, RowChange::Update(columns)) => {
            let only_nulls = !columns.is_empty() && columns.values().all(|v| *v == Value::Null);
            if only_nulls {
                RowChange::Delete
            } else {
                RowChange::Replace(patch(Row::new(), columns))
            }
        }
    };
    let (context, unread) = merge_contexts(&earlier.context, &later.context)?;
    Ok(RowWrite {
        clustering: later.clustering,
        change,
        context,
        timestamp: later.timestamp,
        and_unread: unread || earlier.and_unread || later.and_unread,
    })
}

/// `columns` written over `row`: a `null` removes one.
fn patch(mut row: Row, columns: Row) -> Row {
    for (name, value) in columns {
        if value == Value::Null {
            row.remove(&name);
        } else {
            row.insert(name, value);
        }
    }
    row
}

/// What two reads of a row saw, together, and whether one change was made
/// without a read (an empty context, which stands for what the
/// coordinator holds, and for a delete what a read finds).
fn merge_contexts(a: &Context, b: &Context) -> Result<(Context, bool), RequestError> {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ok((Context::empty(), false)),
        (true, false) => return Ok((b.clone(), true)),
        (false, true) => return Ok((a.clone(), true)),
        (false, false) if a == b => return Ok((a.clone(), false)),
        (false, false) => {}
    }
    let decode = |context: &Context| {
        CausalContext::decode(&context.0).map_err(|e| RequestError::invalid(e.to_string()))
    };
    let merged = decode(a)?.merge(&decode(b)?);
    Ok((Context(CausalContext::encode(&merged)), false))
}

impl Statements {
    /// Writes the changes planned, a partition at a time, noting the
    /// context of each row written in [`Changes::applied`].
    pub(super) async fn apply(
        &self,
        changes: &mut Changes,
        consistency: ConsistencyLevel,
        deadline: Instant,
    ) -> Result<(), RequestError> {
        changes.index.clear();
        let partitions = std::mem::take(&mut changes.partitions);
        if consistency == ConsistencyLevel::Any {
            check_any(&partitions)?;
        }
        for partition in partitions {
            let refs: Vec<RowRef> = (partition.rows.iter())
                .map(|row| {
                    let key = RowKey::new(
                        partition.table,
                        partition.partition.clone(),
                        row.clustering.clone(),
                    );
                    RowRef(key.encode())
                })
                .collect();
            let requests = if consistency == ConsistencyLevel::Any {
                one_by_one(partition, consistency)
            } else {
                vec![request(partition, consistency)]
            };
            let mut contexts = Vec::with_capacity(refs.len());
            for request in requests {
                let coordinator = self.coordinator.clone();
                match coordinator.serve_client(request, deadline, false).await? {
                    ClientReply::Written { context, .. } => contexts.push(context),
                    ClientReply::WrittenRows { contexts: all, .. } => contexts.extend(all),
                    other => return Err(unexpected(&other)),
                }
            }
            if contexts.len() != refs.len() {
                let reply = format!("{} contexts for {} rows", contexts.len(), refs.len());
                return Err(unexpected(&reply));
            }
            for (row, context) in refs.iter().zip(contexts) {
                note_written(row, context, &mut changes.applied);
            }
        }
        Ok(())
    }
}

/// At consistency ANY, rows are written one by one, and only deletes (an
/// `INSERT` or `UPDATE` needs a replica): refused before anything is
/// written otherwise.
fn check_any(partitions: &[PartitionChanges]) -> Result<(), RequestError> {
    let rows = partitions.iter().flat_map(|p| &p.rows);
    if rows.into_iter().any(|row| row.change != RowChange::Delete) {
        return Err(RequestError::invalid(
            "INSERT and UPDATE cannot be written at consistency ANY: writing some of a row's \
             columns needs one of its replicas; use ONE",
        ));
    }
    Ok(())
}

/// A write's coordinator answered what a write is not answered with.
fn unexpected(reply: &dyn std::fmt::Debug) -> RequestError {
    RequestError::invalid(format!("unexpected answer to a write: {reply:?}"))
}

/// A partition's changes as one request per row.
fn one_by_one(changes: PartitionChanges, consistency: ConsistencyLevel) -> Vec<ClientRequest> {
    let PartitionChanges {
        table,
        partition,
        rows,
        ..
    } = changes;
    (rows.into_iter())
        .map(|row| {
            let rows = vec![row];
            let one = PartitionChanges {
                table,
                partition: partition.clone(),
                rows,
                bytes: 0,
                index: HashMap::new(),
            };
            request(one, consistency)
        })
        .collect()
}

/// The request that writes a partition's changes: the single-row request
/// for one update or delete, else [`ClientRequest::WriteRows`].
fn request(changes: PartitionChanges, consistency: ConsistencyLevel) -> ClientRequest {
    let PartitionChanges {
        table,
        partition,
        mut rows,
        ..
    } = changes;
    let table = RowAddress::of_table(table, partition.clone(), ClusteringKey::empty()).table;
    if let [row] = rows.as_slice()
        && !matches!(row.change, RowChange::Replace(_))
        && !row.and_unread
    {
        let row = rows.pop().expect("one row");
        let address = RowAddress {
            table,
            partition,
            clustering: row.clustering,
        };
        return match row.change {
            RowChange::Update(columns) => ClientRequest::Update {
                row: address,
                columns,
                context: row.context,
                consistency,
                timestamp: row.timestamp,
            },
            _ => ClientRequest::Delete {
                row: address,
                context: row.context,
                consistency,
                sloppy: false,
            },
        };
    }
    ClientRequest::WriteRows {
        table,
        partition,
        rows,
        consistency,
    }
}

/// Adds a written row's context to `written`.
fn note_written(row: &RowRef, context: Context, written: &mut Vec<RowContext>) {
    written.retain(|c| c.row != *row);
    written.push(RowContext {
        row: row.clone(),
        context,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(change: RowChange) -> RowWrite {
        RowWrite {
            clustering: ClusteringKey::empty(),
            change,
            context: Context::empty(),
            timestamp: None,
            and_unread: false,
        }
    }

    fn row(columns: &[(&str, Value)]) -> Row {
        columns
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect()
    }

    /// Two changes of a row in one batch leave what running them in order
    /// would.
    #[test]
    fn changes_of_one_row_combine_in_statement_order() {
        let (a, b) = (Value::Int(1), Value::Int(2));
        let update = |columns| write(RowChange::Update(columns));
        let combined =
            |earlier: RowChange, later: RowWrite| combine(&write(earlier), later).unwrap().change;
        assert_eq!(
            combined(
                RowChange::Update(row(&[("x", a.clone())])),
                update(row(&[("y", b.clone())]))
            ),
            RowChange::Update(row(&[("x", a.clone()), ("y", b.clone())]))
        );
        assert_eq!(
            combined(
                RowChange::Delete,
                update(row(&[("y", b.clone()), ("z", Value::Null)]))
            ),
            RowChange::Replace(row(&[("y", b.clone())]))
        );
        assert_eq!(
            combined(RowChange::Delete, update(row(&[("z", Value::Null)]))),
            RowChange::Delete
        );
        assert_eq!(
            combined(
                RowChange::Replace(row(&[("x", a.clone()), ("y", a.clone())])),
                update(row(&[("x", Value::Null), ("y", b.clone())]))
            ),
            RowChange::Replace(row(&[("y", b.clone())]))
        );
        assert_eq!(
            combined(
                RowChange::Update(row(&[("x", a)])),
                write(RowChange::Delete)
            ),
            RowChange::Delete
        );
    }

    /// A timestamp given for one change of a row is not lent to another,
    /// and never to a delete.
    #[test]
    fn a_change_stamped_by_hand_combines_only_with_one_stamped_alike() {
        let stamped = |change, at| RowWrite {
            timestamp: at,
            ..write(change)
        };
        let update = || RowChange::Update(row(&[("x", Value::Int(1))]));
        let same = combine(&stamped(update(), Some(5)), stamped(update(), Some(5)));
        assert_eq!(same.unwrap().timestamp, Some(5));
        for (earlier, later) in [
            (stamped(update(), Some(5)), stamped(update(), None)),
            (stamped(update(), None), stamped(update(), Some(5))),
            (stamped(update(), Some(5)), stamped(RowChange::Delete, None)),
            (stamped(RowChange::Delete, None), stamped(update(), Some(5))),
        ] {
            let error = combine(&earlier, later).unwrap_err();
            assert!(error.to_string().contains("USING TIMESTAMP"), "{error}");
        }
    }

    /// A change with no context supersedes what the coordinator holds (a
    /// delete, what a read finds): combined with one made after a read,
    /// the change supersedes both.
    #[test]
    fn a_change_without_a_context_combined_with_one_keeps_both() {
        let with = |context: Context| RowWrite {
            context,
            ..write(RowChange::Delete)
        };
        let read = Context(vec![1, 2, 3]);
        for (a, b) in [
            (Context::empty(), read.clone()),
            (read.clone(), Context::empty()),
        ] {
            let combined = combine(&with(a), with(b)).unwrap();
            assert_eq!(combined.context, read);
            assert!(combined.and_unread);
        }
        let combined = combine(&with(read.clone()), with(read.clone())).unwrap();
        assert_eq!((combined.context, combined.and_unread), (read, false));
        let blind = combine(&with(Context::empty()), with(Context::empty())).unwrap();
        assert!(blind.context.is_empty() && !blind.and_unread);
    }
}
