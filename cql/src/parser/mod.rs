//! A recursive-descent parser over the lexer's tokens, one function per
//! grammar rule, following the grammar of Cassandra's `Parser.g` for the
//! subset ringdb executes. What ringdb does not do (lightweight
//! transactions, secondary indexes, materialized views, user-defined
//! types and functions, counters, collections, `ALLOW FILTERING`…) is
//! recognized where it starts and refused with an error naming the
//! feature, rather than a syntax error that would suggest a typo.

mod ddl;
mod dml;
mod terms;

use crate::ParseError;
use crate::ast::Statement;
use crate::lexer::{Position, Token, TokenKind, tokenize};

/// Parses `text`: one or more statements, each ended by `;` (the last
/// one's is optional).
pub fn parse(text: &str) -> Result<Vec<Statement>, ParseError> {
    let mut parser = Parser::new(text)?;
    let mut statements = Vec::new();
    while parser.accept_symbol(";") {}
    while !parser.at_end() {
        statements.push(parser.statement()?);
        if !parser.accept_symbol(";") && !parser.at_end() {
            return Err(parser.expected("';' or the end of the statement"));
        }
        while parser.accept_symbol(";") {}
    }
    Ok(statements)
}

/// Parses exactly one statement (a trailing `;` is allowed).
pub fn parse_statement(text: &str) -> Result<Statement, ParseError> {
    let mut parser = Parser::new(text)?;
    let statement = parser.statement()?;
    parser.accept_symbol(";");
    if !parser.at_end() {
        return Err(parser.expected("the end of the statement"));
    }
    Ok(statement)
}

/// Whether `word` is reserved (and so must be quoted to be a name).
pub fn is_reserved(word: &str) -> bool {
    ringdb_proto::is_reserved(word)
}

pub(crate) struct Parser {
    tokens: Vec<Token>,
    next: usize,
    /// Anonymous bind markers seen so far (the next one's index).
    markers: usize,
    /// How deep in nested terms (function arguments, maps) the parser is.
    depth: usize,
}

/// The largest statement text, in bytes: a statement is parsed whole, so
/// this bounds the memory a client can make a node spend on it.
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;

/// How deeply terms may nest (`f(g(…))`, maps in maps): the parser
/// recurses once a level, so this bounds its stack.
pub(crate) const MAX_TERM_DEPTH: usize = 32;

impl Parser {
    fn new(text: &str) -> Result<Parser, ParseError> {
        if text.len() > MAX_STATEMENT_BYTES {
            return Err(ParseError::Syntax {
                position: Position { line: 1, column: 1 },
                message: format!(
                    "the text is {} bytes; the limit is {MAX_STATEMENT_BYTES}",
                    text.len()
                ),
            });
        }
        Ok(Parser {
            tokens: tokenize(text)?,
            next: 0,
            markers: 0,
            depth: 0,
        })
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        &self.tokens[(self.next + ahead).min(self.tokens.len() - 1)]
    }

    fn position(&self) -> Position {
        self.peek().position
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != TokenKind::End {
            self.next += 1;
        }
        token
    }

    fn at_end(&self) -> bool {
        self.peek().kind == TokenKind::End
    }

    fn is_keyword_at(&self, ahead: usize, keyword: &str) -> bool {
        matches!(&self.peek_at(ahead).kind, TokenKind::Identifier(word) if word.eq_ignore_ascii_case(keyword))
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        self.is_keyword_at(0, keyword)
    }

    fn accept_keyword(&mut self, keyword: &str) -> bool {
        let found = self.is_keyword(keyword);
        if found {
            self.advance();
        }
        found
    }

    /// Accepts the keywords in order, or none of them.
    fn accept_keywords(&mut self, keywords: &[&str]) -> bool {
        let found = keywords
            .iter()
            .enumerate()
            .all(|(i, keyword)| self.is_keyword_at(i, keyword));
        if found {
            self.next += keywords.len();
        }
        found
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<Position, ParseError> {
        let position = self.position();
        if self.accept_keyword(keyword) {
            Ok(position)
        } else {
            Err(self.expected(&keyword.to_uppercase()))
        }
    }

    fn is_symbol(&self, symbol: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Symbol(found) if *found == symbol)
    }

    fn accept_symbol(&mut self, symbol: &str) -> bool {
        let found = self.is_symbol(symbol);
        if found {
            self.advance();
        }
        found
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), ParseError> {
        if self.accept_symbol(symbol) {
            Ok(())
        } else {
            Err(self.expected(&format!("'{symbol}'")))
        }
    }

    /// A syntax error at the next token: what was expected there.
    fn expected(&self, what: &str) -> ParseError {
        let token = self.peek();
        ParseError::Syntax {
            position: token.position,
            message: format!("expected {what}, found {}", token.kind),
        }
    }

    /// An error naming a feature ringdb does not support, at `position`.
    fn unsupported(position: Position, feature: &str) -> ParseError {
        ParseError::Unsupported {
            position,
            feature: feature.to_string(),
        }
    }

    /// `( item, … )` with at least one item.
    fn parenthesized<T>(
        &mut self,
        mut item: impl FnMut(&mut Parser) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        self.expect_symbol("(")?;
        let items = self.comma_separated(&mut item)?;
        self.expect_symbol(")")?;
        Ok(items)
    }

    /// `item, …` with at least one item.
    fn comma_separated<T>(
        &mut self,
        mut item: impl FnMut(&mut Parser) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        let mut items = vec![item(self)?];
        while self.accept_symbol(",") {
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn statement(&mut self) -> Result<Statement, ParseError> {
        let position = self.position();
        let keyword = match &self.peek().kind {
            TokenKind::Identifier(word) => word.to_ascii_lowercase(),
            _ => return Err(self.expected("a statement")),
        };
        match keyword.as_str() {
            "select" => self.select(),
            "insert" => self.insert(),
            "update" => self.update(),
            "delete" => self.delete(),
            "begin" => self.batch(),
            "use" => {
                self.advance();
                Ok(Statement::Use {
                    keyspace: self.name("a keyspace name")?.0,
                })
            }
            "create" => self.create(),
            "alter" => self.alter(),
            "drop" => self.drop(),
            "describe" | "desc" => self.describe(),
            "truncate" => Err(Self::unsupported(position, "TRUNCATE")),
            "grant" | "revoke" | "list" => {
                Err(Self::unsupported(position, "roles and permissions"))
            }
            _ => Err(self.expected("a statement")),
        }
    }
}
