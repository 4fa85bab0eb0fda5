//! The read path: reads from enough replicas with speculative retry, the
//! merge of their sibling sets, and read repair (blocking for the replicas
//! read, in the background for the rest).

use std::sync::Arc;
use std::time::Duration;

use ringdb_proto::{
    ClientReply, ConsistencyLevel, Context, PeerReply, PeerRequest, Receipt, RequestError, Row,
    RowAddress, RowId, Sibling, VersionedRow,
};
use ringdb_ring::NodeId;
use ringdb_wire::multiplex::CallError;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::debug;

use super::quorum::{Quorum, Shortfall};
use super::{BackgroundJob, Coordinator};
use crate::causality::CausalContext;
use crate::storage::{RowKey, StoredRow, decode_versions, encode_row};
use crate::trace;

impl Coordinator {
    pub(super) async fn read(
        self: Arc<Self>,
        row: RowAddress,
        consistency: ConsistencyLevel,
        deadline: Instant,
    ) -> Result<ClientReply, RequestError> {
        let (merged, receipt) = self.read_merged(&row, consistency, deadline).await?;
        Ok(ClientReply::Read {
            siblings: siblings_of(&merged),
            context: Context(CausalContext::encode(&merged.context())),
            receipt,
        })
    }

    /// A read at `consistency`: the merged sibling set of the replicas
    /// read (repaired on those behind before it returns), and its receipt.
    pub(super) async fn read_merged(
        self: Arc<Self>,
        row: &RowAddress,
        consistency: ConsistencyLevel,
        deadline: Instant,
    ) -> Result<(StoredRow, Receipt), RequestError> {
        let plan = self.plan(row, consistency, false)?;
        let (id, required) = (plan.id.clone(), plan.required);
        let quorum = self.read_quorum(row, plan.quorum, consistency);
        let alive = self.alive(&quorum, deadline).await;
        let answers = self.gather(&quorum, &alive, &id, deadline).await?;
        let merged = answers
            .iter()
            .fold(StoredRow::new(), |merged, (_, stored)| merged.sync(stored));
        let repaired = self
            .repair_read(&quorum, &id, &merged, &answers, required, deadline)
            .await?;
        let unread: Vec<NodeId> = alive
            .iter()
            .filter(|r| !answers.iter().any(|(a, _)| a == *r))
            .cloned()
            .collect();
        if !unread.is_empty() {
            self.repair_in_background(id, merged.clone(), unread);
        }
        let receipt = Receipt {
            coordinator: Some(self.me.clone()),
            acknowledged: answers.into_iter().map(|(replica, _)| replica).collect(),
            repaired,
            ..Receipt::default()
        };
        Ok((merged, receipt))
    }

    /// Reads the row from the live replicas until `quorum` is met: those
    /// asked first, a spare for each that fails, and one more whenever
    /// those asked are slower than the speculative retry delay.
    async fn gather(
        self: &Arc<Self>,
        quorum: &Quorum,
        alive: &[NodeId],
        id: &RowId,
        deadline: Instant,
    ) -> Result<Vec<(NodeId, StoredRow)>, RequestError> {
        let spawn = |reads: &mut Reads<StoredRow>, replica: &NodeId| {
            self.spawn_read(reads, replica, id, deadline);
        };
        gather(
            quorum,
            alive,
            deadline,
            self.limits.speculative_retry_ms,
            spawn,
        )
        .await
    }
}

/// Reads from the live replicas until `quorum` is met: those asked first,
/// a spare for each that fails, and one more whenever those asked are
/// slower than the speculative retry delay. `spawn` starts one replica's read.
pub(super) async fn gather<T: Send + 'static>(
    quorum: &Quorum,
    alive: &[NodeId],
    deadline: Instant,
    speculative_retry_ms: u64,
    spawn: impl Fn(&mut Reads<T>, &NodeId),
) -> Result<Vec<(NodeId, T)>, RequestError> {
    let first = quorum.first_asks(alive).map_err(|short| {
        trace::event(|| {
            format!(
                "unavailable: {} replicas needed, alive: {}",
                short.required,
                names(alive)
            )
        });
        RequestError::Unavailable {
            required: short.required,
            alive: short.have,
        }
    })?;
    let mut reads = JoinSet::new();
    for replica in &first {
        spawn(&mut reads, replica);
    }
    trace::event(|| format!("asked {}", names(&first)));
    let mut gathering = Gathering::new(first, alive);
    let speculative = Duration::from_millis(speculative_retry_ms);
    let mut speculate_at = Instant::now() + speculative;
    while !quorum.met_by(&gathering.answered) {
        let wait_until = if gathering.spares.is_empty() {
            deadline
        } else {
            speculate_at.min(deadline)
        };
        let ask = match tokio::time::timeout_at(wait_until, reads.join_next()).await {
            Ok(Some(Ok((replica, outcome)))) => {
                trace::event(|| match &outcome {
                    Ok(_) => format!("{replica} answered"),
                    Err(error) => format!("{replica} failed: {error}"),
                });
                gathering.answer(replica, outcome)
            }
            Ok(Some(Err(error))) => {
                debug!(%error, "replica read task failed");
                Ask::Replacements
            }
            // Speculative retry: a replica is slow (or silently gone):
            // ask a spare rather than wait for the deadline.
            Err(_) if Instant::now() < deadline && !gathering.spares.is_empty() => {
                debug!("speculative read");
                trace::event(|| "speculative retry: the replicas asked are slow".into());
                speculate_at = Instant::now() + speculative;
                Ask::Speculative
            }
            Ok(None) if gathering.damaged.is_some() => {
                return Err(gathering.damaged.expect("checked"));
            }
            Ok(None) | Err(_) => return Err(gathering.timeout(quorum)),
        };
        for spare in gathering.asks(ask, quorum) {
            trace::event(|| format!("asked spare {spare}"));
            spawn(&mut reads, &spare);
            gathering.outstanding.push(spare);
        }
    }
    Ok(gathering.answers)
}

