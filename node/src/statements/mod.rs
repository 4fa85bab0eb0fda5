//! The statement engine: CQL statements, parsed here and executed against
//! the schema and the data.
//!
//! Every door reaches this one engine: the shell and the typed Rust client
//! send [`Query`] over the client protocol (and, later, Cassandra's
//! drivers will over the native protocol). A statement is parsed
//! (`ringdb-cql`), checked against the schema this node holds, and run:
//! `USE` answers the keyspace the session switches to; DDL goes to the
//! schema service, which stores and spreads it; `DESCRIBE` is answered
//! from the schema.
//!
//! A statement naming a keyspace or table this node has not heard of yet
//! (it was just created through another node) waits for the schema to
//! arrive, briefly, before it is refused as unknown.

mod apply;
mod describe;
mod prepared;
mod restrict;
mod select;
mod terms;
mod write;

use std::sync::Arc;
use std::time::Duration;

use ringdb_cql::ParseError;
use ringdb_cql::ast::TableName;
use ringdb_cql::ast::{Describe, Statement};
use ringdb_proto::{MAX_SESSION_CONTEXTS, Query, QueryResult, RequestError, TableDefinition};
use tokio::time::Instant;

use crate::coordinator::Coordinator;
use crate::replica::Replica;
use crate::schema::ddl::DdlError;
use crate::schema::{SchemaFailure, Schemas};
pub(crate) use prepared::PreparedCache;
pub(crate) use write::check_timestamp;

/// How long a statement naming an unknown keyspace or table waits for the
/// schema to bring it.
const SCHEMA_WAIT: Duration = Duration::from_secs(2);

/// The statement engine.
pub(crate) struct Statements {
    pub(crate) replica: Arc<Replica>,
    pub(crate) schemas: Arc<Schemas>,
    pub(crate) coordinator: Arc<Coordinator>,
    pub(crate) prepared: PreparedCache,
}

impl Statements {
    /// Runs `query`'s statement.
    pub(crate) async fn execute(
        &self,
        query: Query,
        deadline: Instant,
    ) -> Result<QueryResult, RequestError> {
        if query.contexts.len() > MAX_SESSION_CONTEXTS {
            return Err(RequestError::invalid(format!(
                "a statement carries at most {MAX_SESSION_CONTEXTS} row contexts"
            )));
        }
        let kept = self.statement_of(query.prepared, &query.cql, query.keyspace.as_deref())?;
        // A prepared statement runs in the keyspace it was prepared in.
        let query = Query {
            keyspace: kept.keyspace.clone(),
            ..query
        };
        let keyspace = kept.keyspace.as_deref();
        let statement = &kept.statement;
        match statement {
            Statement::Use { keyspace } => {
                self.wait_for_keyspace(keyspace).await?;
                Ok(QueryResult::SetKeyspace(keyspace.clone()))
            }
            Statement::CreateKeyspace { .. }
            | Statement::AlterKeyspace { .. }
            | Statement::DropKeyspace { .. }
            | Statement::CreateTable(_)
            | Statement::AlterTable { .. }
            | Statement::DropTable { .. } => self.ddl(statement, keyspace, deadline).await,
            Statement::Describe(describe) => self.describe(describe, keyspace).await,
            Statement::Select(select) => self.select(select, &query, deadline).await,
            Statement::Insert(_)
            | Statement::Update(_)
            | Statement::Delete(_)
            | Statement::Batch(_) => self.write(statement, &query, deadline).await,
        }
    }

    /// The table `name` names (in the session's keyspace when it names
    /// none), waiting for the schema to bring it at most [`SCHEMA_WAIT`].
    async fn table(
        &self,
        name: &TableName,
        keyspace: Option<&str>,
    ) -> Result<TableDefinition, RequestError> {
        let Some(keyspace) = name.keyspace.as_deref().or(keyspace) else {
            return Err(ddl_error(DdlError::NoKeyspace));
        };
        match self
            .schemas
            .wait_for_table(keyspace, &name.name, SCHEMA_WAIT)
            .await
        {
            Some(table) => Ok(table),
            None if self.schemas.current().keyspace(keyspace).is_none() => {
                Err(ddl_error(DdlError::UnknownKeyspace(keyspace.to_string())))
            }
            None => Err(ddl_error(DdlError::UnknownTable {
                keyspace: keyspace.to_string(),
                table: name.name.clone(),
            })),
        }
    }

