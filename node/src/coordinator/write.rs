//! The write path: the coordinator's own write, replication to the live
//! replicas, hints for the others (or fallbacks in a sloppy quorum),
//! writes at ANY with every replica down, and forwarding by non-replicas.

use std::sync::Arc;

use ringdb_proto::{
    ClientReply, ClientRequest, ConsistencyLevel, Context, PartitionVersions, PeerReply,
    PeerRequest, ReadFirst, Receipt, RequestError, Row, RowAddress, RowId, VersionedRow,
};
use ringdb_ring::NodeId;
use ringdb_wire::multiplex::CallError;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::debug;

use super::read::names;
use super::{Coordinator, FORWARD_GRACE, Plan, Quorum, REDIAL_WAIT};
use crate::causality::{CausalContext, VersionVector};
use crate::storage::{RowKey, RowVersion, StoredRow, decode_versions};
use crate::trace;

/// The answer of one replica (or fallback) to a write.
pub(super) struct Ack {
    node: NodeId,
    /// The replica a fallback stands in for (sloppy quorum).
    stands_in_for: Option<NodeId>,
    applied: bool,
    /// Not applied, and a hint was stored for the replica instead.
    hinted: bool,
}

/// A put (with columns) or a delete (without), as the write path sees it.
#[derive(Clone)]
pub(super) struct Write {
    pub(super) row: RowAddress,
    pub(super) columns: Option<Row>,
    pub(super) context: Context,
    pub(super) consistency: ConsistencyLevel,
    pub(super) sloppy: bool,
    /// The columns are written over those of the versions superseded
    /// ([`ClientRequest::Update`]), not instead of them.
    pub(super) patch: bool,
    /// The version's timestamp as the client gave it (`USING TIMESTAMP`).
    pub(super) timestamp: Option<i64>,
    /// The version replaces the row (a delete, then columns): without a
    /// context it supersedes what a read at its level finds, as a delete
    /// does.
    pub(super) replaces: bool,
    /// Besides its context, the write supersedes what it would without one
    /// ([`ringdb_proto::RowWrite::and_unread`]).
    pub(super) and_unread: bool,
}

impl Write {
    /// The client request this write came as, to forward it.
    fn into_request(self) -> ClientRequest {
        let Write {
            row,
            columns,
            context,
            consistency,
            sloppy,
            patch,
            timestamp,
            replaces: _,
            and_unread: _,
        } = self;
        match columns {
            Some(columns) if patch => ClientRequest::Update {
                row,
                columns,
                context,
                consistency,
                timestamp,
            },
            Some(columns) => ClientRequest::Put {
                row,
                columns,
                context,
                consistency,
                sloppy,
            },
            None => ClientRequest::Delete {
                row,
                context,
                consistency,
                sloppy,
            },
        }
    }
}

/// Where a write coordinated here goes: the replicas counted alive, those
/// down, and the fallbacks standing in for some of those down.
pub(super) struct Targets {
    pub(super) alive: Vec<NodeId>,
    pub(super) down: Vec<NodeId>,
    /// (fallback, the replica it stands in for).
    pub(super) fallbacks: Vec<(NodeId, NodeId)>,
}

impl Coordinator {
    pub(super) async fn write(
        self: Arc<Self>,
        write: Write,
        deadline: Instant,
        forwarded: bool,
    ) -> Result<ClientReply, RequestError> {
        if write.patch && write.consistency == ConsistencyLevel::Any {
            return Err(RequestError::invalid(
                "INSERT and UPDATE cannot be written at consistency ANY: writing some of a \
                 row's columns needs one of its replicas; use ONE",
            ));
        }
        let Plan {
            id,
            replicas,
            required,
            quorum,
        } = self.plan(&write.row, write.consistency, true)?;
        if replicas.contains(&self.me) {
            return self.write_here(write, id, replicas, quorum, deadline).await;
        }
        if forwarded {
            return Err(RequestError::invalid(
                "forwarded to a node that is not a replica: the nodes disagree about the ring",
            ));
        }
        // At ANY, a write no replica can be sent is kept here as hints
        // (the detector may still count a replica up whose connection
        // just dropped: the send then finds it gone).
        let any = write.consistency == ConsistencyLevel::Any;
        if !any || replicas.iter().any(|r| self.is_up(r)) {
            let request = write.clone().into_request();
            let targets = self.forward_targets(&write.row, &replicas, write.consistency);
            match self.forward(&targets, required, request, deadline).await {
                Some(answer) => return answer,
                None if !any => {
                    trace::event(|| {
                        format!("unavailable: no replica of {} is up", names(&replicas))
                    });
                    return Err(RequestError::Unavailable { required, alive: 0 });
                }
                None => {}
            }
        }
        self.write_hints_only(write, id, replicas).await
    }

