//! A node's configuration: one TOML file (`ringdb start --config node.toml`).
//!
//! Relative paths in the file are relative to the file's folder, so a node's
//! folder can be moved as a whole. Every field says its meaning, unit and
//! default; [`Config::validate`] refuses settings that cannot work before
//! anything starts.
//!
//! ```toml
//! node_id = "node1"
//! data_dir = "data"
//! listen_internode = "127.0.0.1:7001"
//! listen_client = "127.0.0.1:9001"
//! listen_metrics = "127.0.0.1:9180"   # Prometheus: GET /metrics
//!
//! [tls]
//! ca_certificate = "../ca.pem"
//! certificate = "node.pem"
//! key = "node.key"
//!
//! [cluster]
//! name = "dev"
//! replication_factor = 3
//! seeds = ["127.0.0.1:7001"]   # internode addresses of one or more nodes
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringdb_gossip::DetectorConfig;
use ringdb_ring::{Location, NodeId};
use serde::{Deserialize, Serialize};

use crate::storage::StorageConfig;

/// Errors loading or checking a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a config.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        source: Box<toml::de::Error>,
    },
    /// A setting cannot work.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Everything a node needs to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's id: its name in the cluster, which must be the DNS name in
    /// its certificate. Letters, digits, `-`, `.`.
    pub node_id: NodeId,
    /// Where the node keeps its data (RocksDB). Created if missing.
    pub data_dir: PathBuf,
    /// UDP address for QUIC connections from other nodes (mutual TLS).
    pub listen_internode: SocketAddr,
    /// UDP address for QUIC connections from clients.
    pub listen_client: SocketAddr,
    /// The internode address other nodes are told to use (gossiped), when
    /// it differs from `listen_internode` (a wildcard listen address, NAT).
    /// Default: the address bound for `listen_internode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast_internode: Option<SocketAddr>,
    /// The client address clients are told to use, when it differs from
    /// `listen_client`. Default: the address bound for `listen_client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast_client: Option<SocketAddr>,
    /// TCP address of the metrics endpoint: `GET /metrics` answers
    /// Prometheus (OpenMetrics text), `GET /health` answers `ok` (200)
    /// while the node serves clients and why not (503) while it joins,
    /// leaves or is drained. Plain HTTP without authentication: bind it to
    /// a private interface. Default: none (no endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_metrics: Option<SocketAddr>,
    /// This node's datacenter. Default: `datacenter1`.
    #[serde(default = "default_datacenter")]
    pub datacenter: String,
    /// This node's rack within its datacenter. Default: `rack1`.
    #[serde(default = "default_rack")]
    pub rack: String,
    /// Certificates (see `ringdb cert`).
    pub tls: TlsFiles,
    /// The cluster this node belongs to.
    pub cluster: ClusterConfig,
    /// Storage settings.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Request handling limits and timeouts.
    #[serde(default)]
    pub requests: RequestConfig,
    /// Streaming of ranges between nodes (bootstrap, decommission,
    /// removenode).
    #[serde(default)]
    pub streaming: StreamingConfig,
    /// Hinted handoff.
    #[serde(default)]
    pub hints: HintsConfig,
    /// Merkle-tree anti-entropy and tombstone purging.
    #[serde(default)]
    pub antientropy: AntiEntropyConfig,
    /// Faults injected by a test harness.
    #[serde(default)]
    pub faults: FaultsConfig,
}

/// Faults a test harness (`ringdb lab`) injects into the running node:
/// delays, loss and duplication of the messages it sends, and a skew of
/// its wall clock, asked by a caller holding a certificate of the
/// cluster's CA.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsConfig {
    /// Whether the node takes injected faults. Never on a production
    /// cluster. Default: false.
    pub injectable: bool,
}

