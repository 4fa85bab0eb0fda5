//! A running node: its tasks, started together and stopped together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringdb_gossip::{GossipConfig, Gossiper, StateValue, Status};
use ringdb_proto::ClusterSettings;
use ringdb_ring::{NodeId, Replication, Token};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::dispatch::Services;
use crate::hints::{self, Hints};
use crate::injection::Injection;
use crate::known_peers::Departures;
use crate::membership::{GossipTask, Membership, SeedWatch, View};
use crate::network::{Faults, Faulty, Hello, Network};
use crate::placement::Placement;
use crate::replica::Replica;
use crate::schema::Schemas;
use crate::storage::Engine;
use crate::storage::{Storage, StorageError};
use crate::tls::{NodeCertificate, TlsError};
use crate::topology::Topology;
use crate::transport::{self, QuicNetwork};
use crate::world::{Clock, Random, SkewedClock, SystemClock};
use crate::{coordinator, http, known_peers, repair, restore, topology};

mod join;

use join::{finish_bootstrap, join, overlapping};

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
        // The clock a test harness may move (with `[faults] injectable`).
        let clock = Arc::new(SkewedClock::new(world.clock.clone()));
        let world = World {
            clock: clock.clone(),
            ..world
        };
        let certificate = match &world.network {
            Some(_) => None,
            None => Some(certificate(&config)?),
        };
        let storage = open_storage(&config, &world)?;
        let (network, internode_address, client_address, endpoints) =
            bind(&config, &world, certificate)?;
        let metrics_listener = bind_metrics(&config).await?;
        let metrics_address = metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok());
        let faults = Arc::new(Faults::default());
        let peers: Arc<dyn Network> =
            Arc::new(Faulty::new(network, faults.clone(), world.random.clone()));
        let generation = generation(&world, &storage)?;
        let (broadcast, unfinished) =
            broadcast(&config, &storage, internode_address, client_address)?;
        let cancel = CancellationToken::new();
        let (replica, gossip_task, seeds) = replica(
            &config,
            &world,
            generation,
            &broadcast,
            storage.clone(),
            peers.clone(),
            &cancel,
        )?;
        let membership = replica.membership.clone();
        let hints = Arc::new(Hints::open(
            storage.clone(),
            config.hints.clone(),
            world.clock.clone(),
        )?);
        let schemas = Arc::new(Schemas::open(replica.clone()).map_err(NodeError::Storage)?);
        let mut tasks = JoinSet::new();
        tasks.spawn(gossip_task.run());
        schemas.announce().await;
        if config.faults.injectable {
            warn!(
                "[faults] injectable = true: a caller with a certificate of the cluster's CA \
                 may delay, drop and duplicate this node's messages and move its clock \
                 (for ringdb lab; never on a real cluster)"
            );
        }
        let injection = config.faults.injectable.then(|| {
            Arc::new(Injection {
                faults: faults.clone(),
                clock,
            })
        });
        let coordinator = serve(
            &replica,
            (hints, injection, metrics_listener),
            schemas.clone(),
            &mut tasks,
            &cancel,
        );
        let handle = NodeHandle {
            id: config.node_id.clone(),
            internode_address,
            client_address,
            metrics_address,
            endpoints,
            cancel,
            tasks,
            storage,
            peers,
            membership,
            schemas,
        };
        let joined = enter_ring(
            &config,
            &handle,
            &coordinator,
            &seeds,
            &broadcast,
            unfinished,
        );
        if let Err(error) = joined.await {
            // Best effort: the node failed to start anyway.
            let _ = handle.shutdown().await;
            return Err(error);
        }
        topology::resume(&coordinator);
        info!(node = %handle.id, client = %handle.client_address, internode = %handle.internode_address, "node serving");
        Ok(handle)
    }
}

/// The generation of this life of the node, as in Cassandra's gossip: the
/// start time, but always above the last life's (see `known_peers`).
fn generation(world: &World, storage: &Storage) -> Result<u64, NodeError> {
    let now = u64::try_from(world.clock.now_micros()).unwrap_or(0);
    Ok(known_peers::next_generation(storage, now)?)
}

/// What this life announces (its addresses, and its tokens, chosen once
/// at the first start and kept in the data directory), and the ranges of
/// a bootstrap still to finish.
fn broadcast(
    config: &Config,
    storage: &Storage,
    internode_address: SocketAddr,
    client_address: SocketAddr,
) -> Result<(Broadcast, Vec<topology::RangeProgress>), NodeError> {
    let tokens = load_tokens(storage)?;
    let mut unfinished = topology::load_bootstrap(storage)?;
    unfinished.retain(|range| !range.done);
    let broadcast = Broadcast {
        internode: config.broadcast_internode.unwrap_or(internode_address),
        client: config.broadcast_client.unwrap_or(client_address),
        tokens,
        bootstrapping: !unfinished.is_empty(),
    };
    Ok((broadcast, unfinished))
}

