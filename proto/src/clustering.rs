//! Clustering keys whose byte order is clustering order.
//!
//! Rows of a partition are stored under `token ‖ table ‖ partition ‖
//! clustering`, so when the clustering key's bytes sort as its values do, a
//! slice of a partition (`WHERE c >= 3 AND c < 7`, in either order) is one
//! contiguous scan. Each clustering column's value is encoded so that:
//!
//! - comparing the bytes of two values of one type compares the values as
//!   Cassandra orders them (integers and floats numerically, text and blobs
//!   bytewise, `timeuuid` by its time);
//! - no value's encoding is a prefix of another's, so the encodings of the
//!   columns can be concatenated and compared as tuples, and the encoding
//!   of the first columns of a key (a prefix, for a slice on them) is a
//!   byte prefix of the key;
//! - a `DESC` column is the bitwise complement of its `ASC` encoding, which
//!   reverses the order and keeps both properties.
//!
//! Variable-length values (text, blobs, inet) escape each `0x00` byte as
//! `0x00 0xFF` and end with `0x00 0x00`, as FoundationDB's tuple layer does
//! (with a two-byte end, so that what follows cannot be mistaken for more
//! of the value). Integers and floats flip their sign bit (a negative float
//! flips every bit). `varint` and `decimal` carry a sign and a magnitude
//! (a length, a digit count) before their digits.
//!
//! Two values that are equal in Cassandra's order but differ in bytes
//! (`1.0` and `1.00` as decimals; NaNs with different payloads, which
//! encode as one NaN) are one key here.

use std::net::IpAddr;

use num_bigint::{BigInt, Sign};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{CqlType, KeyError, Value};

/// The order of a clustering column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Order {
    /// Ascending (the default).
    #[default]
    Asc,
    /// Descending.
    Desc,
}

/// Appends the order-preserving encoding of `value`, a `ty`, to `out`.
/// `null` has none: clustering columns cannot be null.
pub(crate) fn encode_component(
    value: &Value,
    ty: CqlType,
    order: Order,
    out: &mut Vec<u8>,
) -> Result<(), KeyError> {
    if matches!(value, Value::Null) {
        return Err(KeyError::NullComponent);
    }
    if !value.fits(ty) {
        return Err(KeyError::WrongType {
            expected: ty,
            got: value.kind().to_string(),
        });
    }
    let start = out.len();
    encode_ascending(value, ty, out);
    if order == Order::Desc {
        for byte in &mut out[start..] {
            *byte = !*byte;
        }
    }
    Ok(())
}

fn encode_ascending(value: &Value, ty: CqlType, out: &mut Vec<u8>) {
    match value {
        Value::Null => {}
        Value::Boolean(b) => out.push(u8::from(*b)),
        Value::TinyInt(n) => out.push((*n as u8) ^ 0x80),
        Value::SmallInt(n) => out.extend(((*n as u16) ^ (1 << 15)).to_be_bytes()),
        Value::Int(n) | Value::Date(n) => out.extend(((*n as u32) ^ (1 << 31)).to_be_bytes()),
        Value::BigInt(n) | Value::Timestamp(n) | Value::Time(n) => {
            out.extend(((*n as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Float(x) => out.extend(float_order(f64::from(*x).is_nan(), x.to_bits().into(), 32)),
        Value::Double(x) => out.extend(float_order(x.is_nan(), x.to_bits(), 64)),
        Value::Text(text) => escaped(text.as_bytes(), out),
        Value::Blob(bytes) => escaped(bytes, out),
        Value::Inet(IpAddr::V4(address)) => escaped(&address.octets(), out),
        Value::Inet(IpAddr::V6(address)) => escaped(&address.octets(), out),
        Value::Uuid(uuid) => encode_uuid(uuid, ty, out),
        Value::Varint(n) => encode_varint(n, out),
        Value::Decimal { unscaled, scale } => encode_decimal(unscaled, *scale, out),
    }
}

/// A float's bits, `width` of them, as bytes that sort as the floats: a
/// positive float flips its sign bit, a negative one every bit. Every NaN
/// is the canonical one, above infinity (Java's `Float.compare`).
fn float_order(nan: bool, bits: u64, width: u32) -> Vec<u8> {
    let sign = 1u64 << (width - 1);
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1 << width) - 1
    };
    let bits = if nan {
        // The canonical quiet NaN: exponent all ones, top mantissa bit.
        if width == 64 {
            0x7ff8_0000_0000_0000
        } else {
            0x7fc0_0000
        }
    } else {
        bits
    };
    let ordered = if bits & sign != 0 {
        !bits & mask
    } else {
        bits | sign
    };
    ordered.to_be_bytes()[(8 - width as usize / 8)..].to_vec()
}

fn float_from_order(ordered: u64, width: u32) -> u64 {
    let sign = 1u64 << (width - 1);
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1 << width) - 1
    };
    if ordered & sign != 0 {
        ordered & !sign
    } else {
        !ordered & mask
    }
}

