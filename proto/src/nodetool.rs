//! Operator requests a node answers about itself, after nodetool's: flush,
//! drain, the cluster's description and gossip, its tasks, compactions
//! and network traffic, its log filter, and snapshots of its data. Each
//! answer is a list of small tables ([`Report`]), which the command line
//! prints and a program can read.

use serde::{Deserialize, Serialize};

/// The longest snapshot tag.
pub const MAX_SNAPSHOT_TAG: usize = 64;

/// What an operator asks one node ([`crate::ClientRequest::NodeTool`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeTool {
    /// Write every memtable to SST files and sync the write-ahead log
    /// (`nodetool flush`).
    Flush,
    /// Stop taking client requests (they are refused as overloaded, so
    /// clients go to other nodes) and flush, before a stop or an upgrade
    /// (`nodetool drain`). It lasts until the node restarts; it still
    /// takes replica writes, hints and streams from its peers, and still
    /// coordinates the writes a peer forwards to it.
    Drain,
    /// The cluster's name, partitioner and replication, and which schema
    /// each node has applied: they agree when there is one version
    /// (`nodetool describecluster`).
    DescribeCluster,
    /// Every node's gossiped state, with its generation, heartbeat and
    /// each state's version (`nodetool gossipinfo`).
    GossipInfo,
    /// The node's tasks and queues: requests in flight, the async
    /// runtime's workers and queues, hints waiting (`nodetool tpstats`).
    TaskStats,
    /// Flushes and compactions running and pending (`nodetool
    /// compactionstats`).
    CompactionStats,
    /// What each table holds on the node: rows, partitions, bytes
    /// (`nodetool tablestats`), counted by a scan of its data.
    TableStats,
    /// Streams (the topology operation), hints and repair traffic
    /// (`nodetool netstats`).
    NetStats,
    /// Replaces the node's log filter while it runs (`nodetool
    /// setlogginglevel`): a tracing filter such as `info` or
    /// `warn,ringdb_node::membership=debug`.
    SetLoggingLevel {
        /// The filter.
        filter: String,
    },
    /// A consistent copy of the node's data (a RocksDB checkpoint: hard
    /// links where the filesystem allows, else copies) in `DATA.snapshots/TAG`
    /// beside its data folder `DATA` (`nodetool snapshot`).
    Snapshot {
        /// The snapshot's name: letters, digits, `.`, `_` and `-`.
        tag: String,
    },
    /// The snapshots the node keeps, with their sizes (`nodetool
    /// listsnapshots`).
    ListSnapshots,
    /// Deletes one snapshot, or every one (`nodetool clearsnapshot`).
    ClearSnapshot {
        /// Which; all of them without it.
        tag: Option<String>,
    },
}

impl NodeTool {
    /// Its name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            NodeTool::Flush => "flush",
            NodeTool::Drain => "drain",
            NodeTool::DescribeCluster => "describecluster",
            NodeTool::GossipInfo => "gossipinfo",
            NodeTool::TaskStats => "tpstats",
            NodeTool::CompactionStats => "compactionstats",
            NodeTool::TableStats => "tablestats",
            NodeTool::NetStats => "netstats",
            NodeTool::SetLoggingLevel { .. } => "setlogginglevel",
            NodeTool::Snapshot { .. } => "snapshot",
            NodeTool::ListSnapshots => "listsnapshots",
            NodeTool::ClearSnapshot { .. } => "clearsnapshot",
        }
    }
}

/// Why a snapshot tag cannot name a folder, if it cannot.
pub fn check_snapshot_tag(tag: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    // RocksDB makes a checkpoint in `TAG.tmp` first (removing any there).
    if tag.is_empty()
        || tag.len() > MAX_SNAPSHOT_TAG
        || tag.starts_with('.')
        || tag.ends_with(".tmp")
    {
        return Err(format!(
            "a snapshot tag is 1 to {MAX_SNAPSHOT_TAG} characters, not starting with '.' nor \
             ending with '.tmp'"
        ));
    }
    if let Some(bad) = tag.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "a snapshot tag is letters, digits, '.', '_' and '-'; {bad:?} is not allowed"
        ));
    }
    Ok(())
}

/// One table of an answer: a title, column names and rows of text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// What it shows.
    pub title: String,
    /// The column names.
    pub columns: Vec<String>,
    /// The rows, each as many cells as there are columns.
    pub rows: Vec<Vec<String>>,
}

impl Report {
    /// An empty table.
    pub fn new(title: impl Into<String>, columns: &[&str]) -> Report {
        Report {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// A two-column table of names and values.
    pub fn pairs(title: impl Into<String>, pairs: Vec<(&str, String)>) -> Report {
        let mut report = Report::new(title, &["", ""]);
        for (name, value) in pairs {
            report.row([name.to_string(), value]);
        }
        report
    }

    /// Adds a row.
    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(cells.to_vec());
    }

    /// Whether this is a table of names and values ([`Report::pairs`]).
    pub fn is_pairs(&self) -> bool {
        self.columns.len() == 2 && self.columns.iter().all(String::is_empty)
    }

    /// The second cell of the first row whose first cell is `name`: in a
    /// table of [`Report::pairs`], the value of `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        let row = self
            .rows
            .iter()
            .find(|row| row.first().is_some_and(|k| k == name))?;
        row.get(1).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_tags_name_one_folder_inside_snapshots() {
        for good in ["before-upgrade", "2026.12.07", "a_b"] {
            assert_eq!(check_snapshot_tag(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "../etc",
            "a b",
            "x.tmp",
            &"x".repeat(65),
        ] {
            assert!(check_snapshot_tag(bad).is_err(), "{bad}");
        }
    }
}
