//! What a node remembers of the cluster across restarts, in its data
//! directory: the generation of its last life, and the durable part of its
//! view of every other node (Cassandra keeps the same in `system.local` and
//! `system.peers`).
//!
//! Gossip lives in memory, so without this a node restarted with every
//! other node would know only its seeds: a removal or a departure would be
//! forgotten (a removed node that comes back with its old data would be
//! taken back in), and nodes whose only seed has left could not find each
//! other. So the gossip task saves, whenever it changes, each known node's
//! generation, status, tokens, addresses and location (not its load or
//! heartbeat), and [`Node::start`](crate::Node::start) gives them back to
//! the gossiper before the first round, through
//! [`Gossiper::remember`](ringdb_gossip::Gossiper::remember). Anything newer
//! heard from the cluster then replaces them by the usual version rules.
//!
//! The generation orders a node's lives: peers ignore state from a lower
//! one. It is the start time in microseconds, as in Cassandra, but never
//! less than the last one plus one ([`next_generation`]): a node restarted
//! with its clock behind would otherwise be ignored by its peers until the
//! clock caught up.
//!
//! A removal (`removenode`) is gossiped in the generation one above the
//! removed life's, and the data directory keeps the generation of each of
//! its lives: so a node tells a removal of its own data (it stops for
//! good) from one of an earlier data directory under the same id, wiped
//! or replaced since, whatever the clocks said ([`removal_is_of_this_data`]).
//! A node whose generation is not above such an earlier removal (its clock
//! is behind the removed life's start) is ignored by peers: it stops, saying
//! so, and its next start is above it ([`raise_generation_above`]).
//!
//! It also keeps when it first saw each node leave the ring or be removed
//! ([`Departures`], by its own clock): `ringdb status` hides nodes gone
//! for three days, as Cassandra's gossip forgets them. That time is this
//! node's alone and never gossiped, so nodes of an older version (in a
//! rolling upgrade) are not sent a state they cannot read, and an older
//! binary started on this data ignores the field.

use std::collections::BTreeMap;
use std::sync::Arc;

use ringdb_gossip::{EndpointState, StateKey, Status};
use ringdb_ring::NodeId;
use serde::{Deserialize, Serialize};

use crate::storage::{Storage, StorageError};
use crate::world::Clock;

/// The metadata key of the generation of this node's last life.
const GENERATION_KEY: &str = "generation";
/// The metadata key of the generation of the first life of this data
/// directory (before [`LIVES_KEY`] was kept, a removal above it was taken
/// as about this data).
const BORN_KEY: &str = "born_generation";
/// The metadata key of the generations of every life of this data
/// directory since they were recorded: a removal names the life it
/// removed exactly (one above its generation), so a removal of another
/// data directory's life under the same id is told apart whatever the
/// clocks said.
const LIVES_KEY: &str = "lives";
/// The metadata key of the nodes this node knew.
const PEERS_KEY: &str = "known_peers";
/// The format of what [`PEERS_KEY`] holds.
const PEERS_FORMAT: u8 = 1;

/// The states kept: what places a node in the ring and reaches it.
const DURABLE: [StateKey; 6] = [
    StateKey::Status,
    StateKey::Tokens,
    StateKey::InternodeAddress,
    StateKey::ClientAddress,
    StateKey::Location,
    // Which life an operator's removal is of: a removal resumed after a
    // restart stays in its generation, and the node knows the removal is
    // its own.
    StateKey::RemovalOf,
];

/// The nodes a node knew, as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KnownPeers {
    format: u8,
    nodes: BTreeMap<NodeId, EndpointState>,
    /// [`Departures::seen`]; absent from what older versions saved.
    #[serde(default)]
    departed: BTreeMap<NodeId, i64>,
}

impl KnownPeers {
    /// The durable part of `states`, without `me`, and `departures`.
    pub(crate) fn from_states(
        me: &NodeId,
        states: &BTreeMap<NodeId, EndpointState>,
        departures: &Departures,
    ) -> Self {
        let nodes = states
            .iter()
            .filter(|(node, _)| *node != me)
            .map(|(node, state)| {
                let durable = EndpointState {
                    generation: state.generation,
                    heartbeat: 0,
                    states: state
                        .states
                        .iter()
                        .filter(|(key, _)| DURABLE.contains(key))
                        .map(|(key, value)| (*key, value.clone()))
                        .collect(),
                };
                (node.clone(), durable)
            })
            .collect();
        KnownPeers {
            format: PEERS_FORMAT,
            nodes,
            departed: departures.seen.clone(),
        }
    }

    /// The nodes, with their states, and when this node saw departures.
    pub(crate) fn into_parts(self) -> (BTreeMap<NodeId, EndpointState>, BTreeMap<NodeId, i64>) {
        (self.nodes, self.departed)
    }
}

