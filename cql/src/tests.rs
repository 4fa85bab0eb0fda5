use proptest::prelude::*;
use ringdb_proto::{CqlType, Order};

use crate::ast::*;
use crate::*;

fn one(text: &str) -> Statement {
    parse_statement(text).unwrap_or_else(|error| panic!("{}", error.show(text)))
}

fn error(text: &str) -> String {
    parse_statement(text).unwrap_err().to_string()
}

fn literal(term: &Term) -> &Literal {
    match &term.kind {
        TermKind::Literal(literal) => literal,
        other => panic!("not a literal: {other:?}"),
    }
}

#[test]
fn create_keyspace_with_replication() {
    let Statement::CreateKeyspace {
        name,
        if_not_exists,
        properties,
    } = one("CREATE KEYSPACE IF NOT EXISTS Shop WITH replication = \
         {'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2} AND durable_writes = true")
    else {
        panic!()
    };
    assert_eq!(name, "shop");
    assert!(if_not_exists);
    assert_eq!(properties.len(), 2);
    assert_eq!(properties[0].name, "replication");
    let TermKind::Map(entries) = &properties[0].value.kind else {
        panic!()
    };
    assert_eq!(entries.len(), 3);
    assert_eq!(literal(&entries[1].0), &Literal::String("dc1".into()));
    assert_eq!(literal(&entries[1].1), &Literal::Integer("3".into()));
}

#[test]
fn create_table_with_composite_partition_key_and_clustering_order() {
    let Statement::CreateTable(create) = one("create table if not exists ks.\"Events\" (\n\
           device uuid, day date, at timestamp, seq int, reading double, note text,\n\
           PRIMARY KEY ((device, day), at, seq)\n\
         ) WITH CLUSTERING ORDER BY (at DESC) AND conflict_mode = 'lww' AND comment = 'x';")
    else {
        panic!()
    };
    assert_eq!(create.table.keyspace.as_deref(), Some("ks"));
    assert_eq!(create.table.name, "Events");
    assert!(create.if_not_exists);
    let types: Vec<(&str, CqlType)> = create
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.ty))
        .collect();
    assert_eq!(
        types,
        [
            ("device", CqlType::Uuid),
            ("day", CqlType::Date),
            ("at", CqlType::Timestamp),
            ("seq", CqlType::Int),
            ("reading", CqlType::Double),
            ("note", CqlType::Text),
        ]
    );
    assert_eq!(create.partition_key, ["device", "day"]);
    assert_eq!(create.clustering, ["at", "seq"]);
    assert_eq!(create.clustering_order, [("at".to_string(), Order::Desc)]);
    let names: Vec<&str> = create.properties.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["conflict_mode", "comment"]);
    assert_eq!(
        create.columns[1].position,
        Position {
            line: 2,
            column: 14
        }
    );
}

#[test]
fn an_inline_primary_key() {
    let Statement::CreateTable(create) = one("CREATE TABLE t (k text PRIMARY KEY, v varchar)")
    else {
        panic!()
    };
    assert_eq!(create.partition_key, ["k"]);
    assert!(create.clustering.is_empty());
    assert_eq!(create.columns[1].ty, CqlType::Text);
}

#[test]
fn select_with_slices_in_order_and_limits() {
    let Statement::Select(select) = one("SELECT at, reading AS r, writetime(reading) FROM events \
         WHERE device = ? AND day = '2026-12-06' AND at >= 1000 AND at < :until \
         ORDER BY at ASC PER PARTITION LIMIT 5 LIMIT 100")
    else {
        panic!()
    };
    assert_eq!(select.selectors.len(), 3);
    assert_eq!(select.selectors[1].alias.as_deref(), Some("r"));
    assert_eq!(
        select.selectors[2].kind,
        SelectorKind::WriteTime("reading".into())
    );
    let operators: Vec<Operator> = select.selection.iter().map(|r| r.operator).collect();
    assert_eq!(
        operators,
        [Operator::Eq, Operator::Eq, Operator::Ge, Operator::Lt]
    );
    let RelationValue::Term(first) = &select.selection[0].value else {
        panic!()
    };
    assert_eq!(first.kind, TermKind::Bind(BindMarker::Anonymous(0)));
    let RelationValue::Term(until) = &select.selection[3].value else {
        panic!()
    };
    assert_eq!(
        until.kind,
        TermKind::Bind(BindMarker::Named("until".into()))
    );
    assert_eq!(select.order_by, [("at".to_string(), Order::Asc)]);
    assert_eq!(
        literal(select.limit.as_ref().unwrap()),
        &Literal::Integer("100".into())
    );
    assert!(select.per_partition_limit.is_some());
}

