//! An application that embeds a one-node ringdb in its own process and talks
//! to it with the client, as it would to a remote cluster.
//!
//! `cargo run --release --example embedded`

use std::time::Duration;

use ringdb::client::{ConsistencyLevel, Context, PartitionKey, Row, RowAddress, Value};
use ringdb::node::config::TlsFiles;
use ringdb::node::tls::ClusterCa;
use ringdb::ring::NodeId;
use ringdb::{Client, ClientConfig, Config, Node};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Certificates: a CA for this one-node cluster and the node's certificate.
    let id = NodeId::new("app-node");
    let ca = ClusterCa::generate("embedded")?;
    let issued = ca.issue(&id)?;
    std::fs::write(dir.path().join("ca.pem"), &issued.ca_pem)?;
    std::fs::write(dir.path().join("node.pem"), &issued.certificate_pem)?;
    std::fs::write(dir.path().join("node.key"), &issued.key_pem)?;

    // Port 0: the OS picks free ports; the handle says which.
    let any_port = "127.0.0.1:0".parse()?;
    let tls = TlsFiles {
        ca_certificate: dir.path().join("ca.pem"),
        certificate: dir.path().join("node.pem"),
        key: dir.path().join("node.key"),
    };
    // No seeds: the node founds its own one-node cluster.
    let mut config = Config::new(id, dir.path().join("data"), any_port, any_port, tls);
    config.cluster.name = "embedded".into();
    config.cluster.replication_factor = 1;
    let node = Node::start(config).await?;
    println!("embedded node serving on {}", node.client_address());

    let mut client_config = ClientConfig::new(vec![node.client_address()], issued.ca_pem);
    client_config.request_timeout = Duration::from_secs(1);
    let client = Client::connect(client_config).await?;
    let row = RowAddress::new("greetings", PartitionKey::new(b"hello".to_vec())?);
    let columns = Row::from([("text".to_string(), Value::Text("world".into()))]);
    client
        .put(&row, columns, Context::empty(), ConsistencyLevel::One)
        .await?;
    let read = client.get(&row, ConsistencyLevel::One).await?;
    println!("read back: {:?}", read.siblings[0].columns);

    drop(client);
    node.shutdown().await?;
    println!("node stopped cleanly");
    Ok(())
}
