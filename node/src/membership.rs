//! Membership: the gossip task that drives `ringdb-gossip`'s state machine
//! over the internode transport, and the view of the cluster it publishes
//! for the coordinator (the ring, who is up).
//!
//! One task owns the [`Gossiper`]. Every [`GOSSIP_INTERVAL`] it ticks and
//! starts the rounds the gossiper asks for, each in its own task: `Syn`
//! as a [`PeerRequest::Gossip`] request, the `Ack` as its answer, which
//! comes back to the gossip task, and the `Ack2` as a second request on the
//! same connection. Gossip from peers arrives through the same inbox, with
//! the sender's id taken from its certificate by the transport.
//!
//! After every change of the view (a node's status, tokens or addresses, or
//! the failure detector's verdict), the task rebuilds a [`View`] — the ring
//! of normal and leaving members, and every node's state and liveness —
//! and swaps it in; the coordinator reads it once per request. It also
//! keeps [`Peers`] in step: a connection task for every member with an
//! address, none for nodes that left or were removed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringdb_gossip::{
    EndpointState, Event, GOSSIP_INTERVAL, GossipError, GossipMessage, Gossiper, Peer, RemovalStep,
    StateValue, Status,
};
use ringdb_proto::{NodeStatus, PeerReply, PeerRequest, TopologyNode};
use ringdb_ring::{NodeId, Replication, Ring};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::error::{self, TaskError};
use crate::known_peers::{self, Departures, KnownPeers};
use crate::network::{DialError, Dialled, Network};
use crate::storage::Storage;

/// How long one gossip exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a node re-announces its load.
const LOAD_INTERVAL: Duration = Duration::from_secs(10);
/// Inputs the gossip task may have queued.
const INBOX: usize = 256;

/// One node as this node sees it.
#[derive(Clone, Debug)]
pub struct NodeView {
    /// Its gossiped state.
    pub state: EndpointState,
    /// Whether the failure detector believes it alive (always true for this
    /// node).
    pub up: bool,
    /// When this node first saw it leave the ring or be removed
    /// (microseconds since the Unix epoch, by this node's clock), if it did.
    pub departed_micros: Option<i64>,
}

/// The cluster as this node sees it at one moment.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The ring: members that are normal, leaving or being removed, with
    /// their tokens.
    pub ring: Ring,
    /// The ring once the topology change in progress completes (joining
    /// nodes in, leaving and removed nodes out), if one is: writes also go
    /// to the replicas it adds (pending ranges).
    pub future: Option<Ring>,
    /// Every node known, this one included.
    pub nodes: BTreeMap<NodeId, NodeView>,
}

impl View {
    /// Whether `node` is believed alive.
    pub fn is_up(&self, node: &NodeId) -> bool {
        self.nodes.get(node).is_some_and(|n| n.up)
    }

    /// The gossiped status of `node`, if known.
    pub fn status(&self, node: &NodeId) -> Option<Status> {
        self.nodes.get(node).map(|n| n.state.status())
    }

    /// The ring's members as clients route by them; `reachable` says
    /// whether the answering node counts one alive.
    pub fn topology(&self, reachable: impl Fn(&NodeId) -> bool) -> Vec<TopologyNode> {
        self.ring
            .members()
            .iter()
            .filter_map(|(id, member)| {
                let state = &self.nodes.get(id)?.state;
                Some(TopologyNode {
                    id: id.clone(),
                    client_address: state.client_address()?.to_string(),
                    location: member.location.clone(),
                    tokens: member.tokens.clone(),
                    reachable: reachable(id),
                })
            })
            .collect()
    }

