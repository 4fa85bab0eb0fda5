//! Writes of several rows of one partition together
//! ([`ClientRequest::WriteRows`], a CQL `BATCH`): the coordinator makes
//! every row's new version under the partition's lock and stores them in
//! one atomic write; each replica merges the set in one atomic write
//! ([`PeerRequest::ReplicateRows`]); a replica that misses it gets one hint
//! holding the whole set. So each replica stores all the rows of the write
//! or none of them, as Cassandra promises for a batch of one partition
//! (read repair and anti-entropy still move rows one at a time, so a read
//! of a replica being repaired can find part of a batch that it missed).
//! The write is acknowledged as a single-row write is: once `quorum`
//! replicas applied the set.
//!
//! No sloppy quorum and no consistency ANY: an `INSERT` or `UPDATE` needs a
//! replica's copy of the row to write over.
//!
//! [`PeerRequest::ReplicateRows`]: ringdb_proto::PeerRequest::ReplicateRows

use std::sync::Arc;

use ringdb_proto::{
    ClientReply, ClientRequest, ConsistencyLevel, Context, PartitionKey, PartitionVersions,
    PeerReply, ReadFirst, Receipt, RequestError, RowAddress, RowChange, RowId, RowWrite, TableId,
    VersionedRow, check_partition_rows,
};
use ringdb_ring::{NodeId, Token};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::read::names;
use super::write::{Targets, Write, await_acks};
use super::{Coordinator, Plan, Quorum};
use crate::causality::{CausalContext, VersionVector};
use crate::storage::{RowKey, RowVersion, RowWriteHere, decode_versions};
use crate::trace;

/// How many rows of a write look for their context at once (a row deleted
/// without one is read at the write's level first).
const CONTEXTS_AT_ONCE: usize = 16;

/// A row's context, and the read it made first if it did.
type RowContextFound = (Option<VersionVector>, Option<ReadFirst>);

/// A [`ClientRequest::WriteRows`], as the coordinator takes it.
pub(super) struct RowsWrite {
    pub(super) table: String,
    pub(super) partition: PartitionKey,
    pub(super) rows: Vec<RowWrite>,
    pub(super) consistency: ConsistencyLevel,
}

impl RowsWrite {
    fn into_request(self) -> ClientRequest {
        ClientRequest::WriteRows {
            table: self.table,
            partition: self.partition,
            rows: self.rows,
            consistency: self.consistency,
        }
    }

    /// Each row as the single-row write path sees it.
    fn writes(&self) -> Vec<Write> {
        (self.rows.iter())
            .map(|row| {
                let (columns, patch) = match &row.change {
                    RowChange::Update(columns) => (Some(columns.clone()), true),
                    RowChange::Replace(columns) => (Some(columns.clone()), false),
                    RowChange::Delete => (None, false),
                };
                Write {
                    row: RowAddress {
                        table: self.table.clone(),
                        partition: self.partition.clone(),
                        clustering: row.clustering.clone(),
                    },
                    columns,
                    context: row.context.clone(),
                    consistency: self.consistency,
                    sloppy: false,
                    patch,
                    timestamp: row.timestamp,
                    replaces: matches!(row.change, RowChange::Replace(_)),
                    and_unread: row.and_unread,
                }
            })
            .collect()
    }
}

impl Coordinator {
    /// Writes rows of one partition together: here when this node is a
    /// replica, else forwarded to one.
    pub(super) async fn write_rows(
        self: Arc<Self>,
        write: RowsWrite,
        deadline: Instant,
        forwarded: bool,
    ) -> Result<ClientReply, RequestError> {
        self.check_rows(&write)?;
        let writes = write.writes();
        let Plan {
            id,
            replicas,
            required,
            quorum,
        } = self.plan(&writes[0].row, write.consistency, true)?;
        if replicas.contains(&self.me) {
            let here = self.write_rows_here(writes, id.table, (replicas, quorum), deadline);
            return here.await;
        }
        if forwarded {
            return Err(RequestError::invalid(
                "forwarded to a node that is not a replica: the nodes disagree about the ring",
            ));
        }
        let targets = self.forward_targets(&writes[0].row, &replicas, write.consistency);
        let request = write.into_request();
        match self.forward(&targets, required, request, deadline).await {
            Some(answer) => answer,
            None => {
                trace::event(|| format!("unavailable: no replica of {} is up", names(&replicas)));
                Err(RequestError::Unavailable { required, alive: 0 })
            }
        }
    }

