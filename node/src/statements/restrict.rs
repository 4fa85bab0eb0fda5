//! `WHERE` clauses as keys: the partitions a statement touches (every
//! partition key column restricted by `=` or `IN`) and, within each, the
//! clustering slices (`=` or `IN` on the first clustering columns, then
//! at most a range on the next), as Cassandra accepts them. A slice is one
//! range of clustering-key bytes, since their byte order is clustering
//! order (see `ringdb_proto::clustering`).

use ringdb_cql::Position;
use ringdb_cql::ast::{Operator, Relation, RelationValue, Subject, Term};
use ringdb_proto::{
    ClusteringKey, ColumnDefinition, ColumnKind, Order, PartitionKey, RequestError,
    TableDefinition, Value,
};

use super::terms::{Bindings, invalid_at};
use crate::storage::next_prefix;

/// The most partitions or clustering prefixes one statement names (the
/// product of its `IN` lists).
const MAX_KEYS: usize = 100;

/// What a `WHERE` clause selects.
pub(super) struct Selection {
    /// The partitions, in the order named, without repeats.
    pub(super) partitions: Vec<PartitionKey>,
    /// The values of the clustering columns restricted by `=` or `IN`, each
    /// combination a prefix of clustering keys.
    pub(super) prefixes: Vec<Vec<Value>>,
    /// A range on the clustering column after the prefix.
    pub(super) range: Option<Range>,
}

/// A range on one clustering column.
pub(super) struct Range {
    lower: Option<(Value, bool)>,
    upper: Option<(Value, bool)>,
}

/// A slice of a partition: clustering-key bytes from `start` (inclusive)
/// to `end` (exclusive; `None`: the partition's end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Slice {
    pub(super) start: Vec<u8>,
    pub(super) end: Option<Vec<u8>>,
}

impl Selection {
    /// Whether it names whole rows: every clustering column by `=` or `IN`.
    pub(super) fn names_rows(&self, table: &TableDefinition) -> bool {
        self.range.is_none()
            && self.prefixes.first().map_or(0, Vec::len) == table.clustering().count()
    }

    /// The full clustering keys it names (when [`Selection::names_rows`]).
    pub(super) fn clustering_keys(
        &self,
        table: &TableDefinition,
    ) -> Result<Vec<ClusteringKey>, RequestError> {
        self.prefixes
            .iter()
            .map(|prefix| encode(table, prefix))
            .collect()
    }

    /// The slices of each partition, in clustering order (reversed with
    /// `reverse`).
    pub(super) fn slices(
        &self,
        table: &TableDefinition,
        reverse: bool,
    ) -> Result<Vec<Slice>, RequestError> {
        let columns: Vec<&ColumnDefinition> = table.clustering().collect();
        let mut slices = Vec::with_capacity(self.prefixes.len());
        for prefix in &self.prefixes {
            let base = encode(table, prefix)?.as_bytes().to_vec();
            let mut slice = Slice {
                start: base.clone(),
                end: next_prefix(&base),
            };
            if let Some(range) = &self.range {
                let column = columns[prefix.len()];
                let order = match column.kind {
                    ColumnKind::Clustering(order) => order,
                    _ => Order::Asc,
                };
                let bytes = |value: &Value| -> Result<Vec<u8>, RequestError> {
                    let mut values = prefix.clone();
                    values.push(value.clone());
                    Ok(encode(table, &values)?.as_bytes().to_vec())
                };
                // In bytes, a DESC column's lower value bound is an upper one.
                let (low, high) = match order {
                    Order::Asc => (&range.lower, &range.upper),
                    Order::Desc => (&range.upper, &range.lower),
                };
                if let Some((value, inclusive)) = low {
                    let at = bytes(value)?;
                    let start = if *inclusive {
                        Some(at)
                    } else {
                        next_prefix(&at)
                    };
                    match start {
                        Some(start) => slice.start = start,
                        None => continue,
                    }
                }
                if let Some((value, inclusive)) = high {
                    let at = bytes(value)?;
                    slice.end = if *inclusive {
                        next_prefix(&at)
                    } else {
                        Some(at)
                    };
                }
            }
            if slice.end.as_ref().is_none_or(|end| slice.start < *end) {
                slices.push(slice);
            }
        }
        slices.sort_by(|a, b| a.start.cmp(&b.start));
        slices.dedup();
        if reverse {
            slices.reverse();
        }
        Ok(slices)
    }
}

