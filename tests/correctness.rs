//! The review of the write, read, repair and topology paths (issue 11), as
//! tests over real processes: each shows one way ringdb used to lose an
//! acknowledged write, bring a delete back, or let one request break a row,
//! and that it no longer does.

mod common;

use std::time::Duration;

use common::raw::{self, send_raw};
use common::{Cluster, DEADLINE, columns, ring_of, row, text_of, wait_until};
use ringdb::client::{
    Client, ClientError, ConsistencyLevel, Context, PartitionKey, RequestError, Row, RowAddress,
    Value, WriteOptions,
};
use ringdb::ring::{NodeId, Token};

use ConsistencyLevel::{All, One, Quorum, Two};

/// Node settings for a short tombstone grace (and the hint window it must cover).
const SHORT_GRACE: &[&str] = &["hints.window_secs=5", "antientropy.tombstone_grace_secs=5"];

/// How long a test waits for the grace of [`SHORT_GRACE`] to pass.
const PAST_THE_GRACE: Duration = Duration::from_millis(5_500);

fn keys(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i}")).collect()
}

fn sorted(mut texts: Vec<String>) -> Vec<String> {
    texts.sort();
    texts
}

/// Runs `ringdb repair` against node `n` until it reports a purged
/// tombstone (the grace must have passed); returns how many it purged.
async fn repair_until_purged(client: &Client, table: Option<&str>) -> u64 {
    let purged = std::sync::atomic::AtomicU64::new(0);
    wait_until("a repair purges the tombstone", DEADLINE, || {
        let purged = &purged;
        async move {
            let summary = client
                .repair(table, Vec::new(), DEADLINE)
                .await
                .expect("repair");
            assert!(summary.ranges_failed.is_empty(), "{summary:?}");
            purged.store(
                summary.tombstones_purged,
                std::sync::atomic::Ordering::Relaxed,
            );
            summary.tombstones_purged > 0
        }
    })
    .await;
    purged.into_inner()
}

/// Item 1: node1 purges a tombstone, then coordinates a new write of the
/// row. It must not reuse a dot that the replicas still holding the
/// tombstone have already seen: they would drop the new value as old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_a_purge_on_one_node_is_not_dropped_as_already_seen() {
    let mut settings = SHORT_GRACE.to_vec();
    settings.push("antientropy.enabled=false");
    let cluster = Cluster::start_with(3, &settings);
    let (node1, node2) = (cluster.client(1).await, cluster.client(2).await);
    node1
        .put(&row("x"), columns("first"), Context::empty(), All)
        .await
        .unwrap();
    node1
        .delete(&row("x"), Context::empty(), All)
        .await
        .unwrap();
    // Only node1 repairs, so only node1 purges (once the grace has passed);
    // node2 and node3 keep the tombstone.
    repair_until_purged(&node1, None).await;
    let written = node1
        .put(&row("x"), columns("again"), Context::empty(), All)
        .await
        .unwrap();
    assert_eq!(written.receipt.acknowledged.len(), 3);
    for level in [Quorum, All] {
        let read = node2.get(&row("x"), level).await.unwrap();
        assert_eq!(text_of(&read), ["again"], "read at {level}");
    }
    for n in 1..=3 {
        let local = cluster.client(n).await.local_get(&row("x")).await.unwrap();
        assert_eq!(text_of(&local), ["again"], "node{n} holds the new write");
    }
}