    /// Checks a write of rows before anything is done: some rows, each
    /// once, of a size a row may have, not at ANY, and no delete stamped
    /// by its client.
    fn check_rows(&self, write: &RowsWrite) -> Result<(), RequestError> {
        check_partition_rows(write.rows.iter().map(|row| &row.clustering))?;
        if write.consistency == ConsistencyLevel::Any {
            return Err(RequestError::invalid(
                "rows written together cannot be written at consistency ANY: writing them needs \
                 one of their replicas; use ONE",
            ));
        }
        for row in &write.rows {
            match &row.change {
                RowChange::Update(columns) | RowChange::Replace(columns) => {
                    self.check_row_size(columns)?;
                }
                RowChange::Delete if row.timestamp.is_some() => {
                    return Err(RequestError::invalid(
                        "a delete is stamped by its coordinator: a tombstone stamped in the past \
                         could be purged before it reached every replica",
                    ));
                }
                RowChange::Delete => {}
            }
        }
        Ok(())
    }

    /// Rows of one partition written by one of its replicas: the new
    /// versions are made here in one write, then sent together to the
    /// other live replicas, and acknowledged once `quorum` applied them.
    async fn write_rows_here(
        self: Arc<Self>,
        writes: Vec<Write>,
        table: TableId,
        (replicas, quorum): (Vec<NodeId>, Quorum),
        deadline: Instant,
    ) -> Result<ClientReply, RequestError> {
        let targets = self
            .targets(&writes[0], replicas, &quorum, deadline)
            .await?;
        let mut receipt = Receipt {
            coordinator: Some(self.me.clone()),
            acknowledged: vec![self.me.clone()],
            ..Receipt::default()
        };
        let partition = writes[0].row.partition.clone();
        let needs = (targets.alive.as_slice(), quorum.required());
        let contexts = (self.contexts(&writes, table, needs, deadline)).await?;
        (receipt.read_first) = contexts.iter().find_map(|(_, read)| read.clone());
        // One timestamp for every row, as Cassandra stamps a batch.
        let now = self.now_micros();
        let here = (writes.into_iter().zip(contexts))
            .map(|(write, (context, _))| RowWriteHere {
                key: RowKey::new(table, partition.clone(), write.row.clustering),
                context,
                version: RowVersion {
                    timestamp_micros: now,
                    row: write.columns,
                },
                patch: write.patch,
                explicit: write.timestamp,
            })
            .collect::<Vec<_>>();
        let clusterings: Vec<_> = here.iter().map(|row| row.key.clustering.clone()).collect();
        let (me, limits) = (self.me.clone(), self.row_limits());
        let written = self
            .blocking(move |storage| storage.write_rows(here, &me, limits))
            .await?;
        trace::event(|| format!("wrote {} rows locally, in one write", written.len()));
        let rows = clusterings
            .into_iter()
            .zip(&written)
            .map(|(clustering, written)| (clustering, VersionedRow(written.encoded.clone())))
            .collect();
        let write = Arc::new(PartitionVersions {
            table,
            partition,
            rows,
        });
        self.replicate_written(&write, &targets, &quorum, &mut receipt, deadline)
            .await?;
        let contexts = (written.iter())
            .map(|written| Context(CausalContext::encode(&written.context)))
            .collect();
        Ok(ClientReply::WrittenRows { contexts, receipt })
    }

