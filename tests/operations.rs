//! What an operator relies on, on real node processes: the metrics
//! endpoint Prometheus scrapes, and admin commands that keep working when
//! a node is down.

mod common;

use std::io::Read as _;
use std::net::TcpStream;
use std::time::Duration;

use common::scrape::{http_get, metrics, sample, sample_if_any, try_http_get};
use common::{Cluster, DEADLINE, wait_until};
use ringdb::client::{ConsistencyLevel, Context, PartitionKey, Row, RowAddress, Value};

const PUTS_OK: &str =
    r#"ringdb_client_requests_total{operation="put",consistency="QUORUM",outcome="ok"}"#;
const PUT_LATENCIES: &str =
    r#"ringdb_client_request_duration_seconds_count{operation="put",consistency="QUORUM"}"#;
const REPLICATED: &str = r#"ringdb_peer_requests_total{request="replicate"}"#;

/// Prometheus scrapes each node while a client writes through node1: the
/// request counters and the latency histogram move with the load, the
/// replicas count the writes they were sent, and nothing stays in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_counts_a_load_as_it_runs() {
    let cluster = Cluster::start(3);
    let before = metrics(&cluster, 1);
    assert!(
        before.contains(r#"ringdb_node_info{id="node1",cluster="dev",datacenter="datacenter1""#),
        "{before}"
    );
    assert_eq!(sample_if_any(&before, PUTS_OK), None);
    let replicated_before = sample_if_any(&metrics(&cluster, 2), REPLICATED).unwrap_or(0.0);

    let client = std::sync::Arc::new(cluster.client(1).await);
    let load_before = load_of_node1(&client).await;
    let writer = client.clone();
    // The writer waits, half-way, until the test has seen the counters
    // move: seen during the load, not only at its end.
    let (seen, half_way) = tokio::sync::oneshot::channel::<()>();
    let load = tokio::spawn(async move {
        let client = writer;
        let mut half_way = Some(half_way);
        for i in 0..1000 {
            if i == 500 {
                let _ = half_way.take().expect("once").await;
            }
            let row = RowAddress::new(
                "kv",
                PartitionKey::new(format!("k{i}").into_bytes()).unwrap(),
            );
            let text = format!("{i:01000}");
            let value = Row::from([("value".to_string(), Value::Text(text))]);
            client
                .put(&row, value, Context::empty(), ConsistencyLevel::Quorum)
                .await
                .expect("a QUORUM write with every node up");
        }
    });
    wait_until("node1 counts puts during the load", DEADLINE, || async {
        sample_if_any(&metrics(&cluster, 1), PUTS_OK).is_some_and(|puts| puts > 0.0)
    })
    .await;
    let during = sample(&metrics(&cluster, 1), PUTS_OK);
    assert!(
        during <= 500.0,
        "{during} puts before the writer was let go on"
    );
    seen.send(()).expect("the writer waits");
    load.await.expect("the load ran");

    let after = metrics(&cluster, 1);
    assert_eq!(sample(&after, PUTS_OK), 1000.0, "{after}");
    assert_eq!(sample(&after, PUT_LATENCIES), 1000.0, "{after}");
    assert_eq!(sample(&after, "ringdb_client_requests_in_flight"), 0.0);
    assert_eq!(sample(&after, r#"ringdb_gossip_nodes{state="up"}"#), 3.0);
    // Its failure detector's suspicion of each live peer, under the
    // threshold that would convict it (8 by default).
    for peer in ["node2", "node3"] {
        let phi = sample(&after, &format!(r#"ringdb_gossip_phi{{peer="{peer}"}}"#));
        assert!((0.0..8.0).contains(&phi), "phi of {peer}: {phi}");
    }
    assert_eq!(
        sample_if_any(&after, r#"ringdb_gossip_phi{peer="node1"}"#),
        None
    );
    assert!(
        sample(&after, "ringdb_storage_memtables_bytes") > 0.0,
        "{after}"
    );
    // With RF 3 every write goes to node2 too (a QUORUM write is sent to
    // every replica).
    let replicated = sample(&metrics(&cluster, 2), REPLICATED) - replicated_before;
    assert!(replicated >= 1000.0, "node2 was sent {replicated} writes");

    // `status` shows the 1 MB written as node1's load (it gossips its
    // load every 10 s), whether or not it is flushed to files yet.
    wait_until(
        "node1's load counts the rows written",
        2 * DEADLINE,
        || async { load_of_node1(&client).await >= load_before + 1_000_000 },
    )
    .await;

    let address = cluster.config(1).listen_metrics.unwrap();
    assert_eq!(
        http_get(address, "/health"),
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );
    assert!(http_get(address, "/nothing").0.contains("404"));

    // Connections that send nothing (a port scanner, a stuck scraper) are
    // closed after a few seconds: they do not keep Prometheus out for good.
    let mut silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(address).expect("connect"))
        .collect();
    wait_until(
        "a scrape gets past silent connections",
        DEADLINE,
        || async {
            try_http_get(address, "/metrics").is_some_and(|(status, _)| status.contains("200"))
        },
    )
    .await;
    // And each was closed by the node (no socket held for ever).
    for stream in &mut silent {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut rest = Vec::new();
        assert!(
            stream.read_to_end(&mut rest).is_ok(),
            "a silent connection stays open"
        );
    }
}

/// node1's load as `status` reports it.
async fn load_of_node1(client: &ringdb::client::Client) -> u64 {
    let status = client.status().await.expect("status");
    let node1 = status.nodes.iter().find(|n| n.id.as_str() == "node1");
    node1.and_then(|n| n.load_bytes).unwrap_or(0)
}

/// `ringdb ARGS --dev-dir DIR`: exit code, stdout and stderr.
fn ringdb(cluster: &Cluster, args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringdb"))
        .args(args)
        .arg("--dev-dir")
        .arg(cluster.dir())
        .output()
        .expect("run ringdb");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// With the first node of a dev cluster down, the commands that show the
/// cluster ask the next node, as data commands do; one that acts on a
/// node (decommission) does not quietly act on another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_ask_the_next_node_when_the_first_is_down() {
    let cluster = Cluster::start(3);
    cluster.kill(1).await;
    cluster.wait_convicted(2, 1).await;
    let (code, out, err) = ringdb(&cluster, &["status"]);
    assert_eq!(code, Some(0), "status: {err}");
    let node1 = out
        .lines()
        .find(|l| l.contains("node1"))
        .unwrap_or_default();
    assert!(node1.starts_with("DN"), "{out}");
    assert!(
        out.contains("as seen by node2; replication: 3 replicas (SimpleStrategy)"),
        "{out}"
    );
    let (code, out, err) = ringdb(&cluster, &["info"]);
    assert_eq!(code, Some(0), "info: {err}");
    assert!(
        out.starts_with("ID                : node2") || out.contains(": node3"),
        "{out}"
    );
    let (code, _, err) = ringdb(&cluster, &["ring"]);
    assert_eq!(code, Some(0), "ring: {err}");
    let (code, out, err) = ringdb(&cluster, &["getendpoints", "kv", "k"]);
    assert_eq!(code, Some(0), "getendpoints: {err}");
    assert_eq!(out.lines().count(), 3, "{out}");

    let (code, _, err) = ringdb(&cluster, &["decommission"]);
    assert_eq!(code, Some(7), "decommission: {err}");
    assert!(
        err.contains("node1") || err.contains(&cluster.client_address(1).to_string()),
        "{err}"
    );
    let statuses = cluster.status_text(2);
    let leaving = statuses
        .lines()
        .filter(|line| line.starts_with("UL") || line.starts_with("DL"));
    assert_eq!(leaving.count(), 0, "{statuses}");
}

/// `ringdb dev ARGS --dir DIR`: exit code, stdout and stderr.
fn dev(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringdb"))
        .arg("dev")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run ringdb dev");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What `ringdb dev status` says of `node`.
fn dev_state(dir: &std::path::Path, node: &str) -> String {
    let (code, out, err) = dev(dir, &["status"]);
    assert_eq!(code, Some(0), "dev status: {err}");
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(node));
    line.unwrap_or_else(|| panic!("{node} not in {out}"))
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// ccm's per-node control: kill, start, pause, resume, stop and logs of
/// one node of a dev cluster, each seen in `ringdb dev status`; a node
/// started again appends to its log rather than emptying it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_controls_one_node_at_a_time() {
    let cluster = Cluster::start(3);
    let dir = cluster.dir();
    assert_eq!(dev_state(dir, "node2"), "running");

    let pid2 = cluster.pid_of(2);
    let (code, _, err) = dev(dir, &["kill", "node2"]);
    assert_eq!(code, Some(0), "kill: {err}");
    assert!(!running(pid2));
    assert_eq!(dev_state(dir, "node2"), "stopped");

    let (code, _, err) = dev(dir, &["pause", "node3"]);
    assert_eq!(code, Some(0), "pause: {err}");
    assert_eq!(dev_state(dir, "node3"), "paused");
    let (code, _, err) = dev(dir, &["resume", "node3"]);
    assert_eq!(code, Some(0), "resume: {err}");
    assert_eq!(dev_state(dir, "node3"), "running");

    let (code, out, err) = dev(dir, &["start", "node2"]);
    assert_eq!(code, Some(0), "start: {err}");
    assert!(out.contains("node2"), "{out}");
    assert_eq!(dev_state(dir, "node2"), "running");
    let (code, log, err) = dev(dir, &["logs", "node2"]);
    assert_eq!(code, Some(0), "logs: {err}");
    assert_eq!(log.matches("node serving").count(), 2, "{log}");
    // Each life's log says what runs, from which file, where.
    let version = format!(
        "ringdb {} starting node node2 from ",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(log.matches(&version).count(), 2, "{log}");
    assert!(log.contains("cluster \"dev\", seeds 127.0.0.1:"), "{log}");

    // A clean stop is quick and quiet (it waited 5 s for a storage its
    // own schema service held, and warned).
    let stopping = std::time::Instant::now();
    let (code, _, err) = dev(dir, &["stop", "node1"]);
    assert_eq!(code, Some(0), "stop: {err}");
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "{:?}",
        stopping.elapsed()
    );
    assert_eq!(dev_state(dir, "node1"), "stopped");
    let (_, log, _) = dev(dir, &["logs", "node1"]);
    assert!(
        log.contains("node stopped") && !log.contains("WARN"),
        "{log}"
    );
    let (code, _, err) = dev(dir, &["kill", "node9"]);
    assert_eq!(code, Some(2), "an unknown node is bad input: {err}");
}

/// The pid in node `n`'s pid file, once there is one.
async fn pid_file(dir: &std::path::Path, n: usize) -> i32 {
    let file = dir.join(format!("node{n}")).join("pid");
    let mut pid = 0;
    wait_until("a pid file", DEADLINE, || {
        pid = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        async move { pid != 0 }
    })
    .await;
    pid
}

fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split_whitespace().nth(2) != Some("Z"))
}

fn interrupt(child: &std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGINT).expect("signal ringdb dev");
}

/// A foreground `ringdb dev` reports a node's death and keeps the others
/// running (a kill experiment must not stop the cluster); Ctrl-C then
/// stops them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreground_dev_outlives_a_node_and_stops_the_rest_on_ctrl_c() {
    use std::io::BufRead;
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path().join("dev");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringdb"))
        .args(["dev", "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ringdb dev");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = out.next() {
        if line.starts_with("Ctrl-C stops") {
            break;
        }
    }
    let pids = [
        pid_file(&dir, 1).await,
        pid_file(&dir, 2).await,
        pid_file(&dir, 3).await,
    ];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[1]),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let said = err.next().and_then(Result::ok).unwrap_or_default();
    assert!(
        said.contains("node2") && said.contains("others keep running"),
        "{said}"
    );
    common::holds_throughout(
        "ringdb dev, node1 and node3 keep running",
        Duration::from_secs(1),
        || {
            let dev_runs = child.try_wait().unwrap().is_none();
            async move { dev_runs && running(pids[0]) && running(pids[2]) }
        },
    )
    .await;

    interrupt(&child);
    let status = child.wait().expect("ringdb dev ends");
    assert!(status.success(), "{status:?}");
    assert!(!running(pids[0]) && !running(pids[2]));
}

