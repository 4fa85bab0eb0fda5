//! How the shell shows results: rows as cqlsh's aligned tables (or one
//! block per row with `EXPAND ON`), descriptions as text, errors with the
//! statement's line and a caret under the column.

use comfy_table::{CellAlignment, Table};
#[cfg(test)]
use ringdb::client::SiblingMark;
use ringdb::client::{ClientError, CqlType, QueryResult, RequestError, Rows, TraceEvent, Value};

/// cqlsh's look: ` k | v` over `---+---`, no outer borders.
const CQLSH_STYLE: &str = "     -+ |          ";

/// The text to print for a statement's result (empty: nothing to print).
pub fn result(result: &QueryResult, expand: bool) -> String {
    match result {
        QueryResult::Void
        | QueryResult::SetKeyspace(_)
        | QueryResult::SchemaChange { .. }
        | QueryResult::Written { .. } => String::new(),
        QueryResult::Description(text) => format!("\n{}\n", text.trim_end()),
        QueryResult::Rows(rows) if expand => expanded(rows),
        QueryResult::Rows(rows) => table(rows),
    }
}

fn table(rows: &Rows) -> String {
    let mut table = Table::new();
    table.load_preset(CQLSH_STYLE);
    // Marks are shown when some row has siblings.
    let marked = rows.siblings.iter().flatten().any(|mark| mark.count > 1);
    let mut header: Vec<&str> = Vec::new();
    if marked {
        header.push(SIBLING_HEADER);
    }
    header.extend(rows.columns.iter().map(|(name, _)| name.as_str()));
    table.set_header(header);
    for (n, row) in rows.rows.iter().enumerate() {
        let mut cells: Vec<String> = Vec::new();
        if marked {
            cells.push(sibling(rows, n));
        }
        cells.extend(row.iter().map(Value::to_string));
        table.add_row(cells);
    }
    let shift = usize::from(marked);
    for (i, (_, ty)) in rows.columns.iter().enumerate() {
        if let Some(column) = table.column_mut(i + shift) {
            column.set_cell_alignment(alignment(*ty));
        }
    }
    let note = if marked {
        "\nRows marked [n/m] are concurrent versions (siblings) of one row: \
         a write of the row now replaces them all.\n"
    } else {
        ""
    };
    format!("\n{table}\n\n({} rows){note}\n", rows.rows.len())
}

/// The header of the column that marks siblings.
const SIBLING_HEADER: &str = "[sibling]";

/// Row `n`'s sibling mark: `[1/2] writer`, or nothing.
fn sibling(rows: &Rows, n: usize) -> String {
    match rows.siblings.get(n) {
        Some(Some(mark)) if mark.count > 1 => {
            format!("[{}/{}] {}", mark.index, mark.count, mark.writer)
        }
        _ => String::new(),
    }
}

/// Numbers right-aligned, as cqlsh does; the rest left.
fn alignment(ty: CqlType) -> CellAlignment {
    match ty {
        CqlType::TinyInt
        | CqlType::SmallInt
        | CqlType::Int
        | CqlType::BigInt
        | CqlType::Varint
        | CqlType::Float
        | CqlType::Double
        | CqlType::Decimal => CellAlignment::Right,
        _ => CellAlignment::Left,
    }
}

/// `EXPAND ON`: each row as a block of `column | value` lines.
fn expanded(rows: &Rows) -> String {
    let mut text = String::new();
    for (n, row) in rows.rows.iter().enumerate() {
        let mut table = Table::new();
        table.load_preset(CQLSH_STYLE);
        table.set_header([format!("@ Row {}", n + 1), String::new()]);
        if rows.siblings.iter().flatten().any(|mark| mark.count > 1) {
            table.add_row([SIBLING_HEADER.to_string(), sibling(rows, n)]);
        }
        for ((name, _), value) in rows.columns.iter().zip(row) {
            table.add_row([name.clone(), value.to_string()]);
        }
        text.push_str(&format!("\n{table}\n"));
    }
    text.push_str(&format!("\n({} rows)\n", rows.rows.len()));
    text
}

/// A statement's trace, as cqlsh shows one: each event of its coordinator,
/// the node that recorded it and the microseconds since the statement
/// arrived.
pub fn trace(events: &[TraceEvent]) -> String {
    if events.is_empty() {
        return "\n(no trace events: the statement read and wrote nothing)\n\n".to_string();
    }
    let mut table = Table::new();
    table.load_preset(CQLSH_STYLE);
    table.set_header(["activity", "source", "source_elapsed"]);
    for event in events {
        table.add_row([
            event.activity.clone(),
            event.source.clone(),
            event.elapsed_micros.to_string(),
        ]);
    }
    if let Some(column) = table.column_mut(2) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    format!("\nTracing session:\n\n{table}\n\n")
}

/// An error, and for an invalid statement the line of `statement` it is
/// on with a caret under the column.
pub fn error(error: &ClientError, statement: &str) -> String {
    match error {
        ClientError::Request(RequestError::InvalidStatement {
            line,
            column,
            message,
        }) => {
            let text = statement
                .lines()
                .nth((*line as usize).saturating_sub(1))
                .unwrap_or("");
            let caret = " ".repeat((*column as usize).saturating_sub(1));
            format!("line {line}:{column}: {message}\n  {text}\n  {caret}^")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Rows {
        Rows {
            columns: vec![("k".into(), CqlType::Int), ("name".into(), CqlType::Text)],
            rows: vec![
                vec![Value::Int(1), Value::Text("ada".into())],
                vec![Value::Int(200), Value::Null],
            ],
            ..Rows::default()
        }
    }

    #[test]
    fn siblings_are_marked_in_a_column_of_their_own() {
        let mut rows = rows();
        rows.rows[1] = vec![Value::Int(1), Value::Text("bea".into())];
        rows.siblings = vec![
            Some(SiblingMark {
                index: 1,
                count: 2,
                writer: "node1@a:1".into(),
            }),
            Some(SiblingMark {
                index: 2,
                count: 2,
                writer: "node2@b:1".into(),
            }),
        ];
        let text = result(&QueryResult::Rows(rows), false);
        assert!(text.contains(" [1/2] node1@a:1 |"), "{text}");
        assert!(text.contains(" [2/2] node2@b:1 |"), "{text}");
        assert!(text.contains("(siblings)"), "{text}");
    }

    #[test]
    fn rows_look_as_in_cqlsh() {
        let text = result(&QueryResult::Rows(rows()), false);
        assert_eq!(
            text,
            "\n   k | name \n-----+------\n   1 | ada  \n 200 | null \n\n(2 rows)\n"
        );
    }

    #[test]
    fn expanded_rows_are_blocks() {
        let text = result(&QueryResult::Rows(rows()), true);
        assert!(text.contains("@ Row 1"), "{text}");
        assert!(text.contains(" name    | ada "), "{text}");
        assert!(text.ends_with("(2 rows)\n"));
    }

    #[test]
    fn statement_errors_point_at_the_column() {
        let error = ClientError::Request(RequestError::InvalidStatement {
            line: 2,
            column: 1,
            message: "expected FROM, found 'FORM'".into(),
        });
        assert_eq!(
            super::error(&error, "SELECT *\nFORM t;"),
            "line 2:1: expected FROM, found 'FORM'\n  FORM t;\n  ^"
        );
    }
}
