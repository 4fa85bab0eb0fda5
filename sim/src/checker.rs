//! Checkers over a history (the simulator's and, later, the lab's):
//!
//! - **lost write**: every acknowledged write is in its row's final state,
//!   or a write that may have superseded it exists (one whose context
//!   covered it, or, on a blind row, any write that may have run at a
//!   coordinator holding it);
//! - **phantom**: every value read was written, to that row;
//! - **resurrection**: nothing an acknowledged write or delete superseded
//!   (what its context covered) is in the final state, nor returned by a
//!   read at R + W > N that starts after it was acknowledged;
//! - **stale read**: at R + W > N (levels that must overlap, across
//!   datacenters: [`crate::quorum`]), a read that starts after a write was
//!   acknowledged returns it, unless a write that may have superseded it
//!   started before the read ended;
//! - **monotonic reads**: a value a read returned is on as many replicas
//!   as its level asks (read repair blocks until it is), so a read that
//!   starts after it ended, at a level that must meet it, returns the value
//!   too, unless a write that may have superseded it began before that
//!   read ended (each read that went back is reported once, however many
//!   values it missed);
//! - **dot reuse**: no two values of a row were ever written under the
//!   same dot, and no value under two dots (a write applied twice).
//!
//! Convergence is checked by the run itself (every replica of every row
//! holds the same state after heal and repair).

use std::collections::BTreeMap;

use ringdb_proto::ConsistencyLevel;

use crate::history::{Event, History, Key, Op, Outcome, Seen};
use crate::quorum::Replication;

mod reads;

pub use reads::{ReadFreshness, freshness};

/// A broken promise found in a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which check.
    pub kind: &'static str,
    /// What, for people.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// What the checkers looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Acknowledged writes and deletes.
    pub acknowledged_writes: u64,
    /// Successful reads.
    pub reads: u64,
    /// Operations that failed or whose outcome is unknown.
    pub failed: u64,
}

/// One operation, invocation and completion together. Times are positions
/// in the history (events are recorded in the order they happened; many
/// share a millisecond).
#[derive(Clone, Debug)]
struct Operation {
    id: u64,
    op: Op,
    invoked: usize,
    invoked_ms: u64,
    /// The node that coordinated it.
    node: String,
    /// When it completed, and how (`None`: it never did).
    completed: Option<(usize, Outcome)>,
    completed_ms: u64,
}

impl Operation {
    fn acknowledged(&self) -> bool {
        matches!(self.completed, Some((_, Outcome::Written { .. })))
    }

    /// Whether it may have changed its row: acknowledged, or unknown.
    fn may_have_written(&self) -> bool {
        !matches!(self.op, Op::Get { .. })
            && !matches!(
                self.completed,
                Some((_, Outcome::Refused(_) | Outcome::Read { .. }))
            )
    }

    /// The latest it may have taken effect: its acknowledgement; a write
    /// whose outcome is unknown may take effect any time later (a request
    /// held in a paused node's buffers runs after its client gave up).
    fn ran_by(&self) -> usize {
        match &self.completed {
            Some((at, Outcome::Written { .. } | Outcome::Read { .. } | Outcome::Refused(_))) => *at,
            _ => usize::MAX,
        }
    }

    fn seen(&self) -> Option<&Seen> {
        match &self.op {
            Op::Put { seen, .. } | Op::Delete { seen, .. } => Some(seen),
            Op::Get { .. } => None,
        }
    }

