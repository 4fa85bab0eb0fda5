//! `INSERT`, `UPDATE`, `DELETE` and `BATCH`.
//!
//! An `INSERT` or `UPDATE` writes the columns it names over the row's
//! other columns ([`ringdb_proto::ClientRequest::Update`]): a column it does not name
//! keeps its value, a `null` removes one. What the write supersedes is what
//! the session last read of the row ([`Query::contexts`]) or, without
//! that, what the coordinator holds. `DELETE` of rows is a tombstone for
//! each; `DELETE` of columns writes them `null`; a `DELETE` of a clustering
//! range or of a whole partition reads the rows in it at the statement's
//! level and deletes each with the context its read returned (so a row
//! written concurrently elsewhere, which that read did not see, survives:
//! there are no range tombstones yet).
//!
//! `USING TIMESTAMP` stamps an `INSERT` or `UPDATE` of a last-write-wins
//! table by hand (see `Storage::write_stamped`: a write older than the
//! version it supersedes changes nothing); a `DELETE` is always stamped by
//! its coordinator (a batch refuses to combine it with a change of the row
//! stamped by hand), and a table of siblings takes no timestamps at all.
//!
//! A statement is planned first, row by row, into [`Changes`] (reading the
//! rows of a range it deletes), then applied a partition at a time: each
//! partition's rows in one request that its replicas apply atomically (see
//! `apply.rs`). A `BATCH` plans all its statements, then applies them
//! together, at the batch's level: atomic per partition, not across
//! partitions.

use ringdb_cql::ast::{Batch, Delete, Insert, Statement, TableName, Update, Using};
use ringdb_proto::{
    ClusteringKey, ColumnKind, ConflictMode, ConsistencyLevel, Context, CqlType, PartitionKey,
    Query, QueryResult, RequestError, Row, RowChange, RowRef, RowWrite, SliceRead, TableDefinition,
    Value,
};
use tokio::time::Instant;

use super::Statements;
use super::apply::Changes;
use super::restrict::selection;
use super::terms::{Bindings, invalid_at};
use crate::causality::CausalContext;
use crate::storage::RowKey;

/// The most rows a range or partition `DELETE` deletes, alone (in a batch,
/// the batch's limit of rows per partition holds).
const MAX_RANGE_DELETE: usize = 10_000;
/// A range `DELETE` alone is applied a page of its read at a time, or
/// sooner once its rows take this many bytes.
const FLUSH_BYTES: usize = 1 << 20;

impl Statements {
    /// Runs `INSERT`, `UPDATE`, `DELETE` or `BATCH`.
    pub(super) async fn write(
        &self,
        statement: &Statement,
        query: &Query,
        deadline: Instant,
    ) -> Result<QueryResult, RequestError> {
        let mut changes = Changes::default();
        self.plan(statement, query, deadline, &mut changes).await?;
        (self.apply(&mut changes, query.consistency, deadline)).await?;
        Ok(QueryResult::Written {
            contexts: changes.applied,
        })
    }

    /// Adds the rows a write changes to `changes`.
    async fn plan(
        &self,
        statement: &Statement,
        query: &Query,
        deadline: Instant,
        changes: &mut Changes,
    ) -> Result<(), RequestError> {
        match statement {
            Statement::Insert(insert) => self.insert(insert, query, changes).await,
            Statement::Update(update) => self.update(update, query, changes).await,
            Statement::Delete(delete) => self.delete(delete, query, deadline, changes).await,
            Statement::Batch(batch) => self.batch(batch, query, deadline, changes).await,
            _ => Err(RequestError::invalid("not a write")),
        }
    }

