//! Dotted version vector sets against their specification.
//!
//! The specification is the causal-history model of the DVV paper: a replica's
//! state is the set of *alive* dots and the set of *seen* dots. A write at
//! replica r with a read's context (that read's seen set) kills every alive
//! dot the context has seen and adds a new dot; a sync keeps a dot alive if
//! both sides have it alive or the other side never saw it. Random histories
//! of writes, reads and syncs drive both the model and `DvvSet`, which must
//! agree after every step.

use std::collections::BTreeSet;

use proptest::prelude::*;
use ringdb_node::causality::{ActorId, CausalContext, Dot, DvvSet, Floor, VersionVector};
use ringdb_ring::NodeId;

const REPLICAS: usize = 3;

fn actor(replica: usize) -> ActorId {
    ActorId {
        node: NodeId::new(format!("n{replica}")),
        epoch: 7,
    }
}

/// The model of one replica's state of one row.
#[derive(Clone, Debug, Default)]
struct Model {
    alive: BTreeSet<(usize, u64)>,
    seen: BTreeSet<(usize, u64)>,
}

impl Model {
    /// A write at `replica`, which once issued dots up to `floor` for the
    /// row and may have forgotten them since.
    fn write(
        &mut self,
        replica: usize,
        context: &BTreeSet<(usize, u64)>,
        floor: u64,
    ) -> (usize, u64) {
        let counter = self
            .seen
            .iter()
            .chain(context.iter())
            .filter(|(r, _)| *r == replica)
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(0)
            .max(floor)
            + 1;
        self.alive.retain(|dot| !context.contains(dot));
        self.seen.extend(context.iter().copied());
        self.alive.insert((replica, counter));
        self.seen.insert((replica, counter));
        (replica, counter)
    }

