//! `removenode`: a dead node's removal from the ring, and the copies that
//! restore its ranges' replicas from the survivors, with the plan kept in
//! the data directory so that a removal cut short is finished.

use std::sync::Arc;
use std::time::Duration;

use ringdb_gossip::{RemovalStep, Status};
use ringdb_proto::{PeerReply, PeerRequest, RequestError};
use ringdb_ring::{Location, NodeId, Replication, Ring, Token, TokenRange};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{RING_SETTLE, Topology, one_change_at_a_time};
use crate::error::{TaskError, ask};
use crate::membership::{RemoveError, View};
use crate::placement::Group;
use crate::storage::StorageError;
use crate::streaming;

/// The key of a removal's plan and progress in the storage's metadata.
const REMOVAL_KEY: &str = "removal";

/// A removal's plan, kept in the data directory of the node that runs it
/// until every range of the removed node has its replicas back: a removal
/// cut short (the node restarted, or `--abort`) is finished from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Removal {
    /// The removed node.
    pub node: NodeId,
    /// Its location and tokens before the removal (gossip forgets them).
    pub location: Location,
    pub tokens: Vec<Token>,
    /// The ranges restored so far.
    pub done: Vec<TokenRange>,
    /// It was joining: nothing to restore.
    pub joining: bool,
    /// The ranges of another placement group than the cluster's restored
    /// so far (those of the cluster's are in `done`).
    #[serde(default)]
    pub done_placed: Vec<(Replication, TokenRange)>,
}

impl Removal {
    /// Whether `group`'s `range` was restored.
    fn restored(&self, group: &Group, range: TokenRange) -> bool {
        match group.wire() {
            None => self.done.contains(&range),
            Some(replication) => self.done_placed.contains(&(replication, range)),
        }
    }

    /// Notes that `group`'s `range` was restored.
    fn note_restored(&mut self, group: &Group, range: TokenRange) {
        match group.wire() {
            None => self.done.push(range),
            Some(replication) => self.done_placed.push((replication, range)),
        }
    }
}

/// The removal this node was running when it stopped, if any.
pub(crate) fn unfinished_removal(c: &Topology) -> Result<Option<Removal>, StorageError> {
    match c.storage.get_meta(REMOVAL_KEY)? {
        None => Ok(None),
        Some(bytes) => rmp_serde::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Corrupt {
                what: "removal plan",
                detail: e.to_string(),
            }),
    }
}

fn save_removal(c: &Topology, removal: Option<&Removal>) -> Result<(), RequestError> {
    let saved = match removal {
        Some(removal) => c.storage.put_meta(
            REMOVAL_KEY,
            &rmp_serde::to_vec_named(removal).expect("a removal plan encodes"),
        ),
        None => c.storage.delete_meta(REMOVAL_KEY),
    };
    saved.map_err(|e| c.server_error(format!("cannot keep the removal's progress: {e}")))
}

/// Checks a removenode and plans it; for a node this node already removed
/// without finishing, the plan it kept (the removal resumes).
pub(crate) fn plan_removal(c: &Topology, node: &NodeId) -> Result<Removal, RequestError> {
    let view = c.membership.view();
    if *node == c.me {
        return Err(RequestError::invalid(
            "a node cannot remove itself; decommission it",
        ));
    }
    if let Some(kept) = unfinished_removal(c).map_err(|e| c.server_error(e.to_string()))? {
        if kept.node == *node {
            return Ok(kept);
        }
        return Err(RequestError::invalid(format!(
            "{} has not finished restoring the ranges of {} (a removal cut short): run \
             `ringdb removenode {}` on it first",
            c.me, kept.node, kept.node
        )));
    }
    if !view.nodes.contains_key(node) {
        return Err(RequestError::invalid(format!("no node {node} is known")));
    }
    if view.is_up(node) {
        return Err(RequestError::invalid(format!(
            "{node} is up: decommission it instead, or stop it first"
        )));
    }
    let joining = view.status(node) == Some(Status::Joining);
    // The node's own removal may be in progress (its remover lost its
    // plan): asked again, this node finishes it.
    let own = matches!(view.change_in_progress(&c.me), Some((other, _)) if other == *node);
    if !joining && !own {
        one_change_at_a_time(c, &view)?;
    }
    if let Some(runner) = running_elsewhere(c, &view, node) {
        return Err(RequestError::invalid(format!(
            "{runner} is removing {node}: follow it there (`--follow`), or abort it there first"
        )));
    }
    if let Some(reason) = c.schema_disagreement() {
        return Err(RequestError::invalid(reason));
    }
    let member = view.ring.members().get(node);
    if member.is_none() && !joining {
        return Err(RequestError::invalid(format!(
            "{node} is not in the ring (already removed or left)"
        )));
    }
    Ok(Removal {
        node: node.clone(),
        location: member.map(|m| m.location.clone()).unwrap_or_default(),
        tokens: member.map(|m| m.tokens.clone()).unwrap_or_default(),
        done: Vec::new(),
        done_placed: Vec::new(),
        joining,
    })
}

