//! The checks that follow each row's reads through time: how fresh each
//! read was ([`freshness`], at every level, for the lab's figures), and
//! whether a read went back on what an earlier read returned
//! (`monotonic_reads`, at levels that must meet).
//!
//! Both ask, of a value a read returned or missed, when the first write
//! that may have superseded it began; `rows` works that out once per
//! row for both.
//!
//! Monotonic reads compare pairs of reads, which on a busy row is many.
//! Rather than every pair, one sweep takes the later reads in the order
//! they began, and before each adds the earlier reads that ended before
//! it began (sorted by when they ended) to what they returned, grouped by
//! where they ran (level and coordinator, all [`Replication::overlap`]
//! looks at, so it is asked once per pair of places) and keyed by when
//! each value was first superseded, so a read looks only at the values
//! that no write had begun to supersede before it ended.
//!
//! [`Replication::overlap`]: crate::quorum::Replication::overlap

use std::collections::{BTreeMap, HashMap};

use ringdb_proto::ConsistencyLevel;

use super::{Checker, Operation, parse, read_level};
use crate::history::{History, Key, Op, Outcome};

/// A row's operations, and when each value written to it was superseded.
struct Row<'a> {
    /// Its operations, in id order.
    operations: Vec<&'a Operation>,
    /// Each write of a value (acknowledged or not), in id order: the
    /// write, its value, and where in the history the first write that
    /// may have superseded it began (`usize::MAX`: none may have).
    writes: Vec<(&'a Operation, u64, usize)>,
}

/// `operations` (in id order) by row, in row order.
fn rows<'a>(operations: impl IntoIterator<Item = &'a Operation>) -> Vec<Row<'a>> {
    let mut by_key: BTreeMap<Key, Vec<&'a Operation>> = BTreeMap::new();
    for operation in operations {
        by_key
            .entry(operation.op.key())
            .or_default()
            .push(operation);
    }
    by_key
        .into_values()
        .map(|operations| {
            let writes: Vec<(&'a Operation, u64, usize)> = operations
                .iter()
                .filter_map(|write| {
                    let value = write.value()?;
                    Some((*write, value, first_superseder(&operations, write, value)))
                })
                .collect();
            Row { operations, writes }
        })
        .collect()
}

/// Where the first of `operations` that may have superseded `value`,
/// written by `write`, began; `usize::MAX` when none may have.
fn first_superseder(operations: &[&Operation], write: &Operation, value: u64) -> usize {
    operations
        .iter()
        .filter(|by| Checker::may_supersede(by, write, value))
        .map(|by| by.invoked)
        .min()
        .unwrap_or(usize::MAX)
}

/// A successful read, and whether it was stale: whether it missed a
/// value whose write was acknowledged before the read began, that no write
/// which may have superseded it had begun before the read ended. Unlike
/// the stale-read check, every level counts (a stale read at ONE is what
/// ONE allows, and what the lab measures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadFreshness {
    /// The read's id.
    pub id: u64,
    /// Its level.
    pub level: ConsistencyLevel,
    /// When it began and ended, in milliseconds since the run began.
    pub invoked_ms: u64,
    /// When it ended.
    pub completed_ms: u64,
    /// Whether it was stale.
    pub stale: bool,
}

/// Every successful read of `history`, stale or not.
pub fn freshness(history: &History) -> Vec<ReadFreshness> {
    let (operations, _, _) = parse(history);
    let mut reads = Vec::new();
    for row in rows(operations.values()) {
        // Each acknowledged write: its value, when it was acknowledged,
        // and when the first write that may have superseded it began.
        let writes: Vec<(u64, usize, usize)> = row
            .writes
            .iter()
            .filter_map(|(write, value, superseded)| match &write.completed {
                Some((end, Outcome::Written { .. })) => Some((*value, *end, *superseded)),
                _ => None,
            })
            .collect();
        for read in &row.operations {
            let (Op::Get { consistency, .. }, Some((read_end, Outcome::Read { values, .. }))) =
                (&read.op, &read.completed)
            else {
                continue;
            };
            let stale = writes.iter().any(|(value, end, superseded)| {
                *end < read.invoked && !values.contains(value) && *superseded >= *read_end
            });
            reads.push(ReadFreshness {
                id: read.id,
                level: *consistency,
                invoked_ms: read.invoked_ms,
                completed_ms: read.completed_ms,
                stale,
            });
        }
    }
    reads.sort_by_key(|r| r.id);
    reads
}

/// Where a read ran, which is all that decides which reads must meet:
/// its level and its coordinator.
type Place<'a> = (ConsistencyLevel, &'a str);

/// Whether a read at the second place must meet one at the first (an
/// earlier read's place, then a later one's), as worked out so far in
/// one check.
type Overlaps<'a> = HashMap<(Place<'a>, Place<'a>), bool>;

/// A successful read: the operation, where in the history it ended, and
/// the values it returned.
struct Read<'a> {
    operation: &'a Operation,
    end: usize,
    values: &'a [u64],
}

impl<'a> Read<'a> {
    /// `operation`, if it is a successful read.
    fn of(operation: &'a Operation) -> Option<Read<'a>> {
        match (&operation.op, &operation.completed) {
            (Op::Get { .. }, Some((end, Outcome::Read { values, .. }))) => Some(Read {
                operation,
                end: *end,
                values: values.as_slice(),
            }),
            _ => None,
        }
    }

    fn place(&self) -> Place<'a> {
        let operation = self.operation;
        (read_level(&operation.op), operation.node.as_str())
    }
}

