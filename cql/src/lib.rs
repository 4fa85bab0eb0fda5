//! # ringdb-cql: the CQL that ringdb speaks
//!
//! Cassandra users query with CQL, so ringdb's shell (and, later,
//! Cassandra's own drivers over the native protocol) speak it too. This
//! crate turns CQL text into statements ([`ast::Statement`]); it does no
//! I/O and knows no schema. The node's statement engine checks the
//! statements against the schema and executes them.
//!
//! ## The subset
//!
//! Keyspaces and tables (`CREATE`/`ALTER`/`DROP KEYSPACE|TABLE`, with
//! `PRIMARY KEY ((partition columns), clustering columns)` and
//! `WITH CLUSTERING ORDER BY`), `USE`, `INSERT`, `UPDATE`, `DELETE` (of rows,
//! columns, clustering ranges), `SELECT` (with clustering restrictions,
//! `IN`, `ORDER BY`, `LIMIT`, `PER PARTITION LIMIT`, `token()`, `COUNT(*)`),
//! `BATCH` and `DESCRIBE`. Values can be bind markers (`?`, `:name`) for
//! prepared statements.
//!
//! ## Where we differ from Cassandra
//!
//! What ringdb does not do is refused by name, where it starts, instead of
//! failing as a syntax error that would send the user looking for a typo:
//! lightweight transactions (`IF`), secondary indexes, materialized views,
//! user-defined types, functions and aggregates, counters, collections,
//! `ALLOW FILTERING`, `TRUNCATE`, JSON, roles. Errors give the line and
//! column (from 1) and what was expected there, like cqlsh's
//! `line 1:9 no viable alternative`, and [`ParseError::show`] points at it.
//!
//! ```
//! use ringdb_cql::{ast::Statement, parse_statement};
//!
//! let statement = parse_statement("SELECT * FROM ks.events WHERE day = ? LIMIT 10").unwrap();
//! assert!(matches!(statement, Statement::Select(_)));
//!
//! let error = parse_statement("SELECT * FORM events").unwrap_err();
//! assert_eq!(error.to_string(), "line 1:10: expected FROM, found 'FORM'");
//!
//! let error = parse_statement("UPDATE t SET v = 1 WHERE k = 0 IF v = 0").unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     "line 1:32: ringdb does not support lightweight transactions (IF conditions)"
//! );
//! ```

pub mod ast;
mod lexer;
mod parser;
mod values;

pub use lexer::{Position, Token, TokenKind, tokenize};
pub use parser::{MAX_STATEMENT_BYTES, is_reserved, parse, parse_statement};
pub use values::{LiteralError, literal_value};

/// Why CQL text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not CQL: what was expected where.
    #[error("line {position}: {message}")]
    Syntax {
        /// Where.
        position: Position,
        /// What is wrong.
        message: String,
    },
    /// CQL, but a feature ringdb does not have.
    #[error("line {position}: ringdb does not support {feature}")]
    Unsupported {
        /// Where the feature starts.
        position: Position,
        /// The feature, named for a user (plural: "secondary indexes").
        feature: String,
    },
}

impl ParseError {
    /// Where the error is.
    pub fn position(&self) -> Position {
        match self {
            ParseError::Syntax { position, .. } | ParseError::Unsupported { position, .. } => {
                *position
            }
        }
    }

    /// The error, then the line of `text` it is on with a caret under the
    /// column, for a terminal.
    pub fn show(&self, text: &str) -> String {
        let position = self.position();
        let line = text.lines().nth(position.line as usize - 1).unwrap_or("");
        let caret = " ".repeat(position.column.saturating_sub(1) as usize);
        format!("{self}\n  {line}\n  {caret}^")
    }
}

/// Where statements end in text typed so far: the complete statements
/// (each with its `;`), and the rest, which is not yet one (the shell
/// waits for more lines). A `;` inside a string, a quoted name or a
/// comment does not end a statement; unterminated ones make the rest
/// incomplete.
pub fn split_statements(text: &str) -> (Vec<&str>, &str) {
    let mut complete = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let rest = &text[i..];
        let skip_to = |needle: &str, from: usize| text[from..].find(needle).map(|at| from + at);
        let end = match c {
            '\'' | '"' => {
                let mut at = i + 1;
                loop {
                    match text[at..].find(c) {
                        None => return (complete, &text[start..]),
                        Some(found) if text[at + found + 1..].starts_with(c) => at += found + 2,
                        Some(found) => break at + found + 1,
                    }
                }
            }
            _ if rest.starts_with("$$") => match skip_to("$$", i + 2) {
                Some(at) => at + 2,
                None => return (complete, &text[start..]),
            },
            _ if rest.starts_with("--") || rest.starts_with("//") => {
                skip_to("\n", i).unwrap_or(text.len())
            }
            _ if rest.starts_with("/*") => match skip_to("*/", i + 2) {
                Some(at) => at + 2,
                None => return (complete, &text[start..]),
            },
            ';' => {
                complete.push(&text[start..=i]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        while chars.peek().is_some_and(|(j, _)| *j < end) {
            chars.next();
        }
    }
    (complete, &text[start..])
}

/// The keywords a completer offers at the start of a statement and after
/// the common clauses.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ALL",
    "ALTER",
    "AND",
    "APPLY",
    "AS",
    "ASC",
    "BATCH",
    "BEGIN",
    "BY",
    "CLUSTER",
    "CLUSTERING",
    "COUNT",
    "CREATE",
    "DELETE",
    "DESC",
    "DESCRIBE",
    "DISTINCT",
    "DROP",
    "EXISTS",
    "FROM",
    "IF",
    "IN",
    "INSERT",
    "INTO",
    "KEY",
    "KEYSPACE",
    "KEYSPACES",
    "LIMIT",
    "NOT",
    "ORDER",
    "PARTITION",
    "PER",
    "PRIMARY",
    "SELECT",
    "SET",
    "TABLE",
    "TABLES",
    "TIMESTAMP",
    "TOKEN",
    "UNLOGGED",
    "UPDATE",
    "USE",
    "USING",
    "VALUES",
    "WHERE",
    "WITH",
    "WRITETIME",
];

#[cfg(test)]
mod tests;
