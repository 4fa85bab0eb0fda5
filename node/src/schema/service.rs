//! The schema service: this node's schema, kept on disk, announced by
//! gossip, and brought level with the other nodes'.
//!
//! A DDL statement run here is planned ([`super::ddl`]), merged, written
//! to disk (synced) before it is acknowledged, announced (the new version
//! in gossip) and pushed to every live peer at once, so that a table
//! created through one node is usable through the others within
//! milliseconds rather than a gossip round. Gossip is the safety net: a
//! task compares the version each live peer announces with this node's
//! and pulls the whole schema of a peer that differs, then merges it.
//! Merging is idempotent and commutative, so pushes and pulls in any
//! order, repeated or lost, leave every node with the same schema.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringdb_gossip::StateValue;
use ringdb_proto::{PeerReply, PeerRequest, RequestError, SchemaBytes, TableDefinition};
use ringdb_ring::NodeId;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::ddl::{self, DdlError};
use super::{Schema, SchemaVersion, Stamp};
use crate::error::{TaskError, ask};
use crate::replica::Replica;
use crate::storage::StorageError;

/// Where the schema is kept in the storage's metadata.
const SCHEMA_META: &str = "schema";
/// The format of what is kept there (its first byte).
const SCHEMA_FORMAT: u8 = 1;
/// How often the schema task compares versions with the peers'.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long a pull or a push may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

/// The schema service.
pub(crate) struct Schemas {
    replica: Arc<Replica>,
    schema: watch::Sender<Arc<Schema>>,
    /// The current schema's version (computed once per change).
    version: Mutex<String>,
    /// The last stamp's microseconds: stamps of this node only increase.
    last_micros: Mutex<i64>,
    /// Serializes changes, so that what is on disk is always a schema this
    /// node held.
    changing: tokio::sync::Mutex<()>,
}

impl Schemas {
    /// The service, with the schema this node stored last.
    pub(crate) fn open(replica: Arc<Replica>) -> Result<Schemas, StorageError> {
        let schema = match replica.storage.get_meta(SCHEMA_META)? {
            None => Schema::default(),
            Some(bytes) => decode_stored(&bytes).map_err(|error| StorageError::Corrupt {
                what: "schema",
                detail: error.to_string(),
            })?,
        };
        replica.placement.set(schema.placed_tables());
        Ok(Schemas {
            replica,
            version: Mutex::new(schema.version().to_string()),
            schema: watch::Sender::new(Arc::new(schema)),
            last_micros: Mutex::new(i64::MIN),
            changing: tokio::sync::Mutex::new(()),
        })
    }

    /// Announces this node's schema version by gossip (at start).
    pub(crate) async fn announce(&self) {
        let version = self.version_text();
        self.replica
            .gossip
            .set_state(StateValue::SchemaVersion(version))
            .await;
    }

    /// The schema now.
    pub(crate) fn current(&self) -> Arc<Schema> {
        self.schema.borrow().clone()
    }

    /// Runs a DDL statement: brings this node level with live peers whose
    /// schema differs (so that the statement sees their changes), plans it
    /// against the schema now, stores and announces the change, and pushes
    /// it to the live peers. Returns the new version, or `None` when
    /// `IF [NOT] EXISTS` made it a no-op.
    pub(crate) async fn execute(
        &self,
        statement: &ringdb_cql::ast::Statement,
        keyspace: Option<&str>,
        deadline: Instant,
    ) -> Result<Option<SchemaVersion>, SchemaFailure> {
        self.catch_up(deadline).await;
        let guard = self.changing.lock().await;
        let current = self.current();
        let stamp = self.stamp(&current);
        let Some(change) = ddl::plan(&current, statement, keyspace, &stamp)? else {
            return Ok(None);
        };
        let mut next = (*current).clone();
        if !next.merge(&change) {
            // A later stamp than every one held always wins; not winning
            // would be a bug, and must not be acknowledged.
            return Err(SchemaFailure::Lost);
        }
        let version = next.version();
        self.store(next).await?;
        drop(guard);
        info!(%version, "schema changed here");
        self.push(&change, deadline).await;
        Ok(Some(version))
    }

