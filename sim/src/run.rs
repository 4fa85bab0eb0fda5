//! One simulated run: a cluster formed, clients and a nemesis for a while,
//! then heal, repair, convergence, and the checkers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use ringdb_node::storage::SyncMode;
use ringdb_proto::{
    ClientReply, ClientRequest, ConsistencyLevel, OperationOutcome, Query, TableId,
};
use ringdb_ring::{NodeId, Replication, Token};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::checker::{self, Checked, Violation};
use crate::cluster::{Cluster, ClusterTarget, NodeSettings};
use crate::history::{Event, History, Key};
use crate::network::{LinkModel, Net, NetCounters};
use crate::statements;
use crate::workload::{self, Recorder, Target, Workload};

/// How long the cluster may take to form, or to settle after the faults.
const SETTLE_WITHIN: Duration = Duration::from_secs(180);
/// How long the replicas may take to converge after heal.
const CONVERGE_WITHIN: Duration = Duration::from_secs(600);

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The seed: everything else follows from it.
    pub seed: u64,
    /// How long clients and the nemesis run, simulated.
    pub fault_phase: Duration,
    /// Whether the nemesis also changes the ring: joins, decommissions,
    /// and nodes that die for good and are removed.
    pub topology: bool,
    /// The purge-heavy profile (`ringdb sim --purges`): more rows deleted
    /// and left to rest, read while they rest, fewer hints, and in half
    /// the runs an operator's repair schedule instead of frequent
    /// background anti-entropy.
    pub purges: bool,
    /// Clients also run CQL statements on a clustering table
    /// (`statements.rs`).
    pub statements: bool,
}

impl Options {
    /// The default run of `seed`.
    pub fn new(seed: u64) -> Options {
        Options {
            seed,
            fault_phase: Duration::from_secs(40),
            topology: true,
            purges: false,
            statements: false,
        }
    }
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Nodes started.
    pub nodes: usize,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Unsynced writes lost to crashes.
    pub lost_unsynced: u64,
    /// What the net did.
    pub net: NetCounters,
    /// What the checkers looked at.
    pub checked: Checked,
    /// How long after heal every replica agreed (`None`: they never did).
    pub converged_after: Option<Duration>,
    /// Broken promises.
    pub violations: Vec<Violation>,
    /// The history.
    pub history: History,
}

impl Report {
    /// Whether the run kept every promise.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs `options.seed` on a fresh single-threaded runtime with paused
/// time: the same seed gives the same history.
pub fn run(options: &Options) -> Report {
    // Tokio's own randomness (which branch of a `select!` is polled first,
    // which waiter of a `watch` wakes first) comes from the seed too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .rng_seed(tokio::runtime::RngSeed::from_bytes(
            &options.seed.to_le_bytes(),
        ))
        .build()
        .expect("a runtime");
    runtime.block_on(simulate(options.clone()))
}

struct Run {
    rng: StdRng,
    cluster: Cluster,
    recorder: Arc<Recorder>,
    target: Arc<ClusterTarget>,
    faults: BTreeMap<&'static str, u64>,
    lost_unsynced: u64,
    violations: Vec<Violation>,
    seed: u64,
    /// The number of the next node to join.
    next_index: u8,
    /// Whether joins and decommissions are among the faults.
    topology: bool,
    /// Whether an operator's repair schedule runs alongside the clients.
    scheduled_repairs: bool,
    /// The id of the statement workload's table, once made.
    cql_table: Option<TableId>,
}

async fn simulate(options: Options) -> Report {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(options.seed);
    let nodes = rng.random_range(3..=5u8);
    let sync = if rng.random_bool(0.5) {
        SyncMode::Always
    } else {
        SyncMode::Group { window_ms: 2 }
    };
    // Some clusters run without hinted handoff (as some operators choose):
    // a replica that missed a write then waits for read repair or
    // anti-entropy, which purges must not outrun.
    let hints = rng.random_bool(if options.purges { 0.5 } else { 0.75 });
    // Purge-heavy runs may run background anti-entropy rarely (every ten
    // minutes, the default) and an operator's repair schedule instead
    // (Cassandra has no background anti-entropy): only repairs, reads and
    // hints bring a replica back, and a repair's purge must not outrun them.
    let rare = options.purges && !rng.random_bool(0.5);
    let antientropy_secs = if rare { 600 } else { 10 };
    let settings = NodeSettings {
        replication_factor: 3,
        sync,
        num_tokens: 8,
        hints,
        antientropy_secs,
    };
    let net = Net::new(rng.random(), LinkModel::default());
    let mut cluster = Cluster::new(net.clone(), options.seed, settings);
    for index in 1..=nodes {
        let skew = rng.random_range(-500_000..=500_000);
        let id = cluster.add(index, skew);
        cluster.start(&id);
    }
    let recorder = Recorder::new();
    let target = Arc::new(ClusterTarget {
        net: net.clone(),
        contact_points: Mutex::new(Vec::new()),
    });
    let mut run = Run {
        rng,
        cluster,
        recorder,
        target,
        faults: BTreeMap::new(),
        lost_unsynced: 0,
        violations: Vec::new(),
        seed: options.seed,
        next_index: nodes + 1,
        topology: false,
        scheduled_repairs: antientropy_secs > 60,
        cql_table: None,
    };
    let handoff = if hints { "on" } else { "off" };
    run.recorder.fault(format!(
        "{nodes} nodes, sync {sync:?}, hints {handoff}, anti-entropy every {antientropy_secs} s"
    ));
    if run.settle("form", true).await {
        run.topology = options.topology;
        run.phase(&options).await;
    }
    run.finish(started, usize::from(nodes)).await
}

