//! Requests multiplexed over a few long-lived QUIC streams.
//!
//! Opening a QUIC stream per request costs a stream handshake each time
//! (measured here: ~60k round trips/s at 64 in flight); a long-lived stream
//! carrying many requests, matched to their answers by request id, with
//! frames written in batches, reaches ~1.25M (DESIGN.md "Wire"). So a
//! [`Multiplexed`] connection opens [`STREAMS_PER_CONNECTION`] bidirectional
//! streams once and spreads requests over them round-robin:
//!
//! - the caller encodes its frame (so an oversized message fails in its own
//!   task), registers a one-shot slot for the answer under a fresh id, and
//!   queues the frame on the stream's bounded queue; a full queue answers
//!   `Overloaded` at once instead of queueing without bound;
//! - one writer task per stream drains its queue into one buffer while frames
//!   are waiting and writes it with one call ([`write_frames`]);
//! - one reader task per stream decodes answers ([`FrameReader`]) and hands
//!   each to its slot. When a stream fails, every request still waiting on the
//!   connection learns that the connection was lost.
//!
//! The node uses the same writer and reader for its side of each stream and
//! for its own connections to peers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringdb_proto::{
    FrameError, Request, RequestError, Response, encode_frame, envelope_id, split_frame,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Long-lived streams per connection.
pub const STREAMS_PER_CONNECTION: usize = 4;
/// Frames that may wait in one stream's queue before callers get `Overloaded`.
pub const STREAM_QUEUE_FRAMES: usize = 4096;
/// A writer stops gathering frames into one write at this many bytes.
const WRITE_BATCH_BYTES: usize = 256 << 10;
/// Bytes asked of a stream per read.
const READ_CHUNK_BYTES: usize = 256 << 10;

/// Why a call has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The request was never sent: the connection is closed, or the request
    /// does not encode.
    #[error("not sent: {reason}")]
    NotSent {
        /// Why.
        reason: String,
    },
    /// The request does not fit in one frame: it was never sent, and the
    /// connection stays open for others.
    #[error("request too large: {len} bytes, over the limit of {max} bytes per request")]
    TooLarge {
        /// The request's encoded length.
        len: usize,
        /// The frame limit.
        max: usize,
    },
    /// The connection was lost after the request was sent: the outcome is unknown.
    #[error("connection lost after sending: {reason}")]
    ConnectionLost {
        /// Why.
        reason: String,
    },
    /// No answer within the caller's deadline: the outcome is unknown.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The peer answered with an error.
    #[error(transparent)]
    Remote(#[from] RequestError),
}

impl CallError {
    /// True when nothing reached the peer, so retrying anything elsewhere is safe.
    pub fn was_not_sent(&self) -> bool {
        matches!(
            self,
            CallError::NotSent { .. }
                | CallError::TooLarge { .. }
                | CallError::Remote(
                    RequestError::Overloaded { .. }
                        | RequestError::Unavailable { .. }
                        | RequestError::UnreachableContext { .. }
                )
        )
    }
}

type Slot<T> = oneshot::Sender<Result<T, RequestError>>;

struct Pending<T> {
    slots: Mutex<HashMap<u64, Slot<T>>>,
    closed: AtomicBool,
    close_reason: Mutex<String>,
}

impl<T> Pending<T> {
    fn close(&self, reason: &str) {
        self.closed.store(true, Ordering::Release);
        let mut stored = self.close_reason.lock().expect("close reason");
        if stored.is_empty() {
            *stored = reason.to_string();
        }
        drop(stored);
        // Dropping the slots wakes their callers with "connection lost".
        self.slots.lock().expect("pending slots").clear();
    }
}

/// Aborts its task when dropped, so a task never outlives its owner.
pub struct TaskGuard<T = ()>(pub JoinHandle<T>);

impl<T> Drop for TaskGuard<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connection on which requests of type `Req` are answered with `Resp`.
pub struct Multiplexed<Req, Resp> {
    connection: quinn::Connection,
    queues: Vec<mpsc::Sender<Vec<u8>>>,
    pending: Arc<Pending<Resp>>,
    next_id: AtomicU64,
    next_stream: AtomicUsize,
    max_frame_bytes: usize,
    _tasks: Vec<TaskGuard>,
    _request: std::marker::PhantomData<fn(Req)>,
}

