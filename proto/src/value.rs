//! Column values and rows.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use num_bigint::{BigInt, Sign};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::CqlType;

/// A typed column value.
///
/// Values are equal when they encode to the same bytes: a `Double` compares
/// by its bits, so NaN equals itself (a row holding one is not repaired on
/// every read as if its replicas disagreed) and `0.0` differs from `-0.0`;
/// a `Decimal` keeps its scale, so `1.0` differs from `1.00`.
///
/// The variants after `Blob` were added with typed tables; new variants go
/// last, so that what an earlier release wrote decodes the same.
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
    /// `text` or `ascii`: UTF-8.
    Text(String),
    /// `blob`: raw bytes.
    Blob(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `tinyint`: 8-bit signed.
    TinyInt(i8),
    /// `smallint`: 16-bit signed.
    SmallInt(i16),
    /// `float`.
    Float(f32),
    /// `varint`: an integer of any size (two's complement on the wire).
    Varint(#[serde(with = "varint_bytes")] BigInt),
    /// `decimal`: `unscaled × 10^-scale`.
    Decimal {
        /// The digits, as an integer.
        #[serde(with = "varint_bytes")]
        unscaled: BigInt,
        /// How many of them are after the decimal point (negative: zeros
        /// to add before it).
        scale: i32,
    },
    /// `uuid` or `timeuuid`.
    Uuid(Uuid),
    /// `timestamp`: milliseconds since the Unix epoch.
    Timestamp(i64),
    /// `date`: days since the Unix epoch.
    Date(i32),
    /// `time`: nanoseconds since midnight, in `[0, 86_400 s)`.
    Time(i64),
    /// `inet`.
    Inet(IpAddr),
}

/// Nanoseconds in a day: a `time` is below this.
pub const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// A value that is not of the type asked for, or bytes that do not decode
/// as a value of it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A value of another type (or out of the type's range).
    #[error("expected a value of type {expected}, got {got}")]
    WrongType {
        /// The type asked for.
        expected: CqlType,
        /// What the value is.
        got: String,
    },
    /// Serialized bytes of the wrong length or content for the type.
    #[error("{len} bytes are not a serialized {ty}")]
    Malformed {
        /// The type.
        ty: CqlType,
        /// How many bytes there were.
        len: usize,
    },
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Double(a), Value::Double(b)) => a.to_bits() == b.to_bits(),
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Null, Value::Null) => true,
            (Value::Boolean(a), Value::Boolean(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::BigInt(a), Value::BigInt(b)) => a == b,
            (Value::Text(a), Value::Text(b)) => a == b,
            (Value::Blob(a), Value::Blob(b)) => a == b,
            (Value::TinyInt(a), Value::TinyInt(b)) => a == b,
            (Value::SmallInt(a), Value::SmallInt(b)) => a == b,
            (Value::Varint(a), Value::Varint(b)) => a == b,
            (
                Value::Decimal { unscaled, scale },
                Value::Decimal {
                    unscaled: other_unscaled,
                    scale: other_scale,
                },
            ) => unscaled == other_unscaled && scale == other_scale,
            (Value::Uuid(a), Value::Uuid(b)) => a == b,
            (Value::Timestamp(a), Value::Timestamp(b)) => a == b,
            (Value::Date(a), Value::Date(b)) => a == b,
            (Value::Time(a), Value::Time(b)) => a == b,
            (Value::Inet(a), Value::Inet(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Value {
    /// A short name of what the value is, for errors: its type, or `null`.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Boolean(_) => "boolean",
            Value::Int(_) => "int",
            Value::BigInt(_) => "bigint",
            Value::Double(_) => "double",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
            Value::TinyInt(_) => "tinyint",
            Value::SmallInt(_) => "smallint",
            Value::Float(_) => "float",
            Value::Varint(_) => "varint",
            Value::Decimal { .. } => "decimal",
            Value::Uuid(_) => "uuid",
            Value::Timestamp(_) => "timestamp",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::Inet(_) => "inet",
        }
    }

    /// Whether the value can be stored in a column of type `ty`: `null`
    /// fits every type; `ascii` takes ASCII text only, `timeuuid` version 1
    /// UUIDs only, `time` less than a day.
    pub fn fits(&self, ty: CqlType) -> bool {
        match (self, ty) {
            (Value::Null, _) => true,
            (Value::Text(text), CqlType::Ascii) => text.is_ascii(),
            (Value::Uuid(uuid), CqlType::TimeUuid) => uuid.get_version_num() == 1,
            (Value::Time(nanos), CqlType::Time) => (0..NANOS_PER_DAY).contains(nanos),
            (Value::Boolean(_), CqlType::Boolean)
            | (Value::Int(_), CqlType::Int)
            | (Value::BigInt(_), CqlType::BigInt)
            | (Value::Double(_), CqlType::Double)
            | (Value::Text(_), CqlType::Text)
            | (Value::Blob(_), CqlType::Blob)
            | (Value::TinyInt(_), CqlType::TinyInt)
            | (Value::SmallInt(_), CqlType::SmallInt)
            | (Value::Float(_), CqlType::Float)
            | (Value::Varint(_), CqlType::Varint)
            | (Value::Decimal { .. }, CqlType::Decimal)
            | (Value::Uuid(_), CqlType::Uuid)
            | (Value::Timestamp(_), CqlType::Timestamp)
            | (Value::Date(_), CqlType::Date)
            | (Value::Inet(_), CqlType::Inet) => true,
            _ => false,
        }
    }

    /// The value checked against `ty`.
    pub fn checked(self, ty: CqlType) -> Result<Value, ValueError> {
        if self.fits(ty) {
            Ok(self)
        } else {
            Err(ValueError::WrongType {
                expected: ty,
                got: self.kind().to_string(),
            })
        }
    }

    /// The value serialized as Cassandra serializes it (the CQL binary
    /// protocol's value encoding): what a partition key's token is computed
    /// over. `null` serializes to nothing.
    pub fn to_cassandra_bytes(&self) -> Vec<u8> {
        match self {
            Value::Null => Vec::new(),
            Value::Boolean(b) => vec![u8::from(*b)],
            Value::TinyInt(n) => n.to_be_bytes().to_vec(),
            Value::SmallInt(n) => n.to_be_bytes().to_vec(),
            Value::Int(n) => n.to_be_bytes().to_vec(),
            Value::BigInt(n) | Value::Timestamp(n) | Value::Time(n) => n.to_be_bytes().to_vec(),
            Value::Float(x) => x.to_bits().to_be_bytes().to_vec(),
            Value::Double(x) => x.to_bits().to_be_bytes().to_vec(),
            Value::Text(text) => text.as_bytes().to_vec(),
            Value::Blob(bytes) => bytes.clone(),
            Value::Varint(n) => n.to_signed_bytes_be(),
            Value::Decimal { unscaled, scale } => {
                let mut bytes = scale.to_be_bytes().to_vec();
                bytes.extend(unscaled.to_signed_bytes_be());
                bytes
            }
            Value::Uuid(uuid) => uuid.as_bytes().to_vec(),
            // Cassandra's `date` is unsigned days with the epoch at 2^31.
            Value::Date(days) => ((*days as u32) ^ (1 << 31)).to_be_bytes().to_vec(),
            Value::Inet(IpAddr::V4(address)) => address.octets().to_vec(),
            Value::Inet(IpAddr::V6(address)) => address.octets().to_vec(),
        }
    }

    /// Decodes what [`Value::to_cassandra_bytes`] makes of a value of `ty`.
    pub fn from_cassandra_bytes(ty: CqlType, bytes: &[u8]) -> Result<Value, ValueError> {
        let malformed = || ValueError::Malformed {
            ty,
            len: bytes.len(),
        };
        if ty.fixed_length().is_some_and(|len| len != bytes.len()) {
            return Err(malformed());
        }
        let value = match ty {
            CqlType::Boolean => Value::Boolean(bytes[0] != 0),
            CqlType::TinyInt => Value::TinyInt(i8::from_be_bytes(fixed(bytes))),
            CqlType::SmallInt => Value::SmallInt(i16::from_be_bytes(fixed(bytes))),
            CqlType::Int => Value::Int(i32::from_be_bytes(fixed(bytes))),
            CqlType::BigInt => Value::BigInt(i64::from_be_bytes(fixed(bytes))),
            CqlType::Timestamp => Value::Timestamp(i64::from_be_bytes(fixed(bytes))),
            CqlType::Time => Value::Time(i64::from_be_bytes(fixed(bytes))),
            CqlType::Float => Value::Float(f32::from_bits(u32::from_be_bytes(fixed(bytes)))),
            CqlType::Double => Value::Double(f64::from_bits(u64::from_be_bytes(fixed(bytes)))),
            CqlType::Date => Value::Date((u32::from_be_bytes(fixed(bytes)) ^ (1 << 31)) as i32),
            CqlType::Uuid | CqlType::TimeUuid => Value::Uuid(Uuid::from_bytes(fixed(bytes))),
            CqlType::Text | CqlType::Ascii => {
                Value::Text(String::from_utf8(bytes.to_vec()).map_err(|_| malformed())?)
            }
            CqlType::Blob => Value::Blob(bytes.to_vec()),
            CqlType::Varint if bytes.is_empty() => return Err(malformed()),
            CqlType::Varint => Value::Varint(BigInt::from_signed_bytes_be(bytes)),
            CqlType::Decimal if bytes.len() < 5 => return Err(malformed()),
            CqlType::Decimal => Value::Decimal {
                scale: i32::from_be_bytes(fixed(&bytes[..4])),
                unscaled: BigInt::from_signed_bytes_be(&bytes[4..]),
            },
            CqlType::Inet => match bytes.len() {
                4 => Value::Inet(IpAddr::from(<[u8; 4]>::try_from(bytes).expect("4 bytes"))),
                16 => Value::Inet(IpAddr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes"))),
                _ => return Err(malformed()),
            },
        };
        value.checked(ty).map_err(|_| malformed())
    }
}

/// Shows a value as cqlsh does: text as it is, `True`/`False`, blobs in
/// hex, timestamps as `2026-12-06 13:04:05.123000+0000` (UTC), dates as
/// `2026-12-06`, times as `13:04:05.000000000`; floats exactly (the
/// shortest text that reads back as the same float, where cqlsh rounds).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Boolean(true) => f.write_str("True"),
            Value::Boolean(false) => f.write_str("False"),
            Value::TinyInt(n) => write!(f, "{n}"),
            Value::SmallInt(n) => write!(f, "{n}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::BigInt(n) => write!(f, "{n}"),
            Value::Float(x) => show_float(f64::from(*x), &x.to_string(), f),
            Value::Double(x) => show_float(*x, &x.to_string(), f),
            Value::Text(text) => f.write_str(text),
            Value::Blob(bytes) => {
                f.write_str("0x")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Value::Varint(n) => write!(f, "{n}"),
            Value::Decimal { unscaled, scale } => show_decimal(unscaled, *scale, f),
            Value::Uuid(uuid) => write!(f, "{uuid}"),
            Value::Timestamp(millis) => show_timestamp(*millis, f),
            Value::Date(days) => {
                let julian = UNIX_EPOCH_JULIAN_DAY.checked_add(*days);
                match julian.map(time::Date::from_julian_day) {
                    Some(Ok(date)) => write!(f, "{date}"),
                    _ => write!(f, "{days}"),
                }
            }
            Value::Time(nanos) => {
                let seconds = nanos / 1_000_000_000;
                let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
                write!(
                    f,
                    "{hours:02}:{minutes:02}:{seconds:02}.{:09}",
                    nanos % 1_000_000_000
                )
            }
            Value::Inet(address) => write!(f, "{address}"),
        }
    }
}

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

fn show_float(x: f64, shortest: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match x {
        x if x.is_nan() => f.write_str("NaN"),
        f64::INFINITY => f.write_str("Infinity"),
        f64::NEG_INFINITY => f.write_str("-Infinity"),
        _ => f.write_str(shortest),
    }
}

fn show_decimal(unscaled: &BigInt, scale: i32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let digits = unscaled.magnitude().to_string();
    let sign = if unscaled.sign() == Sign::Minus {
        "-"
    } else {
        ""
    };
    if scale <= 0 {
        // Plain while short; an exponent rather than pages of zeros.
        let zeros = -i64::from(scale);
        return if zeros <= 32 {
            write!(f, "{sign}{digits}{}", "0".repeat(zeros as usize))
        } else {
            write!(f, "{sign}{digits}E+{zeros}")
        };
    }
    if scale as usize > digits.len() + 32 {
        // An exponent rather than pages of zeros.
        return write!(f, "{sign}{digits}E-{scale}");
    }
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    write!(f, "{sign}{whole}.{fraction}")
}

fn show_timestamp(millis: i64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let nanos = i128::from(millis) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(at) => write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+0000",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.microsecond()
        ),
        Err(_) => write!(f, "{millis}"),
    }
}