/// Bytes with each `0x00` escaped as `0x00 0xFF`, ended by `0x00 0x00`.
fn escaped(bytes: &[u8], out: &mut Vec<u8>) {
    for &byte in bytes {
        out.push(byte);
        if byte == 0 {
            out.push(0xFF);
        }
    }
    out.extend([0, 0]);
}

/// A `timeuuid` sorts by its 60-bit time, then by its other bytes; a
/// `uuid` by its version first, time-based ones then by time.
fn encode_uuid(uuid: &Uuid, ty: CqlType, out: &mut Vec<u8>) {
    let bytes = uuid.as_bytes();
    let version = bytes[6] >> 4;
    if ty == CqlType::Uuid {
        out.push(version);
    }
    if version == 1 {
        // time_hi (without the version), time_mid, time_low.
        out.extend([bytes[6] & 0x0f, bytes[7], bytes[4], bytes[5]]);
        out.extend(&bytes[0..4]);
        out.extend(&bytes[8..16]);
    } else {
        out.extend(bytes);
    }
}

fn decode_uuid(input: &mut Input<'_>, ty: CqlType) -> Result<Uuid, KeyError> {
    let version = if ty == CqlType::Uuid {
        input.take(1)?[0]
    } else {
        1
    };
    let b = input.take(16)?;
    if version == 1 {
        let mut bytes = [0; 16];
        bytes[6] = b[0] | 0x10;
        bytes[7] = b[1];
        bytes[4] = b[2];
        bytes[5] = b[3];
        bytes[0..4].copy_from_slice(&b[4..8]);
        bytes[8..16].copy_from_slice(&b[8..16]);
        Ok(Uuid::from_bytes(bytes))
    } else {
        Ok(Uuid::from_bytes(b.try_into().expect("16 bytes")))
    }
}

/// Sign byte (below, at or above `0x80` for negative, zero, positive),
/// then the magnitude's length and its bytes, complemented when negative
/// (a larger magnitude is a smaller negative number).
fn encode_varint(n: &BigInt, out: &mut Vec<u8>) {
    let (sign, magnitude) = n.to_bytes_be();
    match sign {
        Sign::NoSign => out.push(0x80),
        Sign::Plus => {
            out.push(0x81);
            out.extend((magnitude.len() as u32).to_be_bytes());
            out.extend(&magnitude);
        }
        Sign::Minus => {
            out.push(0x7f);
            out.extend((!(magnitude.len() as u32)).to_be_bytes());
            out.extend(magnitude.iter().map(|b| !b));
        }
    }
}

fn decode_varint(input: &mut Input<'_>) -> Result<BigInt, KeyError> {
    let sign = input.take(1)?[0];
    if sign == 0x80 {
        return Ok(BigInt::ZERO);
    }
    let negative = match sign {
        0x81 => false,
        0x7f => true,
        _ => return Err(KeyError::MalformedClustering),
    };
    let length = u32::from_be_bytes(input.take(4)?.try_into().expect("4 bytes"));
    let length = if negative { !length } else { length } as usize;
    let digits = input.take(length)?;
    if negative {
        let magnitude: Vec<u8> = digits.iter().map(|b| !b).collect();
        Ok(BigInt::from_bytes_be(Sign::Minus, &magnitude))
    } else {
        Ok(BigInt::from_bytes_be(Sign::Plus, digits))
    }
}

