//! `ringdb shell`: a cqlsh-like shell.
//!
//! CQL statements end at `;` (they may span lines) and run on the node;
//! the shell's own commands (`CONSISTENCY`, `TRACING`, `EXPAND`, `PAGING`,
//! `SOURCE`, `HELP`, `EXIT`) run here and need no `;`. Interactive, it
//! keeps a history (`~/.ringdb_history`) and completes keywords, keyspace,
//! table and column names, and its own commands, with Tab. With `-e` or `-f`, or input that is
//! not a terminal, it runs the statements in order and stops at the first
//! error, with a non-zero exit status.

mod complete;
mod render;

use std::collections::VecDeque;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use ringdb::client::{
    Client, ClientError, ConsistencyLevel, Query, QueryResult, RowContext, Rows, TraceEvent,
};
use ringdb_cql::split_statements;
use rustyline::error::ReadlineError;

use crate::cli::data::Connection;
use complete::{Completions, ShellHelper};

/// `ringdb shell` options.
#[derive(clap::Args)]
pub struct ShellArgs {
    #[command(flatten)]
    connection: Connection,
    /// The keyspace to start in (as `USE`).
    #[arg(short = 'k', long, value_name = "KEYSPACE")]
    keyspace: Option<String>,
    /// Run these statements (`;` between them) and exit.
    #[arg(short = 'e', long, value_name = "STATEMENTS", conflicts_with = "file")]
    execute: Option<String>,
    /// Run the statements of this file and exit.
    #[arg(short = 'f', long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// The consistency level of data statements (`CONSISTENCY` changes it).
    #[arg(long, value_name = "LEVEL", default_value = "one")]
    consistency: ConsistencyLevel,
}

/// What a session remembers between statements.
struct Session {
    client: Client,
    keyspace: Option<String>,
    consistency: ConsistencyLevel,
    tracing: bool,
    expand: bool,
    /// Rows per page when interactive; `None`: no paging.
    paging: Option<usize>,
    interactive: bool,
    /// Names offered by completion, refreshed after schema changes.
    completions: Arc<Mutex<Completions>>,
    /// What the session last read or wrote of each row, latest last: its
    /// writes hand these back, so that a write supersedes every version
    /// (sibling) the session was shown, and its own earlier writes.
    contexts: VecDeque<RowContext>,
    /// The trace of the last statement (with `TRACING ON`).
    trace: Vec<TraceEvent>,
    /// The line editor, when interactive: the prompt and ---MORE--- (one
    /// editor only: rustyline keeps its signal handling in a global that a
    /// second editor, dropped, would leave broken).
    editor: Option<Arc<Mutex<LineEditor>>>,
}

type LineEditor = rustyline::Editor<ShellHelper, rustyline::history::FileHistory>;

/// The most row contexts a session keeps.
const SESSION_CONTEXTS: usize = 1_000;

/// Whether the session goes on after a statement.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

/// Runs the shell; the exit status is non-zero when a statement failed
/// (with `-e`, `-f` or piped input).
pub async fn run(args: ShellArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(args.connection.config()?)
        .await
        .context("cannot connect to the cluster")?;
    let interactive =
        args.execute.is_none() && args.file.is_none() && std::io::stdin().is_terminal();
    let mut session = Session {
        client,
        keyspace: None,
        consistency: args.consistency,
        tracing: false,
        expand: false,
        paging: Some(100),
        interactive,
        completions: Arc::default(),
        contexts: VecDeque::new(),
        trace: Vec::new(),
        editor: None,
    };
    if let Some(keyspace) = &args.keyspace
        && session
            .run_text(&format!("USE \"{}\";", keyspace.replace('"', "\"\"")))
            .await
            .is_err()
    {
        return Ok(ExitCode::FAILURE);
    }
    let text = match (&args.execute, &args.file) {
        (Some(text), _) => text.clone(),
        (None, Some(file)) => read_file(file)?,
        (None, None) if interactive => return session.interactive().await,
        (None, None) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
    };
    Ok(match session.run_text(&text).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(()) => ExitCode::FAILURE,
    })
}