    /// A write coordinated by one of its replicas: the new version is made
    /// here, then sent to the other live replicas (and fallbacks), and
    /// acknowledged once enough of them (`quorum`) applied it.
    async fn write_here(
        self: Arc<Self>,
        write: Write,
        id: RowId,
        replicas: Vec<NodeId>,
        quorum: Quorum,
        deadline: Instant,
    ) -> Result<ClientReply, RequestError> {
        let targets = self.targets(&write, replicas, &quorum, deadline).await?;
        let mut receipt = Receipt {
            coordinator: Some(self.me.clone()),
            acknowledged: vec![self.me.clone()],
            ..Receipt::default()
        };
        let context = self
            .write_context(&write, &id, &targets.alive, &mut receipt, deadline)
            .await?;
        // Without a context, the write supersedes what this coordinator
        // holds (read under the row lock): concurrent only with what it has
        // not seen. A context is clamped to the row's history here.
        let (patch, explicit) = (write.patch, write.timestamp);
        let version = RowVersion {
            timestamp_micros: self.now_micros(),
            row: write.columns,
        };
        let key = RowKey::new(id.table, id.partition.clone(), id.clustering.clone());
        let (me, limits) = (self.me.clone(), self.row_limits());
        let written = self
            .blocking(move |storage| {
                let new = (version, patch, explicit);
                storage.write_stamped(&key, context.as_ref(), &me, new, limits)
            })
            .await?;
        let versions = VersionedRow(written.encoded);
        trace::event(|| {
            let dot = &written.dot;
            let actor = format!("{}@{:x}", dot.actor.node, dot.actor.epoch);
            format!("wrote locally as {actor}:{}", dot.counter)
        });
        let write = Arc::new(PartitionVersions::one(&id, versions));
        let mut acks = self.send_write(&targets, &write, deadline);
        trace::event(|| {
            let others: Vec<String> = (targets.alive.iter())
                .filter(|r| **r != self.me)
                .map(ToString::to_string)
                .collect();
            format!("sent the write to {}", others.join(", "))
        });
        // Down replicas without a fallback get a hint here.
        let unhinted: Vec<NodeId> = targets
            .down
            .iter()
            .filter(|r| !targets.fallbacks.iter().any(|(_, replica)| replica == *r))
            .cloned()
            .collect();
        receipt.hinted = self.handoff.hint(&write, unhinted).await;
        if !receipt.hinted.is_empty() {
            trace::event(|| format!("stored hints for {:?} (down)", receipt.hinted));
        }
        let waited = await_acks(&mut acks, &quorum, &mut receipt, deadline).await;
        // The acknowledgements still to come are not waited for: each ack
        // task stores a hint if its replica fails or misses the deadline.
        acks.detach_all();
        waited?;
        Ok(ClientReply::Written {
            context: Context(CausalContext::encode(&written.context)),
            receipt,
        })
    }

    /// The replicas a write goes to now: those counted alive, and under a
    /// sloppy quorum each down replica's write to the first live node past
    /// the replicas (its fallback), whose hint counts for that replica.
    /// Unavailable when those left cannot meet `quorum`.
    pub(super) async fn targets(
        &self,
        write: &Write,
        replicas: Vec<NodeId>,
        quorum: &Quorum,
        deadline: Instant,
    ) -> Result<Targets, RequestError> {
        let alive = self.alive_of(&replicas, quorum, deadline).await;
        let down: Vec<NodeId> = replicas
            .iter()
            .filter(|r| !alive.contains(r))
            .cloned()
            .collect();
        let fallbacks = if write.sloppy && self.handoff.hints.enabled() {
            self.fallbacks(&write.row, &replicas, &down)
        } else {
            Vec::new()
        };
        let mut counted = alive.clone();
        counted.extend(fallbacks.iter().map(|(_, replica)| replica.clone()));
        if let Some(short) = quorum.shortfall(&counted) {
            trace::event(|| {
                format!(
                    "unavailable: {} replicas needed, alive: {}; down: {}",
                    short.required,
                    names(&alive),
                    names(&down)
                )
            });
            return Err(RequestError::Unavailable {
                required: short.required,
                alive: short.have,
            });
        }
        Ok(Targets {
            alive,
            down,
            fallbacks,
        })
    }

