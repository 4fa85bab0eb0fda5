//! `ringdb start`: one node in the foreground.

use std::path::Path;

use anyhow::Context;
use ringdb::node::{Config, Node};
use tokio::signal::unix::{SignalKind, signal};

/// Runs the node of `config_path` until Ctrl-C or SIGTERM, then stops it
/// cleanly. A node that found damaged data on its disk stops by itself
/// and is started again at once, which salvages its data directory.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    announce(config_path, &config);
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        let mut node = Node::start(config.clone())
            .await
            .context("the node cannot start")?;
        out!(
            "node {} serving clients on {} and nodes on {}",
            node.id(),
            node.client_address(),
            node.internode_address()
        );
        let stopped_by_itself = tokio::select! {
            _ = tokio::signal::ctrl_c() => false,
            _ = terminate.recv() => false,
            () = node.stopped() => true,
        };
        let salvage = stopped_by_itself && node.salvage_requested();
        node.shutdown().await?;
        if salvage {
            out!(
                "node {} found damaged data: starting again to salvage it",
                config.node_id
            );
            continue;
        }
        if stopped_by_itself {
            anyhow::bail!(
                "the node stopped by itself (removed from the cluster, or a task failed); see its log"
            );
        }
        return Ok(());
    }
}

/// The first lines of the node's log: what runs, from which file, on
/// which data, in which cluster, where.
fn announce(config_path: &Path, config: &Config) {
    let seeds: Vec<String> = config.cluster.seeds.iter().map(|s| s.to_string()).collect();
    tracing::info!(
        "ringdb {} starting node {} from {} (data in {})",
        env!("CARGO_PKG_VERSION"),
        config.node_id,
        config_path.display(),
        config.data_dir.display()
    );
    tracing::info!(
        "cluster {:?}, seeds {}; internode {}, client {}, metrics {}; datacenter {}, rack {}",
        config.cluster.name,
        if seeds.is_empty() {
            "none".into()
        } else {
            seeds.join(", ")
        },
        config.listen_internode,
        config.listen_client,
        config
            .listen_metrics
            .map_or("off".into(), |address| address.to_string()),
        config.datacenter,
        config.rack
    );
}
