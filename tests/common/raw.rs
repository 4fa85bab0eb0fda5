//! A client that skips the client crate's checks: requests as the wire
//! carries them, with partition keys and contexts as raw bytes, so that a
//! test can send what `PartitionKey::new` or a context decoder refuses.

use std::time::Duration;

use serde::Serialize;

use super::Cluster;

#[derive(Serialize)]
pub struct Address {
    pub table: String,
    #[serde(with = "serde_bytes")]
    pub partition: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub clustering: Vec<u8>,
}

#[derive(Serialize)]
pub enum ClientRequest {
    Put {
        row: Address,
        columns: ringdb::client::Row,
        #[serde(with = "serde_bytes")]
        context: Vec<u8>,
        consistency: ringdb::client::ConsistencyLevel,
    },
}

/// A version vector in the context's first format, with any entries.
#[derive(Serialize)]
pub struct VersionVector {
    pub entries: Vec<(ringdb::node::causality::ActorId, u64)>,
}

pub fn context(entries: Vec<(ringdb::node::causality::ActorId, u64)>) -> Vec<u8> {
    let mut bytes = vec![1];
    bytes.extend(rmp_serde::to_vec(&VersionVector { entries }).unwrap());
    bytes
}

/// Sends one raw request to node `n`'s client port; returns the answer.
pub async fn send_raw(
    cluster: &Cluster,
    n: usize,
    request: ClientRequest,
) -> Result<ringdb::proto::ClientReply, String> {
    use ringdb::client::transport::Multiplexed;
    let config = ringdb::client::tls::client_config(&cluster.ca()).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connection = endpoint
        .connect_with(config, cluster.client_address(n), "node")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let channel = Multiplexed::<ClientRequest, ringdb::proto::ClientReply>::open(
        connection,
        ringdb::proto::MAX_FRAME_BYTES,
    )
    .await
    .map_err(|e| e.to_string())?;
    channel
        .call(request, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())
}
