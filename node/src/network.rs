//! The peer network seam: how a node calls its peers and is called.
//!
//! The node's logic sends requests to peers by node id, with a deadline,
//! learns whether a peer's connection is up, and hands the requests that
//! reach it to one [`Incoming`] dispatcher. It never touches QUIC itself:
//! [`Network`] is implemented by QUIC in production
//! ([`QuicNetwork`](crate::transport::QuicNetwork), one long-lived
//! connection per peer) and by the simulator's network of delays, losses,
//! duplicates and partitions. [`Faulty`] decorates either with the fault
//! hook that tests and the lab switch on: per peer, a chance of dropping a
//! message, a delay before sending it plus a jitter (which reorders
//! messages), and a chance of sending it twice.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ringdb_proto::{
    ClientReply, ClientRequest, ClusterSettings, PeerReply, PeerRequest, RequestError,
};
use ringdb_ring::NodeId;
use ringdb_wire::multiplex::CallError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::world::Random;

/// A boxed future that can move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A seed's node id and the connection dialled to it.
pub type DialledSeed = (NodeId, Arc<dyn Dialled>);

/// What a node tells every peer it connects to (the first message on
/// every internode connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// This life of the node (see `known_peers.rs`).
    pub generation: u64,
    /// The settings every node of the cluster must share.
    pub settings: ClusterSettings,
}

/// The node, as the network sees it: where incoming requests go.
pub trait Incoming: Send + Sync + 'static {
    /// Answers a request from peer `from` by `deadline`.
    fn peer_request(
        self: Arc<Self>,
        from: NodeId,
        request: PeerRequest,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<PeerReply, RequestError>>;

    /// Answers a client's request by `deadline`.
    fn client_request(
        self: Arc<Self>,
        request: ClientRequest,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<ClientReply, RequestError>>;

    /// A connection on `port` (`client` or `internode`) opened (`open`) or
    /// closed, for the metrics.
    fn connection(&self, port: &'static str, open: bool) {
        let _ = (port, open);
    }
}

/// A request sent to a peer, waiting for its answer.
pub struct PeerCall(BoxFuture<'static, Result<PeerReply, CallError>>);

impl PeerCall {
    /// A call whose answer `answer` resolves to (the request is on its way).
    pub fn new(
        answer: impl Future<Output = Result<PeerReply, CallError>> + Send + 'static,
    ) -> PeerCall {
        PeerCall(Box::pin(answer))
    }

    /// A call that will never be answered (its message was lost).
    pub fn lost() -> PeerCall {
        PeerCall::new(std::future::pending())
    }

    /// Waits until `deadline` for the answer.
    pub async fn answer(self, deadline: Instant) -> Result<PeerReply, CallError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout_at(deadline, self.0).await {
            Ok(answer) => answer,
            Err(_) => Err(CallError::Timeout(wait)),
        }
    }
}

/// A connection dialled once, to a node known only by address (a seed).
pub trait Dialled: Send + Sync {
    /// Calls the node, waiting up to `timeout` for the answer.
    fn call(
        &self,
        request: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<PeerReply, CallError>>;
}

/// Why a connection to a peer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The peer refused this node: their cluster settings differ
    /// ([`RequestError::SettingsMismatch`]). Retrying will not help.
    #[error(transparent)]
    Refused(RequestError),
    /// Anything else: unreachable, a failed handshake, a certificate for
    /// another node.
    #[error("{0}")]
    Failed(String),
}

/// The peer network (see the module docs).
pub trait Network: Send + Sync + 'static {
    /// Starts handing incoming requests to `node`, which is `hello`;
    /// returns the tasks that do so, to run until `cancel`.
    fn serve(
        &self,
        node: Arc<dyn Incoming>,
        hello: Hello,
        cancel: CancellationToken,
    ) -> Vec<BoxFuture<'static, ()>>;

    /// Sends `request` to `peer` with the time left until `deadline`.
    fn send(
        &self,
        peer: &NodeId,
        request: PeerRequest,
        deadline: Instant,
    ) -> Result<PeerCall, CallError>;

    /// Whether there is an open connection to `peer`.
    fn is_alive(&self, peer: &NodeId) -> bool;

    /// Waits up to `within` for a connection to `peer`, dialling at once
    /// if it is between attempts; returns whether one is open.
    fn wait_connected<'a>(&'a self, peer: &'a NodeId, within: Duration) -> BoxFuture<'a, bool>;

    /// Has `peer`'s connection dialled at once if it is between attempts.
    fn redial_now(&self, peer: &NodeId);

    /// How far `peer`'s wall clock is ahead of this node's, in
    /// microseconds, as measured when the connection opened.
    fn clock_offset_micros(&self, peer: &NodeId) -> Option<i64>;

    /// Makes sure `peer` at `address` is connected: returns the task that
    /// keeps its connection up when there was none (a new peer, or one
    /// that moved), to run until `cancel` or [`Network::forget`].
    fn ensure(
        &self,
        peer: &NodeId,
        address: SocketAddr,
        cancel: &CancellationToken,
    ) -> Option<BoxFuture<'static, ()>>;

    /// Stops connecting to `peer` (it left or was removed).
    fn forget(&self, peer: &NodeId);

    /// Records that `peer` said hello with `generation`: a connection to an
    /// earlier life of it is closed, to be redialled at once.
    fn observe_generation(&self, peer: &NodeId, generation: u64);

    /// Dials `address` once, for a node known only by address (a seed):
    /// the node id it proves, and the connection.
    fn dial_address(&self, address: SocketAddr) -> BoxFuture<'_, Result<DialledSeed, DialError>>;
}

