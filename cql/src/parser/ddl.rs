//! Schema statements: keyspaces, tables, `DESCRIBE`.

use ringdb_proto::Order;

use super::Parser;
use crate::ParseError;
use crate::ast::{ColumnDefinition, CreateTable, Describe, Statement, TableChange};
use crate::lexer::TokenKind;

impl Parser {
    pub(super) fn create(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("create")?;
        let position = self.position();
        if self.accept_keyword("keyspace") || self.accept_keyword("schema") {
            let if_not_exists = self.if_not_exists();
            let (name, _) = self.name("a keyspace name")?;
            self.expect_keyword("with")?;
            let properties = self.properties()?;
            return Ok(Statement::CreateKeyspace {
                name,
                if_not_exists,
                properties,
            });
        }
        if self.accept_keyword("table") || self.accept_keyword("columnfamily") {
            return self.create_table().map(Statement::CreateTable);
        }
        let feature = if self.is_keyword("index") || self.is_keyword("custom") {
            "secondary indexes (CREATE INDEX)"
        } else if self.is_keyword("materialized") {
            "materialized views"
        } else if self.is_keyword("function") || self.is_keyword("or") {
            "user-defined functions"
        } else if self.is_keyword("aggregate") {
            "user-defined aggregates"
        } else if self.is_keyword("type") {
            "user-defined types"
        } else if self.is_keyword("trigger") {
            "triggers"
        } else if self.is_keyword("role") || self.is_keyword("user") {
            "roles and permissions"
        } else {
            return Err(self.expected("KEYSPACE or TABLE"));
        };
        Err(Self::unsupported(position, feature))
    }

    fn create_table(&mut self) -> Result<CreateTable, ParseError> {
        let if_not_exists = self.if_not_exists();
        let table = self.table_name()?;
        self.expect_symbol("(")?;
        let mut columns = Vec::new();
        let mut primary_key: Option<(Vec<String>, Vec<String>)> = None;
        loop {
            let position = self.position();
            if self.accept_keywords(&["primary", "key"]) {
                if primary_key.is_some() {
                    return Err(ParseError::Syntax {
                        position,
                        message: "the primary key is given twice".into(),
                    });
                }
                primary_key = Some(self.primary_key()?);
            } else {
                let column = self.column_definition()?;
                if self.accept_keywords(&["primary", "key"]) {
                    if primary_key.is_some() {
                        return Err(ParseError::Syntax {
                            position,
                            message: "the primary key is given twice".into(),
                        });
                    }
                    primary_key = Some((vec![column.name.clone()], Vec::new()));
                }
                columns.push(column);
            }
            if !self.accept_symbol(",") {
                break;
            }
            if self.is_symbol(")") {
                break;
            }
        }
        self.expect_symbol(")")?;
        let Some((partition_key, clustering)) = primary_key else {
            return Err(ParseError::Syntax {
                position: table.position,
                message: format!("table {} has no PRIMARY KEY", table.name),
            });
        };
        let mut create = CreateTable {
            table,
            if_not_exists,
            columns,
            partition_key,
            clustering,
            clustering_order: Vec::new(),
            properties: Vec::new(),
        };
        if self.accept_keyword("with") {
            self.table_options(&mut create)?;
        }
        Ok(create)
    }

    /// `name type [STATIC]`.
    fn column_definition(&mut self) -> Result<ColumnDefinition, ParseError> {
        let (name, position) = self.name("a column name")?;
        let ty = self.column_type()?;
        if self.is_keyword("static") {
            return Err(Self::unsupported(self.position(), "static columns"));
        }
        Ok(ColumnDefinition { name, ty, position })
    }

    /// `(k, c1, c2)` or `((k1, k2), c1, c2)`, after `PRIMARY KEY`.
    fn primary_key(&mut self) -> Result<(Vec<String>, Vec<String>), ParseError> {
        self.expect_symbol("(")?;
        let partition_key = if self.is_symbol("(") {
            self.parenthesized(|p| Ok(p.name("a column name")?.0))?
        } else {
            vec![self.name("a column name")?.0]
        };
        let mut clustering = Vec::new();
        while self.accept_symbol(",") {
            clustering.push(self.name("a column name")?.0);
        }
        self.expect_symbol(")")?;
        Ok((partition_key, clustering))
    }