    /// Pulls the schema of the live peers that announce another version,
    /// until `deadline` at most (a second at most).
    async fn catch_up(&self, deadline: Instant) {
        let deadline = deadline.min(Instant::now() + EXCHANGE_TIMEOUT / 2);
        let mine = self.version_text();
        for (peer, _) in self.differing(&mine) {
            if let Err(error) = self.pull(&peer, deadline).await {
                debug!(%peer, %error, "could not pull the schema before a change");
            }
        }
    }

    /// Pulls the schema of every live peer that announces another version
    /// than this node's, until every pull succeeded (this node then holds
    /// every entry they hold) or `within` passed; returns the last pull's
    /// error then. A joining node does this before it plans what
    /// to stream: each keyspace's replication decides which ranges it gets.
    pub(crate) async fn learn_from_peers(&self, within: Duration) -> Result<(), TaskError> {
        let until = Instant::now() + within;
        loop {
            let mut failed = None;
            for (peer, _) in self.differing(&self.version_text()) {
                let deadline = (Instant::now() + EXCHANGE_TIMEOUT).min(until);
                if let Err(error) = self.pull(&peer, deadline).await {
                    failed = Some(error);
                }
            }
            let Some(failed) = failed else {
                return Ok(());
            };
            if Instant::now() >= until {
                return Err(failed);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Merges a schema (or some entries) a peer sent; returns whether this
    /// node's changed.
    pub(crate) async fn merge(&self, incoming: &SchemaBytes) -> Result<bool, RequestError> {
        let incoming = decode(&incoming.0).map_err(|e| RequestError::invalid(e.to_string()))?;
        let _guard = self.changing.lock().await;
        let mut next = (*self.current()).clone();
        if !next.merge(&incoming) {
            return Ok(false);
        }
        self.store(next)
            .await
            .map_err(|e| self.replica.server_error(e.to_string()))?;
        debug!(version = %self.version_text(), "merged a peer's schema");
        Ok(true)
    }

    /// This node's whole schema, for a peer that pulls it.
    pub(crate) fn encoded(&self) -> SchemaBytes {
        SchemaBytes(rmp_serde::to_vec(&*self.current()).expect("a schema encodes"))
    }

    /// Waits, at most `within`, until keyspace `name` exists here; returns
    /// whether it does.
    pub(crate) async fn wait_for_keyspace(&self, name: &str, within: Duration) -> bool {
        let mut changes = self.schema.subscribe();
        let found = changes.wait_for(|schema| schema.keyspace(name).is_some());
        matches!(tokio::time::timeout(within, found).await, Ok(Ok(_)))
    }

    /// Waits, at most `within`, until table `name` of `keyspace` exists
    /// here; returns it if it does.
    pub(crate) async fn wait_for_table(
        &self,
        keyspace: &str,
        name: &str,
        within: Duration,
    ) -> Option<TableDefinition> {
        let mut changes = self.schema.subscribe();
        let found = changes.wait_for(|schema| schema.table(keyspace, name).is_some());
        match tokio::time::timeout(within, found).await {
            Ok(Ok(schema)) => schema.table(keyspace, name).cloned(),
            _ => None,
        }
    }

    /// Stores `next` (synced), then makes it current and announces it.
    async fn store(&self, next: Schema) -> Result<(), StorageError> {
        let mut bytes = vec![SCHEMA_FORMAT];
        bytes.extend(rmp_serde::to_vec(&next).expect("a schema encodes"));
        let stored = self
            .replica
            .storage
            .blocking(move |storage| storage.put_meta(SCHEMA_META, &bytes))
            .await;
        if let Err(error) = stored {
            self.replica.storage.note_damage(&error);
            return Err(error);
        }
        *self.version.lock().expect("schema version") = next.version().to_string();
        self.replica.placement.set(next.placed_tables());
        self.schema.send_replace(Arc::new(next));
        self.announce().await;
        Ok(())
    }

    /// The version of the current schema, as gossip carries it.
    fn version_text(&self) -> String {
        self.version.lock().expect("schema version").clone()
    }

    /// The stamp of this node's next change (see [`super::next_stamp`]).
    fn stamp(&self, schema: &Schema) -> Stamp {
        let mut last = self.last_micros.lock().expect("schema stamps");
        let stamp = super::next_stamp(schema, *last, self.replica.now_micros(), &self.replica.me);
        *last = stamp.micros;
        stamp
    }

    /// Sends `change` to every live peer, waiting for their answers until
    /// `deadline` at most (a peer that misses it pulls it later).
    async fn push(&self, change: &Schema, deadline: Instant) {
        let bytes = SchemaBytes(rmp_serde::to_vec(change).expect("a schema encodes"));
        let deadline = deadline.min(Instant::now() + EXCHANGE_TIMEOUT);
        let view = self.replica.membership.view();
        let mut pushes = tokio::task::JoinSet::new();
        for peer in view
            .nodes
            .keys()
            .filter(|n| **n != self.replica.me && view.is_up(n))
        {
            let (peers, peer) = (self.replica.peers.clone(), peer.clone());
            let request = PeerRequest::PushSchema(bytes.clone());
            pushes.spawn(async move {
                if let Err(error) = ask(&*peers, &peer, request, deadline).await {
                    debug!(%error, "schema push failed; the peer will pull it");
                }
            });
        }
        while pushes.join_next().await.is_some() {}
    }

    /// The schema task: pulls the schema of each live peer that announces
    /// a version other than this node's, until `cancel`.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut pulled: BTreeMap<NodeId, String> = BTreeMap::new();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(CHECK_INTERVAL) => {}
            }
            let mine = self.version_text();
            for (peer, theirs) in self.differing(&mine) {
                // Each version of a peer is pulled once: if merging it
                // did not make the versions equal, the peer lacks what
                // this node has, and pulls it itself.
                if pulled.get(&peer) == Some(&theirs) {
                    continue;
                }
                match self.pull(&peer, Instant::now() + EXCHANGE_TIMEOUT).await {
                    Ok(()) => {
                        pulled.insert(peer, theirs);
                    }
                    Err(error) => warn!(%peer, %error, "could not pull the schema"),
                }
            }
        }
    }

