//! The gossip state machine: rounds, merging and liveness.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use ringdb_ring::NodeId;
use serde::{Deserialize, Serialize};

use crate::detector::{ArrivalWindow, DetectorConfig};
use crate::state::{Digest, EndpointDelta, EndpointState, StateKey, StateValue, Status, Versioned};

/// How often a node starts a gossip round (Cassandra's one second).
pub const GOSSIP_INTERVAL: Duration = Duration::from_secs(1);
/// A gap between two rounds longer than this is this node's own pause (a
/// stopped process, a stalled machine), not its peers' silence: it convicts
/// nobody for it (Cassandra's `max_local_pause_in_ms`).
pub const LOCAL_PAUSE: Duration = Duration::from_secs(3);

/// Settings of a node's gossip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GossipConfig {
    /// The cluster's name: gossip from a cluster of another name is ignored.
    pub cluster: String,
    /// Internode addresses of the seed nodes, which every node gossips with
    /// now and then so that partitions of the membership heal. Default: none
    /// (a node alone).
    pub seeds: Vec<SocketAddr>,
    /// The failure detector.
    pub detector: DetectorConfig,
}

impl Default for GossipConfig {
    fn default() -> GossipConfig {
        GossipConfig {
            cluster: "ringdb".into(),
            seeds: Vec::new(),
            detector: DetectorConfig::default(),
        }
    }
}

/// The gossip protocol: a three-way exchange, as Cassandra's
/// `GossipDigestSyn`, `GossipDigestAck` and `GossipDigestAck2`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GossipMessage {
    /// Starts a round: a digest of every node the sender knows.
    Syn {
        /// The sender's cluster name; a mismatch ends the round.
        cluster: String,
        /// What the sender knows, node by node.
        digests: Vec<Digest>,
    },
    /// Answers a `Syn`: the states the initiator lacks, and digests of what
    /// the answerer lacks.
    Ack {
        /// States newer than the initiator's digests.
        deltas: Vec<EndpointDelta>,
        /// What the answerer wants: states newer than these versions.
        requests: Vec<Digest>,
    },
    /// Ends a round: the states the answerer asked for.
    Ack2 {
        /// States newer than the answerer's requests.
        deltas: Vec<EndpointDelta>,
    },
}

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A node known by id (its address is in its state).
    Node(NodeId),
    /// A seed known only by address (not yet heard from, or not known to
    /// be that node).
    Seed(SocketAddr),
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The recipient.
    pub to: Peer,
    /// The message.
    pub message: GossipMessage,
}

/// What changed in the view, for the node to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The node is believed alive again (or for the first time).
    Up(NodeId),
    /// The failure detector convicted the node.
    Down(NodeId),
    /// The node's application states changed (status, tokens, addresses…),
    /// or it restarted with a new generation.
    Changed(NodeId),
    /// Another node says this one was removed (`removenode`): it must stop
    /// serving, and may come back only as a new member with empty data.
    /// `generation` is the removal's (one above the generation of the life
    /// that was removed): a node whose data is newer than that (it was
    /// added again since) is not the one removed.
    RemovedSelf {
        /// The generation of the removed state.
        generation: u64,
    },
}

/// Why a state change was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipError {
    /// No such node is known.
    UnknownNode(NodeId),
    /// A node cannot remove itself (it decommissions instead).
    RemoveSelf,
    /// The node is alive: decommission it instead of removing it.
    NodeAlive(NodeId),
}

impl std::fmt::Display for GossipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GossipError::UnknownNode(node) => write!(f, "no node {node} is known"),
            GossipError::RemoveSelf => f.write_str("a node cannot remove itself; decommission it"),
            GossipError::NodeAlive(node) => {
                write!(f, "{node} is alive; decommission it instead of removing it")
            }
        }
    }
}

impl std::error::Error for GossipError {}

/// A step of an operator's removal of a dead node, see [`Gossiper::remove`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovalStep {
    /// Mark it removing: its ranges are being copied to their next replicas.
    Begin,
    /// Mark it removed: out of the ring.
    Finish,
    /// Put a removing node back to normal.
    Abort,
}