/// A live node other than this one running the removal of `node`.
fn running_elsewhere(c: &Topology, view: &View, node: &NodeId) -> Option<NodeId> {
    // As `Operations` gossips it: "removenode <node>: <progress>".
    let kind = format!("removenode {node}");
    view.nodes
        .iter()
        .find(|(id, n)| {
            **id != c.me
                && n.up
                && n.state
                    .operation()
                    .is_some_and(|op| op.split(':').next() == Some(kind.as_str()))
        })
        .map(|(id, _)| id.clone())
}

/// Removes a dead node and restores its ranges' replicas from survivors,
/// keeping its progress in the data directory (run as an operation, see
/// [`start`]). As Cassandra's removenode does, the node is first marked
/// removing: it stays in the ring, so reads of its ranges go to the
/// survivors, and its ranges' next replicas are pending, so writes reach
/// them too. Only once they hold the ranges is the node marked removed and
/// they serve reads (announcing the removal first let a new replica answer
/// reads of ranges it did not hold yet: sim seed 20022 --statements).
pub(crate) async fn remove_node(
    c: Arc<Topology>,
    mut removal: Removal,
) -> Result<String, RequestError> {
    let c = &c;
    let node = removal.node.clone();
    if removal.joining {
        // A node that died joining replicates nothing yet: removing it
        // drops its pending ranges, and there is nothing to restore.
        c.gossip
            .remove(node.clone(), Status::Joining, RemovalStep::Finish)
            .await
            .map_err(|e| RequestError::invalid(e.to_string()))?;
        info!(removed = %node, "removed a dead joining node and its pending ranges");
        return Ok(format!(
            "{node} was joining: removed, with its pending ranges (it held no \
             replica yet; nothing to restore)"
        ));
    }
    // Gossiped at once, so that no other node starts this removal too.
    c.operations
        .progress("marking the node removing".into())
        .await;
    let started = Instant::now();
    let removed = async {
        mark_removing(c, &removal).await?;
        let restored = restore_ranges(c, &mut removal).await?;
        announce_removal(c, &removal).await?;
        wait_for_view(c, &node, "out of its ring", |view| {
            !view.ring.members().contains_key(&node) && view.status(&node) == Some(Status::Removed)
        })
        .await?;
        Ok(restored)
    };
    let restored = match removed.await {
        Ok(restored) => restored,
        Err(error) => return Err(give_up(c, &node, error).await),
    };
    save_removal(c, None)?;
    Ok(removed_summary(c, &node, started, &restored))
}

/// What a removal restored: the removed node's ranges, the copies made,
/// the ranges no other replica held (a keyspace of one replica), and the
/// members left.
struct Restored {
    ranges: usize,
    copies: usize,
    lost: usize,
    members: usize,
}

/// Copies every range of the removed node not yet restored, from every
/// survivor to each new replica, saving progress after each.
async fn restore_ranges(c: &Topology, removal: &mut Removal) -> Result<Restored, RequestError> {
    let node = removal.node.clone();
    let (before, after) = rings(c, removal)?;
    let (mut ranges, mut copies, mut lost) = (0, 0, 0);
    let affected: Vec<(Group, TokenRange, Vec<NodeId>)> = (c.placement.now().groups())
        .into_iter()
        .flat_map(|group| {
            let ranges = before.replicated_ranges(&group.replication);
            (ranges.into_iter())
                .filter(|(_, replicas)| replicas.contains(&node))
                .map(move |(range, replicas)| (group.clone(), range, replicas))
        })
        .collect();
    let total = affected.len();
    for (group, range, replicas) in affected {
        ranges += 1;
        if removal.restored(&group, range) {
            continue;
        }
        // Removed already: a removal the previous version of ringdb
        // announced before it copied.
        let status = c.membership.view().status(&node);
        if !matches!(status, Some(Status::Removing | Status::Removed)) {
            return Err(RequestError::invalid(format!(
                "{node} came back during its removal (it is {}): it is not removed",
                status.map_or("unknown".into(), |s| s.to_string())
            )));
        }
        c.operations
            .progress(format!("restoring range {ranges} of {total}"))
            .await;
        let at = (&group, range);
        match restore_range(c, &node, at, &replicas, &after).await? {
            Some(made) => copies += made,
            None => lost += 1,
        }
        removal.note_restored(&group, range);
        save_removal(c, Some(removal))?;
    }
    Ok(Restored {
        ranges,
        copies,
        lost,
        members: after.members().len(),
    })
}

