//! Which answers a read needs: a quorum tracker over groups of replicas.
//!
//! Outside a topology change a read needs `required` answers from the
//! row's replicas: one group. While a node joins or leaves, a write goes to
//! the replicas of the ring before the change and to those the ring after
//! it adds, and waits for enough of both (pending ranges). But a
//! coordinator that has already seen the change end writes to the new
//! ring only, one that has not seen it begin to the old ring only; so a
//! read during the change needs `required` answers from *each* ring, and
//! then meets every write acknowledged at a level that, with its own,
//! overlaps (R + W > N), whichever of the two views that write's
//! coordinator had.

use ringdb_ring::NodeId;

/// `required` answers from each of a few groups of replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Quorum {
    groups: Vec<Group>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    replicas: Vec<NodeId>,
    required: usize,
}

/// A group that cannot be met, for the error the request answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shortfall {
    /// Answers the group needs.
    pub(super) required: usize,
    /// Answers it has (or nodes that could give one).
    pub(super) have: usize,
}

impl Quorum {
    /// `required` answers from `replicas`.
    pub(super) fn new(replicas: Vec<NodeId>, required: usize) -> Quorum {
        Quorum {
            groups: vec![Group { replicas, required }],
        }
    }

    /// Also `required` answers from `replicas`, unless that is a group
    /// already needed.
    pub(super) fn and(mut self, mut replicas: Vec<NodeId>, required: usize) -> Quorum {
        let mut sorted = replicas.clone();
        sorted.sort();
        let known = self.groups.iter().any(|group| {
            let mut theirs = group.replicas.clone();
            theirs.sort();
            theirs == sorted && group.required >= required
        });
        if !known {
            replicas.dedup();
            self.groups.push(Group { replicas, required });
        }
        self
    }

    /// The answers every group needs, together.
    pub(super) fn required(&self) -> usize {
        self.groups.iter().map(|g| g.required).sum()
    }

    /// Also every group of `other`.
    pub(super) fn with(self, other: Quorum) -> Quorum {
        other.groups.into_iter().fold(self, |quorum, group| {
            quorum.and(group.replicas, group.required)
        })
    }

    /// Every replica of any group, each once, in group order.
    pub(super) fn candidates(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = Vec::new();
        for replica in self.groups.iter().flat_map(|g| &g.replicas) {
            if !all.contains(replica) {
                all.push(replica.clone());
            }
        }
        all
    }

    /// The first group that `answered` does not meet, if any.
    pub(super) fn shortfall(&self, answered: &[NodeId]) -> Option<Shortfall> {
        self.groups.iter().find_map(|group| {
            let have = group.count(answered);
            (have < group.required).then_some(Shortfall {
                required: group.required,
                have,
            })
        })
    }

    /// Whether `answered` meets every group.
    pub(super) fn met_by(&self, answered: &[NodeId]) -> bool {
        self.shortfall(answered).is_none()
    }

    /// The replicas to ask first, chosen from `alive` (in its order, so
    /// this node first when it is one): few enough, and enough that every
    /// group is met if they all answer. Replicas in more groups are chosen
    /// first. `Err` names a group that `alive` cannot meet.
    pub(super) fn first_asks(&self, alive: &[NodeId]) -> Result<Vec<NodeId>, Shortfall> {
        if let Some(short) = self.shortfall(alive) {
            return Err(short);
        }
        let mut by_groups: Vec<&NodeId> = alive.iter().collect();
        // Stable: ties keep `alive`'s order.
        by_groups.sort_by_key(|node| {
            std::cmp::Reverse(
                self.groups
                    .iter()
                    .filter(|g| g.replicas.contains(node))
                    .count(),
            )
        });
        let mut chosen: Vec<NodeId> = Vec::new();
        for node in by_groups {
            let helps = self
                .groups
                .iter()
                .any(|g| g.replicas.contains(node) && g.count(&chosen) < g.required);
            if helps {
                chosen.push(node.clone());
            }
            if self.met_by(&chosen) {
                break;
            }
        }
        Ok(chosen)
    }

    /// The spares to ask now that `answered` have answered and
    /// `outstanding` are still being asked: as few as, should they all
    /// answer, meet every group (each the spare counting towards the most
    /// unmet groups, ties in `spares`' order); taken out of `spares`.
    pub(super) fn spares_for(
        &self,
        spares: &mut Vec<NodeId>,
        answered: &[NodeId],
        outstanding: &[NodeId],
    ) -> Vec<NodeId> {
        let mut counted: Vec<NodeId> = answered.iter().chain(outstanding).cloned().collect();
        let mut chosen = Vec::new();
        while let Some(spare) = self.take_best(spares, &counted) {
            counted.push(spare.clone());
            chosen.push(spare);
        }
        chosen
    }

