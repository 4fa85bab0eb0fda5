//! Data statements: `SELECT`, `INSERT`, `UPDATE`, `DELETE`, `BATCH`.

use super::Parser;
use crate::ParseError;
use crate::ast::{
    Batch, Delete, Insert, Operator, Relation, RelationValue, Select, Selector, SelectorKind,
    Statement, Subject, Term, Update, Using,
};
use crate::lexer::TokenKind;

const LWT: &str = "lightweight transactions (IF conditions)";
const COLLECTIONS: &str = "collection types (list, set, map)";

impl Parser {
    pub(super) fn select(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("select")?;
        if self.is_keyword("json") {
            return Err(Self::unsupported(self.position(), "SELECT JSON"));
        }
        let distinct = self.accept_keyword("distinct");
        let selectors = if self.accept_symbol("*") {
            Vec::new()
        } else {
            self.comma_separated(Parser::selector)?
        };
        self.expect_keyword("from")?;
        let table = self.table_name()?;
        let selection = self.where_clause()?;
        let position = self.position();
        if self.accept_keywords(&["group", "by"]) {
            return Err(Self::unsupported(position, "GROUP BY"));
        }
        let mut order_by = Vec::new();
        if self.accept_keywords(&["order", "by"]) {
            order_by = self.comma_separated(Parser::ordered_column)?;
        }
        let mut per_partition_limit = None;
        if self.accept_keywords(&["per", "partition", "limit"]) {
            per_partition_limit = Some(self.term()?);
        }
        let mut limit = None;
        if self.accept_keyword("limit") {
            limit = Some(self.term()?);
        }
        let position = self.position();
        if self.accept_keywords(&["allow", "filtering"]) {
            return Err(Self::unsupported(
                position,
                "ALLOW FILTERING (queries that scan and filter)",
            ));
        }
        Ok(Statement::Select(Select {
            distinct,
            selectors,
            table,
            selection,
            order_by,
            per_partition_limit,
            limit,
        }))
    }

    /// A column, `COUNT(*)`, `token(…)` or `WRITETIME(column)`, then
    /// `AS alias`.
    fn selector(&mut self) -> Result<Selector, ParseError> {
        let position = self.position();
        let function = matches!(self.peek_at(1).kind, TokenKind::Symbol("("));
        let kind = match &self.peek().kind {
            TokenKind::Identifier(word) if function => {
                let word = word.to_ascii_lowercase();
                self.advance();
                self.selector_function(&word, position)?
            }
            _ => SelectorKind::Column(self.name("a column name or *")?.0),
        };
        let alias = if self.accept_keyword("as") {
            Some(self.name("an alias")?.0)
        } else {
            None
        };
        Ok(Selector {
            kind,
            alias,
            position,
        })
    }

    fn selector_function(
        &mut self,
        word: &str,
        position: crate::Position,
    ) -> Result<SelectorKind, ParseError> {
        let column = |p: &mut Parser| Ok(p.name("a column name")?.0);
        match word {
            "count" => {
                self.expect_symbol("(")?;
                if !self.accept_symbol("*")
                    && !matches!(&self.peek().kind, TokenKind::Integer(one) if one == "1")
                {
                    return Err(self.expected("'*' or 1 in COUNT"));
                }
                if !self.is_symbol(")") {
                    self.advance();
                }
                self.expect_symbol(")")?;
                Ok(SelectorKind::Count)
            }
            "token" => Ok(SelectorKind::Token(self.parenthesized(column)?)),
            "writetime" => {
                let mut columns = self.parenthesized(column)?;
                if columns.len() != 1 {
                    return Err(ParseError::Syntax {
                        position,
                        message: "WRITETIME takes one column".into(),
                    });
                }
                Ok(SelectorKind::WriteTime(columns.remove(0)))
            }
            "ttl" => Err(Self::unsupported(position, "TTL")),
            _ => Err(Self::unsupported(
                position,
                &format!("the function {word}() in a selection"),
            )),
        }
    }

