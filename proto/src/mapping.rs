//! Typed rows: what a `SELECT` returned ([`Rows`]) or a key-value read's
//! columns ([`Row`]) read into the Rust types an application keeps, as
//! sqlx's and the Cassandra drivers' `FromRow` do.
//!
//! A value converts to a Rust type by [`FromValue`] (`text` to `String`,
//! `int` to `i32` or any wider integer, `null` to `None` of an `Option`);
//! a row converts by [`FromRow`], implemented for tuples (the columns in
//! order) and by an application for its own structs, by name:
//!
//! ```
//! use ringdb_proto::{FromRow, MappingError, RowView};
//!
//! struct User {
//!     name: String,
//!     age: Option<i32>,
//! }
//!
//! impl FromRow for User {
//!     fn from_row(row: &RowView<'_>) -> Result<User, MappingError> {
//!         Ok(User { name: row.get("name")?, age: row.get("age")? })
//!     }
//! }
//! ```
//!
//! A mismatch is a [`MappingError`] that names the column, never a panic.

use std::net::IpAddr;

use uuid::Uuid;

use crate::{Row, Rows, Value};

/// A row that does not read as the type asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The row has no column of that name.
    #[error("the row has no column {0}")]
    NoColumn(String),
    /// A value of another type (`null` included, for a type that is not
    /// an `Option`).
    #[error("column {column}: expected {expected}, got {got}")]
    WrongType {
        /// The column.
        column: String,
        /// The Rust type asked for.
        expected: &'static str,
        /// The value's CQL type, or `null`.
        got: &'static str,
    },
    /// A tuple of another width than the row's.
    #[error("a row of {found} columns does not read as {wanted} values")]
    WrongWidth {
        /// The tuple's width.
        wanted: usize,
        /// The row's columns.
        found: usize,
    },
}

/// A Rust type a value converts to.
pub trait FromValue: Sized {
    /// The type's name in a [`MappingError`].
    const EXPECTED: &'static str;

    /// The value as this type, or `None` when it is of another type.
    fn from_value(value: &Value) -> Option<Self>;
}

macro_rules! from_value {
    ($rust:ty, $name:literal, $($variant:ident),+) => {
        impl FromValue for $rust {
            const EXPECTED: &'static str = $name;

            fn from_value(value: &Value) -> Option<$rust> {
                match value {
                    $(Value::$variant(v) => Some(<$rust>::from(v.clone())),)+
                    _ => None,
                }
            }
        }
    };
}

from_value!(bool, "boolean", Boolean);
from_value!(i8, "tinyint", TinyInt);
from_value!(i16, "smallint (or narrower)", SmallInt, TinyInt);
from_value!(i32, "int (or narrower)", Int, SmallInt, TinyInt);
from_value!(
    i64,
    "bigint, timestamp (or a narrower integer)",
    BigInt,
    Timestamp,
    Int,
    SmallInt,
    TinyInt
);
from_value!(f32, "float", Float);
from_value!(f64, "double or float", Double, Float);
from_value!(String, "text", Text);
from_value!(Vec<u8>, "blob", Blob);
from_value!(Uuid, "uuid", Uuid);
from_value!(IpAddr, "inet", Inet);

impl FromValue for Value {
    const EXPECTED: &'static str = "any value";

    fn from_value(value: &Value) -> Option<Value> {
        Some(value.clone())
    }
}

impl<T: FromValue> FromValue for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;

    fn from_value(value: &Value) -> Option<Option<T>> {
        match value {
            Value::Null => Some(None),
            value => T::from_value(value).map(Some),
        }
    }
}

/// One row to read from: a `SELECT`'s row (its columns in order) or a
/// key-value row's columns (by name, in name order).
#[derive(Clone, Copy, Debug)]
pub struct RowView<'a>(Source<'a>);

#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    Selected {
        columns: &'a [(String, crate::CqlType)],
        values: &'a [Value],
    },
    Stored(&'a Row),
}

