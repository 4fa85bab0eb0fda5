//! Topology changes: a new node's bootstrap, decommission and removenode.
//!
//! One change at a time: each refuses to start while another node is
//! joining or leaving. During a change the membership view carries the ring
//! as it will be ([`View::future`](crate::membership::View::future)), and
//! writes also go to the replicas that ring adds, so nothing acknowledged
//! during the change is missing from the new owners when it completes.
//!
//! - **Bootstrap**: the new node announces its tokens as joining, waits two
//!   gossip rounds, then until every live member confirms that its view
//!   counts the node in (so that every coordinator's writes reach it; at
//!   most 30 s), then pulls every range it will
//!   replicate from a current replica, page by page, recording its progress
//!   in its data directory (a restart resumes where it stopped), and becomes
//!   normal.
//! - **Decommission**: the node announces leaving, pushes each of its ranges
//!   to the node that the ring without it adds as a replica, then announces
//!   left: it is out of the ring and can be stopped.
//! - **Removenode**: a dead node is marked removed (in a generation above its
//!   own, see `ringdb-gossip`); each range it replicated gets its new
//!   replica, which pulls the range from a surviving replica.

use std::sync::Arc;
use std::time::Duration;

use ringdb_gossip::{StateValue, Status};
use ringdb_proto::{OperationStatus, PeerReply, PeerRequest, RequestError};
use ringdb_ring::{NodeId, Replication, Ring, TokenRange};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::{TaskError, ask};
use crate::hints;
use crate::hints::Handoff;
use crate::membership::View;
use crate::operations::{Job, Kind, Operations, Undo};
use crate::placement::Group;
use crate::replica::Replica;
use crate::storage::{Storage, StorageError};
use crate::streaming::{self, Streamed};

mod removal;

pub(crate) use removal::{plan_removal, remove_node, unfinished_removal};

/// How long a node waits after announcing a change, so that gossip has
/// carried it to the others (two rounds) before data moves.
pub(crate) const RING_SETTLE: Duration = Duration::from_secs(2);
/// The key of a bootstrap's progress in the storage's metadata.
const BOOTSTRAP_KEY: &str = "bootstrap";

/// One range a joining node pulls, and how far it got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RangeProgress {
    /// The range.
    pub range: TokenRange,
    /// Where to stream it from, in order of preference: the replica that
    /// gives it up first (alone, with consistent range movement).
    pub sources: Vec<NodeId>,
    /// Stream it from every source, not the first that works (a range
    /// nobody gives up: the union of its replicas).
    #[serde(default)]
    pub every: bool,
    /// With `every`, the sources already streamed in full.
    #[serde(default)]
    pub sources_done: usize,
    /// The storage key of the last row stored from the source in progress.
    #[serde(with = "serde_bytes")]
    pub after: Option<Vec<u8>>,
    /// Whether the range is complete.
    pub done: bool,
    /// The placement group whose rows are streamed ([`Group::wire`]:
    /// `None` for the cluster's replication's).
    #[serde(default)]
    pub placement: Option<Replication>,
}

/// The bootstrap still to do, from the data directory (empty when none).
pub(crate) fn load_bootstrap(storage: &Storage) -> Result<Vec<RangeProgress>, StorageError> {
    match storage.get_meta(BOOTSTRAP_KEY)? {
        None => Ok(Vec::new()),
        Some(bytes) => rmp_serde::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
            what: "bootstrap progress",
            detail: e.to_string(),
        }),
    }
}

pub(crate) fn save_bootstrap(
    storage: &Storage,
    progress: &[RangeProgress],
) -> Result<(), StorageError> {
    let bytes = rmp_serde::to_vec_named(progress).expect("progress encodes");
    storage.put_meta(BOOTSTRAP_KEY, &bytes)
}

/// The ranges `me` replicates in `future` and where to fetch each: from
/// the replica that gives the range up (Cassandra's consistent range
/// movement; others after it only when `streaming.consistent_range_movement`
/// is off), or from every replica when nobody gives it up.
/// One plan per placement group, each streaming only the group's tables.
pub(crate) fn bootstrap_plan(c: &Topology, ring: &Ring, future: &Ring) -> Vec<RangeProgress> {
    let groups = c.placement.now().groups();
    groups
        .iter()
        .flat_map(|group| group_bootstrap_plan(c, group, ring, future))
        .collect()
}

