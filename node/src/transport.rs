//! The QUIC transport: serving requests on multiplexed streams, and one
//! long-lived connection to each peer.
//!
//! A node listens on two UDP ports, as Cassandra does (storage port and
//! native port): the **internode** endpoint requires a client certificate
//! signed by the cluster CA (mutual TLS) and learns the peer's node id from
//! it; the **client** endpoint presents the node's certificate and asks for
//! none. Keeping them apart means a client can never speak the internode
//! protocol, whatever it presents.
//!
//! Both serve the same way ([`serve_connection`]): each stream the peer opens
//! carries a sequence of request frames; every request runs as its own task
//! (so a slow one does not hold up the stream) and its answer is queued on
//! the stream's writer, which batches. A connection may have at most
//! `max_in_flight_per_connection` requests in progress; beyond that the
//! answer is `Overloaded`, at once.
//!
//! Outgoing, [`Peers`] keeps one connection per peer the membership knows,
//! redialled by a task per peer whenever it drops (the peer restarted). A
//! coordinator counts a replica alive when gossip's failure detector says so
//! *and* this connection is up. QUIC keep-alives every
//! [`KEEP_ALIVE`] and an idle timeout of [`PEER_IDLE_TIMEOUT`] notice a peer
//! that died without closing (kill -9, a cut cable).
//!
//! [`QuicNetwork`] is this transport as the node's [`Network`]: the node's
//! logic sees only that trait (the simulator supplies another), and the
//! fault hook that tests and the lab switch on decorates it
//! ([`crate::network::Faulty`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use ringdb_proto::{
    ClientRequest, MAX_FRAME_BYTES, PeerReply, PeerRequest, Request, RequestError, Response,
    encode_frame,
};
use ringdb_ring::NodeId;
use ringdb_wire::multiplex::{
    CallError, FrameReader, Multiplexed, ReadFrameError, STREAM_QUEUE_FRAMES, write_frames,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::network::{
    BoxFuture, DialError, Dialled, DialledSeed, Hello, Incoming, Network, PeerCall,
};
use crate::world::Clock;

/// Interval of QUIC keep-alive packets between nodes.
pub const KEEP_ALIVE: Duration = Duration::from_millis(200);
/// A peer silent this long is disconnected (and so, for now, down).
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long past its deadline a request may run to send its own timeout answer.
const ANSWER_GRACE: Duration = Duration::from_millis(100);
/// How long a dial may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Redial backoff: from the first to the longest wait between attempts.
const REDIAL_FIRST: Duration = Duration::from_millis(50);
const REDIAL_LONGEST: Duration = Duration::from_millis(500);

/// The QUIC transport parameters of internode connections.
pub fn internode_transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(PEER_IDLE_TIMEOUT).expect("idle timeout fits"),
    ));
    Arc::new(transport)
}

/// A multiplexed connection to a peer.
pub type PeerConnection = Multiplexed<PeerRequest, PeerReply>;

/// An open connection to a peer, the peer's generation on it, and how far
/// the peer's wall clock was ahead of this node's when it answered hello.
struct Link {
    connection: Arc<PeerConnection>,
    generation: u64,
    clock_offset_micros: Option<i64>,
}

/// What a peer said in answer to hello.
struct Greeting {
    generation: u64,
    clock_offset_micros: Option<i64>,
    node: NodeId,
}

/// One peer: where it is, and the connection to it (when up).
struct Slot {
    address: SocketAddr,
    link: RwLock<Option<Link>>,
    /// Whether `link` holds a connection, for those waiting for one.
    connected: tokio::sync::watch::Sender<bool>,
    /// Cuts the redial task's backoff short: someone needs the peer now.
    redial_now: tokio::sync::Notify,
    /// Stops this peer's redial task (the peer left, or moved).
    cancel: CancellationToken,
}

/// The outgoing connections to every known peer, kept up by one task each.
/// Peers come and go with the membership ([`Peers::ensure`],
/// [`Peers::forget`]).
pub struct Peers {
    /// What this node says on connecting (set when it starts serving).
    hello: OnceLock<Hello>,
    slots: RwLock<HashMap<NodeId, Arc<Slot>>>,
    endpoint: quinn::Endpoint,
    dial: quinn::ClientConfig,
}