    /// A spare to ask because the replicas asked are slow: the one that
    /// counts towards the most groups `answered` does not meet yet.
    pub(super) fn speculative_spare(
        &self,
        spares: &mut Vec<NodeId>,
        answered: &[NodeId],
    ) -> Option<NodeId> {
        self.take_best(spares, answered)
    }

    /// Takes out of `spares` the one that counts towards the most groups
    /// `counted` does not meet, if any does.
    fn take_best(&self, spares: &mut Vec<NodeId>, counted: &[NodeId]) -> Option<NodeId> {
        let unmet: Vec<&Group> = self
            .groups
            .iter()
            .filter(|g| g.count(counted) < g.required)
            .collect();
        let helps = |spare: &NodeId| unmet.iter().filter(|g| g.replicas.contains(spare)).count();
        let (index, best) = spares
            .iter()
            .enumerate()
            .map(|(index, spare)| (index, helps(spare)))
            .fold(
                (0, 0),
                |best, next| if next.1 > best.1 { next } else { best },
            );
        (best > 0).then(|| spares.remove(index))
    }
}

impl Group {
    fn count(&self, nodes: &[NodeId]) -> usize {
        self.replicas.iter().filter(|r| nodes.contains(r)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| NodeId::new(*n)).collect()
    }

    #[test]
    fn one_group_asks_the_first_alive_replicas() {
        let quorum = Quorum::new(nodes(&["a", "b", "c"]), 2);
        assert_eq!(quorum.candidates(), nodes(&["a", "b", "c"]));
        assert_eq!(
            quorum.first_asks(&nodes(&["c", "a", "b"])),
            Ok(nodes(&["c", "a"]))
        );
        assert!(!quorum.met_by(&nodes(&["a"])));
        assert!(quorum.met_by(&nodes(&["b", "a"])));
        assert_eq!(
            quorum.first_asks(&nodes(&["b"])),
            Err(Shortfall {
                required: 2,
                have: 1
            })
        );
    }

    #[test]
    fn during_a_join_a_read_needs_a_quorum_of_each_ring() {
        // x gives its range to the joining n.
        let quorum = Quorum::new(nodes(&["x", "y", "z"]), 2).and(nodes(&["n", "y", "z"]), 2);
        assert_eq!(quorum.candidates(), nodes(&["x", "y", "z", "n"]));
        // y and z are in both rings: they are enough.
        assert_eq!(
            quorum.first_asks(&nodes(&["x", "n", "y", "z"])),
            Ok(nodes(&["y", "z"]))
        );
        // x and y meet the old ring only.
        assert!(!quorum.met_by(&nodes(&["x", "y"])));
        assert!(quorum.met_by(&nodes(&["x", "y", "n"])));
        assert_eq!(
            quorum.first_asks(&nodes(&["x", "n", "z"])),
            Ok(nodes(&["z", "x", "n"]))
        );
        // Without y and z the new ring has one alive replica.
        assert_eq!(
            quorum.first_asks(&nodes(&["x", "n"])),
            Err(Shortfall {
                required: 2,
                have: 1
            })
        );
    }

    #[test]
    fn spares_are_asked_for_every_ring_left_short() {
        let quorum = Quorum::new(nodes(&["x", "y", "z"]), 2).and(nodes(&["n", "y", "z"]), 2);
        // y answered, z failed: each ring lacks one, so both x and n.
        let mut spares = nodes(&["x", "n"]);
        let asked = quorum.spares_for(&mut spares, &nodes(&["y"]), &[]);
        assert_eq!(asked, nodes(&["x", "n"]));
        assert!(spares.is_empty());
        // y answered, z still asked: nothing is needed yet.
        let mut spares = nodes(&["x", "n"]);
        assert!(
            quorum
                .spares_for(&mut spares, &nodes(&["y"]), &nodes(&["z"]))
                .is_empty()
        );
        // But z is slow: speculate on a spare of a ring still short.
        assert_eq!(
            quorum.speculative_spare(&mut spares, &nodes(&["y", "x"])),
            Some(NodeId::new("n"))
        );
        assert_eq!(
            quorum.speculative_spare(&mut spares, &nodes(&["y", "x"])),
            None
        );
    }

    #[test]
    fn the_same_ring_twice_is_one_group() {
        let quorum = Quorum::new(nodes(&["a", "b", "c"]), 2).and(nodes(&["c", "b", "a"]), 2);
        assert_eq!(quorum, Quorum::new(nodes(&["a", "b", "c"]), 2));
    }
}
