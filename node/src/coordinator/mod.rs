//! The coordinator and the replica: the write and read paths of DESIGN.md.
//!
//! **Writes.** The write coordinator is a replica of the row; a node that is
//! not forwards the request to one that is (the first reachable in ring
//! order). The coordinator decides `Unavailable` before doing anything when
//! fewer replicas are reachable than the level needs; otherwise it applies
//! the write to its own sibling set with a dot of its own actor
//! ([`Storage::write`], which issues the dot under the row lock and refuses
//! a row past `requests.max_siblings` or `requests.max_stored_row_bytes`),
//! sends the resulting set to every other reachable replica, and answers
//! once the level's count has acknowledged (itself included), or `Timeout`
//! at the deadline with the count it reached. A replica it knows to be
//! unreachable is not waited for; the messages already queued still reach
//! the slower replicas after the answer.
//!
//! What a write supersedes is what its context says its client saw, and no
//! more. The context is clamped to the row's history as this coordinator
//! knows it (a forged or stale context cannot name writes nobody read). A
//! write without a context supersedes what this coordinator holds, as
//! Cassandra's last write would; a *delete* without a context first reads
//! the row at its own level, so that it removes what a read at that level
//! returns ([`ReadFirst`]), as a user deleting a row expects.
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
//! **While a node joins or leaves**, a write goes to the replicas of the
//! ring before the change and to those the ring after it adds, and waits
//! for as many more acknowledgements as it added replicas (Cassandra's
//! pending ranges); a read needs the level's count from the replicas of
//! each ring (see `quorum.rs`), so that it meets a write whose coordinator
//! had already seen the change end, or not yet seen it begin. A replica
//! asked to read a row it replicates in neither ring of its own view (it
//! left, or gave the range away) refuses with `NotAReplica` rather than
//! answer from data it no longer receives writes for, and the coordinator
//! reads a spare. What this does not reconcile is a reader whose view is
//! older than the change's start together with a writer whose view is past
//! its end: gossip spreads a change within seconds, and a joining node
//! waits two gossip rounds after its announcement before it streams.
//!
//! [`DvvSet::sync`]: crate::causality::DvvSet::sync
//! [`Storage::write`]: crate::storage::Storage::write
//! [`ReadFirst`]: ringdb_proto::ReadFirst

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringdb_proto::{
    ClientReply, ClientRequest, ClusterSettings, ConsistencyLevel, Context, PeerReply, PeerRequest,
    Receipt, RepairStats, RepairSummary, RequestError, RowAddress, RowId, TableId, VersionedRow,
};
use ringdb_ring::{NodeId, Replication, Ring, Token};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::causality::CausalContext;
use crate::config::{AntiEntropyConfig, RequestConfig, StreamingConfig};
use crate::hints::Hints;
use crate::membership::{GossipHandle, Membership};
use crate::network::{BoxFuture, Incoming, Network};
use crate::storage::{
    RowKey, RowLimits, Storage, StorageError, StoredRow, decode_versions, encode_row,
};
use crate::world::{Clock, Random};
use crate::{cleanup, operations, repair, streaming};

mod forwarded;
mod quorum;
mod read;
mod write;

use quorum::Quorum;
use read::siblings_of;
use ringdb_gossip::Status;
use write::Write;

/// How long past a request's deadline a forwarding node waits for the
/// answer of the node it forwarded to (which answers `Timeout` at the deadline).
const FORWARD_GRACE: Duration = Duration::from_millis(100);
/// The longest a request waits for the connection to a replica the failure
/// detector counts alive to be remade, before counting the replica out.
pub(super) const REDIAL_WAIT: Duration = Duration::from_millis(500);
/// The longest table name (Cassandra's limit).
const MAX_TABLE_NAME: usize = 48;

