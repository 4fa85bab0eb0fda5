//! Forwarded writes, run once each.
//!
//! A write is not idempotent: coordinating it twice issues two dots, and the
//! value is then stored twice, as two siblings a later context may cover
//! only one of. A node that forwards a write never sends it twice, but the
//! network may deliver it twice (the simulator's and the lab's duplication
//! fault, a retransmission below us). So a forwarded write carries an id
//! drawn by its sender, and the node it reaches remembers, for a while
//! longer than any request lives, which `(sender, id)` it has run and what
//! it answered: a second delivery waits for the first run and gets its
//! answer, and nothing is written twice.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringdb_proto::{ClientReply, RequestError};
use ringdb_ring::NodeId;
use tokio::sync::OnceCell;
use tokio::time::Instant;

type Answer = Result<ClientReply, RequestError>;

/// The forwarded writes run in the last while, by sender and id.
#[derive(Default)]
pub(crate) struct Forwarded {
    runs: Mutex<Runs>,
}

#[derive(Default)]
struct Runs {
    by_id: BTreeMap<(NodeId, u64), Arc<OnceCell<Answer>>>,
    /// When each entry of `by_id` was made, oldest first.
    made: VecDeque<(Instant, (NodeId, u64))>,
}

impl Forwarded {
    /// Runs `write`, the forwarded write `id` from `from`, unless it ran
    /// (or is running) already: then waits for that run and returns its
    /// answer. Entries are kept for `keep`.
    ///
    /// Should the first run be cancelled before it answers (its node is
    /// shutting down), a later delivery runs the write itself.
    pub(crate) async fn once(
        &self,
        from: NodeId,
        id: u64,
        keep: Duration,
        write: impl Future<Output = Answer>,
    ) -> Answer {
        let run = {
            let mut runs = self.runs.lock().expect("forwarded writes lock");
            let now = Instant::now();
            runs.forget_before(now.checked_sub(keep));
            let key = (from, id);
            match runs.by_id.get(&key) {
                Some(run) => run.clone(),
                None => {
                    let run = Arc::new(OnceCell::new());
                    runs.by_id.insert(key.clone(), run.clone());
                    runs.made.push_back((now, key));
                    run
                }
            }
        };
        run.get_or_init(|| write).await.clone()
    }

    /// How many writes are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.runs.lock().expect("forwarded writes lock").by_id.len()
    }
}

impl Runs {
    fn forget_before(&mut self, cutoff: Option<Instant>) {
        let Some(cutoff) = cutoff else { return };
        while let Some((made, _)) = self.made.front()
            && *made < cutoff
        {
            let (_, key) = self.made.pop_front().expect("front exists");
            self.by_id.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn answer(runs: &AtomicU32) -> Answer {
        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
        Err(RequestError::Unavailable {
            required: run as usize,
            alive: 0,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_delivered_twice_runs_once_and_both_get_its_answer() {
        let forwarded = Forwarded::default();
        let runs = AtomicU32::new(0);
        let keep = Duration::from_secs(10);
        let slow = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer(&runs)
        };
        let first = forwarded.once(NodeId::new("n1"), 7, keep, slow);
        let second = forwarded.once(NodeId::new("n1"), 7, keep, async { answer(&runs) });
        let (first, second) = tokio::join!(first, second);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(first, second);
        // Delivered again after the answer: still the first answer.
        let third = forwarded
            .once(NodeId::new("n1"), 7, keep, async { answer(&runs) })
            .await;
        assert_eq!(third, first);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Another sender's write with the same id is another write.
        forwarded
            .once(NodeId::new("n2"), 7, keep, async { answer(&runs) })
            .await
            .unwrap_err();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn runs_are_forgotten_after_their_keep() {
        let forwarded = Forwarded::default();
        let runs = AtomicU32::new(0);
        let keep = Duration::from_secs(10);
        for id in 0..5 {
            forwarded
                .once(NodeId::new("n1"), id, keep, async { answer(&runs) })
                .await
                .unwrap_err();
        }
        assert_eq!(forwarded.len(), 5);
        tokio::time::advance(Duration::from_secs(11)).await;
        forwarded
            .once(NodeId::new("n1"), 99, keep, async { answer(&runs) })
            .await
            .unwrap_err();
        assert_eq!(forwarded.len(), 1);
    }
}
