//! `ringdb dev`: a local cluster of real node processes in one folder.
//!
//! The first run makes the folder: a CA and a certificate per node, a
//! `node.toml` per node on free ports chosen by the OS, and `client.toml`
//! for the data commands. Later runs start the same nodes on the same ports,
//! with their data.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ringdb::client::{Client, ClientConfig};
use ringdb::node::Config;
use ringdb::node::RETIRED_FILE;
use ringdb::ring::NodeId;
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::data::{CLIENT_FILE, ClientFile};
use super::{BadInput, cert};
use create::{NewNode, free_ports, node_config, write_node};
use lock::FolderLock;

mod control;
mod create;
mod lock;

pub use create::Layout;

/// `ringdb dev`'s options.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DevArgs {
    /// Act on one node of the cluster instead of starting it.
    #[command(subcommand)]
    action: Option<control::Action>,
    /// Number of nodes of a new cluster (replication factor min(3, N)).
    #[arg(long, default_value_t = 3, value_parser = crate::at_least_one())]
    nodes: usize,
    /// Spread a new cluster's nodes over this many datacenters, dc1,
    /// dc2…, in blocks (6 nodes over 2: node1-3 in dc1, node4-6 in
    /// dc2), for NetworkTopologyStrategy keyspaces. With 1, every node
    /// is in datacenter1.
    #[arg(long, default_value_t = 1)]
    datacenters: usize,
    /// The cluster's folder.
    #[arg(long, default_value = "ringdb-dev", global = true)]
    dir: PathBuf,
    /// Start the nodes in the background and return.
    #[arg(long, conflicts_with = "stop")]
    detach: bool,
    /// Stop the nodes of a cluster started with --detach.
    #[arg(long, conflicts_with = "add")]
    stop: bool,
    /// Add a node to the running cluster (started with --detach): it
    /// joins by streaming its share of the data, then serves.
    #[arg(long, conflicts_with = "detach")]
    add: bool,
    /// A node setting for a new cluster's node.toml files (and a node
    /// added with --add), as `section.key=value` in TOML, e.g.
    /// `--set hints.enabled=false --set antientropy.interval_secs=30`.
    /// Repeat for more.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

