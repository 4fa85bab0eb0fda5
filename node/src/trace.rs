//! Request tracing (`TRACING ON`): the events of one statement at its
//! coordinator, with their offsets from its start.
//!
//! A statement run with tracing runs inside [`traced`], which gives its
//! task a recorder; the data path notes what it does with [`event`] (which
//! replicas it asks, which answer and when, speculative retries, read
//! repairs, hints, forwarding), at no cost when nothing is recorded. Only
//! the statement's own task records, and the tasks it runs a part of the
//! statement in ([`follow`]: a batch's reads of its rows' contexts): the
//! per-replica tasks it spawns do not, so the events are the coordinator's
//! view (when it learnt of an answer), which is what a user reading a trace
//! wants.

use std::future::Future;
use std::sync::{Arc, Mutex};

use ringdb_proto::TraceEvent;
use tokio::time::Instant;

tokio::task_local! {
    static RECORDER: Arc<Recorder>;
}

struct Recorder {
    source: String,
    started: Instant,
    events: Mutex<Vec<TraceEvent>>,
}

/// The most events one trace keeps.
const MAX_EVENTS: usize = 1_000;

/// Runs `work` with a recorder; returns its output and its events.
pub(crate) async fn traced<T>(
    source: String,
    work: impl Future<Output = T>,
) -> (T, Vec<TraceEvent>) {
    let recorder = Arc::new(Recorder {
        source,
        started: Instant::now(),
        events: Mutex::new(Vec::new()),
    });
    RECORDER
        .scope(recorder, async {
            let output = work.await;
            let events = RECORDER.with(|r| std::mem::take(&mut *r.events.lock().expect("trace")));
            (output, events)
        })
        .await
}

/// `work`, recording into the current task's trace if it is traced: for a
/// part of the statement run in a task of its own.
pub(crate) fn follow<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let recorder = RECORDER.try_with(Arc::clone).ok();
    async move {
        match recorder {
            Some(recorder) => RECORDER.scope(recorder, work).await,
            None => work.await,
        }
    }
}

/// Records an event when the current task is traced (`activity` is only
/// called then).
pub(crate) fn event(activity: impl FnOnce() -> String) {
    let _ = RECORDER.try_with(|recorder| {
        let mut events = recorder.events.lock().expect("trace");
        if events.len() < MAX_EVENTS {
            events.push(TraceEvent {
                activity: activity(),
                source: recorder.source.clone(),
                elapsed_micros: recorder.started.elapsed().as_micros() as u64,
            });
        }
    });
}
