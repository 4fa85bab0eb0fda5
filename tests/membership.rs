//! Membership by gossip over real processes: nodes that know only a seed
//! form one ring, agree on `ringdb status`, and see a killed node go down
//! and come back.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, DEADLINE, LIBFAKETIME, columns, ring_of, row, text_of, wait_until};
use ringdb::client::{ClientError, ConsistencyLevel, Context, NodeStatus, RequestError};
use ringdb::ring::{NodeId, Token};
use tokio::time::Instant;

use ConsistencyLevel::Quorum;

/// What every node must agree on about each node: status and tokens.
fn agreed(nodes: &[NodeStatus]) -> BTreeMap<String, (String, Vec<Token>, Option<String>)> {
    nodes
        .iter()
        .map(|n| {
            let what = (
                n.status.clone(),
                n.tokens.clone(),
                n.internode_address.clone(),
            );
            (n.id.to_string(), what)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_that_know_only_a_seed_form_one_ring_and_agree_on_status() {
    let cluster = Cluster::start(3);
    // Only a seed list: no node's config names the others.
    for n in 1..=3 {
        let config = cluster.config(n);
        assert_eq!(
            config.cluster.seeds,
            vec![cluster.config(1).listen_internode]
        );
    }
    let mut views = Vec::new();
    for n in 1..=3 {
        let status = cluster.client(n).await.status().await.unwrap();
        assert_eq!(status.answered_by.to_string(), format!("node{n}"));
        assert_eq!(status.nodes.len(), 3, "{status:?}");
        for node in &status.nodes {
            assert!(node.up, "node{n} sees {} down", node.id);
            assert_eq!(node.status, "Normal");
            assert_eq!(node.tokens.len(), 16);
            // Three nodes, replication factor 3: each holds everything.
            assert!((node.owns - 1.0).abs() < 1e-9, "{node:?}");
        }
        views.push(agreed(&status.nodes));
    }
    assert_eq!(views[0], views[1]);
    assert_eq!(views[1], views[2]);
    // Tokens are distinct: the joining nodes split the ring they found.
    let mut all: Vec<Token> = views[0].values().flat_map(|v| v.1.clone()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 48);

    // The command a user runs says the same, through each node.
    for n in 1..=3 {
        let output = Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .args(["status", "--host"])
            .arg(cluster.client_address(n).to_string())
            .arg("--ca")
            .arg(cluster.dir().join("ca.pem"))
            .output()
            .unwrap();
        assert!(output.status.success());
        let text = String::from_utf8(output.stdout).unwrap();
        for peer in 1..=3 {
            let line = text
                .lines()
                .find(|l| l.split_whitespace().nth(1) == Some(&format!("node{peer}")))
                .unwrap_or_else(|| panic!("no line for node{peer} in:\n{text}"));
            assert!(line.starts_with("UN "), "{line}");
            assert!(line.contains(&cluster.config(peer).listen_internode.to_string()));
        }
        assert!(text.contains(&format!("as seen by node{n}")), "{text}");
    }
}

/// Whether node `n` sees node `peer` up, by its status.
async fn sees_up(cluster: &Cluster, n: usize, peer: usize) -> Option<bool> {
    let status = cluster.client(n).await.status().await.ok()?;
    let name = format!("node{peer}");
    status
        .nodes
        .iter()
        .find(|node| node.id.as_str() == name)
        .map(|node| node.up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_down_everywhere_within_10_s_and_up_within_10_s_of_restart() {
    let mut cluster = Cluster::start(3);
    cluster.kill(3).await;
    let killed = Instant::now();
    wait_until("node1 and node2 see node3 down", DEADLINE, || async {
        sees_up(&cluster, 1, 3).await == Some(false) && sees_up(&cluster, 2, 3).await == Some(false)
    })
    .await;
    let down_after = killed.elapsed();
    assert!(
        down_after < Duration::from_secs(10),
        "down after {down_after:?}"
    );

    cluster.restart(3);
    let restarted = Instant::now();
    wait_until("every node sees node3 up", DEADLINE, || async {
        sees_up(&cluster, 1, 3).await == Some(true)
            && sees_up(&cluster, 2, 3).await == Some(true)
            && sees_up(&cluster, 3, 1).await == Some(true)
            && sees_up(&cluster, 3, 2).await == Some(true)
    })
    .await;
    let up_after = restarted.elapsed();
    assert!(up_after < Duration::from_secs(10), "up after {up_after:?}");
    println!("node3 seen down {down_after:?} after SIGKILL, up {up_after:?} after its restart");
}

/// Runs `ringdb start` for node `n` and waits (with a deadline) for it to
/// exit by itself; returns its status and what it printed on stderr.
async fn run_node_until_exit(cluster: &Cluster, n: usize) -> (std::process::ExitStatus, String) {
    let node = tokio::process::Command::new(env!("CARGO_BIN_EXE_ringdb"))
        .arg("start")
        .arg("--config")
        .arg(cluster.dir().join(format!("node{n}/node.toml")))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(DEADLINE, node.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("node{n} kept running"))
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Checks that `node`, read alone, holds every key of `written` it
/// replicates in the ring as node1 sees it; returns how many it holds.
async fn holds_what_it_replicates(cluster: &Cluster, node: usize, written: &Expected) -> usize {
    let (ring, replication) = ring_of(cluster, 1).await;
    let id = NodeId::new(format!("node{node}"));
    assert!(
        ring.members().contains_key(&id),
        "node{node} is not in the ring"
    );
    let alone = cluster.client(node).await;
    let mut held = 0;
    for (key, value) in written {
        if ring.replicas(row(key).token(), &replication).contains(&id) {
            let read = alone.local_get(&row(key)).await.unwrap();
            let want: Vec<String> = value.iter().cloned().collect();
            assert_eq!(text_of(&read), want, "{key} on {id}");
            held += 1;
        }
    }
    held
}

/// The state every acknowledged operation left a key in: its value, or
/// `None` once deleted.
type Expected = BTreeMap<String, Option<String>>;

/// QUORUM writes from `writers` tasks until stopped, each on keys of its
/// own: a new key, an overwrite of an older key (with the context its last
/// write returned), now and then a delete of one, and a read. Every
/// acknowledged operation is recorded; a key whose operation failed in a
/// way that may have applied it (a timeout) is set aside as uncertain.
struct Load {
    stop: Arc<AtomicBool>,
    expected: Arc<Mutex<Expected>>,
    tasks: tokio::task::JoinSet<(u64, u64)>,
}

impl Load {
    async fn start(cluster: &Cluster, writers: usize) -> Load {
        let client = Arc::new(cluster.token_aware_client().await);
        let stop = Arc::new(AtomicBool::new(false));
        let expected = Arc::new(Mutex::new(BTreeMap::new()));
        let mut tasks = tokio::task::JoinSet::new();
        let round: u64 = rand::random();
        for w in 0..writers {
            let (client, stop, expected) = (client.clone(), stop.clone(), expected.clone());
            tasks.spawn(async move {
                let (mut ok, mut failed) = (0, 0);
                let mut contexts: BTreeMap<String, Context> = BTreeMap::new();
                let mut uncertain = std::collections::BTreeSet::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load-{round}-{w}-{i}");
                    let mut ops = vec![(key, Some(format!("v{i}")))];
                    if i > 0 {
                        ops.push((format!("load-{round}-{w}-{}", i / 2), Some(format!("o{i}"))));
                    }
                    if i % 3 == 2 {
                        ops.push((format!("load-{round}-{w}-{}", i / 3), None));
                    }
                    i += 1;
                    for (key, value) in ops {
                        if uncertain.contains(&key) {
                            continue;
                        }
                        // A key never acknowledged starts without a context.
                        let context = contexts.get(&key).cloned().unwrap_or_default();
                        let outcome = match &value {
                            Some(v) => client.put(&row(&key), columns(v), context, Quorum).await,
                            None => client.delete(&row(&key), context, Quorum).await,
                        };
                        match outcome {
                            Ok(written) => {
                                ok += 1;
                                contexts.insert(key.clone(), written.context);
                                expected.lock().unwrap().insert(key, value);
                            }
                            Err(ClientError::Request(RequestError::Unavailable { .. })) => {
                                failed += 1;
                            }
                            Err(_) => {
                                // Maybe applied: the key's state is unknown.
                                failed += 1;
                                contexts.remove(&key);
                                expected.lock().unwrap().remove(&key);
                                uncertain.insert(key);
                            }
                        }
                    }
                    // A read of something written earlier, so reads run too.
                    let _ = client
                        .get(&row(&format!("load-{round}-{w}-{}", i / 2)), Quorum)
                        .await;
                }
                (ok, failed)
            });
        }
        Load {
            stop,
            expected,
            tasks,
        }
    }

    async fn finish(mut self) -> (Expected, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut ok, mut failed) = (0, 0);
        while let Some(joined) = self.tasks.join_next().await {
            let (o, f) = joined.unwrap();
            ok += o;
            failed += f;
        }
        let expected = self.expected.lock().unwrap().clone();
        (expected, ok, failed)
    }
}

/// Every key as its last acknowledged operation left it, at QUORUM and on
/// each of its replicas read alone: the value, or nothing once deleted.
async fn check_every_key(cluster: &Cluster, via: usize, expected: &Expected) {
    let (ring, replication) = ring_of(cluster, via).await;
    let client = cluster.token_aware_client().await;
    let mut pinned = BTreeMap::new();
    for n in 1..=cluster.len() {
        if ring
            .members()
            .contains_key(&NodeId::new(format!("node{n}")))
        {
            pinned.insert(format!("node{n}"), cluster.client(n).await);
        }
    }
    let (mut values, mut deleted) = (0, 0);
    for (key, value) in expected {
        let want: Vec<String> = value.iter().cloned().collect();
        let read = client.get(&row(key), Quorum).await.unwrap();
        assert_eq!(text_of(&read), want, "{key} at QUORUM");
        let replicas = ring.replicas(row(key).token(), &replication);
        assert_eq!(replicas.len(), replication.total_factor());
        for replica in replicas {
            let local = pinned[replica.as_str()].local_get(&row(key)).await.unwrap();
            assert_eq!(text_of(&local), want, "{key} on its replica {replica}");
        }
        if value.is_some() {
            values += 1;
        } else {
            deleted += 1;
        }
    }
    println!("checked {values} values and {deleted} deletes on every replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_decommissions_and_removals_under_load_lose_no_acknowledged_write() {
    let mut cluster = Cluster::start(3);
    // Data before any change, written at ALL.
    let client = cluster.token_aware_client().await;
    let mut written: Expected = BTreeMap::new();
    for i in 0..600 {
        let (key, value) = (format!("before-{i}"), format!("b{i}"));
        client
            .put(
                &row(&key),
                columns(&value),
                Context::empty(),
                ConsistencyLevel::All,
            )
            .await
            .unwrap();
        written.insert(key, Some(value));
    }

    // A fourth node joins while a QUORUM load runs.
    let load = Load::start(&cluster, 6).await;
    let started = Instant::now();
    let node4 = cluster.add_node();
    let join_took = started.elapsed();
    let (acknowledged, ok, failed) = load.finish().await;
    println!(
        "join of node4 took {join_took:?}; load during it: {ok} acknowledged, {failed} failed"
    );
    assert!(ok > 0);
    written.extend(acknowledged);
    // node4 alone holds every key it replicates.
    check_every_key(&cluster, 1, &written).await;
    let held = holds_what_it_replicates(&cluster, node4, &written).await;
    assert!(
        held > written.len() / 2,
        "node4 replicates {held} of {}",
        written.len()
    );

    // node2 leaves while the load runs: every key keeps its RF copies.
    let load = Load::start(&cluster, 6).await;
    let summary = cluster
        .client(2)
        .await
        .decommission(Duration::from_secs(120))
        .await
        .unwrap();
    let (acknowledged, ok, failed) = load.finish().await;
    println!("{summary}; load during it: {ok} acknowledged, {failed} failed");
    written.extend(acknowledged);
    wait_until("node1 sees node2 left", DEADLINE, || async {
        ring_of(&cluster, 1).await.0.len() == 3
    })
    .await;
    check_every_key(&cluster, 1, &written).await;
    // Stopped and started again, node2 refuses to rejoin with stale data.
    cluster.kill(2).await;
    let (status, stderr) = run_node_until_exit(&cluster, 2).await;
    assert!(!status.success());
    assert!(stderr.contains("was decommissioned"), "{stderr}");

    // A fifth node joins, then dies, and is removed: its ranges are back at
    // RF copies on the survivors.
    cluster.add_node();
    cluster.kill(5).await;
    wait_until("node1 sees node5 down", DEADLINE, || async {
        sees_up(&cluster, 1, 5).await == Some(false)
    })
    .await;
    let summary = cluster
        .client(1)
        .await
        .remove_node(&NodeId::new("node5"), Duration::from_secs(120))
        .await
        .unwrap();
    println!("{summary}");
    for n in [1, 3, 4] {
        wait_until("the removal reached every node", DEADLINE, || async {
            ring_of(&cluster, n).await.0.len() == 3
        })
        .await;
    }
    check_every_key(&cluster, 1, &written).await;
    // Started again with its old data, node5 hears it was removed and
    // stops; after that it refuses to start.
    let (status, stderr) = run_node_until_exit(&cluster, 5).await;
    assert!(!status.success());
    let log = std::fs::read_to_string(cluster.dir().join("node5/node.log")).unwrap_or_default();
    assert!(
        stderr.contains("removed from the cluster") || log.contains("removed from the cluster"),
        "{stderr}"
    );
    let (status, stderr) = run_node_until_exit(&cluster, 5).await;
    assert!(!status.success());
    assert!(stderr.contains("this node was removed"), "{stderr}");

    // `ringdb status` shows the nodes that left (node2) and were removed
    // (node5) for three days, as Cassandra does, then hides them unless
    // asked with --all (four days on, by a fake clock for the command).
    // When node1 saw them go outlives its restart: restarted two days on,
    // a time it forgot and noted again would be only two days old.
    cluster.kill(1).await;
    cluster.restart_with_env(
        1,
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME", "+2d"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    cluster.wait_connected(1, &[3, 4]).await;
    let row_of = |text: &str, node: &str| {
        text.lines()
            .find(|line| line.split_whitespace().nth(1) == Some(node))
            .map(|line| line.split_whitespace().next().unwrap_or("").to_string())
    };
    let now = cluster.status_text(1);
    assert_eq!(row_of(&now, "node2").as_deref(), Some("DL"), "{now}");
    assert_eq!(row_of(&now, "node5").as_deref(), Some("DR"), "{now}");
    assert!(!now.contains("not shown"), "{now}");
    let later = [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME", "+4d"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let four_days_on = cluster.status_text_with(1, &[], &later);
    assert_eq!(row_of(&four_days_on, "node2"), None, "{four_days_on}");
    assert_eq!(row_of(&four_days_on, "node5"), None, "{four_days_on}");
    assert!(row_of(&four_days_on, "node4").is_some(), "{four_days_on}");
    assert!(
        four_days_on.contains("three days ago; --all shows them): node2, node5"),
        "{four_days_on}"
    );
    let all = cluster.status_text_with(1, &["--all"], &later);
    assert_eq!(row_of(&all, "node2").as_deref(), Some("DL"), "{all}");
    assert_eq!(row_of(&all, "node5").as_deref(), Some("DR"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_changes_are_refused_when_unsafe_or_while_another_is_in_progress() {
    let mut cluster = Cluster::start(3);
    let error = cluster
        .client(1)
        .await
        .remove_node(&NodeId::new("node2"), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("is up"), "{error}");
    // Three nodes for replication factor 3: nobody can leave.
    let error = cluster
        .client(3)
        .await
        .decommission(Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("add a node first"), "{error}");

    // While node5 joins, node3 (dead) cannot be removed. node3 gives some
    // of node5's ranges up: node5 may stream them from another replica
    // only when told to.
    cluster.add_node();
    cluster.kill(3).await;
    wait_until("node1 sees node3 down", DEADLINE, || async {
        sees_up(&cluster, 1, 3).await == Some(false)
    })
    .await;
    let dir = cluster.dir().to_path_buf();
    let adding = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .args([
                "dev",
                "--add",
                "--set",
                "streaming.consistent_range_movement=false",
                "--dir",
            ])
            .arg(dir)
            .output()
            .unwrap()
    });
    wait_until("node1 sees node5 joining", DEADLINE, || async {
        let Ok(status) = cluster.client(1).await.status().await else {
            return false;
        };
        status
            .nodes
            .iter()
            .any(|n| n.id.as_str() == "node5" && n.status == "Joining" && !n.tokens.is_empty())
    })
    .await;
    let error = cluster
        .client(1)
        .await
        .remove_node(&NodeId::new("node3"), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("another topology change is in progress: node5 is Joining"),
        "{error}"
    );
    let output = adding.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    cluster.adopt_added_node();
    // Once node5 is normal, the removal goes ahead.
    cluster
        .client(1)
        .await
        .remove_node(&NodeId::new("node3"), Duration::from_secs(60))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_killed_midway_resumes_where_it_stopped() {
    let mut cluster = Cluster::start(3);
    // 12,000 keys, written by 32 writers at QUORUM.
    let client = Arc::new(cluster.token_aware_client().await);
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..32 {
        let client = client.clone();
        writers.spawn(async move {
            let mut written = Vec::new();
            for i in (w..12_000).step_by(32) {
                let (key, value) = (format!("k{i}"), format!("v{i}"));
                client
                    .put(&row(&key), columns(&value), Context::empty(), Quorum)
                    .await
                    .unwrap();
                written.push((key, Some(value)));
            }
            written
        });
    }
    let mut written: Expected = BTreeMap::new();
    while let Some(batch) = writers.join_next().await {
        written.extend(batch.unwrap());
    }

    // node4, configured by hand, streaming at most 0.5 MiB/s so that its
    // bootstrap (about 2 MiB) can be killed in the middle.
    let dir = cluster.dir().to_path_buf();
    let certified = Command::new(env!("CARGO_BIN_EXE_ringdb"))
        .args(["cert", "--dir"])
        .arg(&dir)
        .arg("node4")
        .output()
        .unwrap();
    assert!(certified.status.success());
    let sockets: Vec<std::net::UdpSocket> = (0..2)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<_> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    drop(sockets);
    let tls = ringdb::node::config::TlsFiles {
        ca_certificate: "../ca.pem".into(),
        certificate: "../node4.pem".into(),
        key: "../node4.key".into(),
    };
    let mut config =
        ringdb::Config::new(NodeId::new("node4"), "data".into(), ports[0], ports[1], tls);
    config.cluster.name = cluster.config(1).cluster.name.clone();
    config.cluster.seeds = cluster.config(1).cluster.seeds.clone();
    config.streaming.max_mib_per_sec = 0.5;
    std::fs::create_dir_all(dir.join("node4")).unwrap();
    std::fs::write(dir.join("node4/node.toml"), config.to_toml()).unwrap();
    let node4 = cluster.adopt_added_node();
    cluster.restart(node4);

    let log = dir.join("node4/node.log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("node4 has streamed its first range", DEADLINE, || async {
        read_log().contains("bootstrap streaming ranges=")
    })
    .await;
    cluster.kill(node4).await;
    assert!(
        !read_log().contains("bootstrap streaming complete"),
        "the bootstrap finished before it could be interrupted"
    );

    cluster.restart(node4);
    wait_until("node1 sees node4 normal and up", DEADLINE, || async {
        let Ok(status) = cluster.client(1).await.status().await else {
            return false;
        };
        status
            .nodes
            .iter()
            .any(|n| n.id.as_str() == "node4" && n.status == "Normal" && n.up)
    })
    .await;
    let text = read_log();
    assert!(text.contains("resuming an interrupted bootstrap"), "{text}");
    let resumed_rows: usize = text
        .lines()
        .find(|l| l.contains("bootstrap streaming complete"))
        .and_then(|l| l.split("rows=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the completed bootstrap says how many rows it streamed");

    // node4 alone holds every key it replicates, though the second run
    // streamed only what the first had not.
    let held = holds_what_it_replicates(&cluster, node4, &written).await;
    println!("node4 holds {held} rows; the resumed bootstrap streamed {resumed_rows}");
    assert!(resumed_rows < held, "the resumed bootstrap started over");
}
