use crate::schema::next_stamp;
use ringdb_proto::{ColumnKind, ConflictMode, CqlType, Order};
use ringdb_ring::{NodeId, Replication};

use super::*;

fn stamp(micros: i64, node: &str) -> Stamp {
    Stamp {
        micros,
        node: NodeId::new(node),
    }
}

/// Runs `text` on `schema` as `node` at `micros`, merging what it changes.
fn run(schema: &mut Schema, text: &str, micros: i64, node: &str) -> Result<bool, DdlError> {
    let statement = ringdb_cql::parse_statement(text).unwrap();
    let change = plan(schema, &statement, Some("shop"), &stamp(micros, node))?;
    Ok(change.is_some_and(|change| schema.merge(&change)))
}

fn shop() -> Schema {
    let mut schema = Schema::default();
    run(
        &mut schema,
        "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}",
        1,
        "n1",
    )
    .unwrap();
    schema
}

const EVENTS: &str = "CREATE TABLE events (day date, note text, at timestamp, device uuid, \
                      PRIMARY KEY ((device, day), at)) WITH CLUSTERING ORDER BY (at DESC)";

#[test]
fn keyspaces_are_created_once_with_their_replication() {
    let mut schema = shop();
    assert_eq!(
        schema.keyspace("shop").unwrap().replication,
        Replication::Simple { factor: 3 }
    );
    let again = "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}";
    assert_eq!(
        run(&mut schema, again, 2, "n1").unwrap_err().to_string(),
        "keyspace shop already exists"
    );
    let quietly = again.replace("KEYSPACE shop", "KEYSPACE IF NOT EXISTS shop");
    assert_eq!(run(&mut schema, &quietly, 2, "n1"), Ok(false));
    run(
        &mut schema,
        "CREATE KEYSPACE world WITH replication = \
         {'class': 'org.apache.cassandra.locator.NetworkTopologyStrategy', 'dc1': 3, 'dc2': '2'}",
        3,
        "n1",
    )
    .unwrap();
    assert_eq!(
        schema.keyspace("world").unwrap().replication,
        Replication::PerDatacenter {
            factors: [("dc1".to_string(), 3), ("dc2".to_string(), 2)].into()
        }
    );
}

#[test]
fn bad_keyspace_options_say_what_is_wrong() {
    let mut schema = Schema::default();
    let mut error = |options: &str| {
        let text = format!("CREATE KEYSPACE ks WITH {options}");
        run(&mut schema, &text, 1, "n1").unwrap_err().to_string()
    };
    assert_eq!(
        error("replication = {'class': 'SimpleStrategy'}"),
        "line 1:39: SimpleStrategy needs a 'replication_factor'"
    );
    assert!(error("replication = {'class': 'Old'}").contains("unknown replication class 'Old'"));
    assert!(
        error("replication = {'class': 'SimpleStrategy', 'replication_factor': 99}")
            .contains("replication factor 99 is not 0 to 32")
    );
    assert!(
        error("replication = {'class': 'NetworkTopologyStrategy', 'replication_factor': 3}")
            .contains("name each datacenter's factor")
    );
    assert!(
        error("replication = {'class': 'SimpleStrategy', 'replication_factor': 1} AND durable_writes = false")
            .contains("always durable")
    );
    assert!(error("speed = 'fast'").contains("unknown keyspace property 'speed'"));
}

#[test]
fn tables_put_key_columns_first_in_key_order() {
    let mut schema = shop();
    run(&mut schema, EVENTS, 2, "n1").unwrap();
    let table = schema.table("shop", "events").unwrap();
    let columns: Vec<(&str, CqlType, ColumnKind)> = table
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.ty, c.kind))
        .collect();
    assert_eq!(
        columns,
        [
            ("device", CqlType::Uuid, ColumnKind::PartitionKey),
            ("day", CqlType::Date, ColumnKind::PartitionKey),
            (
                "at",
                CqlType::Timestamp,
                ColumnKind::Clustering(Order::Desc)
            ),
            ("note", CqlType::Text, ColumnKind::Regular),
        ]
    );
    assert_eq!(table.conflict, ConflictMode::Siblings);
    assert_eq!(
        run(&mut schema, EVENTS, 3, "n1").unwrap_err().to_string(),
        "table shop.events already exists"
    );
}