    /// `CLUSTERING ORDER BY (…)`, `COMPACT STORAGE` (refused) and
    /// properties, joined by `AND`.
    fn table_options(&mut self, create: &mut CreateTable) -> Result<(), ParseError> {
        loop {
            let position = self.position();
            if self.accept_keywords(&["clustering", "order", "by"]) {
                create.clustering_order = self.parenthesized(Parser::ordered_column)?;
            } else if self.accept_keywords(&["compact", "storage"]) {
                return Err(Self::unsupported(position, "COMPACT STORAGE"));
            } else {
                create.properties.extend(self.properties()?);
                return Ok(());
            }
            if !self.accept_keyword("and") {
                return Ok(());
            }
        }
    }

    /// `column [ASC|DESC]` (ascending when neither is written).
    pub(super) fn ordered_column(&mut self) -> Result<(String, Order), ParseError> {
        let (name, _) = self.name("a clustering column")?;
        Ok((name, self.order().unwrap_or_default()))
    }

    /// `ASC` or `DESC`, if next.
    fn order(&mut self) -> Option<Order> {
        if self.accept_keyword("asc") {
            Some(Order::Asc)
        } else if self.accept_keyword("desc") {
            Some(Order::Desc)
        } else {
            None
        }
    }

    pub(super) fn alter(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("alter")?;
        let position = self.position();
        if self.accept_keyword("keyspace") || self.accept_keyword("schema") {
            let (name, _) = self.name("a keyspace name")?;
            self.expect_keyword("with")?;
            let properties = self.properties()?;
            return Ok(Statement::AlterKeyspace { name, properties });
        }
        if !(self.accept_keyword("table") || self.accept_keyword("columnfamily")) {
            return Err(
                if self.is_keyword("materialized") || self.is_keyword("type") {
                    Self::unsupported(position, "materialized views and user-defined types")
                } else {
                    self.expected("KEYSPACE or TABLE")
                },
            );
        }
        let table = self.table_name()?;
        let position = self.position();
        let change = if self.accept_keyword("add") {
            let add = if self.is_symbol("(") {
                self.parenthesized(Parser::column_definition)?
            } else {
                self.comma_separated(Parser::column_definition)?
            };
            TableChange::Add(add)
        } else if self.accept_keyword("drop") {
            let name = |p: &mut Parser| Ok(p.name("a column name")?.0);
            let drop = if self.is_symbol("(") {
                self.parenthesized(name)?
            } else {
                self.comma_separated(name)?
            };
            TableChange::Drop(drop)
        } else if self.accept_keyword("with") {
            TableChange::With(self.properties()?)
        } else if self.is_keyword("alter") || self.is_keyword("rename") {
            return Err(Self::unsupported(position, "changing or renaming a column"));
        } else {
            return Err(self.expected("ADD, DROP or WITH"));
        };
        Ok(Statement::AlterTable { table, change })
    }

    pub(super) fn drop(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("drop")?;
        let position = self.position();
        if self.accept_keyword("keyspace") || self.accept_keyword("schema") {
            let if_exists = self.if_exists();
            let (name, _) = self.name("a keyspace name")?;
            return Ok(Statement::DropKeyspace { name, if_exists });
        }
        if self.accept_keyword("table") || self.accept_keyword("columnfamily") {
            let if_exists = self.if_exists();
            let table = self.table_name()?;
            return Ok(Statement::DropTable { table, if_exists });
        }
        Err(match &self.peek().kind {
            TokenKind::Identifier(word) if word.eq_ignore_ascii_case("index") => {
                Self::unsupported(position, "secondary indexes (CREATE INDEX)")
            }
            _ => self.expected("KEYSPACE or TABLE"),
        })
    }

    pub(super) fn describe(&mut self) -> Result<Statement, ParseError> {
        self.advance();
        let describe = if self.accept_keyword("keyspaces") {
            Describe::Keyspaces
        } else if self.accept_keyword("tables") {
            Describe::Tables
        } else if self.accept_keyword("cluster") {
            Describe::Cluster
        } else if self.accept_keyword("keyspace") || self.accept_keyword("schema") {
            if self.at_end() || self.is_symbol(";") {
                Describe::Keyspace(None)
            } else {
                Describe::Keyspace(Some(self.name("a keyspace name")?.0))
            }
        } else if self.accept_keyword("table") || self.accept_keyword("columnfamily") {
            Describe::Table(self.table_name()?)
        } else if matches!(
            self.peek().kind,
            TokenKind::Identifier(_) | TokenKind::QuotedIdentifier(_)
        ) {
            Describe::Name(self.table_name()?)
        } else {
            return Err(self.expected("KEYSPACES, KEYSPACE, TABLES, TABLE, CLUSTER or a name"));
        };
        Ok(Statement::Describe(describe))
    }
}
