//! Three nodes in one process over real QUIC on loopback, with the
//! transport's fault hook cutting and delaying messages between them.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use ringdb_client::{Client, ClientConfig, ClientError};
use ringdb_node::config::{RequestConfig, TlsFiles};
use ringdb_node::network::Fault;
use ringdb_node::tls::ClusterCa;
use ringdb_node::{Config, Node, NodeHandle};
use ringdb_proto::{ConsistencyLevel, Context, PartitionKey, RequestError, Row, RowAddress, Value};
use ringdb_ring::NodeId;
use tokio::time::Instant;

/// Three nodes with a 300 ms request timeout and at most `max_in_flight`
/// requests in progress per client connection.
async fn start_cluster(dir: &std::path::Path, max_in_flight: usize) -> (Vec<NodeHandle>, String) {
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
    (nodes, ca.certificate_pem().to_string())
}

fn write(text: &str) -> Row {
    Row::from([("value".to_string(), Value::Text(text.into()))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_delayed_links_time_out_writes_and_healed_links_serve_them() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, ca) = start_cluster(dir.path(), 1024).await;
    let mut config = ClientConfig::new(vec![nodes[0].client_address()], ca);
    config.token_aware = false;
    let client = Client::connect(config).await.unwrap();
    let row = RowAddress::new("kv", PartitionKey::new(b"k".to_vec()).unwrap());
    let quorum = ConsistencyLevel::Quorum;

    // node1 cut off from both peers: connections are up, so the write is
    // sent, and it is a timeout (not Unavailable) with only node1's ack.
    for peer in ["node2", "node3"] {
        nodes[0].faults().set(NodeId::new(peer), Fault::cut());
    }
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
    for peer in ["node2", "node3"] {
        let delay = Fault::delayed(Duration::from_millis(600));
        nodes[0].faults().set(NodeId::new(peer), delay);
    }
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
    nodes[0].faults().clear_all();
    let written = client
        .put(&row, write("healed"), Context::empty(), quorum)
        .await
        .unwrap();
    assert!(written.receipt.acknowledged.len() >= 2);
    let read = client.get(&row, ConsistencyLevel::All).await.unwrap();
    assert_eq!(read.siblings.len(), 1, "{read:?}");
    assert_eq!(read.siblings[0].columns, write("healed"));

    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_answers_overloaded_at_once_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, ca) = start_cluster(dir.path(), 2).await;
    let mut config = ClientConfig::new(vec![nodes[0].client_address()], ca);
    config.token_aware = false;
    let client = std::sync::Arc::new(Client::connect(config).await.unwrap());
    // node1's replicas answer after 600 ms, past the 300 ms budget: each
    // QUORUM write holds one of node1's two slots for 300 ms.
    for peer in ["node2", "node3"] {
        let delay = Fault::delayed(Duration::from_millis(600));
        nodes[0].faults().set(NodeId::new(peer), delay);
    }
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
    nodes[0].faults().clear_all();
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
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}
