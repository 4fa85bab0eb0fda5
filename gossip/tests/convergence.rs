//! Many gossipers driven by hand over a simulated network: no sockets, time
//! injected, peer choice seeded. Every message is encoded to MessagePack and
//! decoded again on delivery, as on the wire.
//!
//! `cargo test --release -p ringdb-gossip --test convergence -- --nocapture`
//! prints the measured rounds.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringdb_gossip::{
    Event, GossipConfig, GossipMessage, Gossiper, Outbound, Peer, RemovalStep, StateValue, Status,
};
use ringdb_ring::{NodeId, Token};

fn id(i: usize) -> NodeId {
    NodeId::new(format!("node{i}"))
}

fn address(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 7000))
}

/// A simulated cluster. Nodes tick in turn, spread over each second, so
/// heartbeats do not all arrive at the same instant.
struct Sim {
    nodes: BTreeMap<NodeId, Gossiper>,
    by_address: BTreeMap<SocketAddr, NodeId>,
    /// Nodes not running (crashed): they neither tick nor answer.
    stopped: HashSet<NodeId>,
    /// Pairs of nodes that cannot reach each other.
    cut: HashSet<(NodeId, NodeId)>,
    now: Instant,
    seed: u64,
    seeds: Vec<SocketAddr>,
    /// Encoded bytes of every message delivered, by kind.
    bytes: BTreeMap<&'static str, (u64, u64)>,
}

impl Sim {
    fn new(n: usize, seeds: &[usize], seed: u64) -> Sim {
        let mut sim = Sim {
            nodes: BTreeMap::new(),
            by_address: BTreeMap::new(),
            stopped: HashSet::new(),
            cut: HashSet::new(),
            now: Instant::now(),
            seed,
            seeds: seeds.iter().map(|&s| address(s)).collect(),
            bytes: BTreeMap::new(),
        };
        for i in 1..=n {
            sim.start(i, 1, Status::Normal);
        }
        sim
    }

    /// Starts (or restarts) node `i` with `generation`.
    fn start(&mut self, i: usize, generation: u64, status: Status) {
        let config = GossipConfig {
            cluster: "sim".into(),
            seeds: self.seeds.clone(),
            ..GossipConfig::default()
        };
        let states = vec![
            StateValue::Status(status),
            StateValue::Tokens(vec![Token(i as i64 * 1000)]),
            StateValue::InternodeAddress(address(i)),
            StateValue::Load(0),
        ];
        let gossiper = Gossiper::new(
            id(i),
            generation,
            states,
            config,
            self.seed * 1000 + i as u64 + generation,
        );
        self.nodes.insert(id(i), gossiper);
        self.by_address.insert(address(i), id(i));
        self.stopped.remove(&id(i));
    }

    /// Restarts node `i` with `generation`, remembering what its previous
    /// life knew of the others (as a node does from its data directory).
    fn restart_remembering(&mut self, i: usize, generation: u64) {
        let known = self.nodes[&id(i)].states().clone();
        self.start(i, generation, Status::Normal);
        let gossiper = self.nodes.get_mut(&id(i)).expect("node");
        for (node, state) in known {
            gossiper.remember(node, state);
        }
    }

    fn stop(&mut self, i: usize) {
        self.stopped.insert(id(i));
    }