    async fn insert(
        &self,
        insert: &Insert,
        query: &Query,
        changes: &mut Changes,
    ) -> Result<(), RequestError> {
        let table = self.table(&insert.table, query.keyspace.as_deref()).await?;
        let bindings = self.bindings(query);
        let timestamp = using_timestamp(&insert.using, &table, &bindings)?;
        let mut values: Vec<Option<Value>> = vec![None; table.columns.len()];
        for (name, term) in insert.columns.iter().zip(&insert.values) {
            let index = column_index(&table, name, term.position)?;
            if values[index].is_some() {
                return Err(invalid_at(
                    term.position,
                    format!("column {name} is given twice"),
                ));
            }
            values[index] = Some(bindings.value(term, table.columns[index].ty, name)?);
        }
        let missing = table
            .columns
            .iter()
            .zip(&values)
            .find(|(c, v)| c.kind != ColumnKind::Regular && v.is_none());
        if let Some((column, _)) = missing {
            return Err(invalid_at(
                insert.table.position,
                format!("the primary key column {} is not given", column.name),
            ));
        }
        let key: Vec<Value> = table
            .columns
            .iter()
            .zip(&values)
            .filter(|(c, _)| c.kind != ColumnKind::Regular)
            .map(|(_, v)| v.clone().expect("checked"))
            .collect();
        let (partition, clustering) = row_key(&table, &key, insert.table.position)?;
        let columns: Row = table
            .columns
            .iter()
            .zip(values)
            .filter(|(c, _)| c.kind == ColumnKind::Regular)
            .filter_map(|(c, v)| Some((c.name.clone(), v?)))
            .collect();
        let context = session_context(&table, &partition, &clustering, query);
        let row = RowWrite {
            clustering,
            change: RowChange::Update(columns),
            context,
            timestamp,
            and_unread: false,
        };
        changes.add(&table, partition, row)
    }

    async fn update(
        &self,
        update: &Update,
        query: &Query,
        changes: &mut Changes,
    ) -> Result<(), RequestError> {
        let table = self.table(&update.table, query.keyspace.as_deref()).await?;
        let bindings = self.bindings(query);
        let timestamp = using_timestamp(&update.using, &table, &bindings)?;
        let mut columns = Row::new();
        for (name, term) in &update.assignments {
            let index = column_index(&table, name, term.position)?;
            let column = &table.columns[index];
            if column.kind != ColumnKind::Regular {
                return Err(invalid_at(
                    term.position,
                    format!("{name} is part of the primary key: it cannot be SET"),
                ));
            }
            columns.insert(name.clone(), bindings.value(term, column.ty, name)?);
        }
        let rows = self.rows_named(&table, &update.selection, &bindings, &update.table)?;
        update_rows(&table, rows, (&columns, timestamp), query, changes)
    }

