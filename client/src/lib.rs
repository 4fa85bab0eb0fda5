//! # ringdb-client: talk to a ringdb cluster
//!
//! An async client over QUIC. It connects to any node given as a contact
//! point, fetches the ring (every node's tokens and client address, and the
//! replication) and from then on sends each request to a replica of its row
//! — *token-aware* routing, as Cassandra's drivers do — so the write
//! coordinator is a replica and no forwarding hop is needed (DESIGN.md
//! "Write path", step 1). Without a ring it uses the contact points, and the
//! node forwards.
//!
//! Every request names its consistency level. Reads return every live
//! sibling and an opaque [`Context`]; pass the context back with the next
//! write of the row so that the write supersedes exactly what was read.
//!
//! CQL statements go through [`Client::query`] with a [`Query`] (the
//! statement, bound values, the session's keyspace and level); the node
//! parses and runs them (`ringdb shell` is built on it). A statement is
//! not retried once sent, like a write. A statement run many times is
//! prepared once ([`Client::prepare`]): the node parses and checks it and
//! says what type each bind marker takes, [`Prepared::bind`] checks the
//! values against those types before anything is sent, and the query
//! carries the statement's id instead of its text (sent again with the
//! text, by the client itself, to a node that does not hold it).
//!
//! ## What an application depends on
//!
//! This crate alone: it pulls neither RocksDB, nor clap, nor an allocator
//! (the `ringdb` crate, which embeds a whole node, does). The CA
//! certificate comes as PEM text ([`ClientConfig::new`]), read from a file
//! or from memory. Values convert from the Rust types that hold them
//! (`Value::from("Ada")`, `42i32.into()`, `None::<i64>.into()` for null),
//! and every error says whether trying again may help
//! ([`ClientError::is_retryable`]): too few replicas, a timeout or a lost
//! connection may pass; a request too large ([`ClientError::ValueTooLarge`])
//! or a CA that is not the cluster's ([`ClientError::UntrustedNode`])
//! will not.
//!
//! ## Retries
//!
//! What is retried on another node is what is safe to retry:
//! - anything that never reached a node (no connection) or that a node
//!   refused before acting because it is busy (`Overloaded`);
//! - reads, which change nothing, after a timeout or a lost connection.
//!
//! A write that timed out or whose connection dropped after sending is **not**
//! retried: it may have been applied, and writing it again would add a
//! sibling. The error says so. `Unavailable` (too few live replicas) is
//! the coordinator's verdict on the replicas, which another coordinator
//! would share: it is returned, not retried.
//!
//! A node that could not be reached, or left a request unanswered past the
//! coordinator's own timeout (a killed process's connection looks open
//! until QUIC's idle timeout), is tried last for 30 seconds: the requests
//! already waiting on a dead node pay for it, not every request routed to
//! it until the connection times out. A preferred node whose handshake is
//! slower than another node's answer goes on dialling in the background
//! and is preferred again once connected.
//!
//! ## Building a client, typed rows, pages and siblings
//!
//! [`Client::builder`] takes contact points by name (`db1:9042`) and the
//! CA from a file or memory. A `SELECT`'s rows read into the
//! application's types ([`Rows::typed`]: tuples, or a type implementing
//! [`FromRow`]), a page at a time with [`Client::pages`]. A key-value row
//! written concurrently has siblings: [`ReadResult::latest`] picks the last
//! written, [`ReadResult::merged`] folds them with the application's merge,
//! and [`Client::get_resolved`] writes the merge back so one version is
//! left (Riak's sibling resolution).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use ringdb_client::{Client, ConsistencyLevel, Context, PartitionKey, Row, RowAddress, Value};
//!
//! let client = Client::builder()
//!     .contact_point("localhost:9042")
//!     .ca_file("ringdb-dev/ca.pem")
//!     .connect()
//!     .await?;
//! let row = RowAddress::new("users", PartitionKey::new("alice")?);
//! let columns = Row::from([("name".to_string(), Value::from("Alice"))]);
//! client.put(&row, columns, Context::empty(), ConsistencyLevel::Quorum).await?;
//! let read = client.get(&row, ConsistencyLevel::Quorum).await?;
//! assert_eq!(read.siblings.len(), 1);
//! # Ok(()) }
//! ```

mod admin;
mod builder;
mod client;
mod error;
mod operations;
mod pages;
mod pool;
mod siblings;

/// Requests multiplexed over long-lived QUIC streams (from `ringdb-wire`,
/// shared with the node).
pub use ringdb_wire::multiplex as transport;
/// The cluster CA's TLS for clients (from `ringdb-wire`, shared with the node).
pub use ringdb_wire::tls;

pub use builder::{ClientBuilder, read_ca_file, resolve_hosts};
pub use client::{Client, ClientConfig, ClusterStatus, ReadResult, WriteOptions, WriteResult};
pub use error::ClientError;
pub use operations::operation_result;
pub use pages::{DEFAULT_PAGE_SIZE, Pages};
pub use ringdb_proto::{
    BindError, ClusteringKey, ConsistencyLevel, Context, CqlType, FromRow, FromValue, HintCounters,
    MappingError, Marker, NodeStatus, NodeTool, OperationOutcome, OperationStatus, PagingState,
    PartitionKey, Prepared, PreparedId, Query, QueryResult, ReadFirst, Receipt, RepairStats,
    RepairSummary, Report, RequestError, Row, RowAddress, RowContext, RowRef, RowView, Rows,
    Sibling, SiblingMark, TraceEvent, Value,
};
