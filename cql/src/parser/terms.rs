//! Names, types, terms and `WITH` properties.

use std::str::FromStr;

use ringdb_proto::CqlType;

use super::{MAX_TERM_DEPTH, Parser, is_reserved};
use crate::ParseError;
use crate::ast::{BindMarker, Literal, Property, TableName, Term, TermKind};
use crate::lexer::{Position, TokenKind};

/// Type names that are CQL but not ringdb column types, and what to call
/// them when refusing.
const UNSUPPORTED_TYPES: &[(&str, &str)] = &[
    ("counter", "counter columns"),
    ("list", "collection types (list, set, map)"),
    ("set", "collection types (list, set, map)"),
    ("map", "collection types (list, set, map)"),
    ("frozen", "frozen types"),
    ("tuple", "tuple types"),
    ("duration", "the duration type"),
    ("vector", "the vector type"),
];

impl Parser {
    /// A name: an unquoted identifier (lowercased; not a reserved word)
    /// or a quoted one (as written).
    pub(super) fn name(&mut self, what: &str) -> Result<(String, Position), ParseError> {
        let position = self.position();
        match &self.peek().kind {
            TokenKind::Identifier(word) if !is_reserved(word) => {
                let name = word.to_ascii_lowercase();
                self.advance();
                Ok((name, position))
            }
            TokenKind::QuotedIdentifier(name) => {
                let name = name.clone();
                self.advance();
                Ok((name, position))
            }
            _ => Err(self.expected(what)),
        }
    }

    /// `[keyspace.]table`.
    pub(super) fn table_name(&mut self) -> Result<TableName, ParseError> {
        let (first, position) = self.name("a table name")?;
        if self.accept_symbol(".") {
            let (name, _) = self.name("a table name")?;
            return Ok(TableName {
                keyspace: Some(first),
                name,
                position,
            });
        }
        Ok(TableName {
            keyspace: None,
            name: first,
            position,
        })
    }

    /// A column type.
    pub(super) fn column_type(&mut self) -> Result<CqlType, ParseError> {
        let position = self.position();
        let word = match &self.peek().kind {
            TokenKind::Identifier(word) => word.to_ascii_lowercase(),
            _ => return Err(self.expected("a type")),
        };
        if let Some((_, feature)) = UNSUPPORTED_TYPES.iter().find(|(name, _)| *name == word) {
            return Err(Self::unsupported(position, feature));
        }
        let ty = CqlType::from_str(&word).map_err(|error| ParseError::Syntax {
            position,
            message: error.to_string(),
        })?;
        self.advance();
        Ok(ty)
    }

    /// A value: a constant, a bind marker, a function call or a map.
    pub(super) fn term(&mut self) -> Result<Term, ParseError> {
        if self.depth >= MAX_TERM_DEPTH {
            return Err(ParseError::Syntax {
                position: self.position(),
                message: format!("values nested more than {MAX_TERM_DEPTH} deep"),
            });
        }
        self.depth += 1;
        let term = self.term_here();
        self.depth -= 1;
        term
    }

    fn term_here(&mut self) -> Result<Term, ParseError> {
        let position = self.position();
        let token = self.peek().kind.clone();
        let kind = match token {
            TokenKind::String(text) => TermKind::Literal(Literal::String(text)),
            TokenKind::Integer(digits) => TermKind::Literal(Literal::Integer(digits)),
            TokenKind::Float(digits) => TermKind::Literal(Literal::Float(digits)),
            TokenKind::Uuid(uuid) => TermKind::Literal(Literal::Uuid(uuid)),
            TokenKind::Blob(bytes) => TermKind::Literal(Literal::Blob(bytes)),
            TokenKind::Symbol("-") => return self.negative(),
            TokenKind::Symbol("?") => {
                self.markers += 1;
                TermKind::Bind(BindMarker::Anonymous(self.markers - 1))
            }
            TokenKind::Symbol(":") => {
                self.advance();
                let (name, _) = self.name("a bind marker name")?;
                return Ok(Term {
                    kind: TermKind::Bind(BindMarker::Named(name)),
                    position,
                });
            }
            TokenKind::Symbol("{") => return self.map(),
            TokenKind::Symbol("[") => {
                return Err(Self::unsupported(
                    position,
                    "collection types (list, set, map)",
                ));
            }
            TokenKind::Symbol("(") => return Err(Self::unsupported(position, "tuple types")),
            TokenKind::Identifier(word) => return self.word_term(&word),
            _ => return Err(self.expected("a value")),
        };
        self.advance();
        Ok(Term { kind, position })
    }

