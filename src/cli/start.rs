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
    let stopped_by_itself = tokio::select! {
        _ = tokio::signal::ctrl_c() => false,
        _ = terminate.recv() => false,
        () = node.stopped() => true,
    };
    node.shutdown().await?;
    if stopped_by_itself {
        anyhow::bail!(
            "the node stopped by itself (removed from the cluster, or a task failed); see its log"
        );
    }
    Ok(())
}