    /// The context the write supersedes: the client's, once this replica
    /// holds the history it names; for a delete without one, what a read
    /// at the write's level returns (recorded in the receipt).
    pub(super) async fn write_context(
        self: &Arc<Self>,
        write: &Write,
        id: &RowId,
        alive: &[NodeId],
        receipt: &mut Receipt,
        deadline: Instant,
    ) -> Result<Option<VersionVector>, RequestError> {
        let mut context = decode_context(&write.context)?;
        let deletes = write.columns.is_none() || write.replaces;
        if deletes && (context.is_none() || write.and_unread) {
            // A delete without a context deletes what a read at its level
            // returns, not only what this replica holds.
            let (merged, read) = self
                .read_first(&write.row, write.consistency, deadline)
                .await?;
            let found = merged.context();
            context = Some(context.map_or(found.clone(), |given| given.merge(&found)));
            receipt.read_first = Some(read);
        }
        if let Some(context) = &context
            && !self.learn(id, context, alive, deadline).await
        {
            return Err(RequestError::UnreachableContext {
                node: self.me.clone(),
            });
        }
        // A write of columns that also supersedes what this replica holds
        // supersedes all of it, now that it holds what its context names.
        if write.and_unread && !deletes {
            return Ok(None);
        }
        Ok(context)
    }

    /// Sends the written rows to the other live replicas and, as hints, to
    /// the fallbacks; their answers arrive in the returned set.
    pub(super) fn send_write(
        self: &Arc<Self>,
        targets: &Targets,
        write: &Arc<PartitionVersions>,
        deadline: Instant,
    ) -> JoinSet<Ack> {
        let mut acks = JoinSet::new();
        for peer in targets.alive.iter().filter(|p| **p != self.me) {
            let request = write.replicate();
            self.spawn_ack(&mut acks, peer, None, request, deadline, write);
        }
        for (fallback, replica) in &targets.fallbacks {
            let request = crate::hints::store_hint(replica, write, None);
            let stands_in_for = Some(replica.clone());
            self.spawn_ack(&mut acks, fallback, stands_in_for, request, deadline, write);
        }
        acks
    }

    /// The read a delete without a context makes first, at its level (ONE
    /// for ANY): the merged state of the replicas read, repaired on them.
    async fn read_first(
        self: &Arc<Self>,
        row: &RowAddress,
        level: ConsistencyLevel,
        deadline: Instant,
    ) -> Result<(StoredRow, ReadFirst), RequestError> {
        let level = match level {
            ConsistencyLevel::Any => ConsistencyLevel::One,
            level => level,
        };
        let (merged, receipt) = self.clone().read_merged(row, level, deadline).await?;
        let read = ReadFirst {
            replicas: receipt.acknowledged,
            siblings: merged.values().filter(|v| v.row.is_some()).count(),
            context: Context(CausalContext::encode(&merged.context())),
        };
        Ok((merged, read))
    }

    /// Makes sure this replica holds the history `context` names before a
    /// write clamps the context to it: a client may have read replicas
    /// that are ahead of this one. When the local row does not cover the
    /// context, the other live replicas are read and merged here (a read
    /// repair of this replica) until it does, or until half the time left
    /// is spent. Returns whether it does: a write must not go ahead when
    /// it does not, since what it would fail to supersede (versions its
    /// client saw, on replicas out of reach) would come back later.
    async fn learn(
        self: &Arc<Self>,
        id: &RowId,
        context: &VersionVector,
        alive: &[NodeId],
        deadline: Instant,
    ) -> bool {
        let key = RowKey::new(id.table, id.partition.clone(), id.clustering.clone());
        let local = {
            let key = key.clone();
            self.blocking(move |storage| Ok((storage.get(&key)?, storage.purged_history(&key)?)))
                .await
        };
        // Tombstones purged from the row (every replica held them
        // superseded) need no superseding.
        let purged = match &local {
            Ok((_, purged)) => purged.clone(),
            Err(_) => VersionVector::new(),
        };
        let covered = |row: &StoredRow| row.context().merge(&purged).dominates(context);
        // A row this node cannot read (being restored) is learnt from peers.
        if let Ok((row, purged)) = &local
            && row.as_ref().map_or(purged.dominates(context), covered)
        {
            return true;
        }
        let budget = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
        let mut reads = JoinSet::new();
        for peer in alive.iter().filter(|p| **p != self.me) {
            let call = self
                .peers
                .send(peer, PeerRequest::Read { row: id.clone() }, budget);
            reads.spawn(async move {
                match call {
                    Ok(call) => call.answer(budget).await,
                    Err(error) => Err(error),
                }
            });
        }
        while let Ok(Some(joined)) = tokio::time::timeout_at(budget, reads.join_next()).await {
            let Ok(Ok(PeerReply::Row(Some(versions)))) = joined else {
                continue;
            };
            let Ok(incoming) = decode_versions(&versions.0) else {
                continue;
            };
            let key = key.clone();
            let merged = self
                .blocking(move |storage| storage.merge(&key, &incoming))
                .await;
            if merged.is_ok_and(|row| covered(&row)) {
                return true;
            }
        }
        debug!(row = ?id, "a write's context names versions no live replica holds; refused");
        false
    }