/// Found in review of item 1's purge: a tombstone that reaches node1 from
/// the last replica it compares in a round may still be missing on one it
/// compared before. Purged at the end of that round, it would let that
/// replica's deleted value come back once the replica holding the
/// tombstone is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_fetched_during_a_repair_round_is_not_purged_in_it() {
    let mut settings = SHORT_GRACE.to_vec();
    settings.extend(["hints.enabled=false", "antientropy.enabled=false"]);
    let mut cluster = Cluster::start_with(3, &settings);
    // A key of a range that node1 compares with node2 before node3.
    let (ring, replication) = ring_of(&cluster, 1).await;
    let key = keys("p", 1000)
        .into_iter()
        .find(|key| {
            let others: Vec<NodeId> = ring
                .replicas(row(key).token(), &replication)
                .into_iter()
                .filter(|node| node.as_str() != "node1")
                .collect();
            others == [NodeId::new("node2"), NodeId::new("node3")]
        })
        .expect("a key whose range node1 compares with node2 first");
    cluster
        .client(1)
        .await
        .put(&row(&key), columns("doomed"), Context::empty(), All)
        .await
        .unwrap();
    // Only node3 sees the delete.
    for n in [1, 2] {
        cluster.kill(n).await;
        cluster.wait_disconnected(3, n).await;
    }
    cluster
        .client(3)
        .await
        .delete(&row(&key), Context::empty(), One)
        .await
        .unwrap();
    tokio::time::sleep(PAST_THE_GRACE).await;
    for n in [1, 2] {
        cluster.restart(n);
    }
    for n in 1..=3 {
        let others: Vec<usize> = (1..=3).filter(|p| *p != n).collect();
        cluster.wait_connected(n, &others).await;
    }
    // node1's round: node2 (the value, as node1 has it), then node3 (the
    // tombstone, fetched).
    let node1 = cluster.client(1).await;
    let summary = node1.repair(None, Vec::new(), DEADLINE).await.unwrap();
    assert!(summary.ranges_failed.is_empty(), "{summary:?}");
    // node3 is lost before it runs a round; node1 and node2 repair each other.
    cluster.kill(3).await;
    for n in [1, 2] {
        cluster.wait_disconnected(n, 3).await;
    }
    node1.repair(None, Vec::new(), DEADLINE).await.unwrap();
    for n in [1, 2] {
        let local = cluster.client(n).await.local_get(&row(&key)).await.unwrap();
        assert!(
            text_of(&local).is_empty(),
            "node{n}: the delete came back: {:?}",
            text_of(&local)
        );
    }
}

/// Item 2: `ringdb repair t` reconciles only table t's rows, so it must
/// purge only table t's tombstones: u's tombstone may still be missing on
/// a replica that holds the deleted value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_of_one_table_purges_only_that_tables_tombstones() {
    let mut settings = SHORT_GRACE.to_vec();
    settings.extend(["hints.enabled=false", "antientropy.enabled=false"]);
    let mut cluster = Cluster::start_with(3, &settings);
    let u_x = RowAddress::new("u", PartitionKey::new(b"x".to_vec()).unwrap());
    let node1 = cluster.client(1).await;
    node1
        .put(&u_x, columns("doomed"), Context::empty(), All)
        .await
        .unwrap();
    cluster.kill(3).await;
    cluster.wait_disconnected(1, 3).await;
    node1.delete(&u_x, Context::empty(), Quorum).await.unwrap();
    tokio::time::sleep(PAST_THE_GRACE).await;
    cluster.restart(3);
    for n in 1..=2 {
        cluster.wait_connected(n, &[3]).await;
    }
    for n in 1..=2 {
        let summary = cluster
            .client(n)
            .await
            .repair(Some("t"), Vec::new(), DEADLINE)
            .await
            .unwrap();
        assert!(summary.ranges_failed.is_empty(), "{summary:?}");
        assert_eq!(summary.tombstones_purged, 0, "node{n}: {summary:?}");
    }
    let node3 = cluster.client(3).await;
    for _ in 0..5 {
        let read = node3.get(&u_x, Quorum).await.unwrap();
        assert!(read.siblings.is_empty(), "the delete came back: {read:?}");
    }
    // A repair of u itself then reconciles node3 and purges everywhere it ran.
    let summary = node1.repair(Some("u"), Vec::new(), DEADLINE).await.unwrap();
    assert!(summary.tombstones_purged >= 1, "{summary:?}");
    assert!(node3.get(&u_x, All).await.unwrap().siblings.is_empty());
}