fn read_file(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

impl Session {
    /// The interactive loop: a prompt, multi-line statements, history.
    async fn interactive(mut self) -> anyhow::Result<ExitCode> {
        let config = rustyline::Config::builder().auto_add_history(false).build();
        let mut editor: LineEditor = rustyline::Editor::with_config(config)?;
        let pending = Arc::new(Mutex::new(String::new()));
        let helper = ShellHelper::new(self.completions.clone(), pending.clone());
        editor.set_helper(Some(helper));
        let history = std::env::var_os("HOME").map(|home| Path::new(&home).join(".ringdb_history"));
        if let Some(history) = &history {
            // No history yet is fine.
            let _ = editor.load_history(history);
        }
        let editor = Arc::new(Mutex::new(editor));
        self.editor = Some(editor.clone());
        self.refresh_completions().await;
        println!("Connected to ringdb. Statements end with ';'. HELP for help, EXIT to leave.");
        let mut buffer = String::new();
        loop {
            let prompt = match (&self.keyspace, buffer.is_empty()) {
                (Some(keyspace), true) => format!("ringdb:{keyspace}> "),
                (None, true) => "ringdb> ".to_string(),
                (_, false) => "   ...> ".to_string(),
            };
            pending.lock().expect("pending").clone_from(&buffer);
            let line = match lock(&editor).readline(&prompt) {
                Ok(line) => line,
                Err(ReadlineError::Interrupted) => {
                    buffer.clear();
                    continue;
                }
                Err(ReadlineError::Eof) => break,
                Err(error) => return Err(error.into()),
            };
            buffer.push_str(&line);
            buffer.push('\n');
            let statements = take_statements(&mut buffer, false);
            for statement in statements {
                // History is a convenience: failing to keep it is not an
                // error. Saved after each statement: a shell killed later
                // keeps it.
                let _ = lock(&editor).add_history_entry(statement.trim());
                save(&mut lock(&editor), history.as_deref());
                // Ctrl-C while a statement runs gives the prompt back (the
                // node may still complete it), as cqlsh does.
                let outcome = tokio::select! {
                    outcome = self.run_one(&statement) => outcome,
                    _ = tokio::signal::ctrl_c() => {
                        say!("\ncancelled: the node may still complete the statement");
                        Err(())
                    }
                };
                if let Ok(Flow::Exit) = outcome {
                    buffer.clear();
                    return Ok(save(&mut lock(&editor), history.as_deref()));
                }
            }
        }
        Ok(save(&mut lock(&editor), history.as_deref()))
    }

    /// Runs every statement of `text` in order, stopping at the first
    /// error (reported on stderr) or `EXIT`.
    async fn run_text(&mut self, text: &str) -> Result<Flow, ()> {
        let mut buffer = text.to_string();
        // The last statement may lack its `;`.
        let statements = take_statements(&mut buffer, true);
        for statement in statements {
            if self.run_one(&statement).await? == Flow::Exit {
                return Ok(Flow::Exit);
            }
        }
        Ok(Flow::Continue)
    }

    /// Runs one statement or shell command; errors are printed.
    async fn run_one(&mut self, statement: &str) -> Result<Flow, ()> {
        let trimmed = statement.trim().trim_end_matches(';').trim();
        if trimmed.is_empty() {
            return Ok(Flow::Continue);
        }
        match self.command(trimmed).await {
            Some(Ok(flow)) => return Ok(flow),
            Some(Err(message)) => {
                say!("{message}");
                return Err(());
            }
            None => {}
        }
        self.trace.clear();
        match self.query(statement.trim()).await {
            Ok(()) => Ok(Flow::Continue),
            Err(error) => {
                say!("{}", render::error(&error, statement.trim()));
                if self.tracing && !self.trace.is_empty() {
                    self.print(&render::trace(&self.trace));
                }
                Err(())
            }
        }
    }

    /// Runs a CQL statement and shows its result: a page at a time when
    /// interactive with paging on, else every page as one table.
    async fn query(&mut self, cql: &str) -> Result<(), ClientError> {
        let paged = self.paging.filter(|_| self.interactive);
        let first_word = cql
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let writes = matches!(
            first_word.as_str(),
            "INSERT" | "UPDATE" | "DELETE" | "BEGIN"
        );
        let mut query = Query {
            keyspace: self.keyspace.clone(),
            tracing: self.tracing,
            page_size: paged.map(|n| n as u32),
            contexts: if writes {
                self.contexts.iter().cloned().collect()
            } else {
                Vec::new()
            },
            ..Query::new(cql, self.consistency)
        };
        let mut all: Option<Rows> = None;
        loop {
            let (result, trace) = self.client.query_with_trace(query.clone()).await;
            // A failed statement's trace too: what the coordinator found.
            self.trace = trace;
            let result = result?;
            self.remember(&result);
            let QueryResult::Rows(rows) = result else {
                self.show(&result).await;
                return Ok(());
            };
            let next = rows.paging_state.clone();
            if paged.is_some() {
                self.show(&QueryResult::Rows(rows)).await;
                if next.is_none() || !self.more() {
                    return Ok(());
                }
            } else {
                all = Some(match all {
                    None => rows,
                    Some(before) => join(before, rows),
                });
                if next.is_none() {
                    let rows = all.take().expect("rows");
                    self.show(&QueryResult::Rows(rows)).await;
                    return Ok(());
                }
            }
            query.paging_state = next;
        }
    }

    /// Keeps the contexts of the rows a result read or wrote.
    fn remember(&mut self, result: &QueryResult) {
        let contexts = match result {
            QueryResult::Rows(rows) => &rows.contexts,
            QueryResult::Written { contexts } => contexts,
            _ => return,
        };
        for context in contexts {
            self.contexts.retain(|c| c.row != context.row);
            self.contexts.push_back(context.clone());
        }
        while self.contexts.len() > SESSION_CONTEXTS {
            self.contexts.pop_front();
        }
    }

    async fn show(&mut self, result: &QueryResult) {
        match result {
            QueryResult::SetKeyspace(keyspace) => self.keyspace = Some(keyspace.clone()),
            QueryResult::SchemaChange { .. } if self.interactive => {
                self.refresh_completions().await
            }
            _ => {}
        }
        let text = render::result(result, self.expand);
        self.print(&text);
        if self.tracing {
            self.print(&render::trace(&self.trace));
        }
    }

    /// Prints `text` (a closed stdout, a pipe, ends nothing else).
    fn print(&self, text: &str) {
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }

    /// Asks whether to show the next page; Enter says yes, `q`, Ctrl-C or
    /// the end of input no. Read by the session's line editor, in raw mode:
    /// Ctrl-C is a key there, not a signal that a blocked read never sees.
    fn more(&self) -> bool {
        let Some(editor) = &self.editor else {
            return false;
        };
        lock(editor)
            .readline("---MORE---")
            .is_ok_and(|answer| answer.trim() != "q")
    }

    /// Keyspace, table and column names for completion, from the node.
    async fn refresh_completions(&self) {
        let names = complete::fetch(&self.client, self.consistency).await;
        *self.completions.lock().expect("completions") = names;
    }
}

/// The line editor, whoever held it before (it holds no invariant a
/// panic could break).
fn lock(editor: &Mutex<LineEditor>) -> std::sync::MutexGuard<'_, LineEditor> {
    editor
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The rows of two pages of one result, as one.
fn join(mut first: Rows, second: Rows) -> Rows {
    if !second.siblings.is_empty() || !first.siblings.is_empty() {
        first.siblings.resize(first.rows.len(), None);
        let mut marks = second.siblings;
        marks.resize(second.rows.len(), None);
        first.siblings.extend(marks);
    }
    first.rows.extend(second.rows);
    first.contexts.extend(second.contexts);
    first.paging_state = second.paging_state;
    first
}

/// Takes the complete units at the start of `buffer` out of it, in
/// order: shell commands, which end at the end of their line or at `;`,
/// and CQL statements, which end at `;` (outside strings and comments).
/// At the end of the input (`at_end`), what is left is a last unit too.
fn take_statements(buffer: &mut String, at_end: bool) -> Vec<String> {
    let mut taken = Vec::new();
    loop {
        let start = blank_prefix(buffer);
        if start == buffer.len() {
            buffer.clear();
            return taken;
        }
        let rest = &buffer[start..];
        let first_word = rest
            .split(|c: char| c.is_whitespace() || c == ';')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let end = if SHELL_COMMANDS.contains(&first_word.as_str()) {
            rest.find(['\n', ';'])
                .map(|end| (rest[..end].to_string(), end + 1))
        } else {
            let (complete, _) = split_statements(rest);
            complete.first().map(|s| (s.to_string(), s.len()))
        };
        match end {
            Some((unit, length)) => {
                taken.push(unit);
                buffer.drain(..start + length);
            }
            None if at_end => {
                taken.push(rest.to_string());
                buffer.clear();
                return taken;
            }
            None => return taken,
        }
    }
}

/// The length of the whitespace and comments at the start of `text`.
fn blank_prefix(text: &str) -> usize {
    let mut at = 0;
    loop {
        let rest = &text[at..];
        let trimmed = rest.trim_start();
        at += rest.len() - trimmed.len();
        if trimmed.starts_with("--") || trimmed.starts_with("//") {
            match trimmed.find('\n') {
                Some(end) => at += end + 1,
                None => return text.len(),
            }
        } else if let Some(comment) = trimmed.strip_prefix("/*") {
            match comment.find("*/") {
                Some(end) => at += end + 4,
                None => return at,
            }
        } else {
            return at;
        }
    }
}

/// The shell's own commands (the first word).
pub(super) const SHELL_COMMANDS: &[&str] = &[
    "CONSISTENCY",
    "SERIAL",
    "TRACING",
    "EXPAND",
    "PAGING",
    "SOURCE",
    "HELP",
    "EXIT",
    "QUIT",
];

const HELP: &str = "\
CQL statements end with ';' and may span lines:
  CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3};
  USE ks;  CREATE TABLE t (k text, c int, v text, PRIMARY KEY (k, c));
  DESCRIBE KEYSPACES | KEYSPACE [ks] | TABLES | TABLE t | CLUSTER;