/// The replica-access handle the node's services share, with the gossip
/// task that keeps its view of the cluster, and the seeds that task finds.
fn replica(
    config: &Config,
    world: &World,
    generation: u64,
    broadcast: &Broadcast,
    storage: Arc<Storage>,
    peers: Arc<dyn Network>,
    cancel: &CancellationToken,
) -> Result<(Arc<Replica>, GossipTask, Arc<SeedWatch>), NodeError> {
    let (gossiper, departures) = gossiper(config, world, &storage, generation, broadcast)?;
    let membership = Arc::new(Membership::new(replication(config)));
    let seeds = Arc::new(SeedWatch::default());
    let (gossip_task, gossip) = GossipTask::new(
        gossiper,
        departures,
        membership.clone(),
        peers.clone(),
        storage.clone(),
        seeds.clone(),
        cancel.clone(),
    );
    let replica = Arc::new(Replica {
        me: config.node_id.clone(),
        generation,
        storage,
        peers,
        membership,
        gossip,
        replication: replication(config),
        placement: Arc::new(Placement::new(replication(config))),
        settings: ClusterSettings {
            name: config.cluster.name.clone(),
            replication_factor: config.cluster.replication_factor,
            datacenter_replication: config.cluster.datacenter_replication.clone(),
        },
        limits: config.requests.clone(),
        streaming: config.streaming.clone(),
        antientropy: config.antientropy.clone(),
        clock: world.clock.clone(),
        random: world.random.clone(),
    });
    Ok((replica, gossip_task, seeds))
}

/// Where replicas go: `replication_factor` nodes clockwise on the ring,
/// or with `datacenter_replication`, so many in each datacenter.
fn replication(config: &Config) -> Replication {
    if config.cluster.datacenter_replication.is_empty() {
        return Replication::Simple {
            factor: config.cluster.replication_factor,
        };
    }
    Replication::PerDatacenter {
        factors: config.cluster.datacenter_replication.clone(),
    }
}

/// What a starting node tells the cluster about itself.
struct Broadcast {
    internode: SocketAddr,
    client: SocketAddr,
    /// Its tokens, once chosen (kept in the data directory).
    tokens: Option<Vec<Token>>,
    /// Whether it has a bootstrap left to finish.
    bootstrapping: bool,
}

/// The world's network on the configured addresses, or QUIC bound to the
/// configured ports with the node's certificate.
fn bind(
    config: &Config,
    world: &World,
    certificate: Option<NodeCertificate>,
) -> Result<Bound, NodeError> {
    Ok(match (world.network.clone(), certificate) {
        (Some(network), _) => (
            network,
            config.listen_internode,
            config.listen_client,
            vec![],
        ),
        (None, Some(certificate)) => quic(config, &certificate)?,
        (None, None) => unreachable!("a certificate is read when there is no network"),
    })
}

/// The metrics endpoint's listener, when the config asks for one.
async fn bind_metrics(config: &Config) -> Result<Option<TcpListener>, NodeError> {
    let Some(address) = config.listen_metrics else {
        return Ok(None);
    };
    TcpListener::bind(address)
        .await
        .map(Some)
        .map_err(|source| NodeError::Bind { address, source })
}

/// Opens the node's storage (the world's engine, or RocksDB in the data
/// directory); refused for the data directory of a node that left.
fn open_storage(config: &Config, world: &World) -> Result<Arc<Storage>, NodeError> {
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
    Ok(storage)
}

/// The node's gossip state machine: its own state, and the peers it knew
/// in its last life.
fn gossiper(
    config: &Config,
    world: &World,
    storage: &Storage,
    generation: u64,
    broadcast: &Broadcast,
) -> Result<(Gossiper, Departures), NodeError> {
    let status = if broadcast.tokens.is_some() && !broadcast.bootstrapping {
        Status::Normal
    } else {
        Status::Joining
    };
    let states = [
        StateValue::Status(status),
        StateValue::Tokens(broadcast.tokens.clone().unwrap_or_default()),
        StateValue::InternodeAddress(broadcast.internode),
        StateValue::ClientAddress(broadcast.client),
        StateValue::Location(config.location()),
        StateValue::ActorEpoch(storage.epoch()),
        restore::damage_state(storage),
    ];
    let gossip_config = GossipConfig {
        cluster: config.cluster.name.clone(),
        seeds: config.cluster.seeds.clone(),
        detector: config.cluster.failure_detector.clone(),
    };
    let gossip_seed = world.random.next_u64();
    let me = config.node_id.clone();
    let mut gossiper = Gossiper::new(me, generation, states, gossip_config, gossip_seed);
    let (known, departed) = known_peers::load(storage)?.into_parts();
    for (node, state) in known {
        gossiper.remember(node, state);
    }
    Ok((gossiper, Departures::new(departed, world.clock.clone())))
}