/// A removal that cannot finish puts the node back to normal (so that no
/// change is left half made, blocking others) and drops its plan; returns
/// `error`, saying so. A node already marked removed stays so, and the
/// plan is kept: asked again, this node finishes restoring its ranges.
async fn give_up(c: &Topology, node: &NodeId, error: RequestError) -> RequestError {
    let undone = if c.membership.view().status(node) == Some(Status::Removed) {
        format!("{node} is removed: run `ringdb removenode {node}` again to finish")
    } else {
        match undo_removing(c, node).await {
            Ok(()) => format!(
                "{node} is not removed (back to normal): run `ringdb removenode {node}` again \
                 if it is still needed"
            ),
            Err(undo) => format!("and it could not be put back to normal: {undo}"),
        }
    };
    match error {
        RequestError::InvalidRequest { reason } => {
            RequestError::invalid(format!("{reason}; {undone}"))
        }
        RequestError::Server { reason, .. } => c.server_error(format!("{reason}; {undone}")),
        other => c.server_error(format!("{other}; {undone}")),
    }
}

/// Puts a node this node was removing back to normal, through the gossip
/// task (after any step of the removal still queued there), and drops the
/// plan.
async fn undo_removing(c: &Topology, node: &NodeId) -> Result<(), RequestError> {
    match c
        .gossip
        .remove(node.clone(), Status::Removing, RemovalStep::Abort)
        .await
    {
        // Not removing (any more): nothing to put back.
        Ok(()) | Err(RemoveError::Changed { .. }) => {}
        Err(error) => return Err(c.server_error(error.to_string())),
    }
    save_removal(c, None)
}

/// The ring with the removed node and the ring without it.
fn rings(c: &Topology, removal: &Removal) -> Result<(Ring, Ring), RequestError> {
    let mut before = c.membership.view().ring.clone();
    // Out of the ring already if the removal was announced before this
    // node stopped.
    before.remove_node(&removal.node);
    before
        .add_node(
            removal.node.clone(),
            removal.location.clone(),
            removal.tokens.clone(),
        )
        .map_err(|e| c.server_error(format!("the ring before the removal: {e}")))?;
    let mut after = before.clone();
    after.remove_node(&removal.node);
    Ok((before, after))
}

/// What `ringdb removenode` reports once `node` is removed.
fn removed_summary(c: &Topology, node: &NodeId, started: Instant, restored: &Restored) -> String {
    let Restored {
        ranges,
        copies,
        lost,
        members,
    } = *restored;
    let lost = match lost {
        0 => String::new(),
        n => format!(
            "; {n} of its ranges had no other replica (a keyspace of one replica): their rows \
             are lost with it"
        ),
    };
    let factor = (c.placement.now().groups().iter())
        .map(|group| group.replication.total_factor())
        .max()
        .unwrap_or(0);
    let elapsed = started.elapsed().as_secs_f64();
    if members < factor {
        format!(
            "{node} removed in {elapsed:.1} s; {ranges} of its ranges copied to {copies} new \
             replicas, but only {members} nodes remain for replication factor {factor}: every \
             range has {members} of {factor} replicas (consistency levels that need {factor} \
             fail) until nodes are added{lost}"
        )
    } else {
        format!(
            "{node} removed in {elapsed:.1} s; {ranges} of its ranges restored to full \
             replication by {copies} copies{lost}"
        )
    }
}

/// Marks the node removing (keeping the plan first, so that a restart
/// resumes it), and waits until this node's view has its ranges' next
/// replicas pending: writes from then on reach them.
async fn mark_removing(c: &Topology, removal: &Removal) -> Result<(), RequestError> {
    let node = removal.node.clone();
    match c.membership.view().status(&node) {
        // Marked removed before this node stopped: the ranges were
        // restored (or, by an older version, are restored after).
        Some(Status::Removed) => return Ok(()),
        Some(Status::Removing) => {
            info!(removing = %node, done = removal.done.len(), "resuming the restore of a dead node's replicas");
        }
        status => {
            save_removal(c, Some(removal))?;
            let expect = status.unwrap_or(Status::Normal);
            let marked = c
                .gossip
                .remove(node.clone(), expect, RemovalStep::Begin)
                .await;
            if let Err(error) = marked {
                save_removal(c, None)?;
                return Err(RequestError::invalid(error.to_string()));
            }
            info!(removing = %node, "removing a dead node; restoring its replicas");
        }
    }
    wait_for_view(c, &node, "removing, its next replicas pending", |view| {
        view.status(&node) == Some(Status::Removing)
            && view
                .future
                .as_ref()
                .is_some_and(|future| !future.members().contains_key(&node))
    })
    .await?;
    // As a decommission does: a moment for the other nodes' views, so
    // that their writes too reach the next replicas before they are
    // copied to.
    tokio::time::sleep(RING_SETTLE).await;
    Ok(())
}

