//! The `ringdb` command line.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use rand::{Rng, SeedableRng, rngs::StdRng};
use ringdb::ring::{Location, NodeId, Replication, Ring, Token};

/// ringdb: a leaderless, Dynamo/Cassandra-style, eventually consistent store.
///
/// The cluster commands (dev, start, shell) arrive with the running cluster;
/// for now ringdb answers placement questions.
#[derive(Parser)]
#[command(name = "ringdb", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        /// Vnode tokens per node (num_tokens).
        #[arg(long, default_value_t = 16)]
        vnodes: usize,
        /// Replication factor the shares are computed for.
        #[arg(long, default_value_t = 3)]
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Token { key, hex } => {
            let bytes = if hex {
                hex::decode(&key).context("the key is not valid hex")?
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
            if nodes == 0 || vnodes == 0 || replication_factor == 0 {
                bail!("--nodes, --vnodes and --replication-factor must be at least 1");
            }
            let ring = simulate(nodes, vnodes, replication_factor, random.then_some(seed))?;
            print_ownership(&ring, replication_factor);
        }
    }
    Ok(())
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