/// Item 3: after node4 joins, the replica that gave a range up must not
/// keep its copy: deleted and purged on the new replicas, the rows would
/// come back through it when the range returns (node4 decommissioned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_that_returns_after_a_join_and_a_decommission_brings_back_no_purged_row() {
    let mut settings = SHORT_GRACE.to_vec();
    settings.push("antientropy.enabled=false");
    let mut cluster = Cluster::start_with(3, &settings);
    let client = cluster.token_aware_client().await;
    let written = keys("c", 200);
    for key in &written {
        client
            .put(&row(key), columns(key), Context::empty(), All)
            .await
            .unwrap();
    }
    let (before, replication) = ring_of(&cluster, 1).await;
    cluster.add_node();
    let (after, _) = ring_of(&cluster, 1).await;
    assert_eq!(after.len(), 4);
    // The keys some old replica gave up, with that replica.
    let mut given_up: Vec<(String, NodeId)> = Vec::new();
    for key in &written {
        let token = row(key).token();
        let now = after.replicas(token, &replication);
        for old in before.replicas(token, &replication) {
            if !now.contains(&old) {
                given_up.push((key.clone(), old));
            }
        }
    }
    assert!(given_up.len() > 20, "node4 took over some keys");
    // Once the join is complete, those replicas clean the ranges up.
    for (key, old) in &given_up {
        let n: usize = old.as_str()["node".len()..].parse().unwrap();
        let alone = cluster.client(n).await;
        wait_until(
            &format!("{old} no longer holds {key}"),
            DEADLINE,
            || async {
                alone
                    .local_get(&row(key))
                    .await
                    .unwrap()
                    .siblings
                    .is_empty()
            },
        )
        .await;
    }
    // Delete everything on the new replicas; purge after the grace.
    let client = cluster.token_aware_client().await;
    for key in &written {
        client
            .delete(&row(key), Context::empty(), All)
            .await
            .unwrap();
    }
    tokio::time::sleep(PAST_THE_GRACE).await;
    let mut purged = 0;
    for n in 1..=4 {
        let summary = cluster
            .client(n)
            .await
            .repair(None, Vec::new(), DEADLINE)
            .await
            .unwrap();
        assert!(summary.ranges_failed.is_empty(), "{summary:?}");
        purged += summary.tombstones_purged;
    }
    assert!(purged >= written.len() as u64, "purged {purged}");
    // node4 leaves: its ranges return to the replicas that gave them up.
    cluster
        .client(4)
        .await
        .decommission(Duration::from_secs(60))
        .await
        .unwrap();
    wait_until("node1 sees node4 left", DEADLINE, || async {
        ring_of(&cluster, 1).await.0.len() == 3
    })
    .await;
    let client = cluster.token_aware_client().await;
    for n in 1..=3 {
        cluster
            .client(n)
            .await
            .repair(None, Vec::new(), DEADLINE)
            .await
            .unwrap();
    }
    for key in &written {
        let read = client.get(&row(key), All).await.unwrap();
        assert!(read.siblings.is_empty(), "{key} came back: {read:?}");
    }
}