/// The clustering key (or prefix) of `values`, for `table`'s clustering columns.
fn encode(table: &TableDefinition, values: &[Value]) -> Result<ClusteringKey, RequestError> {
    let parts: Vec<(&Value, ringdb_proto::CqlType, Order)> = table
        .clustering()
        .zip(values)
        .map(|(column, value)| {
            let order = match column.kind {
                ColumnKind::Clustering(order) => order,
                _ => Order::Asc,
            };
            (value, column.ty, order)
        })
        .collect();
    ClusteringKey::encode(&parts).map_err(|e| RequestError::invalid(e.to_string()))
}

/// The restrictions on one column.
#[derive(Default)]
struct Restrictions {
    equal: Option<(Vec<Value>, Position)>,
    lower: Option<(Value, bool)>,
    upper: Option<(Value, bool)>,
    at: Option<Position>,
}

/// Reads a `WHERE` clause of `table`.
pub(super) fn selection(
    table: &TableDefinition,
    relations: &[Relation],
    bindings: &Bindings<'_>,
    at: Position,
) -> Result<Selection, RequestError> {
    let mut restrictions: Vec<Restrictions> =
        table.columns.iter().map(|_| Default::default()).collect();
    for relation in relations {
        let name = match &relation.subject {
            Subject::Column(name) => name,
            Subject::Token(_) => {
                return Err(invalid_at(
                    relation.position,
                    "ringdb does not support token() restrictions (scanning token ranges); \
                     restrict the partition key with = or IN",
                ));
            }
            Subject::Tuple(_) => {
                return Err(invalid_at(
                    relation.position,
                    "ringdb does not support multi-column relations ((c1, c2) > (…)); \
                     restrict each clustering column",
                ));
            }
        };
        let index = table
            .columns
            .iter()
            .position(|c| c.name == *name)
            .ok_or_else(|| invalid_at(relation.position, format!("undefined column {name}")))?;
        let column = &table.columns[index];
        if column.kind == ColumnKind::Regular {
            return Err(invalid_at(
                relation.position,
                format!(
                    "{name} is not a key column: ringdb does not support filtering on \
                     regular columns (ALLOW FILTERING)"
                ),
            ));
        }
        restrict(&mut restrictions[index], column, relation, bindings)?;
    }
    let partitions = partitions(table, &restrictions, at)?;
    let (prefixes, range) = clustering(table, &restrictions)?;
    Ok(Selection {
        partitions,
        prefixes,
        range,
    })
}

/// Adds `relation` to a column's restrictions.
fn restrict(
    restrictions: &mut Restrictions,
    column: &ColumnDefinition,
    relation: &Relation,
    bindings: &Bindings<'_>,
) -> Result<(), RequestError> {
    let at = relation.position;
    let name = &column.name;
    let value = |term: &Term| -> Result<Value, RequestError> {
        let value = bindings.value(term, column.ty, name)?;
        if value == Value::Null {
            return Err(invalid_at(
                term.position,
                format!("{name} cannot be compared with null"),
            ));
        }
        Ok(value)
    };
    let single = || match &relation.value {
        RelationValue::Term(term) => value(term),
        _ => Err(invalid_at(
            at,
            format!("{name} {} takes one value", relation.operator.symbol()),
        )),
    };
    restrictions.at = Some(at);
    let twice = || invalid_at(at, format!("{name} is restricted twice the same way"));
    match relation.operator {
        Operator::Eq | Operator::In => {
            if restrictions.equal.is_some()
                || restrictions.lower.is_some()
                || restrictions.upper.is_some()
            {
                return Err(twice());
            }
            let values = match (&relation.operator, &relation.value) {
                (Operator::In, RelationValue::List(terms)) => {
                    terms.iter().map(value).collect::<Result<Vec<_>, _>>()?
                }
                (Operator::In, _) => {
                    return Err(invalid_at(
                        at,
                        format!("{name} IN takes a list of values: IN (a, b)"),
                    ));
                }
                _ => vec![single()?],
            };
            restrictions.equal = Some((values, at));
        }
        Operator::Gt | Operator::Ge => {
            if restrictions.lower.is_some() || restrictions.equal.is_some() {
                return Err(twice());
            }
            restrictions.lower = Some((single()?, relation.operator == Operator::Ge));
        }
        Operator::Lt | Operator::Le => {
            if restrictions.upper.is_some() || restrictions.equal.is_some() {
                return Err(twice());
            }
            restrictions.upper = Some((single()?, relation.operator == Operator::Le));
        }
    }
    Ok(())
}

