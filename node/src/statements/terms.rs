//! Terms as values: literals coerced to a column's type, bind markers
//! checked against it, and the few functions CQL users reach for
//! (`now()`, `uuid()`, `currentTimestamp()`, `toTimestamp(now())`).

use std::sync::OnceLock;

use ringdb_cql::Position;
use ringdb_cql::ast::{BindMarker, Term, TermKind};
use ringdb_cql::literal_value;
use ringdb_proto::{CqlType, RequestError, Value};

/// What terms are evaluated with: the statement's bound values and the
/// coordinator's clock.
pub(super) struct Bindings<'a> {
    pub(super) values: &'a [Value],
    pub(super) now_micros: i64,
}

/// An error at `position` of the statement.
pub(super) fn invalid_at(position: Position, message: impl Into<String>) -> RequestError {
    RequestError::InvalidStatement {
        line: position.line,
        column: position.column,
        message: message.into(),
    }
}

impl Bindings<'_> {
    /// The value of `term` for column `what` of type `ty`.
    pub(super) fn value(
        &self,
        term: &Term,
        ty: CqlType,
        what: &str,
    ) -> Result<Value, RequestError> {
        let at = term.position;
        match &term.kind {
            TermKind::Literal(literal) => {
                literal_value(literal, ty).map_err(|e| invalid_at(at, format!("{what}: {e}")))
            }
            TermKind::Bind(BindMarker::Anonymous(index)) => {
                let value = self.values.get(*index).cloned().ok_or_else(|| {
                    invalid_at(
                        at,
                        format!(
                            "bind marker {} has no value: {} given",
                            index + 1,
                            self.values.len()
                        ),
                    )
                })?;
                value
                    .checked(ty)
                    .map_err(|e| invalid_at(at, format!("{what}: {e}")))
            }
            TermKind::Bind(BindMarker::Named(name)) => Err(invalid_at(
                at,
                format!("named bind marker :{name}: bind values by position (?)"),
            )),
            TermKind::Function { name, arguments } => self.function(name, arguments, ty, at),
            TermKind::Map(_) => Err(invalid_at(
                at,
                format!("{what}: a map is not a {ty} (ringdb does not support collections)"),
            )),
        }
    }

    fn function(
        &self,
        name: &str,
        arguments: &[Term],
        ty: CqlType,
        at: Position,
    ) -> Result<Value, RequestError> {
        let is_now = |term: &Term| {
            matches!(&term.kind, TermKind::Function { name, arguments }
                if name == "now" && arguments.is_empty())
        };
        let millis = self.now_micros.div_euclid(1000);
        match (name, arguments, ty) {
            ("now", [], CqlType::TimeUuid) => Ok(Value::Uuid(self.time_uuid())),
            ("uuid", [], CqlType::Uuid) => Ok(Value::Uuid(uuid::Uuid::new_v4())),
            ("currenttimestamp", [], CqlType::Timestamp) => Ok(Value::Timestamp(millis)),
            ("totimestamp", [argument], CqlType::Timestamp) if is_now(argument) => {
                Ok(Value::Timestamp(millis))
            }
            _ => Err(invalid_at(
                at,
                format!(
                    "{name}() does not give a {ty} here; ringdb knows now() (timeuuid), \
                     uuid(), currentTimestamp() and toTimestamp(now())"
                ),
            )),
        }
    }

    /// A version 1 UUID at the coordinator's time.
    fn time_uuid(&self) -> uuid::Uuid {
        static CONTEXT: OnceLock<uuid::timestamp::context::ContextV1> = OnceLock::new();
        static NODE: OnceLock<[u8; 6]> = OnceLock::new();
        let context = CONTEXT.get_or_init(uuid::timestamp::context::ContextV1::new_random);
        let node = NODE.get_or_init(rand::random);
        let micros = self.now_micros.max(0) as u64;
        let timestamp = uuid::Timestamp::from_unix(
            context,
            micros / 1_000_000,
            (micros % 1_000_000) as u32 * 1000,
        );
        uuid::Uuid::new_v1(timestamp, node)
    }
}