/// What the earlier reads of a row returned, by the place they ran at:
/// each value keyed by when the first write that may have superseded it
/// began (then by the value), with when the first read there that
/// returned it ended, and that read.
#[derive(Default)]
struct Returned<'a> {
    places: Vec<(Place<'a>, Values<'a>)>,
}

/// What reads at one place returned: (when first superseded, value) to
/// (when the first read that returned it ended, that read).
type Values<'a> = BTreeMap<(usize, u64), (usize, &'a Operation)>;

impl<'a> Returned<'a> {
    /// Adds what `read` returned; `superseded`: when the first write
    /// that may have superseded each value began.
    fn add(&mut self, read: &Read<'a>, superseded: &BTreeMap<u64, usize>) {
        let place = read.place();
        let at = match self.places.iter().position(|(p, _)| *p == place) {
            Some(at) => at,
            None => {
                self.places.push((place, BTreeMap::new()));
                self.places.len() - 1
            }
        };
        let values = &mut self.places[at].1;
        for value in read.values {
            // A value never written is a phantom, which its own check
            // reports: no read is held to it.
            if let Some(&when) = superseded.get(value) {
                values
                    .entry((when, *value))
                    .or_insert((read.end, read.operation));
            }
        }
    }

    /// A value `later` missed that an earlier read returned, at a place
    /// `must_meet` says `later` must meet, and that no write which may
    /// have superseded it began before `later` ended: the read that ended
    /// first of those that returned such a value, and the value.
    fn missed_by(
        &self,
        later: &Read<'a>,
        mut must_meet: impl FnMut(Place<'a>) -> bool,
    ) -> Option<(&'a Operation, u64)> {
        let mut missed: Option<(usize, &'a Operation, u64)> = None;
        for (place, values) in &self.places {
            let first = values
                .range((later.end, 0_u64)..)
                .filter(|((_, value), _)| !later.values.contains(value))
                .min_by_key(|(_, (end, _))| *end);
            let Some(((_, value), (end, read))) = first else {
                continue;
            };
            // The cheap tests first: overlap is asked only of a place
            // that would change the answer.
            if missed.is_none_or(|(best, _, _)| *end < best) && must_meet(*place) {
                missed = Some((*end, *read, *value));
            }
        }
        missed.map(|(_, read, value)| (read, value))
    }
}

impl Checker {
    /// Reads never go back: see the module's notes. Each read that did
    /// is reported once, however many values, earlier reads, it missed.
    pub(super) fn monotonic_reads(&mut self) {
        let mut back = Vec::new();
        {
            let mut overlaps = Overlaps::new();
            for row in rows(&self.operations) {
                back.extend(self.went_back(&row, &mut overlaps));
            }
        }
        for detail in back {
            self.violation("non-monotonic read", detail);
        }
    }

    /// The reads of `row` that missed a value an earlier read they must
    /// meet returned, which no write that may have superseded it had
    /// begun to replace before they ended: one line each, in id order.
    fn went_back<'a>(&self, row: &Row<'a>, overlaps: &mut Overlaps<'a>) -> Vec<String> {
        let superseded: BTreeMap<u64, usize> = row
            .writes
            .iter()
            .map(|(_, value, when)| (*value, *when))
            .collect();
        let reads: Vec<Read<'a>> = row
            .operations
            .iter()
            .copied()
            .filter_map(Read::of)
            .collect();
        // Earlier reads by when they ended (one that may have lived on a
        // node since lost promises nothing); later ones by when they began.
        let mut earlier: Vec<&Read<'a>> = reads
            .iter()
            .filter(|read| !self.maybe_lost_with_a_node(read.operation))
            .collect();
        earlier.sort_by_key(|read| read.end);
        let mut later: Vec<&Read<'a>> = reads.iter().collect();
        later.sort_by_key(|read| read.operation.invoked);
        let mut returned = Returned::default();
        let mut added = 0;
        let mut back = Vec::new();
        for read in later {
            while let Some(first) = earlier
                .get(added)
                .filter(|f| f.end < read.operation.invoked)
            {
                returned.add(first, &superseded);
                added += 1;
            }
            let later_place = read.place();
            let must_meet = |earlier_place: Place<'a>| {
                *overlaps
                    .entry((earlier_place, later_place))
                    .or_insert_with(|| {
                        let ((level, node), (earlier_level, earlier_node)) =
                            (later_place, earlier_place);
                        self.replication
                            .overlap(level, node, earlier_level, earlier_node)
                    })
            };
            if let Some((first, value)) = returned.missed_by(read, must_meet) {
                back.push((
                    read.operation.id,
                    went_back_detail(read.operation, first, value),
                ));
            }
        }
        back.sort_by_key(|(id, _)| *id);
        back.into_iter().map(|(_, detail)| detail).collect()
    }
}

/// What a violation says: `later` missed `value`, which `first` returned.
fn went_back_detail(later: &Operation, first: &Operation, value: u64) -> String {
    format!(
        "read #{} of {} at {:?} (started {} ms) missed {value}, which \
         read #{} at {:?} returned, ending at {} ms",
        later.id,
        later.op.key(),
        read_level(&later.op),
        later.invoked_ms,
        first.id,
        read_level(&first.op),
        first.completed_ms,
    )
}
