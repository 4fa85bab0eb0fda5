//! A cluster of real `ringdb` processes for the integration tests: made by
//! `ringdb dev --detach` in a temporary folder (ports chosen by the OS), with
//! nodes killed with SIGKILL and restarted with `ringdb start`.

#![allow(dead_code)]

pub mod raw;
pub mod scrape;

/// Where Debian's `faketime` package puts the library.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ringdb::client::{Client, ClientConfig, PartitionKey, ReadResult, Row, RowAddress, Value};
use ringdb::node::Config;
use ringdb::ring::{Replication, Ring};
use tokio::time::Instant;

/// How long a condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Waits until `condition` holds, checking every 50 ms, or panics after `within`.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that `condition` holds every 200 ms throughout `window` (what
/// must stay true, where [`wait_until`] waits for what must become true).
pub async fn holds_throughout<F, Fut>(what: &str, window: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert!(condition().await, "stopped holding: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Three (or N) node processes in a temporary folder.
pub struct Cluster {
    dir: tempfile::TempDir,
    configs: Vec<Config>,
    restarted: Vec<Child>,
}

impl Cluster {
    /// Starts a cluster of `nodes` with `ringdb dev --detach`.
    pub fn start(nodes: usize) -> Cluster {
        Cluster::start_with(nodes, &[])
    }

    /// Starts a cluster of `nodes` whose node configs have `settings`
    /// (`ringdb dev --set section.key=value`).
    pub fn start_with(nodes: usize, settings: &[&str]) -> Cluster {
        let settings: Vec<&str> = settings.iter().flat_map(|s| ["--set", s]).collect();
        Cluster::start_args(nodes, &settings)
    }

    /// Starts a cluster of `nodes` spread over `datacenters` (`dc1`, `dc2`…
    /// in blocks, three replicas in each, or as many as it has nodes).
    pub fn start_in_datacenters(nodes: usize, datacenters: usize) -> Cluster {
        Cluster::start_args(nodes, &["--datacenters", &datacenters.to_string()])
    }

    /// `ringdb dev --detach --nodes N ARGS`.
    fn start_args(nodes: usize, args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary folder");
        let output = Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .args(["dev", "--detach", "--nodes", &nodes.to_string(), "--dir"])
            .arg(dir.path())
            .args(args)
            .output()
            .expect("run ringdb dev");
        assert!(
            output.status.success(),
            "ringdb dev failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let configs = (1..=nodes)
            .map(|n| Config::load(&node_folder(dir.path(), n).join("node.toml")).expect("config"))
            .collect();
        Cluster {
            dir,
            configs,
            restarted: Vec::new(),
        }
    }

    /// Adds a node with `ringdb dev --add` (it bootstraps: streams its
    /// ranges, then serves); returns its number.
    pub fn add_node(&mut self) -> usize {
        let output = Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .args(["dev", "--add", "--dir"])
            .arg(self.dir.path())
            .output()
            .expect("run ringdb dev --add");
        assert!(
            output.status.success(),
            "ringdb dev --add failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.adopt_added_node()
    }

    /// Makes a new node's folder by hand (certificate, free ports, the
    /// cluster's name and seeds, then `change`), without starting it;
    /// returns its number, for [`Cluster::restart`] to start it.
    pub fn prepare_node(&mut self, change: impl FnOnce(&mut Config)) -> usize {
        let n = self.configs.len() + 1;
        let name = format!("node{n}");
        let certified = Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .args(["cert", "--dir"])
            .arg(self.dir())
            .arg(&name)
            .output()
            .expect("run ringdb cert");
        assert!(certified.status.success(), "ringdb cert failed");
        let sockets: Vec<std::net::UdpSocket> = (0..2)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        let ports: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        drop(sockets);
        let tls = ringdb::node::config::TlsFiles {
            ca_certificate: "../ca.pem".into(),
            certificate: format!("../{name}.pem").into(),
            key: format!("../{name}.key").into(),
        };
        let mut config = Config::new(
            ringdb::ring::NodeId::new(name.as_str()),
            "data".into(),
            ports[0],
            ports[1],
            tls,
        );
        config.cluster = self.config(1).cluster.clone();
        change(&mut config);
        let folder = node_folder(self.dir(), n);
        std::fs::create_dir_all(&folder).expect("node folder");
        std::fs::write(folder.join("node.toml"), config.to_toml()).expect("node.toml");
        self.adopt_added_node()
    }

    /// Records the node that a `ringdb dev --add` run outside this struct
    /// added; returns its number.
    pub fn adopt_added_node(&mut self) -> usize {
        let n = self.configs.len() + 1;
        let config =
            Config::load(&node_folder(self.dir.path(), n).join("node.toml")).expect("config");
        self.configs.push(config);
        n
    }

    /// How many nodes were started (or added).
    pub fn len(&self) -> usize {
        self.configs.len()
    }

    /// The cluster's folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config of node `n` (from 1).
    pub fn config(&self, n: usize) -> &Config {
        &self.configs[n - 1]
    }

    /// Changes node `n`'s config file (taken at its next start).
    pub fn configure(&mut self, n: usize, change: impl FnOnce(&mut Config)) {
        let file = node_folder(self.dir(), n).join("node.toml");
        let mut config = Config::load(&file).expect("config");
        change(&mut config);
        std::fs::write(&file, config.to_toml()).expect("write the config");
        self.configs[n - 1] = config;
    }

    /// The client address of node `n`.
    pub fn client_address(&self, n: usize) -> SocketAddr {
        self.config(n).listen_client
    }

    fn pid(&self, n: usize) -> i32 {
        let text = std::fs::read_to_string(node_folder(self.dir(), n).join("pid")).expect("pid");
        text.trim().parse().expect("pid number")
    }

    /// The process id of node `n`.
    pub fn pid_of(&self, n: usize) -> i32 {
        self.pid(n)
    }

    /// Whether node `n`'s process is running.
    pub fn is_alive(&self, n: usize) -> bool {
        is_running(self.pid(n))
    }

    /// Kills node `n` with SIGKILL and waits until the process is gone.
    pub async fn kill(&self, n: usize) {
        Cluster::kill_pid(self.pid(n)).await;
    }

    /// Kills the process `pid` with SIGKILL and waits until it is gone.
    pub async fn kill_pid(pid: i32) {
        // It may be dead already.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        wait_until("the killed node is gone", DEADLINE, || async move {
            !is_running(pid)
        })
        .await;
    }

    /// Starts node `n` again with `ringdb start` (without waiting).
    pub fn restart(&mut self, n: usize) {
        self.restart_with_env(n, &[]);
    }

    /// [`Cluster::restart`] with environment variables set for the node
    /// (a faked clock, say).
    pub fn restart_with_env(&mut self, n: usize, env: &[(&str, &str)]) {
        let folder = node_folder(self.dir(), n);
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(folder.join("node.log"))
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .arg("start")
            .arg("--config")
            .arg(folder.join("node.toml"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start a node");
        std::fs::write(folder.join("pid"), child.id().to_string()).expect("pid file");
        self.restarted.push(child);
    }

    /// Stops every node with `ringdb dev --stop` (SIGTERM, then SIGKILL).
    pub fn stop_all(&self) {
        let output = Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .args(["dev", "--stop", "--dir"])
            .arg(self.dir())
            .output()
            .expect("run ringdb dev --stop");
        assert!(
            output.status.success(),
            "ringdb dev --stop failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts every node of the stopped cluster at once with `ringdb dev
    /// --detach`, which waits until they reach each other, and checks that
    /// it succeeded.
    pub fn start_all(&self) {
        let output = Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .args(["dev", "--detach", "--dir"])
            .arg(self.dir())
            .output()
            .expect("run ringdb dev --detach");
        assert!(
            output.status.success(),
            "ringdb dev --detach failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// What `ringdb status` prints when node `n` answers.
    pub fn status_text(&self, n: usize) -> String {
        self.status_text_with(n, &[], &[])
    }

    /// What `ringdb status ARGS` prints when node `n` answers, run with
    /// `env` added to its environment.
    pub fn status_text_with(&self, n: usize, args: &[&str], env: &[(&str, &str)]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .arg("status")
            .args(args)
            .envs(env.iter().copied())
            .arg("--host")
            .arg(self.client_address(n).to_string())
            .arg("--ca")
            .arg(self.dir().join("ca.pem"))
            .output()
            .expect("run ringdb status");
        assert!(
            output.status.success(),
            "ringdb status failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// What node `n` has logged.
    pub fn log_of(&self, n: usize) -> String {
        std::fs::read_to_string(node_folder(self.dir(), n).join("node.log")).unwrap_or_default()
    }

    /// Waits until node `n` serves and is connected to each node in `peers`.
    pub async fn wait_connected(&self, n: usize, peers: &[usize]) {
        let address = self.client_address(n);
        let ca = self.ca();
        let names: Vec<String> = peers
            .iter()
            .map(|&p| self.config(p).node_id.to_string())
            .collect();
        wait_until(
            &format!("node{n} reaches nodes {peers:?}"),
            DEADLINE,
            || {
                let (ca, names) = (ca.clone(), names.clone());
                async move {
                    let mut config = ClientConfig::new(vec![address], ca);
                    config.token_aware = false;
                    config.connect_timeout = Duration::from_millis(300);
                    let Ok(client) = Client::connect(config).await else {
                        return false;
                    };
                    let Ok(nodes) = client.refresh_topology().await else {
                        return false;
                    };
                    names.iter().all(|name| {
                        nodes
                            .iter()
                            .any(|node| node.id.as_str() == name && node.reachable)
                    })
                }
            },
        )
        .await;
    }

    /// Waits until node `n` no longer counts node `peer` as reachable.
    pub async fn wait_disconnected(&self, n: usize, peer: usize) {
        let client = self.client(n).await;
        let name = self.config(peer).node_id.to_string();
        wait_until(
            &format!("node{n} notices node{peer} is down"),
            DEADLINE,
            || {
                let (client, name) = (&client, name.clone());
                async move {
                    match client.refresh_topology().await {
                        Ok(nodes) => nodes.iter().any(|n| n.id.as_str() == name && !n.reachable),
                        Err(_) => false,
                    }
                }
            },
        )
        .await;
    }

    /// Waits until node `n`'s failure detector counts node `peer` down
    /// (what `removenode` asks), not only its connection lost.
    pub async fn wait_convicted(&self, n: usize, peer: usize) {
        let client = self.client(n).await;
        let name = self.config(peer).node_id.to_string();
        wait_until(&format!("node{n} convicts node{peer}"), DEADLINE, || {
            let (client, name) = (&client, name.clone());
            async move {
                match client.status().await {
                    Ok(status) => status.nodes.iter().any(|n| n.id.as_str() == name && !n.up),
                    Err(_) => false,
                }
            }
        })
        .await;
    }

    /// The cluster CA certificate.
    pub fn ca(&self) -> String {
        std::fs::read_to_string(self.dir().join("ca.pem")).expect("ca.pem")
    }

    /// A client whose requests node `n` coordinates.
    pub async fn client(&self, n: usize) -> Client {
        let mut config = ClientConfig::new(vec![self.client_address(n)], self.ca());
        config.token_aware = false;
        Client::connect(config).await.expect("connect to a node")
    }

    /// A token-aware client that knows every node.
    pub async fn token_aware_client(&self) -> Client {
        let contact_points = (1..=self.configs.len())
            .map(|n| self.client_address(n))
            .collect();
        Client::connect(ClientConfig::new(contact_points, self.ca()))
            .await
            .expect("connect to the cluster")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Show what the nodes said, to explain the failure.
            for n in 1..=self.configs.len() {
                let log = node_folder(self.dir(), n).join("node.log");
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("--- node{n} log (last 40 lines) ---");
                for line in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("{line}");
                }
            }
        }
        for n in 1..=self.configs.len() {
            if let Ok(text) = std::fs::read_to_string(node_folder(self.dir(), n).join("pid"))
                && let Ok(pid) = text.trim().parse::<i32>()
            {
                // The node may be dead already.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
            }
        }
        for child in &mut self.restarted {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The folder of node `n` in a cluster folder.
pub fn node_folder(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("node{n}"))
}

/// Whether process `pid` still runs or holds resources. Its main thread
/// shows as a zombie as soon as it exits, while the other threads may still
/// be tearing down and holding its files (RocksDB's lock among them): a
/// zombie is gone only when its main thread is its last.
fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) if stat.split_whitespace().nth(2) == Some("Z") => {
            std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| tasks.count() > 1)
        }
        Ok(_) => true,
        Err(_) => false,
    }
}

/// A row of the `kv` table.
pub fn row(key: &str) -> RowAddress {
    RowAddress::new("kv", PartitionKey::new(key.as_bytes().to_vec()).unwrap())
}

/// One text column, `value`.
pub fn columns(text: &str) -> Row {
    Row::from([("value".to_string(), Value::Text(text.to_string()))])
}

/// The texts of a read's siblings.
pub fn text_of(read: &ReadResult) -> Vec<String> {
    read.siblings
        .iter()
        .filter_map(|s| match s.columns.get("value") {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// The ring as node `n` sees it.
pub async fn ring_of(cluster: &Cluster, n: usize) -> (Ring, Replication) {
    let status = cluster.client(n).await.status().await.unwrap();
    let mut ring = Ring::new();
    for node in &status.nodes {
        if node.status == "Normal" {
            ring.add_node(node.id.clone(), node.location.clone(), node.tokens.clone())
                .unwrap();
        }
    }
    (ring, status.replication)
}