/// Hinted handoff: writes kept for replicas that missed them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HintsConfig {
    /// Whether this node writes hints for down or silent replicas and
    /// replays the ones it holds. Default: true.
    pub enabled: bool,
    /// The hint window, in seconds: no hints are written for a replica down
    /// longer than this, and hints older than this are dropped, not replayed
    /// (repair takes over). Default: 10800 (3 h, Cassandra's `max_hint_window`).
    pub window_secs: u64,
    /// The most hints kept per target, in MiB; writes past it are not
    /// hinted (counted). Default: 1024.
    pub max_mib_per_target: u64,
    /// The replay rate, in KiB per second per target. Default: 1024
    /// (Cassandra's `hinted_handoff_throttle`). 0 means no limit.
    pub replay_kib_per_sec: u64,
}

impl Default for HintsConfig {
    fn default() -> HintsConfig {
        HintsConfig {
            enabled: true,
            window_secs: 3 * 3600,
            max_mib_per_target: 1024,
            replay_kib_per_sec: 1024,
        }
    }
}

impl HintsConfig {
    /// The hint window.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }
}

/// Merkle-tree anti-entropy and tombstone purging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AntiEntropyConfig {
    /// Whether the node compares its trees with the other replicas in the
    /// background. `ringdb repair` works either way. Default: true.
    pub enabled: bool,
    /// Seconds between background rounds; a round compares every range
    /// this node replicates with each other replica. Default: 600.
    pub interval_secs: u64,
    /// The most bytes of rows a round ships, in MiB per second. 0 means no
    /// limit. Default: 16.
    pub max_mib_per_sec: f64,
    /// How long a tombstone is kept at least, in seconds, before it may be
    /// purged (once every replica holds it). Must be at least the hint
    /// window, so that no hint older than a purged tombstone is replayed.
    /// Default: 864000 (10 days, Cassandra's `gc_grace_seconds`).
    pub tombstone_grace_secs: u64,
}

impl Default for AntiEntropyConfig {
    fn default() -> AntiEntropyConfig {
        AntiEntropyConfig {
            enabled: true,
            interval_secs: 600,
            max_mib_per_sec: 16.0,
            tombstone_grace_secs: 10 * 24 * 3600,
        }
    }
}

impl AntiEntropyConfig {
    /// The limit in bytes per second, if any.
    pub fn bytes_per_sec(&self) -> Option<f64> {
        (self.max_mib_per_sec > 0.0).then_some(self.max_mib_per_sec * (1 << 20) as f64)
    }
}

/// Streaming of ranges between nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// The most a stream this node drives (the ranges it pulls when
    /// joining, pushes when leaving, or fetches for a removed node) moves,
    /// in MiB per second, so that streaming leaves room for requests.
    /// 0 means no limit. Default: 24 (Cassandra's
    /// `stream_throughput_outbound`).
    pub max_mib_per_sec: f64,
    /// Whether a joining node streams each range from the replica that
    /// gives it up (and fails if that replica is down), rather than from
    /// any live replica. With it, the new node holds what the replica it
    /// replaces held, so a write acknowledged by W replicas before the join
    /// is on W replicas after it; from another replica, a write that
    /// replica missed may end up on one fewer (Cassandra's
    /// `consistent.rangemovement`). A range nobody gives up (fewer nodes
    /// than the replication factor) is streamed from every replica.
    /// Default: true.
    pub consistent_range_movement: bool,
}

impl Default for StreamingConfig {
    fn default() -> StreamingConfig {
        StreamingConfig {
            max_mib_per_sec: 24.0,
            consistent_range_movement: true,
        }
    }
}

impl StreamingConfig {
    /// The limit in bytes per second, if any.
    pub fn bytes_per_sec(&self) -> Option<f64> {
        (self.max_mib_per_sec > 0.0).then_some(self.max_mib_per_sec * (1 << 20) as f64)
    }
}

