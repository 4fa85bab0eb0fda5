//! A node's first start: finding the cluster (or founding it), choosing
//! tokens in turn with the other new nodes, streaming its ranges
//! (bootstrap) and becoming normal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringdb_gossip::{StateValue, Status};
use ringdb_ring::{NodeId, Ring, Token, TokenRange};
use tracing::info;

use super::{NodeError, NodeHandle, TOKENS_KEY};
use crate::config::Config;
use crate::membership::{SeedWatch, View};
use crate::streaming::Streamed;
use crate::topology::{self, Topology};

/// How long a seed starting for the first time listens for an existing
/// cluster before it founds one.
const FOUNDING_WAIT: Duration = Duration::from_secs(3);
/// How long a new node waits for a seed to answer.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);
use topology::RING_SETTLE;

/// The first start of a node: learn the ring from the seeds, choose tokens
/// that split its largest ranges, keep them, stream its ranges if the
/// cluster has data (bootstrap), and become normal.
///
/// Nodes started together must not choose at once: a seed founds a new
/// cluster only when no member and no other seed with a smaller id is
/// starting (the others wait for it and join), and new nodes take their
/// turns by node id, each announcing its tokens, waiting for the ring to
/// settle and giving way (to try again) when a node with a smaller id
/// announced at the same time. Tokens are kept only once the turn is won.
pub(super) async fn join(
    config: &Config,
    node: &NodeHandle,
    coordinator: &Topology,
    seed_watch: &SeedWatch,
    my_address: SocketAddr,
) -> Result<(), NodeError> {
    if !find_cluster(config, node, seed_watch, my_address).await? {
        info!(node = %node.id, "no cluster found: founding one");
        let tokens =
            Ring::founding_tokens(config.cluster.num_tokens, coordinator.random.next_u64());
        keep_tokens(node, coordinator, tokens).await?;
        return become_normal(node, coordinator).await;
    }
    // Learn the whole ring, not only the seed that answered.
    tokio::time::sleep(RING_SETTLE).await;
    for attempt in 1..=JOIN_ATTEMPTS {
        wait_for_turn(node).await?;
        let Some((ring, future, tokens)) =
            choose_tokens(config, node, coordinator, attempt).await?
        else {
            continue;
        };
        let bootstrap = config.cluster.auto_bootstrap;
        if bootstrap {
            // Each keyspace's replication decides what this node streams.
            if let Err(error) = node.schemas.learn_from_peers(SCHEMA_WAIT).await {
                return Err(NodeError::Join(format!(
                    "cannot learn the schema before streaming: {error}"
                )));
            }
            let plan = topology::bootstrap_plan(coordinator, &ring, &future);
            if let Some(why) = wait_for_sources(coordinator, &plan).await {
                return Err(NodeError::Join(why));
            }
            topology::save_bootstrap(&node.storage, &plan)?;
        }
        keep_tokens(node, coordinator, tokens).await?;
        if bootstrap {
            // The others send this node the writes of its future ranges
            // since it announced its tokens: stream what came before.
            info!(node = %node.id, "joining: announced tokens; streaming ranges");
            return finish_bootstrap(node, coordinator).await;
        }
        return become_normal(node, coordinator).await;
    }
    Err(NodeError::Join(format!(
        "other nodes chose tokens at the same time {JOIN_ATTEMPTS} times; start this node again"
    )))
}

