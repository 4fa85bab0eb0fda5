//! Partition keys serialize as Cassandra serializes them, so their tokens
//! are Cassandra's: pinned by known answers from the `cassandra-driver`
//! Python package (fixtures/gen_partition_key_vectors.py).

use std::str::FromStr;

use num_bigint::BigInt;
use ringdb_proto::{CqlType, PartitionKey, Value};
use ringdb_ring::Token;

/// Our value for a fixture's `type=text` (the generator's conventions:
/// timestamps in ms, dates in days, times in ns).
fn value(ty: CqlType, text: &str) -> Value {
    match ty {
        CqlType::Text | CqlType::Ascii => Value::Text(text.to_string()),
        CqlType::Int => Value::Int(text.parse().unwrap()),
        CqlType::BigInt => Value::BigInt(text.parse().unwrap()),
        CqlType::SmallInt => Value::SmallInt(text.parse().unwrap()),
        CqlType::TinyInt => Value::TinyInt(text.parse().unwrap()),
        CqlType::Boolean => Value::Boolean(text == "true"),
        CqlType::Varint => Value::Varint(BigInt::from_str(text).unwrap()),
        CqlType::Decimal => {
            let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
            Value::Decimal {
                unscaled: BigInt::from_str(&format!("{whole}{fraction}")).unwrap(),
                scale: fraction.len() as i32,
            }
        }
        CqlType::Float => Value::Float(text.parse().unwrap()),
        CqlType::Double => Value::Double(text.parse().unwrap()),
        CqlType::Uuid | CqlType::TimeUuid => Value::Uuid(text.parse().unwrap()),
        CqlType::Blob => Value::Blob(hex::decode(text).unwrap()),
        CqlType::Inet => Value::Inet(text.parse().unwrap()),
        CqlType::Timestamp => Value::Timestamp(text.parse().unwrap()),
        CqlType::Date => Value::Date(text.parse().unwrap()),
        CqlType::Time => Value::Time(text.parse().unwrap()),
    }
}

#[test]
fn partition_keys_serialize_and_hash_as_cassandra_drivers_do() {
    let fixture = include_str!("fixtures/partition_key_vectors.txt");
    let mut checked = 0;
    for line in fixture.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [key, serialized, token] = fields[..] else {
            panic!("malformed fixture line {line:?}");
        };
        let columns: Vec<(Value, CqlType)> = key
            .split('|')
            .map(|part| {
                let (ty, text) = part.split_once('=').unwrap();
                let ty: CqlType = ty.parse().unwrap();
                (value(ty, text), ty)
            })
            .collect();
        let refs: Vec<(&Value, CqlType)> = columns.iter().map(|(v, t)| (v, *t)).collect();
        let partition = PartitionKey::from_values(&refs).unwrap();
        assert_eq!(hex::encode(partition.as_bytes()), serialized, "{key}");
        assert_eq!(
            Token::of(partition.as_bytes()).0,
            token.parse::<i64>().unwrap(),
            "{key}"
        );
        let types: Vec<CqlType> = columns.iter().map(|(_, t)| *t).collect();
        let values: Vec<Value> = columns.into_iter().map(|(v, _)| v).collect();
        assert_eq!(partition.decode(&types).unwrap(), values, "{key}");
        checked += 1;
    }
    assert_eq!(checked, 33);
}

#[test]
fn bad_partition_keys_are_refused_with_a_reason() {
    let text = |s: &str| Value::Text(s.to_string());
    let empty = PartitionKey::from_values(&[(&text(""), CqlType::Text)]);
    assert_eq!(
        empty.unwrap_err().to_string(),
        "the partition key is empty: a row needs a key of at least one byte"
    );
    let null = PartitionKey::from_values(&[(&Value::Null, CqlType::Int)]);
    assert_eq!(null.unwrap_err().to_string(), "a key column cannot be null");
    let wrong = PartitionKey::from_values(&[(&text("x"), CqlType::Int)]);
    assert_eq!(
        wrong.unwrap_err().to_string(),
        "key column of type int given a text"
    );
    // Bytes that are not a composite of the table's columns.
    let garbage = PartitionKey::new(vec![0, 9, 1]).unwrap();
    assert!(garbage.decode(&[CqlType::Int, CqlType::Int]).is_err());
    assert!(garbage.decode(&[CqlType::Int]).is_err());
}