Shell commands (no ';' needed):
  CONSISTENCY [level]     show or set the consistency level (ONE, QUORUM, ALL, LOCAL_QUORUM...)
  TRACING ON|OFF          show the coordinator's trace after each statement
  EXPAND ON|OFF           show each row as a block of column | value lines
  PAGING ON|OFF|N         page long results, N lines at a time
  SOURCE 'file'           run the statements of a file
  HELP, EXIT";

impl Session {
    /// Runs a shell command, if `text` is one: its flow, or its error.
    async fn command(&mut self, text: &str) -> Option<Result<Flow, String>> {
        let mut words = text.split_whitespace();
        let first = words.next()?.to_ascii_uppercase();
        let argument = words.next().map(str::to_ascii_uppercase);
        let done = Some(Ok(Flow::Continue));
        match first.as_str() {
            "EXIT" | "QUIT" => Some(Ok(Flow::Exit)),
            "HELP" => {
                println!("{HELP}");
                done
            }
            "CONSISTENCY" => match argument {
                None => {
                    println!("Current consistency level is {}.", self.consistency);
                    done
                }
                Some(level) => match level.parse::<ConsistencyLevel>() {
                    Ok(level) => {
                        self.consistency = level;
                        println!("Consistency level set to {level}.");
                        done
                    }
                    Err(error) => Some(Err(error.to_string())),
                },
            },
            "SERIAL" => Some(Err(
                "ringdb has no lightweight transactions, so no SERIAL CONSISTENCY".into(),
            )),
            "TRACING" => Some(toggle("Tracing", &mut self.tracing, argument.as_deref())),
            "EXPAND" => Some(toggle(
                "Expanded output",
                &mut self.expand,
                argument.as_deref(),
            )),
            "PAGING" => Some(self.paging(argument.as_deref())),
            "SOURCE" => Some(self.source(text).await),
            _ => None,
        }
    }

