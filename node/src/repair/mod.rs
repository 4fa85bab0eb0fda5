//! Anti-entropy wiring: the Merkle trees kept in step with the ring, the
//! exchange of a range's tree with another replica over the transport, the
//! background rounds, `ringdb repair`, and tombstone purging.
//!
//! **Trees.** Storage keeps one tree per vnode range this node replicates
//! (`ringdb_antientropy::tree` has the shape and why), per placement group
//! (`placement.rs`: the tables one replication places, over the ranges it
//! gives this node), updated by every write under the row lock. A task
//! (`maintain.rs`) rebuilds them from a snapshot scan at start and whenever
//! the ranges this node replicates change (a node joined or left) or a
//! group's tables do (a keyspace of another replication, or a table in
//! one, was created, altered or dropped); exchanges wait until they are
//! ready, and name their group to the peer.
//!
//! **An exchange** of range R with replica P: ask P's root, descend into
//! the differing subtrees (`Exchange`), fetch P's items of the differing
//! leaves and compare them with ours (`diff_items`), then fetch the rows P
//! has in another version and send ours, both merged with causality
//! (`DvvSet::sync`). Rows move at `antientropy.max_mib_per_sec`.
//!
//! **Tombstones** are purged at the end of a range's round in which every
//! other replica was compared with and repaired, and nothing came here from
//! them: each then holds the tombstone or something that supersedes it (a
//! tombstone fetched from the last replica compared could still be missing
//! on the first; the next round purges it). No purge while a topology
//! change is under way: a pending replica is not compared. A repair of one table
//! reconciles only that table's rows, so it purges only that table's
//! tombstones. Only rows that are nothing
//! but tombstones older than `antientropy.tombstone_grace_secs` go, and a
//! replica that receives such a row from a repair where it has nothing
//! does not store it again (a decommissioning node's handover is stored as
//! it is: the sender keeps no copy). The grace is at least the hint window, so no hint older than the
//! tombstone can still be replayed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringdb_antientropy::exchange::{Exchange, Step, diff_items};
use ringdb_antientropy::tree::{Hash, Tree, Trees};
use ringdb_proto::replication_cql;
use ringdb_proto::{
    PeerReply, PeerRequest, RepairSummary, RequestError, StreamedRow, TableId, TreeItem,
    VersionedRow,
};
use ringdb_ring::{NodeId, Replication, TokenRange};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::cleanup::Cleanup;
use crate::error::{self, TaskError};
use crate::placement::Group;
use crate::replica::Replica;
use crate::storage::{GroupTrees, RowKey, Storage, StorageError, StoredRow, purgeable};
use crate::streaming::{self, Throttle};

mod maintain;

pub(crate) use maintain::maintain_trees;

/// How long the ring must stay still before the trees follow it.
const TREE_SETTLE: Duration = Duration::from_secs(2);
/// How long one exchange message may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Most rows fetched per message (a page also ends at `PAGE_BYTES`).
const ROWS_PER_MESSAGE: usize = 256;
/// Most bytes of keys asked for in one message.
const KEY_BYTES_PER_MESSAGE: usize = 1 << 20;
/// How long an exchange waits for a replica to build its trees.
const TREES_WAIT: Duration = Duration::from_secs(60);
/// How long after a failed tree build it is tried again.
const TREE_RETRY: Duration = Duration::from_secs(10);
/// What a replica answers while it builds its trees.
const STILL_BUILDING: &str = "is still building its Merkle trees";
/// The most entries a node keeps in its running totals' lists.
const KEPT_ENTRIES: usize = 1000;

/// Anti-entropy as a service: the node's [`Replica`], what repairs did
/// since the node started, and cleanup (run when a topology change took
/// ranges from this node).
pub(crate) struct AntiEntropy {
    pub(crate) replica: Arc<Replica>,
    /// What repairs did since the node started; its lists keep the last
    /// [`KEPT_ENTRIES`].
    pub(crate) repairs: Mutex<RepairSummary>,
    /// How many range exchanges found a difference, and how many failed,
    /// since the node started (the lists above are trimmed; these are not).
    pub(crate) differing: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) cleanup: Arc<Cleanup>,
}