    async fn ddl(
        &self,
        statement: &Statement,
        keyspace: Option<&str>,
        deadline: Instant,
    ) -> Result<QueryResult, RequestError> {
        // A keyspace just created elsewhere may not have arrived yet.
        if let Some(name) = ddl_keyspace(statement, keyspace) {
            // Still unknown after the wait, the planner refuses it by name.
            let _ = self.wait_for_keyspace(&name).await;
        }
        let version = self
            .schemas
            .execute(statement, keyspace, deadline)
            .await
            .map_err(|failure| match failure {
                SchemaFailure::Refused(error) => ddl_error(error),
                other => self.replica.server_error(other.to_string()),
            })?;
        Ok(QueryResult::SchemaChange {
            change: change_of(statement, keyspace),
            version: version.map(|v| v.to_string()),
        })
    }

    async fn describe(
        &self,
        describe: &Describe,
        keyspace: Option<&str>,
    ) -> Result<QueryResult, RequestError> {
        let schema = self.schemas.current();
        let text = match describe {
            Describe::Cluster => describe::cluster(&self.replica, &schema),
            _ => describe::schema(&schema, describe, keyspace).map_err(ddl_error)?,
        };
        Ok(QueryResult::Description(text))
    }

    /// Waits for keyspace `name` to exist here, at most [`SCHEMA_WAIT`].
    async fn wait_for_keyspace(&self, name: &str) -> Result<(), RequestError> {
        if self.schemas.wait_for_keyspace(name, SCHEMA_WAIT).await {
            Ok(())
        } else {
            Err(ddl_error(DdlError::UnknownKeyspace(name.to_string())))
        }
    }
}

/// The keyspace a DDL statement needs to exist (to wait for it).
fn ddl_keyspace(statement: &Statement, keyspace: Option<&str>) -> Option<String> {
    let table = match statement {
        Statement::CreateTable(create) => &create.table,
        Statement::AlterTable { table, .. } => table,
        Statement::AlterKeyspace { name, .. } => return Some(name.clone()),
        _ => return None,
    };
    table.keyspace.clone().or(keyspace.map(str::to_string))
}

/// What a DDL statement changes, as Cassandra's schema change events say.
fn change_of(statement: &Statement, keyspace: Option<&str>) -> String {
    let table = |name: &ringdb_cql::ast::TableName| {
        let keyspace = name.keyspace.as_deref().or(keyspace).unwrap_or("?");
        format!("{keyspace}.{}", name.name)
    };
    match statement {
        Statement::CreateKeyspace { name, .. } => format!("CREATED KEYSPACE {name}"),
        Statement::AlterKeyspace { name, .. } => format!("UPDATED KEYSPACE {name}"),
        Statement::DropKeyspace { name, .. } => format!("DROPPED KEYSPACE {name}"),
        Statement::CreateTable(create) => format!("CREATED TABLE {}", table(&create.table)),
        Statement::AlterTable { table: name, .. } => format!("UPDATED TABLE {}", table(name)),
        Statement::DropTable { table: name, .. } => format!("DROPPED TABLE {}", table(name)),
        _ => String::new(),
    }
}

/// A parse error as the client protocol carries it.
fn syntax_error(error: ParseError) -> RequestError {
    let position = error.position();
    let message = match error {
        ParseError::Syntax { message, .. } => message,
        ParseError::Unsupported { feature, .. } => format!("ringdb does not support {feature}"),
    };
    RequestError::InvalidStatement {
        line: position.line,
        column: position.column,
        message,
    }
}

/// A refused DDL statement as the client protocol carries it.
fn ddl_error(error: DdlError) -> RequestError {
    match error {
        DdlError::AlreadyExists { what } => RequestError::AlreadyExists { what },
        DdlError::Invalid { position, reason } => RequestError::InvalidStatement {
            line: position.line,
            column: position.column,
            message: reason,
        },
        other => RequestError::invalid(other.to_string()),
    }
}