    fn partition(&mut self, side_a: &[usize], side_b: &[usize]) {
        for &a in side_a {
            for &b in side_b {
                self.cut.insert((id(a), id(b)));
                self.cut.insert((id(b), id(a)));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn reachable(&self, from: &NodeId, to: &NodeId) -> bool {
        !self.stopped.contains(to) && !self.cut.contains(&(from.clone(), to.clone()))
    }

    /// One second: every running node ticks once, at its own offset.
    fn round(&mut self) {
        let running: Vec<NodeId> = self
            .nodes
            .keys()
            .filter(|n| !self.stopped.contains(*n))
            .cloned()
            .collect();
        let step = Duration::from_secs(1) / running.len().max(1) as u32;
        for node in running {
            self.now += step;
            let now = self.now;
            let outbound = self.nodes.get_mut(&node).expect("node").tick(now);
            for message in outbound {
                self.deliver(&node, message);
            }
        }
    }

    fn encode_decode(&mut self, message: &GossipMessage) -> GossipMessage {
        let bytes = rmp_serde::to_vec_named(message).expect("encode");
        let kind = match message {
            GossipMessage::Syn { .. } => "syn",
            GossipMessage::Ack { .. } => "ack",
            GossipMessage::Ack2 { .. } => "ack2",
        };
        let entry = self.bytes.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += bytes.len() as u64;
        rmp_serde::from_slice(&bytes).expect("decode")
    }

    /// A round trip of Syn → Ack → Ack2 between `from` and the recipient.
    fn deliver(&mut self, from: &NodeId, outbound: Outbound) {
        let to = match outbound.to {
            Peer::Node(node) => node,
            Peer::Seed(address) => match self.by_address.get(&address) {
                Some(node) => node.clone(),
                None => return,
            },
        };
        if &to == from || !self.reachable(from, &to) {
            return;
        }
        let now = self.now;
        let syn = self.encode_decode(&outbound.message);
        let ack = self.nodes.get_mut(&to).expect("to").handle(from, syn, now);
        let Some(ack) = ack else { return };
        let ack = self.encode_decode(&ack);
        let ack2 = self
            .nodes
            .get_mut(from)
            .expect("from")
            .handle(&to, ack, now);
        let Some(ack2) = ack2 else { return };
        let ack2 = self.encode_decode(&ack2);
        self.nodes.get_mut(&to).expect("to").handle(from, ack2, now);
    }

    fn running(&self) -> impl Iterator<Item = (&NodeId, &Gossiper)> {
        self.nodes
            .iter()
            .filter(|(n, _)| !self.stopped.contains(*n))
    }

    /// Runs rounds until `done` holds, at most `limit`; returns the rounds
    /// taken.
    fn rounds_until(&mut self, limit: usize, done: impl Fn(&Sim) -> bool) -> Option<usize> {
        for rounds in 0..=limit {
            if done(self) {
                return Some(rounds);
            }
            self.round();
        }
        None
    }

    /// A cluster of `n` formed, then node `down` stopped until every other
    /// node sees it down.
    fn formed_then_down(n: usize, seed: u64, down: usize) -> Sim {
        let mut sim = Sim::new(n, &[1], seed);
        sim.rounds_until(50, Sim::everyone_knows_everyone)
            .expect("formed");
        sim.stop(down);
        sim.rounds_until(15, |sim| sim.running().all(|(_, g)| !g.is_alive(&id(down))))
            .expect("seen down");
        sim
    }

    /// Node `by` takes node `node` through `step` of its removal.
    fn removal_step(&mut self, by: usize, node: usize, step: RemovalStep) {
        let gossiper = self.nodes.get_mut(&id(by)).unwrap();
        gossiper.remove(&id(node), step).unwrap();
    }

    /// Waits until every running node holds `node` as `status`.
    fn until_all_see(&mut self, node: usize, status: Status, what: &str) {
        self.rounds_until(20, |sim| {
            sim.running()
                .all(|(_, g)| g.state(&id(node)).unwrap().status() == status)
        })
        .expect(what);
    }

    fn everyone_knows_everyone(&self) -> bool {
        let members: Vec<&NodeId> = self.running().map(|(n, _)| n).collect();
        self.running().all(|(_, g)| {
            members.iter().all(|m| {
                g.state(m)
                    .is_some_and(|s| s.status() == Status::Normal && !s.tokens().is_empty())
                    && g.is_alive(m)
            })
        })
    }

    fn load_everywhere(&self, node: &NodeId, load: u64) -> bool {
        self.running()
            .all(|(_, g)| g.state(node).and_then(|s| s.load()) == Some(load))
    }

    fn set_load(&mut self, i: usize, load: u64) {
        self.nodes
            .get_mut(&id(i))
            .expect("node")
            .set_state(StateValue::Load(load));
    }
}

fn mean(values: &[usize]) -> f64 {
    values.iter().sum::<usize>() as f64 / values.len() as f64
}

#[test]
fn news_spreads_in_logarithmic_rounds() {
    println!("nodes  form: mean max   news: mean max   syn bytes/msg");
    for n in [3usize, 10, 30, 100] {
        let mut formation = Vec::new();
        let mut news = Vec::new();
        let mut syn_size = 0.0;
        for seed in 0..10 {
            // Every node knows only the seeds (node1 and, above 3 nodes, node2).
            let seeds: &[usize] = if n > 3 { &[1, 2] } else { &[1] };
            let mut sim = Sim::new(n, seeds, seed);
            let formed = sim
                .rounds_until(200, Sim::everyone_knows_everyone)
                .unwrap_or_else(|| panic!("{n} nodes did not form one ring in 200 rounds"));
            formation.push(formed);
            // One node's news: a new load figure.
            sim.set_load(n, 42);
            let spread = sim
                .rounds_until(100, |sim| sim.load_everywhere(&id(n), 42))
                .unwrap_or_else(|| panic!("news did not reach {n} nodes in 100 rounds"));
            news.push(spread);
            let (count, bytes) = sim.bytes["syn"];
            syn_size = bytes as f64 / count as f64;
        }
        let max_news = *news.iter().max().expect("runs");
        println!(
            "{n:>5}  {:>10.1} {:>3}   {:>10.1} {:>3}   {:>8.0}",
            mean(&formation),
            formation.iter().max().expect("runs"),
            mean(&news),
            max_news,
            syn_size
        );
        // Epidemic spread: O(log n) rounds. A bound of 3·log2(n) + 3 leaves
        // room for unlucky peer choices; linear spread would exceed it from
        // 30 nodes on.
        let bound = 3.0 * (n as f64).log2() + 3.0;
        assert!(
            (max_news as f64) <= bound,
            "{n} nodes: news took {max_news} rounds, more than {bound:.0}"
        );
    }
}

#[test]
fn partitioned_groups_see_each_other_down_and_converge_after_healing() {
    let mut sim = Sim::new(10, &[1, 6], 7);
    sim.rounds_until(50, Sim::everyone_knows_everyone)
        .expect("formed");
    let side_a = [1, 2, 3, 4, 5];
    let side_b = [6, 7, 8, 9, 10];
    sim.partition(&side_a, &side_b);
    sim.set_load(3, 333);
    sim.set_load(8, 888);
    // Each side sees the other down. Heartbeats from before the cut keep
    // arriving through relays on each side for a few rounds, so this takes
    // longer than a crash seen directly.
    let split = sim
        .rounds_until(20, |sim| {
            side_a.iter().all(|&a| {
                side_b.iter().all(|&b| {
                    !sim.nodes[&id(a)].is_alive(&id(b)) && !sim.nodes[&id(b)].is_alive(&id(a))
                })
            })
        })
        .expect("each side sees the other down within 20 s");
    println!("partition of 10 nodes noticed in {split} rounds");
    // News stays on its side.
    for &b in &side_b {
        assert_ne!(sim.nodes[&id(b)].state(&id(3)).unwrap().load(), Some(333));
    }
    for &a in &side_a {
        assert_ne!(sim.nodes[&id(a)].state(&id(8)).unwrap().load(), Some(888));
    }
    for &a in &side_a {
        for &other in &side_a {
            assert!(sim.nodes[&id(a)].is_alive(&id(other)));
        }
    }
    sim.heal();
    let healed = sim
        .rounds_until(30, |sim| {
            sim.everyone_knows_everyone()
                && sim.load_everywhere(&id(3), 333)
                && sim.load_everywhere(&id(8), 888)
        })
        .expect("converged after healing");
    println!("10 nodes converged {healed} rounds after the partition healed");
}

#[test]
fn a_restarted_nodes_new_generation_wins_over_stale_gossip() {
    let mut sim = Sim::new(5, &[1], 3);
    sim.rounds_until(50, Sim::everyone_knows_everyone)
        .expect("formed");
    // node5 holds the old view of node2 and is cut off while node2 restarts.
    sim.partition(&[5], &[1, 2, 3, 4]);
    sim.stop(2);
    sim.rounds_until(15, |sim| !sim.nodes[&id(1)].is_alive(&id(2)))
        .expect("node2 seen down");
    sim.start(2, 2, Status::Normal);
    sim.nodes
        .get_mut(&id(2))
        .unwrap()
        .set_state(StateValue::Load(2222));
    sim.rounds_until(30, |sim| {
        [1, 3, 4]
            .iter()
            .all(|&i| sim.nodes[&id(i)].state(&id(2)).unwrap().generation == 2)
    })
    .expect("the new generation spread");
    // Healing: node5's old generation of node2 loses everywhere.
    sim.heal();
    sim.rounds_until(30, |sim| {
        sim.everyone_knows_everyone() && sim.load_everywhere(&id(2), 2222)
    })
    .expect("converged on the new generation");
    for (_, gossiper) in sim.running() {
        assert_eq!(gossiper.state(&id(2)).unwrap().generation, 2);
    }
}

#[test]
fn a_removed_node_does_not_come_back_through_stale_gossip() {
    let mut sim = Sim::new(5, &[1], 11);
    sim.rounds_until(50, Sim::everyone_knows_everyone)
        .expect("formed");
    sim.stop(5);
    sim.rounds_until(15, |sim| sim.running().all(|(_, g)| !g.is_alive(&id(5))))
        .expect("node5 seen down");
    // node4 is cut off before the removal, still holding node5 as normal.
    sim.partition(&[4], &[1, 2, 3]);
    // A live node cannot be removed; node5 is dead.
    let node1 = sim.nodes.get_mut(&id(1)).unwrap();
    assert!(node1.remove(&id(2), RemovalStep::Begin).is_err());
    // First removing: still in the ring with its tokens, at every node
    // that hears it.
    node1.remove(&id(5), RemovalStep::Begin).unwrap();
    sim.rounds_until(20, |sim| {
        [1, 2, 3].iter().all(|&i| {
            let state = sim.nodes[&id(i)].state(&id(5)).unwrap();
            state.status() == Status::Removing && !state.tokens().is_empty()
        })
    })
    .expect("removing spread");
    sim.nodes
        .get_mut(&id(1))
        .unwrap()
        .remove(&id(5), RemovalStep::Finish)
        .unwrap();
    sim.rounds_until(20, |sim| {
        [1, 2, 3]
            .iter()
            .all(|&i| sim.nodes[&id(i)].state(&id(5)).unwrap().status() == Status::Removed)
    })
    .expect("removal spread");
    assert_eq!(
        sim.nodes[&id(4)].state(&id(5)).unwrap().status(),
        Status::Normal
    );
    sim.heal();
    sim.rounds_until(30, |sim| {
        sim.running()
            .all(|(_, g)| g.state(&id(5)).unwrap().status() == Status::Removed)
    })
    .expect("node4 learns the removal");
    // A few more rounds: node4's stale state never wins back.
    for _ in 0..20 {
        sim.round();
        for (_, gossiper) in sim.running() {
            let state = gossiper.state(&id(5)).unwrap();
            assert_eq!(state.status(), Status::Removed);
            assert!(state.tokens().is_empty(), "a removed node owns no tokens");
        }
    }
    // The old node restarting as a normal member is refused; as a new,
    // joining member it is accepted.
    sim.start(5, 3, Status::Normal);
    for _ in 0..10 {
        sim.round();
    }
    assert_eq!(
        sim.nodes[&id(1)].state(&id(5)).unwrap().status(),
        Status::Removed
    );
    // ...and is told it was removed, so it can stop.
    let events = sim.nodes.get_mut(&id(5)).unwrap().take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::RemovedSelf { .. })),
        "{events:?}"
    );
    sim.start(5, 4, Status::Joining);
    sim.rounds_until(20, |sim| {
        [1, 2, 3, 4]
            .iter()
            .all(|&i| sim.nodes[&id(i)].state(&id(5)).unwrap().status() == Status::Joining)
    })
    .expect("a rejoining node is accepted as new");
}

