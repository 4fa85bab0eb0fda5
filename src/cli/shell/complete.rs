//! Tab completion: keywords, and the keyspace, table and column names of
//! the schema (read with `DESCRIBE` and parsed back), chosen by the word
//! before the cursor: after `USE` or `KEYSPACE` keyspaces, after `FROM`,
//! `INTO`, `UPDATE` or `TABLE` tables, after `CONSISTENCY` levels, after
//! `TRACING`, `EXPAND` or `PAGING` `ON`/`OFF`, elsewhere keywords and
//! columns, and at the start of a line the shell's own commands too.

use std::sync::{Arc, Mutex};

use ringdb::client::{Client, ConsistencyLevel, Query, QueryResult};

use super::SHELL_COMMANDS;
use ringdb_cql::ast::Statement;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

/// The names completion offers.
#[derive(Default)]
pub struct Completions {
    keyspaces: Vec<String>,
    /// `table` and `keyspace.table`.
    tables: Vec<String>,
    columns: Vec<String>,
}

/// Reads the schema's names through `client` (none if it cannot).
pub async fn fetch(client: &Client, consistency: ConsistencyLevel) -> Completions {
    let describe = |what: &str| Query::new(format!("DESCRIBE {what}"), consistency);
    let mut names = Completions::default();
    let Ok(QueryResult::Description(keyspaces)) = client.query(describe("KEYSPACES")).await else {
        return names;
    };
    names.keyspaces = keyspaces.split_whitespace().map(str::to_string).collect();
    for keyspace in names.keyspaces.clone() {
        let what = format!("KEYSPACE \"{keyspace}\"");
        let Ok(QueryResult::Description(text)) = client.query(describe(&what)).await else {
            continue;
        };
        for statement in ringdb_cql::parse(&text).unwrap_or_default() {
            if let Statement::CreateTable(create) = statement {
                names.tables.push(create.table.name.clone());
                names
                    .tables
                    .push(format!("{keyspace}.{}", create.table.name));
                names
                    .columns
                    .extend(create.columns.into_iter().map(|c| c.name));
            }
        }
    }
    names.tables.sort();
    names.tables.dedup();
    names.columns.sort();
    names.columns.dedup();
    names
}

/// The shell's line-editor helper: completion only.
pub struct ShellHelper {
    completions: Arc<Mutex<Completions>>,
}

impl ShellHelper {
    pub fn new(completions: Arc<Mutex<Completions>>) -> ShellHelper {
        ShellHelper { completions }
    }

    /// The candidates for `partial`, the word being typed after `previous`.
    fn candidates(&self, previous: &str, partial: &str) -> Vec<String> {
        let names = self.completions.lock().expect("completions");
        let previous = previous.to_ascii_uppercase();
        // Words of the language are offered in the case being typed.
        let lower = partial.chars().all(|c| !c.is_ascii_uppercase()) && !partial.is_empty();
        let words = |words: &mut dyn Iterator<Item = String>| -> Vec<String> {
            words
                .map(|k| if lower { k.to_ascii_lowercase() } else { k })
                .collect()
        };
        let pool: Vec<String> = match previous.as_str() {
            "USE" | "KEYSPACE" => names.keyspaces.clone(),
            "FROM" | "INTO" | "UPDATE" | "TABLE" => names.tables.clone(),
            "CONSISTENCY" => words(&mut ConsistencyLevel::ALL_LEVELS.iter().map(|l| l.to_string())),
            "TRACING" | "EXPAND" | "PAGING" => {
                words(&mut ["ON", "OFF"].map(String::from).into_iter())
            }
            _ => {
                let mut keywords = ringdb_cql::KEYWORDS.iter().map(|k| k.to_string());
                let mut found = words(&mut keywords);
                // The shell's own commands start a line.
                if previous.is_empty() {
                    found.extend(words(&mut SHELL_COMMANDS.iter().map(|c| c.to_string())));
                }
                found.extend(names.columns.iter().cloned());
                found
            }
        };
        let mut found: Vec<String> = pool
            .into_iter()
            .filter(|c| {
                c.to_ascii_lowercase()
                    .starts_with(&partial.to_ascii_lowercase())
            })
            .collect();
        found.sort();
        found.dedup();
        found
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _context: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .map_or(0, |i| {
                i + before[i..].chars().next().map_or(1, char::len_utf8)
            });
        let partial = &before[start..];
        // A word after `;` starts a statement (or a shell command).
        let previous = (before[..start].split_whitespace().last())
            .filter(|word| !word.ends_with(';'))
            .unwrap_or("");
        let candidates = self
            .candidates(previous, partial)
            .into_iter()
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper() -> ShellHelper {
        let completions = Completions {
            keyspaces: vec!["shop".into()],
            tables: vec!["events".into(), "shop.events".into()],
            columns: vec!["device".into(), "reading".into()],
        };
        ShellHelper::new(Arc::new(Mutex::new(completions)))
    }

    #[test]
    fn the_word_before_chooses_what_is_offered() {
        let helper = helper();
        assert_eq!(helper.candidates("FROM", "ev"), ["events"]);
        assert_eq!(helper.candidates("from", "sh"), ["shop.events"]);
        assert_eq!(helper.candidates("USE", ""), ["shop"]);
        assert_eq!(helper.candidates("SELECT", "rea"), ["reading"]);
        assert_eq!(helper.candidates("", "SEL"), ["SELECT"]);
        assert_eq!(helper.candidates("", "sel"), ["select"]);
        assert_eq!(helper.candidates("", "CONS"), ["CONSISTENCY"]);
        assert_eq!(helper.candidates("", "tra"), ["tracing"]);
        assert_eq!(
            helper.candidates("consistency", "LOCAL_"),
            ["LOCAL_ONE", "LOCAL_QUORUM"]
        );
        assert_eq!(helper.candidates("TRACING", "o"), ["off", "on"]);
        // Not in the middle of a statement.
        assert!(helper.candidates("SELECT", "CONS").is_empty());
        // After a `;`, a new statement or command starts.
        let history = rustyline::history::DefaultHistory::new();
        let context = Context::new(&history);
        let line = "USE shop; TRAC";
        let (start, found) = helper.complete(line, line.len(), &context).unwrap();
        assert_eq!(start, 10);
        let found: Vec<&str> = found.iter().map(|p| p.replacement.as_str()).collect();
        assert_eq!(found, ["TRACING"]);
    }
}
