//! The data commands (`put`, `get`, `delete`) and `bench` as a user meets
//! them on a real cluster: values from files, standard input or hex and
//! back byte for byte, keys Cassandra would refuse, a value over the
//! limit, a CA that is not the cluster's, an unavailable read, and a bench
//! that fails or is interrupted.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

use common::raw::{self, send_raw};
use common::scrape::{metrics, sample};
use common::{Cluster, DEADLINE, columns, row, wait_until};
use ringdb::client::{ClientError, ConsistencyLevel, Context, Row, Value};

/// `ringdb ARGS --dev-dir DIR`, not yet run.
fn ringdb(cluster: &Cluster, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringdb"));
    command
        .args(args)
        .arg("--dev-dir")
        .arg(cluster.dir())
        .env_remove("RINGDB_HOSTS")
        .env_remove("RINGDB_CA");
    command
}

/// `ringdb ARGS --dev-dir DIR` with `stdin`: exit code, stdout and stderr.
fn run(cluster: &Cluster, args: &[&str], stdin: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    let mut child = ringdb(cluster, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringdb");
    let mut input = child.stdin.take().expect("stdin");
    // A command that does not read its input may be gone already.
    let _ = input.write_all(stdin);
    drop(input);
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("ringdb ends");
    (
        status.code(),
        stdout,
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Values from a file, from standard input or in hex go in as they are
/// and come back byte for byte with `get --raw`; a blob prints as `0x…`
/// (as cqlsh shows one) and text as itself; keys given in hex are bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_come_from_files_stdin_or_hex_and_come_back_byte_for_byte() {
    let cluster = Cluster::start(3);
    let folder = tempfile::tempdir().unwrap();
    // Not UTF-8: a blob.
    let binary: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let file = folder.path().join("photo.bin");
    std::fs::write(&file, &binary).unwrap();
    let file = file.to_string_lossy().into_owned();

    let (code, _, err) = run(
        &cluster,
        &["put", "kv", "photo", "--value-file", &file],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(&cluster, &["get", "kv", "photo", "--raw"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, binary);
    let (code, out, err) = run(&cluster, &["get", "kv", "photo"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("0x{}\n", hex::encode(&binary))
    );

    // Text from standard input, kept with its newlines.
    let text = "line one\nline two\n";
    let (code, _, err) = run(
        &cluster,
        &["put", "kv", "notes", "--value-file", "-"],
        text.as_bytes(),
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(&cluster, &["get", "kv", "notes", "--raw"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(String::from_utf8(out).unwrap(), text);

    // A binary key and value in hex.
    let (code, _, err) = run(&cluster, &["put", "--hex", "kv", "00ff", "6869"], b"");
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(&cluster, &["get", "--hex", "kv", "00ff"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(String::from_utf8(out).unwrap(), "0x6869\n");
    let (code, _, err) = run(&cluster, &["get", "kv", "00ff"], b"");
    assert_eq!(code, Some(3), "the text key 00ff is another row: {err}");
    let (code, _, err) = run(&cluster, &["put", "--hex", "kv", "00ff", "6g"], b"");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not hex"), "{err}");

    // One value, not two.
    let (code, _, err) = run(
        &cluster,
        &["put", "kv", "k", "v", "--value-file", &file],
        b"",
    );
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = run(&cluster, &["put", "kv", "k"], b"");
    assert_eq!(code, Some(2), "{err}");
}

/// An empty partition key is refused, as Cassandra refuses one ("Key may
/// not be empty"), by the command and by the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_partition_key_is_refused() {
    let cluster = Cluster::start(1);
    for args in [
        &["put", "kv", "", "v"][..],
        &["get", "kv", ""],
        &["delete", "kv", ""],
    ] {
        let (code, _, err) = run(&cluster, args, b"");
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("empty"), "{args:?}: {err}");
    }
    // The node refuses one from a client that skips the check.
    let request = raw::ClientRequest::Put {
        row: raw::Address {
            table: "kv".into(),
            partition: Vec::new(),
            clustering: Vec::new(),
        },
        columns: columns("v"),
        context: Vec::new(),
        consistency: ConsistencyLevel::One,
    };
    let answer = send_raw(&cluster, 1, request).await;
    assert!(
        matches!(&answer, Err(error) if error.contains("partition key is empty")),
        "{answer:?}"
    );
}

/// A value over the frame limit is answered as too large (with the limit),
/// not as "no node reachable"; the client keeps its healthy connection
/// (the node counts one connection opened, before and after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_limit_is_too_large_and_the_connection_is_kept() {
    let cluster = Cluster::start(1);
    let folder = tempfile::tempdir().unwrap();
    let huge = folder.path().join("huge");
    std::fs::write(&huge, vec![b'a'; 20 << 20]).unwrap();
    let huge = huge.to_string_lossy().into_owned();
    let (code, _, err) = run(&cluster, &["put", "kv", "k", "--value-file", &huge], b"");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("value too large") && err.contains("limit"),
        "{err}"
    );
    // Within the request limit but over the node's row limit (1 MiB by
    // default): the node refuses it, saying so.
    let big = folder.path().join("big");
    std::fs::write(&big, vec![b'b'; 2 << 20]).unwrap();
    let big = big.to_string_lossy().into_owned();
    let (code, _, err) = run(&cluster, &["put", "kv", "k", "--value-file", &big], b"");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("the limit of 1048576 bytes"), "{err}");

    let client = cluster.client(1).await;
    client
        .put(
            &row("a"),
            columns("small"),
            Context::empty(),
            ConsistencyLevel::One,
        )
        .await
        .expect("a small write");
    const OPENED: &str = r#"ringdb_connections_opened_total{port="client"}"#;
    let opened = sample(&metrics(&cluster, 1), OPENED);
    let big = Row::from([("value".to_string(), Value::Blob(vec![0; 20 << 20]))]);
    let refused = client
        .put(&row("b"), big, Context::empty(), ConsistencyLevel::One)
        .await
        .expect_err("20 MB in one request");
    assert!(
        matches!(refused, ClientError::ValueTooLarge { .. }),
        "{refused:?}"
    );
    assert!(!refused.is_retryable(), "{refused:?}");
    client
        .put(
            &row("c"),
            columns("small"),
            Context::empty(),
            ConsistencyLevel::One,
        )
        .await
        .expect("a small write after the refused one");
    assert_eq!(sample(&metrics(&cluster, 1), OPENED), opened);
}

/// A CA that is not the cluster's is named as the problem (exit 2), not
/// reported as "no node reachable": one of another name, and one of the
/// same name (every dev cluster's CA is "dev"'s) whose key did not sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_says_so() {
    let cluster = Cluster::start(1);
    let host = cluster.client_address(1).to_string();
    for name in ["elsewhere", "dev"] {
        let other = tempfile::tempdir().unwrap();
        let made = Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .args(["cert", "--cluster", name, "--dir"])
            .arg(other.path())
            .arg("node1")
            .output()
            .expect("run ringdb cert");
        assert!(made.status.success());
        let ca = other.path().join("ca.pem").to_string_lossy().into_owned();
        let output = Command::new(env!("CARGO_BIN_EXE_ringdb"))
            .args(["get", "kv", "k", "--host", &host, "--ca", &ca])
            .env_remove("RINGDB_HOSTS")
            .env_remove("RINGDB_CA")
            .output()
            .expect("run ringdb");
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("certificate") && err.contains("CA") && err.contains(&ca),
            "{name}: {err}"
        );
        assert!(!err.contains("no node reachable"), "{name}: {err}");
    }
}

/// With two of three nodes down, a QUORUM read is unavailable (exit 4)
/// and does not claim that "nothing was written"; a bench whose
/// operations fail says so and exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_read_says_nothing_of_writes_and_a_failing_bench_fails() {
    let cluster = Cluster::start(3);
    cluster.kill(2).await;
    cluster.kill(3).await;
    cluster.wait_convicted(1, 2).await;
    cluster.wait_convicted(1, 3).await;
    let output = ringdb(&cluster, &["get", "kv", "k"]).output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{err}");
    assert!(
        err.contains("2 replicas required but only 1 alive"),
        "{err}"
    );
    assert!(!err.contains("written"), "{err}");

    let output = ringdb(&cluster, &["bench", "write", "--duration", "2s"])
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("errors: unavailable"), "{out}");
    assert!(err.contains("operations failed"), "{err}");
}

/// Ctrl-C stops a bench early and still prints its summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_bench_prints_its_summary() {
    let cluster = Cluster::start(1);
    let mut child = ringdb(
        &cluster,
        &["bench", "write", "--duration", "60s", "-c", "ONE"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("run ringdb bench");
    // The first progress line (after the header) means it is running.
    let mut progress = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = 0;
    while let Some(Ok(line)) = progress.next() {
        if line.trim_start().starts_with(|c: char| c.is_ascii_digit()) {
            seen += 1;
            break;
        }
    }
    assert_eq!(seen, 1, "no progress line");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGINT).unwrap();
    let mut status = None;
    wait_until("the bench ends", DEADLINE, || {
        status = child.try_wait().unwrap();
        async move { status.is_some() }
    })
    .await;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(status.unwrap().code(), Some(130), "{out}");
    assert!(
        out.contains("ops/s in all") && out.contains("writes"),
        "{out}"
    );
}
