//! `ringdb repair [TABLE]`: compare one node's Merkle trees with the other
//! replicas of its ranges and repair what differs (nodetool repair).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use ringdb::client::RepairSummary;
use ringdb::ring::Ring;

use super::admin::{connect, human_bytes, node_status_of, report};
use super::data::Connection;

/// Ranges asked for in one request: the bar moves after each.
const RANGES_PER_REQUEST: usize = 4;
/// How long one request of a few ranges may take.
const REQUEST_TIME: Duration = Duration::from_secs(3600);

/// The options of `ringdb repair`.
#[derive(clap::Args)]
pub struct RepairArgs {
    #[command(flatten)]
    connection: Connection,
    /// Only this table's rows (every table without it).
    table: Option<String>,
    /// Print the summary as JSON on stdout (the progress bar stays on stderr).
    #[arg(long)]
    json: bool,
}

/// Runs the repair, range by range, with a progress bar.
pub async fn run(args: &RepairArgs) -> anyhow::Result<ExitCode> {
    let client = match connect(&args.connection).await {
        Ok(client) => client,
        Err(code) => return Ok(code),
    };
    // The ranges of the node that repairs: the first contact point.
    let status = match node_status_of(&client).await {
        Ok(status) => status,
        Err(code) => return Ok(code),
    };
    // The ranges the node replicates, from the ring it gossips.
    let mut ring = Ring::new();
    for node in &status.nodes {
        if matches!(node.status.as_str(), "Normal" | "Leaving" | "Removing")
            && !node.tokens.is_empty()
        {
            ring.add_node(node.id.clone(), node.location.clone(), node.tokens.clone())?;
        }
    }
    let node = status.answered_by.clone();
    // Every replication's: each keyspace's places its rows.
    let mut ranges = ring.ranges_of(&node, &status.replication);
    for replication in &status.placements {
        for range in ring.ranges_of(&node, replication) {
            if !ranges.contains(&range) {
                ranges.push(range);
            }
        }
    }
    ranges.sort_by_key(|range| range.end);
    if ranges.is_empty() {
        say!("error: {node} replicates no range (it is not a normal member of the ring)");
        return Ok(ExitCode::FAILURE);
    }
    let bar = ProgressBar::new(ranges.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} repair on {prefix} [{bar:30}] {pos}/{len} ranges, {msg} ({elapsed})",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    bar.set_prefix(node.to_string());
    let started = Instant::now();
    let mut total = RepairSummary::default();
    for batch in ranges.chunks(RANGES_PER_REQUEST) {
        let outcome = client
            .repair(args.table.as_deref(), batch.to_vec(), REQUEST_TIME)
            .await;
        match outcome {
            Ok(summary) => total.add(summary),
            Err(error) => {
                bar.abandon();
                return Ok(report(&error));
            }
        }
        bar.set_message(format!(
            "{} differing, {} keys repaired",
            total.ranges_differing.len(),
            total.keys_repaired
        ));
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let json = serde_json::json!({
            "node": node.as_str(),
            "table": args.table,
            "ranges": ranges.len(),
            "ranges_compared": total.ranges_compared,
            "ranges_differing": total.ranges_differing.iter().map(|(range, peer)| {
                serde_json::json!({"start": range.start.0, "end": range.end.0, "replica": peer.as_str()})
            }).collect::<Vec<_>>(),
            "ranges_failed": total.ranges_failed.iter().map(|(range, peer, reason)| {
                serde_json::json!({"start": range.start.0, "end": range.end.0, "replica": peer.as_str(), "reason": reason})
            }).collect::<Vec<_>>(),
            "keys_repaired": total.keys_repaired,
            "bytes_sent": total.bytes_sent,
            "tombstones_purged": total.tombstones_purged,
            "seconds": seconds,
        });
        out!("{json}");
    } else {
        out!(
            "repair of {node}'s {} ranges{} in {seconds:.2} s",
            ranges.len(),
            args.table
                .as_ref()
                .map_or(String::new(), |t| format!(" (table {t})"))
        );
        out!("{:<20}: {}", "ranges compared", total.ranges_compared);
        out!(
            "{:<20}: {}",
            "ranges differing",
            total.ranges_differing.len()
        );
        for (range, peer) in &total.ranges_differing {
            out!("    {range} with {peer}");
        }
        out!("{:<20}: {}", "keys repaired", total.keys_repaired);
        out!("{:<20}: {}", "bytes sent", human_bytes(total.bytes_sent));
        out!("{:<20}: {}", "tombstones purged", total.tombstones_purged);
        if !total.ranges_failed.is_empty() {
            out!("{:<20}: {}", "ranges failed", total.ranges_failed.len());
            for (range, peer, reason) in &total.ranges_failed {
                out!("    {range} with {peer}: {reason}");
            }
        }
    }
    Ok(if total.ranges_failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
