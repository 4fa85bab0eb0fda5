//! Causality: dotted version vector sets (DVV sets).
//!
//! Every write of a row is an *event* at the replica that coordinates it,
//! named by a *dot*: (actor, counter). A row's state at a replica is a set of
//! sibling values, each with its dot, plus its *history*: every dot the
//! replica has seen. Following Preguiça, Baquero, Almeida, Fonte and
//! Gonçalves, "Dotted Version Vectors: Efficient Causality Tracking for
//! Distributed Key-Value Stores" (DAIS 2012), and Riak's `dvvset`, both live
//! in one structure: per actor, the counter up to which every dot was seen,
//! the values still alive with their dots, and (rarely) dots seen beyond a
//! gap.
//!
//! - [`DvvSet::write`]: a write at `actor` with the client's context (the
//!   [`VersionVector`] of what it read). Values the context has seen are
//!   superseded; everything else stays as a concurrent sibling.
//! - [`DvvSet::sync`]: the merge of two replicas' states; a value survives if
//!   both have it or if the other has not seen its dot.
//! - [`DvvSet::context`]: the history handed to the client with a read;
//!   [`CausalContext`] is its opaque, versioned encoding.
//!
//! A delete is a write of a tombstone value: it supersedes what it saw, and a
//! later write supersedes it like any other sibling.
//!
//! ## Never the same dot twice
//!
//! A dot names one write. If an actor issued the same dot for a row twice,
//! the replicas that saw the first would take the second for it and drop it
//! (Riak's kv679 bug), while acknowledging it. An actor issues the dot after
//! the highest one of it that the row's history holds, so it must never
//! forget one it issued:
//!
//! - **Across restarts**, it cannot be sure: a WAL tail lost to a machine
//!   crash (`periodic` sync), a data directory restored from a backup or
//!   replaced, all roll histories back. So an actor is a node *in one life
//!   of its process* ([`ActorId::epoch`] is drawn at random each time the
//!   node opens its storage): an old life's dots are never continued.
//! - **Within a life**, a node forgets a row's history only when it deletes
//!   the row: a purged tombstone, a range cleaned up after it moved away.
//!   Storage then keeps the highest counter this life issued for the row,
//!   and the next dot comes after it ([`DvvSet::write`]'s [`Floor`]). After
//!   a cleanup, that dot may sit above a gap in the row's history as this
//!   node now knows it: it goes into the history's cloud, not its counter,
//!   so the gap's dots (which another replica still holds, maybe alive) are
//!   not claimed as seen; the gap fills when this node next merges the row
//!   from one of them. After a purge, nobody holds the gap's dots any more,
//!   so it would never fill and every later dot would join the cloud; but a
//!   purge happens only once every replica holds the row superseded, so the
//!   next write counts the purged dots as seen and follows them.
//!
//! The counter grows only with the writes of one row by one life of one
//! node, so it cannot overflow in practice; [`DvvSet::write`] still says so
//! rather than wrap.
//!
//! ## Contexts from clients
//!
//! A context comes from a client and is only its word. A context naming dots
//! that were never issued, or issued for other rows, would make a write
//! supersede (and replicas drop) writes its client never saw. So the node
//! clamps a context to the row's real history before using it
//! ([`VersionVector::intersection`]): see the write path in the coordinator.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

mod context;
mod vector;

pub use context::{
    CausalContext, ContextError, MAX_CONTEXT_ACTORS, MAX_CONTEXT_BYTES, MAX_CONTEXT_EXTRA_DOTS,
};
pub use vector::{ActorId, Dot, VersionVector};

/// One actor's part of a [`DvvSet`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry<V> {
    actor: ActorId,
    /// Every event of this actor up to this counter has been seen.
    counter: u64,
    /// Events seen beyond `counter`, with a gap before them; ascending,
    /// each above `counter + 1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    extra: Vec<u64>,
    /// Alive values with their counters, newest first; each counter seen.
    values: Vec<(u64, V)>,
}

impl<V> Entry<V> {
    fn seen(&self, counter: u64) -> bool {
        counter <= self.counter || self.extra.binary_search(&counter).is_ok()
    }

    fn alive(&self, counter: u64) -> bool {
        self.values.iter().any(|(c, _)| *c == counter)
    }

    fn max_seen(&self) -> u64 {
        self.extra.last().copied().unwrap_or(0).max(self.counter)
    }

