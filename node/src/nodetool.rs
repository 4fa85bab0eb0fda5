//! nodetool's requests about one node ([`NodeTool`]): flush and drain its
//! storage, describe the cluster and its gossip as it sees them, report
//! its tasks, compactions and network traffic, change its log filter, and
//! keep snapshots (RocksDB checkpoints) of its data beside the data
//! folder, in `DATA.snapshots/TAG`.
//!
//! Each answer is a list of [`Report`] tables. The log filter belongs to
//! the process, not the node: the binary that sets up logging registers
//! how to change it ([`set_log_control`]); a process that did not (the
//! simulator's) answers that it cannot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use ringdb_gossip::StateValue;
use ringdb_proto::{NodeTool, Report, RequestError, check_snapshot_tag};
use ringdb_ring::NodeId;
use tracing::info;

use crate::dispatch::Dispatcher;
use crate::storage::Storage;

/// Why a log filter could not be set (the binary's own error).
pub type LogFilterError = Box<dyn std::error::Error + Send + Sync>;

/// How the process changes its log filter.
type LogControl = Box<dyn Fn(&str) -> Result<(), LogFilterError> + Send + Sync>;

static LOG_CONTROL: OnceLock<LogControl> = OnceLock::new();

/// Registers how `setlogginglevel` changes this process's log filter
/// (once; later calls are ignored).
pub fn set_log_control(
    control: impl Fn(&str) -> Result<(), LogFilterError> + Send + Sync + 'static,
) {
    let _ = LOG_CONTROL.set(Box::new(control));
}

/// A failure of the node's own disk or storage (not of the request).
fn failed(me: &NodeId, what: &str, error: impl std::fmt::Display) -> RequestError {
    RequestError::Server {
        node: me.clone(),
        reason: format!("{what}: {error}"),
    }
}

impl Dispatcher {
    /// Answers an operator's request about this node.
    pub(crate) async fn nodetool(&self, request: NodeTool) -> Result<Vec<Report>, RequestError> {
        let (storage, me) = (&self.replica.storage, &self.replica.me);
        Ok(match request {
            NodeTool::Flush => vec![flush(storage, me).await?],
            NodeTool::Drain => {
                self.drained.store(true, Ordering::Release);
                info!("drained: client requests are refused until the node restarts");
                let mut flushed = flush(storage, me).await?;
                flushed.title = "drained: client requests are refused from now on; stop the \
                                 node (its memtables are flushed)"
                    .into();
                vec![flushed]
            }
            NodeTool::DescribeCluster => self.describe_cluster(),
            NodeTool::GossipInfo => vec![self.gossip_info()],
            NodeTool::TaskStats => vec![self.task_stats()],
            NodeTool::CompactionStats => vec![compaction_stats(storage)],
            NodeTool::TableStats => vec![self.table_stats().await?],
            NodeTool::NetStats => vec![self.net_stats()],
            NodeTool::SetLoggingLevel { filter } => {
                let control = LOG_CONTROL.get().ok_or_else(|| {
                    RequestError::invalid("this process's log filter cannot be changed")
                })?;
                control(&filter).map_err(|e| {
                    RequestError::invalid(format!("{filter:?} is not a log filter: {e}"))
                })?;
                info!(%filter, "log filter changed");
                vec![Report::pairs("log filter", vec![("filter", filter)])]
            }
            // One at a time: RocksDB stages a checkpoint in `TAG.tmp`,
            // which another snapshot or a clear would remove under it.
            NodeTool::Snapshot { tag } => {
                let _one = self.snapshots.lock().await;
                vec![snapshot(storage, me, tag).await?]
            }
            NodeTool::ListSnapshots => vec![list_snapshots(storage, me).await?],
            NodeTool::ClearSnapshot { tag } => {
                let _one = self.snapshots.lock().await;
                vec![clear_snapshots(storage, me, tag).await?]
            }
        })
    }