impl Peers {
    /// No peers yet; connections are dialled from `endpoint` with `dial`.
    pub fn new(endpoint: quinn::Endpoint, dial: quinn::ClientConfig) -> Peers {
        Peers {
            hello: OnceLock::new(),
            slots: RwLock::new(HashMap::new()),
            endpoint,
            dial,
        }
    }

    /// Whether there is an open connection to `peer`.
    pub fn is_alive(&self, peer: &NodeId) -> bool {
        self.connection(peer).is_some()
    }

    fn slot(&self, peer: &NodeId) -> Option<Arc<Slot>> {
        self.slots.read().expect("peer slots").get(peer).cloned()
    }

    fn connection(&self, peer: &NodeId) -> Option<Arc<PeerConnection>> {
        let slot = self.slot(peer)?;
        let link = slot.link.read().expect("peer link");
        link.as_ref()
            .map(|link| &link.connection)
            .filter(|c| !c.is_closed())
            .cloned()
    }

    /// Makes sure `peer` at `address` has a connection task: returns the
    /// task to run when there was none (a new peer, or one that moved), to
    /// be stopped by `cancel` or [`Peers::forget`].
    pub fn ensure(
        self: &Arc<Self>,
        peer: &NodeId,
        address: SocketAddr,
        cancel: &CancellationToken,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let mut slots = self.slots.write().expect("peer slots");
        if let Some(slot) = slots.get(peer) {
            if slot.address == address {
                return None;
            }
            info!(peer = %peer, old = %slot.address, new = %address, "peer moved");
            slot.cancel.cancel();
        }
        let slot = Arc::new(Slot {
            address,
            link: RwLock::new(None),
            connected: tokio::sync::watch::Sender::new(false),
            redial_now: tokio::sync::Notify::new(),
            cancel: cancel.child_token(),
        });
        slots.insert(peer.clone(), slot.clone());
        Some(self.clone().run(peer.clone(), slot))
    }

    /// Waits up to `within` for a connection to `peer`, dialling at once
    /// if its task is between attempts; returns whether one is open. For a
    /// peer the failure detector counts alive whose connection is being
    /// remade (this node was paused, say): better a short wait than a
    /// refusal.
    pub async fn wait_connected(&self, peer: &NodeId, within: Duration) -> bool {
        if self.is_alive(peer) {
            return true;
        }
        let Some(slot) = self.slot(peer) else {
            return false;
        };
        slot.redial_now.notify_one();
        if within.is_zero() {
            return false;
        }
        let mut connected = slot.connected.subscribe();
        let waited = tokio::time::timeout(within, connected.wait_for(|up| *up)).await;
        matches!(waited, Ok(Ok(_))) && self.is_alive(peer)
    }

    /// Has `peer`'s connection task dial at once if it is between
    /// attempts (see [`Peers::wait_connected`]).
    pub fn redial_now(&self, peer: &NodeId) {
        if let Some(slot) = self.slot(peer) {
            slot.redial_now.notify_one();
        }
    }

    /// How far `peer`'s wall clock is ahead of this node's (negative:
    /// behind), in microseconds, as measured when the connection to it
    /// opened; `None` when not connected or the peer did not say.
    pub fn clock_offset_micros(&self, peer: &NodeId) -> Option<i64> {
        let slot = self.slot(peer)?;
        let link = slot.link.read().expect("peer link");
        link.as_ref()
            .filter(|link| !link.connection.is_closed())
            .and_then(|link| link.clock_offset_micros)
    }

    /// Stops connecting to `peer` (it left or was removed).
    pub fn forget(&self, peer: &NodeId) {
        if let Some(slot) = self.slots.write().expect("peer slots").remove(peer) {
            slot.cancel.cancel();
        }
    }

    /// Records that `peer` said hello with `generation` on a connection of
    /// its own: if ours to it was made to an earlier life of the peer, it is
    /// dead (the peer restarted) and is closed, to be redialled at once.
    pub fn observe_generation(&self, peer: &NodeId, generation: u64) {
        let Some(slot) = self.slot(peer) else {
            return;
        };
        let link = slot.link.read().expect("peer link");
        if let Some(link) = link.as_ref()
            && link.generation != generation
        {
            info!(peer = %peer, "peer restarted; redialling");
            link.connection
                .connection()
                .close(2u32.into(), b"peer restarted");
        }
    }

