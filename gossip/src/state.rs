//! What gossip spreads: each node's endpoint state, and the digests and
//! deltas that carry it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use ringdb_ring::{Location, NodeId, Token};
use serde::{Deserialize, Serialize};

/// Where a node is in its life in the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Announced its tokens and is streaming its ranges; takes writes for
    /// them (as an extra replica) but serves no reads yet.
    Joining,
    /// A full member: owns its tokens.
    Normal,
    /// Streaming its ranges to their next owners before it leaves.
    Leaving,
    /// Left the ring after a decommission; its tokens are no longer its.
    Left,
    /// Removed by an operator (`removenode`) while dead; never comes back
    /// with its old generation.
    Removed,
    /// Being removed by an operator (`removenode`) while dead: still in the
    /// ring with its tokens, never counted alive, while its ranges are
    /// copied to their next replicas, which take its ranges' writes
    /// meanwhile (as for a node leaving). Last, so that states saved before
    /// it existed decode the same.
    Removing,
}

impl Status {
    /// Whether the node is still part of the cluster (not left or removed).
    pub fn is_member(self) -> bool {
        !matches!(self, Status::Left | Status::Removed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Joining => "Joining",
            Status::Normal => "Normal",
            Status::Leaving => "Leaving",
            Status::Left => "Left",
            Status::Removed => "Removed",
            Status::Removing => "Removing",
        })
    }
}

/// The name of one application state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKey {
    /// [`StateValue::Status`].
    Status,
    /// [`StateValue::Tokens`].
    Tokens,
    /// [`StateValue::InternodeAddress`].
    InternodeAddress,
    /// [`StateValue::ClientAddress`].
    ClientAddress,
    /// [`StateValue::Location`].
    Location,
    /// [`StateValue::SchemaVersion`].
    SchemaVersion,
    /// [`StateValue::Load`].
    Load,
    /// [`StateValue::ActorEpoch`].
    ActorEpoch,
    /// [`StateValue::Damage`].
    Damage,
    /// [`StateValue::Operation`].
    Operation,
    /// [`StateValue::RemovalOf`].
    RemovalOf,
}

/// One application state's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateValue {
    /// Joining, normal, leaving, left or removed.
    Status(Status),
    /// The node's vnode tokens.
    Tokens(Vec<Token>),
    /// Where peers reach the node.
    InternodeAddress(SocketAddr),
    /// Where clients reach the node.
    ClientAddress(SocketAddr),
    /// Its datacenter and rack.
    Location(Location),
    /// The schema it has applied (a digest), so peers can tell they disagree.
    SchemaVersion(String),
    /// Bytes of data it stores, for `ringdb status`.
    Load(u64),
    /// The epoch of its current life (drawn at each start): the actor id of
    /// the writes it coordinates, whose dots are unique per epoch.
    ActorEpoch(u64),
    /// Damaged data it found on its disk and where restoring it stands,
    /// for `ringdb status`; `None`: none found.
    Damage(Option<String>),
    /// The topology operation it runs and where it stands, for `ringdb
    /// status`; `None`: none.
    Operation(Option<String>),
    /// Written by an operator's removal (`removenode`), never by the node:
    /// the generation of the node's life being removed, which its state
    /// is forced one generation above. Later steps of the removal (or its
    /// abort, and a removal asked again) stay in that generation.
    RemovalOf(u64),
}

impl StateValue {
    /// The state this value is for.
    pub fn key(&self) -> StateKey {
        match self {
            StateValue::Status(_) => StateKey::Status,
            StateValue::Tokens(_) => StateKey::Tokens,
            StateValue::InternodeAddress(_) => StateKey::InternodeAddress,
            StateValue::ClientAddress(_) => StateKey::ClientAddress,
            StateValue::Location(_) => StateKey::Location,
            StateValue::SchemaVersion(_) => StateKey::SchemaVersion,
            StateValue::Load(_) => StateKey::Load,
            StateValue::ActorEpoch(_) => StateKey::ActorEpoch,
            StateValue::Damage(_) => StateKey::Damage,
            StateValue::Operation(_) => StateKey::Operation,
            StateValue::RemovalOf(_) => StateKey::RemovalOf,
        }
    }
}

