//! Column values and rows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A typed column value (the CQL types ringdb supports so far).
///
/// Values are equal when they encode to the same bytes: a `Double` compares
/// by its bits, so NaN equals itself (a row holding one is not repaired on
/// every read as if its replicas disagreed) and `0.0` differs from `-0.0`.
#[derive(Clone, Debug, Serialize, Deserialize)]
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

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Boolean(a), Value::Boolean(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::BigInt(a), Value::BigInt(b)) => a == b,
            (Value::Double(a), Value::Double(b)) => a.to_bits() == b.to_bits(),
            (Value::Text(a), Value::Text(b)) => a == b,
            (Value::Blob(a), Value::Blob(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

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
            any::<f64>().prop_map(Value::Double),
            Just(Value::Double(f64::NAN)),
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

        #[test]
        fn values_are_equal_exactly_when_they_encode_alike(a in value(), b in value()) {
            let (ea, eb) = (rmp_serde::to_vec(&a).unwrap(), rmp_serde::to_vec(&b).unwrap());
            prop_assert_eq!(a == b, ea == eb);
            prop_assert_eq!(&a, &a.clone());
        }
    }
}
