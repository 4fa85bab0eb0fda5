//! DDL: what a `CREATE`, `ALTER` or `DROP` statement changes in the schema.
//!
//! [`plan`] checks a statement against the schema as this node holds it
//! and returns the entries it changes (a schema of those entries alone,
//! to merge here and send on), or nothing when `IF [NOT] EXISTS` makes it
//! a no-op. It does no I/O: the schema service stamps, stores and spreads.

use std::collections::BTreeMap;

use ringdb_cql::Position;
use ringdb_cql::ast::{
    ColumnDefinition as ColumnAst, CreateTable, Literal, Property, Statement, TableChange,
    TableName, Term, TermKind,
};
use ringdb_proto::{
    ColumnDefinition, ColumnKind, ConflictMode, KeyspaceDefinition, MAX_REPLICATION_FACTOR, Order,
    SchemaError, TableDefinition,
};
use ringdb_ring::Replication;

use super::{Entry, Schema, Stamp, table_id};

/// Why a DDL statement was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DdlError {
    /// What it creates exists (and `IF NOT EXISTS` was not given).
    #[error("{what} already exists")]
    AlreadyExists {
        /// `keyspace ks` or `table ks.t`.
        what: String,
    },
    /// A keyspace it names does not exist.
    #[error("keyspace {0} does not exist")]
    UnknownKeyspace(String),
    /// A table it names does not exist.
    #[error("table {keyspace}.{table} does not exist")]
    UnknownTable {
        /// The keyspace.
        keyspace: String,
        /// The table.
        table: String,
    },
    /// A table without a keyspace, in a session without one.
    #[error("no keyspace has been specified: USE one, or name the table as keyspace.table")]
    NoKeyspace,
    /// The statement asks for what this cluster does not do.
    #[error("{0}")]
    Unsupported(String),
    /// The statement is not valid here.
    #[error("line {position}: {reason}")]
    Invalid {
        /// Where.
        position: Position,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(position: Position, reason: impl Into<String>) -> DdlError {
    DdlError::Invalid {
        position,
        reason: reason.into(),
    }
}

impl From<(Position, SchemaError)> for DdlError {
    fn from((position, error): (Position, SchemaError)) -> DdlError {
        invalid(position, error.0)
    }
}

/// The entries `statement` changes in `schema`, stamped `stamp`; `None`
/// when there is nothing to do. `keyspace` is the session's current one.
/// Statements that are not DDL change nothing.
pub fn plan(
    schema: &Schema,
    statement: &Statement,
    keyspace: Option<&str>,
    stamp: &Stamp,
) -> Result<Option<Schema>, DdlError> {
    let planner = Planner {
        schema,
        keyspace,
        stamp,
    };
    match statement {
        Statement::CreateKeyspace {
            name,
            if_not_exists,
            properties,
        } => planner.create_keyspace(name, *if_not_exists, properties),
        Statement::AlterKeyspace { name, properties } => planner.alter_keyspace(name, properties),
        Statement::DropKeyspace { name, if_exists } => planner.drop_keyspace(name, *if_exists),
        Statement::CreateTable(create) => planner.create_table(create),
        Statement::AlterTable { table, change } => planner.alter_table(table, change),
        Statement::DropTable { table, if_exists } => planner.drop_table(table, *if_exists),
        _ => Ok(None),
    }
}

struct Planner<'a> {
    schema: &'a Schema,
    keyspace: Option<&'a str>,
    stamp: &'a Stamp,
}