    /// Sends `request` to `peer` with the time left until `deadline`.
    pub fn send(
        &self,
        peer: &NodeId,
        request: PeerRequest,
        deadline: Instant,
    ) -> Result<PeerCall, CallError> {
        let connection = self.connection(peer).ok_or_else(|| CallError::NotSent {
            reason: format!("no connection to {peer}"),
        })?;
        let budget = deadline.saturating_duration_since(Instant::now());
        let pending = connection.send(request, budget)?;
        Ok(PeerCall::new(pending.wait(budget)))
    }

    /// Dials `address` once, for a node known only by address (a seed):
    /// returns the node id its certificate names and the connection, which
    /// closes when dropped.
    pub async fn dial_address(
        &self,
        address: SocketAddr,
    ) -> Result<(NodeId, Arc<PeerConnection>), DialError> {
        let (connection, greeting) = self.dial(address, None).await?;
        Ok((greeting.node, Arc::new(connection)))
    }

    async fn dial(
        &self,
        address: SocketAddr,
        expected: Option<&NodeId>,
    ) -> Result<(PeerConnection, Greeting), DialError> {
        let Some(hello) = self.hello.get() else {
            return Err(DialError::Failed("this node is not serving yet".into()));
        };
        let hello = PeerRequest::Hello {
            generation: hello.generation,
            settings: Some(hello.settings.clone()),
        };
        dial(&self.endpoint, &self.dial, address, expected, hello).await
    }

    /// Keeps a connection to `peer` open until its slot is cancelled.
    async fn run(self: Arc<Self>, peer: NodeId, slot: Arc<Slot>) {
        let mut backoff = REDIAL_FIRST;
        let mut was_up = false;
        let cancel = slot.cancel.clone();
        while !cancel.is_cancelled() {
            let dialled = self.dial(slot.address, Some(&peer));
            let outcome = tokio::select! {
                outcome = dialled => outcome,
                () = cancel.cancelled() => break,
            };
            match outcome {
                Ok((connection, greeting)) => {
                    let offset_ms = greeting.clock_offset_micros.map(|micros| micros / 1000);
                    match offset_ms {
                        Some(ms) if ms.unsigned_abs() >= CLOCK_WARNING.as_millis() as u64 => warn!(
                            peer = %peer, offset_ms = ms,
                            "the peer's clock is far from this node's: keep clocks in step (NTP); \
                             versions and tombstone grace use wall time"
                        ),
                        _ => {}
                    }
                    info!(peer = %peer, address = %slot.address, ?offset_ms, "connected to peer");
                    backoff = REDIAL_FIRST;
                    was_up = true;
                    let quic = connection.connection().clone();
                    *slot.link.write().expect("peer link") = Some(Link {
                        connection: Arc::new(connection),
                        generation: greeting.generation,
                        clock_offset_micros: greeting.clock_offset_micros,
                    });
                    slot.connected.send_replace(true);
                    tokio::select! {
                        reason = quic.closed() => info!(peer = %peer, %reason, "peer connection lost"),
                        () = cancel.cancelled() => {}
                    }
                    *slot.link.write().expect("peer link") = None;
                    slot.connected.send_replace(false);
                }
                Err(error) => {
                    if let DialError::Refused(refusal) = &error {
                        error!(peer = %peer, %refusal, "the peer refuses this node: its cluster settings differ");
                    } else if was_up {
                        debug!(peer = %peer, %error, "cannot reach peer");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = slot.redial_now.notified() => {}
                        () = cancel.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(REDIAL_LONGEST);
                }
            }
        }
    }
}

/// A peer whose clock is this far from this node's is reported.
pub const CLOCK_WARNING: Duration = Duration::from_secs(2);

/// Dials `address`, checks that the certificate names `expected` (when
/// given), and says `hello`. Returns the connection, the peer's generation
/// and its node id.
async fn dial(
    endpoint: &quinn::Endpoint,
    config: &quinn::ClientConfig,
    address: SocketAddr,
    expected: Option<&NodeId>,
    hello: PeerRequest,
) -> Result<(PeerConnection, Greeting), DialError> {
    let failed = |e: &dyn std::fmt::Display| DialError::Failed(e.to_string());
    let connecting = endpoint
        .connect_with(config.clone(), address, "ringdb-node")
        .map_err(|e| failed(&e))?;
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| failed(&"handshake timed out"))?
        .map_err(|e| failed(&e))?;
    let peer = crate::tls::peer_node_id(&connection).map_err(|e| failed(&e))?;
    if let Some(expected) = expected
        && &peer != expected
    {
        connection.close(1u32.into(), b"unexpected node");
        return Err(failed(&format!("{address} is {peer}, not {expected}")));
    }
    let connection = Multiplexed::open(connection, MAX_FRAME_BYTES)
        .await
        .map_err(|e| failed(&e))?;
    // The connection counts only once the peer has answered on it. Its
    // clock is compared with the middle of the round trip.
    let (sent, sent_micros) = (Instant::now(), crate::world::SystemClock.now_micros());
    match connection.call(hello, CONNECT_TIMEOUT).await {
        Ok(PeerReply::Hello {
            generation,
            wall_micros: theirs,
        }) => {
            let half_trip = (sent.elapsed().as_micros() / 2) as i64;
            let greeting = Greeting {
                generation,
                clock_offset_micros: theirs
                    .map(|t| t.saturating_sub(sent_micros.saturating_add(half_trip))),
                node: peer,
            };
            Ok((connection, greeting))
        }
        Ok(other) => Err(failed(&format!("unexpected answer to hello: {other:?}"))),
        Err(CallError::Remote(refusal @ RequestError::SettingsMismatch { .. })) => {
            Err(DialError::Refused(refusal))
        }
        Err(error) => Err(failed(&error)),
    }
}

