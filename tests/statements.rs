//! CQL statements over real processes: the schema is created through one
//! node, reaches every other (pushed at once, pulled by gossip by a node
//! that was down), survives kill -9, and bad statements get errors that
//! say where and what.

mod common;

use std::time::Duration;

use common::{Cluster, DEADLINE, wait_until};
use ringdb::client::{
    Client, ClientError, ConsistencyLevel, CqlType, Query, QueryResult, RequestError, Value,
};
use tokio::time::Instant;

/// Runs `cql` through `client` in keyspace `keyspace`.
async fn run(
    client: &Client,
    keyspace: Option<&str>,
    cql: &str,
) -> Result<QueryResult, ClientError> {
    client
        .query(Query {
            keyspace: keyspace.map(str::to_string),
            ..Query::new(cql, ConsistencyLevel::Quorum)
        })
        .await
}

/// `DESCRIBE …` through `client`, if it answers one.
async fn describe(client: &Client, what: &str) -> Option<String> {
    match run(client, None, &format!("DESCRIBE {what}")).await {
        Ok(QueryResult::Description(text)) => Some(text),
        _ => None,
    }
}

const KEYSPACE: &str =
    "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}";
const TABLE: &str = "CREATE TABLE events (device uuid, at timestamp, reading double, \
                     PRIMARY KEY (device, at)) WITH CLUSTERING ORDER BY (at DESC)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_made_through_one_node_reaches_every_node_and_survives_kill_9() {
    let mut cluster = Cluster::start(3);
    let clients = [
        cluster.client(1).await,
        cluster.client(2).await,
        cluster.client(3).await,
    ];
    let started = Instant::now();
    let created = run(&clients[0], None, KEYSPACE).await.unwrap();
    assert!(
        matches!(&created, QueryResult::SchemaChange { change, version: Some(_) } if change == "CREATED KEYSPACE shop"),
        "{created:?}"
    );
    run(&clients[0], Some("shop"), TABLE).await.unwrap();
    // Usable through every other node within 2 s: the change is pushed to
    // them before the statement returns.
    for client in &clients[1..] {
        wait_until(
            "the table is usable through every node",
            DEADLINE,
            || async {
                describe(client, "TABLE shop.events")
                    .await
                    .is_some_and(|text| text.contains("CLUSTERING ORDER BY (at DESC)"))
            },
        )
        .await;
    }
    let slowest = started.elapsed();
    eprintln!("keyspace and table usable through every node {slowest:?} after the CREATE began");
    assert!(slowest < Duration::from_secs(2), "took {slowest:?}");

    // Errors say what and where.
    let again = run(&clients[1], Some("shop"), TABLE).await.unwrap_err();
    assert_eq!(again.to_string(), "table shop.events already exists");
    let typo = run(&clients[1], None, "SELECT *\nFORM shop.events")
        .await
        .unwrap_err();
    assert!(
        matches!(
            typo,
            ClientError::Request(RequestError::InvalidStatement {
                line: 2,
                column: 1,
                ..
            })
        ),
        "{typo}"
    );
    let unsupported = run(&clients[2], None, "CREATE INDEX ON shop.events (reading)").await;
    assert_eq!(
        unsupported.unwrap_err().to_string(),
        "line 1:8: ringdb does not support secondary indexes (CREATE INDEX)"
    );

    // DESCRIBE of what does not exist says so.
    let missing = run(&clients[2], None, "DESCRIBE typo_ks")
        .await
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "invalid request: keyspace typo_ks does not exist"
    );

    // A node that was down when the schema changed pulls it once back.
    cluster.kill(2).await;
    run(&clients[0], Some("shop"), "DROP TABLE events")
        .await
        .unwrap();
    run(
        &clients[0],
        Some("shop"),
        "CREATE TABLE readings (k int PRIMARY KEY, v text)",
    )
    .await
    .unwrap();
    cluster.restart(2);
    let node2 = cluster.client(2).await;
    wait_until("node2 pulls the schema it missed", DEADLINE, || async {
        describe(&node2, "KEYSPACE shop")
            .await
            .is_some_and(|text| text.contains("shop.readings") && !text.contains("shop.events"))
    })
    .await;
    wait_until("the three nodes agree on the schema", DEADLINE, || async {
        describe(&node2, "CLUSTER")
            .await
            .is_some_and(|text| text.contains("the live nodes agree"))
    })
    .await;

    // Kept on disk: after kill -9 of every node, one started alone (no
    // peer to pull from) still has it.
    for n in 1..=3 {
        cluster.kill(n).await;
    }
    cluster.restart(3);
    let alone = cluster.client(3).await;
    let text = describe(&alone, "TABLE shop.readings").await;
    assert!(
        text.is_some_and(|t| t.contains("k int")),
        "node3 lost the schema"
    );
}