impl Planner<'_> {
    fn create_keyspace(
        &self,
        name: &str,
        if_not_exists: bool,
        properties: &[Property],
    ) -> Result<Option<Schema>, DdlError> {
        if self.schema.keyspace(name).is_some() {
            if if_not_exists {
                return Ok(None);
            }
            return Err(DdlError::AlreadyExists {
                what: format!("keyspace {name}"),
            });
        }
        let keyspace = keyspace_definition(name, properties, None)?;
        let incarnation = self
            .schema
            .keyspaces
            .get(name)
            .map_or(0, |e| e.incarnation.saturating_add(1));
        Ok(Some(self.keyspace_change(
            keyspace,
            self.stamp,
            incarnation,
        )))
    }

    fn alter_keyspace(
        &self,
        name: &str,
        properties: &[Property],
    ) -> Result<Option<Schema>, DdlError> {
        let Some(current) = self.schema.keyspace(name) else {
            return Err(DdlError::UnknownKeyspace(name.to_string()));
        };
        let keyspace = keyspace_definition(name, properties, Some(current))?;
        let entry = &self.schema.keyspaces[name];
        Ok(Some(self.keyspace_change(
            keyspace,
            &entry.created,
            entry.incarnation,
        )))
    }

    fn keyspace_change(
        &self,
        keyspace: KeyspaceDefinition,
        created: &Stamp,
        incarnation: u32,
    ) -> Schema {
        let mut change = Schema::default();
        change.keyspaces.insert(
            keyspace.name.clone(),
            Entry {
                changed: self.stamp.clone(),
                created: created.clone(),
                incarnation,
                definition: Some(keyspace),
            },
        );
        change
    }

    fn drop_keyspace(&self, name: &str, if_exists: bool) -> Result<Option<Schema>, DdlError> {
        let Some(entry) = self
            .schema
            .keyspaces
            .get(name)
            .filter(|e| e.definition.is_some())
        else {
            if if_exists {
                return Ok(None);
            }
            return Err(DdlError::UnknownKeyspace(name.to_string()));
        };
        let mut change = Schema::default();
        change.keyspaces.insert(
            name.to_string(),
            Entry {
                changed: self.stamp.clone(),
                created: entry.created.clone(),
                incarnation: entry.incarnation,
                definition: None,
            },
        );
        // Its tables are dropped too (they would not be live anyway; the
        // tombstones say so to a node that never saw the keyspace drop).
        for table in self.schema.tables_of(name) {
            let key = (table.keyspace.clone(), table.name.clone());
            let entry = &self.schema.tables[&key];
            change.tables.insert(key, self.table_tombstone(entry));
        }
        Ok(Some(change))
    }

    fn table_tombstone(&self, entry: &Entry<TableDefinition>) -> Entry<TableDefinition> {
        Entry {
            changed: self.stamp.clone(),
            created: entry.created.clone(),
            incarnation: entry.incarnation,
            definition: None,
        }
    }

    /// The keyspace a table name is in: its own, or the session's.
    fn keyspace_of(&self, table: &TableName) -> Result<String, DdlError> {
        let keyspace = table
            .keyspace
            .as_deref()
            .or(self.keyspace)
            .ok_or(DdlError::NoKeyspace)?;
        if self.schema.keyspace(keyspace).is_none() {
            return Err(DdlError::UnknownKeyspace(keyspace.to_string()));
        }
        Ok(keyspace.to_string())
    }

    fn create_table(&self, create: &CreateTable) -> Result<Option<Schema>, DdlError> {
        let keyspace = self.keyspace_of(&create.table)?;
        let name = &create.table.name;
        if self.schema.table(&keyspace, name).is_some() {
            if create.if_not_exists {
                return Ok(None);
            }
            return Err(DdlError::AlreadyExists {
                what: format!("table {keyspace}.{name}"),
            });
        }
        let key = (keyspace.clone(), name.clone());
        let incarnation = self
            .schema
            .tables
            .get(&key)
            .map_or(0, |e| e.incarnation.saturating_add(1));
        let keyspace_created = &self.schema.keyspaces[&keyspace].created;
        let mut table = table_definition(create, &keyspace)?;
        table.id = table_id(&keyspace, name, keyspace_created, incarnation);
        table
            .validate()
            .map_err(|e| DdlError::from((create.table.position, e)))?;
        let mut change = Schema::default();
        change.tables.insert(
            key,
            Entry {
                changed: self.stamp.clone(),
                created: self.stamp.clone(),
                incarnation,
                definition: Some(table),
            },
        );
        Ok(Some(change))
    }

    fn alter_table(
        &self,
        name: &TableName,
        alter: &TableChange,
    ) -> Result<Option<Schema>, DdlError> {
        let keyspace = self.keyspace_of(name)?;
        let Some(current) = self.schema.table(&keyspace, &name.name) else {
            return Err(DdlError::UnknownTable {
                keyspace,
                table: name.name.clone(),
            });
        };
        let mut table = current.clone();
        match alter {
            TableChange::Add(columns) => {
                for column in columns {
                    if table.column(&column.name).is_some() {
                        return Err(invalid(
                            column.position,
                            format!("column {} already exists", column.name),
                        ));
                    }
                    table.columns.push(ColumnDefinition {
                        name: column.name.clone(),
                        ty: column.ty,
                        kind: ColumnKind::Regular,
                    });
                }
            }
            TableChange::Drop(columns) => {
                for column in columns {
                    match table.column(column).map(|c| c.kind) {
                        None => {
                            return Err(invalid(
                                name.position,
                                format!("column {column} does not exist"),
                            ));
                        }
                        Some(ColumnKind::Regular) => table.columns.retain(|c| &c.name != column),
                        Some(_) => {
                            return Err(invalid(
                                name.position,
                                format!(
                                    "column {column} is part of the primary key and cannot be dropped"
                                ),
                            ));
                        }
                    }
                }
            }
            TableChange::With(properties) => {
                table_properties(&mut table, properties)?;
                if table.conflict != current.conflict {
                    return Err(invalid(
                        name.position,
                        "a table's conflict_mode is chosen when it is created and cannot change",
                    ));
                }
            }
        }
        table
            .validate()
            .map_err(|e| DdlError::from((name.position, e)))?;
        let key = (keyspace, name.name.clone());
        let entry = &self.schema.tables[&key];
        let mut change = Schema::default();
        change.tables.insert(
            key,
            Entry {
                changed: self.stamp.clone(),
                created: entry.created.clone(),
                incarnation: entry.incarnation,
                definition: Some(table),
            },
        );
        Ok(Some(change))
    }

    fn drop_table(&self, name: &TableName, if_exists: bool) -> Result<Option<Schema>, DdlError> {
        let keyspace = match self.keyspace_of(name) {
            Err(DdlError::UnknownKeyspace(_)) if if_exists => return Ok(None),
            other => other?,
        };
        if self.schema.table(&keyspace, &name.name).is_none() {
            if if_exists {
                return Ok(None);
            }
            return Err(DdlError::UnknownTable {
                keyspace,
                table: name.name.clone(),
            });
        }
        let key = (keyspace, name.name.clone());
        let tombstone = self.table_tombstone(&self.schema.tables[&key]);
        let mut change = Schema::default();
        change.tables.insert(key, tombstone);
        Ok(Some(change))
    }
}