    fn paging(&mut self, argument: Option<&str>) -> Result<Flow, String> {
        self.paging = match argument {
            None => {
                println!(
                    "Paging is {}.",
                    self.paging
                        .map_or("off".to_string(), |n| format!("on, {n} lines per page"))
                );
                return Ok(Flow::Continue);
            }
            Some("ON") => Some(self.paging.unwrap_or(100)),
            Some("OFF") => None,
            Some(number) => match number.parse::<usize>() {
                Ok(lines) if lines > 0 => Some(lines),
                _ => {
                    return Err(format!(
                        "expected ON, OFF or a number of lines, not {number}"
                    ));
                }
            },
        };
        Ok(Flow::Continue)
    }

    /// `SOURCE 'file'`: the file's statements, stopping at the first error.
    async fn source(&mut self, text: &str) -> Result<Flow, String> {
        let file = text["SOURCE".len()..].trim();
        let file = file.trim_matches('\'').trim_matches('"');
        // `~/…` is the home folder, as in a shell.
        let path = match (file.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) => Path::new(&home).join(rest),
            _ => PathBuf::from(file),
        };
        let contents = read_file(&path).map_err(|e| format!("{e:#}"))?;
        Box::pin(self.run_text(&contents))
            .await
            .map_err(|()| format!("SOURCE '{file}' stopped at the error above"))
    }
}

