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
    let log = cluster.dir().join("log.cql");
    let inserts: String = (0..100)
        .map(|at| format!("INSERT INTO shop.log (device, at, v) VALUES ('d', {at}, 'v{at}');\n"))
        .collect();
    std::fs::write(
        &log,
        format!("CREATE TABLE shop.log (device text, at int, v text, PRIMARY KEY (device, at));\n{inserts}"),
    )
    .unwrap();
    let logged = shell(&cluster, &["-f", log.to_str().unwrap()]);
    assert!(logged.status.success(), "{}", stderr(&logged));
    // A slice, in reverse: every page of it in one table when not on a terminal.
    let slice = shell(
        &cluster,
        &[
            "-k",
            "shop",
            "-e",
            "SELECT at, v FROM log WHERE device = 'd' AND at > 95 ORDER BY at DESC",
        ],
    );
    assert!(slice.status.success(), "{}", stderr(&slice));
    assert_eq!(
        stdout(&slice),
        "\n at | v   \n----+-----\n 99 | v99 \n 98 | v98 \n 97 | v97 \n 96 | v96 \n\n(4 rows)\n"
    );

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
    // Paging: a page of 30 rows at a time, the next on Enter.
    // (Each line waits for the prompt: the line editor drops what is typed
    // before it starts reading.)
    session.expect("ringdb:shop> ").unwrap();
    session.send_line("PAGING 30").unwrap();
    session.expect("ringdb:shop> ").unwrap();
    session
        .send_line("SELECT at FROM log WHERE device = 'd' AND at >= 10 AND at < 90;")
        .unwrap();
    session.expect("---MORE---").unwrap();
    session.send("\r").unwrap();
    session.expect("---MORE---").unwrap();
    session.send("\r").unwrap();
    session.expect("(20 rows)").unwrap();
    // Ctrl-C at ---MORE--- stops paging and gives the prompt back.
    session.expect("ringdb:shop> ").unwrap();
    session
        .send_line("SELECT at FROM log WHERE device = 'd' AND at >= 10 AND at < 90;")
        .unwrap();
    session.expect("---MORE---").unwrap();
    session.send("\x03").unwrap();
    session.expect("ringdb:shop> ").unwrap();
    // The terminal resized after it (a second line editor, dropped, would
    // have left rustyline's SIGWINCH handler writing to a closed pipe).
    let pid = nix::unistd::Pid::from_raw(session.get_process().pid().as_raw());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGWINCH).unwrap();
    // The shell's own commands complete too.
    session.send("TRAC").unwrap();
    session.send("\t").unwrap();
    session.expect("TRACING").unwrap();
    session.send(" OFF\r").unwrap();
    session.expect("ringdb:shop> ").unwrap();
    session.send_line("EXIT").unwrap();
    let status = session.get_process().wait().unwrap();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    let history = std::fs::read_to_string(cluster.dir().join(".ringdb_history")).unwrap();
    assert!(history.contains("USE shop;"), "{history}");
}

/// Stops (SIGSTOP) or continues (SIGCONT) node `n`.
fn signal(cluster: &Cluster, n: usize, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(cluster.pid_of(n));
    nix::sys::signal::kill(pid, signal).expect("signal a node");
}

/// `ringdb shell --host <node n> ARGS` in keyspace shop, to completion.
fn shell_on(cluster: &Cluster, n: usize, statements: &str) -> Output {
    let ca = cluster.dir().join("ca.pem");
    Command::new(env!("CARGO_BIN_EXE_ringdb"))
        .arg("shell")
        .args(["--host", &cluster.client_address(n).to_string()])
        .args(["--ca", ca.to_str().unwrap(), "-k", "shop", "-e", statements])
        .env("HOME", cluster.dir())
        .output()
        .expect("run ringdb shell")
}

/// [`shell_on`], again until `done` holds of its output (at most 30 s);
/// the last output.
fn until(cluster: &Cluster, n: usize, statements: &str, done: impl Fn(&Output) -> bool) -> Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let output = shell_on(cluster, n, statements);
        if done(&output) || std::time::Instant::now() > deadline {
            return output;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`shell_on`], again until it succeeds (at most 30 s).
