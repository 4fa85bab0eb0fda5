//! Mutual TLS over real QUIC endpoints on loopback (ports chosen by the OS):
//! nodes of one CA talk and learn each other's ids from their certificates;
//! a node with another CA's certificate can neither connect nor be connected to.
//! And the multiplexed connection over them: a request waiting on a
//! connection that goes away fails then, not at its timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringdb_node::tls::{ClusterCa, NodeCertificate, TlsError, peer_node_id};
use ringdb_node::transport::PeerConnection;
use ringdb_proto::{MAX_FRAME_BYTES, PeerRequest, decode_frame, encode_frame};
use ringdb_ring::NodeId;
use ringdb_wire::multiplex::CallError;
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(10);

fn server(certificate: &NodeCertificate) -> (quinn::Endpoint, SocketAddr) {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let endpoint = quinn::Endpoint::server(certificate.server_config().unwrap(), any_port).unwrap();
    let address = endpoint.local_addr().unwrap();
    (endpoint, address)
}

fn client() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Writes one framed message and finishes the stream.
async fn send_message(send: &mut quinn::SendStream, message: &str) -> Result<(), String> {
    let mut frame = Vec::new();
    encode_frame(&message, MAX_FRAME_BYTES, &mut frame).map_err(|e| e.to_string())?;
    send.write_all(&frame).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())
}

/// Reads one framed message up to the end of the stream.
async fn receive_message(receive: &mut quinn::RecvStream) -> Result<String, String> {
    let bytes = receive
        .read_to_end(MAX_FRAME_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    let (message, _) = decode_frame::<String>(&bytes, MAX_FRAME_BYTES)
        .map_err(|e| e.to_string())?
        .ok_or("incomplete message")?;
    Ok(message)
}

/// Sends one framed request on a new stream and reads the framed answer.
async fn ask(connection: &quinn::Connection, question: &str) -> Result<String, String> {
    let (mut send, mut receive) = connection.open_bi().await.map_err(|e| e.to_string())?;
    send_message(&mut send, question).await?;
    receive_message(&mut receive).await
}

/// Accepts one connection and answers one request with "<peer id> said <request>".
async fn answer_one(endpoint: &quinn::Endpoint) -> Result<NodeId, String> {
    let incoming = endpoint.accept().await.ok_or("endpoint closed")?;
    let connection = incoming.await.map_err(|e| e.to_string())?;
    let peer = peer_node_id(&connection).map_err(|e| e.to_string())?;
    let (mut send, mut receive) = connection.accept_bi().await.map_err(|e| e.to_string())?;
    let question = receive_message(&mut receive).await?;
    send_message(&mut send, &format!("{peer} said {question}")).await?;
    // Wait for the client to read the answer and close.
    connection.closed().await;
    Ok(peer)
}

#[tokio::test]
async fn nodes_of_one_ca_talk_and_know_each_other_from_their_certificates() {
    let ca = ClusterCa::generate("test").unwrap();
    let (n1, n2) = (
        ca.issue(&NodeId::new("n1")).unwrap(),
        ca.issue(&NodeId::new("n2")).unwrap(),
    );
    let (endpoint, address) = server(&n1);
    let serving = tokio::spawn(async move { answer_one(&endpoint).await });

    let dialer = client();
    let connecting = dialer
        .connect_with(n2.client_config().unwrap(), address, "n1")
        .unwrap();
    let connection = timeout(DEADLINE, connecting).await.unwrap().unwrap();
    assert_eq!(peer_node_id(&connection).unwrap(), NodeId::new("n1"));
    let answer = timeout(DEADLINE, ask(&connection, "hello"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, "n2 said hello");
    connection.close(0u32.into(), b"done");
    assert_eq!(
        timeout(DEADLINE, serving).await.unwrap().unwrap().unwrap(),
        NodeId::new("n2")
    );
}

#[tokio::test]
async fn a_node_with_another_cas_certificate_cannot_send_requests() {
    let ca = ClusterCa::generate("test").unwrap();
    // The intruder trusts the cluster's (public) CA certificate, so it
    // accepts the server; only its own certificate comes from another CA.
    let intruder = NodeCertificate {
        ca_pem: ca.certificate_pem().to_string(),
        ..ClusterCa::generate("other")
            .unwrap()
            .issue(&NodeId::new("n2"))
            .unwrap()
    };
    let (endpoint, address) = server(&ca.issue(&NodeId::new("n1")).unwrap());
    let serving = tokio::spawn(async move { answer_one(&endpoint).await });

    let dialer = client();
    let connecting = dialer
        .connect_with(intruder.client_config().unwrap(), address, "n1")
        .unwrap();
    // TLS 1.3 lets the client finish its side before the server checks the
    // client certificate; either way, no request gets an answer.
    let outcome = timeout(DEADLINE, async {
        let connection = connecting.await.map_err(|e| e.to_string())?;
        ask(&connection, "let me in").await
    })
    .await
    .unwrap();
    assert!(outcome.is_err(), "the intruder got an answer: {outcome:?}");
    let refused = timeout(DEADLINE, serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        refused.contains("UnknownIssuer"),
        "the handshake must refuse the intruder's certificate: {refused}"
    );
}

#[tokio::test]
async fn a_node_refuses_a_server_from_another_ca_and_reads_the_name_of_its_own() {
    let ca = ClusterCa::generate("test").unwrap();
    let n2 = ca.issue(&NodeId::new("n2")).unwrap();
    let foreign = ClusterCa::generate("other")
        .unwrap()
        .issue(&NodeId::new("n1"))
        .unwrap();
    let (foreign_endpoint, foreign_address) = server(&foreign);
    let (endpoint, address) = server(&ca.issue(&NodeId::new("n1")).unwrap());
    // A server's handshake only proceeds once it accepts the connection.
    for endpoint in [foreign_endpoint, endpoint] {
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                // The handshake fails on the client's side; nothing to keep.
                let _ = incoming.await;
            }
        });
    }
    let dialer = client();

    let to_foreign = dialer
        .connect_with(n2.client_config().unwrap(), foreign_address, "n1")
        .unwrap();
    let error = timeout(DEADLINE, to_foreign).await.unwrap().unwrap_err();
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");

    // The right CA: whatever name was dialled (a seed is dialled by
    // address), the handshake succeeds and the certificate says who
    // answered; the transport compares it with the node it meant to reach.
    let wrong_name = dialer
        .connect_with(n2.client_config().unwrap(), address, "n3")
        .unwrap();
    let connection = timeout(DEADLINE, wrong_name).await.unwrap().unwrap();
    assert_eq!(peer_node_id(&connection).unwrap(), NodeId::new("n1"));
}

