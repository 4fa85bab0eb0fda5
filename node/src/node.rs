//! A running node: its tasks, started together and stopped together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringdb_gossip::{GossipConfig, Gossiper, StateValue, Status};
use ringdb_proto::ClusterSettings;
use ringdb_ring::{NodeId, Replication, Ring, Token};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::dispatch::Services;
use crate::hints::{self, Hints};
use crate::membership::{GossipTask, Membership, SeedWatch, View};
use crate::network::{Faults, Faulty, Hello, Network};
use crate::replica::Replica;
use crate::storage::Engine;
use crate::storage::{Storage, StorageError};
use crate::tls::{NodeCertificate, TlsError};
use crate::topology::Topology;
use crate::transport::{self, QuicNetwork};
use crate::world::{Clock, Random, SystemClock};
use crate::{coordinator, known_peers, repair, restore, topology};

/// How long [`NodeHandle::shutdown`] waits for tasks to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown lets closed connections drain.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// Background jobs (read repairs) that may wait; more are shed.
const BACKGROUND_QUEUE: usize = 1024;

/// Why a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A certificate or key file cannot be read or used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// A certificate or key file cannot be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The node's certificate names another node: peers would know it by
    /// that name, not the configured one.
    #[error(
        "this node is configured as {configured} but its certificate ({certificate}) names \
         {named}: peers know a node by its certificate; use the certificate issued for \
         {configured} (`ringdb cert {configured}`)",
        certificate = certificate.display()
    )]
    IdentityMismatch {
        /// The node id in the config.
        configured: NodeId,
        /// The node id the certificate names.
        named: NodeId,
        /// The certificate file.
        certificate: std::path::PathBuf,
    },
    /// The storage cannot be opened.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// Tokens cannot be allocated in the ring.
    #[error("ring: {0}")]
    Ring(#[from] ringdb_ring::RingError),
    /// The data directory is that of a node that left the cluster for good.
    #[error(
        "this node was {why}: its data in {} is stale and it will not rejoin; \
         to join again, start it with an empty data directory",
        data_dir.display()
    )]
    Retired {
        /// `decommissioned` or `removed`.
        why: String,
        /// The data directory.
        data_dir: std::path::PathBuf,
    },
    /// The node cannot join the cluster.
    #[error("cannot join the cluster: {0}")]
    Join(String),
    /// A listening address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What a node runs in: its clock, its random numbers, its disk and its
/// network.
#[derive(Clone)]
pub struct World {
    /// Wall time.
    pub clock: Arc<dyn Clock>,
    /// Random numbers.
    pub random: Arc<Random>,
    /// The storage engine; `None`: RocksDB in the configured data directory.
    pub engine: Option<Arc<dyn Engine>>,
    /// The peer network; `None`: QUIC on the configured ports, with the
    /// configured certificates.
    pub network: Option<Arc<dyn Network>>,
}

impl World {
    /// The system clock, a source seeded by the operating system, RocksDB
    /// and QUIC.
    pub fn production() -> World {
        World {
            clock: Arc::new(SystemClock),
            random: Arc::new(Random::from_os()),
            engine: None,
            network: None,
        }
    }
}

/// Starts nodes.
pub struct Node;

impl Node {
    /// Starts a node in this process: opens its storage, binds its ports and
    /// starts serving. Must be called inside a tokio runtime.
    pub async fn start(config: Config) -> Result<NodeHandle, NodeError> {
        Node::start_in(config, World::production()).await
    }

