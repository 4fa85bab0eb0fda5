//! Hints in their column family: target node ‖ sequence → a hinted
//! mutation ([`HintRecord`](ringdb_antientropy::hints::HintRecord)'s bytes).

use std::sync::atomic::Ordering;

use super::{Batch, Family, Storage, StorageError};
use ringdb_antientropy::hints::HintStore;
use ringdb_ring::NodeId;

impl Storage {
    /// Stores a hint for `target`; returns its sequence number.
    pub fn put_hint(&self, target: &NodeId, mutation: &[u8]) -> Result<u64, StorageError> {
        let sequence = self.next_hint.fetch_add(1, Ordering::Relaxed);
        let mut batch = Batch::default();
        batch.put(Family::Hints, hint_key(target, Some(sequence)), mutation);
        self.commit(batch)?;
        Ok(sequence)
    }

    /// The hints stored for `target`, oldest first.
    pub fn hints(&self, target: &NodeId) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        self.hints_after(target, None, usize::MAX)
    }

    /// Deletes a delivered hint; returns whether it was there.
    pub fn delete_hint(&self, target: &NodeId, sequence: u64) -> Result<bool, StorageError> {
        let key = hint_key(target, Some(sequence));
        if self.engine.get(Family::Hints, &key)?.is_none() {
            return Ok(false);
        }
        let mut batch = Batch::default();
        batch.delete(Family::Hints, key);
        self.commit(batch)?;
        Ok(true)
    }

    /// Up to `limit` hints for `target` after sequence `after`, oldest first.
    pub fn hints_after(
        &self,
        target: &NodeId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let prefix = hint_key(target, None);
        let start = match after {
            Some(after) => hint_key(target, Some(after.saturating_add(1))),
            None => prefix.clone(),
        };
        let mut hints = Vec::new();
        for item in self.engine.scan(Family::Hints, &start, None) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) || hints.len() >= limit {
                break;
            }
            hints.push((hint_sequence(&key)?, value));
        }
        Ok(hints)
    }

    /// Every target with hints and the bytes of its hints.
    pub fn hint_targets(&self) -> Result<Vec<(NodeId, u64)>, StorageError> {
        let mut targets: Vec<(NodeId, u64)> = Vec::new();
        for item in self.engine.scan(Family::Hints, &[], None) {
            let (key, value) = item?;
            let target = hint_target(&key)?;
            match targets.last_mut() {
                Some((last, bytes)) if *last == target => *bytes += value.len() as u64,
                _ => targets.push((target, value.len() as u64)),
            }
        }
        Ok(targets)
    }

    pub(super) fn last_hint_sequence(&self) -> Result<u64, StorageError> {
        let mut last = 0;
        for item in self.engine.scan(Family::Hints, &[], None) {
            last = last.max(hint_sequence(&item?.0)?);
        }
        Ok(last)
    }
}

/// Hints in the storage engine, for the hint queue.
impl HintStore for Storage {
    type Error = StorageError;

    fn append(&self, target: &str, hint: &[u8]) -> Result<u64, StorageError> {
        self.put_hint(&NodeId::new(target), hint)
    }

    fn read(
        &self,
        target: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        self.hints_after(&NodeId::new(target), after, limit)
    }

    fn remove(&self, target: &str, sequence: u64) -> Result<bool, StorageError> {
        self.delete_hint(&NodeId::new(target), sequence)
    }

    fn targets(&self) -> Result<Vec<(String, u64)>, StorageError> {
        Ok(self
            .hint_targets()?
            .into_iter()
            .map(|(target, bytes)| (target.as_str().to_owned(), bytes))
            .collect())
    }
}

fn hint_key(target: &NodeId, sequence: Option<u64>) -> Vec<u8> {
    let name = target.as_str().as_bytes();
    let mut key = Vec::with_capacity(2 + name.len() + 8);
    key.extend_from_slice(&(name.len() as u16).to_be_bytes());
    key.extend_from_slice(name);
    if let Some(sequence) = sequence {
        key.extend_from_slice(&sequence.to_be_bytes());
    }
    key
}

fn hint_target(key: &[u8]) -> Result<NodeId, StorageError> {
    let corrupt = || StorageError::Corrupt {
        what: "hint key",
        detail: format!("{} bytes", key.len()),
    };
    let length = u16::from_be_bytes(key.get(..2).ok_or_else(corrupt)?.try_into().expect("two"));
    let name = key.get(2..2 + length as usize).ok_or_else(corrupt)?;
    Ok(NodeId::new(String::from_utf8_lossy(name)))
}

fn hint_sequence(key: &[u8]) -> Result<u64, StorageError> {
    let tail: Option<[u8; 8]> = key
        .len()
        .checked_sub(8)
        .and_then(|at| key[at..].try_into().ok());
    tail.map(u64::from_be_bytes)
        .ok_or_else(|| StorageError::Corrupt {
            what: "hint key",
            detail: format!("{} bytes", key.len()),
        })
}
