//! Admin commands (nodetool's): `status`, `ring`, `info`, `getendpoints`,
//! `decommission`, `removenode`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use ringdb::client::{
    Client, ClientError, ClusterStatus, NodeStatus, OperationOutcome, operation_result,
};
use ringdb::proto::ClientRequest;

use super::data::{Connection, exit_code};

/// Nodes that departed (left or were removed) longer ago than this are
/// hidden by `status` without `--all`: Cassandra's gossip forgets them
/// after three days.
const DEPARTED_SHOWN_FOR: std::time::Duration = std::time::Duration::from_secs(3 * 24 * 3600);

/// Whether `node` left the ring or was removed longer ago than
/// [`DEPARTED_SHOWN_FOR`]: when the answering node saw it go, by its
/// clock, against this machine's (`now_micros`).
fn departed_long_ago(node: &NodeStatus, now_micros: i64) -> bool {
    let gone = matches!(node.status.as_str(), "Left" | "Removed");
    let shown_for = DEPARTED_SHOWN_FOR.as_micros() as i64;
    // A time from a clock set before the epoch says nothing.
    gone && node
        .departed_micros
        .is_some_and(|at| at > 0 && now_micros.saturating_sub(at) > shown_for)
}

/// Prints the cluster as one node sees it, grouped by datacenter, in
/// `nodetool status` form; nodes that departed long ago only with `all`.
pub async fn status(connection: &Connection, all: bool) -> anyhow::Result<ExitCode> {
    let client = match Client::connect(connection.config()?).await {
        Ok(client) => client,
        Err(error) => return Ok(report(&error)),
    };
    let status = match status_of(&client).await {
        Ok(status) => status,
        Err(code) => return Ok(code),
    };
    let now_micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64);
    let (hidden, shown): (Vec<&NodeStatus>, Vec<&NodeStatus>) = status
        .nodes
        .iter()
        .partition(|node| !all && departed_long_ago(node, now_micros));
    let mut by_datacenter: BTreeMap<&str, Vec<&NodeStatus>> = BTreeMap::new();
    for node in shown {
        by_datacenter
            .entry(node.location.datacenter.as_str())
            .or_default()
            .push(node);
    }
    for (datacenter, nodes) in by_datacenter {
        let title = format!("Datacenter: {datacenter}");
        out!("{title}\n{}", "=".repeat(title.len()));
        out!("Status=Up/Down");
        out!("|/ State=Normal/Leaving or being removed/Joining/Left/Removed");
        out!(
            "{:<3} {:<12} {:<22} {:>10} {:>6} {:>8}  {:<24} Rack",
            "--",
            "Node",
            "Address",
            "Load",
            "Tokens",
            "Owns",
            "Host ID (generation)"
        );
        for node in nodes {
            // A node being removed is leaving the ring, as nodetool shows it.
            let state = match node.status.as_str() {
                "Removing" => 'L',
                status => status.chars().next().unwrap_or('?'),
            };
            out!(
                "{:<3} {:<12} {:<22} {:>10} {:>6} {:>7.1}%  {:<24} {}",
                format!("{}{state}", if node.up { 'U' } else { 'D' }),
                node.id.as_str(),
                node.internode_address.as_deref().unwrap_or("?"),
                node.load_bytes.map_or("?".into(), human_bytes),
                node.tokens.len(),
                node.owns * 100.0,
                format!("{} ({})", node.id, node.generation),
                node.location.rack
            );
        }
        out!();
    }
    out!(
        "as seen by {}; replication: {}",
        status.answered_by,
        status.replication
    );
    for note in notes(&status) {
        out!("note: {note}");
    }
    if !hidden.is_empty() {
        let names: Vec<&str> = hidden.iter().map(|node| node.id.as_str()).collect();
        out!(
            "note: not shown (left the ring or removed more than three days ago; \
             --all shows them): {}",
            names.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What an operator should notice in a status: topology changes in
/// progress, damaged data a node found on its disk, and clocks far from
/// the answering node's.
pub(crate) fn notes(status: &ClusterStatus) -> Vec<String> {
    let mut notes = Vec::new();
    for node in &status.nodes {
        if matches!(node.status.as_str(), "Joining" | "Leaving" | "Removing")
            && !node.tokens.is_empty()
        {
            let doing = match node.status.as_str() {
                "Joining" => "joining (streaming the ranges it will own)",
                "Leaving" => "leaving (streaming its ranges to their next owners)",
                _ => "being removed (its ranges copied from the survivors to their next replicas)",
            };
            let down = if node.up { "" } else { ", but it is down" };
            notes.push(format!(
                "topology change in progress: {} is {doing}{down}; other changes wait",
                node.id
            ));
        }
    }
    for node in &status.nodes {
        if let Some(operation) = &node.operation {
            notes.push(format!("operation on {}: {operation}", node.id));
        }
    }
    for node in &status.nodes {
        if let Some(damage) = &node.damage {
            notes.push(format!("damaged data on {}: {damage}", node.id));
        }
    }
    for node in &status.nodes {
        let Some(offset_ms) = node.clock_offset_ms else {
            continue;
        };
        if offset_ms.unsigned_abs() >= CLOCK_WARNING_MS {
            let direction = if offset_ms > 0 { "ahead of" } else { "behind" };
            notes.push(format!(
                "clock: {}'s clock is {:.1} s {direction} {}'s; keep clocks in step (NTP)",
                node.id,
                offset_ms.unsigned_abs() as f64 / 1000.0,
                status.answered_by
            ));
        }
    }
    notes
}

/// A clock this far from the answering node's is noted (milliseconds).
const CLOCK_WARNING_MS: u64 = 2000;

pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How long `decommission` and `removenode` wait for the data to move.
const TOPOLOGY_CHANGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

pub(crate) async fn connect(connection: &Connection) -> Result<Client, ExitCode> {
    let config = connection.config().map_err(|error| {
        say!("error: {}", super::describe(&error));
        ExitCode::from(super::data::exit::INVALID)
    })?;
    Client::connect(config)
        .await
        .map_err(|error| report(&error))
}

/// The cluster as the connected node sees it, or the exit code of why not.
pub(crate) async fn status_of(client: &Client) -> Result<ClusterStatus, ExitCode> {
    client.status().await.map_err(|error| report(&error))
}

/// The cluster as the first contact point sees it (the node a repair or a
/// cleanup goes to), or the exit code of why not.
pub(crate) async fn node_status_of(client: &Client) -> Result<ClusterStatus, ExitCode> {
    client.node_status().await.map_err(|error| report(&error))
}

/// Prints an admin operation's summary, or its error.
fn summary(outcome: Result<String, ClientError>) -> ExitCode {
    match outcome {
        Ok(summary) => {
            out!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => report(&error),
    }
}

pub(crate) fn report(error: &ClientError) -> ExitCode {
    say!("error: {error}");
    exit_code(error)
}

/// How to act on a topology operation a node runs.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct OperationArgs {
    /// Do not start anything: follow the operation the node runs (or show
    /// how its last one ended), e.g. after this command was interrupted.
    #[arg(long, conflicts_with = "abort")]
    pub follow: bool,
    /// Stop the operation the node runs: a decommission goes back to
    /// normal (refused once it has started to leave the ring); a removal
    /// stops restoring replicas (ask for it again to finish).
    #[arg(long)]
    pub abort: bool,
}

/// `ringdb decommission`: the node (--host) hands its ranges over and leaves.
pub async fn decommission(
    connection: &Connection,
    args: &OperationArgs,
) -> anyhow::Result<ExitCode> {
    operation(connection, args, ClientRequest::Decommission).await
}

/// Starts, follows or aborts a topology operation on the node, and follows
/// it to its end, printing where it stands.
async fn operation(
    connection: &Connection,
    args: &OperationArgs,
    start: ClientRequest,
) -> anyhow::Result<ExitCode> {
    let client = match connect(connection).await {
        Ok(client) => client,
        Err(code) => return Ok(code),
    };
    let first = if args.abort {
        client.operation(true).await
    } else if args.follow {
        client.operation(false).await
    } else {
        client.start_operation(start).await
    };
    let first = match first {
        Ok(status) => status,
        Err(error) => return Ok(report(&error)),
    };
    if first.outcome == OperationOutcome::Running {
        let doing = if args.abort {
            "aborting"
        } else if args.follow {
            "following"
        } else {
            "started"
        };
        say!(
            "{doing} {} on {} (it runs on the node: interrupting this command does not stop \
             it; `--follow` reattaches, `--abort` stops it)",
            first.kind,
            first.node
        );
    }
    let followed = client
        .follow_operation(TOPOLOGY_CHANGE_TIMEOUT, |status| {
            if status.outcome == OperationOutcome::Running {
                say!("  {}: {}", status.kind, status.progress);
            }
        })
        .await;
    if let Err(error) = &followed
        && !matches!(error, ClientError::Request(_))
    {
        say!(
            "stopped following {} (it runs on {} regardless): `--follow` reattaches, \
             `ringdb status` shows where it stands",
            first.kind,
            first.node
        );
    }
    Ok(summary(
        followed.and_then(|status| operation_result(&status)),
    ))
}

/// `ringdb cleanup`: deletes the rows of ranges the node no longer replicates.
pub async fn cleanup(connection: &Connection) -> anyhow::Result<ExitCode> {
    let client = match connect(connection).await {
        Ok(client) => client,
        Err(code) => return Ok(code),
    };
    Ok(summary(client.cleanup(TOPOLOGY_CHANGE_TIMEOUT).await))
}

/// `ringdb removenode ID`: removes a dead node, restoring its replicas.
pub async fn remove_node(
    connection: &Connection,
    args: &OperationArgs,
    node: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let node = ringdb::ring::NodeId::new(node.unwrap_or_default());
    operation(connection, args, ClientRequest::RemoveNode { node }).await
}

/// `ringdb ring`: every token in order with its node (nodetool ring).
pub async fn ring(connection: &Connection) -> anyhow::Result<ExitCode> {
    let client = match connect(connection).await {
        Ok(client) => client,
        Err(code) => return Ok(code),
    };
    let status = match status_of(&client).await {
        Ok(status) => status,
        Err(code) => return Ok(code),
    };
    let mut tokens: Vec<(ringdb::ring::Token, &NodeStatus)> = status
        .nodes
        .iter()
        .flat_map(|node| node.tokens.iter().map(move |t| (*t, node)))
        .collect();
    tokens.sort_by_key(|(token, _)| *token);
    out!(
        "{:<12} {:<22} {:<6} {:<8} {:>21}",
        "Node",
        "Address",
        "Status",
        "State",
        "Token"
    );
    for (token, node) in tokens {
        out!(
            "{:<12} {:<22} {:<6} {:<8} {:>21}",
            node.id.as_str(),
            node.internode_address.as_deref().unwrap_or("?"),
            if node.up { "Up" } else { "Down" },
            node.status,
            token.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `ringdb info`: the answering node about itself (nodetool info), with its
/// hints and anti-entropy figures.
pub async fn info(connection: &Connection) -> anyhow::Result<ExitCode> {
    let client = match connect(connection).await {
        Ok(client) => client,
        Err(code) => return Ok(code),
    };
    let status = match status_of(&client).await {
        Ok(status) => status,
        Err(code) => return Ok(code),
    };
    let Some(me) = status.nodes.iter().find(|n| n.id == status.answered_by) else {
        say!("error: the node did not describe itself");
        return Ok(ExitCode::FAILURE);
    };
    let started = std::time::UNIX_EPOCH + std::time::Duration::from_micros(me.generation);
    let uptime = std::time::SystemTime::now()
        .duration_since(started)
        .unwrap_or_default();
    out!("{:<18}: {}", "ID", me.id);
    out!("{:<18}: {}", "State", me.status);
    out!("{:<18}: {}", "Generation", me.generation);
    out!("{:<18}: {} s", "Uptime", uptime.as_secs());
    out!(
        "{:<18}: {}",
        "Load",
        me.load_bytes.map_or("?".into(), human_bytes)
    );
    out!("{:<18}: {}", "Tokens", me.tokens.len());
    out!("{:<18}: {:.1}%", "Owns (effective)", me.owns * 100.0);
    out!(
        "{:<18}: {}",
        "Damaged data",
        me.damage.as_deref().unwrap_or("none found")
    );
    out!("{:<18}: {}", "Data center", me.location.datacenter);
    out!("{:<18}: {}", "Rack", me.location.rack);
    out!(
        "{:<18}: {}",
        "Internode address",
        me.internode_address.as_deref().unwrap_or("?")
    );
    out!(
        "{:<18}: {}",
        "Client address",
        me.client_address.as_deref().unwrap_or("?")
    );
    let up = status.nodes.iter().filter(|n| n.up).count();
    out!("{:<18}: {up} of {} up", "Nodes seen", status.nodes.len());
    // From the node that answered the status, not another.
    let stats = match client.repair_stats_at(status.address).await {
        Ok(stats) => stats,
        Err(error) => return Ok(report(&error)),
    };
    let pending: u64 = stats.hints_pending.iter().map(|(_, bytes)| bytes).sum();
    let targets: Vec<String> = stats
        .hints_pending
        .iter()
        .map(|(node, bytes)| format!("{node} {}", human_bytes(*bytes)))
        .collect();
    out!(
        "{:<18}: {} pending{}",
        "Hints",
        human_bytes(pending),
        if targets.is_empty() {
            String::new()
        } else {
            format!(" ({})", targets.join(", "))
        }
    );
    let h = stats.hints;
    out!(
        "{:<18}: {} written, {} delivered, {} redirected, {} handed over, {} expired, {} dropped \
         (window {}, cap {}, other {})",
        "Hints since start",
        h.written,
        h.delivered,
        h.redirected,
        h.handed_over,
        h.expired,
        h.dropped_window + h.dropped_cap + h.dropped_other,
        h.dropped_window,
        h.dropped_cap,
        h.dropped_other
    );
    out!(
        "{:<18}: {} ranges, {}",
        "Merkle trees",
        stats.tree_ranges,
        if stats.trees_ready {
            "ready"
        } else {
            "building"
        }
    );
    let a = &stats.antientropy;
    out!(
        "{:<18}: {} ranges compared, {} differing, {} keys repaired, {} sent, {} tombstones purged",
        "Anti-entropy",
        a.ranges_compared,
        a.ranges_differing.len(),
        a.keys_repaired,
        human_bytes(a.bytes_sent),
        a.tombstones_purged
    );
    out!(
        "{:<18}: {} rows of ranges it no longer replicates",
        "Cleaned up",
        stats.rows_cleaned
    );
    Ok(ExitCode::SUCCESS)
}

/// `ringdb getendpoints TABLE KEY`: the replicas of a partition key.
pub async fn get_endpoints(
    connection: &Connection,
    table: &str,
    key: &str,
) -> anyhow::Result<ExitCode> {
    let client = match connect(connection).await {
        Ok(client) => client,
        Err(code) => return Ok(code),
    };
    let status = match status_of(&client).await {
        Ok(status) => status,
        Err(code) => return Ok(code),
    };
    let mut ring = ringdb::ring::Ring::new();
    for node in &status.nodes {
        if matches!(node.status.as_str(), "Normal" | "Leaving" | "Removing")
            && !node.tokens.is_empty()
        {
            ring.add_node(node.id.clone(), node.location.clone(), node.tokens.clone())?;
        }
    }
    // A key-value table's rows are placed by the cluster's replication
    // (a CQL table's by its keyspace's); the name is still checked.
    if let Err(error) = ringdb::node::table_id(table) {
        say!("error: {error}");
        return Ok(ExitCode::from(super::data::exit::INVALID));
    }
    let token = ringdb::ring::Token::of(key.as_bytes());
    for replica in ring.replicas(token, &status.replication) {
        let address = status
            .nodes
            .iter()
            .find(|n| n.id == replica)
            .and_then(|n| n.client_address.clone())
            .unwrap_or_default();
        out!("{replica}\t{address}");
    }
    Ok(ExitCode::SUCCESS)
}
