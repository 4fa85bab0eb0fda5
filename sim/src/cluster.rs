//! The nodes of a simulated cluster: each the real `ringdb-node` started
//! with [`Node::start_in`] in a simulated world (its own memory disk,
//! clock and seeded random source, and its view of the shared [`Net`]),
//! and the process faults the nemesis applies to them.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ringdb_gossip::Status;
use ringdb_node::World;
use ringdb_node::config::TlsFiles;
use ringdb_node::network::BoxFuture;
use ringdb_node::storage::{MemoryDisk, StorageConfig, SyncMode};
use ringdb_node::world::Random;
use ringdb_node::{Config, Node, NodeError, NodeHandle};
use ringdb_proto::{ClientReply, ClientRequest};
use ringdb_ring::NodeId;
use ringdb_wire::multiplex::CallError;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::SimClock;
use crate::network::Net;
use crate::workload::{REQUEST_TIMEOUT, Target};

/// Where a node is in its life.
enum Life {
    /// Starting (joining); the task ends with the running node.
    Starting(JoinHandle<Result<NodeHandle, NodeError>>),
    Running(NodeHandle),
    /// Crashed or stopped, to be started again.
    Down,
    /// Left the cluster for good, or failed to start (why, for a person
    /// reading the state in a debugger).
    #[allow(dead_code)]
    Gone(String),
}

/// One simulated node.
pub struct SimNode {
    /// Its id.
    pub id: NodeId,
    config: Config,
    disk: Arc<MemoryDisk>,
    clock: Arc<SimClock>,
    life: Life,
    lives: u64,
}

/// The settings of the simulated nodes.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// Replicas of each row.
    pub replication_factor: usize,
    /// When writes are durable.
    pub sync: SyncMode,
    /// Vnodes per node.
    pub num_tokens: usize,
    /// Whether hinted handoff is on.
    pub hints: bool,
    /// Seconds between background anti-entropy rounds.
    pub antientropy_secs: u64,
}

/// A simulated cluster.
pub struct Cluster {
    /// The network.
    pub net: Arc<Net>,
    nodes: BTreeMap<NodeId, SimNode>,
    seed: u64,
    start: Instant,
    settings: NodeSettings,
    seeds: Vec<SocketAddr>,
}

fn internode_address(index: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, index), 7000))
}

fn client_address(index: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 1, index), 9042))
}

impl Cluster {
    /// Nodes `n1`… to be started, the first two the seeds.
    pub fn new(net: Arc<Net>, seed: u64, settings: NodeSettings) -> Cluster {
        Cluster {
            net,
            nodes: BTreeMap::new(),
            seed,
            start: Instant::now(),
            settings,
            seeds: vec![internode_address(1), internode_address(2)],
        }
    }

    /// Adds node number `index` (1…), not started, its clock `skew_micros` off.
    pub fn add(&mut self, index: u8, skew_micros: i64) -> NodeId {
        let id = NodeId::new(format!("n{index}"));
        let unused = PathBuf::from(format!("/simulated/{id}"));
        let tls = TlsFiles {
            ca_certificate: unused.join("ca.pem"),
            certificate: unused.join("node.pem"),
            key: unused.join("node.key"),
        };
        let mut config = Config::new(
            id.clone(),
            unused,
            internode_address(index),
            client_address(index),
            tls,
        );
        config.cluster.name = "sim".into();
        config.cluster.replication_factor = self.settings.replication_factor;
        config.cluster.num_tokens = self.settings.num_tokens;
        config.cluster.seeds = self.seeds.clone();
        config.storage = StorageConfig {
            sync: self.settings.sync,
        };
        // Short enough that tombstones are purged while the faults run (the
        // cycle rows rest past the grace): a hint window shorter than some
        // faults, so that repair, not only hints, must bring a replica back.
        config.hints.enabled = self.settings.hints;
        config.hints.window_secs = 8;
        config.antientropy.interval_secs = self.settings.antientropy_secs;
        config.antientropy.tombstone_grace_secs = 8;
        self.net.add_host(&id, internode_address(index));
        self.net.set_clock_offset(&id, skew_micros);
        let node = SimNode {
            id: id.clone(),
            config,
            disk: MemoryDisk::new(self.settings.sync),
            clock: SimClock::new(self.start, skew_micros),
            life: Life::Down,
            lives: 0,
        };
        self.nodes.insert(id.clone(), node);
        id
    }

    /// Starts `node` (again): a new life on its disk, joining in the
    /// background.
    pub fn start(&mut self, node: &NodeId) {
        let Some(sim) = self.nodes.get_mut(node) else {
            return;
        };
        if !matches!(sim.life, Life::Down) {
            return;
        }
        sim.lives += 1;
        let network = self.net.attach(node);
        let seed = self
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(u64::from(node_index(node)) << 32)
            .wrapping_add(sim.lives);
        let world = World {
            clock: sim.clock.clone(),
            random: Arc::new(Random::seeded(seed)),
            engine: Some(Arc::new(sim.disk.engine())),
            network: Some(network),
        };
        let config = sim.config.clone();
        sim.life = Life::Starting(tokio::spawn(Node::start_in(config, world)));
    }

    /// Moves nodes whose start finished to running, or down when the start
    /// failed (a join whose source is unreachable fails, as Cassandra's
    /// bootstrap does): those are returned with their errors.
    pub async fn poll_starts(&mut self) -> Vec<(NodeId, String)> {
        let mut failed = Vec::new();
        for sim in self.nodes.values_mut() {
            let Life::Starting(task) = &mut sim.life else {
                continue;
            };
            if !task.is_finished() {
                continue;
            }
            let outcome = task.await.map_err(|e| e.to_string());
            sim.life = match outcome {
                Ok(Ok(handle)) => Life::Running(handle),
                Ok(Err(error)) => {
                    failed.push((sim.id.clone(), error.to_string()));
                    Life::Down
                }
                Err(error) => {
                    failed.push((sim.id.clone(), error));
                    Life::Down
                }
            };
        }
        failed
    }

