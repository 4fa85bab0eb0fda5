//! Salvage of a data directory that holds damaged data.
//!
//! RocksDB checksums every block, so damage on disk (a flipped bit, a torn
//! sector) is found when the block is read, and nothing damaged is ever
//! served. But the damaged file stays in the LSM tree: every read and scan
//! that reaches the block fails again, and a compaction that takes the file
//! as input fails and stops the database's writes. RocksDB cannot drop one
//! file of level 0, and dropping a file would bring back older versions
//! its rows had superseded (a purged delete among them).
//!
//! So, as Cassandra's `scrub` rewrites an sstable without its unreadable
//! rows, a node that finds damage ([`Storage::note_damage`]) records the
//! request and stops; its next open copies everything readable into a new
//! directory and swaps it in ([`salvage`]). Where a read fails, the copy
//! skips to the first token past the damaged block (found by seeks that
//! double their step, then bisect) and records the token span skipped:
//! every row in it is dropped, from every file, so nothing older comes
//! back in its place. The span's rows are then restored from the
//! other replicas (the node's restore task repairs its ranges), and the
//! damaged files are kept aside in `quarantine/` next to the data
//! directory, for a post-mortem.
//!
//! The swap survives a crash at any point: the copy is complete once
//! `<data>.salvage.done` exists; [`finish_interrupted`] completes or undoes
//! a swap at the next open.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ringdb_ring::Token;
use rocksdb::{DB, ReadOptions, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::world::Clock;

use super::{DATA, DOTS, HINTS, META, PURGED, StorageError};

/// Metadata key: the [`DamageRecord`] of the last salvage.
pub(super) const DAMAGE_KEY: &str = "damage";

/// What a salvage found and dropped, and whether the dropped rows have been
/// restored from the other replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamageRecord {
    /// When the salvage ran, in microseconds since the Unix epoch.
    pub salvaged_micros: i64,
    /// What the storage found (RocksDB's message).
    pub detail: String,
    /// The damaged files, copied into `quarantine/`.
    pub quarantined: Vec<String>,
    /// Token spans (inclusive) whose rows were dropped.
    pub spans: Vec<(Token, Token)>,
    /// Whether the dropped rows have since been restored from replicas.
    pub restored: bool,
}

impl DamageRecord {
    /// One line for `ringdb status`.
    pub fn summary(&self) -> String {
        let files = if self.quarantined.is_empty() {
            String::new()
        } else {
            format!(" ({} quarantined)", self.quarantined.join(", "))
        };
        let what = format!(
            "{}{files}; {} token span(s) dropped",
            self.detail,
            self.spans.len()
        );
        if self.restored {
            format!("{what}, restored from the other replicas")
        } else {
            format!("{what}, being restored from the other replicas")
        }
    }
}