#[test]
fn an_aborted_removal_puts_the_node_back_in_the_ring_as_it_was() {
    let mut sim = Sim::formed_then_down(4, 23, 4);
    let node1 = sim.nodes.get_mut(&id(1)).unwrap();
    node1.remove(&id(4), RemovalStep::Begin).unwrap();
    // Asked again (a resumed removal), nothing changes.
    let removing = node1.state(&id(4)).unwrap().clone();
    node1.remove(&id(4), RemovalStep::Begin).unwrap();
    assert_eq!(node1.state(&id(4)), Some(&removing));
    sim.until_all_see(4, Status::Removing, "removing spread");
    sim.removal_step(1, 4, RemovalStep::Abort);
    sim.rounds_until(20, |sim| {
        sim.running().all(|(_, g)| {
            let state = g.state(&id(4)).unwrap();
            state.status() == Status::Normal && state.tokens() == [Token(4000)]
        })
    })
    .expect("normal again, with its tokens, everywhere");
    // Hearing of the steps is not hearing from the node: still down.
    for _ in 0..5 {
        sim.round();
        assert!(sim.running().all(|(_, g)| !g.is_alive(&id(4))));
    }
    // Removed again, and finished: still the generation the first step
    // forced, so the old process, back, knows the removal is of its life.
    let node1 = sim.nodes.get_mut(&id(1)).unwrap();
    node1.remove(&id(4), RemovalStep::Begin).unwrap();
    node1.remove(&id(4), RemovalStep::Finish).unwrap();
    assert_eq!(node1.state(&id(4)).unwrap().generation, removing.generation);
    sim.until_all_see(4, Status::Removed, "removed everywhere");
    sim.start(4, 1, Status::Normal);
    for _ in 0..10 {
        sim.round();
    }
    let events = sim.nodes.get_mut(&id(4)).unwrap().take_events();
    assert!(
        events.contains(&Event::RemovedSelf { generation: 2 }),
        "the old process hears its life 1 was removed: {events:?}"
    );
}

