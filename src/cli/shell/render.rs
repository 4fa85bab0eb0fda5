//! How the shell shows results: rows as cqlsh's aligned tables (or one
//! block per row with `EXPAND ON`), descriptions as text, errors with the
//! statement's line and a caret under the column.

use comfy_table::{CellAlignment, Table};
use ringdb::client::{ClientError, CqlType, QueryResult, RequestError, Rows, Value};

/// cqlsh's look: ` k | v` over `---+---`, no outer borders.
const CQLSH_STYLE: &str = "     -+ |          ";

/// The text to print for a statement's result (empty: nothing to print).
pub fn result(result: &QueryResult, expand: bool) -> String {
    match result {
        QueryResult::Void | QueryResult::SetKeyspace(_) | QueryResult::SchemaChange { .. } => {
            String::new()
        }
        QueryResult::Description(text) => format!("\n{}\n", text.trim_end()),
        QueryResult::Rows(rows) if expand => expanded(rows),
        QueryResult::Rows(rows) => table(rows),
    }
}

fn table(rows: &Rows) -> String {
    let mut table = Table::new();
    table.load_preset(CQLSH_STYLE);
    table.set_header(rows.columns.iter().map(|(name, _)| name.as_str()));
    for row in &rows.rows {
        table.add_row(row.iter().map(Value::to_string));
    }
    for (i, (_, ty)) in rows.columns.iter().enumerate() {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(alignment(*ty));
        }
    }
    format!("\n{table}\n\n({} rows)\n", rows.rows.len())
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
        for ((name, _), value) in rows.columns.iter().zip(row) {
            table.add_row([name.clone(), value.to_string()]);
        }
        text.push_str(&format!("\n{table}\n"));
    }
    text.push_str(&format!("\n({} rows)\n", rows.rows.len()));
    text
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
        }
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
