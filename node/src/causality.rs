//! Causality: dotted version vector sets (DVV sets).
//!
//! Every write of a row is an *event* at the replica that coordinates it,
//! named by a *dot*: (actor, counter). A row's state at a replica is a set of
//! sibling values, each with its dot, plus a summary of every dot the replica
//! has seen. Following Preguiça, Baquero, Almeida, Fonte and Gonçalves,
//! "Dotted Version Vectors: Efficient Causality Tracking for Distributed
//! Key-Value Stores" (DAIS 2012), and Riak's `dvvset`, both live in one
//! structure: per actor, the highest counter seen and the values whose dots
//! are the most recent ones of that actor still alive. Alive dots of an actor
//! are always a contiguous run ending at its counter, because a context that
//! has seen (a, n) has seen every earlier dot of `a`; so a value's dot is
//! implied by its position and never stored.
//!
//! - [`DvvSet::update`]: a write at `actor` with the client's context (the
//!   version vector of what it read). Values the context has seen are
//!   superseded; everything else stays as a concurrent sibling.
//! - [`DvvSet::sync`]: the merge of two replicas' states; a value survives if
//!   both have it or if the other has not seen its dot.
//! - [`DvvSet::context`]: the version vector handed to the client with a read
//!   (Riak's `join`); [`CausalContext`] is its opaque, versioned encoding.
//!
//! A delete is a write of a tombstone value: it supersedes what it saw, and a
//! later write supersedes it like any other sibling.
//!
//! Actor ids are a node id plus the epoch of its data directory (see
//! [`ActorId`]): a replica that lost its data starts over with a new epoch
//! instead of reusing dots that other replicas have already seen (Riak's kv679
//! bug: a reused dot made peers discard new writes as already seen).

use std::cmp::Ordering;

use ringdb_ring::NodeId;
use serde::{Deserialize, Serialize};

/// A replica that creates versions: a node, in one life of its data directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorId {
    /// The node.
    pub node: NodeId,
    /// Random, chosen when the node's data directory was created.
    pub epoch: u64,
}

/// One event: the `counter`-th write coordinated by `actor`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// Who coordinated the write.
    pub actor: ActorId,
    /// Its sequence number at that actor, from 1.
    pub counter: u64,
}

/// A version vector: per actor, the number of its events seen. Handed to
/// clients as the causal context of a read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector {
    /// (actor, counter), sorted by actor, counters > 0.
    entries: Vec<(ActorId, u64)>,
}

impl VersionVector {
    /// The empty vector: a write with it is concurrent with everything.
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// The number of `actor`'s events seen.
    pub fn get(&self, actor: &ActorId) -> u64 {
        match self.entries.binary_search_by(|(a, _)| a.cmp(actor)) {
            Ok(i) => self.entries[i].1,
            Err(_) => 0,
        }
    }

    /// Whether `dot` has been seen.
    pub fn contains(&self, dot: &Dot) -> bool {
        dot.counter <= self.get(&dot.actor)
    }

    /// Whether this vector has seen every event `other` has.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other
            .entries
            .iter()
            .all(|(actor, counter)| self.get(actor) >= *counter)
    }

    /// The pointwise maximum of two vectors.
    pub fn merge(&self, other: &VersionVector) -> VersionVector {
        let mut entries = self.entries.clone();
        for (actor, counter) in &other.entries {
            match entries.binary_search_by(|(a, _)| a.cmp(actor)) {
                Ok(i) => entries[i].1 = entries[i].1.max(*counter),
                Err(i) => entries.insert(i, (actor.clone(), *counter)),
            }
        }
        VersionVector { entries }
    }

    /// (actor, counter) pairs, sorted by actor.
    pub fn iter(&self) -> impl Iterator<Item = (&ActorId, u64)> {
        self.entries.iter().map(|(a, c)| (a, *c))
    }
}

/// One actor's part of a [`DvvSet`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry<V> {
    actor: ActorId,
    /// The number of this actor's events seen.
    counter: u64,
    /// Alive values, newest first: `values[i]` has dot (actor, counter − i).
    values: Vec<V>,
}

/// The versions of one row at one replica: sibling values with their dots,
/// and the causal history that superseded the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DvvSet<V> {
    /// Sorted by actor.
    entries: Vec<Entry<V>>,
}

impl<V> Default for DvvSet<V> {
    fn default() -> DvvSet<V> {
        DvvSet {
            entries: Vec::new(),
        }
    }
}

impl<V: Clone> DvvSet<V> {
    /// The state of a row never written.
    pub fn new() -> DvvSet<V> {
        DvvSet::default()
    }

    /// The state after a write of `value`, coordinated by `actor`, by a client
    /// that had read `context`: the new value gets the dot following every
    /// event of `actor` known here or in the context, values the context has
    /// seen are superseded, and the rest stay as siblings.
    pub fn update(&self, context: &VersionVector, actor: &ActorId, value: V) -> DvvSet<V> {
        // A context is a state with no values: syncing with it discards
        // exactly the values it has seen and keeps the rest.
        let seen = DvvSet {
            entries: context
                .entries
                .iter()
                .map(|(actor, counter)| Entry {
                    actor: actor.clone(),
                    counter: *counter,
                    values: Vec::new(),
                })
                .collect(),
        };
        let mut entries = self.sync(&seen).entries;
        match entries.binary_search_by(|e| e.actor.cmp(actor)) {
            Ok(i) => {
                entries[i].counter += 1;
                entries[i].values.insert(0, value);
            }
            Err(i) => entries.insert(
                i,
                Entry {
                    actor: actor.clone(),
                    counter: 1,
                    values: vec![value],
                },
            ),
        }
        DvvSet { entries }
    }

