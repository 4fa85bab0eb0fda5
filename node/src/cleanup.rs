//! Cleanup: deleting the rows of ranges this node no longer replicates
//! (Cassandra's `nodetool cleanup`).
//!
//! When a node joins, the replicas that give ranges up to it keep their
//! copies. Left there, they are worse than wasted space: the rest of the
//! cluster moves on (overwrites, deletes, tombstones purged after the
//! grace), and when the range returns to such a node (the new node
//! decommissioned or removed) its stale copy comes back through its Merkle
//! trees and reads, deleted rows included.
//!
//! So a node cleans up by itself, once a change it saw take ranges away from
//! it has completed: [`needs_cleanup`] compares the ranges it replicates in
//! the settled ring with every range it replicated (or was to replicate in
//! a change's future ring: a change abandoned after streaming rows here
//! leaves them behind) in the rings this process has seen since its last
//! cleanup (after a restart, what moved while it was
//! down is seen only if its first ring is the old one; `ringdb cleanup`
//! cleans whatever is left). `ringdb cleanup` runs the same thing on demand.
//!
//! Cleanup never runs while a topology change is in progress: a range this
//! node is about to gain (a node leaving streams it here) is not its own in
//! the current ring, and its rows must not be deleted as they arrive. The
//! view is checked again between batches of rows, and cleanup stops if a
//! change has begun (a leaving node waits two gossip rounds after it
//! announces itself before it streams, which covers that check). And since
//! this node's view can lag, rows that arrive for a range it does not
//! replicate in its view ([`Arrivals`]: a removenode's `FetchRange`, a
//! stream, a write to a pending replica) stop cleanup before it deletes
//! another row: it checks under each row's lock.
//!
//! Rows are deleted one at a time under their row lock ([`Storage::delete_range`]),
//! which keeps the Merkle trees exact and remembers the dots this node
//! issued for each deleted row, so that a later write of the row, if the
//! range comes back, never issues one of them again.
//!
//! [`Storage::delete_range`]: crate::storage::Storage::delete_range

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ringdb_gossip::Status;
use ringdb_proto::{RequestError, TableId};
use ringdb_ring::{NodeId, Replication, Token, TokenRange};
use tracing::info;

use crate::membership::View;
use crate::placement::Group;
use crate::replica::Replica;

/// What a cleanup did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cleaned {
    /// Ranges whose rows were deleted.
    pub ranges: u64,
    /// Rows deleted.
    pub rows: u64,
}

/// Cleanup as a service: the node's [`Replica`], the rows arriving while
/// a cleanup runs, and how many rows cleanups deleted since the node
/// started.
pub(crate) struct Cleanup {
    pub(crate) replica: Arc<Replica>,
    pub(crate) arrivals: Arrivals,
    pub(crate) cleaned: AtomicU64,
}

impl std::ops::Deref for Cleanup {
    type Target = Replica;

    fn deref(&self) -> &Replica {
        &self.replica
    }
}

impl Cleanup {
    /// A cleanup service that has deleted nothing yet.
    pub(crate) fn new(replica: Arc<Replica>) -> Cleanup {
        Cleanup {
            replica,
            arrivals: Arrivals::default(),
            cleaned: AtomicU64::new(0),
        }
    }
}

/// Rows arriving for ranges this node does not replicate in its view,
/// while a cleanup runs: the ranges are coming (back) to this node, by a
/// change its view has not caught up with (a removenode's `FetchRange`, a
/// decommission's stream, a coordinator's write to a pending replica).
/// Cleanup checks under each row's lock, before deleting it, that none
/// came since it began, and stops if one did.
#[derive(Debug, Default)]
pub(crate) struct Arrivals {
    cleaning: AtomicBool,
    count: AtomicU64,
}

impl Arrivals {
    /// Notes rows of `tokens` arriving here (checked only while a cleanup
    /// runs: the check looks the tokens up in the ring).
    pub(crate) fn note(&self, c: &Replica, rows: impl IntoIterator<Item = (TableId, Token)>) {
        if !self.cleaning.load(Ordering::SeqCst) {
            return;
        }
        let view = c.membership.view();
        let placements = c.placement.now();
        let foreign = rows.into_iter().any(|(table, token)| {
            !(view.ring.replicas(token, placements.of(table))).contains(&c.me)
        });
        if foreign {
            self.incoming();
        }
    }

    /// Notes that ranges are coming to this node.
    pub(crate) fn incoming(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }
}

