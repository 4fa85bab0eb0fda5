//! Three nodes in one process over real QUIC on loopback, with the
//! transport's fault hook cutting and delaying messages between them. The
//! faults go in as `ringdb lab` puts them: a `PeerRequest::InjectFaults`
//! on node1's internode port, signed by the cluster's CA, which node1 takes
//! because its config says `[faults] injectable = true`.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use ringdb_client::transport::Multiplexed;
use ringdb_client::{Client, ClientConfig, ClientError};
use ringdb_node::config::{RequestConfig, TlsFiles};
use ringdb_node::tls::{ClusterCa, NodeCertificate};
use ringdb_node::{Config, Node, NodeHandle};
use ringdb_proto::{
    ConsistencyLevel, Context, FaultInjection, MAX_FRAME_BYTES, PartitionKey, PeerFault, PeerReply,
    PeerRequest, RequestError, Row, RowAddress, Value,
};
use ringdb_ring::NodeId;
use tokio::time::Instant;

/// The cluster: its nodes, the CA's certificate, and the certificate the
/// test harness proves itself with when it injects faults.
struct Cluster {
    nodes: Vec<NodeHandle>,
    ca_pem: String,
    harness: NodeCertificate,
}

impl Cluster {
    /// Makes node1 delay every message to node2 and node3 by `delay_ms`
    /// (`u64::MAX`: drop them all), or clears its faults with `None`.
    async fn fault_node1(&self, delay_ms: Option<u64>) {
        let peers = match delay_ms {
            None => Vec::new(),
            Some(delay_ms) => ["node2", "node3"]
                .into_iter()
                .map(|peer| PeerFault {
                    peer: NodeId::new(peer),
                    drop: if delay_ms == u64::MAX { 1.0 } else { 0.0 },
                    delay_ms: delay_ms.min(60_000),
                    jitter_ms: 0,
                    duplicate: 0.0,
                })
                .collect(),
        };
        let injection = FaultInjection {
            peers,
            clock_skew_ms: 0,
        };
        let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let connection = endpoint
            .connect_with(
                self.harness.client_config().unwrap(),
                self.nodes[0].internode_address(),
                "ringdb-node",
            )
            .unwrap()
            .await
            .unwrap();
        let peer: Multiplexed<PeerRequest, PeerReply> =
            Multiplexed::open(connection, MAX_FRAME_BYTES)
                .await
                .unwrap();
        let answer = peer
            .call(PeerRequest::InjectFaults(injection), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(answer, PeerReply::Applied), "{answer:?}");
        endpoint.close(0u32.into(), b"done");
    }
}

