//! The lab's hosts: a bridge, a network namespace per node, and a real
//! node process in each; `up`, `status` and `down`.
//!
//! Everything is named with [`PREFIX`]: namespaces `rdblab-n1`…, host-side
//! veth ends `rdblab-n1`…, the bridge `rdblab0`. `down` removes what
//! carries the prefix, whatever the state file says, so a lab whose `up`
//! or `run` was killed half-way is still removed whole. One lab runs on a
//! machine at a time.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::os::unix::process::CommandExt as _;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ringdb_client::{Client, ClientConfig};
use ringdb_node::Config;
use ringdb_node::config::{ClusterConfig, TlsFiles};
use ringdb_node::tls::ClusterCa;
use ringdb_ring::NodeId;
use ringdb_sim::quorum::Replication;
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::command::{ip, iptables_in};

/// The prefix of every name the lab gives.
pub const PREFIX: &str = "rdblab";
/// The bridge joining the namespaces.
pub const BRIDGE: &str = "rdblab0";
/// The iptables chain the lab's network faults go into, in each namespace.
pub const CHAIN: &str = "RINGDB-LAB";
/// The bridge's address: where the lab's clients connect from.
pub const HOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
/// The port nodes talk to each other on.
pub const INTERNODE_PORT: u16 = 7000;
/// The port nodes serve clients on (Cassandra's).
pub const CLIENT_PORT: u16 = 9042;
/// The most nodes a lab has.
pub const MAX_NODES: usize = 32;
/// The datacenter of a lab of one.
pub const DATACENTER: &str = "datacenter1";
/// The state file in the lab's folder.
pub const STATE_FILE: &str = "lab.json";
/// How long a node has to start and see the others.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One node of the lab.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabNode {
    /// Its name and node id: `n1`, `n2`…
    pub name: String,
    /// Its address inside the lab.
    pub address: Ipv4Addr,
    /// Its `node.toml`.
    pub config: PathBuf,
    /// Its datacenter.
    #[serde(default = "default_datacenter")]
    pub datacenter: String,
    /// The pid of its process, when the lab started one.
    pub pid: Option<u32>,
}

impl LabNode {
    /// Its network namespace.
    pub fn namespace(&self) -> String {
        namespace_of(&self.name)
    }

    /// Where it serves clients.
    pub fn client_address(&self) -> SocketAddr {
        SocketAddr::from((self.address, CLIENT_PORT))
    }

    /// Its folder (config, certificate, data, log).
    pub fn folder(&self) -> &Path {
        self.config.parent().expect("a node config is in a folder")
    }

    /// Its log.
    pub fn log(&self) -> PathBuf {
        self.folder().join("node.log")
    }

    /// Whether its process runs (stopped by SIGSTOP counts as running).
    pub fn running(&self) -> bool {
        self.pid
            .is_some_and(|pid| is_node_process(pid, &self.config))
    }
}

/// What `lab up` made, recorded in the lab's folder.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LabState {
    /// The nodes.
    pub nodes: Vec<LabNode>,
    /// The network faults in force (what `heal` removes), for `status`.
    pub faults: Vec<String>,
    /// Nodes paused by SIGSTOP.
    pub paused: Vec<String>,
    /// Experiments run on this lab: each writes rows of its own.
    #[serde(default)]
    pub runs: u32,
    /// What was injected into each node's fault hook and clock.
    #[serde(default)]
    pub injected: BTreeMap<String, ringdb_proto::FaultInjection>,
    /// Replicas of each row in each datacenter (empty: a lab made before
    /// datacenters, min(3, nodes) in one).
    #[serde(default)]
    pub replication: BTreeMap<String, usize>,
}

fn default_datacenter() -> String {
    DATACENTER.to_string()
}