/// `state` in the generation above its own, holding what it held (without
/// its tokens unless `tokens`) at version 1, and `status` and the life it
/// removes at version 2: newer than anything the node's own process said
/// in its generation.
fn forced_newer(state: &EndpointState, status: Status, tokens: bool) -> EndpointState {
    let mut states: BTreeMap<StateKey, Versioned> = state
        .states
        .iter()
        .filter(|(key, _)| tokens || **key != StateKey::Tokens)
        .map(|(key, v)| {
            let value = Versioned {
                value: v.value.clone(),
                version: 1,
            };
            (*key, value)
        })
        .collect();
    for value in [
        StateValue::Status(status),
        StateValue::RemovalOf(state.generation),
    ] {
        states.insert(value.key(), Versioned { value, version: 2 });
    }
    EndpointState {
        generation: state.generation + 1,
        heartbeat: 2,
        states,
    }
}

/// Liveness bookkeeping of one peer.
struct Liveness {
    window: ArrivalWindow,
    /// Whether a heartbeat newer than the first one seen has arrived (or
    /// the node spoke to us directly): what was learned second-hand about a
    /// node does not make it alive.
    beating: bool,
    alive: bool,
}

/// One node's gossip: its own state, its view of every other node, and the
/// failure detector. Drive it with [`Gossiper::tick`] every
/// [`GOSSIP_INTERVAL`] and [`Gossiper::handle`] for each message received.
pub struct Gossiper {
    me: NodeId,
    config: GossipConfig,
    states: BTreeMap<NodeId, EndpointState>,
    liveness: BTreeMap<NodeId, Liveness>,
    /// The counter behind this node's versions.
    version: u64,
    events: Vec<Event>,
    rng: StdRng,
    /// When liveness was last judged (every round, every message).
    last_judged: Option<Instant>,
}

impl Gossiper {
    /// A node's gossip, starting with generation `generation` (its process
    /// start time) and its initial application states. `rng_seed` makes
    /// peer choice reproducible in tests.
    pub fn new(
        me: NodeId,
        generation: u64,
        states: impl IntoIterator<Item = StateValue>,
        config: GossipConfig,
        rng_seed: u64,
    ) -> Gossiper {
        let mut own = EndpointState {
            generation,
            heartbeat: 0,
            states: BTreeMap::new(),
        };
        let mut version = 0;
        for value in states {
            version += 1;
            own.states.insert(value.key(), Versioned { value, version });
        }
        own.heartbeat = version;
        Gossiper {
            states: BTreeMap::from([(me.clone(), own)]),
            me,
            config,
            liveness: BTreeMap::new(),
            version,
            events: Vec::new(),
            rng: StdRng::seed_from_u64(rng_seed),
            last_judged: None,
        }
    }

    /// This node's id.
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// The settings.
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Every node known, with its state (this node included).
    pub fn states(&self) -> &BTreeMap<NodeId, EndpointState> {
        &self.states
    }

    /// What is known of one node.
    pub fn state(&self, node: &NodeId) -> Option<&EndpointState> {
        self.states.get(node)
    }

    /// Whether `node` is believed alive (this node always is).
    pub fn is_alive(&self, node: &NodeId) -> bool {
        node == &self.me || self.liveness.get(node).is_some_and(|l| l.alive)
    }

    /// φ of `node` at `now` (0 for this node and unknown nodes).
    pub fn phi(&self, node: &NodeId, now: Instant) -> f64 {
        self.liveness
            .get(node)
            .map_or(0.0, |l| l.window.phi(now, &self.config.detector))
    }

    /// Takes the events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Takes what this node knew of `node` before it restarted (kept on
    /// disk): its status, tokens and addresses, at the generation and
    /// versions it had then, so that the ring, removals and departures
    /// outlive a restart and the node can dial the peers it knew. The node
    /// is not alive until it is heard from; anything newer replaces this by
    /// the usual rules. Ignored for this node and for nodes already known.
    pub fn remember(&mut self, node: NodeId, state: EndpointState) {
        if node == self.me || self.states.contains_key(&node) {
            return;
        }
        self.states.insert(node.clone(), state);
        self.events.push(Event::Changed(node));
    }

    /// Sets one of this node's application states (a new version of it).
    pub fn set_state(&mut self, value: StateValue) {
        self.version += 1;
        let version = self.version;
        let own = self.states.get_mut(&self.me).expect("own state");
        own.states.insert(value.key(), Versioned { value, version });
        own.heartbeat = own.heartbeat.max(version);
        self.events.push(Event::Changed(self.me.clone()));
    }