/// Item 4: hints held by a node that leaves are handed over, not dropped.
/// node4 is the sloppy-quorum fallback for node3 (its hints are the only
/// copy node3 will get: anti-entropy is off), and it replays them slowly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommission_hands_the_leaving_nodes_hints_over() {
    let mut cluster = Cluster::start_with(4, &["antientropy.enabled=false"]);
    let (ring, replication) = ring_of(&cluster, 1).await;
    let node4 = NodeId::new("node4");
    // Keys that node1, node2 and node3 replicate (not node4).
    let chosen: Vec<String> = keys("h", 2000)
        .into_iter()
        .filter(|key| {
            let replicas = ring.replicas(row(key).token(), &replication);
            !replicas.contains(&node4) && replicas.contains(&NodeId::new("node1"))
        })
        .take(120)
        .collect();
    assert_eq!(chosen.len(), 120);
    cluster.kill(3).await;
    // The client routes each write to one of its replicas (node1 or node2),
    // and node4 stands in: each must count node3 down, or a coordinator
    // still connected to it sends it the write and hints it itself.
    for n in [1, 2, 4] {
        cluster.wait_disconnected(n, 3).await;
    }
    let node1 = cluster.client(1).await;
    let sloppy = WriteOptions {
        consistency: Quorum,
        sloppy: true,
    };
    let value = |key: &str| format!("{key}:{}", "v".repeat(4096));
    for key in &chosen {
        node1
            .put(&row(key), columns(&value(key)), Context::empty(), sloppy)
            .await
            .unwrap();
    }
    // Every write is hinted for node3: by node4, the fallback, or (when
    // node4's acknowledgement misses the deadline on a loaded machine) by
    // its coordinator.
    let hints_written = |n: usize| {
        let cluster = &cluster;
        async move {
            let client = cluster.client(n).await;
            client.repair_stats().await.unwrap().hints.written
        }
    };
    wait_until("every write is hinted for node3", DEADLINE, || async {
        hints_written(1).await + hints_written(2).await + hints_written(4).await
            == chosen.len() as u64
    })
    .await;
    let at_node4 = hints_written(4).await;
    assert!(
        at_node4 >= 60,
        "node4, the fallback, holds {at_node4} hints"
    );
    // node4 now replays at 1 KiB/s: its hints of 4 KiB would take minutes
    // to reach node3, far longer than the decommission takes.
    cluster.kill(4).await;
    cluster.configure(4, |config| config.hints.replay_kib_per_sec = 1);
    cluster.restart(4);
    cluster.wait_connected(4, &[1, 2]).await;
    cluster.restart(3);
    cluster.wait_connected(4, &[3]).await;
    cluster
        .client(4)
        .await
        .decommission(Duration::from_secs(60))
        .await
        .unwrap();
    let node3 = cluster.client(3).await;
    wait_until(
        "node3 holds every write hinted for it",
        Duration::from_secs(30),
        || {
            let (node3, chosen, value) = (&node3, &chosen, &value);
            async move {
                for key in chosen {
                    if text_of(&node3.local_get(&row(key)).await.unwrap()) != [value(key)] {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;
}

/// Item 5: the context a write returns covers what the writer's context
/// covered and the new version, not a concurrent sibling the writer never saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writes_context_does_not_cover_a_sibling_the_writer_never_saw() {
    let cluster = Cluster::start(3);
    let node1 = cluster.client(1).await;
    let seen = node1.get(&row("k"), Quorum).await.unwrap().context;
    node1
        .put(&row("k"), columns("a"), seen.clone(), Quorum)
        .await
        .unwrap();
    // Concurrent with a: written with the same (older) context.
    let b = node1
        .put(&row("k"), columns("b"), seen, Quorum)
        .await
        .unwrap();
    let read = node1.get(&row("k"), Quorum).await.unwrap();
    assert_eq!(sorted(text_of(&read)), ["a", "b"]);
    // The writer of b replaces b, and only b.
    node1
        .put(&row("k"), columns("c"), b.context, Quorum)
        .await
        .unwrap();
    let read = node1.get(&row("k"), All).await.unwrap();
    assert_eq!(sorted(text_of(&read)), ["a", "c"]);
}

/// Item 6: a delete without a context removes what a read at its level
/// returns, even when its coordinator missed the latest write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_without_context_removes_what_a_read_at_its_level_returns() {
    let mut cluster = Cluster::start_with(3, &["hints.enabled=false", "antientropy.enabled=false"]);
    let node1 = cluster.client(1).await;
    node1
        .put(&row("k"), columns("v1"), Context::empty(), All)
        .await
        .unwrap();
    cluster.kill(3).await;
    cluster.wait_disconnected(1, 3).await;
    node1
        .put(&row("k"), columns("v2"), Context::empty(), Quorum)
        .await
        .unwrap();
    cluster.restart(3);
    cluster.wait_connected(3, &[1, 2]).await;
    cluster.wait_connected(1, &[3]).await;
    // node3, a replica that missed v2, coordinates the delete.
    let node3 = cluster.client(3).await;
    let deleted = node3
        .delete(&row("k"), Context::empty(), Quorum)
        .await
        .unwrap();
    assert_eq!(deleted.receipt.coordinator, Some(NodeId::new("node3")));
    for level in [Quorum, All] {
        let read = node1.get(&row("k"), level).await.unwrap();
        assert!(
            read.siblings.is_empty(),
            "after the delete, at {level}: {read:?}"
        );
    }
}

/// Item 7: a joining node streams each range from the replica that gives it
/// up, so a write acknowledged by two replicas stays on two of the final
/// replicas (a QUORUM of them) even without hints or repair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_streams_from_the_replica_giving_the_range_up() {
    let mut cluster = Cluster::start_with(3, &["hints.enabled=false", "antientropy.enabled=false"]);
    cluster.kill(3).await;
    cluster.wait_disconnected(1, 3).await;
    cluster.wait_disconnected(2, 3).await;
    let client = cluster.token_aware_client().await;
    let written = keys("b", 300);
    for key in &written {
        client
            .put(&row(key), columns(key), Context::empty(), Two)
            .await
            .unwrap();
    }
    // With node3, which gives ranges up, down, a join is refused before the
    // new node announces itself (so nobody counts it as joining), and the
    // refusal says what to do.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_ringdb"))
        .args(["dev", "--add", "--dir"])
        .arg(cluster.dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("the replica that gives it up")
            && stderr.contains("node3 is down")
            && !stderr.contains("announced tokens"),
        "{stderr}"
    );
    std::fs::remove_dir_all(common::node_folder(cluster.dir(), 4)).unwrap();
    cluster.restart(3);
    for n in 1..=3 {
        let others: Vec<usize> = (1..=3).filter(|p| *p != n).collect();
        cluster.wait_connected(n, &others).await;
    }
    cluster.add_node();
    let (ring, replication) = ring_of(&cluster, 1).await;
    assert_eq!(ring.len(), 4);
    let alone: Vec<Client> = {
        let mut clients = Vec::new();
        for n in 1..=4 {
            clients.push(cluster.client(n).await);
        }
        clients
    };
    let mut short = Vec::new();
    for key in &written {
        let mut holders = 0;
        for replica in ring.replicas(row(key).token(), &replication) {
            let n: usize = replica.as_str()["node".len()..].parse().unwrap();
            if text_of(&alone[n - 1].local_get(&row(key)).await.unwrap()) == [key.clone()] {
                holders += 1;
            }
        }
        if holders < 2 {
            short.push((key.clone(), holders));
        }
    }
    assert!(
        short.is_empty(),
        "{} of {} keys are on fewer than 2 of their final replicas: {:?}",
        short.len(),
        written.len(),
        &short[..short.len().min(10)]
    );
}

/// Item 8: a partition key over the limit, sent by a client that skips the
/// constructor's check, is refused and stores nothing; repair still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_the_limit_on_the_wire_is_refused_and_stores_nothing() {
    let cluster = Cluster::start_with(3, &["antientropy.enabled=false"]);
    let request = raw::ClientRequest::Put {
        row: raw::Address {
            table: "kv".into(),
            partition: vec![b'k'; 70_000],
            clustering: Vec::new(),
        },
        columns: columns("too long"),
        context: Vec::new(),
        consistency: All,
    };
    let answer = send_raw(&cluster, 1, request).await;
    assert!(
        matches!(&answer, Err(error) if error.contains("partition key is 70000 bytes")),
        "{answer:?}"
    );
    // The node serves, and every range still repairs.
    let node1 = cluster.client(1).await;
    node1
        .put(&row("after"), columns("fine"), Context::empty(), All)
        .await
        .unwrap();
    let summary = node1.repair(None, Vec::new(), DEADLINE).await.unwrap();
    assert!(summary.ranges_failed.is_empty(), "{summary:?}");
}