impl std::ops::Deref for AntiEntropy {
    type Target = Replica;

    fn deref(&self) -> &Replica {
        &self.replica
    }
}

/// Tombstones older than this (microseconds since the epoch) may be purged.
pub(crate) fn purge_cutoff(coordinator: &Replica) -> i64 {
    let seconds = coordinator.antientropy.tombstone_grace_secs;
    let grace = i64::try_from(seconds.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    coordinator.now_micros().saturating_sub(grace)
}

/// This node's tree of exactly `range` in the group a message names
/// ([`Group::wire`]), or why there is none. A range this node replicates
/// in its current ring but has no tree for yet means its trees are being
/// rebuilt after a ring or schema change: retryable, like a first build.
pub(crate) fn local_tree<'a>(
    coordinator: &Replica,
    trees: &'a GroupTrees,
    placement: Option<&Replication>,
    range: TokenRange,
) -> Result<&'a Tree, RequestError> {
    let me = &coordinator.me;
    if let Some(detail) = coordinator.storage.damage_found() {
        return Err(coordinator.damaged(&detail));
    }
    if !trees.is_ready() {
        return Err(RequestError::overloaded(format!("{me} {STILL_BUILDING}")));
    }
    let tree = trees
        .group(placement)
        .and_then(|(_, trees)| trees.tree(range));
    tree.ok_or_else(|| {
        let wanted = wanted_trees(coordinator);
        let group = wanted.iter().find(|(g, _)| g.wire().as_ref() == placement);
        if group.is_some_and(|(_, ranges)| ranges.contains(&range)) {
            RequestError::overloaded(format!("{me} {STILL_BUILDING} for its new ranges"))
        } else {
            RequestError::invalid(format!(
                "{me} keeps no tree for {range}{}: it does not replicate it, or the nodes \
                 disagree about the ring or the schema",
                placement.map_or(String::new(), |r| format!(" of {}", replication_cql(r)))
            ))
        }
    })
}

/// The group a message names ([`Group::wire`]) in this node's schema.
pub(crate) fn local_group(
    coordinator: &Replica,
    placement: Option<&Replication>,
) -> Result<Group, RequestError> {
    coordinator.placement.now().group(placement).ok_or_else(|| {
        RequestError::overloaded(format!(
            "{} places no table by {} yet: its schema is behind",
            coordinator.me,
            placement.map_or("the cluster's replication".into(), replication_cql)
        ))
    })
}

/// Each placement group and the ranges this node should keep its trees
/// for in its current ring, in token order.
pub(super) fn wanted_trees(coordinator: &Replica) -> Vec<(Group, Vec<TokenRange>)> {
    let view = coordinator.membership.view();
    let member = view.ring.members().contains_key(&coordinator.me);
    let groups = coordinator.placement.now().groups();
    (groups.into_iter())
        .map(|group| {
            let mut ranges = if member {
                view.ring.ranges_of(&coordinator.me, &group.replication)
            } else {
                Vec::new()
            };
            ranges.sort_by_key(|range| range.end);
            (group, ranges)
        })
        .collect()
}

/// The stored rows among `keys` (storage keys), as they are stored, in
/// the order of `keys`, up to about `max_bytes` (at least one row); and
/// whether keys were left unread for that.
pub(crate) fn read_rows(
    storage: &Storage,
    keys: Vec<serde_bytes::ByteBuf>,
    max_bytes: usize,
) -> Result<(Vec<StreamedRow>, bool), StorageError> {
    let mut rows = Vec::new();
    let mut bytes = 0;
    let count = keys.len();
    for (i, key) in keys.into_iter().enumerate() {
        if bytes >= max_bytes {
            return Ok((rows, i < count));
        }
        let key = key.into_vec();
        if let Some(versions) = storage.get_encoded(&key)? {
            bytes += key.len() + versions.len();
            rows.push(StreamedRow {
                key,
                versions: VersionedRow(versions),
            });
        }
    }
    Ok((rows, false))
}

