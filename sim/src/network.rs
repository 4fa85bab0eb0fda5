//! The simulated network: every message between nodes (and from clients to
//! nodes) goes through one [`Net`], which delays it (a base delay plus
//! jitter, so messages overtake each other), loses it, duplicates it, or
//! holds it, as the run's seed and the current faults decide.
//!
//! A node sees the net through a [`NodeNet`], its [`Network`]: one per life
//! of the node, so that a crashed life can neither send nor be reached.
//!
//! Connections are modelled as QUIC's are seen by the node: a peer is
//! connected while both directions of the link are open and the peer runs;
//! once that stops (a partition, a crash, a pause), the connection still
//! looks up for [`IDLE_TIMEOUT`] (QUIC's idle timeout notices a silent peer
//! only then), and messages sent meanwhile are lost.
//!
//! A paused node's tasks keep running in the simulation (one runtime drives
//! every node), but nothing it sends leaves and nothing sent to it arrives
//! until it resumes: to its peers it is exactly a stopped process, and on
//! resuming it receives what was queued for it, as a process does from its
//! socket buffers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringdb_node::network::{
    BoxFuture, DialError, Dialled, DialledSeed, Hello, Incoming, Network, PeerCall,
};
use ringdb_proto::{ClientReply, ClientRequest, PeerReply, PeerRequest};
use ringdb_ring::NodeId;
use ringdb_wire::multiplex::CallError;
use tokio::sync::{oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a connection looks up after its peer went silent.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(1500);

/// How messages travel on every link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkModel {
    /// The shortest one-way delay.
    pub delay: Duration,
    /// Up to this much more, uniformly (messages overtake each other).
    pub jitter: Duration,
    /// The chance a message is lost.
    pub loss: f64,
    /// The chance a message arrives twice.
    pub duplicate: f64,
}

