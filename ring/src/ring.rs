//! The ring: which node owns which vnode tokens, and where a token's replicas are.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::RingError;
use crate::placement::{Replication, Selection};
use crate::range::TokenRange;
use crate::token::Token;

/// A node's stable name in the cluster (from its configuration and certificate).
///
/// Cheap to clone: replica lists are built on every request.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// A node id from its name.
    pub fn new(name: impl AsRef<str>) -> NodeId {
        NodeId(Arc::from(name.as_ref()))
    }

    /// The node's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NodeId, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(NodeId(Arc::from(name)))
    }
}

/// Where a node runs: its datacenter and rack, for rack- and datacenter-aware placement.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    /// The datacenter's name (Cassandra's default is `datacenter1`).
    pub datacenter: String,
    /// The rack's name within the datacenter (Cassandra's default is `rack1`).
    pub rack: String,
}

impl Default for Location {
    fn default() -> Location {
        Location {
            datacenter: "datacenter1".into(),
            rack: "rack1".into(),
        }
    }
}

/// One member of the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its datacenter and rack.
    pub location: Location,
    /// Its vnode tokens, sorted.
    pub tokens: Vec<Token>,
}

/// The ring: members and their vnode tokens. Pure data; placement queries are
/// read-only and cheap, changes rebuild a sorted token index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    members: BTreeMap<NodeId, Member>,
    /// Every vnode token with the index of its owner in `ids`, sorted by token.
    index: Vec<(Token, u32)>,
    /// The members' ids in order; `index` refers to them by position.
    ids: Vec<NodeId>,
    /// Datacenters and racks as small integers, for placement.
    topology: Topology,
}

/// The ring's datacenters and racks, numbered once per change so that
/// placement compares integers instead of names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Topology {
    /// Per member (by position in `ids`): its datacenter and rack numbers. A
    /// rack number names a (datacenter, rack) pair.
    pub(crate) positions: Vec<(u32, u32)>,
    /// Datacenter names; a datacenter's number is its index.
    pub(crate) datacenters: Vec<String>,
    /// Per datacenter: (members, distinct racks).
    pub(crate) datacenter_sizes: Vec<(usize, usize)>,
    /// Distinct (datacenter, rack) pairs in the ring.
    pub(crate) racks: usize,
}

impl Ring {
    /// An empty ring.
    pub fn new() -> Ring {
        Ring::default()
    }

    /// Adds a node with the given tokens. Fails if the node is already a
    /// member, has no tokens, or a token is taken.
    pub fn add_node(
        &mut self,
        id: NodeId,
        location: Location,
        mut tokens: Vec<Token>,
    ) -> Result<(), RingError> {
        if self.members.contains_key(&id) {
            return Err(RingError::DuplicateNode { node: id });
        }
        if tokens.is_empty() {
            return Err(RingError::NoTokens { node: id });
        }
        tokens.sort_unstable();
        tokens.dedup();
        for &token in &tokens {
            if let Ok(position) = self.index.binary_search_by_key(&token, |&(t, _)| t) {
                let owner = self.ids[self.index[position].1 as usize].clone();
                return Err(RingError::TokenTaken { token, owner });
            }
        }
        self.members.insert(id, Member { location, tokens });
        self.rebuild_index();
        Ok(())
    }

    /// Allocates balanced tokens for `id` (see [`Ring::allocate_tokens`]) and adds it.
    pub fn join(
        &mut self,
        id: NodeId,
        location: Location,
        num_tokens: usize,
        replication_factor: usize,
    ) -> Result<Vec<Token>, RingError> {
        let tokens = self.allocate_tokens(num_tokens, replication_factor);
        self.add_node(id, location, tokens.clone())?;
        Ok(tokens)
    }

    /// Removes a node and its tokens; returns it if it was a member.
    pub fn remove_node(&mut self, id: &NodeId) -> Option<Member> {
        let removed = self.members.remove(id);
        if removed.is_some() {
            self.rebuild_index();
        }
        removed
    }

    fn rebuild_index(&mut self) {
        self.ids = self.members.keys().cloned().collect();
        self.index = self
            .members
            .values()
            .enumerate()
            .flat_map(|(i, m)| m.tokens.iter().map(move |&t| (t, i as u32)))
            .collect();
        self.index.sort_unstable_by_key(|&(t, _)| t);

        fn number<T: PartialEq>(list: &mut Vec<T>, item: T) -> u32 {
            let at = list.iter().position(|x| *x == item).unwrap_or_else(|| {
                list.push(item);
                list.len() - 1
            });
            at as u32
        }
        let mut racks: Vec<(&str, &str)> = Vec::new();
        let mut datacenters: Vec<&str> = Vec::new();
        let positions: Vec<(u32, u32)> = self
            .members
            .values()
            .map(|m| {
                let (dc, rack) = (m.location.datacenter.as_str(), m.location.rack.as_str());
                (number(&mut datacenters, dc), number(&mut racks, (dc, rack)))
            })
            .collect();
        let datacenter_sizes = (0..datacenters.len() as u32)
            .map(|d| {
                let members = positions.iter().filter(|p| p.0 == d).count();
                let dc = datacenters[d as usize];
                (members, racks.iter().filter(|r| r.0 == dc).count())
            })
            .collect();
        self.topology = Topology {
            datacenters: datacenters.into_iter().map(String::from).collect(),
            racks: racks.len(),
            positions,
            datacenter_sizes,
        };
    }

    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The members, by id.
    pub fn members(&self) -> &BTreeMap<NodeId, Member> {
        &self.members
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the ring has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every vnode token with its owner, in token order.
    pub fn tokens(&self) -> impl Iterator<Item = (Token, &NodeId)> + '_ {
        self.index.iter().map(|&(t, i)| (t, &self.ids[i as usize]))
    }

