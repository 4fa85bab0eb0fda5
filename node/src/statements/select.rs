//! `SELECT`: the partitions its `WHERE` names, each read a slice at a time
//! at the session's level, in clustering order or in reverse, with
//! `LIMIT`, `PER PARTITION LIMIT`, `COUNT(*)` and paging.
//!
//! A row with concurrent versions (siblings) comes back once per version,
//! each marked ([`SiblingMark`]: which version, of how many, and the dot
//! that wrote it; every row has its mark), so that nothing concurrent is
//! hidden; a
//! `lww` table shows only the latest written. Every row read comes with its
//! context ([`RowContext`]): a session that hands it back with its next
//! write of the row supersedes every version it was shown.
//!
//! A page holds at most the session's page size of rows (siblings of a row
//! count as one row and stay on one page); the paging state says where it
//! ended: the partition, the slice, the last clustering key and the rows
//! counted so far.

use ringdb_cql::ast::{Select, SelectorKind};
use ringdb_proto::{
    ClusteringKey, ColumnKind, ConflictMode, Context, CqlType, Order, PagingState, Query,
    QueryResult, RequestError, RowContext, RowRef, Rows, SiblingMark, SliceRead, TableDefinition,
    Value,
};
use ringdb_ring::Token;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Statements;
use super::restrict::{Selection, Slice, selection};
use super::terms::{Bindings, invalid_at};
use crate::causality::CausalContext;
use crate::storage::{RowKey, RowVersion, StoredRow};

/// Rows in a page when the session asks for none (or more).
const MAX_PAGE: u32 = 5_000;
/// The bytes of values past which a page ends (it holds a row at least),
/// so that it fits in a message.
const MAX_PAGE_BYTES: usize = 8 << 20;
/// The most rows asked of a replica at once.
const MAX_SLICE_READ: u32 = 1_000;

/// What one output column is.
enum Output {
    Column(usize),
    Token,
    WriteTime(usize),
}

/// Where a page ended.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Cursor {
    /// The statement it belongs to (a hash of its text).
    statement: u64,
    partition: usize,
    slice: usize,
    /// The last clustering key returned in that slice.
    #[serde(with = "serde_bytes")]
    after: Option<Vec<u8>>,
    /// Rows returned so far, and so far in this partition.
    returned: u64,
    in_partition: u64,
}

/// A page being filled.
struct Page {
    rows: Rows,
    /// CQL rows in it (siblings of a row count once).
    count: u64,
    /// The bytes of its values, about.
    bytes: usize,
}

impl Page {
    /// Whether it holds as many rows, or bytes, as a page may.
    fn full(&self, size: u64) -> bool {
        self.count >= size || (self.count > 0 && self.bytes >= MAX_PAGE_BYTES)
    }
}

