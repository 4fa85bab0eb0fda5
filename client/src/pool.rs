//! The client's connections, and the nodes it keeps off for a while: a
//! pool shared with the dials that finish in the background.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringdb_proto::{ClientReply, ClientRequest, MAX_FRAME_BYTES};

use crate::client::SERVER_NAME;
use crate::transport::Multiplexed;

pub(crate) type Connection = Multiplexed<ClientRequest, ClientReply>;

/// How long a node that could not be reached is tried last.
const FAILED_NODE_BACKOFF: Duration = Duration::from_secs(30);

/// Why a node could not be reached.
#[derive(Clone, Debug)]
pub(crate) struct DialFailure {
    /// What went wrong, for the caller.
    pub reason: String,
    /// The node's certificate is not signed by the client's CA.
    pub untrusted: bool,
}

impl DialFailure {
    fn new(reason: impl ToString) -> DialFailure {
        DialFailure {
            reason: reason.to_string(),
            untrusted: false,
        }
    }
}

impl std::fmt::Display for DialFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Whether a handshake failed because this side found the node's
/// certificate not signed by its CA: rustls sends the TLS alert that says
/// why, which QUIC carries as a crypto error (0x100 + the alert). An
/// issuer this CA does not name is `unknown_ca`; one it names but whose
/// key did not sign (another cluster's CA of the same name, as every
/// `ringdb dev` CA is) is a bad signature, `decrypt_error`.
fn refused_certificate(error: &quinn::ConnectionError) -> bool {
    const UNKNOWN_CA: u8 = 48;
    const DECRYPT_ERROR: u8 = 51;
    let quinn::ConnectionError::TransportError(error) = error else {
        return false;
    };
    [UNKNOWN_CA, DECRYPT_ERROR]
        .into_iter()
        .any(|alert| error.code == quinn::TransportErrorCode::crypto(alert))
}

/// How to open a connection to a node.
#[derive(Clone)]
pub(crate) struct Dialer {
    pub endpoint: quinn::Endpoint,
    pub quic: quinn::ClientConfig,
    pub connect_timeout: Duration,
}

impl Dialer {
    pub async fn open(&self, address: SocketAddr) -> Result<Arc<Connection>, DialFailure> {
        let connecting = self
            .endpoint
            .connect_with(self.quic.clone(), address, SERVER_NAME)
            .map_err(DialFailure::new)?;
        let connection = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| {
                DialFailure::new(format!("no handshake within {:?}", self.connect_timeout))
            })?
            .map_err(|error| DialFailure {
                untrusted: refused_certificate(&error),
                reason: error.to_string(),
            })?;
        let multiplexed = Multiplexed::open(connection, MAX_FRAME_BYTES)
            .await
            .map_err(DialFailure::new)?;
        Ok(Arc::new(multiplexed))
    }
}

#[derive(Default)]
pub(crate) struct Pool {
    connections: Mutex<HashMap<SocketAddr, Arc<Connection>>>,
    /// Nodes that could not be reached, or left a request unanswered: when,
    /// and why.
    failed: Mutex<HashMap<SocketAddr, (Instant, DialFailure)>>,
    /// Nodes being dialled in the background.
    dialing: Mutex<HashSet<SocketAddr>>,
    /// One dial at a time per node: requests that need the same node wait
    /// for its handshake rather than each open a connection of their own.
    turns: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<()>>>>,
}

impl Pool {
    /// The connection to `address`: the open one, or a new one (dialled
    /// once however many requests need it at the same time).
    pub async fn connect(
        &self,
        dialer: &Dialer,
        address: SocketAddr,
    ) -> Result<Arc<Connection>, DialFailure> {
        if let Some(connection) = self.open_connection(address) {
            return Ok(connection);
        }
        let turn = self
            .turns
            .lock()
            .expect("dial turns")
            .entry(address)
            .or_default()
            .clone();
        let asked = Instant::now();
        let _turn = turn.lock().await;
        if let Some(connection) = self.open_connection(address) {
            return Ok(connection);
        }
        // The dial this request waited for failed: its answer is this one's.
        if let Some((at, reason)) = self.failed.lock().expect("failed nodes").get(&address)
            && *at >= asked
        {
            return Err(reason.clone());
        }
        match dialer.open(address).await {
            Ok(connection) => Ok(self.connected(address, connection)),
            Err(failure) => {
                self.set_aside_for(address, failure.clone());
                Err(failure)
            }
        }
    }

    /// The open connection to `address`, if any.
    pub fn open_connection(&self, address: SocketAddr) -> Option<Arc<Connection>> {
        self.connections
            .lock()
            .expect("connections")
            .get(&address)
            .filter(|connection| !connection.is_closed())
            .cloned()
    }

    /// Keeps a new connection to `address` (or the one another dial opened
    /// first) and brings the node back to the front.
    pub fn connected(&self, address: SocketAddr, connection: Arc<Connection>) -> Arc<Connection> {
        self.failed.lock().expect("failed nodes").remove(&address);
        let mut connections = self.connections.lock().expect("connections");
        connections
            .entry(address)
            .and_modify(|existing| {
                if existing.is_closed() {
                    *existing = connection.clone();
                }
            })
            .or_insert(connection)
            .clone()
    }

    /// Drops the connection to `address` and sets the node aside.
    pub fn forget(&self, address: SocketAddr, reason: &str) {
        self.connections
            .lock()
            .expect("connections")
            .remove(&address);
        self.set_aside(address, reason);
    }

    /// Tries `address` last for [`FAILED_NODE_BACKOFF`], or until a new
    /// connection to it opens.
    pub fn set_aside(&self, address: SocketAddr, reason: &str) {
        self.set_aside_for(address, DialFailure::new(reason));
    }

    fn set_aside_for(&self, address: SocketAddr, failure: DialFailure) {
        self.failed
            .lock()
            .expect("failed nodes")
            .insert(address, (Instant::now(), failure));
    }

    /// Whether `address` goes last: it recently failed, or its connection
    /// is still being dialled in the background.
    pub fn goes_last(&self, address: &SocketAddr) -> bool {
        let failed = self
            .failed
            .lock()
            .expect("failed nodes")
            .get(address)
            .is_some_and(|(at, _)| at.elapsed() < FAILED_NODE_BACKOFF);
        failed || self.dialing.lock().expect("dialing").contains(address)
    }

    /// Finishes dialling `address` in the background (a request went to a
    /// node that answered sooner): its connection is there for the next
    /// request, and the node goes last until then. One dial per node.
    pub fn dial_in_background(self: &Arc<Self>, dialer: &Dialer, address: SocketAddr) {
        if !self.dialing.lock().expect("dialing").insert(address) {
            return;
        }
        let (pool, dialer) = (self.clone(), dialer.clone());
        tokio::spawn(async move {
            // A failure sets the node aside.
            let _ = pool.connect(&dialer, address).await;
            pool.dialing.lock().expect("dialing").remove(&address);
        });
    }
}
