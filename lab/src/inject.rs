//! Faults the kernel cannot make here (no `tc netem`): message delay,
//! jitter that reorders, duplication, and clock skew, injected into a node
//! through its own fault hook by a [`PeerRequest::InjectFaults`] on its
//! internode port. The lab proves itself with a certificate of the
//! cluster's CA (`lab.pem`, issued by `lab up`); the nodes take it because
//! the lab's configs say `[faults] injectable = true`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ringdb_client::transport::Multiplexed;
use ringdb_node::tls::NodeCertificate;
use ringdb_proto::{FaultInjection, MAX_FRAME_BYTES, PeerReply, PeerRequest};

use crate::LabError;
use crate::hosts::{INTERNODE_PORT, LabNode, LabState};

/// The lab's identity in the cluster.
pub const LAB_ID: &str = "lab";
/// How long an injection may take.
const INJECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `injection` to `node` (replacing what it had).
pub async fn inject(dir: &Path, node: &LabNode, injection: FaultInjection) -> Result<(), LabError> {
    let read = |name: String| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(LabError::io(format!("cannot read {}", path.display())))
    };
    let certificate = NodeCertificate {
        ca_pem: LabState::ca_pem(dir)?,
        certificate_pem: read(format!("{LAB_ID}.pem"))?,
        key_pem: read(format!("{LAB_ID}.key"))?,
    };
    let failed =
        |why: String| LabError::Invalid(format!("cannot inject faults into {}: {why}", node.name));
    let config = certificate.client_config()?;
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
        .map_err(LabError::io("cannot open a QUIC endpoint"))?;
    let address = SocketAddr::from((node.address, INTERNODE_PORT));
    let connecting = endpoint
        .connect_with(config, address, "ringdb-node")
        .map_err(|e| failed(e.to_string()))?;
    let connection = tokio::time::timeout(INJECT_TIMEOUT, connecting)
        .await
        .map_err(|_| failed("no handshake".into()))?
        .map_err(|e| failed(e.to_string()))?;
    let peer: Multiplexed<PeerRequest, PeerReply> = Multiplexed::open(connection, MAX_FRAME_BYTES)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let answer = peer
        .call(PeerRequest::InjectFaults(injection), INJECT_TIMEOUT)
        .await
        .map_err(|e| failed(e.to_string()))?;
    endpoint.close(0u32.into(), b"done");
    match answer {
        PeerReply::Applied => Ok(()),
        other => Err(failed(format!("unexpected answer {other:?}"))),
    }
}