/// `TRACING`/`EXPAND [ON|OFF]`: sets `setting`, or without an argument
/// shows it (as cqlsh does).
fn toggle(name: &str, setting: &mut bool, argument: Option<&str>) -> Result<Flow, String> {
    let now = match argument {
        None => "currently ",
        Some("ON") => {
            *setting = true;
            ""
        }
        Some("OFF") => {
            *setting = false;
            ""
        }
        Some(other) => return Err(format!("expected ON or OFF, not {other}")),
    };
    println!("{name} is {now}{}.", if *setting { "on" } else { "off" });
    Ok(Flow::Continue)
}

/// Saves the history (best effort) and ends the session.
fn save(editor: &mut LineEditor, history: Option<&Path>) -> ExitCode {
    if let Some(history) = history {
        // Not being able to keep the history loses nothing else.
        let _ = editor.save_history(history);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_end_at_their_line_or_semicolon_and_statements_at_semicolons() {
        let mut buffer =
            "-- a tour\nCONSISTENCY ALL\nDESCRIBE\n  TABLE t; /* x */ EXPAND ON\nUSE".to_string();
        let taken = take_statements(&mut buffer, false);
        assert_eq!(
            taken,
            ["CONSISTENCY ALL", "DESCRIBE\n  TABLE t;", "EXPAND ON"]
        );
        assert_eq!(buffer, "USE");
        assert_eq!(take_statements(&mut buffer, true), ["USE"]);
        assert!(buffer.is_empty());
        // A command between statements does not swallow the next one.
        let mut script = "USE ks;\nTRACING ON\nCREATE TABLE t (k int PRIMARY KEY);\n".to_string();
        assert_eq!(
            take_statements(&mut script, true),
            [
                "USE ks;",
                "TRACING ON",
                "CREATE TABLE t (k int PRIMARY KEY);"
            ]
        );
        let mut line = "CONSISTENCY QUORUM; DESCRIBE KEYSPACES;\n".to_string();
        assert_eq!(
            take_statements(&mut line, false),
            ["CONSISTENCY QUORUM", "DESCRIBE KEYSPACES;"]
        );
        let mut waiting = "USE ks; TRACING ON".to_string();
        assert_eq!(take_statements(&mut waiting, false), ["USE ks;"]);
        assert_eq!(waiting, " TRACING ON");
        let mut comment_only = "-- nothing\n".to_string();
        assert!(take_statements(&mut comment_only, true).is_empty());
        assert!(comment_only.is_empty());
    }
}