/// `keys` in groups for one message each: at most [`ROWS_PER_MESSAGE`]
/// keys and about [`KEY_BYTES_PER_MESSAGE`] bytes of them.
fn key_groups(keys: &[Vec<u8>]) -> Vec<Vec<serde_bytes::ByteBuf>> {
    let mut groups: Vec<Vec<serde_bytes::ByteBuf>> = Vec::new();
    let mut bytes = 0;
    for key in keys {
        match groups.last_mut() {
            Some(group)
                if group.len() < ROWS_PER_MESSAGE && bytes + key.len() <= KEY_BYTES_PER_MESSAGE =>
            {
                group.push(serde_bytes::ByteBuf::from(key.clone()));
                bytes += key.len();
            }
            _ => {
                groups.push(vec![serde_bytes::ByteBuf::from(key.clone())]);
                bytes = key.len();
            }
        }
    }
    groups
}

fn encoded_len(message: &impl Serialize) -> u64 {
    rmp_serde::to_vec_named(message).map_or(0, |bytes| bytes.len() as u64)
}

/// Compares `ranges` (every range with a tree when empty) with each other
/// replica and repairs what differs; only `table`'s rows when given.
pub(crate) async fn repair(
    coordinator: &Arc<AntiEntropy>,
    table: Option<TableId>,
    ranges: Vec<TokenRange>,
    bytes_per_sec: Option<f64>,
    deadline: Instant,
) -> Result<RepairSummary, RequestError> {
    let trees = ready_trees(coordinator, deadline).await?;
    let view = coordinator.membership.view();
    let mut round = Round {
        summary: RepairSummary::default(),
        throttle: Throttle::new(bytes_per_sec),
        deadline,
        still_building: Vec::new(),
    };
    for (group, group_trees) in trees.groups() {
        if table.is_some_and(|table| !group.holds(table)) {
            continue;
        }
        // Of the ranges asked for, those this group keeps a tree for.
        let mine: Vec<TokenRange> = (group_trees.ranges())
            .filter(|range| ranges.is_empty() || ranges.contains(range))
            .collect();
        for range in mine {
            let replicas = view.ring.replicas(range.end, &group.replication);
            let at = (group, &**group_trees);
            repair_range(coordinator, at, range, &replicas, table, &mut round).await?;
        }
    }
    for range in ranges {
        if !trees.groups().any(|(_, trees)| trees.tree(range).is_some()) {
            round.summary.ranges_failed.push((
                range,
                coordinator.me.clone(),
                "this node keeps no tree for the range (not a replica of it)".into(),
            ));
        }
    }
    let summary = &round.summary;
    (coordinator.differing).fetch_add(summary.ranges_differing.len() as u64, Ordering::Relaxed);
    (coordinator.failed).fetch_add(summary.ranges_failed.len() as u64, Ordering::Relaxed);
    let mut totals = coordinator.repairs.lock().expect("repairs");
    totals.add(round.summary.clone());
    let excess = totals.ranges_differing.len().saturating_sub(KEPT_ENTRIES);
    totals.ranges_differing.drain(..excess);
    let excess = totals.ranges_failed.len().saturating_sub(KEPT_ENTRIES);
    totals.ranges_failed.drain(..excess);
    Ok(round.summary)
}

