//! What a node counts, for Prometheus: its client requests as they happen
//! (by operation, consistency level and outcome, with a latency histogram
//! and the number in flight) and, read when scraped, what its services
//! already keep (hints, anti-entropy, Merkle trees, cleanup), its view of
//! the cluster and its storage engine's figures.
//!
//! The node serves the text on `listen_metrics` (`GET /metrics`, in the
//! OpenMetrics format Prometheus reads) through `http.rs`; `Metrics`
//! itself knows nothing of sockets, so the simulator's nodes count too.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use ringdb_proto::{ClientRequest, ConsistencyLevel, PeerRequest, RepairStats, RequestError};

use crate::storage::EngineFigures;

/// A client request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    consistency: &'static str,
    outcome: &'static str,
}

/// A latency's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    operation: &'static str,
    consistency: &'static str,
}

/// A connection's labels: which port it came in on.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabels {
    port: &'static str,
}

/// A peer request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    request: &'static str,
}

type Latencies = Family<LatencyLabels, Histogram, fn() -> Histogram>;

/// The node's live counters.
pub(crate) struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Latencies,
    in_flight: Gauge,
    peer_requests: Family<PeerLabels, Counter>,
    connections: Family<PortLabels, Gauge>,
    connections_opened: Family<PortLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            peer_requests: Family::default(),
            connections: Family::default(),
            connections_opened: Family::default(),
        }
    }
}

/// 100 µs to about 6.5 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// A client request being served: counted in flight until it ends (or its
/// caller goes away), then by outcome.
pub(crate) struct Serving<'a> {
    metrics: &'a Metrics,
    operation: &'static str,
    consistency: &'static str,
    started: tokio::time::Instant,
    outcome: &'static str,
}