impl<Req, Resp> Multiplexed<Req, Resp>
where
    Req: Serialize,
    Resp: DeserializeOwned + Send + 'static,
{
    /// Opens the streams of an established connection and starts their tasks.
    pub async fn open(
        connection: quinn::Connection,
        max_frame_bytes: usize,
    ) -> Result<Self, quinn::ConnectionError> {
        let pending = Arc::new(Pending {
            slots: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            close_reason: Mutex::new(String::new()),
        });
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..STREAMS_PER_CONNECTION {
            let (send, recv) = connection.open_bi().await?;
            let (queue, frames) = mpsc::channel(STREAM_QUEUE_FRAMES);
            queues.push(queue);
            let writer_pending = pending.clone();
            tasks.push(TaskGuard(tokio::spawn(async move {
                if let Err(error) = write_frames(send, frames).await {
                    writer_pending.close(&error.to_string());
                }
            })));
            let reader_pending = pending.clone();
            tasks.push(TaskGuard(tokio::spawn(read_responses(
                FrameReader::new(recv, max_frame_bytes),
                reader_pending,
            ))));
        }
        Ok(Multiplexed {
            connection,
            queues,
            pending,
            next_id: AtomicU64::new(1),
            next_stream: AtomicUsize::new(0),
            max_frame_bytes,
            _tasks: tasks,
            _request: std::marker::PhantomData,
        })
    }

    /// Sends `body` and waits up to `timeout` for its answer. The peer is
    /// told the same budget, so it stops working when nobody waits any more.
    pub async fn call(&self, body: Req, timeout: Duration) -> Result<Resp, CallError> {
        self.call_with_budget(body, timeout, timeout).await
    }

    /// Like [`Multiplexed::call`], but tells the peer `budget` while waiting
    /// up to `wait` (a little longer, so that the peer's own timeout answer,
    /// which says how far it got, arrives before ours).
    pub async fn call_with_budget(
        &self,
        body: Req,
        budget: Duration,
        wait: Duration,
    ) -> Result<Resp, CallError> {
        self.send(body, budget)?.wait(wait).await
    }

    /// Queues `body` for sending at once, telling the peer it has `budget`,
    /// and returns the slot its answer will arrive in. Queueing is
    /// synchronous, so requests queued one after another leave in that
    /// order, and a caller can queue several before waiting on any.
    pub fn send(&self, body: Req, budget: Duration) -> Result<PendingReply<Resp>, CallError> {
        if self.is_closed() {
            return Err(CallError::NotSent {
                reason: self.close_reason(),
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Request {
            id,
            timeout_ms: budget.as_millis().min(u32::MAX as u128) as u32,
            body,
        };
        let mut frame = Vec::new();
        encode_frame(&request, self.max_frame_bytes, &mut frame).map_err(|error| match error {
            FrameError::TooLarge { len, max } => CallError::TooLarge { len, max },
            error => CallError::NotSent {
                reason: error.to_string(),
            },
        })?;
        let (slot, answer) = oneshot::channel();
        {
            // Checked under the lock that `close` clears the slots under, so
            // a slot is never added after the clearing, to wait for nothing.
            let mut slots = self.pending.slots.lock().expect("pending slots");
            if self.pending.closed.load(Ordering::Acquire) {
                return Err(CallError::NotSent {
                    reason: self.close_reason(),
                });
            }
            slots.insert(id, slot);
        }
        let pending = PendingReply {
            id,
            answer,
            pending: self.pending.clone(),
            connection: self.connection.clone(),
        };
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        match self.queues[stream].try_send(frame) {
            Ok(()) => Ok(pending),
            Err(mpsc::error::TrySendError::Full(_)) => {
                Err(CallError::Remote(RequestError::overloaded(format!(
                    "{STREAM_QUEUE_FRAMES} requests queued on the connection"
                ))))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(CallError::NotSent {
                reason: self.close_reason(),
            }),
        }
    }
}

impl<Req, Resp> Drop for Multiplexed<Req, Resp> {
    fn drop(&mut self) {
        // Dropping the tasks stops the readers, which would otherwise fail
        // the calls still waiting when the connection ends: fail them now,
        // or each would wait its whole timeout for an answer that cannot
        // come.
        self.pending.close("the connection was closed on this side");
    }
}

impl<Req, Resp> Multiplexed<Req, Resp> {
    /// True once a stream or the connection failed; open a new connection.
    pub fn is_closed(&self) -> bool {
        self.pending.closed.load(Ordering::Acquire) || self.connection.close_reason().is_some()
    }

    /// The QUIC connection underneath.
    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }

    fn close_reason(&self) -> String {
        close_reason(&self.connection, &self.pending)
    }
}

fn close_reason<T>(connection: &quinn::Connection, pending: &Pending<T>) -> String {
    if let Some(reason) = connection.close_reason() {
        return reason.to_string();
    }
    let reason = pending.close_reason.lock().expect("close reason");
    if reason.is_empty() {
        "connection closed".into()
    } else {
        reason.clone()
    }
}

/// A sent request's answer, to come. Dropping it forgets the request, so an
/// answer that is no longer wanted is discarded when it arrives.
pub struct PendingReply<T> {
    id: u64,
    answer: oneshot::Receiver<Result<T, RequestError>>,
    pending: Arc<Pending<T>>,
    connection: quinn::Connection,
}

impl<T> PendingReply<T> {
    /// Waits up to `wait` for the answer.
    pub async fn wait(mut self, wait: Duration) -> Result<T, CallError> {
        match tokio::time::timeout(wait, &mut self.answer).await {
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(error))) => Err(CallError::Remote(error)),
            Ok(Err(_)) => Err(CallError::ConnectionLost {
                reason: close_reason(&self.connection, &self.pending),
            }),
            Err(_) => Err(CallError::Timeout(wait)),
        }
    }
}

impl<T> Drop for PendingReply<T> {
    fn drop(&mut self) {
        self.pending
            .slots
            .lock()
            .expect("pending slots")
            .remove(&self.id);
    }
}

async fn read_responses<Resp: DeserializeOwned>(
    mut reader: FrameReader,
    pending: Arc<Pending<Resp>>,
) {
    let reason = loop {
        match reader.next::<Response<Resp>>().await {
            Ok(Some(response)) => {
                let slot = pending
                    .slots
                    .lock()
                    .expect("pending slots")
                    .remove(&response.id);
                if let Some(slot) = slot {
                    // The caller may have given up (timeout): nobody to tell.
                    let _ = slot.send(response.body);
                }
            }
            Ok(None) => break "the peer closed the stream".to_string(),
            Err(ReadFrameError::Message {
                id: Some(id),
                error,
            }) => {
                // One answer does not decode (a newer peer?): fail that call
                // alone; the stream goes on.
                let slot = pending.slots.lock().expect("pending slots").remove(&id);
                if let Some(slot) = slot {
                    let reason = format!("the answer does not decode: {error}");
                    let _ = slot.send(Err(RequestError::invalid(reason)));
                }
            }
            Err(error) => break error.to_string(),
        }
    };
    pending.close(&reason);
}

/// Writes the frames of `frames` to `send`, gathering every frame that is
/// already waiting into one write. Returns when the queue closes (after
/// finishing the stream) or the stream fails.
pub async fn write_frames(
    mut send: quinn::SendStream,
    mut frames: mpsc::Receiver<Vec<u8>>,
) -> Result<(), quinn::WriteError> {
    let mut buffer = Vec::with_capacity(WRITE_BATCH_BYTES);
    while let Some(first) = frames.recv().await {
        buffer.clear();
        buffer.extend_from_slice(&first);
        while buffer.len() < WRITE_BATCH_BYTES {
            match frames.try_recv() {
                Ok(frame) => buffer.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        send.write_all(&buffer).await?;
    }
    // The stream may already be reset by the peer; nothing left to tell it.
    let _ = send.finish();
    Ok(())
}

/// Why a stream of frames cannot be read further.
#[derive(Debug, thiserror::Error)]
pub enum ReadFrameError {
    /// The stream failed.
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// The peer sent something that is not a frame of this protocol.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// A whole frame arrived but its message does not decode. The stream
    /// is still usable: the reader has moved past the frame.
    #[error("{error}")]
    Message {
        /// The request id of the envelope, if that much decoded.
        id: Option<u64>,
        /// What does not decode.
        error: FrameError,
    },
}

/// Decodes frames from a receiving stream, reading as much as arrives.
pub struct FrameReader {
    recv: quinn::RecvStream,
    buffer: Vec<u8>,
    start: usize,
    max_frame_bytes: usize,
}

impl FrameReader {
    /// A reader of `recv` that refuses frames over `max_frame_bytes`.
    pub fn new(recv: quinn::RecvStream, max_frame_bytes: usize) -> FrameReader {
        FrameReader {
            recv,
            buffer: Vec::new(),
            start: 0,
            max_frame_bytes,
        }
    }

    /// The next message, or `None` when the stream ends cleanly between frames.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ReadFrameError> {
        loop {
            if let Some((message, used)) =
                split_frame(&self.buffer[self.start..], self.max_frame_bytes)?
            {
                let decoded =
                    rmp_serde::from_slice::<T>(message).map_err(|error| ReadFrameError::Message {
                        id: envelope_id(message),
                        error: error.into(),
                    });
                self.start += used;
                return decoded.map(Some);
            }
            // Keep only the unread tail before reading more.
            if self.start > 0 {
                self.buffer.drain(..self.start);
                self.start = 0;
            }
            match self.recv.read_chunk(READ_CHUNK_BYTES, true).await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk.bytes),
                None if self.buffer.is_empty() => return Ok(None),
                None => return Err(ReadFrameError::Truncated),
            }
        }
    }
}
