//! Tab completion: keywords, and the keyspace, table and column names of
//! the schema (read with `DESCRIBE` and parsed back), chosen by the word
//! before the cursor: after `USE` or `KEYSPACE` keyspaces, after `FROM`,
//! `INTO`, `UPDATE` or `TABLE` tables, after `CONSISTENCY` levels, after
//! `TRACING`, `EXPAND` or `PAGING` `ON`/`OFF`, elsewhere keywords and
//! columns, and at the start of a statement the shell's own commands too.
//! The word before may be on an earlier line of the statement being typed.
//! A name that must be quoted in CQL (capitals, a reserved word) is
//! completed quoted, also when its opening quote is already typed.

use std::sync::{Arc, Mutex};

use ringdb::client::{Client, ConsistencyLevel, Query, QueryResult};

use super::SHELL_COMMANDS;
use ringdb::proto::quoted;
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
    /// The lines of the statement being typed, before the current one.
    pending: Arc<Mutex<String>>,
}

impl ShellHelper {
    pub fn new(completions: Arc<Mutex<Completions>>, pending: Arc<Mutex<String>>) -> ShellHelper {
        ShellHelper {
            completions,
            pending,
        }
    }

    /// The candidates for `partial`, the word being typed after `previous`.
    /// After an opening quote (`in_quote`), only names, every one quoted.
    fn candidates(&self, previous: &str, partial: &str, in_quote: bool) -> Vec<String> {
        let names = self.completions.lock().expect("completions");
        let previous = previous.to_ascii_uppercase();
        // Words of the language are offered in the case being typed.
        let lower = partial.chars().all(|c| !c.is_ascii_uppercase()) && !partial.is_empty();
        let words = |words: &mut dyn Iterator<Item = String>| -> Vec<String> {
            words
                .map(|k| if lower { k.to_ascii_lowercase() } else { k })
                .collect()
        };
        let quote_one = |name: &str| match in_quote {
            true => format!("\"{}\"", name.replace('"', "\"\"")),
            false => quoted(name),
        };
        let quote = |names: &[String]| -> Vec<String> {
            (names.iter())
                .map(|name| name.split('.').map(quote_one).collect::<Vec<_>>().join("."))
                .collect()
        };
        let pool: Vec<String> = match previous.as_str() {
            "USE" | "KEYSPACE" => quote(&names.keyspaces),
            "FROM" | "INTO" | "UPDATE" | "TABLE" => quote(&names.tables),
            _ if in_quote => quote(&names.columns),
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
                found.extend(quote(&names.columns));
                found
            }
        };
        let partial = partial.to_ascii_lowercase();
        let mut found: Vec<String> = pool
            .into_iter()
            .filter(|c| {
                let unquoted = c.strip_prefix('"').unwrap_or(c).to_ascii_lowercase();
                unquoted.starts_with(&partial) || c.to_ascii_lowercase().starts_with(&partial)
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
        // A name whose opening quote is typed is completed from it.
        let in_quote = before[..start].ends_with('"');
        let start = start - usize::from(in_quote);
        // The word before may be on an earlier line of the statement; a
        // word after `;` starts a statement (or a shell command).
        let pending = self.pending.lock().expect("pending").clone();
        let earlier = format!("{pending} {}", &before[..start]);
        let previous = (earlier.split_whitespace().last())
            .filter(|word| !word.ends_with(';'))
            .unwrap_or("");
        // Mid-statement on a new line: not a shell command.
        let previous = match previous {
            "" if !pending.trim().is_empty() && !pending.trim_end().ends_with(';') => " ",
            previous => previous,
        };
        let candidates = self
            .candidates(previous, partial, in_quote)
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
            columns: vec!["device".into(), "reading".into(), "Unit".into()],
        };
        ShellHelper::new(Arc::new(Mutex::new(completions)), Arc::default())
    }

    impl ShellHelper {
        fn candidates_of(&self, previous: &str, partial: &str) -> Vec<String> {
            self.candidates(previous, partial, false)
        }
    }

    fn complete(helper: &ShellHelper, line: &str) -> (usize, Vec<String>) {
        let history = rustyline::history::DefaultHistory::new();
        let context = Context::new(&history);
        let (start, found) = helper.complete(line, line.len(), &context).unwrap();
        (start, found.into_iter().map(|p| p.replacement).collect())
    }

    /// A name CQL reads only quoted is completed quoted, also from its
    /// opening quote.
    #[test]
    fn names_that_need_quotes_are_completed_quoted() {
        let helper = helper();
        assert_eq!(helper.candidates_of("SELECT", "uni"), ["\"Unit\""]);
        assert_eq!(
            complete(&helper, "SELECT \"Un"),
            (7, vec!["\"Unit\"".into()])
        );
        assert_eq!(complete(&helper, "SELECT dev"), (7, vec!["device".into()]));
        // After a quote: names only, quoted.
        assert_eq!(
            complete(&helper, "SELECT \"de"),
            (7, vec!["\"device\"".into()])
        );
        let tables = vec!["\"shop\".\"events\"".to_string()];
        assert_eq!(complete(&helper, "SELECT * FROM \"sh"), (14, tables));
    }

    /// On a continuation line, the word before is the statement's last one,
    /// and shell commands are not offered mid-statement.
    #[test]
    fn a_continuation_line_completes_within_its_statement() {
        let helper = helper();
        *helper.pending.lock().unwrap() = "SELECT * FROM\n".into();
        assert_eq!(complete(&helper, "ev"), (0, vec!["events".into()]));
        *helper.pending.lock().unwrap() = "SELECT *\n".into();
        assert!(complete(&helper, "TRAC").1.is_empty());
        *helper.pending.lock().unwrap() = "USE shop;\n".into();
        assert_eq!(complete(&helper, "TRAC"), (0, vec!["TRACING".into()]));
    }

    #[test]
    fn the_word_before_chooses_what_is_offered() {
        let helper = helper();
        assert_eq!(helper.candidates_of("FROM", "ev"), ["events"]);
        assert_eq!(helper.candidates_of("from", "sh"), ["shop.events"]);
        assert_eq!(helper.candidates_of("USE", ""), ["shop"]);
        assert_eq!(helper.candidates_of("SELECT", "rea"), ["reading"]);
        assert_eq!(helper.candidates_of("", "SEL"), ["SELECT"]);
        assert_eq!(helper.candidates_of("", "sel"), ["select"]);
        assert_eq!(helper.candidates_of("", "CONS"), ["CONSISTENCY"]);
        assert_eq!(helper.candidates_of("", "tra"), ["tracing"]);
        assert_eq!(
            helper.candidates_of("consistency", "LOCAL_"),
            ["LOCAL_ONE", "LOCAL_QUORUM"]
        );
        assert_eq!(helper.candidates_of("TRACING", "o"), ["off", "on"]);
        // Not in the middle of a statement.
        assert!(helper.candidates_of("SELECT", "CONS").is_empty());
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