impl Statements {
    pub(super) async fn select(
        &self,
        select: &Select,
        query: &Query,
        deadline: Instant,
    ) -> Result<QueryResult, RequestError> {
        let table = self.table(&select.table, query.keyspace.as_deref()).await?;
        if select.distinct {
            return Err(invalid_at(
                select.table.position,
                "ringdb does not support SELECT DISTINCT",
            ));
        }
        let bindings = Bindings {
            values: &query.values,
            now_micros: self.replica.now_micros(),
        };
        let Outputs {
            columns,
            outputs,
            count,
        } = outputs(&table, select)?;
        let where_ = selection(&table, &select.selection, &bindings, select.table.position)?;
        let reverse = reversed(&table, select)?;
        let slices = where_.slices(&table, reverse)?;
        let per_partition = limit_of(&bindings, select.per_partition_limit.as_ref())?;
        let limit = limit_of(&bindings, select.limit.as_ref())?;
        let statement = statement_hash(query);
        let mut cursor = match &query.paging_state {
            Some(state) => decode_cursor(state, statement, &where_, slices.len())?,
            None => Cursor {
                statement,
                ..Cursor::default()
            },
        };
        let page_size = if count {
            u64::MAX
        } else {
            u64::from(query.page_size.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE))
        };
        let mut page = Page {
            rows: Rows {
                columns,
                ..Rows::default()
            },
            count: 0,
            bytes: 0,
        };
        let scan = Scan {
            table: &table,
            outputs: &outputs,
            where_: &where_,
            slices: &slices,
            reverse,
            limit,
            per_partition,
            page_size,
            count,
        };
        let done = self
            .scan(&scan, &mut cursor, &mut page, query, deadline)
            .await?;
        if count {
            page.rows.rows = vec![vec![Value::BigInt(page.count as i64)]];
            page.rows.siblings.clear();
            page.rows.contexts.clear();
        } else if !done {
            let bytes = rmp_serde::to_vec(&cursor).expect("a cursor encodes");
            page.rows.paging_state = Some(PagingState(bytes));
        }
        Ok(QueryResult::Rows(page.rows))
    }

    /// Reads from `cursor` on until the page is full or the selection is
    /// done; returns whether it is done.
    async fn scan(
        &self,
        scan: &Scan<'_>,
        cursor: &mut Cursor,
        page: &mut Page,
        query: &Query,
        deadline: Instant,
    ) -> Result<bool, RequestError> {
        while cursor.partition < scan.where_.partitions.len() {
            while cursor.slice < scan.slices.len() {
                if cursor.returned >= scan.limit {
                    return Ok(true);
                }
                if page.full(scan.page_size) {
                    return Ok(false);
                }
                if cursor.in_partition >= scan.per_partition {
                    break;
                }
                let finished = self.read_page(scan, cursor, page, query, deadline).await?;
                if finished {
                    cursor.slice += 1;
                    cursor.after = None;
                }
            }
            cursor.partition += 1;
            cursor.slice = 0;
            cursor.after = None;
            cursor.in_partition = 0;
        }
        Ok(true)
    }

    /// Reads one page of the current slice into `page`; returns whether the
    /// slice is finished.
    async fn read_page(
        &self,
        scan: &Scan<'_>,
        cursor: &mut Cursor,
        page: &mut Page,
        query: &Query,
        deadline: Instant,
    ) -> Result<bool, RequestError> {
        let partition = scan.where_.partitions[cursor.partition].clone();
        let slice = &scan.slices[cursor.slice];
        let wanted = (scan.limit - cursor.returned)
            .min(scan.per_partition - cursor.in_partition)
            .min(scan.page_size.saturating_sub(page.count));
        let (start, end) = resume(slice, cursor.after.as_deref(), scan.reverse);
        let read = SliceRead {
            table: scan.table.id,
            partition: partition.clone(),
            start,
            end,
            reverse: scan.reverse,
            limit: wanted.clamp(1, u64::from(MAX_SLICE_READ)) as u32,
        };
        let coordinator = self.coordinator.clone();
        let read_page = coordinator
            .read_slice(read, query.consistency, deadline)
            .await?;
        let mut emitted = 0;
        for (clustering, stored) in &read_page.rows {
            if emitted >= wanted || page.full(scan.page_size) {
                return Ok(false);
            }
            cursor.after = Some(clustering.as_bytes().to_vec());
            let versions = live_versions(scan.table, stored);
            if versions.is_empty() {
                // A row the SELECT names that is deleted: its context, so
                // that a write after it supersedes the delete it saw (and
                // not what the coordinator holds, which may be a sibling
                // the session never saw).
                if !scan.count && scan.where_.names_rows(scan.table) {
                    let key = RowKey::new(scan.table.id, partition.clone(), clustering.clone());
                    page.rows.contexts.push(RowContext {
                        row: RowRef(key.encode()),
                        context: Context(CausalContext::encode(&stored.context())),
                    });
                }
                continue;
            }
            emitted += 1;
            cursor.returned += 1;
            cursor.in_partition += 1;
            page.count += 1;
            if !scan.count {
                let key = RowKey::new(scan.table.id, partition.clone(), clustering.clone());
                emit(scan, page, &key, stored, &versions)?;
            }
        }
        match read_page.resume {
            Some(resume) => {
                cursor.after = Some(resume.as_bytes().to_vec());
                Ok(false)
            }
            None => Ok(true),
        }
    }
}

/// What a scan reads and how.
struct Scan<'a> {
    table: &'a TableDefinition,
    outputs: &'a [Output],
    where_: &'a Selection,
    slices: &'a [Slice],
    reverse: bool,
    limit: u64,
    per_partition: u64,
    page_size: u64,
    count: bool,
}

/// The part of `slice` after `after` (before it, in reverse).
fn resume(slice: &Slice, after: Option<&[u8]>, reverse: bool) -> (Vec<u8>, Option<Vec<u8>>) {
    match (after, reverse) {
        (None, _) => (slice.start.clone(), slice.end.clone()),
        // The first key after `after` is `after` followed by 0x00.
        (Some(after), false) => ([after, &[0]].concat(), slice.end.clone()),
        (Some(after), true) => (slice.start.clone(), Some(after.to_vec())),
    }
}