/// Three nodes with a 300 ms request timeout and at most `max_in_flight`
/// requests in progress per client connection.
async fn start_cluster(dir: &std::path::Path, max_in_flight: usize) -> Cluster {
    let ca = ClusterCa::generate("faults").unwrap();
    std::fs::write(dir.join("ca.pem"), ca.certificate_pem()).unwrap();
    // Free ports from the OS, held until all are chosen.
    let sockets: Vec<UdpSocket> = (0..6)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    drop(sockets);
    let ids: Vec<NodeId> = (1..=3).map(|i| NodeId::new(format!("node{i}"))).collect();
    let mut nodes = Vec::new();
    // One at a time: each new node learns the ring from node1 (the seed)
    // and takes tokens that split its largest ranges.
    for (i, id) in ids.iter().enumerate() {
        let issued = ca.issue(id).unwrap();
        let folder = dir.join(id.as_str());
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("node.pem"), &issued.certificate_pem).unwrap();
        std::fs::write(folder.join("node.key"), &issued.key_pem).unwrap();
        let tls = TlsFiles {
            ca_certificate: dir.join("ca.pem"),
            certificate: folder.join("node.pem"),
            key: folder.join("node.key"),
        };
        let mut config = Config::new(
            id.clone(),
            folder.join("data"),
            ports[2 * i],
            ports[2 * i + 1],
            tls,
        );
        config.cluster.name = "faults".into();
        config.cluster.seeds = vec![ports[0]];
        config.cluster.auto_bootstrap = false;
        config.faults.injectable = true;
        config.requests = RequestConfig {
            timeout_ms: 300,
            max_in_flight_per_connection: max_in_flight,
            ..RequestConfig::default()
        };
        nodes.push(Node::start(config).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes.iter().all(|node| {
        let view = node.view();
        ids.iter()
            .all(|id| id == node.id() || (node.is_connected_to(id) && view.is_up(id)))
            && view.ring.len() == 3
    }) {
        assert!(Instant::now() < deadline, "nodes did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Cluster {
        nodes,
        ca_pem: ca.certificate_pem().to_string(),
        harness: ca.issue(&NodeId::new("harness")).unwrap(),
    }
}

fn write(text: &str) -> Row {
    Row::from([("value".to_string(), Value::Text(text.into()))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_delayed_links_time_out_writes_and_healed_links_serve_them() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 1024).await;
    let nodes = &cluster.nodes;
    let mut config = ClientConfig::new(vec![nodes[0].client_address()], cluster.ca_pem.clone());
    config.token_aware = false;
    let client = Client::connect(config).await.unwrap();
    let row = RowAddress::new("kv", PartitionKey::new(b"k".to_vec()).unwrap());
    let quorum = ConsistencyLevel::Quorum;

    // node1 cut off from both peers: connections are up, so the write is
    // sent, and it is a timeout (not Unavailable) with only node1's ack.
    cluster.fault_node1(Some(u64::MAX)).await;
    let outcome = client
        .put(&row, write("cut"), Context::empty(), quorum)
        .await;
    assert_eq!(
        outcome.map(|_| ()),
        Err(ClientError::Request(RequestError::Timeout {
            required: 2,
            acknowledged: 1,
            write: true
        }))
    );
    // ONE needs only the coordinator.
    client
        .put(&row, write("one"), Context::empty(), ConsistencyLevel::One)
        .await
        .unwrap();

    // Delays longer than the 300 ms budget: also a timeout.
    cluster.fault_node1(Some(600)).await;
    let outcome = client
        .put(&row, write("slow"), Context::empty(), quorum)
        .await;
    assert!(
        matches!(
            outcome,
            Err(ClientError::Request(RequestError::Timeout {
                acknowledged: 1,
                ..
            }))
        ),
        "{outcome:?}"
    );

    // Healed: QUORUM works again, and the last write wins over what node1
    // wrote while cut off (the same coordinator saw them all).
    cluster.fault_node1(None).await;
    let written = client
        .put(&row, write("healed"), Context::empty(), quorum)
        .await
        .unwrap();
    assert!(written.receipt.acknowledged.len() >= 2);
    let read = client.get(&row, ConsistencyLevel::All).await.unwrap();
    assert_eq!(read.siblings.len(), 1, "{read:?}");
    assert_eq!(read.siblings[0].columns, write("healed"));

    for node in cluster.nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_answers_overloaded_at_once_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 2).await;
    let nodes = &cluster.nodes;
    let mut config = ClientConfig::new(vec![nodes[0].client_address()], cluster.ca_pem.clone());
    config.token_aware = false;
    let client = std::sync::Arc::new(Client::connect(config).await.unwrap());
    // node1's replicas answer after 600 ms, past the 300 ms budget: each
    // QUORUM write holds one of node1's two slots for 300 ms.
    cluster.fault_node1(Some(600)).await;
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..8 {
        let client = client.clone();
        writes.spawn(async move {
            let row = RowAddress::new("kv", PartitionKey::new(format!("k{i}")).unwrap());
            let started = Instant::now();
            let outcome = client
                .put(&row, write("v"), Context::empty(), ConsistencyLevel::Quorum)
                .await;
            (outcome, started.elapsed())
        });
    }
    let (mut overloaded, mut timed_out) = (0, 0);
    while let Some(joined) = writes.join_next().await {
        match joined.unwrap() {
            (Err(ClientError::Request(RequestError::Overloaded { reason })), took) => {
                assert!(!reason.is_empty());
                // Refused at once, not after waiting for a slot.
                assert!(
                    took < Duration::from_millis(250),
                    "Overloaded after {took:?}"
                );
                overloaded += 1;
            }
            (Err(ClientError::Request(RequestError::Timeout { .. })), _) => timed_out += 1,
            (other, _) => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(timed_out, 2, "two slots, two writes in progress");
    assert_eq!(overloaded, 6);

    // The slots free up and the node serves again.
    cluster.fault_node1(None).await;
    let row = RowAddress::new("kv", PartitionKey::new(b"after".to_vec()).unwrap());
    client
        .put(
            &row,
            write("ok"),
            Context::empty(),
            ConsistencyLevel::Quorum,
        )
        .await
        .unwrap();
    for node in cluster.nodes {
        node.shutdown().await.unwrap();
    }
}