/// Item 9: a context is the client's word; it cannot make a counter
/// overflow, nor add actors the row never had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_context_cannot_break_or_bloat_a_row() {
    use ringdb::node::causality::{ActorId, CausalContext};
    let cluster = Cluster::start(3);
    let node1 = cluster.client(1).await;
    node1
        .put(&row("k"), columns("v1"), Context::empty(), All)
        .await
        .unwrap();
    let read = node1.get(&row("k"), All).await.unwrap();
    let (writer, _) = CausalContext::decode(&read.context.0)
        .unwrap()
        .iter()
        .map(|(actor, counter)| (actor.clone(), counter))
        .next()
        .unwrap();
    // The writer's own counter at its limit: the next dot would overflow.
    let overflow = raw::context(vec![(writer.clone(), u64::MAX)]);
    // Ten thousand actors that never wrote the row.
    let flood = raw::context(
        (0..10_000u64)
            .map(|i| {
                let actor = ActorId {
                    node: NodeId::new(format!("fake{i}")),
                    epoch: i,
                };
                (actor, 1_000_000)
            })
            .collect(),
    );
    for (what, context) in [("overflow", overflow), ("flood", flood)] {
        let outcome = node1
            .put(&row("k"), columns(what), Context(context), All)
            .await;
        // Over the context limits: invalid; versions no replica holds are
        // never superseded blind: refused.
        match outcome {
            Err(ClientError::Request(
                RequestError::InvalidRequest { .. } | RequestError::UnreachableContext { .. },
            )) => {}
            Ok(_) => panic!("{what}: a context naming versions nobody holds was accepted"),
            Err(error) => panic!("{what}: {error}"),
        }
        // Whatever happened, the row reads at ALL and stays small.
        let read = node1.get(&row("k"), All).await.unwrap();
        assert!(!read.siblings.is_empty(), "{what}");
        assert!(
            read.context.0.len() < 200,
            "{what}: the row's context is {} bytes",
            read.context.0.len()
        );
    }
    // And normal writes still work through every node.
    for n in 1..=3 {
        let client = cluster.client(n).await;
        let read = client.get(&row("k"), All).await.unwrap();
        client
            .put(&row("k"), columns(&format!("by{n}")), read.context, All)
            .await
            .unwrap();
        assert_eq!(
            text_of(&client.get(&row("k"), All).await.unwrap()),
            [format!("by{n}")]
        );
    }
}

/// A row of about `bytes` bytes.
fn big(bytes: usize) -> Row {
    Row::from([("blob".to_string(), Value::Blob(vec![7; bytes]))])
}