/// The first `N` bytes as an array (the caller checked the length).
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes[..N].try_into().expect("length checked")
}

/// Serde for a [`BigInt`] as its two's complement bytes, big-endian (the
/// CQL form, and a MessagePack `bin`).
mod varint_bytes {
    use num_bigint::BigInt;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &BigInt, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&n.to_signed_bytes_be())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BigInt, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        Ok(BigInt::from_signed_bytes_be(&bytes))
    }
}

/// A row's regular columns: column name → value. The versioned unit of ringdb.
pub type Row = BTreeMap<String, Value>;

/// Values from the Rust types that hold them, so that an application
/// writes `Value::from("Ada")` or `42.into()`: text, the integer and
/// floating types, booleans, bytes (a blob) and UUIDs; `None` is null.
macro_rules! value_from {
    ($($rust:ty => $variant:ident),* $(,)?) => {$(
        impl From<$rust> for Value {
            fn from(value: $rust) -> Value {
                Value::$variant(value.into())
            }
        }
    )*};
}

value_from! {
    String => Text,
    &str => Text,
    bool => Boolean,
    i8 => TinyInt,
    i16 => SmallInt,
    i32 => Int,
    i64 => BigInt,
    f32 => Float,
    f64 => Double,
    Vec<u8> => Blob,
    &[u8] => Blob,
    Uuid => Uuid,
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Value {
        value.map_or(Value::Null, Into::into)
    }
}