/// Records, beside the data directory (the database may refuse writes once
/// a compaction met the damage), that the next open must salvage it.
pub(super) fn request(path: &Path, found: &str) -> Result<(), StorageError> {
    let marker = request_marker(path);
    let mut file = std::fs::File::create(&marker).map_err(io)?;
    std::io::Write::write_all(&mut file, found.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    sync_parent(path)
}

/// What was found, when a salvage was requested.
pub(super) fn requested(path: &Path) -> Result<Option<String>, StorageError> {
    match std::fs::read(request_marker(path)) {
        Ok(found) => Ok(Some(String::from_utf8_lossy(&found).into_owned())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io(error)),
    }
}

fn request_marker(path: &Path) -> PathBuf {
    sibling(path, "salvage-requested")
}

/// Where the copy is made.
fn copy_path(path: &Path) -> PathBuf {
    sibling(path, "salvage")
}

/// Exists once the copy is complete and may replace the data directory.
fn done_marker(path: &Path) -> PathBuf {
    sibling(path, "salvage.done")
}

/// Where the damaged directory is moved during the swap.
fn damaged_path(path: &Path) -> PathBuf {
    sibling(path, "damaged")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// Completes a swap that a crash interrupted after the copy was complete,
/// or throws away a copy that was not.
pub(super) fn finish_interrupted(path: &Path) -> Result<(), StorageError> {
    let (copy, done, damaged) = (copy_path(path), done_marker(path), damaged_path(path));
    if done.exists() {
        if copy.exists() {
            if path.exists() {
                std::fs::rename(path, &damaged).map_err(io)?;
            }
            std::fs::rename(&copy, path).map_err(io)?;
            sync_parent(path)?;
        }
        if damaged.exists() && path.exists() {
            std::fs::remove_dir_all(&damaged).map_err(io)?;
        }
        std::fs::remove_file(&done).map_err(io)?;
        // The request is served.
        match std::fs::remove_file(request_marker(path)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(io(error)),
            _ => {}
        }
        sync_parent(path)?;
    } else {
        if copy.exists() {
            warn!(copy = %copy.display(), "throwing away an unfinished salvage copy");
            std::fs::remove_dir_all(&copy).map_err(io)?;
        }
        if damaged.exists() && !path.exists() {
            std::fs::rename(&damaged, path).map_err(io)?;
            sync_parent(path)?;
        }
    }
    Ok(())
}

/// Copies every readable row, hint and metadata value of the database in
/// `path` into a new one, drops what cannot be read, records it in a
/// [`DamageRecord`] and swaps the copy in. The database must be closed.
pub(super) fn salvage(
    path: &Path,
    options: &rocksdb::Options,
    found: &str,
) -> Result<DamageRecord, StorageError> {
    error!(data = %path.display(), %found, "salvaging a data directory with damaged data");
    let copy = copy_path(path);
    if copy.exists() {
        std::fs::remove_dir_all(&copy).map_err(io)?;
    }
    let families = [DATA, HINTS, META, DOTS, PURGED];
    let old = DB::open_cf(options, path, families)?;
    let new = DB::open_cf(options, &copy, families)?;
    let mut files = BTreeSet::new();
    let mut record = DamageRecord {
        salvaged_micros: crate::world::SystemClock.now_micros(),
        detail: found.to_owned(),
        quarantined: Vec::new(),
        spans: Vec::new(),
        restored: false,
    };
    copy_families(&old, &new, &mut files, &mut record)?;
    // The floors in `dots` belong to a past life: not copied (see `open_metadata`).
    let meta = new.cf_handle(META).expect("created");
    let mut batch = WriteBatch::default();
    // A restore still owed from an earlier salvage is owed still.
    if let Some(bytes) = old.get_cf(old.cf_handle(META).expect("opened"), DAMAGE_KEY)?
        && let Ok(earlier) = rmp_serde::from_slice::<DamageRecord>(&bytes)
        && !earlier.restored
    {
        record.spans.extend(earlier.spans);
    }
    record.quarantined = files.into_iter().collect();
    let encoded = rmp_serde::to_vec_named(&record).expect("a damage record encodes");
    batch.put_cf(meta, DAMAGE_KEY, encoded);
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    new.write_opt(batch, &sync)?;
    for family in families {
        new.flush_cf(new.cf_handle(family).expect("created"))?;
    }
    drop(new);
    drop(old);
    swap_in(path, &record)?;
    info!(
        spans = record.spans.len(),
        quarantined = ?record.quarantined,
        "salvage done: the dropped rows are restored from the other replicas"
    );
    Ok(record)
}

/// Copies the rows, hints, metadata and purged histories of `old` into
/// `new`, noting the damaged files in `files` and the rows' damaged spans
/// in `record`.
fn copy_families(
    old: &DB,
    new: &DB,
    files: &mut BTreeSet<String>,
    record: &mut DamageRecord,
) -> Result<(), StorageError> {
    // Rows: skip past damage.
    let mut copier = Copier::new(old, new, DATA);
    copier.run(files, record)?;
    // Hints: on damage, the rest are dropped (repair restores what they held).
    let mut copier = Copier::new(old, new, HINTS);
    if let Err(error) = copier.copy_until_damage() {
        warn!(%error, "hints after damaged data were dropped; run `ringdb repair`");
        files.extend(file_names(&error));
    }
    // Metadata: every value must be read (tokens, generation, format).
    let mut copier = Copier::new(old, new, META);
    copier
        .copy_until_damage()
        .map_err(|error| StorageError::Damaged {
            detail: format!(
                "the node's metadata is damaged ({error}): it cannot be salvaged; \
             restore the data directory from a backup, or start the node empty"
            ),
        })?;
    // Purged histories: on damage, the rest are dropped (a write naming
    // what they held is then refused as unreachable, never applied blind).
    let mut copier = Copier::new(old, new, PURGED);
    if let Err(error) = copier.copy_until_damage() {
        warn!(%error, "purged row histories after damaged data were dropped");
        files.extend(file_names(&error));
    }
    Ok(())
}

/// Quarantines the damaged files and swaps the complete copy in.
fn swap_in(path: &Path, record: &DamageRecord) -> Result<(), StorageError> {
    quarantine(path, &record.quarantined)?;
    // Left by an earlier swap that never finished: in the way of this one.
    let damaged = damaged_path(path);
    if damaged.exists() {
        std::fs::remove_dir_all(&damaged).map_err(io)?;
    }
    // The copy is complete: from here a crash completes the swap.
    std::fs::write(done_marker(path), b"").map_err(io)?;
    sync_parent(path)?;
    finish_interrupted(path)?;
    Ok(())
}

/// Copies damaged files into `quarantine/` next to the data directory.
fn quarantine(path: &Path, names: &[String]) -> Result<(), StorageError> {
    if names.is_empty() {
        return Ok(());
    }
    let folder = path.with_file_name("quarantine");
    std::fs::create_dir_all(&folder).map_err(io)?;
    let stamp = crate::world::SystemClock.now_micros();
    for name in names {
        let from = path.join(name);
        let to = folder.join(format!("{stamp}-{name}"));
        match std::fs::copy(&from, &to) {
            Ok(_) => info!(file = %to.display(), "damaged file kept for a post-mortem"),
            Err(error) => warn!(file = %from.display(), %error, "cannot keep the damaged file"),
        }
    }
    Ok(())
}

/// Copies one column family from one database to another.
struct Copier<'a> {
    old: &'a DB,
    new: &'a DB,
    family: &'static str,
    batch: WriteBatch,
}

impl<'a> Copier<'a> {
    fn new(old: &'a DB, new: &'a DB, family: &'static str) -> Copier<'a> {
        Copier {
            old,
            new,
            family,
            batch: WriteBatch::default(),
        }
    }

    fn iterator(&self) -> rocksdb::DBRawIterator<'a> {
        let mut read = ReadOptions::default();
        read.fill_cache(false);
        read.set_verify_checksums(true);
        self.old
            .raw_iterator_cf_opt(self.old.cf_handle(self.family).expect("opened"), read)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let to = self.new.cf_handle(self.family).expect("created");
        self.batch.put_cf(to, key, value);
        if self.batch.len() >= 1024 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        let mut options = WriteOptions::default();
        // The copy is flushed before it is used; a crash throws it away.
        options.disable_wal(true);
        self.new
            .write_opt(std::mem::take(&mut self.batch), &options)?;
        Ok(())
    }

    /// Copies until the end or the first damage (the error).
    fn copy_until_damage(&mut self) -> Result<(), StorageError> {
        let mut iterator = self.iterator();
        iterator.seek_to_first();
        while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
            let (key, value) = (key.to_vec(), value.to_vec());
            self.put(&key, &value)?;
            iterator.next();
        }
        iterator.status()?;
        self.flush()
    }

    /// Copies the rows, skipping past damage and dropping rows that do not
    /// decode; records the token spans skipped.
    fn run(
        &mut self,
        files: &mut BTreeSet<String>,
        record: &mut DamageRecord,
    ) -> Result<(), StorageError> {
        let mut iterator = self.iterator();
        iterator.seek_to_first();
        let mut last: Option<Token> = None;
        loop {
            if let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
                // Copied as they are: a row that passed its checksum is not
                // the disk's damage, even one this version cannot decode.
                let (key, value) = (key.to_vec(), value.to_vec());
                iterator.next();
                if let Some(token) = token_of(&key) {
                    last = Some(last.map_or(token, |last| last.max(token)));
                }
                self.put(&key, &value)?;
                continue;
            }
            let error = match iterator.status() {
                Ok(()) => break,
                Err(error) => StorageError::from(error),
            };
            warn!(%error, after = ?last, "damaged data: skipping past it");
            files.extend(file_names(&error));
            let from = last.unwrap_or(Token::MIN);
            let Some(good) = self.first_readable_after(from) else {
                record.spans.push((from, Token::MAX));
                break;
            };
            record.spans.push((from, Token((good - 1) as i64)));
            // Never back before the skip: every later search starts past it.
            last = Some(Token((good - 1) as i64));
            iterator = self.iterator();
            iterator.seek(Token(good as i64).to_ordered_bytes());
        }
        self.flush()
    }

    /// The first token past damage found after `from`: a seek there reads
    /// no damaged block (`None`: none up to the end). Found by doubling
    /// steps from `from`, then narrowed by bisection, so that little beyond
    /// the damaged block is dropped.
    fn first_readable_after(&self, from: Token) -> Option<i128> {
        let seekable = |target: i128| {
            let mut probe = self.iterator();
            probe.seek(Token(target as i64).to_ordered_bytes());
            probe.status().is_ok()
        };
        let max = i128::from(Token::MAX.0);
        let mut bad = i128::from(from.0);
        let mut step: i128 = 1;
        let mut good = None;
        while bad + step <= max {
            if seekable(bad + step) {
                good = Some(bad + step);
                break;
            }
            bad += step;
            step *= 2;
        }
        let mut good = good?;
        while good - bad > 1 {
            let middle = bad + (good - bad) / 2;
            if seekable(middle) {
                good = middle;
            } else {
                bad = middle;
            }
        }
        Some(good)
    }
}

/// The token a storage key starts with.
fn token_of(key: &[u8]) -> Option<Token> {
    let bytes: [u8; 8] = key.get(..8)?.try_into().ok()?;
    Some(Token::from_ordered_bytes(bytes))
}

/// The SST files an error names (`000012.sst`).
fn file_names(error: &StorageError) -> Vec<String> {
    let text = error.to_string();
    let mut names = Vec::new();
    for (at, _) in text.match_indices(".sst") {
        let digits = text[..at]
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .count();
        if digits > 0 {
            let name = &text[at - digits..at + 4];
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

fn io(error: std::io::Error) -> StorageError {
    StorageError::Salvage(error)
}

fn sync_parent(path: &Path) -> Result<(), StorageError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_found_in_rocksdb_messages() {
        let error = StorageError::Damaged {
            detail: "Corruption: block checksum mismatch: stored = 1, computed = 2, type = 4 \
                     in /tmp/x/node3/data/000012.sst offset 4096 size 3995"
                .into(),
        };
        assert_eq!(file_names(&error), ["000012.sst"]);
        let none = StorageError::Damaged {
            detail: "Corruption: bad block".into(),
        };
        assert!(file_names(&none).is_empty());
    }
}
