//! `removenode`: a dead node's removal from the ring, and the copies that
//! restore its ranges' replicas from the survivors, with the plan kept in
//! the data directory so that a removal cut short is finished.

use std::sync::Arc;
use std::time::Duration;

use ringdb_gossip::Status;
use ringdb_proto::{PeerReply, PeerRequest, RequestError};
use ringdb_ring::{Location, NodeId, Ring, Token, TokenRange};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::info;

use super::{Topology, one_change_at_a_time};
use crate::error::{TaskError, ask};
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
    /// Whether the node is already marked removed.
    pub announced: bool,
    /// It was joining: nothing to restore.
    pub joining: bool,
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
    if !joining {
        one_change_at_a_time(c, &view)?;
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
        announced: false,
        joining,
    })
}

/// Removes a dead node and restores its ranges' replicas from survivors,
/// keeping its progress in the data directory (run as an operation, see
/// [`start`]).
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
            .remove(node.clone(), Status::Joining)
            .await
            .map_err(|e| RequestError::invalid(e.to_string()))?;
        info!(removed = %node, "removed a dead joining node and its pending ranges");
        return Ok(format!(
            "{node} was joining: removed, with its pending ranges (it held no \
             replica yet; nothing to restore)"
        ));
    }
    announce_removal(c, &mut removal).await?;
    // Copy only once this node's view has the ring without the node, so
    // that writes from then on reach the new replicas too.
    wait_removed(c, &node).await?;
    let mut before = c.membership.view().ring.clone();
    before
        .add_node(
            node.clone(),
            removal.location.clone(),
            removal.tokens.clone(),
        )
        .map_err(|e| c.server_error(format!("the ring before the removal: {e}")))?;
    let mut after = before.clone();
    after.remove_node(&node);
    let started = Instant::now();
    let (mut ranges, mut copies) = (0, 0);
    let affected: Vec<(TokenRange, Vec<NodeId>)> = before
        .replicated_ranges(&c.replication)
        .into_iter()
        .filter(|(_, replicas)| replicas.contains(&node))
        .collect();
    let total = affected.len();
    for (range, replicas) in affected {
        ranges += 1;
        if removal.done.contains(&range) {
            continue;
        }
        c.operations
            .progress(format!("restoring range {ranges} of {total}"))
            .await;
        copies += restore_range(c, &node, range, &replicas, &after).await?;
        removal.done.push(range);
        save_removal(c, Some(&removal))?;
    }
    save_removal(c, None)?;
    let members = after.members().len();
    Ok(removed_summary(c, &node, started, ranges, copies, members))
}

/// What `ringdb removenode` reports once `node` is removed.
fn removed_summary(
    c: &Topology,
    node: &NodeId,
    started: Instant,
    ranges: usize,
    copies: usize,
    members: usize,
) -> String {
    let factor = c.replication.total_factor();
    let elapsed = started.elapsed().as_secs_f64();
    if members < factor {
        format!(
            "{node} removed in {elapsed:.1} s; {ranges} of its ranges copied to {copies} new \
             replicas, but only {members} nodes remain for replication factor {factor}: every \
             range has {members} of {factor} replicas (consistency levels that need {factor} \
             fail) until nodes are added"
        )
    } else {
        format!(
            "{node} removed in {elapsed:.1} s; {ranges} of its ranges restored to full \
             replication ({factor} of {factor} replicas) by {copies} copies"
        )
    }
}

/// Gossips the removal (keeping the plan first, so that a restart resumes
/// it), or, resuming, gossips it again if it was cut short before.
async fn announce_removal(c: &Topology, removal: &mut Removal) -> Result<(), RequestError> {
    let node = removal.node.clone();
    if !removal.announced {
        let view = c.membership.view();
        let status = view.status(&node).unwrap_or(Status::Normal);
        removal.announced = true;
        save_removal(c, Some(removal))?;
        if let Err(error) = c.gossip.remove(node.clone(), status).await {
            save_removal(c, None)?;
            return Err(RequestError::invalid(error.to_string()));
        }
        info!(removed = %node, "removed a dead node; restoring its replicas");
        return Ok(());
    }
    info!(removed = %node, done = removal.done.len(), "resuming the restore of a removed node's replicas");
    // Cut short between keeping the plan and the removal's gossip.
    let status = c.membership.view().status(&node);
    if let Some(status) = status.filter(|s| *s != Status::Removed) {
        c.gossip
            .remove(node.clone(), status)
            .await
            .map_err(|e| RequestError::invalid(e.to_string()))?;
    }
    Ok(())
}

/// Copies `range`, which the removed `node` replicated with `replicas`,
/// from every surviving replica to each replica the ring `after` the
/// removal adds; returns how many copies it made. Every survivor, not one:
/// a write acknowledged by the removed node and one survivor is on that
/// survivor alone, and copying from another would leave it on one replica
/// of three (a quorum read could miss it, a delete could come back). So
/// every survivor must be up.
async fn restore_range(
    c: &Topology,
    node: &NodeId,
    range: TokenRange,
    replicas: &[NodeId],
    after: &Ring,
) -> Result<usize, RequestError> {
    let survivors: Vec<&NodeId> = replicas.iter().filter(|r| *r != node).collect();
    if let Some(down) = survivors.iter().find(|r| ***r != c.me && !c.is_up(r)) {
        return Err(c.server_error(format!(
            "range {range}: its replica {down} is down, and it may hold writes no other \
             replica has; run `ringdb removenode {node}` again once it is up"
        )));
    }
    if survivors.is_empty() {
        return Err(c.server_error(format!(
            "range {range} has no replica left to copy from: its data is lost with {node}"
        )));
    }
    let new = after
        .replicas(range.end, &c.replication)
        .into_iter()
        .filter(|n| !replicas.contains(n));
    let mut copies = 0;
    for target in new {
        for source in &survivors {
            copy_range(c, source, &target, range)
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
    Ok(copies)
}

/// Copies `range` from `source` to `target` (this node fetches it itself,
/// another node is asked to).
async fn copy_range(
    c: &Topology,
    source: &NodeId,
    target: &NodeId,
    range: TokenRange,
) -> Result<(), TaskError> {
    if *target == c.me {
        let mut throttle = streaming::Throttle::new(c.streaming.bytes_per_sec());
        return streaming::fetch(
            &*c.peers,
            &c.storage,
            source,
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
    };
    let deadline = Instant::now() + RANGE_COPY_TIMEOUT;
    match ask(c.peers.as_ref(), target, request, deadline).await {
        Ok(PeerReply::Applied) => Ok(()),
        Ok(other) => Err(TaskError::unexpected(target, &other)),
        Err(error) => Err(error),
    }
}

/// Waits until this node's view has `node` out of the ring (the gossip
/// task publishes a removal a moment after it accepted it).
async fn wait_removed(c: &Topology, node: &NodeId) -> Result<(), RequestError> {
    let give_up = Instant::now() + REMOVED_WAIT;
    loop {
        let view = c.membership.view();
        if !view.ring.members().contains_key(node) && view.status(node) == Some(Status::Removed) {
            return Ok(());
        }
        if Instant::now() >= give_up {
            return Err(c.server_error(format!(
                "{node} is still in this node's ring {REMOVED_WAIT:?} after its removal; run \
                 `ringdb removenode {node}` again"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long a removal waits for the ring without the removed node.
const REMOVED_WAIT: Duration = Duration::from_secs(30);
/// How long one range copy for a removal may take.
const RANGE_COPY_TIMEOUT: Duration = Duration::from_secs(3600);
