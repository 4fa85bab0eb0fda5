//! That a data directory's node left the cluster for good: it must not
//! serve that data again.

use super::{Storage, StorageError};

/// The key, in the storage's metadata, saying why the node left the
/// cluster for good (`decommissioned` or `removed`).
const RETIRED_KEY: &str = "retired";
/// The file in the data directory that says so too, for operators and
/// tools (`ringdb dev` skips such nodes).
pub const RETIRED_FILE: &str = "RETIRED";

impl Storage {
    /// Records that this data directory's node left the cluster for good
    /// (`why`: "decommissioned" or "removed"): it must not serve this data again.
    pub(crate) fn mark_retired(&self, why: &str) -> Result<(), StorageError> {
        self.put_meta(RETIRED_KEY, why.as_bytes())?;
        let note = format!(
            "This node was {why}: it left the ring and its data is stale.\n\
             To join again, start it with an empty data directory.\n"
        );
        let Some(path) = self.path() else {
            return Ok(());
        };
        std::fs::write(path.join(RETIRED_FILE), note).map_err(|e| StorageError::Corrupt {
            what: "retirement marker",
            detail: e.to_string(),
        })
    }

    /// Why this data directory's node left the cluster for good, if it did.
    pub(crate) fn retired(&self) -> Result<Option<String>, StorageError> {
        Ok(self
            .get_meta(RETIRED_KEY)?
            .map(|why| String::from_utf8_lossy(&why).into_owned()))
    }
}