/// A keyspace from `WITH replication = {…}` (and `durable_writes`); on
/// `ALTER`, what is not given stays as `current` has it.
fn keyspace_definition(
    name: &str,
    properties: &[Property],
    current: Option<&KeyspaceDefinition>,
) -> Result<KeyspaceDefinition, DdlError> {
    let mut replication = current.map(|k| k.replication.clone());
    let mut position = Position::default();
    for property in properties {
        position = property.position;
        match property.name.as_str() {
            "replication" => replication = Some(replication_of(&property.value)?),
            "durable_writes" => {
                if !matches!(
                    property.value.kind,
                    TermKind::Literal(Literal::Boolean(true))
                ) {
                    return Err(invalid(
                        property.position,
                        "ringdb writes are always durable: durable_writes can only be true",
                    ));
                }
            }
            other => {
                return Err(invalid(
                    property.position,
                    format!(
                        "unknown keyspace property '{other}' (there are replication and durable_writes)"
                    ),
                ));
            }
        }
    }
    let Some(replication) = replication else {
        return Err(invalid(position, "a keyspace needs WITH replication = {…}"));
    };
    let keyspace = KeyspaceDefinition {
        name: name.to_string(),
        replication,
    };
    keyspace
        .validate()
        .map_err(|e| DdlError::from((position, e)))?;
    Ok(keyspace)
}

/// `{'class': 'SimpleStrategy', 'replication_factor': N}` or
/// `{'class': 'NetworkTopologyStrategy', 'dc1': N, …}`.
fn replication_of(term: &Term) -> Result<Replication, DdlError> {
    let TermKind::Map(entries) = &term.kind else {
        return Err(invalid(
            term.position,
            "replication must be a map: {'class': …}",
        ));
    };
    let mut options = BTreeMap::new();
    for (key, value) in entries {
        let TermKind::Literal(Literal::String(key)) = &key.kind else {
            return Err(invalid(
                key.position,
                "replication options are named by strings",
            ));
        };
        options.insert(key.clone(), value);
    }
    let Some(class) = options.remove("class") else {
        return Err(invalid(term.position, "replication needs a 'class'"));
    };
    let class = match &class.kind {
        TermKind::Literal(Literal::String(class)) => class.rsplit('.').next().unwrap_or(class),
        _ => return Err(invalid(class.position, "the replication class is a string")),
    };
    match class {
        "SimpleStrategy" => {
            let factor = options.remove("replication_factor").ok_or_else(|| {
                invalid(term.position, "SimpleStrategy needs a 'replication_factor'")
            })?;
            let factor = replication_factor(factor)?;
            if let Some(extra) = options.keys().next() {
                return Err(invalid(
                    term.position,
                    format!("SimpleStrategy has no option '{extra}'"),
                ));
            }
            Ok(Replication::Simple { factor })
        }
        "NetworkTopologyStrategy" => {
            if options.contains_key("replication_factor") {
                return Err(invalid(
                    term.position,
                    "name each datacenter's factor: {'class': 'NetworkTopologyStrategy', 'dc1': 3}",
                ));
            }
            let factors = options
                .into_iter()
                .map(|(datacenter, factor)| Ok((datacenter, replication_factor(factor)?)))
                .collect::<Result<BTreeMap<_, _>, DdlError>>()?;
            Ok(Replication::PerDatacenter { factors })
        }
        other => Err(invalid(
            term.position,
            format!(
                "unknown replication class '{other}' (there are SimpleStrategy and NetworkTopologyStrategy)"
            ),
        )),
    }
}

