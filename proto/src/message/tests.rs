//! Round trips of every message, and wire compatibility.

use proptest::prelude::*;

use super::*;
use crate::{
    CqlType, MAX_FRAME_BYTES, OperationOutcome, PreparedId, Query, QueryResult, Rows, Value,
    decode_frame, encode_frame,
};

fn address() -> impl Strategy<Value = RowAddress> {
    (
        "[a-z_]{1,12}",
        proptest::collection::vec(any::<u8>(), 1..40),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(table, partition, clustering)| RowAddress {
            table,
            partition: PartitionKey::new(partition).unwrap(),
            clustering: ClusteringKey::new(clustering).unwrap(),
        })
}

fn columns() -> impl Strategy<Value = Row> {
    proptest::collection::btree_map(
        "[a-z]{1,6}",
        prop_oneof![
            any::<i64>().prop_map(Value::BigInt),
            ".{0,12}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Blob),
        ],
        0..4,
    )
}

fn level() -> impl Strategy<Value = ConsistencyLevel> {
    (0..ConsistencyLevel::ALL_LEVELS.len()).prop_map(|i| ConsistencyLevel::ALL_LEVELS[i])
}

fn client_request() -> impl Strategy<Value = ClientRequest> {
    let context = proptest::collection::vec(any::<u8>(), 0..24).prop_map(Context);
    prop_oneof![
        (address(), level()).prop_map(|(row, consistency)| ClientRequest::Get { row, consistency }),
        (address(), columns(), context.clone(), level()).prop_map(
            |(row, columns, context, consistency)| ClientRequest::Put {
                row,
                columns,
                context,
                consistency,
                sloppy: consistency == ConsistencyLevel::Two,
            }
        ),
        (address(), context, level()).prop_map(|(row, context, consistency)| {
            ClientRequest::Delete {
                row,
                context,
                consistency,
                sloppy: consistency == ConsistencyLevel::One,
            }
        }),
        proptest::option::of("[a-z_]{1,8}").prop_map(|table| ClientRequest::Repair {
            table,
            ranges: vec![TokenRange::new(Token(-4), Token(8)), TokenRange::full()]
        }),
        (
            ".{0,40}",
            proptest::collection::vec(crate::value::strategies::value(), 0..4),
            proptest::option::of("[a-z]{1,8}"),
            level(),
            any::<bool>(),
            proptest::option::of(any::<[u8; 16]>())
        )
            .prop_map(|(cql, values, keyspace, consistency, tracing, prepared)| {
                ClientRequest::Query(Query {
                    cql,
                    values,
                    keyspace,
                    consistency,
                    tracing,
                    page_size: None,
                    paging_state: None,
                    contexts: Vec::new(),
                    prepared: prepared.map(PreparedId),
                })
            }),
        (".{0,40}", proptest::option::of("[a-z]{1,8}"))
            .prop_map(|(cql, keyspace)| ClientRequest::Prepare { cql, keyspace }),
        Just(ClientRequest::RepairStats),
        Just(ClientRequest::Cleanup),
        Just(ClientRequest::Topology),
        Just(ClientRequest::Status),
        Just(ClientRequest::Decommission),
        any::<bool>().prop_map(|abort| ClientRequest::Operation { abort }),
        address().prop_map(|row| ClientRequest::LocalGet { row }),
        "[a-z0-9]{1,8}".prop_map(|n| ClientRequest::RemoveNode {
            node: NodeId::new(n)
        }),
    ]
}

fn request_error() -> impl Strategy<Value = RequestError> {
    prop_oneof![
        (0..10usize, 0..10usize)
            .prop_map(|(required, alive)| RequestError::Unavailable { required, alive }),
        (0..10usize, 0..10usize, any::<bool>()).prop_map(|(required, acknowledged, write)| {
            RequestError::Timeout {
                required,
                acknowledged,
                write,
            }
        }),
        ".{0,20}".prop_map(RequestError::overloaded),
        ".{0,20}".prop_map(RequestError::invalid),
        ".{0,20}".prop_map(|setting| RequestError::SettingsMismatch {
            node: NodeId::new("n1"),
            setting,
            theirs: "3".into(),
            ours: "1".into(),
        }),
        "[a-z0-9]{1,8}".prop_map(|node| RequestError::UnreachableContext {
            node: NodeId::new(node),
        }),
        (any::<u32>(), any::<u32>(), ".{0,20}").prop_map(|(line, column, message)| {
            RequestError::InvalidStatement {
                line,
                column,
                message,
            }
        }),
        ".{0,20}".prop_map(|what| RequestError::AlreadyExists { what }),
        "[0-9a-f]{32}".prop_map(|id| RequestError::Unprepared { id }),
    ]
}

fn round_trip<T>(message: &T) -> T
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let mut buffer = Vec::new();
    encode_frame(message, MAX_FRAME_BYTES, &mut buffer).unwrap();
    let (back, used) = decode_frame(&buffer, MAX_FRAME_BYTES).unwrap().unwrap();
    assert_eq!(used, buffer.len());
    back
}