#[tokio::test]
async fn a_ca_loaded_from_pem_issues_certificates_its_nodes_accept() {
    let ca = ClusterCa::generate("test").unwrap();
    let reloaded = ClusterCa::from_pem(ca.certificate_pem(), ca.key_pem()).unwrap();
    let late = reloaded.issue(&NodeId::new("late-joiner")).unwrap();
    let (endpoint, address) = server(&ca.issue(&NodeId::new("n1")).unwrap());
    let serving = tokio::spawn(async move { answer_one(&endpoint).await });
    let dialer = client();
    let connection = timeout(
        DEADLINE,
        dialer
            .connect_with(late.client_config().unwrap(), address, "n1")
            .unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        timeout(DEADLINE, ask(&connection, "hi"))
            .await
            .unwrap()
            .unwrap(),
        "late-joiner said hi"
    );
    connection.close(0u32.into(), b"done");
    assert_eq!(
        timeout(DEADLINE, serving).await.unwrap().unwrap().unwrap(),
        NodeId::new("late-joiner")
    );
}

#[test]
fn node_ids_that_are_not_dns_names_are_refused() {
    let ca = ClusterCa::generate("test").unwrap();
    let error = ca.issue(&NodeId::new("bad name!")).err().expect("refused");
    assert!(matches!(error, TlsError::InvalidNodeId(_)));
    assert_eq!(
        error.to_string(),
        "node id \"bad name!\" is not a valid DNS name (letters, digits, '-' and '.')"
    );
}

/// Found in CI: when a peer's connection is lost, its connection task drops
/// the multiplexed connection, which stopped its readers before they could
/// fail the requests still waiting; a repair then waited its whole step
/// timeout (30 s) on a dead node instead of moving on.
#[tokio::test]
async fn a_request_waiting_on_a_dropped_connection_fails_at_once() {
    let ca = ClusterCa::generate("test").unwrap();
    let (n1, n2) = (
        ca.issue(&NodeId::new("n1")).unwrap(),
        ca.issue(&NodeId::new("n2")).unwrap(),
    );
    // A peer that accepts the connection and never answers.
    let (endpoint, address) = server(&n1);
    let silent = tokio::spawn(async move {
        let incoming = endpoint.accept().await.expect("a connection");
        let connection = incoming.await.expect("handshake");
        connection.closed().await;
    });
    let dialer = client();
    let connecting = dialer
        .connect_with(n2.client_config().unwrap(), address, "n1")
        .unwrap();
    let connection = timeout(DEADLINE, connecting).await.unwrap().unwrap();
    let multiplexed = PeerConnection::open(connection, MAX_FRAME_BYTES)
        .await
        .unwrap();
    let waiting = multiplexed
        .send(PeerRequest::ReadRows { keys: Vec::new() }, DEADLINE)
        .unwrap();
    drop(multiplexed);
    let started = Instant::now();
    let outcome = waiting.wait(DEADLINE).await;
    assert!(
        matches!(outcome, Err(CallError::ConnectionLost { .. })),
        "{outcome:?}"
    );
    assert!(started.elapsed() < DEADLINE / 2, "{:?}", started.elapsed());
    silent.abort();
}