    async fn delete(
        &self,
        delete: &Delete,
        query: &Query,
        deadline: Instant,
        changes: &mut Changes,
    ) -> Result<(), RequestError> {
        let table = self.table(&delete.table, query.keyspace.as_deref()).await?;
        check_delete_using(&delete.using)?;
        let bindings = self.bindings(query);
        let at = delete.table.position;
        if !delete.columns.is_empty() {
            let mut columns = Row::new();
            for name in &delete.columns {
                let index = column_index(&table, name, at)?;
                if table.columns[index].kind != ColumnKind::Regular {
                    return Err(invalid_at(
                        at,
                        format!("{name} is part of the primary key: delete the row instead"),
                    ));
                }
                columns.insert(name.clone(), Value::Null);
            }
            let rows = self.rows_named(&table, &delete.selection, &bindings, &delete.table)?;
            return update_rows(&table, rows, (&columns, None), query, changes);
        }
        let where_ = selection(&table, &delete.selection, &bindings, at)?;
        if where_.names_rows(&table) {
            for partition in &where_.partitions {
                for clustering in where_.clustering_keys(&table)? {
                    let context = session_context(&table, partition, &clustering, query);
                    let row = RowWrite {
                        clustering,
                        change: RowChange::Delete,
                        context,
                        timestamp: None,
                        and_unread: false,
                    };
                    changes.add(&table, partition.clone(), row)?;
                }
            }
            return Ok(());
        }
        let slices = where_.slices(&table, false)?;
        for partition in &where_.partitions {
            for slice in &slices {
                self.delete_slice(
                    &table,
                    partition,
                    slice,
                    query.consistency,
                    deadline,
                    changes,
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn batch(
        &self,
        batch: &Batch,
        query: &Query,
        deadline: Instant,
        changes: &mut Changes,
    ) -> Result<(), RequestError> {
        if batch.using.timestamp.is_some() || batch.using.ttl.is_some() {
            return Err(RequestError::invalid(
                "ringdb does not support USING TIMESTAMP or TTL on a BATCH",
            ));
        }
        changes.in_batch = true;
        for statement in &batch.statements {
            Box::pin(self.plan(statement, query, deadline, changes)).await?;
        }
        Ok(())
    }

    /// The rows a `WHERE` clause of an `UPDATE` or column `DELETE` names:
    /// the full primary key, by `=` or `IN`.
    fn rows_named(
        &self,
        table: &TableDefinition,
        relations: &[ringdb_cql::ast::Relation],
        bindings: &Bindings<'_>,
        name: &TableName,
    ) -> Result<Vec<(PartitionKey, ClusteringKey)>, RequestError> {
        let where_ = selection(table, relations, bindings, name.position)?;
        if !where_.names_rows(table) {
            return Err(invalid_at(
                name.position,
                "every primary key column must be restricted by = or IN",
            ));
        }
        let clustering = where_.clustering_keys(table)?;
        let mut rows = Vec::new();
        for partition in &where_.partitions {
            for key in &clustering {
                rows.push((partition.clone(), key.clone()));
            }
        }
        Ok(rows)
    }

    /// Deletes the rows of a slice that a read at `consistency` finds,
    /// each with the context its read returned, and in a batch the rows of
    /// the slice that earlier statements write. Alone, the statement is
    /// applied a page at a time and stops after [`MAX_RANGE_DELETE`] rows.
    async fn delete_slice(
        &self,
        table: &TableDefinition,
        partition: &PartitionKey,
        slice: &super::restrict::Slice,
        consistency: ConsistencyLevel,
        deadline: Instant,
        changes: &mut Changes,
    ) -> Result<(), RequestError> {
        let range = (slice.start.as_slice(), slice.end.as_deref());
        for clustering in changes.planned_in(table.id, partition, range) {
            let row = RowWrite {
                clustering,
                change: RowChange::Delete,
                context: Context::empty(),
                timestamp: None,
                and_unread: false,
            };
            changes.add(table, partition.clone(), row)?;
        }
        let (mut start, mut deleted) = (slice.start.clone(), 0);
        loop {
            let read = SliceRead {
                table: table.id,
                partition: partition.clone(),
                start: start.clone(),
                end: slice.end.clone(),
                reverse: false,
                limit: 1_000,
            };
            let coordinator = self.coordinator.clone();
            let page = coordinator.read_slice(read, consistency, deadline).await?;
            for (clustering, stored) in &page.rows {
                if stored.values().all(|v| v.row.is_none()) {
                    continue;
                }
                if deleted == MAX_RANGE_DELETE && !changes.in_batch {
                    self.apply(changes, consistency, deadline).await?;
                    return Err(RequestError::invalid(format!(
                        "the DELETE stopped after {MAX_RANGE_DELETE} rows; run it again for the rest"
                    )));
                }
                let row = RowWrite {
                    clustering: clustering.clone(),
                    change: RowChange::Delete,
                    context: Context(CausalContext::encode(&stored.context())),
                    timestamp: None,
                    and_unread: false,
                };
                changes.add(table, partition.clone(), row)?;
                deleted += 1;
                if !changes.in_batch && changes.bytes() >= FLUSH_BYTES {
                    self.apply(changes, consistency, deadline).await?;
                }
            }
            if !changes.in_batch {
                self.apply(changes, consistency, deadline).await?;
            }
            match page.resume {
                Some(resume) => start = [resume.as_bytes(), &[0]].concat(),
                None => return Ok(()),
            }
        }
    }

    fn bindings<'a>(&self, query: &'a Query) -> Bindings<'a> {
        Bindings {
            values: &query.values,
            now_micros: self.replica.now_micros(),
        }
    }
}

/// Writes `columns` over each of `rows` (stamped `timestamp`, if given).
fn update_rows(
    table: &TableDefinition,
    rows: Vec<(PartitionKey, ClusteringKey)>,
    (columns, timestamp): (&Row, Option<i64>),
    query: &Query,
    changes: &mut Changes,
) -> Result<(), RequestError> {
    for (partition, clustering) in rows {
        let row = RowWrite {
            context: session_context(table, &partition, &clustering, query),
            clustering,
            change: RowChange::Update(columns.clone()),
            timestamp,
            and_unread: false,
        };
        changes.add(table, partition, row)?;
    }
    Ok(())
}

/// The `USING TIMESTAMP` of an `INSERT` or `UPDATE`: only for a
/// last-write-wins table (a table of siblings orders versions by their
/// causal contexts, not by time). `TTL` is refused.
fn using_timestamp(
    using: &Using,
    table: &TableDefinition,
    bindings: &Bindings<'_>,
) -> Result<Option<i64>, RequestError> {
    if let Some(term) = &using.ttl {
        return Err(invalid_at(term.position, "ringdb does not support TTL"));
    }
    let Some(term) = &using.timestamp else {
        return Ok(None);
    };
    if table.conflict != ConflictMode::Lww {
        let table = table.name.clone();
        return Err(invalid_at(
            term.position,
            TimestampRefused::NotLww { table }.to_string(),
        ));
    }
    match bindings.value(term, CqlType::BigInt, "USING TIMESTAMP")? {
        Value::BigInt(micros) => {
            check_timestamp(Some(table), micros, bindings.now_micros)
                .map_err(|why| invalid_at(term.position, why.to_string()))?;
            Ok(Some(micros))
        }
        _ => Err(invalid_at(term.position, "USING TIMESTAMP cannot be null")),
    }
}

/// How far past the coordinator's clock a `USING TIMESTAMP` may be: a
/// version stamped far ahead wins every race until then (a timestamp in
/// nanoseconds, by mistake, for ever).
const MAX_AHEAD_MICROS: i64 = 24 * 3600 * 1_000_000;

/// Why a write may not be stamped by its client.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimestampRefused {
    #[error("a timestamp is given for a table this node does not know")]
    UnknownTable,
    #[error(
        "USING TIMESTAMP is for last-write-wins tables (WITH conflict_mode = 'lww'): {table} \
         keeps concurrent writes as siblings, ordered by what each write saw, not by timestamps"
    )]
    NotLww { table: String },
    #[error(
        "USING TIMESTAMP {at} is more than a day ahead of this node's clock ({now}); \
         timestamps are microseconds since the Unix epoch"
    )]
    TooFarAhead { at: i64, now: i64 },
}

