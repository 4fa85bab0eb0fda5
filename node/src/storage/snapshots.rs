//! Snapshots of a data directory (`nodetool snapshot`: RocksDB
//! checkpoints kept beside it, in `DATA.snapshots/TAG`) and putting one
//! back (`ringdb restore`, with the node stopped).
//!
//! A restored directory is behind the other replicas: every write since
//! the snapshot is missing. So the restore records, as a salvage does,
//! that the node owes a restore over the whole ring ([`DamageRecord`]):
//! at its next start it refuses to answer for any row until a repair
//! against the other replicas has compared every range it replicates, and
//! `ringdb status` notes it meanwhile. Nothing stale is served.

use std::path::{Path, PathBuf};

use ringdb_ring::Token;

use super::salvage::{self, DamageRecord};
use super::{Storage, StorageError};

/// Where the snapshots of the data directory `data` are kept: beside it,
/// as `DATA.snapshots` (a salvage replaces the data directory whole).
pub fn snapshots_folder(data: &Path) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_os_string();
    name.push(".snapshots");
    data.with_file_name(name)
}

impl Storage {
    /// Records that this data directory was put back from an older copy
    /// (`detail` says which): every row is refused until a repair against
    /// the other replicas has compared every range, which the node runs
    /// at its next start (see the module's essay).
    pub fn owe_restore(&self, detail: String, now_micros: i64) -> Result<(), StorageError> {
        let record = DamageRecord {
            salvaged_micros: now_micros,
            detail,
            quarantined: Vec::new(),
            spans: vec![(Token::MIN, Token::MAX)],
            restored: false,
        };
        let bytes = rmp_serde::to_vec_named(&record).expect("a damage record encodes");
        self.put_meta(salvage::DAMAGE_KEY, &bytes)?;
        *self.restoring.write().expect("restoring") = record.spans;
        Ok(())
    }
}
