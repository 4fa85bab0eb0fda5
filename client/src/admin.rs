//! Admin requests (nodetool's): about the cluster, answered by the first
//! contact point that can be reached (`status`, `info`'s figures), or
//! about one node, sent to the first contact point alone and never to
//! another (`repair`, `cleanup`, a diagnostic read; topology operations
//! in `operations.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use ringdb_proto::{
    ClientReply, ClientRequest, NodeTool, RepairStats, RepairSummary, Report, RowAddress,
};
use ringdb_ring::TokenRange;

use crate::client::{
    ANSWER_MARGIN, Client, ClientError, ClusterStatus, ReadResult, client_error, read_result,
};
use crate::transport::CallError;

/// Which contact points an admin request may go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The first alone: the request is about that node.
    First,
    /// The first that can be reached, in order: the request is about the
    /// cluster, which any node describes.
    AnyContactPoint,
    /// This node (one that answered an earlier request).
    Address(SocketAddr),
}

impl Client {
    /// Every node the answering node knows of, as it sees them (`ringdb
    /// status`). The first contact point that can be reached answers.
    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        self.status_from(Target::AnyContactPoint).await
    }

    /// [`Client::status`] as the first contact point sees it: the node
    /// that repairs, cleanups and topology operations go to.
    pub async fn node_status(&self) -> Result<ClusterStatus, ClientError> {
        self.status_from(Target::First).await
    }

    async fn status_from(&self, target: Target) -> Result<ClusterStatus, ClientError> {
        let within = self.config.request_timeout;
        let reply = self.admin_at(target, ClientRequest::Status, within).await?;
        match reply.1 {
            ClientReply::Status {
                answered_by,
                nodes,
                replication,
                placements,
            } => Ok(ClusterStatus {
                answered_by,
                address: reply.0,
                nodes,
                replication,
                placements,
            }),
            _ => Err(ClientError::UnexpectedReply(reply.0)),
        }
    }

    /// Reads a row as the first contact point alone stores it, whatever the
    /// ring says (a diagnostic: which replica holds what).
    pub async fn local_get(&self, row: &RowAddress) -> Result<ReadResult, ClientError> {
        let request = ClientRequest::LocalGet { row: row.clone() };
        read_result(self.admin(request, self.config.request_timeout).await?)
    }

    /// Asks the first contact point to delete the rows of every range it no
    /// longer replicates (cleanup). Waits up to `within`.
    pub async fn cleanup(&self, within: Duration) -> Result<String, ClientError> {
        match self.admin(ClientRequest::Cleanup, within).await? {
            (_, ClientReply::Done { summary }) => Ok(summary),
            (node, _) => Err(ClientError::UnexpectedReply(node)),
        }
    }

    /// Asks the first contact point to compare its Merkle trees with the
    /// other replicas of `ranges` (all it replicates when empty) and repair
    /// what differs; only `table`'s rows when given. Waits up to `within`.
    pub async fn repair(
        &self,
        table: Option<&str>,
        ranges: Vec<TokenRange>,
        within: Duration,
    ) -> Result<RepairSummary, ClientError> {
        let request = ClientRequest::Repair {
            table: table.map(str::to_owned),
            ranges,
        };
        match self.admin(request, within).await? {
            (_, ClientReply::Repaired(summary)) => Ok(summary),
            (node, _) => Err(ClientError::UnexpectedReply(node)),
        }
    }

    /// Asks the first contact point an operator's question about itself
    /// (nodetool's flush, drain, describecluster, gossipinfo, …); its
    /// answer is a list of tables. Waits up to `within`.
    pub async fn nodetool(
        &self,
        request: NodeTool,
        within: Duration,
    ) -> Result<Vec<Report>, ClientError> {
        match self.admin(ClientRequest::NodeTool(request), within).await? {
            (_, ClientReply::Reports(reports)) => Ok(reports),
            (node, _) => Err(ClientError::UnexpectedReply(node)),
        }
    }

    /// The first contact point's hint and anti-entropy figures.
    pub async fn repair_stats(&self) -> Result<RepairStats, ClientError> {
        self.repair_stats_from(Target::First).await
    }

    /// The hint and anti-entropy figures of the node at `address` (one
    /// whose [`ClusterStatus::address`] answered, say).
    pub async fn repair_stats_at(&self, address: SocketAddr) -> Result<RepairStats, ClientError> {
        self.repair_stats_from(Target::Address(address)).await
    }

    async fn repair_stats_from(&self, target: Target) -> Result<RepairStats, ClientError> {
        let within = self.config.request_timeout;
        let request = ClientRequest::RepairStats;
        match self.admin_at(target, request, within).await? {
            (_, ClientReply::RepairStats(stats)) => Ok(stats),
            (node, _) => Err(ClientError::UnexpectedReply(node)),
        }
    }

    /// Sends an admin request to the first contact point only (it is about
    /// that node), never retried elsewhere.
    pub(crate) async fn admin(
        &self,
        request: ClientRequest,
        within: Duration,
    ) -> Result<(SocketAddr, ClientReply), ClientError> {
        self.admin_at(Target::First, request, within).await
    }

    /// Sends an admin request to the contact points `target` allows: the
    /// next is tried only when the request could not be sent to one (an
    /// answer, even an error or a timeout, is the answer).
    pub(crate) async fn admin_at(
        &self,
        target: Target,
        request: ClientRequest,
        within: Duration,
    ) -> Result<(SocketAddr, ClientReply), ClientError> {
        let points = &self.config.contact_points;
        let mut remaining: Vec<SocketAddr> = match target {
            Target::First => points.iter().take(1).copied().collect(),
            Target::AnyContactPoint => points.clone(),
            Target::Address(address) => vec![address],
        };
        // Nodes that could not be reached a moment ago go last.
        remaining.sort_by_key(|address| self.pool.goes_last(address));
        let mut tried = Vec::new();
        while !remaining.is_empty() {
            let (address, connection) = match self.connect_first(&remaining).await {
                Ok(found) => found,
                Err(ClientError::NoConnection { tried: failed }) => {
                    tried.extend(failed);
                    break;
                }
                Err(error) => return Err(error),
            };
            remaining.retain(|other| *other != address);
            let answer = connection
                .call_with_budget(request.clone(), within, within + ANSWER_MARGIN)
                .await;
            match answer {
                Ok(reply) => return Ok((address, reply)),
                Err(CallError::NotSent { reason }) => {
                    self.pool.forget(address, &reason);
                    tried.push((address, reason));
                }
                Err(error) => return Err(client_error(address, error, true)),
            }
        }
        Err(ClientError::NoConnection { tried })
    }
}