    /// Sends `request` to `peer` and adds its answer to `acks`; when the
    /// peer does not apply it by the deadline, the task stores a hint for
    /// the replica (`stands_in_for` when the peer is a fallback).
    fn spawn_ack(
        self: &Arc<Self>,
        acks: &mut JoinSet<Ack>,
        peer: &NodeId,
        stands_in_for: Option<NodeId>,
        request: PeerRequest,
        deadline: Instant,
        write: &Arc<PartitionVersions>,
    ) {
        let node = peer.clone();
        let call = self.peers.send(peer, request.clone(), deadline);
        let (this, write) = (self.clone(), write.clone());
        acks.spawn(async move {
            let mut answer = match call {
                Ok(call) => call.answer(deadline).await,
                Err(error) => Err(error),
            };
            // A connection found dead (this node was paused, say) is remade
            // and the write sent once more: applying it twice is harmless.
            if let Err(CallError::NotSent { .. } | CallError::ConnectionLost { .. }) = answer {
                let left = deadline.saturating_duration_since(Instant::now());
                if this
                    .peers
                    .wait_connected(&node, REDIAL_WAIT.min(left / 2))
                    .await
                {
                    answer = match this.peers.send(&node, request, deadline) {
                        Ok(call) => call.answer(deadline).await,
                        Err(error) => Err(error),
                    };
                }
            }
            let applied = matches!(answer, Ok(PeerReply::Applied));
            let mut hinted = false;
            if !applied {
                debug!(peer = %node, ?answer, "replica did not acknowledge the write");
                let target = stands_in_for.clone().unwrap_or_else(|| node.clone());
                hinted = !this.handoff.hint(&write, vec![target]).await.is_empty();
            }
            Ack {
                node,
                stands_in_for,
                applied,
                hinted,
            }
        });
    }

    /// The first live fallback of each down replica, in ring order.
    fn fallbacks(
        &self,
        row: &RowAddress,
        replicas: &[NodeId],
        down: &[NodeId],
    ) -> Vec<(NodeId, NodeId)> {
        let view = self.membership.view();
        let mut candidates = view
            .ring
            .fallbacks(row.token(), &self.placed(row))
            .into_iter()
            .filter(|n| !replicas.contains(n) && *n != self.me && self.is_up(n));
        down.iter()
            .map_while(|replica| Some((candidates.next()?, replica.clone())))
            .collect()
    }

    /// A write at ANY while every replica is down, received by a node that
    /// is not a replica: it keeps the write as hints for every replica. Its
    /// storage issues the dot (and remembers it) without storing the row.
    /// A context must be covered by what this node holds of the row
    /// (usually nothing, so only a write without a context, or with the
    /// context of a row never written, goes ahead): superseding what it
    /// cannot see would let it come back. A delete without a context cannot
    /// read what to delete, so it is unavailable.
    async fn write_hints_only(
        &self,
        write: Write,
        id: RowId,
        replicas: Vec<NodeId>,
    ) -> Result<ClientReply, RequestError> {
        let context = decode_context(&write.context)?;
        if write.columns.is_none() && context.is_none() {
            return Err(RequestError::Unavailable {
                required: 1,
                alive: 0,
            });
        }
        let key = RowKey::new(id.table, id.partition.clone(), id.clustering.clone());
        if let Some(context) = context.clone().filter(|c| !c.is_empty()) {
            let key = key.clone();
            let held = self.blocking(move |storage| storage.get(&key)).await?;
            if !held.is_some_and(|row| row.context().dominates(&context)) {
                return Err(RequestError::UnreachableContext {
                    node: self.me.clone(),
                });
            }
        }
        let version = RowVersion {
            timestamp_micros: self.now_micros(),
            row: write.columns,
        };
        let me = self.me.clone();
        let written = self
            .blocking(move |storage| storage.write_elsewhere(&key, context.as_ref(), &me, version))
            .await?;
        let versions = VersionedRow(written.encoded);
        let rows = PartitionVersions::one(&id, versions);
        let hinted = self.handoff.hint(&rows, replicas.clone()).await;
        if hinted.is_empty() {
            return Err(RequestError::Unavailable {
                required: 1,
                alive: 0,
            });
        }
        Ok(ClientReply::Written {
            context: Context(CausalContext::encode(&written.context)),
            receipt: Receipt {
                coordinator: Some(self.me.clone()),
                hinted,
                ..Receipt::default()
            },
        })
    }