/// When this node first saw each node that left the ring or was removed
/// (microseconds since the Unix epoch, by its clock).
pub(crate) struct Departures {
    seen: BTreeMap<NodeId, i64>,
    clock: Arc<dyn Clock>,
}

impl Departures {
    /// The departures saved before, timed by `clock` from now on.
    pub(crate) fn new(seen: BTreeMap<NodeId, i64>, clock: Arc<dyn Clock>) -> Departures {
        Departures { seen, clock }
    }

    /// Notes now the nodes of `states` that have departed and were not
    /// noted; forgets those that are members again (a new life).
    pub(crate) fn note(&mut self, states: &BTreeMap<NodeId, EndpointState>) {
        for (node, state) in states {
            if state.status().is_member() {
                self.seen.remove(node);
            } else if !self.seen.contains_key(node) {
                debug_assert!(matches!(state.status(), Status::Left | Status::Removed));
                self.seen.insert(node.clone(), self.clock.now_micros());
            }
        }
    }

    /// When `node` was first seen departed, if it was.
    pub(crate) fn of(&self, node: &NodeId) -> Option<i64> {
        self.seen.get(node).copied()
    }
}

/// What this node knew of the others when it last ran (none at the first
/// start).
pub(crate) fn load(storage: &Storage) -> Result<KnownPeers, StorageError> {
    let Some(bytes) = storage.get_meta(PEERS_KEY)? else {
        return Ok(KnownPeers {
            format: PEERS_FORMAT,
            nodes: BTreeMap::new(),
            departed: BTreeMap::new(),
        });
    };
    let corrupt = |detail: String| StorageError::Corrupt {
        what: "known peers",
        detail,
    };
    let known: KnownPeers = rmp_serde::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if known.format != PEERS_FORMAT {
        return Err(corrupt(format!("unknown format {}", known.format)));
    }
    Ok(known)
}

/// Saves what this node knows of the others. Blocks on the disk.
pub(crate) fn save(storage: &Storage, known: &KnownPeers) -> Result<(), StorageError> {
    let bytes = rmp_serde::to_vec_named(known).expect("known peers encode");
    storage.put_meta(PEERS_KEY, &bytes)
}

/// The generation of this life of the node: `now_micros`, or one more than
/// the last life's when the clock is behind it; saved before it is used.
pub(crate) fn next_generation(storage: &Storage, now_micros: u64) -> Result<u64, StorageError> {
    let last = read_u64(storage, GENERATION_KEY, "generation")?.unwrap_or(0);
    let generation = now_micros.max(last.saturating_add(1));
    if storage.get_meta(BORN_KEY)?.is_none() {
        storage.put_meta(BORN_KEY, &generation.to_be_bytes())?;
    }
    let mut lives = lives(storage)?;
    lives.push(generation);
    let bytes = rmp_serde::to_vec(&lives).expect("generations encode");
    storage.put_meta(LIVES_KEY, &bytes)?;
    storage.put_meta(GENERATION_KEY, &generation.to_be_bytes())?;
    Ok(generation)
}

/// The generation of this data directory's first life (0 for one made
/// before it was recorded: every removal is then taken as about it).
pub(crate) fn born_generation(storage: &Storage) -> Result<u64, StorageError> {
    Ok(read_u64(storage, BORN_KEY, "born generation")?.unwrap_or(0))
}

/// The generations of this data directory's lives, oldest first, since
/// they were recorded.
fn lives(storage: &Storage) -> Result<Vec<u64>, StorageError> {
    let Some(bytes) = storage.get_meta(LIVES_KEY)? else {
        return Ok(Vec::new());
    };
    rmp_serde::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
        what: "lives",
        detail: e.to_string(),
    })
}

/// Whether a removal of this node's id in generation `removal` (one above
/// the generation of the life removed) removed a life of this data
/// directory, rather than of an earlier one with the same id (wiped, or
/// replaced, since).
pub(crate) fn removal_is_of_this_data(
    storage: &Storage,
    removal: u64,
) -> Result<bool, StorageError> {
    let removed = removal.saturating_sub(1);
    let lives = lives(storage)?;
    if lives.contains(&removed) {
        return Ok(true);
    }
    // A life from before the lives were recorded: after the birth.
    let recorded = lives.first().copied().unwrap_or(u64::MAX);
    Ok(removed < recorded && removal > born_generation(storage)?)
}

/// Makes the next life's generation above `removal`: an earlier data
/// directory's life under this id was removed in it, and peers ignore
/// this id's states at or below it.
pub(crate) fn raise_generation_above(storage: &Storage, removal: u64) -> Result<(), StorageError> {
    let last = read_u64(storage, GENERATION_KEY, "generation")?.unwrap_or(0);
    storage.put_meta(GENERATION_KEY, &last.max(removal).to_be_bytes())
}