    /// `WHERE relation [AND relation …]`, or nothing.
    fn where_clause(&mut self) -> Result<Vec<Relation>, ParseError> {
        let mut relations = Vec::new();
        if self.accept_keyword("where") {
            relations.push(self.relation()?);
            while self.accept_keyword("and") {
                relations.push(self.relation()?);
            }
        }
        Ok(relations)
    }

    fn relation(&mut self) -> Result<Relation, ParseError> {
        let position = self.position();
        let column = |p: &mut Parser| Ok(p.name("a column name")?.0);
        let subject = if self.is_keyword("token") {
            self.advance();
            Subject::Token(self.parenthesized(column)?)
        } else if self.is_symbol("(") {
            Subject::Tuple(self.parenthesized(column)?)
        } else {
            Subject::Column(self.name("a column name")?.0)
        };
        let operator = self.operator()?;
        let value = match (&subject, operator) {
            (Subject::Tuple(_), Operator::In) => {
                if self.is_symbol("?") {
                    RelationValue::Term(self.term()?)
                } else {
                    RelationValue::TupleList(self.parenthesized(|p| p.parenthesized(Parser::term))?)
                }
            }
            (Subject::Tuple(_), _) => RelationValue::Tuple(self.parenthesized(Parser::term)?),
            (_, Operator::In) => {
                if self.is_symbol("(") {
                    self.advance();
                    let mut terms = Vec::new();
                    if !self.is_symbol(")") {
                        terms = self.comma_separated(Parser::term)?;
                    }
                    self.expect_symbol(")")?;
                    RelationValue::List(terms)
                } else {
                    RelationValue::Term(self.term()?)
                }
            }
            _ => RelationValue::Term(self.term()?),
        };
        Ok(Relation {
            subject,
            operator,
            value,
            position,
        })
    }

    fn operator(&mut self) -> Result<Operator, ParseError> {
        let position = self.position();
        let operator = match &self.peek().kind {
            TokenKind::Symbol("=") => Operator::Eq,
            TokenKind::Symbol("<") => Operator::Lt,
            TokenKind::Symbol("<=") => Operator::Le,
            TokenKind::Symbol(">") => Operator::Gt,
            TokenKind::Symbol(">=") => Operator::Ge,
            TokenKind::Identifier(word) if word.eq_ignore_ascii_case("in") => Operator::In,
            TokenKind::Symbol("!=") => return Err(Self::unsupported(position, "!= in WHERE")),
            TokenKind::Identifier(word) if word.eq_ignore_ascii_case("contains") => {
                return Err(Self::unsupported(position, "CONTAINS (collections)"));
            }
            TokenKind::Identifier(word) if word.eq_ignore_ascii_case("like") => {
                return Err(Self::unsupported(position, "LIKE"));
            }
            TokenKind::Identifier(word) if word.eq_ignore_ascii_case("is") => {
                return Err(Self::unsupported(position, "IS NOT NULL"));
            }
            _ => return Err(self.expected("an operator (=, <, <=, >, >=, IN)")),
        };
        self.advance();
        Ok(operator)
    }

    /// `USING TIMESTAMP t [AND TTL n]`, or nothing.
    fn using(&mut self) -> Result<Using, ParseError> {
        let mut using = Using::default();
        if !self.accept_keyword("using") {
            return Ok(using);
        }
        loop {
            if self.accept_keyword("timestamp") {
                using.timestamp = Some(self.term()?);
            } else if self.accept_keyword("ttl") {
                using.ttl = Some(self.term()?);
            } else {
                return Err(self.expected("TIMESTAMP or TTL"));
            }
            if !self.accept_keyword("and") {
                return Ok(using);
            }
        }
    }

    /// Refuses `IF …` (lightweight transactions) where it may follow.
    fn refuse_conditions(&self) -> Result<(), ParseError> {
        if self.is_keyword("if") {
            return Err(Self::unsupported(self.position(), LWT));
        }
        Ok(())
    }