    fn sync(&self, other: &Model) -> Model {
        let alive = self
            .alive
            .iter()
            .filter(|d| other.alive.contains(d) || !other.seen.contains(d))
            .chain(other.alive.iter().filter(|d| !self.seen.contains(d)))
            .copied()
            .collect();
        Model {
            alive,
            seen: self.seen.union(&other.seen).copied().collect(),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Read at a replica; the read is remembered for later writes.
    Read(usize),
    /// Write at a replica, with the context of a remembered read (by index
    /// modulo the reads so far) or without one.
    Write { replica: usize, read: Option<usize> },
    /// Replica `to` merges replica `from`'s state.
    Sync { from: usize, to: usize },
    /// A replica deletes its state of the row (a purge, a cleanup),
    /// remembering only the highest dot it issued.
    Forget(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..REPLICAS).prop_map(Op::Read),
        (0..REPLICAS, proptest::option::of(0usize..100))
            .prop_map(|(replica, read)| Op::Write { replica, read }),
        (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Op::Sync { from, to }),
        (0..REPLICAS).prop_map(Op::Forget),
    ]
}

/// The alive dots of a DVV set, as the model names them. Values are the
/// (replica, counter) that wrote them, so they must match their dots too.
fn alive(set: &DvvSet<(usize, u64)>) -> BTreeSet<(usize, u64)> {
    set.siblings()
        .map(|(dot, value)| {
            assert_eq!(
                dot,
                Dot {
                    actor: actor(value.0),
                    counter: value.1
                },
                "value under the wrong dot"
            );
            *value
        })
        .collect()
}

/// A remembered read: the context the client got, and in the model's terms
/// what the replica had seen and the values it returned.
#[derive(Default)]
struct Read {
    context: VersionVector,
    seen: BTreeSet<(usize, u64)>,
    values: BTreeSet<(usize, u64)>,
}

/// Runs a history; returns every state that occurred, for the algebraic laws.
fn run(ops: &[Op]) -> Result<Vec<DvvSet<(usize, u64)>>, TestCaseError> {
    let mut sets = vec![DvvSet::new(); REPLICAS];
    let mut models = vec![Model::default(); REPLICAS];
    let mut reads: Vec<Read> = Vec::new();
    let mut states = Vec::new();
    // Per replica, the highest counter it issued; and every dot issued.
    let mut floors = [0u64; REPLICAS];
    let mut issued = BTreeSet::new();
    for op in ops {
        match *op {
            Op::Read(r) => {
                // The context goes through its client encoding, as it would.
                let context =
                    CausalContext::decode(&CausalContext::encode(&sets[r].context())).unwrap();
                reads.push(Read {
                    context,
                    seen: models[r].seen.clone(),
                    values: models[r].alive.clone(),
                });
            }
            Op::Write { replica, read } => {
                let read = read
                    .filter(|_| !reads.is_empty())
                    .map(|i| &reads[i % reads.len()]);
                let empty = Read::default();
                let Read {
                    context,
                    seen,
                    values: read_values,
                } = read.unwrap_or(&empty);
                let before = models[replica].alive.clone();
                let dot = models[replica].write(replica, seen, floors[replica]);
                let (set, issued_dot) = sets[replica]
                    .write(
                        context,
                        &actor(replica),
                        Floor {
                            issued: floors[replica],
                            superseded: 0,
                        },
                        dot,
                    )
                    .unwrap();
                sets[replica] = set;
                prop_assert_eq!(issued_dot.counter, dot.1);
                prop_assert!(issued.insert(dot), "{:?} issued twice", dot);
                floors[replica] = dot.1;
                // The write supersedes every sibling it read, and keeps every
                // sibling present at the replica that its read had not seen.
                let after = alive(&sets[replica]);
                prop_assert!(after.contains(&dot));
                prop_assert!(read_values.iter().all(|v| !after.contains(v)));
                prop_assert!(
                    before
                        .iter()
                        .filter(|d| !seen.contains(d))
                        .all(|d| after.contains(d))
                );
            }
            Op::Sync { from, to } => {
                models[to] = models[to].sync(&models[from]);
                sets[to] = sets[to].sync(&sets[from]);
            }
            Op::Forget(replica) => {
                models[replica] = Model::default();
                sets[replica] = DvvSet::new();
            }
        }
        for r in 0..REPLICAS {
            prop_assert_eq!(
                alive(&sets[r]),
                models[r].alive.clone(),
                "replica {} after {:?}",
                r,
                op
            );
            let context = sets[r].context();
            for &(replica, counter) in &models[r].seen {
                let dot = Dot {
                    actor: actor(replica),
                    counter,
                };
                prop_assert!(context.contains(&dot), "replica {} forgot {:?}", r, dot);
            }
        }
        states.extend(sets.iter().cloned());
    }
    Ok(states)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn dvv_sets_agree_with_the_causal_history_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }

    #[test]
    fn sync_is_commutative_associative_and_idempotent(
        ops in proptest::collection::vec(op(), 1..30),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 3),
    ) {
        let states = run(&ops)?;
        let [a, b, c] = [0, 1, 2].map(|i| picks[i].get(&states));
        prop_assert_eq!(a.sync(b), b.sync(a));
        prop_assert_eq!(a.sync(&b.sync(c)), a.sync(b).sync(c));
        prop_assert_eq!(a.sync(a), a.clone());
        // Syncing data already held never grows the sibling set.
        let merged = a.sync(b);
        prop_assert_eq!(merged.sync(b).len(), merged.len());
        prop_assert!(merged.descends(a) && merged.descends(b));
    }

    #[test]
    fn stored_sets_round_trip_through_messagepack(ops in proptest::collection::vec(op(), 1..30)) {
        for state in run(&ops)? {
            let bytes = rmp_serde::to_vec_named(&state).unwrap();
            let back: DvvSet<(usize, u64)> = rmp_serde::from_slice(&bytes).unwrap();
            prop_assert!(back.check().is_ok());
            prop_assert_eq!(back, state);
        }
    }

    #[test]
    fn contexts_from_clients_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = CausalContext::decode(&bytes);
    }
}

#[test]
fn two_writes_without_context_at_different_replicas_both_survive() {
    let empty = VersionVector::new();
    let a = DvvSet::new().update(&empty, &actor(0), "from a");
    let b = DvvSet::new().update(&empty, &actor(1), "from b");
    let merged = a.sync(&b);
    let mut values: Vec<_> = merged.values().copied().collect();
    values.sort();
    assert_eq!(values, ["from a", "from b"]);
}