/// Item 10: batches are sized by bytes, so ranges of large rows still
/// repair and stream (each page was 256 or 512 rows, over the 16 MiB frame).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_of_large_rows_repair_and_stream() {
    let mut cluster = Cluster::start_with(3, &["hints.enabled=false", "antientropy.enabled=false"]);
    cluster.kill(3).await;
    cluster.wait_disconnected(1, 3).await;
    let node1 = cluster.client(1).await;
    // One partition, 30 rows of 900 KB: 27 MB in one range.
    let partition = PartitionKey::new(b"large".to_vec()).unwrap();
    let rows: Vec<RowAddress> = (0..30u8)
        .map(|i| RowAddress {
            table: "kv".into(),
            partition: partition.clone(),
            clustering: ringdb::client::ClusteringKey::new(vec![i]).unwrap(),
        })
        .collect();
    for address in &rows {
        node1
            .put(address, big(900_000), Context::empty(), Quorum)
            .await
            .unwrap();
    }
    cluster.restart(3);
    cluster.wait_connected(1, &[3]).await;
    let summary = node1.repair(None, Vec::new(), DEADLINE).await.unwrap();
    assert!(summary.ranges_failed.is_empty(), "{summary:?}");
    assert_eq!(summary.keys_repaired, 30, "{summary:?}");
    let node3 = cluster.client(3).await;
    for address in &rows {
        let local = node3.local_get(address).await.unwrap();
        assert_eq!(local.siblings.len(), 1, "node3 got the row from repair");
    }
    // A fourth node streams the range.
    cluster.add_node();
    let (ring, replication) = ring_of(&cluster, 1).await;
    let node4 = cluster.client(4).await;
    if ring
        .replicas(Token::of(b"large"), &replication)
        .contains(&NodeId::new("node4"))
    {
        for address in &rows {
            assert_eq!(node4.local_get(address).await.unwrap().siblings.len(), 1);
        }
    }
}

/// Item 10: a row's stored size, siblings included, is capped when it is
/// written: a write past the cap is refused and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_would_grow_a_row_past_its_limits_are_refused() {
    let cluster = Cluster::start(3);
    let node1 = cluster.client(1).await;
    let stale = node1.get(&row("s"), All).await.unwrap().context;
    // Each write with the same old context adds a sibling.
    let mut refused = None;
    for i in 0..150 {
        match node1
            .put(&row("s"), columns(&format!("v{i}")), stale.clone(), All)
            .await
        {
            Ok(_) => {}
            Err(ClientError::Request(RequestError::InvalidRequest { reason })) => {
                refused = Some((i, reason));
                break;
            }
            Err(error) => panic!("write {i}: {error}"),
        }
    }
    let (i, reason) = refused.expect("a write past the sibling limit is refused");
    assert!(reason.contains("siblings"), "{reason}");
    let read = node1.get(&row("s"), All).await.unwrap();
    assert_eq!(
        read.siblings.len(),
        i,
        "nothing of the refused write is stored"
    );
    // Resolving the siblings with the read's context works.
    node1
        .put(&row("s"), columns("resolved"), read.context, All)
        .await
        .unwrap();
    assert_eq!(
        text_of(&node1.get(&row("s"), All).await.unwrap()),
        ["resolved"]
    );

    // Bytes: 900 KB siblings stop before the row outgrows its limit.
    let stale = node1.get(&row("b"), All).await.unwrap().context;
    let mut refused = false;
    for i in 0..40 {
        match node1.put(&row("b"), big(900_000), stale.clone(), All).await {
            Ok(_) => {}
            Err(ClientError::Request(RequestError::InvalidRequest { reason })) => {
                assert!(reason.contains("bytes"), "{reason}");
                assert!(i >= 2, "refused at write {i}: {reason}");
                refused = true;
                break;
            }
            Err(error) => panic!("write {i}: {error}"),
        }
    }
    assert!(refused, "a write past the byte limit is refused");
}

/// Item 11: a NaN double is equal to itself, so a row holding one is not
/// repaired again on every read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_holding_nan_is_not_repaired_on_every_read() {
    let cluster = Cluster::start(3);
    let node1 = cluster.client(1).await;
    let nan = Row::from([("value".to_string(), Value::Double(f64::NAN))]);
    node1
        .put(&row("nan"), nan, Context::empty(), All)
        .await
        .unwrap();
    for _ in 0..3 {
        let read = node1.get(&row("nan"), All).await.unwrap();
        assert_eq!(read.siblings.len(), 1);
        assert!(read.receipt.repaired.is_empty(), "{:?}", read.receipt);
    }
}