    /// Each table's rows, partitions and bytes here, by name when the
    /// schema has it (a CQL table), else by id (a key-value table, whose
    /// id is its name's hash).
    async fn table_stats(&self) -> Result<Report, RequestError> {
        let (storage, me) = (&self.replica.storage, &self.replica.me);
        let figures = storage
            .blocking(Storage::table_figures)
            .await
            .map_err(|e| failed(me, "cannot count the tables", e))?;
        let schema = self.schemas.current();
        let mut report = Report::new(
            "tables on this node",
            &["table", "rows", "partitions", "bytes"],
        );
        for (id, figures) in figures {
            let name = match schema.table_by_id(id) {
                Some(table) => format!("{}.{}", table.keyspace, table.name),
                None => format!("key-value table {}", id.0),
            };
            report.row([
                name,
                figures.rows.to_string(),
                figures.partitions.to_string(),
                figures.bytes.to_string(),
            ]);
        }
        Ok(report)
    }

    fn describe_cluster(&self) -> Vec<Report> {
        let replica = &self.replica;
        let summary = Report::pairs(
            "cluster",
            vec![
                ("name", replica.settings.name.clone()),
                ("partitioner", "Murmur3 (Cassandra's)".into()),
                ("replication", replica.replication.to_string()),
                ("answered by", replica.me.to_string()),
            ],
        );
        // Schema versions, as each node gossips the one it applied.
        let view = replica.membership.view();
        let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, node) in view
            .nodes
            .iter()
            .filter(|(_, n)| n.state.status().is_member())
        {
            let version = match node.state.get(ringdb_gossip::StateKey::SchemaVersion) {
                Some(StateValue::SchemaVersion(version)) => version.clone(),
                _ => "unknown".into(),
            };
            let shown = if node.up {
                id.to_string()
            } else {
                format!("{id} (down)")
            };
            versions.entry(version).or_default().push(shown);
        }
        let title = if versions.len() == 1 {
            "schema versions: the nodes agree"
        } else {
            "schema versions: the nodes disagree (they converge by gossip; a node down keeps \
             its last)"
        };
        let mut schemas = Report::new(title, &["version", "nodes"]);
        for (version, nodes) in versions {
            schemas.row([version, nodes.join(", ")]);
        }
        vec![summary, schemas]
    }

    fn gossip_info(&self) -> Report {
        let view = self.replica.membership.view();
        let mut report = Report::new(
            "gossip",
            &[
                "node",
                "up",
                "generation",
                "heartbeat",
                "state",
                "version",
                "value",
            ],
        );
        for (id, node) in &view.nodes {
            let state = &node.state;
            report.row([
                id.to_string(),
                node.up.to_string(),
                state.generation.to_string(),
                state.heartbeat.to_string(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            for (key, versioned) in &state.states {
                report.row([
                    id.to_string(),
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("{key:?}"),
                    versioned.version.to_string(),
                    show_state(&versioned.value),
                ]);
            }
        }
        report
    }

    fn task_stats(&self) -> Report {
        let runtime = tokio::runtime::Handle::current().metrics();
        let stats = self.repair_stats();
        let hints_pending: u64 = stats.hints_pending.iter().map(|(_, bytes)| bytes).sum();
        Report::pairs(
            "tasks and queues",
            vec![
                (
                    "client requests in flight",
                    self.metrics.in_flight().to_string(),
                ),
                (
                    "client connections",
                    self.metrics.connections("client").to_string(),
                ),
                (
                    "internode connections",
                    self.metrics.connections("internode").to_string(),
                ),
                ("runtime workers", runtime.num_workers().to_string()),
                ("tasks alive", runtime.num_alive_tasks().to_string()),
                (
                    "runtime global queue",
                    runtime.global_queue_depth().to_string(),
                ),
                (
                    "blocking threads",
                    runtime.num_blocking_threads().to_string(),
                ),
                ("blocking queue", runtime.blocking_queue_depth().to_string()),
                ("hints pending (bytes)", hints_pending.to_string()),
                ("drained", self.drained.load(Ordering::Acquire).to_string()),
            ],
        )
    }

    fn net_stats(&self) -> Report {
        let stats = self.repair_stats();
        let operation = self.topology.operations.last().ok();
        let streams = operation.map_or_else(
            || "none".to_string(),
            |op| format!("{} ({:?}): {}", op.kind, op.outcome, op.progress),
        );
        let mut pairs = vec![
            ("streams (topology operation)", streams),
            ("hints written", stats.hints.written.to_string()),
            ("hints delivered", stats.hints.delivered.to_string()),
            ("hints expired", stats.hints.expired.to_string()),
            (
                "repair ranges compared",
                stats.antientropy.ranges_compared.to_string(),
            ),
            (
                "repair keys repaired",
                stats.antientropy.keys_repaired.to_string(),
            ),
            (
                "repair bytes sent",
                stats.antientropy.bytes_sent.to_string(),
            ),
        ];
        let pending: Vec<String> = (stats.hints_pending.iter())
            .map(|(node, bytes)| format!("{node} {bytes} B"))
            .collect();
        pairs.push((
            "hints pending",
            if pending.is_empty() {
                "none".into()
            } else {
                pending.join(", ")
            },
        ));
        Report::pairs("network", pairs)
    }
}

/// A gossiped state's value, as an operator reads it.
fn show_state(value: &StateValue) -> String {
    match value {
        StateValue::Status(status) => status.to_string(),
        StateValue::Tokens(tokens) => format!("{} tokens", tokens.len()),
        StateValue::InternodeAddress(address) | StateValue::ClientAddress(address) => {
            address.to_string()
        }
        StateValue::Location(location) => format!("{}/{}", location.datacenter, location.rack),
        StateValue::SchemaVersion(version) => version.clone(),
        StateValue::Load(bytes) => format!("{bytes} B"),
        StateValue::ActorEpoch(epoch) => epoch.to_string(),
        StateValue::Damage(damage) | StateValue::Operation(damage) => {
            damage.clone().unwrap_or_else(|| "none".into())
        }
        StateValue::RemovalOf(generation) => format!("removal of generation {generation}"),
    }
}

/// Flushes every family's memtables and syncs the log.
async fn flush(storage: &Arc<Storage>, me: &NodeId) -> Result<Report, RequestError> {
    let before = storage.figures().memtable_bytes;
    storage
        .blocking(Storage::flush_all)
        .await
        .map_err(|e| failed(me, "the flush failed", e))?;
    Ok(Report::pairs(
        "flushed",
        vec![
            ("memtables before (bytes)", before.to_string()),
            (
                "memtables after (bytes)",
                storage.figures().memtable_bytes.to_string(),
            ),
        ],
    ))
}

fn compaction_stats(storage: &Storage) -> Report {
    let figures = storage.figures();
    Report::pairs(
        "compactions",
        vec![
            (
                "running compactions",
                figures.running_compactions.to_string(),
            ),
            (
                "pending compaction (bytes)",
                figures.pending_compaction_bytes.to_string(),
            ),
            ("memtables (bytes)", figures.memtable_bytes.to_string()),
            ("SST files (bytes)", figures.sst_bytes.to_string()),
            (
                "live data (bytes, estimated)",
                figures.live_data_bytes.to_string(),
            ),
        ],
    )
}

/// Where the node keeps its snapshots
/// ([`snapshots_folder`](crate::storage::snapshots_folder)).
fn snapshots_folder(storage: &Storage) -> Result<PathBuf, RequestError> {
    let data = storage
        .path()
        .ok_or_else(|| RequestError::invalid("this node keeps its data in memory: no snapshots"))?;
    Ok(crate::storage::snapshots_folder(data))
}

async fn snapshot(
    storage: &Arc<Storage>,
    me: &NodeId,
    tag: String,
) -> Result<Report, RequestError> {
    use std::os::unix::fs::MetadataExt;
    check_snapshot_tag(&tag).map_err(RequestError::invalid)?;
    let folder = snapshots_folder(storage)?;
    let into = folder.join(&tag);
    let (made, named, me) = (into.clone(), tag.clone(), me.clone());
    // Hard links only within one filesystem: a data folder mounted on its
    // own makes every snapshot a full copy, which the operator is told.
    let linked = storage
        .blocking(move |storage| -> Result<bool, RequestError> {
            if made.exists() {
                return Err(RequestError::invalid(format!("snapshot {named} exists")));
            }
            storage
                .checkpoint(&made)
                .map_err(|e| failed(&me, &format!("no snapshot {named}"), e))?;
            let device = |path: &Path| std::fs::metadata(path).map(|m| m.dev()).ok();
            Ok(storage.path().and_then(device) == device(&made))
        })
        .await?;
    info!(%tag, folder = %into.display(), linked, "snapshot taken");
    let files = if linked {
        "hard links to the data's files"
    } else {
        "copies (the snapshots folder is on another filesystem than the data)"
    };
    Ok(Report::pairs(
        "snapshot taken",
        vec![
            ("tag", tag),
            ("folder", into.display().to_string()),
            ("files", files.into()),
        ],
    ))
}

async fn list_snapshots(storage: &Arc<Storage>, me: &NodeId) -> Result<Report, RequestError> {
    let folder = snapshots_folder(storage)?;
    let listed = storage
        .blocking(move |_| list(&folder))
        .await
        .map_err(|e| failed(me, "cannot list the snapshots", e))?;
    let mut report = Report::new("snapshots", &["tag", "bytes", "folder"]);
    for (tag, bytes, path) in listed {
        report.row([tag, bytes.to_string(), path.display().to_string()]);
    }
    Ok(report)
}

async fn clear_snapshots(
    storage: &Arc<Storage>,
    me: &NodeId,
    tag: Option<String>,
) -> Result<Report, RequestError> {
    if let Some(tag) = &tag {
        check_snapshot_tag(tag).map_err(RequestError::invalid)?;
    }
    let folder = snapshots_folder(storage)?;
    let me = me.clone();
    let cleared = storage
        .blocking(move |_| -> Result<Vec<String>, RequestError> {
            let listed = list(&folder).map_err(|e| failed(&me, "cannot list the snapshots", e))?;
            let mut cleared = Vec::new();
            for (name, _, path) in listed {
                if tag.as_ref().is_none_or(|tag| *tag == name) {
                    std::fs::remove_dir_all(&path).map_err(|e| {
                        failed(&me, &format!("cannot remove {}", path.display()), e)
                    })?;
                    cleared.push(name);
                }
            }
            if let Some(tag) = tag.filter(|_| cleared.is_empty()) {
                return Err(RequestError::invalid(format!("no snapshot {tag}")));
            }
            Ok(cleared)
        })
        .await?;
    info!(?cleared, "snapshots cleared");
    let mut report = Report::new("snapshots cleared", &["tag"]);
    for name in cleared {
        report.row([name]);
    }
    Ok(report)
}

/// Each snapshot in `folder`: its tag, bytes (hard links counted in full)
/// and path, by tag; not a checkpoint still being made (`TAG.tmp`).
fn list(folder: &Path) -> std::io::Result<Vec<(String, u64, PathBuf)>> {
    let entries = match std::fs::read_dir(folder) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        entries => entries?,
    };
    let mut listed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_dir() || name.ends_with(".tmp") {
            continue;
        }
        let mut bytes = 0;
        for file in std::fs::read_dir(entry.path())? {
            bytes += file?.metadata()?.len();
        }
        listed.push((name, bytes, entry.path()));
    }
    listed.sort();
    Ok(listed)
}