    /// `-` before a number or `Infinity`.
    fn negative(&mut self) -> Result<Term, ParseError> {
        let position = self.position();
        self.advance();
        let literal = match self.peek().kind.clone() {
            TokenKind::Integer(digits) => Literal::Integer(format!("-{digits}")),
            TokenKind::Float(digits) => Literal::Float(format!("-{digits}")),
            TokenKind::Identifier(word) if word.eq_ignore_ascii_case("infinity") => {
                Literal::Infinity { negative: true }
            }
            _ => return Err(self.expected("a number after '-'")),
        };
        self.advance();
        Ok(Term {
            kind: TermKind::Literal(literal),
            position,
        })
    }

    /// A term that starts with a word: a keyword constant or a function call.
    fn word_term(&mut self, word: &str) -> Result<Term, ParseError> {
        let position = self.position();
        let literal = match word.to_ascii_lowercase().as_str() {
            "true" => Some(Literal::Boolean(true)),
            "false" => Some(Literal::Boolean(false)),
            "null" => Some(Literal::Null),
            "nan" => Some(Literal::NaN),
            "infinity" => Some(Literal::Infinity { negative: false }),
            _ => None,
        };
        if let Some(literal) = literal {
            self.advance();
            return Ok(Term {
                kind: TermKind::Literal(literal),
                position,
            });
        }
        if !matches!(self.peek_at(1).kind, TokenKind::Symbol("(")) {
            return Err(self.expected("a value"));
        }
        let name = word.to_ascii_lowercase();
        self.advance();
        self.expect_symbol("(")?;
        let mut arguments = Vec::new();
        if !self.accept_symbol(")") {
            arguments = self.comma_separated(Parser::term)?;
            self.expect_symbol(")")?;
        }
        Ok(Term {
            kind: TermKind::Function { name, arguments },
            position,
        })
    }

    /// `{key: value, …}`; `{a, b}` is a set, which ringdb does not have.
    fn map(&mut self) -> Result<Term, ParseError> {
        let position = self.position();
        self.expect_symbol("{")?;
        let mut entries = Vec::new();
        if !self.accept_symbol("}") {
            loop {
                let key = self.term()?;
                if !self.is_symbol(":") {
                    return Err(Self::unsupported(
                        position,
                        "collection types (list, set, map)",
                    ));
                }
                self.advance();
                entries.push((key, self.term()?));
                if !self.accept_symbol(",") {
                    break;
                }
            }
            self.expect_symbol("}")?;
        }
        Ok(Term {
            kind: TermKind::Map(entries),
            position,
        })
    }

    /// `name = value [AND name = value …]` after `WITH`.
    pub(super) fn properties(&mut self) -> Result<Vec<Property>, ParseError> {
        let mut properties = Vec::new();
        loop {
            let position = self.position();
            let name = match &self.peek().kind {
                TokenKind::Identifier(word) => word.to_ascii_lowercase(),
                _ => return Err(self.expected("a property name")),
            };
            self.advance();
            self.expect_symbol("=")?;
            let value = self.term()?;
            properties.push(Property {
                name,
                value,
                position,
            });
            if !self.accept_keyword("and") {
                return Ok(properties);
            }
        }
    }

    /// `IF NOT EXISTS`, if it is next.
    pub(super) fn if_not_exists(&mut self) -> bool {
        self.accept_keywords(&["if", "not", "exists"])
    }

    /// `IF EXISTS`, if it is next.
    pub(super) fn if_exists(&mut self) -> bool {
        self.accept_keywords(&["if", "exists"])
    }
}
