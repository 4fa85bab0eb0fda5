//! `ringdb get`, `put` and `delete`: one request from the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::BadInput;
use ringdb::client::{
    Client, ClientConfig, ClientError, ConsistencyLevel, Context, PartitionKey, Receipt,
    RequestError, Row, RowAddress, Value, WriteOptions,
};
use serde::{Deserialize, Serialize};

/// The file `ringdb dev` writes for clients: where the cluster is.
pub const CLIENT_FILE: &str = "client.toml";

/// What `client.toml` holds (a dev cluster's, or the user's in
/// `$XDG_CONFIG_HOME/ringdb/client.toml`).
#[derive(Serialize, Deserialize)]
pub struct ClientFile {
    /// Client addresses of the nodes (`host:port`; names are resolved).
    pub contact_points: Vec<String>,
    /// The CA certificate, relative to the file's folder.
    pub ca_certificate: PathBuf,
}

/// How to reach the cluster, from the command line.
#[derive(clap::Args)]
pub struct Connection {
    /// A node's client address (host:port, a name or an IP); repeat for
    /// more, or list them, comma-separated, in RINGDB_HOSTS. That node
    /// coordinates the request (no token-aware routing). Without it, the
    /// cluster of `ringdb dev` in --dev-dir is used, or else the user's
    /// client file ($XDG_CONFIG_HOME/ringdb/client.toml).
    #[arg(
        long = "host",
        value_name = "ADDRESS",
        env = "RINGDB_HOSTS",
        value_delimiter = ','
    )]
    hosts: Vec<String>,
    /// The cluster CA certificate (PEM) to verify nodes with. Needed with
    /// --host; otherwise taken from the client file.
    #[arg(long, value_name = "FILE", env = "RINGDB_CA")]
    ca: Option<PathBuf>,
    /// The folder of a `ringdb dev` cluster, used when --host is not given.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DEV_DIR)]
    dev_dir: PathBuf,
    /// How long the coordinator may take, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    timeout_ms: u64,
}

/// Where `ringdb dev` makes its cluster unless told otherwise.
const DEFAULT_DEV_DIR: &str = "ringdb-dev";

impl Connection {
    /// The client configuration these options describe.
    pub fn config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = if self.hosts.is_empty() {
            let file = self.client_file()?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| BadInput(format!("cannot read {}: {e}", file.display())))?;
            let client: ClientFile = toml::from_str(&text)
                .map_err(|e| BadInput(format!("{} is not valid: {e}", file.display())))?;
            let folder = file.parent().unwrap_or(Path::new("."));
            let ca = self
                .ca
                .clone()
                .unwrap_or_else(|| folder.join(&client.ca_certificate));
            ClientConfig::new(resolve(&client.contact_points)?, read_ca(&ca)?)
        } else {
            let Some(ca) = &self.ca else {
                return Err(BadInput(
                    "--host needs --ca (or RINGDB_CA): the cluster CA certificate to verify \
                     the node with"
                        .into(),
                )
                .into());
            };
            let mut config = ClientConfig::new(resolve(&self.hosts)?, read_ca(ca)?);
            config.token_aware = false;
            config
        };
        config.request_timeout = std::time::Duration::from_millis(self.timeout_ms);
        Ok(config)
    }

    /// The client file to read without --host: the dev cluster's, or
    /// (when no --dev-dir was named and there is no dev cluster here) the
    /// user's.
    fn client_file(&self) -> Result<PathBuf, BadInput> {
        let dev = self.dev_dir.join(CLIENT_FILE);
        if dev.exists() || self.dev_dir != Path::new(DEFAULT_DEV_DIR) {
            return Ok(dev);
        }
        let user = user_client_file();
        match user {
            Some(user) if user.exists() => Ok(user),
            _ => Err(BadInput(format!(
                "no cluster to talk to: pass --host and --ca (or set RINGDB_HOSTS and \
                 RINGDB_CA), start one with `ringdb dev` (its {} is read), or write {}",
                dev.display(),
                user.map_or("$XDG_CONFIG_HOME/ringdb/client.toml".into(), |u| u
                    .display()
                    .to_string())
            ))),
        }
    }
}

/// `$XDG_CONFIG_HOME/ringdb/client.toml`, or `~/.config/ringdb/client.toml`.
fn user_client_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("ringdb").join(CLIENT_FILE))
}

/// The addresses of `hosts` (`host:port`, names resolved): a name's IPv4
/// addresses when it has any (nodes usually listen on one family), else
/// its IPv6 ones.
fn resolve(hosts: &[String]) -> Result<Vec<SocketAddr>, BadInput> {
    let mut addresses = Vec::new();
    for host in hosts {
        let host = host.trim();
        let found: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(host)
            .map_err(|e| BadInput(format!("{host:?} is not a host:port that resolves: {e}")))?
            .collect();
        let v4: Vec<SocketAddr> = found.iter().copied().filter(SocketAddr::is_ipv4).collect();
        let chosen = if v4.is_empty() { found } else { v4 };
        for address in chosen {
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
    }
    Ok(addresses)
}

fn read_ca(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BadInput(format!("cannot read the CA {}: {e}", path.display())))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(BadInput(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----): pass the cluster's ca.pem",
            path.display()
        ))
        .into());
    }
    Ok(text)
}

/// Exit codes that tell scripts what happened.
pub mod exit {
    /// The row does not exist (or was deleted).
    pub const NOT_FOUND: u8 = 3;
    /// Too few replicas alive; nothing was done.
    pub const UNAVAILABLE: u8 = 4;
    /// Not enough replicas answered in time; a write may have happened.
    pub const TIMEOUT: u8 = 5;
    /// The node is overloaded; nothing was done.
    pub const OVERLOADED: u8 = 6;
    /// No node could be reached.
    pub const NO_CONNECTION: u8 = 7;
    /// The request was refused as invalid (bad table name, oversized value…).
    pub const INVALID: u8 = 2;
}