    /// [`Node::start`] in `world`: its clock, random source, storage
    /// engine and network (the simulator's, or RocksDB and QUIC when the
    /// world leaves them out).
    pub async fn start_in(config: Config, world: World) -> Result<NodeHandle, NodeError> {
        config.validate()?;
        let certificate = match &world.network {
            Some(_) => None,
            None => Some(certificate(&config)?),
        };
        let storage = Arc::new(match &world.engine {
            Some(engine) => Storage::new(engine.clone(), &world.random)?,
            None => Storage::open_with(&config.data_dir, &config.storage, &world.random)?,
        });
        if let Some(why) = storage.retired()? {
            return Err(NodeError::Retired {
                why,
                data_dir: config.data_dir.clone(),
            });
        }
        let (network, internode_address, client_address, endpoints) =
            match (world.network.clone(), certificate) {
                (Some(network), _) => (
                    network,
                    config.listen_internode,
                    config.listen_client,
                    vec![],
                ),
                (None, Some(certificate)) => quic(&config, &certificate)?,
                (None, None) => unreachable!("a certificate is read when there is no network"),
            };
        let faults = Arc::new(Faults::default());
        let peers: Arc<dyn Network> =
            Arc::new(Faulty::new(network, faults.clone(), world.random.clone()));

        let me = config.node_id.clone();
        // The generation of this life of the node, as in Cassandra's gossip:
        // the start time, but always above the last life's (see
        // `known_peers`).
        let now = u64::try_from(world.clock.now_micros()).unwrap_or(0);
        let generation = known_peers::next_generation(&storage, now)?;
        let settings = ClusterSettings {
            name: config.cluster.name.clone(),
            replication_factor: config.cluster.replication_factor,
        };
        let replication = Replication::Simple {
            factor: config.cluster.replication_factor,
        };
        let membership = Arc::new(Membership::new(replication.clone()));

        // What this node tells the cluster about itself. Tokens are chosen
        // once, at the first start, and kept in the data directory.
        let tokens = load_tokens(&storage)?;
        let mut unfinished = topology::load_bootstrap(&storage)?;
        unfinished.retain(|range| !range.done);
        let status = if tokens.is_some() && unfinished.is_empty() {
            Status::Normal
        } else {
            Status::Joining
        };
        let broadcast_internode = config.broadcast_internode.unwrap_or(internode_address);
        let broadcast_client = config.broadcast_client.unwrap_or(client_address);
        let states = [
            StateValue::Status(status),
            StateValue::Tokens(tokens.clone().unwrap_or_default()),
            StateValue::InternodeAddress(broadcast_internode),
            StateValue::ClientAddress(broadcast_client),
            StateValue::Location(config.location()),
            StateValue::ActorEpoch(storage.epoch()),
            restore::damage_state(&storage),
        ];
        let gossip_config = GossipConfig {
            cluster: config.cluster.name.clone(),
            seeds: config.cluster.seeds.clone(),
            detector: config.cluster.failure_detector.clone(),
        };
        let gossip_seed = world.random.next_u64();
        let mut gossiper =
            Gossiper::new(me.clone(), generation, states, gossip_config, gossip_seed);
        for (node, state) in known_peers::load(&storage)?.into_nodes() {
            gossiper.remember(node, state);
        }

        let cancel = CancellationToken::new();
        let seeds = Arc::new(SeedWatch::default());
        let (gossip_task, gossip) = GossipTask::new(
            gossiper,
            membership.clone(),
            peers.clone(),
            storage.clone(),
            seeds.clone(),
            cancel.clone(),
        );
        let hints = Arc::new(Hints::open(
            storage.clone(),
            config.hints.clone(),
            world.clock.clone(),
        )?);
        let (background, jobs) = mpsc::channel(BACKGROUND_QUEUE);
        let replica = Arc::new(Replica {
            me: me.clone(),
            generation,
            storage: storage.clone(),
            peers: peers.clone(),
            membership: membership.clone(),
            gossip: gossip.clone(),
            replication,
            settings,
            limits: config.requests.clone(),
            streaming: config.streaming.clone(),
            antientropy: config.antientropy.clone(),
            clock: world.clock.clone(),
            random: world.random.clone(),
        });
        let services = Services::new(&replica, hints, background, cancel.clone());
        let coordinator = services.topology.clone();

        let mut tasks = JoinSet::new();
        tasks.spawn(gossip_task.run());
        let hello = Hello {
            generation,
            settings: replica.settings.clone(),
        };
        for serve in peers.serve(services.dispatcher.clone(), hello, cancel.clone()) {
            tasks.spawn(serve);
        }
        tasks.spawn(coordinator::run_background(jobs, cancel.clone()));
        let antientropy = &services.antientropy;
        tasks.spawn(hints::run_replay(services.handoff.clone(), cancel.clone()));
        tasks.spawn(repair::maintain_trees(antientropy.clone(), cancel.clone()));
        tasks.spawn(repair::run_background(antientropy.clone(), cancel.clone()));
        tasks.spawn(restore::watch(replica.clone(), cancel.clone()));
        tasks.spawn(restore::restore(antientropy.clone(), cancel.clone()));
        let handle = NodeHandle {
            id: me,
            internode_address,
            client_address,
            endpoints,
            cancel,
            tasks,
            storage,
            faults,
            peers,
            membership,
        };
        let joined = if tokens.is_none() {
            join(&config, &handle, &coordinator, &seeds, broadcast_internode).await
        } else if !unfinished.is_empty() {
            info!(node = %handle.id, ranges = unfinished.len(), "resuming an interrupted bootstrap");
            tokio::time::sleep(topology::RING_SETTLE).await;
            let mine = tokens.clone().unwrap_or_default();
            if let Some(other) = overlapping(&handle.membership.view(), &handle.id, &mine) {
                // Best effort: the node fails to start anyway.
                let _ = handle.shutdown().await;
                return Err(NodeError::Join(format!(
                    "{other} now holds tokens this node chose before it stopped joining; \
                     start it again with an empty data directory"
                )));
            }
            finish_bootstrap(&handle, &coordinator).await
        } else {
            Ok(())
        };
        if let Err(error) = joined {
            // Best effort: the node failed to start anyway.
            let _ = handle.shutdown().await;
            return Err(error);
        }
        topology::resume(&coordinator);
        info!(node = %handle.id, client = %handle.client_address, internode = %handle.internode_address, "node serving");
        Ok(handle)
    }
}

