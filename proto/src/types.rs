//! Column types: the CQL types a table's columns can have.
//!
//! A [`CqlType`] names how a column's values are checked, serialized for a
//! partition key's token (Cassandra's binary form, in `value.rs`), ordered
//! in a clustering key (`clustering.rs`) and shown. `varchar` is another
//! name for `text`, as in Cassandra. Counters and collections are not
//! column types yet: the CQL parser refuses them by name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CqlType {
    /// `ascii`: US-ASCII text.
    Ascii,
    /// `bigint`: 64-bit signed.
    BigInt,
    /// `blob`: raw bytes.
    Blob,
    /// `boolean`.
    Boolean,
    /// `date`: a day, without time of day or zone.
    Date,
    /// `decimal`: arbitrary precision, with a scale.
    Decimal,
    /// `double`: 64-bit IEEE 754.
    Double,
    /// `float`: 32-bit IEEE 754.
    Float,
    /// `inet`: an IPv4 or IPv6 address.
    Inet,
    /// `int`: 32-bit signed.
    Int,
    /// `smallint`: 16-bit signed.
    SmallInt,
    /// `text` (and `varchar`): UTF-8.
    Text,
    /// `time`: nanoseconds since midnight.
    Time,
    /// `timestamp`: milliseconds since the Unix epoch.
    Timestamp,
    /// `timeuuid`: a version 1 (time-based) UUID, ordered by its time.
    TimeUuid,
    /// `tinyint`: 8-bit signed.
    TinyInt,
    /// `uuid`: any UUID.
    Uuid,
    /// `varint`: an arbitrary-precision integer.
    Varint,
}

impl CqlType {
    /// Every type, in the order `DESCRIBE` and completion list them.
    pub const ALL: [CqlType; 18] = [
        CqlType::Ascii,
        CqlType::BigInt,
        CqlType::Blob,
        CqlType::Boolean,
        CqlType::Date,
        CqlType::Decimal,
        CqlType::Double,
        CqlType::Float,
        CqlType::Inet,
        CqlType::Int,
        CqlType::SmallInt,
        CqlType::Text,
        CqlType::Time,
        CqlType::Timestamp,
        CqlType::TimeUuid,
        CqlType::TinyInt,
        CqlType::Uuid,
        CqlType::Varint,
    ];

    /// The type's CQL name.
    pub fn name(self) -> &'static str {
        match self {
            CqlType::Ascii => "ascii",
            CqlType::BigInt => "bigint",
            CqlType::Blob => "blob",
            CqlType::Boolean => "boolean",
            CqlType::Date => "date",
            CqlType::Decimal => "decimal",
            CqlType::Double => "double",
            CqlType::Float => "float",
            CqlType::Inet => "inet",
            CqlType::Int => "int",
            CqlType::SmallInt => "smallint",
            CqlType::Text => "text",
            CqlType::Time => "time",
            CqlType::Timestamp => "timestamp",
            CqlType::TimeUuid => "timeuuid",
            CqlType::TinyInt => "tinyint",
            CqlType::Uuid => "uuid",
            CqlType::Varint => "varint",
        }
    }

    /// The length of every serialized value of the type, for the types
    /// whose values all have one.
    pub fn fixed_length(self) -> Option<usize> {
        match self {
            CqlType::Boolean | CqlType::TinyInt => Some(1),
            CqlType::SmallInt => Some(2),
            CqlType::Int | CqlType::Float | CqlType::Date => Some(4),
            CqlType::BigInt | CqlType::Double | CqlType::Time | CqlType::Timestamp => Some(8),
            CqlType::Uuid | CqlType::TimeUuid => Some(16),
            CqlType::Ascii
            | CqlType::Blob
            | CqlType::Decimal
            | CqlType::Inet
            | CqlType::Text
            | CqlType::Varint => None,
        }
    }
}

impl fmt::Display for CqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a column type ringdb knows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown type '{0}'")]
pub struct UnknownType(pub String);

impl FromStr for CqlType {
    type Err = UnknownType;

    /// Parses a type name, case-insensitively; `varchar` is `text`.
    fn from_str(name: &str) -> Result<CqlType, UnknownType> {
        let lower = name.to_ascii_lowercase();
        if lower == "varchar" {
            return Ok(CqlType::Text);
        }
        CqlType::ALL
            .into_iter()
            .find(|t| t.name() == lower)
            .ok_or_else(|| UnknownType(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_varchar_is_text() {
        for ty in CqlType::ALL {
            assert_eq!(ty.name().parse::<CqlType>(), Ok(ty));
            assert_eq!(ty.name().to_uppercase().parse::<CqlType>(), Ok(ty));
        }
        assert_eq!("VarChar".parse::<CqlType>(), Ok(CqlType::Text));
        assert_eq!(
            "strnig".parse::<CqlType>().unwrap_err().to_string(),
            "unknown type 'strnig'"
        );
    }
}
