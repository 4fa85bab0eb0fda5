//! A cluster of real node processes, over QUIC, with kill -9: the promises
//! of the write and read paths (DESIGN.md) as a user sees them.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, DEADLINE, wait_until};
use ringdb::client::{
    ClientError, ConsistencyLevel, Context, PartitionKey, RequestError, Row, RowAddress, Value,
};
use tokio::time::Instant;

fn row(key: &str) -> RowAddress {
    RowAddress::new("kv", PartitionKey::new(key.as_bytes().to_vec()).unwrap())
}

fn value(text: &str) -> Row {
    Row::from([("value".to_string(), Value::Text(text.to_string()))])
}

fn texts(read: &ringdb::client::ReadResult) -> Vec<String> {
    let mut texts: Vec<String> = read
        .siblings
        .iter()
        .map(|s| match s.columns.get("value") {
            Some(Value::Text(t)) => t.clone(),
            other => panic!("unexpected column {other:?}"),
        })
        .collect();
    texts.sort();
    texts
}

use ConsistencyLevel::{All, One, Quorum};

/// Node settings that leave a replica behind until a read repairs it.
const WITHOUT_REPAIR: &[&str] = &["hints.enabled=false", "antientropy.enabled=false"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_write_through_one_node_is_read_at_quorum_through_another() {
    let cluster = Cluster::start(3);
    let (node1, node2) = (cluster.client(1).await, cluster.client(2).await);
    let written = node1
        .put(&row("k"), value("v1"), Context::empty(), Quorum)
        .await
        .unwrap();
    assert_eq!(
        written.receipt.coordinator.as_ref().unwrap().as_str(),
        "node1"
    );
    assert!(written.receipt.acknowledged.len() >= 2);
    let read = node2.get(&row("k"), Quorum).await.unwrap();
    assert_eq!(texts(&read), ["v1"]);
    assert_eq!(read.receipt.coordinator.as_ref().unwrap().as_str(), "node2");
    assert_eq!(read.receipt.acknowledged.len(), 2);
    // A token-aware client reaches the same data.
    let client = cluster.token_aware_client().await;
    assert_eq!(texts(&client.get(&row("k"), Quorum).await.unwrap()), ["v1"]);
    assert!(
        client
            .get(&row("absent"), Quorum)
            .await
            .unwrap()
            .siblings
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_node_killed_quorum_works_and_all_is_unavailable_at_once() {
    let cluster = Cluster::start(3);
    let node1 = cluster.client(1).await;
    cluster.kill(3).await;
    // QUORUM does not wait for the failure detector.
    for i in 0..20 {
        let key = format!("k{i}");
        node1
            .put(&row(&key), value("v"), Context::empty(), Quorum)
            .await
            .unwrap();
        assert_eq!(texts(&node1.get(&row(&key), Quorum).await.unwrap()), ["v"]);
    }
    cluster.wait_disconnected(1, 3).await;
    for level_is_write in [true, false] {
        let started = Instant::now();
        let outcome = if level_is_write {
            node1
                .put(&row("k0"), value("w"), Context::empty(), All)
                .await
                .map(|_| ())
        } else {
            node1.get(&row("k0"), All).await.map(|_| ())
        };
        let elapsed = started.elapsed();
        assert_eq!(
            outcome,
            Err(ClientError::Request(RequestError::Unavailable {
                required: 3,
                alive: 2
            }))
        );
        assert!(
            elapsed < Duration::from_secs(1),
            "Unavailable took {elapsed:?}"
        );
    }
    // Nothing was written by the refused ALL write.
    assert_eq!(texts(&node1.get(&row("k0"), Quorum).await.unwrap()), ["v"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_repaired_by_an_all_read_and_then_serves_alone() {
    // Read repair alone: no hints, no anti-entropy (tests/repair.rs has those).
    let mut cluster = Cluster::start_with(3, WITHOUT_REPAIR);
    let node1 = cluster.client(1).await;
    cluster.kill(3).await;
    // Counted out first: a write sent on a connection that turns out dead
    // is sent again once it is remade, and node3 may be back by then.
    cluster.wait_disconnected(1, 3).await;
    node1
        .put(&row("k"), value("while-down"), Context::empty(), Quorum)
        .await
        .unwrap();
    cluster.restart(3);
    // Once node3 has said hello to the others, they have dropped their
    // connections to its previous life; then node1 redials it.
    cluster.wait_connected(3, &[1, 2]).await;
    cluster.wait_connected(1, &[2, 3]).await;
    let read = node1.get(&row("k"), All).await.unwrap();
    assert_eq!(texts(&read), ["while-down"]);
    assert!(
        read.receipt.repaired.iter().any(|n| n.as_str() == "node3"),
        "node3 missed the write and must be repaired: {:?}",
        read.receipt
    );
    cluster.kill(1).await;
    cluster.kill(2).await;
    let node3 = cluster.client(3).await;
    let alone = node3.get(&row("k"), One).await.unwrap();
    assert_eq!(texts(&alone), ["while-down"]);
    assert_eq!(alone.receipt.acknowledged.len(), 1);
    assert_eq!(alone.receipt.acknowledged[0].as_str(), "node3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_through_two_coordinators_are_siblings_until_a_write_with_context() {
    // Read repair alone: no hints, no anti-entropy (tests/repair.rs has those).
    let mut cluster = Cluster::start_with(3, WITHOUT_REPAIR);
    let node1 = cluster.client(1).await;
    // node2 is down while node1 coordinates the first write, so the second
    // write's coordinator, node2, has not seen it: the writes are concurrent.
    cluster.kill(2).await;
    node1
        .put(&row("k"), value("red"), Context::empty(), Quorum)
        .await
        .unwrap();
    cluster.restart(2);
    cluster.wait_connected(2, &[1, 3]).await;
    cluster.wait_connected(1, &[2, 3]).await;
    cluster.wait_connected(3, &[1, 2]).await;
    let node2 = cluster.client(2).await;
    node2
        .put(&row("k"), value("blue"), Context::empty(), Quorum)
        .await
        .unwrap();
    let read = node1.get(&row("k"), Quorum).await.unwrap();
    assert_eq!(texts(&read), ["blue", "red"]);
    let writers: Vec<&str> = read.siblings.iter().map(|s| s.writer.as_str()).collect();
    assert!(
        writers.iter().any(|w| w.starts_with("node1@")),
        "{writers:?}"
    );
    assert!(
        writers.iter().any(|w| w.starts_with("node2@")),
        "{writers:?}"
    );

    let node3 = cluster.client(3).await;
    node3
        .put(&row("k"), value("purple"), read.context, Quorum)
        .await
        .unwrap();
    assert_eq!(texts(&node1.get(&row("k"), All).await.unwrap()), ["purple"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_is_not_undone_by_a_replica_that_missed_it() {
    // Read repair alone: no hints, no anti-entropy (tests/repair.rs has those).
    let mut cluster = Cluster::start_with(3, WITHOUT_REPAIR);
    let node1 = cluster.client(1).await;
    node1
        .put(&row("k"), value("doomed"), Context::empty(), All)
        .await
        .unwrap();
    cluster.kill(3).await;
    // Counted out first: a delete sent on a connection that turns out dead
    // is sent again once it is remade, and node3 may be back by then.
    cluster.wait_disconnected(1, 3).await;
    let read = node1.get(&row("k"), Quorum).await.unwrap();
    node1.delete(&row("k"), read.context, Quorum).await.unwrap();
    cluster.restart(3);
    cluster.wait_connected(3, &[1, 2]).await;
    // node3 still holds the value; reading through it at ALL merges the
    // tombstone in, and repairs node3 rather than resurrecting the value.
    let node3 = cluster.client(3).await;
    let read = node3.get(&row("k"), All).await.unwrap();
    assert!(read.siblings.is_empty(), "deleted row came back: {read:?}");
    assert!(read.receipt.repaired.iter().any(|n| n.as_str() == "node3"));
    cluster.kill(1).await;
    cluster.kill(2).await;
    let alone = node3.get(&row("k"), One).await.unwrap();
    assert!(alone.siblings.is_empty(), "node3 alone returned {alone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9_of_all_nodes() {
    let mut cluster = Cluster::start(3);
    let client = Arc::new(cluster.token_aware_client().await);
    let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..16 {
        let (client, acknowledged) = (client.clone(), acknowledged.clone());
        writers.spawn(async move {
            for i in 0.. {
                let key = format!("w{writer}-{i}");
                let text = format!("value of {key}");
                match client
                    .put(&row(&key), value(&text), Context::empty(), Quorum)
                    .await
                {
                    Ok(_) => {
                        acknowledged.lock().unwrap().insert(key, text);
                    }
                    Err(_) => return,
                }
            }
        });
    }
    wait_until("500 writes are acknowledged", DEADLINE, || {
        let count = acknowledged.lock().unwrap().len();
        async move { count >= 500 }
    })
    .await;
    for n in 1..=3 {
        let pid_file = cluster.dir().join(format!("node{n}/pid"));
        let pid: i32 = std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
    for n in 1..=3 {
        cluster.kill(n).await;
    }
    while writers.join_next().await.is_some() {}
    let acknowledged = acknowledged.lock().unwrap().clone();
    for n in 1..=3 {
        cluster.restart(n);
    }
    for n in 1..=3 {
        cluster.wait_connected(n, &[1, 2, 3]).await;
    }
    let reader = cluster.token_aware_client().await;
    for (key, text) in &acknowledged {
        let read = reader.get(&row(key), Quorum).await.unwrap();
        assert_eq!(
            texts(&read),
            std::slice::from_ref(text),
            "acknowledged write {key} lost"
        );
    }
    eprintln!(
        "{} acknowledged writes all readable after kill -9 of every node",
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_certificate_from_the_cluster_ca_cannot_connect_or_send() {
    use ringdb::client::transport::Multiplexed;
    use ringdb::node::causality::{ActorId, DvvSet, VersionVector};
    use ringdb::node::storage::{RowVersion, encode_row};
    use ringdb::node::tls::ClusterCa;
    use ringdb::proto::{
        ClusteringKey, MAX_FRAME_BYTES, PeerReply, PeerRequest, RowId, VersionedRow,
    };
    use ringdb::ring::NodeId;

    let cluster = Cluster::start(3);
    let target = cluster.config(1).listen_internode;
    let rogue_ca = ClusterCa::generate("rogue").unwrap();
    let real_ca = ClusterCa::from_pem(
        &cluster.ca(),
        &std::fs::read_to_string(cluster.dir().join("ca.key")).unwrap(),
    )
    .unwrap();
    let attempts = [
        (
            "a stranger signed by another CA",
            rogue_ca.issue(&NodeId::new("node4")).unwrap(),
        ),
        (
            "an impersonator of node2 signed by another CA",
            rogue_ca.issue(&NodeId::new("node2")).unwrap(),
        ),
        (
            "a node of the cluster CA that has not joined",
            real_ca.issue(&NodeId::new("node4")).unwrap(),
        ),
    ];
    let evil = DvvSet::new().update(
        &VersionVector::new(),
        &ActorId {
            node: NodeId::new("node2"),
            epoch: 1,
        },
        RowVersion {
            timestamp_micros: 0,
            row: Some(value("evil")),
        },
    );
    for (who, mut certificate) in attempts {
        // It trusts the real CA, so only the node's verdict on it matters.
        certificate.ca_pem = cluster.ca();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let request = PeerRequest::Replicate {
            row: RowId {
                table: ringdb::node::table_id("kv").unwrap(),
                partition: PartitionKey::new(b"k".to_vec()).unwrap(),
                clustering: ClusteringKey::empty(),
            },
            versions: VersionedRow(encode_row(&evil)),
        };
        let outcome: Result<PeerReply, String> = async {
            let config = certificate.client_config().map_err(|e| e.to_string())?;
            let connection = endpoint
                .connect_with(config, target, "node1")
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let peer = Multiplexed::<PeerRequest, PeerReply>::open(connection, MAX_FRAME_BYTES)
                .await
                .map_err(|e| e.to_string())?;
            peer.call(request, Duration::from_secs(2))
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        assert!(outcome.is_err(), "{who} was served: {outcome:?}");
        eprintln!("{who}: refused ({})", outcome.unwrap_err());
    }
    let read = cluster.client(1).await.get(&row("k"), All).await.unwrap();
    assert!(read.siblings.is_empty(), "a refused peer wrote {read:?}");
}