/// The reads in flight: each replica's answer.
pub(super) type Reads<T> = JoinSet<(NodeId, Result<T, RequestError>)>;

impl Coordinator {
    /// Blocking read repair: writes the merge to the replicas read that
    /// are behind it, and returns those repaired; a timeout if too few of
    /// the replicas read hold the merge by the deadline.
    async fn repair_read(
        self: &Arc<Self>,
        quorum: &Quorum,
        id: &RowId,
        merged: &StoredRow,
        answers: &[(NodeId, StoredRow)],
        required: usize,
        deadline: Instant,
    ) -> Result<Vec<NodeId>, RequestError> {
        let behind: Vec<NodeId> = answers
            .iter()
            .filter(|(_, stored)| !stored.descends(merged))
            .map(|(replica, _)| replica.clone())
            .collect();
        if !behind.is_empty() {
            trace::event(|| format!("read repair of {}", names(&behind)));
        }
        let repaired = self.repair(id, merged, &behind, deadline).await;
        if repaired.len() < behind.len() {
            // The answers that hold the merge now.
            let holding: Vec<NodeId> = answers
                .iter()
                .map(|(replica, _)| replica)
                .filter(|r| !behind.contains(r) || repaired.contains(r))
                .cloned()
                .collect();
            let short = quorum.shortfall(&holding).unwrap_or(Shortfall {
                required,
                have: holding.len(),
            });
            return Err(RequestError::Timeout {
                required: short.required,
                acknowledged: short.have,
                write: false,
            });
        }
        Ok(repaired)
    }

    /// What a read at `level` needs: what `quorum` asks of the row's
    /// replicas and, while a node joins or leaves, as much of the replicas
    /// of the ring after the change (see [`Quorum`]).
    pub(super) fn read_quorum(
        &self,
        row: &RowAddress,
        quorum: Quorum,
        level: ConsistencyLevel,
    ) -> Quorum {
        match &self.membership.view().future {
            Some(future) => {
                let replication = self.placed(row);
                let after = future.replicas(row.token(), &replication);
                quorum.with(self.level_quorum(&replication, &after, &[], level))
            }
            None => quorum,
        }
    }

    fn spawn_read(
        self: &Arc<Self>,
        reads: &mut Reads<StoredRow>,
        replica: &NodeId,
        id: &RowId,
        deadline: Instant,
    ) {
        let replica = replica.clone();
        if replica == self.me {
            let key = RowKey::new(id.table, id.partition.clone(), id.clustering.clone());
            let this = self.clone();
            reads.spawn(async move {
                let stored = this.blocking(move |storage| storage.get(&key)).await;
                (replica, stored.map(Option::unwrap_or_default))
            });
            return;
        }
        let call = self
            .peers
            .send(&replica, PeerRequest::Read { row: id.clone() }, deadline);
        reads.spawn(async move {
            let answer = match call {
                Ok(call) => call.answer(deadline).await,
                Err(error) => Err(error),
            };
            (replica, read_answer(answer))
        });
    }