/// A value with the version its node gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// The value.
    pub value: StateValue,
    /// From the node's one counter, shared with its heartbeat: a later
    /// change has a higher version.
    pub version: u64,
}

/// Everything known about one node, within one generation of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointState {
    /// When the node's process started (microseconds since the epoch): a
    /// restarted node has a higher generation, and its state replaces the
    /// old one wholesale.
    pub generation: u64,
    /// The version of the node's last heartbeat.
    pub heartbeat: u64,
    /// Its application states by name.
    pub states: BTreeMap<StateKey, Versioned>,
}

impl EndpointState {
    /// The highest version in this state: heartbeat or application state.
    pub fn max_version(&self) -> u64 {
        self.states
            .values()
            .map(|v| v.version)
            .fold(self.heartbeat, u64::max)
    }

    /// The value of one application state, if known.
    pub fn get(&self, key: StateKey) -> Option<&StateValue> {
        self.states.get(&key).map(|v| &v.value)
    }

    /// The node's status; a node that has not said is taken as joining.
    pub fn status(&self) -> Status {
        match self.get(StateKey::Status) {
            Some(StateValue::Status(status)) => *status,
            _ => Status::Joining,
        }
    }

    /// The node's tokens (none if it has not said).
    pub fn tokens(&self) -> &[Token] {
        match self.get(StateKey::Tokens) {
            Some(StateValue::Tokens(tokens)) => tokens,
            _ => &[],
        }
    }

    /// The node's internode address, if known.
    pub fn internode_address(&self) -> Option<SocketAddr> {
        match self.get(StateKey::InternodeAddress) {
            Some(StateValue::InternodeAddress(address)) => Some(*address),
            _ => None,
        }
    }

    /// The node's client address, if known.
    pub fn client_address(&self) -> Option<SocketAddr> {
        match self.get(StateKey::ClientAddress) {
            Some(StateValue::ClientAddress(address)) => Some(*address),
            _ => None,
        }
    }

    /// The node's datacenter and rack (the defaults if it has not said).
    pub fn location(&self) -> Location {
        match self.get(StateKey::Location) {
            Some(StateValue::Location(location)) => location.clone(),
            _ => Location::default(),
        }
    }

    /// Damaged data the node reported finding, and where restoring it
    /// stands; `None`: none found (or not said).
    pub fn damage(&self) -> Option<&str> {
        match self.get(StateKey::Damage) {
            Some(StateValue::Damage(damage)) => damage.as_deref(),
            _ => None,
        }
    }

    /// The topology operation the node reported running; `None`: none.
    pub fn operation(&self) -> Option<&str> {
        match self.get(StateKey::Operation) {
            Some(StateValue::Operation(operation)) => operation.as_deref(),
            _ => None,
        }
    }

    /// Bytes of data the node reported storing.
    pub fn load(&self) -> Option<u64> {
        match self.get(StateKey::Load) {
            Some(StateValue::Load(bytes)) => Some(*bytes),
            _ => None,
        }
    }

    /// The part of this state newer than `version`, as a delta for `node`.
    pub(crate) fn delta_after(&self, node: &NodeId, version: u64) -> EndpointDelta {
        EndpointDelta {
            node: node.clone(),
            generation: self.generation,
            heartbeat: self.heartbeat,
            states: self
                .states
                .values()
                .filter(|v| v.version > version)
                .cloned()
                .collect(),
        }
    }
}

/// A summary of what a node knows about one node: enough to tell who has
/// newer state without sending the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The node described.
    pub node: NodeId,
    /// Its generation as known.
    pub generation: u64,
    /// The highest version known of it in that generation.
    pub max_version: u64,
}

/// The states of one node newer than what the receiver has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointDelta {
    /// The node described.
    pub node: NodeId,
    /// Its generation.
    pub generation: u64,
    /// Its heartbeat version (always sent: eight bytes).
    pub heartbeat: u64,
    /// The application states newer than the receiver's version.
    pub states: Vec<Versioned>,
}