#[test]
fn select_count_token_in_and_tuples() {
    let Statement::Select(select) = one(
        "SELECT COUNT(*), token(k) FROM t WHERE k IN (1, 2, -3) AND (c1, c2) > (1, 'a') \
         AND token(k) > -100",
    ) else {
        panic!()
    };
    assert_eq!(select.selectors[0].kind, SelectorKind::Count);
    assert_eq!(
        select.selectors[1].kind,
        SelectorKind::Token(vec!["k".into()])
    );
    let RelationValue::List(keys) = &select.selection[0].value else {
        panic!()
    };
    assert_eq!(literal(&keys[2]), &Literal::Integer("-3".into()));
    assert_eq!(
        select.selection[1].subject,
        Subject::Tuple(vec!["c1".into(), "c2".into()])
    );
    assert!(matches!(select.selection[1].value, RelationValue::Tuple(ref v) if v.len() == 2));
    assert_eq!(
        select.selection[2].subject,
        Subject::Token(vec!["k".into()])
    );
}

#[test]
fn insert_update_delete() {
    let Statement::Insert(insert) = one(
        "INSERT INTO t (k, c, v, b, u, f) VALUES ('a', 1, null, 0xff, \
         123e4567-e89b-12d3-a456-426614174000, -Infinity) USING TIMESTAMP 17",
    ) else {
        panic!()
    };
    assert_eq!(insert.columns, ["k", "c", "v", "b", "u", "f"]);
    assert_eq!(literal(&insert.values[2]), &Literal::Null);
    assert_eq!(literal(&insert.values[3]), &Literal::Blob(vec![0xff]));
    assert!(matches!(literal(&insert.values[4]), Literal::Uuid(_)));
    assert_eq!(
        literal(&insert.values[5]),
        &Literal::Infinity { negative: true }
    );
    assert!(insert.using.timestamp.is_some());

    let Statement::Update(update) = one("UPDATE t SET v = now(), w = 2.5 WHERE k = 'a' AND c = 1")
    else {
        panic!()
    };
    assert_eq!(update.assignments.len(), 2);
    assert!(matches!(
        &update.assignments[0].1.kind,
        TermKind::Function { name, arguments } if name == "now" && arguments.is_empty()
    ));
    assert_eq!(update.selection.len(), 2);

    let Statement::Delete(delete) = one("DELETE v FROM t WHERE k = 'a' AND c > 3 AND c <= 9")
    else {
        panic!()
    };
    assert_eq!(delete.columns, ["v"]);
    assert_eq!(delete.selection.len(), 3);
    let Statement::Delete(delete) = one("DELETE FROM t WHERE k = 'a'") else {
        panic!()
    };
    assert!(delete.columns.is_empty());
}

#[test]
fn batches_hold_data_statements() {
    let Statement::Batch(batch) = one("BEGIN UNLOGGED BATCH USING TIMESTAMP 5\n\
           INSERT INTO t (k, v) VALUES (1, 'a');\n\
           UPDATE t SET v = 'b' WHERE k = 2;\n\
           DELETE FROM t WHERE k = 3\n\
         APPLY BATCH;")
    else {
        panic!()
    };
    assert!(batch.unlogged);
    assert_eq!(batch.statements.len(), 3);
    assert_eq!(
        error("BEGIN BATCH SELECT * FROM t APPLY BATCH"),
        "line 1:13: expected INSERT, UPDATE, DELETE or APPLY BATCH, found 'SELECT'"
    );
}