proptest! {
    #[test]
    fn client_requests_round_trip(id in any::<u64>(), timeout_ms in any::<u32>(), body in client_request()) {
        let request = Request { id, timeout_ms, body };
        prop_assert_eq!(round_trip(&request), request);
    }

    #[test]
    fn peer_messages_round_trip(body in client_request(), versions in proptest::collection::vec(any::<u8>(), 0..64), error in request_error()) {
        let requests = [
            PeerRequest::Coordinate { id: 3, request: body },
            PeerRequest::Hello { generation: 7, settings: None },
            PeerRequest::Hello { generation: 8, settings: Some(ClusterSettings { name: "c".into(), replication_factor: 3, datacenter_replication: Default::default() }) },
            PeerRequest::Gossip(versions.clone()),
            PeerRequest::StreamRange { range: TokenRange::new(Token(-5), Token(9)), after: Some(versions.clone()), max_rows: 100, placement: Some(Replication::Simple { factor: 2 }) },
            PeerRequest::StreamRange { range: TokenRange::full(), after: None, max_rows: 1, placement: None },
            PeerRequest::FetchRange { range: TokenRange::new(Token(3), Token(-3)), source: NodeId::new("n2"), placement: None },
            PeerRequest::Sees { node: NodeId::new("n4") },
            PeerRequest::StoreRows { rows: vec![StreamedRow { key: versions.clone(), versions: VersionedRow(versions.clone()) }], handover: false },
            PeerRequest::StoreRows { rows: Vec::new(), handover: true },
            PeerRequest::Read { row: RowId { table: TableId(7), partition: PartitionKey::new([b"k".as_slice(), &versions].concat()).unwrap(), clustering: ClusteringKey::empty() } },
            PeerRequest::Replicate { row: RowId { table: TableId(u64::MAX), partition: PartitionKey::new(b"k".to_vec()).unwrap(), clustering: ClusteringKey::empty() }, versions: VersionedRow(versions.clone()) },
            PeerRequest::StoreHint { target: NodeId::new("n3"), row: RowId { table: TableId(1), partition: PartitionKey::new(b"k".to_vec()).unwrap(), clustering: ClusteringKey::empty() }, versions: VersionedRow(versions.clone()), created_micros: Some(-7) },
            PeerRequest::TreeHashes { range: TokenRange::full(), level: 2, nodes: vec![0, 31, 1023], placement: Some(Replication::PerDatacenter { factors: [("dc1".to_string(), 3)].into() }) },
            PeerRequest::LeafItems { range: TokenRange::new(Token(1), Token(2)), leaves: vec![5], table: Some(TableId(3)), after: Some(serde_bytes::ByteBuf::from(versions.clone())), placement: None },
            PeerRequest::ReadRows { keys: vec![serde_bytes::ByteBuf::from(versions.clone())] },
            PeerRequest::PullSchema,
            PeerRequest::PushSchema(SchemaBytes(versions.clone())),
        ];
        for request in requests {
            prop_assert_eq!(round_trip(&request), request);
        }
        let responses = [
            Response { id: 1, body: Ok(PeerReply::Row(Some(VersionedRow(versions.clone())))) },
            Response { id: 2, body: Ok(PeerReply::Applied) },
            Response { id: 4, body: Ok(PeerReply::Gossip(Some(serde_bytes::ByteBuf::from(versions.clone())))) },
            Response { id: 5, body: Ok(PeerReply::Gossip(None)) },
            Response { id: 6, body: Ok(PeerReply::Rows { rows: vec![StreamedRow { key: versions.clone(), versions: VersionedRow(versions.clone()) }], more: true }) },
            Response { id: 7, body: Ok(PeerReply::Hashes(versions.clone())) },
            Response { id: 8, body: Ok(PeerReply::Sees { in_ring: false, in_future: true }) },
            Response { id: 8, body: Ok(PeerReply::Items { items: vec![TreeItem { key: versions.clone(), digest: vec![1; 32] }], resume: Some((3, serde_bytes::ByteBuf::from(versions.clone()))) }) },
            Response { id: 9, body: Ok(PeerReply::Schema(SchemaBytes(versions.clone()))) },
            Response { id: 3, body: Err(error) },
        ];
        for response in responses {
            prop_assert_eq!(round_trip(&response), response);
        }
    }

    #[test]
    fn client_replies_round_trip(columns in columns(), error in request_error(), reachable in any::<bool>()) {
        let receipt = Receipt { coordinator: Some(NodeId::new("n1")), acknowledged: vec![NodeId::new("n1"), NodeId::new("n4")], repaired: vec![], hinted: vec![NodeId::new("n2")], fallbacks: vec![(NodeId::new("n4"), NodeId::new("n2"))], read_first: Some(ReadFirst { replicas: vec![NodeId::new("n2")], siblings: 2, context: Context(vec![2, 3]) }) };
        let replies = [
            Ok(ClientReply::Read { siblings: vec![Sibling { columns, timestamp_micros: -5, writer: "n1@3:1".into() }], context: Context(vec![1, 2]), receipt: receipt.clone() }),
            Ok(ClientReply::Written { context: Context::empty(), receipt }),
            Ok(ClientReply::Topology { nodes: vec![TopologyNode { id: NodeId::new("n1"), client_address: "127.0.0.1:9042".into(), location: Location::default(), tokens: vec![Token(-3), Token(i64::MAX)], reachable }], replication: Replication::Simple { factor: 3 } }),
            Ok(ClientReply::Status { answered_by: NodeId::new("n2"), nodes: vec![NodeStatus { id: NodeId::new("n1"), up: reachable, status: "Normal".into(), internode_address: Some("127.0.0.1:7000".into()), client_address: None, load_bytes: Some(12345), tokens: vec![Token(1)], owns: 0.5, location: Location::default(), generation: 17, clock_offset_ms: Some(-3), damage: Some("restoring".into()), operation: Some("decommission: streaming range 1 of 2".into()), departed_micros: Some(1_700_000_000_000_000) }], replication: Replication::Simple { factor: 3 }, placements: vec![Replication::Simple { factor: 1 }] }),
            Ok(ClientReply::Done { summary: "left the ring".into() }),
            Ok(ClientReply::TracedFailure { error: RequestError::Unavailable { required: 3, alive: 2 }, trace: vec![TraceEvent { activity: "unavailable".into(), source: "n1".into(), elapsed_micros: 12 }] }),
            Ok(ClientReply::Prepared(crate::Prepared { id: PreparedId([3; 16]), cql: "SELECT * FROM t WHERE k = ?".into(), keyspace: None, markers: vec![crate::Marker { name: "k".into(), ty: CqlType::Int }] })),
            Ok(ClientReply::Result(QueryResult::Void)),
            Ok(ClientReply::Result(QueryResult::SetKeyspace("shop".into()))),
            Ok(ClientReply::Result(QueryResult::SchemaChange { change: "CREATED TABLE shop.t".into(), version: Some("abc".into()) })),
            Ok(ClientReply::Result(QueryResult::Description("CREATE KEYSPACE …".into()))),
            Ok(ClientReply::Result(QueryResult::Rows(Rows { columns: vec![("k".into(), CqlType::Int), ("v".into(), CqlType::Text)], rows: vec![vec![Value::Int(1), Value::Null]], ..Rows::default() }))),
            Ok(ClientReply::Operation(OperationStatus { node: NodeId::new("n1"), kind: "decommission n1".into(), started_micros: 1, progress: "done".into(), outcome: OperationOutcome::Aborted { summary: "normal again".into() } })),
            Ok(ClientReply::Repaired(RepairSummary { ranges_compared: 4, ranges_differing: vec![(TokenRange::full(), NodeId::new("n3"))], ranges_failed: vec![], keys_repaired: 1, bytes_sent: 4096, tombstones_purged: 0 })),
            Ok(ClientReply::RepairStats(RepairStats { hints_pending: vec![(NodeId::new("n3"), 100)], trees_ready: reachable, ..RepairStats::default() })),
            Err(error),
        ];
        for body in replies {
            let response = Response { id: 9, body };
            prop_assert_eq!(round_trip(&response), response);
        }
    }

    #[test]
    fn garbage_never_panics_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_frame::<Request<ClientRequest>>(&bytes, MAX_FRAME_BYTES);
        let _ = decode_frame::<Request<PeerRequest>>(&bytes, MAX_FRAME_BYTES);
        let _ = decode_frame::<Response<ClientReply>>(&bytes, MAX_FRAME_BYTES);
    }
}

