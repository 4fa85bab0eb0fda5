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
//! reads a spare; asked to apply a write, it refuses too (its
//! acknowledgement would count where no read looks; the coordinator hints
//! the write instead). What this does not reconcile is a reader whose view is
//! older than the change's start together with a writer whose view is past
//! its end: gossip spreads a change within seconds, and a joining node
//! streams only once every live member confirms it sees the join.
//!
//! [`DvvSet::sync`]: crate::causality::DvvSet::sync
//! [`Storage::write`]: crate::storage::Storage::write
//! [`ReadFirst`]: ringdb_proto::ReadFirst

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ringdb_proto::{
    ClientReply, ClientRequest, ConsistencyLevel, Context, PeerReply, PeerRequest, Receipt,
    RequestError, Row, RowAddress, RowId, StreamedRow, TABLE_ID_PREFIX, TableId, VersionedRow,
};
use ringdb_ring::{NodeId, Replication};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::causality::CausalContext;
use crate::cleanup::Cleanup;
use crate::hints::Handoff;
use crate::membership::View;
use crate::replica::Replica;
use crate::storage::{RowKey, RowLimits, StoredRow, decode_versions, encode_row};

mod forwarded;
mod quorum;
mod read;
mod rows;
mod slice;
mod write;

use quorum::Quorum;
pub(crate) use read::siblings_of;
use rows::RowsWrite;
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

/// The data path of a node: a [`Replica`] plus what writes need beyond it
/// (hints for replicas out of reach, cleanup's count of arriving rows, the
/// background queue, the forwarded writes already run).
pub(crate) struct Coordinator {
    pub(crate) replica: Arc<Replica>,
    /// Hints for the replicas a write could not reach.
    pub(crate) handoff: Arc<Handoff>,
    /// What a running cleanup must know of rows arriving for ranges this
    /// node does not replicate in its view (see `cleanup.rs`).
    pub(crate) cleanup: Arc<Cleanup>,
    pub(crate) background: mpsc::Sender<BackgroundJob>,
    /// Forwarded writes run lately, so that none runs twice.
    pub(crate) forwarded: forwarded::Forwarded,
}

/// A coordinator is a replica with a data path: `self.me`, `self.storage`
/// and the rest read as they do in every service.
impl Deref for Coordinator {
    type Target = Replica;

    fn deref(&self) -> &Replica {
        &self.replica
    }
}

