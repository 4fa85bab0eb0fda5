//! Hinted handoff: writes kept for replicas that missed them, replayed when
//! they are back (DESIGN.md "Write path" step 4).
//!
//! The coordinator stores a hint for every replica that is down when a
//! write arrives, or that has not acknowledged by the write's deadline; a
//! fallback node stores one when a sloppy-quorum write asks it to. A hint is
//! the row's sibling set as the coordinator sent it, so replaying it is an
//! ordinary causal merge and never revives a delete. The rules (window,
//! size cap, counters) are `ringdb_antientropy::hints`; this module keeps
//! the queue in RocksDB and runs the replay:
//!
//! - a task looks every second, and whenever the membership view changes,
//!   for targets with hints that are up (failure detector and connection);
//!   it replays their hints oldest first at `hints.replay_kib_per_sec`,
//!   deleting each once the target acknowledged it;
//! - hints of a target that left the ring (decommissioned or removed) go to
//!   the row's replicas now (redirected), stored as new hints for those of
//!   them that are down;
//! - hints older than the window are dropped when met, and a minute sweep
//!   drops them for targets that stay down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringdb_antientropy::hints::{
    Due, HintCounters, HintLimits, HintQueue, HintRecord, HintRow, NotStored,
};
use ringdb_gossip::Status;
use ringdb_proto::{PartitionVersions, PeerReply, PeerRequest, VersionedRow};
use ringdb_ring::{NodeId, Ring};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::HintsConfig;
use crate::error::{TaskError, ask};
use crate::membership::View;
use crate::replica::Replica;
use crate::storage::{RowKey, Storage, StorageError, decode_versions};
use crate::streaming::Throttle;
use crate::world::Clock;

/// Hints read from storage at a time during replay.
const REPLAY_BATCH: usize = 64;
/// How long one replayed hint may take.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often targets that stay down are swept for expired hints.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The node's hints.
pub(crate) struct Hints {
    config: HintsConfig,
    queue: Mutex<HintQueue<Arc<Storage>>>,
    /// When each node was first seen down (since this process started).
    down_since: Mutex<BTreeMap<NodeId, Instant>>,
    clock: Arc<dyn Clock>,
}

