//! `ringdb restore`: puts a node's data directory back from one of its
//! snapshots (`ringdb snapshot`), with the node stopped.
//!
//! The snapshot is copied into `DATA.restoring` (SST files hard-linked,
//! which RocksDB never changes; the log and manifest copied, as RocksDB
//! appends to them), the copy records that the node owes a restore over
//! the whole ring, and only then does it take the data directory's place;
//! the data it replaces is kept as `DATA.before-restore-STAMP`, never
//! deleted. At its next start the node refuses to answer for any row
//! until a repair against the other replicas has compared every range
//! (see `ringdb_node::storage::snapshots_folder`'s module), so the writes
//! made since the snapshot are back before it serves.
//!
//! Refused: while the node runs (its RocksDB lock is held), for a snapshot
//! that does not exist, and for one older than the tombstone grace
//! (`tombstone_grace_secs`) unless `--force`: the other replicas may have
//! purged deletions of rows such a snapshot still holds, and the repair
//! would bring those rows back.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ringdb::node::Config;
use ringdb::node::storage::{Storage, snapshots_folder};
use ringdb::proto::check_snapshot_tag;

use super::BadInput;

/// `ringdb restore`'s options.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The node's config file (its data_dir is restored).
    #[arg(long)]
    pub config: PathBuf,
    /// The snapshot to put back (`ringdb listsnapshots` lists them).
    #[arg(long, short = 't')]
    pub tag: String,
    /// Restore a snapshot older than the tombstone grace all the same.
    #[arg(long)]
    pub force: bool,
}

/// Restores the snapshot, or says why not.
pub fn run(args: &RestoreArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    check_snapshot_tag(&args.tag).map_err(BadInput)?;
    let data = absolute(&config.data_dir)?;
    let snapshot = snapshots_folder(&data).join(&args.tag);
    if !snapshot.join("CURRENT").is_file() {
        return Err(BadInput(format!(
            "no snapshot {} of {} (looked in {}): `ringdb listsnapshots` lists them",
            args.tag,
            config.node_id,
            snapshot.display()
        ))
        .into());
    }
    if let Some(pid) = locked_by(&data.join("LOCK"))? {
        return Err(BadInput(format!(
            "{} is running (process {pid} holds {}): stop it first",
            config.node_id,
            data.display()
        ))
        .into());
    }
    let taken = std::fs::metadata(&snapshot)?.modified()?;
    let age = SystemTime::now().duration_since(taken).unwrap_or_default();
    let grace = Duration::from_secs(config.antientropy.tombstone_grace_secs);
    if age > grace && !args.force {
        return Err(BadInput(format!(
            "snapshot {} was taken {} ago, longer than the tombstone grace ({}): the other \
             replicas may have purged deletions of rows it still holds, and the repair after the \
             restore would bring those rows back. --force restores it all the same",
            args.tag,
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            humantime::format_duration(grace)
        ))
        .into());
    }
    let staged = sibling(&data, ".restoring");
    if staged.exists() {
        std::fs::remove_dir_all(&staged)
            .with_context(|| format!("cannot remove {}", staged.display()))?;
    }
    let (linked, copied) = copy_snapshot(&snapshot, &staged)?;
    let when = humantime::format_rfc3339_seconds(taken);
    let storage = Storage::open(&staged, &config.storage)
        .with_context(|| format!("the snapshot in {} does not open", staged.display()))?;
    let now_micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64);
    let detail = format!("restored from snapshot {} (taken {when})", args.tag);
    storage.owe_restore(detail, now_micros)?;
    drop(storage);
    let kept = swap_in(&data, &staged)?;
    out!(
        "restored {} from snapshot {} (taken {when}): {linked} files linked, {copied} copied",
        config.node_id,
        args.tag
    );
    if let Some(kept) = kept {
        out!("the data it replaced is kept in {}", kept.display());
    }
    out!(
        "start the node: it repairs every range against the other replicas before it answers \
         for any row (`ringdb status` notes it until done)"
    );
    Ok(())
}

/// `path` made absolute (against the working directory).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(path)?)
}

/// `DATA` + `suffix`, beside `DATA`.
fn sibling(data: &Path, suffix: &str) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    data.with_file_name(name)
}

/// The process holding RocksDB's lock on `lock_file` (a POSIX record
/// lock), if one does.
fn locked_by(lock_file: &Path) -> anyhow::Result<Option<i32>> {
    use nix::fcntl::{FcntlArg, fcntl};
    use nix::libc;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(lock_file)
    {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).context(format!("cannot open {}", lock_file.display())),
    };
    let mut probe = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    fcntl(&file, FcntlArg::F_GETLK(&mut probe))
        .with_context(|| format!("cannot probe the lock on {}", lock_file.display()))?;
    Ok((probe.l_type != libc::F_UNLCK as libc::c_short).then_some(probe.l_pid))
}

/// Copies the checkpoint `from` into a new folder `into`: SST files
/// hard-linked (copied across filesystems), the rest copied; every file
/// synced. Returns how many were linked and copied.
fn copy_snapshot(from: &Path, into: &Path) -> anyhow::Result<(usize, usize)> {
    std::fs::create_dir_all(into).with_context(|| format!("cannot create {}", into.display()))?;
    let (mut linked, mut copied) = (0, 0);
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), into.join(entry.file_name()));
        if !entry.file_type()?.is_file() {
            continue;
        }
        let is_sst = source.extension().is_some_and(|ext| ext == "sst");
        if is_sst && std::fs::hard_link(&source, &target).is_ok() {
            linked += 1;
            continue;
        }
        std::fs::copy(&source, &target)
            .with_context(|| format!("cannot copy {}", source.display()))?;
        std::fs::File::open(&target)?.sync_all()?;
        copied += 1;
    }
    std::fs::File::open(into)?.sync_all()?;
    Ok((linked, copied))
}

/// Puts `staged` in the place of `data`, keeping what was there as
/// `DATA.before-restore-STAMP` (returned).
fn swap_in(data: &Path, staged: &Path) -> anyhow::Result<Option<PathBuf>> {
    let kept = if data.exists() {
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .replace(':', "");
        let kept = sibling(data, &format!(".before-restore-{stamp}"));
        std::fs::rename(data, &kept)
            .with_context(|| format!("cannot move {} aside", data.display()))?;
        Some(kept)
    } else {
        None
    };
    std::fs::rename(staged, data)
        .with_context(|| format!("cannot move {} into place", staged.display()))?;
    if let Some(parent) = data.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(kept)
}
