//! The client: connections, routing and retries.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ringdb_proto::{
    ClientReply, ClientRequest, ConsistencyLevel, Context, NodeStatus, Prepared, Query,
    QueryResult, Receipt, RequestError, Row, RowAddress, Sibling, TopologyNode, TraceEvent,
};
use ringdb_ring::{NodeId, Replication, Ring, Token};

pub(crate) use crate::error::{ClientError, client_error};
use crate::pool::{Connection, DialFailure, Dialer, Pool};
use crate::transport::CallError;

/// How many nodes one request may try before giving up.
const MAX_ATTEMPTS: usize = 3;
/// How long after one node the next is dialled when connecting to the
/// first of several that answers.
const DIAL_STAGGER: Duration = Duration::from_millis(250);
/// How much longer than the request's budget the client waits, so that the
/// coordinator's own timeout answer (which counts acknowledgements) arrives
/// before the client gives up.
pub(crate) const ANSWER_MARGIN: Duration = Duration::from_millis(500);
/// How old the ring may get before a request fetches it again.
const TOPOLOGY_REFRESH: Duration = Duration::from_secs(10);
/// The server name the client presents; nodes are verified by CA, not name.
pub(crate) const SERVER_NAME: &str = "ringdb-node";

/// How to reach a cluster.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Client addresses of some nodes of the cluster (any one is enough).
    pub contact_points: Vec<SocketAddr>,
    /// The cluster CA's certificate (PEM) that node certificates must chain to.
    pub ca_pem: String,
    /// How long a node may take over a request (it is told this budget).
    /// Default: 2 s, Cassandra's write timeout.
    pub request_timeout: Duration,
    /// How long to wait for a QUIC handshake. Default: 2 s.
    pub connect_timeout: Duration,
    /// Send each request to a replica of its row, once the ring is known.
    /// Off, requests go to the contact points in order (the node forwards
    /// writes to a replica). Default: on.
    pub token_aware: bool,
}

impl ClientConfig {
    /// Defaults for the given contact points and CA.
    pub fn new(contact_points: Vec<SocketAddr>, ca_pem: String) -> ClientConfig {
        ClientConfig {
            contact_points,
            ca_pem,
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            token_aware: true,
        }
    }
}

/// A read's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadResult {
    /// The live versions of the row: none if it does not exist (or was
    /// deleted), several if writes were concurrent.
    pub siblings: Vec<Sibling>,
    /// Pass this back with the next write of the row.
    pub context: Context,
    /// Which replicas answered and which were repaired.
    pub receipt: Receipt,
}

/// The cluster as one node sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterStatus {
    /// The node that answered.
    pub answered_by: NodeId,
    /// The client address it was asked at.
    pub address: SocketAddr,
    /// Every node it knows of.
    pub nodes: Vec<NodeStatus>,
    /// How data is replicated (the cluster's replication).
    pub replication: Replication,
    /// The other replications keyspaces place their tables' rows by.
    pub placements: Vec<Replication>,
}

/// How a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// How many acknowledgements the write needs.
    pub consistency: ConsistencyLevel,
    /// Sloppy quorum: a down replica's write is kept as a hint by the first
    /// live node past the replicas, and that node's acknowledgement counts
    /// (the receipt lists it under `fallbacks`). Off by default: only real
    /// replicas count (strict quorum).
    pub sloppy: bool,
}

impl From<ConsistencyLevel> for WriteOptions {
    fn from(consistency: ConsistencyLevel) -> WriteOptions {
        WriteOptions {
            consistency,
            sloppy: false,
        }
    }
}

/// A read's answer out of the reply to `Get` or `LocalGet`.
pub(crate) fn read_result(
    (node, reply): (SocketAddr, ClientReply),
) -> Result<ReadResult, ClientError> {
    match reply {
        ClientReply::Read {
            siblings,
            context,
            receipt,
        } => Ok(ReadResult {
            siblings,
            context,
            receipt,
        }),
        _ => Err(ClientError::UnexpectedReply(node)),
    }
}

/// A write's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteResult {
    /// The row's context after the write; a following write with it replaces this one.
    pub context: Context,
    /// Which replicas acknowledged.
    pub receipt: Receipt,
}

struct Routing {
    ring: Ring,
    replication: Replication,
    addresses: HashMap<NodeId, SocketAddr>,
    fetched: Instant,
}