/// The key of this node's tokens in the storage's metadata.
const TOKENS_KEY: &str = "tokens";
/// How long a seed starting for the first time listens for an existing
/// cluster before it founds one.
const FOUNDING_WAIT: Duration = Duration::from_secs(3);
/// How long a new node waits for a seed to answer.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);
use topology::RING_SETTLE;

fn load_tokens(storage: &Storage) -> Result<Option<Vec<Token>>, NodeError> {
    match storage.get_meta(TOKENS_KEY)? {
        None => Ok(None),
        Some(bytes) => rmp_serde::from_slice(&bytes).map(Some).map_err(|e| {
            NodeError::Storage(StorageError::Corrupt {
                what: "tokens",
                detail: e.to_string(),
            })
        }),
    }
}

/// The first start of a node: learn the ring from the seeds, choose tokens
/// that split its largest ranges, keep them, stream its ranges if the
/// cluster has data (bootstrap), and become normal.
///
/// Nodes started together must not choose at once: a seed founds a new
/// cluster only when no member and no other seed with a smaller id is
/// starting (the others wait for it and join), and new nodes take their
/// turns by node id, each announcing its tokens, waiting for the ring to
/// settle and giving way (to try again) when a node with a smaller id
/// announced at the same time. Tokens are kept only once the turn is won.
async fn join(
    config: &Config,
    node: &NodeHandle,
    coordinator: &Topology,
    seed_watch: &SeedWatch,
    my_address: SocketAddr,
) -> Result<(), NodeError> {
    let seeds: Vec<SocketAddr> = config.cluster.seeds.clone();
    let is_seed = seeds.is_empty() || seeds.contains(&my_address);
    // The only seed has nobody to ask: it founds the cluster at once.
    let only_seed = seeds.iter().all(|seed| *seed == my_address);
    let wait = if only_seed {
        Duration::ZERO
    } else if is_seed {
        FOUNDING_WAIT
    } else {
        DISCOVERY_TIMEOUT
    };
    let mut found = discover(node, seed_watch, wait).await?;
    if !found && is_seed {
        let view = node.membership.view();
        if let Some(founder) = starting_seed_before(&view, &node.id, &seeds) {
            info!(node = %node.id, %founder, "another seed is founding the cluster; joining it");
            found = discover(node, seed_watch, DISCOVERY_TIMEOUT).await?;
            if !found {
                return Err(NodeError::Join(format!(
                    "{founder}, a seed starting with this one, did not found the cluster \
                     within {DISCOVERY_TIMEOUT:?}"
                )));
            }
        }
    }
    if !found && !is_seed {
        return Err(NodeError::Join(format!(
            "no seed answered within {DISCOVERY_TIMEOUT:?} (seeds: {seeds:?})"
        )));
    }
    if !found {
        info!(node = %node.id, "no cluster found: founding one");
        let tokens =
            Ring::founding_tokens(config.cluster.num_tokens, coordinator.random.next_u64());
        keep_tokens(node, coordinator, tokens).await?;
        return become_normal(node, coordinator).await;
    }
    // Learn the whole ring, not only the seed that answered.
    tokio::time::sleep(RING_SETTLE).await;
    for attempt in 1..=JOIN_ATTEMPTS {
        wait_for_turn(node).await?;
        let view = node.membership.view();
        let ring = view.ring.clone();
        // Tokens that nodes still joining announced (live or not: one that
        // died streaming may come back) are taken too.
        let mut taken = ring.clone();
        for (id, other) in &view.nodes {
            if *id != node.id && other.state.status() == Status::Joining {
                let tokens = other.state.tokens().to_vec();
                if !tokens.is_empty() {
                    // A clash is left out here and caught by `overlapping`.
                    let _ = taken.add_node(id.clone(), other.state.location(), tokens);
                }
            }
        }
        let tokens = taken.clone().join(
            node.id.clone(),
            config.location(),
            config.cluster.num_tokens,
            config.cluster.replication_factor,
        )?;
        let mut future = ring.clone();
        future.add_node(node.id.clone(), config.location(), tokens.clone())?;
        // Announced as joining (not yet kept): the others count this node
        // in their pending ranges, and see any node that chose at once.
        coordinator
            .gossip
            .set_state(StateValue::Tokens(tokens.clone()))
            .await;
        tokio::time::sleep(RING_SETTLE).await;
        let view = node.membership.view();
        let clash =
            joining_before(&view, &node.id).or_else(|| overlapping(&view, &node.id, &tokens));
        if let Some(other) = clash {
            info!(node = %node.id, %other, attempt, "another node chose its tokens at the same time; giving way");
            coordinator
                .gossip
                .set_state(StateValue::Tokens(Vec::new()))
                .await;
            continue;
        }
        let bootstrap = config.cluster.auto_bootstrap;
        if bootstrap {
            let plan = topology::bootstrap_plan(coordinator, &ring, &future);
            if let Some(why) = topology::unavailable_source(coordinator, &plan) {
                return Err(NodeError::Join(why));
            }
            topology::save_bootstrap(&node.storage, &plan)?;
        }
        keep_tokens(node, coordinator, tokens).await?;
        if bootstrap {
            // The others send this node the writes of its future ranges
            // since it announced its tokens: stream what came before.
            info!(node = %node.id, "joining: announced tokens; streaming ranges");
            return finish_bootstrap(node, coordinator).await;
        }
        return become_normal(node, coordinator).await;
    }
    Err(NodeError::Join(format!(
        "other nodes chose tokens at the same time {JOIN_ATTEMPTS} times; start this node again"
    )))
}