/// The exit code for a client error.
pub fn exit_code(error: &ClientError) -> ExitCode {
    ExitCode::from(match error {
        ClientError::Request(
            RequestError::Unavailable { .. } | RequestError::UnreachableContext { .. },
        ) => exit::UNAVAILABLE,
        ClientError::Request(RequestError::Timeout { .. }) | ClientError::Timeout { .. } => {
            exit::TIMEOUT
        }
        ClientError::Request(RequestError::Overloaded { .. }) => exit::OVERLOADED,
        ClientError::Request(RequestError::InvalidRequest { .. }) => exit::INVALID,
        ClientError::NoConnection { .. } => exit::NO_CONNECTION,
        ClientError::Config(_) => exit::INVALID,
        _ => 1,
    })
}

/// What one data command asks.
pub enum Operation {
    /// Read.
    Get,
    /// Write `value` in column `value`.
    Put {
        /// The value.
        value: String,
        /// Sloppy quorum.
        sloppy: bool,
    },
    /// Delete.
    Delete {
        /// Sloppy quorum.
        sloppy: bool,
    },
}

/// Runs one request and prints its answer.
pub async fn run(
    connection: &Connection,
    consistency: ConsistencyLevel,
    table: String,
    key: String,
    context: Option<String>,
    operation: Operation,
) -> anyhow::Result<ExitCode> {
    let partition = PartitionKey::new(key.into_bytes()).map_err(|e| BadInput(e.to_string()))?;
    let row = RowAddress::new(table, partition);
    let context = match context {
        Some(hex) => Context(
            hex::decode(&hex)
                .map_err(|e| BadInput(format!("--context is not hex ({e}): pass it as printed")))?,
        ),
        None => Context::empty(),
    };
    let client = match Client::connect(connection.config()?).await {
        Ok(client) => client,
        Err(error) => return Ok(report(&error)),
    };
    let outcome = match operation {
        Operation::Get => client.get(&row, consistency).await.map(|read| {
            if read.siblings.is_empty() {
                eprintln!("not found");
                print_context(&read.context, &read.receipt);
                return ExitCode::from(exit::NOT_FOUND);
            }
            if read.siblings.len() > 1 {
                println!("{} siblings (concurrent writes):", read.siblings.len());
            }
            for sibling in &read.siblings {
                let shown = show_columns(&sibling.columns);
                if read.siblings.len() > 1 {
                    println!("  {shown}    (written by {})", sibling.writer);
                } else {
                    println!("{shown}");
                }
            }
            print_context(&read.context, &read.receipt);
            ExitCode::SUCCESS
        }),
        Operation::Put { value, sloppy } => {
            let columns = Row::from([("value".to_string(), Value::Text(value))]);
            let options = WriteOptions {
                consistency,
                sloppy,
            };
            client
                .put(&row, columns, context, options)
                .await
                .map(|written| {
                    println!("ok");
                    print_context(&written.context, &written.receipt);
                    ExitCode::SUCCESS
                })
        }
        Operation::Delete { sloppy } => client
            .delete(
                &row,
                context,
                WriteOptions {
                    consistency,
                    sloppy,
                },
            )
            .await
            .map(|written| {
                println!("deleted");
                print_context(&written.context, &written.receipt);
                ExitCode::SUCCESS
            }),
    };
    Ok(outcome.unwrap_or_else(|error| report(&error)))
}

fn report(error: &ClientError) -> ExitCode {
    eprintln!("error: {error}");
    exit_code(error)
}

fn show_columns(columns: &Row) -> String {
    if let (1, Some(Value::Text(text))) = (columns.len(), columns.get("value")) {
        return text.clone();
    }
    let parts: Vec<String> = columns
        .iter()
        .map(|(name, value)| format!("{name}={}", show_value(value)))
        .collect();
    parts.join(" ")
}

fn show_value(value: &Value) -> String {
    match value {
        Value::Text(t) => format!("{t:?}"),
        other => other.to_string(),
    }
}

fn print_context(context: &Context, receipt: &Receipt) {
    let nodes: Vec<&str> = receipt.acknowledged.iter().map(|n| n.as_str()).collect();
    let coordinator = receipt.coordinator.as_ref().map_or("?", |c| c.as_str());
    eprintln!(
        "coordinator {coordinator}; answered by {}",
        nodes.join(", ")
    );
    if !receipt.repaired.is_empty() {
        let repaired: Vec<&str> = receipt.repaired.iter().map(|n| n.as_str()).collect();
        eprintln!("read repair: {}", repaired.join(", "));
    }
    if !receipt.fallbacks.is_empty() {
        let fallbacks: Vec<String> = receipt
            .fallbacks
            .iter()
            .map(|(fallback, replica)| format!("{fallback} for {replica}"))
            .collect();
        eprintln!("fallbacks (sloppy quorum): {}", fallbacks.join(", "));
    }
    if !receipt.hinted.is_empty() {
        let hinted: Vec<&str> = receipt.hinted.iter().map(|n| n.as_str()).collect();
        eprintln!("hints stored for: {}", hinted.join(", "));
    }
    if let Some(read) = &receipt.read_first {
        let replicas: Vec<&str> = read.replicas.iter().map(|n| n.as_str()).collect();
        eprintln!(
            "deleted what a read found on {}: {} version{} (context {})",
            replicas.join(", "),
            read.siblings,
            if read.siblings == 1 { "" } else { "s" },
            hex::encode(&read.context.0)
        );
    }
    eprintln!("context: {}", hex::encode(&context.0));
}