/// Proptest strategies for values, shared by the tests of this crate.
#[cfg(test)]
pub(crate) mod strategies {
    use proptest::prelude::*;

    use super::*;

    /// Any value of type `ty` (never `null`).
    pub(crate) fn value_of(ty: CqlType) -> BoxedStrategy<Value> {
        let big = || proptest::collection::vec(any::<u8>(), 1..24);
        match ty {
            CqlType::Ascii => "[ -~]{0,12}".prop_map(Value::Text).boxed(),
            CqlType::Text => prop_oneof!["\\PC{0,12}", "[a\\x00\\u{ff}]{0,6}"]
                .prop_map(Value::Text)
                .boxed(),
            CqlType::Blob => {
                proptest::collection::vec(prop_oneof![Just(0u8), Just(255u8), any::<u8>()], 0..12)
                    .prop_map(Value::Blob)
                    .boxed()
            }
            CqlType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
            CqlType::TinyInt => any::<i8>().prop_map(Value::TinyInt).boxed(),
            CqlType::SmallInt => any::<i16>().prop_map(Value::SmallInt).boxed(),
            CqlType::Int => any::<i32>().prop_map(Value::Int).boxed(),
            CqlType::BigInt => any::<i64>().prop_map(Value::BigInt).boxed(),
            CqlType::Timestamp => any::<i64>().prop_map(Value::Timestamp).boxed(),
            CqlType::Time => (0..NANOS_PER_DAY).prop_map(Value::Time).boxed(),
            CqlType::Date => any::<i32>().prop_map(Value::Date).boxed(),
            CqlType::Float => prop_oneof![any::<f32>(), Just(0.0), Just(-0.0), Just(f32::INFINITY)]
                .prop_map(Value::Float)
                .boxed(),
            CqlType::Double => prop_oneof![any::<f64>(), Just(-0.0), Just(f64::NEG_INFINITY)]
                .prop_map(Value::Double)
                .boxed(),
            CqlType::Varint => prop_oneof![
                any::<i64>().prop_map(BigInt::from),
                big().prop_map(|b| BigInt::from_signed_bytes_be(&b)),
            ]
            .prop_map(Value::Varint)
            .boxed(),
            CqlType::Decimal => (big(), -20i32..20)
                .prop_map(|(b, scale)| Value::Decimal {
                    unscaled: BigInt::from_signed_bytes_be(&b),
                    scale,
                })
                .boxed(),
            CqlType::Uuid => any::<[u8; 16]>()
                .prop_map(|b| Value::Uuid(Uuid::from_bytes(b)))
                .boxed(),
            CqlType::TimeUuid => (any::<u64>(), any::<u16>(), any::<[u8; 6]>())
                .prop_map(|(ticks, seq, node)| {
                    let ts =
                        uuid::Timestamp::from_gregorian_time(ticks & ((1 << 60) - 1), seq & 0x3fff);
                    Value::Uuid(Uuid::new_v1(ts, &node))
                })
                .boxed(),
            CqlType::Inet => prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ]
            .prop_map(Value::Inet)
            .boxed(),
        }
    }

    /// Any type.
    pub(crate) fn cql_type() -> impl Strategy<Value = CqlType> {
        proptest::sample::select(CqlType::ALL.to_vec())
    }

    /// Any value, `null` included.
    pub(crate) fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            Just(Value::Double(f64::NAN)),
            cql_type().prop_flat_map(value_of),
        ]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::strategies::*;
    use super::*;

    #[test]
    fn rust_values_become_the_cql_values_that_hold_them() {
        assert_eq!(Value::from("Ada"), Value::Text("Ada".into()));
        assert_eq!(Value::from(String::from("Ada")), Value::Text("Ada".into()));
        assert_eq!(Value::from(7i32), Value::Int(7));
        assert_eq!(Value::from(7i64), Value::BigInt(7));
        assert_eq!(Value::from(-1i8), Value::TinyInt(-1));
        assert_eq!(Value::from(true), Value::Boolean(true));
        assert_eq!(Value::from(0.5f64), Value::Double(0.5));
        assert_eq!(Value::from(&b"\x00\xff"[..]), Value::Blob(vec![0, 255]));
        assert_eq!(Value::from(None::<i32>), Value::Null);
        assert_eq!(Value::from(Some("x")), Value::Text("x".into()));
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

        #[test]
        fn cassandra_bytes_round_trip((ty, value) in cql_type().prop_flat_map(|ty| (Just(ty), value_of(ty)))) {
            let bytes = value.to_cassandra_bytes();
            prop_assert_eq!(Value::from_cassandra_bytes(ty, &bytes), Ok(value.clone()));
            prop_assert!(value.fits(ty));
        }
    }

    #[test]
    fn cassandra_bytes_of_known_values() {
        assert_eq!(Value::Int(1).to_cassandra_bytes(), [0, 0, 0, 1]);
        assert_eq!(
            Value::Varint(BigInt::from(-129)).to_cassandra_bytes(),
            [0xff, 0x7f]
        );
        assert_eq!(
            Value::Varint(BigInt::from(128)).to_cassandra_bytes(),
            [0x00, 0x80]
        );
        // 1.50 = 150 × 10^-2
        let decimal = Value::Decimal {
            unscaled: BigInt::from(150),
            scale: 2,
        };
        assert_eq!(decimal.to_cassandra_bytes(), [0, 0, 0, 2, 0x00, 0x96]);
        // 1970-01-01 is 2^31.
        assert_eq!(Value::Date(0).to_cassandra_bytes(), [0x80, 0, 0, 0]);
        assert_eq!(
            Value::Date(-1).to_cassandra_bytes(),
            [0x7f, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn values_show_as_cqlsh_shows_them() {
        let shown = |value: Value| value.to_string();
        assert_eq!(shown(Value::Boolean(true)), "True");
        assert_eq!(
            shown(Value::Timestamp(1_796_562_245_123)),
            "2026-12-06 13:04:05.123000+0000"
        );
        assert_eq!(
            shown(Value::Timestamp(-1)),
            "1969-12-31 23:59:59.999000+0000"
        );
        assert_eq!(shown(Value::Date(0)), "1970-01-01");
        assert_eq!(shown(Value::Date(-1)), "1969-12-31");
        assert_eq!(shown(Value::Time(3_723_000_000_004)), "01:02:03.000000004");
        let decimal = |unscaled: i64, scale: i32| Value::Decimal {
            unscaled: BigInt::from(unscaled),
            scale,
        };
        assert_eq!(shown(decimal(150, 2)), "1.50");
        assert_eq!(shown(decimal(-1, 3)), "-0.001");
        assert_eq!(shown(decimal(15, -2)), "1500");
        assert_eq!(shown(decimal(15, -40)), "15E+40");
        assert_eq!(shown(decimal(15, i32::MAX)), "15E-2147483647");
        assert_eq!(shown(Value::Date(i32::MAX)), "2147483647");
        assert_eq!(shown(Value::Blob(vec![0xca, 0xfe])), "0xcafe");
        assert_eq!(shown(Value::Double(0.1)), "0.1");
        assert_eq!(shown(Value::Float(f32::NEG_INFINITY)), "-Infinity");
        assert_eq!(shown(Value::Double(f64::NAN)), "NaN");
    }

    #[test]
    fn values_that_do_not_fit_their_type_are_refused() {
        assert!(!Value::Text("héllo".into()).fits(CqlType::Ascii));
        assert!(!Value::Uuid(Uuid::from_bytes([0x44; 16])).fits(CqlType::TimeUuid));
        assert!(!Value::Time(NANOS_PER_DAY).fits(CqlType::Time));
        assert!(!Value::Int(1).fits(CqlType::BigInt));
        assert_eq!(
            Value::Int(1)
                .checked(CqlType::Text)
                .unwrap_err()
                .to_string(),
            "expected a value of type text, got int"
        );
        let short = Value::from_cassandra_bytes(CqlType::Int, &[1, 2]).unwrap_err();
        assert_eq!(short.to_string(), "2 bytes are not a serialized int");
        assert!(Value::from_cassandra_bytes(CqlType::Text, &[0xff]).is_err());
        assert!(Value::from_cassandra_bytes(CqlType::Inet, &[1, 2, 3]).is_err());
    }
}