/// Waits up to `within` for a cluster to join; fails at once when a seed
/// refuses this node (its cluster settings differ).
async fn discover(
    node: &NodeHandle,
    seeds: &SeedWatch,
    within: Duration,
) -> Result<bool, NodeError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(refusal) = seeds.refusal() {
            return Err(NodeError::Join(refusal));
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let slice = left.min(Duration::from_millis(250));
        if node.membership.wait_for(slice, has_members).await {
            return Ok(true);
        }
        if left.is_zero() {
            return Ok(false);
        }
    }
}

/// How long a new node waits for its turn to join.
const TURN_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a node waiting for its turn says so.
const TURN_NOTICE: Duration = Duration::from_secs(10);

/// How many times a new node tries to choose its tokens.
const JOIN_ATTEMPTS: usize = 5;

/// Whether the view has a live member: a cluster to join (not only peers
/// remembered from an earlier, failed start).
fn has_members(view: &Arc<View>) -> bool {
    view.nodes
        .values()
        .any(|n| n.up && matches!(n.state.status(), Status::Normal | Status::Leaving))
}

/// A live seed other than `me`, starting with no tokens, whose id is
/// smaller: the one that founds the cluster when seeds start together.
fn starting_seed_before(view: &View, me: &NodeId, seeds: &[SocketAddr]) -> Option<NodeId> {
    view.nodes
        .iter()
        .filter(|(id, n)| {
            *id < me
                && n.up
                && n.state.status() == Status::Joining
                && n.state
                    .internode_address()
                    .is_some_and(|a| seeds.contains(&a))
        })
        .map(|(id, _)| id.clone())
        .next()
}

/// A live node other than `me` with a smaller id that announced tokens to
/// join: `me` gives way to it.
fn joining_before(view: &View, me: &NodeId) -> Option<NodeId> {
    view.nodes
        .iter()
        .filter(|(id, n)| {
            *id < me && n.up && n.state.status() == Status::Joining && !n.state.tokens().is_empty()
        })
        .map(|(id, _)| id.clone())
        .next()
}

