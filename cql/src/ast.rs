//! The statements the parser produces: what was written, checked for
//! syntax only. Names are normalized (unquoted names lowercased, as
//! Cassandra does); whether a table or column exists, and whether a value
//! fits its column, is for the statement engine, which knows the schema.

use ringdb_proto::{CqlType, Order};
use uuid::Uuid;

use crate::Position;

/// A statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    /// `USE keyspace`.
    Use {
        /// The keyspace.
        keyspace: String,
    },
    /// `CREATE KEYSPACE [IF NOT EXISTS] name WITH …`.
    CreateKeyspace {
        /// The keyspace.
        name: String,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// `replication = {…}` and the other properties.
        properties: Vec<Property>,
    },
    /// `ALTER KEYSPACE name WITH …`.
    AlterKeyspace {
        /// The keyspace.
        name: String,
        /// The properties to change.
        properties: Vec<Property>,
    },
    /// `DROP KEYSPACE [IF EXISTS] name`.
    DropKeyspace {
        /// The keyspace.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `CREATE TABLE`.
    CreateTable(CreateTable),
    /// `ALTER TABLE name ADD|DROP|WITH …`.
    AlterTable {
        /// The table.
        table: TableName,
        /// What changes.
        change: TableChange,
    },
    /// `DROP TABLE [IF EXISTS] name`.
    DropTable {
        /// The table.
        table: TableName,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `INSERT INTO`.
    Insert(Insert),
    /// `UPDATE`.
    Update(Update),
    /// `DELETE`.
    Delete(Delete),
    /// `SELECT`.
    Select(Select),
    /// `BEGIN BATCH … APPLY BATCH`.
    Batch(Batch),
    /// `DESCRIBE …`.
    Describe(Describe),
}

/// A table's name, with its keyspace when one was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableName {
    /// The keyspace, or none for the session's current one.
    pub keyspace: Option<String>,
    /// The table.
    pub name: String,
    /// Where the name was written.
    pub position: Position,
}

/// `name = value` in a `WITH` clause.
#[derive(Clone, Debug, PartialEq)]
pub struct Property {
    /// The property's name, lowercased.
    pub name: String,
    /// Its value.
    pub value: Term,
    /// Where the name was written.
    pub position: Position,
}

/// `CREATE TABLE [IF NOT EXISTS] name (columns, PRIMARY KEY (…)) [WITH …]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateTable {
    /// The table.
    pub table: TableName,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// Every column, in the order written.
    pub columns: Vec<ColumnDefinition>,
    /// The partition key columns.
    pub partition_key: Vec<String>,
    /// The clustering columns, in order.
    pub clustering: Vec<String>,
    /// `WITH CLUSTERING ORDER BY (…)`: the order of the clustering columns
    /// named (the others are ascending).
    pub clustering_order: Vec<(String, Order)>,
    /// The other `WITH` properties.
    pub properties: Vec<Property>,
}

/// A column and its type.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDefinition {
    /// The column's name.
    pub name: String,
    /// Its type.
    pub ty: CqlType,
    /// Where the name was written.
    pub position: Position,
}

/// What `ALTER TABLE` changes.
#[derive(Clone, Debug, PartialEq)]
pub enum TableChange {
    /// `ADD column type[, …]`.
    Add(Vec<ColumnDefinition>),
    /// `DROP column[, …]`.
    Drop(Vec<String>),
    /// `WITH property = value …`.
    With(Vec<Property>),
}

/// `USING TIMESTAMP t AND TTL n`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Using {
    /// `TIMESTAMP`: microseconds since the epoch.
    pub timestamp: Option<Term>,
    /// `TTL`: seconds.
    pub ttl: Option<Term>,
}

/// `INSERT INTO table (columns) VALUES (values) [USING …]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Insert {
    /// The table.
    pub table: TableName,
    /// The columns.
    pub columns: Vec<String>,
    /// Their values, one for each.
    pub values: Vec<Term>,
    /// `USING`.
    pub using: Using,
}

/// `UPDATE table [USING …] SET column = value, … WHERE …`.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// The table.
    pub table: TableName,
    /// `USING`.
    pub using: Using,
    /// The columns set and their values.
    pub assignments: Vec<(String, Term)>,
    /// Which rows.
    pub selection: Vec<Relation>,
}

/// `DELETE [columns] FROM table [USING …] WHERE …`.
#[derive(Clone, Debug, PartialEq)]
pub struct Delete {
    /// The columns deleted; none: the rows.
    pub columns: Vec<String>,
    /// The table.
    pub table: TableName,
    /// `USING`.
    pub using: Using,
    /// Which rows.
    pub selection: Vec<Relation>,
}