/// The table id of a table name. Until keyspaces declare tables (and give
/// them ids), a table is named by its use and its id is the first eight
/// bytes of the blake3 hash of the name.
pub fn table_id(name: &str) -> Result<TableId, RequestError> {
    // A CQL table, by id (`RowAddress::of_table`).
    if let Some(hex) = name.strip_prefix(TABLE_ID_PREFIX) {
        return match u64::from_str_radix(hex, 16) {
            Ok(id) if hex.len() == 16 => Ok(TableId(id)),
            _ => Err(RequestError::invalid(format!(
                "table {name:?}: a table id is {TABLE_ID_PREFIX} and 16 hex digits"
            ))),
        };
    }
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

impl Coordinator {
    /// Serves a client request (or one forwarded by a peer, which must not
    /// be forwarded again).
    pub(crate) async fn serve_client(
        self: Arc<Self>,
        request: ClientRequest,
        deadline: Instant,
        forwarded: bool,
    ) -> Result<ClientReply, RequestError> {
        // No longer than the coordinator's timeout.
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
                self.check_row_size(&columns)?;
                let write = Write {
                    row,
                    columns: Some(columns),
                    context,
                    consistency,
                    sloppy,
                    patch: false,
                    timestamp: None,
                    replaces: false,
                    and_unread: false,
                };
                self.write(write, deadline, forwarded).await
            }
            ClientRequest::Update {
                row,
                columns,
                context,
                consistency,
                timestamp,
            } => {
                self.check_row_size(&columns)?;
                let write = Write {
                    row,
                    columns: Some(columns),
                    context,
                    consistency,
                    sloppy: false,
                    patch: true,
                    timestamp,
                    replaces: false,
                    and_unread: false,
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
                    patch: false,
                    timestamp: None,
                    replaces: false,
                    and_unread: false,
                };
                self.write(write, deadline, forwarded).await
            }
            ClientRequest::WriteRows {
                table,
                partition,
                rows,
                consistency,
            } => {
                let write = RowsWrite {
                    table,
                    partition,
                    rows,
                    consistency,
                };
                self.write_rows(write, deadline, forwarded).await
            }
            ClientRequest::LocalGet { row } => self.local_get(row).await,
            // Admin requests are the dispatcher's; none is coordinated for
            // another node.
            _ => Err(RequestError::invalid(
                "only reads and writes are coordinated for another node",
            )),
        }
    }

    /// Refuses a row whose columns encode to more than the row limit.
    fn check_row_size(&self, columns: &Row) -> Result<(), RequestError> {
        let size = rmp_serde::to_vec_named(columns).map_or(usize::MAX, |b| b.len());
        if size > self.limits.max_row_bytes {
            return Err(RequestError::invalid(format!(
                "row of {size} bytes exceeds the limit of {} bytes",
                self.limits.max_row_bytes
            )));
        }
        Ok(())
    }

    /// What this node alone holds of `row` (`LocalGet`, for tests and
    /// tools): no other replica is asked, nothing is repaired.
    async fn local_get(&self, row: RowAddress) -> Result<ClientReply, RequestError> {
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

    /// Serves a replica's request from another node (a member: the
    /// dispatcher checked).
    pub(crate) async fn serve_peer(
        self: Arc<Self>,
        from: NodeId,
        request: PeerRequest,
        deadline: Instant,
    ) -> Result<PeerReply, RequestError> {
        match request {
            PeerRequest::Replicate { row, versions } => {
                let incoming = decode_versions(&versions.0)
                    .map_err(|e| RequestError::invalid(format!("malformed versioned row: {e}")))?;
                let key = RowKey::new(row.table, row.partition, row.clustering);
                // A coordinator whose view is behind (a node that left, or
                // was removed and started again empty) must not count this
                // node's acknowledgement: reads would not look here.
                if !self.replicates(key.table, key.token) {
                    return Err(RequestError::NotAReplica {
                        node: self.me.clone(),
                    });
                }
                self.cleanup
                    .arrivals
                    .note(&self.replica, [(key.table, key.token)]);
                self.blocking(move |storage| storage.merge(&key, &incoming))
                    .await?;
                Ok(PeerReply::Applied)
            }
            PeerRequest::ReplicateRows(rows) => self.replicate_rows(rows).await,
            PeerRequest::Read { row } => {
                let key = RowKey::new(row.table, row.partition, row.clustering);
                if !self.replicates(key.table, key.token) {
                    return Err(RequestError::NotAReplica {
                        node: self.me.clone(),
                    });
                }
                let stored = self.blocking(move |storage| storage.get(&key)).await?;
                Ok(PeerReply::Row(
                    stored.map(|stored| VersionedRow(encode_row(&stored))),
                ))
            }
            PeerRequest::ReadSlice(read) => {
                let token = ringdb_ring::Token::of(read.partition.as_bytes());
                if !self.replicates(read.table, token) {
                    return Err(RequestError::NotAReplica {
                        node: self.me.clone(),
                    });
                }
                let (rows, more) = self.blocking(move |storage| storage.slice(&read)).await?;
                let rows = rows
                    .into_iter()
                    .map(|(key, versions)| StreamedRow {
                        key,
                        versions: VersionedRow(versions),
                    })
                    .collect();
                Ok(PeerReply::Rows { rows, more })
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
            // The rest are the other services', routed by the dispatcher.
            _ => Err(RequestError::invalid("not a request for the data path")),
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
    ) -> Result<Plan, RequestError> {
        let table = table_id(&row.table)?;
        if level == ConsistencyLevel::Any && !write {
            return Err(RequestError::invalid(
                "consistency ANY is for writes only; read at ONE",
            ));
        }
        if level == ConsistencyLevel::Any && !self.handoff.hints.enabled() {
            return Err(RequestError::invalid(
                "consistency ANY needs hinted handoff, which is disabled on this node (hints.enabled)",
            ));
        }
        let replication = self.placement.of(table);
        let view = self.membership.view();
        let mut replicas = view.ring.replicas(row.token(), &replication);
        // While a node joins or leaves, writes also go to the replicas the
        // new ring adds, and wait for them too (Cassandra's pending ranges):
        // a write acknowledged during the change is on enough replicas of
        // the ring after it.
        let mut pending = Vec::new();
        if write && let Some(future) = &view.future {
            for node in future.replicas(row.token(), &replication) {
                if !replicas.contains(&node) {
                    pending.push(node);
                }
            }
        }
        let quorum = self.level_quorum(&replication, &replicas, &pending, level);
        replicas.extend(pending);
        let id = RowId {
            table,
            partition: row.partition.clone(),
            clustering: row.clustering.clone(),
        };
        Ok(Plan {
            id,
            required: quorum.required(),
            replicas,
            quorum,
        })
    }

    /// What `level` needs of `replicas`, and of `pending` (replicas a
    /// topology change adds, each needed on top): with replicas per
    /// datacenter, LOCAL_ONE and LOCAL_QUORUM count the replicas in this
    /// node's datacenter, and EACH_QUORUM a quorum in every datacenter, as
    /// Cassandra does; the other levels (and every level without per
    /// datacenter replication) count the replicas together.
    fn level_quorum(
        &self,
        replication: &Replication,
        replicas: &[NodeId],
        pending: &[NodeId],
        level: ConsistencyLevel,
    ) -> Quorum {
        let view = self.membership.view();
        let datacenter_of = |node: &NodeId| datacenter_of(&view, node);
        let group = |datacenter: &str, factor: usize| {
            let of = |nodes: &[NodeId]| -> Vec<NodeId> {
                (nodes.iter())
                    .filter(|n| datacenter_of(n).as_deref() == Some(datacenter))
                    .cloned()
                    .collect()
            };
            let extra = of(pending);
            let mut members = of(replicas);
            let required = level.required(factor) + extra.len();
            members.extend(extra);
            (members, required)
        };
        let factors = match replication {
            Replication::PerDatacenter { factors } => factors,
            _ => return global_quorum(replication, replicas, pending, level),
        };
        match level {
            ConsistencyLevel::LocalOne | ConsistencyLevel::LocalQuorum => {
                let local = datacenter_of(&self.me).unwrap_or_default();
                let factor = factors.get(&local).copied().unwrap_or(0);
                let (members, required) = group(&local, factor);
                Quorum::new(members, required)
            }
            ConsistencyLevel::EachQuorum => {
                let mut groups = factors
                    .iter()
                    .filter(|(_, factor)| **factor > 0)
                    .map(|(datacenter, factor)| group(datacenter, *factor));
                let Some((members, required)) = groups.next() else {
                    return global_quorum(replication, replicas, pending, level);
                };
                groups.fold(Quorum::new(members, required), |quorum, (m, r)| {
                    quorum.and(m, r)
                })
            }
            _ => global_quorum(replication, replicas, pending, level),
        }
    }

    /// The replicas a write at `level` not coordinated here may be
    /// forwarded to: for LOCAL_ONE and LOCAL_QUORUM with replicas per
    /// datacenter, those of this node's datacenter (its level counts them,
    /// and a coordinator elsewhere would count its own).
    fn forward_targets(
        &self,
        row: &RowAddress,
        replicas: &[NodeId],
        level: ConsistencyLevel,
    ) -> Vec<NodeId> {
        let local = matches!(
            level,
            ConsistencyLevel::LocalOne | ConsistencyLevel::LocalQuorum
        );
        if !local || !matches!(self.placed(row), Replication::PerDatacenter { .. }) {
            return replicas.to_vec();
        }
        let view = self.membership.view();
        let datacenter = |node: &NodeId| datacenter_of(&view, node);
        let mine = datacenter(&self.me);
        (replicas.iter())
            .filter(|r| mine.is_some() && datacenter(r) == mine)
            .cloned()
            .collect()
    }

    /// The replication that places `row`'s table (the cluster's for a
    /// malformed table, which [`Coordinator::plan`] refuses anyway).
    pub(super) fn placed(&self, row: &RowAddress) -> Replication {
        table_id(&row.table).map_or_else(|_| self.replication.clone(), |t| self.placement.of(t))
    }

    /// The replicas that are reachable: this node first when it is one.
    /// A replica the failure detector counts alive but whose connection is
    /// being remade (after this node was paused, or a blip) is redialled
    /// at once, and when the connected ones cannot meet `quorum` it is
    /// waited for briefly — at most [`REDIAL_WAIT`], and a quarter of the
    /// time left — rather than counted out.
    async fn alive(&self, quorum: &Quorum, deadline: Instant) -> Vec<NodeId> {
        self.alive_of(&quorum.candidates(), quorum, deadline).await
    }

    /// [`Coordinator::alive`] of `replicas` (a write goes to every replica,
    /// even those its level does not count, such as the other datacenters'
    /// at LOCAL_QUORUM).
    async fn alive_of(
        &self,
        replicas: &[NodeId],
        quorum: &Quorum,
        deadline: Instant,
    ) -> Vec<NodeId> {
        let view = self.membership.view();
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
}

/// `level`'s count of every replica together, and each pending one.
fn global_quorum(
    replication: &Replication,
    replicas: &[NodeId],
    pending: &[NodeId],
    level: ConsistencyLevel,
) -> Quorum {
    let required = level.required(replication.total_factor()) + pending.len();
    let mut all = replicas.to_vec();
    all.extend(pending.iter().cloned());
    Quorum::new(all, required)
}

/// The datacenter of `node` in `view`'s ring (or the ring after the change
/// in progress, for a joining node).
fn datacenter_of(view: &View, node: &NodeId) -> Option<String> {
    let member = view.ring.members().get(node).or_else(|| {
        let future = view.future.as_ref()?;
        future.members().get(node)
    })?;
    Some(member.location.datacenter.clone())
}

/// Where a request's row lives and what its level needs.
struct Plan {
    /// The row.
    id: RowId,
    /// Its replicas (with those a topology change adds).
    replicas: Vec<NodeId>,
    /// The answers the level needs, every group together (for errors).
    required: usize,
    /// Which answers the level needs.
    quorum: Quorum,
}

/// Background jobs that run at once.
const BACKGROUND_CONCURRENCY: usize = 64;

/// Runs background jobs (read repairs), a bounded number at a time.
pub(crate) async fn run_background(
    mut jobs: mpsc::Receiver<BackgroundJob>,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(BACKGROUND_CONCURRENCY));
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            job = jobs.recv() => {
                let Some(job) = job else { break };
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                running.spawn(async move {
                    job.await;
                    drop(slot);
                });
            }
            Some(_) = running.join_next(), if !running.is_empty() => {}
            () = cancel.cancelled() => break,
        }
    }
    running.shutdown().await;
}
