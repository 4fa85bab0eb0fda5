//! Why a request failed, as the client tells its caller.

use std::net::SocketAddr;
use std::time::Duration;

use ringdb_proto::{BindError, RequestError};

use crate::transport::CallError;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The coordinating node answered with an error.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// No node could be reached; nothing was sent.
    #[error("no node reachable: {}", describe_failures(.tried))]
    NoConnection {
        /// Each address tried and why it failed.
        tried: Vec<(SocketAddr, String)>,
    },
    /// No answer from the node in time; a write's outcome is unknown.
    #[error("no answer from {node} within {after:?}{}", unknown_outcome(*.write))]
    Timeout {
        /// The node asked.
        node: SocketAddr,
        /// How long the client waited.
        after: Duration,
        /// Whether it was a write.
        write: bool,
    },
    /// The connection broke after the request was sent; a write's outcome is unknown.
    #[error("connection to {node} lost: {reason}{}", unknown_outcome(*.write))]
    ConnectionLost {
        /// The node asked.
        node: SocketAddr,
        /// Why the connection broke.
        reason: String,
        /// Whether it was a write.
        write: bool,
    },
    /// Values that do not fit a prepared statement's bind markers; nothing
    /// was sent.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The client's configuration is not usable (the CA certificate).
    #[error("client configuration: {0}")]
    Config(String),
    /// The client could not open its UDP socket (a matter of this machine).
    #[error("cannot open a UDP socket: {0}")]
    Socket(String),
    /// A node described a ring that cannot be (a bug or a damaged node).
    #[error("{node} sent a ring that cannot be: {reason}")]
    BadTopology {
        /// The node that sent it.
        node: SocketAddr,
        /// What is wrong with it.
        reason: String,
    },
    /// The node answered with a reply of the wrong kind (a protocol bug).
    #[error("unexpected reply from {0}")]
    UnexpectedReply(SocketAddr),
    /// The request does not fit in one frame (its value is too large):
    /// nothing was sent, and the connection serves the next request.
    #[error(
        "value too large (limit {max} bytes per request): the request is {len} bytes; \
         nothing was sent"
    )]
    ValueTooLarge {
        /// The request's encoded length.
        len: usize,
        /// The limit ([`ringdb_proto::MAX_FRAME_BYTES`]).
        max: usize,
    },
    /// A node's certificate is not signed by the CA the client was given:
    /// the client is configured with another cluster's CA (or a stranger
    /// answers at that address). Nothing was sent.
    #[error(
        "{node} presented a certificate that the configured CA did not sign ({reason}): \
         give the client the cluster's CA certificate"
    )]
    UntrustedNode {
        /// The node.
        node: SocketAddr,
        /// What the TLS handshake said.
        reason: String,
    },
}

impl ClientError {
    /// Whether the same request may succeed if tried again, later or at
    /// another node: the cluster was short of replicas, time or capacity,
    /// or the connection failed. False when the request itself, or the
    /// client's configuration, is what is wrong. A write whose outcome is
    /// unknown (a timeout, a lost connection) is retryable, but if the
    /// first attempt was applied after all, the row may then hold both as
    /// siblings of the same value, which a later read and write with its
    /// context resolves.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Request(error) => matches!(
                error,
                RequestError::Unavailable { .. }
                    | RequestError::Timeout { .. }
                    | RequestError::Overloaded { .. }
                    | RequestError::DamagedData { .. }
                    | RequestError::UnreachableContext { .. }
                    | RequestError::NotAReplica { .. }
            ),
            ClientError::NoConnection { .. }
            | ClientError::Timeout { .. }
            | ClientError::ConnectionLost { .. } => true,
            ClientError::Bind(_)
            | ClientError::Config(_)
            | ClientError::Socket(_)
            | ClientError::BadTopology { .. }
            | ClientError::UnexpectedReply(_)
            | ClientError::ValueTooLarge { .. }
            | ClientError::UntrustedNode { .. } => false,
        }
    }
}

/// What a failed call to `node` means for the caller; `write` says whether
/// its outcome is unknown.
pub(crate) fn client_error(node: SocketAddr, error: CallError, write: bool) -> ClientError {
    match error {
        CallError::Remote(error) => ClientError::Request(error),
        CallError::NotSent { reason } => ClientError::NoConnection {
            tried: vec![(node, reason)],
        },
        CallError::ConnectionLost { reason } => ClientError::ConnectionLost {
            node,
            reason,
            write,
        },
        CallError::Timeout(after) => ClientError::Timeout { node, after, write },
        CallError::TooLarge { len, max } => ClientError::ValueTooLarge { len, max },
    }
}

fn describe_failures(tried: &[(SocketAddr, String)]) -> String {
    if tried.is_empty() {
        return "no contact points".into();
    }
    let parts: Vec<String> = tried.iter().map(|(a, why)| format!("{a}: {why}")).collect();
    parts.join("; ")
}

fn unknown_outcome(write: bool) -> &'static str {
    if write {
        "; the write may still have been applied"
    } else {
        ""
    }
}
