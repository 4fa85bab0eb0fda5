//! CQL statements over real processes: the schema is created through one
//! node, reaches every other (pushed at once, pulled by gossip by a node
//! that was down), survives kill -9, and bad statements get errors that
//! say where and what.

mod common;

use std::time::Duration;

use common::{Cluster, DEADLINE, wait_until};
use ringdb::client::{Client, ClientError, ConsistencyLevel, Query, QueryResult, RequestError};
use tokio::time::Instant;

/// Runs `cql` through `client` in keyspace `keyspace`.
async fn run(
    client: &Client,
    keyspace: Option<&str>,
    cql: &str,
) -> Result<QueryResult, ClientError> {
    client
        .query(Query {
            cql: cql.to_string(),
            values: Vec::new(),
            keyspace: keyspace.map(str::to_string),
            consistency: ConsistencyLevel::Quorum,
            tracing: false,
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