/// A connection to a ringdb cluster. Cheap to share: wrap it in an `Arc`.
pub struct Client {
    pub(crate) config: ClientConfig,
    dialer: Dialer,
    routing: RwLock<Option<Routing>>,
    pub(crate) pool: Arc<Pool>,
    /// Whether a request is refreshing the topology.
    refreshing: AtomicBool,
}

impl Client {
    /// A [`ClientBuilder`](crate::ClientBuilder): contact points by name,
    /// the CA from a file or memory, timeouts.
    pub fn builder() -> crate::ClientBuilder {
        crate::ClientBuilder::default()
    }

    /// Connects to the cluster through its contact points and, when
    /// token-aware, fetches the ring.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let quic = crate::tls::client_config(&config.ca_pem).map_err(ClientError::Config)?;
        let bind: SocketAddr = match config.contact_points.first() {
            Some(SocketAddr::V6(_)) => "[::]:0".parse().expect("address"),
            _ => "0.0.0.0:0".parse().expect("address"),
        };
        let endpoint =
            quinn::Endpoint::client(bind).map_err(|e| ClientError::Socket(e.to_string()))?;
        let dialer = Dialer {
            endpoint,
            quic,
            connect_timeout: config.connect_timeout,
        };
        let client = Client {
            config,
            dialer,
            routing: RwLock::new(None),
            pool: Arc::default(),
            refreshing: AtomicBool::new(false),
        };
        if client.config.token_aware {
            client.refresh_topology().await?;
        } else {
            // Fail now, not at the first request, if no node answers.
            client.connect_any(&client.config.contact_points).await?;
        }
        Ok(client)
    }

    /// Fetches the ring from a node again (after nodes joined or moved).
    pub async fn refresh_topology(&self) -> Result<Vec<TopologyNode>, ClientError> {
        let reply = self.fetch_topology().await?;
        let (answered_by, ClientReply::Topology { nodes, replication }) = reply else {
            return Err(ClientError::UnexpectedReply(reply.0));
        };
        let mut ring = Ring::new();
        let mut addresses = HashMap::new();
        for node in &nodes {
            ring.add_node(node.id.clone(), node.location.clone(), node.tokens.clone())
                .map_err(|e| ClientError::BadTopology {
                    node: answered_by,
                    reason: e.to_string(),
                })?;
            if let Ok(address) = node.client_address.parse() {
                addresses.insert(node.id.clone(), address);
            }
        }
        *self.routing.write().expect("routing") = Some(Routing {
            ring,
            replication,
            addresses,
            fetched: Instant::now(),
        });
        Ok(nodes)
    }

    /// Sends `request` to the node at `address` as it is: no routing, no
    /// retry, the error as the transport saw it (`was_not_sent()` tells a
    /// request that never left from one whose outcome is unknown). For
    /// tools that must choose the coordinator themselves: `ringdb lab`'s
    /// clients on each side of a partition, diagnostics. The node is given
    /// `budget` (the configured request timeout without one).
    pub async fn call_node(
        &self,
        address: SocketAddr,
        request: ClientRequest,
        budget: Option<Duration>,
    ) -> Result<ClientReply, CallError> {
        let connection = self
            .connection(address)
            .await
            .map_err(|failure| CallError::NotSent {
                reason: failure.reason,
            })?;
        let budget = budget.unwrap_or(self.config.request_timeout);
        let answer = connection
            .call_with_budget(request, budget, budget + ANSWER_MARGIN)
            .await;
        if let Err(error @ (CallError::NotSent { .. } | CallError::ConnectionLost { .. })) = &answer
        {
            self.pool.forget(address, &error.to_string());
        }
        answer
    }

    /// Runs one CQL statement (see [`Query`]): `SELECT`, `INSERT`,
    /// `UPDATE`, `DELETE`, `BATCH`, schema statements, `USE`, `DESCRIBE`.
    pub async fn query(&self, query: Query) -> Result<QueryResult, ClientError> {
        Ok(self.query_traced(query).await?.0)
    }

    /// [`Client::query`], with the coordinator's trace of the statement
    /// when `query.tracing` is set.
    pub async fn query_traced(
        &self,
        query: Query,
    ) -> Result<(QueryResult, Vec<TraceEvent>), ClientError> {
        let (result, trace) = self.query_with_trace(query).await;
        Ok((result?, trace))
    }

    /// [`Client::query_traced`], with the trace also when the statement
    /// failed (what the coordinator did before it gave up: the replicas it
    /// found alive, those it asked…).
    ///
    /// A query of a prepared statement ([`Prepared::bind`]) is sent by its
    /// id alone; a node that does not hold it answers so before doing
    /// anything, and the query is sent again with its text.
    pub async fn query_with_trace(
        &self,
        mut query: Query,
    ) -> (Result<QueryResult, ClientError>, Vec<TraceEvent>) {
        let text = match query.prepared {
            Some(_) => std::mem::take(&mut query.cql),
            None => String::new(),
        };
        let answer = self.run_query(query.clone()).await;
        if let (Err(ClientError::Request(RequestError::Unprepared { .. })), _) = answer {
            query.cql = text;
            return self.run_query(query).await;
        }
        answer
    }

    async fn run_query(&self, query: Query) -> (Result<QueryResult, ClientError>, Vec<TraceEvent>) {
        // Not retried once sent, as a write: a schema change may have
        // been made by a node that did not answer in time.
        match self
            .request(None, ClientRequest::Query(query), RequestKind::Write)
            .await
        {
            Ok((_, ClientReply::Result(result))) => (Ok(result), Vec::new()),
            Ok((_, ClientReply::Traced { result, trace })) => (Ok(result), trace),
            Ok((_, ClientReply::TracedFailure { error, trace })) => {
                (Err(ClientError::Request(error)), trace)
            }
            Ok((node, _)) => (Err(ClientError::UnexpectedReply(node)), Vec::new()),
            Err(error) => (Err(error), Vec::new()),
        }
    }

    /// Prepares a statement, with `keyspace` for its unqualified names:
    /// the node parses and checks it once and says what each bind marker
    /// takes. Run it with [`Prepared::bind`] and [`Client::query`]:
    ///
    /// ```no_run
    /// # async fn f(client: &ringdb_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use ringdb_proto::{ConsistencyLevel, Value};
    /// let insert = client
    ///     .prepare("INSERT INTO events (user, at, what) VALUES (?, ?, ?)", Some("shop"))
    ///     .await?;
    /// let values = vec![Value::Text("ada".into()), Value::Timestamp(0), Value::Text("login".into())];
    /// client.query(insert.bind(values, ConsistencyLevel::Quorum)?).await?;
    /// # Ok(()) }
    /// ```
    pub async fn prepare(
        &self,
        cql: &str,
        keyspace: Option<&str>,
    ) -> Result<Prepared, ClientError> {
        let request = ClientRequest::Prepare {
            cql: cql.to_string(),
            keyspace: keyspace.map(str::to_string),
        };
        match self.request(None, request, RequestKind::Read).await? {
            (_, ClientReply::Prepared(prepared)) => Ok(prepared),
            (node, _) => Err(ClientError::UnexpectedReply(node)),
        }
    }

    /// Reads a row at `consistency`.
    pub async fn get(
        &self,
        row: &RowAddress,
        consistency: ConsistencyLevel,
    ) -> Result<ReadResult, ClientError> {
        let request = ClientRequest::Get {
            row: row.clone(),
            consistency,
        };
        read_result(
            self.request(Some(row.token()), request, RequestKind::Read)
                .await?,
        )
    }

    /// Writes a row's columns, superseding what `context` saw, at a
    /// consistency level (or with [`WriteOptions`]).
    pub async fn put(
        &self,
        row: &RowAddress,
        columns: Row,
        context: Context,
        options: impl Into<WriteOptions>,
    ) -> Result<WriteResult, ClientError> {
        let options = options.into();
        let request = ClientRequest::Put {
            row: row.clone(),
            columns,
            context,
            consistency: options.consistency,
            sloppy: options.sloppy,
        };
        self.write(row, request).await
    }

    /// Deletes a row, superseding what `context` saw, at a consistency
    /// level (or with [`WriteOptions`]).
    pub async fn delete(
        &self,
        row: &RowAddress,
        context: Context,
        options: impl Into<WriteOptions>,
    ) -> Result<WriteResult, ClientError> {
        let options = options.into();
        let request = ClientRequest::Delete {
            row: row.clone(),
            context,
            consistency: options.consistency,
            sloppy: options.sloppy,
        };
        self.write(row, request).await
    }

    async fn write(
        &self,
        row: &RowAddress,
        request: ClientRequest,
    ) -> Result<WriteResult, ClientError> {
        match self
            .request(Some(row.token()), request, RequestKind::Write)
            .await?
        {
            (_, ClientReply::Written { context, receipt }) => Ok(WriteResult { context, receipt }),
            (node, _) => Err(ClientError::UnexpectedReply(node)),
        }
    }

    /// The nodes to try for a row, best first: its replicas in ring order
    /// when the ring is known, then the other nodes; nodes that recently
    /// could not be reached go last. Without token-aware routing, only the
    /// contact points, in order: a topology fetched on request does not
    /// send requests elsewhere.
    fn candidates(&self, token: Option<Token>) -> Vec<SocketAddr> {
        let mut candidates = Vec::new();
        let routing = self.routing.read().expect("routing");
        if let Some(routing) = routing.as_ref().filter(|_| self.config.token_aware) {
            if let Some(token) = token {
                for replica in routing.ring.replicas(token, &routing.replication) {
                    if let Some(&address) = routing.addresses.get(&replica) {
                        candidates.push(address);
                    }
                }
            }
            let mut others: Vec<SocketAddr> = routing.addresses.values().copied().collect();
            others.sort();
            for address in others {
                if !candidates.contains(&address) {
                    candidates.push(address);
                }
            }
        }
        drop(routing);
        for &address in &self.config.contact_points {
            if !candidates.contains(&address) {
                candidates.push(address);
            }
        }
        candidates.sort_by_key(|address| self.pool.goes_last(address));
        candidates
    }

    /// Asks the first node that answers for the topology. (Not through
    /// [`Client::request`], which may itself refresh the topology.)
    async fn fetch_topology(&self) -> Result<(SocketAddr, ClientReply), ClientError> {
        let mut tried = Vec::new();
        let candidates = self.candidates(None);
        // The first node to answer the handshake is asked first: a dead
        // contact point does not hold the others up.
        let racing = &candidates[..candidates.len().min(MAX_ATTEMPTS)];
        let (first, _) = self.connect_first(racing).await?;
        let ordered = std::iter::once(first).chain(candidates.into_iter().filter(|a| *a != first));
        for address in ordered.take(MAX_ATTEMPTS) {
            let connection = match self.connection(address).await {
                Ok(connection) => connection,
                Err(failure) => {
                    tried.push((address, failure.reason));
                    continue;
                }
            };
            let budget = self.config.request_timeout;
            match connection
                .call_with_budget(ClientRequest::Topology, budget, budget + ANSWER_MARGIN)
                .await
            {
                Ok(reply) => return Ok((address, reply)),
                Err(error) => {
                    if matches!(error, CallError::Timeout(_)) {
                        self.pool.set_aside(address, &error.to_string());
                    }
                    tried.push((address, error.to_string()));
                }
            }
        }
        Err(ClientError::NoConnection { tried })
    }

    /// Fetches the ring again when it is older than [`TOPOLOGY_REFRESH`]
    /// (nodes join, leave and move), one request at a time; the others
    /// route by the ring they have meanwhile.
    async fn refresh_if_stale(&self) {
        let stale = self
            .routing
            .read()
            .expect("routing")
            .as_ref()
            .is_none_or(|routing| routing.fetched.elapsed() > TOPOLOGY_REFRESH);
        if stale && !self.refreshing.swap(true, Ordering::AcqRel) {
            if let Err(error) = self.refresh_topology().await {
                // Routing by the old ring still works (non-replicas forward).
                tracing::debug!(%error, "cannot refresh the topology");
            }
            self.refreshing.store(false, Ordering::Release);
        }
    }

    async fn request(
        &self,
        token: Option<Token>,
        request: ClientRequest,
        kind: RequestKind,
    ) -> Result<(SocketAddr, ClientReply), ClientError> {
        let token = token.filter(|_| self.config.token_aware);
        if token.is_some() {
            self.refresh_if_stale().await;
        }
        let mut tried = Vec::new();
        let mut last_error = None;
        let mut remaining: Vec<SocketAddr> = self
            .candidates(token)
            .into_iter()
            .take(MAX_ATTEMPTS)
            .collect();
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
            let budget = self.config.request_timeout;
            let outcome = connection
                .call_with_budget(request.clone(), budget, budget + ANSWER_MARGIN)
                .await;
            let error = match outcome {
                Ok(reply) => return Ok((address, reply)),
                Err(error) => error,
            };
            let write = kind == RequestKind::Write;
            // Unavailable is the coordinator's verdict on the replicas, which
            // another coordinator would share: answered, not retried.
            let retry = match &error {
                CallError::Remote(RequestError::Overloaded { .. }) => true,
                // The coordinator's own copy is damaged (it is salvaging):
                // another coordinator reads the other replicas.
                CallError::Remote(RequestError::DamagedData { .. }) => !write,
                CallError::Remote(RequestError::Timeout { .. })
                | CallError::Timeout(_)
                | CallError::ConnectionLost { .. } => !write,
                _ => false,
            };
            match error {
                CallError::NotSent { .. } | CallError::ConnectionLost { .. } => {
                    self.pool.forget(address, &error.to_string());
                }
                // Silent past the coordinator's own timeout answer: dead,
                // paused or swamped. A killed node's connection still looks
                // open until QUIC's idle timeout, so the node goes last for
                // a while rather than time out every request routed to it.
                CallError::Timeout(_) => self.pool.set_aside(address, &error.to_string()),
                _ => {}
            }
            let error = match error {
                CallError::NotSent { reason } => {
                    tried.push((address, reason));
                    continue;
                }
                error => client_error(address, error, write),
            };
            if !retry {
                return Err(error);
            }
            last_error = Some(error);
        }
        Err(last_error.unwrap_or(ClientError::NoConnection { tried }))
    }

    /// Connects to any of `addresses`.
    async fn connect_any(&self, addresses: &[SocketAddr]) -> Result<(), ClientError> {
        self.connect_first(addresses).await.map(|_| ())
    }

    /// Connects to the first of `addresses` that answers, preferring them
    /// in order: each is tried [`DIAL_STAGGER`] after the one before (even
    /// one with an open connection waits its turn), and the first to be
    /// connected wins ("happy eyeballs"). QUIC over UDP learns nothing from
    /// a dead port until its handshake times out, so a dead node costs
    /// one stagger, not a handshake timeout. Those preferred to the winner
    /// but still handshaking go on dialling in the background and are
    /// tried last until they connect; nodes that fail are tried last for a
    /// while (see [`Pool`]).
    pub(crate) async fn connect_first(
        &self,
        addresses: &[SocketAddr],
    ) -> Result<(SocketAddr, Arc<Connection>), ClientError> {
        type Dial<'a> = std::pin::Pin<
            Box<
                dyn Future<Output = (SocketAddr, Result<Arc<Connection>, DialFailure>)> + Send + 'a,
            >,
        >;
        let mut dials: Vec<(SocketAddr, Dial<'_>)> = addresses
            .iter()
            .enumerate()
            .map(|(i, &address)| -> (SocketAddr, Dial<'_>) {
                let dial = Box::pin(async move {
                    // Even an open connection to a later node waits its
                    // turn: the first node's handshake takes a moment, and
                    // a request not sent to the replica it was meant for
                    // costs a forwarding hop (and never opens the
                    // connection it lacked).
                    if i > 0 {
                        tokio::time::sleep(DIAL_STAGGER * i as u32).await;
                    }
                    (address, self.connection(address).await)
                });
                (address, dial)
            })
            .collect();
        let mut tried = Vec::new();
        let outcome = std::future::poll_fn(|cx| {
            let mut i = 0;
            while i < dials.len() {
                match dials[i].1.as_mut().poll(cx) {
                    std::task::Poll::Ready((address, Ok(connection))) => {
                        return std::task::Poll::Ready(Some((address, connection)));
                    }
                    std::task::Poll::Ready((address, Err(reason))) => {
                        tried.push((address, reason));
                        drop(dials.swap_remove(i));
                    }
                    std::task::Poll::Pending => i += 1,
                }
            }
            if dials.is_empty() {
                std::task::Poll::Ready(None)
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        let Some((winner, connection)) = outcome else {
            // A node whose certificate the CA did not sign: the client's
            // CA is not the cluster's, which no other node will fix.
            if let Some((node, failure)) = tried.iter().find(|(_, failure)| failure.untrusted) {
                return Err(ClientError::UntrustedNode {
                    node: *node,
                    reason: failure.reason.clone(),
                });
            }
            let tried = tried
                .into_iter()
                .map(|(address, failure)| (address, failure.reason))
                .collect();
            return Err(ClientError::NoConnection { tried });
        };
        // Those preferred to the winner but still silent finish dialling in
        // the background: a slow handshake connects for the next request,
        // a dead node is set aside when its handshake times out.
        let position = addresses.iter().position(|a| *a == winner).unwrap_or(0);
        for (address, _) in &dials {
            if addresses[..position].contains(address) {
                self.pool.dial_in_background(&self.dialer, *address);
            }
        }
        Ok((winner, connection))
    }

    async fn connection(&self, address: SocketAddr) -> Result<Arc<Connection>, DialFailure> {
        self.pool.connect(&self.dialer, address).await
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Read,
    Write,
}