impl LabState {
    /// The state of the lab in `dir`.
    pub fn load(dir: &Path) -> Result<LabState, LabError> {
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(LabError::NotUp(dir.to_path_buf()));
            }
            Err(error) => {
                return Err(LabError::io(format!("cannot read {}", path.display()))(
                    error,
                ));
            }
        };
        let mut state: LabState =
            serde_json::from_str(&text).map_err(|source| LabError::Format {
                what: path.display().to_string(),
                source,
            })?;
        if state.replication.is_empty() {
            // A lab made before datacenters: one, of min(3, nodes).
            let replicas = state.nodes.len().min(3);
            state.replication.insert(DATACENTER.to_string(), replicas);
        }
        Ok(state)
    }

    /// Writes the state into `dir` (through a temporary file, so a killed
    /// command leaves the old state or the new, never half of one).
    pub fn save(&self, dir: &Path) -> Result<(), LabError> {
        let path = dir.join(STATE_FILE);
        let temporary = dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("the state serializes");
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(LabError::io(format!("cannot write {}", path.display())))
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Result<&LabNode, LabError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| self.unknown(name))
    }

    /// The error for a name the lab does not have.
    pub fn unknown(&self, name: &str) -> LabError {
        LabError::UnknownNode {
            name: name.to_string(),
            known: self.names().join(", "),
        }
    }

    /// The nodes' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// How rows are replicated, for the checkers.
    pub fn replication(&self) -> Replication {
        if self.replication.is_empty() {
            return Replication::simple(self.nodes.len().min(3));
        }
        let nodes = self
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.datacenter.clone()))
            .collect();
        Replication::datacenters(self.replication.clone(), nodes)
    }

    /// The datacenters, in the order of their first node.
    pub fn datacenters(&self) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        for node in &self.nodes {
            if !found.contains(&node.datacenter) {
                found.push(node.datacenter.clone());
            }
        }
        found
    }

    /// The nodes in datacenter `name`.
    pub fn in_datacenter(&self, name: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.datacenter == name)
            .map(|n| n.name.clone())
            .collect()
    }

    /// The datacenter named, checked; the first node's when `None`.
    pub fn datacenter_for(&self, datacenter: Option<&str>) -> Result<String, LabError> {
        match datacenter {
            Some(dc) if self.datacenters().iter().any(|d| d == dc) => Ok(dc.to_string()),
            Some(dc) => Err(LabError::Invalid(format!(
                "the lab has no datacenter {dc:?}: {}",
                self.datacenters().join(", ")
            ))),
            None => self
                .nodes
                .first()
                .map(|n| n.datacenter.clone())
                .ok_or_else(|| LabError::Invalid("the lab has no nodes".into())),
        }
    }

    /// The name the next node added gets.
    pub fn next_name(&self) -> String {
        format!("n{}", self.nodes.len() + 1)
    }

    /// The CA certificate the lab's clients trust.
    pub fn ca_pem(dir: &Path) -> Result<String, LabError> {
        let path = dir.join("ca.pem");
        std::fs::read_to_string(&path)
            .map_err(LabError::io(format!("cannot read {}", path.display())))
    }
}

/// Whether `name` is one the lab gives: its bridge, or `rdblab-n` and a
/// number (a namespace, or a veth end).
pub fn is_lab_name(name: &str) -> bool {
    name == BRIDGE
        || name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_prefix("-n"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The namespace of node `name`.
pub fn namespace_of(name: &str) -> String {
    format!("{PREFIX}-{name}")
}

/// The address of node `i` (from 0).
fn address_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, i as u8 + 1)
}

/// Makes a lab of `nodes` nodes in `dir`, spread over `datacenters`
/// datacenters (`dc1`, `dc2`… in turn, each a contiguous run of nodes;
/// one is `datacenter1`), and starts them: `exe` is the `ringdb` binary
/// the nodes run. Refuses when a lab is already up.
pub async fn up(
    dir: &Path,
    nodes: usize,
    datacenters: usize,
    exe: &Path,
) -> Result<LabState, LabError> {
    crate::command::check_tools()?;
    if nodes == 0 || nodes > MAX_NODES {
        return Err(LabError::Invalid(format!(
            "--nodes must be 1 to {MAX_NODES}, not {nodes}"
        )));
    }
    if datacenters == 0 || datacenters > nodes {
        return Err(LabError::Invalid(format!(
            "--dcs must be 1 to the number of nodes ({nodes}), not {datacenters}"
        )));
    }
    if let Some(found) = leftovers()?.first() {
        return Err(LabError::AlreadyUp(found.clone()));
    }
    std::fs::create_dir_all(dir)
        .map_err(LabError::io(format!("cannot create {}", dir.display())))?;
    let dir = dir
        .canonicalize()
        .map_err(LabError::io(format!("cannot open {}", dir.display())))?;
    let mut state = LabState {
        nodes: (0..nodes)
            .map(|i| {
                let name = format!("n{}", i + 1);
                LabNode {
                    config: dir.join(&name).join("node.toml"),
                    name,
                    address: address_of(i),
                    datacenter: datacenter_of(i, nodes, datacenters),
                    pid: None,
                }
            })
            .collect(),
        ..LabState::default()
    };
    for datacenter in state.datacenters() {
        let replicas = state.in_datacenter(&datacenter).len().min(3);
        state.replication.insert(datacenter, replicas);
    }
    // Recorded before anything is made: `down` finds it all even if this
    // command is killed half-way.
    state.save(&dir)?;
    make_bridge()?;
    let ca = write_ca(&dir)?;
    let cluster = cluster_config(&state);
    for node in &state.nodes {
        make_host(node)?;
        write_config(&ca, &cluster, node, false)?;
    }
    for i in 0..state.nodes.len() {
        let pid = start_node(&state.nodes[i], exe)?;
        state.nodes[i].pid = Some(pid);
        state.save(&dir)?;
        wait_ready(&dir, &state.nodes[..=i]).await?;
    }
    Ok(state)
}