/// The plans of the placement groups `progress` has none for: those of a
/// keyspace whose schema reached this node after it planned its bootstrap.
pub(crate) fn unplanned(c: &Topology, progress: &[RangeProgress]) -> Vec<RangeProgress> {
    let view = c.membership.view();
    let Some(future) = &view.future else {
        return Vec::new();
    };
    let groups = c.placement.now().groups();
    (groups.iter())
        .filter(|group| !progress.iter().any(|p| p.placement == group.wire()))
        .flat_map(|group| group_bootstrap_plan(c, group, &view.ring, future))
        .collect()
}

fn group_bootstrap_plan(
    c: &Topology,
    group: &Group,
    ring: &Ring,
    future: &Ring,
) -> Vec<RangeProgress> {
    let replication = &group.replication;
    future
        .ranges_of(&c.me, replication)
        .into_iter()
        .map(|range| {
            let old = ring.replicas(range.end, replication);
            let new = future.replicas(range.end, replication);
            let (mut sources, others): (Vec<NodeId>, Vec<NodeId>) =
                old.into_iter().partition(|node| !new.contains(node));
            let every = sources.is_empty();
            if every || !c.streaming.consistent_range_movement {
                sources.extend(others);
            }
            RangeProgress {
                range,
                sources,
                every,
                sources_done: 0,
                after: None,
                done: false,
                placement: group.wire(),
            }
        })
        .collect()
}

/// Refuses a change while another is in progress.
pub(super) fn one_change_at_a_time(c: &Topology, view: &View) -> Result<(), RequestError> {
    match view.change_in_progress(&c.me) {
        Some((node, Status::Removing)) => Err(RequestError::invalid(format!(
            "another topology change is in progress: {node} is being removed; wait for it \
             to finish, or finish it with `ringdb removenode {node}` (one change at a time)"
        ))),
        Some((node, status)) => Err(RequestError::invalid(format!(
            "another topology change is in progress: {node} is {status}; \
             wait for it to finish (one change at a time)"
        ))),
        None => Ok(()),
    }
}

/// Pulls every range of `progress` not yet done, saving progress after each
/// page.
pub(crate) async fn run_bootstrap(
    c: &Topology,
    progress: &mut [RangeProgress],
) -> Result<Streamed, TaskError> {
    let started = Instant::now();
    let total = progress.len();
    let mut streamed = Streamed::default();
    let mut throttle = streaming::Throttle::new(c.streaming.bytes_per_sec());
    for i in 0..total {
        if progress[i].done {
            continue;
        }
        // No keyspace is placed by the range's replication any more (it
        // was dropped or altered since the plan): nothing to stream.
        let placement = progress[i].placement.as_ref();
        if placement.is_some() && c.placement.now().group(placement).is_none() {
            warn!(range = %progress[i].range, "no keyspace is placed by this range's replication any more; not streaming it");
            progress[i].done = true;
            save_bootstrap(&c.storage, progress)?;
            continue;
        }
        let moved = if progress[i].every {
            stream_from_every_source(c, progress, i, &mut throttle).await?
        } else {
            stream_from_first_source(c, progress, i, &mut throttle).await?
        };
        streamed.add(moved);
        progress[i].done = true;
        progress[i].after = None;
        save_bootstrap(&c.storage, progress)?;
        streaming::report("bootstrap streaming", i + 1, total, streamed, started);
    }
    Ok(streamed)
}

/// Streams range `i` from `source`, resuming after its saved key and
/// saving progress after each page.
async fn stream_range(
    c: &Topology,
    progress: &[RangeProgress],
    i: usize,
    source: &NodeId,
    throttle: &mut streaming::Throttle,
) -> Result<Streamed, TaskError> {
    let range = progress[i].range;
    let after = progress[i].after.clone();
    let group = crate::repair::local_group(c, progress[i].placement.as_ref())
        .map_err(|error| TaskError::Refused(error.to_string()))?;
    let snapshot: Vec<RangeProgress> = progress.to_vec();
    let storage = c.storage.clone();
    let checkpoint = |key: &[u8]| {
        let mut saved = snapshot.clone();
        saved[i].after = Some(key.to_vec());
        save_bootstrap(&storage, &saved)
    };
    streaming::fetch(
        &*c.peers, &c.storage, source, &group, range, after, throttle, checkpoint,
    )
    .await
}

/// Streams range `i` from the first of its sources that is up and answers.
async fn stream_from_first_source(
    c: &Topology,
    progress: &mut [RangeProgress],
    i: usize,
    throttle: &mut streaming::Throttle,
) -> Result<Streamed, TaskError> {
    let range = progress[i].range;
    let mut last_error = String::from("no live replica to stream from");
    for source in progress[i].sources.clone() {
        if source == c.me || !c.is_up(&source) {
            last_error = format!("{source} is down");
            continue;
        }
        match stream_range(c, progress, i, &source, throttle).await {
            Ok(moved) => return Ok(moved),
            Err(error) => {
                warn!(%range, %source, %error, "streaming from this replica failed");
                last_error = error.to_string();
            }
        }
    }
    Err(TaskError::Refused(no_source(c, &progress[i], &last_error)))
}