/// The versions of a row a reader is shown: its live siblings (oldest
/// first), or for a `lww` table the latest written of its versions, if
/// that is not a tombstone.
fn live_versions<'a>(
    table: &TableDefinition,
    stored: &'a StoredRow,
) -> Vec<(String, &'a RowVersion)> {
    let mut versions: Vec<(String, &RowVersion)> = stored
        .siblings()
        .map(|(dot, version)| {
            let writer = format!("{}@{:x}:{}", dot.actor.node, dot.actor.epoch, dot.counter);
            (writer, version)
        })
        .collect();
    // Oldest first; of two written at once a tombstone last (it wins a tie
    // in a lww table, as it does when written: `Storage::write_stamped`).
    let order = |(writer, version): &(String, &RowVersion)| {
        (
            version.timestamp_micros,
            version.row.is_none(),
            writer.clone(),
        )
    };
    versions.sort_by_key(order);
    if table.conflict == ConflictMode::Lww {
        versions = versions.pop().into_iter().collect();
    }
    versions.retain(|(_, version)| version.row.is_some());
    versions
}

/// Adds a row's versions to the page, and its context.
fn emit(
    scan: &Scan<'_>,
    page: &mut Page,
    key: &RowKey,
    stored: &StoredRow,
    versions: &[(String, &RowVersion)],
) -> Result<(), RequestError> {
    let table = scan.table;
    let types: Vec<CqlType> = table.partition_key().map(|c| c.ty).collect();
    let corrupt = |e: ringdb_proto::KeyError| RequestError::invalid(format!("stored key: {e}"));
    let mut keys = key.partition.decode(&types).map_err(corrupt)?;
    let clustering: Vec<(CqlType, Order)> = table
        .clustering()
        .map(|c| match c.kind {
            ColumnKind::Clustering(order) => (c.ty, order),
            _ => (c.ty, Order::Asc),
        })
        .collect();
    keys.extend(key.clustering.decode(&clustering).map_err(corrupt)?);
    let count = versions.len() as u32;
    for (index, (writer, version)) in versions.iter().enumerate() {
        let columns = version.row.as_ref().expect("live");
        let value_of = |index: usize| -> Value {
            let column = &table.columns[index];
            match keys.get(index) {
                Some(value) if column.kind != ColumnKind::Regular => value.clone(),
                _ => columns.get(&column.name).cloned().unwrap_or(Value::Null),
            }
        };
        let row = scan
            .outputs
            .iter()
            .map(|output| match output {
                Output::Column(index) => value_of(*index),
                Output::Token => Value::BigInt(Token::of(key.partition.as_bytes()).0),
                Output::WriteTime(index) => match value_of(*index) {
                    Value::Null => Value::Null,
                    _ => Value::BigInt(version.timestamp_micros),
                },
            })
            .collect();
        page.bytes += rmp_serde::to_vec(&row).map_or(0, |bytes| bytes.len());
        page.rows.rows.push(row);
        page.rows.siblings.push(Some(SiblingMark {
            index: index as u32 + 1,
            count,
            writer: writer.clone(),
        }));
    }
    page.rows.contexts.push(RowContext {
        row: RowRef(key.encode()),
        context: Context(CausalContext::encode(&stored.context())),
    });
    Ok(())
}

/// What a `SELECT` returns.
struct Outputs {
    /// The result's columns.
    columns: Vec<(String, CqlType)>,
    /// What each is.
    outputs: Vec<Output>,
    /// A `COUNT(*)`.
    count: bool,
}

