//! The `ringdb` command line.

/// `eprintln!` that never panics: when stderr's reader is gone, the
/// message is lost, not the command (which still ends with its own exit
/// code). Every command says things through it.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that never panics (see [`say!`]).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rand::{Rng, SeedableRng, rngs::StdRng};
use ringdb::ring::{Location, NodeId, Replication, Ring, Token};

/// ringdb: a leaderless, Dynamo/Cassandra-style, eventually consistent store.
///
/// Start a local cluster with `ringdb dev`, then read and write with
/// `ringdb put`, `get` and `delete`. Data commands exit with 0 on success,
/// 2 for bad input, 3 when the row is not found, 4 when too few replicas are
/// alive (nothing was sent to them), 5 on a timeout (a write may have happened),
/// 6 when the node is overloaded, 7 when no node can be reached, 1 otherwise.
#[derive(Parser)]
#[command(name = "ringdb", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local cluster of real node processes (3 by default), and
    /// control its nodes one at a time as ccm does.
    ///
    /// The first run makes DIR: a cluster CA, a certificate and a node.toml
    /// per node (on free ports the OS picks), and client.toml, which the data
    /// commands read. Every node keeps its data under DIR. A later run on the
    /// same DIR starts the same cluster again, with its data. Waits until
    /// every node reaches every other, prints the contact points, PIDs and
    /// metrics URLs, and stops the nodes on Ctrl-C (or leaves them running
    /// with --detach). A node that dies is reported; the others keep
    /// running. `ringdb dev status|start|stop|kill|pause|resume|logs NODE`
    /// act on one node.
    Dev(cli::dev::DevArgs),
    /// Run one node in the foreground, configured by a TOML file.
    ///
    /// Ctrl-C or SIGTERM stops it cleanly. Every setting of the file is
    /// documented in the ringdb-node crate (`config.rs`); `ringdb dev` writes
    /// complete examples.
    Start {
        /// The node's configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Make a cluster CA (if DIR has none) and certificates for nodes.
    ///
    /// Writes DIR/ca.pem and DIR/ca.key (keep the key off the nodes), and
    /// DIR/<node>.pem and DIR/<node>.key for each node id given. Clients
    /// need only ca.pem.
    Cert {
        /// Folder of the CA and the certificates.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The cluster's name, written into a new CA.
        #[arg(long, default_value = "ringdb")]
        cluster: String,
        /// Node ids to issue certificates for.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// A cqlsh-like shell: CQL statements ending in ';', CONSISTENCY,
    /// TRACING, EXPAND, PAGING, SOURCE, HELP, EXIT.
    ///
    /// Interactive on a terminal (history in ~/.ringdb_history, Tab
    /// completes keywords, keyspaces, tables and columns); with -e, -f or
    /// piped input it runs the statements in order and exits non-zero at
    /// the first error. Connects to the `ringdb dev` cluster in --dev-dir
    /// unless --host is given.
    Shell(cli::shell::ShellArgs),
    /// Read a row: print its value (every sibling, if writes were
    /// concurrent) and its context.
    ///
    /// Text prints as itself and a blob as 0x… (as cqlsh shows them);
    /// --raw prints the value's bytes as stored.
    Get(cli::data::GetArgs),
    /// Write a row's value (in column `value`): text, bytes in hex (--hex),
    /// or a file's or standard input's bytes (--value-file).
    ///
    /// Without --context the write supersedes what its coordinator holds;
    /// with the context printed by a get, exactly the siblings that get saw.
    Put(cli::data::PutArgs),
    /// Delete a row (a tombstone superseding what the context saw).
    Delete(cli::data::DeleteArgs),
    /// Measure a cluster: a load of reads, writes or both for a while, with a
    /// progress line per second and a summary of ops/s, latency percentiles
    /// and errors by kind.
    ///
    /// Example: `ringdb bench write -c QUORUM --concurrency 64 --duration 30s`
    /// then `ringdb bench read …` on the keys it wrote.
    Bench(cli::bench::BenchArgs),
    /// Run whole clusters in this process on a simulated network, clock
    /// and disk, each driven by one seed: partitions, message loss, delay,
    /// duplication, crashes that lose unsynced writes, pauses, clock jumps;
    /// then check the history for lost, phantom and resurrected writes,
    /// stale quorum reads and dots issued twice, and that every replica
    /// converges.
    ///
    /// `ringdb sim --seeds 1000` runs a thousand seeds on every core;
    /// `ringdb sim --seed N` replays one exactly and prints what it did.
    Sim(cli::sim::SimArgs),
    /// Partition experiments on real nodes: each node a real process in its
    /// own network namespace (in one datacenter or several), faults made
    /// with iptables, signals and the nodes' own fault hook (partition,
    /// isolate, bridge, loss, delay, duplicate, skew, kill, pause,
    /// restart, wipe, join), clients on every side recording what each
    /// consistency level did, and a report (stale reads, availability,
    /// lost writes, convergence) with charts. Needs root, `ip` and
    /// `iptables`.
    ///
    /// `ringdb lab up && ringdb lab run stale-reads && ringdb lab down`
    Lab(cli::lab::LabArgs),
    /// Show every node as one node sees it (nodetool status): Up/Down,
    /// Normal/Joining/Leaving, address, load, tokens, ownership, host id,
    /// rack, grouped by datacenter.
    ///
    /// The first contact point (or --host) that can be reached answers,
    /// and the output names it; ask each node with --host to compare
    /// their views. Nodes that left the ring or were removed more than
    /// three days ago are hidden (as Cassandra forgets them); --all shows
    /// them.
    Status {
        #[command(flatten)]
        connection: cli::data::Connection,
        /// Show nodes that left or were removed long ago too.
        #[arg(long)]
        all: bool,
    },
    /// Show every vnode token in ring order with its node (nodetool ring).
    Ring {
        #[command(flatten)]
        connection: cli::data::Connection,
    },
    /// Show what a node says about itself (nodetool info): state, uptime,
    /// load, tokens, ownership, location, addresses, hints and repair
    /// figures. The first contact point that can be reached answers.
    Info {
        #[command(flatten)]
        connection: cli::data::Connection,
    },
    /// Print the replicas of a partition key (nodetool getendpoints), in
    /// the order a coordinator asks them.
    Getendpoints {
        #[command(flatten)]
        connection: cli::data::Connection,
        /// The table.
        table: String,
        /// The partition key (text).
        key: String,
    },
    /// Hand the node's ranges to their next owners and leave the ring
    /// (nodetool decommission). Asks the node given by --host (or the first
    /// node of a dev cluster), which runs it as a task of its own: this
    /// command follows its progress until the node has left (after which
    /// it can be stopped), and the decommission goes on if the command is
    /// interrupted. Refused while another node joins or leaves, or when
    /// the ring would have fewer nodes than the replication factor.
    Decommission {
        #[command(flatten)]
        connection: cli::data::Connection,
        #[command(flatten)]
        operation: cli::admin::OperationArgs,
    },
    /// Compare a node's Merkle trees with the other replicas of every range
    /// it replicates and repair what differs (nodetool repair).
    ///
    /// Asks the node given by --host (or the first node of a dev cluster).
    /// Replicas compare tree roots, descend only into differing subtrees
    /// and exchange only the rows that differ, merged with causality. Shows
    /// a progress bar, then a summary: ranges compared, ranges differing
    /// (with which replica), keys repaired, bytes sent, tombstones purged.
    /// Run it on each node to repair a whole cluster. Exits 1 when some
    /// range could not be compared (a replica down).
    Repair(cli::repair::RepairArgs),
    /// Delete the rows of every range the node no longer replicates
    /// (nodetool cleanup).
    ///
    /// A node that gives ranges up to a joining node cleans them up by
    /// itself once the join is complete; this does it on demand (after a
    /// restart, say, which forgets what moved before it). Asks the node
    /// given by --host (or the first node of a dev cluster). Refused while a
    /// node joins or leaves.
    Cleanup {
        #[command(flatten)]
        connection: cli::data::Connection,
    },
    #[command(flatten)]
    NodeTool(cli::nodetool::NodeToolCommand),
    /// Remove a dead node from the ring and restore its ranges' replicas
    /// from the surviving ones (nodetool removenode). The node must be down;
    /// it can only come back as a new, empty member. The node given by
    /// --host runs it as a task of its own (this command follows it; it
    /// goes on if the command is interrupted, and resumes if that node
    /// restarts). Asked again for a removed node whose restore was cut
    /// short, it finishes the restore.
    Removenode {
        #[command(flatten)]
        connection: cli::data::Connection,
        #[command(flatten)]
        operation: cli::admin::OperationArgs,
        /// The id of the dead node (not needed with --follow or --abort).
        #[arg(required_unless_present_any = ["follow", "abort"])]
        node: Option<String>,
    },
    /// Print the token (Cassandra's Murmur3) of a partition key.
    ///
    /// The key is taken as UTF-8 text, or as hex with --hex; the token is the
    /// one Cassandra and its drivers compute for the same serialized key.
    Token {
        /// The partition key.
        key: String,
        /// Read the key as hex bytes instead of text.
        #[arg(long)]
        hex: bool,
    },
    /// Simulate a ring built by joining nodes one at a time, and print each
    /// node's share of the data.
    Ownership {
        /// Number of nodes to join.
        #[arg(long, default_value_t = 10, value_parser = at_least_one())]
        nodes: usize,
        /// Vnode tokens per node (num_tokens).
        #[arg(long, default_value_t = 16, value_parser = at_least_one())]
        vnodes: usize,
        /// Replication factor the shares are computed for.
        #[arg(long, default_value_t = 3, value_parser = at_least_one())]
        replication_factor: usize,
        /// Use random tokens, as Dynamo and early Cassandra did, instead of
        /// ringdb's balanced allocation.
        #[arg(long)]
        random: bool,
        /// Seed for --random.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Sim(args) = &cli.command {
        // Whole clusters log as they would run; a simulation reports only
        // what it found (RUST_LOG shows the nodes' logs).
        if std::env::var_os("RUST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_writer(std::io::stderr)
                .init();
        }
        return match cli::sim::run_seeds(args) {
            Ok(code) => code,
            Err(error) => {
                say!("error: {}", cli::describe(&error));
                ExitCode::FAILURE
            }
        };
    }
    // A command whose output is read by another (`ringdb ring | head`)
    // ends quietly when that one stops reading, as `cat` does, rather
    // than panicking on the closed pipe. Only commands whose whole job is
    // that output, which change nothing: the default action also ends a
    // process whose stderr is closed, which must not cut a repair or a
    // `cert` short. The others keep Rust's default (SIGPIPE ignored), and
    // what they say through `say!` and `out!` is dropped, not a panic.
    if matches!(
        cli.command,
        Command::Status { .. }
            | Command::Ring { .. }
            | Command::Info { .. }
            | Command::Getendpoints { .. }
            | Command::Get(_)
            | Command::Token { .. }
            | Command::Ownership { .. }
    ) {
        // SAFETY: nothing else runs yet; the default action of SIGPIPE
        // is to end the process.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
    // A node logs what it does; a command says only what went wrong.
    // RUST_LOG overrides either.
    let default_level = match cli.command {
        Command::Start { .. } => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logging = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter_reloading();
    let filter = logging.reload_handle();
    logging.init();
    // `ringdb setlogginglevel` changes a running node's filter.
    ringdb::node::set_log_control(move |text| {
        let new = tracing_subscriber::EnvFilter::try_new(text)?;
        Ok(filter.reload(new)?)
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            say!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            say!("error: {}", cli::describe(&error));
            cli::exit_code(&error)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dev(args) => return cli::dev::command(args).await,
        Command::Start { config } => cli::start::run(&config).await?,
        Command::Cert {
            dir,
            cluster,
            nodes,
        } => cli::cert::run(&dir, &cluster, &nodes)?,
        Command::Get(args) => return cli::data::get(args).await,
        Command::Put(args) => return cli::data::put(args).await,
        Command::Delete(args) => return cli::data::delete(args).await,
        Command::Bench(args) => return cli::bench::run(&args).await,
        Command::Shell(args) => return cli::shell::run(args).await,
        Command::Lab(args) => return cli::lab::run(args).await,
        Command::Sim(_) => unreachable!("ringdb sim runs before the runtime starts"),
        Command::Status { connection, all } => {
            return cli::admin::status(&connection, all).await;
        }
        Command::Ring { connection } => return cli::admin::ring(&connection).await,
        Command::Info { connection } => return cli::admin::info(&connection).await,
        Command::Getendpoints {
            connection,
            table,
            key,
        } => return cli::admin::get_endpoints(&connection, &table, &key).await,
        Command::Decommission {
            connection,
            operation,
        } => {
            return cli::admin::decommission(&connection, &operation).await;
        }
        Command::Cleanup { connection } => return cli::admin::cleanup(&connection).await,
        Command::NodeTool(command) => return cli::nodetool::run(command).await,
        Command::Removenode {
            connection,
            operation,
            node,
        } => {
            return cli::admin::remove_node(&connection, &operation, node.as_deref()).await;
        }
        Command::Repair(args) => return cli::repair::run(&args).await,
        Command::Token { key, hex } => {
            let bytes = if hex {
                hex::decode(&key)
                    .map_err(|e| cli::BadInput(format!("the key is not valid hex: {e}")))?
            } else {
                key.into_bytes()
            };
            println!("{}", Token::of(&bytes));
        }
        Command::Ownership {
            nodes,
            vnodes,
            replication_factor,
            random,
            seed,
        } => {
            let ring = simulate(nodes, vnodes, replication_factor, random.then_some(seed))?;
            print_ownership(&ring, replication_factor);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A count that must be 1 or more (clap refuses 0 with exit code 2).
pub(crate) fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

fn simulate(
    nodes: usize,
    vnodes: usize,
    rf: usize,
    random_seed: Option<u64>,
) -> anyhow::Result<Ring> {
    let mut ring = Ring::new();
    let mut rng = StdRng::seed_from_u64(random_seed.unwrap_or(0));
    for n in 1..=nodes {
        let id = NodeId::new(format!("node{n}"));
        match random_seed {
            None => {
                ring.join(id, Location::default(), vnodes, rf)?;
            }
            Some(_) => {
                let tokens = (0..vnodes).map(|_| Token(rng.random())).collect();
                ring.add_node(id, Location::default(), tokens)?;
            }
        }
    }
    Ok(ring)
}

fn print_ownership(ring: &Ring, rf: usize) {
    let shares = ring.ownership(&Replication::Simple { factor: rf });
    let mean = shares.values().sum::<f64>() / shares.len() as f64;
    println!("{:<10} {:>10} {:>10}", "node", "owns", "vs mean");
    for (node, share) in &shares {
        println!(
            "{:<10} {:>9.2}% {:>+9.1}%",
            node.to_string(),
            share * 100.0,
            (share / mean - 1.0) * 100.0
        );
    }
    let max = shares.values().cloned().fold(f64::MIN, f64::max);
    let min = shares.values().cloned().fold(f64::MAX, f64::min);
    println!(
        "\nRF {rf}: max/mean {:.3}, min/mean {:.3}",
        max / mean,
        min / mean
    );
}