    /// Each row's context (see `write_context`), and the read a row made
    /// first if it did; rows that must be read first are read
    /// [`CONTEXTS_AT_ONCE`] at a time.
    async fn contexts(
        self: &Arc<Self>,
        writes: &[Write],
        table: TableId,
        (alive, required): (&[NodeId], usize),
        deadline: Instant,
    ) -> Result<Vec<RowContextFound>, RequestError> {
        let gate = Arc::new(Semaphore::new(CONTEXTS_AT_ONCE));
        let mut tasks = JoinSet::new();
        for (index, write) in writes.iter().enumerate() {
            let (this, write, gate) = (self.clone(), write.clone(), gate.clone());
            let alive = alive.to_vec();
            let id = RowId {
                table,
                partition: write.row.partition.clone(),
                clustering: write.row.clustering.clone(),
            };
            tasks.spawn(trace::follow(async move {
                let _permit = gate.acquire_owned().await;
                if Instant::now() >= deadline {
                    return (
                        index,
                        Err(RequestError::Timeout {
                            required,
                            acknowledged: 0,
                            write: true,
                        }),
                    );
                }
                let mut receipt = Receipt::default();
                let found = (this.write_context(&write, &id, &alive, &mut receipt, deadline)).await;
                (index, found.map(|context| (context, receipt.read_first)))
            }));
        }
        let mut found: Vec<Option<RowContextFound>> = vec![None; writes.len()];
        while let Some(joined) = tasks.join_next().await {
            let (index, context) = joined.map_err(|e| self.server_error(e.to_string()))?;
            found[index] = Some(context?);
        }
        Ok(found.into_iter().map(|f| f.expect("every row")).collect())
    }

    /// Sends written rows to the other live replicas, hints them for the
    /// replicas down, and waits until `quorum` applied them.
    async fn replicate_written(
        self: &Arc<Self>,
        write: &Arc<PartitionVersions>,
        targets: &Targets,
        quorum: &Quorum,
        receipt: &mut Receipt,
        deadline: Instant,
    ) -> Result<(), RequestError> {
        let mut acks = self.send_write(targets, write, deadline);
        trace::event(|| {
            let others: Vec<NodeId> = (targets.alive.iter())
                .filter(|r| **r != self.me)
                .cloned()
                .collect();
            format!("sent the rows to {}", names(&others))
        });
        receipt.hinted = self.handoff.hint(write, targets.down.clone()).await;
        if !receipt.hinted.is_empty() {
            trace::event(|| format!("stored hints for {:?} (down)", receipt.hinted));
        }
        let waited = await_acks(&mut acks, quorum, receipt, deadline).await;
        // As for one row: the acknowledgements still to come hint
        // themselves if they fail.
        acks.detach_all();
        waited
    }

    /// Merges rows of one partition sent by their coordinator, in one
    /// atomic write.
    pub(super) async fn replicate_rows(
        &self,
        rows: PartitionVersions,
    ) -> Result<PeerReply, RequestError> {
        rows.check()?;
        let (table, token) = (rows.table, Token::of(rows.partition.as_bytes()));
        // As for one row: a coordinator whose view is behind must not
        // count this node.
        if !self.replicates(table, token) {
            return Err(RequestError::NotAReplica {
                node: self.me.clone(),
            });
        }
        let mut decoded = Vec::with_capacity(rows.rows.len());
        for (id, versions) in rows.row_ids() {
            let incoming = decode_versions(&versions.0)
                .map_err(|e| RequestError::invalid(format!("malformed versioned row: {e}")))?;
            decoded.push((RowKey::new(id.table, id.partition, id.clustering), incoming));
        }
        self.cleanup.arrivals.note(&self.replica, [(table, token)]);
        self.blocking(move |storage| storage.merge_rows(&decoded))
            .await?;
        Ok(PeerReply::Applied)
    }
}