impl Hints {
    /// Opens the queue over the hints stored in `storage`.
    pub(crate) fn open(
        storage: Arc<Storage>,
        config: HintsConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Hints, StorageError> {
        let limits = HintLimits {
            window: config.window(),
            max_bytes_per_target: config.max_mib_per_target.saturating_mul(1 << 20),
        };
        Ok(Hints {
            config,
            queue: Mutex::new(HintQueue::open(storage, limits)?),
            down_since: Mutex::new(BTreeMap::new()),
            clock,
        })
    }

    /// Whether hints are written and replayed.
    pub(crate) fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Stores a hint of `rows` (encoded sibling sets of rows of one
    /// partition, kept as one hint and replayed whole) for `target`. Blocks
    /// on storage: call it from a blocking thread when writes wait for the
    /// disk. Returns whether the hint was stored (not over the window or
    /// the cap).
    /// `created_micros` is when the hint was first written (a hint handed
    /// over by a leaving node keeps its age); `None`: now.
    pub(crate) fn store(
        &self,
        target: &NodeId,
        rows: &PartitionVersions,
        created_micros: Option<i64>,
    ) -> Result<bool, StorageError> {
        let down_for = self
            .down_since
            .lock()
            .expect("down_since")
            .get(target)
            .map_or(Duration::ZERO, |since| since.elapsed());
        let mut keyed = rows.row_ids().map(|(id, versions)| {
            let key = RowKey::new(id.table, id.partition, id.clustering).encode();
            HintRow {
                key,
                versions: versions.0.clone(),
            }
        });
        let first = keyed.next().expect("a hint holds a row");
        let record = HintRecord {
            key: first.key,
            versions: first.versions,
            created_micros: created_micros.unwrap_or_else(|| self.clock.now_micros()),
            more: keyed.collect(),
        };
        let stored =
            self.queue
                .lock()
                .expect("hint queue")
                .store(target.as_str(), &record, down_for)?;
        match stored {
            Ok(()) => Ok(true),
            Err(NotStored::DownTooLong) => {
                debug!(%target, "not hinted: down longer than the hint window");
                Ok(false)
            }
            Err(NotStored::OverCap) => {
                debug!(%target, "not hinted: the target's hints are at the size cap");
                Ok(false)
            }
        }
    }

    /// Hints pending per target (bytes), and the counters.
    pub(crate) fn stats(&self) -> (Vec<(NodeId, u64)>, HintCounters) {
        let queue = self.queue.lock().expect("hint queue");
        let pending = queue
            .pending()
            .iter()
            .map(|(target, bytes)| (NodeId::new(target), *bytes))
            .collect();
        (pending, queue.counters())
    }

    /// Notes who is down, for the hint window.
    fn observe(&self, view: &View, me: &NodeId) {
        let mut down_since = self.down_since.lock().expect("down_since");
        for (node, state) in &view.nodes {
            if state.up || node == me {
                down_since.remove(node);
            } else {
                down_since.entry(node.clone()).or_insert_with(Instant::now);
            }
        }
    }

    fn targets(&self) -> Vec<NodeId> {
        let queue = self.queue.lock().expect("hint queue");
        queue.pending().keys().map(NodeId::new).collect()
    }
}

/// Hinted handoff as a service: the node's [`Replica`] and its hints.
pub(crate) struct Handoff {
    pub(crate) replica: Arc<Replica>,
    pub(crate) hints: Arc<Hints>,
}

impl std::ops::Deref for Handoff {
    type Target = Replica;

    fn deref(&self) -> &Replica {
        &self.replica
    }
}

impl Handoff {
    /// Stores hints of `rows` for `targets` here; returns those hinted.
    pub(crate) async fn hint(&self, rows: &PartitionVersions, targets: Vec<NodeId>) -> Vec<NodeId> {
        self.hint_created(rows, targets, None).await
    }

    /// [`Handoff::hint`], for a hint first written at `created_micros`
    /// (one handed over by a leaving node keeps its age).
    pub(crate) async fn hint_created(
        &self,
        rows: &PartitionVersions,
        targets: Vec<NodeId>,
        created_micros: Option<i64>,
    ) -> Vec<NodeId> {
        if targets.is_empty() || !self.hints.enabled() || rows.rows.is_empty() {
            return Vec::new();
        }
        let hints = self.hints.clone();
        let rows = rows.clone();
        let outcome = self
            .blocking(move |_| {
                let mut hinted = Vec::new();
                for target in targets {
                    if hints.store(&target, &rows, created_micros)? {
                        hinted.push(target);
                    }
                }
                Ok(hinted)
            })
            .await;
        outcome.unwrap_or_else(|error| {
            warn!(%error, "cannot store hints");
            Vec::new()
        })
    }

    /// Delivers sibling sets of rows of one partition to every replica of
    /// the partition now: merged here when this node is one, sent to the
    /// live ones, hinted for the others. Returns whether every replica took
    /// them or got a hint.
    pub(crate) async fn deliver_everywhere(&self, rows: &PartitionVersions) -> bool {
        let token = ringdb_ring::Token::of(rows.partition.as_bytes());
        let replicas = self
            .membership
            .view()
            .ring
            .replicas(token, &self.placement.of(rows.table));
        let deadline = Instant::now() + self.limits.timeout();
        let mut missed = Vec::new();
        for replica in &replicas {
            let done = if *replica == self.me {
                self.merge_here(rows).await
            } else if self.is_up(replica) {
                match self.peers.send(replica, rows.replicate(), deadline) {
                    Ok(call) => matches!(call.answer(deadline).await, Ok(PeerReply::Applied)),
                    Err(_) => false,
                }
            } else {
                false
            };
            if !done {
                missed.push(replica.clone());
            }
        }
        let wanted = missed.len();
        !replicas.is_empty() && self.hint(rows, missed).await.len() == wanted
    }

    /// Merges sibling sets of rows of one partition here, in one write;
    /// whether they were.
    async fn merge_here(&self, rows: &PartitionVersions) -> bool {
        let decoded: Result<Vec<_>, _> = rows
            .row_ids()
            .map(|(id, versions)| {
                let key = RowKey::new(id.table, id.partition, id.clustering);
                decode_versions(&versions.0).map(|row| (key, row))
            })
            .collect();
        match decoded {
            Ok(decoded) => self
                .blocking(move |storage| storage.merge_rows(&decoded))
                .await
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// Replays hints while the node runs.
pub(crate) async fn run_replay(coordinator: Arc<Handoff>, cancel: CancellationToken) {
    let hints = coordinator.hints.clone();
    let mut views = coordinator.membership.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_sweep = Instant::now();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            changed = views.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        let view = coordinator.membership.view();
        hints.observe(&view, &coordinator.me);
        if !hints.enabled() {
            continue;
        }
        let sweep = last_sweep.elapsed() >= SWEEP_INTERVAL;
        if sweep {
            last_sweep = Instant::now();
        }
        for target in hints.targets() {
            let outcome = match view.status(&target) {
                Some(Status::Left | Status::Removed) => redirect(&coordinator, &target).await,
                _ if coordinator.is_up(&target) => replay(&coordinator, &target, &cancel).await,
                _ if sweep => expire(&coordinator, &target).await,
                _ => Ok(()),
            };
            if let Err(error) = outcome {
                debug!(%target, %error, "hint replay stopped; will retry");
            }
        }
    }
}

/// Runs a queue operation on a blocking thread.
async fn with_queue<T: Send + 'static>(
    coordinator: &Arc<Handoff>,
    work: impl FnOnce(&mut HintQueue<Arc<Storage>>) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, TaskError> {
    let hints = coordinator.hints.clone();
    Ok(coordinator
        .storage
        .blocking(move |_| work(&mut hints.queue.lock().expect("hint queue")))
        .await?)
}

/// Delivers `target`'s hints, oldest first, until none are left or one fails.
async fn replay(
    coordinator: &Arc<Handoff>,
    target: &NodeId,
    cancel: &CancellationToken,
) -> Result<(), TaskError> {
    let rate = coordinator.hints.config.replay_kib_per_sec;
    let mut throttle = Throttle::new((rate > 0).then_some(rate as f64 * 1024.0));
    let (mut delivered, started) = (0u64, Instant::now());
    let mut after = None;
    loop {
        let name = target.as_str().to_owned();
        let now = coordinator.now_micros();
        let batch = with_queue(coordinator, move |queue| {
            queue.due(&name, after, REPLAY_BATCH, now)
        })
        .await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.sequence);
        for hint in batch {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let request = hinted_rows(&hint)?.replicate();
            let deadline = Instant::now() + REPLAY_TIMEOUT;
            match ask(coordinator.peers.as_ref(), target, request, deadline).await? {
                PeerReply::Applied => {}
                other => return Err(TaskError::unexpected(target, &other)),
            }
            let name = target.as_str().to_owned();
            let bytes = hint.bytes;
            with_queue(coordinator, move |queue| queue.delivered(&name, &hint)).await?;
            delivered += 1;
            throttle.moved(bytes).await;
        }
    }
    if delivered > 0 {
        info!(%target, hints = delivered, secs = format!("{:.1}", started.elapsed().as_secs_f64()), "hints delivered");
    }
    Ok(())
}

/// The oldest batch of `target`'s hints still due; empty once it has none.
async fn oldest_due(coordinator: &Arc<Handoff>, target: &NodeId) -> Result<Vec<Due>, TaskError> {
    let name = target.as_str().to_owned();
    let now = coordinator.now_micros();
    with_queue(coordinator, move |queue| {
        queue.due(&name, None, REPLAY_BATCH, now)
    })
    .await
}

/// Sends the hints of a target that left the ring to the rows' replicas now.
async fn redirect(coordinator: &Arc<Handoff>, target: &NodeId) -> Result<(), TaskError> {
    let mut moved = 0u64;
    loop {
        let batch = oldest_due(coordinator, target).await?;
        if batch.is_empty() {
            break;
        }
        for hint in batch {
            let delivered = match &hinted_rows(&hint) {
                Ok(rows) => coordinator.deliver_everywhere(rows).await,
                Err(_) => false,
            };
            let name = target.as_str().to_owned();
            with_queue(coordinator, move |queue| {
                queue.retired(&name, &hint, delivered)
            })
            .await?;
            moved += 1;
        }
    }
    if moved > 0 {
        info!(%target, hints = moved, "hints of a node that left the ring sent to the rows' replicas");
    }
    Ok(())
}

/// Drops `target`'s hints that are older than the window.
async fn expire(coordinator: &Arc<Handoff>, target: &NodeId) -> Result<(), TaskError> {
    let name = target.as_str().to_owned();
    let now = coordinator.now_micros();
    let expired = with_queue(coordinator, move |queue| {
        let before = queue.counters().expired;
        // Hints are in write order: the expired ones come first, and `due`
        // deletes them on its way to the first live hint.
        queue.due(&name, None, 1, now)?;
        Ok(queue.counters().expired - before)
    })
    .await?;
    if expired > 0 {
        warn!(%target, hints = expired, "hints expired: the node was down longer than the hint window; run `ringdb repair`");
    }
    Ok(())
}

/// The rows of a hint (one, or several of one partition), checked.
fn hinted_rows(hint: &Due) -> Result<PartitionVersions, TaskError> {
    let first = RowKey::decode(&hint.record.key)?;
    decode_versions(&hint.record.versions)?;
    let mut rows = PartitionVersions {
        table: first.table,
        partition: first.partition,
        rows: vec![(first.clustering, VersionedRow(hint.record.versions.clone()))],
    };
    for row in &hint.record.more {
        let key = RowKey::decode(&row.key)?;
        decode_versions(&row.versions)?;
        if key.table != rows.table || key.partition != rows.partition {
            return Err(TaskError::Refused(
                "a stored hint holds rows of more than one partition".into(),
            ));
        }
        rows.rows
            .push((key.clustering, VersionedRow(row.versions.clone())));
    }
    Ok(rows)
}

/// Hands this node's hints over before it leaves the ring (decommission):
/// each is delivered to its target when the target is up, sent to the
/// row's replicas when the target left too, and otherwise kept by another
/// node for the target (`StoreHint`, with the hint's age), preferring the
/// row's replicas in the ring without this node. Hints can be the only copy
/// of a write (ANY, a sloppy quorum's fallback), so a hint no node takes
/// stops the decommission. Returns how many were handed over.
pub(crate) async fn hand_over(coordinator: &Arc<Handoff>, future: &Ring) -> Result<u64, TaskError> {
    let mut handed = 0u64;
    for target in coordinator.hints.targets() {
        loop {
            let batch = oldest_due(coordinator, &target).await?;
            if batch.is_empty() {
                break;
            }
            for hint in batch {
                hand_over_one(coordinator, future, &target, &hint).await?;
                let name = target.as_str().to_owned();
                with_queue(coordinator, move |queue| queue.handed_over(&name, &hint)).await?;
                handed += 1;
            }
        }
    }
    if handed > 0 {
        info!(hints = handed, "hints handed over before leaving the ring");
    }
    Ok(handed)
}

/// Delivers one hint, or has another node keep it.
async fn hand_over_one(
    coordinator: &Arc<Handoff>,
    future: &Ring,
    target: &NodeId,
    hint: &Due,
) -> Result<(), TaskError> {
    let rows = hinted_rows(hint)?;
    let view = coordinator.membership.view();
    let deadline = Instant::now() + REPLAY_TIMEOUT;
    let answered = |answer: Result<PeerReply, _>| matches!(answer, Ok(PeerReply::Applied));
    if matches!(view.status(target), Some(Status::Left | Status::Removed)) {
        if coordinator.deliver_everywhere(&rows).await {
            return Ok(());
        }
    } else if coordinator.is_up(target)
        && let Ok(call) = coordinator.peers.send(target, rows.replicate(), deadline)
        && answered(call.answer(deadline).await)
    {
        return Ok(());
    }
    let token = ringdb_ring::Token::of(rows.partition.as_bytes());
    let mut keepers: Vec<NodeId> = future.replicas(token, &coordinator.placement.of(rows.table));
    keepers.extend(future.members().keys().cloned());
    let mut tried: Vec<NodeId> = Vec::new();
    for keeper in keepers {
        if keeper == coordinator.me
            || keeper == *target
            || tried.contains(&keeper)
            || !coordinator.is_up(&keeper)
        {
            continue;
        }
        tried.push(keeper.clone());
        let request = store_hint(target, &rows, Some(hint.record.created_micros));
        if let Ok(call) = coordinator.peers.send(&keeper, request, deadline)
            && answered(call.answer(deadline).await)
        {
            return Ok(());
        }
    }
    Err(TaskError::Refused(format!(
        "no node took a hint for {target}: it is down and no other node stores hints for it"
    )))
}

/// The request that has another node keep `rows` as a hint for `target`:
/// [`PeerRequest::StoreHint`] for one row (which every node version takes),
/// else [`PeerRequest::StoreHintRows`].
pub(crate) fn store_hint(
    target: &NodeId,
    rows: &PartitionVersions,
    created_micros: Option<i64>,
) -> PeerRequest {
    match rows.row_ids().collect::<Vec<_>>().as_slice() {
        [(row, versions)] => PeerRequest::StoreHint {
            target: target.clone(),
            row: row.clone(),
            versions: (*versions).clone(),
            created_micros,
        },
        _ => PeerRequest::StoreHintRows {
            target: target.clone(),
            rows: rows.clone(),
            created_micros,
        },
    }
}
