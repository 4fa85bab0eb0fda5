//! Cassandra's Murmur3 token, pinned by known answers from an independent
//! implementation (see fixtures/gen_murmur3_vectors.py).

use ringdb_ring::{Token, murmur3_x64_128_cassandra};

const VECTORS: &str = include_str!("fixtures/murmur3_vectors.txt");

fn vectors() -> Vec<(Vec<u8>, i64)> {
    VECTORS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (key, token) = line.split_once('\t').expect("key<TAB>token");
            (
                hex::decode(key).expect("hex key"),
                token.parse().expect("i64 token"),
            )
        })
        .collect()
}

#[test]
fn tokens_match_the_cassandra_driver() {
    let vectors = vectors();
    assert!(vectors.len() >= 50, "fixture has {} vectors", vectors.len());
    let mut wrong = Vec::new();
    for (key, expected) in &vectors {
        let got = murmur3_x64_128_cassandra(key, 0)[0];
        if got != *expected {
            wrong.push(format!("{}: got {got}, want {expected}", hex::encode(key)));
        }
        assert_eq!(
            Token::of(key),
            Token(*expected),
            "token of {}",
            hex::encode(key)
        );
    }
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        vectors.len(),
        wrong.join("\n")
    );
}

#[test]
fn fixture_covers_high_tail_bytes_and_every_tail_length() {
    let vectors = vectors();
    for tail in 0..16 {
        assert!(
            vectors.iter().any(|(k, _)| k.len() % 16 == tail),
            "no key with tail {tail}"
        );
    }
    assert!(
        vectors
            .iter()
            .any(|(k, _)| k.len() % 16 != 0 && k[k.len() - 1] >= 0x80)
    );
}