/// Finds the cluster through the seeds; false when this node is to found
/// it (a seed that found no member, and no other seed with a smaller id
/// starting).
async fn find_cluster(
    config: &Config,
    node: &NodeHandle,
    seed_watch: &SeedWatch,
    my_address: SocketAddr,
) -> Result<bool, NodeError> {
    let seeds: Vec<SocketAddr> = config.cluster.seeds.clone();
    let is_seed = seeds.is_empty() || seeds.contains(&my_address);
    // The only seed has nobody to ask: it founds the cluster at once.
    let only_seed = seeds.iter().all(|seed| *seed == my_address);
    let wait = if only_seed {
        Duration::ZERO
    } else if is_seed {
        FOUNDING_WAIT
    } else {
        DISCOVERY_TIMEOUT
    };
    let mut found = discover(node, (seed_watch, &seeds), wait).await?;
    if !found && is_seed {
        let view = node.membership.view();
        if let Some(founder) = starting_seed_before(&view, &node.id, &seeds) {
            info!(node = %node.id, %founder, "another seed is founding the cluster; joining it");
            found = discover(node, (seed_watch, &seeds), DISCOVERY_TIMEOUT).await?;
            if !found {
                return Err(NodeError::Join(format!(
                    "{founder}, a seed starting with this one, did not found the cluster \
                     within {DISCOVERY_TIMEOUT:?}"
                )));
            }
        }
    }
    if !found && !is_seed {
        return Err(NodeError::Join(format!(
            "no seed answered within {DISCOVERY_TIMEOUT:?} (seeds: {seeds:?})"
        )));
    }
    Ok(found)
}

/// Chooses tokens that split the largest ranges (around those of nodes
/// still joining), announces them as joining and waits for the ring to
/// settle; `None` when another node chose at the same time (this one gives
/// way). Returns the ring, the ring once joined, and the tokens.
async fn choose_tokens(
    config: &Config,
    node: &NodeHandle,
    coordinator: &Topology,
    attempt: usize,
) -> Result<Option<(Ring, Ring, Vec<Token>)>, NodeError> {
    let view = node.membership.view();
    let ring = view.ring.clone();
    // Tokens that nodes still joining announced (live or not: one that
    // died streaming may come back) are taken too.
    let mut taken = ring.clone();
    for (id, other) in &view.nodes {
        if *id != node.id && other.state.status() == Status::Joining {
            let tokens = other.state.tokens().to_vec();
            if !tokens.is_empty() {
                // A clash is left out here and caught by `overlapping`.
                let _ = taken.add_node(id.clone(), other.state.location(), tokens);
            }
        }
    }
    let tokens = taken.clone().join(
        node.id.clone(),
        config.location(),
        config.cluster.num_tokens,
        config.cluster.replication_factor,
    )?;
    let mut future = ring.clone();
    future.add_node(node.id.clone(), config.location(), tokens.clone())?;
    forget_unreconciled_rows(node).await?;
    // Announced as joining (not yet kept): the others count this node
    // in their pending ranges, and see any node that chose at once.
    coordinator
        .gossip
        .set_state(StateValue::Tokens(tokens.clone()))
        .await;
    tokio::time::sleep(RING_SETTLE).await;
    let view = node.membership.view();
    let clash = joining_before(&view, &node.id).or_else(|| overlapping(&view, &node.id, &tokens));
    if let Some(other) = clash {
        info!(node = %node.id, %other, attempt, "another node chose its tokens at the same time; giving way");
        coordinator
            .gossip
            .set_state(StateValue::Tokens(Vec::new()))
            .await;
        return Ok(None);
    }
    Ok(Some((ring, future, tokens)))
}

/// How long a joining node tries to learn the schema of the live members.
const SCHEMA_WAIT: Duration = Duration::from_secs(30);

/// How long a joining node waits for the replicas it must stream from to
/// be seen up: one that has just started may not have heard from them, or
/// connected to them, yet.
const SOURCE_WAIT: Duration = Duration::from_secs(10);