impl Serving<'_> {
    /// Records how the request ended.
    pub(crate) fn ended<T>(mut self, result: &Result<T, RequestError>) {
        self.outcome = match result {
            Ok(_) => "ok",
            Err(error) => error_kind(error),
        };
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        let metrics = self.metrics;
        metrics.in_flight.dec();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                operation: self.operation,
                consistency: self.consistency,
                outcome: self.outcome,
            })
            .inc();
        // Data requests only: an admin request (a repair, a decommission)
        // may rightly take an hour.
        if !self.consistency.is_empty() {
            metrics
                .latency
                .get_or_create(&LatencyLabels {
                    operation: self.operation,
                    consistency: self.consistency,
                })
                .observe(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Metrics {
    /// Starts counting a client request.
    pub(crate) fn serving(&self, request: &ClientRequest) -> Serving<'_> {
        let (operation, consistency) = describe(request);
        self.in_flight.inc();
        Serving {
            metrics: self,
            operation,
            consistency: consistency.map_or("", ConsistencyLevel::name),
            started: tokio::time::Instant::now(),
            // Dropped before it ended: the node's own deadline for the
            // answer passed (see the transport), or it shut down.
            outcome: "dropped",
        }
    }

    /// Counts a request from a peer.
    pub(crate) fn peer_request(&self, request: &PeerRequest) {
        let request = peer_kind(request);
        self.peer_requests
            .get_or_create(&PeerLabels { request })
            .inc();
    }

    /// Client requests being served now.
    pub(crate) fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// Connections open now on `port`.
    pub(crate) fn connections(&self, port: &'static str) -> i64 {
        self.connections.get_or_create(&PortLabels { port }).get()
    }

    /// Counts a connection on `port` opened (`open`) or closed.
    pub(crate) fn connection(&self, port: &'static str, open: bool) {
        let labels = PortLabels { port };
        let gauge = self.connections.get_or_create(&labels);
        if open {
            gauge.inc();
            self.connections_opened.get_or_create(&labels).inc();
        } else {
            gauge.dec();
        }
    }

    /// The registry to encode for one scrape: the live counters and what
    /// `scraped` read from the node now.
    pub(crate) fn registry(&self, scraped: Scraped) -> Registry {
        let mut registry = Registry::with_prefix("ringdb");
        registry.register(
            "client_requests",
            "Client requests this node received, by operation, consistency level (none for \
             admin requests) and outcome",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "client_request_duration",
            "How long client data requests and statements took, by operation and level",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "client_requests_in_flight",
            "Client requests being served now",
            self.in_flight.clone(),
        );
        registry.register(
            "peer_requests",
            "Requests from other nodes, by kind",
            self.peer_requests.clone(),
        );
        registry.register(
            "connections",
            "Connections open now that clients or peers opened to this node, by port",
            self.connections.clone(),
        );
        registry.register(
            "connections_opened",
            "Connections clients or peers opened to this node since it started, by port",
            self.connections_opened.clone(),
        );
        scraped.register(&mut registry);
        registry
    }
}

/// What the node reads from its services when scraped.
pub(crate) struct Scraped {
    /// Node id, cluster, datacenter and rack, as labels of an info metric.
    pub(crate) identity: Vec<(String, String)>,
    pub(crate) repair: RepairStats,
    /// Range exchanges that found a difference, and that failed.
    pub(crate) ranges_differing: u64,
    pub(crate) ranges_failed: u64,
    /// The node's load, as `status` shows it.
    pub(crate) load: u64,
    /// Nodes in this node's view, up and down.
    pub(crate) nodes_up: u64,
    pub(crate) nodes_down: u64,
    pub(crate) phi: std::collections::BTreeMap<ringdb_ring::NodeId, f64>,
    pub(crate) storage: EngineFigures,
    pub(crate) uptime: Duration,
}

impl Scraped {
    fn register(self, registry: &mut Registry) {
        let identity: Vec<(String, String)> = (self.identity.iter())
            .map(|(key, value)| (key.clone(), escape(value)))
            .collect();
        registry.register(
            "node",
            "This node (its labels say which)",
            Info::new(identity),
        );
        registry.register_with_unit(
            "load",
            "The node's data on disk and in memtables, as status shows it",
            Unit::Bytes,
            ConstGauge::new(gauge(self.load)),
        );
        registry.register_with_unit(
            "uptime",
            "Time since the node started",
            Unit::Seconds,
            ConstGauge::new(self.uptime.as_secs_f64()),
        );
        self.register_hints(registry);
        self.register_repair(registry);
        let nodes: Family<Vec<(String, String)>, Gauge> = Family::default();
        nodes
            .get_or_create(&vec![("state".into(), "up".into())])
            .set(gauge(self.nodes_up));
        nodes
            .get_or_create(&vec![("state".into(), "down".into())])
            .set(gauge(self.nodes_down));
        registry.register(
            "gossip_nodes",
            "Nodes in this node's view, up or down",
            nodes,
        );
        let phi: Family<Vec<(String, String)>, Gauge<f64, std::sync::atomic::AtomicU64>> =
            Family::default();
        for (peer, value) in &self.phi {
            let labels = vec![("peer".to_string(), escape(peer.as_str()))];
            phi.get_or_create(&labels).set(*value);
        }
        registry.register(
            "gossip_phi",
            "The failure detector's suspicion of each peer (phi accrual): down above \
             the failure detector's phi_threshold",
            phi,
        );
        let storage = self.storage;
        let figures = [
            (
                "storage_live_data",
                "Estimated live data",
                storage.live_data_bytes,
            ),
            (
                "storage_sst_files",
                "Size of the SST files",
                storage.sst_bytes,
            ),
            (
                "storage_memtables",
                "Size of the memtables",
                storage.memtable_bytes,
            ),
            (
                "storage_pending_compaction",
                "Estimated bytes compaction has yet to rewrite",
                storage.pending_compaction_bytes,
            ),
        ];
        for (name, help, bytes) in figures {
            registry.register_with_unit(name, help, Unit::Bytes, ConstGauge::new(gauge(bytes)));
        }
        registry.register(
            "storage_running_compactions",
            "Compactions running now",
            ConstGauge::new(gauge(storage.running_compactions)),
        );
    }

    fn register_hints(&self, registry: &mut Registry) {
        let pending: Family<Vec<(String, String)>, Gauge> = Family::default();
        for (target, bytes) in &self.repair.hints_pending {
            pending
                .get_or_create(&vec![("target".into(), escape(target.as_str()))])
                .set(gauge(*bytes));
        }
        registry.register_with_unit(
            "hints_pending",
            "Hints waiting for their target, by target",
            Unit::Bytes,
            pending,
        );
        let hints = &self.repair.hints;
        registry.register(
            "hints_written",
            "Hints stored for a replica that was down or slow",
            ConstCounter::new(hints.written),
        );
        let outcomes = [
            ("delivered", hints.delivered),
            ("redirected", hints.redirected),
            ("handed_over", hints.handed_over),
            ("expired", hints.expired),
            ("dropped_other", hints.dropped_other),
        ];
        let ended: Family<Vec<(String, String)>, Counter> = Family::default();
        for (outcome, count) in outcomes {
            ended
                .get_or_create(&vec![("outcome".into(), outcome.into())])
                .inc_by(count);
        }
        registry.register(
            "hints_ended",
            "Hints that left the node's store, by how: delivered to their target, \
             redirected (the target left the ring), handed_over (this node left), \
             expired, dropped_other (undeliverable or undecodable)",
            ended,
        );
        let refused: Family<Vec<(String, String)>, Counter> = Family::default();
        for (why, count) in [("window", hints.dropped_window), ("cap", hints.dropped_cap)] {
            refused
                .get_or_create(&vec![("reason".into(), why.into())])
                .inc_by(count);
        }
        registry.register(
            "hints_not_written",
            "Hints not stored: window (target down longer than the hint window), \
             cap (its hints at the size cap)",
            refused,
        );
    }

    fn register_repair(&self, registry: &mut Registry) {
        let summary = &self.repair.antientropy;
        let counters = [
            (
                "antientropy_ranges_compared",
                "Ranges whose Merkle trees were compared with another replica's",
                summary.ranges_compared,
            ),
            (
                "antientropy_ranges_differing",
                "Comparisons that found the replicas differ",
                self.ranges_differing,
            ),
            (
                "antientropy_ranges_failed",
                "Comparisons that could not be made (a replica down)",
                self.ranges_failed,
            ),
            (
                "antientropy_keys_repaired",
                "Rows repaired by anti-entropy",
                summary.keys_repaired,
            ),
            (
                "antientropy_sent_bytes",
                "Bytes sent to repair other replicas",
                summary.bytes_sent,
            ),
            (
                "antientropy_tombstones_purged",
                "Tombstones purged once every replica had them",
                summary.tombstones_purged,
            ),
            (
                "cleanup_rows",
                "Rows of ranges the node no longer replicates that it deleted",
                self.repair.rows_cleaned,
            ),
        ];
        for (name, help, count) in counters {
            registry.register(name, help, ConstCounter::new(count));
        }
        registry.register(
            "merkle_trees_ready",
            "1 once the Merkle trees are built (repair needs them)",
            ConstGauge::new(i64::from(self.repair.trees_ready)),
        );
        registry.register(
            "merkle_tree_ranges",
            "Ranges with a Merkle tree",
            ConstGauge::new(gauge(self.repair.tree_ranges)),
        );
    }
}

/// A label value as the text format needs it (prometheus-client writes
/// them as they are): names from configs and gossip may hold anything.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A client request's operation and level, as labels.
fn describe(request: &ClientRequest) -> (&'static str, Option<ConsistencyLevel>) {
    match request {
        ClientRequest::Get { consistency, .. } => ("get", Some(*consistency)),
        ClientRequest::Put { consistency, .. } => ("put", Some(*consistency)),
        ClientRequest::Update { consistency, .. } => ("update", Some(*consistency)),
        ClientRequest::Delete { consistency, .. } => ("delete", Some(*consistency)),
        ClientRequest::WriteRows { consistency, .. } => ("write_rows", Some(*consistency)),
        ClientRequest::Query(query) => ("query", Some(query.consistency)),
        ClientRequest::Prepare { .. } => ("prepare", None),
        ClientRequest::Topology => ("topology", None),
        ClientRequest::Status => ("status", None),
        ClientRequest::LocalGet { .. } => ("local_get", None),
        ClientRequest::Decommission => ("decommission", None),
        ClientRequest::RemoveNode { .. } => ("removenode", None),
        ClientRequest::Operation { .. } => ("operation", None),
        ClientRequest::Repair { .. } => ("repair", None),
        ClientRequest::RepairStats => ("repair_stats", None),
        ClientRequest::Cleanup => ("cleanup", None),
        ClientRequest::NodeTool(request) => (request.name(), None),
    }
}

/// An error's kind, as a label.
fn error_kind(error: &RequestError) -> &'static str {
    match error {
        RequestError::Unavailable { .. } => "unavailable",
        RequestError::Timeout { .. } => "timeout",
        RequestError::Overloaded { .. } => "overloaded",
        RequestError::InvalidRequest { .. } => "invalid",
        RequestError::SettingsMismatch { .. } => "settings_mismatch",
        RequestError::DamagedData { .. } => "damaged_data",
        RequestError::UnreachableContext { .. } => "unreachable_context",
        RequestError::NotAReplica { .. } => "not_a_replica",
        RequestError::InvalidStatement { .. } => "invalid_statement",
        RequestError::AlreadyExists { .. } => "already_exists",
        RequestError::Unprepared { .. } => "unprepared",
        RequestError::Server { .. } => "server",
    }
}

/// A peer request's kind, as a label.
fn peer_kind(request: &PeerRequest) -> &'static str {
    match request {
        PeerRequest::Hello { .. } => "hello",
        PeerRequest::Gossip(_) => "gossip",
        PeerRequest::Sees { .. } => "sees",
        PeerRequest::Replicate { .. } | PeerRequest::ReplicateRows(_) => "replicate",
        PeerRequest::Read { .. } | PeerRequest::ReadSlice(_) => "read",
        PeerRequest::Coordinate { .. } => "coordinate",
        PeerRequest::StoreHint { .. } | PeerRequest::StoreHintRows { .. } => "store_hint",
        PeerRequest::StreamRange { .. }
        | PeerRequest::StoreRows { .. }
        | PeerRequest::FetchRange { .. } => "stream",
        PeerRequest::TreeHashes { .. }
        | PeerRequest::LeafItems { .. }
        | PeerRequest::ReadRows { .. } => "repair",
        PeerRequest::PullSchema | PeerRequest::PushSchema(_) => "schema",
        PeerRequest::InjectFaults(_) => "inject_faults",
    }
}