    /// Takes a dead node through one step of its removal by an operator
    /// (`removenode`): [`RemovalStep::Begin`] marks it removing (still in
    /// the ring, with its tokens, while its ranges are copied),
    /// [`RemovalStep::Finish`] marks it removed (no tokens), and
    /// [`RemovalStep::Abort`] puts a removing node back to normal. The first
    /// step forces a generation above the node's own, as Cassandra's
    /// removenode does, so that no gossip of its old process can undo it,
    /// and records the life it removes ([`StateValue::RemovalOf`]); every
    /// step after it, of this removal or of one asked again after an
    /// abort, is a newer version in that generation. A removed node can
    /// return only as a new member: a new generation announcing itself
    /// joining.
    pub fn remove(&mut self, node: &NodeId, step: RemovalStep) -> Result<(), GossipError> {
        if node == &self.me {
            return Err(GossipError::RemoveSelf);
        }
        if step != RemovalStep::Abort && self.is_alive(node) {
            return Err(GossipError::NodeAlive(node.clone()));
        }
        let state = self
            .states
            .get_mut(node)
            .ok_or_else(|| GossipError::UnknownNode(node.clone()))?;
        let now = state.status();
        let (status, tokens) = match step {
            // Nothing to do: already so, or gone.
            RemovalStep::Begin if !matches!(now, Status::Normal | Status::Leaving) => {
                return Ok(());
            }
            RemovalStep::Abort if now != Status::Removing => return Ok(()),
            RemovalStep::Finish if now == Status::Removed => return Ok(()),
            RemovalStep::Begin => (Status::Removing, true),
            RemovalStep::Finish => (Status::Removed, false),
            RemovalStep::Abort => (Status::Normal, true),
        };
        // Already in a removal's generation (a state saved before
        // `RemovalOf` existed is removing without it).
        if state.get(StateKey::RemovalOf).is_some() || now == Status::Removing {
            // Steps rank Finish over Begin over Abort, so that two made at
            // once from one version (two removers, one aborting) do not
            // leave peers with equal versions of different values; the
            // heartbeat stays, or peers would count the node alive.
            let rank = match step {
                RemovalStep::Abort => 1,
                RemovalStep::Begin => 2,
                RemovalStep::Finish => 3,
            };
            let version = state.max_version() + rank;
            let mut set = |value: StateValue| {
                let key = value.key();
                state.states.insert(key, Versioned { value, version });
            };
            set(StateValue::Status(status));
            if !tokens {
                // An empty list, not a missing key: peers keep a key a
                // delta lacks.
                set(StateValue::Tokens(Vec::new()));
            }
        } else {
            *state = forced_newer(state, status, tokens);
        }
        if let Some(liveness) = self.liveness.get_mut(node) {
            liveness.alive = false;
        }
        self.events.push(Event::Changed(node.clone()));
        Ok(())
    }

    /// One gossip round: beats this node's heart, updates who is alive, and
    /// returns the `Syn`s to send (to a live peer, perhaps an unreachable
    /// one, perhaps a seed).
    pub fn tick(&mut self, now: Instant) -> Vec<Outbound> {
        self.version += 1;
        self.states.get_mut(&self.me).expect("own state").heartbeat = self.version;
        self.update_liveness(now);

        let mut live = Vec::new();
        let mut unreachable = Vec::new();
        for (node, state) in &self.states {
            if node == &self.me || !state.status().is_member() {
                continue;
            }
            if self.is_alive(node) {
                live.push(node.clone());
            } else {
                unreachable.push(node.clone());
            }
        }
        let my_address = self.states[&self.me].internode_address();
        let seeds: Vec<SocketAddr> = self
            .config
            .seeds
            .iter()
            .copied()
            .filter(|seed| Some(*seed) != my_address)
            .collect();

        let syn = GossipMessage::Syn {
            cluster: self.config.cluster.clone(),
            digests: self.digests(),
        };
        let mut out = Vec::new();
        // 1. A random live peer.
        let mut gossiped_to_seed = false;
        if let Some(peer) = live.choose(&mut self.rng) {
            let address = self.states[peer].internode_address();
            gossiped_to_seed = address.is_some_and(|a| seeds.contains(&a));
            out.push(Outbound {
                to: Peer::Node(peer.clone()),
                message: syn.clone(),
            });
        }
        // 2. Perhaps an unreachable one, to notice it coming back.
        if !unreachable.is_empty() {
            let chance = unreachable.len() as f64 / (live.len() + 1) as f64;
            if self.rng.random_bool(chance.min(1.0)) {
                let peer = unreachable.choose(&mut self.rng).expect("not empty");
                out.push(Outbound {
                    to: Peer::Node(peer.clone()),
                    message: syn.clone(),
                });
            }
        }
        // 3. Perhaps a seed, so that separated groups find each other again:
        //    always while no peer is live, otherwise with a probability that
        //    falls as the cluster grows.
        if !seeds.is_empty() && (!gossiped_to_seed || live.len() < seeds.len()) {
            let chance = if live.is_empty() {
                1.0
            } else {
                seeds.len() as f64 / (live.len() + unreachable.len()) as f64
            };
            if self.rng.random_bool(chance.min(1.0)) {
                let seed = *seeds.choose(&mut self.rng).expect("not empty");
                out.push(Outbound {
                    to: Peer::Seed(seed),
                    message: syn,
                });
            }
        }
        out
    }

