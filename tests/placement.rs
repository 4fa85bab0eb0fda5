//! Replication per keyspace, over real processes: a keyspace's rows are
//! placed by its own replication, not the cluster's, its consistency
//! levels, Merkle trees and repairs count its replicas, and an altered
//! replication holds once repaired.

mod common;

use std::time::Duration;

use common::Cluster;
use ringdb::client::{
    Client, ClientError, ConsistencyLevel, Query, QueryResult, RepairSummary, RequestError, Value,
};
use ringdb::ring::NodeId;

/// Runs `cql` through `client` at `level`.
async fn run(
    client: &Client,
    level: ConsistencyLevel,
    cql: &str,
) -> Result<QueryResult, ClientError> {
    client.query(Query::new(cql, level)).await
}

/// The value of `table`'s row `k` read at ONE: `None` when no replica of it
/// is alive (Unavailable); panics on any other error.
async fn read_one(client: &Client, table: &str, k: i32) -> Option<String> {
    let select = format!("SELECT v FROM {table} WHERE k = {k}");
    match run(client, ConsistencyLevel::One, &select).await {
        Ok(QueryResult::Rows(rows)) => match rows.rows.as_slice() {
            [row] => match &row[0] {
                Value::Text(v) => Some(v.clone()),
                other => panic!("{table} {k}: {other:?}"),
            },
            other => panic!("{table} {k}: {other:?}"),
        },
        Err(ClientError::Request(RequestError::Unavailable { required, alive })) => {
            assert_eq!((required, alive), (1, 0), "{table} {k}");
            None
        }
        other => panic!("{table} {k}: {other:?}"),
    }
}

/// A repair of every range through `client`'s node.
async fn repair(client: &Client) -> RepairSummary {
    let within = Duration::from_secs(120);
    client.repair(None, Vec::new(), within).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyspace_places_its_rows_by_its_own_replication() {
    // Four nodes, the cluster's replication factor 3; no hints, so that
    // only the repair asked for brings back what a replica missed.
    let mut cluster = Cluster::start_with(4, &["hints.enabled=false", "antientropy.enabled=false"]);
    let client = cluster.client(1).await;
    let all = ConsistencyLevel::All;
    for (keyspace, factor) in [("solo", 1), ("pair", 2), ("lone", 1)] {
        let create = format!(
            "CREATE KEYSPACE {keyspace} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': {factor}}}"
        );
        run(&client, all, &create).await.unwrap();
        let table = format!("CREATE TABLE {keyspace}.t (k int PRIMARY KEY, v text)");
        run(&client, all, &table).await.unwrap();
    }
    // ALL is every replica of the keyspace's: one for solo, two for pair.
    for k in 0..40 {
        for keyspace in ["solo", "pair"] {
            let insert = format!("INSERT INTO {keyspace}.t (k, v) VALUES ({k}, '{keyspace}{k}')");
            run(&client, all, &insert).await.unwrap();
        }
    }
    cluster.kill(4).await;
    cluster.wait_convicted(1, 4).await;
    // A row of solo has one replica: those of node4 cannot be read, the
    // others can (with the cluster's factor of 3, every row could).
    let mut unavailable = 0;
    for k in 0..40 {
        match read_one(&client, "solo.t", k).await {
            Some(v) => assert_eq!(v, format!("solo{k}")),
            None => unavailable += 1,
        }
        // Every row of pair keeps a live replica.
        assert_eq!(
            read_one(&client, "pair.t", k).await,
            Some(format!("pair{k}"))
        );
    }
    assert!(
        (1..40).contains(&unavailable),
        "{unavailable} of 40 unavailable"
    );
    // While node4 is down, pair's rows it replicates are written to the
    // other replica only; a repair through node4 brings them back.
    for k in 100..140 {
        let insert = format!("INSERT INTO pair.t (k, v) VALUES ({k}, 'late{k}')");
        run(&client, ConsistencyLevel::One, &insert).await.unwrap();
    }
    cluster.restart(4);
    cluster.wait_connected(4, &[1, 2, 3]).await;
    let four = cluster.client(4).await;
    let repaired = repair(&four).await;
    assert!(repaired.ranges_failed.is_empty(), "{repaired:?}");
    assert!(repaired.keys_repaired > 0, "{repaired:?}");
    // The replicas of each keyspace now agree: the trees of the rows each
    // is meant to hold are the same (no row of solo counts against them).
    let again = repair(&four).await;
    assert!(again.ranges_differing.is_empty(), "{again:?}");
    assert!(again.ranges_compared > 0, "{again:?}");
    let status = client.status().await.unwrap();
    assert_eq!(status.placements.len(), 2, "{status:?}");

    // Altered to three replicas and repaired on every node, solo keeps
    // every row with node4 down again.
    let alter = "ALTER KEYSPACE solo WITH replication = \
                 {'class': 'SimpleStrategy', 'replication_factor': 3}";
    run(&client, all, alter).await.unwrap();
    for n in 1..=4 {
        let repaired = repair(&cluster.client(n).await).await;
        assert!(repaired.ranges_failed.is_empty(), "node{n}: {repaired:?}");
    }
    cluster.kill(4).await;
    cluster.wait_convicted(1, 4).await;
    for k in 0..40 {
        assert_eq!(
            read_one(&client, "solo.t", k).await,
            Some(format!("solo{k}"))
        );
    }

    // node4 is removed: pair's ranges it held are copied to their new
    // replicas, and lone's (one replica) are lost with it, which does not
    // stop the removal.
    let removed = client
        .remove_node(&NodeId::new("node4"), Duration::from_secs(120))
        .await
        .unwrap();
    assert!(removed.contains("had no other replica"), "{removed}");
    for k in (0..40).chain(100..140) {
        let select = format!("SELECT v FROM pair.t WHERE k = {k}");
        let Ok(QueryResult::Rows(rows)) = run(&client, all, &select).await else {
            panic!("pair {k} at ALL after the removal")
        };
        let expected = if k < 100 {
            format!("pair{k}")
        } else {
            format!("late{k}")
        };
        assert_eq!(rows.rows, vec![vec![Value::Text(expected)]], "pair {k}");
    }
}