    /// The merge of two replicas' states of the same row. Commutative,
    /// associative and idempotent.
    pub fn sync(&self, other: &DvvSet<V>) -> DvvSet<V> {
        let mut entries = Vec::with_capacity(self.entries.len().max(other.entries.len()));
        let (mut mine, mut theirs) = (
            self.entries.iter().peekable(),
            other.entries.iter().peekable(),
        );
        loop {
            let next = match (mine.peek(), theirs.peek()) {
                (None, None) => break,
                (Some(a), Some(b)) => a.actor.cmp(&b.actor),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
            };
            match next {
                Ordering::Less => entries.push(mine.next().expect("peeked").clone()),
                Ordering::Greater => entries.push(theirs.next().expect("peeked").clone()),
                Ordering::Equal => {
                    let (a, b) = (mine.next().expect("peeked"), theirs.next().expect("peeked"));
                    entries.push(sync_entry(a, b));
                }
            }
        }
        DvvSet { entries }
    }

    /// The causal context of this state: every event it has seen.
    pub fn context(&self) -> VersionVector {
        VersionVector {
            entries: self
                .entries
                .iter()
                .map(|e| (e.actor.clone(), e.counter))
                .collect(),
        }
    }

    /// The alive values (siblings), each with its dot, in actor order and
    /// newest first within an actor.
    pub fn siblings(&self) -> impl Iterator<Item = (Dot, &V)> {
        self.entries.iter().flat_map(|e| {
            e.values.iter().enumerate().map(move |(i, v)| {
                (
                    Dot {
                        actor: e.actor.clone(),
                        counter: e.counter - i as u64,
                    },
                    v,
                )
            })
        })
    }

    /// The alive values.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().flat_map(|e| e.values.iter())
    }

    /// The number of alive values.
    pub fn len(&self) -> usize {
        self.entries.iter().map(|e| e.values.len()).sum()
    }

    /// Whether no value is alive (a row never written).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the invariants of a set that came off the disk or the network:
    /// actors sorted and distinct, and no more values than events.
    pub fn check(&self) -> Result<(), InvalidDvvSet> {
        for pair in self.entries.windows(2) {
            if pair[0].actor >= pair[1].actor {
                return Err(InvalidDvvSet::Unsorted);
            }
        }
        match self
            .entries
            .iter()
            .find(|e| e.values.len() as u64 > e.counter)
        {
            Some(e) => Err(InvalidDvvSet::TooManyValues {
                values: e.values.len(),
                counter: e.counter,
            }),
            None => Ok(()),
        }
    }

    /// Whether this state has seen everything `other` has and kept no value
    /// `other` superseded: syncing `other` into it changes nothing.
    pub fn descends(&self, other: &DvvSet<V>) -> bool
    where
        V: PartialEq,
    {
        &self.sync(other) == self
    }
}

/// Merges one actor's entries from two states. The alive dots of each are the
/// run ending at its counter; a dot survives if both have it alive, or if the
/// side with the lower counter never saw it.
fn sync_entry<V: Clone>(a: &Entry<V>, b: &Entry<V>) -> Entry<V> {
    let (high, low) = if a.counter >= b.counter {
        (a, b)
    } else {
        (b, a)
    };
    // Dots above low.counter are unseen by `low`: alive if alive in `high`.
    // Dots at or below it survive only if alive in both: those above
    // low.counter − low.values.len().
    let unseen = (high.counter - low.counter) as usize;
    let keep = high.values.len().min(unseen + low.values.len());
    Entry {
        actor: high.actor.clone(),
        counter: high.counter,
        values: high.values[..keep].to_vec(),
    }
}

/// A sibling set whose encoding decoded but breaks an invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDvvSet {
    /// Actors are not in strictly increasing order.
    #[error("actors are not sorted and distinct")]
    Unsorted,
    /// An actor has more alive values than events.
    #[error("an actor has {values} values but only {counter} events")]
    TooManyValues {
        /// Alive values.
        values: usize,
        /// Events.
        counter: u64,
    },
}

/// The opaque causal context handed to clients: a version marker and the
/// MessagePack of a [`VersionVector`].
pub struct CausalContext;

/// The current [`CausalContext`] format.
const CONTEXT_FORMAT: u8 = 1;

/// A context a client passed back that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The bytes are empty.
    #[error("causal context is empty")]
    Empty,
    /// The format marker is one this version does not know.
    #[error("causal context has format {0}; this node reads format {CONTEXT_FORMAT}")]
    UnknownFormat(u8),
    /// The bytes do not decode.
    #[error("causal context does not decode: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
}

impl CausalContext {
    /// Encodes a version vector as context bytes.
    pub fn encode(context: &VersionVector) -> Vec<u8> {
        let mut bytes = vec![CONTEXT_FORMAT];
        rmp_serde::encode::write(&mut bytes, context).expect("a version vector always encodes");
        bytes
    }

    /// Decodes context bytes from a client. Empty bytes are an error: a
    /// client without a context sends none rather than an empty one.
    pub fn decode(bytes: &[u8]) -> Result<VersionVector, ContextError> {
        match bytes.split_first() {
            None => Err(ContextError::Empty),
            Some((&CONTEXT_FORMAT, rest)) => {
                let mut context: VersionVector = rmp_serde::from_slice(rest)?;
                // A client may send anything: restore the sorted, distinct,
                // non-zero form the lookups rely on.
                context.entries.sort();
                context.entries.reverse();
                context
                    .entries
                    .dedup_by(|later, earlier| later.0 == earlier.0);
                context.entries.reverse();
                context.entries.retain(|(_, counter)| *counter > 0);
                Ok(context)
            }
            Some((&format, _)) => Err(ContextError::UnknownFormat(format)),
        }
    }
}
