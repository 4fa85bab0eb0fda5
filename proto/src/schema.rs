//! Schema: keyspaces and typed tables.
//!
//! A keyspace says how its rows are replicated (`SimpleStrategy`: N
//! replicas; `NetworkTopologyStrategy`: N per datacenter). A table has
//! typed columns: the partition key columns (their serialized values place
//! the row on the ring, see `keys.rs`), the clustering columns (their
//! order-preserving encoding orders the rows of a partition, see
//! `clustering.rs`), and regular columns; and a conflict mode, which says
//! what concurrent writes of a row become.
//!
//! These definitions cross the wire (a node pulls the schema it lacks from
//! a peer) and the disk, so [`TableDefinition::validate`] and
//! [`KeyspaceDefinition::validate`] check what a `Deserialize` derive
//! cannot: names, key columns, factors.

use std::fmt::Write as _;

use ringdb_ring::Replication;
use serde::{Deserialize, Serialize};

use crate::{CqlType, Order, TableId};

/// The longest keyspace, table or column name (Cassandra's limit for
/// keyspaces and tables: 48 characters).
pub const MAX_NAME_CHARS: usize = 48;
/// The most columns a table can have.
pub const MAX_COLUMNS: usize = 1024;
/// The largest replication factor (per datacenter).
pub const MAX_REPLICATION_FACTOR: usize = 32;
/// The longest table comment, in bytes.
pub const MAX_COMMENT_BYTES: usize = 4096;

/// A keyspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyspaceDefinition {
    /// Its name.
    pub name: String,
    /// How its tables' rows are replicated.
    pub replication: Replication,
}

/// What concurrent writes of a row become.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConflictMode {
    /// Kept as siblings, tracked by dotted version vectors, returned by
    /// reads until a write that saw them resolves them (the default).
    #[default]
    Siblings,
    /// The version with the highest timestamp wins, as in Cassandra, but a
    /// whole row at a time (not per column). Timestamps come from a hybrid
    /// logical clock per row: a write is stamped after every version it
    /// supersedes, so a write that saw another (it read it, or its
    /// coordinator held it) always wins over it, whatever the clocks. What
    /// it loses under clock skew: of two concurrent writes (neither saw the
    /// other), the one from the coordinator whose clock is ahead wins, even
    /// if it was made earlier, and the other is silently dropped; a node
    /// whose clock is ahead by a minute wins every race for that minute.
    /// `USING TIMESTAMP` sets the timestamp by hand.
    Lww,
}

impl ConflictMode {
    /// The mode's name in `WITH conflict_mode = '…'`.
    pub fn name(self) -> &'static str {
        match self {
            ConflictMode::Siblings => "siblings",
            ConflictMode::Lww => "lww",
        }
    }
}

/// What part of the primary key a column is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnKind {
    /// A partition key column.
    PartitionKey,
    /// A clustering column, in its order.
    Clustering(Order),
    /// A regular column.
    Regular,
}

/// A column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ColumnDefinition {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: CqlType,
    /// Its part in the primary key.
    pub kind: ColumnKind,
}

/// A table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDefinition {
    /// Its keyspace.
    pub keyspace: String,
    /// Its name.
    pub name: String,
    /// Its id: what its rows are stored under.
    pub id: TableId,
    /// The partition key columns in key order, then the clustering columns
    /// in key order, then the regular columns.
    pub columns: Vec<ColumnDefinition>,
    /// What concurrent writes become.
    pub conflict: ConflictMode,
    /// `WITH comment = '…'`.
    pub comment: String,
}

/// A definition that breaks a rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

/// Checks a keyspace, table or column name: 1 to [`MAX_NAME_CHARS`]
/// characters; keyspaces and tables only letters, digits and `_`.
pub fn check_name(what: &str, name: &str, word_only: bool) -> Result<(), SchemaError> {
    let length = name.chars().count();
    if length == 0 || length > MAX_NAME_CHARS {
        return Err(SchemaError(format!(
            "{what} name {name:?} must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if word_only && !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(SchemaError(format!(
            "{what} name {name:?} may hold only letters, digits and underscores"
        )));
    }
    Ok(())
}

impl KeyspaceDefinition {
    /// Checks the name and the replication factors.
    pub fn validate(&self) -> Result<(), SchemaError> {
        check_name("keyspace", &self.name, true)?;
        let factors: Vec<usize> = match &self.replication {
            Replication::Simple { factor } | Replication::RackAware { factor } => vec![*factor],
            Replication::PerDatacenter { factors } => {
                for datacenter in factors.keys() {
                    check_name("datacenter", datacenter, false)?;
                }
                factors.values().copied().collect()
            }
        };
        if factors.iter().all(|f| *f == 0) || factors.iter().any(|f| *f > MAX_REPLICATION_FACTOR) {
            return Err(SchemaError(format!(
                "keyspace {}: a replication factor must be 1 to {MAX_REPLICATION_FACTOR}",
                self.name
            )));
        }
        Ok(())
    }

