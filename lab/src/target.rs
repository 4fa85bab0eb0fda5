//! The lab's clients' way to the nodes: the simulator's workloads call
//! [`Target`], and here a target is real QUIC to real processes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use ringdb_client::transport::CallError;
use ringdb_client::{Client, ClientConfig};
use ringdb_node::network::BoxFuture;
use ringdb_proto::{ClientReply, ClientRequest};
use ringdb_ring::NodeId;
use ringdb_sim::workload::Target;

use crate::LabError;
use crate::hosts::LabState;

/// Every node of the lab, each request sent to the node the workload
/// chose (no routing, no retry: the history says which node coordinated).
pub struct LabTarget {
    client: Client,
    /// Every node's address: the lab's at the start, and the nodes that
    /// joined since.
    addresses: RwLock<BTreeMap<NodeId, SocketAddr>>,
    /// The nodes the workloads may choose; all of them by default.
    contact_points: Vec<NodeId>,
}

impl LabTarget {
    /// Connects to the lab's nodes (to any one that answers first).
    pub async fn connect(state: &LabState, ca_pem: String) -> Result<Arc<LabTarget>, LabError> {
        let addresses: BTreeMap<NodeId, SocketAddr> = state
            .nodes
            .iter()
            .map(|n| (NodeId::new(&n.name), n.client_address()))
            .collect();
        let mut config = ClientConfig::new(addresses.values().copied().collect(), ca_pem);
        config.token_aware = false;
        let client = Client::connect(config).await?;
        Ok(Arc::new(LabTarget {
            client,
            contact_points: addresses.keys().cloned().collect(),
            addresses: RwLock::new(addresses),
        }))
    }

    /// A node that joined the lab: the lab reads and repairs it (the
    /// workloads go on asking the nodes they started with).
    pub fn add(&self, node: NodeId, address: SocketAddr) {
        self.addresses
            .write()
            .expect("the addresses are not poisoned")
            .insert(node, address);
    }

    /// The client, for the lab's own requests (reading replicas, repair).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Where `node` serves clients.
    pub fn address(&self, node: &NodeId) -> Option<SocketAddr> {
        self.addresses
            .read()
            .expect("the addresses are not poisoned")
            .get(node)
            .copied()
    }

    /// The lab's nodes, those that joined included.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.addresses
            .read()
            .expect("the addresses are not poisoned")
            .keys()
            .cloned()
            .collect()
    }
}

impl Target for LabTarget {
    fn contact_points(&self) -> Vec<NodeId> {
        self.contact_points.clone()
    }

    fn call<'a>(
        &'a self,
        node: &'a NodeId,
        request: ClientRequest,
    ) -> BoxFuture<'a, Result<ClientReply, CallError>> {
        Box::pin(async move {
            let Some(address) = self.address(node) else {
                return Err(CallError::NotSent {
                    reason: format!("the lab has no node {node}"),
                });
            };
            self.client.call_node(address, request, None).await
        })
    }
}

/// A client that always asks one node: an application server on one side
/// of a partition.
pub struct Pinned {
    /// The lab.
    pub lab: Arc<LabTarget>,
    /// The node it asks.
    pub node: NodeId,
}

impl Target for Pinned {
    fn contact_points(&self) -> Vec<NodeId> {
        vec![self.node.clone()]
    }

    fn call<'a>(
        &'a self,
        node: &'a NodeId,
        request: ClientRequest,
    ) -> BoxFuture<'a, Result<ClientReply, CallError>> {
        self.lab.call(node, request)
    }
}
