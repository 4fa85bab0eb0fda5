//! The dispatcher: every request that reaches the node comes here first
//! and goes to the service that owns it.
//!
//! Reads and writes go to the coordinator (and, from peers, the replica's
//! side of them: `Replicate`, `Read`, `Coordinate`); streams to
//! `streaming`; hints to hinted handoff; Merkle exchanges and repairs to
//! anti-entropy; decommission and removenode to topology; cleanup to
//! cleanup. The dispatcher is the one module that knows them all, and
//! none of them knows it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ringdb_gossip::Status;
use ringdb_proto::{
    ClientReply, ClientRequest, KeyError, PartitionVersions, PeerReply, PeerRequest, RepairStats,
    RepairSummary, RequestError, TableId,
};
use ringdb_ring::NodeId;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cleanup::{self, Cleanup};
use crate::coordinator::{BackgroundJob, Coordinator, table_id};
use crate::hints::{Handoff, Hints};
use crate::injection::Injection;
use crate::metrics::{Metrics, Scraped};
use crate::network::{BoxFuture, Incoming};
use crate::operations::{Kind, Operations};
use crate::repair::{self, AntiEntropy};
use crate::replica::Replica;
use crate::schema::Schemas;
use crate::statements::{self, Statements};
use crate::storage::{RowKey, decode_versions};
use crate::streaming;
use crate::topology::{self, Topology};
use crate::trace;

/// The node's services, for routing.
pub(crate) struct Dispatcher {
    pub(crate) replica: Arc<Replica>,
    pub(crate) coordinator: Arc<Coordinator>,
    pub(crate) handoff: Arc<Handoff>,
    pub(crate) antientropy: Arc<AntiEntropy>,
    pub(crate) cleanup: Arc<Cleanup>,
    pub(crate) topology: Arc<Topology>,
    pub(crate) schemas: Arc<Schemas>,
    pub(crate) statements: Arc<Statements>,
    /// Faults a test harness may inject (`[faults] injectable`), or none.
    pub(crate) injection: Option<Arc<Injection>>,
    /// What the node counts (`metrics.rs`).
    pub(crate) metrics: Metrics,
    /// When the node started.
    pub(crate) started: Instant,
    /// Drained (`nodetool drain`): client data requests are refused.
    pub(crate) drained: AtomicBool,
    /// Held while a snapshot is taken or cleared (`nodetool.rs`).
    pub(crate) snapshots: tokio::sync::Mutex<()>,
}

