//! The `ringdb` crate as an application uses it, against a real node:
//! the client builder, typed rows, pages and sibling resolution.

mod common;

use common::Cluster;
use ringdb::client::{
    ClientError, ConsistencyLevel, Context, FromRow, MappingError, PartitionKey, Query, Row,
    RowAddress, RowView, Value,
};

/// A user of the `ringdb` crate, as its essay shows one.
#[derive(Debug, PartialEq)]
struct Reading {
    at: i32,
    reading: Option<f64>,
}

impl FromRow for Reading {
    fn from_row(row: &RowView<'_>) -> Result<Reading, MappingError> {
        Ok(Reading {
            at: row.get("at")?,
            reading: row.get("reading")?,
        })
    }
}

/// The library's conveniences against a real node: a client built from a
/// host name and a CA file, a table read page by page into the
/// application's own type, and siblings merged and written back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_builds_a_client_pages_typed_rows_and_resolves_siblings() {
    let cluster = Cluster::start(1);
    let port = cluster.client_address(1).port();
    let client = ringdb::Client::builder()
        .contact_point(format!("localhost:{port}"))
        .ca_file(cluster.dir().join("ca.pem"))
        .connect()
        .await
        .unwrap();
    let one = ConsistencyLevel::One;
    let setup = [
        "CREATE KEYSPACE app WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE app.log (device text, at int, reading double, PRIMARY KEY (device, at))",
    ];
    for cql in setup {
        client.query(Query::new(cql, one)).await.unwrap();
    }
    for at in 0..23 {
        // Row 7 without a reading: it reads as None.
        let cql = match at {
            7 => "INSERT INTO app.log (device, at) VALUES ('d', 7)".to_string(),
            at => format!("INSERT INTO app.log (device, at, reading) VALUES ('d', {at}, {at}.5)"),
        };
        client.query(Query::new(cql, one)).await.unwrap();
    }
    let mut pages = client.pages(Query {
        page_size: Some(5),
        ..Query::new("SELECT at, reading FROM app.log WHERE device = 'd'", one)
    });
    let (mut read, mut sizes) = (Vec::new(), Vec::new());
    while let Some(page) = pages.next_page().await.unwrap() {
        sizes.push(page.rows.len());
        for reading in page.typed::<Reading>() {
            read.push(reading.unwrap());
        }
    }
    assert_eq!(sizes, [5, 5, 5, 5, 3]);
    let expected: Vec<Reading> = (0..23)
        .map(|at| Reading {
            at,
            reading: (at != 7).then(|| f64::from(at) + 0.5),
        })
        .collect();
    assert_eq!(read, expected);
    // The wrong type is an error naming the column; a write has no pages.
    let first = client
        .pages(Query::new("SELECT at FROM app.log WHERE device = 'd'", one))
        .next_page()
        .await
        .unwrap()
        .unwrap();
    let wrong = first.typed::<(String,)>().next().unwrap().unwrap_err();
    assert_eq!(wrong.to_string(), "column at: expected text, got int");
    let insert = Query::new("INSERT INTO app.log (device, at) VALUES ('e', 1)", one);
    assert!(matches!(
        client.pages(insert).next_page().await,
        Err(ClientError::Config(_))
    ));

    // Two writes made from one read did not see each other: siblings.
    // Merged (the union of their columns) and written back, one version
    // is left.
    let row = RowAddress::new("kv", PartitionKey::new("cart").unwrap());
    let empty = client
        .put(&row, Row::new(), Context::empty(), one)
        .await
        .unwrap();
    for (item, count) in [("apples", 2), ("pears", 1)] {
        let columns = Row::from([(item.to_string(), Value::from(count))]);
        let context = empty.context.clone();
        client.put(&row, columns, context, one).await.unwrap();
    }
    assert!(client.get(&row, one).await.unwrap().has_siblings());
    let union = |mut merged: Row, next: &Row| {
        merged.extend(next.clone());
        merged
    };
    let resolved = client
        .get_resolved(&row, one, union)
        .await
        .unwrap()
        .unwrap();
    let after = client.get(&row, one).await.unwrap();
    assert_eq!(after.siblings.len(), 1, "{after:?}");
    assert_eq!(after.siblings[0].columns, resolved);
    let cart: (i32, i32) = FromRow::from_row(&RowView::of(&resolved)).unwrap();
    assert_eq!(cart, (2, 1));
}
