//! Column values and rows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A typed column value (the CQL types ringdb supports so far).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// No value.
    Null,
    /// `boolean`.
    Boolean(bool),
    /// `int`: 32-bit signed.
    Int(i32),
    /// `bigint`: 64-bit signed.
    BigInt(i64),
    /// `double`.
    Double(f64),
    /// `text`: UTF-8.
    Text(String),
    /// `blob`: raw bytes.
    Blob(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// A row's regular columns: column name → value. The versioned unit of ringdb.
pub type Row = BTreeMap<String, Value>;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Boolean),
            any::<i32>().prop_map(Value::Int),
            any::<i64>().prop_map(Value::BigInt),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Value::Double),
            ".*".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Blob),
        ]
    }

    proptest! {
        #[test]
        fn rows_round_trip_through_messagepack(row in proptest::collection::btree_map("[a-z]{1,8}", value(), 0..8)) {
            let bytes = rmp_serde::to_vec_named(&row).unwrap();
            let back: Row = rmp_serde::from_slice(&bytes).unwrap();
            prop_assert_eq!(back, row);
        }
    }
}
