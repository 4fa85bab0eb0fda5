//! Constants as typed values: what a literal written in a statement means
//! for a column of a given type, by Cassandra's rules. An integer can be an
//! `int`, a `bigint`, a `varint`, a `float`…, and a string can be text, a
//! `timestamp` (`'2026-12-06 13:04:05.123+0000'`), a `date`, a `time` or an
//! `inet`; other pairs are refused, naming both.

use std::str::FromStr;

use num_bigint::BigInt;
use ringdb_proto::{CqlType, NANOS_PER_DAY, Value};
use time::macros::format_description;
use time::{Date, PrimitiveDateTime, Time, UtcOffset};

use crate::ast::Literal;

/// A constant that is not a value of the column's type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{found} is not a valid {expected}{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
pub struct LiteralError {
    /// The column's type.
    pub expected: CqlType,
    /// The constant, as the user wrote it.
    pub found: String,
    /// Why, when more can be said than the types.
    pub reason: Option<String>,
}

/// The value `literal` stands for in a column of type `ty`.
pub fn literal_value(literal: &Literal, ty: CqlType) -> Result<Value, LiteralError> {
    let error = |reason: Option<&str>| LiteralError {
        expected: ty,
        found: describe(literal),
        reason: reason.map(str::to_string),
    };
    let value = match (literal, ty) {
        (Literal::Null, _) => Value::Null,
        (Literal::Boolean(b), CqlType::Boolean) => Value::Boolean(*b),
        (Literal::Integer(digits), _) => integer(digits, ty).ok_or_else(|| error(None))?,
        (Literal::Float(digits), CqlType::Double) => {
            Value::Double(digits.parse().map_err(|_| error(None))?)
        }
        (Literal::Float(digits), CqlType::Float) => {
            Value::Float(digits.parse().map_err(|_| error(None))?)
        }
        (Literal::Float(digits), CqlType::Decimal) => decimal(digits).ok_or_else(|| error(None))?,
        (Literal::NaN, CqlType::Double) => Value::Double(f64::NAN),
        (Literal::NaN, CqlType::Float) => Value::Float(f32::NAN),
        (Literal::Infinity { negative }, CqlType::Double) => Value::Double(if *negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }),
        (Literal::Infinity { negative }, CqlType::Float) => Value::Float(if *negative {
            f32::NEG_INFINITY
        } else {
            f32::INFINITY
        }),
        (Literal::String(text), _) => string(text, ty).map_err(error)?,
        (Literal::Uuid(uuid), CqlType::Uuid) => Value::Uuid(*uuid),
        (Literal::Uuid(uuid), CqlType::TimeUuid) if uuid.get_version_num() == 1 => {
            Value::Uuid(*uuid)
        }
        (Literal::Uuid(_), CqlType::TimeUuid) => return Err(error(Some("not a version 1 UUID"))),
        (Literal::Blob(bytes), CqlType::Blob) => Value::Blob(bytes.clone()),
        _ => return Err(error(None)),
    };
    Ok(value)
}

/// The constant as written, for errors.
fn describe(literal: &Literal) -> String {
    match literal {
        Literal::Null => "null".into(),
        Literal::Boolean(b) => b.to_string(),
        Literal::Integer(digits) | Literal::Float(digits) => digits.clone(),
        Literal::NaN => "NaN".into(),
        Literal::Infinity { negative } => format!("{}Infinity", if *negative { "-" } else { "" }),
        Literal::String(text) => format!("'{text}'"),
        Literal::Uuid(uuid) => uuid.to_string(),
        Literal::Blob(bytes) => format!("0x{}", hex::encode(bytes)),
    }
}

fn integer(digits: &str, ty: CqlType) -> Option<Value> {
    Some(match ty {
        CqlType::TinyInt => Value::TinyInt(digits.parse().ok()?),
        CqlType::SmallInt => Value::SmallInt(digits.parse().ok()?),
        CqlType::Int => Value::Int(digits.parse().ok()?),
        CqlType::BigInt => Value::BigInt(digits.parse().ok()?),
        CqlType::Timestamp => Value::Timestamp(digits.parse().ok()?),
        CqlType::Time => Value::Time(digits.parse().ok()?).checked(ty).ok()?,
        CqlType::Varint => Value::Varint(BigInt::from_str(digits).ok()?),
        CqlType::Decimal => decimal(digits)?,
        CqlType::Double => Value::Double(digits.parse().ok()?),
        CqlType::Float => Value::Float(digits.parse().ok()?),
        _ => return None,
    })
}

