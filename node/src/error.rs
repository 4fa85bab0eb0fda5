//! Why a node's own work failed: a stream, a hint replay, a repair
//! exchange, a topology change. Client requests fail with the wire's
//! [`RequestError`]; these errors stay in the node, where the task that
//! failed logs them, retries, or turns them into the `RequestError` of the
//! admin request that started it.

use ringdb_proto::{PeerReply, PeerRequest, RequestError};
use ringdb_ring::NodeId;
use ringdb_wire::multiplex::CallError;
use tokio::time::Instant;

use crate::network::Network;
use crate::storage::{RowFormatError, StorageError};

/// Why a node's task failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskError {
    /// A peer could not be asked, did not answer, or answered an error.
    #[error("{node}: {error}")]
    Call {
        /// The peer.
        node: NodeId,
        /// What went wrong.
        error: CallError,
    },
    /// A peer answered something other than what it was asked for, or
    /// broke the protocol.
    #[error("{node}: {what}")]
    Protocol {
        /// The peer.
        node: NodeId,
        /// What it did.
        what: String,
    },
    /// Local storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A local step failed as a request would.
    #[error(transparent)]
    Local(#[from] RequestError),
    /// A stored or received row does not decode.
    #[error("malformed row: {0}")]
    Row(#[from] RowFormatError),
    /// The task cannot be done now (no source to stream from, a node in
    /// the wrong state, the node shutting down).
    #[error("{0}")]
    Refused(String),
}

impl TaskError {
    /// `node` answered `reply`, which is not what it was asked for.
    pub(crate) fn unexpected(node: &NodeId, reply: &PeerReply) -> TaskError {
        TaskError::Protocol {
            node: node.clone(),
            what: format!("unexpected answer {reply:?}"),
        }
    }

    /// Whether the task may succeed if tried again in a moment: a peer, or
    /// this node, is overloaded (e.g. still building its Merkle trees).
    pub(crate) fn is_overloaded(&self) -> bool {
        matches!(
            self,
            TaskError::Call {
                error: CallError::Remote(RequestError::Overloaded { .. }),
                ..
            } | TaskError::Local(RequestError::Overloaded { .. })
        )
    }
}

/// Sends `request` to `node` and waits for its answer until `deadline`.
pub(crate) async fn ask(
    peers: &dyn Network,
    node: &NodeId,
    request: PeerRequest,
    deadline: Instant,
) -> Result<PeerReply, TaskError> {
    let call = |error| TaskError::Call {
        node: node.clone(),
        error,
    };
    let pending = peers.send(node, request, deadline).map_err(call)?;
    pending.answer(deadline).await.map_err(call)
}