/// `SELECT … FROM table [WHERE …] [ORDER BY …] [PER PARTITION LIMIT n] [LIMIT n]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Select {
    /// `DISTINCT`.
    pub distinct: bool,
    /// What is selected; empty: `*`.
    pub selectors: Vec<Selector>,
    /// The table.
    pub table: TableName,
    /// The restrictions, joined by `AND`.
    pub selection: Vec<Relation>,
    /// `ORDER BY`.
    pub order_by: Vec<(String, Order)>,
    /// `PER PARTITION LIMIT`.
    pub per_partition_limit: Option<Term>,
    /// `LIMIT`.
    pub limit: Option<Term>,
}

/// One thing a `SELECT` returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    /// What it is.
    pub kind: SelectorKind,
    /// `AS alias`.
    pub alias: Option<String>,
    /// Where it was written.
    pub position: Position,
}

/// What a selector selects.
#[derive(Clone, Debug, PartialEq)]
pub enum SelectorKind {
    /// A column.
    Column(String),
    /// `COUNT(*)` (or `COUNT(1)`).
    Count,
    /// `token(columns)`.
    Token(Vec<String>),
    /// `WRITETIME(column)`.
    WriteTime(String),
}

/// A restriction in a `WHERE` clause.
#[derive(Clone, Debug, PartialEq)]
pub struct Relation {
    /// What is restricted.
    pub subject: Subject,
    /// How.
    pub operator: Operator,
    /// To what.
    pub value: RelationValue,
    /// Where it was written.
    pub position: Position,
}

/// The left side of a relation.
#[derive(Clone, Debug, PartialEq)]
pub enum Subject {
    /// A column.
    Column(String),
    /// `(c1, c2, …)`: clustering columns compared as a tuple.
    Tuple(Vec<String>),
    /// `token(k1, …)`.
    Token(Vec<String>),
}

/// A relation's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `=`.
    Eq,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `IN`.
    In,
}

impl Operator {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Operator::Eq => "=",
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
            Operator::In => "IN",
        }
    }
}

/// The right side of a relation.
#[derive(Clone, Debug, PartialEq)]
pub enum RelationValue {
    /// One value (or a bind marker for the whole `IN` list).
    Term(Term),
    /// `IN (v1, v2, …)`.
    List(Vec<Term>),
    /// `(v1, v2)`, for a tuple subject.
    Tuple(Vec<Term>),
    /// `IN ((v1, v2), …)`, for a tuple subject.
    TupleList(Vec<Vec<Term>>),
}

/// `BEGIN [UNLOGGED] BATCH [USING …] statements APPLY BATCH`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `UNLOGGED` was written.
    pub unlogged: bool,
    /// `USING`, for every statement.
    pub using: Using,
    /// The inserts, updates and deletes.
    pub statements: Vec<Statement>,
}

/// What `DESCRIBE` shows.
#[derive(Clone, Debug, PartialEq)]
pub enum Describe {
    /// `DESCRIBE KEYSPACES`.
    Keyspaces,
    /// `DESCRIBE KEYSPACE [name]`: the current one when none is named.
    Keyspace(Option<String>),
    /// `DESCRIBE TABLES`.
    Tables,
    /// `DESCRIBE TABLE name`.
    Table(TableName),
    /// `DESCRIBE CLUSTER`.
    Cluster,
    /// `DESCRIBE name`: a keyspace or a table, whichever exists.
    Name(TableName),
}

/// A value written in a statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    /// What it is.
    pub kind: TermKind,
    /// Where it was written.
    pub position: Position,
}

/// What a term is.
#[derive(Clone, Debug, PartialEq)]
pub enum TermKind {
    /// A constant.
    Literal(Literal),
    /// `?` (the n-th, from 0) or `:name`: a value bound when executed.
    Bind(BindMarker),
    /// `name(args)`: `now()`, `uuid()`, `toTimestamp(now())`…
    Function {
        /// The function's name, lowercased.
        name: String,
        /// Its arguments.
        arguments: Vec<Term>,
    },
    /// `{key: value, …}`, for properties such as `replication`.
    Map(Vec<(Term, Term)>),
}

/// A bind marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindMarker {
    /// `?`: its index among the statement's markers.
    Anonymous(usize),
    /// `:name`.
    Named(String),
}

/// A constant.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean(bool),
    /// An integer, as written, with its sign.
    Integer(String),
    /// A float, as written, with its sign.
    Float(String),
    /// `NaN`.
    NaN,
    /// `Infinity` or `-Infinity`.
    Infinity {
        /// `-Infinity`.
        negative: bool,
    },
    /// A string.
    String(String),
    /// A UUID.
    Uuid(Uuid),
    /// A blob.
    Blob(Vec<u8>),
}
