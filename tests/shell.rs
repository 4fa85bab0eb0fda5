//! `ringdb shell` as a user drives it: non-interactively with `-e` and
//! `-f` (exit status, errors that point at the line and column), and
//! interactively through a pseudo-terminal (prompt, `USE`, multi-line
//! statements, Tab completion of a table name).

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::Cluster;
use expectrl::process::unix::WaitStatus;
use expectrl::{Expect, Session};

/// `ringdb shell --dev-dir <cluster> ARGS`, to completion.
fn shell(cluster: &Cluster, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringdb"))
        .arg("shell")
        .arg("--dev-dir")
        .arg(cluster.dir())
        .args(args)
        .env("HOME", cluster.dir())
        .output()
        .expect("run ringdb shell")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_shell_runs_statements_from_e_f_and_a_terminal() {
    let cluster = Cluster::start(3);
    let made = shell(
        &cluster,
        &[
            "-e",
            "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3};
             CREATE TABLE shop.events (device uuid, at timestamp, reading double,
                                       PRIMARY KEY (device, at)) WITH CLUSTERING ORDER BY (at DESC)",
        ],
    );
    assert!(made.status.success(), "{}", stderr(&made));

    // -f: comments, statements over several lines, shell commands.
    let file = cluster.dir().join("tour.cql");
    std::fs::write(
        &file,
        "-- a tour\nCONSISTENCY ALL\nDESCRIBE\n  TABLE events;\nEXPAND ON\n/* done */ DESCRIBE KEYSPACES;\nCONSISTENCY\n",
    )
    .unwrap();
    let toured = shell(&cluster, &["-k", "shop", "-f", file.to_str().unwrap()]);
    assert!(toured.status.success(), "{}", stderr(&toured));
    let text = stdout(&toured);
    assert!(text.contains("Consistency level set to ALL."), "{text}");
    // A shell command between statements takes nothing with it.
    assert!(text.contains("Expanded output is on."), "{text}");
    assert!(text.contains("Current consistency level is ALL."), "{text}");
    assert!(text.contains("CREATE TABLE shop.events ("), "{text}");
    assert!(text.contains("CLUSTERING ORDER BY (at DESC)"), "{text}");
    assert!(text.contains("shop"), "{text}");

    // The first error stops the run, says where, and fails the exit status.
    let failed = shell(
        &cluster,
        &["-e", "SELECT *\nFORM shop.events; DESCRIBE KEYSPACES"],
    );
    assert!(!failed.status.success());
    assert_eq!(
        stderr(&failed).trim_end(),
        "line 2:1: expected FROM, found 'FORM'\n  FORM shop.events;\n  ^"
    );
    assert!(!stdout(&failed).contains("shop"), "ran on after the error");
    let unsupported = shell(&cluster, &["-e", "CREATE INDEX ON shop.events (reading)"]);
    assert!(!unsupported.status.success());
    assert!(
        stderr(&unsupported).contains("ringdb does not support secondary indexes"),
        "{}",
        stderr(&unsupported)
    );

    // Interactive, through a pseudo-terminal.
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringdb"));
    command
        .arg("shell")
        .arg("--dev-dir")
        .arg(cluster.dir())
        .env("HOME", cluster.dir());
    let mut session = Session::spawn(command).expect("spawn the shell on a pty");
    session.set_expect_timeout(Some(Duration::from_secs(20)));
    session.expect("ringdb> ").unwrap();
    session.send_line("USE shop;").unwrap();
    session.expect("ringdb:shop> ").unwrap();
    // Tab completes the table's name.
    session.send("DESCRIBE TABLE ev").unwrap();
    session.send("\t").unwrap();
    session.expect("events").unwrap();
    session.send(";\r").unwrap();
    session.expect("CREATE TABLE shop.events").unwrap();
    // A statement over two lines.
    session.send_line("DESCRIBE").unwrap();
    session.expect("...> ").unwrap();
    session.send_line("KEYSPACES;").unwrap();
    session.expect("shop").unwrap();
    session.send_line("EXIT").unwrap();
    let status = session.get_process().wait().unwrap();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    let history = std::fs::read_to_string(cluster.dir().join(".ringdb_history")).unwrap();
    assert!(history.contains("USE shop;"), "{history}");
}