/// Why no source of `range` could be streamed from.
fn no_source(c: &Topology, range: &RangeProgress, why: &str) -> String {
    let strict = c.streaming.consistent_range_movement && range.sources.len() == 1;
    if strict {
        format!(
            "range {} must be streamed from {}, the replica that gives it up, and that \
             failed: {why}; start it, or set streaming.consistent_range_movement = false \
             on this node to stream from another replica (which may have missed writes that it \
             acknowledged)",
            range.range, range.sources[0]
        )
    } else {
        format!("range {} could not be streamed: {why}", range.range)
    }
}

/// Why `plan` cannot be streamed now, if it cannot: checked before a
/// joining node announces its tokens, so that a join that would fail for a
/// down source fails before the others count this node as joining. (A
/// source can still go down afterwards; streaming then fails with the
/// same words, and a restart resumes it.)
pub(crate) fn unavailable_source(c: &Topology, plan: &[RangeProgress]) -> Option<String> {
    let up = |node: &NodeId| *node == c.me || c.is_up(node);
    for range in plan {
        if range.every {
            if let Some(down) = range.sources.iter().find(|node| !up(node)) {
                return Some(format!(
                    "range {} has no replica giving it up, so it is streamed from every \
                     replica, and {down} is down; start it, then start this node",
                    range.range
                ));
            }
        } else if !range.sources.iter().any(up) {
            let down = range
                .sources
                .first()
                .map(NodeId::as_str)
                .unwrap_or("every replica");
            return Some(no_source(c, range, &format!("{down} is down")));
        }
    }
    None
}

/// Streams range `i` from each of its sources in turn (every one must be
/// up), recording which are done.
async fn stream_from_every_source(
    c: &Topology,
    progress: &mut [RangeProgress],
    i: usize,
    throttle: &mut streaming::Throttle,
) -> Result<Streamed, TaskError> {
    let range = progress[i].range;
    let mut moved = Streamed::default();
    while let Some(source) = progress[i].sources.get(progress[i].sources_done).cloned() {
        if source != c.me {
            if !c.is_up(&source) {
                return Err(TaskError::Refused(format!(
                    "range {range} has no replica giving it up, so it is streamed from every \
                     replica, and {source} is down; start it and the join resumes"
                )));
            }
            moved.add(stream_range(c, progress, i, &source, throttle).await?);
        }
        progress[i].sources_done += 1;
        progress[i].after = None;
        save_bootstrap(&c.storage, progress)?;
    }
    Ok(moved)
}

/// Refuses a decommission this node cannot make now.
pub(crate) fn check_decommission(c: &Topology) -> Result<(), RequestError> {
    let view = c.membership.view();
    one_change_at_a_time(c, &view)?;
    if view.status(&c.me) != Some(Status::Normal) {
        return Err(RequestError::invalid(format!(
            "{} is {}, not normal: only a normal node can be decommissioned",
            c.me,
            view.status(&c.me)
                .map_or("unknown".into(), |s| s.to_string())
        )));
    }
    if let Some(reason) = c.schema_disagreement() {
        return Err(RequestError::invalid(reason));
    }
    let placements = c.placement.now();
    let groups = placements.groups();
    let factor = (groups.iter())
        .map(|group| group.replication.total_factor())
        .max()
        .unwrap_or(0);
    if view.ring.len() <= factor {
        return Err(RequestError::invalid(format!(
            "the ring has {} nodes for replication factor {factor}: without this node some \
             rows would have fewer replicas; add a node first",
            view.ring.len()
        )));
    }
    Ok(())
}

/// How long a joining node waits for every live member to see it joining
/// before it streams anyway.
const SEEN_WAIT: Duration = Duration::from_secs(30);