    /// The sorted token index (token, owner position), for the allocator.
    pub(crate) fn index(&self) -> &[(Token, u32)] {
        &self.index
    }

    /// The member ids in the order `index` refers to them.
    pub(crate) fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// The position in the token index of the vnode that is the primary owner
    /// of `token`: the first vnode token ≥ `token`, wrapping around.
    fn primary_position(&self, token: Token) -> usize {
        let position = self.index.partition_point(|&(t, _)| t < token);
        if position == self.index.len() {
            0
        } else {
            position
        }
    }

    /// The node that is the primary owner of `token`.
    pub fn primary(&self, token: Token) -> Option<&NodeId> {
        if self.index.is_empty() {
            return None;
        }
        Some(&self.ids[self.index[self.primary_position(token)].1 as usize])
    }

    /// The replicas of `token`, in preference order: the first distinct nodes
    /// clockwise from the token, as `replication` selects them. Has
    /// min(replication factor, eligible nodes) entries.
    pub fn replicas(&self, token: Token, replication: &Replication) -> Vec<NodeId> {
        if self.index.is_empty() {
            return Vec::new();
        }
        let start = self.primary_position(token);
        self.replicas_from(start, replication)
    }

    /// The replicas of the vnode range ending at index position `start`.
    fn replicas_from(&self, start: usize, replication: &Replication) -> Vec<NodeId> {
        let mut selection = Selection::new(self, replication);
        let n = self.index.len();
        for step in 0..n {
            let owner = self.index[(start + step) % n].1 as usize;
            if selection.offer(owner) {
                break;
            }
        }
        selection
            .into_replicas()
            .into_iter()
            .map(|i| self.ids[i].clone())
            .collect()
    }

    /// The fallback list of `token`: every other node, in the order met walking
    /// clockwise past the replicas. Hinted handoff picks from its front.
    pub fn fallbacks(&self, token: Token, replication: &Replication) -> Vec<NodeId> {
        let replicas = self.replicas(token, replication);
        let mut fallbacks: Vec<NodeId> = Vec::new();
        if self.index.is_empty() {
            return fallbacks;
        }
        let start = self.primary_position(token);
        let n = self.index.len();
        for step in 0..n {
            let owner = &self.ids[self.index[(start + step) % n].1 as usize];
            if !replicas.contains(owner) && !fallbacks.contains(owner) {
                fallbacks.push(owner.clone());
            }
        }
        fallbacks
    }

    /// Every vnode's range `(previous token, token]` with its primary owner, in
    /// token order. A ring with one token has one range: the whole ring.
    pub fn vnode_ranges(&self) -> impl Iterator<Item = (TokenRange, &NodeId)> + '_ {
        let n = self.index.len();
        (0..n).map(move |i| {
            let start = self.index[(i + n - 1) % n].0;
            let (end, owner) = self.index[i];
            (TokenRange::new(start, end), &self.ids[owner as usize])
        })
    }

    /// Every vnode range with its replicas, in token order.
    pub fn replicated_ranges(&self, replication: &Replication) -> Vec<(TokenRange, Vec<NodeId>)> {
        self.vnode_ranges()
            .enumerate()
            .map(|(i, (range, _))| (range, self.replicas_from(i, replication)))
            .collect()
    }

    /// The vnode ranges `node` replicates, in token order.
    pub fn ranges_of(&self, node: &NodeId, replication: &Replication) -> Vec<TokenRange> {
        self.replicated_ranges(replication)
            .into_iter()
            .filter(|(_, replicas)| replicas.contains(node))
            .map(|(range, _)| range)
            .collect()
    }

    /// Each member's share of the data it replicates, as a fraction of the ring
    /// (summing to the replication factor when there are enough nodes).
    pub fn ownership(&self, replication: &Replication) -> BTreeMap<NodeId, f64> {
        let mut shares: BTreeMap<NodeId, f64> =
            self.members.keys().map(|id| (id.clone(), 0.0)).collect();
        for (range, replicas) in self.replicated_ranges(replication) {
            for replica in replicas {
                *shares.get_mut(&replica).expect("replicas are members") += range.fraction();
            }
        }
        shares
    }
}