/// Why this node cannot clean up now, if it cannot.
fn refusal(me: &NodeId, view: &View) -> Option<String> {
    if let Some((node, status)) = view.change_in_progress(me) {
        return Some(format!(
            "a topology change is in progress ({node} is {status}); clean up once it is done"
        ));
    }
    if view.future.is_some() {
        return Some("a topology change is in progress; clean up once it is done".into());
    }
    if view.status(me) != Some(Status::Normal) || !view.ring.members().contains_key(me) {
        return Some(format!(
            "{me} is not a normal member of the ring: it has nothing to clean up"
        ));
    }
    None
}

/// The ranges of the ring whose rows `me` does not replicate.
fn foreign_ranges(me: &NodeId, view: &View, replication: &Replication) -> Vec<TokenRange> {
    view.ring
        .vnode_ranges()
        .map(|(range, _)| range)
        .filter(|range| !view.ring.replicas(range.end, replication).contains(me))
        .collect()
}

/// Whether `now` (the ranges this node replicates) has lost any token of
/// `before`: two arcs of the ring overlap exactly when one holds the
/// other's end.
pub(crate) fn needs_cleanup(before: &[TokenRange], now: &[TokenRange], all: &[TokenRange]) -> bool {
    all.iter().filter(|range| !now.contains(range)).any(|lost| {
        before
            .iter()
            .any(|kept| kept.contains(lost.end) || lost.contains(kept.end))
    })
}

/// The ranges of the ring as `view` has it, for [`needs_cleanup`].
pub(crate) fn all_ranges(view: &View) -> Vec<TokenRange> {
    view.ring.vnode_ranges().map(|(range, _)| range).collect()
}

/// Deletes every row of the ranges this node does not replicate; refused
/// while a topology change is in progress.
pub(crate) async fn cleanup(c: &Arc<Cleanup>) -> Result<Cleaned, RequestError> {
    let view = c.membership.view();
    if let Some(reason) = refusal(&c.me, &view) {
        return Err(RequestError::invalid(reason));
    }
    if let Some(reason) = c.schema_disagreement() {
        return Err(RequestError::invalid(reason));
    }
    // Each group's ranges this node does not replicate, and the group, as
    // placed now: a change of placement (a keyspace created or altered)
    // stops the cleanup, checked under each row's lock.
    let placements = c.placement.now();
    let foreign: Vec<(Group, TokenRange)> = (placements.groups().into_iter())
        .flat_map(|group| {
            let ranges = foreign_ranges(&c.me, &view, &group.replication);
            ranges.into_iter().map(move |range| (group.clone(), range))
        })
        .collect();
    let (membership, me) = (c.membership.clone(), c.me.clone());
    let ring = view.ring.clone();
    let this = c.clone();
    c.arrivals.cleaning.store(true, Ordering::SeqCst);
    let arrived = c.arrivals.count.load(Ordering::SeqCst);
    let cleaned = c
        .storage
        .blocking(move |storage| {
            let mut cleaned = Cleaned::default();
            // Stop as soon as the ring changes or a change begins (checked per
            // batch of rows), or rows arrive for a range this node gave up,
            // or tables are placed otherwise (checked per row, under its
            // lock).
            let unchanged = || {
                let now = membership.view();
                now.ring == ring && refusal(&me, &now).is_none()
            };
            let quiet = || {
                this.arrivals.count.load(Ordering::SeqCst) == arrived
                    && Arc::ptr_eq(&this.placement.now(), &placements)
            };
            for (group, range) in foreign {
                let holds = |table| group.holds(table);
                let (rows, complete) =
                    storage.delete_range_while(range, holds, unchanged, quiet)?;
                cleaned.rows += rows;
                if !complete {
                    return Ok::<_, crate::storage::StorageError>((cleaned, false));
                }
                cleaned.ranges += 1;
            }
            Ok((cleaned, true))
        })
        .await;
    c.arrivals.cleaning.store(false, Ordering::SeqCst);
    let (cleaned, complete) = cleaned.map_err(|e| c.server_error(e.to_string()))?;
    c.cleaned
        .fetch_add(cleaned.rows, std::sync::atomic::Ordering::Relaxed);
    if !complete {
        return Err(RequestError::invalid(format!(
            "cleanup stopped after {} rows: the ring changed; run it again once the change is done",
            cleaned.rows
        )));
    }
    info!(
        ranges = cleaned.ranges,
        rows = cleaned.rows,
        "cleaned up the ranges this node no longer replicates"
    );
    Ok(cleaned)
}
