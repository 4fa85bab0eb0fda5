//! The `ringdb` binary as a script or a terminal user meets it: exit codes
//! as the README promises them, and no panic when its reader goes away.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Stdio};

fn ringdb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringdb"))
}

/// `ringdb ring | head`: the command ends when its reader does, without a
/// panic's message and backtrace.
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    // More lines (about 100 KB) than a pipe holds, so the command is still writing when
    // its reader goes.
    let mut child = ringdb()
        .args(["ownership", "--nodes", "3000", "--vnodes", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringdb");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a first line");
    assert!(first.starts_with("node"), "{first}");
    let output = child.wait_with_output().expect("ringdb ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        output.status.success() || output.status.signal() == Some(libc_sigpipe()),
        "{:?}: {stderr}",
        output.status
    );
}

fn libc_sigpipe() -> i32 {
    nix::sys::signal::Signal::SIGPIPE as i32
}

/// Bad input exits with 2 and says what is wrong, before anything is sent.
#[test]
fn bad_input_exits_with_2_and_says_why() {
    let folder = tempfile::tempdir().unwrap();
    let not_pem = folder.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let not_pem = not_pem.to_string_lossy().into_owned();
    let long_key = "k".repeat(70_000);
    let host = "127.0.0.1:9";
    let cases: [(&[&str], &str); 5] = [
        (&["get", "t", "k", "--host", host], "--host needs --ca"),
        (
            &[
                "put",
                "t",
                "k",
                "v",
                "--context",
                "xyz",
                "--host",
                host,
                "--ca",
                &not_pem,
            ],
            "--context is not hex",
        ),
        (
            &["get", "t", "k", "--host", host, "--ca", &not_pem],
            "holds no PEM certificate",
        ),
        (
            &["status", "--host", host, "--ca", "/nonexistent/ca.pem"],
            "cannot read the CA",
        ),
        (
            &["get", "t", &long_key, "--host", host, "--ca", &not_pem],
            "the limit is 65535",
        ),
    ];
    for (args, says) in cases {
        let output = ringdb().args(args).output().expect("run ringdb");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let shown: Vec<&str> = args.iter().map(|a| &a[..a.len().min(20)]).collect();
        assert_eq!(output.status.code(), Some(2), "{shown:?}: {stderr}");
        assert!(stderr.contains(says), "{shown:?}: {stderr}");
    }
}

/// The release binary stays a reasonable download: line tables for
/// `perf` and backtraces, not the C++ libraries' full debug info (which
/// made it 555 MB). The release profile is the one we ship (and the only
/// one we build); a debug build is bigger by nature.
#[cfg(not(debug_assertions))]
#[test]
fn the_binary_keeps_line_tables_but_not_full_debug_info() {
    let size = std::fs::metadata(env!("CARGO_BIN_EXE_ringdb"))
        .expect("the binary")
        .len();
    assert!(size < 256 << 20, "the binary is {} MB", size >> 20);
}

/// More bad input, each exiting with 2 and leaving nothing behind: a data
/// command with neither --host nor a dev cluster, a key that is not hex,
/// counts of zero, `cert` without a node, and `dev` options that cannot
/// make a cluster (which must not leave a half-made folder).
#[test]
fn more_bad_input_exits_with_2_and_leaves_no_folder() {
    let folder = tempfile::tempdir().unwrap();
    let missing = folder.path().join("no-cluster");
    let missing = missing.to_string_lossy().into_owned();
    let dev = folder.path().join("dev");
    let dev = dev.to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 8] = [
        (&["get", "t", "k", "--dev-dir", &missing], "client.toml"),
        (&["token", "--hex", "zz"], "not valid hex"),
        (&["ownership", "--nodes", "0"], "--nodes"),
        (&["cert", "--dir", &missing], "<NODES>"),
        (&["dev", "--nodes", "0", "--dir", &dev], "--nodes"),
        (
            &["dev", "--nodes", "2", "--datacenters", "3", "--dir", &dev],
            "--datacenters",
        ),
        (
            &["dev", "--set", "nonsense", "--dir", &dev],
            "expected KEY=VALUE",
        ),
        (
            &[
                "dev",
                "--set",
                "cluster.replication_factor=x",
                "--dir",
                &dev,
            ],
            "do not fit",
        ),
    ];
    for (args, says) in cases {
        let output = ringdb().args(args).output().expect("run ringdb");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            !std::path::Path::new(&dev).exists(),
            "{args:?} left {dev} behind"
        );
        assert!(
            !std::path::Path::new(&missing).exists(),
            "{args:?} made {missing}"
        );
    }
}

/// An error says each cause once: `cannot read FILE: No such file…`, not
/// the OS's words twice (each layer quoting the one below it).
#[test]
fn an_error_names_each_cause_once() {
    let output = ringdb()
        .args(["start", "--config", "/nonexistent/node.toml"])
        .output()
        .expect("run ringdb");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot read /nonexistent/node.toml"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

/// The README's two commands work on a fresh Debian/Ubuntu machine: each
/// runs `./setup` first, which installs what the build needs (libclang
/// for RocksDB's bindings) and, with `--tests`, what the tests use; CI
/// runs the same step. `--print` lists the packages without installing.
#[test]
fn the_readme_commands_install_what_they_need_first() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let block = readme.split("```sh\n").nth(1).expect("a first code block");
    let mut lines = block.lines();
    let build = lines.next().unwrap_or_default();
    let test = lines.next().unwrap_or_default();
    assert!(
        build.starts_with("./setup && cargo run --release"),
        "{build}"
    );
    assert!(
        test.starts_with("./setup --tests && cargo test --release --workspace"),
        "{test}"
    );
    let ci = std::fs::read_to_string(format!("{root}/.ci/run")).unwrap();
    assert!(ci.contains("./setup --tests"), "{ci}");
    for (args, needs) in [
        (&["--print"][..], &["libclang-dev"][..]),
        (
            &["--tests", "--print"],
            &["libclang-dev", "faketime", "iproute2", "iptables"],
        ),
    ] {
        let output = Command::new(format!("{root}/setup"))
            .args(args)
            .output()
            .expect("run ./setup");
        let listed = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}: {listed}");
        for package in needs {
            assert!(
                listed.split_whitespace().any(|p| p == *package),
                "{args:?}: {listed}"
            );
        }
    }
}

/// A command whose stderr (or stdout) reader is gone still ends as it
/// would have, with its own exit code, not a panic's 101: what it says
/// is lost, what it does is not.
#[test]
fn a_closed_stderr_does_not_make_a_command_panic() {
    let folder = tempfile::tempdir().unwrap();
    let missing = folder.path().join("no-cluster");
    let missing = missing.to_string_lossy().into_owned();
    for args in [
        &["put", "t", "k", "v", "--dev-dir", &missing][..],
        &["decommission", "--dev-dir", &missing],
        &["bench", "write", "--concurrency", "0"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let status = ringdb()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(writer))
            .status()
            .expect("run ringdb");
        assert_eq!(status.code(), Some(2), "{args:?}: {status:?}");
    }
}