/// Waits until every live member's view counts this node in its ring to
/// be (so that each sends it the writes of its future ranges from then
/// on), or [`SEEN_WAIT`] passed. A fixed wait (Cassandra's `RING_DELAY`)
/// is not enough under partitions and loss: a member that has not heard
/// of the join keeps writing to the old replicas only, and this node,
/// once normal, would answer reads without those writes.
pub(crate) async fn await_seen_joining(c: &Topology) {
    let until = Instant::now() + SEEN_WAIT;
    loop {
        let unseen = unseen_by(c, until).await;
        if unseen.is_empty() {
            return;
        }
        if Instant::now() >= until {
            warn!(
                ?unseen,
                "streaming although live members do not see this node joining yet"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The live members whose view does not place this node in its ring, now
/// or once the change completes.
async fn unseen_by(c: &Topology, until: Instant) -> Vec<NodeId> {
    let view = c.membership.view();
    let members: Vec<NodeId> = view
        .nodes
        .iter()
        .filter(|(id, node)| {
            **id != c.me
                && node.up
                && !matches!(node.state.status(), Status::Left | Status::Removed)
        })
        .map(|(id, _)| id.clone())
        .collect();
    let mut unseen = Vec::new();
    for member in members {
        let deadline = (Instant::now() + Duration::from_secs(1)).min(until);
        let request = PeerRequest::Sees { node: c.me.clone() };
        let seen = matches!(
            ask(c.peers.as_ref(), &member, request, deadline).await,
            Ok(PeerReply::Sees { in_ring, in_future }) if in_ring || in_future
        );
        if !seen {
            unseen.push(member);
        }
    }
    unseen
}

/// Topology changes as a service: the node's [`Replica`], the hints it
/// hands over when it leaves, and the operation (decommission, removenode)
/// it runs.
pub(crate) struct Topology {
    pub(crate) replica: Arc<Replica>,
    pub(crate) handoff: Arc<Handoff>,
    pub(crate) operations: Arc<Operations>,
}

impl std::ops::Deref for Topology {
    type Target = Replica;

    fn deref(&self) -> &Replica {
        &self.replica
    }
}

/// Starts `kind` as a task of the node, or attaches to it when it is the
/// operation running; refused while another runs, or when the operation's
/// checks fail (nothing started then).
pub(crate) fn start(c: &Arc<Topology>, kind: Kind) -> Result<OperationStatus, RequestError> {
    if let Some((running, status)) = c.operations.running() {
        if running == kind {
            return Ok(status);
        }
        return Err(RequestError::invalid(format!(
            "{} is running {}: follow it with --follow, or stop it with --abort",
            c.me, status.kind
        )));
    }
    let job: Job = match &kind {
        Kind::Decommission => {
            check_decommission(c)?;
            Box::pin(decommission(c.clone()))
        }
        Kind::RemoveNode(node) => {
            let removal = plan_removal(c, node)?;
            Box::pin(remove_node(c.clone(), removal))
        }
    };
    c.operations.launch(kind.clone(), job, undo(c, kind))
}

/// What an abort of `kind` does, once it comes.
fn undo(c: &Arc<Topology>, kind: Kind) -> Undo {
    let c = c.clone();
    Box::pin(async move { aborted(&c, &kind).await })
}

/// Resumes a removal the node was running when it stopped, once gossip
/// has had time to bring the ring and the live peers.
pub(crate) fn resume(c: &Arc<Topology>) {
    let removal = match unfinished_removal(c) {
        Ok(Some(removal)) => removal,
        Ok(None) => return,
        Err(error) => return warn!(%error, "cannot read an interrupted removenode's plan"),
    };
    let c = c.clone();
    let node = c.operations.node().clone();
    tokio::spawn(async move {
        tokio::select! {
            biased;
            () = node.cancelled() => return,
            () = tokio::time::sleep(RESUME_DELAY) => {}
        }
        info!(node = %removal.node, "resuming an interrupted removenode");
        let kind = Kind::RemoveNode(removal.node.clone());
        let job = Box::pin(remove_node(c.clone(), removal));
        if let Err(error) = c.operations.launch(kind.clone(), job, undo(&c, kind)) {
            warn!(%error, "cannot resume the interrupted removenode");
        }
    });
}

/// How long after its start a node resumes an interrupted removal.
const RESUME_DELAY: Duration = Duration::from_secs(10);

/// Announces leaving, hands every range over, announces left (checked by
/// [`check_decommission`]; run as an operation, see [`start`]).
pub(crate) async fn decommission(c: Arc<Topology>) -> Result<String, RequestError> {
    let c = &c;
    let view = c.membership.view();
    let ring = view.ring.clone();
    let mut future = ring.clone();
    future.remove_node(&c.me);
    info!(node = %c.me, "decommissioning: leaving the ring");
    c.gossip
        .set_state(StateValue::Status(Status::Leaving))
        .await;
    c.operations.progress("announced leaving".into()).await;
    tokio::time::sleep(RING_SETTLE).await;
    let handovers: Vec<Handover> = (c.placement.now().groups().into_iter())
        .flat_map(|group| handovers_of(c, &group, &ring, &future))
        .collect();
    let started = Instant::now();
    let streamed = hand_ranges_over(c, &handovers, started).await?;
    c.operations.progress("handing hints over".into()).await;
    // Hints can be the only copy of a write: hand them over before leaving.
    let hints = match hints::hand_over(&c.handoff, &future).await {
        Ok(hints) => hints,
        Err(error) => {
            c.gossip.set_state(StateValue::Status(Status::Normal)).await;
            return Err(c.server_error(format!(
                "decommission stopped: {error}; the node is normal again"
            )));
        }
    };
    if !c.operations.point_of_no_return() {
        // Aborted meanwhile (`aborted` says so too, if its branch runs).
        c.gossip.set_state(StateValue::Status(Status::Normal)).await;
        return Err(RequestError::invalid("aborted; the node is normal again"));
    }
    let hints = hints + leave(c, &future).await?;
    info!(node = %c.me, "decommissioned: left the ring");
    Ok(format!(
        "{} left the ring after handing over {} ranges ({} rows, {:.2} MiB) and {hints} hints \
         in {:.1} s; it can be stopped",
        c.me,
        handovers.len(),
        streamed.rows,
        streamed.bytes as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    ))
}

/// A range of a group's rows this node gives up, and its new replicas.
type Handover = (Group, TokenRange, Vec<NodeId>);

/// The ranges of `group`'s rows this node gives up when `ring` becomes
/// `future`, each with the replicas `future` adds.
fn handovers_of(c: &Topology, group: &Group, ring: &Ring, future: &Ring) -> Vec<Handover> {
    let replication = &group.replication;
    ring.replicated_ranges(replication)
        .into_iter()
        .filter(|(_, replicas)| replicas.contains(&c.me))
        .map(|(range, replicas)| {
            let new: Vec<NodeId> = future
                .replicas(range.end, replication)
                .into_iter()
                .filter(|n| !replicas.contains(n))
                .collect();
            (group.clone(), range, new)
        })
        .collect()
}

/// Streams each range this node gives up to its new replicas; on failure
/// the node is normal again.
async fn hand_ranges_over(
    c: &Topology,
    handovers: &[Handover],
    started: Instant,
) -> Result<Streamed, RequestError> {
    let mut streamed = Streamed::default();
    let mut throttle = streaming::Throttle::new(c.streaming.bytes_per_sec());
    for (i, (group, range, targets)) in handovers.iter().enumerate() {
        c.operations
            .progress(format!(
                "streaming range {} of {} ({} rows, {:.2} MiB so far)",
                i + 1,
                handovers.len(),
                streamed.rows,
                streamed.bytes as f64 / (1 << 20) as f64
            ))
            .await;
        for target in targets {
            let push = streaming::push(&*c.peers, &c.storage, target, group, *range, &mut throttle);
            match push.await {
                Ok(moved) => streamed.add(moved),
                Err(error) => {
                    // Back to normal: the ring is as it was.
                    c.gossip.set_state(StateValue::Status(Status::Normal)).await;
                    return Err(c.server_error(format!(
                        "decommission stopped: range {range} to {target}: {error}; \
                         the node is normal again"
                    )));
                }
            }
        }
        streaming::report(
            "decommission streaming",
            i + 1,
            handovers.len(),
            streamed,
            started,
        );
    }
    Ok(streamed)
}

/// Past the point of no return: marks the data directory retired, leaves
/// the ring, and hands over the hints written meanwhile; returns how many.
async fn leave(c: &Topology, future: &Ring) -> Result<u64, RequestError> {
    c.operations
        .progress("leaving the ring (cannot be aborted)".into())
        .await;
    // Never back with this data: a restart would bring stale ranges back.
    c.storage
        .mark_retired("decommissioned")
        .map_err(|e| c.server_error(e.to_string()))?;
    c.gossip.set_state(StateValue::Status(Status::Left)).await;
    tokio::time::sleep(RING_SETTLE).await;
    // Writes coordinated here until the others saw it leave may have left
    // hints: hand those over too.
    Ok(match hints::hand_over(&c.handoff, future).await {
        Ok(late) => late,
        Err(error) => {
            warn!(%error, "hints written while leaving could not all be handed over");
            0
        }
    })
}

/// Puts things back after an operation was aborted; says how they stand.
pub(crate) async fn aborted(c: &Topology, kind: &Kind) -> String {
    match kind {
        Kind::Decommission => {
            c.gossip.set_state(StateValue::Status(Status::Normal)).await;
            format!(
                "{} is normal again; the rows it already streamed stay on their next owners \
                 (run `ringdb cleanup` there)",
                c.me
            )
        }
        Kind::RemoveNode(node) => removal::aborted(c, node).await,
    }
}
