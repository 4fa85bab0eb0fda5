//! One `ringdb dev` at a time makes or changes a cluster's folder: two
//! runs on one new folder at once used to write their nodes' configs
//! (seeds and ports) over each other's.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context as _;

/// The lock's file in the cluster's folder.
const LOCK_FILE: &str = "dev.lock";

/// Held while a `ringdb dev` makes, starts or adds to the cluster in a
/// folder; released when dropped (or when the process dies: it is an
/// advisory lock on an open file, never left stale).
pub(super) struct FolderLock {
    _file: File,
}

impl FolderLock {
    /// Takes the lock of `dir` (which must exist), or says which process
    /// holds it.
    pub(super) fn take(dir: &Path) -> anyhow::Result<FolderLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let busy = |file: &mut File| {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            anyhow::anyhow!(
                "another `ringdb dev`{holder} is making or starting the cluster in {}; wait \
                 for it to finish",
                dir.display()
            )
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(busy(&mut file)),
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        // A run whose cluster could not be made removes its folder, lock
        // file and all: a lock taken on that file meanwhile guards nothing.
        let opened = file
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?;
        let still_there = std::fs::metadata(&path)
            .is_ok_and(|current| current.dev() == opened.dev() && current.ino() == opened.ino());
        if !still_there {
            return Err(busy(&mut file));
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        Ok(FolderLock { _file: file })
    }
}
