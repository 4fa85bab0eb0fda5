//! nodetool's questions to one node: `flush`, `drain`, `describecluster`,
//! `gossipinfo`, `tpstats`, `compactionstats`, `netstats`,
//! `setlogginglevel`, `snapshot`, `listsnapshots`, `clearsnapshot`. Each
//! goes to the node given by --host (or the first node of a dev cluster),
//! and never to another: it is about that node.

use std::process::ExitCode;
use std::time::Duration;

use ringdb::client::{NodeTool, Report};

use super::BadInput;
use super::admin::{connect, report};
use super::data::Connection;

/// How long a flush, drain or snapshot may take (the others take
/// --timeout-ms).
const SLOW_TIMEOUT: Duration = Duration::from_secs(600);

/// The commands.
#[derive(clap::Subcommand)]
pub enum NodeToolCommand {
    /// Write the node's memtables to SST files and sync its log (nodetool
    /// flush).
    Flush(Target),
    /// Stop the node taking client requests (clients go to other nodes)
    /// and flush its memtables, before stopping or upgrading it (nodetool
    /// drain). It lasts until the node restarts.
    Drain(Target),
    /// The cluster's name, partitioner and replication, and whether the
    /// nodes agree on the schema (nodetool describecluster).
    Describecluster(Target),
    /// Every node's gossiped state as the node sees it, with generations,
    /// heartbeats and versions (nodetool gossipinfo).
    Gossipinfo(Target),
    /// The node's tasks and queues: requests in flight, connections, the
    /// runtime's workers and queues, hints waiting (nodetool tpstats).
    Tpstats(Target),
    /// Compactions running and bytes pending, memtables and SST files
    /// (nodetool compactionstats).
    Compactionstats(Target),
    /// Streams of the topology operation, hints and repair traffic
    /// (nodetool netstats).
    Netstats(Target),
    /// What each table holds on the node: rows (deleted ones until purged),
    /// partitions and bytes (nodetool tablestats). Counted by a scan of
    /// the node's data: seconds per million rows.
    Tablestats(Target),
    /// Change the node's log filter while it runs (nodetool
    /// setlogginglevel): `info`, `debug`, or a tracing filter such as
    /// `warn,ringdb_node::membership=debug`.
    Setlogginglevel {
        #[command(flatten)]
        target: Target,
        /// The filter.
        filter: String,
    },
    /// Take a snapshot of the node's data (a RocksDB checkpoint: hard links
    /// when on the data's filesystem) in DATA.snapshots/TAG beside its data
    /// folder (nodetool snapshot).
    ///
    /// A snapshot is a consistent copy to keep off the machine. Putting one
    /// back in place of a live node's data is not safe yet (there is no
    /// restore command): the node would lose the hints it stored since,
    /// serve and build writes on its older rows until a repair, and forget
    /// a decommission or removal made since. To replace a node's data,
    /// remove it (removenode) and add a fresh node. A snapshot older than
    /// the tombstone grace (`tombstone_grace_secs`) also holds rows whose
    /// deletions the other replicas have since purged.
    Snapshot {
        #[command(flatten)]
        target: Target,
        /// The snapshot's name (default: the time now, as
        /// 20261207-190502).
        #[arg(long, short = 't')]
        tag: Option<String>,
    },
    /// The node's snapshots and their sizes (nodetool listsnapshots).
    Listsnapshots(Target),
    /// Delete one snapshot, or with --all every one (nodetool
    /// clearsnapshot).
    Clearsnapshot {
        #[command(flatten)]
        target: Target,
        /// The snapshot to delete.
        #[arg(long, short = 't', required_unless_present = "all")]
        tag: Option<String>,
        /// Delete every snapshot.
        #[arg(long, conflicts_with = "tag")]
        all: bool,
    },
}

/// Which node to ask.
#[derive(clap::Args)]
pub struct Target {
    #[command(flatten)]
    connection: Connection,
}

/// Runs one of the commands.
pub async fn run(command: NodeToolCommand) -> anyhow::Result<ExitCode> {
    let (target, request) = match command {
        NodeToolCommand::Flush(target) => (target, NodeTool::Flush),
        NodeToolCommand::Drain(target) => (target, NodeTool::Drain),
        NodeToolCommand::Describecluster(target) => (target, NodeTool::DescribeCluster),
        NodeToolCommand::Gossipinfo(target) => (target, NodeTool::GossipInfo),
        NodeToolCommand::Tpstats(target) => (target, NodeTool::TaskStats),
        NodeToolCommand::Compactionstats(target) => (target, NodeTool::CompactionStats),
        NodeToolCommand::Netstats(target) => (target, NodeTool::NetStats),
        NodeToolCommand::Tablestats(target) => (target, NodeTool::TableStats),
        NodeToolCommand::Setlogginglevel { target, filter } => {
            (target, NodeTool::SetLoggingLevel { filter })
        }
        NodeToolCommand::Snapshot { target, tag } => {
            let tag = tag.unwrap_or_else(now_tag);
            ringdb::proto::check_snapshot_tag(&tag).map_err(BadInput)?;
            (target, NodeTool::Snapshot { tag })
        }
        NodeToolCommand::Listsnapshots(target) => (target, NodeTool::ListSnapshots),
        NodeToolCommand::Clearsnapshot { target, tag, .. } => {
            if let Some(tag) = &tag {
                ringdb::proto::check_snapshot_tag(tag).map_err(BadInput)?;
            }
            (target, NodeTool::ClearSnapshot { tag })
        }
    };
    let slow = matches!(
        request,
        NodeTool::Flush
            | NodeTool::Drain
            | NodeTool::Snapshot { .. }
            | NodeTool::ClearSnapshot { .. }
    );
    let within = if slow {
        SLOW_TIMEOUT
    } else {
        target.connection.request_timeout()
    };
    let client = match connect(&target.connection).await {
        Ok(client) => client,
        Err(code) => return Ok(code),
    };
    match client.nodetool(request, within).await {
        Ok(reports) => {
            print(&reports);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Ok(report(&error)),
    }
}

/// The time now as a snapshot tag: `20261207-190502` (UTC).
fn now_tag() -> String {
    let format = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "snapshot".into())
}

/// Prints each table: a list of names and values as `name : value`
/// lines (nodetool info's form), any other as columns.
fn print(reports: &[Report]) {
    for (i, table) in reports.iter().enumerate() {
        if i > 0 {
            out!();
        }
        out!("{}", table.title);
        if table.is_pairs() {
            let cell = |row: &[String], i: usize| row.get(i).map_or("", String::as_str).to_owned();
            let width = table.rows.iter().map(|row| cell(row, 0).len()).max();
            for row in &table.rows {
                let width = width.unwrap_or(0);
                out!("  {:<width$} : {}", cell(row, 0), cell(row, 1));
            }
            continue;
        }
        let mut shown = comfy_table::Table::new();
        shown
            .load_preset(comfy_table::presets::NOTHING)
            .set_header(&table.columns);
        for row in &table.rows {
            shown.add_row(row);
        }
        out!("{shown}");
    }
}