/// Marks the node removed, once its ranges are restored (nothing to do if
/// it was, before this node stopped).
async fn announce_removal(c: &Topology, removal: &Removal) -> Result<(), RequestError> {
    let node = removal.node.clone();
    if c.membership.view().status(&node) == Some(Status::Removed) {
        return Ok(());
    }
    c.gossip
        .remove(node.clone(), Status::Removing, RemovalStep::Finish)
        .await
        .map_err(|e| RequestError::invalid(e.to_string()))?;
    info!(removed = %node, "removed a dead node, its replicas restored");
    Ok(())
}

/// Puts things back after a removal of `node` was aborted: a node still
/// removing is normal again (and the plan dropped); one already removed
/// stays removed.
pub(crate) async fn aborted(c: &Topology, node: &NodeId) -> String {
    if c.membership.view().status(node) == Some(Status::Removed) {
        return format!(
            "{node} stays removed: its ranges were restored before it was marked removed"
        );
    }
    match undo_removing(c, node).await {
        Ok(()) => format!(
            "{node} is not removed (normal again, down); the rows already copied stay on its \
             ranges' next replicas (run `ringdb cleanup` there)"
        ),
        Err(error) => format!("{node} could not be put back to normal: {error}"),
    }
}

/// Copies `range`, which the removed `node` replicated with `replicas`,
/// from every surviving replica to each replica the ring `after` the
/// removal adds; returns how many copies it made (`None`: no survivor). Every survivor, not one:
/// a write acknowledged by the removed node and one survivor is on that
/// survivor alone, and copying from another would leave it on one replica
/// of three (a quorum read could miss it, a delete could come back). So
/// every survivor must be up.
async fn restore_range(
    c: &Topology,
    node: &NodeId,
    (group, range): (&Group, TokenRange),
    replicas: &[NodeId],
    after: &Ring,
) -> Result<Option<usize>, RequestError> {
    let survivors: Vec<&NodeId> = replicas.iter().filter(|r| *r != node).collect();
    if let Some(down) = survivors.iter().find(|r| ***r != c.me && !c.is_up(r)) {
        return Err(c.server_error(format!(
            "range {range}: its replica {down} is down, and it may hold writes no other \
             replica has; run `ringdb removenode {node}` again once it is up"
        )));
    }
    if survivors.is_empty() {
        // A keyspace of one replica: nothing to copy, and a removal that
        // waited for the node would never end.
        warn!(%range, removed = %node, "no other replica of the range: its rows are lost with the node");
        return Ok(None);
    }
    let new = after
        .replicas(range.end, &group.replication)
        .into_iter()
        .filter(|n| !replicas.contains(n));
    let mut copies = 0;
    for target in new {
        for source in &survivors {
            copy_range(c, source, &target, (group, range))
                .await
                .map_err(|error| {
                    c.server_error(format!(
                        "restoring range {range} on {target} from {source}: {error}; run \
                         `ringdb removenode {node}` again to finish"
                    ))
                })?;
        }
        copies += 1;
    }
    Ok(Some(copies))
}

/// Copies `range` from `source` to `target` (this node fetches it itself,
/// another node is asked to).
async fn copy_range(
    c: &Topology,
    source: &NodeId,
    target: &NodeId,
    (group, range): (&Group, TokenRange),
) -> Result<(), TaskError> {
    if *target == c.me {
        let mut throttle = streaming::Throttle::new(c.streaming.bytes_per_sec());
        return streaming::fetch(
            &*c.peers,
            &c.storage,
            source,
            group,
            range,
            None,
            &mut throttle,
            |_| Ok(()),
        )
        .await
        .map(|_| ());
    }
    let request = PeerRequest::FetchRange {
        range,
        source: source.clone(),
        placement: group.wire(),
    };
    let deadline = Instant::now() + RANGE_COPY_TIMEOUT;
    match ask(c.peers.as_ref(), target, request, deadline).await {
        Ok(PeerReply::Applied) => Ok(()),
        Ok(other) => Err(TaskError::unexpected(target, &other)),
        Err(error) => Err(error),
    }
}

/// Waits until this node's view of `node` is `what` (the gossip task
/// publishes a change a moment after it accepted it).
async fn wait_for_view(
    c: &Topology,
    node: &NodeId,
    what: &str,
    mut condition: impl FnMut(&View) -> bool,
) -> Result<(), RequestError> {
    if c.membership
        .wait_for(VIEW_WAIT, |view| condition(view))
        .await
    {
        return Ok(());
    }
    Err(c.server_error(format!(
        "{node} is not {what} in this node's view {VIEW_WAIT:?} after the change; run \
         `ringdb removenode {node}` again"
    )))
}

/// How long a removal waits for its own gossip in this node's view.
const VIEW_WAIT: Duration = Duration::from_secs(30);
/// How long one range copy for a removal may take.
const RANGE_COPY_TIMEOUT: Duration = Duration::from_secs(3600);