/// Runs `ringdb dev`.
pub async fn command(args: DevArgs) -> anyhow::Result<ExitCode> {
    let DevArgs {
        action,
        nodes,
        datacenters,
        dir,
        detach,
        stop: stop_all,
        add: add_node,
        settings,
    } = args;
    if action.is_none() && !add_node && !stop_all {
        return run(&dir, Layout { nodes, datacenters }, detach, &settings).await;
    }
    let dir = dir
        .canonicalize()
        .map_err(|_| BadInput(format!("no ringdb dev cluster in {}", dir.display())))?;
    if existing_configs(&dir)?.is_none() {
        return Err(BadInput(format!("no ringdb dev cluster in {}", dir.display())).into());
    }
    match action {
        Some(action) => control::run(&dir, action).await,
        None if add_node => add(&dir, &settings).await,
        None => {
            stop(&dir).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How long the nodes have to start serving.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node added with `--add` has to join (it streams its data).
const JOIN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a node has to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts (making it first if needed) the cluster in `dir`.
async fn run(
    dir: &Path,
    layout: Layout,
    detach: bool,
    settings: &[String],
) -> anyhow::Result<ExitCode> {
    if existing_configs(dir)?.is_none() {
        // Refused before a folder is made.
        layout.check()?;
    }
    let made = create::make_folder(dir)?;
    // Held until the nodes serve: another run on this folder meanwhile is
    // refused (and removes nothing).
    let lock = FolderLock::take(dir)?;
    // Another run may have made the cluster before this one got the lock.
    let fresh = existing_configs(dir)?.is_none();
    if fresh && let Err(error) = create::create(dir, layout, settings) {
        if made {
            let _ = std::fs::remove_dir_all(dir);
        }
        return Err(error);
    }
    let dir = &dir
        .canonicalize()
        .with_context(|| format!("cannot open {}", dir.display()))?;
    let Some(configs) = existing_configs(dir)? else {
        bail!("no ringdb dev cluster in {}", dir.display());
    };
    if !fresh {
        if configs.len() != layout.nodes {
            say!(
                "{} holds a {}-node cluster; starting it as it is",
                dir.display(),
                configs.len()
            );
        }
        if !settings.is_empty() {
            say!(
                "--set applies to a new cluster; edit the node.toml files of {} instead",
                dir.display()
            );
        }
    }
    for path in &configs {
        if let Some(pid) = running_pid(path) {
            bail!(
                "the cluster in {} is already running (pid {pid}); stop it with `ringdb dev --stop --dir {}`",
                dir.display(),
                dir.display()
            );
        }
    }
    let exe = std::env::current_exe().context("cannot find the ringdb executable")?;
    let mut loaded: Vec<Config> = configs
        .iter()
        .map(|p| Config::load(p))
        .collect::<Result<_, _>>()?;
    // Decommissioned and removed nodes left the ring for good: not started
    // again.
    let mut configs = configs;
    let left: Vec<bool> = loaded
        .iter()
        .map(|c| c.data_dir.join(RETIRED_FILE).exists())
        .collect();
    for (config, _) in loaded.iter().zip(&left).filter(|(_, left)| **left) {
        say!(
            "{} left the cluster for good; not starting it",
            config.node_id
        );
    }
    let mut keep = left.iter().map(|left| !left);
    configs.retain(|_| keep.next().unwrap_or(true));
    let mut keep = left.iter().map(|left| !left);
    loaded.retain(|_| keep.next().unwrap_or(true));
    let mut nodes = Processes::default();
    let mut interrupt = Interrupt::new()?;
    let started = tokio::select! {
        started = start_all(dir, &exe, (&configs, &loaded), fresh, &mut nodes) => started,
        () = interrupt.recv() => Err(anyhow::anyhow!("interrupted while starting")),
    };
    if let Err(error) = started {
        nodes.stop().await;
        if error.to_string() == "interrupted while starting" {
            say!("interrupted while starting; the nodes started were stopped");
            return Ok(ExitCode::from(130));
        }
        return Err(error);
    }
    drop(lock);
    out!("ringdb dev cluster in {} is serving:", dir.display());
    for (config, (path, pid)) in loaded.iter().zip(&nodes.pids) {
        let metrics = config
            .listen_metrics
            .map(|address| format!("  metrics http://{address}/metrics"))
            .unwrap_or_default();
        out!(
            "  {:<8} client {}  pid {pid}  log {}{metrics}",
            config.node_id.as_str(),
            config.listen_client,
            path.parent().unwrap().join("node.log").display()
        );
    }
    // The data commands find the default folder by themselves.
    let default = std::env::current_dir().is_ok_and(|cwd| cwd.join("ringdb-dev") == *dir);
    let dev_dir = if default {
        String::new()
    } else {
        format!(" --dev-dir {}", dir.display())
    };
    out!("try:  ringdb put users alice Alice{dev_dir} && ringdb get users alice{dev_dir}");
    if detach {
        out!("stop: ringdb dev --stop --dir {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "Ctrl-C stops the cluster (its data stays in {}).",
        dir.display()
    );
    loop {
        let exited = tokio::select! {
            () = interrupt.recv() => break,
            exited = nodes.next_exit() => exited,
        };
        let Some((path, status)) = exited else {
            say!("every node has exited");
            break;
        };
        let id = name_of(&path);
        if retired_on_start(&path).is_some() {
            say!("{id} left the cluster for good and stopped; the others keep running");
        } else {
            say!(
                "{id} exited ({status}); the others keep running (`ringdb dev start {id} --dir {}` \
                 starts it again)",
                dir.display()
            );
        }
    }
    nodes.stop().await;
    // Nodes started again from another shell (`ringdb dev start`) too.
    stop_running(dir).await?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the nodes of `configs` (their configs `loaded`): one at a time
/// for a new cluster, all at once for one that exists; returns once they
/// serve.
async fn start_all(
    dir: &Path,
    exe: &Path,
    (configs, loaded): (&[PathBuf], &[Config]),
    fresh: bool,
    nodes: &mut Processes,
) -> anyhow::Result<()> {
    // A new cluster forms one node at a time: each learns the ring from the
    // seed (node1) and takes tokens that split its largest ranges, which
    // two nodes choosing at once could not do. A cluster that exists has
    // its tokens and starts all at once.
    if fresh {
        for i in 0..configs.len() {
            nodes.spawn(exe, &configs[i])?;
            wait_ready(dir, &loaded[..=i], nodes).await?;
        }
        return Ok(());
    }
    for path in configs {
        nodes.spawn(exe, path)?;
    }
    wait_ready(dir, loaded, nodes).await
}

/// Ctrl-C (SIGINT) or SIGTERM, whichever comes.
struct Interrupt {
    terminate: tokio::signal::unix::Signal,
}

impl Interrupt {
    fn new() -> anyhow::Result<Interrupt> {
        let kind = tokio::signal::unix::SignalKind::terminate();
        Ok(Interrupt {
            terminate: tokio::signal::unix::signal(kind)?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// The node a config belongs to (its folder's name).
fn name_of(config: &Path) -> String {
    let folder = config.parent().and_then(Path::file_name);
    folder.map_or_else(String::new, |f| f.to_string_lossy().into_owned())
}

/// Adds a node to the running cluster in `dir`: it joins by bootstrap
/// (streaming its ranges) and keeps running in the background.
async fn add(dir: &Path, settings: &[String]) -> anyhow::Result<ExitCode> {
    let _lock = FolderLock::take(dir)?;
    let Some(configs) = existing_configs(dir)? else {
        bail!("no ringdb dev cluster in {}", dir.display());
    };
    if !configs.iter().any(|path| running_pid(path).is_some()) {
        bail!(
            "the cluster in {} is not running; start it with `ringdb dev --detach --dir {}`",
            dir.display(),
            dir.display()
        );
    }
    let first = Config::load(&configs[0])?;
    let n = configs.len() + 1;
    let id = NodeId::new(format!("node{n}"));
    let ca = cert::load_or_create_ca(dir, "dev")?;
    let ports = free_ports(3)?;
    // The cluster has data: the new node streams its ranges before serving.
    let mut cluster = first.cluster.clone();
    cluster.auto_bootstrap = true;
    let node = NewNode {
        id: &id,
        addresses: (ports[0], ports[1], ports[2]),
        cluster,
        datacenter: None,
    };
    let path = write_node(dir, &ca, &node_config(node, settings)?)?;
    let folder = dir.join(id.as_str());

    let exe = std::env::current_exe().context("cannot find the ringdb executable")?;
    let mut nodes = Processes::default();
    nodes.spawn(&exe, &path)?;
    let added = Config::load(&path)?;
    // Bootstrap streams the node's share of the data: give it time. Ready
    // when the new node and the seed see each other in the ring (nodes
    // that left are no longer in it).
    let pair = [first.clone(), added.clone()];
    wait_ready_within(dir, &pair, &mut nodes, JOIN_TIMEOUT).await?;

    let file = dir.join(CLIENT_FILE);
    let mut client: ClientFile = toml::from_str(&std::fs::read_to_string(&file)?)?;
    client.contact_points.push(added.listen_client.to_string());
    std::fs::write(&file, toml::to_string_pretty(&client)?)?;
    let (_, pid) = &nodes.pids[0];
    out!(
        "{id} joined: client {}  pid {pid}  log {}",
        added.listen_client,
        folder.join("node.log").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Stops the cluster in `dir` started with `--detach`.
async fn stop(dir: &Path) -> anyhow::Result<()> {
    let stopped = stop_running(dir).await?;
    out!("stopped {stopped} node(s) of {}", dir.display());
    Ok(())
}

/// Stops every node of `dir` whose pid file names a running node; how many.
async fn stop_running(dir: &Path) -> anyhow::Result<usize> {
    let configs = existing_configs(dir)?.unwrap_or_default();
    let running: Vec<(PathBuf, i32)> = configs
        .into_iter()
        .filter_map(|path| running_pid(&path).map(|pid| (path, pid)))
        .collect();
    for (_, pid) in &running {
        // It may have exited since: nothing to stop then. A paused node
        // must run to stop.
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        let _ = kill(Pid::from_raw(*pid), Signal::SIGCONT);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while running.iter().any(|(_, pid)| alive(*pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (path, pid) in &running {
        if alive(*pid) {
            say!(
                "{} did not stop in {STOP_TIMEOUT:?}; killing it",
                name_of(path)
            );
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        let _ = std::fs::remove_file(path.with_file_name("pid"));
    }
    Ok(running.len())
}

fn existing_configs(dir: &Path) -> anyhow::Result<Option<Vec<PathBuf>>> {
    let first = dir.join("node1").join("node.toml");
    if !first.exists() {
        return Ok(None);
    }
    let mut configs = Vec::new();
    for n in 1.. {
        let path = dir.join(format!("node{n}")).join("node.toml");
        if !path.exists() {
            break;
        }
        configs.push(path);
    }
    Ok(Some(configs))
}

/// Waits until every node answers and reaches every other node.
async fn wait_ready(dir: &Path, configs: &[Config], nodes: &mut Processes) -> anyhow::Result<()> {
    wait_ready_within(dir, configs, nodes, READY_TIMEOUT).await
}

async fn wait_ready_within(
    dir: &Path,
    configs: &[Config],
    nodes: &mut Processes,
    within: Duration,
) -> anyhow::Result<()> {
    let ca = std::fs::read_to_string(dir.join("ca.pem"))?;
    let mut ids: Vec<NodeId> = configs.iter().map(|c| c.node_id.clone()).collect();
    let deadline = Instant::now() + within;
    for config in configs {
        loop {
            if !ids.contains(&config.node_id) {
                break;
            }
            if let Some((path, status)) = nodes.try_exited() {
                if let Some(id) = retired_on_start(&path) {
                    // Removed while it was down: it heard so and stopped.
                    say!("{id} was removed from the cluster while it was down; it stopped");
                    ids.retain(|other| *other != id);
                    continue;
                }
                let log = path.parent().unwrap().join("node.log");
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                bail!(
                    "the node of {} exited ({status}) while starting; its log {}:\n{}",
                    path.display(),
                    log.display(),
                    lines[lines.len().saturating_sub(10)..].join("\n")
                );
            }
            if node_sees(config.listen_client, &ca, &ids).await {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} did not reach every other node within {within:?}",
                    config.node_id.as_str()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The node of the config at `path`, if it stopped because it left the
/// cluster for good (it was removed while it was down, and heard so).
fn retired_on_start(path: &Path) -> Option<NodeId> {
    let config = Config::load(path).ok()?;
    config
        .data_dir
        .join(RETIRED_FILE)
        .exists()
        .then_some(config.node_id)
}

/// Whether the node at `address` has every node of `ids` in its ring, up.
async fn node_sees(address: SocketAddr, ca: &str, ids: &[NodeId]) -> bool {
    let mut config = ClientConfig::new(vec![address], ca.to_string());
    config.token_aware = false;
    config.connect_timeout = Duration::from_millis(500);
    let Ok(client) = Client::connect(config).await else {
        return false;
    };
    match client.refresh_topology().await {
        Ok(nodes) => ids
            .iter()
            .all(|id| nodes.iter().any(|n| &n.id == id && n.reachable)),
        Err(_) => false,
    }
}

/// The node processes this command started: their pids, and a task per
/// process waiting for its exit.
#[derive(Default)]
struct Processes {
    pids: Vec<(PathBuf, u32)>,
    exits: JoinSet<(PathBuf, String)>,
}

impl Processes {
    /// Starts `ringdb start --config CONFIG` in the background, logging to
    /// node.log beside the config, and records its pid.
    fn spawn(&mut self, exe: &Path, config: &Path) -> anyhow::Result<()> {
        let folder = config.parent().expect("a node config is in a folder");
        // Appended to: a crashed life's log is kept for its successor.
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(folder.join("node.log"))?;
        writeln!(
            log,
            "--- ringdb dev starts this node, {} ---",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        )?;
        let child = Command::new(exe)
            .arg("start")
            .arg("--config")
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let pid = child.id().expect("a running child has a pid");
        std::fs::write(folder.join("pid"), pid.to_string())?;
        self.add(config.to_path_buf(), child);
        Ok(())
    }

    fn add(&mut self, config: PathBuf, mut child: Child) {
        self.pids.push((
            config.clone(),
            child.id().expect("a running child has a pid"),
        ));
        self.exits.spawn(async move {
            let status = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(error) => format!("cannot wait for it: {error}"),
            };
            (config, status)
        });
    }

    /// A node that has exited, if one has.
    fn try_exited(&mut self) -> Option<(PathBuf, String)> {
        self.exits.try_join_next()?.ok()
    }

    /// Waits for the first node to exit.
    async fn next_exit(&mut self) -> Option<(PathBuf, String)> {
        self.exits.join_next().await?.ok()
    }

    /// SIGTERM to every node, SIGKILL to those still running after
    /// [`STOP_TIMEOUT`]; removes the pid files.
    async fn stop(&mut self) {
        for &(_, pid) in &self.pids {
            // It may have exited already: nothing to stop then.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        let drained = tokio::time::timeout(STOP_TIMEOUT, async {
            while self.exits.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            for (path, pid) in self.pids.iter().filter(|(_, pid)| alive(*pid as i32)) {
                say!(
                    "{} did not stop in {STOP_TIMEOUT:?}; killing it",
                    path.display()
                );
                let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            }
            while self.exits.join_next().await.is_some() {}
        }
        for (path, _) in &self.pids {
            let _ = std::fs::remove_file(path.parent().unwrap().join("pid"));
        }
    }
}

/// The pid of the running node of `config_path`, if it runs.
fn running_pid(config_path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(config_path.parent()?.join("pid")).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    (alive(pid) && cmdline.contains(&*config_path.to_string_lossy())).then_some(pid)
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.split_whitespace().nth(2) == Some("Z"))
}
