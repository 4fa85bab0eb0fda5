//! `ringdb get`, `put` and `delete`: one request from the command line.
//! Keys and values are text, or bytes in hex (`--hex`); a value can come
//! from a file or standard input (`--value-file`) and go back out byte for
//! byte (`get --raw`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::BadInput;
use ringdb::client::{
    Client, ClientConfig, ClientError, ConsistencyLevel, Context, PartitionKey, Receipt,
    RequestError, Row, RowAddress, Value, WriteOptions, WriteResult,
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
        Ok(self.resolve()?.0)
    }

    /// How long the coordinator may take (--timeout-ms).
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }

    /// The client configuration these options describe, and the CA
    /// certificate file it trusts.
    pub fn resolve(&self) -> anyhow::Result<(ClientConfig, PathBuf)> {
        let (mut config, ca) = if self.hosts.is_empty() {
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
            let config = ClientConfig::new(resolve(&client.contact_points)?, read_ca(&ca)?);
            (config, ca)
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
            (config, ca.clone())
        };
        config.request_timeout = self.request_timeout();
        Ok((config, ca))
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

/// The addresses of `hosts` (`host:port`, names resolved), as the client
/// library resolves them.
fn resolve(hosts: &[String]) -> Result<Vec<SocketAddr>, BadInput> {
    ringdb::client::resolve_hosts(hosts).map_err(bad_input)
}

/// The CA certificate file's PEM text, checked to hold a certificate.
fn read_ca(path: &Path) -> Result<String, BadInput> {
    ringdb::client::read_ca_file(path).map_err(bad_input)
}

fn bad_input(error: ClientError) -> BadInput {
    match error {
        ClientError::Config(why) => BadInput(why),
        other => BadInput(other.to_string()),
    }
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
        ClientError::Config(_)
        | ClientError::ValueTooLarge { .. }
        | ClientError::UntrustedNode { .. } => exit::INVALID,
        _ => 1,
    })
}

/// The row a data command names.
#[derive(clap::Args)]
pub struct RowArgs {
    /// The key, and a put's VALUE, are bytes written in hex; a VALUE given
    /// so is stored as a blob (a --value-file is read as it is).
    #[arg(long)]
    hex: bool,
    /// The table.
    table: String,
    /// The partition key: text (not empty), or bytes in hex with --hex.
    key: String,
}

impl RowArgs {
    fn address(&self) -> Result<RowAddress, BadInput> {
        let bytes = if self.hex {
            hex::decode(&self.key)
                .map_err(|e| BadInput(format!("the key {:?} is not hex ({e})", self.key)))?
        } else {
            self.key.clone().into_bytes()
        };
        let partition = PartitionKey::new(bytes).map_err(|e| BadInput(e.to_string()))?;
        Ok(RowAddress::new(self.table.clone(), partition))
    }
}

/// `ringdb get`.
#[derive(clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    connection: Connection,
    /// Consistency level: ONE, TWO, THREE, QUORUM, ALL, …
    #[arg(long, short = 'c', default_value = "QUORUM")]
    consistency: ConsistencyLevel,
    /// Print the value's bytes exactly as stored (text or blob), without a
    /// newline: `get --raw T K > file` gives back what `put --value-file
    /// file` wrote. Refused when the row has siblings.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    row: RowArgs,
}

/// What `put` and `delete` share: where to write, at what level, and
/// what the write supersedes.
#[derive(clap::Args)]
pub struct WriteArgs {
    #[command(flatten)]
    connection: Connection,
    /// Consistency level: ONE, TWO, THREE, QUORUM, ALL, …
    #[arg(long, short = 'c', default_value = "QUORUM")]
    consistency: ConsistencyLevel,
    /// The context printed by a previous get of the row (hex).
    #[arg(long)]
    context: Option<String>,
    /// Sloppy quorum: a down replica's write is kept as a hint by the
    /// first live node past the replicas, whose acknowledgement counts.
    #[arg(long)]
    sloppy: bool,
}