/// Wires the services around `replica` and spawns their tasks: serving
/// peers and clients, background jobs, schema agreement, hint replay,
/// Merkle trees, anti-entropy and restores. Returns the topology service.
fn serve(
    replica: &Arc<Replica>,
    (hints, injection, metrics): (Arc<Hints>, Option<Arc<Injection>>, Option<TcpListener>),
    schemas: Arc<Schemas>,
    tasks: &mut JoinSet<()>,
    cancel: &CancellationToken,
) -> Arc<Topology> {
    let (background, jobs) = mpsc::channel(BACKGROUND_QUEUE);
    tasks.spawn(schemas.clone().run(cancel.clone()));
    let services = Services::new(
        replica,
        hints,
        schemas,
        background,
        (cancel.clone(), injection),
    );
    let hello = Hello {
        generation: replica.generation,
        settings: replica.settings.clone(),
    };
    for serve in replica
        .peers
        .serve(services.dispatcher.clone(), hello, cancel.clone())
    {
        tasks.spawn(serve);
    }
    if let Some(listener) = metrics {
        let dispatcher = services.dispatcher.clone();
        let scrape: http::Scrape = Arc::new(move || {
            let dispatcher = dispatcher.clone();
            let storage = dispatcher.replica.storage.clone();
            Box::pin(async move { storage.blocking(move |_| dispatcher.scrape()).await })
        });
        let dispatcher = services.dispatcher.clone();
        let health: http::Health = Arc::new(move || dispatcher.unready());
        tasks.spawn(http::serve(listener, (scrape, health), cancel.clone()));
    }
    tasks.spawn(coordinator::run_background(jobs, cancel.clone()));
    let antientropy = &services.antientropy;
    tasks.spawn(hints::run_replay(services.handoff.clone(), cancel.clone()));
    tasks.spawn(repair::maintain_trees(antientropy.clone(), cancel.clone()));
    tasks.spawn(repair::run_background(antientropy.clone(), cancel.clone()));
    tasks.spawn(restore::watch(replica.clone(), cancel.clone()));
    tasks.spawn(restore::restore(antientropy.clone(), cancel.clone()));
    services.topology.clone()
}

/// Takes the node's place in the ring: joins at the first start, resumes
/// an interrupted bootstrap, or (with tokens kept) nothing to do.
async fn enter_ring(
    config: &Config,
    handle: &NodeHandle,
    coordinator: &Topology,
    seeds: &SeedWatch,
    broadcast: &Broadcast,
    unfinished: Vec<topology::RangeProgress>,
) -> Result<(), NodeError> {
    let Some(tokens) = &broadcast.tokens else {
        return join(config, handle, coordinator, seeds, broadcast.internode).await;
    };
    if unfinished.is_empty() {
        return Ok(());
    }
    info!(node = %handle.id, ranges = unfinished.len(), "resuming an interrupted bootstrap");
    tokio::time::sleep(topology::RING_SETTLE).await;
    if let Some(other) = overlapping(&handle.membership.view(), &handle.id, tokens) {
        return Err(NodeError::Join(format!(
            "{other} now holds tokens this node chose before it stopped joining; \
             start it again with an empty data directory"
        )));
    }
    finish_bootstrap(handle, coordinator).await
}

/// The key of this node's tokens in the storage's metadata.
const TOKENS_KEY: &str = "tokens";

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
    metrics_address: Option<SocketAddr>,
    endpoints: Vec<quinn::Endpoint>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    storage: Arc<Storage>,
    peers: Arc<dyn Network>,
    membership: Arc<Membership>,
    schemas: Arc<Schemas>,
}

impl NodeHandle {
    /// Table `name` of `keyspace`, as this node's schema has it (its id is
    /// what `RowAddress::of_table` addresses its rows by).
    pub fn table(&self, keyspace: &str, name: &str) -> Option<ringdb_proto::TableDefinition> {
        self.schemas.current().table(keyspace, name).cloned()
    }

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Where it serves clients.
    pub fn client_address(&self) -> SocketAddr {
        self.client_address
    }

    /// The address the metrics endpoint listens on (`listen_metrics`,
    /// with the port the OS chose for port 0), if it has one.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    /// Where it serves other nodes.
    pub fn internode_address(&self) -> SocketAddr {
        self.internode_address
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
        // RocksDB's lock. What this handle holds besides goes first: the
        // schema service holds the node's replica handle, and with it the
        // storage, so the count could never fall to one while it lived.
        let NodeHandle {
            id,
            storage,
            schemas,
            peers,
            membership,
            ..
        } = self;
        drop((schemas, peers, membership));
        let released = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while Arc::strong_count(&storage) > 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if released.is_err() {
            warn!(node = %id, "the storage is still in use after {SHUTDOWN_GRACE:?}");
        }
        info!(node = %id, "node stopped");
        Ok(())
    }
}