/// The partitions: every partition key column must be restricted by `=`
/// or `IN`; their combinations, serialized as Cassandra does.
fn partitions(
    table: &TableDefinition,
    restrictions: &[Restrictions],
    at: Position,
) -> Result<Vec<PartitionKey>, RequestError> {
    let mut combinations: Vec<Vec<Value>> = vec![Vec::new()];
    let key: Vec<&ColumnDefinition> = table.partition_key().collect();
    for (index, column) in key.iter().enumerate() {
        let restriction = &restrictions[index];
        let Some((values, _)) = &restriction.equal else {
            let names: Vec<&str> = key.iter().map(|c| c.name.as_str()).collect();
            let at = restriction.at.unwrap_or(at);
            return Err(invalid_at(
                at,
                format!(
                    "every partition key column ({}) must be restricted by = or IN: \
                     ringdb does not scan the whole cluster (ALLOW FILTERING); {} is not",
                    names.join(", "),
                    column.name
                ),
            ));
        };
        combinations = product(combinations, values, at)?;
    }
    let mut keys: Vec<PartitionKey> = Vec::new();
    for combination in combinations {
        let parts: Vec<(&Value, ringdb_proto::CqlType)> = combination
            .iter()
            .zip(&key)
            .map(|(value, column)| (value, column.ty))
            .collect();
        let partition =
            PartitionKey::from_values(&parts).map_err(|e| invalid_at(at, e.to_string()))?;
        if !keys.contains(&partition) {
            keys.push(partition);
        }
    }
    Ok(keys)
}

/// The clustering prefixes (`=` and `IN` on the first clustering columns)
/// and the range on the column after them.
fn clustering(
    table: &TableDefinition,
    restrictions: &[Restrictions],
) -> Result<(Vec<Vec<Value>>, Option<Range>), RequestError> {
    let first = table.partition_key().count();
    let columns: Vec<&ColumnDefinition> = table.clustering().collect();
    let mut prefixes: Vec<Vec<Value>> = vec![Vec::new()];
    let mut range = None;
    // The column that ended the prefix, and why.
    let mut ended: Option<(&str, &str)> = None;
    for (offset, column) in columns.iter().enumerate() {
        let restriction = &restrictions[first + offset];
        let restricted = restriction.at.is_some();
        if let Some((previous, why)) = ended {
            if restricted {
                return Err(invalid_at(
                    restriction.at.expect("restricted"),
                    format!(
                        "clustering column {} cannot be restricted: the column before it, \
                         {previous}, {why}",
                        column.name
                    ),
                ));
            }
            continue;
        }
        match &restriction.equal {
            Some((values, at)) => prefixes = product(prefixes, values, *at)?,
            None if restricted => {
                range = Some(Range {
                    lower: restriction.lower.clone(),
                    upper: restriction.upper.clone(),
                });
                ended = Some((&column.name, "is restricted by a range"));
            }
            None => ended = Some((&column.name, "is not restricted")),
        }
    }
    Ok((prefixes, range))
}

/// Every combination of `combinations` followed by one of `values`.
fn product(
    combinations: Vec<Vec<Value>>,
    values: &[Value],
    at: Position,
) -> Result<Vec<Vec<Value>>, RequestError> {
    if combinations.len() * values.len() > MAX_KEYS {
        return Err(invalid_at(
            at,
            format!("the IN lists name more than {MAX_KEYS} keys"),
        ));
    }
    let mut next = Vec::with_capacity(combinations.len() * values.len());
    for combination in combinations {
        for value in values {
            let mut longer = combination.clone();
            longer.push(value.clone());
            if !next.contains(&longer) {
                next.push(longer);
            }
        }
    }
    Ok(next)
}
