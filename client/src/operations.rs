//! Topology operations a node runs as tasks of its own (decommission,
//! removenode): starting one, following it, stopping it.

use std::net::SocketAddr;
use std::time::Duration;

use ringdb_proto::{ClientReply, ClientRequest, OperationOutcome, OperationStatus, RequestError};
use ringdb_ring::NodeId;

use crate::client::{Client, ClientError};

impl Client {
    /// Decommissions the first contact point: it streams its ranges to
    /// their next owners and leaves the ring. The node runs it as a task of
    /// its own; this follows it for up to `within` and returns its summary.
    pub async fn decommission(&self, within: Duration) -> Result<String, ClientError> {
        self.start_operation(ClientRequest::Decommission).await?;
        self.finish_operation(within, |_| {}).await
    }

    /// Starts decommissioning the first contact point (or finds the same
    /// operation running) and returns where it stands at once.
    pub async fn start_operation(
        &self,
        request: ClientRequest,
    ) -> Result<OperationStatus, ClientError> {
        match self.admin(request, self.config.request_timeout).await? {
            (_, ClientReply::Operation(status)) => Ok(status),
            (node, _) => Err(ClientError::UnexpectedReply(node)),
        }
    }

    /// The topology operation the first contact point runs, or ran last;
    /// with `abort`, asks it to stop first.
    pub async fn operation(&self, abort: bool) -> Result<OperationStatus, ClientError> {
        self.start_operation(ClientRequest::Operation { abort })
            .await
    }

    /// Follows the first contact point's topology operation until it ends
    /// or `within` passes, calling `progress` each time where it stands
    /// changes; returns its final status.
    pub async fn follow_operation(
        &self,
        within: Duration,
        mut progress: impl FnMut(&OperationStatus),
    ) -> Result<OperationStatus, ClientError> {
        let give_up = tokio::time::Instant::now() + within;
        let mut last: Option<OperationStatus> = None;
        // The node may be restarting, or the network blink: keep asking a
        // while (the operation runs on regardless).
        let mut failing_since: Option<tokio::time::Instant> = None;
        loop {
            let status = match self.operation(false).await {
                Ok(status) => {
                    failing_since = None;
                    status
                }
                Err(error @ ClientError::Request(_)) => return Err(error),
                Err(error) => {
                    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= FOLLOW_PATIENCE {
                        return Err(error);
                    }
                    tokio::time::sleep(OPERATION_POLL).await;
                    continue;
                }
            };
            if last.as_ref() != Some(&status) {
                progress(&status);
            }
            if status.outcome != OperationOutcome::Running {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= give_up {
                let node = self.config.contact_points.first().copied();
                return Err(ClientError::Timeout {
                    node: node.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                    after: within,
                    write: true,
                });
            }
            last = Some(status);
            tokio::time::sleep(OPERATION_POLL).await;
        }
    }

    /// [`Client::follow_operation`], then its summary, or its error as a
    /// server error of the node.
    async fn finish_operation(
        &self,
        within: Duration,
        progress: impl FnMut(&OperationStatus),
    ) -> Result<String, ClientError> {
        let status = self.follow_operation(within, progress).await?;
        operation_result(&status)
    }

    /// Asks the first contact point to remove the dead node `node` and
    /// restore its ranges' replicas (a task of that node); follows it for
    /// up to `within` and returns its summary.
    pub async fn remove_node(
        &self,
        node: &NodeId,
        within: Duration,
    ) -> Result<String, ClientError> {
        self.start_operation(ClientRequest::RemoveNode { node: node.clone() })
            .await?;
        self.finish_operation(within, |_| {}).await
    }
}

/// How often a followed topology operation is asked where it stands.
const OPERATION_POLL: Duration = Duration::from_millis(500);
/// How long following goes on asking a node that does not answer.
const FOLLOW_PATIENCE: Duration = Duration::from_secs(15);

/// An ended operation's summary, or its error.
pub fn operation_result(status: &OperationStatus) -> Result<String, ClientError> {
    let failed = |reason: String| {
        Err(ClientError::Request(RequestError::Server {
            node: status.node.clone(),
            reason,
        }))
    };
    match &status.outcome {
        OperationOutcome::Succeeded { summary } => Ok(summary.clone()),
        OperationOutcome::Failed { error } => failed(format!("{} failed: {error}", status.kind)),
        OperationOutcome::Aborted { summary } => {
            failed(format!("{} was aborted: {summary}", status.kind))
        }
        OperationOutcome::Running => failed(format!("{} is still running", status.kind)),
    }
}