/// The datacenter of node `i` of `nodes` spread over `datacenters`: the
/// first datacenters take one node more when they do not divide evenly.
fn datacenter_of(i: usize, nodes: usize, datacenters: usize) -> String {
    if datacenters == 1 {
        return DATACENTER.to_string();
    }
    let (each, more) = (nodes / datacenters, nodes % datacenters);
    let mut first = 0;
    for dc in 0..datacenters {
        let size = each + usize::from(dc < more);
        if i < first + size {
            return format!("dc{}", dc + 1);
        }
        first += size;
    }
    unreachable!("node {i} is one of {nodes}")
}

/// Makes node `name` for the running lab in `datacenter` (the first
/// node's when `None`): its namespace, certificate and config (the running
/// nodes' cluster settings, and it streams its ranges before it serves).
/// `start` then runs what the caller needs before its process starts (its
/// place in the faults in force), and starts it. When anything fails, the
/// node is taken out again, so a join can be retried under the same name.
pub fn add_node(
    dir: &Path,
    state: &mut LabState,
    name: &str,
    datacenter: Option<&str>,
    start: impl FnOnce(&mut LabState) -> Result<(), LabError>,
) -> Result<(), LabError> {
    if name != state.next_name() || state.nodes.len() >= MAX_NODES {
        return Err(LabError::Invalid(format!(
            "the node added next is {} (at most {MAX_NODES} nodes), not {name}",
            state.next_name()
        )));
    }
    let datacenter = state.datacenter_for(datacenter)?;
    let node = LabNode {
        name: name.to_string(),
        address: address_of(state.nodes.len()),
        config: dir.join(name).join("node.toml"),
        datacenter,
        pid: None,
    };
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file)).map_err(LabError::io(format!(
            "cannot read {}",
            dir.join(file).display()
        )))
    };
    let ca = ClusterCa::from_pem(&read("ca.pem")?, &read("ca.key")?)?;
    // What the running nodes were started with (their seeds, replication).
    let cluster = Config::load(&state.nodes[0].config)
        .map(|config| config.cluster)
        .unwrap_or_else(|_| cluster_config(state));
    // Recorded first: `down` removes its namespace if this is killed.
    state.nodes.push(node.clone());
    state.save(dir)?;
    let made = make_host(&node)
        .and_then(|()| write_config(&ca, &cluster, &node, true))
        .and_then(|()| start(state));
    if made.is_err() {
        let _ = ip(&["netns", "del", &node.namespace()]);
        let _ = ip(&["link", "del", &node.namespace()]);
        let _ = std::fs::remove_dir_all(node.folder());
        state.nodes.retain(|n| n.name != node.name);
        state.save(dir)?;
    }
    made
}

/// The bridge joining the namespaces.
fn make_bridge() -> Result<(), LabError> {
    // Bridged packets skip the host's iptables (a host whose FORWARD
    // policy is DROP, as Docker sets it, would cut the lab otherwise).
    if ip(&[
        "link",
        "add",
        BRIDGE,
        "type",
        "bridge",
        "nf_call_iptables",
        "0",
    ])
    .is_err()
    {
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
    }
    ip(&["addr", "add", &format!("{HOST_ADDRESS}/24"), "dev", BRIDGE])?;
    ip(&["link", "set", BRIDGE, "up"])?;
    Ok(())
}