/// Whether a write of `table` (`None`: unknown) may be stamped `at` by its
/// client, when the coordinator's clock says `now`.
pub(crate) fn check_timestamp(
    table: Option<&TableDefinition>,
    at: i64,
    now: i64,
) -> Result<(), TimestampRefused> {
    let Some(table) = table else {
        return Err(TimestampRefused::UnknownTable);
    };
    if table.conflict != ConflictMode::Lww {
        return Err(TimestampRefused::NotLww {
            table: table.name.clone(),
        });
    }
    if at > now.saturating_add(MAX_AHEAD_MICROS) {
        return Err(TimestampRefused::TooFarAhead { at, now });
    }
    Ok(())
}

/// A `DELETE` takes neither `USING TIMESTAMP` nor `TTL`.
pub(super) fn check_delete_using(using: &Using) -> Result<(), RequestError> {
    if let Some(term) = &using.timestamp {
        return Err(invalid_at(
            term.position,
            "a DELETE is stamped by its coordinator: ringdb takes USING TIMESTAMP on INSERT and \
             UPDATE only (a tombstone stamped in the past could be purged before it reached \
             every replica)",
        ));
    }
    if let Some(term) = &using.ttl {
        return Err(invalid_at(term.position, "ringdb does not support TTL"));
    }
    Ok(())
}

