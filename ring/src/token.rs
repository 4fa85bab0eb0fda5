//! Tokens: positions on the ring, computed as Cassandra's `Murmur3Partitioner` does.
//!
//! Cassandra hashes the serialized partition key with its own port of
//! MurmurHash3 x64_128 (`org.apache.cassandra.utils.MurmurHash.hash3_x64_128`,
//! seed 0) and takes the first 64-bit half as a signed token. The port differs
//! from the reference C++ in one place: in the tail (the last `len % 16`
//! bytes) each byte is read as a *signed* Java `byte` and sign-extended before
//! it is shifted into place, so a tail byte ≥ 0x80 sets every higher bit of its
//! lane. We reproduce that exactly, because Cassandra drivers route requests
//! with this function and must agree with us on where a key lives.
//!
//! The partitioner never hands out `i64::MIN`: Cassandra maps it to `i64::MAX`,
//! keeping `i64::MIN` as the ring's minimum token, below every real token.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A position on the ring: Cassandra's Murmur3 token, a signed 64-bit value.
///
/// Tokens order as signed integers. A vnode token `t` owned by a node means that
/// node is the primary replica of the range `(previous token, t]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Token(pub i64);

impl Token {
    /// The minimum token, below every token a key can hash to.
    pub const MIN: Token = Token(i64::MIN);
    /// The maximum token.
    pub const MAX: Token = Token(i64::MAX);

    /// The token of a serialized partition key.
    pub fn of(partition_key: &[u8]) -> Token {
        let hash = murmur3_x64_128_cassandra(partition_key, 0)[0];
        // Murmur3Partitioner.normalize: MIN is reserved as the ring's minimum.
        Token(if hash == i64::MIN { i64::MAX } else { hash })
    }

    /// The token's offset from `Token::MIN` as an unsigned value, so that
    /// distances around the ring are plain wrapping subtraction.
    pub fn offset(self) -> u64 {
        (self.0 as u64) ^ (1 << 63)
    }

    /// The token at an unsigned offset from `Token::MIN` (inverse of [`Token::offset`]).
    pub fn from_offset(offset: u64) -> Token {
        Token((offset ^ (1 << 63)) as i64)
    }

    /// The clockwise distance from `self` to `to`, as a fraction of the ring in
    /// `[0, 1)`. The distance from a token to itself is 0.
    pub fn distance_fraction(self, to: Token) -> f64 {
        to.offset().wrapping_sub(self.offset()) as f64 / RING_SIZE
    }

    /// Eight bytes whose unsigned byte order is the token order (big-endian with
    /// the sign bit flipped), for storage keys.
    pub fn to_ordered_bytes(self) -> [u8; 8] {
        self.offset().to_be_bytes()
    }

    /// Inverse of [`Token::to_ordered_bytes`].
    pub fn from_ordered_bytes(bytes: [u8; 8]) -> Token {
        Token::from_offset(u64::from_be_bytes(bytes))
    }
}

/// The number of tokens on the ring (2^64), as a float for ownership fractions.
pub(crate) const RING_SIZE: f64 = 18_446_744_073_709_551_616.0;

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

/// MurmurHash3 x64_128 exactly as Cassandra computes it, returning both halves
/// as signed values. Only the first half is the token.
pub fn murmur3_x64_128_cassandra(data: &[u8], seed: u64) -> [i64; 2] {
    let mut h1 = seed;
    let mut h2 = seed;
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let k1 = u64::from_le_bytes(block[..8].try_into().expect("16-byte block"));
        let k2 = u64::from_le_bytes(block[8..].try_into().expect("16-byte block"));
        h1 ^= mix_k1(k1);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(k2);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }

    let tail = blocks.remainder();
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, &byte) in tail.iter().enumerate() {
        // Java's `(long) key.get(i)` sign-extends the byte: Cassandra's quirk.
        let lane = (byte as i8 as i64 as u64) << ((i % 8) * 8);
        if i < 8 {
            k1 ^= lane;
        } else {
            k2 ^= lane;
        }
    }
    if tail.len() > 8 {
        h2 ^= mix_k2(k2);
    }
    if !tail.is_empty() {
        h1 ^= mix_k1(k1);
    }

    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    [h1 as i64, h2 as i64]
}

fn mix_k1(k1: u64) -> u64 {
    k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2)
}

fn mix_k2(k2: u64) -> u64 {
    k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn minimum_hash_is_never_a_token() {
        // No short key hashes to i64::MIN, so check the normalisation rule on
        // the boundary values of the offset mapping instead.
        assert_eq!(Token::MIN.offset(), 0);
        assert_eq!(Token::MAX.offset(), u64::MAX);
        assert_eq!(Token::from_offset(0), Token::MIN);
    }

    proptest! {
        #[test]
        fn ordered_bytes_preserve_order(a: i64, b: i64) {
            let (ta, tb) = (Token(a), Token(b));
            prop_assert_eq!(ta.cmp(&tb), ta.to_ordered_bytes().cmp(&tb.to_ordered_bytes()));
            prop_assert_eq!(Token::from_ordered_bytes(ta.to_ordered_bytes()), ta);
        }

        #[test]
        fn offset_round_trips(a: i64) {
            prop_assert_eq!(Token::from_offset(Token(a).offset()), Token(a));
        }
    }
}