/// Paths of the PEM files a node presents and trusts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA's certificate, which every peer's certificate must chain to.
    pub ca_certificate: PathBuf,
    /// This node's certificate, signed by the CA, naming `node_id`.
    pub certificate: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// The cluster: how to find it, and how data is placed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name; nodes gossip only with nodes of the same name.
    /// Default: `ringdb`.
    #[serde(default = "default_cluster_name")]
    pub name: String,
    /// Replicas of every row. Default: 3.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: usize,
    /// Replicas per datacenter (NetworkTopologyStrategy), e.g.
    /// `{ dc1 = 3, dc2 = 3 }`: each row has this many replicas in each
    /// datacenter named, on distinct racks first, and none in the others;
    /// `replication_factor` must then be their sum. LOCAL_QUORUM and
    /// EACH_QUORUM count per datacenter. Default: none (the first
    /// `replication_factor` nodes clockwise).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub datacenter_replication: BTreeMap<String, usize>,
    /// Vnode tokens a new node takes. Default: 16. Tokens are chosen once,
    /// when the node first joins (to split the largest ranges of the ring it
    /// finds), and kept in its data directory.
    #[serde(default = "default_num_tokens")]
    pub num_tokens: usize,
    /// Internode addresses of seed nodes: where a new node learns the ring,
    /// and which every node gossips with now and then. A seed that finds no
    /// other node when it first starts founds the cluster. Default: none (a
    /// node alone founds its own cluster).
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    /// Whether a new node joining a cluster that already has members streams
    /// the ranges it will own from their replicas before it serves them.
    /// Only a brand-new, empty cluster may turn it off (Cassandra's
    /// `auto_bootstrap`). Default: true.
    #[serde(default = "default_true")]
    pub auto_bootstrap: bool,
    /// The phi-accrual failure detector.
    #[serde(default)]
    pub failure_detector: DetectorConfig,
}

impl Default for ClusterConfig {
    /// A cluster named `ringdb` of replication factor 3, 16 tokens per node,
    /// no seeds (a node alone), with bootstrap on.
    fn default() -> ClusterConfig {
        ClusterConfig {
            name: default_cluster_name(),
            replication_factor: default_replication_factor(),
            datacenter_replication: BTreeMap::new(),
            num_tokens: default_num_tokens(),
            seeds: Vec::new(),
            auto_bootstrap: true,
            failure_detector: DetectorConfig::default(),
        }
    }
}

/// Limits and timeouts of request handling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestConfig {
    /// The longest a coordinator works on a request, in milliseconds; a
    /// client's shorter budget wins. Default: 2000 (Cassandra's write timeout).
    pub timeout_ms: u64,
    /// Requests one connection may have in progress; more are answered
    /// `Overloaded` at once. Default: 1024.
    pub max_in_flight_per_connection: usize,
    /// The largest row a client may write (its columns, encoded), in bytes.
    /// Default: 1 MiB.
    pub max_row_bytes: usize,
    /// The most siblings (concurrent versions, tombstones included) a write
    /// may leave in a row; a write past it is refused, and the client must
    /// read the row and write with the read's context to resolve them.
    /// Default: 100 (Riak's `max_siblings`).
    pub max_siblings: usize,
    /// The most bytes a write may leave a row at, encoded with its siblings
    /// and history; a write past it is refused. At most half the 16 MiB
    /// message limit, so that a row always fits in a message to its
    /// replicas. Default: 8 MiB.
    pub max_stored_row_bytes: usize,
    /// How long a read waits for its replicas before also asking a spare
    /// replica (speculative retry), in milliseconds. Default: 50.
    pub speculative_retry_ms: u64,
}

impl Default for RequestConfig {
    fn default() -> RequestConfig {
        RequestConfig {
            timeout_ms: 2000,
            max_in_flight_per_connection: 1024,
            max_row_bytes: 1 << 20,
            max_siblings: 100,
            max_stored_row_bytes: 8 << 20,
            speculative_retry_ms: 50,
        }
    }
}