#[test]
fn a_removal_finished_on_one_node_and_aborted_on_another_at_once_ends_removed_everywhere() {
    let mut sim = Sim::formed_then_down(4, 29, 4);
    sim.removal_step(1, 4, RemovalStep::Begin);
    sim.until_all_see(4, Status::Removing, "removing spread");
    // From the same state, node1 aborts and node2 finishes.
    sim.removal_step(1, 4, RemovalStep::Abort);
    sim.removal_step(2, 4, RemovalStep::Finish);
    sim.until_all_see(4, Status::Removed, "one outcome everywhere: removed");
}

#[test]
fn a_restart_of_every_node_keeps_the_ring_and_the_removals_without_a_seed() {
    let mut sim = Sim::formed_then_down(5, 17, 5);
    sim.removal_step(1, 5, RemovalStep::Finish);
    sim.until_all_see(5, Status::Removed, "removal spread");
    // Every node stops; the seed, node1, never comes back.
    for i in 1..=4 {
        sim.stop(i);
    }
    for i in 2..=5 {
        sim.restart_remembering(i, 2);
    }
    for i in 2..=4 {
        let gossiper = &sim.nodes[&id(i)];
        for p in (2..=4).filter(|&p| p != i) {
            assert!(
                !gossiper.is_alive(&id(p)),
                "node{p} alive before heard from"
            );
        }
        assert_eq!(
            gossiper.state(&id(5)).unwrap().status(),
            Status::Removed,
            "node{i} forgot the removal"
        );
    }
    sim.rounds_until(20, |sim| {
        [2, 3, 4].iter().all(|&i| {
            let gossiper = &sim.nodes[&id(i)];
            [2, 3, 4].iter().all(|&p| {
                gossiper.is_alive(&id(p)) && gossiper.state(&id(p)).unwrap().generation == 2
            })
        })
    })
    .expect("the remembered peers found each other without the seed");
    // node5, restarted with its old data, is told it was removed.
    let events = sim.nodes.get_mut(&id(5)).unwrap().take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::RemovedSelf { .. })),
        "{events:?}"
    );
    for i in 2..=4 {
        let state = sim.nodes[&id(i)].state(&id(5)).unwrap();
        assert_eq!(state.status(), Status::Removed, "seen by node{i}");
    }
}

