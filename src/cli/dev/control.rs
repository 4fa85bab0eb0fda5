//! `ringdb dev status|start|stop|kill|pause|resume|logs`: one node of a dev
//! cluster at a time, as ccm does it. Each works on the cluster's folder
//! (the pid file beside each node.toml), so it works whether a foreground
//! `ringdb dev` or `--detach` started the cluster.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ringdb::node::{Config, RETIRED_FILE};
use tokio::time::Instant;

use super::{
    BadInput, Processes, STOP_TIMEOUT, alive, existing_configs, name_of as name, running_pid,
};

/// What to do to one node.
#[derive(clap::Subcommand)]
pub enum Action {
    /// Show each node's state (running, paused, stopped, left), pid,
    /// client address, metrics URL and log.
    Status,
    /// Start a stopped node and wait until it serves.
    Start {
        /// The node (`node2`, or `2`).
        node: String,
    },
    /// Stop a node cleanly (SIGTERM; SIGKILL if it has not stopped after
    /// 10 s).
    Stop {
        /// The node (`node2`, or `2`).
        node: String,
    },
    /// Kill a node at once (SIGKILL, as `kill -9`): a crash.
    Kill {
        /// The node (`node2`, or `2`).
        node: String,
    },
    /// Freeze a node (SIGSTOP): its peers find it silent, as in a long
    /// garbage-collection pause, until it is resumed.
    Pause {
        /// The node (`node2`, or `2`).
        node: String,
    },
    /// Let a paused node run again (SIGCONT).
    Resume {
        /// The node (`node2`, or `2`).
        node: String,
    },
    /// Print a node's log (every life of it: a start appends).
    Logs {
        /// The node (`node2`, or `2`).
        node: String,
        /// Keep printing what the node adds, until Ctrl-C.
        #[arg(long, short)]
        follow: bool,
    },
}

/// Runs `action` on the cluster in `dir`.
pub async fn run(dir: &Path, action: Action) -> anyhow::Result<ExitCode> {
    match action {
        Action::Status => status(dir)?,
        Action::Start { node } => start(dir, &config_of(dir, &node)?).await?,
        Action::Stop { node } => {
            let path = config_of(dir, &node)?;
            let pid = running(&path)?;
            terminate(&path, pid).await;
            out!("{} stopped", name(&path));
        }
        Action::Kill { node } => {
            let path = config_of(dir, &node)?;
            let pid = running(&path)?;
            // It may have exited since: nothing to kill then.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            wait_gone(pid, STOP_TIMEOUT).await;
            let _ = std::fs::remove_file(pid_file(&path));
            out!("{} killed", name(&path));
        }
        Action::Pause { node } => signal(&config_of(dir, &node)?, Signal::SIGSTOP, "paused")?,
        Action::Resume { node } => signal(&config_of(dir, &node)?, Signal::SIGCONT, "resumed")?,
        Action::Logs { node, follow } => logs(&config_of(dir, &node)?, follow).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The node.toml of `node` (`node2` or `2`) in `dir`.
fn config_of(dir: &Path, node: &str) -> Result<PathBuf, BadInput> {
    let name = if node.chars().all(|c| c.is_ascii_digit()) {
        format!("node{node}")
    } else {
        node.to_string()
    };
    let path = dir.join(&name).join("node.toml");
    if !name.starts_with("node") || !path.exists() {
        let count = existing_configs(dir).ok().flatten().map_or(0, |c| c.len());
        return Err(BadInput(format!(
            "no node {node} in {} (it has node1 to node{count})",
            dir.display()
        )));
    }
    Ok(path)
}

fn pid_file(config: &Path) -> PathBuf {
    config.with_file_name("pid")
}

/// The pid of the node, which must be running.
fn running(config: &Path) -> Result<i32, BadInput> {
    running_pid(config).ok_or_else(|| BadInput(format!("{} is not running", name(config))))
}

/// Whether `pid` is stopped by a signal (paused).
fn paused(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(") ").next().and_then(|s| s.split(' ').next()) == Some("T"))
}

fn status(dir: &Path) -> anyhow::Result<()> {
    let configs = existing_configs(dir)?.unwrap_or_default();
    out!(
        "{:<8} {:<8} {:>8}  {:<22} {:<38} log",
        "node",
        "state",
        "pid",
        "client",
        "metrics"
    );
    for path in configs {
        let config = Config::load(&path)?;
        let pid = running_pid(&path);
        let state = match pid {
            Some(pid) if paused(pid) => "paused",
            Some(_) => "running",
            None if config.data_dir.join(RETIRED_FILE).exists() => "left",
            None => "stopped",
        };
        let metrics = config
            .listen_metrics
            .map_or("-".into(), |address| format!("http://{address}/metrics"));
        out!(
            "{:<8} {state:<8} {:>8}  {:<22} {metrics:<38} {}",
            name(&path),
            pid.map_or("-".into(), |pid| pid.to_string()),
            config.listen_client.to_string(),
            path.with_file_name("node.log").display()
        );
    }
    Ok(())
}

async fn start(dir: &Path, path: &Path) -> anyhow::Result<()> {
    if let Some(pid) = running_pid(path) {
        return Err(BadInput(format!("{} is already running (pid {pid})", name(path))).into());
    }
    let config = Config::load(path)?;
    if config.data_dir.join(RETIRED_FILE).exists() {
        return Err(BadInput(format!(
            "{} left the cluster for good; it does not start again",
            name(path)
        ))
        .into());
    }
    // Ready when it and one running node see each other.
    let mut pair = vec![config.clone()];
    for other in existing_configs(dir)?.unwrap_or_default() {
        if other != path && running_pid(&other).is_some() {
            pair.push(Config::load(&other)?);
            break;
        }
    }
    let exe = std::env::current_exe()?;
    let mut nodes = Processes::default();
    nodes.spawn(&exe, path)?;
    super::wait_ready(dir, &pair, &mut nodes).await?;
    let (_, pid) = nodes.pids[0];
    out!(
        "{} serving: client {}  pid {pid}",
        name(path),
        config.listen_client
    );
    Ok(())
}

/// SIGTERM, SIGKILL if it has not stopped after [`STOP_TIMEOUT`]; the
/// pid file goes.
pub(super) async fn terminate(config: &Path, pid: i32) {
    // It may have exited since: nothing to stop then. A paused node
    // must run to stop.
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    if !wait_gone(pid, STOP_TIMEOUT).await {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        wait_gone(pid, STOP_TIMEOUT).await;
    }
    let _ = std::fs::remove_file(pid_file(config));
}

/// Whether `pid` ended within `within`.
async fn wait_gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

fn signal(config: &Path, signal: Signal, done: &str) -> anyhow::Result<()> {
    let pid = running(config)?;
    kill(Pid::from_raw(pid), signal)?;
    out!("{} {done}", name(config));
    Ok(())
}

async fn logs(config: &Path, follow: bool) -> anyhow::Result<()> {
    let path = config.with_file_name("node.log");
    let mut file = std::fs::File::open(&path)
        .map_err(|e| BadInput(format!("cannot read {}: {e}", path.display())))?;
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        file.read_to_end(&mut buffer)?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&buffer)?;
        stdout.flush()?;
        drop(stdout);
        if !follow {
            return Ok(());
        }
        // A log emptied by hand starts again from its beginning.
        let position = file.stream_position()?;
        if std::fs::metadata(&path).is_ok_and(|m| m.len() < position) {
            file.rewind()?;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