#[test]
fn bad_tables_say_what_is_wrong() {
    let mut schema = shop();
    let mut error = |text: &str| run(&mut schema, text, 2, "n1").unwrap_err().to_string();
    assert_eq!(
        error("CREATE TABLE t (k int, PRIMARY KEY (k, c))"),
        "line 1:14: primary key column c is not defined"
    );
    assert_eq!(
        error("CREATE TABLE t (k int PRIMARY KEY, v int, v text)"),
        "line 1:43: column v is defined twice"
    );
    assert!(error("CREATE TABLE t (k int, a int, b int, PRIMARY KEY (k, a, b)) WITH CLUSTERING ORDER BY (b DESC)")
        .contains("must name the clustering columns in key order (a, b); b is out of place"));
    assert!(
        error("CREATE TABLE t (k int PRIMARY KEY) WITH compaction = 'x'")
            .contains("does not support the table property 'compaction'")
    );
    assert!(
        error("CREATE TABLE t (k int PRIMARY KEY) WITH conflict_mode = 'newest'")
            .contains("conflict_mode is 'siblings' or 'lww', not 'newest'")
    );
    assert_eq!(
        error("CREATE TABLE nowhere.t (k int PRIMARY KEY)"),
        "keyspace nowhere does not exist"
    );
    let statement = ringdb_cql::parse_statement("CREATE TABLE t (k int PRIMARY KEY)").unwrap();
    assert_eq!(
        plan(&schema, &statement, None, &stamp(3, "n1")),
        Err(DdlError::NoKeyspace)
    );
}

#[test]
fn alter_adds_and_drops_regular_columns_only() {
    let mut schema = shop();
    run(&mut schema, EVENTS, 2, "n1").unwrap();
    run(
        &mut schema,
        "ALTER TABLE events ADD reading double",
        3,
        "n1",
    )
    .unwrap();
    run(&mut schema, "ALTER TABLE events DROP note", 4, "n1").unwrap();
    let table = schema.table("shop", "events").unwrap();
    assert_eq!(table.column("reading").unwrap().ty, CqlType::Double);
    assert!(table.column("note").is_none());
    let mut error = |text: &str| run(&mut schema, text, 5, "n1").unwrap_err().to_string();
    assert!(error("ALTER TABLE events DROP at").contains("part of the primary key"));
    assert!(error("ALTER TABLE events ADD reading int").contains("column reading already exists"));
    assert!(error("ALTER TABLE events WITH conflict_mode = 'lww'").contains("cannot change"));
    assert_eq!(
        error("ALTER TABLE nope ADD x int"),
        "table shop.nope does not exist"
    );
}

#[test]
fn concurrent_creates_agree_on_the_id_and_converge_to_one_definition() {
    // Two nodes with the same keyspace create the same table at once,
    // with different columns; each merges the other's change later.
    let (mut a, mut b) = (shop(), shop());
    run(
        &mut a,
        "CREATE TABLE IF NOT EXISTS t (k int PRIMARY KEY, v text)",
        10,
        "n1",
    )
    .unwrap();
    run(
        &mut b,
        "CREATE TABLE IF NOT EXISTS t (k int PRIMARY KEY, w int)",
        11,
        "n2",
    )
    .unwrap();
    let id = a.table("shop", "t").unwrap().id;
    assert_eq!(b.table("shop", "t").unwrap().id, id);
    let (a_copy, b_copy) = (a.clone(), b.clone());
    assert!(a.merge(&b_copy));
    assert!(!b.merge(&a_copy));
    assert_eq!(a, b);
    assert_eq!(a.version(), b.version());
    // The later statement won.
    assert!(a.table("shop", "t").unwrap().column("w").is_some());
    assert!(!a.merge(&b_copy), "merging again changes nothing");
}

#[test]
fn a_table_dropped_and_created_again_gets_a_new_id() {
    let mut schema = shop();
    run(&mut schema, "CREATE TABLE t (k int PRIMARY KEY)", 2, "n1").unwrap();
    let first = schema.table("shop", "t").unwrap().id;
    run(&mut schema, "DROP TABLE t", 3, "n1").unwrap();
    assert!(schema.table("shop", "t").is_none());
    assert_eq!(
        run(&mut schema, "DROP TABLE IF EXISTS t", 4, "n1"),
        Ok(false)
    );
    run(&mut schema, "CREATE TABLE t (k int PRIMARY KEY)", 5, "n1").unwrap();
    let second = schema.table("shop", "t").unwrap().id;
    assert_ne!(first, second);
    assert_eq!(schema.table_by_id(second).unwrap().name, "t");
    assert!(schema.table_by_id(first).is_none());
}

