//! The Merkle trees kept in step with the ring and the placement of
//! tables, and the cleanup a topology change calls for.

use std::sync::Arc;

use ringdb_gossip::Status;
use ringdb_ring::{Replication, TokenRange};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{AntiEntropy, TREE_RETRY, TREE_SETTLE, wanted_trees};
use crate::cleanup;
use crate::membership::View;

/// Keeps the Merkle trees over the ranges this node replicates: builds
/// them at start and again when the ring or the placement of tables
/// changed and stayed still; and once a change took ranges from this
/// node, cleans them up (`cleanup.rs`).
pub(crate) async fn maintain_trees(coordinator: Arc<AntiEntropy>, cancel: CancellationToken) {
    let mut views = coordinator.membership.subscribe();
    let mut placements = coordinator.placement.subscribe();
    // Every range this node has replicated (with the replication that gave
    // it), in any ring this process has seen it a member of, since its last
    // cleanup: a range among them it no longer replicates once the ring
    // settles is to be cleaned up. Every view is looked at, not only
    // settled ones, so that a change that follows another before the ring
    // settles is not missed.
    let mut held: Held = Vec::new();
    note_held(&coordinator, &mut held);
    loop {
        // Wait for the ring and the placements to stay still for a moment.
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                changed = placements.changed() => if changed.is_err() { return },
                changed = tokio::time::timeout(TREE_SETTLE, views.changed()) => match changed {
                    Err(_) => break,
                    Ok(Err(_)) => return,
                    Ok(Ok(())) => note_held(&coordinator, &mut held),
                },
            }
        }
        let view = coordinator.membership.view();
        let retry = !rebuild_trees(&coordinator).await;
        clean_up_if_settled(&coordinator, &view, &mut held).await;
        // Sleep until the next change (or until it is time to try a failed
        // build again).
        let retry_at = retry.then(|| tokio::time::Instant::now() + TREE_RETRY);
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = async { tokio::time::sleep_until(retry_at.expect("set")).await }, if retry_at.is_some() => {}
            changed = placements.changed() => if changed.is_err() { return },
            changed = views.changed() => match changed {
                Ok(()) => note_held(&coordinator, &mut held),
                Err(_) => return,
            },
        }
    }
}

/// Ranges this node held, each with the replication that gave it.
type Held = Vec<(Replication, TokenRange)>;

/// Adds the ranges this node replicates now to `held`, with those of a
/// change's future ring (a change that streamed rows here and was then
/// abandoned leaves them to clean up), for every placement group.
fn note_held(coordinator: &AntiEntropy, held: &mut Held) {
    let view = coordinator.membership.view();
    for group in coordinator.placement.now().groups() {
        let replication = group.replication;
        let now = match view.ring.members().contains_key(&coordinator.me) {
            true => view.ring.ranges_of(&coordinator.me, &replication),
            false => Vec::new(),
        };
        let future =
            (view.future.as_ref()).map(|future| future.ranges_of(&coordinator.me, &replication));
        for range in now.into_iter().chain(future.into_iter().flatten()) {
            let entry = (replication.clone(), range);
            if !held.contains(&entry) {
                held.push(entry);
            }
        }
    }
}

/// Builds the trees again when the ranges this node replicates, or the
/// tables of a placement group, changed (or a build failed); returns
/// false when the build failed.
async fn rebuild_trees(coordinator: &AntiEntropy) -> bool {
    let wanted = wanted_trees(coordinator);
    let current = coordinator.storage.trees();
    let no_ranges = wanted.iter().all(|(_, ranges)| ranges.is_empty());
    if current.plan() == wanted && (current.is_ready() || no_ranges) {
        return true;
    }
    let started = Instant::now();
    let count: usize = wanted.iter().map(|(_, ranges)| ranges.len()).sum();
    let groups = wanted.len();
    let built = coordinator
        .storage
        .blocking(move |storage| storage.rebuild_group_trees(wanted))
        .await;
    match built {
        Ok(_) => {
            info!(
                ranges = count,
                groups,
                ms = started.elapsed().as_millis() as u64,
                "Merkle trees built"
            );
            true
        }
        Err(error) => {
            coordinator.storage.note_damage(&error);
            warn!(%error, "cannot build the Merkle trees; trying again in {TREE_RETRY:?}");
            false
        }
    }
}

/// Once the ring is settled with this node a normal member, deletes the
/// rows of the `held` ranges it no longer replicates; `held` is then what
/// it replicates now (kept, for the next settled ring, if it failed).
async fn clean_up_if_settled(coordinator: &AntiEntropy, view: &View, held: &mut Held) {
    let stable = view.ring.members().contains_key(&coordinator.me)
        && view.future.is_none()
        && view.change_in_progress(&coordinator.me).is_none()
        && view.status(&coordinator.me) == Some(Status::Normal);
    if !stable {
        return;
    }
    let all = cleanup::all_ranges(view);
    let mut now: Held = Vec::new();
    let mut lost = false;
    for group in coordinator.placement.now().groups() {
        let ranges = view.ring.ranges_of(&coordinator.me, &group.replication);
        let before: Vec<TokenRange> = (held.iter())
            .filter(|(replication, _)| *replication == group.replication)
            .map(|(_, range)| *range)
            .collect();
        lost |= cleanup::needs_cleanup(&before, &ranges, &all);
        now.extend(
            ranges
                .into_iter()
                .map(|range| (group.replication.clone(), range)),
        );
    }
    if lost {
        match cleanup::cleanup(&coordinator.cleanup).await {
            Ok(cleaned) => {
                info!(
                    rows = cleaned.rows,
                    "a topology change took ranges from this node: cleaned them up"
                );
            }
            Err(error) => {
                // Kept for the next settled ring to try again.
                warn!(%error, "cleanup after a topology change did not finish");
                return;
            }
        }
    }
    *held = now;
}
