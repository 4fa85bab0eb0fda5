//! Where a data directory's snapshots are kept (`nodetool snapshot`:
//! RocksDB checkpoints beside it, in `DATA.snapshots/TAG`).

use std::path::{Path, PathBuf};

/// Where the snapshots of the data directory `data` are kept: beside it,
/// as `DATA.snapshots` (a salvage replaces the data directory whole).
pub fn snapshots_folder(data: &Path) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_os_string();
    name.push(".snapshots");
    data.with_file_name(name)
}