#[test]
fn a_dropped_keyspace_takes_its_tables_even_where_the_drop_arrives_late() {
    let mut schema = shop();
    run(&mut schema, "CREATE TABLE t (k int PRIMARY KEY)", 2, "n1").unwrap();
    let before = schema.clone();
    run(&mut schema, "DROP KEYSPACE shop", 3, "n1").unwrap();
    assert!(schema.keyspace("shop").is_none());
    assert_eq!(schema.tables_of("shop").count(), 0);
    run(
        &mut schema,
        "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        4,
        "n1",
    )
    .unwrap();
    // A node that had missed the drop: only the keyspace's new entry
    // reaches it, and the old table stays dead there too.
    let mut late = before;
    let mut keyspace_only = schema.clone();
    keyspace_only.tables.clear();
    late.merge(&keyspace_only);
    assert!(late.keyspace("shop").is_some());
    assert!(late.table("shop", "t").is_none());
    assert!(schema.table("shop", "t").is_none());
}

#[test]
fn schemas_from_peers_are_validated() {
    let mut schema = shop();
    run(&mut schema, EVENTS, 2, "n1").unwrap();
    assert_eq!(schema.validate(), Ok(()));
    let mut misfiled = schema.clone();
    let entry = misfiled
        .tables
        .remove(&("shop".into(), "events".into()))
        .unwrap();
    misfiled
        .tables
        .insert(("shop".into(), "other".into()), entry);
    assert!(misfiled.validate().is_err());
    let bytes = rmp_serde::to_vec(&schema).unwrap();
    let decoded: Schema = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(decoded.version(), schema.version());
}

#[test]
fn a_change_through_a_node_whose_clock_is_behind_still_follows_what_it_saw() {
    // The keyspace is created on n1 at t = 1000; n2's clock says 500.
    let mut schema = Schema::default();
    run(
        &mut schema,
        "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        1000,
        "n1",
    )
    .unwrap();
    let stamp = next_stamp(&schema, i64::MIN, 500, &NodeId::new("n2"));
    assert!(stamp.micros > 1000);
    let statement = ringdb_cql::parse_statement("CREATE TABLE t (k int PRIMARY KEY)").unwrap();
    let change = plan(&schema, &statement, Some("shop"), &stamp)
        .unwrap()
        .unwrap();
    assert!(schema.merge(&change));
    assert!(schema.table("shop", "t").is_some(), "the table is live");
    // And a drop through it then wins over the create.
    let stamp = next_stamp(&schema, stamp.micros, 501, &NodeId::new("n2"));
    let statement = ringdb_cql::parse_statement("DROP TABLE t").unwrap();
    let change = plan(&schema, &statement, Some("shop"), &stamp)
        .unwrap()
        .unwrap();
    assert!(schema.merge(&change));
    assert!(schema.table("shop", "t").is_none());
}

#[test]
fn a_change_from_a_node_that_missed_a_drop_or_a_newer_table_loses() {
    let mut schema = shop();
    run(&mut schema, "CREATE TABLE t (k int PRIMARY KEY)", 2, "n1").unwrap();
    let stale = schema.clone();
    run(&mut schema, "DROP TABLE t", 3, "n1").unwrap();
    // A node that still has t alters it later by its clock: the drop wins.
    let mut behind = stale.clone();
    run(&mut behind, "ALTER TABLE t ADD v int", 50, "n2").unwrap();
    let mut merged = schema.clone();
    merged.merge(&behind);
    assert!(merged.table("shop", "t").is_none(), "the drop wins");
    // t is created again (a new incarnation, a new id); a late ALTER of
    // the old one does not replace it.
    run(
        &mut schema,
        "CREATE TABLE t (k int PRIMARY KEY, w text)",
        4,
        "n1",
    )
    .unwrap();
    let new_id = schema.table("shop", "t").unwrap().id;
    schema.merge(&behind);
    let table = schema.table("shop", "t").unwrap();
    assert_eq!(table.id, new_id);
    assert!(table.column("w").is_some() && table.column("v").is_none());
}

#[test]
fn schemas_with_impossible_stamps_or_shared_ids_are_refused() {
    let mut schema = shop();
    run(&mut schema, "CREATE TABLE a (k int PRIMARY KEY)", 2, "n1").unwrap();
    run(&mut schema, "CREATE TABLE b (k int PRIMARY KEY)", 3, "n1").unwrap();
    let mut future = schema.clone();
    future.keyspaces.get_mut("shop").unwrap().created.micros = 99;
    assert!(future.validate().is_err(), "created after changed");
    let mut frozen = schema.clone();
    frozen.keyspaces.get_mut("shop").unwrap().changed.micros = i64::MAX;
    assert!(frozen.validate().is_err(), "a stamp nothing can follow");
    let mut shared = schema.clone();
    let id = shared.table("shop", "a").unwrap().id;
    let b = shared.tables.get_mut(&("shop".into(), "b".into())).unwrap();
    b.definition.as_mut().unwrap().id = id;
    assert!(shared.validate().is_err(), "two tables, one id");
    assert_eq!(schema.validate(), Ok(()));
}
