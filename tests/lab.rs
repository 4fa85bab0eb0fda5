//! `ringdb lab` as its users run it, as root: real nodes in network
//! namespaces, iptables partitions, kills, pauses and a wipe, each run
//! checked by the simulator's checkers (no acknowledged write lost, no
//! delete undone, no dot reused), and `lab down` leaving nothing behind
//! even after the command that made the lab was killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One lab at a time on a machine: the tests take turns.
static LAB: Mutex<()> = Mutex::new(());

fn ringdb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringdb"))
        .args(args)
        .output()
        .expect("ringdb runs")
}

fn ringdb_ok(args: &[&str]) -> String {
    let output = ringdb(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "ringdb {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ringdb"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ringdb starts")
}

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("an effective uid");
    assert!(
        uid == "0",
        "the lab tests need root (network namespaces and iptables); CI runs them as root"
    );
}

/// Everything of a lab left on the machine: namespaces, links, processes
/// of `dir`, host iptables rules of the lab.
fn leftovers(dir: &Path) -> Vec<String> {
    let run = |program: &str, args: &[&str]| {
        let output = Command::new(program).args(args).output().expect("runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let mut found = Vec::new();
    for line in run("ip", &["netns", "list"]).lines() {
        if line.starts_with("rdblab") {
            found.push(format!("namespace {line}"));
        }
    }
    for line in run("ip", &["-o", "link", "show"]).lines() {
        if line.contains("rdblab") {
            found.push(format!("link {line}"));
        }
    }
    if run("iptables", &["-S"]).contains("RINGDB-LAB") {
        found.push("a host iptables rule".into());
    }
    let dir = dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").expect("proc") {
        let path = entry.expect("entry").path();
        if let Ok(cmdline) = std::fs::read(path.join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&dir) && cmdline.contains("start") {
                found.push(format!("process {}: {cmdline}", path.display()));
            }
        }
    }
    found
}

/// A lab folder of the test's own, with the machine's one lab to itself
/// (as root); the lab is taken down when it is dropped, so a failing test
/// leaves nothing behind.
struct TestLab {
    folder: tempfile::TempDir,
    dir: PathBuf,
    text: String,
    _turn: MutexGuard<'static, ()>,
}

impl TestLab {
    fn new() -> TestLab {
        require_root();
        let turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
        let folder = tempfile::tempdir().unwrap();
        let dir = folder.path().join("lab");
        let text = dir.to_string_lossy().into_owned();
        ringdb_ok(&["lab", "down", "--dir", &text]);
        TestLab {
            folder,
            dir,
            text,
            _turn: turn,
        }
    }

    /// `lab down`, and nothing of the lab is left.
    fn down_leaves_nothing(&self) {
        ringdb_ok(&["lab", "down", "--dir", &self.text]);
        assert_eq!(leftovers(&self.dir), Vec::<String>::new());
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = ringdb(&["lab", "down", "--dir", &self.text]);
    }
}

fn wait_for(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `experiment` for `seconds` and returns its figures.
fn run(dir: &str, experiment: &str, seconds: u32, out: &Path) -> Value {
    let out_text = out.to_string_lossy().into_owned();
    let duration = seconds.to_string();
    ringdb_ok(&[
        "lab",
        "run",
        experiment,
        "--dir",
        dir,
        "--duration",
        &duration,
        "--out",
        &out_text,
    ]);
    let text = std::fs::read_to_string(out.join("figures.json")).expect("figures.json");
    serde_json::from_str(&text).expect("figures parse")
}

/// The promises every run keeps, whatever its faults.
fn assert_promises_kept(figures: &Value) {
    let checks = &figures["checks"];
    for count in [
        "lost_writes",
        "phantoms",
        "resurrections",
        "dots_reused",
        "strict_stale_reads",
        "non_monotonic_reads",
    ] {
        assert_eq!(checks[count], 0, "{count}: {checks:#}");
    }
    assert!(
        checks["acknowledged_writes"].as_u64().unwrap() > 100,
        "{checks:#}"
    );
    let convergence = &figures["convergence"];
    assert_eq!(
        convergence["rows_diverged"].as_array().unwrap().len(),
        0,
        "{convergence:#}"
    );
}

fn level<'a>(figures: &'a Value, name: &str) -> &'a Value {
    figures["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["level"] == name)
        .unwrap_or_else(|| panic!("no level {name}: {figures:#}"))
}

fn side<'a>(level: &'a Value, node: &str) -> &'a Value {
    level["sides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["nodes"].as_array().unwrap().iter().any(|n| n == node))
        .unwrap_or_else(|| panic!("no side of {node}: {level:#}"))
}