impl WriteArgs {
    fn context(&self) -> Result<Context, BadInput> {
        match &self.context {
            Some(hex) => Ok(Context(hex::decode(hex).map_err(|e| {
                BadInput(format!("--context is not hex ({e}): pass it as printed"))
            })?)),
            None => Ok(Context::empty()),
        }
    }

    fn options(&self) -> WriteOptions {
        WriteOptions {
            consistency: self.consistency,
            sloppy: self.sloppy,
        }
    }
}

/// `ringdb put`.
#[derive(clap::Args)]
pub struct PutArgs {
    #[command(flatten)]
    write: WriteArgs,
    /// Read the value from FILE (`-`: standard input) instead of VALUE:
    /// stored as text if it is UTF-8, else as a blob.
    #[arg(long, value_name = "FILE")]
    value_file: Option<PathBuf>,
    #[command(flatten)]
    row: RowArgs,
    /// The value: text, or bytes in hex with --hex.
    value: Option<String>,
}

/// `ringdb delete`.
#[derive(clap::Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    write: WriteArgs,
    #[command(flatten)]
    row: RowArgs,
}

/// The value a put writes: VALUE (text, or a blob with --hex) or the
/// bytes of --value-file (text if UTF-8, else a blob).
fn value_of(args: &PutArgs) -> Result<Value, BadInput> {
    match (&args.value, &args.value_file) {
        (Some(_), Some(_)) => Err(BadInput("give the value or --value-file, not both".into())),
        (None, None) => Err(BadInput(
            "no value: give VALUE, or --value-file FILE (- for standard input)".into(),
        )),
        (Some(text), None) if args.row.hex => hex::decode(text)
            .map(Value::Blob)
            .map_err(|e| BadInput(format!("the value is not hex ({e})"))),
        (Some(text), None) => Ok(Value::Text(text.clone())),
        (None, Some(file)) => {
            let bytes = read_value_file(file)?;
            Ok(match String::from_utf8(bytes) {
                Ok(text) => Value::Text(text),
                Err(not_text) => Value::Blob(not_text.into_bytes()),
            })
        }
    }
}

/// The bytes of `file` (`-`: standard input), refused past the largest
/// request a node takes (rather than read whole).
fn read_value_file(file: &Path) -> Result<Vec<u8>, BadInput> {
    use std::io::Read;
    let cannot = |e: std::io::Error| BadInput(format!("cannot read {}: {e}", file.display()));
    let source: Box<dyn Read> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(file).map_err(cannot)?)
    };
    let limit = ringdb::proto::MAX_FRAME_BYTES;
    let mut bytes = Vec::new();
    source
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > limit {
        return Err(BadInput(format!(
            "value too large (limit {limit} bytes per request): {} is larger",
            file.display()
        )));
    }
    Ok(bytes)
}

/// Connects to the cluster `connection` names; an error is reported
/// (with the CA, when the nodes did not trust it) and becomes the exit code.
async fn connect(connection: &Connection) -> anyhow::Result<Result<(Client, PathBuf), ExitCode>> {
    let (config, ca) = connection.resolve()?;
    Ok(match Client::connect(config).await {
        Ok(client) => Ok((client, ca)),
        Err(error) => Err(report(&error, &ca)),
    })
}

/// `ringdb get`: prints the row's value (every sibling) and its context.
pub async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let row = args.row.address()?;
    let (client, ca) = match connect(&args.connection).await? {
        Ok(connected) => connected,
        Err(code) => return Ok(code),
    };
    let read = match client.get(&row, args.consistency).await {
        Ok(read) => read,
        Err(error) => return Ok(report(&error, &ca)),
    };
    if read.siblings.is_empty() {
        say!("not found");
        print_context(&read.context, &read.receipt);
        return Ok(ExitCode::from(exit::NOT_FOUND));
    }
    if args.raw {
        let [sibling] = &read.siblings[..] else {
            return Err(anyhow::anyhow!(
                "the row has {} siblings (concurrent writes): --raw prints one value; read \
                 it without --raw to see them",
                read.siblings.len()
            ));
        };
        let bytes = match sibling.columns.get("value") {
            Some(Value::Text(text)) => text.as_bytes().to_vec(),
            Some(Value::Blob(bytes)) => bytes.clone(),
            _ => show_columns(&sibling.columns).into_bytes(),
        };
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)?;
        out.flush()?;
    } else {
        if read.siblings.len() > 1 {
            out!("{} siblings (concurrent writes):", read.siblings.len());
        }
        for sibling in &read.siblings {
            let shown = show_columns(&sibling.columns);
            if read.siblings.len() > 1 {
                out!("  {shown}    (written by {})", sibling.writer);
            } else {
                out!("{shown}");
            }
        }
    }
    print_context(&read.context, &read.receipt);
    Ok(ExitCode::SUCCESS)
}