/// Accepts connections on `endpoint` until `cancel`: each handshake runs in
/// the connection's own task (a slow one does not hold up the others), which
/// then hands the connection to `serve`. `what` names the port in logs.
pub async fn accept_connections<S, F>(
    endpoint: quinn::Endpoint,
    what: &'static str,
    serve: S,
    cancel: CancellationToken,
) where
    S: Fn(quinn::Connection) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = cancel.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        let serve = serve.clone();
        connections.spawn(async move {
            match incoming.await {
                Ok(connection) => serve(connection).await,
                // A client that dialled several nodes at once and kept the
                // first to answer closes the others mid-handshake (QUIC
                // sends that close as APPLICATION_ERROR): routine. Anything
                // else (a certificate refused, say) is worth a look.
                Err(quinn::ConnectionError::ConnectionClosed(close))
                    if close.error_code == quinn::TransportErrorCode::APPLICATION_ERROR =>
                {
                    debug!(port = what, "a handshake was given up by its peer");
                }
                Err(error) => warn!(%error, port = what, "handshake failed"),
            }
        });
    }
    connections.shutdown().await;
}

/// Serves the requests of one connection until it closes or `cancel`:
/// every stream the peer opens is a sequence of requests answered by
/// `handle(request, deadline)`.
pub async fn serve_connection<Req, Resp, H, F>(
    connection: quinn::Connection,
    max_in_flight: usize,
    handle: H,
    cancel: CancellationToken,
) where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    H: Fn(Req, Instant) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Resp, RequestError>> + Send + 'static,
{
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            accepted = connection.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    streams.spawn(serve_stream(send, recv, in_flight.clone(), handle.clone(), cancel.clone()));
                }
                Err(reason) => {
                    debug!(remote = %connection.remote_address(), %reason, "connection closed");
                    break;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            () = cancel.cancelled() => {
                connection.close(0u32.into(), b"node shutting down");
                break;
            }
        }
    }
    streams.shutdown().await;
}

async fn serve_stream<Req, Resp, H, F>(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    in_flight: Arc<Semaphore>,
    handle: H,
    cancel: CancellationToken,
) where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    H: Fn(Req, Instant) -> F,
    F: Future<Output = Result<Resp, RequestError>> + Send + 'static,
{
    let (queue, frames) = mpsc::channel(STREAM_QUEUE_FRAMES);
    let writer = tokio::spawn(write_frames(send, frames));
    let mut reader = FrameReader::new(recv, MAX_FRAME_BYTES);
    let mut requests = JoinSet::new();
    loop {
        let next = tokio::select! {
            next = reader.next::<Request<Req>>() => next,
            Some(_) = requests.join_next(), if !requests.is_empty() => continue,
            () = cancel.cancelled() => break,
        };
        let request = match read_request::<Req, Resp>(next) {
            Ok(request) => request,
            Err(unread) => {
                if let Some(frame) = unread.answer {
                    enqueue(&queue, frame).await;
                }
                if unread.stream_goes_on {
                    continue;
                }
                break;
            }
        };
        let id = request.id;
        let deadline = Instant::now() + Duration::from_millis(u64::from(request.timeout_ms));
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            let answer = Response::<Resp> {
                id,
                body: Err(RequestError::overloaded(
                    "too many requests in progress on this connection",
                )),
            };
            enqueue(&queue, response_frame(answer)).await;
            continue;
        };
        let work = handle(request.body, deadline);
        let queue = queue.clone();
        requests.spawn(async move {
            // Past the deadline nobody waits for the answer: stop working.
            // The handler answers `Timeout` itself at the deadline; the grace
            // lets that answer out.
            if let Ok(body) = tokio::time::timeout_at(deadline + ANSWER_GRACE, work).await {
                let frame = response_frame(Response { id, body });
                enqueue(&queue, frame).await;
            }
            drop(permit);
        });
    }
    while requests.join_next().await.is_some() {}
    drop(queue);
    // The writer ends once every answer is written; a failed write only
    // means the peer went away.
    let _ = writer.await;
}

