//! Prepared statements: a statement parsed and checked once, kept by its
//! id, and run many times with different values.
//!
//! The id is a hash of the keyspace and the text, so every node gives the
//! same statement the same id: a query prepared through one node runs
//! through any other that prepared it too. A node keeps a bounded number
//! of them, in memory only; a query naming one it does not hold (after a
//! restart, or an eviction) is answered [`RequestError::Unprepared`], and
//! the client sends it again with its text (Cassandra's drivers do the
//! same on its `UNPREPARED` error).
//!
//! What is kept is the parsed statement, not a plan: it is checked against
//! the schema each time it runs, so a column dropped since is refused
//! then, and `SELECT *` returns the columns the table has now.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use ringdb_cql::ast::{
    BindMarker, Operator, Relation, RelationValue, Statement, Subject, TableName, Term, TermKind,
    Using,
};
use ringdb_cql::{TokenKind, parse_statement, tokenize};
use ringdb_proto::{CqlType, Marker, Prepared, PreparedId, RequestError, TableDefinition};

use super::terms::invalid_at;
use super::{Statements, syntax_error};

/// The most prepared statements a node keeps, and the most bytes of text
/// they add up to; past either, the oldest are forgotten (their next use
/// prepares them again, transparently).
const MAX_PREPARED: usize = 10_000;
const MAX_PREPARED_BYTES: usize = 32 << 20;

/// A statement as prepared: parsed, in its keyspace.
pub(super) struct Kept {
    pub(super) keyspace: Option<String>,
    pub(super) statement: Statement,
    /// The length of its text.
    bytes: usize,
}

/// The prepared statements a node holds.
#[derive(Default)]
pub(crate) struct PreparedCache {
    kept: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    statements: HashMap<PreparedId, Arc<Kept>>,
    /// Oldest first.
    order: VecDeque<PreparedId>,
    bytes: usize,
}

impl PreparedCache {
    fn get(&self, id: &PreparedId) -> Option<Arc<Kept>> {
        self.kept.lock().unwrap().statements.get(id).cloned()
    }

    fn insert(&self, id: PreparedId, kept: Arc<Kept>) {
        let mut cache = self.kept.lock().unwrap();
        if cache.statements.contains_key(&id) {
            return;
        }
        cache.bytes += kept.bytes;
        cache.statements.insert(id, kept);
        cache.order.push_back(id);
        while cache.statements.len() > MAX_PREPARED || cache.bytes > MAX_PREPARED_BYTES {
            let Some(oldest) = cache.order.pop_front() else {
                break;
            };
            if let Some(gone) = cache.statements.remove(&oldest) {
                cache.bytes -= gone.bytes;
            }
        }
    }
}

/// The id of `cql` prepared in `keyspace`.
pub(crate) fn prepared_id(keyspace: Option<&str>, cql: &str) -> PreparedId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(keyspace.unwrap_or("").as_bytes());
    hasher.update(&[0]);
    hasher.update(cql.as_bytes());
    let mut id = [0; 16];
    id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    PreparedId(id)
}

impl Statements {
    /// Parses `cql`, works out what each of its bind markers takes, and
    /// keeps it to run by id.
    pub(crate) async fn prepare(
        &self,
        cql: String,
        keyspace: Option<String>,
    ) -> Result<Prepared, RequestError> {
        let statement = parse_statement(&cql).map_err(syntax_error)?;
        let mut markers = Vec::new();
        self.markers(&statement, keyspace.as_deref(), &mut markers)
            .await?;
        // Every `?` of the text, including those no clause above took.
        let count = tokenize(&cql)
            .map_err(syntax_error)?
            .iter()
            .filter(|token| token.kind == TokenKind::Symbol("?"))
            .count();
        markers.resize(count.max(markers.len()), None);
        let markers = markers
            .into_iter()
            .enumerate()
            .map(|(index, marker)| {
                marker.ok_or_else(|| {
                    RequestError::invalid(format!(
                        "ringdb cannot tell what bind marker {} takes",
                        index + 1
                    ))
                })
            })
            .collect::<Result<Vec<Marker>, RequestError>>()?;
        let id = prepared_id(keyspace.as_deref(), &cql);
        let kept = Kept {
            keyspace: keyspace.clone(),
            statement,
            bytes: cql.len(),
        };
        self.prepared.insert(id, Arc::new(kept));
        Ok(Prepared {
            id,
            cql,
            keyspace,
            markers,
        })
    }

    /// The statement a query runs, and the keyspace it runs in: parsed
    /// from its text, or the one it names as prepared (kept again when the
    /// query carries its text).
    pub(super) fn statement_of(
        &self,
        id: Option<PreparedId>,
        cql: &str,
        keyspace: Option<&str>,
    ) -> Result<Arc<Kept>, RequestError> {
        let parsed = || -> Result<Kept, RequestError> {
            Ok(Kept {
                keyspace: keyspace.map(str::to_string),
                statement: parse_statement(cql).map_err(syntax_error)?,
                bytes: cql.len(),
            })
        };
        match id {
            Some(id) if cql.is_empty() => self
                .prepared
                .get(&id)
                .ok_or(RequestError::Unprepared { id: id.to_string() }),
            Some(id) => {
                if prepared_id(keyspace, cql) != id {
                    return Err(RequestError::invalid(format!(
                        "the statement's text is not the one prepared as {id} in keyspace {}",
                        keyspace.unwrap_or("(none)")
                    )));
                }
                let kept = Arc::new(parsed()?);
                self.prepared.insert(id, kept.clone());
                Ok(kept)
            }
            None => Ok(Arc::new(parsed()?)),
        }
    }