    /// Sends a write to the first reachable replica to coordinate it, and
    /// returns its answer; `None` when it could be sent to none (nothing
    /// was written).
    pub(super) async fn forward(
        &self,
        replicas: &[NodeId],
        required: usize,
        request: ClientRequest,
        deadline: Instant,
    ) -> Option<Result<ClientReply, RequestError>> {
        // One id for every target: only one of them ever runs it.
        let id = self.random.next_u64();
        for target in replicas.iter().filter(|r| self.is_up(r)) {
            let coordinate = PeerRequest::Coordinate {
                id,
                request: request.clone(),
            };
            let call = match self.peers.send(target, coordinate, deadline) {
                Ok(call) => call,
                Err(error @ CallError::TooLarge { .. }) => {
                    return Some(Err(RequestError::invalid(error.to_string())));
                }
                Err(_) => continue,
            };
            trace::event(|| format!("not a replica: forwarded the write to {target}"));
            let answer = match call.answer(deadline + FORWARD_GRACE).await {
                Ok(PeerReply::Coordinated(reply)) => Ok(reply),
                Ok(other) => Err(RequestError::Server {
                    node: target.clone(),
                    reason: format!("unexpected reply to a forwarded write: {other:?}"),
                }),
                Err(CallError::Remote(error)) => Err(error),
                // Never sent (a delayed send found the connection gone):
                // the next replica may take it.
                Err(CallError::NotSent { .. }) => continue,
                // Sent: the outcome is unknown, and sending it again could
                // apply it twice.
                Err(_) => Err(RequestError::Timeout {
                    required,
                    acknowledged: 0,
                    write: true,
                }),
            };
            return Some(answer);
        }
        None
    }
}

/// The context a client sent, checked; `None` for none.
fn decode_context(context: &Context) -> Result<Option<VersionVector>, RequestError> {
    if context.is_empty() {
        return Ok(None);
    }
    CausalContext::decode(&context.0)
        .map(Some)
        .map_err(|e| RequestError::invalid(e.to_string()))
}

/// Waits until `required` replicas (this one included) applied the write,
/// noting each in the receipt; a timeout when the deadline comes first.
pub(super) async fn await_acks(
    acks: &mut JoinSet<Ack>,
    quorum: &Quorum,
    receipt: &mut Receipt,
    deadline: Instant,
) -> Result<(), RequestError> {
    // The replicas the acknowledgements count for (a fallback's, for the
    // replica it stands in for); the coordinator's own first.
    let mut counted = receipt.acknowledged.clone();
    while let Some(short) = quorum.shortfall(&counted) {
        match tokio::time::timeout_at(deadline, acks.join_next()).await {
            Ok(Some(Ok(ack))) if ack.applied => {
                trace::event(|| format!("{} acknowledged", ack.node));
                match ack.stands_in_for {
                    Some(replica) => {
                        counted.push(replica.clone());
                        receipt.fallbacks.push((ack.node, replica));
                    }
                    None => {
                        counted.push(ack.node.clone());
                        receipt.acknowledged.push(ack.node);
                    }
                }
            }
            Ok(Some(Ok(ack))) => {
                if ack.hinted {
                    receipt.hinted.push(ack.stands_in_for.unwrap_or(ack.node));
                }
            }
            Ok(Some(Err(_))) => {}
            // The replicas still due hint themselves at the deadline.
            Ok(None) | Err(_) => {
                return Err(RequestError::Timeout {
                    required: short.required,
                    acknowledged: short.have,
                    write: true,
                });
            }
        }
    }
    Ok(())
}