/// A request frame that gave no request.
struct Unread {
    /// The answer to send, if any.
    answer: Option<Vec<u8>>,
    /// Whether the stream can be read further.
    stream_goes_on: bool,
}

/// The request read from a stream, or what to answer and whether to read on.
fn read_request<Req, Resp: Serialize>(
    next: Result<Option<Request<Req>>, ReadFrameError>,
) -> Result<Request<Req>, Unread> {
    let refuse = |id, error: &dyn std::fmt::Display| {
        let answer = Response::<Resp> {
            id,
            body: Err(RequestError::invalid(error.to_string())),
        };
        Some(response_frame(answer))
    };
    match next {
        Ok(Some(request)) => Ok(request),
        Ok(None) => Err(Unread {
            answer: None,
            stream_goes_on: false,
        }),
        Err(ReadFrameError::Read(error)) => {
            // The peer went away (closed, reset, timed out): nobody to
            // answer.
            debug!(%error, "request stream ended");
            Err(Unread {
                answer: None,
                stream_goes_on: false,
            })
        }
        Err(ReadFrameError::Message {
            id: Some(id),
            error,
        }) => {
            // A well-framed request whose body does not decode (a key over
            // its limit, an unknown variant): refuse that request alone,
            // with what is wrong; the stream goes on.
            debug!(%error, "undecodable request");
            Err(Unread {
                answer: refuse(id, &error),
                stream_goes_on: true,
            })
        }
        Err(error) => {
            // The stream cannot be read further: say why, then close it.
            warn!(%error, "unreadable request stream");
            Err(Unread {
                answer: refuse(0, &error),
                stream_goes_on: false,
            })
        }
    }
}

async fn enqueue(queue: &mpsc::Sender<Vec<u8>>, frame: Vec<u8>) {
    // A closed queue means the stream is gone: nobody to answer.
    let _ = queue.send(frame).await;
}

/// The frame of a response; a response too large to send becomes an error.
fn response_frame<Resp: Serialize>(response: Response<Resp>) -> Vec<u8> {
    let mut frame = Vec::new();
    if let Err(error) = encode_frame(&response, MAX_FRAME_BYTES, &mut frame) {
        let fallback = Response::<()> {
            id: response.id,
            body: Err(RequestError::invalid(format!(
                "the answer is too large: {error}"
            ))),
        };
        frame.clear();
        encode_frame(&fallback, MAX_FRAME_BYTES, &mut frame).expect("an error always encodes");
    }
    frame
}

/// The production [`Network`]: QUIC, one long-lived connection per peer
/// ([`Peers`]), and the two listening endpoints.
pub struct QuicNetwork {
    peers: Arc<Peers>,
    internode: quinn::Endpoint,
    client: quinn::Endpoint,
    max_in_flight: usize,
}

impl QuicNetwork {
    /// Dials peers from `internode` with `dial`, and serves peers on
    /// `internode` and clients on `client`, at most `max_in_flight`
    /// requests at once per connection.
    pub fn new(
        internode: quinn::Endpoint,
        client: quinn::Endpoint,
        dial: quinn::ClientConfig,
        max_in_flight: usize,
    ) -> QuicNetwork {
        QuicNetwork {
            peers: Arc::new(Peers::new(internode.clone(), dial)),
            internode,
            client,
            max_in_flight,
        }
    }
}