/// What happens to messages sent to one peer while a fault is set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fault {
    /// The chance, from 0 to 1, that a message is dropped (never sent; the
    /// caller waits for its timeout, as for a message lost on the network).
    pub drop_probability: f64,
    /// How long every message that is not dropped waits before it is sent.
    pub delay: Duration,
    /// A further wait drawn from zero to this for each message, so that
    /// messages overtake each other.
    pub jitter: Duration,
    /// The chance, from 0 to 1, that a message is sent twice (the second
    /// copy's answer is not waited for).
    pub duplicate_probability: f64,
}

/// The fault hook: per peer, the fault applied to messages sent to it.
#[derive(Default)]
pub struct Faults {
    rules: RwLock<HashMap<NodeId, Fault>>,
}

impl Faults {
    /// Applies exactly `faults`, each to its peer, and none to the others.
    pub fn replace(&self, faults: HashMap<NodeId, Fault>) {
        *self.rules.write().expect("faults") = faults;
    }

    fn get(&self, peer: &NodeId) -> Option<Fault> {
        self.rules.read().expect("faults").get(peer).copied()
    }
}

/// A network with the fault hook on its outgoing messages.
pub struct Faulty {
    inner: Arc<dyn Network>,
    faults: Arc<Faults>,
    random: Arc<Random>,
}

impl Faulty {
    /// `inner`, with `faults` applied to what it sends (dice from `random`).
    pub fn new(inner: Arc<dyn Network>, faults: Arc<Faults>, random: Arc<Random>) -> Faulty {
        Faulty {
            inner,
            faults,
            random,
        }
    }
}

impl Network for Faulty {
    fn serve(
        &self,
        node: Arc<dyn Incoming>,
        hello: Hello,
        cancel: CancellationToken,
    ) -> Vec<BoxFuture<'static, ()>> {
        self.inner.serve(node, hello, cancel)
    }

    fn send(
        &self,
        peer: &NodeId,
        request: PeerRequest,
        deadline: Instant,
    ) -> Result<PeerCall, CallError> {
        let Some(fault) = self.faults.get(peer) else {
            return self.inner.send(peer, request, deadline);
        };
        if !self.inner.is_alive(peer) {
            return self.inner.send(peer, request, deadline);
        }
        if self.random.chance(fault.drop_probability) {
            return Ok(PeerCall::lost());
        }
        let jitter = match fault.jitter.as_micros() as u64 {
            0 => Duration::ZERO,
            most => Duration::from_micros(self.random.next_u64() % (most + 1)),
        };
        let wait = fault.delay + jitter;
        let twice = self.random.chance(fault.duplicate_probability);
        if wait.is_zero() && !twice {
            return self.inner.send(peer, request, deadline);
        }
        let (inner, peer) = (self.inner.clone(), peer.clone());
        Ok(PeerCall::new(async move {
            tokio::time::sleep(wait).await;
            let copy = twice.then(|| request.clone());
            let call = inner.send(&peer, request, deadline)?;
            // The copy goes only once the original is on its way (a copy
            // sent when the original was refused would be applied while
            // the caller hears "not sent"); its answer is dropped.
            if let Some(copy) = copy {
                let _ = inner.send(&peer, copy, deadline);
            }
            call.answer(deadline).await
        }))
    }

    fn is_alive(&self, peer: &NodeId) -> bool {
        self.inner.is_alive(peer)
    }

    fn wait_connected<'a>(&'a self, peer: &'a NodeId, within: Duration) -> BoxFuture<'a, bool> {
        self.inner.wait_connected(peer, within)
    }

    fn redial_now(&self, peer: &NodeId) {
        self.inner.redial_now(peer);
    }

    fn clock_offset_micros(&self, peer: &NodeId) -> Option<i64> {
        self.inner.clock_offset_micros(peer)
    }

    fn ensure(
        &self,
        peer: &NodeId,
        address: SocketAddr,
        cancel: &CancellationToken,
    ) -> Option<BoxFuture<'static, ()>> {
        self.inner.ensure(peer, address, cancel)
    }

    fn forget(&self, peer: &NodeId) {
        self.inner.forget(peer);
    }

    fn observe_generation(&self, peer: &NodeId, generation: u64) {
        self.inner.observe_generation(peer, generation);
    }

    fn dial_address(&self, address: SocketAddr) -> BoxFuture<'_, Result<DialledSeed, DialError>> {
        self.inner.dial_address(address)
    }
}