impl RequestConfig {
    /// The coordinator's timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

fn default_cluster_name() -> String {
    "ringdb".into()
}
fn default_replication_factor() -> usize {
    3
}
fn default_num_tokens() -> usize {
    16
}
fn default_true() -> bool {
    true
}

fn default_datacenter() -> String {
    Location::default().datacenter
}
fn default_rack() -> String {
    Location::default().rack
}

impl Config {
    /// A config with every optional setting at its default: a node alone in
    /// its own cluster until `cluster.seeds` says otherwise.
    pub fn new(
        node_id: NodeId,
        data_dir: PathBuf,
        listen_internode: SocketAddr,
        listen_client: SocketAddr,
        tls: TlsFiles,
    ) -> Config {
        Config {
            node_id,
            data_dir,
            listen_internode,
            listen_client,
            broadcast_internode: None,
            broadcast_client: None,
            listen_metrics: None,
            datacenter: default_datacenter(),
            rack: default_rack(),
            tls,
            cluster: ClusterConfig::default(),
            storage: StorageConfig::default(),
            requests: RequestConfig::default(),
            streaming: StreamingConfig::default(),
            hints: HintsConfig::default(),
            antientropy: AntiEntropyConfig::default(),
            faults: FaultsConfig::default(),
        }
    }

    /// Reads a config file; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in [
            &mut config.data_dir,
            &mut config.tls.ca_certificate,
            &mut config.tls.certificate,
            &mut config.tls.key,
        ] {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serializes")
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |detail: String| Err(ConfigError::Invalid(detail));
        if let Err(detail) = self.cluster.failure_detector.validate() {
            return invalid(format!("cluster.failure_detector: {detail}"));
        }
        if self.listen_internode.ip().is_unspecified() && self.broadcast_internode.is_none() {
            return invalid(
                "listen_internode is a wildcard address: set broadcast_internode to the address \
                 other nodes should use"
                    .into(),
            );
        }
        if self.listen_client.ip().is_unspecified() && self.broadcast_client.is_none() {
            return invalid(
                "listen_client is a wildcard address: set broadcast_client to the address \
                 clients should use"
                    .into(),
            );
        }
        if self.cluster.replication_factor == 0 {
            return invalid("cluster.replication_factor must be at least 1".into());
        }
        let per_datacenter: usize = self.cluster.datacenter_replication.values().sum();
        if !self.cluster.datacenter_replication.is_empty()
            && per_datacenter != self.cluster.replication_factor
        {
            return invalid(format!(
                "cluster.replication_factor ({}) must be the sum of cluster.datacenter_replication ({per_datacenter})",
                self.cluster.replication_factor
            ));
        }
        if self.cluster.num_tokens == 0 {
            return invalid("cluster.num_tokens must be at least 1".into());
        }
        if self.requests.timeout_ms == 0 || self.requests.max_in_flight_per_connection == 0 {
            return invalid(
                "requests.timeout_ms and requests.max_in_flight_per_connection must be at least 1"
                    .into(),
            );
        }
        let frame = ringdb_proto::MAX_FRAME_BYTES;
        if self.requests.max_siblings == 0
            || self.requests.max_stored_row_bytes > frame / 2
            || self.requests.max_stored_row_bytes < self.requests.max_row_bytes
        {
            return invalid(format!(
                "requests.max_siblings must be at least 1, and requests.max_stored_row_bytes \
                 at least requests.max_row_bytes and at most {} (half the message limit)",
                frame / 2
            ));
        }
        if !(self.streaming.max_mib_per_sec >= 0.0 && self.streaming.max_mib_per_sec.is_finite()) {
            return invalid("streaming.max_mib_per_sec must be 0 (no limit) or more".into());
        }
        if !(self.antientropy.max_mib_per_sec >= 0.0
            && self.antientropy.max_mib_per_sec.is_finite())
        {
            return invalid("antientropy.max_mib_per_sec must be 0 (no limit) or more".into());
        }
        if self.antientropy.interval_secs == 0 {
            return invalid("antientropy.interval_secs must be at least 1".into());
        }
        if self.antientropy.tombstone_grace_secs < self.hints.window_secs {
            return invalid(format!(
                "antientropy.tombstone_grace_secs ({}) must be at least hints.window_secs ({}): \
                 a hint replayed after its tombstone was purged would bring the data back",
                self.antientropy.tombstone_grace_secs, self.hints.window_secs
            ));
        }
        self.storage
            .validate()
            .or_else(|e| invalid(e.to_string()))?;
        Ok(())
    }

    /// This node's datacenter and rack.
    pub fn location(&self) -> Location {
        Location {
            datacenter: self.datacenter.clone(),
            rack: self.rack.clone(),
        }
    }
}
