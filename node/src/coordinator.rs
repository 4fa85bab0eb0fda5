//! The coordinator and the replica: the write and read paths of DESIGN.md.
//!
//! **Writes.** The write coordinator is a replica of the row; a node that is
//! not forwards the request to one that is (the first reachable in ring
//! order). The coordinator decides `Unavailable` before doing anything when
//! fewer replicas are reachable than the level needs; otherwise it applies
//! the write to its own sibling set with a dot of its own actor
//! ([`Storage::update`]), sends the resulting set to every other reachable
//! replica, and answers once the level's count has acknowledged (itself
//! included), or `Timeout` at the deadline with the count it reached. A
//! replica it knows to be unreachable is not waited for; the messages already
//! queued still reach the slower replicas after the answer.
//!
//! **Reads.** Any node coordinates a read. It asks as many reachable replicas
//! as the level needs, itself first when it is one, and asks a spare replica
//! when one fails or has not answered within the speculative-retry delay
//! (a fixed delay for now; Cassandra's default is the 99th percentile of
//! recent reads). It merges the sibling sets ([`DvvSet::sync`]); a replica
//! whose set does not already contain the merge is repaired before the
//! answer (blocking read repair: once a read at QUORUM has returned a value,
//! a quorum holds it, so a later QUORUM read cannot go backwards). The
//! replicas not read are read and repaired in the background, best effort.
//! Tombstones take part in the merge (they supersede what they deleted) but
//! are not shown to the reader.
//!
//! [`DvvSet::sync`]: crate::causality::DvvSet::sync

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringdb_client::transport::CallError;
use ringdb_proto::{
    ClientReply, ClientRequest, ConsistencyLevel, Context, PeerReply, PeerRequest, Receipt,
    RepairStats, RepairSummary, RequestError, Row, RowAddress, RowId, Sibling, TableId,
    VersionedRow,
};
use ringdb_ring::{NodeId, Replication};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::causality::{ActorId, CausalContext, VersionVector};
use crate::config::{AntiEntropyConfig, RequestConfig, StreamingConfig};
use crate::hints::Hints;
use crate::membership::{GossipHandle, Membership};
use crate::storage::{
    RowKey, RowVersion, Storage, StorageError, StoredRow, decode_versions, encode_row,
};
use crate::transport::Peers;
use crate::{repair, streaming, topology};
use ringdb_gossip::Status;

/// How long past a request's deadline a forwarding node waits for the
/// answer of the node it forwarded to (which answers `Timeout` at the deadline).
const FORWARD_GRACE: Duration = Duration::from_millis(100);
/// The longest table name (Cassandra's limit).
const MAX_TABLE_NAME: usize = 48;

/// The answer of one replica (or fallback) to a write.
struct Ack {
    node: NodeId,
    /// The replica a fallback stands in for (sloppy quorum).
    stands_in_for: Option<NodeId>,
    applied: bool,
    /// Not applied, and a hint was stored for the replica instead.
    hinted: bool,
}

/// Work done after the answer (background read repair).
pub(crate) type BackgroundJob = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the coordinator needs: storage, peers, the ring and the limits.
pub(crate) struct Coordinator {
    pub(crate) me: NodeId,
    pub(crate) generation: u64,
    pub(crate) actor: ActorId,
    pub(crate) storage: Arc<Storage>,
    pub(crate) peers: Arc<Peers>,
    pub(crate) membership: Arc<Membership>,
    pub(crate) gossip: GossipHandle,
    pub(crate) replication: Replication,
    pub(crate) limits: RequestConfig,
    pub(crate) streaming: StreamingConfig,
    pub(crate) antientropy: AntiEntropyConfig,
    pub(crate) hints: Arc<Hints>,
    /// What anti-entropy did since the node started.
    pub(crate) repairs: Mutex<RepairSummary>,
    pub(crate) background: mpsc::Sender<BackgroundJob>,
}

/// A put (with columns) or a delete (without), as the write path sees it.
struct Write {
    row: RowAddress,
    columns: Option<Row>,
    context: Context,
    consistency: ConsistencyLevel,
    sloppy: bool,
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
        } = self;
        match columns {
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

/// The table id of a table name. Until keyspaces declare tables (and give
/// them ids), a table is named by its use and its id is the first eight
/// bytes of the blake3 hash of the name.
pub fn table_id(name: &str) -> Result<TableId, RequestError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_TABLE_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(RequestError::invalid(format!(
            "table name {name:?} must be 1 to {MAX_TABLE_NAME} letters, digits or underscores"
        )));
    }
    let hash = blake3::hash(name.as_bytes());
    let bytes: [u8; 8] = hash.as_bytes()[..8].try_into().expect("eight bytes");
    Ok(TableId(u64::from_be_bytes(bytes)))
}

