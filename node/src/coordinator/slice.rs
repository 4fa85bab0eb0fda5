//! Slices: a page of one partition's rows, read at a consistency level.
//!
//! Each replica read returns at most the page's count of rows (tombstones
//! included) from the start of the slice, in the slice's direction. Their
//! merge is only complete up to where the replica that stopped first
//! stopped: past that key, a row one replica returned may have a tombstone
//! (or a newer version) on a replica that stopped before reaching it. So
//! the page ends at the earliest last key among the replicas that stopped
//! at the limit (Cassandra's short-read protection, in its simplest form),
//! and the caller asks for the next page from there. Rows a replica read
//! lacks or holds behind the merge are repaired before the answer, as a
//! single-row read repairs its replicas.

use std::sync::Arc;

use ringdb_proto::{
    ClusteringKey, ConsistencyLevel, PeerReply, PeerRequest, RequestError, RowAddress, RowId,
    SliceRead, StreamedRow,
};
use ringdb_ring::NodeId;
use ringdb_wire::multiplex::CallError;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Coordinator;
use super::read::{Reads, gather, names};
use crate::storage::{RowKey, StoredRow, decode_versions};
use crate::trace;

/// One replica's page: rows in the slice's order, and whether it stopped
/// at the limit.
type ReplicaPage = (Vec<(ClusteringKey, StoredRow)>, bool);

/// A page of a slice, merged from the replicas read.
pub(crate) struct SlicePage {
    /// The rows (tombstones too: a caller counts the live ones), in the
    /// slice's order.
    pub(crate) rows: Vec<(ClusteringKey, StoredRow)>,
    /// Where the page stopped when rows may follow: the next page starts
    /// after this key (before it, in reverse).
    pub(crate) resume: Option<ClusteringKey>,
}

impl Coordinator {
    /// Reads a page of `read`'s slice at `consistency`.
    pub(crate) async fn read_slice(
        self: Arc<Self>,
        read: SliceRead,
        consistency: ConsistencyLevel,
        deadline: Instant,
    ) -> Result<SlicePage, RequestError> {
        let deadline = deadline.min(Instant::now() + self.limits.timeout());
        let address =
            RowAddress::of_table(read.table, read.partition.clone(), ClusteringKey::empty());
        let plan = self.plan(&address, consistency, false)?;
        let (replicas, required) = (plan.replicas.len(), plan.required);
        let quorum = self.read_quorum(&address, plan.quorum, consistency);
        let alive = self.alive(&quorum, deadline).await;
        trace::event(|| {
            format!(
                "reading a slice of partition 0x{} at {consistency}: {} replicas ({required} required), {} alive",
                hex::encode(read.partition.as_bytes()),
                replicas,
                alive.len()
            )
        });
        let spawn = |reads: &mut Reads<ReplicaPage>, replica: &NodeId| {
            self.spawn_slice(reads, replica, &read, deadline);
        };
        let speculative = self.limits.speculative_retry_ms;
        let answers = gather(&quorum, &alive, deadline, speculative, spawn).await?;
        let (rows, resume) = merge_pages(&answers, read.reverse);
        let repaired = self.repair_slice(&read, &rows, &answers, deadline).await?;
        trace::event(|| {
            let answered: Vec<NodeId> = answers.iter().map(|(r, _)| r.clone()).collect();
            let repaired = match repaired.is_empty() {
                true => String::new(),
                false => format!("; repaired {}", names(&repaired)),
            };
            format!(
                "merged {} rows from {}{repaired}",
                rows.len(),
                names(&answered)
            )
        });
        Ok(SlicePage { rows, resume })
    }

    /// Starts one replica's read of a page (this node's own from its storage).
    fn spawn_slice(
        self: &Arc<Self>,
        reads: &mut Reads<ReplicaPage>,
        replica: &NodeId,
        read: &SliceRead,
        deadline: Instant,
    ) {
        let (replica, read) = (replica.clone(), read.clone());
        if replica == self.me {
            let this = self.clone();
            reads.spawn(async move {
                let asked = read.clone();
                let page = this.blocking(move |storage| storage.slice(&asked)).await;
                let page = page.and_then(|(rows, more)| {
                    let rows = rows
                        .into_iter()
                        .map(|(key, versions)| StreamedRow {
                            key,
                            versions: ringdb_proto::VersionedRow(versions),
                        })
                        .collect();
                    decode_page(&read, rows, more)
                });
                (replica, page)
            });
            return;
        }
        let call = self
            .peers
            .send(&replica, PeerRequest::ReadSlice(read.clone()), deadline);
        reads.spawn(async move {
            let answer = match call {
                Ok(call) => call.answer(deadline).await,
                Err(error) => Err(error),
            };
            let page = match answer {
                Ok(PeerReply::Rows { rows, more }) => decode_page(&read, rows, more),
                Ok(other) => Err(RequestError::invalid(format!(
                    "unexpected reply to a slice read: {other:?}"
                ))),
                Err(CallError::Remote(error)) => Err(error),
                Err(error) => Err(RequestError::invalid(error.to_string())),
            };
            (replica, page)
        });
    }