    /// Handles a message from `from` (identified by its certificate, not by
    /// anything in the message); returns the reply to send it, if any.
    pub fn handle(
        &mut self,
        from: &NodeId,
        message: GossipMessage,
        now: Instant,
    ) -> Option<GossipMessage> {
        // Hearing from a node first-hand is proof it is alive.
        self.heard_from(from, now);
        match message {
            GossipMessage::Syn { cluster, digests } => {
                if cluster != self.config.cluster {
                    return None;
                }
                Some(self.answer_syn(from, &digests))
            }
            GossipMessage::Ack { deltas, requests } => {
                self.apply(from, deltas, now);
                let deltas: Vec<EndpointDelta> =
                    requests.iter().filter_map(|r| self.delta_for(r)).collect();
                (!deltas.is_empty()).then_some(GossipMessage::Ack2 { deltas })
            }
            GossipMessage::Ack2 { deltas } => {
                self.apply(from, deltas, now);
                None
            }
        }
    }

    fn digests(&self) -> Vec<Digest> {
        self.states
            .iter()
            .map(|(node, state)| Digest {
                node: node.clone(),
                generation: state.generation,
                max_version: state.max_version(),
            })
            .collect()
    }

    fn answer_syn(&self, from: &NodeId, digests: &[Digest]) -> GossipMessage {
        let mut deltas = Vec::new();
        let mut requests = Vec::new();
        // A removed node that comes back (a new process with its old data)
        // is told so, whatever its generation: it is the one state about a
        // node that others assert.
        if let Some(state) = self.states.get(from)
            && state.status() == Status::Removed
        {
            deltas.push(state.delta_after(from, 0));
        }
        let mentioned: BTreeSet<&NodeId> = digests.iter().map(|d| &d.node).collect();
        for digest in digests {
            match self.states.get(&digest.node) {
                None => requests.push(Digest {
                    max_version: 0,
                    ..digest.clone()
                }),
                Some(local) if local.generation < digest.generation => requests.push(Digest {
                    max_version: 0,
                    ..digest.clone()
                }),
                Some(local) if local.generation > digest.generation => {
                    deltas.push(local.delta_after(&digest.node, 0));
                }
                Some(local) => {
                    let max = local.max_version();
                    if max > digest.max_version {
                        deltas.push(local.delta_after(&digest.node, digest.max_version));
                    } else if max < digest.max_version {
                        requests.push(Digest {
                            max_version: max,
                            ..digest.clone()
                        });
                    }
                }
            }
        }
        // Nodes the initiator has never heard of.
        for (node, state) in &self.states {
            if !mentioned.contains(node) {
                deltas.push(state.delta_after(node, 0));
            }
        }
        GossipMessage::Ack { deltas, requests }
    }

    fn delta_for(&self, request: &Digest) -> Option<EndpointDelta> {
        let local = self.states.get(&request.node)?;
        if local.generation > request.generation {
            Some(local.delta_after(&request.node, 0))
        } else if local.generation == request.generation
            && local.max_version() > request.max_version
        {
            Some(local.delta_after(&request.node, request.max_version))
        } else {
            None
        }
    }

    fn heard_from(&mut self, from: &NodeId, now: Instant) {
        if from == &self.me || !self.states.contains_key(from) {
            return;
        }
        // Only heartbeats that move count as arrivals (three messages of one
        // round would otherwise make intervals of zero); a direct word only
        // vouches that the node is beating.
        let detector = &self.config.detector;
        let liveness = self.liveness.entry(from.clone()).or_insert_with(|| {
            let mut window = ArrivalWindow::new(detector);
            window.heartbeat(now, detector);
            Liveness {
                window,
                beating: false,
                alive: false,
            }
        });
        liveness.beating = true;
    }

