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
//! in the data directory, see `topology::Removal`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use ringdb_gossip::StateValue;
use ringdb_proto::{OperationOutcome, OperationStatus, RequestError};
use ringdb_ring::NodeId;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::coordinator::Coordinator;
use crate::topology;

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

type Job = Pin<Box<dyn Future<Output = Result<String, RequestError>> + Send>>;

impl Operations {
    /// No operation yet; operations stop when `node` is cancelled.
    pub(crate) fn new(node: CancellationToken) -> Operations {
        Operations {
            current: Mutex::new(None),
            node,
        }
    }

    fn running(&self) -> Option<(Kind, OperationStatus)> {
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
}

/// Starts `kind` as a task of the node, or attaches to it when it is the
/// operation running; refused while another runs, or when the operation's
/// checks fail (nothing started then).
pub(crate) async fn start(
    c: &Arc<Coordinator>,
    kind: Kind,
) -> Result<OperationStatus, RequestError> {
    if let Some((running, status)) = c.operations.running() {
        if running == kind {
            return Ok(status);
        }
        return Err(RequestError::invalid(format!(
            "{} is running {}: follow it with --follow, or stop it with --abort",
            c.me, status.kind
        )));
    }
    let job: Job = match &kind {
        Kind::Decommission => {
            topology::check_decommission(c)?;
            Box::pin(topology::decommission(c.clone()))
        }
        Kind::RemoveNode(node) => {
            let removal = topology::plan_removal(c, node)?;
            Box::pin(topology::remove_node(c.clone(), removal))
        }
    };
    launch(c, kind, job)
}

fn describe(c: &Coordinator, kind: &Kind) -> String {
    match kind {
        Kind::Decommission => format!("decommission {}", c.me),
        Kind::RemoveNode(node) => format!("removenode {node}"),
    }
}

fn launch(c: &Arc<Coordinator>, kind: Kind, job: Job) -> Result<OperationStatus, RequestError> {
    let abort = c.operations.node.child_token();
    let status = OperationStatus {
        node: c.me.clone(),
        kind: describe(c, &kind),
        started_micros: c.now_micros(),
        progress: "starting".into(),
        outcome: OperationOutcome::Running,
    };
    {
        let mut current = c.operations.current.lock().expect("operations");
        // Checked by `start`; two requests at once: the later one loses
        // (and is told the running one, which it then follows, when it is
        // the same operation).
        if let Some(running) = current
            .as_ref()
            .filter(|c| c.status.outcome == OperationOutcome::Running)
        {
            if running.kind == kind {
                return Ok(running.status.clone());
            }
            return Err(RequestError::invalid(format!(
                "{} is running {}: follow it with --follow, or stop it with --abort",
                c.me, running.status.kind
            )));
        }
        *current = Some(Current {
            kind: kind.clone(),
            status: status.clone(),
            abort: abort.clone(),
            abortable: true,
        });
    }
    info!(operation = %status.kind, "topology operation started");
    let coordinator = c.clone();
    tokio::spawn(async move {
        let c = coordinator;
        let outcome = tokio::select! {
            // An abort that came with the job's end wins: the job, seeing
            // it, stopped short of anything `aborted` cannot undo.
            biased;
            () = abort.cancelled() => {
                let summary = if c.operations.node.is_cancelled() {
                    "the node stopped".to_string()
                } else {
                    topology::aborted(&c, &kind).await
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
        if let Some(current) = c.operations.current.lock().expect("operations").as_mut() {
            current.status.outcome = outcome;
        }
        c.gossip.set_state(StateValue::Operation(None)).await;
    });
    Ok(status)
}

/// Asks the running operation to stop; refused once it cannot be undone.
pub(crate) fn abort(c: &Coordinator) -> Result<OperationStatus, RequestError> {
    let current = c.operations.current.lock().expect("operations");
    let Some(current) = current.as_ref() else {
        return Err(no_operation(c));
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

/// The running or last operation, or why there is none.
pub(crate) fn status(c: &Coordinator) -> Result<OperationStatus, RequestError> {
    c.operations.status().ok_or_else(|| no_operation(c))
}

fn no_operation(c: &Coordinator) -> RequestError {
    RequestError::invalid(format!(
        "{} has run no decommission or removenode since it started",
        c.me
    ))
}

/// Records where the running operation stands (and gossips it).
pub(crate) async fn progress(c: &Coordinator, progress: String) {
    let kind = {
        let mut current = c.operations.current.lock().expect("operations");
        let Some(current) = current.as_mut() else {
            return;
        };
        current.status.progress = progress.clone();
        current.status.kind.clone()
    };
    c.gossip
        .set_state(StateValue::Operation(Some(format!("{kind}: {progress}"))))
        .await;
}

/// Past this point the operation cannot be aborted; returns false (and
/// the operation must stop) when an abort came first.
pub(crate) fn point_of_no_return(c: &Coordinator) -> bool {
    let mut current = c.operations.current.lock().expect("operations");
    match current.as_mut() {
        Some(current) if current.abort.is_cancelled() => false,
        Some(current) => {
            current.abortable = false;
            true
        }
        None => true,
    }
}

/// Resumes a removal the node was running when it stopped, once gossip
/// has had time to bring the ring and the live peers.
pub(crate) fn resume(c: &Arc<Coordinator>) {
    let removal = match topology::unfinished_removal(c) {
        Ok(Some(removal)) => removal,
        Ok(None) => return,
        Err(error) => return warn!(%error, "cannot read an interrupted removenode's plan"),
    };
    let c = c.clone();
    let node = c.operations.node.clone();
    tokio::spawn(async move {
        tokio::select! {
            biased;
            () = node.cancelled() => return,
            () = tokio::time::sleep(RESUME_DELAY) => {}
        }
        info!(node = %removal.node, "resuming an interrupted removenode");
        let kind = Kind::RemoveNode(removal.node.clone());
        let job = Box::pin(topology::remove_node(c.clone(), removal));
        if let Err(error) = launch(&c, kind, job) {
            warn!(%error, "cannot resume the interrupted removenode");
        }
    });
}

/// How long after its start a node resumes an interrupted removal.
const RESUME_DELAY: std::time::Duration = std::time::Duration::from_secs(10);