/// A decimal as `0.d1d2…dn × 10^e` with `d1 ≠ 0` and `dn ≠ 0`: the sign
/// byte, then `e` (sign-flipped), then each digit plus one and a `0x00`
/// end, all complemented when negative. The scale is kept after the end
/// (so that `1.0` and `1.00` decode as they were written) in a form that
/// does not change the order of different numbers.
fn encode_decimal(unscaled: &BigInt, scale: i32, out: &mut Vec<u8>) {
    let (sign, digits) = unscaled.to_radix_be(10);
    if sign == Sign::NoSign {
        out.push(0x80);
        out.extend(((scale as u32) ^ (1 << 31)).to_be_bytes());
        return;
    }
    let significant = digits.iter().rposition(|d| *d != 0).expect("nonzero") + 1;
    // value = 0.digits × 10^(len − scale)
    let exponent = digits.len() as i64 - i64::from(scale);
    let mut body = Vec::with_capacity(significant + 13);
    body.extend(((exponent as u64) ^ (1 << 63)).to_be_bytes());
    body.extend(digits[..significant].iter().map(|d| d + 1));
    body.push(0);
    body.extend(((scale as u32) ^ (1 << 31)).to_be_bytes());
    if sign == Sign::Minus {
        out.push(0x7f);
        out.extend(body.iter().map(|b| !b));
    } else {
        out.push(0x81);
        out.extend(body);
    }
}

fn decode_decimal(input: &mut Input<'_>) -> Result<Value, KeyError> {
    let scale_of = |bytes: &[u8]| {
        let word = u32::from_be_bytes(bytes.try_into().expect("4 bytes"));
        (word ^ (1 << 31)) as i32
    };
    let negative = match input.take(1)?[0] {
        0x80 => {
            let scale = scale_of(input.take(4)?);
            return Ok(Value::Decimal {
                unscaled: BigInt::ZERO,
                scale,
            });
        }
        0x81 => false,
        0x7f => true,
        _ => return Err(KeyError::MalformedClustering),
    };
    let flip = |b: u8| if negative { !b } else { b };
    let word: Vec<u8> = input.take(8)?.iter().map(|b| flip(*b)).collect();
    let exponent = (u64::from_be_bytes(word.try_into().expect("8 bytes")) ^ (1 << 63)) as i64;
    let mut digits = Vec::new();
    loop {
        match flip(input.take(1)?[0]) {
            0 => break,
            d @ 1..=10 => digits.push(d - 1),
            _ => return Err(KeyError::MalformedClustering),
        }
    }
    let scale_bytes: Vec<u8> = input.take(4)?.iter().map(|b| flip(*b)).collect();
    let scale = scale_of(&scale_bytes);
    // value = 0.digits × 10^exponent = digits × 10^(exponent − len), and
    // unscaled = value × 10^scale: the digits and as many trailing zeros
    // as the encoding dropped (bounded by what a key can hold).
    let zeros = exponent
        .checked_add(i64::from(scale))
        .and_then(|z| z.checked_sub(digits.len() as i64))
        .ok_or(KeyError::MalformedClustering)?;
    if digits.first().is_none_or(|d| *d == 0) || !(0..=MAX_DECIMAL_ZEROS).contains(&zeros) {
        return Err(KeyError::MalformedClustering);
    }
    let mut unscaled = BigInt::from_radix_be(Sign::Plus, &digits, 10)
        .ok_or(KeyError::MalformedClustering)?
        * BigInt::from(10).pow(zeros as u32);
    if negative {
        unscaled = -unscaled;
    }
    Ok(Value::Decimal { unscaled, scale })
}

/// The most trailing zeros a decoded decimal's digits get back: more than
/// the digits of the largest number a key holds.
const MAX_DECIMAL_ZEROS: i64 = 2 * crate::MAX_CLUSTERING_KEY_BYTES as i64 * 3;

/// Bytes being decoded, complemented on the way when the column is `DESC`.
pub(crate) struct Input<'a> {
    bytes: &'a [u8],
    descending: bool,
    scratch: Vec<u8>,
}

