//! Property tests of placement: preference lists, key movement on join, and
//! range coverage.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};
use ringdb_ring::{Location, NodeId, RangeChanges, Replication, Ring, Token};

/// A ring of `nodes` nodes with 8 vnodes each, spread over `racks` racks and
/// `datacenters` datacenters; tokens random or allocated.
fn ring(nodes: usize, racks: usize, datacenters: usize, allocated: bool, seed: u64) -> Ring {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ring = Ring::new();
    for n in 0..nodes {
        let location = Location {
            datacenter: format!("dc{}", n % datacenters),
            rack: format!("rack{}", (n / datacenters) % racks),
        };
        let id = NodeId::new(format!("n{n}"));
        if allocated {
            ring.join(id, location, 8, 3).unwrap();
        } else {
            let tokens = (0..8).map(|_| Token(rng.random())).collect();
            ring.add_node(id, location, tokens).unwrap();
        }
    }
    ring
}

fn strategies(datacenters: usize) -> Vec<Replication> {
    let factors: BTreeMap<String, usize> = (0..datacenters)
        .map(|dc| (format!("dc{dc}"), 2 + dc % 2))
        .collect();
    vec![
        Replication::Simple { factor: 3 },
        Replication::RackAware { factor: 3 },
        Replication::PerDatacenter { factors },
    ]
}

