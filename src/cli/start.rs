//! `ringdb start`: one node in the foreground.

use std::path::Path;

use anyhow::Context;
use ringdb::node::{Config, Node};
use tokio::signal::unix::{SignalKind, signal};

/// Runs the node of `config_path` until Ctrl-C or SIGTERM, then stops it cleanly.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let mut node = Node::start(config).await.context("the node cannot start")?;
    println!(
        "node {} serving clients on {} and nodes on {}",
        node.id(),
        node.client_address(),
        node.internode_address()
    );
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
        () = node.stopped() => eprintln!("a node task stopped unexpectedly; shutting down"),
    }
    node.shutdown().await?;
    Ok(())
}