    /// Crashes `node` as a machine crash: its tasks stop at once, and its
    /// disk keeps its synced writes and the oldest `keep` of the rest.
    /// Returns the writes lost, or `None` if it was not up.
    pub fn crash(&mut self, node: &NodeId, keep: usize) -> Option<usize> {
        let sim = self.nodes.get_mut(node)?;
        match std::mem::replace(&mut sim.life, Life::Down) {
            Life::Running(handle) => handle.abort(),
            Life::Starting(task) => task.abort(),
            other => {
                sim.life = other;
                return None;
            }
        }
        self.net.crash(node);
        Some(sim.disk.crash(keep))
    }

    /// Erases `node`'s disk (it must be down).
    pub fn wipe(&mut self, node: &NodeId) {
        if let Some(sim) = self.nodes.get(node) {
            sim.disk.wipe();
        }
    }

    /// Starts a node that left for good again with its disk wiped: it
    /// joins as a new member under its old id (a replaced disk).
    pub fn start_wiped(&mut self, node: &NodeId) {
        let Some(sim) = self.nodes.get_mut(node) else {
            return;
        };
        if !matches!(sim.life, Life::Gone(_)) {
            return;
        }
        sim.disk.wipe();
        sim.life = Life::Down;
        self.start(node);
    }

    /// Jumps `node`'s clock by `micros`.
    pub fn jump_clock(&mut self, node: &NodeId, micros: i64) {
        if let Some(sim) = self.nodes.get(node) {
            sim.clock.jump(micros);
            self.net.set_clock_offset(node, sim.clock.offset_micros());
        }
    }

    /// Marks `node` gone for good (it left the ring).
    pub fn retire(&mut self, node: &NodeId, why: &str) {
        if let Some(sim) = self.nodes.get_mut(node) {
            if let Life::Running(handle) = std::mem::replace(&mut sim.life, Life::Gone(why.into()))
            {
                handle.abort();
            }
            self.net.crash(node);
        }
    }

    /// Every node's id.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().cloned().collect()
    }

    /// The nodes that have not left: running, starting or down.
    pub fn present(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|sim| !matches!(sim.life, Life::Gone(_)))
            .map(|sim| sim.id.clone())
            .collect()
    }

    /// The nodes running (started and serving).
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|sim| matches!(sim.life, Life::Running(_)))
            .map(|sim| sim.id.clone())
            .collect()
    }

    /// The nodes down (crashed, to be restarted).
    pub fn down(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|sim| matches!(sim.life, Life::Down))
            .map(|sim| sim.id.clone())
            .collect()
    }

    /// Whether any node is still starting.
    pub fn starting(&self) -> bool {
        self.nodes
            .values()
            .any(|sim| matches!(sim.life, Life::Starting(_)))
    }

    /// The running node's handle.
    pub fn handle(&self, node: &NodeId) -> Option<&NodeHandle> {
        match &self.nodes.get(node)?.life {
            Life::Running(handle) => Some(handle),
            _ => None,
        }
    }

    /// Whether every running node sees every other running node up and
    /// normal.
    pub fn settled(&self) -> bool {
        let running = self.running();
        running.iter().all(|node| {
            let view = self.handle(node).expect("running").view();
            running
                .iter()
                .all(|other| view.is_up(other) && view.status(other) == Some(Status::Normal))
        })
    }

    /// Waits (in simulated time) until `done` holds, polling starts and
    /// starting again every node whose start failed; returns whether it
    /// did by `within`, and the failed starts.
    pub async fn wait_until(
        &mut self,
        within: Duration,
        mut done: impl FnMut(&Cluster) -> bool,
    ) -> (bool, Vec<(NodeId, String)>) {
        let until = Instant::now() + within;
        let mut failures = Vec::new();
        loop {
            for (node, error) in self.poll_starts().await {
                self.start(&node);
                failures.push((node, error));
            }
            if done(self) {
                return (true, failures);
            }
            if Instant::now() >= until {
                return (false, failures);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops every node cleanly (the end of a run).
    pub async fn shutdown(&mut self) {
        for sim in self.nodes.values_mut() {
            match std::mem::replace(&mut sim.life, Life::Down) {
                Life::Running(handle) => {
                    // The run is over: a failed flush changes nothing.
                    let _ = handle.shutdown().await;
                }
                Life::Starting(task) => task.abort(),
                _ => {}
            }
        }
    }
}

/// The number in a node's id (`n3` → 3).
pub fn node_index(node: &NodeId) -> u8 {
    node.as_str().trim_start_matches('n').parse().unwrap_or(0)
}

/// The clients' way into the simulated cluster: through the net.
pub struct ClusterTarget {
    /// The net.
    pub net: Arc<Net>,
    /// The nodes clients may ask (kept up to date by the run).
    pub contact_points: std::sync::Mutex<Vec<NodeId>>,
}

impl Target for ClusterTarget {
    fn contact_points(&self) -> Vec<NodeId> {
        self.contact_points.lock().expect("contact points").clone()
    }

    fn call<'a>(
        &'a self,
        node: &'a NodeId,
        request: ClientRequest,
    ) -> BoxFuture<'a, Result<ClientReply, CallError>> {
        Box::pin(self.net.client_request(node, request, REQUEST_TIMEOUT))
    }
}