/// Work done after the answer (background read repair).
pub(crate) type BackgroundJob = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the coordinator needs: storage, peers, the ring and the limits.
pub(crate) struct Coordinator {
    pub(crate) me: NodeId,
    pub(crate) generation: u64,
    pub(crate) storage: Arc<Storage>,
    pub(crate) peers: Arc<dyn Network>,
    pub(crate) membership: Arc<Membership>,
    pub(crate) gossip: GossipHandle,
    pub(crate) replication: Replication,
    /// The settings every node of the cluster must share.
    pub(crate) settings: ClusterSettings,
    pub(crate) limits: RequestConfig,
    pub(crate) streaming: StreamingConfig,
    pub(crate) antientropy: AntiEntropyConfig,
    pub(crate) hints: Arc<Hints>,
    /// What anti-entropy did since the node started.
    pub(crate) repairs: Mutex<RepairSummary>,
    /// Rows cleanup deleted since the node started.
    pub(crate) cleaned: AtomicU64,
    /// What a running cleanup must know of rows arriving for ranges this
    /// node does not replicate in its view (see `cleanup.rs`).
    pub(crate) arrivals: cleanup::Arrivals,
    pub(crate) background: mpsc::Sender<BackgroundJob>,
    /// The decommission or removenode this node runs (or ran last).
    pub(crate) operations: operations::Operations,
    /// Wall time.
    pub(crate) clock: Arc<dyn Clock>,
    /// Random numbers.
    pub(crate) random: Arc<Random>,
    /// Forwarded writes run lately, so that none runs twice.
    pub(crate) forwarded: forwarded::Forwarded,
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

/// The coordinator is the node's dispatcher: every request that reaches
/// the node comes here first.
impl Incoming for Coordinator {
    fn peer_request(
        self: Arc<Self>,
        from: NodeId,
        request: PeerRequest,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<PeerReply, RequestError>> {
        Box::pin(self.serve_peer(from, request, deadline))
    }

    fn client_request(
        self: Arc<Self>,
        request: ClientRequest,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<ClientReply, RequestError>> {
        Box::pin(self.serve_client(request, deadline, false))
    }
}

impl Coordinator {
    /// Now, in microseconds since the Unix epoch, by this node's clock.
    pub(crate) fn now_micros(&self) -> i64 {
        self.clock.now_micros()
    }

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
                let status = operations::start(&self, operations::Kind::Decommission).await?;
                Ok(ClientReply::Operation(status))
            }
            ClientRequest::RemoveNode { node } => {
                let kind = operations::Kind::RemoveNode(node);
                Ok(ClientReply::Operation(
                    operations::start(&self, kind).await?,
                ))
            }
            ClientRequest::Operation { abort } => {
                let status = if abort {
                    operations::abort(&self)?
                } else {
                    operations::status(&self)?
                };
                Ok(ClientReply::Operation(status))
            }
            ClientRequest::Repair { table, ranges } => {
                let table = table.as_deref().map(table_id).transpose()?;
                let summary = repair::repair(&self, table, ranges, None, original_deadline).await?;
                Ok(ClientReply::Repaired(summary))
            }
            ClientRequest::RepairStats => Ok(ClientReply::RepairStats(self.repair_stats())),
            ClientRequest::Cleanup => {
                let cleaned = cleanup::cleanup(&self).await?;
                Ok(ClientReply::Done {
                    summary: format!(
                        "{} deleted {} rows of the {} ranges it does not replicate",
                        self.me, cleaned.rows, cleaned.ranges
                    ),
                })
            }
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
            PeerRequest::Hello {
                generation,
                settings,
            } => {
                if let Some(theirs) = settings
                    && let Some((setting, ours, theirs)) = self.settings.mismatch(&theirs)
                {
                    warn!(peer = %from, setting, here = %ours, there = %theirs,
                        "refused a node whose cluster settings differ from this node's");
                    return Err(RequestError::SettingsMismatch {
                        node: self.me.clone(),
                        setting: setting.to_string(),
                        theirs: ours,
                        ours: theirs,
                    });
                }
                self.peers.observe_generation(&from, generation);
                Ok(PeerReply::Hello {
                    generation: self.generation,
                    wall_micros: Some(self.now_micros()),
                })
            }
            PeerRequest::Replicate { row, versions } => {
                let incoming = decode_versions(&versions.0)
                    .map_err(|e| RequestError::invalid(format!("malformed versioned row: {e}")))?;
                let key = RowKey::new(row.table, row.partition, row.clustering);
                self.arrivals.note(self.as_ref(), [key.token]);
                self.blocking(move |storage| storage.merge(&key, &incoming))
                    .await?;
                Ok(PeerReply::Applied)
            }
            PeerRequest::Read { row } => {
                let key = RowKey::new(row.table, row.partition, row.clustering);
                if !self.replicates(key.token) {
                    return Err(RequestError::NotAReplica {
                        node: self.me.clone(),
                    });
                }
                let stored = self.blocking(move |storage| storage.get(&key)).await?;
                Ok(PeerReply::Row(
                    stored.map(|stored| VersionedRow(encode_row(&stored))),
                ))
            }
            PeerRequest::Coordinate { id, request } => {
                // Longer than any run of it lives, so that a late duplicate
                // still finds it.
                let keep = 2 * (self.limits.timeout() + FORWARD_GRACE);
                let this = self.clone();
                let run = this.serve_client(request, deadline, true);
                let answer = self.forwarded.once(from, id, keep, run).await;
                Ok(PeerReply::Coordinated(answer?))
            }
            PeerRequest::StreamRange {
                range,
                after,
                max_rows,
            } => {
                let max_rows = max_rows.clamp(1, 4 * streaming::PAGE_ROWS);
                let (rows, more) = self
                    .storage
                    .blocking(move |storage| streaming::page(storage, range, after, max_rows))
                    .await
                    .map_err(|e| self.server_error(e.to_string()))?;
                Ok(PeerReply::Rows { rows, more })
            }
            PeerRequest::StoreRows { rows } => {
                let tokens = rows.iter().filter_map(|row| RowKey::decode(&row.key).ok());
                self.arrivals
                    .note(self.as_ref(), tokens.map(|key| key.token));
                let purged_before = repair::purge_cutoff(&self);
                self.storage
                    .blocking(move |storage| streaming::store(storage, &rows, Some(purged_before)))
                    .await?;
                Ok(PeerReply::Applied)
            }
            PeerRequest::StoreHint {
                target,
                row,
                versions,
                created_micros,
            } => {
                decode_versions(&versions.0)
                    .map_err(|e| RequestError::invalid(format!("malformed versioned row: {e}")))?;
                if !self.hints.enabled() {
                    return Err(RequestError::invalid(format!(
                        "{} does not store hints (hints.enabled is false)",
                        self.me
                    )));
                }
                let hinted = self
                    .hint_created(&row, &versions, vec![target.clone()], created_micros)
                    .await;
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
                let tree = repair::local_tree(&self, &trees, range)?;
                let hashes = tree.hashes(level, &nodes).ok_or_else(|| {
                    RequestError::invalid(format!("no node {nodes:?} at level {level}"))
                })?;
                Ok(PeerReply::Hashes(hashes.concat()))
            }
            PeerRequest::LeafItems {
                range,
                leaves,
                table,
                after,
            } => {
                let (items, resume) = self
                    .storage
                    .blocking(move |storage| {
                        let after = after.map(serde_bytes::ByteBuf::into_vec);
                        storage.leaf_items(
                            range,
                            &leaves,
                            table,
                            after.as_deref(),
                            streaming::PAGE_BYTES,
                        )
                    })
                    .await
                    .map_err(|e| self.server_error(e.to_string()))?;
                let resume = resume.map(|(leaf, key)| (leaf, serde_bytes::ByteBuf::from(key)));
                Ok(PeerReply::Items { items, resume })
            }
            PeerRequest::ReadRows { keys } => {
                let (rows, more) = self
                    .storage
                    .blocking(move |storage| {
                        repair::read_rows(storage, keys, streaming::PAGE_BYTES)
                    })
                    .await
                    .map_err(|e| self.server_error(e.to_string()))?;
                Ok(PeerReply::Rows { rows, more })
            }
            PeerRequest::FetchRange { range, source } => {
                self.arrivals.incoming();
                let mut throttle = streaming::Throttle::new(self.streaming.bytes_per_sec());
                let streamed = streaming::fetch(
                    &*self.peers,
                    &self.storage,
                    &source,
                    range,
                    None,
                    &mut throttle,
                    |_| Ok(()),
                )
                .await
                .map_err(|e| self.server_error(e.to_string()))?;
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

    /// Runs a short storage call ([`Storage::call`]), turning its error
    /// into the one a client can act on.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Storage) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, RequestError> {
        match self.storage.call(work).await {
            Ok(value) => Ok(value),
            // A write over the row's limits: nothing was stored.
            Err(
                error @ (StorageError::TooManySiblings { .. } | StorageError::RowTooLarge { .. }),
            ) => Err(RequestError::invalid(error.to_string())),
            Err(error) if self.storage.note_damage(&error) => Err(self.damaged(&error.to_string())),
            Err(error @ StorageError::Restoring { .. }) => Err(self.damaged(&error.to_string())),
            Err(error) => Err(RequestError::Server {
                node: self.me.clone(),
                reason: error.to_string(),
            }),
        }
    }

    /// This node's answer while it holds damaged data.
    pub(crate) fn damaged(&self, detail: &str) -> RequestError {
        RequestError::DamagedData {
            node: self.me.clone(),
            detail: detail.to_owned(),
        }
    }

    /// The limits a write coordinated here keeps a row within.
    fn row_limits(&self) -> RowLimits {
        RowLimits {
            max_siblings: self.limits.max_siblings,
            max_bytes: self.limits.max_stored_row_bytes,
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
    /// A replica the failure detector counts alive but whose connection is
    /// being remade (after this node was paused, or a blip) is redialled
    /// at once, and when the connected ones cannot meet `quorum` it is
    /// waited for briefly — at most [`REDIAL_WAIT`], and a quarter of the
    /// time left — rather than counted out.
    async fn alive(&self, quorum: &Quorum, deadline: Instant) -> Vec<NodeId> {
        let view = self.membership.view();
        let replicas = quorum.candidates();
        let mut alive: Vec<NodeId> = replicas
            .iter()
            .filter(|r| **r == self.me)
            .cloned()
            .collect();
        let mut redialling = Vec::new();
        for replica in replicas.iter().filter(|r| **r != self.me) {
            if !view.is_up(replica) {
                continue;
            }
            if self.peers.is_alive(replica) {
                alive.push(replica.clone());
            } else {
                redialling.push(replica.clone());
            }
        }
        for replica in &redialling {
            self.peers.redial_now(replica);
        }
        if !redialling.is_empty() && !quorum.met_by(&alive) {
            let left = deadline.saturating_duration_since(Instant::now());
            let until = Instant::now() + REDIAL_WAIT.min(left / 4);
            // The waits share one deadline.
            for replica in redialling {
                let within = until.saturating_duration_since(Instant::now());
                if self.peers.wait_connected(&replica, within).await {
                    alive.push(replica);
                }
            }
        }
        alive
    }

    /// Whether this node replicates `token` in its view of the ring, now
    /// or once the topology change in progress completes.
    fn replicates(&self, token: Token) -> bool {
        let view = self.membership.view();
        let mine = |ring: &Ring| ring.replicas(token, &self.replication).contains(&self.me);
        mine(&view.ring) || view.future.as_ref().is_some_and(mine)
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
            rows_cleaned: self.cleaned.load(Ordering::Relaxed),
        }
    }

    fn status(&self) -> ClientReply {
        ClientReply::Status {
            answered_by: self.me.clone(),
            nodes: self.membership.view().statuses(&self.replication, |node| {
                self.peers
                    .clock_offset_micros(node)
                    .map(|micros| micros / 1000)
            }),
            replication: self.replication.clone(),
        }
    }
}