fn column_index(
    table: &TableDefinition,
    name: &str,
    at: ringdb_cql::Position,
) -> Result<usize, RequestError> {
    table
        .columns
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| {
            invalid_at(
                at,
                format!("undefined column {name} in table {}", table.name),
            )
        })
}

/// The partition and clustering keys of a row's key column values (in the
/// table's key order).
fn row_key(
    table: &TableDefinition,
    key: &[Value],
    at: ringdb_cql::Position,
) -> Result<(PartitionKey, ClusteringKey), RequestError> {
    let error = |e: ringdb_proto::KeyError| invalid_at(at, e.to_string());
    let partition_columns = table.partition_key().count();
    let parts: Vec<(&Value, ringdb_proto::CqlType)> = table
        .partition_key()
        .zip(key)
        .map(|(column, value)| (value, column.ty))
        .collect();
    let partition = PartitionKey::from_values(&parts).map_err(error)?;
    let clustering: Vec<(&Value, ringdb_proto::CqlType, ringdb_proto::Order)> = table
        .clustering()
        .zip(&key[partition_columns..])
        .map(|(column, value)| {
            let order = match column.kind {
                ColumnKind::Clustering(order) => order,
                _ => ringdb_proto::Order::Asc,
            };
            (value, column.ty, order)
        })
        .collect();
    if clustering
        .iter()
        .any(|(value, _, _)| **value == Value::Null)
    {
        return Err(invalid_at(at, "a clustering column cannot be null"));
    }
    let clustering = ClusteringKey::encode(&clustering).map_err(error)?;
    Ok((partition, clustering))
}

/// The context the session handed back for this row, if it did.
fn session_context(
    table: &TableDefinition,
    partition: &PartitionKey,
    clustering: &ClusteringKey,
    query: &Query,
) -> Context {
    let row = RowRef(RowKey::new(table.id, partition.clone(), clustering.clone()).encode());
    query
        .contexts
        .iter()
        .find(|c| c.row == row)
        .map(|c| c.context.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use ringdb_proto::{ColumnDefinition, TableId};

    use super::*;

    fn table(conflict: ConflictMode) -> TableDefinition {
        let column = |name: &str, kind| ColumnDefinition {
            name: name.into(),
            ty: CqlType::Int,
            kind,
        };
        TableDefinition {
            keyspace: "shop".into(),
            name: "prices".into(),
            id: TableId(7),
            columns: vec![
                column("item", ColumnKind::PartitionKey),
                column("cents", ColumnKind::Regular),
            ],
            conflict,
            comment: String::new(),
        }
    }

    /// Checked for statements and for raw requests alike: a timestamp on a
    /// table of siblings would make a write lose to what it supersedes.
    #[test]
    fn a_client_timestamp_is_taken_for_lww_tables_and_not_far_ahead() {
        let now = 1_700_000_000_000_000;
        let lww = table(ConflictMode::Lww);
        assert_eq!(check_timestamp(Some(&lww), now - 5, now), Ok(()));
        assert_eq!(check_timestamp(Some(&lww), 1, now), Ok(()));
        let nanos = check_timestamp(Some(&lww), now * 1000, now).unwrap_err();
        assert!(
            nanos.to_string().contains("more than a day ahead"),
            "{nanos}"
        );
        let siblings = check_timestamp(Some(&table(ConflictMode::Siblings)), 1, now).unwrap_err();
        assert!(
            siblings.to_string().contains("for last-write-wins tables"),
            "{siblings}"
        );
        let unknown = check_timestamp(None, 1, now);
        assert_eq!(unknown, Err(TimestampRefused::UnknownTable));
    }
}