/// Ctrl-C while `ringdb dev` is still starting the nodes stops those it
/// started (they run in their own process group, which the terminal's
/// Ctrl-C does not reach).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_start_up_leaves_no_node_running() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path().join("dev");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringdb"))
        .args(["dev", "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run ringdb dev");
    let first = pid_file(&dir, 1).await;
    interrupt(&child);
    let status = child.wait().expect("ringdb dev ends");
    assert!(!status.success(), "interrupted start-up: {status:?}");
    let mut pids = vec![first];
    for n in 2..=3 {
        let file = dir.join(format!("node{n}")).join("pid");
        pids.extend(
            std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok()),
        );
    }
    wait_until("every node started is gone", DEADLINE, || {
        let pids = pids.clone();
        async move { !pids.iter().any(|&pid| running(pid)) }
    })
    .await;
}

/// A real cluster without `--host … --ca …` on every call: the hosts and
/// CA from the environment (RINGDB_HOSTS, RINGDB_CA), or from the user's
/// client file ($XDG_CONFIG_HOME/ringdb/client.toml), as cqlshrc does;
/// host names are accepted wherever addresses are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_comes_from_the_environment_or_the_users_client_file() {
    let cluster = Cluster::start(3);
    let elsewhere = tempfile::tempdir().unwrap();
    let ca = cluster.dir().join("ca.pem");
    let port = |n: usize| cluster.client_address(n).port();
    let run = |args: &[&str], env: &[(&str, String)]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .args(args)
            .current_dir(elsewhere.path())
            .env_remove("RINGDB_HOSTS")
            .env_remove("RINGDB_CA")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run ringdb");
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), err)
    };
    let hosts = format!("localhost:{},localhost:{}", port(1), port(2));
    let environment = [
        ("RINGDB_HOSTS", hosts),
        ("RINGDB_CA", ca.display().to_string()),
    ];
    let (code, err) = run(&["put", "kv", "k", "v"], &environment);
    assert_eq!(code, Some(0), "{err}");

    let config = elsewhere.path().join("config");
    std::fs::create_dir_all(config.join("ringdb")).unwrap();
    std::fs::write(
        config.join("ringdb").join("client.toml"),
        format!(
            "contact_points = [\"localhost:{}\"]\nca_certificate = {:?}\n",
            port(3),
            ca.display().to_string()
        ),
    )
    .unwrap();
    let file = [("XDG_CONFIG_HOME", config.display().to_string())];
    let (code, err) = run(&["get", "kv", "k"], &file);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&["get", "kv", "k"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("RINGDB_HOSTS") && err.contains("client.toml"),
        "{err}"
    );
}