    /// Notes in `markers` (by index) what each bind marker of `statement`
    /// takes.
    async fn markers(
        &self,
        statement: &Statement,
        keyspace: Option<&str>,
        markers: &mut Vec<Option<Marker>>,
    ) -> Result<(), RequestError> {
        match statement {
            Statement::Insert(insert) => {
                let table = self.table(&insert.table, keyspace).await?;
                for (name, term) in insert.columns.iter().zip(&insert.values) {
                    note(
                        markers,
                        term,
                        name,
                        column_type(&table, name, &insert.table)?,
                    )?;
                }
                note_using(markers, &insert.using)
            }
            Statement::Update(update) => {
                let table = self.table(&update.table, keyspace).await?;
                for (name, term) in &update.assignments {
                    note(
                        markers,
                        term,
                        name,
                        column_type(&table, name, &update.table)?,
                    )?;
                }
                note_relations(markers, &table, &update.selection, &update.table)?;
                note_using(markers, &update.using)
            }
            Statement::Delete(delete) => {
                let table = self.table(&delete.table, keyspace).await?;
                note_relations(markers, &table, &delete.selection, &delete.table)?;
                super::write::check_delete_using(&delete.using)
            }
            Statement::Select(select) => {
                let table = self.table(&select.table, keyspace).await?;
                note_relations(markers, &table, &select.selection, &select.table)?;
                if let Some(term) = &select.per_partition_limit {
                    note(markers, term, "[per_partition_limit]", CqlType::Int)?;
                }
                if let Some(term) = &select.limit {
                    note(markers, term, "[limit]", CqlType::Int)?;
                }
                Ok(())
            }
            Statement::Batch(batch) => {
                for statement in &batch.statements {
                    Box::pin(self.markers(statement, keyspace, markers)).await?;
                }
                note_using(markers, &batch.using)
            }
            _ => Ok(()),
        }
    }
}

/// Notes the marker `term` is, if it is one, as taking `ty` for `name`.
fn note(
    markers: &mut Vec<Option<Marker>>,
    term: &Term,
    name: &str,
    ty: CqlType,
) -> Result<(), RequestError> {
    match &term.kind {
        TermKind::Bind(BindMarker::Anonymous(index)) => {
            if markers.len() <= *index {
                markers.resize(index + 1, None);
            }
            markers[*index] = Some(Marker {
                name: name.to_string(),
                ty,
            });
            Ok(())
        }
        TermKind::Bind(BindMarker::Named(name)) => Err(invalid_at(
            term.position,
            format!("named bind marker :{name}: bind values by position (?)"),
        )),
        _ => Ok(()),
    }
}

fn note_using(markers: &mut Vec<Option<Marker>>, using: &Using) -> Result<(), RequestError> {
    if let Some(term) = &using.timestamp {
        note(markers, term, "[timestamp]", CqlType::BigInt)?;
    }
    if let Some(term) = &using.ttl {
        note(markers, term, "[ttl]", CqlType::Int)?;
    }
    Ok(())
}

fn note_relations(
    markers: &mut Vec<Option<Marker>>,
    table: &TableDefinition,
    relations: &[Relation],
    name: &TableName,
) -> Result<(), RequestError> {
    for relation in relations {
        // Refused as the statement would be when run.
        let columns: Vec<&String> = match &relation.subject {
            Subject::Column(column) => vec![column],
            Subject::Tuple(_) => {
                return Err(invalid_at(
                    relation.position,
                    "ringdb does not support multi-column relations ((c1, c2) > (…)); \
                     restrict each clustering column",
                ));
            }
            Subject::Token(_) => {
                return Err(invalid_at(
                    relation.position,
                    "ringdb does not support token() restrictions (scanning token ranges); \
                     restrict the partition key with = or IN",
                ));
            }
        };
        if relation.operator == Operator::In
            && matches!(&relation.value, RelationValue::Term(term)
                if matches!(term.kind, TermKind::Bind(_)))
        {
            return Err(invalid_at(
                relation.position,
                format!("{} IN ?: bind each value, IN (?, ?, …)", columns[0]),
            ));
        }
        let types = columns
            .iter()
            .map(|column| column_type(table, column, name))
            .collect::<Result<Vec<CqlType>, RequestError>>()?;
        let mut tuple = |terms: &[Term]| -> Result<(), RequestError> {
            for ((term, column), ty) in terms.iter().zip(&columns).zip(&types) {
                note(markers, term, column, *ty)?;
            }
            Ok(())
        };
        match &relation.value {
            RelationValue::Term(term) if columns.len() == 1 => {
                note(markers, term, columns[0], types[0])?;
            }
            RelationValue::Term(_) => {}
            RelationValue::List(terms) if columns.len() == 1 => {
                for term in terms {
                    note(markers, term, columns[0], types[0])?;
                }
            }
            RelationValue::List(_) => {}
            RelationValue::Tuple(terms) => tuple(terms)?,
            RelationValue::TupleList(tuples) => {
                for terms in tuples {
                    tuple(terms)?;
                }
            }
        }
    }
    Ok(())
}

fn column_type(
    table: &TableDefinition,
    column: &str,
    name: &TableName,
) -> Result<CqlType, RequestError> {
    table
        .columns
        .iter()
        .find(|c| c.name == column)
        .map(|c| c.ty)
        .ok_or_else(|| {
            invalid_at(
                name.position,
                format!("undefined column {column} in table {}", table.name),
            )
        })
}
