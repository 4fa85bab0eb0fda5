//! `ringdb dev`: a local cluster of real node processes in one folder.
//!
//! The first run makes the folder: a CA and a certificate per node, a
//! `node.toml` per node on free ports chosen by the OS, and `client.toml`
//! for the data commands. Later runs start the same nodes on the same ports,
//! with their data.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ringdb::client::{Client, ClientConfig};
use ringdb::node::Config;
use ringdb::node::config::{ClusterConfig, MemberConfig, RequestConfig, TlsFiles};
use ringdb::node::storage::StorageConfig;
use ringdb::ring::NodeId;
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::cert;
use super::data::{CLIENT_FILE, ClientFile};

/// How long the nodes have to start serving.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node has to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts (making it first if needed) the cluster in `dir`.
pub async fn run(dir: &Path, nodes: usize, detach: bool) -> anyhow::Result<ExitCode> {
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let configs = match existing_configs(dir)? {
        Some(configs) => {
            if configs.len() != nodes {
                eprintln!(
                    "{} holds a {}-node cluster; starting it as it is",
                    dir.display(),
                    configs.len()
                );
            }
            configs
        }
        None => create(dir, nodes)?,
    };
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
    let mut nodes = Processes::default();
    for path in &configs {
        let folder = path.parent().expect("a node config is in a folder");
        let log = std::fs::File::create(folder.join("node.log"))?;
        let child = Command::new(&exe)
            .arg("start")
            .arg("--config")
            .arg(path)
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
        nodes.add(path.clone(), child);
    }
    let loaded: Vec<Config> = configs
        .iter()
        .map(|p| Config::load(p))
        .collect::<Result<_, _>>()?;
    if let Err(error) = wait_ready(dir, &loaded, &mut nodes).await {
        nodes.stop().await;
        return Err(error);
    }
    println!("ringdb dev cluster in {} is serving:", dir.display());
    for (config, (path, pid)) in loaded.iter().zip(&nodes.pids) {
        println!(
            "  {:<8} client {}  pid {pid}  log {}",
            config.node_id.as_str(),
            config.listen_client,
            path.parent().unwrap().join("node.log").display()
        );
    }
    println!("try:  ringdb put users alice Alice && ringdb get users alice");
    if detach {
        println!("stop: ringdb dev --stop --dir {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Ctrl-C stops the cluster (its data stays in {}).",
        dir.display()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let exited = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = terminate.recv() => None,
        exited = nodes.next_exit() => exited,
    };
    if let Some((node, status)) = exited {
        eprintln!(
            "node {} exited ({status}); stopping the others",
            node.display()
        );
    }
    nodes.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// Stops the cluster in `dir` started with `--detach`.
pub async fn stop(dir: &Path) -> anyhow::Result<()> {
    let Some(configs) = existing_configs(dir)? else {
        bail!("no ringdb dev cluster in {}", dir.display());
    };
    let pids: Vec<i32> = configs.iter().filter_map(|p| running_pid(p)).collect();
    for &pid in &pids {
        // It may have exited since: nothing to stop then.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while pids.iter().any(|&pid| alive(pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for &pid in pids.iter().filter(|&&pid| alive(pid)) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    println!("stopped {} node(s) of {}", pids.len(), dir.display());
    Ok(())
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

/// Makes the folder of a new cluster: certificates, node configs, client file.
fn create(dir: &Path, nodes: usize) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let ca = cert::load_or_create_ca(&dir, "dev")?;
    // Hold every socket until all are chosen, so no two ports repeat.
    let sockets: Vec<UdpSocket> = (0..nodes * 2)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let ports: Vec<SocketAddr> = sockets
        .iter()
        .map(|s| s.local_addr())
        .collect::<Result<_, _>>()?;
    drop(sockets);
    let members: Vec<MemberConfig> = (0..nodes)
        .map(|i| MemberConfig {
            id: NodeId::new(format!("node{}", i + 1)),
            internode_address: ports[2 * i],
            client_address: ports[2 * i + 1],
            datacenter: "datacenter1".into(),
            rack: "rack1".into(),
        })
        .collect();
    let mut paths = Vec::new();
    for member in &members {
        let folder = dir.join(member.id.as_str());
        std::fs::create_dir_all(&folder)?;
        cert::issue(&ca, &folder, &member.id)?;
        let config = Config {
            node_id: member.id.clone(),
            data_dir: "data".into(),
            listen_internode: member.internode_address,
            listen_client: member.client_address,
            tls: TlsFiles {
                ca_certificate: "../ca.pem".into(),
                certificate: format!("{}.pem", member.id).into(),
                key: format!("{}.key", member.id).into(),
            },
            cluster: ClusterConfig {
                name: "dev".into(),
                replication_factor: 3.min(nodes),
                num_tokens: 16,
                nodes: members.clone(),
            },
            storage: StorageConfig::default(),
            requests: RequestConfig::default(),
        };
        let path = folder.join("node.toml");
        std::fs::write(&path, config.to_toml())?;
        paths.push(path);
    }
    let client = ClientFile {
        contact_points: members.iter().map(|m| m.client_address).collect(),
        ca_certificate: "ca.pem".into(),
    };
    std::fs::write(
        dir.join(CLIENT_FILE),
        toml::to_string_pretty(&client).expect("client file serializes"),
    )?;
    Ok(paths)
}

/// Waits until every node answers and reaches every other node.
async fn wait_ready(dir: &Path, configs: &[Config], nodes: &mut Processes) -> anyhow::Result<()> {
    let ca = std::fs::read_to_string(dir.join("ca.pem"))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    for config in configs {
        loop {
            if let Some((path, status)) = nodes.try_exited() {
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
            if node_sees_everyone(config.listen_client, &ca).await {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} did not reach every other node within {READY_TIMEOUT:?}",
                    config.node_id.as_str()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

async fn node_sees_everyone(address: SocketAddr, ca: &str) -> bool {
    let mut config = ClientConfig::new(vec![address], ca.to_string());
    config.token_aware = false;
    config.connect_timeout = Duration::from_millis(500);
    let Ok(client) = Client::connect(config).await else {
        return false;
    };
    match client.refresh_topology().await {
        Ok(nodes) => nodes.iter().all(|n| n.reachable),
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
                eprintln!(
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
