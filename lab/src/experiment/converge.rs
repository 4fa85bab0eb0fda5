//! After the faults: how long the replicas take to agree by themselves,
//! a repair when they do not, and the final state of every row.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ringdb_proto::{ClientReply, ClientRequest, ConsistencyLevel};
use ringdb_ring::{NodeId, Ring};
use ringdb_sim::history::{Event, History, Key, Op};
use ringdb_sim::workload::{Recorder, Target, address, values_of};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::target::LabTarget;

/// How often the replicas are compared.
const POLL: Duration = Duration::from_millis(250);
/// Rows compared at once.
const PARALLEL: usize = 32;
/// How long a repair of one node may take.
const REPAIR_WITHIN: Duration = Duration::from_secs(120);
/// How long rows written at the very end have to reach every replica.
const SETTLE: Duration = Duration::from_secs(15);

/// How the replicas came to agree after the faults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Convergence {
    /// When the last fault ended, in milliseconds from the start.
    pub healed_ms: u64,
    /// Rows written before then, whose replicas were compared.
    pub rows: usize,
    /// Of those, rows whose replicas disagreed when first compared.
    pub rows_differing: usize,
    /// How long after the last fault ended every one of those rows had
    /// been seen the same on all its replicas, with no repair (hints, read
    /// repair and background anti-entropy); `None`: not within the limit.
    pub converged_after_ms: Option<u64>,
    /// What the repair did, when one was needed.
    pub repair: Option<String>,
    /// Rows whose replicas still disagreed at the end.
    pub rows_diverged: Vec<String>,
}

/// A row's state on one replica: its values and their dots.
type State = (Vec<u64>, Vec<String>);

/// Which replicas hold each row.
struct Placement {
    ring: Option<(Ring, ringdb_ring::Replication)>,
    nodes: Vec<NodeId>,
}

impl Placement {
    async fn fetch(lab: &LabTarget) -> Placement {
        let nodes = lab.nodes();
        let ring = match lab.client().status().await {
            Ok(status) => {
                let mut ring = Ring::new();
                for node in status.nodes.iter().filter(|n| n.status == "Normal") {
                    // A node the ring refuses is left out; replicas() then
                    // names the others.
                    let _ =
                        ring.add_node(node.id.clone(), node.location.clone(), node.tokens.clone());
                }
                Some((ring, status.replication))
            }
            Err(_) => None,
        };
        Placement { ring, nodes }
    }

    fn replicas(&self, key: &Key) -> Vec<NodeId> {
        match &self.ring {
            Some((ring, replication)) if !ring.is_empty() => {
                ring.replicas(address(key).token(), replication)
            }
            _ => self.nodes.clone(),
        }
    }
}

/// Compares the replicas of `keys`: each row's states (one per replica
/// that answered; a replica that did not counts as differing).
async fn compare(
    lab: &Arc<LabTarget>,
    placement: &Arc<Placement>,
    keys: Vec<Key>,
) -> BTreeMap<Key, Option<State>> {
    let mut tasks = JoinSet::new();
    let chunk = keys.len().div_ceil(PARALLEL).max(1);
    for part in keys.chunks(chunk) {
        let part = part.to_vec();
        let (lab, placement) = (lab.clone(), placement.clone());
        tasks.spawn(async move {
            let mut found = Vec::new();
            for key in part {
                let mut states = BTreeSet::new();
                let mut missing = false;
                for node in placement.replicas(&key) {
                    let request = ClientRequest::LocalGet { row: address(&key) };
                    match lab.call(&node, request).await {
                        Ok(ClientReply::Read { siblings, .. }) => {
                            states.insert(values_of(&siblings));
                        }
                        _ => missing = true,
                    }
                }
                let agreed = (!missing && states.len() == 1)
                    .then(|| states.pop_first())
                    .flatten();
                found.push((key, agreed));
            }
            found
        });
    }
    tasks.join_all().await.into_iter().flatten().collect()
}

/// Every row the history wrote (or tried to), before `before_ms` when given.
fn written_keys(history: &History, before_ms: Option<u64>) -> Vec<Key> {
    let keys: BTreeSet<Key> = history
        .events
        .iter()
        .filter_map(|event| match event {
            Event::Invoke { at_ms, op, .. }
                if !matches!(op, Op::Get { .. }) && before_ms.is_none_or(|b| *at_ms <= b) =>
            {
                Some(op.key())
            }
            _ => None,
        })
        .collect();
    keys.into_iter().collect()
}

/// Where the replicas stood when the watch ended.
pub struct Watched {
    convergence: Convergence,
    /// Rows still differing.
    pending: Vec<Key>,
}

