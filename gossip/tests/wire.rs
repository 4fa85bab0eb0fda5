//! Gossip messages survive MessagePack, and garbage never panics a decoder.

use std::net::SocketAddr;

use proptest::prelude::*;
use ringdb_gossip::{Digest, EndpointDelta, GossipMessage, StateValue, Status, Versioned};
use ringdb_ring::{Location, NodeId, Token};

fn node() -> impl Strategy<Value = NodeId> {
    "[a-z]{1,8}[0-9]{0,3}".prop_map(NodeId::new)
}

fn value() -> impl Strategy<Value = StateValue> {
    let status = prop_oneof![
        Just(Status::Joining),
        Just(Status::Normal),
        Just(Status::Leaving),
        Just(Status::Left),
        Just(Status::Removed),
    ];
    let address =
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port)));
    prop_oneof![
        status.prop_map(StateValue::Status),
        prop::collection::vec(any::<i64>().prop_map(Token), 0..20).prop_map(StateValue::Tokens),
        address.clone().prop_map(StateValue::InternodeAddress),
        address.prop_map(StateValue::ClientAddress),
        ("[a-z0-9]{1,10}", "[a-z0-9]{1,10}")
            .prop_map(|(datacenter, rack)| StateValue::Location(Location { datacenter, rack })),
        "[0-9a-f]{0,16}".prop_map(StateValue::SchemaVersion),
        any::<u64>().prop_map(StateValue::Load),
        any::<u64>().prop_map(StateValue::ActorEpoch),
    ]
}

fn digest() -> impl Strategy<Value = Digest> {
    (node(), any::<u64>(), any::<u64>()).prop_map(|(node, generation, max_version)| Digest {
        node,
        generation,
        max_version,
    })
}

fn delta() -> impl Strategy<Value = EndpointDelta> {
    (
        node(),
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec((value(), any::<u64>()), 0..8),
    )
        .prop_map(|(node, generation, heartbeat, states)| EndpointDelta {
            node,
            generation,
            heartbeat,
            states: states
                .into_iter()
                .map(|(value, version)| Versioned { value, version })
                .collect(),
        })
}

fn message() -> impl Strategy<Value = GossipMessage> {
    prop_oneof![
        ("[a-z]{0,12}", prop::collection::vec(digest(), 0..10))
            .prop_map(|(cluster, digests)| GossipMessage::Syn { cluster, digests }),
        (
            prop::collection::vec(delta(), 0..5),
            prop::collection::vec(digest(), 0..5)
        )
            .prop_map(|(deltas, requests)| GossipMessage::Ack { deltas, requests }),
        prop::collection::vec(delta(), 0..5).prop_map(|deltas| GossipMessage::Ack2 { deltas }),
    ]
}

proptest! {
    #[test]
    fn messages_round_trip(message in message()) {
        let bytes = rmp_serde::to_vec_named(&message).unwrap();
        let back: GossipMessage = rmp_serde::from_slice(&bytes).unwrap();
        prop_assert_eq!(back, message);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        // An error is the right answer to garbage; only a panic would fail.
        let _ = rmp_serde::from_slice::<GossipMessage>(&bytes);
    }
}