impl Incoming for Dispatcher {
    fn peer_request(
        self: Arc<Self>,
        from: NodeId,
        request: PeerRequest,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<PeerReply, RequestError>> {
        Box::pin(async move {
            self.metrics.peer_request(&request);
            self.serve_peer(from, request, deadline).await
        })
    }

    fn client_request(
        self: Arc<Self>,
        request: ClientRequest,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<ClientReply, RequestError>> {
        Box::pin(async move {
            let serving = self.metrics.serving(&request);
            let result = self.serve_client(request, deadline).await;
            serving.ended(&result);
            result
        })
    }

    fn connection(&self, port: &'static str, open: bool) {
        self.metrics.connection(port, open);
    }
}

impl Dispatcher {
    /// Serves a client's request (its keys and timestamps checked first).
    /// Admin requests run as long as their
    /// caller waits; data requests no longer than the coordinator's timeout.
    async fn serve_client(
        &self,
        request: ClientRequest,
        deadline: Instant,
    ) -> Result<ClientReply, RequestError> {
        let me = &self.replica.me;
        self.check_request(&request)?;
        let data = matches!(
            request,
            ClientRequest::Get { .. }
                | ClientRequest::Put { .. }
                | ClientRequest::Update { .. }
                | ClientRequest::WriteRows { .. }
                | ClientRequest::Delete { .. }
                | ClientRequest::Query(_)
                | ClientRequest::Prepare { .. }
        );
        if data && self.drained.load(Ordering::Acquire) {
            // Overloaded: a client takes the request to another node.
            return Err(RequestError::overloaded(format!(
                "{me} is drained (nodetool drain) and takes no client requests until it restarts"
            )));
        }
        match request {
            ClientRequest::Get { .. }
            | ClientRequest::Put { .. }
            | ClientRequest::Update { .. }
            | ClientRequest::WriteRows { .. }
            | ClientRequest::Delete { .. }
            | ClientRequest::LocalGet { .. } => {
                let coordinator = self.coordinator.clone();
                coordinator.serve_client(request, deadline, false).await
            }
            ClientRequest::Query(query) if query.tracing => {
                let run = self.statements.execute(query, deadline);
                let (result, trace) = trace::traced(me.to_string(), run).await;
                Ok(match result {
                    Ok(result) => ClientReply::Traced { result, trace },
                    // Refused before anything ran: the client sends it again
                    // (with its text, or to another node), as untraced.
                    Err(
                        error @ (RequestError::Unprepared { .. } | RequestError::Overloaded { .. }),
                    ) => return Err(error),
                    Err(error) => ClientReply::TracedFailure { error, trace },
                })
            }
            ClientRequest::Query(query) => {
                let result = self.statements.execute(query, deadline).await?;
                Ok(ClientReply::Result(result))
            }
            ClientRequest::Prepare { cql, keyspace } => {
                let prepared = self.statements.prepare(cql, keyspace).await?;
                Ok(ClientReply::Prepared(prepared))
            }
            ClientRequest::Topology => Ok(self.topology()),
            ClientRequest::Status => Ok(self.status()),
            ClientRequest::Decommission => {
                let status = topology::start(&self.topology, Kind::Decommission)?;
                Ok(ClientReply::Operation(status))
            }
            ClientRequest::RemoveNode { node } => {
                let status = topology::start(&self.topology, Kind::RemoveNode(node))?;
                Ok(ClientReply::Operation(status))
            }
            ClientRequest::Operation { abort } => {
                let operations = &self.topology.operations;
                let status = if abort {
                    operations.abort()?
                } else {
                    operations.last()?
                };
                Ok(ClientReply::Operation(status))
            }
            ClientRequest::Repair { table, ranges } => {
                let table = table.as_deref().map(table_id).transpose()?;
                let summary =
                    repair::repair(&self.antientropy, table, ranges, None, deadline).await?;
                Ok(ClientReply::Repaired(summary))
            }
            ClientRequest::RepairStats => Ok(ClientReply::RepairStats(self.repair_stats())),
            ClientRequest::NodeTool(request) => {
                Ok(ClientReply::Reports(self.nodetool(request).await?))
            }
            ClientRequest::Cleanup => {
                let cleaned = cleanup::cleanup(&self.cleanup).await?;
                Ok(ClientReply::Done {
                    summary: format!(
                        "{me} deleted {} rows of the {} ranges it does not replicate",
                        cleaned.rows, cleaned.ranges
                    ),
                })
            }
        }
    }

    /// Serves a request from another node.
    async fn serve_peer(
        &self,
        from: NodeId,
        request: PeerRequest,
        deadline: Instant,
    ) -> Result<PeerReply, RequestError> {
        // Any node the cluster CA signed may say hello and gossip (that is
        // how a new node joins); only nodes known to the cluster may read,
        // write or coordinate: members, and nodes that left (they forward
        // what clients still send them), not removed ones.
        // Injected faults come from a harness the CA signed, which is no
        // member: the node's config decides whether it takes them.
        if !matches!(
            request,
            PeerRequest::Hello { .. } | PeerRequest::Gossip(_) | PeerRequest::InjectFaults(_)
        ) {
            let member = self
                .replica
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
            } => self.hello(&from, generation, settings),
            PeerRequest::Gossip(bytes) => self.gossip(from, &bytes).await,
            PeerRequest::Sees { node } => {
                let view = self.replica.membership.view();
                Ok(PeerReply::Sees {
                    in_ring: view.ring.members().contains_key(&node),
                    in_future: view
                        .future
                        .as_ref()
                        .is_some_and(|future| future.members().contains_key(&node)),
                })
            }
            PeerRequest::Replicate { .. }
            | PeerRequest::ReplicateRows(_)
            | PeerRequest::Read { .. }
            | PeerRequest::ReadSlice(_)
            | PeerRequest::Coordinate { .. } => {
                let coordinator = self.coordinator.clone();
                coordinator.serve_peer(from, request, deadline).await
            }
            PeerRequest::StoreHint { .. } | PeerRequest::StoreHintRows { .. } => {
                self.store_hint(request).await
            }
            PeerRequest::StreamRange { .. }
            | PeerRequest::StoreRows { .. }
            | PeerRequest::FetchRange { .. } => self.serve_stream(request).await,
            PeerRequest::TreeHashes { .. }
            | PeerRequest::LeafItems { .. }
            | PeerRequest::ReadRows { .. } => self.serve_repair(request).await,
            PeerRequest::PullSchema => Ok(PeerReply::Schema(self.schemas.encoded())),
            PeerRequest::PushSchema(bytes) => {
                self.schemas.merge(&bytes).await?;
                Ok(PeerReply::Applied)
            }
            PeerRequest::InjectFaults(injection) => match &self.injection {
                Some(hook) => hook.apply(&injection),
                None => Err(RequestError::invalid(format!(
                    "{} does not take injected faults (its config has [faults] injectable = false)",
                    self.replica.me
                ))),
            },
        }
    }

    /// Checks that a raw write has a key, and the timestamps it gives
    /// (`USING TIMESTAMP`), before the coordinator trusts them; the
    /// statement engine checks its own.
    fn check_request(&self, request: &ClientRequest) -> Result<(), RequestError> {
        // A new row needs a key (decoding lets an empty one through, for
        // rows stored before empty keys were refused: they can still be
        // read and deleted).
        let empty_key = match request {
            ClientRequest::Put { row, .. } | ClientRequest::Update { row, .. } => {
                row.partition.as_bytes().is_empty()
            }
            ClientRequest::WriteRows { partition, .. } => partition.as_bytes().is_empty(),
            _ => false,
        };
        if empty_key {
            return Err(RequestError::invalid(
                KeyError::EmptyPartitionKey.to_string(),
            ));
        }
        let (table, stamps): (&str, Vec<i64>) = match request {
            ClientRequest::Update {
                row,
                timestamp: Some(at),
                ..
            } => (&row.table, vec![*at]),
            ClientRequest::WriteRows { table, rows, .. } => {
                (table, rows.iter().filter_map(|row| row.timestamp).collect())
            }
            _ => return Ok(()),
        };
        if stamps.is_empty() {
            return Ok(());
        }
        let schema = self.schemas.current();
        let table = schema.table_by_id(table_id(table)?);
        let now = self.replica.now_micros();
        for at in stamps {
            statements::check_timestamp(table, at, now)
                .map_err(|why| RequestError::invalid(why.to_string()))?;
        }
        Ok(())
    }

    fn hello(
        &self,
        from: &NodeId,
        generation: u64,
        settings: Option<ringdb_proto::ClusterSettings>,
    ) -> Result<PeerReply, RequestError> {
        let replica = &self.replica;
        if let Some(theirs) = settings
            && let Some((setting, ours, theirs)) = replica.settings.mismatch(&theirs)
        {
            warn!(peer = %from, setting, here = %ours, there = %theirs,
                "refused a node whose cluster settings differ from this node's");
            return Err(RequestError::SettingsMismatch {
                node: replica.me.clone(),
                setting: setting.to_string(),
                theirs: ours,
                ours: theirs,
            });
        }
        replica.peers.observe_generation(from, generation);
        Ok(PeerReply::Hello {
            generation: replica.generation,
            wall_micros: Some(replica.now_micros()),
        })
    }

    async fn gossip(&self, from: NodeId, bytes: &[u8]) -> Result<PeerReply, RequestError> {
        let message = rmp_serde::from_slice(bytes)
            .map_err(|e| RequestError::invalid(format!("malformed gossip: {e}")))?;
        let reply = self.replica.gossip.incoming(from, message).await;
        let reply = reply
            .map(|reply| rmp_serde::to_vec_named(&reply).map(serde_bytes::ByteBuf::from))
            .transpose()
            .map_err(|e| {
                self.replica
                    .server_error(format!("cannot encode gossip: {e}"))
            })?;
        Ok(PeerReply::Gossip(reply))
    }

    async fn store_hint(&self, request: PeerRequest) -> Result<PeerReply, RequestError> {
        let (target, rows, created_micros) = match request {
            PeerRequest::StoreHint {
                target,
                row,
                versions,
                created_micros,
            } => (
                target,
                PartitionVersions::one(&row, versions),
                created_micros,
            ),
            PeerRequest::StoreHintRows {
                target,
                rows,
                created_micros,
            } => {
                rows.check()?;
                (target, rows, created_micros)
            }
            _ => return Err(RequestError::invalid("not a hint")),
        };
        for (_, versions) in &rows.rows {
            decode_versions(&versions.0)
                .map_err(|e| RequestError::invalid(format!("malformed versioned row: {e}")))?;
        }
        if !self.handoff.hints.enabled() {
            return Err(RequestError::invalid(format!(
                "{} does not store hints (hints.enabled is false)",
                self.replica.me
            )));
        }
        let hinted = self
            .handoff
            .hint_created(&rows, vec![target.clone()], created_micros)
            .await;
        if hinted.is_empty() {
            return Err(RequestError::overloaded(format!(
                "no hint stored for {target}: over the hint window or size cap"
            )));
        }
        Ok(PeerReply::Applied)
    }

    /// Streaming: a page of a range, rows to store, a range to fetch.
    async fn serve_stream(&self, request: PeerRequest) -> Result<PeerReply, RequestError> {
        let replica = &self.replica;
        match request {
            PeerRequest::StreamRange {
                range,
                after,
                max_rows,
                placement,
            } => {
                let max_rows = max_rows.clamp(1, 4 * streaming::PAGE_ROWS);
                let group = repair::local_group(replica, placement.as_ref())?;
                let (rows, more) = replica
                    .storage
                    .blocking(move |storage| {
                        streaming::page(storage, &group, range, after, max_rows)
                    })
                    .await
                    .map_err(|e| replica.server_error(e.to_string()))?;
                Ok(PeerReply::Rows { rows, more })
            }
            PeerRequest::StoreRows { rows, handover } => {
                let keys = rows.iter().filter_map(|row| RowKey::decode(&row.key).ok());
                self.cleanup
                    .arrivals
                    .note(replica, keys.map(|key| (key.table, key.token)));
                let purged_before = (!handover).then(|| repair::purge_cutoff(replica));
                replica
                    .storage
                    .blocking(move |storage| streaming::store(storage, &rows, purged_before))
                    .await?;
                Ok(PeerReply::Applied)
            }
            PeerRequest::FetchRange {
                range,
                source,
                placement,
            } => {
                let group = repair::local_group(replica, placement.as_ref())?;
                self.cleanup.arrivals.incoming();
                let mut throttle = streaming::Throttle::new(replica.streaming.bytes_per_sec());
                let streamed = streaming::fetch(
                    &*replica.peers,
                    &replica.storage,
                    &source,
                    &group,
                    range,
                    None,
                    &mut throttle,
                    |_| Ok(()),
                )
                .await
                .map_err(|e| replica.server_error(e.to_string()))?;
                info!(%range, %source, rows = streamed.rows, "fetched a range");
                Ok(PeerReply::Applied)
            }
            _ => Err(RequestError::invalid("not a streaming request")),
        }
    }

    /// Anti-entropy: tree hashes, a leaf's items, rows by key.
    async fn serve_repair(&self, request: PeerRequest) -> Result<PeerReply, RequestError> {
        let replica = &self.replica;
        match request {
            PeerRequest::TreeHashes {
                range,
                level,
                nodes,
                placement,
            } => {
                let trees = replica.storage.trees();
                let tree = repair::local_tree(replica, &trees, placement.as_ref(), range)?;
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
                placement,
            } => {
                let group = repair::local_group(replica, placement.as_ref())?;
                let holds = move |t: TableId| group.holds(t) && table.is_none_or(|only| t == only);
                let (items, resume) = replica
                    .storage
                    .blocking(move |storage| {
                        let after = after.map(serde_bytes::ByteBuf::into_vec);
                        storage.leaf_items(
                            range,
                            &leaves,
                            holds,
                            after.as_deref(),
                            streaming::PAGE_BYTES,
                        )
                    })
                    .await
                    .map_err(|e| replica.server_error(e.to_string()))?;
                let resume = resume.map(|(leaf, key)| (leaf, serde_bytes::ByteBuf::from(key)));
                Ok(PeerReply::Items { items, resume })
            }
            PeerRequest::ReadRows { keys } => {
                let (rows, more) = replica
                    .storage
                    .blocking(move |storage| {
                        repair::read_rows(storage, keys, streaming::PAGE_BYTES)
                    })
                    .await
                    .map_err(|e| replica.server_error(e.to_string()))?;
                Ok(PeerReply::Rows { rows, more })
            }
            _ => Err(RequestError::invalid("not an anti-entropy request")),
        }
    }

    fn topology(&self) -> ClientReply {
        let replica = &self.replica;
        let view = replica.membership.view();
        ClientReply::Topology {
            nodes: view.topology(|id| *id == replica.me || replica.is_up(id)),
            replication: replica.replication.clone(),
        }
    }

    /// Why the node does not serve clients now, if it does not (`GET
    /// /health`): it is starting, joining, leaving or gone, or drained.
    pub(crate) fn unready(&self) -> Option<String> {
        if self.drained.load(Ordering::Acquire) {
            return Some("drained (nodetool drain): it takes no client requests".into());
        }
        let view = self.replica.membership.view();
        match view.status(&self.replica.me) {
            Some(Status::Normal) => None,
            Some(Status::Joining) => Some("joining the ring".into()),
            Some(Status::Leaving | Status::Removing) => Some("leaving the ring".into()),
            Some(Status::Left | Status::Removed) => Some("left the ring".into()),
            None => Some("starting".into()),
        }
    }

    /// The node's metrics now, as OpenMetrics text (`GET /metrics`).
    pub(crate) fn scrape(&self) -> String {
        let replica = &self.replica;
        let view = replica.membership.view();
        let location = view
            .nodes
            .get(&replica.me)
            .map(|node| node.state.location())
            .unwrap_or_default();
        let identity = vec![
            ("id".to_string(), replica.me.to_string()),
            ("cluster".into(), replica.settings.name.clone()),
            ("datacenter".into(), location.datacenter),
            ("rack".into(), location.rack),
            ("version".into(), env!("CARGO_PKG_VERSION").into()),
        ];
        let members = view.ring.members();
        let nodes_up = members.keys().filter(|node| view.is_up(node)).count() as u64;
        let figures = replica.storage.figures();
        let scraped = Scraped {
            identity,
            repair: self.repair_stats(),
            ranges_differing: self.antientropy.differing.load(Ordering::Relaxed),
            ranges_failed: self.antientropy.failed.load(Ordering::Relaxed),
            nodes_up,
            nodes_down: members.len() as u64 - nodes_up,
            phi: replica.membership.phi(),
            load: replica.storage.load_given(&figures),
            storage: figures,
            uptime: self.started.elapsed(),
        };
        let registry = self.metrics.registry(scraped);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The hint and anti-entropy figures now.
    pub(crate) fn repair_stats(&self) -> RepairStats {
        let (hints_pending, hints) = self.handoff.hints.stats();
        let trees = self.replica.storage.trees();
        RepairStats {
            hints_pending,
            hints,
            trees_ready: trees.is_ready(),
            tree_ranges: trees.count() as u64,
            antientropy: self.antientropy.repairs.lock().expect("repairs").clone(),
            rows_cleaned: self.cleanup.cleaned.load(Ordering::Relaxed),
        }
    }

    fn status(&self) -> ClientReply {
        let replica = &self.replica;
        ClientReply::Status {
            answered_by: replica.me.clone(),
            nodes: replica
                .membership
                .view()
                .statuses(&replica.replication, |node| {
                    replica
                        .peers
                        .clock_offset_micros(node)
                        .map(|micros| micros / 1000)
                }),
            replication: replica.replication.clone(),
            placements: (replica.placement.now().groups().into_iter())
                .skip(1)
                .map(|group| group.replication)
                .collect(),
        }
    }
}

/// The node's services, wired together: each is the node's [`Replica`]
/// plus its own state, and the dispatcher routes requests to them.
pub(crate) struct Services {
    pub(crate) handoff: Arc<Handoff>,
    pub(crate) antientropy: Arc<AntiEntropy>,
    pub(crate) topology: Arc<Topology>,
    pub(crate) dispatcher: Arc<Dispatcher>,
}

impl Services {
    pub(crate) fn new(
        replica: &Arc<Replica>,
        hints: Arc<Hints>,
        schemas: Arc<Schemas>,
        background: mpsc::Sender<BackgroundJob>,
        (cancel, injection): (CancellationToken, Option<Arc<Injection>>),
    ) -> Services {
        let handoff = Arc::new(Handoff {
            replica: replica.clone(),
            hints,
        });
        let cleanup = Arc::new(Cleanup::new(replica.clone()));
        let antientropy = Arc::new(AntiEntropy {
            replica: replica.clone(),
            repairs: Mutex::new(RepairSummary::default()),
            differing: Default::default(),
            failed: Default::default(),
            cleanup: cleanup.clone(),
        });
        let topology = Arc::new(Topology {
            replica: replica.clone(),
            handoff: handoff.clone(),
            operations: Arc::new(Operations::new(replica.clone(), cancel)),
        });
        let coordinator = Arc::new(Coordinator {
            replica: replica.clone(),
            handoff: handoff.clone(),
            cleanup: cleanup.clone(),
            background,
            forwarded: Default::default(),
        });
        let dispatcher = Arc::new(Dispatcher {
            replica: replica.clone(),
            coordinator: coordinator.clone(),
            handoff: handoff.clone(),
            antientropy: antientropy.clone(),
            cleanup,
            topology: topology.clone(),
            statements: Arc::new(Statements {
                replica: replica.clone(),
                schemas: schemas.clone(),
                coordinator: coordinator.clone(),
                prepared: Default::default(),
            }),
            schemas,
            injection,
            metrics: Metrics::default(),
            started: Instant::now(),
            drained: AtomicBool::new(false),
            snapshots: tokio::sync::Mutex::new(()),
        });
        Services {
            handoff,
            antientropy,
            topology,
            dispatcher,
        }
    }
}