/// Waits (up to `within`) for the rows written before the faults ended,
/// at `healed_ms`, to agree on their replicas: runs while the clients go
/// on, from the moment the last fault ends.
pub async fn watch(
    lab: Arc<LabTarget>,
    recorder: Arc<Recorder>,
    healed_ms: u64,
    within: Duration,
) -> Watched {
    let mut pending = written_keys(&recorder.history(), Some(healed_ms));
    let mut convergence = Convergence {
        healed_ms,
        rows: pending.len(),
        ..Convergence::default()
    };
    let deadline = Instant::now() + within;
    let mut first = true;
    while !pending.is_empty() && Instant::now() < deadline {
        // Asked each round: a node that rejoins takes its ranges meanwhile.
        let placement = Arc::new(Placement::fetch(&lab).await);
        let compared = compare(&lab, &placement, pending.clone()).await;
        pending.retain(|key| compared.get(key).is_none_or(Option::is_none));
        if first {
            convergence.rows_differing = pending.len();
            first = false;
        }
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    if pending.is_empty() {
        let after = recorder.now_ms().saturating_sub(healed_ms);
        convergence.converged_after_ms = Some(after);
        recorder.fault(format!("converged {after} ms after the faults ended"));
    }
    Watched {
        convergence,
        pending,
    }
}

/// After the clients stopped: repairs every node if rows still differ,
/// then records the final state of every row written.
pub async fn finish(
    lab: &Arc<LabTarget>,
    recorder: &Arc<Recorder>,
    watched: Watched,
) -> Convergence {
    let Watched {
        mut convergence,
        pending,
    } = watched;
    if !pending.is_empty() {
        recorder.fault(format!(
            "{} rows still differ: repairing every node",
            pending.len()
        ));
        let repair = repair_all(lab).await;
        recorder.fault(format!("repair: {repair}"));
        convergence.repair = Some(repair);
    }
    let placement = Arc::new(Placement::fetch(lab).await);
    finals(lab, &placement, recorder, &mut convergence).await;
    convergence
}

/// `ringdb repair` on every node, one after the other; what they did.
async fn repair_all(lab: &Arc<LabTarget>) -> String {
    let mut said = Vec::new();
    for node in lab.nodes() {
        let Some(address) = lab.address(&node) else {
            continue;
        };
        let request = ClientRequest::Repair {
            table: None,
            ranges: Vec::new(),
        };
        let answer = lab
            .client()
            .call_node(address, request, Some(REPAIR_WITHIN))
            .await;
        said.push(format!(
            "{node}: {}",
            ringdb_sim::workload::repaired(&answer)
        ));
    }
    said.join("; ")
}

/// Records every row's final state (once its replicas agree, or after
/// [`SETTLE`] with the first replica's).
async fn finals(
    lab: &Arc<LabTarget>,
    placement: &Arc<Placement>,
    recorder: &Arc<Recorder>,
    convergence: &mut Convergence,
) {
    let keys = written_keys(&recorder.history(), None);
    let mut agreed: BTreeMap<Key, State> = BTreeMap::new();
    let mut pending = keys.clone();
    let deadline = Instant::now() + SETTLE;
    loop {
        let compared = compare(lab, placement, pending.clone()).await;
        for (key, state) in compared {
            if let Some(state) = state {
                agreed.insert(key, state);
            }
        }
        pending.retain(|key| !agreed.contains_key(key));
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    for key in &pending {
        // Diverged: the row as a read at the strongest level that answers
        // sees it (the replicas' versions merged, what was superseded
        // dropped). Unreadable, it has no final state, and the checker
        // counts its acknowledged writes as lost: nothing could show them.
        let mut read = None;
        'levels: for level in [
            ConsistencyLevel::All,
            ConsistencyLevel::Quorum,
            ConsistencyLevel::One,
        ] {
            for node in placement.replicas(key) {
                let request = ClientRequest::Get {
                    row: address(key),
                    consistency: level,
                };
                if let Ok(ClientReply::Read { siblings, .. }) = lab.call(&node, request).await {
                    read = Some((level, values_of(&siblings)));
                    break 'levels;
                }
            }
        }
        convergence.rows_diverged.push(match &read {
            Some((level, _)) => format!("{key} (final state read at {level})"),
            None => format!("{key} (unreadable)"),
        });
        if let Some((_, state)) = read {
            agreed.insert(*key, state);
        }
    }
    for (key, (values, writers)) in agreed {
        recorder.record(Event::Final {
            key,
            values,
            writers,
        });
    }
}