/// A node's namespace, veth pair to the bridge, address and chain.
fn make_host(node: &LabNode) -> Result<(), LabError> {
    let namespace = node.namespace();
    ip(&["netns", "add", &namespace])?;
    let host_end = namespace.as_str();
    ip(&[
        "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
    ])?;
    ip(&["link", "set", host_end, "master", BRIDGE, "up"])?;
    let inside = |args: &[&str]| {
        let mut full = vec!["-n", namespace.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    };
    inside(&[
        "addr",
        "add",
        &format!("{}/24", node.address),
        "dev",
        "eth0",
    ])?;
    inside(&["link", "set", "eth0", "up"])?;
    inside(&["link", "set", "lo", "up"])?;
    iptables_in(&namespace, &["-N", CHAIN])?;
    iptables_in(&namespace, &["-A", "INPUT", "-j", CHAIN])?;
    Ok(())
}

/// The lab's CA, and the lab's own certificate (it injects faults into
/// the nodes).
fn write_ca(dir: &Path) -> Result<ClusterCa, LabError> {
    let ca = ClusterCa::generate("lab")?;
    write_file(&dir.join("ca.pem"), ca.certificate_pem())?;
    write_private(&dir.join("ca.key"), ca.key_pem())?;
    let lab = ca.issue(&NodeId::new(crate::inject::LAB_ID))?;
    write_file(
        &dir.join(format!("{}.pem", crate::inject::LAB_ID)),
        &lab.certificate_pem,
    )?;
    write_private(
        &dir.join(format!("{}.key", crate::inject::LAB_ID)),
        &lab.key_pem,
    )?;
    Ok(ca)
}

/// The cluster's settings: the first node of each datacenter is a seed;
/// replicas per datacenter as the state says (min(3, nodes) there), and
/// nothing to stream at first.
fn cluster_config(state: &LabState) -> ClusterConfig {
    let seeds = state
        .datacenters()
        .iter()
        .filter_map(|dc| state.nodes.iter().find(|n| n.datacenter == *dc))
        .map(|n| SocketAddr::from((n.address, INTERNODE_PORT)))
        .collect();
    let replication = state.replication();
    let multi = state.datacenters().len() > 1;
    ClusterConfig {
        name: "lab".into(),
        replication_factor: replication.total(),
        datacenter_replication: if multi {
            state.replication.clone()
        } else {
            BTreeMap::new()
        },
        seeds,
        auto_bootstrap: false,
        ..ClusterConfig::default()
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(LabError::io(format!("cannot write {}", path.display())))
}

/// A node's folder: its certificate and `node.toml` (`bootstrap`: it
/// streams its ranges before serving, as a node joining a running
/// cluster does).
fn write_config(
    ca: &ClusterCa,
    cluster: &ClusterConfig,
    node: &LabNode,
    bootstrap: bool,
) -> Result<(), LabError> {
    let folder = node.folder();
    // A lab starts empty: data of an earlier lab in this folder goes,
    // and nothing else.
    // (A folder a killed `up` left has the node's certificate or nothing.)
    let made_by_a_lab = node.config.exists()
        || folder.join(format!("{}.pem", node.name)).exists()
        || std::fs::read_dir(folder).is_ok_and(|mut entries| entries.next().is_none());
    if folder.exists() {
        if !made_by_a_lab {
            return Err(LabError::Invalid(format!(
                "{} exists and is not a lab node's folder (no node.toml): choose another --dir",
                folder.display()
            )));
        }
        std::fs::remove_dir_all(folder)
            .map_err(LabError::io(format!("cannot empty {}", folder.display())))?;
    }
    std::fs::create_dir_all(folder)
        .map_err(LabError::io(format!("cannot create {}", folder.display())))?;
    let id = NodeId::new(&node.name);
    let certificate = ca.issue(&id)?;
    write_file(
        &folder.join(format!("{id}.pem")),
        &certificate.certificate_pem,
    )?;
    write_private(&folder.join(format!("{id}.key")), &certificate.key_pem)?;
    let tls = TlsFiles {
        ca_certificate: "../ca.pem".into(),
        certificate: format!("{id}.pem").into(),
        key: format!("{id}.key").into(),
    };
    let internode = SocketAddr::from((node.address, INTERNODE_PORT));
    let mut config = Config::new(id, "data".into(), internode, node.client_address(), tls);
    config.cluster = cluster.clone();
    config.cluster.auto_bootstrap = bootstrap;
    config.datacenter = node.datacenter.clone();
    config.faults.injectable = true;
    write_file(&node.config, &config.to_toml())
}

/// Writes a private key, readable by its owner only from the start.
fn write_private(path: &Path, text: &str) -> Result<(), LabError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(LabError::io(format!("cannot write {}", path.display())))
}

/// Starts `node`'s process inside its namespace, in its own process group
/// (it outlives the command), its output appended to its log; returns
/// its pid (`ip netns exec` becomes the node).
pub fn start_node(node: &LabNode, exe: &Path) -> Result<u32, LabError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.log())
        .map_err(LabError::io(format!(
            "cannot open {}",
            node.log().display()
        )))?;
    let output = log
        .try_clone()
        .map_err(LabError::io("cannot share the log"))?;
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &node.namespace()])
        .arg(exe)
        .arg("start")
        .arg("--config")
        .arg(&node.config)
        .stdin(std::process::Stdio::null())
        .stdout(output)
        .stderr(log)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .process_group(0)
        .spawn()
        .map_err(LabError::io(format!("cannot start {}", node.name)))?;
    let pid = child.id();
    // Reaped when it exits (killed by a fault), for as long as this
    // command runs; after it, by init.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok(pid)
}

