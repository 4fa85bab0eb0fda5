//! Topology operations as tasks of the node that runs them.
//!
//! `decommission` and `removenode` move data for minutes or hours. They
//! run as a task of the node, not of the request that asked for them: the
//! command that started one may go away (a closed laptop, a Ctrl-C) and
//! the operation goes on. The command follows it by asking where it
//! stands ([`ClientRequest::Operation`](ringdb_proto::ClientRequest)),
//! and can reattach (`--follow`) or stop it (`--abort`). Where it stands
//! is also gossiped, so `ringdb status` on any node shows it.
//!
//! One operation at a time per node. Asking again for the running one
//! attaches to it. A decommission can be aborted until it starts to leave
//! (the node goes back to normal); a removal can be aborted while it
//! restores (the node stays removed) and asked for again to finish, and it
//! resumes by itself when the node that ran it restarts (its plan is kept
//! in the data directory, see `topology::removal`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use ringdb_gossip::StateValue;
use ringdb_proto::{OperationOutcome, OperationStatus, RequestError};
use ringdb_ring::NodeId;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::replica::Replica;

/// The operations a node runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Leave the ring, handing every range over.
    Decommission,
    /// Remove a dead node and restore its ranges' replicas.
    RemoveNode(NodeId),
}

/// The node's running (or last) operation.
pub(crate) struct Operations {
    replica: Arc<Replica>,
    current: Mutex<Option<Current>>,
    /// The node's: an operation stops with the node.
    node: CancellationToken,
}

struct Current {
    kind: Kind,
    status: OperationStatus,
    abort: CancellationToken,
    /// Whether `--abort` may still stop it.
    abortable: bool,
}

/// An operation's work; its summary when it succeeds.
pub(crate) type Job = Pin<Box<dyn Future<Output = Result<String, RequestError>> + Send>>;
/// What undoing an aborted operation does; its summary.
pub(crate) type Undo = Pin<Box<dyn Future<Output = String> + Send>>;

impl Operations {
    /// No operation yet; operations stop when `node` is cancelled.
    pub(crate) fn new(replica: Arc<Replica>, node: CancellationToken) -> Operations {
        Operations {
            replica,
            current: Mutex::new(None),
            node,
        }
    }

    /// The running operation, if one is.
    pub(crate) fn running(&self) -> Option<(Kind, OperationStatus)> {
        let current = self.current.lock().expect("operations");
        current
            .as_ref()
            .filter(|c| c.status.outcome == OperationOutcome::Running)
            .map(|c| (c.kind.clone(), c.status.clone()))
    }

    /// The running or last operation's status.
    pub(crate) fn status(&self) -> Option<OperationStatus> {
        let current = self.current.lock().expect("operations");
        current.as_ref().map(|c| c.status.clone())
    }

    /// The running or last operation, or why there is none.
    pub(crate) fn last(&self) -> Result<OperationStatus, RequestError> {
        self.status().ok_or_else(|| self.no_operation())
    }

    /// The node's cancellation: operations stop with the node.
    pub(crate) fn node(&self) -> &CancellationToken {
        &self.node
    }

    fn no_operation(&self) -> RequestError {
        RequestError::invalid(format!(
            "{} has run no decommission or removenode since it started",
            self.replica.me
        ))
    }

    fn describe(&self, kind: &Kind) -> String {
        match kind {
            Kind::Decommission => format!("decommission {}", self.replica.me),
            Kind::RemoveNode(node) => format!("removenode {node}"),
        }
    }

    /// Runs `job` as `kind`, a task of the node, unless another operation
    /// runs (the same one: its status). `undo` is what an abort does.
    pub(crate) fn launch(
        self: &Arc<Self>,
        kind: Kind,
        job: Job,
        undo: Undo,
    ) -> Result<OperationStatus, RequestError> {
        let abort = self.node.child_token();
        let status = OperationStatus {
            node: self.replica.me.clone(),
            kind: self.describe(&kind),
            started_micros: self.replica.now_micros(),
            progress: "starting".into(),
            outcome: OperationOutcome::Running,
        };
        {
            let mut current = self.current.lock().expect("operations");
            // Checked by the caller too; two requests at once: the later
            // one loses (and is told the running one, which it then
            // follows, when it is the same operation).
            if let Some(running) = current
                .as_ref()
                .filter(|c| c.status.outcome == OperationOutcome::Running)
            {
                if running.kind == kind {
                    return Ok(running.status.clone());
                }
                return Err(RequestError::invalid(format!(
                    "{} is running {}: follow it with --follow, or stop it with --abort",
                    self.replica.me, running.status.kind
                )));
            }
            *current = Some(Current {
                kind,
                status: status.clone(),
                abort: abort.clone(),
                abortable: true,
            });
        }
        info!(operation = %status.kind, "topology operation started");
        tokio::spawn(self.clone().run(job, undo, abort));
        Ok(status)
    }

    async fn run(self: Arc<Self>, job: Job, undo: Undo, abort: CancellationToken) {
        let outcome = tokio::select! {
            // An abort that came with the job's end wins: the job, seeing
            // it, stopped short of anything `undo` cannot undo.
            biased;
            () = abort.cancelled() => {
                let summary = if self.node.is_cancelled() {
                    "the node stopped".to_string()
                } else {
                    undo.await
                };
                OperationOutcome::Aborted { summary }
            }
            outcome = job => match outcome {
                Ok(summary) => OperationOutcome::Succeeded { summary },
                Err(error) => OperationOutcome::Failed { error: error.to_string() },
            },
        };
        match &outcome {
            OperationOutcome::Succeeded { summary } => info!(%summary, "topology operation done"),
            other => warn!(outcome = ?other, "topology operation stopped"),
        }
        if let Some(current) = self.current.lock().expect("operations").as_mut() {
            current.status.outcome = outcome;
        }
        self.replica
            .gossip
            .set_state(StateValue::Operation(None))
            .await;
    }

    /// Asks the running operation to stop; refused once it cannot be undone.
    pub(crate) fn abort(&self) -> Result<OperationStatus, RequestError> {
        let current = self.current.lock().expect("operations");
        let Some(current) = current.as_ref() else {
            return Err(self.no_operation());
        };
        if current.status.outcome != OperationOutcome::Running {
            return Ok(current.status.clone());
        }
        if !current.abortable {
            return Err(RequestError::invalid(format!(
                "{} cannot be aborted any more: {}",
                current.status.kind, current.status.progress
            )));
        }
        current.abort.cancel();
        Ok(current.status.clone())
    }

    /// Records where the running operation stands (and gossips it).
    pub(crate) async fn progress(&self, progress: String) {
        let kind = {
            let mut current = self.current.lock().expect("operations");
            let Some(current) = current.as_mut() else {
                return;
            };
            current.status.progress = progress.clone();
            current.status.kind.clone()
        };
        self.replica
            .gossip
            .set_state(StateValue::Operation(Some(format!("{kind}: {progress}"))))
            .await;
    }

    /// Past this point the operation cannot be aborted; returns false (and
    /// the operation must stop) when an abort came first.
    pub(crate) fn point_of_no_return(&self) -> bool {
        let mut current = self.current.lock().expect("operations");
        match current.as_mut() {
            Some(current) if current.abort.is_cancelled() => false,
            Some(current) => {
                current.abortable = false;
                true
            }
            None => true,
        }
    }
}
