//! Which levels must overlap: whether every set of replicas a read at one
//! level may hear from shares a replica with every set a write at another
//! level may have reached, across datacenters.
//!
//! With one datacenter of N replicas this is the textbook R + W > N. With
//! several, a level asks for a count in some datacenters (LOCAL_QUORUM in
//! its coordinator's, EACH_QUORUM in each, ALL everywhere) and a count
//! anywhere (ONE, TWO, QUORUM of them all), so the sum alone says nothing:
//! a LOCAL_QUORUM read in dc2 need not meet a LOCAL_QUORUM write in dc1.
//! The checkers ask here instead.

use std::collections::BTreeMap;

use ringdb_proto::ConsistencyLevel;

/// How many replicas each row has in each datacenter, and where each
/// node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replication {
    /// Replicas per datacenter.
    datacenters: BTreeMap<String, usize>,
    /// Each node's datacenter (with one datacenter, every node is in it).
    nodes: BTreeMap<String, String>,
}

/// What a level asks of the replicas: at least this many in each
/// datacenter, and at least `total` in all.
struct Demand {
    each: Vec<usize>,
    total: usize,
}

impl Replication {
    /// One datacenter of `replicas` replicas.
    pub fn simple(replicas: usize) -> Replication {
        Replication {
            datacenters: [("datacenter1".to_string(), replicas)].into(),
            nodes: BTreeMap::new(),
        }
    }

    /// Replicas per datacenter, and each node's datacenter.
    pub fn datacenters(
        datacenters: BTreeMap<String, usize>,
        nodes: BTreeMap<String, String>,
    ) -> Replication {
        Replication { datacenters, nodes }
    }

    /// Replicas of a row, in all.
    pub fn total(&self) -> usize {
        self.datacenters.values().sum()
    }

    /// What `level` coordinated by `node` asks for; `None` for ANY (which
    /// may count no replica at all), and for a datacenter's level asked of
    /// a node whose datacenter is not known (nothing is promised then).
    fn demand(&self, level: ConsistencyLevel, node: &str) -> Option<Demand> {
        let counts: Vec<usize> = self.datacenters.values().copied().collect();
        let known = self
            .nodes
            .get(node)
            .and_then(|dc| self.datacenters.keys().position(|d| d == dc));
        let local_level = matches!(
            level,
            ConsistencyLevel::LocalOne | ConsistencyLevel::LocalQuorum
        );
        let local = match known {
            Some(local) => local,
            None if counts.len() == 1 => 0,
            None if local_level => return None,
            None => 0,
        };
        let in_local = |count: usize| {
            let mut each = vec![0; counts.len()];
            each[local] = count;
            each
        };
        let total = self.total();
        let (each, total) = match level {
            ConsistencyLevel::Any => return None,
            ConsistencyLevel::One => (vec![0; counts.len()], 1),
            ConsistencyLevel::Two => (vec![0; counts.len()], 2),
            ConsistencyLevel::Three => (vec![0; counts.len()], 3),
            ConsistencyLevel::Quorum => (vec![0; counts.len()], total / 2 + 1),
            ConsistencyLevel::All => (counts.clone(), total),
            ConsistencyLevel::LocalOne => (in_local(1.min(counts[local])), 1),
            ConsistencyLevel::LocalQuorum => {
                let quorum = counts[local] / 2 + 1;
                (in_local(quorum), quorum)
            }
            ConsistencyLevel::EachQuorum => {
                // A datacenter without replicas asks nothing (the
                // coordinator skips it).
                let each: Vec<usize> = counts
                    .iter()
                    .map(|n| if *n == 0 { 0 } else { n / 2 + 1 })
                    .collect();
                let sum = each.iter().sum();
                (each, sum)
            }
        };
        Some(Demand { each, total })
    }

    /// The fewest replicas `level` at `node` may have reached when it
    /// succeeded (0 for ANY).
    pub fn fewest(&self, level: ConsistencyLevel, node: &str) -> usize {
        self.demand(level, node).map_or(0, |d| d.total)
    }