    /// The live peers whose announced schema version is not `mine`.
    fn differing(&self, mine: &str) -> Vec<(NodeId, String)> {
        self.replica.schema_differing(mine)
    }

    async fn pull(&self, peer: &NodeId, deadline: Instant) -> Result<(), TaskError> {
        match ask(
            &*self.replica.peers,
            peer,
            PeerRequest::PullSchema,
            deadline,
        )
        .await?
        {
            PeerReply::Schema(bytes) => {
                self.merge(&bytes).await?;
                Ok(())
            }
            other => Err(TaskError::unexpected(peer, &other)),
        }
    }
}

/// Why a DDL statement did not change the schema.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SchemaFailure {
    /// The statement was refused.
    #[error(transparent)]
    Refused(#[from] DdlError),
    /// The change could not be stored.
    #[error("the schema change could not be stored: {0}")]
    Storage(#[from] StorageError),
    /// The change did not win over what this node holds (never expected:
    /// it is stamped after everything held).
    #[error("the schema change was superseded as it was made; run it again")]
    Lost,
}

/// Why schema bytes were refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Not a schema.
    #[error("not a schema: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// A schema that breaks a rule.
    #[error("an invalid schema: {0}")]
    Invalid(#[from] ringdb_proto::SchemaError),
    /// Stored by a later release.
    #[error("unknown schema format {0}")]
    Format(u8),
}

/// A schema a peer sent: decoded and checked.
fn decode(bytes: &[u8]) -> Result<Schema, DecodeError> {
    let schema: Schema = rmp_serde::from_slice(bytes)?;
    schema.validate()?;
    Ok(schema)
}

/// The stored schema: its format byte, then the schema.
fn decode_stored(bytes: &[u8]) -> Result<Schema, DecodeError> {
    match bytes.split_first() {
        Some((&SCHEMA_FORMAT, rest)) => decode(rest),
        Some((format, _)) => Err(DecodeError::Format(*format)),
        None => Err(DecodeError::Format(0)),
    }
}