    /// Merges deltas received from `from` by the version rules.
    fn apply(&mut self, from: &NodeId, deltas: Vec<EndpointDelta>, now: Instant) {
        for delta in deltas {
            let node = delta.node.clone();
            if node == self.me {
                // Only this node speaks for itself, except to say that an
                // operator removed it.
                let removed = delta
                    .states
                    .iter()
                    .any(|v| v.value == StateValue::Status(Status::Removed));
                // One above the removed life (older removals did not say
                // which life they removed: then their generation's).
                let of = delta.states.iter().find_map(|v| match v.value {
                    StateValue::RemovalOf(of) => Some(of + 1),
                    _ => None,
                });
                let event = Event::RemovedSelf {
                    generation: of.unwrap_or(delta.generation),
                };
                if removed && !self.events.contains(&event) {
                    self.events.push(event);
                }
                continue;
            }
            let first_hand = &node == from;
            let detector = self.config.detector.clone();
            let (changed, beat, restarted) = match self.states.get_mut(&node) {
                None => {
                    self.states.insert(node.clone(), full_state(delta));
                    (true, true, true)
                }
                Some(local) if delta.generation > local.generation => {
                    let incoming = full_state(delta);
                    if local.status() == Status::Removed && incoming.status() != Status::Joining {
                        // Stale or forged: a removed node returns only as a
                        // new member.
                        continue;
                    }
                    *local = incoming;
                    (true, true, true)
                }
                Some(local) if delta.generation == local.generation => {
                    let mut changed = false;
                    for versioned in delta.states {
                        let key = versioned.value.key();
                        let newer = local
                            .states
                            .get(&key)
                            .is_none_or(|v| v.version < versioned.version);
                        if newer {
                            local.states.insert(key, versioned);
                            changed = true;
                        }
                    }
                    let beat = delta.heartbeat > local.heartbeat;
                    local.heartbeat = local.heartbeat.max(delta.heartbeat);
                    (changed, beat, false)
                }
                Some(_) => continue,
            };
            // A node remembered from before this node's restart has no
            // liveness yet: its first news starts it, as for a new node.
            if restarted || !self.liveness.contains_key(&node) {
                let status = self.states[&node].status();
                let liveness = Liveness {
                    window: ArrivalWindow::new(&detector),
                    // A node first learned second-hand is not alive until
                    // its heartbeat moves (or it speaks to us).
                    beating: first_hand,
                    alive: false,
                };
                let had = self.liveness.insert(node.clone(), liveness);
                if had.is_some_and(|l| l.alive) {
                    self.events.push(Event::Down(node.clone()));
                }
                if status.is_member() {
                    let liveness = self.liveness.get_mut(&node).expect("inserted");
                    liveness.window.heartbeat(now, &detector);
                }
            } else if beat && let Some(liveness) = self.liveness.get_mut(&node) {
                liveness.window.heartbeat(now, &detector);
                liveness.beating = true;
            }
            if changed {
                self.events.push(Event::Changed(node.clone()));
            }
        }
        self.update_liveness(now);
    }

    fn update_liveness(&mut self, now: Instant) {
        let paused = self
            .last_judged
            .is_some_and(|last| now.saturating_duration_since(last) > LOCAL_PAUSE);
        self.last_judged = Some(now);
        if paused {
            // This node could not hear anyone: the silence is its own.
            for liveness in self.liveness.values_mut().filter(|l| l.alive) {
                liveness.window.forgive(now);
            }
        }
        let threshold = self.config.detector.phi_threshold;
        for (node, liveness) in &mut self.liveness {
            let member = self
                .states
                .get(node)
                .is_some_and(|state| state.status().is_member());
            let alive = member
                && liveness.beating
                && liveness.window.phi(now, &self.config.detector) < threshold;
            if alive != liveness.alive {
                liveness.alive = alive;
                self.events.push(if alive {
                    Event::Up(node.clone())
                } else {
                    Event::Down(node.clone())
                });
            }
        }
    }
}

/// The state of a node learned from a delta that carries all of it.
fn full_state(delta: EndpointDelta) -> EndpointState {
    EndpointState {
        generation: delta.generation,
        heartbeat: delta.heartbeat,
        states: delta
            .states
            .into_iter()
            .map(|v| (v.value.key(), v))
            .collect(),
    }
}