    /// `CREATE KEYSPACE …` for `DESCRIBE`.
    pub fn to_cql(&self) -> String {
        format!(
            "CREATE KEYSPACE {} WITH replication = {};",
            quoted(&self.name),
            replication_cql(&self.replication)
        )
    }
}

/// A replication as CQL writes it: `{'class': 'SimpleStrategy', …}`.
pub fn replication_cql(replication: &Replication) -> String {
    let options = match replication {
        Replication::Simple { factor } => {
            format!("'class': 'SimpleStrategy', 'replication_factor': '{factor}'")
        }
        Replication::RackAware { factor } => {
            format!("'class': 'NetworkTopologyStrategy', 'replication_factor': '{factor}'")
        }
        Replication::PerDatacenter { factors } => {
            let mut text = "'class': 'NetworkTopologyStrategy'".to_string();
            for (datacenter, factor) in factors {
                write!(text, ", '{datacenter}': '{factor}'").expect("a String");
            }
            text
        }
    };
    format!("{{{options}}}")
}

impl TableDefinition {
    /// The partition key columns, in key order.
    pub fn partition_key(&self) -> impl Iterator<Item = &ColumnDefinition> {
        self.columns
            .iter()
            .filter(|c| c.kind == ColumnKind::PartitionKey)
    }