/// The rows of a `SELECT` (all its pages, `page_size` rows at a time).
async fn select(client: &Client, cql: &str, page_size: Option<u32>) -> Vec<Vec<Value>> {
    let mut query = Query {
        keyspace: Some("shop".into()),
        page_size,
        ..Query::new(cql, ConsistencyLevel::Quorum)
    };
    let mut rows = Vec::new();
    loop {
        let result = client.query(query.clone()).await.unwrap();
        let QueryResult::Rows(page) = result else {
            panic!("{cql}: {result:?}")
        };
        if let Some(size) = page_size {
            assert!(page.rows.len() <= size as usize, "{cql}: page too long");
        }
        rows.extend(page.rows);
        match page.paging_state {
            Some(state) => query.paging_state = Some(state),
            None => return rows,
        }
    }
}

/// The `at` column (the clustering key) of rows of `shop.log`.
fn ats(rows: &[Vec<Value>]) -> Vec<i32> {
    rows.iter()
        .map(|row| match row[1] {
            Value::Int(at) => at,
            ref other => panic!("at is {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_written_sliced_paged_updated_and_deleted_through_any_node() {
    let cluster = Cluster::start(3);
    let (one, two) = (cluster.client(1).await, cluster.client(2).await);
    run(&one, None, KEYSPACE).await.unwrap();
    run(
        &one,
        Some("shop"),
        "CREATE TABLE log (device text, at int, reading double, note text, \
         PRIMARY KEY (device, at)) WITH CLUSTERING ORDER BY (at DESC)",
    )
    .await
    .unwrap();
    // 100 rows of one partition, through node1 with a prepared statement;
    // one of another.
    let insert = one
        .prepare(
            "INSERT INTO log (device, at, reading) VALUES ('d1', ?, ?)",
            Some("shop"),
        )
        .await
        .unwrap();
    let markers: Vec<(&str, CqlType)> = (insert.markers.iter())
        .map(|m| (m.name.as_str(), m.ty))
        .collect();
    assert_eq!(
        markers,
        [("at", CqlType::Int), ("reading", CqlType::Double)]
    );
    let values = |at: i32| vec![Value::Int(at), Value::Double(f64::from(at) / 2.0)];
    for at in 0..100 {
        let query = insert.bind(values(at), ConsistencyLevel::Quorum).unwrap();
        let written = one.query(query).await.unwrap();
        assert!(matches!(written, QueryResult::Written { ref contexts } if contexts.len() == 1));
    }
    let wrong = insert.bind(
        vec![Value::Text("x".into()), Value::Double(0.0)],
        ConsistencyLevel::Quorum,
    );
    assert_eq!(
        wrong.unwrap_err().to_string(),
        "value 1 (at): expected a value of type int, got text"
    );
    // Node2 never prepared it: by id alone it says so, and the client
    // sends the text along by itself.
    let mut by_id = insert.bind(values(5), ConsistencyLevel::Quorum).unwrap();
    by_id.cql.clear();
    let unprepared = two.query(by_id.clone()).await.unwrap_err();
    assert!(
        matches!(
            unprepared,
            ClientError::Request(RequestError::Unprepared { .. })
        ),
        "{unprepared:?}"
    );
    let query = insert.bind(values(5), ConsistencyLevel::Quorum).unwrap();
    two.query(query).await.unwrap();
    two.query(by_id).await.unwrap();
    // A prepared SELECT pages through a node that had not prepared it (its
    // first page goes with the text, the next by id alone).
    let pages = two
        .prepare(
            "SELECT device, at FROM log WHERE device = ? AND at < ?",
            Some("shop"),
        )
        .await
        .unwrap();
    let node3 = cluster.client(3).await;
    let mut query = pages
        .bind(
            vec![Value::Text("d1".into()), Value::Int(50)],
            ConsistencyLevel::Quorum,
        )
        .unwrap();
    query.page_size = Some(7);
    let mut seen = Vec::new();
    loop {
        let QueryResult::Rows(page) = node3.query(query.clone()).await.unwrap() else {
            panic!("not rows")
        };
        seen.extend(page.rows);
        match page.paging_state {
            Some(state) => query.paging_state = Some(state),
            None => break,
        }
    }
    assert_eq!(ats(&seen), (0..50).rev().collect::<Vec<_>>());
    run(
        &one,
        Some("shop"),
        "INSERT INTO log (device, at) VALUES ('d2', 7)",
    )
    .await
    .unwrap();

    // Read through node2: the whole partition in clustering order (DESC),
    // a slice in order and in reverse, with and without paging.
    let all = select(&two, "SELECT * FROM log WHERE device = 'd1'", None).await;
    assert_eq!(ats(&all), (0..100).rev().collect::<Vec<_>>());
    assert_eq!(all[0][2], Value::Double(49.5));
    let slice = "SELECT * FROM log WHERE device = 'd1' AND at >= 10 AND at < 30";
    let expected: Vec<i32> = (10..30).rev().collect();
    assert_eq!(ats(&select(&two, slice, None).await), expected);
    assert_eq!(ats(&select(&two, slice, Some(7)).await), expected);
    let reverse = format!("{slice} ORDER BY at ASC");
    let ascending: Vec<i32> = (10..30).collect();
    assert_eq!(ats(&select(&two, &reverse, Some(6)).await), ascending);
    let limited = select(&two, &format!("{reverse} LIMIT 5"), Some(2)).await;
    assert_eq!(ats(&limited), vec![10, 11, 12, 13, 14]);
    let both = "SELECT * FROM log WHERE device IN ('d1', 'd2') AND at IN (7, 8) \
                PER PARTITION LIMIT 1";
    assert_eq!(ats(&select(&two, both, Some(1)).await), vec![8, 7]);
    let count = select(&two, "SELECT COUNT(*) FROM log WHERE device = 'd1'", None).await;
    assert_eq!(count, vec![vec![Value::BigInt(100)]]);

    // UPDATE writes the columns it names over the others; DELETE of a
    // column removes only it.
    run(
        &two,
        Some("shop"),
        "UPDATE log SET note = 'checked' WHERE device = 'd1' AND at = 42",
    )
    .await
    .unwrap();
    let row = select(
        &one,
        "SELECT reading, note FROM log WHERE device = 'd1' AND at = 42",
        None,
    )
    .await;
    assert_eq!(
        row,
        vec![vec![Value::Double(21.0), Value::Text("checked".into())]]
    );
    run(
        &one,
        Some("shop"),
        "DELETE reading FROM log WHERE device = 'd1' AND at = 42",
    )
    .await
    .unwrap();
    let row = select(
        &two,
        "SELECT reading, note FROM log WHERE device = 'd1' AND at = 42",
        None,
    )
    .await;
    assert_eq!(row, vec![vec![Value::Null, Value::Text("checked".into())]]);

    // DELETE of a row and of a clustering range, then the slice again.
    run(
        &two,
        Some("shop"),
        "DELETE FROM log WHERE device = 'd1' AND at = 15",
    )
    .await
    .unwrap();
    // A SELECT of the deleted row finds nothing, but says what it saw, so
    // that a write after it supersedes just the delete.
    let deleted = Query {
        keyspace: Some("shop".into()),
        ..Query::new(
            "SELECT * FROM log WHERE device = 'd1' AND at = 15",
            ConsistencyLevel::Quorum,
        )
    };
    let QueryResult::Rows(found) = one.query(deleted).await.unwrap() else {
        panic!("not rows")
    };
    assert!(found.rows.is_empty(), "{found:?}");
    assert_eq!(found.contexts.len(), 1, "{found:?}");
    run(
        &one,
        Some("shop"),
        "DELETE FROM log WHERE device = 'd1' AND at >= 20 AND at <= 25",
    )
    .await
    .unwrap();
    let left: Vec<i32> = (10..30)
        .filter(|at| *at != 15 && !(20..=25).contains(at))
        .collect();
    assert_eq!(ats(&select(&one, &reverse, Some(4)).await), left);

    // A traced QUORUM read lists the replicas asked and those that answered.
    let traced = Query {
        keyspace: Some("shop".into()),
        tracing: true,
        ..Query::new(
            "SELECT * FROM log WHERE device = 'd1' AND at = 3",
            ConsistencyLevel::Quorum,
        )
    };
    let (result, trace) = two.query_traced(traced).await.unwrap();
    assert!(matches!(result, QueryResult::Rows(ref rows) if rows.rows.len() == 1));
    let activities: Vec<&str> = trace.iter().map(|e| e.activity.as_str()).collect();
    let asked = activities
        .iter()
        .find(|a| a.starts_with("asked "))
        .expect("asked");
    assert_eq!(asked.matches("node").count(), 2, "{activities:?}");
    let answered = activities
        .iter()
        .filter(|a| a.ends_with(" answered"))
        .count();
    assert!(answered >= 2, "{activities:?}");
    assert!(trace.iter().all(|e| e.source == "node2"), "{trace:?}");
    assert!(trace.is_sorted_by_key(|e| e.elapsed_micros), "{trace:?}");

    // What is not there, or not allowed, says so.
    let unknown = run(&two, Some("shop"), "SELECT * FROM nope WHERE k = 1").await;
    assert_eq!(
        unknown.unwrap_err().to_string(),
        "invalid request: table shop.nope does not exist"
    );
    let scan = run(&two, Some("shop"), "SELECT * FROM log WHERE at > 3").await;
    assert!(
        scan.as_ref()
            .unwrap_err()
            .to_string()
            .contains("ALLOW FILTERING"),
        "{scan:?}"
    );
    let typed = run(
        &two,
        Some("shop"),
        "INSERT INTO log (device, at) VALUES ('d1', 'x')",
    )
    .await;
    assert!(
        typed
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("'x' is not a valid int"),
        "{typed:?}"
    );

    // A last-write-wins table takes USING TIMESTAMP: an older write
    // changes nothing, a newer one wins; a table of siblings refuses it.
    run(
        &one,
        Some("shop"),
        "CREATE TABLE prices (item text PRIMARY KEY, cents int) WITH conflict_mode = 'lww'",
    )
    .await
    .unwrap();
    for (cents, at) in [(100, 5_000), (90, 4_000), (120, 6_000), (80, 1_000)] {
        let cql = format!(
            "INSERT INTO prices (item, cents) VALUES ('tea', {cents}) USING TIMESTAMP {at}"
        );
        run(&two, Some("shop"), &cql).await.unwrap();
    }
    let price = "SELECT cents, writetime(cents) FROM prices WHERE item = 'tea'";
    assert_eq!(
        select(&one, price, None).await,
        vec![vec![Value::Int(120), Value::BigInt(6_000)]]
    );
    // Written without a timestamp after it, it is stamped after it.
    run(
        &one,
        Some("shop"),
        "UPDATE prices SET cents = 130 WHERE item = 'tea'",
    )
    .await
    .unwrap();
    let latest = select(&two, price, None).await;
    assert_eq!(latest[0][0], Value::Int(130));
    let sibling_table = run(
        &one,
        Some("shop"),
        "INSERT INTO log (device, at) VALUES ('d9', 1) USING TIMESTAMP 5",
    )
    .await
    .unwrap_err();
    assert!(
        sibling_table
            .to_string()
            .contains("USING TIMESTAMP is for last-write-wins tables"),
        "{sibling_table}"
    );
    let delete = run(
        &one,
        Some("shop"),
        "DELETE FROM prices USING TIMESTAMP 9000 WHERE item = 'tea'",
    )
    .await
    .unwrap_err();
    assert!(
        delete.to_string().contains("INSERT and UPDATE only"),
        "{delete}"
    );
}

/// Runs `cql` in keyspace `world` at `level` through `client`.
async fn at_level(
    client: &Client,
    level: ConsistencyLevel,
    cql: &str,
) -> Result<QueryResult, ClientError> {
    client
        .query(Query {
            keyspace: Some("world".into()),
            ..Query::new(cql, level)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_quorum_is_met_in_one_datacenter_and_each_quorum_needs_every_one() {
    let cluster = Cluster::start_in_datacenters(6, 2);
    let client = cluster.client(1).await;
    let keyspace = "CREATE KEYSPACE world WITH replication = \
                    {'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 3}";
    run(&client, None, keyspace).await.unwrap();
    run(
        &client,
        Some("world"),
        "CREATE TABLE t (k int PRIMARY KEY, v text)",
    )
    .await
    .unwrap();
    // Every level works with both datacenters up.
    for level in [ConsistencyLevel::EachQuorum, ConsistencyLevel::LocalQuorum] {
        let insert = format!("INSERT INTO t (k, v) VALUES (1, '{level}')");
        at_level(&client, level, &insert).await.unwrap();
    }
    // A LOCAL_QUORUM write waits for dc1 but goes to dc2's replicas too
    // (not hinted for them).
    let traced = Query {
        keyspace: Some("world".into()),
        tracing: true,
        ..Query::new(
            "INSERT INTO t (k, v) VALUES (9, 'everywhere')",
            ConsistencyLevel::LocalQuorum,
        )
    };
    let (_, trace) = client.query_traced(traced).await.unwrap();
    let sent = trace
        .iter()
        .find(|e| e.activity.starts_with("sent the write to"))
        .expect("a send");
    for node in ["node2", "node3", "node4", "node5", "node6"] {
        assert!(sent.activity.contains(node), "{trace:?}");
    }
    assert!(
        !trace.iter().any(|e| e.activity.contains("hints")),
        "{trace:?}"
    );
    // dc2 (node4-6) goes down entirely.
    for n in 4..=6 {
        cluster.kill(n).await;
    }
    for n in 4..=6 {
        cluster.wait_convicted(1, n).await;
    }
    let local = ConsistencyLevel::LocalQuorum;
    at_level(
        &client,
        local,
        "INSERT INTO t (k, v) VALUES (2, 'dc1 only')",
    )
    .await
    .unwrap();
    let read = at_level(&client, local, "SELECT v FROM t WHERE k = 2").await;
    assert!(
        matches!(&read, Ok(QueryResult::Rows(rows)) if rows.rows == vec![vec![Value::Text("dc1 only".into())]]),
        "{read:?}"
    );
    at_level(
        &client,
        ConsistencyLevel::LocalOne,
        "SELECT v FROM t WHERE k = 1",
    )
    .await
    .unwrap();
    // EACH_QUORUM needs 2 of dc2's 3, and QUORUM 4 of all 6.
    let each = at_level(
        &client,
        ConsistencyLevel::EachQuorum,
        "INSERT INTO t (k, v) VALUES (3, 'x')",
    )
    .await;
    assert!(
        matches!(
            each,
            Err(ClientError::Request(RequestError::Unavailable {
                required: 2,
                alive: 0
            }))
        ),
        "{each:?}"
    );
    let each = at_level(
        &client,
        ConsistencyLevel::EachQuorum,
        "SELECT v FROM t WHERE k = 1",
    )
    .await;
    assert!(
        matches!(
            each,
            Err(ClientError::Request(RequestError::Unavailable { .. }))
        ),
        "{each:?}"
    );
    let quorum = at_level(
        &client,
        ConsistencyLevel::Quorum,
        "INSERT INTO t (k, v) VALUES (3, 'x')",
    )
    .await;
    assert!(
        matches!(
            quorum,
            Err(ClientError::Request(RequestError::Unavailable {
                required: 4,
                alive: 3
            }))
        ),
        "{quorum:?}"
    );
}

/// The rows of partition 'a' of `batches.t`, read through `client` at
/// `level`, as (c, v).
async fn rows_of_a(client: &Client, level: ConsistencyLevel) -> Vec<(i32, String)> {
    let query = Query {
        keyspace: Some("batches".into()),
        ..Query::new("SELECT c, v FROM t WHERE k = 'a'", level)
    };
    let QueryResult::Rows(rows) = client.query(query).await.unwrap() else {
        panic!("not rows")
    };
    (rows.rows.into_iter())
        .map(|row| match row.as_slice() {
            [Value::Int(c), Value::Text(v)] => (*c, v.clone()),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// A batch of one partition is applied whole: its coordinator writes its
/// rows in one write, and a replica that was down gets them as one hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_one_partition_is_written_whole_and_hinted_as_one() {
    let mut cluster = Cluster::start(3);
    let one = cluster.client(1).await;
    let keyspace = KEYSPACE.replace("shop", "batches");
    run(&one, None, &keyspace).await.unwrap();
    let table = "CREATE TABLE t (k text, c int, v text, PRIMARY KEY (k, c))";
    run(&one, Some("batches"), table).await.unwrap();
    let old = "INSERT INTO t (k, c, v) VALUES ('a', 3, 'old')";
    run(&one, Some("batches"), old).await.unwrap();
    cluster.kill(3).await;
    cluster.wait_convicted(1, 3).await;
    let before = one.repair_stats().await.unwrap().hints;

    // Two changes of row 1 combine; row 3 is deleted.
    let batch = "BEGIN BATCH\n\
                   INSERT INTO t (k, c, v) VALUES ('a', 1, 'x');\n\
                   INSERT INTO t (k, c, v) VALUES ('a', 2, 'y');\n\
                   UPDATE t SET v = 'z' WHERE k = 'a' AND c = 1;\n\
                   DELETE FROM t WHERE k = 'a' AND c = 3;\n\
                 APPLY BATCH";
    let traced = Query {
        keyspace: Some("batches".into()),
        tracing: true,
        ..Query::new(batch, ConsistencyLevel::Quorum)
    };
    let (result, trace) = one.query_traced(traced).await.unwrap();
    assert!(
        matches!(result, QueryResult::Written { ref contexts } if contexts.len() == 3),
        "{result:?}"
    );
    let activities: Vec<&str> = trace.iter().map(|e| e.activity.as_str()).collect();
    assert!(
        activities.contains(&"wrote 3 rows locally, in one write"),
        "{activities:?}"
    );
    // The DELETE's read of what it deletes is traced too.
    assert!(
        activities.iter().any(|a| a.starts_with("asked ")),
        "{activities:?}"
    );
    let after = one.repair_stats().await.unwrap().hints;
    assert_eq!(after.written, before.written + 1, "one hint for the batch");
    let two = cluster.client(2).await;
    let expected = vec![(1, "z".to_string()), (2, "y".to_string())];
    assert_eq!(rows_of_a(&two, ConsistencyLevel::Quorum).await, expected);

    // A session that read row 2 updates it, then deletes a range holding
    // it, in one batch: the row goes (the delete supersedes what the read
    // saw and what the update wrote).
    let read = Query {
        keyspace: Some("batches".into()),
        ..Query::new(
            "SELECT v FROM t WHERE k = 'a' AND c = 2",
            ConsistencyLevel::Quorum,
        )
    };
    let QueryResult::Rows(rows) = two.query(read).await.unwrap() else {
        panic!("not rows")
    };
    assert!(!rows.contexts.is_empty());
    let batch = Query {
        keyspace: Some("batches".into()),
        contexts: rows.contexts,
        ..Query::new(
            "BEGIN BATCH\n\
               UPDATE t SET v = 'w' WHERE k = 'a' AND c = 2;\n\
               DELETE FROM t WHERE k = 'a' AND c >= 2;\n\
             APPLY BATCH",
            ConsistencyLevel::Quorum,
        )
    };
    two.query(batch).await.unwrap();
    let expected = vec![(1, "z".to_string())];
    assert_eq!(rows_of_a(&one, ConsistencyLevel::Quorum).await, expected);

    // Node3 comes back and gets the hints (one per batch); then it alone
    // answers.
    let written = two.repair_stats().await.unwrap().hints.written;
    let hinted = one.repair_stats().await.unwrap().hints.written + written;
    cluster.restart(3);
    wait_until("the batches' hints are delivered", DEADLINE, || async {
        let mut delivered = 0;
        for client in [&one, &two] {
            match client.repair_stats().await {
                Ok(stats) => delivered += stats.hints.delivered,
                Err(_) => return false,
            }
        }
        delivered >= hinted
    })
    .await;
    cluster.kill(1).await;
    cluster.kill(2).await;
    cluster.wait_convicted(3, 1).await;
    cluster.wait_convicted(3, 2).await;
    let three = cluster.client(3).await;
    assert_eq!(rows_of_a(&three, ConsistencyLevel::One).await, expected);
}