impl Default for LinkModel {
    fn default() -> LinkModel {
        LinkModel {
            delay: Duration::from_micros(200),
            jitter: Duration::from_millis(2),
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// What the net did, for the run's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Messages sent (requests and answers).
    pub sent: u64,
    /// Lost to loss or a cut link.
    pub lost: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Held while their node was paused.
    pub held: u64,
}

/// One node as the net knows it.
struct Host {
    address: SocketAddr,
    /// The node's dispatcher, while a life of it serves.
    incoming: Option<Arc<dyn Incoming>>,
    /// Its current life (bumped at every start).
    life: u64,
    /// Tasks handling requests that reached it: aborted when it crashes.
    handling: Vec<AbortHandle>,
    /// True while paused; messages to and from it wait for false.
    paused: watch::Sender<bool>,
    /// Its wall clock's offset from true time, for clock offsets.
    clock_offset_micros: i64,
}

struct State {
    hosts: BTreeMap<NodeId, Host>,
    /// Directed links cut: messages from `.0` to `.1` are lost.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// When each directed connection stopped being reachable.
    silent_since: BTreeMap<(NodeId, NodeId), Instant>,
    model: LinkModel,
    rng: StdRng,
    counters: NetCounters,
}

/// The simulated network of a run.
pub struct Net {
    state: Mutex<State>,
}

impl Net {
    /// An empty network whose dice are seeded by `seed`.
    pub fn new(seed: u64, model: LinkModel) -> Arc<Net> {
        Arc::new(Net {
            state: Mutex::new(State {
                hosts: BTreeMap::new(),
                cut: BTreeSet::new(),
                silent_since: BTreeMap::new(),
                model,
                rng: StdRng::seed_from_u64(seed),
                counters: NetCounters::default(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("net")
    }

    /// Adds `node` at `address` (not yet serving).
    pub fn add_host(&self, node: &NodeId, address: SocketAddr) {
        self.state().hosts.insert(
            node.clone(),
            Host {
                address,
                incoming: None,
                life: 0,
                handling: Vec::new(),
                paused: watch::Sender::new(false),
                clock_offset_micros: 0,
            },
        );
    }

    /// A new life of `node`: its network, for [`ringdb_node::World`].
    pub fn attach(self: &Arc<Self>, node: &NodeId) -> Arc<NodeNet> {
        let mut state = self.state();
        let host = state.hosts.get_mut(node).expect("a host of the net");
        host.life += 1;
        Arc::new(NodeNet {
            net: self.clone(),
            me: node.clone(),
            life: host.life,
            known: Mutex::new(BTreeSet::new()),
        })
    }

    /// `node` crashed: nothing reaches it, its requests in progress stop.
    pub fn crash(&self, node: &NodeId) {
        let mut state = self.state();
        let now = Instant::now();
        if let Some(host) = state.hosts.get_mut(node) {
            host.incoming = None;
            host.life += 1;
            for task in host.handling.drain(..) {
                task.abort();
            }
        }
        state.recompute(now);
    }

    /// Pauses or resumes `node`.
    pub fn set_paused(&self, node: &NodeId, paused: bool) {
        let mut state = self.state();
        if let Some(host) = state.hosts.get(node) {
            host.paused.send_replace(paused);
        }
        state.recompute(Instant::now());
    }

    /// Cuts (or, with `cut` false, restores) the link from `from` to `to`.
    pub fn set_cut(&self, from: &NodeId, to: &NodeId, cut: bool) {
        let mut state = self.state();
        let link = (from.clone(), to.clone());
        if cut {
            state.cut.insert(link);
        } else {
            state.cut.remove(&link);
        }
        state.recompute(Instant::now());
    }

    /// Restores every link.
    pub fn heal(&self) {
        let mut state = self.state();
        state.cut.clear();
        state.recompute(Instant::now());
    }

    /// Changes how messages travel.
    pub fn set_model(&self, model: LinkModel) {
        self.state().model = model;
    }

    /// Sets `node`'s clock offset (for the clock offsets peers measure).
    pub fn set_clock_offset(&self, node: &NodeId, micros: i64) {
        if let Some(host) = self.state().hosts.get_mut(node) {
            host.clock_offset_micros = micros;
        }
    }

    /// What the net did so far.
    pub fn counters(&self) -> NetCounters {
        self.state().counters
    }

    /// Whether every link is open and nobody is paused.
    pub fn is_whole(&self) -> bool {
        let state = self.state();
        state.cut.is_empty() && state.hosts.values().all(|host| !*host.paused.borrow())
    }

    /// Sends a client's request to `node`, as a client next to it would
    /// (clients are never partitioned from their node, but a crashed node
    /// does not answer and a paused one answers when it resumes).
    pub async fn client_request(
        self: &Arc<Self>,
        node: &NodeId,
        request: ClientRequest,
        timeout: Duration,
    ) -> Result<ClientReply, CallError> {
        let deadline = Instant::now() + timeout;
        let (answer, reply) = oneshot::channel();
        {
            let mut state = self.state();
            let host = state.hosts.get_mut(node).ok_or_else(|| not_sent(node))?;
            let incoming = host.incoming.clone().ok_or_else(|| not_sent(node))?;
            let paused = host.paused.subscribe();
            // A task of the node: it stops if the node crashes.
            let task = tokio::spawn(async move {
                wait_resumed(paused).await;
                let outcome = incoming.client_request(request, deadline).await;
                // The client may have given up: nobody to tell.
                let _ = answer.send(outcome.map_err(CallError::Remote));
            });
            host.handling.retain(|task| !task.is_finished());
            host.handling.push(task.abort_handle());
        }
        match tokio::time::timeout_at(deadline, reply).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(CallError::ConnectionLost {
                reason: format!("{node} crashed"),
            }),
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }

    fn is_life(&self, node: &NodeId, life: u64) -> bool {
        let state = self.state();
        state.hosts.get(node).is_some_and(|host| host.life == life)
    }

    /// Delivers `request` from `from` (life `life`) to `to`, and its answer
    /// back, through the link model; the answer goes to `answer`. A paused
    /// sender's message leaves when it resumes (unless it crashed first).
    fn deliver(
        self: &Arc<Self>,
        (from, life): (&NodeId, u64),
        to: &NodeId,
        request: PeerRequest,
        budget: Duration,
        answer: oneshot::Sender<Result<PeerReply, CallError>>,
    ) {
        let copies = {
            let mut state = self.state();
            let copies = state.copies(from, to);
            if copies == 0 {
                return;
            }
            copies
        };
        let mut answer = Some(answer);
        for _ in 0..copies {
            // A duplicate's answer goes nowhere.
            let answer = answer.take();
            let (net, sender, target) = (self.clone(), from.clone(), to.clone());
            let request = request.clone();
            let task = tokio::spawn(async move {
                net.arrive((&sender, life), &target, request, budget, answer)
                    .await;
            });
            let mut state = self.state();
            match state.hosts.get_mut(to) {
                Some(host) => {
                    host.handling.retain(|task| !task.is_finished());
                    host.handling.push(task.abort_handle());
                }
                None => task.abort(),
            }
        }
    }

    async fn arrive(
        self: Arc<Self>,
        (from, life): (&NodeId, u64),
        to: &NodeId,
        request: PeerRequest,
        budget: Duration,
        answer: Option<oneshot::Sender<Result<PeerReply, CallError>>>,
    ) {
        let sender = self
            .state()
            .hosts
            .get(from)
            .map(|host| host.paused.subscribe());
        if let Some(paused) = sender
            && *paused.borrow()
        {
            wait_resumed(paused).await;
            if !self.is_life(from, life) {
                return;
            }
        }
        let delay = self.state().delay();
        tokio::time::sleep(delay).await;
        let Some(paused) = self
            .state()
            .hosts
            .get(to)
            .map(|host| host.paused.subscribe())
        else {
            return;
        };
        if *paused.borrow() {
            self.state().counters.held += 1;
        }
        wait_resumed(paused).await;
        // Crashed meanwhile: the task is aborted, but be sure.
        let Some(incoming) = self.target(to) else {
            return;
        };
        // Every message crosses the net encoded, as on the wire.
        let request = match reencode(&request) {
            Ok(request) => request,
            Err(error) => {
                if let Some(answer) = answer {
                    let _ = answer.send(Err(CallError::NotSent { reason: error }));
                }
                return;
            }
        };
        let deadline = Instant::now() + budget;
        let reply = incoming.peer_request(from.clone(), request, deadline).await;
        let Some(answer) = answer else { return };
        let reply = reply
            .map_err(CallError::Remote)
            .and_then(|reply| reencode(&reply).map_err(|reason| CallError::NotSent { reason }));
        // The answer travels back.
        let copies = self.state().copies(to, from);
        if copies == 0 {
            return;
        }
        let delay = self.state().delay();
        tokio::time::sleep(delay).await;
        let paused = self
            .state()
            .hosts
            .get(from)
            .map(|host| host.paused.subscribe());
        if let Some(paused) = paused {
            wait_resumed(paused).await;
        }
        // The caller may have given up: nobody to tell.
        let _ = answer.send(reply);
    }

    fn target(&self, to: &NodeId) -> Option<Arc<dyn Incoming>> {
        self.state().hosts.get(to)?.incoming.clone()
    }
}

impl State {
    /// Whether `from` can reach `to` now: `to` serves, neither is
    /// paused, and the link is not cut in either direction.
    fn reachable(&self, from: &NodeId, to: &NodeId) -> bool {
        let up = |node: &NodeId| {
            self.hosts
                .get(node)
                .is_some_and(|host| host.incoming.is_some() && !*host.paused.borrow())
        };
        up(from)
            && up(to)
            && !self.cut.contains(&(from.clone(), to.clone()))
            && !self.cut.contains(&(to.clone(), from.clone()))
    }

    /// Notes when each connection went silent.
    fn recompute(&mut self, now: Instant) {
        let nodes: Vec<NodeId> = self.hosts.keys().cloned().collect();
        for from in &nodes {
            for to in &nodes {
                if from == to {
                    continue;
                }
                let link = (from.clone(), to.clone());
                if self.reachable(from, to) {
                    self.silent_since.remove(&link);
                } else {
                    self.silent_since.entry(link).or_insert(now);
                }
            }
        }
    }

    /// How many copies of a message from `from` to `to` arrive: 0 when it
    /// is lost.
    fn copies(&mut self, from: &NodeId, to: &NodeId) -> usize {
        self.counters.sent += 1;
        let cut = self.cut.contains(&(from.clone(), to.clone()));
        let loss = self.model.loss;
        if cut || (loss > 0.0 && self.rng.random_bool(loss.min(1.0))) {
            self.counters.lost += 1;
            return 0;
        }
        let duplicate = self.model.duplicate;
        if duplicate > 0.0 && self.rng.random_bool(duplicate.min(1.0)) {
            self.counters.duplicated += 1;
            return 2;
        }
        1
    }

    fn delay(&mut self) -> Duration {
        let jitter = self.model.jitter.as_micros() as u64;
        let extra = if jitter == 0 {
            0
        } else {
            self.rng.random_range(0..=jitter)
        };
        self.model.delay + Duration::from_micros(extra)
    }
}

async fn wait_resumed(mut paused: watch::Receiver<bool>) {
    // A dropped sender (the host is gone) counts as resumed.
    let _ = paused.wait_for(|paused| !*paused).await;
}

fn not_sent(node: &NodeId) -> CallError {
    CallError::NotSent {
        reason: format!("no connection to {node}"),
    }
}

/// Encodes and decodes a message, as the wire would.
fn reencode<T: serde::Serialize + serde::de::DeserializeOwned>(message: &T) -> Result<T, String> {
    let bytes = rmp_serde::to_vec_named(message).map_err(|e| e.to_string())?;
    rmp_serde::from_slice(&bytes).map_err(|e| e.to_string())
}

/// One life of one node's view of the net: its [`Network`].
pub struct NodeNet {
    net: Arc<Net>,
    me: NodeId,
    life: u64,
    /// The peers the node asked to be connected to.
    known: Mutex<BTreeSet<NodeId>>,
}

impl NodeNet {
    fn alive(&self) -> bool {
        let state = self.net.state();
        state
            .hosts
            .get(&self.me)
            .is_some_and(|host| host.life == self.life)
    }

    fn connected(&self, peer: &NodeId) -> bool {
        if !self.alive() || !self.known.lock().expect("known").contains(peer) {
            return false;
        }
        let state = self.net.state();
        match state.silent_since.get(&(self.me.clone(), peer.clone())) {
            None => state.reachable(&self.me, peer),
            Some(since) => since.elapsed() < IDLE_TIMEOUT,
        }
    }
}

impl Network for NodeNet {
    fn serve(
        &self,
        node: Arc<dyn Incoming>,
        _hello: Hello,
        cancel: CancellationToken,
    ) -> Vec<BoxFuture<'static, ()>> {
        {
            let mut state = self.net.state();
            if let Some(host) = state.hosts.get_mut(&self.me)
                && host.life == self.life
            {
                host.incoming = Some(node);
            }
            state.recompute(Instant::now());
        }
        // A clean shutdown stops serving.
        let (net, me, life) = (self.net.clone(), self.me.clone(), self.life);
        vec![Box::pin(async move {
            cancel.cancelled().await;
            let mut state = net.state();
            if let Some(host) = state.hosts.get_mut(&me)
                && host.life == life
            {
                host.incoming = None;
            }
            state.recompute(Instant::now());
        })]
    }

    fn send(
        &self,
        peer: &NodeId,
        request: PeerRequest,
        deadline: Instant,
    ) -> Result<PeerCall, CallError> {
        if !self.connected(peer) {
            return Err(not_sent(peer));
        }
        let budget = deadline.saturating_duration_since(Instant::now());
        let (answer, reply) = oneshot::channel();
        self.net
            .deliver((&self.me, self.life), peer, request, budget, answer);
        Ok(PeerCall::new(async move {
            match reply.await {
                Ok(answer) => answer,
                // Lost on the way: no answer will come.
                Err(_) => std::future::pending().await,
            }
        }))
    }

    fn is_alive(&self, peer: &NodeId) -> bool {
        self.connected(peer)
    }

    fn wait_connected<'a>(&'a self, peer: &'a NodeId, within: Duration) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let until = Instant::now() + within;
            loop {
                if self.connected(peer) {
                    return true;
                }
                if Instant::now() >= until {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50).min(within)).await;
            }
        })
    }

    fn redial_now(&self, _peer: &NodeId) {}

    fn clock_offset_micros(&self, peer: &NodeId) -> Option<i64> {
        let state = self.net.state();
        let mine = state.hosts.get(&self.me)?.clock_offset_micros;
        Some(state.hosts.get(peer)?.clock_offset_micros - mine)
    }

    fn ensure(
        &self,
        peer: &NodeId,
        _address: SocketAddr,
        _cancel: &CancellationToken,
    ) -> Option<BoxFuture<'static, ()>> {
        self.known.lock().expect("known").insert(peer.clone());
        None
    }

    fn forget(&self, peer: &NodeId) {
        self.known.lock().expect("known").remove(peer);
    }

    fn observe_generation(&self, _peer: &NodeId, _generation: u64) {}

    fn dial_address(&self, address: SocketAddr) -> BoxFuture<'_, Result<DialledSeed, DialError>> {
        Box::pin(async move {
            let peer = {
                let state = self.net.state();
                let found = state.hosts.iter().find(|(_, host)| host.address == address);
                match found {
                    Some((peer, _)) if state.reachable(&self.me, peer) => peer.clone(),
                    _ => return Err(DialError::Failed(format!("{address} does not answer"))),
                }
            };
            let dialled: Arc<dyn Dialled> = Arc::new(Once {
                net: self.net.clone(),
                me: self.me.clone(),
                life: self.life,
                peer: peer.clone(),
            });
            Ok((peer, dialled))
        })
    }
}

/// A connection dialled for one exchange.
struct Once {
    net: Arc<Net>,
    me: NodeId,
    life: u64,
    peer: NodeId,
}

impl Dialled for Once {
    fn call(
        &self,
        request: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<PeerReply, CallError>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            let (answer, reply) = oneshot::channel();
            self.net
                .deliver((&self.me, self.life), &self.peer, request, timeout, answer);
            let wait = async {
                match reply.await {
                    Ok(answer) => answer,
                    Err(_) => std::future::pending().await,
                }
            };
            match tokio::time::timeout_at(deadline, wait).await {
                Ok(answer) => answer,
                Err(_) => Err(CallError::Timeout(timeout)),
            }
        })
    }
}