#[test]
fn a_crashed_node_is_down_everywhere_within_10_s_and_up_within_10_s_of_restart() {
    for n in [3usize, 4, 10] {
        let mut sim = Sim::new(n, &[1], 5);
        sim.rounds_until(50, Sim::everyone_knows_everyone)
            .expect("formed");
        for _ in 0..30 {
            sim.round();
        }
        for gossiper in sim.nodes.values_mut() {
            gossiper.take_events();
        }
        let victim = n;
        sim.stop(victim);
        let down = sim
            .rounds_until(10, |sim| {
                sim.running().all(|(_, g)| !g.is_alive(&id(victim)))
            })
            .expect("down everywhere within 10 s");
        // The others stay up: no false conviction.
        for (_, gossiper) in sim.running() {
            for i in (1..n).filter(|&i| i != victim) {
                assert!(gossiper.is_alive(&id(i)));
            }
        }
        let events = sim.nodes.get_mut(&id(1)).unwrap().take_events();
        assert!(events.contains(&Event::Down(id(victim))), "{events:?}");
        sim.start(victim, 2, Status::Normal);
        let up = sim
            .rounds_until(10, |sim| {
                sim.running().all(|(_, g)| g.is_alive(&id(victim)))
            })
            .expect("up everywhere within 10 s");
        println!("{n} nodes: a crash seen everywhere after {down} s, the restart after {up} s");
    }
}