    /// Whether a read at `read` coordinated by `reader` must hear from a
    /// replica a write at `write` coordinated by `writer` reached: no two
    /// disjoint sets of replicas satisfy both levels.
    pub fn overlap(
        &self,
        read: ConsistencyLevel,
        reader: &str,
        write: ConsistencyLevel,
        writer: &str,
    ) -> bool {
        let (Some(r), Some(w)) = (self.demand(read, reader), self.demand(write, writer)) else {
            return false;
        };
        let counts: Vec<usize> = self.datacenters.values().copied().collect();
        // The least each set takes in each datacenter; what is left over
        // may go to either to reach its total.
        let mut spare = 0;
        for (i, n) in counts.iter().enumerate() {
            let taken = r.each[i] + w.each[i];
            if taken > *n {
                return true;
            }
            spare += n - taken;
        }
        let r_more = r.total.saturating_sub(r.each.iter().sum());
        let w_more = w.total.saturating_sub(w.each.iter().sum());
        r_more + w_more > spare
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsistencyLevel::*;

    const LEVELS: [ConsistencyLevel; 8] = [
        One,
        Two,
        Three,
        Quorum,
        All,
        LocalOne,
        LocalQuorum,
        EachQuorum,
    ];

    /// Two datacenters of 3 and 2 replicas; node a in dc1, b in dc2.
    fn two_dcs() -> Replication {
        Replication::datacenters(
            [("dc1".into(), 3), ("dc2".into(), 2)].into(),
            [("a".into(), "dc1".into()), ("b".into(), "dc2".into())].into(),
        )
    }

    /// Whether the replicas in `set` (a bit per replica; replicas 0..3 in
    /// dc1, 3..5 in dc2) satisfy `level` at `node`.
    fn satisfies(replication: &Replication, level: ConsistencyLevel, node: &str, set: u32) -> bool {
        let demand = replication.demand(level, node).unwrap();
        let in_dc = |range: std::ops::Range<u32>| range.filter(|i| set & (1 << i) != 0).count();
        let each = [in_dc(0..3), in_dc(3..5)];
        set.count_ones() as usize >= demand.total
            && each.iter().zip(&demand.each).all(|(h, d)| h >= d)
    }

    #[test]
    fn overlap_is_what_every_pair_of_replica_sets_shows() {
        // Against brute force: every read set and write set of five
        // replicas in two datacenters.
        let replication = two_dcs();
        for read in LEVELS {
            for write in LEVELS {
                for (reader, writer) in [("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")] {
                    let disjoint = (0u32..32).any(|r| {
                        (0u32..32).any(|w| {
                            r & w == 0
                                && satisfies(&replication, read, reader, r)
                                && satisfies(&replication, write, writer, w)
                        })
                    });
                    assert_eq!(
                        replication.overlap(read, reader, write, writer),
                        !disjoint,
                        "{read} at {reader}, {write} at {writer}"
                    );
                }
            }
        }
    }

    #[test]
    fn one_datacenter_is_r_plus_w_over_n() {
        let replication = Replication::simple(3);
        assert!(replication.overlap(Quorum, "x", Quorum, "y"));
        assert!(replication.overlap(One, "x", All, "y"));
        assert!(!replication.overlap(One, "x", Quorum, "y"));
        assert!(replication.overlap(LocalQuorum, "x", Quorum, "y"));
        assert!(!replication.overlap(Any, "x", All, "y"));
        assert_eq!(replication.fewest(Quorum, "x"), 2);
        assert_eq!(replication.fewest(Any, "x"), 0);
    }

    #[test]
    fn an_empty_datacenter_asks_nothing_and_an_unknown_node_promises_nothing() {
        let replication = Replication::datacenters(
            [("dc1".into(), 3), ("dc2".into(), 0)].into(),
            [("a".into(), "dc1".into())].into(),
        );
        assert!(!replication.overlap(EachQuorum, "a", One, "a"));
        assert!(replication.overlap(EachQuorum, "a", EachQuorum, "a"));
        assert!(!replication.overlap(LocalQuorum, "stranger", All, "a"));
        assert_eq!(replication.fewest(LocalQuorum, "stranger"), 0);
    }

    #[test]
    fn local_quorums_meet_only_in_one_datacenter() {
        let replication = two_dcs();
        assert!(replication.overlap(LocalQuorum, "a", LocalQuorum, "a"));
        assert!(!replication.overlap(LocalQuorum, "b", LocalQuorum, "a"));
        assert!(replication.overlap(EachQuorum, "b", LocalQuorum, "a"));
        assert!(!replication.overlap(Quorum, "b", LocalQuorum, "a"));
    }
}