/// `ringdb put`: writes the value in column `value`.
pub async fn put(args: PutArgs) -> anyhow::Result<ExitCode> {
    let row = args.row.address()?;
    let context = args.write.context()?;
    let columns = Row::from([("value".to_string(), value_of(&args)?)]);
    let (client, ca) = match connect(&args.write.connection).await? {
        Ok(connected) => connected,
        Err(code) => return Ok(code),
    };
    let written = client.put(&row, columns, context, args.write.options());
    Ok(print_written(written.await, "ok", &ca))
}

/// `ringdb delete`: writes a tombstone.
pub async fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let row = args.row.address()?;
    let context = args.write.context()?;
    let (client, ca) = match connect(&args.write.connection).await? {
        Ok(connected) => connected,
        Err(code) => return Ok(code),
    };
    let written = client.delete(&row, context, args.write.options());
    Ok(print_written(written.await, "deleted", &ca))
}

/// Prints what a write did (`said`, then who acknowledged and the new
/// context), or why it failed; the exit code for it.
fn print_written(written: Result<WriteResult, ClientError>, said: &str, ca: &Path) -> ExitCode {
    match written {
        Ok(written) => {
            out!("{said}");
            print_context(&written.context, &written.receipt);
            ExitCode::SUCCESS
        }
        Err(error) => report(&error, ca),
    }
}

/// Says what went wrong (and which CA, when a node's certificate was
/// not signed by it); the exit code for it.
fn report(error: &ClientError, ca: &Path) -> ExitCode {
    say!("error: {error}");
    if let ClientError::UntrustedNode { .. } = error {
        say!("the CA certificate given is {}", ca.display());
    }
    exit_code(error)
}

/// A sibling's columns: its one `value` as it is (text as itself, a blob
/// as `0x…`, as cqlsh shows them), or each column as `name=value`.
fn show_columns(columns: &Row) -> String {
    if let (1, Some(value)) = (columns.len(), columns.get("value")) {
        return value.to_string();
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
    say!(
        "coordinator {coordinator}; answered by {}",
        nodes.join(", ")
    );
    if !receipt.repaired.is_empty() {
        let repaired: Vec<&str> = receipt.repaired.iter().map(|n| n.as_str()).collect();
        say!("read repair: {}", repaired.join(", "));
    }
    if !receipt.fallbacks.is_empty() {
        let fallbacks: Vec<String> = receipt
            .fallbacks
            .iter()
            .map(|(fallback, replica)| format!("{fallback} for {replica}"))
            .collect();
        say!("fallbacks (sloppy quorum): {}", fallbacks.join(", "));
    }
    if !receipt.hinted.is_empty() {
        let hinted: Vec<&str> = receipt.hinted.iter().map(|n| n.as_str()).collect();
        say!("hints stored for: {}", hinted.join(", "));
    }
    if let Some(read) = &receipt.read_first {
        let replicas: Vec<&str> = read.replicas.iter().map(|n| n.as_str()).collect();
        say!(
            "deleted what a read found on {}: {} version{} (context {})",
            replicas.join(", "),
            read.siblings,
            if read.siblings == 1 { "" } else { "s" },
            hex::encode(&read.context.0)
        );
    }
    say!("context: {}", hex::encode(&context.0));
}