/// The experiments on one 3-node lab: the stale-read exercise
/// (ONE stale on both sides of a 2|1 partition, QUORUM never stale and
/// unavailable on the minority side), an isolated node, a kill -9 during
/// writes, a pause past the failure detector and a wiped node rejoining;
/// no acknowledged write lost, no delete undone, no dot reused in any.
#[test]
fn lab_experiments_keep_every_promise() {
    let lab = TestLab::new();
    let (folder, dir, dir_text) = (lab.folder.path(), lab.dir.clone(), lab.text.clone());
    ringdb_ok(&["lab", "up", "--nodes", "3", "--dir", &dir_text]);

    let stale = run(&dir_text, "stale-reads", 20, &folder.join("stale"));
    assert_promises_kept(&stale);
    let one = level(&stale, "ONE");
    assert!(
        one["during_faults"]["stale"].as_u64().unwrap() > 0,
        "{one:#}"
    );
    for node in ["n1", "n3"] {
        let side = side(one, node);
        assert!(side["writes"]["ok"].as_u64().unwrap() > 0, "{side:#}");
        assert_eq!(side["writes"]["failed"], 0, "{side:#}");
    }
    let quorum = level(&stale, "QUORUM");
    assert_eq!(quorum["during_faults"]["stale"], 0, "{quorum:#}");
    assert_eq!(quorum["outside_faults"]["stale"], 0, "{quorum:#}");
    assert!(
        side(quorum, "n1")["writes"]["ok"].as_u64().unwrap() > 0,
        "{quorum:#}"
    );
    let minority = side(quorum, "n3");
    assert_eq!(minority["writes"]["ok"], 0, "{minority:#}");
    assert!(
        minority["errors"]["unavailable"].as_u64().unwrap() > 0,
        "{minority:#}"
    );
    // Hinted handoff and read repair bring the minority's writes over by
    // themselves, well within the lab's minute.
    assert!(
        stale["convergence"]["converged_after_ms"].is_u64(),
        "{:#}",
        stale["convergence"]
    );
    let majority = side(quorum, "n1");
    assert!(
        majority["reads"]["ok"].as_u64().unwrap() > 0,
        "{majority:#}"
    );
    assert!(
        majority["staleness"]["reads"].as_u64().unwrap() > 0,
        "{majority:#}"
    );

    let isolate = run(&dir_text, "isolate", 16, &folder.join("isolate"));
    assert_promises_kept(&isolate);
    let killed = run(&dir_text, "kill-restart", 16, &folder.join("kill"));
    assert_promises_kept(&killed);
    let paused = run(&dir_text, "pause", 16, &folder.join("pause"));
    assert_promises_kept(&paused);
    // Past the failure detector: the others judged n3 down, so ALL was
    // refused at once rather than timing out.
    let all = side(level(&paused, "ALL"), "n1");
    assert!(
        all["errors"]["unavailable"].as_u64().unwrap_or(0) > 0,
        "{all:#}"
    );
    let wiped = run(&dir_text, "wipe-and-rejoin", 16, &folder.join("wipe"));
    assert_promises_kept(&wiped);
    let window = &wiped["windows"][0];
    assert_eq!(window["what"], "wipe n3", "{wiped:#}");
    assert!(
        window["end_ms"].as_u64() < wiped["duration_ms"].as_u64(),
        "n3 served again before the end: {wiped:#}"
    );

    // The faults the kernel cannot make here, through the nodes' own hook:
    // delay with jitter, duplication, clock skew; and iptables' loss. A
    // schedule file, as users write them.
    let schedule = folder.join("hook.toml");
    std::fs::write(
        &schedule,
        "description = \"delays, duplicates, loss and a skewed clock\"\n\
         workload = \"mixed\"\nduration = 16\n\
         [[step]]\nat = 3\nfault = \"delay n2 40ms 30ms\"\n\
         [[step]]\nat = 3\nfault = \"duplicate n3 20%\"\n\
         [[step]]\nat = 3\nfault = \"skew n1 +30s\"\n\
         [[step]]\nat = 3\nfault = \"loss n3 10%\"\n\
         [[step]]\nat = 11\nfault = \"heal\"\n",
    )
    .unwrap();
    let hooked = run(
        &dir_text,
        &schedule.to_string_lossy(),
        16,
        &folder.join("hook"),
    );
    assert_promises_kept(&hooked);
    let log = std::fs::read_to_string(dir.join("n1").join("node.log")).unwrap();
    assert!(log.contains("clock_skew_ms=30000"), "n1 took no skew");
    assert!(
        std::fs::read_to_string(dir.join("n2").join("node.log"))
            .unwrap()
            .contains("faults injected"),
        "n2 took no delay"
    );

    // Last, as it leaves the lab a node more: n4 joins while n1,n2 / n3
    // are cut apart, streams its ranges and serves.
    let joined = run(&dir_text, "join-under-partition", 16, &folder.join("join"));
    assert_promises_kept(&joined);
    let window = joined["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["what"] == "join n4")
        .unwrap_or_else(|| panic!("no join window: {joined:#}"));
    assert!(
        window["end_ms"].as_u64() < joined["duration_ms"].as_u64(),
        "n4 served before the end: {joined:#}"
    );
    let status = ringdb_ok(&["lab", "status", "--dir", &dir_text]);
    assert!(
        status
            .lines()
            .any(|l| l.contains("n4") && l.contains("running")),
        "{status}"
    );

    lab.down_leaves_nothing();
}

/// Two datacenters of two nodes cut apart: LOCAL_QUORUM goes on in each
/// (its reads may miss the other datacenter's writes, which the checkers
/// allow), QUORUM (3 of 4) is unavailable on both sides, and nothing is
/// lost once they meet again.
#[test]
fn lab_datacenters_cut_apart_keep_local_quorum() {
    let lab = TestLab::new();
    let (folder, dir_text) = (lab.folder.path(), lab.text.clone());
    let up = ringdb_ok(&[
        "lab", "up", "--nodes", "4", "--dcs", "2", "--dir", &dir_text,
    ]);
    assert!(
        up.lines().any(|l| l.contains("n3") && l.contains("dc2")),
        "{up}"
    );
    let schedule = folder.join("dcs.toml");
    std::fs::write(
        &schedule,
        "description = \"the datacenters cut apart\"\n\
         workload = \"probe\"\nduration = 16\n\
         [[step]]\nat = 4\nfault = \"partition dc1 / dc2\"\n\
         [[step]]\nat = 11\nfault = \"heal\"\n",
    )
    .unwrap();
    let out = folder.join("dcs");
    let out_text = out.to_string_lossy().into_owned();
    ringdb_ok(&[
        "lab",
        "run",
        &schedule.to_string_lossy(),
        "--cl",
        "LOCAL_QUORUM,QUORUM",
        "--dir",
        &dir_text,
        "--out",
        &out_text,
    ]);
    let text = std::fs::read_to_string(out.join("figures.json")).expect("figures.json");
    let figures: Value = serde_json::from_str(&text).expect("figures parse");
    assert_promises_kept(&figures);
    assert_eq!(figures["windows"][0]["what"], "partition n1,n2 / n3,n4");
    let local = level(&figures, "LOCAL_QUORUM");
    for node in ["n1", "n3"] {
        let side = side(local, node);
        assert!(side["writes"]["ok"].as_u64().unwrap() > 0, "{side:#}");
        assert_eq!(side["writes"]["failed"], 0, "{side:#}");
    }
    let quorum = level(&figures, "QUORUM");
    for node in ["n1", "n3"] {
        let side = side(quorum, node);
        assert_eq!(side["writes"]["ok"], 0, "{side:#}");
    }
    lab.down_leaves_nothing();
}

/// `lab down` after `lab up` or `lab run` was killed with SIGKILL half-way
/// leaves no namespace, link, rule or process behind.
#[test]
fn lab_down_after_a_killed_up_or_run_leaves_nothing() {
    let lab = TestLab::new();
    let (dir, dir_text) = (lab.dir.clone(), lab.text.clone());

    // Killed while starting its nodes.
    let mut up = spawn(&["lab", "up", "--nodes", "3", "--dir", &dir_text]);
    wait_for("a node process started", Duration::from_secs(30), || {
        !leftovers(&dir).iter().all(|l| !l.starts_with("process"))
    });
    up.kill().unwrap();
    up.wait().unwrap();
    assert!(
        !leftovers(&dir).is_empty(),
        "the killed up left something to remove"
    );
    ringdb_ok(&["lab", "down", "--dir", &dir_text]);
    assert_eq!(leftovers(&dir), Vec::<String>::new());

    // Killed while its partition is in force.
    ringdb_ok(&["lab", "up", "--nodes", "3", "--dir", &dir_text]);
    let mut run = spawn(&[
        "lab",
        "run",
        "stale-reads",
        "--dir",
        &dir_text,
        "--duration",
        "30",
    ]);
    wait_for("the partition is in force", Duration::from_secs(30), || {
        let status = ringdb(&["lab", "status", "--dir", &dir_text]);
        String::from_utf8_lossy(&status.stdout).contains("DROP")
    });
    run.kill().unwrap();
    run.wait().unwrap();
    lab.down_leaves_nothing();
}