    /// Adds `seen` to the history: the counter and the cloud, folded.
    fn see(&mut self, counter: u64, extra: impl IntoIterator<Item = u64>) {
        self.counter = self.counter.max(counter);
        self.extra.extend(extra);
        self.extra.sort_unstable();
        self.extra.dedup();
        let mut kept = Vec::with_capacity(self.extra.len());
        for c in std::mem::take(&mut self.extra) {
            if self.counter.checked_add(1) == Some(c) {
                self.counter = c;
            } else if c > self.counter {
                kept.push(c);
            }
        }
        self.extra = kept;
    }
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

/// What one actor issued for a row that a replica has since deleted (a
/// purged tombstone, a range cleaned up): kept so that the actor never
/// issues those dots again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Floor {
    /// The highest counter issued: the next dot comes after it.
    pub issued: u64,
    /// Up to here, every dot of the actor is known superseded on every
    /// replica (the row's tombstone was purged once every replica held it),
    /// so the next write may count them as seen and its dot follows them
    /// without a gap. At most `issued`; 0 after a cleanup, whose deleted
    /// copy other replicas may still hold alive.
    pub superseded: u64,
}

/// An actor's counter would pass `u64::MAX`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the event counter of {actor:?} is exhausted")]
pub struct CounterExhausted {
    /// The actor.
    pub actor: ActorId,
}

impl<V: Clone> DvvSet<V> {
    /// The state of a row never written.
    pub fn new() -> DvvSet<V> {
        DvvSet::default()
    }

    /// The state after a write of `value`, coordinated by `actor`, by a client
    /// that had read `context`: values the context has seen are superseded,
    /// the rest stay as siblings, and the new value gets the dot after every
    /// event of `actor` known here, in the context, or up to `floor` (what
    /// the actor issued for this row and may have forgotten since; the
    /// dots it knows superseded everywhere are counted as seen). Returns
    /// the new state and the new value's dot.
    pub fn write(
        &self,
        context: &VersionVector,
        actor: &ActorId,
        floor: Floor,
        value: V,
    ) -> Result<(DvvSet<V>, Dot), CounterExhausted> {
        let mut entries = self.supersede(context).entries;
        let at = match entries.binary_search_by(|e| e.actor.cmp(actor)) {
            Ok(i) => i,
            Err(i) => {
                entries.insert(
                    i,
                    Entry {
                        actor: actor.clone(),
                        counter: 0,
                        extra: Vec::new(),
                        values: Vec::new(),
                    },
                );
                i
            }
        };
        let entry = &mut entries[at];
        entry.see(floor.superseded.min(floor.issued), []);
        let counter = entry
            .max_seen()
            .max(floor.issued)
            .checked_add(1)
            .ok_or_else(|| CounterExhausted {
                actor: actor.clone(),
            })?;
        entry.see(0, [counter]);
        entry.values.insert(0, (counter, value));
        let dot = Dot {
            actor: actor.clone(),
            counter,
        };
        Ok((DvvSet { entries }, dot))
    }

    /// [`DvvSet::write`] with no floor, for tests and examples.
    ///
    /// # Panics
    ///
    /// If `actor` has issued `u64::MAX` events for the row (584 years at a
    /// billion writes a second); the node calls [`DvvSet::write`].
    pub fn update(&self, context: &VersionVector, actor: &ActorId, value: V) -> DvvSet<V> {
        self.write(context, actor, Floor::default(), value)
            .expect("an event counter below u64::MAX")
            .0
    }

    /// This state with every value `context` has seen removed, and the
    /// context added to the history.
    fn supersede(&self, context: &VersionVector) -> DvvSet<V> {
        // A context is a state with no values: syncing with it discards
        // exactly the values it has seen and keeps the rest.
        let mut seen: Vec<Entry<V>> = context
            .iter()
            .map(|(actor, counter)| Entry {
                actor: actor.clone(),
                counter,
                extra: Vec::new(),
                values: Vec::new(),
            })
            .collect();
        for dot in context.extra() {
            match seen.binary_search_by(|e| e.actor.cmp(&dot.actor)) {
                Ok(i) => seen[i].extra.push(dot.counter),
                Err(i) => seen.insert(
                    i,
                    Entry {
                        actor: dot.actor.clone(),
                        counter: 0,
                        extra: vec![dot.counter],
                        values: Vec::new(),
                    },
                ),
            }
        }
        self.sync(&DvvSet { entries: seen })
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

    /// The history of this state: every event it has seen.
    pub fn context(&self) -> VersionVector {
        let entries = self
            .entries
            .iter()
            .map(|e| (e.actor.clone(), e.counter))
            .collect();
        let extra = self
            .entries
            .iter()
            .flat_map(|e| {
                e.extra.iter().map(|&counter| Dot {
                    actor: e.actor.clone(),
                    counter,
                })
            })
            .collect();
        VersionVector::from_parts(entries, extra)
    }

    /// The alive values (siblings), each with its dot, in actor order and
    /// newest first within an actor.
    pub fn siblings(&self) -> impl Iterator<Item = (Dot, &V)> {
        self.entries.iter().flat_map(|e| {
            e.values.iter().map(move |(counter, v)| {
                (
                    Dot {
                        actor: e.actor.clone(),
                        counter: *counter,
                    },
                    v,
                )
            })
        })
    }

    /// The alive values.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries
            .iter()
            .flat_map(|e| e.values.iter().map(|(_, v)| v))
    }