/// A metadata value that holds a big-endian `u64`, if it is set.
fn read_u64(storage: &Storage, key: &str, what: &'static str) -> Result<Option<u64>, StorageError> {
    let Some(bytes) = storage.get_meta(key)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StorageError::Corrupt {
            what,
            detail: format!("{} bytes, not 8", bytes.len()),
        })?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageConfig;
    use ringdb_gossip::{StateValue, Status, Versioned};

    fn open(dir: &std::path::Path) -> Storage {
        Storage::open(dir, &StorageConfig::default()).expect("open")
    }

    #[test]
    fn a_generation_only_grows_whatever_the_clock_says() {
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path());
        assert_eq!(born_generation(&storage).unwrap(), 0);
        assert_eq!(next_generation(&storage, 1_000).unwrap(), 1_000);
        assert_eq!(born_generation(&storage).unwrap(), 1_000);
        // The clock went back an hour: the generation still grows.
        assert_eq!(next_generation(&storage, 500).unwrap(), 1_001);
        drop(storage);
        let storage = open(dir.path());
        assert_eq!(next_generation(&storage, 700).unwrap(), 1_002);
        assert_eq!(next_generation(&storage, 5_000).unwrap(), 5_000);
        assert_eq!(born_generation(&storage).unwrap(), 1_000, "born once");
    }

    #[test]
    fn a_removal_names_the_life_it_removed_whatever_the_clocks_said() {
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path());
        // An earlier data directory under this id lived at 5_000 and was
        // removed (5_001); this one is born with a clock behind it.
        let first = next_generation(&storage, 1_000).unwrap();
        assert!(!removal_is_of_this_data(&storage, 5_001).unwrap());
        assert!(removal_is_of_this_data(&storage, first + 1).unwrap());
        // Its peers ignore it below the removal: its next life is above.
        raise_generation_above(&storage, 5_001).unwrap();
        let second = next_generation(&storage, 1_200).unwrap();
        assert_eq!(second, 5_002);
        assert!(!removal_is_of_this_data(&storage, 5_001).unwrap());
        // Removed while down in its first life, it comes back: still it.
        assert!(removal_is_of_this_data(&storage, first + 1).unwrap());
        assert!(removal_is_of_this_data(&storage, second + 1).unwrap());
        assert!(!removal_is_of_this_data(&storage, 3_000).unwrap());
    }

    #[test]
    fn a_data_directory_from_before_lives_were_kept_goes_by_its_birth() {
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path());
        storage.put_meta(BORN_KEY, &1_000u64.to_be_bytes()).unwrap();
        storage
            .put_meta(GENERATION_KEY, &2_000u64.to_be_bytes())
            .unwrap();
        next_generation(&storage, 3_000).unwrap();
        assert!(removal_is_of_this_data(&storage, 1_501).unwrap());
        assert!(removal_is_of_this_data(&storage, 3_001).unwrap());
        assert!(!removal_is_of_this_data(&storage, 900).unwrap());
    }

    #[test]
    fn the_durable_part_of_the_view_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let me = NodeId::new("node1");
        let other = NodeId::new("node2");
        let state = |generation| {
            let mut states = BTreeMap::new();
            for (version, value) in [
                StateValue::Status(Status::Removed),
                StateValue::Load(77),
                StateValue::ClientAddress("127.0.0.1:9042".parse().unwrap()),
            ]
            .into_iter()
            .enumerate()
            {
                let versioned = Versioned {
                    value,
                    version: version as u64 + 1,
                };
                states.insert(versioned.value.key(), versioned);
            }
            EndpointState {
                generation,
                heartbeat: 40,
                states,
            }
        };
        let states = BTreeMap::from([(me.clone(), state(1)), (other.clone(), state(9))]);
        let storage = open(dir.path());
        assert!(load(&storage).unwrap().into_parts().0.is_empty());
        struct At(i64);
        impl Clock for At {
            fn now_micros(&self) -> i64 {
                self.0
            }
        }
        let clock = Arc::new(At(1_000));
        let mut departures = Departures::new(BTreeMap::new(), clock);
        departures.note(&states);
        save(
            &storage,
            &KnownPeers::from_states(&me, &states, &departures),
        )
        .unwrap();
        drop(storage);
        let (nodes, departed) = load(&open(dir.path())).unwrap().into_parts();
        // Both were removed in this test's states: when they were seen
        // gone is kept (this node's own too).
        assert_eq!(
            departed,
            BTreeMap::from([(me.clone(), 1_000), (other.clone(), 1_000)])
        );
        assert_eq!(nodes.keys().collect::<Vec<_>>(), [&other]);
        let kept = &nodes[&other];
        assert_eq!(kept.generation, 9);
        assert_eq!(kept.status(), Status::Removed);
        assert_eq!(kept.load(), None, "the load is not kept");
        assert!(kept.client_address().is_some());
    }
}
