//! Making a new dev cluster: its layout over datacenters, free ports, a
//! certificate and node.toml per node, and client.toml. Every setting is
//! checked before anything is written, and a folder this made is removed
//! again if making the cluster fails.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::Context;
use ringdb::node::Config;
use ringdb::node::config::{ClusterConfig, TlsFiles};
use ringdb::node::tls::ClusterCa;
use ringdb::ring::NodeId;

use super::super::BadInput;
use super::super::cert;
use super::super::data::{CLIENT_FILE, ClientFile};

/// How many nodes a new cluster has, over how many datacenters.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Nodes.
    pub nodes: usize,
    /// Datacenters the nodes are spread over, in blocks.
    pub datacenters: usize,
}

impl Layout {
    /// The datacenter of node `i` (from 0): `datacenter1` when there is
    /// one, else `dc1`, `dc2`… in blocks of consecutive nodes.
    pub(super) fn datacenter_of(self, i: usize) -> Option<String> {
        (self.datacenters > 1).then(|| format!("dc{}", i * self.datacenters / self.nodes + 1))
    }

    /// With several datacenters, replicas per datacenter: 3, or as many as
    /// it has nodes (empty with one datacenter: `replication_factor` rules).
    pub(super) fn datacenter_replication(self) -> BTreeMap<String, usize> {
        let mut factors = BTreeMap::new();
        for i in 0..self.nodes {
            if let Some(datacenter) = self.datacenter_of(i) {
                let factor = factors.entry(datacenter).or_insert(0);
                *factor = (*factor + 1).min(3);
            }
        }
        factors
    }
}

/// The lowest port `free_ports` gives.
const FIRST_PORT: u16 = 10_000;

/// The first port of the OS's ephemeral range, from which it gives every
/// socket bound to port 0 (Linux's default when it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Free local ports for the nodes (each free for both UDP, which QUIC
/// uses, and TCP, which the metrics endpoint uses), below the OS's
/// ephemeral range: a port the OS picked for us and we released would be
/// free for any other program's next socket (a client of another cluster,
/// a test running beside) until the node binds it, seconds later; a port
/// below the range is taken only by a program that asks for it by number.
/// Every socket is held until all are chosen, so no two ports repeat.
/// Falls back to ports the OS picks when the range leaves no room below it.
pub(super) fn free_ports(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let end = ephemeral_start();
    let mut held: Vec<(UdpSocket, TcpListener)> = Vec::new();
    if end > FIRST_PORT {
        let span = end - FIRST_PORT;
        let mut port = FIRST_PORT + rand::random_range(0..span);
        for _ in 0..span {
            if held.len() == count {
                break;
            }
            held.extend(hold(port));
            port = if port + 1 >= end {
                FIRST_PORT
            } else {
                port + 1
            };
        }
    }
    let mut attempts = 0;
    while held.len() < count {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let port = socket.local_addr()?.port();
        drop(socket);
        held.extend(hold(port));
        attempts += 1;
        if attempts > 100 * count {
            anyhow::bail!("cannot find {count} ports free for both UDP and TCP");
        }
    }
    Ok(held
        .iter()
        .map(|(socket, _)| socket.local_addr())
        .collect::<Result<_, _>>()?)
}

/// Both sockets of `port`, if both are free.
fn hold(port: u16) -> Option<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(("127.0.0.1", port)).ok()?;
    let tcp = TcpListener::bind(("127.0.0.1", port)).ok()?;
    Some((udp, tcp))
}

/// A node of a new cluster (or one added to it).
pub(super) struct NewNode<'a> {
    pub id: &'a NodeId,
    /// Its internode, client and metrics addresses.
    pub addresses: (SocketAddr, SocketAddr, SocketAddr),
    pub cluster: ClusterConfig,
    /// Its datacenter, when not the default.
    pub datacenter: Option<String>,
}

/// The node.toml of a new node, with `settings` applied and checked;
/// nothing is written yet.
pub(super) fn node_config(node: NewNode<'_>, settings: &[String]) -> anyhow::Result<Config> {
    let NewNode {
        id,
        addresses: (internode, client, metrics),
        cluster,
        datacenter,
    } = node;
    let tls = TlsFiles {
        ca_certificate: "../ca.pem".into(),
        certificate: format!("{id}.pem").into(),
        key: format!("{id}.key").into(),
    };
    let mut config = Config::new(id.clone(), "data".into(), internode, client, tls);
    config.cluster = cluster;
    config.listen_metrics = Some(metrics);
    if let Some(datacenter) = datacenter {
        config.datacenter = datacenter;
    }
    apply_settings(config, settings)
}