    /// Blocking read repair of a page: each row to the replicas read that
    /// lack it or hold it behind the merge. A timeout when a repair fails,
    /// as for a single row.
    async fn repair_slice(
        self: &Arc<Self>,
        read: &SliceRead,
        rows: &[(ClusteringKey, StoredRow)],
        answers: &[(NodeId, ReplicaPage)],
        deadline: Instant,
    ) -> Result<Vec<NodeId>, RequestError> {
        let mut repairs = JoinSet::new();
        for (clustering, merged) in rows {
            let behind: Vec<NodeId> = answers
                .iter()
                .filter(|(_, (page, _))| {
                    let held = page.iter().find(|(key, _)| key == clustering);
                    !held.is_some_and(|(_, stored)| stored.descends(merged))
                })
                .map(|(replica, _)| replica.clone())
                .collect();
            if behind.is_empty() {
                continue;
            }
            trace::event(|| format!("read repair of a row on {}", names(&behind)));
            let id = RowId {
                table: read.table,
                partition: read.partition.clone(),
                clustering: clustering.clone(),
            };
            let (this, merged) = (self.clone(), merged.clone());
            repairs.spawn(async move {
                let repaired = this.repair(&id, &merged, &behind, deadline).await;
                (repaired.len() == behind.len(), repaired)
            });
        }
        let mut all = Vec::new();
        while let Some(joined) = repairs.join_next().await {
            let (complete, repaired) = joined.unwrap_or((false, Vec::new()));
            if !complete {
                return Err(RequestError::Timeout {
                    required: answers.len(),
                    acknowledged: repaired.len(),
                    write: false,
                });
            }
            for replica in repaired {
                if !all.contains(&replica) {
                    all.push(replica);
                }
            }
        }
        Ok(all)
    }
}

/// A replica's page, decoded: each row's clustering key and sibling set,
/// checked to belong to the slice asked for.
fn decode_page(
    read: &SliceRead,
    rows: Vec<StreamedRow>,
    more: bool,
) -> Result<ReplicaPage, RequestError> {
    let malformed = |what: String| RequestError::invalid(format!("malformed slice page: {what}"));
    let mut page = Vec::with_capacity(rows.len());
    for row in rows {
        let key = RowKey::decode(&row.key).map_err(|e| malformed(e.to_string()))?;
        if key.table != read.table || key.partition != read.partition {
            return Err(malformed("a row of another partition".into()));
        }
        let stored = decode_versions(&row.versions.0).map_err(|e| malformed(e.to_string()))?;
        page.push((key.clustering, stored));
    }
    Ok((page, more))
}

/// Merges the replicas' pages up to where every one of them is complete:
/// the rows in the slice's order, and the key the page ends at when rows
/// may follow.
fn merge_pages(
    answers: &[(NodeId, ReplicaPage)],
    reverse: bool,
) -> (Vec<(ClusteringKey, StoredRow)>, Option<ClusteringKey>) {
    // The earliest, in the slice's order, of the last keys of the replicas
    // that stopped at the limit.
    let before = |a: &ClusteringKey, b: &ClusteringKey| if reverse { a > b } else { a < b };
    let mut resume: Option<ClusteringKey> = None;
    for (_, (page, more)) in answers {
        if let (true, Some((last, _))) = (*more, page.last())
            && resume.as_ref().is_none_or(|r| before(last, r))
        {
            resume = Some(last.clone());
        }
    }
    let mut merged: std::collections::BTreeMap<ClusteringKey, StoredRow> = Default::default();
    for (_, (page, _)) in answers {
        for (key, stored) in page {
            if resume.as_ref().is_some_and(|r| before(r, key)) {
                break;
            }
            let entry = merged.entry(key.clone()).or_default();
            *entry = entry.sync(stored);
        }
    }
    let mut rows: Vec<(ClusteringKey, StoredRow)> = merged.into_iter().collect();
    if reverse {
        rows.reverse();
    }
    (rows, resume)
}
