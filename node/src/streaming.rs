//! Streaming token ranges between nodes: for a joining node (bootstrap), a
//! leaving one (decommission) and the new replicas of a removed one.
//!
//! A stream is a sequence of pages: the receiver asks for the rows of a
//! range after the last key it stored ([`PeerRequest::StreamRange`]), so a
//! stream interrupted by a restart of either side resumes where it stopped.
//! Rows are merged with what the receiver holds ([`Storage::merge`]), so a
//! row streamed twice, or written meanwhile, is never lost or duplicated.

use std::sync::Arc;
use std::time::Duration;

use ringdb_proto::{PeerReply, PeerRequest, RequestError, StreamedRow, VersionedRow};
use ringdb_ring::{NodeId, Token, TokenRange};
use tokio::time::Instant;
use tracing::info;

use crate::error::{TaskError, ask};
use crate::network::Network;
use crate::placement::Group;
use crate::storage::{RowKey, Storage, StorageError, decode_versions, purgeable};

/// Most rows in one page of a stream.
pub const PAGE_ROWS: u32 = 512;
/// A page (of a stream, of rows a repair moves, of Merkle items) ends once
/// it holds this many bytes, whatever its row count, so that every message
/// stays well inside the 16 MiB frame: one row alone is at most
/// `requests.max_stored_row_bytes` (8 MiB by default) and its key 128 KiB.
pub const PAGE_BYTES: usize = 4 << 20;
/// How long one page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a stream moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Streamed {
    /// Rows.
    pub rows: u64,
    /// Bytes of encoded rows.
    pub bytes: u64,
    /// Rows that changed what this node held (repair purges only after a
    /// round that changed nothing here).
    pub changed: u64,
}

impl Streamed {
    /// Adds another stream's figures.
    pub fn add(&mut self, other: Streamed) {
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.changed += other.changed;
    }
}

/// One page of `group`'s rows of `range` after `after`, from local
/// storage: up to `max_rows` rows, ending early once it holds
/// [`PAGE_BYTES`] (always at least one row).
pub(crate) fn page(
    storage: &Storage,
    group: &Group,
    range: TokenRange,
    after: Option<Vec<u8>>,
    max_rows: u32,
) -> Result<(Vec<StreamedRow>, bool), StorageError> {
    let mut rows = Vec::new();
    let mut bytes = 0;
    let mut scan = storage.scan_encoded(range, after);
    for item in scan.by_ref() {
        // Stored bytes are already the wire's versioned row: shipped as is.
        let (key, versions) = item?;
        if !RowKey::table_of(&key).is_some_and(|table| group.holds(table)) {
            continue;
        }
        bytes += key.len() + versions.len();
        rows.push(StreamedRow {
            key,
            versions: VersionedRow(versions),
        });
        if rows.len() >= max_rows as usize || bytes >= PAGE_BYTES {
            break;
        }
    }
    let full = rows.len() >= max_rows as usize || bytes >= PAGE_BYTES;
    let more = full && scan.next().is_some();
    Ok((rows, more))
}

/// Splits `rows` into batches of at most [`PAGE_BYTES`] each (a row larger
/// than that alone in its batch), in order.
pub(crate) fn batches(rows: Vec<StreamedRow>) -> Vec<Vec<StreamedRow>> {
    let mut batches: Vec<Vec<StreamedRow>> = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let size = row.key.len() + row.versions.0.len();
        match batches.last_mut() {
            Some(batch) if bytes + size <= PAGE_BYTES => batch.push(row),
            _ => {
                batches.push(vec![row]);
                bytes = 0;
            }
        }
        bytes += size;
    }
    batches
}

/// Merges streamed rows into local storage; returns what was stored. With
/// `purged_before`, a row that is only tombstones older than that (micros)
/// is not stored where the row is absent: it was purged here (see
/// `repair::purge_tombstones`), and storing it again would only make it
/// bounce between replicas.
pub(crate) fn store(
    storage: &Storage,
    rows: &[StreamedRow],
    purged_before: Option<i64>,
) -> Result<Streamed, RequestError> {
    let mut streamed = Streamed::default();
    for row in rows {
        let key = RowKey::decode(&row.key)
            .map_err(|e| RequestError::invalid(format!("malformed streamed key: {e}")))?;
        // The token leads the key and places the row in its range and tree:
        // it must be the partition's, or reads would never find the row.
        if key.token != Token::of(key.partition.as_bytes()) {
            return Err(RequestError::invalid(format!(
                "streamed key of token {} is not its partition's",
                key.token
            )));
        }
        let versions = decode_versions(&row.versions.0)
            .map_err(|e| RequestError::invalid(format!("malformed streamed row: {e}")))?;
        let mut changed = false;
        storage
            .update(&key, |current| {
                let purged = purged_before
                    .is_some_and(|before| current.is_empty() && purgeable(&versions, before));
                if purged {
                    current.clone()
                } else {
                    let next = current.sync(&versions);
                    changed = next != *current;
                    next
                }
            })
            .map_err(|e| RequestError::Server {
                node: NodeId::new("local"),
                reason: e.to_string(),
            })?;
        streamed.rows += 1;
        streamed.bytes += (row.key.len() + row.versions.0.len()) as u64;
        streamed.changed += u64::from(changed);
    }
    Ok(streamed)
}