    /// The number of alive values.
    pub fn len(&self) -> usize {
        self.entries.iter().map(|e| e.values.len()).sum()
    }

    /// Whether no value is alive (a row never written, or purged).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the invariants of a set that came off the disk or the network:
    /// actors sorted and distinct, each with a history; cloud dots ascending
    /// and beyond the counter; values newest first, each of a seen dot.
    pub fn check(&self) -> Result<(), InvalidDvvSet> {
        for pair in self.entries.windows(2) {
            if pair[0].actor >= pair[1].actor {
                return Err(InvalidDvvSet::Unsorted);
            }
        }
        for entry in &self.entries {
            let cloud_ok = entry.extra.windows(2).all(|w| w[0] < w[1])
                && entry.extra.first().is_none_or(|&first| {
                    entry
                        .counter
                        .checked_add(1)
                        .is_some_and(|next| first > next)
                });
            if !cloud_ok || (entry.counter == 0 && entry.extra.is_empty()) {
                return Err(InvalidDvvSet::BadHistory);
            }
            let values_ok = entry.values.windows(2).all(|w| w[0].0 > w[1].0)
                && entry.values.iter().all(|(c, _)| *c > 0 && entry.seen(*c));
            if !values_ok {
                return Err(InvalidDvvSet::UnseenValue);
            }
        }
        Ok(())
    }

    /// Whether this state has seen everything `other` has and kept no value
    /// `other` superseded: syncing `other` into it changes nothing.
    pub fn descends(&self, other: &DvvSet<V>) -> bool
    where
        V: PartialEq,
    {
        &self.sync(other) == self
    }

    /// The highest counter up to which every event of an actor of `epoch`
    /// is in the history, without a gap (0 if none).
    pub fn contiguous_counter_of_epoch(&self, epoch: u64) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.actor.epoch == epoch)
            .map(|e| e.counter)
            .max()
            .unwrap_or(0)
    }

    /// The highest counter issued by each actor whose epoch is `epoch`, as
    /// this state knows it (what storage keeps of its own life when it
    /// deletes a row).
    pub fn max_counter_of_epoch(&self, epoch: u64) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.actor.epoch == epoch)
            .map(Entry::max_seen)
            .max()
            .unwrap_or(0)
    }
}

/// Merges one actor's entries from two states: the union of their
/// histories; a value survives if both have it alive, or if the other side
/// never saw its dot.
fn sync_entry<V: Clone>(a: &Entry<V>, b: &Entry<V>) -> Entry<V> {
    let mut values: Vec<(u64, V)> = a
        .values
        .iter()
        .filter(|(c, _)| b.alive(*c) || !b.seen(*c))
        .chain(b.values.iter().filter(|(c, _)| !a.alive(*c) && !a.seen(*c)))
        .cloned()
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.0));
    let mut merged = Entry {
        actor: a.actor.clone(),
        counter: a.counter,
        extra: a.extra.clone(),
        values,
    };
    merged.see(b.counter, b.extra.iter().copied());
    merged
}

/// A sibling set whose encoding decoded but breaks an invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDvvSet {
    /// Actors are not in strictly increasing order.
    #[error("actors are not sorted and distinct")]
    Unsorted,
    /// An actor's history is empty, or its cloud is out of order.
    #[error("an actor's history is empty or malformed")]
    BadHistory,
    /// A value's dot is out of order or not in the history.
    #[error("a value's dot is out of order or not in the history")]
    UnseenValue,
    /// An actor has more alive values than events (first format).
    #[error("an actor has {values} values but only {counter} events")]
    TooManyValues {
        /// Alive values.
        values: usize,
        /// Events.
        counter: u64,
    },
}

/// The first format of a stored sibling set, read for sets written before
/// the second: each actor's alive values were the newest of its events, so
/// a value's dot was implied by its position.
pub mod format1 {
    use serde::Deserialize;

    use super::{ActorId, DvvSet, Entry, InvalidDvvSet};

    #[derive(Deserialize)]
    struct EntryV1<V> {
        actor: ActorId,
        counter: u64,
        /// `values[i]` has dot (actor, counter − i).
        values: Vec<V>,
    }

    /// A sibling set in the first format.
    #[derive(Deserialize)]
    pub struct DvvSetV1<V> {
        entries: Vec<EntryV1<V>>,
    }

    impl<V> DvvSetV1<V> {
        /// The same set in the current format.
        pub fn upgrade(self) -> Result<DvvSet<V>, InvalidDvvSet> {
            let entries = self
                .entries
                .into_iter()
                .map(|e| {
                    if e.values.len() as u64 > e.counter {
                        return Err(InvalidDvvSet::TooManyValues {
                            values: e.values.len(),
                            counter: e.counter,
                        });
                    }
                    let counter = e.counter;
                    Ok(Entry {
                        actor: e.actor,
                        counter,
                        extra: Vec::new(),
                        values: e
                            .values
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (counter - i as u64, v))
                            .collect(),
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(DvvSet { entries })
        }
    }
}