/// This node's Merkle trees, once built for every range it replicates;
/// overloaded if they are still being built after a while.
async fn ready_trees(
    coordinator: &Arc<AntiEntropy>,
    deadline: Instant,
) -> Result<Arc<GroupTrees>, RequestError> {
    let mut trees = coordinator.storage.trees();
    let give_up = Instant::now() + TREES_WAIT;
    while !trees.is_ready() || trees.plan() != wanted_trees(coordinator) {
        if Instant::now() >= give_up.min(deadline) {
            return Err(RequestError::overloaded(format!(
                "{} {STILL_BUILDING}; retry in a moment",
                coordinator.me
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        trees = coordinator.storage.trees();
    }
    Ok(trees)
}

/// Repairs one range with each other of its `replicas`; purges its tombstones past
/// the grace when every replica was reconciled and nothing changed here.
async fn repair_range(
    coordinator: &Arc<AntiEntropy>,
    (group, trees): (&Group, &Trees),
    range: TokenRange,
    replicas: &[NodeId],
    table: Option<TableId>,
    round: &mut Round,
) -> Result<(), RequestError> {
    if trees.tree(range).is_none() || !replicas.contains(&coordinator.me) {
        round.summary.ranges_failed.push((
            range,
            coordinator.me.clone(),
            "this node keeps no tree for the range (not a replica of it)".into(),
        ));
        return Ok(());
    }
    let holds = Holds {
        group: group.clone(),
        table,
    };
    // The tombstones that may be purged after the round: those here before
    // it began, so that every exchange saw them. One written during the
    // round (stamped long ago by a coordinator whose clock is behind, so
    // already past the grace) may have missed a replica compared earlier.
    let before = purge_cutoff(coordinator);
    let candidates = coordinator
        .storage
        .blocking({
            let holds = holds.clone();
            move |storage| purge_candidates(storage, range, holds, before)
        })
        .await
        .map_err(|e| coordinator.server_error(e.to_string()))?;
    let mut complete = true;
    // Rows the exchanges changed here: a row that came from a later
    // replica may be missing on one compared before it.
    let mut changed_here = 0;
    for peer in replicas.iter().filter(|r| **r != coordinator.me) {
        let refusal = if Instant::now() >= round.deadline {
            Some("the repair ran out of time".to_string())
        } else if round.still_building.contains(peer) {
            Some(format!("{peer} {STILL_BUILDING}"))
        } else {
            None
        };
        if let Some(why) = refusal {
            round.summary.ranges_failed.push((range, peer.clone(), why));
            complete = false;
            continue;
        }
        round.summary.ranges_compared += 1;
        let at = (group, trees);
        match exchange_when_ready(coordinator, at, range, peer, &holds, round).await {
            Ok(changed) => changed_here += changed,
            Err(error) => {
                debug!(%range, %peer, %error, "range exchange failed");
                round
                    .summary
                    .ranges_failed
                    .push((range, peer.clone(), error.to_string()));
                complete = false;
            }
        }
    }
    // Purge only after a round that reconciled every replica and changed
    // nothing here, and not while a topology change is under way (a
    // pending replica, not compared, may have streamed a row the tombstone
    // supersedes).
    // Nor when the ring changed during the round: a node that joined
    // meanwhile may have streamed the row from a replica that lacked the
    // tombstone, and it was not compared.
    let now = coordinator.membership.view();
    let settled =
        now.future.is_none() && now.ring.replicas(range.end, &group.replication) == replicas;
    // Nor while the live nodes' schemas disagree: one may count this
    // group's tables otherwise, and have compared them with other nodes.
    let agreed = coordinator.schema_disagreement().is_none();
    if complete && changed_here == 0 && settled && agreed {
        let purged = coordinator
            .storage
            .blocking(move |storage| purge_tombstones(storage, candidates, before))
            .await
            .map_err(|e| coordinator.server_error(e.to_string()))?;
        round.summary.tombstones_purged += purged;
    }
    Ok(())
}

/// [`exchange`] with a live peer, waiting for a replica that has just
/// started to build its trees (a scan of its data) rather than give up.
async fn exchange_when_ready(
    coordinator: &Arc<AntiEntropy>,
    at: (&Group, &Trees),
    range: TokenRange,
    peer: &NodeId,
    holds: &Holds,
    round: &mut Round,
) -> Result<u64, TaskError> {
    let mut outcome = Err(TaskError::Refused(format!("{peer} is down")));
    let give_up = Instant::now() + TREES_WAIT;
    while coordinator.is_up(peer) {
        outcome = exchange(coordinator, at, range, peer, holds, round).await;
        // Its trees lag (it answers Overloaded until they are built).
        if !outcome.as_ref().is_err_and(TaskError::is_overloaded) {
            break;
        }
        if Instant::now() >= give_up.min(round.deadline) {
            round.still_building.push(peer.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    outcome
}

/// One repair round's progress: what it found, its pace, and when it must
/// have answered.
struct Round {
    summary: RepairSummary,
    throttle: Throttle,
    deadline: Instant,
    /// Peers still building their trees when the round gave up waiting for
    /// them: their other ranges fail at once rather than wait again each.
    still_building: Vec<NodeId>,
}

/// Sends one exchange message and counts its bytes both ways; waits no
/// longer than a step may take, nor past the round's deadline (its caller
/// stops waiting then).
async fn ask(
    coordinator: &Replica,
    peer: &NodeId,
    request: PeerRequest,
    round: &mut Round,
) -> Result<PeerReply, TaskError> {
    let summary = &mut round.summary;
    summary.bytes_sent += encoded_len(&request);
    let deadline = (Instant::now() + STEP_TIMEOUT).min(round.deadline);
    let reply = error::ask(coordinator.peers.as_ref(), peer, request, deadline).await?;
    summary.bytes_sent += encoded_len(&reply);
    Ok(reply)
}

/// One range's exchange with one replica: the differing leaves, then the
/// rows that differ, fetched here and sent there; returns how many rows
/// changed here.
async fn exchange(
    coordinator: &Arc<AntiEntropy>,
    (group, trees): (&Group, &Trees),
    range: TokenRange,
    peer: &NodeId,
    holds: &Holds,
    round: &mut Round,
) -> Result<u64, TaskError> {
    let placement = group.wire();
    if let Some(detail) = coordinator.storage.damage_found() {
        return Err(coordinator.damaged(&detail).into());
    }
    let Some(tree) = trees.tree(range) else {
        return Err(TaskError::Refused(format!("no tree for {range} here")));
    };
    let Some(leaves) = differing_leaves(coordinator, (&placement, tree), peer, round).await? else {
        return Ok(0);
    };
    round.summary.ranges_differing.push((range, peer.clone()));
    let asked = Asked {
        placement,
        table: holds.table,
        range,
    };
    let mut theirs = their_items(coordinator, &asked, peer, &leaves, round).await?;
    theirs.sort_by(|a, b| a.key.cmp(&b.key));
    let holds = holds.clone();
    let mine = coordinator
        .storage
        .blocking(move |storage| {
            storage.leaf_items(range, &leaves, |t| holds.holds(t), None, usize::MAX)
        })
        .await?
        .0;
    let diff = diff_items(&mine, &theirs);
    let before = purge_cutoff(coordinator);
    let mut changed_here = 0;
    for group in key_groups(&diff.fetch) {
        changed_here += fetch_rows(coordinator, peer, group, before, round).await?;
    }
    for group in key_groups(&diff.send) {
        send_rows(coordinator, peer, group, round).await?;
    }
    round.summary.keys_repaired += diff.keys() as u64;
    Ok(changed_here)
}

/// Descends the two Merkle trees of a range from the root (this node's
/// `tree`, and the peer's of the group `placement` names); the leaves that
/// differ, or `None` when the trees are the same.
async fn differing_leaves(
    coordinator: &Arc<AntiEntropy>,
    (placement, tree): (&Option<Replication>, &Tree),
    peer: &NodeId,
    round: &mut Round,
) -> Result<Option<Vec<u32>>, TaskError> {
    let (mut exchange, mut step) = Exchange::start();
    loop {
        match step {
            Step::Same => return Ok(None),
            Step::Items { leaves } => return Ok(Some(leaves)),
            Step::Hashes { level, nodes } => {
                let request = PeerRequest::TreeHashes {
                    range: tree.range(),
                    level,
                    nodes,
                    placement: placement.clone(),
                };
                let hashes = match ask(coordinator, peer, request, round).await? {
                    PeerReply::Hashes(bytes) if bytes.len() % 32 == 0 => bytes
                        .chunks_exact(32)
                        .map(|chunk| Hash::try_from(chunk).expect("32 bytes"))
                        .collect::<Vec<Hash>>(),
                    other => return Err(TaskError::unexpected(peer, &other)),
                };
                step = exchange
                    .on_hashes(tree, &hashes)
                    .map_err(|e| TaskError::Protocol {
                        node: peer.clone(),
                        what: e.to_string(),
                    })?;
            }
        }
    }
}

/// Which rows a repair reconciles: its group's, only one table's when
/// given.
#[derive(Clone)]
struct Holds {
    group: Group,
    table: Option<TableId>,
}

impl Holds {
    fn holds(&self, table: TableId) -> bool {
        self.group.holds(table) && self.table.is_none_or(|only| table == only)
    }
}

/// The items a repair asks a peer for: of which group, table and range.
struct Asked {
    placement: Option<Replication>,
    table: Option<TableId>,
    range: TokenRange,
}

/// The peer's items (key and version digest) of `leaves`, a page at a time.
async fn their_items(
    coordinator: &Arc<AntiEntropy>,
    asked: &Asked,
    peer: &NodeId,
    leaves: &[u32],
    round: &mut Round,
) -> Result<Vec<TreeItem>, TaskError> {
    let mut theirs = Vec::new();
    let (mut remaining, mut after) = (leaves.to_vec(), None);
    loop {
        let request = PeerRequest::LeafItems {
            range: asked.range,
            leaves: remaining.clone(),
            table: asked.table,
            after: after.take(),
            placement: asked.placement.clone(),
        };
        match ask(coordinator, peer, request, round).await? {
            PeerReply::Items { items, resume } => {
                theirs.extend(items);
                let Some((leaf, key)) = resume else {
                    return Ok(theirs);
                };
                let Some(at) = remaining.iter().position(|l| *l == leaf) else {
                    return Err(TaskError::Protocol {
                        node: peer.clone(),
                        what: format!("resumed at leaf {leaf}, which was not asked"),
                    });
                };
                remaining.drain(..at);
                after = Some(key);
            }
            other => return Err(TaskError::unexpected(peer, &other)),
        }
    }
}

/// Reads the rows of `keys` from the peer, a page at a time, and merges
/// them here (tombstones older than `before` as the purge would leave
/// them); returns how many changed here.
async fn fetch_rows(
    coordinator: &Arc<AntiEntropy>,
    peer: &NodeId,
    mut keys: Vec<serde_bytes::ByteBuf>,
    before: i64,
    round: &mut Round,
) -> Result<u64, TaskError> {
    let mut changed_here = 0;
    while !keys.is_empty() {
        let request = PeerRequest::ReadRows { keys: keys.clone() };
        let (rows, more) = match ask(coordinator, peer, request, round).await? {
            PeerReply::Rows { rows, more } => (rows, more),
            other => return Err(TaskError::unexpected(peer, &other)),
        };
        // What is left: the keys after the last row sent.
        keys = match (more, rows.last()) {
            (true, Some(last)) => {
                let at = keys
                    .iter()
                    .position(|k| **k == *last.key)
                    .map_or(keys.len(), |i| i + 1);
                keys.split_off(at)
            }
            (true, None) => {
                return Err(TaskError::Protocol {
                    node: peer.clone(),
                    what: "an empty page with more to come".into(),
                });
            }
            (false, _) => Vec::new(),
        };
        let stored = coordinator
            .storage
            .blocking(move |storage| streaming::store(storage, &rows, Some(before)))
            .await?;
        changed_here += stored.changed;
        round.throttle.moved(stored.bytes).await;
    }
    Ok(changed_here)
}

/// Sends this node's rows of `keys` to the peer, in batches.
async fn send_rows(
    coordinator: &Arc<AntiEntropy>,
    peer: &NodeId,
    keys: Vec<serde_bytes::ByteBuf>,
    round: &mut Round,
) -> Result<(), TaskError> {
    let rows = coordinator
        .storage
        .blocking(move |storage| read_rows(storage, keys, usize::MAX))
        .await?
        .0;
    for batch in streaming::batches(rows) {
        let bytes: u64 = batch
            .iter()
            .map(|row| (row.key.len() + row.versions.0.len()) as u64)
            .sum();
        let request = PeerRequest::StoreRows {
            rows: batch,
            handover: false,
        };
        match ask(coordinator, peer, request, round).await? {
            PeerReply::Applied => {}
            other => return Err(TaskError::unexpected(peer, &other)),
        }
        round.throttle.moved(bytes).await;
    }
    Ok(())
}

/// The rows of `range` that a round reconciles (`holds`) and that are
/// nothing but tombstones older than `before`, as they are now.
fn purge_candidates(
    storage: &Storage,
    range: TokenRange,
    holds: Holds,
    before: i64,
) -> Result<Vec<(RowKey, StoredRow)>, StorageError> {
    storage
        .scan(range)
        .filter_map(|item| match item {
            Ok((key, row)) if holds.holds(key.table) && purgeable(&row, before) => {
                Some(Ok((key, row)))
            }
            Ok(_) => None,
            Err(error) => Some(Err(error)),
        })
        .collect()
}

/// Purges each of `candidates` that is still as it was (the round that
/// just ended saw it so); returns how many. Storage remembers the dots
/// this node issued for each, so that a later write of the row never
/// issues one of them again.
fn purge_tombstones(
    storage: &Storage,
    candidates: Vec<(RowKey, StoredRow)>,
    before: i64,
) -> Result<u64, StorageError> {
    let mut purged = 0;
    for (key, seen) in candidates {
        // Checked again under the row lock: a write may have come since.
        if storage.purge(&key, |current| {
            *current == seen && purgeable(current, before)
        })? {
            purged += 1;
        }
    }
    Ok(purged)
}

/// Background anti-entropy: a round over every range each interval.
pub(crate) async fn run_background(coordinator: Arc<AntiEntropy>, cancel: CancellationToken) {
    let config = coordinator.antientropy.clone();
    if !config.enabled {
        // A task that ends stops the node: wait for the end instead.
        return cancel.cancelled().await;
    }
    let interval = Duration::from_secs(config.interval_secs);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if !coordinator.storage.trees().is_ready() {
            continue;
        }
        let started = Instant::now();
        let deadline = started + interval;
        match repair(
            &coordinator,
            None,
            Vec::new(),
            config.bytes_per_sec(),
            deadline,
        )
        .await
        {
            Ok(summary) if !summary.ranges_differing.is_empty() => info!(
                compared = summary.ranges_compared,
                differing = summary.ranges_differing.len(),
                failed = summary.ranges_failed.len(),
                keys = summary.keys_repaired,
                bytes = summary.bytes_sent,
                purged = summary.tombstones_purged,
                ms = started.elapsed().as_millis() as u64,
                "anti-entropy round repaired differences"
            ),
            Ok(summary) => debug!(
                compared = summary.ranges_compared,
                failed = summary.ranges_failed.len(),
                purged = summary.tombstones_purged,
                "anti-entropy round: replicas agree"
            ),
            Err(error) => debug!(%error, "anti-entropy round skipped"),
        }
    }
}