fn until_ok(cluster: &Cluster, n: usize, statements: &str) -> Output {
    until(cluster, n, statements, |output| output.status.success())
}

#[test]
fn concurrent_writes_show_as_siblings_and_a_write_with_the_session_context_resolves_them() {
    use nix::sys::signal::Signal::{SIGCONT, SIGSTOP};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start(3);
    let made = shell(
        &cluster,
        &[
            "-e",
            "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3};
             CREATE TABLE shop.users (id int PRIMARY KEY, name text)",
        ],
    );
    assert!(made.status.success(), "{}", stderr(&made));
    // Two writes that cannot see each other: one through node1 while node2
    // is down, the other through node2 while node1 and node3 are stopped.
    runtime.block_on(cluster.kill(2));
    let first = shell_on(
        &cluster,
        1,
        "CONSISTENCY ONE; INSERT INTO users (id, name) VALUES (1, 'ada')",
    );
    assert!(first.status.success(), "{}", stderr(&first));
    signal(&cluster, 1, SIGSTOP);
    signal(&cluster, 3, SIGSTOP);
    cluster.restart(2);
    let second = until_ok(
        &cluster,
        2,
        "CONSISTENCY ONE; INSERT INTO users (id, name) VALUES (1, 'bea')",
    );
    assert!(second.status.success(), "{}", stderr(&second));
    signal(&cluster, 1, SIGCONT);
    signal(&cluster, 3, SIGCONT);
    // A read at ALL shows both versions, marked.
    let select = "CONSISTENCY ALL; SELECT * FROM users WHERE id = 1";
    let read = until(&cluster, 1, select, |read| {
        read.status.success() && stdout(read).contains("[2/2]")
    });
    let text = stdout(&read);
    assert!(text.contains("[2/2]"), "{text}{}", stderr(&read));
    assert!(text.contains("| ada"), "{text}");
    assert!(text.contains("| bea"), "{text}");
    assert!(text.contains("(2 rows)"), "{text}");
    // The session that read both writes the row with what it read: one
    // version is left, everywhere.
    let resolved = until_ok(
        &cluster,
        3,
        &format!("{select}; UPDATE users SET name = 'cy' WHERE id = 1"),
    );
    assert!(resolved.status.success(), "{}", stderr(&resolved));
    assert!(stdout(&resolved).contains("[2/2]"), "{}", stdout(&resolved));
    for n in 1..=3 {
        // Once node n's failure detector counts every peer back up.
        let read = until_ok(&cluster, n, select);
        assert_eq!(
            stdout(&read),
            "Consistency level set to ALL.\n\n id | name \n----+------\n  1 | cy   \n\n(1 rows)\n",
            "{}",
            stderr(&read)
        );
    }
    // TRACING ON: a QUORUM read's trace names the replicas asked and
    // those that answered.
    let traced = until_ok(
        &cluster,
        1,
        "TRACING ON; CONSISTENCY QUORUM; SELECT * FROM users WHERE id = 1",
    );
    let text = stdout(&traced);
    assert!(text.contains("Tracing session:"), "{text}");
    assert!(text.contains(" asked node"), "{text}");
    assert!(text.matches(" answered ").count() >= 2, "{text}");
    // At ALL with a node down: Unavailable, with what was required and alive.
    runtime.block_on(cluster.kill(2));
    let read = until(&cluster, 1, select, |read| {
        !read.status.success() && stderr(read).contains("unavailable")
    });
    let error = stderr(&read);
    assert!(
        error.contains("3 replicas required but only 2 alive"),
        "{error}"
    );
    // Traced, the failure comes with what the coordinator found.
    let traced = until(&cluster, 1, &format!("TRACING ON; {select}"), |read| {
        !read.status.success() && stderr(read).contains("unavailable")
    });
    let trace = stdout(&traced);
    assert!(
        trace.contains("unavailable: 3 replicas needed, alive: node1, node3")
            || trace.contains("unavailable: 3 replicas needed, alive: node3, node1"),
        "{trace}"
    );
}