    pub(super) fn insert(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("insert")?;
        self.expect_keyword("into")?;
        let table = self.table_name()?;
        if self.is_keyword("json") {
            return Err(Self::unsupported(self.position(), "INSERT JSON"));
        }
        let columns = self.parenthesized(|p| Ok(p.name("a column name")?.0))?;
        let position = self.expect_keyword("values")?;
        let values = self.parenthesized(Parser::term)?;
        if values.len() != columns.len() {
            return Err(ParseError::Syntax {
                position,
                message: format!("{} columns but {} values", columns.len(), values.len()),
            });
        }
        self.refuse_conditions()?;
        let using = self.using()?;
        self.refuse_conditions()?;
        Ok(Statement::Insert(Insert {
            table,
            columns,
            values,
            using,
        }))
    }

    pub(super) fn update(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("update")?;
        let table = self.table_name()?;
        let using = self.using()?;
        self.expect_keyword("set")?;
        let assignments = self.comma_separated(Parser::assignment)?;
        let selection = self.where_clause()?;
        self.refuse_conditions()?;
        Ok(Statement::Update(Update {
            table,
            using,
            assignments,
            selection,
        }))
    }

    /// `column = value`; `c = c + 1` and `c[i] = v` are counters and
    /// collections, refused.
    fn assignment(&mut self) -> Result<(String, Term), ParseError> {
        let (column, position) = self.name("a column name")?;
        if self.is_symbol("[") || self.is_symbol(".") {
            return Err(Self::unsupported(position, COLLECTIONS));
        }
        self.expect_symbol("=")?;
        let arithmetic = matches!(self.peek_at(1).kind, TokenKind::Symbol("+" | "-"));
        if arithmetic {
            return Err(Self::unsupported(
                position,
                "counter and collection updates",
            ));
        }
        Ok((column, self.term()?))
    }

    pub(super) fn delete(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("delete")?;
        let mut columns = Vec::new();
        if !self.is_keyword("from") {
            columns = self.comma_separated(|p| {
                let (name, position) = p.name("a column name or FROM")?;
                if p.is_symbol("[") || p.is_symbol(".") {
                    return Err(Self::unsupported(position, COLLECTIONS));
                }
                Ok(name)
            })?;
        }
        self.expect_keyword("from")?;
        let table = self.table_name()?;
        let using = self.using()?;
        let selection = self.where_clause()?;
        self.refuse_conditions()?;
        Ok(Statement::Delete(Delete {
            columns,
            table,
            using,
            selection,
        }))
    }

    pub(super) fn batch(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("begin")?;
        let position = self.position();
        let unlogged = self.accept_keyword("unlogged");
        if !unlogged && self.is_keyword("counter") {
            return Err(Self::unsupported(position, "counter columns"));
        }
        self.accept_keyword("logged");
        self.expect_keyword("batch")?;
        let using = self.using()?;
        let mut statements = Vec::new();
        while !self.is_keyword("apply") {
            let position = self.position();
            let statement = match &self.peek().kind {
                TokenKind::Identifier(word) if word.eq_ignore_ascii_case("insert") => {
                    self.insert()?
                }
                TokenKind::Identifier(word) if word.eq_ignore_ascii_case("update") => {
                    self.update()?
                }
                TokenKind::Identifier(word) if word.eq_ignore_ascii_case("delete") => {
                    self.delete()?
                }
                _ => {
                    return Err(ParseError::Syntax {
                        position,
                        message: format!(
                            "expected INSERT, UPDATE, DELETE or APPLY BATCH, found {}",
                            self.peek().kind
                        ),
                    });
                }
            };
            statements.push(statement);
            while self.accept_symbol(";") {}
        }
        self.expect_keyword("apply")?;
        self.expect_keyword("batch")?;
        Ok(Statement::Batch(Batch {
            unlogged,
            using,
            statements,
        }))
    }
}
