//! Actors, dots and version vectors: sets of dots, written compactly.

use ringdb_ring::NodeId;
use serde::{Deserialize, Serialize};

/// A replica that creates versions: a node, in one life of its process.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorId {
    /// The node.
    pub node: NodeId,
    /// Random, chosen each time the node opens its storage (see the module
    /// documentation: a node that restarts may have lost its newest writes,
    /// so it never continues an old life's counters).
    pub epoch: u64,
}

/// One event: the `counter`-th event of `actor` for one row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// Who coordinated the write.
    pub actor: ActorId,
    /// Its sequence number at that actor, from 1.
    pub counter: u64,
}

/// A set of dots: per actor, every dot up to a counter, plus the dots seen
/// beyond it that are not contiguous with it (a "dot cloud", as in the
/// causal contexts of delta-state CRDTs). Clients get one with every read,
/// as its causal context; every row's history is one.
///
/// The cloud is empty in the common case. It holds a dot when a write was
/// issued above a gap, which happens only when the issuing node forgot part
/// of a row's history (see `Storage::write`), and in the context a write
/// returns (what its writer had seen, and its own new dot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector {
    /// (actor, counter): the dots 1..=counter of actor; sorted by actor,
    /// counters > 0.
    entries: Vec<(ActorId, u64)>,
    /// Dots beyond their actor's counter, with a gap before them; sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    extra: Vec<Dot>,
}

impl VersionVector {
    /// The empty set: a write with it supersedes nothing.
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// A set from its parts, in any order; normalised.
    pub(crate) fn from_parts(entries: Vec<(ActorId, u64)>, extra: Vec<Dot>) -> VersionVector {
        let mut vector = VersionVector { entries, extra };
        vector.normalize();
        vector
    }

    /// The contiguous number of `actor`'s events seen: every dot of it up
    /// to this counter is in the set.
    pub fn get(&self, actor: &ActorId) -> u64 {
        match self.entries.binary_search_by(|(a, _)| a.cmp(actor)) {
            Ok(i) => self.entries[i].1,
            Err(_) => 0,
        }
    }

    /// The highest counter of `actor` in the set (0 for none).
    pub fn max_counter(&self, actor: &ActorId) -> u64 {
        let beyond = self.extra_of(actor).last().map_or(0, |dot| dot.counter);
        self.get(actor).max(beyond)
    }

    fn extra_of(&self, actor: &ActorId) -> &[Dot] {
        let start = self.extra.partition_point(|dot| dot.actor < *actor);
        let end = self.extra.partition_point(|dot| dot.actor <= *actor);
        &self.extra[start..end]
    }

    /// Whether `dot` is in the set.
    pub fn contains(&self, dot: &Dot) -> bool {
        dot.counter <= self.get(&dot.actor) || self.extra.binary_search(dot).is_ok()
    }

    /// Whether every dot of `other` is in this set.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        // Normalised, a set holds dot counter+1 of an actor only as part of
        // its counter: so a larger counter in `other` is never covered.
        other
            .entries
            .iter()
            .all(|(actor, counter)| self.get(actor) >= *counter)
            && other.extra.iter().all(|dot| self.contains(dot))
    }

    /// The union of two sets.
    pub fn merge(&self, other: &VersionVector) -> VersionVector {
        let mut entries = self.entries.clone();
        for (actor, counter) in &other.entries {
            match entries.binary_search_by(|(a, _)| a.cmp(actor)) {
                Ok(i) => entries[i].1 = entries[i].1.max(*counter),
                Err(i) => entries.insert(i, (actor.clone(), *counter)),
            }
        }
        let mut merged = VersionVector {
            entries,
            extra: self.extra.iter().chain(&other.extra).cloned().collect(),
        };
        merged.normalize();
        merged
    }

    /// The dots in both sets.
    pub fn intersection(&self, other: &VersionVector) -> VersionVector {
        let entries = self
            .entries
            .iter()
            .filter_map(|(actor, counter)| {
                let both = (*counter).min(other.get(actor));
                (both > 0).then(|| (actor.clone(), both))
            })
            .collect();
        // A dot above both counters is in both only if one of them has it
        // in its cloud.
        let extra = self
            .extra
            .iter()
            .chain(&other.extra)
            .filter(|dot| self.contains(dot) && other.contains(dot))
            .cloned()
            .collect();
        VersionVector::from_parts(entries, extra)
    }

    /// The set with `dot` added.
    pub fn with(&self, dot: Dot) -> VersionVector {
        let mut with = self.clone();
        with.extra.push(dot);
        with.normalize();
        with
    }

    /// (actor, contiguous counter) pairs, sorted by actor.
    pub fn iter(&self) -> impl Iterator<Item = (&ActorId, u64)> {
        self.entries.iter().map(|(a, c)| (a, *c))
    }

    /// The dots seen beyond their actor's contiguous counter, sorted.
    pub fn extra(&self) -> &[Dot] {
        &self.extra
    }

    /// Every actor named, with the highest counter of each.
    pub fn actors(&self) -> Vec<(ActorId, u64)> {
        let mut actors: Vec<(ActorId, u64)> = self.entries.clone();
        for dot in &self.extra {
            match actors.binary_search_by(|(a, _)| a.cmp(&dot.actor)) {
                Ok(i) => actors[i].1 = actors[i].1.max(dot.counter),
                Err(i) => actors.insert(i, (dot.actor.clone(), dot.counter)),
            }
        }
        actors
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.extra.is_empty()
    }

    /// Restores the canonical form: entries sorted, one per actor (the
    /// largest counter), none zero; the cloud sorted and distinct, without
    /// dots its actor's counter covers, and with the dots contiguous with
    /// that counter folded into it.
    pub(crate) fn normalize(&mut self) {
        self.entries.sort();
        // Sorted by actor then counter: keep the last (largest) of each actor.
        self.entries.reverse();
        self.entries.dedup_by(|later, earlier| later.0 == earlier.0);
        self.entries.reverse();
        self.entries.retain(|(_, counter)| *counter > 0);
        if self.extra.is_empty() {
            return;
        }
        self.extra.sort();
        self.extra.dedup();
        let extra = std::mem::take(&mut self.extra);
        for dot in extra {
            let at = self.entries.binary_search_by(|(a, _)| a.cmp(&dot.actor));
            let counter = at.map_or(0, |i| self.entries[i].1);
            if dot.counter <= counter {
                continue;
            }
            if dot.counter == counter + 1 {
                // Contiguous: it (and any cloud dots that follow it, which
                // come next in sorted order) extends the counter.
                match at {
                    Ok(i) => self.entries[i].1 = dot.counter,
                    Err(i) => self.entries.insert(i, (dot.actor, dot.counter)),
                }
            } else {
                self.extra.push(dot);
            }
        }
    }
}