/// Why `plan` cannot be streamed (a source down), if it still cannot after
/// [`SOURCE_WAIT`].
async fn wait_for_sources(c: &Topology, plan: &[topology::RangeProgress]) -> Option<String> {
    let until = tokio::time::Instant::now() + SOURCE_WAIT;
    loop {
        let why = topology::unavailable_source(c, plan)?;
        if tokio::time::Instant::now() >= until {
            return Some(why);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Drops every row on this disk before the node announces tokens to join:
/// rows taken in as a pending replica by an earlier attempt or life that
/// gave its tokens up (it failed, gave way, or restarted without keeping
/// them). While no ring counted this node, repairs compared the other
/// replicas without it and purged tombstones that supersede some of those
/// rows; kept, they would come back once it joined. It owns no range yet
/// and every write it took was acknowledged by enough other replicas.
async fn forget_unreconciled_rows(node: &NodeHandle) -> Result<(), NodeError> {
    let dropped = node
        .storage
        .call(|storage| storage.delete_range(TokenRange::full()))
        .await?;
    if dropped > 0 {
        info!(node = %node.id, rows = dropped, "joining afresh: dropped the rows an earlier join attempt left");
    }
    Ok(())
}

/// How often a node waiting for its seeds says so.
const DISCOVERY_NOTICE: Duration = Duration::from_secs(5);

/// Waits up to `within` for a cluster to join, saying so every
/// [`DISCOVERY_NOTICE`]; fails at once when a seed refuses this node (its
/// cluster settings differ).
async fn discover(
    node: &NodeHandle,
    (watch, seeds): (&SeedWatch, &[SocketAddr]),
    within: Duration,
) -> Result<bool, NodeError> {
    let started = tokio::time::Instant::now();
    let deadline = started + within;
    let mut notice = started + DISCOVERY_NOTICE;
    loop {
        if let Some(refusal) = watch.refusal() {
            return Err(NodeError::Join(refusal));
        }
        let now = tokio::time::Instant::now();
        if now >= notice {
            info!(
                node = %node.id, ?seeds, waited = ?now.duration_since(started).as_secs(),
                "waiting for a seed to answer (giving up after {within:?})"
            );
            notice += DISCOVERY_NOTICE;
        }
        let left = deadline.saturating_duration_since(now);
        let slice = left.min(Duration::from_millis(250));
        if node.membership.wait_for(slice, has_members).await {
            return Ok(true);
        }
        if left.is_zero() {
            return Ok(false);
        }
    }
}

/// How long a new node waits for its turn to join.
const TURN_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a node waiting for its turn says so.
const TURN_NOTICE: Duration = Duration::from_secs(10);

/// How many times a new node tries to choose its tokens.
const JOIN_ATTEMPTS: usize = 5;

/// Whether the view has a live member: a cluster to join (not only peers
/// remembered from an earlier, failed start).
fn has_members(view: &Arc<View>) -> bool {
    view.nodes
        .values()
        .any(|n| n.up && matches!(n.state.status(), Status::Normal | Status::Leaving))
}

/// A live seed other than `me`, starting with no tokens, whose id is
/// smaller: the one that founds the cluster when seeds start together.
fn starting_seed_before(view: &View, me: &NodeId, seeds: &[SocketAddr]) -> Option<NodeId> {
    view.nodes
        .iter()
        .filter(|(id, n)| {
            *id < me
                && n.up
                && n.state.status() == Status::Joining
                && n.state
                    .internode_address()
                    .is_some_and(|a| seeds.contains(&a))
        })
        .map(|(id, _)| id.clone())
        .next()
}

/// A live node other than `me` with a smaller id that announced tokens to
/// join: `me` gives way to it.
fn joining_before(view: &View, me: &NodeId) -> Option<NodeId> {
    view.nodes
        .iter()
        .filter(|(id, n)| {
            *id < me && n.up && n.state.status() == Status::Joining && !n.state.tokens().is_empty()
        })
        .map(|(id, _)| id.clone())
        .next()
}

/// A member other than `me` (normal, leaving, or joining with a smaller
/// id) that holds one of `tokens`, live or not.
pub(super) fn overlapping(view: &View, me: &NodeId, tokens: &[Token]) -> Option<NodeId> {
    view.nodes
        .iter()
        .filter(|(id, n)| {
            let status = n.state.status();
            *id != me
                && (matches!(status, Status::Normal | Status::Leaving | Status::Removing)
                    || (status == Status::Joining && *id < me))
                && n.state.tokens().iter().any(|t| tokens.contains(t))
        })
        .map(|(id, _)| id.clone())
        .next()
}

/// Waits until no other topology change is in progress and no live node
/// with a smaller id is waiting to join (one change at a time, in id
/// order), at most [`TURN_TIMEOUT`] (others' bootstraps stream data).
async fn wait_for_turn(node: &NodeHandle) -> Result<(), NodeError> {
    let me = node.id.clone();
    let my_turn = |view: &Arc<View>| {
        let earlier = view
            .nodes
            .iter()
            .any(|(id, n)| *id < me && n.up && n.state.status() == Status::Joining);
        !earlier && view.change_in_progress(&me).is_none()
    };
    let deadline = tokio::time::Instant::now() + TURN_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if node.membership.wait_for(TURN_NOTICE, my_turn).await {
            return Ok(());
        }
        if let Some((other, status)) = node.membership.view().change_in_progress(&me) {
            info!(node = %me, %other, %status, "waiting for a topology change to finish before joining");
        }
    }
    let view = node.membership.view();
    Err(NodeError::Join(match view.change_in_progress(&me) {
        Some((other, status)) => format!(
            "another topology change is in progress: {other} is {status}; start this node \
             once it has finished (one change at a time)"
        ),
        None => format!("nodes with smaller ids were still joining after {TURN_TIMEOUT:?}"),
    }))
}

/// Keeps this node's tokens in its data directory, then announces them.
async fn keep_tokens(
    node: &NodeHandle,
    coordinator: &Topology,
    tokens: Vec<Token>,
) -> Result<(), NodeError> {
    let bytes = rmp_serde::to_vec(&tokens).expect("tokens encode");
    node.storage.put_meta(TOKENS_KEY, &bytes)?;
    coordinator
        .gossip
        .set_state(StateValue::Tokens(tokens))
        .await;
    Ok(())
}

/// Streams the ranges a bootstrap has not finished, then becomes normal.
pub(super) async fn finish_bootstrap(
    node: &NodeHandle,
    coordinator: &Topology,
) -> Result<(), NodeError> {
    let mut progress = topology::load_bootstrap(&node.storage)?;
    topology::await_seen_joining(coordinator).await;
    let mut streamed = Streamed::default();
    loop {
        let moved = topology::run_bootstrap(coordinator, &mut progress)
            .await
            .map_err(|e| NodeError::Join(format!("bootstrap streaming failed: {e}")))?;
        streamed.add(moved);
        // A keyspace of another replication whose schema reached this node
        // after it planned (a peer's version was not in its view yet): its
        // rows are streamed too.
        if let Err(error) = node.schemas.learn_from_peers(SCHEMA_WAIT).await {
            return Err(NodeError::Join(format!(
                "cannot learn the schema before becoming normal: {error}"
            )));
        }
        let late = topology::unplanned(coordinator, &progress);
        if late.is_empty() {
            break;
        }
        info!(node = %node.id, ranges = late.len(), "streaming the ranges of a keyspace learned late");
        progress.extend(late);
        topology::save_bootstrap(&node.storage, &progress)?;
    }
    info!(node = %node.id, rows = streamed.rows, bytes = streamed.bytes, "bootstrap streaming complete");
    topology::save_bootstrap(&node.storage, &[])?;
    become_normal(node, coordinator).await
}

async fn become_normal(node: &NodeHandle, coordinator: &Topology) -> Result<(), NodeError> {
    coordinator
        .gossip
        .set_state(StateValue::Status(Status::Normal))
        .await;
    // Serve once this node's own view has it in the ring.
    let in_ring = |view: &Arc<View>| view.ring.members().contains_key(&node.id);
    if !node
        .membership
        .wait_for(Duration::from_secs(5), in_ring)
        .await
    {
        return Err(NodeError::Join(
            "the node's tokens did not reach its ring".into(),
        ));
    }
    info!(node = %node.id, "joined the ring");
    Ok(())
}