#[test]
fn errors_tell_the_user_what_happened() {
    let timeout = RequestError::Timeout {
        required: 2,
        acknowledged: 1,
        write: true,
    };
    assert_eq!(
        timeout.to_string(),
        "timeout: 1/2 replicas answered in time; the write may still have been applied"
    );
    let unavailable = RequestError::Unavailable {
        required: 3,
        alive: 2,
    };
    assert_eq!(
        unavailable.to_string(),
        "unavailable: 3 replicas required but only 2 alive; nothing was sent to them"
    );
}

/// `StoreRows` gained `handover`: a node that does not know it sends
/// none (read as `false`, a repair's rows), and ignores it when sent.
#[test]
fn store_rows_without_handover_is_understood_both_ways() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Before {
        StoreRows { rows: Vec<StreamedRow> },
    }
    let rows = vec![StreamedRow {
        key: vec![1, 2],
        versions: VersionedRow(vec![3]),
    }];
    let before = Before::StoreRows { rows: rows.clone() };
    let mut frame = Vec::new();
    encode_frame(&before, MAX_FRAME_BYTES, &mut frame).unwrap();
    let (now, _): (PeerRequest, _) = decode_frame(&frame, MAX_FRAME_BYTES).unwrap().unwrap();
    assert_eq!(
        now,
        PeerRequest::StoreRows {
            rows: rows.clone(),
            handover: false
        }
    );
    let handover = PeerRequest::StoreRows {
        rows: rows.clone(),
        handover: true,
    };
    frame.clear();
    encode_frame(&handover, MAX_FRAME_BYTES, &mut frame).unwrap();
    let (old, _): (Before, _) = decode_frame(&frame, MAX_FRAME_BYTES).unwrap().unwrap();
    assert_eq!(old, before);
}