    /// Every node known, as `ringdb status` shows it; `clock_offset_ms`
    /// gives how far a node's clock is from this one's, when known.
    pub fn statuses(
        &self,
        replication: &Replication,
        clock_offset_ms: impl Fn(&NodeId) -> Option<i64>,
    ) -> Vec<NodeStatus> {
        let owns = self.ring.ownership(replication);
        self.nodes
            .iter()
            .map(|(id, node)| NodeStatus {
                id: id.clone(),
                up: node.up,
                status: node.state.status().to_string(),
                internode_address: node.state.internode_address().map(|a| a.to_string()),
                client_address: node.state.client_address().map(|a| a.to_string()),
                load_bytes: node.state.load(),
                tokens: node.state.tokens().to_vec(),
                owns: owns.get(id).copied().unwrap_or(0.0),
                location: node.state.location(),
                generation: node.state.generation,
                clock_offset_ms: clock_offset_ms(id),
                damage: node.state.damage().map(str::to_owned),
                operation: node.state.operation().map(str::to_owned),
                departed_micros: node.departed_micros,
            })
            .collect()
    }

    /// A node other than `me` that is joining, leaving or being removed,
    /// if any: the topology change in progress.
    pub fn change_in_progress(&self, me: &NodeId) -> Option<(NodeId, Status)> {
        self.nodes.iter().find_map(|(id, node)| {
            let status = node.state.status();
            let changing = status == Status::Leaving
                || (status == Status::Joining && !node.state.tokens().is_empty());
            // A removal is in progress while its node is removing, though
            // the node is down.
            let removing = status == Status::Removing;
            (id != me && (changing && node.up || removing)).then(|| (id.clone(), status))
        })
    }
}

/// The published view, shared with the coordinator.
pub struct Membership {
    view: watch::Sender<Arc<View>>,
    replication: Replication,
    /// φ of each member peer at the last gossip round (the failure
    /// detector's suspicion), for the metrics.
    phi: std::sync::RwLock<BTreeMap<NodeId, f64>>,
}

impl Membership {
    pub(crate) fn new(replication: Replication) -> Membership {
        Membership {
            view: watch::Sender::new(Arc::new(View::default())),
            replication,
            phi: std::sync::RwLock::default(),
        }
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// Waits until a published view satisfies `condition`, at most
    /// `within`; returns whether one did.
    pub async fn wait_for(
        &self,
        within: Duration,
        condition: impl FnMut(&Arc<View>) -> bool,
    ) -> bool {
        let mut views = self.view.subscribe();
        matches!(
            tokio::time::timeout(within, views.wait_for(condition)).await,
            Ok(Ok(_))
        )
    }

    /// φ of each member peer at the last gossip round: above the
    /// detector's `phi_threshold`, it is down.
    pub fn phi(&self) -> BTreeMap<NodeId, f64> {
        self.phi.read().expect("phi").clone()
    }

    /// How data is replicated.
    pub fn replication(&self) -> &Replication {
        &self.replication
    }

    /// A receiver that sees each new view.
    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view.subscribe()
    }

    fn publish(&self, view: View) {
        self.view.send_replace(Arc::new(view));
    }
}

/// What the gossip task is asked to do.
pub(crate) enum GossipInput {
    /// A gossip message from a peer; the reply goes back on `reply`.
    Incoming {
        from: NodeId,
        message: GossipMessage,
        reply: oneshot::Sender<Option<GossipMessage>>,
    },
    /// The answer to a `Syn` this node sent; the `Ack2` (if any) goes back
    /// on `reply`, to be sent on the same connection.
    Answer {
        from: NodeId,
        message: GossipMessage,
        reply: oneshot::Sender<Option<GossipMessage>>,
    },
    /// Set one of this node's application states.
    SetState(StateValue),
    /// Take a dead node through a step of its removal (`removenode`), if
    /// its status is still `expect` (what the caller decided on).
    Remove {
        node: NodeId,
        expect: Status,
        step: RemovalStep,
        reply: oneshot::Sender<Result<(), RemoveError>>,
    },
}