/// A factor, written as a number or a string of digits.
fn replication_factor(term: &Term) -> Result<usize, DdlError> {
    let digits = match &term.kind {
        TermKind::Literal(Literal::Integer(digits) | Literal::String(digits)) => digits,
        _ => return Err(invalid(term.position, "a replication factor is a number")),
    };
    digits
        .parse::<usize>()
        .ok()
        .filter(|f| *f <= MAX_REPLICATION_FACTOR)
        .ok_or_else(|| {
            invalid(
                term.position,
                format!("replication factor {digits} is not 0 to {MAX_REPLICATION_FACTOR}"),
            )
        })
}

/// The definition `CREATE TABLE` describes (its id is set by the caller).
fn table_definition(create: &CreateTable, keyspace: &str) -> Result<TableDefinition, DdlError> {
    let find = |name: &str| -> Result<&ColumnAst, DdlError> {
        create
            .columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                invalid(
                    create.table.position,
                    format!("primary key column {name} is not defined"),
                )
            })
    };
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = create
        .columns
        .iter()
        .find(|c| !seen.insert(c.name.as_str()))
    {
        return Err(invalid(
            twice.position,
            format!("column {} is defined twice", twice.name),
        ));
    }
    let mut columns = Vec::new();
    for name in &create.partition_key {
        columns.push(column(find(name)?, ColumnKind::PartitionKey));
    }
    let orders = clustering_orders(create)?;
    for (name, order) in create.clustering.iter().zip(orders) {
        columns.push(column(find(name)?, ColumnKind::Clustering(order)));
    }
    for ast in &create.columns {
        if !columns.iter().any(|c| c.name == ast.name) {
            columns.push(column(ast, ColumnKind::Regular));
        }
    }
    let mut table = TableDefinition {
        keyspace: keyspace.to_string(),
        name: create.table.name.clone(),
        id: ringdb_proto::TableId(0),
        columns,
        conflict: ConflictMode::default(),
        comment: String::new(),
    };
    table_properties(&mut table, &create.properties)?;
    Ok(table)
}

fn column(ast: &ColumnAst, kind: ColumnKind) -> ColumnDefinition {
    ColumnDefinition {
        name: ast.name.clone(),
        ty: ast.ty,
        kind,
    }
}

/// The order of each clustering column: `CLUSTERING ORDER BY` must name
/// them in key order (a prefix of them).
fn clustering_orders(create: &CreateTable) -> Result<Vec<Order>, DdlError> {
    let mut orders = vec![Order::Asc; create.clustering.len()];
    for (i, (name, order)) in create.clustering_order.iter().enumerate() {
        if create.clustering.get(i) != Some(name) {
            return Err(invalid(
                create.table.position,
                format!(
                    "CLUSTERING ORDER BY must name the clustering columns in key order ({}); {name} is out of place",
                    create.clustering.join(", ")
                ),
            ));
        }
        orders[i] = *order;
    }
    Ok(orders)
}

/// `conflict_mode` and `comment`; other properties are refused by name.
fn table_properties(table: &mut TableDefinition, properties: &[Property]) -> Result<(), DdlError> {
    for property in properties {
        let text = match &property.value.kind {
            TermKind::Literal(Literal::String(text)) => text.clone(),
            _ => {
                return Err(invalid(
                    property.value.position,
                    format!("{} takes a string", property.name),
                ));
            }
        };
        match property.name.as_str() {
            "conflict_mode" => {
                table.conflict = match text.as_str() {
                    "siblings" => ConflictMode::Siblings,
                    "lww" => ConflictMode::Lww,
                    other => {
                        return Err(invalid(
                            property.value.position,
                            format!("conflict_mode is 'siblings' or 'lww', not '{other}'"),
                        ));
                    }
                };
            }
            "comment" => table.comment = text,
            other => {
                return Err(invalid(
                    property.position,
                    format!(
                        "ringdb does not support the table property '{other}' (there are comment and conflict_mode)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