impl<'a> RowView<'a> {
    /// A key-value row's columns.
    pub fn of(row: &'a Row) -> RowView<'a> {
        RowView(Source::Stored(row))
    }

    /// How many columns it has.
    pub fn len(&self) -> usize {
        match self.0 {
            Source::Selected { values, .. } => values.len(),
            Source::Stored(row) => row.len(),
        }
    }

    /// Whether it has no column.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of column `name`, as `T`. A column a key-value row lacks
    /// reads as `null` (an `Option` is `None`): such rows keep only the
    /// columns written.
    pub fn get<T: FromValue>(&self, name: &str) -> Result<T, MappingError> {
        let value = match self.0 {
            Source::Selected { columns, values } => columns
                .iter()
                .position(|(column, _)| column == name)
                .and_then(|i| values.get(i))
                .ok_or_else(|| MappingError::NoColumn(name.to_string()))?,
            Source::Stored(row) => row.get(name).unwrap_or(&Value::Null),
        };
        convert(name, value)
    }

    /// The value of the column at `index` (in the order selected, or in
    /// name order for a key-value row), as `T`.
    pub fn get_at<T: FromValue>(&self, index: usize) -> Result<T, MappingError> {
        let found = match self.0 {
            Source::Selected { columns, values } => columns
                .get(index)
                .map(|(name, _)| name.as_str())
                .zip(values.get(index)),
            Source::Stored(row) => row.iter().nth(index).map(|(n, v)| (n.as_str(), v)),
        };
        match found {
            Some((name, value)) => convert(name, value),
            None => Err(MappingError::NoColumn(format!("#{index}"))),
        }
    }
}

fn convert<T: FromValue>(column: &str, value: &Value) -> Result<T, MappingError> {
    T::from_value(value).ok_or_else(|| MappingError::WrongType {
        column: column.to_string(),
        expected: T::EXPECTED,
        got: value.kind(),
    })
}

/// A Rust type a whole row converts to.
pub trait FromRow: Sized {
    /// The row as this type.
    fn from_row(row: &RowView<'_>) -> Result<Self, MappingError>;
}

macro_rules! from_row_tuple {
    ($width:literal: $($t:ident $i:tt),+) => {
        impl<$($t: FromValue),+> FromRow for ($($t,)+) {
            fn from_row(row: &RowView<'_>) -> Result<Self, MappingError> {
                if row.len() != $width {
                    return Err(MappingError::WrongWidth { wanted: $width, found: row.len() });
                }
                Ok(($(row.get_at::<$t>($i)?,)+))
            }
        }
    };
}

from_row_tuple!(1: A 0);
from_row_tuple!(2: A 0, B 1);
from_row_tuple!(3: A 0, B 1, C 2);
from_row_tuple!(4: A 0, B 1, C 2, D 3);
from_row_tuple!(5: A 0, B 1, C 2, D 3, E 4);
from_row_tuple!(6: A 0, B 1, C 2, D 3, E 4, F 5);
from_row_tuple!(7: A 0, B 1, C 2, D 3, E 4, F 5, G 6);
from_row_tuple!(8: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

impl Rows {
    /// Each row, to read its columns from.
    pub fn iter(&self) -> impl Iterator<Item = RowView<'_>> {
        self.rows.iter().map(|values| {
            RowView(Source::Selected {
                columns: &self.columns,
                values,
            })
        })
    }

    /// Each row as a `T`: a tuple of the columns in order, or a type of
    /// the application's ([`FromRow`]). A row with siblings comes once per
    /// version ([`Rows::siblings`] says which).
    pub fn typed<T: FromRow>(&self) -> impl Iterator<Item = Result<T, MappingError>> + '_ {
        self.iter().map(|row| T::from_row(&row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CqlType;

    fn rows() -> Rows {
        Rows {
            columns: vec![
                ("name".into(), CqlType::Text),
                ("age".into(), CqlType::Int),
                ("seen".into(), CqlType::Timestamp),
            ],
            rows: vec![
                vec!["ada".into(), 36.into(), Value::Timestamp(1_000)],
                vec!["bob".into(), Value::Null, Value::Timestamp(2_000)],
            ],
            ..Rows::default()
        }
    }

    #[derive(Debug, PartialEq)]
    struct Person {
        name: String,
        age: Option<i64>,
    }

    impl FromRow for Person {
        fn from_row(row: &RowView<'_>) -> Result<Person, MappingError> {
            Ok(Person {
                name: row.get("name")?,
                age: row.get("age")?,
            })
        }
    }

    #[test]
    fn rows_read_as_tuples_and_structs_and_mismatches_name_the_column() {
        let rows = rows();
        let tuples: Vec<(String, Option<i32>, i64)> =
            rows.typed().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            tuples,
            vec![("ada".into(), Some(36), 1_000), ("bob".into(), None, 2_000)]
        );
        let people: Vec<Person> = rows.typed().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            people[1],
            Person {
                name: "bob".into(),
                age: None
            }
        );
        // A null into a type that is not an Option, a narrower integer,
        // another width and a missing column are errors that say which.
        let null = rows.typed::<(String, i32, i64)>().nth(1).unwrap();
        assert_eq!(
            null.unwrap_err().to_string(),
            "column age: expected int (or narrower), got null"
        );
        let narrow = rows.iter().next().unwrap().get::<i16>("age");
        assert!(matches!(narrow, Err(MappingError::WrongType { .. })));
        let wide = rows.typed::<(String, i32)>().next().unwrap();
        assert_eq!(
            wide,
            Err(MappingError::WrongWidth {
                wanted: 2,
                found: 3
            })
        );
        let missing = rows.iter().next().unwrap().get::<String>("email");
        assert_eq!(missing, Err(MappingError::NoColumn("email".into())));
    }

    #[test]
    fn a_key_value_row_reads_by_name_with_absent_columns_null() {
        let row = Row::from([("name".to_string(), Value::from("ada"))]);
        let view = RowView::of(&row);
        assert_eq!(view.get::<String>("name").unwrap(), "ada");
        assert_eq!(view.get::<Option<i32>>("age").unwrap(), None);
        assert!(view.get::<i32>("age").is_err());
        assert_eq!(<(String,)>::from_row(&view).unwrap(), ("ada".into(),));
    }
}
