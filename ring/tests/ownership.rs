//! Ownership balance at RF 3 with 16 vnodes: allocated tokens keep every
//! node's replicated share within ±10% of the mean; random tokens do not.

use rand::{Rng, SeedableRng, rngs::StdRng};
use ringdb_ring::{Location, NodeId, Replication, Ring, Token};

const VNODES: usize = 16;
const RF: usize = 3;
const REPORTED: [usize; 5] = [4, 5, 10, 30, 64];

/// (max/mean, min/mean) of replicated ownership.
fn spread(ring: &Ring) -> (f64, f64) {
    let shares = ring.ownership(&Replication::Simple { factor: RF });
    let mean = shares.values().sum::<f64>() / shares.len() as f64;
    let max = shares.values().cloned().fold(f64::MIN, f64::max);
    let min = shares.values().cloned().fold(f64::MAX, f64::min);
    (max / mean, min / mean)
}

fn random_ring(nodes: usize, rng: &mut StdRng) -> Ring {
    let mut ring = Ring::new();
    for n in 0..nodes {
        let tokens = (0..VNODES).map(|_| Token(rng.random())).collect();
        ring.add_node(NodeId::new(format!("n{n}")), Location::default(), tokens)
            .unwrap();
    }
    ring
}

#[test]
fn allocated_tokens_keep_ownership_within_ten_percent() {
    let mut ring = Ring::new();
    let mut rng = StdRng::seed_from_u64(7);
    let mut failures = Vec::new();
    println!("ownership at RF {RF}, {VNODES} vnodes (max/mean, min/mean)");
    println!(
        "{:>6} {:>22} {:>22}",
        "nodes", "allocated", "random (seed 7)"
    );
    for n in 1..=64 {
        ring.join(
            NodeId::new(format!("n{n}")),
            Location::default(),
            VNODES,
            RF,
        )
        .unwrap();
        let (max, min) = spread(&ring);
        if n >= 4 && (max > 1.10 || min < 0.90) {
            failures.push(format!("{n} nodes: max/mean {max:.3}, min/mean {min:.3}"));
        }
        if REPORTED.contains(&n) {
            let (rmax, rmin) = spread(&random_ring(n, &mut rng));
            println!("{n:>6} {max:>10.3} {min:>10.3}  {rmax:>10.3} {rmin:>10.3}");
        }
    }
    assert!(
        failures.is_empty(),
        "ownership outside ±10%:\n{}",
        failures.join("\n")
    );
}