/// Two `ringdb dev` runs on one new folder at once: one makes and starts
/// the cluster, the other says that the folder is taken and changes
/// nothing (they used to mix their seeds and ports in one folder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dev_runs_on_one_new_folder_do_not_mix() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path().join("dev");
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .args(["dev", "--detach", "--dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run ringdb dev")
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let succeeded: Vec<_> = outputs.iter().filter(|o| o.status.success()).collect();
    let failed: Vec<_> = outputs.iter().filter(|o| !o.status.success()).collect();
    let said = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        succeeded.len(),
        1,
        "{:?}",
        outputs.iter().map(said).collect::<Vec<_>>()
    );
    let refusal = said(failed[0]);
    assert!(
        refusal.contains("another `ringdb dev`") || refusal.contains("already running"),
        "{refusal}"
    );
    // One cluster: three nodes, all up, seeded by the same node.
    let seeds: Vec<String> = (1..=3)
        .map(|n| {
            let config = common::node_folder(&dir, n).join("node.toml");
            let config = ringdb::node::Config::load(&config).expect("a node config");
            format!("{:?}", config.cluster.seeds)
        })
        .collect();
    assert!(seeds.iter().all(|s| *s == seeds[0]), "{seeds:?}");
    let (code, out, err) = dev(&dir, &["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.matches("running").count(), 3, "{out}");
    let (code, _, err) = dev(&dir, &["--stop"]);
    assert_eq!(code, Some(0), "{err}");
}

/// A new node whose seeds do not answer says so every few seconds while
/// it waits (not once, then silence until it gives up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_waiting_for_its_seeds_says_so() {
    let mut cluster = Cluster::start(1);
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let seed = silent.local_addr().unwrap();
    let n = cluster.prepare_node(|config| config.cluster.seeds = vec![seed]);
    cluster.restart(n);
    wait_until("two notices that the node waits", DEADLINE, || {
        let log = cluster.log_of(n);
        async move { log.matches("waiting for a seed to answer").count() >= 2 }
    })
    .await;
    let log = cluster.log_of(n);
    assert!(log.contains(&seed.to_string()), "{log}");
}