/// Makes node `config.node_id`'s folder in `dir`: its certificate and its
/// node.toml; returns the config's path.
pub(super) fn write_node(dir: &Path, ca: &ClusterCa, config: &Config) -> anyhow::Result<PathBuf> {
    let id = &config.node_id;
    let folder = dir.join(id.as_str());
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    cert::issue(ca, &folder, id)?;
    let path = folder.join("node.toml");
    std::fs::write(&path, config.to_toml())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Applies `--set section.key=value` settings to a config (the value is
/// TOML: `3`, `false`, `"text"`; anything else is taken as text). A
/// setting that does not fit is bad input.
fn apply_settings(config: Config, settings: &[String]) -> anyhow::Result<Config> {
    if settings.is_empty() {
        return Ok(config);
    }
    let mut table: toml::Table = toml::from_str(&config.to_toml())?;
    for setting in settings {
        let Some((path, value)) = setting.split_once('=') else {
            let why = format!("--set {setting:?}: expected KEY=VALUE, e.g. hints.enabled=false");
            return Err(BadInput(why).into());
        };
        let value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
            Ok(mut parsed) => parsed.remove("v").expect("the key just parsed"),
            Err(_) => toml::Value::String(value.to_owned()),
        };
        let keys: Vec<&str> = path.trim().split('.').collect();
        let (last, sections) = keys.split_last().expect("split yields one part");
        let mut at = &mut table;
        for section in sections {
            at = at
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| {
                    BadInput(format!("--set {setting:?}: {section} is not a section"))
                })?;
        }
        at.insert(last.to_string(), value);
    }
    let config: Config = toml::from_str(&table.to_string())
        .map_err(|e| BadInput(format!("--set: the settings do not fit a node config: {e}")))?;
    config
        .validate()
        .map_err(|e| BadInput(format!("--set: {e}")))?;
    Ok(config)
}

impl Layout {
    /// Whether a cluster can be made this way (bad input otherwise).
    pub fn check(self) -> Result<(), BadInput> {
        if self.nodes == 0 {
            return Err(BadInput("--nodes must be at least 1".into()));
        }
        if self.datacenters == 0 || self.datacenters > self.nodes {
            return Err(BadInput(format!(
                "--datacenters must be 1 to the number of nodes ({})",
                self.nodes
            )));
        }
        Ok(())
    }
}

/// Makes a new cluster in the folder `dir`: certificates, node configs,
/// client file. Every node's config is made and checked first.
pub(super) fn create(dir: &Path, layout: Layout, settings: &[String]) -> anyhow::Result<()> {
    layout.check()?;
    let nodes = layout.nodes;
    let ports = free_ports(nodes * 3)?;
    let datacenter_replication = layout.datacenter_replication();
    let cluster = ClusterConfig {
        name: "dev".into(),
        replication_factor: match datacenter_replication.values().sum() {
            0 => 3.min(nodes),
            sum => sum,
        },
        datacenter_replication,
        seeds: vec![ports[0]],
        // A brand-new cluster: there is no data to stream to its first nodes.
        auto_bootstrap: false,
        ..ClusterConfig::default()
    };
    let configs = (0..nodes)
        .map(|i| {
            let id = NodeId::new(format!("node{}", i + 1));
            let node = NewNode {
                id: &id,
                addresses: (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]),
                cluster: cluster.clone(),
                datacenter: layout.datacenter_of(i),
            };
            node_config(node, settings)
        })
        .collect::<anyhow::Result<Vec<Config>>>()?;
    write_cluster(dir, &configs)
}

/// Makes the cluster's folder if there is none; true if this made it
/// (atomically: a folder that exists, a symlink or another run's, is not
/// this run's to remove).
pub(super) fn make_folder(dir: &Path) -> anyhow::Result<bool> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error).with_context(|| format!("cannot create {}", dir.display())),
    }
}

fn write_cluster(dir: &Path, configs: &[Config]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = cert::load_or_create_ca(dir, "dev")?;
    for config in configs {
        write_node(dir, &ca, config)?;
    }
    let client = ClientFile {
        contact_points: configs
            .iter()
            .map(|c| c.listen_client.to_string())
            .collect(),
        ca_certificate: "ca.pem".into(),
    };
    std::fs::write(
        dir.join(CLIENT_FILE),
        toml::to_string_pretty(&client).expect("client file serializes"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ports a new cluster's nodes listen on are outside the range
    /// the OS hands to other programs' sockets (a test's client took one
    /// between `ringdb dev` choosing it and the node binding it).
    #[test]
    fn nodes_ports_are_below_the_ephemeral_range_and_all_different() {
        let ports = free_ports(12).unwrap();
        let end = ephemeral_start();
        for port in &ports {
            assert!(
                (FIRST_PORT..end).contains(&port.port()),
                "{port} is in the ephemeral range from {end}"
            );
        }
        let mut distinct: Vec<u16> = ports.iter().map(|p| p.port()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 12);
    }

    #[test]
    fn each_datacenter_has_three_replicas_or_as_many_as_its_nodes() {
        let layout = |nodes, datacenters| Layout { nodes, datacenters };
        assert!(layout(3, 1).datacenter_replication().is_empty());
        let two = layout(6, 2).datacenter_replication();
        assert_eq!(two, BTreeMap::from([("dc1".into(), 3), ("dc2".into(), 3)]));
        let small = layout(5, 2).datacenter_replication();
        assert_eq!(
            small,
            BTreeMap::from([("dc1".into(), 3), ("dc2".into(), 2)])
        );
    }

    #[test]
    fn nodes_are_spread_over_datacenters_in_blocks() {
        let layout = |nodes, datacenters| Layout { nodes, datacenters };
        let of = |l: Layout| (0..l.nodes).map(|i| l.datacenter_of(i)).collect::<Vec<_>>();
        assert_eq!(of(layout(3, 1)), [None, None, None]);
        let six = of(layout(6, 2));
        let names: Vec<&str> = six.iter().map(|d| d.as_deref().unwrap()).collect();
        assert_eq!(names, ["dc1", "dc1", "dc1", "dc2", "dc2", "dc2"]);
        let five = of(layout(5, 3));
        let names: Vec<&str> = five.iter().map(|d| d.as_deref().unwrap()).collect();
        assert_eq!(names, ["dc1", "dc1", "dc2", "dc2", "dc3"]);
    }
}