    /// The clustering columns, in key order.
    pub fn clustering(&self) -> impl Iterator<Item = &ColumnDefinition> {
        self.columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Clustering(_)))
    }

    /// The regular columns.
    pub fn regular(&self) -> impl Iterator<Item = &ColumnDefinition> {
        self.columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Regular)
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDefinition> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Checks names, that the key columns come first and in order, that
    /// there is a partition key, and that no column is named twice.
    pub fn validate(&self) -> Result<(), SchemaError> {
        check_name("keyspace", &self.keyspace, true)?;
        check_name("table", &self.name, true)?;
        if self.columns.len() > MAX_COLUMNS {
            return Err(SchemaError(format!(
                "table {}: at most {MAX_COLUMNS} columns",
                self.name
            )));
        }
        let rank = |kind: &ColumnKind| match kind {
            ColumnKind::PartitionKey => 0,
            ColumnKind::Clustering(_) => 1,
            ColumnKind::Regular => 2,
        };
        if !self.columns.is_sorted_by_key(|c| rank(&c.kind)) {
            return Err(SchemaError(format!(
                "table {}: key columns must come first",
                self.name
            )));
        }
        if self.comment.len() > MAX_COMMENT_BYTES {
            return Err(SchemaError(format!(
                "table {}: a comment is at most {MAX_COMMENT_BYTES} bytes",
                self.name
            )));
        }
        if self.partition_key().next().is_none() {
            return Err(SchemaError(format!(
                "table {} has no partition key",
                self.name
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for column in &self.columns {
            check_name("column", &column.name, false)?;
            if !seen.insert(column.name.as_str()) {
                return Err(SchemaError(format!(
                    "table {}: column {} is defined twice",
                    self.name, column.name
                )));
            }
        }
        Ok(())
    }

    /// `CREATE TABLE …` for `DESCRIBE`, as cqlsh shows it.
    pub fn to_cql(&self) -> String {
        let mut text = format!(
            "CREATE TABLE {}.{} (\n",
            quoted(&self.keyspace),
            quoted(&self.name)
        );
        for column in &self.columns {
            writeln!(text, "    {} {},", quoted(&column.name), column.ty).expect("a String");
        }
        let names = |columns: Vec<&ColumnDefinition>| {
            columns
                .iter()
                .map(|c| quoted(&c.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let partition: Vec<&ColumnDefinition> = self.partition_key().collect();
        let clustering: Vec<&ColumnDefinition> = self.clustering().collect();
        let mut key = if partition.len() == 1 {
            names(partition)
        } else {
            format!("({})", names(partition))
        };
        if !clustering.is_empty() {
            write!(key, ", {}", names(clustering.clone())).expect("a String");
        }
        write!(text, "    PRIMARY KEY ({key})\n)").expect("a String");
        let mut options = Vec::new();
        if !clustering.is_empty() {
            let orders: Vec<String> = clustering
                .iter()
                .map(|c| {
                    let order = match c.kind {
                        ColumnKind::Clustering(Order::Desc) => "DESC",
                        _ => "ASC",
                    };
                    format!("{} {order}", quoted(&c.name))
                })
                .collect();
            options.push(format!("CLUSTERING ORDER BY ({})", orders.join(", ")));
        }
        options.push(format!("conflict_mode = '{}'", self.conflict.name()));
        options.push(format!("comment = '{}'", self.comment.replace('\'', "''")));
        write!(text, " WITH {};", options.join("\n    AND ")).expect("a String");
        text
    }
}

/// Words that cannot be unquoted names (Cassandra's reserved keywords).
pub const RESERVED_WORDS: &[&str] = &[
    "add",
    "allow",
    "alter",
    "and",
    "apply",
    "asc",
    "authorize",
    "batch",
    "begin",
    "by",
    "columnfamily",
    "create",
    "delete",
    "desc",
    "describe",
    "drop",
    "entries",
    "execute",
    "from",
    "full",
    "grant",
    "if",
    "in",
    "index",
    "infinity",
    "insert",
    "into",
    "keyspace",
    "limit",
    "modify",
    "nan",
    "norecursive",
    "not",
    "null",
    "of",
    "on",
    "or",
    "order",
    "primary",
    "rename",
    "replace",
    "revoke",
    "schema",
    "select",
    "set",
    "table",
    "to",
    "token",
    "truncate",
    "unlogged",
    "update",
    "use",
    "using",
    "view",
    "where",
    "with",
];

/// Whether `word` is reserved (and so must be quoted to be a name).
pub fn is_reserved(word: &str) -> bool {
    RESERVED_WORDS.contains(&word.to_ascii_lowercase().as_str())
}

/// A name as CQL must write it: quoted unless it is lowercase letters,
/// digits and `_`, starting with a letter, and not a reserved word.
pub fn quoted(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !is_reserved(name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> TableDefinition {
        let column = |name: &str, ty, kind| ColumnDefinition {
            name: name.into(),
            ty,
            kind,
        };
        TableDefinition {
            keyspace: "shop".into(),
            name: "events".into(),
            id: TableId(7),
            columns: vec![
                column("device", CqlType::Uuid, ColumnKind::PartitionKey),
                column("day", CqlType::Date, ColumnKind::PartitionKey),
                column(
                    "at",
                    CqlType::Timestamp,
                    ColumnKind::Clustering(Order::Desc),
                ),
                column("Reading", CqlType::Double, ColumnKind::Regular),
            ],
            conflict: ConflictMode::Lww,
            comment: "it's here".into(),
        }
    }

    #[test]
    fn tables_describe_themselves_in_cql() {
        assert_eq!(
            events().to_cql(),
            "CREATE TABLE shop.events (\n    device uuid,\n    day date,\n    at timestamp,\n    \
             \"Reading\" double,\n    PRIMARY KEY ((device, day), at)\n) WITH CLUSTERING ORDER BY \
             (at DESC)\n    AND conflict_mode = 'lww'\n    AND comment = 'it''s here';"
        );
        let keyspace = KeyspaceDefinition {
            name: "shop".into(),
            replication: Replication::PerDatacenter {
                factors: [("dc1".to_string(), 3), ("dc2".to_string(), 2)].into(),
            },
        };
        assert_eq!(
            keyspace.to_cql(),
            "CREATE KEYSPACE shop WITH replication = {'class': 'NetworkTopologyStrategy', \
             'dc1': '3', 'dc2': '2'};"
        );
    }

    #[test]
    fn names_are_quoted_when_cql_would_not_read_them_back_as_names() {
        assert_eq!(quoted("reading"), "reading");
        assert_eq!(quoted("Reading"), "\"Reading\"");
        assert_eq!(quoted("select"), "\"select\"");
        assert_eq!(quoted("token"), "\"token\"");
        assert_eq!(quoted("say \"hi\""), "\"say \"\"hi\"\"\"");
        // Keywords that Cassandra does not reserve stay plain.
        assert_eq!(quoted("timestamp"), "timestamp");
    }

    #[test]
    fn definitions_from_the_wire_are_checked() {
        assert_eq!(events().validate(), Ok(()));
        let mut twice = events();
        twice.columns[3].name = "day".into();
        assert_eq!(
            twice.validate().unwrap_err().to_string(),
            "table events: column day is defined twice"
        );
        let mut unordered = events();
        unordered.columns.swap(0, 3);
        assert!(unordered.validate().is_err());
        let mut keyless = events();
        keyless.columns.retain(|c| c.kind == ColumnKind::Regular);
        assert_eq!(
            keyless.validate().unwrap_err().to_string(),
            "table events has no partition key"
        );
        let mut odd = events();
        odd.name = "no spaces".into();
        assert!(odd.validate().is_err());
        let keyspace = |factor| KeyspaceDefinition {
            name: "ks".into(),
            replication: Replication::Simple { factor },
        };
        assert!(keyspace(3).validate().is_ok());
        assert!(keyspace(0).validate().is_err());
        assert!(keyspace(1000).validate().is_err());
    }
}