/// The number of replicas a strategy can place on `ring`.
fn expected_replicas(ring: &Ring, replication: &Replication) -> usize {
    match replication {
        Replication::Simple { factor } | Replication::RackAware { factor } => {
            (*factor).min(ring.len())
        }
        Replication::PerDatacenter { factors } => factors
            .iter()
            .map(|(dc, f)| {
                (*f).min(
                    ring.members()
                        .values()
                        .filter(|m| &m.location.datacenter == dc)
                        .count(),
                )
            })
            .sum(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn preference_list_has_distinct_nodes(
        nodes in 1usize..12, racks in 1usize..4, datacenters in 1usize..3,
        allocated: bool, seed: u64, key: i64,
    ) {
        let ring = ring(nodes, racks, datacenters, allocated, seed);
        for replication in strategies(datacenters) {
            let replicas = ring.replicas(Token(key), &replication);
            let mut distinct = replicas.clone();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(distinct.len(), replicas.len());
            prop_assert_eq!(replicas.len(), expected_replicas(&ring, &replication));
            prop_assert_eq!(replicas.first(), if matches!(replication, Replication::Simple { .. }) {
                ring.primary(Token(key))
            } else { replicas.first() });
            // Fallbacks are every other node, once.
            let fallbacks = ring.fallbacks(Token(key), &replication);
            prop_assert_eq!(fallbacks.len() + replicas.len(), ring.len());
            prop_assert!(fallbacks.iter().all(|f| !replicas.contains(f)));
        }
    }

    #[test]
    fn rack_aware_placement_uses_as_many_racks_as_it_can(
        nodes in 3usize..12, racks in 1usize..4, seed: u64, key: i64,
    ) {
        let ring = ring(nodes, racks, 1, false, seed);
        let replicas = ring.replicas(Token(key), &Replication::RackAware { factor: 3 });
        let mut used: Vec<&str> =
            replicas.iter().map(|r| ring.members()[r].location.rack.as_str()).collect();
        used.sort();
        used.dedup();
        let racks_present = ring.members().values()
            .map(|m| m.location.rack.clone()).collect::<std::collections::BTreeSet<_>>().len();
        prop_assert_eq!(used.len(), racks_present.min(3));
    }

    #[test]
    fn replicated_ranges_cover_the_ring_exactly_rf_times(
        nodes in 1usize..12, racks in 1usize..4, datacenters in 1usize..3,
        allocated: bool, seed: u64,
    ) {
        let ring = ring(nodes, racks, datacenters, allocated, seed);
        for replication in strategies(datacenters) {
            let want = expected_replicas(&ring, &replication);
            let mut total = 0.0;
            let mut coverage: BTreeMap<Token, usize> = BTreeMap::new();
            for id in ring.members().keys() {
                let ranges = ring.ranges_of(id, &replication);
                // A node's ranges never overlap: sorted by end, each starts at or
                // after the previous one's end.
                for pair in ranges.windows(2) {
                    prop_assert!(pair[0].end <= pair[1].start || ranges.len() == 1);
                }
                for range in ranges {
                    total += range.fraction();
                    *coverage.entry(range.end).or_default() += 1;
                }
            }
            prop_assert!((total - want as f64).abs() < 1e-9, "total {} want {}", total, want);
            for (token, _) in ring.tokens() {
                prop_assert_eq!(coverage.get(&token).copied().unwrap_or(0), want);
            }
        }
    }

    #[test]
    fn adding_a_node_moves_about_one_over_n_plus_one_of_the_keys(
        nodes in 3usize..16, seed: u64,
    ) {
        let replication = Replication::Simple { factor: 3 };
        let before = ring(nodes, 1, 1, true, seed);
        let mut after = before.clone();
        let newcomer = NodeId::new("newcomer");
        after.join(newcomer.clone(), Location::default(), 8, 3).unwrap();

        let mut rng = StdRng::seed_from_u64(seed);
        let keys = 4000;
        let mut moved = 0usize;
        for _ in 0..keys {
            let token = Token(rng.random());
            let old = before.replicas(token, &replication);
            let new = after.replicas(token, &replication);
            // Replicas only ever move to the newcomer.
            for node in new.iter().filter(|n| !old.contains(n)) {
                prop_assert_eq!(node, &newcomer);
            }
            moved += new.iter().filter(|n| !old.contains(n)).count();
        }
        // Replica assignments that moved, as a share of all of them.
        let share = moved as f64 / (keys * 3) as f64;
        let ideal = 1.0 / (nodes + 1) as f64;
        prop_assert!(share > ideal * 0.7 && share < ideal * 1.3, "moved {share:.3}, ideal {ideal:.3}");

        // The range computation agrees: the newcomer gains, from the old replicas,
        // exactly what it owns afterwards.
        let changes = RangeChanges::between(&before, &after, &replication);
        let gained: f64 = changes.gained.iter().map(|m| m.range.fraction()).sum();
        let lost: f64 = changes.lost.iter().map(|m| m.range.fraction()).sum();
        prop_assert!(changes.gained.iter().all(|m| m.node == newcomer && m.sources.len() == 3));
        prop_assert!((gained - after.ownership(&replication)[&newcomer]).abs() < 1e-9);
        prop_assert!((gained - lost).abs() < 1e-9);
    }
}

#[test]
fn replicas_are_the_next_distinct_nodes_clockwise() {
    let mut ring = Ring::new();
    ring.add_node(
        NodeId::new("a"),
        Location::default(),
        vec![Token(0), Token(100)],
    )
    .unwrap();
    ring.add_node(NodeId::new("b"), Location::default(), vec![Token(50)])
        .unwrap();
    ring.add_node(
        NodeId::new("c"),
        Location::default(),
        vec![Token(75), Token(-50)],
    )
    .unwrap();
    let names = |ids: Vec<NodeId>| ids.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    let two = Replication::Simple { factor: 2 };
    assert_eq!(names(ring.replicas(Token(1), &two)), ["b", "c"]);
    assert_eq!(names(ring.replicas(Token(50), &two)), ["b", "c"]);
    assert_eq!(names(ring.replicas(Token(76), &two)), ["a", "c"]);
    // Past the last token the walk wraps to the first.
    assert_eq!(names(ring.replicas(Token(101), &two)), ["c", "a"]);
    assert_eq!(names(ring.fallbacks(Token(101), &two)), ["b"]);
    let err = ring
        .add_node(NodeId::new("d"), Location::default(), vec![Token(50)])
        .unwrap_err();
    assert_eq!(err.to_string(), "token 50 is already owned by b");
}