/// Now, in microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Coordinator {
    /// Serves a client request (or one forwarded by a peer, which must not
    /// be forwarded again).
    pub(crate) async fn serve_client(
        self: Arc<Self>,
        request: ClientRequest,
        deadline: Instant,
        forwarded: bool,
    ) -> Result<ClientReply, RequestError> {
        // Admin operations run as long as their caller waits; data
        // requests no longer than the coordinator's timeout.
        let original_deadline = deadline;
        let deadline = deadline.min(Instant::now() + self.limits.timeout());
        match request {
            ClientRequest::Get { row, consistency } => self.read(row, consistency, deadline).await,
            ClientRequest::Put {
                row,
                columns,
                context,
                consistency,
                sloppy,
            } => {
                let size = rmp_serde::to_vec_named(&columns).map_or(usize::MAX, |b| b.len());
                if size > self.limits.max_row_bytes {
                    return Err(RequestError::invalid(format!(
                        "row of {size} bytes exceeds the limit of {} bytes",
                        self.limits.max_row_bytes
                    )));
                }
                let write = Write {
                    row,
                    columns: Some(columns),
                    context,
                    consistency,
                    sloppy,
                };
                self.write(write, deadline, forwarded).await
            }
            ClientRequest::Delete {
                row,
                context,
                consistency,
                sloppy,
            } => {
                let write = Write {
                    row,
                    columns: None,
                    context,
                    consistency,
                    sloppy,
                };
                self.write(write, deadline, forwarded).await
            }
            ClientRequest::Topology => Ok(self.topology()),
            ClientRequest::Status => Ok(self.status()),
            ClientRequest::LocalGet { row } => {
                let id = RowId {
                    table: table_id(&row.table)?,
                    partition: row.partition,
                    clustering: row.clustering,
                };
                let key = RowKey::new(id.table, id.partition, id.clustering);
                let stored = self.blocking(move |storage| storage.get(&key)).await?;
                let stored = stored.unwrap_or_else(StoredRow::new);
                Ok(ClientReply::Read {
                    siblings: siblings_of(&stored),
                    context: Context(CausalContext::encode(&stored.context())),
                    receipt: Receipt {
                        coordinator: Some(self.me.clone()),
                        acknowledged: vec![self.me.clone()],
                        ..Receipt::default()
                    },
                })
            }
            ClientRequest::Decommission => {
                let summary = topology::decommission(&self, original_deadline).await?;
                Ok(ClientReply::Done { summary })
            }
            ClientRequest::RemoveNode { node } => {
                let summary = topology::remove_node(&self, node, original_deadline).await?;
                Ok(ClientReply::Done { summary })
            }
            ClientRequest::Repair { table, ranges } => {
                let table = table.as_deref().map(table_id).transpose()?;
                let summary = repair::repair(&self, table, ranges, None, original_deadline).await?;
                Ok(ClientReply::Repaired(summary))
            }
            ClientRequest::RepairStats => Ok(ClientReply::RepairStats(self.repair_stats())),
        }
    }

    /// Serves a request from another node.
    pub(crate) async fn serve_peer(
        self: Arc<Self>,
        from: NodeId,
        request: PeerRequest,
        deadline: Instant,
    ) -> Result<PeerReply, RequestError> {
        // Any node the cluster CA signed may say hello and gossip (that is
        // how a new node joins); only nodes known to the cluster may read,
        // write or coordinate: members, and nodes that left (they forward
        // what clients still send them), not removed ones.
        if !matches!(request, PeerRequest::Hello { .. } | PeerRequest::Gossip(_)) {
            let member = self
                .membership
                .view()
                .status(&from)
                .is_some_and(|status| status != Status::Removed);
            if !member {
                return Err(RequestError::invalid(format!(
                    "{from} is not a member of this cluster (it has not joined, or was removed)"
                )));
            }
        }
        match request {
            PeerRequest::Hello { generation } => {
                self.peers.observe_generation(&from, generation);
                Ok(PeerReply::Hello {
                    generation: self.generation,
                })
            }
            PeerRequest::Replicate { row, versions } => {
                let incoming = decode_versions(&versions.0)
                    .map_err(|e| RequestError::invalid(format!("malformed versioned row: {e}")))?;
                let key = RowKey::new(row.table, row.partition, row.clustering);
                self.blocking(move |storage| storage.merge(&key, &incoming))
                    .await?;
                Ok(PeerReply::Applied)
            }
            PeerRequest::Read { row } => {
                let key = RowKey::new(row.table, row.partition, row.clustering);
                let stored = self.blocking(move |storage| storage.get(&key)).await?;
                Ok(PeerReply::Row(
                    stored.map(|stored| VersionedRow(encode_row(&stored))),
                ))
            }
            PeerRequest::Coordinate(request) => Ok(PeerReply::Coordinated(
                self.serve_client(request, deadline, true).await?,
            )),
            PeerRequest::StreamRange {
                range,
                after,
                max_rows,
            } => {
                let max_rows = max_rows.clamp(1, 4 * streaming::PAGE_ROWS);
                let storage = self.storage.clone();
                let (rows, more) = tokio::task::spawn_blocking(move || {
                    streaming::page(&storage, range, after, max_rows)
                })
                .await
                .map_err(|e| self.server_error(e.to_string()))?
                .map_err(|e| self.server_error(e.to_string()))?;
                Ok(PeerReply::Rows { rows, more })
            }
            PeerRequest::StoreRows { rows } => {
                let storage = self.storage.clone();
                let purged_before = repair::purge_cutoff(&self.antientropy);
                tokio::task::spawn_blocking(move || {
                    streaming::store(&storage, &rows, Some(purged_before))
                })
                .await
                .map_err(|e| self.server_error(e.to_string()))??;
                Ok(PeerReply::Applied)
            }
            PeerRequest::StoreHint {
                target,
                row,
                versions,
            } => {
                decode_versions(&versions.0)
                    .map_err(|e| RequestError::invalid(format!("malformed versioned row: {e}")))?;
                if !self.hints.enabled() {
                    return Err(RequestError::invalid(format!(
                        "{} does not store hints (hints.enabled is false)",
                        self.me
                    )));
                }
                let hinted = self.hint(&row, &versions, vec![target.clone()]).await;
                if hinted.is_empty() {
                    return Err(RequestError::overloaded(format!(
                        "no hint stored for {target}: over the hint window or size cap"
                    )));
                }
                Ok(PeerReply::Applied)
            }
            PeerRequest::TreeHashes {
                range,
                level,
                nodes,
            } => {
                let trees = self.storage.trees();
                let tree = repair::local_tree(&self.me, &trees, range)?;
                let hashes = tree.hashes(level, &nodes).ok_or_else(|| {
                    RequestError::invalid(format!("no node {nodes:?} at level {level}"))
                })?;
                Ok(PeerReply::Hashes(hashes.concat()))
            }
            PeerRequest::LeafItems {
                range,
                leaves,
                table,
            } => {
                let storage = self.storage.clone();
                let items =
                    tokio::task::spawn_blocking(move || storage.leaf_items(range, &leaves, table))
                        .await
                        .map_err(|e| self.server_error(e.to_string()))?
                        .map_err(|e| self.server_error(e.to_string()))?;
                Ok(PeerReply::Items(items))
            }
            PeerRequest::ReadRows { keys } => {
                let storage = self.storage.clone();
                let rows = tokio::task::spawn_blocking(move || repair::read_rows(&storage, keys))
                    .await
                    .map_err(|e| self.server_error(e.to_string()))?
                    .map_err(|e| self.server_error(e.to_string()))?;
                Ok(PeerReply::Rows { rows, more: false })
            }
            PeerRequest::FetchRange { range, source } => {
                let mut throttle = streaming::Throttle::new(self.streaming.bytes_per_sec());
                let streamed = streaming::fetch(
                    &self.peers,
                    &self.storage,
                    &source,
                    range,
                    None,
                    &mut throttle,
                    |_| Ok(()),
                )
                .await
                .map_err(|e| self.server_error(e))?;
                info!(%range, %source, rows = streamed.rows, "fetched a range");
                Ok(PeerReply::Applied)
            }
            PeerRequest::Gossip(bytes) => {
                let message = rmp_serde::from_slice(&bytes)
                    .map_err(|e| RequestError::invalid(format!("malformed gossip: {e}")))?;
                let reply = self.gossip.incoming(from, message).await;
                let reply = reply
                    .map(|reply| rmp_serde::to_vec_named(&reply).map(serde_bytes::ByteBuf::from))
                    .transpose()
                    .map_err(|e| RequestError::Server {
                        node: self.me.clone(),
                        reason: format!("cannot encode gossip: {e}"),
                    })?;
                Ok(PeerReply::Gossip(reply))
            }
        }
    }

    /// Runs a storage call on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Storage) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, RequestError> {
        let storage = self.storage.clone();
        let outcome = if storage.writes_wait_for_disk() {
            tokio::task::spawn_blocking(move || work(&storage)).await
        } else {
            Ok(work(&storage))
        };
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(RequestError::Server {
                node: self.me.clone(),
                reason: error.to_string(),
            }),
            Err(error) => Err(RequestError::Server {
                node: self.me.clone(),
                reason: format!("storage task failed: {error}"),
            }),
        }
    }

    /// The row's replicas and the acknowledgements `level` needs from them.
    fn plan(
        &self,
        row: &RowAddress,
        level: ConsistencyLevel,
        write: bool,
    ) -> Result<(RowId, Vec<NodeId>, usize), RequestError> {
        let table = table_id(&row.table)?;
        if level == ConsistencyLevel::Any && !write {
            return Err(RequestError::invalid(
                "consistency ANY is for writes only; read at ONE",
            ));
        }
        if level == ConsistencyLevel::Any && !self.hints.enabled() {
            return Err(RequestError::invalid(
                "consistency ANY needs hinted handoff, which is disabled on this node (hints.enabled)",
            ));
        }
        let view = self.membership.view();
        let mut replicas = view.ring.replicas(row.token(), &self.replication);
        let mut required = level.required(self.replication.total_factor());
        // While a node joins or leaves, writes also go to the replicas the
        // new ring adds, and wait for them too (Cassandra's pending ranges):
        // a write acknowledged during the change is on enough replicas of
        // the ring after it.
        if write && let Some(future) = &view.future {
            for pending in future.replicas(row.token(), &self.replication) {
                if !replicas.contains(&pending) {
                    replicas.push(pending);
                    required += 1;
                }
            }
        }
        let id = RowId {
            table,
            partition: row.partition.clone(),
            clustering: row.clustering.clone(),
        };
        Ok((id, replicas, required))
    }

    /// The replicas that are reachable: this node first when it is one.
    fn alive(&self, replicas: &[NodeId]) -> Vec<NodeId> {
        let mut alive: Vec<NodeId> = replicas
            .iter()
            .filter(|r| **r == self.me)
            .cloned()
            .collect();
        alive.extend(
            replicas
                .iter()
                .filter(|r| **r != self.me && self.is_up(r))
                .cloned(),
        );
        alive
    }

    async fn write(
        self: Arc<Self>,
        write: Write,
        deadline: Instant,
        forwarded: bool,
    ) -> Result<ClientReply, RequestError> {
        let (id, replicas, required) = self.plan(&write.row, write.consistency, true)?;
        if !replicas.contains(&self.me) {
            if forwarded {
                return Err(RequestError::invalid(
                    "forwarded to a node that is not a replica: the nodes disagree about the ring",
                ));
            }
            if write.consistency == ConsistencyLevel::Any && !replicas.iter().any(|r| self.is_up(r))
            {
                return self.write_hints_only(write, id, replicas).await;
            }
            let request = write.into_request();
            return self.forward(&replicas, required, request, deadline).await;
        }
        let alive = self.alive(&replicas);
        let down: Vec<NodeId> = replicas
            .iter()
            .filter(|r| !alive.contains(r))
            .cloned()
            .collect();
        // Sloppy quorum: each down replica's write goes to the first live
        // node past the replicas (its fallback), whose hint counts.
        let fallbacks = if write.sloppy && self.hints.enabled() {
            self.fallbacks(&write.row, &replicas, &down)
        } else {
            Vec::new()
        };
        if alive.len() + fallbacks.len() < required {
            return Err(RequestError::Unavailable {
                required,
                alive: alive.len() + fallbacks.len(),
            });
        }
        // Without a context, the write supersedes what this coordinator
        // holds (read under the row lock): concurrent only with what it has
        // not seen.
        let context = if write.context.is_empty() {
            None
        } else {
            Some(
                CausalContext::decode(&write.context.0)
                    .map_err(|e| RequestError::invalid(e.to_string()))?,
            )
        };
        let columns = write.columns;
        let version = RowVersion {
            timestamp_micros: now_micros(),
            row: columns,
        };
        let key = RowKey::new(id.table, id.partition.clone(), id.clustering.clone());
        let actor = self.actor.clone();
        let stored = self
            .blocking(move |storage| {
                storage.update(&key, |current| {
                    let seen = context.unwrap_or_else(|| current.context());
                    current.update(&seen, &actor, version)
                })
            })
            .await?;
        let versions = VersionedRow(encode_row(&stored));
        let write = Arc::new((id, versions));
        let mut acks = JoinSet::new();
        for peer in alive.iter().filter(|p| **p != self.me) {
            let request = PeerRequest::Replicate {
                row: write.0.clone(),
                versions: write.1.clone(),
            };
            self.spawn_ack(&mut acks, peer, None, request, deadline, &write);
        }
        for (fallback, replica) in &fallbacks {
            let request = PeerRequest::StoreHint {
                target: replica.clone(),
                row: write.0.clone(),
                versions: write.1.clone(),
            };
            let stands_in_for = Some(replica.clone());
            self.spawn_ack(
                &mut acks,
                fallback,
                stands_in_for,
                request,
                deadline,
                &write,
            );
        }
        // Down replicas without a fallback get a hint here.
        let mut receipt = Receipt {
            coordinator: Some(self.me.clone()),
            acknowledged: vec![self.me.clone()],
            ..Receipt::default()
        };
        let unhinted: Vec<NodeId> = down
            .iter()
            .filter(|r| !fallbacks.iter().any(|(_, replica)| replica == *r))
            .cloned()
            .collect();
        receipt.hinted = self.hint(&write.0, &write.1, unhinted).await;
        let mut acknowledged = 1;
        while acknowledged < required {
            match tokio::time::timeout_at(deadline, acks.join_next()).await {
                Ok(Some(Ok(ack))) if ack.applied => {
                    match ack.stands_in_for {
                        Some(replica) => receipt.fallbacks.push((ack.node, replica)),
                        None => receipt.acknowledged.push(ack.node),
                    }
                    acknowledged += 1;
                }
                Ok(Some(Ok(ack))) => {
                    if ack.hinted {
                        receipt.hinted.push(ack.stands_in_for.unwrap_or(ack.node));
                    }
                }
                Ok(Some(Err(_))) => {}
                Ok(None) | Err(_) => {
                    // The replicas still due hint themselves at the deadline.
                    acks.detach_all();
                    return Err(RequestError::Timeout {
                        required,
                        acknowledged,
                        write: true,
                    });
                }
            }
        }
        // The acknowledgements still to come are not waited for: each ack
        // task stores a hint if its replica fails or misses the deadline.
        acks.detach_all();
        Ok(ClientReply::Written {
            context: Context(CausalContext::encode(&stored.context())),
            receipt,
        })
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
        write: &Arc<(RowId, VersionedRow)>,
    ) {
        let node = peer.clone();
        let call = self.peers.send(peer, request, deadline);
        let (this, write) = (self.clone(), write.clone());
        acks.spawn(async move {
            let answer = match call {
                Ok(call) => call.answer(deadline).await,
                Err(error) => Err(error),
            };
            let applied = matches!(answer, Ok(PeerReply::Applied));
            let mut hinted = false;
            if !applied {
                debug!(peer = %node, ?answer, "replica did not acknowledge the write");
                let target = stands_in_for.clone().unwrap_or_else(|| node.clone());
                hinted = !this.hint(&write.0, &write.1, vec![target]).await.is_empty();
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
            .fallbacks(row.token(), &self.replication)
            .into_iter()
            .filter(|n| !replicas.contains(n) && *n != self.me && self.is_up(n));
        down.iter()
            .map_while(|replica| Some((candidates.next()?, replica.clone())))
            .collect()
    }

    /// Stores hints for `targets` here; returns those hinted.
    async fn hint(&self, id: &RowId, versions: &VersionedRow, targets: Vec<NodeId>) -> Vec<NodeId> {
        if targets.is_empty() || !self.hints.enabled() {
            return Vec::new();
        }
        let key = RowKey::new(id.table, id.partition.clone(), id.clustering.clone()).encode();
        let hints = self.hints.clone();
        let bytes = versions.0.clone();
        let outcome = self
            .blocking(move |_| {
                let mut hinted = Vec::new();
                for target in targets {
                    if hints.store(&target, key.clone(), bytes.clone())? {
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

    /// A write at ANY while every replica is down, received by a node that
    /// is not a replica: it keeps the write as hints for every replica. The
    /// version gets a one-time actor (this node with a fresh random epoch),
    /// since this node holds no copy of the row to count its dots from.
    async fn write_hints_only(
        &self,
        write: Write,
        id: RowId,
        replicas: Vec<NodeId>,
    ) -> Result<ClientReply, RequestError> {
        let context = if write.context.is_empty() {
            VersionVector::new()
        } else {
            CausalContext::decode(&write.context.0)
                .map_err(|e| RequestError::invalid(e.to_string()))?
        };
        let actor = ActorId {
            node: self.me.clone(),
            epoch: rand::random::<u64>().max(1),
        };
        let version = RowVersion {
            timestamp_micros: now_micros(),
            row: write.columns,
        };
        let stored = StoredRow::new().update(&context, &actor, version);
        let versions = VersionedRow(encode_row(&stored));
        let hinted = self.hint(&id, &versions, replicas.clone()).await;
        if hinted.is_empty() {
            return Err(RequestError::Unavailable {
                required: 1,
                alive: 0,
            });
        }
        Ok(ClientReply::Written {
            context: Context(CausalContext::encode(&stored.context())),
            receipt: Receipt {
                coordinator: Some(self.me.clone()),
                hinted,
                ..Receipt::default()
            },
        })
    }

    /// Delivers a sibling set to every replica of its row now: merged here
    /// when this node is one, sent to the live ones, hinted for the others.
    /// Returns whether every replica took it or got a hint.
    pub(crate) async fn deliver_everywhere(&self, row: &RowId, versions: &[u8]) -> bool {
        let token = ringdb_ring::Token::of(row.partition.as_bytes());
        let replicas = self
            .membership
            .view()
            .ring
            .replicas(token, &self.replication);
        let versions = VersionedRow(versions.to_vec());
        let deadline = Instant::now() + self.limits.timeout();
        let mut missed = Vec::new();
        for replica in &replicas {
            let done = if *replica == self.me {
                let key = RowKey::new(row.table, row.partition.clone(), row.clustering.clone());
                match decode_versions(&versions.0) {
                    Ok(incoming) => self
                        .blocking(move |storage| storage.merge(&key, &incoming))
                        .await
                        .is_ok(),
                    Err(_) => false,
                }
            } else if self.is_up(replica) {
                let request = PeerRequest::Replicate {
                    row: row.clone(),
                    versions: versions.clone(),
                };
                match self.peers.send(replica, request, deadline) {
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
        !replicas.is_empty() && self.hint(row, &versions, missed).await.len() == wanted
    }

    /// Sends a write to the first reachable replica to coordinate it.
    async fn forward(
        &self,
        replicas: &[NodeId],
        required: usize,
        request: ClientRequest,
        deadline: Instant,
    ) -> Result<ClientReply, RequestError> {
        let Some(target) = replicas.iter().find(|r| self.is_up(r)) else {
            return Err(RequestError::Unavailable { required, alive: 0 });
        };
        let timeout = RequestError::Timeout {
            required,
            acknowledged: 0,
            write: true,
        };
        let call = self
            .peers
            .send(target, PeerRequest::Coordinate(request), deadline)
            .map_err(|_| RequestError::Unavailable { required, alive: 0 })?;
        match call.answer(deadline + FORWARD_GRACE).await {
            Ok(PeerReply::Coordinated(reply)) => Ok(reply),
            Ok(other) => Err(RequestError::Server {
                node: target.clone(),
                reason: format!("unexpected reply to a forwarded write: {other:?}"),
            }),
            Err(CallError::Remote(error)) => Err(error),
            Err(_) => Err(timeout),
        }
    }

    async fn read(
        self: Arc<Self>,
        row: RowAddress,
        consistency: ConsistencyLevel,
        deadline: Instant,
    ) -> Result<ClientReply, RequestError> {
        let (id, replicas, required) = self.plan(&row, consistency, false)?;
        let alive = self.alive(&replicas);
        if alive.len() < required {
            return Err(RequestError::Unavailable {
                required,
                alive: alive.len(),
            });
        }
        let mut spares = alive[required..].iter();
        let mut reads = JoinSet::new();
        for replica in &alive[..required] {
            self.spawn_read(&mut reads, replica, &id, deadline);
        }
        let mut answers: Vec<(NodeId, StoredRow)> = Vec::new();
        let speculative = Duration::from_millis(self.limits.speculative_retry_ms);
        let mut speculate_at = Instant::now() + speculative;
        while answers.len() < required {
            let wait_until = if spares.len() > 0 {
                speculate_at.min(deadline)
            } else {
                deadline
            };
            match tokio::time::timeout_at(wait_until, reads.join_next()).await {
                Ok(Some(Ok((replica, Ok(stored))))) => answers.push((replica, stored)),
                Ok(Some(outcome)) => {
                    debug!(?outcome, "replica read failed");
                    if let Some(spare) = spares.next() {
                        self.spawn_read(&mut reads, spare, &id, deadline);
                    }
                }
                // Speculative retry: a replica is slow (or silently gone):
                // ask a spare rather than wait for the deadline.
                Err(_) if Instant::now() < deadline && spares.len() > 0 => {
                    if let Some(spare) = spares.next() {
                        debug!(spare = %spare, "speculative read");
                        self.spawn_read(&mut reads, spare, &id, deadline);
                    }
                    speculate_at = Instant::now() + speculative;
                }
                Ok(None) | Err(_) => {
                    return Err(RequestError::Timeout {
                        required,
                        acknowledged: answers.len(),
                        write: false,
                    });
                }
            }
        }
        let merged = answers
            .iter()
            .fold(StoredRow::new(), |merged, (_, stored)| merged.sync(stored));
        let behind: Vec<NodeId> = answers
            .iter()
            .filter(|(_, stored)| !stored.descends(&merged))
            .map(|(replica, _)| replica.clone())
            .collect();
        let repaired = self.repair(&id, &merged, &behind, deadline).await;
        if repaired.len() < behind.len() {
            return Err(RequestError::Timeout {
                required,
                acknowledged: answers.len() - (behind.len() - repaired.len()),
                write: false,
            });
        }
        let unread: Vec<NodeId> = alive
            .iter()
            .filter(|r| !answers.iter().any(|(a, _)| a == *r))
            .cloned()
            .collect();
        if !unread.is_empty() {
            self.repair_in_background(id, merged.clone(), unread);
        }
        Ok(ClientReply::Read {
            siblings: siblings_of(&merged),
            context: Context(CausalContext::encode(&merged.context())),
            receipt: Receipt {
                coordinator: Some(self.me.clone()),
                acknowledged: answers.into_iter().map(|(replica, _)| replica).collect(),
                repaired,
                ..Receipt::default()
            },
        })
    }

    fn spawn_read(
        self: &Arc<Self>,
        reads: &mut JoinSet<(NodeId, Result<StoredRow, RequestError>)>,
        replica: &NodeId,
        id: &RowId,
        deadline: Instant,
    ) {
        let replica = replica.clone();
        if replica == self.me {
            let key = RowKey::new(id.table, id.partition.clone(), id.clustering.clone());
            let this = self.clone();
            reads.spawn(async move {
                let stored = this.blocking(move |storage| storage.get(&key)).await;
                (replica, stored.map(Option::unwrap_or_default))
            });
            return;
        }
        let call = self
            .peers
            .send(&replica, PeerRequest::Read { row: id.clone() }, deadline);
        reads.spawn(async move {
            let answer = match call {
                Ok(call) => call.answer(deadline).await,
                Err(error) => Err(error),
            };
            (replica, read_answer(answer))
        });
    }

    /// Merges `merged` into each of `replicas`; returns those that took it
    /// before the deadline.
    async fn repair(
        &self,
        id: &RowId,
        merged: &StoredRow,
        replicas: &[NodeId],
        deadline: Instant,
    ) -> Vec<NodeId> {
        let versions = VersionedRow(encode_row(merged));
        let mut repairs = JoinSet::new();
        for replica in replicas {
            let replica = replica.clone();
            if replica == self.me {
                let key = RowKey::new(id.table, id.partition.clone(), id.clustering.clone());
                let storage = self.storage.clone();
                let incoming = merged.clone();
                repairs.spawn(async move {
                    let outcome =
                        tokio::task::spawn_blocking(move || storage.merge(&key, &incoming)).await;
                    (replica, matches!(outcome, Ok(Ok(_))))
                });
                continue;
            }
            let request = PeerRequest::Replicate {
                row: id.clone(),
                versions: versions.clone(),
            };
            let call = self.peers.send(&replica, request, deadline);
            repairs.spawn(async move {
                let applied = match call {
                    Ok(call) => matches!(call.answer(deadline).await, Ok(PeerReply::Applied)),
                    Err(_) => false,
                };
                (replica, applied)
            });
        }
        let mut repaired = Vec::new();
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, repairs.join_next()).await {
            if let Ok((replica, true)) = joined {
                repaired.push(replica);
            }
        }
        repaired
    }

    /// Reads `replicas` after the answer and repairs those behind `merged`.
    fn repair_in_background(self: &Arc<Self>, id: RowId, merged: StoredRow, replicas: Vec<NodeId>) {
        let this = self.clone();
        let job: BackgroundJob = Box::pin(async move {
            let deadline = Instant::now() + this.limits.timeout();
            let mut reads = JoinSet::new();
            for replica in &replicas {
                this.spawn_read(&mut reads, replica, &id, deadline);
            }
            let mut behind = Vec::new();
            while let Some(joined) = reads.join_next().await {
                if let Ok((replica, Ok(stored))) = joined
                    && !stored.descends(&merged)
                {
                    behind.push(replica);
                }
            }
            if !behind.is_empty() {
                let repaired = this.repair(&id, &merged, &behind, deadline).await;
                debug!(?repaired, "background read repair");
            }
        });
        // A full queue sheds the repair: it is an optimisation, and
        // anti-entropy catches what it misses.
        if self.background.try_send(job).is_err() {
            debug!("background read repair queue full; repair skipped");
        }
    }

    pub(crate) fn server_error(&self, reason: impl Into<String>) -> RequestError {
        RequestError::Server {
            node: self.me.clone(),
            reason: reason.into(),
        }
    }

    /// Whether `node` counts as alive: the failure detector says so and a
    /// connection to it is up.
    pub(crate) fn is_up(&self, node: &NodeId) -> bool {
        self.membership.view().is_up(node) && self.peers.is_alive(node)
    }

    fn topology(&self) -> ClientReply {
        let view = self.membership.view();
        ClientReply::Topology {
            nodes: view.topology(|id| *id == self.me || self.is_up(id)),
            replication: self.replication.clone(),
        }
    }

    fn repair_stats(&self) -> RepairStats {
        let (hints_pending, hints) = self.hints.stats();
        let trees = self.storage.trees();
        RepairStats {
            hints_pending,
            hints,
            trees_ready: trees.is_ready(),
            tree_ranges: trees.ranges().count() as u64,
            antientropy: self.repairs.lock().expect("repairs").clone(),
        }
    }

    fn status(&self) -> ClientReply {
        ClientReply::Status {
            answered_by: self.me.clone(),
            nodes: self.membership.view().statuses(&self.replication),
            replication: self.replication.clone(),
        }
    }
}

fn read_answer(answer: Result<PeerReply, CallError>) -> Result<StoredRow, RequestError> {
    match answer {
        Ok(PeerReply::Row(None)) => Ok(StoredRow::new()),
        Ok(PeerReply::Row(Some(versions))) => decode_versions(&versions.0)
            .map_err(|e| RequestError::invalid(format!("malformed versioned row: {e}"))),
        Ok(other) => Err(RequestError::invalid(format!(
            "unexpected reply to a read: {other:?}"
        ))),
        Err(CallError::Remote(error)) => Err(error),
        Err(error) => Err(RequestError::invalid(error.to_string())),
    }
}

/// The live versions of a row, as a reader sees them.
fn siblings_of(merged: &StoredRow) -> Vec<Sibling> {
    merged
        .siblings()
        .filter_map(|(dot, version)| {
            let columns: Row = version.row.clone()?;
            Some(Sibling {
                columns,
                timestamp_micros: version.timestamp_micros,
                writer: format!("{}:{}", dot.actor.node, dot.counter),
            })
        })
        .collect()
}