/// A member other than `me` (normal, leaving, or joining with a smaller
/// id) that holds one of `tokens`, live or not.
fn overlapping(view: &View, me: &NodeId, tokens: &[Token]) -> Option<NodeId> {
    view.nodes
        .iter()
        .filter(|(id, n)| {
            let status = n.state.status();
            *id != me
                && (matches!(status, Status::Normal | Status::Leaving)
                    || (status == Status::Joining && *id < me))
                && n.state.tokens().iter().any(|t| tokens.contains(t))
        })
        .map(|(id, _)| id.clone())
        .next()
}

/// Waits until no other topology change is in progress and no live node
/// with a smaller id is waiting to join (one change at a time, in id
/// order), at most [`TURN_TIMEOUT`] (others' bootstraps stream data).
async fn wait_for_turn(node: &NodeHandle) -> Result<(), NodeError> {
    let me = node.id.clone();
    let my_turn = |view: &Arc<View>| {
        let earlier = view
            .nodes
            .iter()
            .any(|(id, n)| *id < me && n.up && n.state.status() == Status::Joining);
        !earlier && view.change_in_progress(&me).is_none()
    };
    let deadline = tokio::time::Instant::now() + TURN_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if node.membership.wait_for(TURN_NOTICE, my_turn).await {
            return Ok(());
        }
        if let Some((other, status)) = node.membership.view().change_in_progress(&me) {
            info!(node = %me, %other, %status, "waiting for a topology change to finish before joining");
        }
    }
    let view = node.membership.view();
    Err(NodeError::Join(match view.change_in_progress(&me) {
        Some((other, status)) => format!(
            "another topology change is in progress: {other} is {status}; start this node \
             once it has finished (one change at a time)"
        ),
        None => format!("nodes with smaller ids were still joining after {TURN_TIMEOUT:?}"),
    }))
}

/// Keeps this node's tokens in its data directory, then announces them.
async fn keep_tokens(
    node: &NodeHandle,
    coordinator: &Topology,
    tokens: Vec<Token>,
) -> Result<(), NodeError> {
    let bytes = rmp_serde::to_vec(&tokens).expect("tokens encode");
    node.storage.put_meta(TOKENS_KEY, &bytes)?;
    coordinator
        .gossip
        .set_state(StateValue::Tokens(tokens))
        .await;
    Ok(())
}

/// Streams the ranges a bootstrap has not finished, then becomes normal.
async fn finish_bootstrap(node: &NodeHandle, coordinator: &Topology) -> Result<(), NodeError> {
    let mut progress = topology::load_bootstrap(&node.storage)?;
    topology::await_seen_joining(coordinator).await;
    let streamed = topology::run_bootstrap(coordinator, &mut progress)
        .await
        .map_err(|e| NodeError::Join(format!("bootstrap streaming failed: {e}")))?;
    info!(node = %node.id, rows = streamed.rows, bytes = streamed.bytes, "bootstrap streaming complete");
    topology::save_bootstrap(&node.storage, &[])?;
    become_normal(node, coordinator).await
}

async fn become_normal(node: &NodeHandle, coordinator: &Topology) -> Result<(), NodeError> {
    coordinator
        .gossip
        .set_state(StateValue::Status(Status::Normal))
        .await;
    // Serve once this node's own view has it in the ring.
    let in_ring = |view: &Arc<View>| view.ring.members().contains_key(&node.id);
    if !node
        .membership
        .wait_for(Duration::from_secs(5), in_ring)
        .await
    {
        return Err(NodeError::Join(
            "the node's tokens did not reach its ring".into(),
        ));
    }
    info!(node = %node.id, "joined the ring");
    Ok(())
}

/// The node's certificate, checked to name the configured node.
fn certificate(config: &Config) -> Result<NodeCertificate, NodeError> {
    let certificate = NodeCertificate {
        ca_pem: read(&config.tls.ca_certificate)?,
        certificate_pem: read(&config.tls.certificate)?,
        key_pem: read(&config.tls.key)?,
    };
    let named = certificate.node_id()?;
    if named != config.node_id {
        return Err(NodeError::IdentityMismatch {
            configured: config.node_id.clone(),
            named,
            certificate: config.tls.certificate.clone(),
        });
    }
    Ok(certificate)
}

/// A network, where it serves peers and clients, and its endpoints (to
/// close at shutdown).
type Bound = (
    Arc<dyn Network>,
    SocketAddr,
    SocketAddr,
    Vec<quinn::Endpoint>,
);