/// `-12.50e3` as unscaled digits and a scale, as Java's `BigDecimal` reads it.
fn decimal(text: &str) -> Option<Value> {
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let unscaled = BigInt::from_str(&format!("{whole}{fraction}")).ok()?;
    let scale = i32::try_from(fraction.len()).ok()?.checked_sub(exponent)?;
    Some(Value::Decimal { unscaled, scale })
}

/// A string constant for a column of type `ty`; the reason when it is not one.
fn string(text: &str, ty: CqlType) -> Result<Value, Option<&'static str>> {
    match ty {
        CqlType::Text => Ok(Value::Text(text.to_string())),
        CqlType::Ascii if text.is_ascii() => Ok(Value::Text(text.to_string())),
        CqlType::Ascii => Err(Some("not ASCII")),
        CqlType::Timestamp => timestamp(text).ok_or(Some(
            "expected yyyy-mm-dd[ hh:mm[:ss[.fff]]][+hhmm|Z], or milliseconds",
        )),
        CqlType::Date => date(text).ok_or(Some("expected yyyy-mm-dd")),
        CqlType::Time => time_of_day(text).ok_or(Some("expected hh:mm:ss[.fffffffff]")),
        CqlType::Inet => text
            .parse()
            .map(Value::Inet)
            .map_err(|_| Some("not an IP address")),
        _ => Err(None),
    }
}

/// `yyyy-mm-dd[( |T)hh:mm[:ss[.f…]]][Z|±hh[:]mm]` (UTC when no zone), or
/// digits: milliseconds since the epoch.
fn timestamp(text: &str) -> Option<Value> {
    if let Ok(millis) = text.parse::<i64>() {
        return Some(Value::Timestamp(millis));
    }
    let text = text.trim();
    let (local, offset) = split_zone(text)?;
    let local = local.replacen('T', " ", 1);
    let date_time = if local.len() == 10 {
        Date::parse(&local, format_description!("[year]-[month]-[day]"))
            .ok()?
            .midnight()
    } else {
        let formats = [
            format_description!("[year]-[month]-[day] [hour]:[minute]"),
            format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
            format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
        ];
        formats
            .iter()
            .find_map(|format| PrimitiveDateTime::parse(&local, format).ok())?
    };
    let instant = date_time.assume_offset(offset);
    let millis = instant.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(millis).ok().map(Value::Timestamp)
}

/// The local part and the zone of a timestamp.
fn split_zone(text: &str) -> Option<(&str, UtcOffset)> {
    if let Some(local) = text.strip_suffix('Z').or_else(|| text.strip_suffix("UTC")) {
        return Some((local.trim_end(), UtcOffset::UTC));
    }
    // A sign after the date's own dashes (the date is 10 characters).
    let sign_at = text
        .char_indices()
        .skip(10)
        .find(|(_, c)| *c == '+' || *c == '-')
        .map(|(i, _)| i);
    let Some(at) = sign_at else {
        return Some((text, UtcOffset::UTC));
    };
    let zone = text[at + 1..].replace(':', "");
    if zone.len() != 4 || !zone.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes): (i8, i8) = (zone[..2].parse().ok()?, zone[2..].parse().ok()?);
    let sign = if &text[at..=at] == "-" { -1 } else { 1 };
    let offset = UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?;
    Some((text[..at].trim_end(), offset))
}

/// `yyyy-mm-dd`: days since the epoch.
fn date(text: &str) -> Option<Value> {
    let date = Date::parse(text.trim(), format_description!("[year]-[month]-[day]")).ok()?;
    let days = (date - Date::from_ordinal_date(1970, 1).ok()?).whole_days();
    i32::try_from(days).ok().map(Value::Date)
}