impl Network for QuicNetwork {
    fn serve(
        &self,
        node: Arc<dyn Incoming>,
        hello: Hello,
        cancel: CancellationToken,
    ) -> Vec<BoxFuture<'static, ()>> {
        // Set once: a node serves once.
        let _ = self.peers.hello.set(hello);
        let limit = self.max_in_flight;
        vec![
            Box::pin(accept_internode(
                self.internode.clone(),
                node.clone(),
                limit,
                cancel.clone(),
            )),
            Box::pin(accept_clients(self.client.clone(), node, limit, cancel)),
        ]
    }

    fn send(
        &self,
        peer: &NodeId,
        request: PeerRequest,
        deadline: Instant,
    ) -> Result<PeerCall, CallError> {
        self.peers.send(peer, request, deadline)
    }

    fn is_alive(&self, peer: &NodeId) -> bool {
        self.peers.is_alive(peer)
    }

    fn wait_connected<'a>(&'a self, peer: &'a NodeId, within: Duration) -> BoxFuture<'a, bool> {
        Box::pin(self.peers.wait_connected(peer, within))
    }

    fn redial_now(&self, peer: &NodeId) {
        self.peers.redial_now(peer);
    }

    fn clock_offset_micros(&self, peer: &NodeId) -> Option<i64> {
        self.peers.clock_offset_micros(peer)
    }

    fn ensure(
        &self,
        peer: &NodeId,
        address: SocketAddr,
        cancel: &CancellationToken,
    ) -> Option<BoxFuture<'static, ()>> {
        let run = self.peers.ensure(peer, address, cancel)?;
        Some(Box::pin(run))
    }

    fn forget(&self, peer: &NodeId) {
        self.peers.forget(peer);
    }

    fn observe_generation(&self, peer: &NodeId, generation: u64) {
        self.peers.observe_generation(peer, generation);
    }

    fn dial_address(&self, address: SocketAddr) -> BoxFuture<'_, Result<DialledSeed, DialError>> {
        Box::pin(async move {
            let (node, connection) = self.peers.dial_address(address).await?;
            Ok((node, connection as Arc<dyn Dialled>))
        })
    }
}

impl Dialled for PeerConnection {
    fn call(
        &self,
        request: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<PeerReply, CallError>> {
        Box::pin(Multiplexed::call(self, request, timeout))
    }
}

async fn accept_internode(
    endpoint: quinn::Endpoint,
    node: Arc<dyn Incoming>,
    max_in_flight: usize,
    cancel: CancellationToken,
) {
    let serve_cancel = cancel.clone();
    let serve = move |connection: quinn::Connection| {
        let (node, cancel) = (node.clone(), serve_cancel.clone());
        let peer = crate::tls::peer_node_id(&connection);
        async move {
            // Any node the cluster CA signed may connect: a new node joins
            // this way, and a removed one comes to hear it was removed. What
            // each may ask is the dispatcher's decision.
            let peer = match peer {
                Ok(peer) => peer,
                Err(error) => {
                    warn!(%error, remote = %connection.remote_address(), "refusing a peer without a node id");
                    connection.close(1u32.into(), b"no node id in the certificate");
                    return;
                }
            };
            debug!(peer = %peer, "peer connected");
            let _counted = Counted::new(node.clone(), "internode");
            let handle =
                move |request, deadline| node.clone().peer_request(peer.clone(), request, deadline);
            serve_connection(connection, max_in_flight, handle, cancel).await;
        }
    };
    accept_connections(endpoint, "internode", serve, cancel).await;
}

async fn accept_clients(
    endpoint: quinn::Endpoint,
    node: Arc<dyn Incoming>,
    max_in_flight: usize,
    cancel: CancellationToken,
) {
    let serve_cancel = cancel.clone();
    let serve = move |connection: quinn::Connection| {
        let (node, cancel) = (node.clone(), serve_cancel.clone());
        async move {
            let _counted = Counted::new(node.clone(), "client");
            let handle = move |request: ClientRequest, deadline| {
                node.clone().client_request(request, deadline)
            };
            serve_connection(connection, max_in_flight, handle, cancel).await;
        }
    };
    accept_connections(endpoint, "client", serve, cancel).await;
}

/// A connection being served, counted open until dropped.
struct Counted {
    node: Arc<dyn Incoming>,
    port: &'static str,
}

impl Counted {
    fn new(node: Arc<dyn Incoming>, port: &'static str) -> Counted {
        node.connection(port, true);
        Counted { node, port }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.node.connection(self.port, false);
    }
}
