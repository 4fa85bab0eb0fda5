//! A running node: its tasks, started together and stopped together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringdb_proto::ClientRequest;
use ringdb_ring::{NodeId, Replication, Ring};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::coordinator::{BackgroundJob, Coordinator};
use crate::storage::{Storage, StorageError};
use crate::tls::{self, NodeCertificate, TlsError};
use crate::transport::{self, Faults, Peers};

/// How long [`NodeHandle::shutdown`] waits for tasks to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown lets closed connections drain.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// Background jobs (read repairs) that may wait; more are shed.
const BACKGROUND_QUEUE: usize = 1024;
/// Background jobs that run at once.
const BACKGROUND_CONCURRENCY: usize = 64;

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
    /// The storage cannot be opened.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The ring cannot be built from the member list.
    #[error("ring: {0}")]
    Ring(#[from] ringdb_ring::RingError),
    /// A listening address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Starts nodes.
pub struct Node;

impl Node {
    /// Starts a node in this process: opens its storage, binds its ports and
    /// starts serving. Must be called inside a tokio runtime.
    pub async fn start(config: Config) -> Result<NodeHandle, NodeError> {
        config.validate()?;
        let certificate = NodeCertificate {
            ca_pem: read(&config.tls.ca_certificate)?,
            certificate_pem: read(&config.tls.certificate)?,
            key_pem: read(&config.tls.key)?,
        };
        let storage = Arc::new(Storage::open(&config.data_dir, &config.storage)?);
        let mut ring = Ring::new();
        for member in &config.cluster.nodes {
            ring.join(
                member.id.clone(),
                member.location(),
                config.cluster.num_tokens,
                config.cluster.replication_factor,
            )?;
        }

        let mut internode_server = certificate.server_config()?;
        internode_server.transport_config(transport::internode_transport());
        let internode = quinn::Endpoint::server(internode_server, config.listen_internode)
            .map_err(|source| NodeError::Bind {
                address: config.listen_internode,
                source,
            })?;
        let client =
            quinn::Endpoint::server(certificate.client_server_config()?, config.listen_client)
                .map_err(|source| NodeError::Bind {
                    address: config.listen_client,
                    source,
                })?;
        let mut dial = certificate.client_config()?;
        dial.transport_config(transport::internode_transport());

        let me = config.node_id.clone();
        let faults = Arc::new(Faults::default());
        let peer_list: Vec<(NodeId, SocketAddr)> = config
            .cluster
            .nodes
            .iter()
            .filter(|m| m.id != me)
            .map(|m| (m.id.clone(), m.internode_address))
            .collect();
        // The generation of this life of the node, as in Cassandra's gossip:
        // the start time, which grows from one restart to the next.
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        let peers = Arc::new(Peers::new(
            peer_list.iter().map(|(id, _)| id.clone()),
            generation,
            faults.clone(),
        ));
        // Clients are told where this node really listens (its config may
        // say port 0).
        let mut members = config.cluster.nodes.clone();
        if let (Some(member), Ok(address)) =
            (members.iter_mut().find(|m| m.id == me), client.local_addr())
        {
            member.client_address = address;
        }
        let (background, jobs) = mpsc::channel(BACKGROUND_QUEUE);
        let coordinator = Arc::new(Coordinator {
            me: me.clone(),
            generation,
            actor: storage.actor(&me),
            storage: storage.clone(),
            peers: peers.clone(),
            ring,
            replication: Replication::Simple {
                factor: config.cluster.replication_factor,
            },
            members,
            limits: config.requests.clone(),
            background,
        });

        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for (peer, address) in peer_list {
            tasks.spawn(peers.clone().run(
                peer,
                address,
                internode.clone(),
                dial.clone(),
                cancel.clone(),
            ));
        }
        let members: Vec<NodeId> = config.cluster.nodes.iter().map(|m| m.id.clone()).collect();
        let limit = config.requests.max_in_flight_per_connection;
        tasks.spawn(accept_internode(
            internode.clone(),
            coordinator.clone(),
            members,
            limit,
            cancel.clone(),
        ));
        tasks.spawn(accept_clients(
            client.clone(),
            coordinator.clone(),
            limit,
            cancel.clone(),
        ));
        tasks.spawn(run_background(jobs, cancel.clone()));
        let handle = NodeHandle {
            id: me,
            internode_address: internode.local_addr().map_err(|source| NodeError::Bind {
                address: config.listen_internode,
                source,
            })?,
            client_address: client.local_addr().map_err(|source| NodeError::Bind {
                address: config.listen_client,
                source,
            })?,
            endpoints: vec![internode, client],
            cancel,
            tasks,
            storage,
            faults,
            peers,
        };
        info!(node = %handle.id, client = %handle.client_address, internode = %handle.internode_address, "node serving");
        Ok(handle)
    }
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
    peers: Arc<Peers>,
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

    /// Waits until a task of the node stops by itself (which it should not
    /// before shutdown): the caller should then shut the node down.
    pub async fn stopped(&mut self) {
        self.tasks.join_next().await;
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
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || storage.flush())
            .await
            .expect("flush task")?;
        info!(node = %self.id, "node stopped");
        Ok(())
    }
}

async fn accept_internode(
    endpoint: quinn::Endpoint,
    coordinator: Arc<Coordinator>,
    members: Vec<NodeId>,
    max_in_flight: usize,
    cancel: CancellationToken,
) {
    let serve_cancel = cancel.clone();
    let serve = move |connection: quinn::Connection| {
        let (coordinator, cancel) = (coordinator.clone(), serve_cancel.clone());
        let peer = tls::peer_node_id(&connection);
        let is_member = matches!(&peer, Ok(peer) if members.contains(peer));
        async move {
            let peer = match peer {
                Ok(peer) if is_member => peer,
                outcome => {
                    warn!(?outcome, remote = %connection.remote_address(), "refusing a node that is not a member");
                    connection.close(1u32.into(), b"not a member of this cluster");
                    return;
                }
            };
            info!(peer = %peer, "peer connected");
            let handle = move |request, deadline| {
                coordinator
                    .clone()
                    .serve_peer(peer.clone(), request, deadline)
            };
            transport::serve_connection(connection, max_in_flight, handle, cancel).await;
        }
    };
    transport::accept_connections(endpoint, "internode", serve, cancel).await;
}

async fn accept_clients(
    endpoint: quinn::Endpoint,
    coordinator: Arc<Coordinator>,
    max_in_flight: usize,
    cancel: CancellationToken,
) {
    let serve_cancel = cancel.clone();
    let serve = move |connection: quinn::Connection| {
        let coordinator = coordinator.clone();
        let handle = move |request: ClientRequest, deadline| {
            coordinator.clone().serve_client(request, deadline, false)
        };
        transport::serve_connection(connection, max_in_flight, handle, serve_cancel.clone())
    };
    transport::accept_connections(endpoint, "client", serve, cancel).await;
}

/// Runs background jobs (read repairs), a bounded number at a time.
async fn run_background(mut jobs: mpsc::Receiver<BackgroundJob>, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(BACKGROUND_CONCURRENCY));
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
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
