//! A scenario over real processes: writes, overwrites, deletes, re-creates
//! after the tombstone was purged, and repairs, in a loop on three nodes
//! while one node at a time is killed with SIGKILL and restarted. At the end
//! every acknowledged write must be readable at ALL and every acknowledged
//! delete absent: nothing lost, nothing resurrected.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, DEADLINE, columns, row, text_of, wait_until};
use rand::Rng;
use ringdb::client::{Client, ClientError, ConsistencyLevel, Context, RequestError};
use tokio::time::Instant;

use ConsistencyLevel::{All, Quorum};

/// How long the operations and faults run.
const CHAOS: Duration = Duration::from_secs(40);
/// The tombstone grace (and hint window) of the nodes, in seconds.
const GRACE_SECS: u64 = 4;
const WORKERS: usize = 4;
const KEYS_PER_WORKER: usize = 20;

/// A key's state as its acknowledged operations left it.
#[derive(Clone, Debug)]
struct Key {
    /// The value, or `None` when deleted (or never written).
    value: Option<String>,
    /// The context the last acknowledged write returned.
    context: Context,
    /// When it was deleted.
    deleted_at: Option<Instant>,
    /// Whether it was deleted at least once.
    was_deleted: bool,
    /// An operation on it failed in a way that may have applied it: what
    /// the key holds if it did (`None`: a delete). The key is left alone
    /// from then on, and must end as one or the other.
    uncertain: Option<Option<String>>,
}

#[derive(Default)]
struct Counts {
    writes: AtomicU64,
    deletes: AtomicU64,
    recreates: AtomicU64,
    unavailable: AtomicU64,
    uncertain: AtomicU64,
    kills: AtomicU64,
    repairs: AtomicU64,
}

/// One worker's operations on its own keys until `stop`.
async fn work(
    client: Arc<Client>,
    w: usize,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> BTreeMap<String, Key> {
    let mut keys: BTreeMap<String, Key> = (0..KEYS_PER_WORKER)
        .map(|k| {
            let key = Key {
                value: None,
                context: Context::empty(),
                deleted_at: None,
                was_deleted: false,
                uncertain: None,
            };
            (format!("s{w}-{k}"), key)
        })
        .collect();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        // A key whose operation may or may not have applied is left alone.
        let certain: Vec<&String> = keys
            .iter()
            .filter(|(_, k)| k.uncertain.is_none())
            .map(|(n, _)| n)
            .collect();
        if certain.is_empty() {
            break;
        }
        let name = certain[rand::rng().random_range(0..certain.len())].clone();
        let state = keys.get_mut(&name).expect("own key");
        let delete = state.value.is_some() && rand::rng().random_bool(0.3);
        // A deleted key rests past the grace, so that it is re-created after
        // its tombstone may have been purged.
        let resting = state
            .deleted_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(GRACE_SECS + 1));
        if !delete && resting {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let value = format!("w{w}-{i}");
        let outcome = if delete {
            client
                .delete(&row(&name), state.context.clone(), Quorum)
                .await
        } else {
            client
                .put(&row(&name), columns(&value), state.context.clone(), Quorum)
                .await
        };
        match outcome {
            Ok(written) => {
                state.context = written.context;
                if delete {
                    counts.deletes.fetch_add(1, Ordering::Relaxed);
                    state.value = None;
                    state.deleted_at = Some(Instant::now());
                    state.was_deleted = true;
                } else {
                    counts.writes.fetch_add(1, Ordering::Relaxed);
                    if state.deleted_at.take().is_some() {
                        counts.recreates.fetch_add(1, Ordering::Relaxed);
                    }
                    state.value = Some(value);
                }
            }
            // Refused before anything was written.
            Err(ClientError::Request(
                RequestError::Unavailable { .. } | RequestError::Overloaded { .. },
            ))
            | Err(ClientError::NoConnection { .. }) => {
                counts.unavailable.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => {
                eprintln!("uncertain {name}: {error}");
                counts.uncertain.fetch_add(1, Ordering::Relaxed);
                state.uncertain = Some((!delete).then_some(value));
            }
        }
    }
    keys
}

/// Kills one node at a time and restarts it, until `stop`.
async fn chaos(cluster: &Mutex<Cluster>, stop: &AtomicBool, counts: &Counts) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(1500..4000))).await;
        let n = rand::rng().random_range(1..=3);
        let killed = {
            let cluster = cluster.lock().unwrap();
            cluster.pid_of(n)
        };
        Cluster::kill_pid(killed).await;
        counts.kills.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(500..6000))).await;
        cluster.lock().unwrap().restart(n);
        // Let it come back before the next fault.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Runs repairs through random nodes until `stop`; failures (a node
