//! Damaged data: the node stops to salvage, then restores what it dropped.
//!
//! When any read finds damage on disk ([`Storage::note_damage`]), the node
//! tells the cluster (gossip's `Damage` state, shown by `ringdb status`),
//! answers `DamagedData` rather than serve anything damaged, and stops
//! itself ([`watch`]): `ringdb start` then starts it again at once in the
//! same process, and the open salvages the data directory (see
//! `storage/salvage.rs`). Once it serves again, [`restore`] repairs every
//! range it replicates against the other replicas until all of them were
//! compared, which brings back the rows the salvage dropped, and records
//! the restore as done. The note stays in `status` until the node's next
//! restart, so that an operator sees a disk that damages data.

use std::sync::Arc;
use std::time::Duration;

use ringdb_gossip::StateValue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::repair;
use crate::repair::AntiEntropy;
use crate::replica::Replica;
use crate::storage::Storage;

/// How long a node that found damage keeps gossiping before it stops to
/// salvage, so that its peers hear why it goes down.
const ANNOUNCE: Duration = Duration::from_secs(2);
/// Between restore attempts that could not compare every range.
const RESTORE_RETRY: Duration = Duration::from_secs(5);
/// How long one restore attempt may take.
const RESTORE_ROUND: Duration = Duration::from_secs(600);

/// Ends (stopping the node) once damage is found, after announcing it.
pub(crate) async fn watch(coordinator: Arc<Replica>, cancel: CancellationToken) {
    let mut alarm = coordinator.storage.damage_alarm();
    let found = tokio::select! {
        biased;
        () = cancel.cancelled() => return,
        found = alarm.wait_for(|found| *found) => found.is_ok(),
    };
    if !found {
        return cancel.cancelled().await;
    }
    let detail = coordinator.storage.damage_found().unwrap_or_default();
    coordinator
        .gossip
        .set_state(StateValue::Damage(Some(format!(
            "{detail}; stopping to salvage its data directory"
        ))))
        .await;
    tokio::select! {
        biased;
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(ANNOUNCE) => {
            warn!("stopping to salvage the data directory");
        }
    }
}

/// The gossip state for what the storage records of the last salvage.
pub(crate) fn damage_state(storage: &Storage) -> StateValue {
    let record = storage.damage_record().ok().flatten();
    StateValue::Damage(record.map(|record| record.summary()))
}

/// Restores the rows the last salvage dropped, from the other replicas,
/// then waits for the node to stop (a task that ends stops the node).
pub(crate) async fn restore(coordinator: Arc<AntiEntropy>, cancel: CancellationToken) {
    let storage = coordinator.storage.clone();
    let owed = matches!(storage.damage_record(), Ok(Some(record)) if !record.restored);
    if !owed {
        return cancel.cancelled().await;
    }
    info!("restoring the rows the salvage dropped from the other replicas");
    loop {
        let started = Instant::now();
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            outcome = repair::repair(&coordinator, None, Vec::new(), None, started + RESTORE_ROUND) => outcome,
        };
        match outcome {
            Ok(summary) if summary.ranges_failed.is_empty() => {
                info!(
                    ranges = summary.ranges_compared,
                    keys = summary.keys_repaired,
                    ms = started.elapsed().as_millis() as u64,
                    "the rows the salvage dropped are restored"
                );
                let marked = storage.blocking(Storage::mark_restored).await;
                if marked.is_err() {
                    warn!(
                        "cannot record that the restore is done; it runs again at the next start"
                    );
                }
                coordinator.gossip.set_state(damage_state(&storage)).await;
                return cancel.cancelled().await;
            }
            Ok(summary) => info!(
                failed = summary.ranges_failed.len(),
                "restore: some ranges could not be compared yet; trying again"
            ),
            Err(error) => info!(%error, "restore: trying again"),
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(RESTORE_RETRY) => {}
        }
    }
}