/// Pulls every row of `group`'s tables in `range` from `source` into
/// local storage, starting after `after`; `checkpoint` is told the last key
/// stored after each page (to resume from after a restart).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch(
    peers: &dyn Network,
    storage: &Arc<Storage>,
    source: &NodeId,
    group: &Group,
    range: TokenRange,
    mut after: Option<Vec<u8>>,
    throttle: &mut Throttle,
    mut checkpoint: impl FnMut(&[u8]) -> Result<(), StorageError>,
) -> Result<Streamed, TaskError> {
    let mut streamed = Streamed::default();
    loop {
        let request = PeerRequest::StreamRange {
            range,
            after: after.clone(),
            max_rows: PAGE_ROWS,
            placement: group.wire(),
        };
        let deadline = Instant::now() + PAGE_TIMEOUT;
        let (rows, more) = match ask(peers, source, request, deadline).await? {
            PeerReply::Rows { rows, more } => (rows, more),
            other => return Err(TaskError::unexpected(source, &other)),
        };
        if more && rows.is_empty() {
            return Err(TaskError::Protocol {
                node: source.clone(),
                what: "an empty page with more to come".into(),
            });
        }
        let page_rows = rows.clone();
        let stored = storage
            .blocking(move |local| store(local, &page_rows, None))
            .await?;
        streamed.add(stored);
        throttle.moved(stored.bytes).await;
        if let Some(last) = rows.last() {
            checkpoint(&last.key)?;
            after = Some(last.key.clone());
        }
        if !more {
            return Ok(streamed);
        }
    }
}

/// Pushes every row of `group`'s tables in `range` in local storage to
/// `target`, which takes this node's place as its replica (a handover:
/// stored as it is, see [`PeerRequest::StoreRows`]).
pub(crate) async fn push(
    peers: &dyn Network,
    storage: &Arc<Storage>,
    target: &NodeId,
    group: &Group,
    range: TokenRange,
    throttle: &mut Throttle,
) -> Result<Streamed, TaskError> {
    let mut streamed = Streamed::default();
    let mut after = None;
    loop {
        let (from, of) = (after.clone(), group.clone());
        let (rows, more) = storage
            .blocking(move |local| page(local, &of, range, from, PAGE_ROWS))
            .await?;
        after = rows.last().map(|row| row.key.clone());
        let mut page_bytes = 0;
        for row in &rows {
            streamed.rows += 1;
            page_bytes += (row.key.len() + row.versions.0.len()) as u64;
        }
        streamed.bytes += page_bytes;
        if !rows.is_empty() {
            let deadline = Instant::now() + PAGE_TIMEOUT;
            let request = PeerRequest::StoreRows {
                rows,
                handover: true,
            };
            match ask(peers, target, request, deadline).await? {
                PeerReply::Applied => {}
                other => return Err(TaskError::unexpected(target, &other)),
            }
        }
        throttle.moved(page_bytes).await;
        if !more {
            return Ok(streamed);
        }
    }
}

/// Keeps a stream under a rate: after each page, waits until the bytes so
/// far could have moved at `bytes_per_sec`.
pub(crate) struct Throttle {
    bytes_per_sec: Option<f64>,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    pub(crate) fn new(bytes_per_sec: Option<f64>) -> Throttle {
        Throttle {
            bytes_per_sec,
            started: Instant::now(),
            bytes: 0,
        }
    }

    pub(crate) async fn moved(&mut self, bytes: u64) {
        self.bytes += bytes;
        if let Some(rate) = self.bytes_per_sec {
            let due = self.started + Duration::from_secs_f64(self.bytes as f64 / rate);
            tokio::time::sleep_until(due).await;
        }
    }
}

/// Logs a stream's progress in a form an operator can follow.
pub(crate) fn report(what: &str, done: usize, total: usize, streamed: Streamed, since: Instant) {
    let secs = since.elapsed().as_secs_f64().max(1e-3);
    info!(
        ranges = format!("{done}/{total}"),
        rows = streamed.rows,
        mib = format!("{:.2}", streamed.bytes as f64 / (1 << 20) as f64),
        rows_per_sec = format!("{:.0}", streamed.rows as f64 / secs),
        mib_per_sec = format!("{:.2}", streamed.bytes as f64 / (1 << 20) as f64 / secs),
        "{what}"
    );
}

#[cfg(test)]
mod tests {
    use ringdb_proto::{ClusteringKey, PartitionKey, TableId};

    use super::*;
    use crate::storage::{StorageConfig, StoredRow, encode_row};

    /// A streamed key carries its token in front; a peer's key whose token
    /// is not its partition's would be stored where no read looks.
    #[test]
    fn a_streamed_key_with_a_foreign_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), &StorageConfig::default()).unwrap();
        let partition = PartitionKey::new(b"x".to_vec()).unwrap();
        let honest = RowKey::new(TableId(1), partition, ClusteringKey::empty());
        let forged = RowKey {
            token: Token(honest.token.0.wrapping_add(1)),
            ..honest.clone()
        };
        let versions = VersionedRow(encode_row(&StoredRow::new()));
        let row = |key: &RowKey| StreamedRow {
            key: key.encode(),
            versions: versions.clone(),
        };
        assert!(store(&storage, &[row(&honest)], None).is_ok());
        let error = store(&storage, &[row(&forged)], None).unwrap_err();
        assert!(error.to_string().contains("not its partition's"), "{error}");
        assert!(storage.get(&forged).unwrap().is_none());
    }
}