/// Why a node could not be marked removed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RemoveError {
    /// Its status changed since the caller looked.
    #[error(
        "{node} became {status} meanwhile; look at `ringdb status` and run removenode again if \
         it is still needed"
    )]
    Changed {
        /// The node.
        node: NodeId,
        /// Its status now.
        status: Status,
    },
    /// Gossip refused (the node is this one, alive, or unknown).
    #[error(transparent)]
    Gossip(#[from] GossipError),
    /// This node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// A handle to the gossip task.
#[derive(Clone)]
pub(crate) struct GossipHandle {
    inbox: mpsc::Sender<GossipInput>,
}

impl GossipHandle {
    /// Passes a gossip message from `from` to the task; returns its reply.
    pub(crate) async fn incoming(
        &self,
        from: NodeId,
        message: GossipMessage,
    ) -> Option<GossipMessage> {
        let (reply, answer) = oneshot::channel();
        let input = GossipInput::Incoming {
            from,
            message,
            reply,
        };
        self.inbox.send(input).await.ok()?;
        answer.await.ok().flatten()
    }

    /// Takes a dead node through `step` of its removal, if its status is
    /// still `expect`.
    pub(crate) async fn remove(
        &self,
        node: NodeId,
        expect: Status,
        step: RemovalStep,
    ) -> Result<(), RemoveError> {
        let (reply, answer) = oneshot::channel();
        let input = GossipInput::Remove {
            node,
            expect,
            step,
            reply,
        };
        let shutting_down = |_| RemoveError::ShuttingDown;
        self.inbox.send(input).await.map_err(shutting_down)?;
        answer.await.map_err(|_| RemoveError::ShuttingDown)?
    }

    /// Sets one of this node's application states.
    pub(crate) async fn set_state(&self, value: StateValue) {
        // Only fails when the node is shutting down: nothing to announce then.
        let _ = self.inbox.send(GossipInput::SetState(value)).await;
    }
}

/// The gossip task's state.
pub(crate) struct GossipTask {
    gossiper: Gossiper,
    departures: Departures,
    membership: Arc<Membership>,
    peers: Arc<dyn Network>,
    storage: Arc<Storage>,
    inbox: mpsc::Receiver<GossipInput>,
    sender: mpsc::Sender<GossipInput>,
    seeds: Arc<SeedWatch>,
    cancel: CancellationToken,
}

impl GossipTask {
    pub(crate) fn new(
        gossiper: Gossiper,
        departures: Departures,
        membership: Arc<Membership>,
        peers: Arc<dyn Network>,
        storage: Arc<Storage>,
        seeds: Arc<SeedWatch>,
        cancel: CancellationToken,
    ) -> (GossipTask, GossipHandle) {
        let (sender, inbox) = mpsc::channel(INBOX);
        let handle = GossipHandle {
            inbox: sender.clone(),
        };
        let mut task = GossipTask {
            gossiper,
            departures,
            membership,
            peers,
            storage,
            inbox,
            sender,
            seeds,
            cancel,
        };
        task.publish();
        (task, handle)
    }

    /// Runs until cancelled.
    pub(crate) async fn run(mut self) {
        // What is remembered across restarts is saved by a task of its own,
        // each change in turn, off this loop.
        let me = self.gossiper.me().clone();
        let (known, saved) = watch::channel(KnownPeers::from_states(
            &me,
            self.gossiper.states(),
            &self.departures,
        ));
        let saver = tokio::spawn(save_known_peers(self.storage.clone(), saved));
        let mut tasks = JoinSet::new();
        // Connections to the peers already known (none on a first start).
        self.sync_peers(&mut tasks);
        let mut ticker = tokio::time::interval(GOSSIP_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut load_at = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = ticker.tick() => {
                    let now = Instant::now();
                    if now >= load_at {
                        load_at = now + LOAD_INTERVAL;
                        self.announce_load();
                    }
                    self.gossip_round(now, &mut tasks);
                }
                input = self.inbox.recv() => {
                    let Some(input) = input else { break };
                    self.handle(input);
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = self.cancel.cancelled() => break,
            }
            if self.take_events() {
                self.publish();
                self.sync_peers(&mut tasks);
                let now = KnownPeers::from_states(&me, self.gossiper.states(), &self.departures);
                known.send_if_modified(|current| {
                    let changed = *current != now;
                    *current = now;
                    changed
                });
            }
        }
        tasks.shutdown().await;
        // The last change is saved before the node stops.
        drop(known);
        if let Err(error) = saver.await {
            warn!(%error, "the task saving the known peers failed");
        }
    }

    /// Starts this round's exchanges with the peers the gossiper picks.
    fn gossip_round(&mut self, now: Instant, tasks: &mut JoinSet<()>) {
        let outbound = self.gossiper.tick(now.into_std());
        let phi = (self.gossiper.states().iter())
            .filter(|(node, state)| *node != self.gossiper.me() && state.status().is_member())
            .map(|(node, _)| (node.clone(), self.gossiper.phi(node, now.into_std())))
            .collect();
        *self.membership.phi.write().expect("phi") = phi;
        for outbound in outbound {
            let exchange = exchange(
                outbound.to,
                outbound.message,
                self.peers.clone(),
                self.membership.clone(),
                self.sender.clone(),
                self.seeds.clone(),
            );
            tasks.spawn(exchange);
        }
    }

    /// Acts on what the gossiper noticed; returns whether it noticed
    /// anything.
    fn take_events(&mut self) -> bool {
        let events = self.gossiper.take_events();
        for event in &events {
            match event {
                Event::Up(node) => info!(peer = %node, "node is up"),
                Event::Down(node) => info!(peer = %node, "node is down"),
                Event::Changed(node) => debug!(peer = %node, "node state changed"),
                Event::RemovedSelf { generation } => self.removed(*generation),
            }
        }
        !events.is_empty()
    }

    /// A peer says this node's id was removed in generation `removal`:
    /// this data directory stops for good if the life removed was one of
    /// its own; else an earlier data directory under this id was (this one
    /// was made since, wiped or replaced), and this node stops only if its
    /// generation is not above the removal, which peers would ignore.
    fn removed(&mut self, removal: u64) {
        let me = self.gossiper.me().clone();
        let generation = self.gossiper.state(&me).map_or(0, |s| s.generation);
        match known_peers::removal_is_of_this_data(&self.storage, removal) {
            Ok(true) => {
                error!("this node was removed from the cluster (removenode); stopping");
                if let Err(error) = self.storage.mark_retired("removed") {
                    error!(%error, "cannot record the removal");
                }
                self.cancel.cancel();
            }
            Ok(false) if removal >= generation => {
                error!(
                    removal,
                    generation,
                    "an earlier node with this id was removed in a generation above this \
                     one's start time (is this machine's clock behind?): peers ignore this \
                     node until it starts above it; stopping: start it again"
                );
                if let Err(error) = known_peers::raise_generation_above(&self.storage, removal) {
                    error!(%error, "cannot record the generation to start above");
                }
                self.cancel.cancel();
            }
            Ok(false) => debug!(
                removal,
                "a peer holds the removal of an earlier data directory under this id; ignoring it"
            ),
            Err(error) => error!(%error, "cannot tell whose removal a peer holds; ignoring it"),
        }
    }

    fn handle(&mut self, input: GossipInput) {
        let now = Instant::now().into_std();
        match input {
            GossipInput::Incoming {
                from,
                message,
                reply,
            }
            | GossipInput::Answer {
                from,
                message,
                reply,
            } => {
                let answer = self.gossiper.handle(&from, message, now);
                // The exchange may have given up waiting: nothing to do.
                let _ = reply.send(answer);
            }
            GossipInput::SetState(value) => self.gossiper.set_state(value),
            GossipInput::Remove {
                node,
                expect,
                step,
                reply,
            } => {
                let now = self.gossiper.state(&node).map(|state| state.status());
                let outcome = match now {
                    Some(status) if status != expect => Err(RemoveError::Changed { node, status }),
                    _ => self.gossiper.remove(&node, step).map_err(RemoveError::from),
                };
                // The caller may have given up: nothing to do.
                let _ = reply.send(outcome);
            }
        }
    }

    fn announce_load(&mut self) {
        let load = self.storage.load();
        let me = self.gossiper.me().clone();
        let current = self.gossiper.state(&me).and_then(|s| s.load());
        if current != Some(load) {
            self.gossiper.set_state(StateValue::Load(load));
        }
    }

    /// Rebuilds the view from the gossiper's states and publishes it.
    fn publish(&mut self) {
        self.departures.note(self.gossiper.states());
        let mut ring = Ring::new();
        let mut nodes = BTreeMap::new();
        let mut joining = Vec::new();
        let mut leaving = Vec::new();
        for (node, state) in self.gossiper.states() {
            match state.status() {
                Status::Joining if !state.tokens().is_empty() => joining.push(node.clone()),
                // A node being removed is replaced as a leaving node is:
                // its ranges' next replicas are pending while they are
                // copied.
                Status::Leaving | Status::Removing => leaving.push(node.clone()),
                _ => {}
            }
            let status = state.status();
            if matches!(status, Status::Normal | Status::Leaving | Status::Removing)
                && !state.tokens().is_empty()
                && let Err(error) =
                    ring.add_node(node.clone(), state.location(), state.tokens().to_vec())
            {
                warn!(peer = %node, %error, "cannot place the node's tokens in the ring");
            }
            let view = NodeView {
                state: state.clone(),
                // An operator said it is dead (stale gossip of it is not).
                up: self.gossiper.is_alive(node) && status != Status::Removing,
                departed_micros: self.departures.of(node),
            };
            nodes.insert(node.clone(), view);
        }
        let future = (!joining.is_empty() || !leaving.is_empty()).then(|| {
            let mut future = ring.clone();
            for node in &leaving {
                future.remove_node(node);
            }
            for node in &joining {
                let state = &self.gossiper.states()[node];
                if let Err(error) =
                    future.add_node(node.clone(), state.location(), state.tokens().to_vec())
                {
                    warn!(peer = %node, %error, "cannot place a joining node's tokens");
                }
            }
            future
        });
        self.membership.publish(View {
            ring,
            future,
            nodes,
        });
    }

    /// A connection task for every member with an address; none for nodes
    /// that left or were removed.
    fn sync_peers(&self, tasks: &mut JoinSet<()>) {
        for (node, state) in self.gossiper.states() {
            if node == self.gossiper.me() {
                continue;
            }
            match (state.status().is_member(), state.internode_address()) {
                (true, Some(address)) => {
                    if let Some(run) = self.peers.ensure(node, address, &self.cancel) {
                        tasks.spawn(run);
                    }
                }
                _ => self.peers.forget(node),
            }
        }
    }
}

/// Saves each new version of what this node knows of the others, in turn,
/// until the gossip task drops its end.
async fn save_known_peers(storage: Arc<Storage>, mut known: watch::Receiver<KnownPeers>) {
    while known.changed().await.is_ok() {
        let latest = known.borrow_and_update().clone();
        let saved = storage
            .blocking(move |storage| known_peers::save(storage, &latest))
            .await;
        if let Err(error) = saved {
            warn!(%error, "cannot save the known peers");
        }
    }
}

/// The connection a gossip exchange runs on.
enum Channel {
    /// The long-lived connection to a known peer (through the fault hook).
    Peer(NodeId),
    /// A connection dialled for this exchange, to a seed known by address.
    Once(NodeId, Arc<dyn Dialled>),
}

impl Channel {
    fn peer(&self) -> &NodeId {
        match self {
            Channel::Peer(node) | Channel::Once(node, _) => node,
        }
    }

    async fn call(
        &self,
        peers: &dyn Network,
        message: &GossipMessage,
    ) -> Result<PeerReply, TaskError> {
        let bytes = rmp_serde::to_vec_named(message).expect("a gossip message always encodes");
        let request = PeerRequest::Gossip(bytes);
        match self {
            Channel::Peer(node) => {
                let deadline = Instant::now() + EXCHANGE_TIMEOUT;
                error::ask(peers, node, request, deadline).await
            }
            Channel::Once(node, connection) => connection
                .call(request, EXCHANGE_TIMEOUT)
                .await
                .map_err(|error| TaskError::Call {
                    node: node.clone(),
                    error,
                }),
        }
    }
}

/// One gossip round with one peer: Syn → Ack → Ack2.
async fn exchange(
    to: Peer,
    syn: GossipMessage,
    peers: Arc<dyn Network>,
    membership: Arc<Membership>,
    gossip: mpsc::Sender<GossipInput>,
    seeds: Arc<SeedWatch>,
) {
    let channel = match to {
        Peer::Node(node) => Channel::Peer(node),
        Peer::Seed(address) => match known_at(&membership, &*peers, address) {
            Some(node) => {
                seeds.reached(address);
                Channel::Peer(node)
            }
            None => match peers.dial_address(address).await {
                Ok((node, connection)) => {
                    seeds.reached(address);
                    Channel::Once(node, connection)
                }
                Err(error) => {
                    seeds.unreachable(address, &error, &membership.view());
                    return;
                }
            },
        },
    };
    let ack = match channel.call(&*peers, &syn).await {
        Ok(PeerReply::Gossip(Some(bytes))) => match rmp_serde::from_slice(&bytes) {
            Ok(ack) => ack,
            Err(error) => {
                warn!(peer = %channel.peer(), %error, "malformed gossip answer");
                return;
            }
        },
        Ok(_) => return,
        Err(error) => {
            debug!(peer = %channel.peer(), %error, "gossip round failed");
            return;
        }
    };
    let (reply, ack2) = oneshot::channel();
    let input = GossipInput::Answer {
        from: channel.peer().clone(),
        message: ack,
        reply,
    };
    if gossip.send(input).await.is_err() {
        return;
    }
    if let Ok(Some(ack2)) = ack2.await
        && let Err(error) = channel.call(&*peers, &ack2).await
    {
        debug!(peer = %channel.peer(), %error, "gossip Ack2 not delivered");
    }
}

/// Which seeds could not be reached, so that each is reported once when it
/// becomes unreachable and once when it is back, not at every round.
/// A seed that refuses this node (its cluster settings differ) is kept
/// too: a node that has not joined yet stops on it rather than wait.
#[derive(Default)]
pub(crate) struct SeedWatch {
    unreachable: std::sync::Mutex<std::collections::BTreeSet<SocketAddr>>,
    refusal: std::sync::Mutex<Option<String>>,
}

impl SeedWatch {
    /// Why a seed refused this node, if one did.
    pub(crate) fn refusal(&self) -> Option<String> {
        self.refusal.lock().expect("refusal").clone()
    }

    fn unreachable(&self, seed: SocketAddr, error: &DialError, view: &View) {
        if let DialError::Refused(refusal) = error {
            error!(%seed, %refusal, "the seed refuses this node: its cluster settings differ");
            *self.refusal.lock().expect("refusal") = Some(refusal.to_string());
            return;
        }
        if !self.unreachable.lock().expect("seeds").insert(seed) {
            debug!(%seed, %error, "seed still unreachable");
            return;
        }
        let departed = view.nodes.iter().find(|(_, node)| {
            node.state.internode_address() == Some(seed) && !node.state.status().is_member()
        });
        let known = view
            .nodes
            .values()
            .filter(|node| node.up)
            .count()
            .saturating_sub(1);
        match departed {
            Some((id, node)) => warn!(
                %seed, %error, peers_up = known,
                "seed unreachable: it was {id}, which is {}; remove it from cluster.seeds",
                node.state.status()
            ),
            None => warn!(
                %seed, %error, peers_up = known,
                "seed unreachable; gossiping with the peers this node knows"
            ),
        }
    }

    fn reached(&self, seed: SocketAddr) {
        if self.unreachable.lock().expect("seeds").remove(&seed) {
            info!(%seed, "seed reachable again");
        }
    }
}

/// The member already connected at `address`, if any.
fn known_at(membership: &Membership, peers: &dyn Network, address: SocketAddr) -> Option<NodeId> {
    let view = membership.view();
    view.nodes
        .iter()
        .find(|(node, n)| n.state.internode_address() == Some(address) && peers.is_alive(node))
        .map(|(node, _)| node.clone())
}