    fn value(&self) -> Option<u64> {
        match self.op {
            Op::Put { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// The operations of `history` by id, the final states, and where nodes
/// were lost.
fn parse(history: &History) -> Parsed {
    let mut operations: BTreeMap<u64, Operation> = BTreeMap::new();
    let mut finals: BTreeMap<Key, (Vec<u64>, Vec<String>)> = BTreeMap::new();
    let mut lost_at = Vec::new();
    for (at, event) in history.events.iter().enumerate() {
        match event {
            Event::Invoke {
                at_ms,
                id,
                op,
                node,
                ..
            } => {
                operations.insert(
                    *id,
                    Operation {
                        id: *id,
                        op: op.clone(),
                        invoked: at,
                        invoked_ms: *at_ms,
                        node: node.clone(),
                        completed: None,
                        completed_ms: 0,
                    },
                );
            }
            Event::Complete { at_ms, id, outcome } => {
                if let Some(operation) = operations.get_mut(id) {
                    operation.completed = Some((at, outcome.clone()));
                    operation.completed_ms = *at_ms;
                }
            }
            Event::Final {
                key,
                values,
                writers,
            } => {
                finals.insert(*key, (values.clone(), writers.clone()));
            }
            Event::NodeLost { .. } => lost_at.push(at),
            Event::Fault { .. } => {}
        }
    }
    (operations, finals, lost_at)
}

type Parsed = (
    BTreeMap<u64, Operation>,
    BTreeMap<Key, (Vec<u64>, Vec<String>)>,
    Vec<usize>,
);

/// Checks `history` of a cluster with replication factor `replicas`, in
/// one datacenter.
pub fn check(history: &History, replicas: usize) -> (Vec<Violation>, Checked) {
    check_placed(history, &Replication::simple(replicas))
}

/// Checks `history` of a cluster replicated as `replication` (replicas per
/// datacenter, and where each node is).
pub fn check_placed(history: &History, replication: &Replication) -> (Vec<Violation>, Checked) {
    let (operations, finals, lost_at) = parse(history);
    let mut checker = Checker {
        operations: operations.into_values().collect(),
        finals,
        replication: replication.clone(),
        lost_at,
        violations: Vec::new(),
    };
    checker.phantoms_and_dots();
    checker.lost_writes();
    checker.resurrections();
    checker.resurrected_reads();
    checker.stale_reads();
    checker.monotonic_reads();
    let checked = checker.counts();
    (checker.violations, checked)
}

struct Checker {
    operations: Vec<Operation>,
    finals: BTreeMap<Key, (Vec<u64>, Vec<String>)>,
    replication: Replication,
    /// Where in the history a node died for good.
    lost_at: Vec<usize>,
    violations: Vec<Violation>,
}

impl Checker {
    fn violation(&mut self, kind: &'static str, detail: String) {
        self.violations.push(Violation { kind, detail });
    }

    fn counts(&self) -> Checked {
        let mut checked = Checked::default();
        for operation in &self.operations {
            match &operation.completed {
                Some((_, Outcome::Written { .. })) => checked.acknowledged_writes += 1,
                Some((_, Outcome::Read { .. })) => checked.reads += 1,
                _ => checked.failed += 1,
            }
        }
        checked
    }

    /// Every value read was written to its row; every dot names one value.
    fn phantoms_and_dots(&mut self) {
        let written: BTreeMap<u64, Key> = self
            .operations
            .iter()
            .filter_map(|o| Some((o.value()?, o.op.key())))
            .collect();
        let mut observed: Vec<(Key, Vec<u64>, Vec<String>, String)> = Vec::new();
        for operation in &self.operations {
            if let Some((
                _,
                Outcome::Read {
                    values, writers, ..
                },
            )) = &operation.completed
            {
                let what = format!("read #{}", operation.id);
                observed.push((operation.op.key(), values.clone(), writers.clone(), what));
            }
        }
        for (key, (values, writers)) in &self.finals {
            observed.push((*key, values.clone(), writers.clone(), "final state".into()));
        }
        // Counters are per row: a dot names one value of one row, and a
        // value (written once) is stored under one dot.
        let mut dots: BTreeMap<(Key, String), u64> = BTreeMap::new();
        let mut dot_of: BTreeMap<(Key, u64), String> = BTreeMap::new();
        for (key, values, writers, what) in observed {
            for (value, writer) in values.iter().zip(&writers) {
                match written.get(value) {
                    Some(row) if *row == key => {}
                    Some(row) => self.violation(
                        "phantom",
                        format!("{what} of {key} returned {value}, written to {row}"),
                    ),
                    None => self.violation(
                        "phantom",
                        format!("{what} of {key} returned {value}, never written"),
                    ),
                }
                match dot_of.insert((key, *value), writer.clone()) {
                    Some(other) if other != *writer => self.violation(
                        "written twice",
                        format!(
                            "{value} of {key} is under two dots, {other} and {writer} ({what})"
                        ),
                    ),
                    _ => {}
                }
                match dots.insert((key, writer.clone()), *value) {
                    Some(other) if other != *value => self.violation(
                        "dot reuse",
                        format!("dot {writer} wrote both {other} and {value} ({what} of {key})"),
                    ),
                    _ => {}
                }
            }
        }
    }

    /// Whether `by` may have superseded `value`, written by `write`.
    fn may_supersede(by: &Operation, write: &Operation, value: u64) -> bool {
        if by.id == write.id || by.op.key() != write.op.key() || !by.may_have_written() {
            return false;
        }
        match by.seen() {
            Some(Seen::Values(seen)) => seen.contains(&value),
            // Its coordinator may have held the value if it ran after
            // the value's write began.
            Some(Seen::Blind) => by.ran_by() > write.invoked,
            None => false,
        }
    }

    /// Whether `write` may have lived on one replica only, until it
    /// spread, when a node was lost for good: a write or delete one replica
    /// acknowledged (ONE, ANY) may have been lost along with it.
    fn maybe_lost_with_a_node(&self, write: &Operation) -> bool {
        let single = self.replication.fewest(write_level(&write.op), &write.node) < 2;
        single && self.lost_at.iter().any(|at| *at > write.invoked)
    }

    fn lost_writes(&mut self) {
        let mut lost = Vec::new();
        for write in self.operations.iter().filter(|o| o.acknowledged()) {
            let Some(value) = write.value() else { continue };
            let key = write.op.key();
            let present = self
                .finals
                .get(&key)
                .is_some_and(|(values, _)| values.contains(&value));
            let superseded = self
                .operations
                .iter()
                .any(|by| Checker::may_supersede(by, write, value));
            if !present && !superseded && !self.maybe_lost_with_a_node(write) {
                lost.push(format!(
                    "{value} written to {key} (#{}, acknowledged) is not in the final state, \
                     and no write superseded it",
                    write.id
                ));
            }
        }
        for detail in lost {
            self.violation("lost write", detail);
        }
    }

    fn resurrections(&mut self) {
        let mut back = Vec::new();
        for write in self.operations.iter().filter(|o| o.acknowledged()) {
            let Some(Seen::Values(seen)) = write.seen() else {
                continue;
            };
            let key = write.op.key();
            let Some((values, _)) = self.finals.get(&key) else {
                continue;
            };
            if self.maybe_lost_with_a_node(write) {
                continue;
            }
            for value in seen.iter().filter(|v| values.contains(v)) {
                let what = match write.op {
                    Op::Delete { .. } => "delete",
                    _ => "write",
                };
                back.push(format!(
                    "{value} of {key} is in the final state, but the acknowledged {what} #{} \
                     superseded it",
                    write.id
                ));
            }
        }
        for detail in back {
            self.violation("resurrection", detail);
        }
    }

    /// Strict reads that started after a strict write or delete was
    /// acknowledged and returned a value it superseded: it came back.
    fn resurrected_reads(&mut self) {
        let mut back = Vec::new();
        for read in &self.operations {
            let (Op::Get { .. }, Some((_, Outcome::Read { values, .. }))) =
                (&read.op, &read.completed)
            else {
                continue;
            };
            for write in self.operations.iter().filter(|o| o.acknowledged()) {
                let Some(Seen::Values(seen)) = write.seen() else {
                    continue;
                };
                if !self.strictly_after(read, write) || self.maybe_lost_with_a_node(write) {
                    continue;
                }
                for value in seen.iter().filter(|v| values.contains(v)) {
                    back.push(format!(
                        "read #{} of {key} at {r:?}+{w:?} (started {} ms) returned {value}, \
                         which #{} superseded, acknowledged at {} ms",
                        read.id,
                        read.invoked_ms,
                        write.id,
                        write.completed_ms,
                        key = read.op.key(),
                        r = read_level(&read.op),
                        w = write_level(&write.op),
                    ));
                }
            }
        }
        for detail in back {
            self.violation("resurrection", detail);
        }
    }

    /// Whether `read` must see what `write` did: the same row, levels
    /// that must overlap (R + W > N in one datacenter), and `write`
    /// acknowledged before `read` started.
    fn strictly_after(&self, read: &Operation, write: &Operation) -> bool {
        let Some((write_end, _)) = &write.completed else {
            return false;
        };
        write.op.key() == read.op.key()
            && *write_end < read.invoked
            && self.replication.overlap(
                read_level(&read.op),
                &read.node,
                write_level(&write.op),
                &write.node,
            )
    }

    fn stale_reads(&mut self) {
        let mut stale = Vec::new();
        for read in &self.operations {
            let (Op::Get { .. }, Some((read_end, Outcome::Read { values, .. }))) =
                (&read.op, &read.completed)
            else {
                continue;
            };
            for write in self.operations.iter().filter(|o| o.acknowledged()) {
                let Op::Put { value, key, .. } = &write.op else {
                    continue;
                };
                if !self.strictly_after(read, write) {
                    continue;
                }
                if values.contains(value) || self.maybe_lost_with_a_node(write) {
                    continue;
                }
                let superseded = self
                    .operations
                    .iter()
                    .any(|by| by.invoked < *read_end && Checker::may_supersede(by, write, *value));
                if !superseded {
                    stale.push(format!(
                        "read #{} of {key} at {r:?}+{w:?} (started {} ms) missed {value}, \
                         acknowledged by #{} at {} ms",
                        read.id,
                        read.invoked_ms,
                        write.id,
                        write.completed_ms,
                        r = read_level(&read.op),
                        w = write_level(&write.op),
                    ));
                }
            }
        }
        for detail in stale {
            self.violation("stale read", detail);
        }
    }
}

fn read_level(op: &Op) -> ConsistencyLevel {
    match op {
        Op::Get { consistency, .. }
        | Op::Put { consistency, .. }
        | Op::Delete { consistency, .. } => *consistency,
    }
}

fn write_level(op: &Op) -> ConsistencyLevel {
    read_level(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Key = Key {
        table: 0,
        key: 0,
        chain: true,
    };

    fn written() -> Outcome {
        Outcome::Written {
            receipt: String::new(),
        }
    }

    fn read(values: &[u64], writers: &[&str]) -> Outcome {
        Outcome::Read {
            values: values.to_vec(),
            writers: writers.iter().map(|w| w.to_string()).collect(),
            receipt: String::new(),
        }
    }

    /// A history of operations, each completing before the next starts.
    fn history(ops: Vec<(Op, Outcome)>, finals: &[(u64, &str)]) -> History {
        let mut events = Vec::new();
        for (id, (op, outcome)) in ops.into_iter().enumerate() {
            let id = id as u64;
            let node = "n1".into();
            events.push(Event::Invoke {
                at_ms: id,
                id,
                client: 0,
                node,
                op,
            });
            events.push(Event::Complete {
                at_ms: id,
                id,
                outcome,
            });
        }
        events.push(Event::Final {
            key: KEY,
            values: finals.iter().map(|(v, _)| *v).collect(),
            writers: finals.iter().map(|(_, w)| w.to_string()).collect(),
        });
        History { events }
    }

    fn put(value: u64, seen: &[u64], consistency: ConsistencyLevel) -> Op {
        Op::Put {
            key: KEY,
            value,
            consistency,
            seen: Seen::Values(seen.to_vec()),
        }
    }

    fn get(consistency: ConsistencyLevel) -> Op {
        Op::Get {
            key: KEY,
            consistency,
        }
    }

    fn delete(seen: &[u64], consistency: ConsistencyLevel) -> Op {
        Op::Delete {
            key: KEY,
            consistency,
            seen: Seen::Values(seen.to_vec()),
        }
    }

    fn kinds(history: &History) -> Vec<&'static str> {
        check(history, 3).0.iter().map(|v| v.kind).collect()
    }

    use ConsistencyLevel::{One, Quorum};

    #[test]
    fn a_clean_history_passes() {
        let clean = history(
            vec![
                (put(1, &[], Quorum), written()),
                (get(Quorum), read(&[1], &["a@1:1"])),
                (put(2, &[1], Quorum), written()),
            ],
            &[(2, "a@1:2")],
        );
        assert_eq!(kinds(&clean), Vec::<&str>::new());
    }

    #[test]
    fn each_broken_promise_is_found() {
        let lost = history(vec![(put(1, &[], Quorum), written())], &[]);
        assert_eq!(kinds(&lost), ["lost write"]);
        let phantom = history(vec![(get(One), read(&[9], &["a@1:1"]))], &[]);
        assert_eq!(kinds(&phantom), ["phantom"]);
        let back = history(
            vec![
                (put(1, &[], Quorum), written()),
                (put(2, &[1], Quorum), written()),
            ],
            &[(1, "a@1:1"), (2, "a@1:2")],
        );
        assert_eq!(kinds(&back), ["resurrection"]);
        let read_back = history(
            vec![
                (put(1, &[], Quorum), written()),
                (put(2, &[1], Quorum), written()),
                (get(Quorum), read(&[1, 2], &["a@1:1", "a@1:2"])),
            ],
            &[(2, "a@1:2")],
        );
        assert_eq!(kinds(&read_back), ["resurrection"]);
        let stale = history(
            vec![
                (put(1, &[], Quorum), written()),
                (get(Quorum), read(&[], &[])),
            ],
            &[(1, "a@1:1")],
        );
        assert_eq!(kinds(&stale), ["stale read"]);
        // Written at ONE: a QUORUM read need not see it, but once one did,
        // the next QUORUM read must.
        let went_back = history(
            vec![
                (put(1, &[], One), written()),
                (get(Quorum), read(&[1], &["a@1:1"])),
                (get(Quorum), read(&[], &[])),
                (get(One), read(&[], &[])),
            ],
            &[(1, "a@1:1")],
        );
        assert_eq!(kinds(&went_back), ["non-monotonic read"]);
        let reused = history(
            vec![(put(1, &[], One), written()), (put(2, &[], One), written())],
            &[(1, "a@1:1"), (2, "a@1:1")],
        );
        assert_eq!(kinds(&reused), ["dot reuse"]);
        let twice = history(
            vec![
                (put(1, &[], One), written()),
                (get(One), read(&[1], &["a@1:1"])),
            ],
            &[(1, "a@1:2")],
        );
        assert_eq!(kinds(&twice), ["written twice"]);
    }

    #[test]
    fn freshness_counts_stale_reads_at_every_level() {
        let weak = history(
            vec![
                (put(1, &[], One), written()),
                (get(One), read(&[], &[])),
                (get(One), read(&[1], &["a@1:1"])),
                (put(2, &[1], One), written()),
                (get(One), read(&[2], &["a@1:2"])),
            ],
            &[(2, "a@1:2")],
        );
        let stale: Vec<bool> = freshness(&weak).iter().map(|r| r.stale).collect();
        // The first read missed 1; the last missed 1 too, but 2 superseded it.
        assert_eq!(stale, [true, false, false]);
    }

    /// Written at ONE, returned by a QUORUM read: a later QUORUM read
    /// may miss it once a write or delete that superseded it has begun,
    /// not before.
    #[test]
    fn a_read_may_miss_a_value_superseded_since_an_earlier_read() {
        let deleted = |delete_first: bool| {
            let mut ops = vec![
                (put(1, &[], One), written()),
                (get(Quorum), read(&[1], &["a@1:1"])),
                (get(Quorum), read(&[], &[])),
            ];
            let at = if delete_first { 2 } else { 3 };
            ops.insert(at, (delete(&[1], One), written()));
            history(ops, &[])
        };
        assert_eq!(kinds(&deleted(true)), Vec::<&str>::new());
        assert_eq!(kinds(&deleted(false)), ["non-monotonic read"]);
        let overwritten = history(
            vec![
                (put(1, &[], One), written()),
                (get(Quorum), read(&[1], &["a@1:1"])),
                (put(2, &[1], One), written()),
                (get(Quorum), read(&[2], &["a@1:2"])),
            ],
            &[(2, "a@1:2")],
        );
        assert_eq!(kinds(&overwritten), Vec::<&str>::new());
    }

    #[test]
    fn reads_that_overlap_in_time_may_disagree() {
        let mut reads = history(
            vec![
                (put(1, &[], One), written()),
                (get(Quorum), read(&[1], &["a@1:1"])),
                (get(Quorum), read(&[], &[])),
            ],
            &[(1, "a@1:1")],
        );
        assert_eq!(kinds(&reads), ["non-monotonic read"]);
        // The second read now begins before the first ends.
        assert!(matches!(reads.events[3], Event::Complete { id: 1, .. }));
        assert!(matches!(reads.events[4], Event::Invoke { id: 2, .. }));
        reads.events.swap(3, 4);
        assert_eq!(kinds(&reads), Vec::<&str>::new());
    }

    #[test]
    fn reads_at_levels_that_need_not_meet_may_go_back() {
        let weak = history(
            vec![
                (put(1, &[], One), written()),
                (get(One), read(&[1], &["a@1:1"])),
                (get(One), read(&[], &[])),
            ],
            &[(1, "a@1:1")],
        );
        assert_eq!(kinds(&weak), Vec::<&str>::new());
    }

    #[test]
    fn a_read_that_went_back_is_reported_once() {
        // The last read misses 1, which two earlier reads returned, and
        // 2, which one did: one read went back.
        let back = history(
            vec![
                (put(1, &[], One), written()),
                (put(2, &[], One), written()),
                (get(Quorum), read(&[1], &["a@1:1"])),
                (get(Quorum), read(&[1, 2], &["a@1:1", "a@1:2"])),
                (get(Quorum), read(&[], &[])),
            ],
            &[(1, "a@1:1"), (2, "a@1:2")],
        );
        let (violations, _) = check(&back, 3);
        let details: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert_eq!(
            details,
            [
                "non-monotonic read: read #4 of t0/chain0 at Quorum (started 4 ms) missed 1, \
              which read #2 at Quorum returned, ending at 2 ms"
            ]
        );
    }

    #[test]
    fn a_stale_read_below_a_quorum_is_allowed() {
        let weak = history(
            vec![(put(1, &[], One), written()), (get(One), read(&[], &[]))],
            &[(1, "a@1:1")],
        );
        assert_eq!(kinds(&weak), Vec::<&str>::new());
    }

    #[test]
    fn a_write_at_one_may_be_lost_with_a_node_but_a_quorum_write_may_not() {
        let with_loss = |level| {
            let mut history = history(vec![(put(1, &[], level), written())], &[]);
            let at = history.events.len() - 1;
            history.events.insert(
                at,
                Event::NodeLost {
                    at_ms: 5,
                    node: "n3".into(),
                },
            );
            history
        };
        assert_eq!(kinds(&with_loss(One)), Vec::<&str>::new());
        assert_eq!(kinds(&with_loss(Quorum)), ["lost write"]);
        // Without a node lost, a write at ONE must survive too.
        let kept = history(vec![(put(1, &[], One), written())], &[]);
        assert_eq!(kinds(&kept), ["lost write"]);
    }
}