/// The number after `name :` in nodetool's output.
fn figure(out: &str, name: &str) -> u64 {
    let line = out.lines().find(|l| l.trim_start().starts_with(name));
    let value = line.and_then(|l| l.rsplit(':').next()).map(str::trim);
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

/// nodetool's commands, each acting on one node: flush empties its
/// memtables; snapshots are kept, listed and cleared; describecluster
/// and gossipinfo describe the cluster; tpstats, compactionstats and
/// netstats answer; setlogginglevel changes what it logs; drain makes it
/// refuse clients, who still get served by the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodetool_commands_act_on_one_node() {
    let cluster = Cluster::start(3);
    let client = cluster.client(1).await;
    for i in 0..200 {
        let row = common::row(&format!("k{i}"));
        let value = common::columns("a value of some bytes");
        client
            .put(&row, value, Context::empty(), ConsistencyLevel::Quorum)
            .await
            .expect("a write");
    }
    let (code, out, err) = ringdb(&cluster, &["flush"]);
    assert_eq!(code, Some(0), "{err}");
    let (before, after) = (
        figure(&out, "memtables before"),
        figure(&out, "memtables after"),
    );
    assert!(after < before, "{out}");
    let (code, out, err) = ringdb(&cluster, &["compactionstats"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(figure(&out, "SST files") > 0, "{out}");
    // node1 replicates every row (3 nodes, 3 replicas): 200 rows of 200
    // partitions of the key-value table.
    let (code, out, err) = ringdb(&cluster, &["tablestats"]);
    assert_eq!(code, Some(0), "{err}");
    let kv = out
        .lines()
        .find(|line| line.contains("key-value table"))
        .unwrap_or_else(|| panic!("no key-value table in {out}"));
    let numbers: Vec<&str> = kv.split_whitespace().rev().take(3).collect();
    assert_eq!(numbers[1..], ["200", "200"], "{out}");

    let (code, out, err) = ringdb(&cluster, &["snapshot", "-t", "before-upgrade"]);
    assert_eq!(code, Some(0), "{err}");
    let folder = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("folder")?.split(':').nth(1))
        .map(|f| std::path::PathBuf::from(f.trim()))
        .unwrap_or_else(|| panic!("no folder in {out}"));
    assert!(folder.join("CURRENT").exists(), "{}", folder.display());
    let (code, _, err) = ringdb(&cluster, &["snapshot", "-t", "before-upgrade"]);
    assert_eq!(code, Some(2), "a tag taken: {err}");
    // The node checks the tag it is sent, whatever the client does.
    for tag in ["../escape", "x.tmp"] {
        let request = ringdb::client::NodeTool::Snapshot { tag: tag.into() };
        let refused = client.nodetool(request, DEADLINE).await;
        assert!(refused.is_err(), "{tag}: {refused:?}");
    }
    assert!(!folder.parent().unwrap().join("x.tmp").exists());
    let (code, _, err) = ringdb(&cluster, &["clearsnapshot", "-t", "no-such-tag"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, out, err) = ringdb(&cluster, &["listsnapshots"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("before-upgrade"), "{out}");
    let (code, _, err) = ringdb(&cluster, &["clearsnapshot", "--all"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!folder.exists());
    let (_, out, _) = ringdb(&cluster, &["listsnapshots"]);
    assert!(!out.contains("before-upgrade"), "{out}");

    let (code, out, err) = ringdb(&cluster, &["describecluster"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("the nodes agree") && out.contains("dev"),
        "{out}"
    );
    let (code, out, err) = ringdb(&cluster, &["gossipinfo"]);
    assert_eq!(code, Some(0), "{err}");
    for expected in ["node1", "node2", "node3", "Tokens", "Normal"] {
        assert!(out.contains(expected), "{expected}: {out}");
    }
    for command in ["tpstats", "netstats"] {
        let (code, out, err) = ringdb(&cluster, &[command]);
        assert_eq!(code, Some(0), "{command}: {err}");
        assert!(out.contains("hints"), "{command}: {out}");
    }

    let (code, _, err) = ringdb(&cluster, &["setlogginglevel", "not[a filter"]);
    assert_eq!(code, Some(2), "{err}");
    let debug_lines = || cluster.log_of(1).matches(" DEBUG ").count();
    let before = debug_lines();
    let (code, _, err) = ringdb(&cluster, &["setlogginglevel", "debug"]);
    assert_eq!(code, Some(0), "{err}");
    wait_until("node1 logs at debug", DEADLINE, || {
        let more = debug_lines() > before;
        async move { more }
    })
    .await;

    let health = cluster
        .config(1)
        .listen_metrics
        .expect("dev sets listen_metrics");
    assert_eq!(common::scrape::http_get(health, "/health").1, "ok\n");
    let (code, _, err) = ringdb(&cluster, &["drain"]);
    assert_eq!(code, Some(0), "{err}");
    let (status, body) = common::scrape::http_get(health, "/health");
    assert!(
        status.contains("503") && body.contains("drained"),
        "{status}: {body}"
    );
    let ca = cluster.dir().join("ca.pem").display().to_string();
    let at = |n: usize| cluster.client_address(n).to_string();
    let (code, _, err) = ringdb(
        &cluster,
        &["put", "kv", "k", "v", "--host", &at(1), "--ca", &ca],
    );
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("drained"), "{err}");
    let hosts = format!("{},{}", at(1), at(2));
    let (code, _, err) = ringdb(
        &cluster,
        &["put", "kv", "k", "v", "--host", &hosts, "--ca", &ca],
    );
    assert_eq!(code, Some(0), "node2 takes it: {err}");
}
