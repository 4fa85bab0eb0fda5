//! The handle every service of a node shares: who the node is, its data,
//! its peers, its view of the cluster, its settings and its clock.
//!
//! The coordinator and each service (hinted handoff, anti-entropy,
//! cleanup, topology changes) are a [`Replica`] plus the state that is
//! their own; they reach each other's state only where the node wires it
//! in (`node.rs`), and the dispatcher (`dispatch.rs`) routes each request
//! to the service that owns it. None of them takes the whole node, so the
//! modules form layers: `replica` under the services, the services under
//! the dispatcher.

use std::sync::Arc;

use ringdb_gossip::{StateKey, StateValue};
use ringdb_proto::{ClusterSettings, RequestError, TableId};
use ringdb_ring::{NodeId, Replication, Ring, Token};

use crate::config::{AntiEntropyConfig, RequestConfig, StreamingConfig};
use crate::membership::{GossipHandle, Membership};
use crate::network::Network;
use crate::placement::Placement;
use crate::storage::{Storage, StorageError};
use crate::world::{Clock, Random};

/// A node as its services see it.
pub(crate) struct Replica {
    pub(crate) me: NodeId,
    pub(crate) generation: u64,
    pub(crate) storage: Arc<Storage>,
    pub(crate) peers: Arc<dyn Network>,
    pub(crate) membership: Arc<Membership>,
    pub(crate) gossip: GossipHandle,
    /// The cluster's replication (`cluster.*` in the configuration).
    pub(crate) replication: Replication,
    /// The replication of each table's keyspace (`placement.rs`).
    pub(crate) placement: Arc<Placement>,
    /// The settings every node of the cluster must share.
    pub(crate) settings: ClusterSettings,
    pub(crate) limits: RequestConfig,
    pub(crate) streaming: StreamingConfig,
    pub(crate) antientropy: AntiEntropyConfig,
    /// Wall time.
    pub(crate) clock: Arc<dyn Clock>,
    /// Random numbers.
    pub(crate) random: Arc<Random>,
}

impl Replica {
    /// Now, in microseconds since the Unix epoch, by this node's clock.
    pub(crate) fn now_micros(&self) -> i64 {
        self.clock.now_micros()
    }

    /// Whether `node` counts as alive: the failure detector says so and a
    /// connection to it is up.
    pub(crate) fn is_up(&self, node: &NodeId) -> bool {
        self.membership.view().is_up(node) && self.peers.is_alive(node)
    }

    /// Whether this node replicates `table`'s rows of `token` in its view
    /// of the ring, now or once the topology change in progress completes.
    pub(crate) fn replicates(&self, table: TableId, token: Token) -> bool {
        let replication = self.placement.of(table);
        let view = self.membership.view();
        let mine = |ring: &Ring| ring.replicas(token, &replication).contains(&self.me);
        mine(&view.ring) || view.future.as_ref().is_some_and(mine)
    }

    /// Why a change that needs every table's placement must wait for the
    /// schema, if it must: a live node holding another schema version may
    /// know a keyspace placed otherwise than this node thinks, and rows of
    /// a table this node does not know yet are counted in the cluster's
    /// group here.
    pub(crate) fn schema_disagreement(&self) -> Option<String> {
        let mine = self.membership.view().nodes.get(&self.me).and_then(|node| {
            match node.state.get(StateKey::SchemaVersion) {
                Some(StateValue::SchemaVersion(version)) => Some(version.clone()),
                _ => None,
            }
        });
        let (differs, _) = self
            .schema_differing(&mine.unwrap_or_default())
            .into_iter()
            .next()?;
        Some(format!(
            "{differs} holds another schema version than {}: wait for the schemas to agree \
             (`DESCRIBE CLUSTER` shows them)",
            self.me
        ))
    }

    /// The live peers whose gossiped schema version is not `mine`, with
    /// theirs.
    pub(crate) fn schema_differing(&self, mine: &str) -> Vec<(NodeId, String)> {
        let view = self.membership.view();
        (view.nodes.iter())
            .filter(|(id, node)| **id != self.me && node.up)
            .filter_map(|(id, node)| match node.state.get(StateKey::SchemaVersion) {
                Some(StateValue::SchemaVersion(theirs)) if theirs != mine => {
                    Some((id.clone(), theirs.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// A [`RequestError::Server`] of this node.
    pub(crate) fn server_error(&self, reason: impl Into<String>) -> RequestError {
        RequestError::Server {
            node: self.me.clone(),
            reason: reason.into(),
        }
    }

    /// This node's answer while it holds damaged data.
    pub(crate) fn damaged(&self, detail: &str) -> RequestError {
        RequestError::DamagedData {
            node: self.me.clone(),
            detail: detail.to_owned(),
        }
    }

    /// Runs a short storage call ([`Storage::call`]), turning its error
    /// into the one a client can act on.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Storage) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, RequestError> {
        match self.storage.call(work).await {
            Ok(value) => Ok(value),
            // A write over the row's limits: nothing was stored.
            Err(
                error @ (StorageError::TooManySiblings { .. }
                | StorageError::RowTooLarge { .. }
                | StorageError::RowTwice
                | StorageError::WriteTooLarge { .. }),
            ) => Err(RequestError::invalid(error.to_string())),
            Err(error) if self.storage.note_damage(&error) => Err(self.damaged(&error.to_string())),
            Err(error @ StorageError::Restoring { .. }) => Err(self.damaged(&error.to_string())),
            Err(error) => Err(self.server_error(error.to_string())),
        }
    }
}