/// The QUIC network on the configured ports.
fn quic(config: &Config, certificate: &NodeCertificate) -> Result<Bound, NodeError> {
    let bind = |address: SocketAddr| move |source| NodeError::Bind { address, source };
    let mut internode_server = certificate.server_config()?;
    internode_server.transport_config(transport::internode_transport());
    let internode = quinn::Endpoint::server(internode_server, config.listen_internode)
        .map_err(bind(config.listen_internode))?;
    let client = quinn::Endpoint::server(certificate.client_server_config()?, config.listen_client)
        .map_err(bind(config.listen_client))?;
    let mut dial = certificate.client_config()?;
    dial.transport_config(transport::internode_transport());
    let internode_address = internode
        .local_addr()
        .map_err(bind(config.listen_internode))?;
    let client_address = client.local_addr().map_err(bind(config.listen_client))?;
    let network = QuicNetwork::new(
        internode.clone(),
        client.clone(),
        dial,
        config.requests.max_in_flight_per_connection,
    );
    Ok((
        Arc::new(network),
        internode_address,
        client_address,
        vec![internode, client],
    ))
}

fn read(path: &std::path::Path) -> Result<String, NodeError> {
    std::fs::read_to_string(path).map_err(|source| NodeError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// A node running in this process.
pub struct NodeHandle {
    id: NodeId,
    internode_address: SocketAddr,
    client_address: SocketAddr,
    endpoints: Vec<quinn::Endpoint>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    storage: Arc<Storage>,
    faults: Arc<Faults>,
    peers: Arc<dyn Network>,
    membership: Arc<Membership>,
}

impl NodeHandle {
    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Where it serves clients.
    pub fn client_address(&self) -> SocketAddr {
        self.client_address
    }

    /// Where it serves other nodes.
    pub fn internode_address(&self) -> SocketAddr {
        self.internode_address
    }

    /// The fault hook of its outgoing internode messages (off until set).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Whether it has a connection to `peer`.
    pub fn is_connected_to(&self, peer: &NodeId) -> bool {
        self.peers.is_alive(peer)
    }

    /// Its view of the cluster: the ring and who is up.
    pub fn view(&self) -> Arc<View> {
        self.membership.view()
    }

    /// Whether the node found damaged data on its disk: it stops by itself
    /// then, and should be started again (shut down, then
    /// [`Node::start`]), which salvages its data directory.
    pub fn salvage_requested(&self) -> bool {
        self.storage.salvage_requested()
    }

    /// Waits until a task of the node stops by itself (which it should not
    /// before shutdown, unless it found damaged data, see
    /// [`NodeHandle::salvage_requested`]): the caller should then shut the
    /// node down.
    pub async fn stopped(&mut self) {
        self.tasks.join_next().await;
    }

    /// Stops the node at once, as `kill -9` stops a process: its tasks are
    /// cancelled and aborted, nothing is flushed or said to peers. For the
    /// simulator, which then crashes the node's disk.
    pub fn abort(self) {
        self.cancel.cancel();
        // Dropping the handle aborts every task of the node.
    }

    /// Stops serving, closes connections, waits for the tasks (up to a few
    /// seconds) and flushes the storage.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        self.cancel.cancel();
        for endpoint in &self.endpoints {
            endpoint.close(0u32.into(), b"node shutting down");
        }
        let joined = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if joined.is_err() {
            warn!(node = %self.id, "tasks still running after {SHUTDOWN_GRACE:?}; aborting them");
            self.tasks.shutdown().await;
        }
        // Closed connections drain so that peers learn of the close; a
        // peer that went away without closing (a client killed mid-session)
        // would hold this for the endpoint's idle timeout, so it is bounded.
        let drained = tokio::time::timeout(DRAIN_GRACE, async {
            for endpoint in &self.endpoints {
                endpoint.wait_idle().await;
            }
        })
        .await;
        if drained.is_err() {
            debug!(node = %self.id, "connections still draining after {DRAIN_GRACE:?}");
        }
        let flushed = self.storage.blocking(Storage::flush).await;
        match flushed {
            // A database with damaged data may refuse writes: the WAL holds
            // every write, and the next open salvages.
            Err(error) if self.storage.note_damage(&error) => {
                warn!(node = %self.id, %error, "no final flush: damaged data");
            }
            flushed => flushed?,
        }
        // Blocking jobs and detached tasks may hold the storage a moment
        // longer: a start in this process right after (a salvage) needs
        // RocksDB's lock.
        let released = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while Arc::strong_count(&self.storage) > 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if released.is_err() {
            warn!(node = %self.id, "the storage is still in use after {SHUTDOWN_GRACE:?}");
        }
        info!(node = %self.id, "node stopped");
        Ok(())
    }
}