#[test]
fn a_node_resumed_from_a_pause_convicts_nobody_for_its_own_silence() {
    let mut sim = Sim::new(3, &[1], 23);
    sim.rounds_until(50, Sim::everyone_knows_everyone)
        .expect("formed");
    for _ in 0..10 {
        sim.round();
    }
    // node3 is paused (SIGSTOP) for 20 s: it neither ticks nor hears.
    sim.stop(3);
    sim.rounds_until(15, |sim| !sim.nodes[&id(1)].is_alive(&id(3)))
        .expect("node3 seen down");
    for _ in 0..15 {
        sim.round();
    }
    sim.nodes.get_mut(&id(3)).unwrap().take_events();
    // It resumes, same process, same generation: its first round must not
    // take the others' silence, which was its own, for their death.
    sim.stopped.remove(&id(3));
    let now = sim.now;
    sim.nodes.get_mut(&id(3)).unwrap().tick(now);
    let events = sim.nodes.get_mut(&id(3)).unwrap().take_events();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Down(_))),
        "{events:?}"
    );
    let gossiper = &sim.nodes[&id(3)];
    assert!(gossiper.is_alive(&id(1)) && gossiper.is_alive(&id(2)));
    sim.rounds_until(10, |sim| sim.nodes[&id(1)].is_alive(&id(3)))
        .expect("node3 seen up again");
}

#[test]
fn gossip_from_another_cluster_is_ignored() {
    let mut a = Gossiper::new(id(1), 1, [], GossipConfig::default(), 1);
    let syn = GossipMessage::Syn {
        cluster: "other".into(),
        digests: vec![],
    };
    assert_eq!(a.handle(&id(2), syn, Instant::now()), None);
    assert_eq!(a.states().len(), 1);
}

#[test]
fn nobody_else_speaks_for_a_node() {
    let now = Instant::now();
    let config = GossipConfig::default();
    let mut a = Gossiper::new(id(1), 1, [StateValue::Load(1)], config.clone(), 1);
    // node2 claims a newer state of node1.
    let forged = GossipMessage::Ack2 {
        deltas: vec![ringdb_gossip::EndpointDelta {
            node: id(1),
            generation: 99,
            heartbeat: 50,
            states: vec![ringdb_gossip::Versioned {
                value: StateValue::Load(666),
                version: 50,
            }],
        }],
    };
    a.handle(&id(2), forged, now);
    let own = a.state(&id(1)).unwrap();
    assert_eq!((own.generation, own.load()), (1, Some(1)));
}

#[test]
fn no_live_node_is_convicted_in_a_steady_cluster_of_100() {
    for n in [10usize, 30, 100] {
        let mut sim = Sim::new(n, &[1, 2], 7);
        sim.rounds_until(200, Sim::everyone_knows_everyone)
            .expect("formed");
        for _ in 0..30 {
            sim.round();
        }
        for gossiper in sim.nodes.values_mut() {
            gossiper.take_events();
        }
        for _ in 0..100 {
            sim.round();
        }
        let false_downs: usize = sim
            .nodes
            .values_mut()
            .map(|g| {
                let events = g.take_events();
                events
                    .iter()
                    .filter(|e| matches!(e, Event::Down(_)))
                    .count()
            })
            .sum();
        assert_eq!(false_downs, 0, "{n} nodes: live nodes convicted");
    }
}