impl Run {
    fn violation(&mut self, kind: &'static str, detail: String) {
        self.violations.push(Violation { kind, detail });
    }

    fn count(&mut self, kind: &'static str) {
        *self.faults.entry(kind).or_default() += 1;
    }

    fn refresh_contacts(&self) {
        *self.target.contact_points.lock().expect("contacts") = self.cluster.running();
    }

    /// Waits for every node to start and see the others up and normal. A
    /// start that fails is tried again; while the cluster forms, with no
    /// fault yet, it is a violation.
    async fn settle(&mut self, why: &str, forming: bool) -> bool {
        let (done, failures) = self
            .cluster
            .wait_until(SETTLE_WITHIN, |c| !c.starting() && c.settled())
            .await;
        self.refresh_contacts();
        for (node, error) in failures {
            if forming {
                self.violation("start failed", format!("{node} ({why}): {error}"));
            } else {
                self.recorder.fault(format!(
                    "start of {node} failed ({why}), tried again: {error}"
                ));
            }
        }
        if !done {
            self.violation(
                "no progress",
                format!("the cluster did not settle ({why}) within {SETTLE_WITHIN:?}"),
            );
        }
        done && self.violations.is_empty()
    }

    /// Makes the statement workload's table through a node (before any
    /// fault) and waits until every running node has it; returns its id.
    async fn make_schema(&mut self) -> Option<TableId> {
        let until = Instant::now() + SETTLE_WITHIN;
        for cql in statements::SCHEMA {
            loop {
                let node = self.cluster.running().first()?.clone();
                let request = ClientRequest::Query(Query::new(cql, ConsistencyLevel::Quorum));
                match self.target.call(&node, request).await {
                    Ok(_) => break,
                    Err(error) if Instant::now() > until => {
                        self.violation("schema", format!("{cql}: {error}"));
                        return None;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        loop {
            let tables: Vec<Option<TableId>> = (self.cluster.running().iter())
                .map(|node| Some(self.cluster.handle(node)?.table("sim", "rows")?.id))
                .collect();
            if let Some(Some(id)) = tables.first()
                && tables.iter().all(|t| *t == Some(*id))
            {
                return Some(*id);
            }
            if Instant::now() > until {
                let detail = format!("sim.rows has not reached every node: {tables:?}");
                self.violation("schema", detail);
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clients and the nemesis.
    async fn phase(&mut self, options: &Options) {
        let mut workload = Workload::new(3, 3, 3, options.purges);
        if options.statements
            && let Some(table) = self.make_schema().await
        {
            self.cql_table = Some(table);
            workload = workload.with_statements(table);
        }
        let until = Instant::now() + options.fault_phase;
        let workload = Arc::new(workload);
        let mut clients = JoinSet::new();
        for client in 0..self.rng.random_range(3..=workload::MAX_CLIENTS) {
            let seed = self.rng.random();
            let target: Arc<dyn Target> = self.target.clone();
            clients.spawn(workload::run_client(
                client,
                seed,
                workload.clone(),
                target,
                self.recorder.clone(),
                until,
            ));
        }
        let scheduled = self.scheduled_repairs.then(|| {
            tokio::spawn(workload::run_repairs(
                self.rng.random(),
                2,
                self.target.clone(),
                self.recorder.clone(),
                until,
            ))
        });
        while Instant::now() < until {
            self.nemesis().await;
        }
        while clients.join_next().await.is_some() {}
        if let Some(task) = scheduled
            && let Ok(repairs) = task.await
        {
            *self.faults.entry("scheduled repair").or_default() += repairs;
        }
    }

    /// One fault: applied, held a while, undone.
    async fn nemesis(&mut self) {
        let pause = Duration::from_millis(self.rng.random_range(500..=3000));
        tokio::time::sleep(pause).await;
        let (_, failures) = self.cluster.wait_until(Duration::ZERO, |_| true).await;
        for (node, error) in failures {
            self.count("failed start");
            self.recorder
                .fault(format!("start of {node} failed, tried again: {error}"));
        }
        self.refresh_contacts();
        let running = self.cluster.running();
        let all = self.cluster.present();
        let hold = Duration::from_millis(self.rng.random_range(1000..=8000));
        let kinds = if self.topology { 11 } else { 8 };
        match self.rng.random_range(0..kinds) {
            0 => {
                // Halves: each side a majority or a minority.
                let mut shuffled = all.clone();
                shuffled.sort_by_key(|_| self.rng.random::<u32>());
                let half = shuffled.len() / 2;
                let (left, right) = shuffled.split_at(half.max(1));
                self.partition(left, right, "partition halves", hold).await;
            }
            1 => {
                let Some(one) = all.choose(&mut self.rng).cloned() else {
                    return;
                };
                let rest: Vec<NodeId> = all.iter().filter(|n| **n != one).cloned().collect();
                self.partition(&[one], &rest, "isolate one", hold).await;
            }
            2 => self.bridge(&all, hold).await,
            3 => {
                let Some(node) = running.choose(&mut self.rng).cloned() else {
                    return;
                };
                self.crash(&node, hold).await;
            }
            4 => {
                let Some(node) = running.choose(&mut self.rng).cloned() else {
                    return;
                };
                self.count("pause");
                self.recorder.fault(format!("pause {node} for {hold:?}"));
                self.cluster.net.set_paused(&node, true);
                tokio::time::sleep(hold).await;
                self.cluster.net.set_paused(&node, false);
                self.recorder.fault(format!("resume {node}"));
            }
            5 => {
                let Some(node) = all.choose(&mut self.rng).cloned() else {
                    return;
                };
                let micros = self.rng.random_range(-30_000_000..=30_000_000i64);
                self.count("clock jump");
                self.recorder
                    .fault(format!("clock of {node} jumps {micros} µs"));
                self.cluster.jump_clock(&node, micros);
            }
            6 => {
                let model = LinkModel {
                    delay: Duration::from_micros(self.rng.random_range(100..=5000)),
                    jitter: Duration::from_millis(self.rng.random_range(0..=50)),
                    loss: self.rng.random_range(0.0..0.2),
                    duplicate: self.rng.random_range(0.0..0.1),
                };
                self.count("loss, delay, duplication");
                self.recorder.fault(format!("links {model:?} for {hold:?}"));
                self.cluster.net.set_model(model);
                tokio::time::sleep(hold).await;
                self.cluster.net.set_model(LinkModel::default());
                self.recorder.fault("links back to normal");
            }
            8 => self.join().await,
            9 => self.decommission(&running).await,
            10 => self.remove(&running).await,
            _ => {
                let table = match self.rng.random_range(0..3) {
                    0 => None,
                    t => Some(format!("t{}", t - 1)),
                };
                // One node, or (as operators do) every node in turn.
                let nodes = if self.rng.random_bool(0.5) {
                    running.choose(&mut self.rng).cloned().into_iter().collect()
                } else {
                    running.clone()
                };
                for node in nodes {
                    self.count("repair");
                    self.recorder
                        .fault(format!("repair on {node}, table {table:?}"));
                    let request = ClientRequest::Repair {
                        table: table.clone(),
                        ranges: Vec::new(),
                    };
                    // A repair that fails under faults is retried by later ones.
                    let answer = self.target.call(&node, request).await;
                    self.recorder
                        .fault(format!("repair on {node}: {}", workload::repaired(&answer)));
                }
            }
        }
    }

    /// A new node joins (up to seven), streaming its ranges meanwhile.
    async fn join(&mut self) {
        if self.next_index > 7 || self.cluster.starting() {
            return;
        }
        let skew = self.rng.random_range(-500_000..=500_000);
        let node = self.cluster.add(self.next_index, skew);
        self.next_index += 1;
        self.count("join");
        self.recorder.fault(format!("{node} joins"));
        self.cluster.start(&node);
    }

    /// A node (not a seed) that may leave the ring, while at least three
    /// others stay and no node is starting.
    fn leaver(&mut self, running: &[NodeId]) -> Option<NodeId> {
        let seeds = [NodeId::new("n1"), NodeId::new("n2")];
        let leavers: Vec<&NodeId> = running.iter().filter(|n| !seeds.contains(n)).collect();
        if running.len() < 4 || self.cluster.starting() {
            return None;
        }
        leavers.choose(&mut self.rng).map(|n| (*n).clone())
    }

    /// A node (not a seed) leaves, streaming its ranges away, while at
    /// least three others stay; followed until it ends.
    async fn decommission(&mut self, running: &[NodeId]) {
        let Some(node) = self.leaver(running) else {
            return;
        };
        self.count("decommission");
        self.recorder.fault(format!("decommission {node}"));
        let started = self.target.call(&node, ClientRequest::Decommission).await;
        if let Err(error) = started {
            self.recorder
                .fault(format!("decommission {node} refused: {error}"));
            return;
        }
        if self.follow(&node, "decommission").await {
            self.recorder.fault(format!("{node} left"));
            self.cluster.retire(&node, "decommissioned");
            self.refresh_contacts();
        }
    }

    /// A node (not a seed) dies for good, while at least three others
    /// stay, and one of them removes it (`ringdb removenode`), restoring
    /// its ranges from the other replicas; followed until it ends. Then,
    /// half the time, the node's data is wiped and it starts again: it
    /// joins anew under its old id.
    async fn remove(&mut self, running: &[NodeId]) {
        let Some(node) = self.leaver(running) else {
            return;
        };
        let Some(remover) = running.iter().find(|n| **n != node).cloned() else {
            return;
        };
        self.count("removenode");
        self.recorder
            .fault(format!("{node} dies for good; {remover} removes it"));
        self.recorder.node_lost(&node);
        self.cluster.retire(&node, "removed");
        self.refresh_contacts();
        // As an operator would, asks again until the removal succeeds: it
        // is refused, or fails once started, while the failure detector
        // still counts the node up or a survivor it copies from is down.
        let started = Instant::now();
        let until = started + Duration::from_secs(120);
        loop {
            let request = ClientRequest::RemoveNode { node: node.clone() };
            let last = match self.target.call(&remover, request).await {
                Ok(_) if self.follow(&remover, "removenode").await => break,
                Ok(_) => "it failed once started".to_string(),
                Err(error) => format!("refused: {error}"),
            };
            if Instant::now() >= until {
                self.recorder.fault(format!(
                    "removenode {node} given up after {:?}; last {last}",
                    started.elapsed()
                ));
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.recorder.fault(format!("{node} removed"));
        // Half the time its disk is replaced and it joins again, empty.
        if self.rng.random_bool(0.5) {
            self.count("wipe and rejoin");
            self.recorder
                .fault(format!("{node} starts again with its data wiped"));
            self.cluster.start_wiped(&node);
        }
    }

    /// Follows the topology operation `node` runs until it ends; returns
    /// whether it succeeded.
    async fn follow(&mut self, node: &NodeId, what: &str) -> bool {
        let until = Instant::now() + Duration::from_secs(120);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let status = self
                .target
                .call(node, ClientRequest::Operation { abort: false })
                .await;
            match status {
                Ok(ClientReply::Operation(status)) => match status.outcome {
                    OperationOutcome::Running => continue,
                    OperationOutcome::Succeeded { .. } => return true,
                    other => {
                        self.recorder
                            .fault(format!("{what} on {node} ended: {other:?}"));
                        return false;
                    }
                },
                // Asked again at the next second.
                _ => continue,
            }
        }
        self.recorder
            .fault(format!("{what} on {node} still running after 120 s"));
        false
    }

    async fn partition(
        &mut self,
        left: &[NodeId],
        right: &[NodeId],
        what: &'static str,
        hold: Duration,
    ) {
        self.count(what);
        self.recorder
            .fault(format!("{what}: {left:?} | {right:?} for {hold:?}"));
        for a in left {
            for b in right {
                self.cluster.net.set_cut(a, b, true);
                self.cluster.net.set_cut(b, a, true);
            }
        }
        tokio::time::sleep(hold).await;
        self.cluster.net.heal();
        self.recorder.fault("heal");
    }

    /// Two sides that cannot reach each other, and one node that reaches both.
    async fn bridge(&mut self, all: &[NodeId], hold: Duration) {
        if all.len() < 3 {
            return;
        }
        let mut shuffled = all.to_vec();
        shuffled.sort_by_key(|_| self.rng.random::<u32>());
        let bridge = shuffled.pop().expect("three nodes");
        let half = shuffled.len() / 2;
        let (left, right) = shuffled.split_at(half);
        self.count("bridge");
        self.recorder.fault(format!(
            "bridge {bridge}: {left:?} | {right:?} for {hold:?}"
        ));
        for a in left {
            for b in right {
                self.cluster.net.set_cut(a, b, true);
                self.cluster.net.set_cut(b, a, true);
            }
        }
        tokio::time::sleep(hold).await;
        self.cluster.net.heal();
        self.recorder.fault("heal");
    }

    async fn crash(&mut self, node: &NodeId, hold: Duration) {
        let keep = self.rng.random_range(0..=4);
        let Some(lost) = self.cluster.crash(node, keep) else {
            return;
        };
        self.count("crash");
        self.lost_unsynced += lost as u64;
        self.recorder.fault(format!(
            "crash {node}: {lost} unsynced writes lost; down for {hold:?}"
        ));
        self.refresh_contacts();
        tokio::time::sleep(hold).await;
        self.cluster.start(node);
        self.recorder.fault(format!("restart {node}"));
    }

    /// Heal, restart, settle, repair until converged, record the final
    /// state, check.
    async fn finish(mut self, started: Instant, nodes: usize) -> Report {
        self.cluster.net.heal();
        self.cluster.net.set_model(LinkModel::default());
        for node in self.cluster.ids() {
            self.cluster.net.set_paused(&node, false);
        }
        for node in self.cluster.down() {
            self.cluster.start(&node);
        }
        self.recorder.fault("heal everything");
        let healed = Instant::now();
        let mut converged_after = None;
        if self.violations.is_empty() && self.settle("after the faults", false).await {
            converged_after = self.converge(healed).await;
            if converged_after.is_none() {
                self.violation(
                    "no convergence",
                    format!("replicas still differ {CONVERGE_WITHIN:?} after heal"),
                );
            }
        }
        self.cluster.shutdown().await;
        let history = self.recorder.history();
        if converged_after.is_some() {
            let (violations, checked) = checker::check(&history, 3);
            self.violations.extend(violations);
            return self.report(started, nodes, history, checked, converged_after);
        }
        let checked = Checked::default();
        self.report(started, nodes, history, checked, converged_after)
    }

    fn report(
        self,
        started: Instant,
        nodes: usize,
        history: History,
        checked: Checked,
        converged_after: Option<Duration>,
    ) -> Report {
        Report {
            seed: self.seed,
            nodes,
            simulated: started.elapsed(),
            faults: self.faults,
            lost_unsynced: self.lost_unsynced,
            net: self.cluster.net.counters(),
            checked,
            converged_after,
            violations: self.violations,
            history,
        }
    }

    /// Repairs until every replica of every row holds the same; records
    /// the final state. Returns how long it took after heal.
    async fn converge(&mut self, healed: Instant) -> Option<Duration> {
        let until = healed + CONVERGE_WITHIN;
        let mut workload = Workload::new(3, 3, 3, true);
        if let Some(table) = self.cql_table {
            workload = workload.with_statements(table);
        }
        let keys = workload::all_keys(&workload);
        while Instant::now() < until {
            for node in self.cluster.running() {
                let request = ClientRequest::Repair {
                    table: None,
                    ranges: Vec::new(),
                };
                // Checked by the comparison below; a failed repair is retried.
                let _ = self.target.call(&node, request).await;
            }
            if let Some(finals) = self.compare(&keys).await {
                for (key, (values, writers)) in finals {
                    self.recorder.record(Event::Final {
                        key,
                        values,
                        writers,
                    });
                }
                return Some(healed.elapsed());
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        None
    }

    /// Every row's state if all its replicas agree on it.
    async fn compare(&self, keys: &[Key]) -> Option<BTreeMap<Key, (Vec<u64>, Vec<String>)>> {
        let running = self.cluster.running();
        let view = self.cluster.handle(running.first()?)?.view();
        let mut finals = BTreeMap::new();
        for key in keys {
            let address = workload::address_in(key, self.cql_table);
            let replication = match (self.cql_table, key.table == statements::CQL_TABLE) {
                (Some(_), true) => statements::keyspace_replication(),
                _ => Replication::Simple { factor: 3 },
            };
            let token = Token::of(address.partition.as_bytes());
            let mut states = Vec::new();
            for replica in view.ring.replicas(token, &replication) {
                let request = ClientRequest::LocalGet {
                    row: address.clone(),
                };
                match self.target.call(&replica, request).await {
                    Ok(ClientReply::Read { siblings, .. }) => {
                        states.push(workload::values_of(&siblings));
                    }
                    _ => return None,
                }
            }
            if states.windows(2).any(|pair| pair[0] != pair[1]) {
                return None;
            }
            finals.insert(*key, states.pop()?);
        }
        Some(finals)
    }
}