/// `hh:mm:ss[.f…]`: nanoseconds since midnight.
fn time_of_day(text: &str) -> Option<Value> {
    let formats = [
        format_description!("[hour]:[minute]:[second]"),
        format_description!("[hour]:[minute]:[second].[subsecond]"),
    ];
    let time = formats
        .iter()
        .find_map(|format| Time::parse(text.trim(), format).ok())?;
    let (hours, minutes, seconds, nanos) = time.as_hms_nano();
    let total = ((i64::from(hours) * 60 + i64::from(minutes)) * 60 + i64::from(seconds))
        * 1_000_000_000
        + i64::from(nanos);
    (total < NANOS_PER_DAY).then_some(Value::Time(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(literal: Literal, ty: CqlType) -> Value {
        literal_value(&literal, ty).unwrap()
    }

    fn string(text: &str) -> Literal {
        Literal::String(text.into())
    }

    #[test]
    fn integers_fit_every_numeric_type_in_range() {
        let n = |digits: &str| Literal::Integer(digits.into());
        assert_eq!(value(n("-128"), CqlType::TinyInt), Value::TinyInt(-128));
        assert_eq!(value(n("70000"), CqlType::BigInt), Value::BigInt(70000));
        assert_eq!(value(n("3"), CqlType::Double), Value::Double(3.0));
        assert_eq!(
            value(n("123456789012345678901234567890"), CqlType::Varint),
            Value::Varint(BigInt::from_str("123456789012345678901234567890").unwrap())
        );
        let error = literal_value(&n("128"), CqlType::TinyInt).unwrap_err();
        assert_eq!(error.to_string(), "128 is not a valid tinyint");
        assert!(literal_value(&n("1"), CqlType::Text).is_err());
    }

    #[test]
    fn decimals_keep_their_scale() {
        let d = |digits: &str| value(Literal::Float(digits.into()), CqlType::Decimal);
        let decimal = |unscaled: i64, scale: i32| Value::Decimal {
            unscaled: BigInt::from(unscaled),
            scale,
        };
        assert_eq!(d("1.50"), decimal(150, 2));
        assert_eq!(d("-0.001"), decimal(-1, 3));
        assert_eq!(d("1.5e3"), decimal(15, -2));
        assert_eq!(
            value(Literal::Integer("7".into()), CqlType::Decimal),
            decimal(7, 0)
        );
    }

    #[test]
    fn strings_are_timestamps_dates_times_and_addresses() {
        let ts = |text: &str| value(string(text), CqlType::Timestamp);
        assert_eq!(ts("1970-01-01"), Value::Timestamp(0));
        assert_eq!(
            ts("2026-12-06 13:04:05.123Z"),
            Value::Timestamp(1_796_562_245_123)
        );
        assert_eq!(
            ts("2026-12-06T14:04:05.123+0100"),
            Value::Timestamp(1_796_562_245_123)
        );
        assert_eq!(
            ts("2026-12-06 08:04:05.123-05:00"),
            Value::Timestamp(1_796_562_245_123)
        );
        assert_eq!(ts("2026-12-06 13:04"), Value::Timestamp(1_796_562_240_000));
        assert_eq!(ts("1796562245123"), Value::Timestamp(1_796_562_245_123));
        assert_eq!(ts("1969-12-31 23:59:59.999"), Value::Timestamp(-1));
        assert_eq!(value(string("1970-01-02"), CqlType::Date), Value::Date(1));
        assert_eq!(value(string("1969-12-31"), CqlType::Date), Value::Date(-1));
        assert_eq!(
            value(string("01:02:03.000000004"), CqlType::Time),
            Value::Time(3_723_000_000_004)
        );
        assert_eq!(
            value(string("::1"), CqlType::Inet),
            Value::Inet("::1".parse().unwrap())
        );
        let error = literal_value(&string("yesterday"), CqlType::Timestamp).unwrap_err();
        assert_eq!(
            error.to_string(),
            "'yesterday' is not a valid timestamp: \
             expected yyyy-mm-dd[ hh:mm[:ss[.fff]]][+hhmm|Z], or milliseconds"
        );
        let error = literal_value(&string("é"), CqlType::Ascii).unwrap_err();
        assert_eq!(error.to_string(), "'é' is not a valid ascii: not ASCII");
    }

    #[test]
    fn uuids_blobs_and_specials() {
        let v4: uuid::Uuid = "123e4567-e89b-42d3-a456-426614174000".parse().unwrap();
        assert_eq!(value(Literal::Uuid(v4), CqlType::Uuid), Value::Uuid(v4));
        let error = literal_value(&Literal::Uuid(v4), CqlType::TimeUuid).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("is not a valid timeuuid: not a version 1 UUID")
        );
        assert_eq!(
            value(Literal::Blob(vec![1]), CqlType::Blob),
            Value::Blob(vec![1])
        );
        assert!(literal_value(&string("0x01"), CqlType::Blob).is_err());
        assert_eq!(
            value(Literal::Infinity { negative: true }, CqlType::Float),
            Value::Float(f32::NEG_INFINITY)
        );
        assert_eq!(value(Literal::Null, CqlType::Int), Value::Null);
    }
}