/// Waits until every node of `nodes` answers and sees the others up.
pub async fn wait_ready(dir: &Path, nodes: &[LabNode]) -> Result<(), LabError> {
    let ca = LabState::ca_pem(dir)?;
    let ids: Vec<NodeId> = nodes.iter().map(|n| NodeId::new(&n.name)).collect();
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    for node in nodes {
        while !sees(node.client_address(), &ca, &ids).await {
            if !node.running() {
                return Err(LabError::NodeStart {
                    node: node.name.clone(),
                    why: format!(
                        "its process exited; the end of its log:\n{}",
                        log_tail(node)
                    ),
                });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(LabError::NodeStart {
                    node: node.name.clone(),
                    why: format!(
                        "it did not see every other node up within {READY_TIMEOUT:?}; \
                         the end of its log:\n{}",
                        log_tail(node)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// The last lines of `node`'s log.
fn log_tail(node: &LabNode) -> String {
    let text = std::fs::read_to_string(node.log()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// Whether the node at `address` has every node of `ids` in its ring, up.
async fn sees(address: SocketAddr, ca: &str, ids: &[NodeId]) -> bool {
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

/// Whether `pid` is a live node process of the config at `config`.
pub fn is_node_process(pid: u32, config: &Path) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses.
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next());
    if state == Some("Z") {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&*config.to_string_lossy()))
}

/// What of a lab exists on this machine: namespaces and links with the
/// lab's prefix.
pub fn leftovers() -> Result<Vec<String>, LabError> {
    let mut found = Vec::new();
    for line in ip(&["netns", "list"])?.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if is_lab_name(name) {
            found.push(format!("namespace {name}"));
        }
    }
    for line in ip(&["-o", "link", "show"])?.lines() {
        // `7: rdblab0: <BROADCAST,…` or `8: rdblab-n1@if2: <…`
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or_default();
        if is_lab_name(name) {
            found.push(format!("link {name}"));
        }
    }
    Ok(found)
}

/// Removes everything a lab made: every process in its namespaces (and
/// those its state names), the namespaces (with their veth ends and
/// rules) and the bridge. Works from what exists, not only from the state
/// file, so it also cleans up after a killed `up` or `run`. Returns what
/// it removed.
pub fn down(dir: &Path) -> Result<Vec<String>, LabError> {
    crate::command::check_tools()?;
    let mut removed = Vec::new();
    let state = LabState::load(dir).ok();
    let mut pids: Vec<u32> = state
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| n.running())
        .filter_map(|n| n.pid)
        .collect();
    let namespaces: Vec<String> = ip(&["netns", "list"])?
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| is_lab_name(name))
        .map(str::to_string)
        .collect();
    for namespace in &namespaces {
        // A namespace being deleted may have no pids to list: go on.
        for pid in ip(&["netns", "pids", namespace])
            .unwrap_or_default()
            .lines()
        {
            if let Ok(pid) = pid.trim().parse::<u32>() {
                pids.push(pid);
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    for &pid in &pids {
        // A paused node is killed as it is; one that exited meanwhile is gone.
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        removed.push(format!("process {pid}"));
    }
    wait_gone(&pids);
    // Everything is tried; what could not be removed is said at the end.
    for namespace in &namespaces {
        if ip(&["netns", "del", namespace]).is_ok() {
            removed.push(format!("namespace {namespace}"));
        }
    }
    for found in leftovers()? {
        if let Some(link) = found.strip_prefix("link ") {
            // A veth end goes with its peer's namespace; what is left is
            // the bridge, or a pair `up` was making when it was killed.
            if ip(&["link", "del", link]).is_ok() {
                removed.push(found.clone());
            }
        }
    }
    if state.is_some() {
        std::fs::remove_file(dir.join(STATE_FILE)).map_err(LabError::io(format!(
            "cannot remove {}",
            dir.join(STATE_FILE).display()
        )))?;
    }
    // A namespace's veth ends go with it, a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut left = leftovers()?;
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = leftovers()?;
    }
    if !left.is_empty() {
        return Err(LabError::Invalid(format!(
            "could not remove {}",
            left.join(", ")
        )));
    }
    Ok(removed)
}

/// Waits (a little) for killed processes to be gone.
fn wait_gone(pids: &[u32]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline
        && pids
            .iter()
            .any(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists() && !zombie(*pid))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            == Some("Z")
    })
}