#[test]
fn a_write_without_context_supersedes_what_its_coordinator_holds() {
    let empty = VersionVector::new();
    let first = DvvSet::new().update(&empty, &actor(0), "first");
    let second = first.update(&empty, &actor(0), "second");
    // Without a context nothing is superseded: both are siblings.
    assert_eq!(second.len(), 2);
    // With the context of a read, the read value is superseded.
    let third = second.update(&second.context(), &actor(0), "third");
    assert_eq!(third.values().collect::<Vec<_>>(), [&"third"]);
}

#[test]
fn a_tombstone_supersedes_what_it_saw_and_a_later_write_supersedes_it() {
    let empty = VersionVector::new();
    // None is a tombstone, Some a value.
    let written = DvvSet::new().update(&empty, &actor(0), Some("v1"));
    let concurrent = DvvSet::new().update(&empty, &actor(1), Some("v2"));
    let deleted = written.update(&written.context(), &actor(0), None);
    assert_eq!(deleted.values().collect::<Vec<_>>(), [&None]);
    // The delete did not see v2: after sync both the tombstone and v2 remain.
    let merged = deleted.sync(&concurrent);
    assert_eq!(merged.len(), 2);
    // A write that read the merged state supersedes both.
    let rewritten = merged.update(&merged.context(), &actor(2), Some("v3"));
    assert_eq!(rewritten.values().collect::<Vec<_>>(), [&Some("v3")]);
    // And the old replica state cannot bring the deleted value back.
    assert_eq!(
        rewritten.sync(&written).values().collect::<Vec<_>>(),
        [&Some("v3")]
    );
}

#[test]
fn a_new_epoch_never_reuses_dots_of_a_lost_data_directory() {
    // kv679: node n0 writes, replicates, loses its disk, and writes again.
    let empty = VersionVector::new();
    let old_life = ActorId {
        node: NodeId::new("n0"),
        epoch: 1,
    };
    let new_life = ActorId {
        node: NodeId::new("n0"),
        epoch: 2,
    };
    let peer = DvvSet::new().update(&empty, &old_life, "before the loss");
    let after_loss = DvvSet::new().update(&empty, &new_life, "after the loss");
    // With a reused actor id the peer would take the new write's dot as
    // already seen and drop it; with a new epoch it is a new dot.
    let merged = peer.sync(&after_loss);
    assert!(merged.values().any(|v| *v == "after the loss"));
}

#[test]
fn unknown_context_formats_are_refused() {
    assert!(CausalContext::decode(&[]).is_err());
    let err = CausalContext::decode(&[9, 0x90]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "causal context has format 9; this node reads formats 1 and 2"
    );
}

/// A set of dots over three actors and counters up to 12, as a vector built
/// one dot at a time (so its clouds and counters are the normaliser's).
fn dots() -> impl Strategy<Value = (BTreeSet<(usize, u64)>, VersionVector)> {
    proptest::collection::btree_set((0..REPLICAS, 1u64..12), 0..20).prop_map(|set| {
        let vector = set.iter().fold(VersionVector::new(), |v, &(r, c)| {
            v.with(Dot {
                actor: actor(r),
                counter: c,
            })
        });
        (set, vector)
    })
}

fn has(vector: &VersionVector, (r, c): (usize, u64)) -> bool {
    vector.contains(&Dot {
        actor: actor(r),
        counter: c,
    })
}

proptest! {
    /// A vector holds exactly the dots it was built from; union and
    /// intersection hold exactly the dots of either and of both; and the
    /// encoding a client gets back round-trips.
    #[test]
    fn version_vectors_are_exact_sets_of_dots((a_set, a) in dots(), (b_set, b) in dots()) {
        let (union, both) = (a.merge(&b), a.intersection(&b));
        for r in 0..REPLICAS {
            for c in 1..14 {
                let dot = (r, c);
                prop_assert_eq!(has(&a, dot), a_set.contains(&dot));
                prop_assert_eq!(has(&union, dot), a_set.contains(&dot) || b_set.contains(&dot));
                prop_assert_eq!(has(&both, dot), a_set.contains(&dot) && b_set.contains(&dot));
            }
        }
        prop_assert_eq!(a.dominates(&b), b_set.is_subset(&a_set));
        prop_assert_eq!(CausalContext::decode(&CausalContext::encode(&a)).unwrap(), a);
    }
}