impl<'a> Input<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Input<'a> {
        Input {
            bytes,
            descending: false,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&[u8], KeyError> {
        if self.bytes.len() < n {
            return Err(KeyError::MalformedClustering);
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        self.scratch.clear();
        if self.descending {
            self.scratch.extend(taken.iter().map(|b| !b));
        } else {
            self.scratch.extend(taken);
        }
        Ok(&self.scratch)
    }

    fn unescaped(&mut self) -> Result<Vec<u8>, KeyError> {
        let mut value = Vec::new();
        loop {
            let byte = self.take(1)?[0];
            if byte != 0 {
                value.push(byte);
                continue;
            }
            match self.take(1)?[0] {
                0xFF => value.push(0),
                0 => return Ok(value),
                _ => return Err(KeyError::MalformedClustering),
            }
        }
    }
}

/// Decodes one component written by [`encode_component`].
pub(crate) fn decode_component(
    input: &mut Input<'_>,
    ty: CqlType,
    order: Order,
) -> Result<Value, KeyError> {
    input.descending = order == Order::Desc;
    let fixed = |input: &mut Input<'_>, n: usize| -> Result<u64, KeyError> {
        let mut word = [0u8; 8];
        word[8 - n..].copy_from_slice(input.take(n)?);
        Ok(u64::from_be_bytes(word))
    };
    let value = match ty {
        CqlType::Boolean => Value::Boolean(input.take(1)?[0] != 0),
        CqlType::TinyInt => Value::TinyInt((fixed(input, 1)? as u8 ^ 0x80) as i8),
        CqlType::SmallInt => Value::SmallInt((fixed(input, 2)? as u16 ^ (1 << 15)) as i16),
        CqlType::Int => Value::Int((fixed(input, 4)? as u32 ^ (1 << 31)) as i32),
        CqlType::Date => Value::Date((fixed(input, 4)? as u32 ^ (1 << 31)) as i32),
        CqlType::BigInt => Value::BigInt((fixed(input, 8)? ^ (1 << 63)) as i64),
        CqlType::Timestamp => Value::Timestamp((fixed(input, 8)? ^ (1 << 63)) as i64),
        CqlType::Time => Value::Time((fixed(input, 8)? ^ (1 << 63)) as i64),
        CqlType::Float => {
            Value::Float(f32::from_bits(float_from_order(fixed(input, 4)?, 32) as u32))
        }
        CqlType::Double => Value::Double(f64::from_bits(float_from_order(fixed(input, 8)?, 64))),
        CqlType::Text | CqlType::Ascii => Value::Text(
            String::from_utf8(input.unescaped()?).map_err(|_| KeyError::MalformedClustering)?,
        ),
        CqlType::Blob => Value::Blob(input.unescaped()?),
        CqlType::Inet => Value::from_cassandra_bytes(ty, &input.unescaped()?)
            .map_err(|_| KeyError::MalformedClustering)?,
        CqlType::Uuid | CqlType::TimeUuid => Value::Uuid(decode_uuid(input, ty)?),
        CqlType::Varint => Value::Varint(decode_varint(input)?),
        CqlType::Decimal => decode_decimal(input)?,
    };
    input.descending = false;
    if value.fits(ty) {
        Ok(value)
    } else {
        Err(KeyError::MalformedClustering)
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use proptest::prelude::*;

    use super::*;
    use crate::ClusteringKey;
    use crate::value::strategies::{cql_type, value_of};

    /// Cassandra's order of two values of `ty` (ties between different
    /// encodings of one number, such as `1.0` and `1.00`, are `Equal`).
    fn reference(a: &Value, b: &Value, ty: CqlType) -> Ordering {
        match (a, b) {
            (Value::Float(x), Value::Float(y)) => java_compare(f64::from(*x), f64::from(*y)),
            (Value::Double(x), Value::Double(y)) => java_compare(*x, *y),
            (Value::Text(x), Value::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
            (Value::Inet(x), Value::Inet(y)) => Value::Inet(*x)
                .to_cassandra_bytes()
                .cmp(&Value::Inet(*y).to_cassandra_bytes()),
            (
                Value::Decimal {
                    unscaled: x,
                    scale: s,
                },
                Value::Decimal {
                    unscaled: y,
                    scale: t,
                },
            ) => {
                let top = (*s).max(*t);
                let ten = BigInt::from(10);
                (x * ten.pow((top - s) as u32)).cmp(&(y * ten.pow((top - t) as u32)))
            }
            (Value::Uuid(x), Value::Uuid(y)) => uuid_order(x, ty).cmp(&uuid_order(y, ty)),
            (Value::Boolean(x), Value::Boolean(y)) => x.cmp(y),
            (Value::TinyInt(x), Value::TinyInt(y)) => x.cmp(y),
            (Value::SmallInt(x), Value::SmallInt(y)) => x.cmp(y),
            (Value::Int(x), Value::Int(y)) | (Value::Date(x), Value::Date(y)) => x.cmp(y),
            (Value::BigInt(x), Value::BigInt(y))
            | (Value::Timestamp(x), Value::Timestamp(y))
            | (Value::Time(x), Value::Time(y)) => x.cmp(y),
            (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
            (Value::Varint(x), Value::Varint(y)) => x.cmp(y),
            _ => panic!("values of different types: {a:?} {b:?}"),
        }
    }

    /// `Float.compare`/`Double.compare`: `-0.0 < 0.0`, NaN above all.
    fn java_compare(x: f64, y: f64) -> Ordering {
        match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => x.total_cmp(&y),
        }
    }

    fn uuid_order(uuid: &Uuid, ty: CqlType) -> (u8, u64, [u8; 16]) {
        let version = if ty == CqlType::Uuid {
            uuid.get_version_num() as u8
        } else {
            1
        };
        match uuid.get_timestamp() {
            Some(ts) if version == 1 => {
                let mut rest = [0; 16];
                rest[..8].copy_from_slice(&uuid.as_bytes()[8..]);
                (version, ts.to_gregorian().0, rest)
            }
            _ => (version, 0, *uuid.as_bytes()),
        }
    }

    fn typed_pair() -> impl Strategy<Value = (CqlType, Value, Value)> {
        cql_type().prop_flat_map(|ty| (Just(ty), value_of(ty), value_of(ty)))
    }

    fn order() -> impl Strategy<Value = Order> {
        prop_oneof![Just(Order::Asc), Just(Order::Desc)]
    }

    fn key(values: &[(&Value, CqlType, Order)]) -> ClusteringKey {
        ClusteringKey::encode(values).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn byte_order_is_clustering_order((ty, a, b) in typed_pair(), order in order()) {
            let (ka, kb) = (key(&[(&a, ty, order)]), key(&[(&b, ty, order)]));
            let expected = match order {
                Order::Asc => reference(&a, &b, ty),
                Order::Desc => reference(&b, &a, ty),
            };
            if expected != Ordering::Equal {
                prop_assert_eq!(ka.as_bytes().cmp(kb.as_bytes()), expected, "{:?} {:?}", a, b);
            }
            prop_assert_eq!(a == b, ka == kb);
        }

        #[test]
        fn keys_decode_to_their_values(
            (t1, a1, b1) in typed_pair(),
            (t2, a2, _b2) in typed_pair(),
            (o1, o2) in (order(), order()),
        ) {
            let full = key(&[(&a1, t1, o1), (&a2, t2, o2)]);
            prop_assert_eq!(full.decode(&[(t1, o1), (t2, o2)]).unwrap(), vec![a1.clone(), a2.clone()]);
            // A prefix's bytes begin the full key's, and decode alone.
            let prefix = key(&[(&a1, t1, o1)]);
            prop_assert!(full.as_bytes().starts_with(prefix.as_bytes()));
            prop_assert_eq!(prefix.decode(&[(t1, o1), (t2, o2)]).unwrap(), vec![a1.clone()]);
            // Tuples compare by their first column first: what follows it
            // never changes the order of two different first values.
            let other = key(&[(&b1, t1, o1), (&a2, t2, o2)]);
            let first = key(&[(&b1, t1, o1)]);
            if prefix.as_bytes() != first.as_bytes() {
                prop_assert_eq!(full.cmp(&other), prefix.cmp(&first));
            }
        }

        #[test]
        fn arbitrary_bytes_decode_or_fail_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            types in proptest::collection::vec((cql_type(), order()), 1..4),
        ) {
            let key = ClusteringKey::new(bytes).unwrap();
            if let Ok(values) = key.decode(&types) {
                for (value, (ty, _)) in values.iter().zip(&types) {
                    prop_assert!(value.fits(*ty));
                }
                // What decodes is what encoding those values makes.
                let again: Vec<(&Value, CqlType, Order)> = values
                    .iter()
                    .zip(&types)
                    .map(|(value, (ty, order))| (value, *ty, *order))
                    .collect();
                prop_assert_eq!(ClusteringKey::encode(&again).unwrap(), key);
            }
        }
    }

    #[test]
    fn null_and_mistyped_components_are_refused() {
        assert_eq!(
            ClusteringKey::encode(&[(&Value::Null, CqlType::Int, Order::Asc)]),
            Err(KeyError::NullComponent)
        );
        let error = ClusteringKey::encode(&[(&Value::Text("x".into()), CqlType::Int, Order::Asc)]);
        assert_eq!(
            error.unwrap_err().to_string(),
            "key column of type int given a text"
        );
    }

    #[test]
    fn a_descending_text_column_sorts_longer_texts_first() {
        let desc = |text: &str| key(&[(&Value::Text(text.into()), CqlType::Text, Order::Desc)]);
        assert!(desc("ab") < desc("a"));
        assert!(desc("b") < desc("ab"));
        assert!(desc("a\0") < desc("a"));
    }
}