/// down) are expected.
async fn repairs(clients: &[Client], stop: &AtomicBool, counts: &Counts) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let client = &clients[rand::rng().random_range(0..clients.len())];
        if client
            .repair(None, Vec::new(), Duration::from_secs(10))
            .await
            .is_ok()
        {
            counts.repairs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_deletes_recreates_purges_and_repairs_under_kills_lose_nothing() {
    let grace = format!("antientropy.tombstone_grace_secs={GRACE_SECS}");
    let window = format!("hints.window_secs={GRACE_SECS}");
    let cluster = Cluster::start_with(3, &[&grace, &window, "antientropy.interval_secs=2"]);
    let client = Arc::new(cluster.token_aware_client().await);
    let pinned: Vec<Client> = {
        let mut clients = Vec::new();
        for n in 1..=3 {
            let mut config =
                ringdb::client::ClientConfig::new(vec![cluster.client_address(n)], cluster.ca());
            config.token_aware = false;
            clients.push(Client::connect(config).await.unwrap());
        }
        clients
    };
    let cluster = Arc::new(Mutex::new(cluster));
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        workers.spawn(work(client.clone(), w, stop.clone(), counts.clone()));
    }
    let faults = {
        let (cluster, stop, counts) = (cluster.clone(), stop.clone(), counts.clone());
        async move { chaos(&cluster, &stop, &counts).await }
    };
    let repairing = repairs(&pinned, &stop, &counts);
    let timer = async {
        tokio::time::sleep(CHAOS).await;
        stop.store(true, Ordering::Relaxed);
    };
    tokio::join!(faults, repairing, timer);
    let mut keys = BTreeMap::new();
    while let Some(joined) = workers.join_next().await {
        keys.extend(joined.unwrap());
    }

    let cluster = Arc::into_inner(cluster).unwrap().into_inner().unwrap();
    finish(cluster, keys, &counts).await;
}

/// Every node back, then a full repair through each, so that every replica
/// of every key is reconciled (and tombstones past the grace purged
/// everywhere); then every key read at ALL.
async fn finish(mut cluster: Cluster, keys: BTreeMap<String, Key>, counts: &Counts) {
    for n in 1..=3 {
        if !cluster.is_alive(n) {
            cluster.restart(n);
        }
    }
    for n in 1..=3 {
        let others: Vec<usize> = (1..=3).filter(|p| *p != n).collect();
        cluster.wait_connected(n, &others).await;
    }
    let mut purged = 0;
    for n in 1..=3 {
        let client = cluster.client(n).await;
        wait_until(
            &format!("a repair through node{n} completes"),
            DEADLINE,
            || {
                let client = &client;
                async move {
                    client
                        .repair(None, Vec::new(), DEADLINE)
                        .await
                        .is_ok_and(|summary| summary.ranges_failed.is_empty())
                }
            },
        )
        .await;
        purged += client
            .repair_stats()
            .await
            .unwrap()
            .antientropy
            .tombstones_purged;
    }
    let client = cluster.token_aware_client().await;
    let (mut lost, mut resurrected, mut checked_values, mut checked_deletes) = (0, 0, 0, 0);
    let mut uncertain = 0;
    for (name, key) in &keys {
        let read = client.get(&row(name), All).await.unwrap();
        let found = text_of(&read);
        // Either state the key may be in: as its acknowledged operations
        // left it, or with the uncertain one applied on top.
        let mut outcomes = vec![key.value.clone()];
        if let Some(applied) = &key.uncertain {
            uncertain += 1;
            outcomes.push(applied.clone());
        }
        let matches = |outcome: &Option<String>| match outcome {
            Some(value) => found == [value.clone()],
            None => read.siblings.is_empty(),
        };
        if outcomes.iter().any(matches) {
            if !read.siblings.is_empty() {
                checked_values += 1;
            } else if key.was_deleted || key.uncertain.is_some() {
                checked_deletes += 1;
            }
            continue;
        }
        if outcomes.iter().any(Option::is_some) {
            lost += 1;
            eprintln!("LOST {name}: expected one of {outcomes:?}, read {found:?}");
        } else {
            resurrected += 1;
            eprintln!("RESURRECTED {name}: read {found:?}");
        }
    }
    let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "acknowledged {} writes ({} re-creates after a delete), {} deletes; {} refused \
         (unavailable), {} uncertain (timeout); {} kills, {} repairs, {} tombstones purged",
        count(&counts.writes),
        count(&counts.recreates),
        count(&counts.deletes),
        count(&counts.unavailable),
        count(&counts.uncertain),
        count(&counts.kills),
        count(&counts.repairs),
        purged
    );
    println!(
        "checked {checked_values} values and {checked_deletes} deletes at ALL ({uncertain} keys \
         checked against either outcome of an uncertain operation): {lost} lost, {resurrected} \
         resurrected"
    );
    assert_eq!((lost, resurrected), (0, 0));
    assert!(
        2 * uncertain <= keys.len(),
        "most keys stayed in play, not left alone after an uncertain operation"
    );
    assert!(count(&counts.kills) >= 3, "the node was killed repeatedly");
    assert!(
        count(&counts.recreates) > 0,
        "keys were re-created after a delete"
    );
    assert!(purged > 0, "tombstones were purged");
}