/// A context claiming dots the row never had is clamped to the row's
/// history: a write with it supersedes what the client really read, keeps
/// the rest, and its history names no invented actor.
#[test]
fn a_clamped_hostile_context_supersedes_only_real_dots() {
    let empty = VersionVector::new();
    let row = DvvSet::new()
        .update(&empty, &actor(0), "read")
        .sync(&DvvSet::new().update(&empty, &actor(1), "unseen"));
    let read = DvvSet::new().update(&empty, &actor(0), "read").context();
    let invented = ActorId {
        node: NodeId::new("nobody"),
        epoch: 1,
    };
    let hostile = read
        .with(Dot {
            actor: invented.clone(),
            counter: u64::MAX,
        })
        .with(Dot {
            actor: actor(0),
            counter: u64::MAX,
        });
    let clamped = hostile.intersection(&row.context());
    assert_eq!(clamped, read);
    let (written, dot) = row
        .write(&clamped, &actor(0), Floor::default(), "new")
        .unwrap();
    assert_eq!(dot.counter, 2);
    let mut values: Vec<_> = written.values().copied().collect();
    values.sort();
    assert_eq!(values, ["new", "unseen"]);
    assert_eq!(written.context().max_counter(&invented), 0);
}

#[test]
fn a_counter_at_its_limit_is_an_error_not_a_wrap() {
    let top = DvvSet::new()
        .update(&VersionVector::new(), &actor(0), "v")
        .sync(&DvvSet::new());
    let context = VersionVector::new().with(Dot {
        actor: actor(0),
        counter: u64::MAX,
    });
    assert!(
        top.write(&context, &actor(0), Floor::default(), "next")
            .is_err()
    );
    assert!(
        top.write(
            &VersionVector::new(),
            &actor(0),
            Floor {
                issued: u64::MAX,
                superseded: u64::MAX,
            },
            "next"
        )
        .is_err()
    );
}

#[test]
fn contexts_over_the_limits_are_refused_before_use() {
    let many = (0..=ringdb_node::causality::MAX_CONTEXT_ACTORS as u64).fold(
        VersionVector::new(),
        |v, i| {
            v.with(Dot {
                actor: ActorId {
                    node: NodeId::new(format!("a{i}")),
                    epoch: i,
                },
                counter: 1,
            })
        },
    );
    let err = CausalContext::decode(&CausalContext::encode(&many)).unwrap_err();
    assert!(err.to_string().contains("1025 actors"), "{err}");
    let huge = vec![2u8; ringdb_node::causality::MAX_CONTEXT_BYTES + 1];
    assert!(CausalContext::decode(&huge).is_err());
}

/// Rows stored in the first format (dots implied by position) still read.
#[test]
fn the_first_row_format_is_upgraded_on_read() {
    #[derive(serde::Serialize)]
    struct EntryV1 {
        actor: ActorId,
        counter: u64,
        values: Vec<&'static str>,
    }
    #[derive(serde::Serialize)]
    struct SetV1 {
        entries: Vec<EntryV1>,
    }
    let old = SetV1 {
        entries: vec![EntryV1 {
            actor: actor(0),
            counter: 5,
            values: vec!["five", "four"],
        }],
    };
    let bytes = rmp_serde::to_vec_named(&old).unwrap();
    let v1: ringdb_node::causality::format1::DvvSetV1<String> =
        rmp_serde::from_slice(&bytes).unwrap();
    let set = v1.upgrade().unwrap();
    let siblings: Vec<(u64, String)> = set
        .siblings()
        .map(|(d, v)| (d.counter, v.clone()))
        .collect();
    assert_eq!(siblings, [(5, "five".to_string()), (4, "four".to_string())]);
    assert!(set.check().is_ok());
}