#[test]
fn describe_use_alter_drop() {
    assert_eq!(
        one("DESCRIBE KEYSPACES"),
        Statement::Describe(Describe::Keyspaces)
    );
    assert_eq!(
        one("desc keyspace"),
        Statement::Describe(Describe::Keyspace(None))
    );
    assert_eq!(one("DESC CLUSTER;"), Statement::Describe(Describe::Cluster));
    assert!(matches!(
        one("DESCRIBE TABLE ks.t"),
        Statement::Describe(Describe::Table(_))
    ));
    assert!(matches!(
        one("DESCRIBE ks"),
        Statement::Describe(Describe::Name(_))
    ));
    assert_eq!(
        one("USE \"MyKs\""),
        Statement::Use {
            keyspace: "MyKs".into()
        }
    );
    assert!(matches!(
        one("ALTER TABLE t ADD extra bigint"),
        Statement::AlterTable { change: TableChange::Add(ref c), .. } if c[0].ty == CqlType::BigInt
    ));
    assert!(matches!(
        one("ALTER TABLE t DROP (a, b)"),
        Statement::AlterTable { change: TableChange::Drop(ref c), .. } if c.len() == 2
    ));
    assert_eq!(
        one("DROP KEYSPACE IF EXISTS ks"),
        Statement::DropKeyspace {
            name: "ks".into(),
            if_exists: true
        }
    );
}

#[test]
fn several_statements_and_comments() {
    let statements =
        parse("-- set up\nUSE ks; /* a table */ SELECT * FROM t;\n// done\n;; DESCRIBE TABLES")
            .unwrap();
    assert_eq!(statements.len(), 3);
    assert_eq!(
        parse("USE a USE b").unwrap_err().to_string(),
        "line 1:7: expected ';' or the end of the statement, found 'USE'"
    );
}

#[test]
fn syntax_errors_point_at_line_and_column() {
    assert_eq!(
        error("SELECT * FORM t"),
        "line 1:10: expected FROM, found 'FORM'"
    );
    assert_eq!(
        error("SELECT *\nFROM t\nWHERE k = "),
        "line 3:11: expected a value, found the end of the statement"
    );
    assert_eq!(
        error("CREATE TABLE t (k int, v text)"),
        "line 1:14: table t has no PRIMARY KEY"
    );
    assert_eq!(
        error("CREATE TABLE t (k strnig PRIMARY KEY)"),
        "line 1:19: unknown type 'strnig'"
    );
    assert_eq!(
        error("INSERT INTO t (a, b) VALUES (1)"),
        "line 1:22: 2 columns but 1 values"
    );
    assert_eq!(
        error("SELECT * FROM select"),
        "line 1:15: expected a table name, found 'select'"
    );
    assert_eq!(
        error("FROB t"),
        "line 1:1: expected a statement, found 'FROB'"
    );
    let text = "SELECT *\n  FROM t WHERE k == 1";
    assert_eq!(
        parse_statement(text).unwrap_err().show(text),
        "line 2:19: expected a value, found '='\n    FROM t WHERE k == 1\n                    ^"
    );
}