/// What `select` returns.
fn outputs(table: &TableDefinition, select: &Select) -> Result<Outputs, RequestError> {
    if select.selectors.is_empty() {
        return Ok(Outputs {
            columns: table
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.ty))
                .collect(),
            outputs: (0..table.columns.len()).map(Output::Column).collect(),
            count: false,
        });
    }
    let counts = select
        .selectors
        .iter()
        .filter(|s| s.kind == SelectorKind::Count)
        .count();
    if counts > 0 {
        if select.selectors.len() > 1 {
            let at = select.selectors[0].position;
            return Err(invalid_at(at, "COUNT(*) is selected alone"));
        }
        let name = select.selectors[0].alias.clone().unwrap_or("count".into());
        return Ok(Outputs {
            columns: vec![(name, CqlType::BigInt)],
            outputs: Vec::new(),
            count: true,
        });
    }
    let index = |name: &str, at| {
        table
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| invalid_at(at, format!("undefined column {name}")))
    };
    let mut columns = Vec::new();
    let mut outputs = Vec::new();
    for selector in &select.selectors {
        let at = selector.position;
        let (name, ty, output) = match &selector.kind {
            SelectorKind::Column(name) => {
                let i = index(name, at)?;
                (name.clone(), table.columns[i].ty, Output::Column(i))
            }
            SelectorKind::Token(names) => {
                let key: Vec<&str> = table.partition_key().map(|c| c.name.as_str()).collect();
                if *names != key {
                    return Err(invalid_at(
                        at,
                        format!("token() takes the partition key: token({})", key.join(", ")),
                    ));
                }
                let name = format!("system.token({})", key.join(", "));
                (name, CqlType::BigInt, Output::Token)
            }
            SelectorKind::WriteTime(name) => {
                let i = index(name, at)?;
                if table.columns[i].kind != ColumnKind::Regular {
                    return Err(invalid_at(
                        at,
                        format!("{name} is a key column: it has no write time"),
                    ));
                }
                (
                    format!("writetime({name})"),
                    CqlType::BigInt,
                    Output::WriteTime(i),
                )
            }
            SelectorKind::Count => unreachable!("counted above"),
        };
        columns.push((selector.alias.clone().unwrap_or(name), ty));
        outputs.push(output);
    }
    Ok(Outputs {
        columns,
        outputs,
        count: false,
    })
}

/// Whether `ORDER BY` reverses the table's clustering order.
fn reversed(table: &TableDefinition, select: &Select) -> Result<bool, RequestError> {
    let clustering: Vec<_> = table.clustering().collect();
    let mut reverse = None;
    for (i, (name, order)) in select.order_by.iter().enumerate() {
        let at = select.table.position;
        let Some(column) = clustering.get(i).filter(|c| c.name == *name) else {
            return Err(invalid_at(
                at,
                format!("ORDER BY takes the clustering columns in order; {name} is not next"),
            ));
        };
        let declared = match column.kind {
            ColumnKind::Clustering(order) => order,
            _ => Order::Asc,
        };
        let this = *order != declared;
        if reverse.is_some_and(|r| r != this) {
            return Err(invalid_at(
                at,
                "ORDER BY must keep or reverse the clustering order of every column alike",
            ));
        }
        reverse = Some(this);
    }
    Ok(reverse.unwrap_or(false))
}

/// A `LIMIT` (or none: no limit).
fn limit_of(
    bindings: &Bindings<'_>,
    term: Option<&ringdb_cql::ast::Term>,
) -> Result<u64, RequestError> {
    let Some(term) = term else {
        return Ok(u64::MAX);
    };
    match bindings.value(term, CqlType::Int, "LIMIT")? {
        Value::Int(n) if n > 0 => Ok(n as u64),
        _ => Err(invalid_at(
            term.position,
            "LIMIT must be a positive integer",
        )),
    }
}

/// What a paging state is checked to belong to: the statement's text and
/// bound values.
fn statement_hash(query: &Query) -> u64 {
    let mut hasher = blake3::Hasher::new();
    // A prepared statement's pages may go by id alone or with its text.
    match &query.prepared {
        Some(id) => hasher.update(b"prepared\0").update(&id.0),
        None => hasher.update(query.cql.trim().as_bytes()),
    };
    hasher.update(&rmp_serde::to_vec(&query.values).unwrap_or_default());
    u64::from_be_bytes(
        hasher.finalize().as_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    )
}

/// A paging state, checked to belong to this statement.
fn decode_cursor(
    state: &PagingState,
    statement: u64,
    selection: &Selection,
    slices: usize,
) -> Result<Cursor, RequestError> {
    let foreign = || RequestError::invalid("the paging state is not one of this statement's");
    let cursor: Cursor = rmp_serde::from_slice(&state.0).map_err(|_| foreign())?;
    let in_bounds = cursor.partition <= selection.partitions.len() && cursor.slice <= slices;
    if cursor.statement != statement || !in_bounds {
        return Err(foreign());
    }
    if let Some(after) = &cursor.after {
        ClusteringKey::new(after.clone()).map_err(|_| foreign())?;
    }
    Ok(cursor)
}