    /// Merges `merged` into each of `replicas`; returns those that took it
    /// before the deadline.
    pub(super) async fn repair(
        &self,
        id: &RowId,
        merged: &StoredRow,
        replicas: &[NodeId],
        deadline: Instant,
    ) -> Vec<NodeId> {
        let versions = VersionedRow(encode_row(merged));
        let mut repairs = JoinSet::new();
        for replica in replicas {
            let replica = replica.clone();
            if replica == self.me {
                let key = RowKey::new(id.table, id.partition.clone(), id.clustering.clone());
                let storage = self.storage.clone();
                let incoming = merged.clone();
                repairs.spawn(async move {
                    let outcome = storage
                        .blocking(move |storage| storage.merge(&key, &incoming))
                        .await;
                    (replica, outcome.is_ok())
                });
                continue;
            }
            let request = PeerRequest::Replicate {
                row: id.clone(),
                versions: versions.clone(),
            };
            let call = self.peers.send(&replica, request, deadline);
            repairs.spawn(async move {
                let applied = match call {
                    Ok(call) => matches!(call.answer(deadline).await, Ok(PeerReply::Applied)),
                    Err(_) => false,
                };
                (replica, applied)
            });
        }
        let mut repaired = Vec::new();
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, repairs.join_next()).await {
            if let Ok((replica, true)) = joined {
                repaired.push(replica);
            }
        }
        repaired
    }

    /// Reads `replicas` after the answer and repairs those behind `merged`.
    fn repair_in_background(self: &Arc<Self>, id: RowId, merged: StoredRow, replicas: Vec<NodeId>) {
        let this = self.clone();
        let job: BackgroundJob = Box::pin(async move {
            let deadline = Instant::now() + this.limits.timeout();
            let mut reads = JoinSet::new();
            for replica in &replicas {
                this.spawn_read(&mut reads, replica, &id, deadline);
            }
            let mut behind = Vec::new();
            while let Some(joined) = reads.join_next().await {
                if let Ok((replica, Ok(stored))) = joined
                    && !stored.descends(&merged)
                {
                    behind.push(replica);
                }
            }
            if !behind.is_empty() {
                let repaired = this.repair(&id, &merged, &behind, deadline).await;
                debug!(?repaired, "background read repair");
            }
        });
        // A full queue sheds the repair: it is an optimisation, and
        // anti-entropy catches what it misses.
        if self.background.try_send(job).is_err() {
            debug!("background read repair queue full; repair skipped");
        }
    }
}

/// Which spares a read asks after an event.
enum Ask {
    Nothing,
    /// Those that make up for replicas that failed.
    Replacements,
    /// One more, since those asked are slow.
    Speculative,
}

/// A read's progress: the replicas it may still ask, those asked that have
/// not answered, the answers, and a damaged replica's error.
struct Gathering<T> {
    spares: Vec<NodeId>,
    outstanding: Vec<NodeId>,
    answers: Vec<(NodeId, T)>,
    answered: Vec<NodeId>,
    /// A replica that answered it holds damaged data: if the level cannot
    /// be met without it, that is the read's error.
    damaged: Option<RequestError>,
}

impl<T> Gathering<T> {
    /// Asked `first`; the rest of `alive` are spares.
    fn new(first: Vec<NodeId>, alive: &[NodeId]) -> Gathering<T> {
        Gathering {
            spares: alive
                .iter()
                .filter(|r| !first.contains(r))
                .cloned()
                .collect(),
            outstanding: first,
            answers: Vec::new(),
            answered: Vec::new(),
            damaged: None,
        }
    }

    /// The timeout of a read whose level was not met.
    fn timeout(&self, quorum: &Quorum) -> RequestError {
        let short = quorum.shortfall(&self.answered).expect("not met");
        RequestError::Timeout {
            required: short.required,
            acknowledged: short.have,
            write: false,
        }
    }

    /// Notes a replica's answer; returns whom to ask more.
    fn answer(&mut self, replica: NodeId, outcome: Result<T, RequestError>) -> Ask {
        self.outstanding.retain(|r| *r != replica);
        match outcome {
            Ok(stored) => {
                self.answered.push(replica.clone());
                self.answers.push((replica, stored));
                Ask::Nothing
            }
            Err(error) => {
                debug!(%replica, %error, "replica read failed");
                if let RequestError::DamagedData { .. } = error {
                    self.damaged = Some(error);
                }
                Ask::Replacements
            }
        }
    }

    /// The spares to ask now.
    fn asks(&mut self, ask: Ask, quorum: &Quorum) -> Vec<NodeId> {
        match ask {
            Ask::Nothing => Vec::new(),
            Ask::Replacements => {
                quorum.spares_for(&mut self.spares, &self.answered, &self.outstanding)
            }
            Ask::Speculative => quorum
                .speculative_spare(&mut self.spares, &self.answered)
                .into_iter()
                .collect(),
        }
    }
}

fn read_answer(answer: Result<PeerReply, CallError>) -> Result<StoredRow, RequestError> {
    match answer {
        Ok(PeerReply::Row(None)) => Ok(StoredRow::new()),
        Ok(PeerReply::Row(Some(versions))) => decode_versions(&versions.0)
            .map_err(|e| RequestError::invalid(format!("malformed versioned row: {e}"))),
        Ok(other) => Err(RequestError::invalid(format!(
            "unexpected reply to a read: {other:?}"
        ))),
        Err(CallError::Remote(error)) => Err(error),
        Err(error) => Err(RequestError::invalid(error.to_string())),
    }
}

/// The live versions of a row, as a reader sees them.
pub(crate) fn siblings_of(merged: &StoredRow) -> Vec<Sibling> {
    merged
        .siblings()
        .filter_map(|(dot, version)| {
            let columns: Row = version.row.clone()?;
            Some(Sibling {
                columns,
                timestamp_micros: version.timestamp_micros,
                writer: format!("{}@{:x}:{}", dot.actor.node, dot.actor.epoch, dot.counter),
            })
        })
        .collect()
}

/// Node names for a trace: `node1, node2`.
pub(super) fn names(nodes: &[NodeId]) -> String {
    let names: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    names.join(", ")
}