#[test]
fn deep_nesting_and_huge_texts_are_refused_not_overflowed() {
    let deep = format!(
        "SELECT * FROM t WHERE k = {}1{}",
        "f(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert_eq!(error(&deep), "line 1:91: values nested more than 32 deep");
    let maps = format!("CREATE KEYSPACE k WITH r = {}", "{1: ".repeat(100_000));
    assert!(error(&maps).ends_with("values nested more than 32 deep"));
    let huge = format!(
        "SELECT * FROM t WHERE k = '{}'",
        "x".repeat(MAX_STATEMENT_BYTES)
    );
    assert!(error(&huge).starts_with("line 1:1: the text is 1048604 bytes"));
}

#[test]
fn unsupported_features_are_named() {
    let cases = [
        (
            "UPDATE t SET v = 1 WHERE k = 1 IF v = 0",
            "lightweight transactions (IF conditions)",
        ),
        (
            "INSERT INTO t (k) VALUES (1) IF NOT EXISTS",
            "lightweight transactions (IF conditions)",
        ),
        (
            "DELETE FROM t WHERE k = 1 IF EXISTS",
            "lightweight transactions (IF conditions)",
        ),
        ("CREATE INDEX ON t (v)", "secondary indexes (CREATE INDEX)"),
        (
            "CREATE MATERIALIZED VIEW mv AS SELECT * FROM t",
            "materialized views",
        ),
        ("CREATE FUNCTION f() RETURNS int", "user-defined functions"),
        ("CREATE TYPE address (street text)", "user-defined types"),
        (
            "SELECT * FROM t WHERE v = 1 ALLOW FILTERING",
            "ALLOW FILTERING (queries that scan and filter)",
        ),
        (
            "CREATE TABLE t (k int PRIMARY KEY, hits counter)",
            "counter columns",
        ),
        (
            "CREATE TABLE t (k int PRIMARY KEY, tags set<text>)",
            "collection types (list, set, map)",
        ),
        (
            "CREATE TABLE t (k int, c int, s int STATIC, PRIMARY KEY (k, c))",
            "static columns",
        ),
        (
            "UPDATE t SET hits = hits + 1 WHERE k = 1",
            "counter and collection updates",
        ),
        (
            "INSERT INTO t (k, tags) VALUES (1, ['a'])",
            "collection types (list, set, map)",
        ),
        (
            "SELECT * FROM t WHERE tags CONTAINS 'a'",
            "CONTAINS (collections)",
        ),
        ("TRUNCATE t", "TRUNCATE"),
        ("GRANT SELECT ON t TO bob", "roles and permissions"),
        ("SELECT JSON * FROM t", "SELECT JSON"),
        ("SELECT ttl(v) FROM t", "TTL"),
    ];
    for (text, feature) in cases {
        match parse_statement(text) {
            Err(ParseError::Unsupported { feature: found, .. }) => {
                assert_eq!(found, feature, "{text}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    assert_eq!(
        error("SELECT * FROM t ALLOW FILTERING"),
        "line 1:17: ringdb does not support ALLOW FILTERING (queries that scan and filter)"
    );
}

#[test]
fn statements_split_at_semicolons_outside_strings_and_comments() {
    let (complete, rest) = split_statements("USE ks; INSERT INTO t (k) VALUES ('a;b');\nSELECT");
    assert_eq!(complete, ["USE ks;", " INSERT INTO t (k) VALUES ('a;b');"]);
    assert_eq!(rest, "\nSELECT");
    let (complete, rest) = split_statements("SELECT 'it''s; -- not a comment' -- a; comment\n;");
    assert_eq!(complete.len(), 1, "{complete:?}");
    assert_eq!(rest, "");
    let (complete, rest) = split_statements("INSERT INTO t (k) VALUES ('unterminated;");
    assert!(complete.is_empty());
    assert_eq!(rest, "INSERT INTO t (k) VALUES ('unterminated;");
    let (complete, _) = split_statements("/* ; */ USE \"a;b\"; $$;$$;");
    assert_eq!(complete, ["/* ; */ USE \"a;b\";", " $$;$$;"]);
}

proptest! {
    #[test]
    fn any_text_parses_or_fails_with_a_position_inside_it(text in "\\PC{0,60}") {
        if let Err(error) = parse(&text) {
            let position = error.position();
            let lines = text.lines().count().max(1) as u32;
            prop_assert!(position.line >= 1 && position.line <= lines + 1);
            let _ = error.show(&text);
        }
        let _ = split_statements(&text);
    }

    #[test]
    fn statements_built_of_cql_words_never_panic(
        words in proptest::collection::vec(
            prop_oneof![
                Just("SELECT"), Just("*"), Just("FROM"), Just("t"), Just("WHERE"), Just("k"),
                Just("="), Just("("), Just(")"), Just(","), Just("1"), Just("'x'"), Just("IN"),
                Just("AND"), Just("INSERT"), Just("INTO"), Just("VALUES"), Just("CREATE"),
                Just("TABLE"), Just("PRIMARY"), Just("KEY"), Just("int"), Just("?"), Just("{"),
                Just("}"), Just(":"), Just("-"), Just("BEGIN"), Just("BATCH"), Just("APPLY"),
                Just(";"), Just("token"), Just("DESC"), Just("ORDER"), Just("BY"), Just("LIMIT"),
            ],
            0..16,
        )
    ) {
        let _ = parse(&words.join(" "));
    }
}
