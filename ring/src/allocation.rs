//! Token allocation for a joining node: tokens that keep replicated ownership balanced.
//!
//! With 16 random tokens per node, ownership at RF 3 routinely strays 20–40%
//! from the mean. Cassandra answers with `allocate_tokens_for_local_replication_factor`,
//! which places each new token where it best evens out the *replicated* load.
//! We do the same greedily, one token at a time. For each existing vnode range
//! we find the best split point: the new node's share changes linearly with
//! where the token lands, so the squared-error optimum is found in closed form
//! and tried beside the range's middle and ends. Each candidate is scored by
//! the change in Σ ((share − target) / target)⁴ over the nodes it touches,
//! where a node's share is the fraction of the ring it replicates (simple
//! strategy, the given replication factor) and the target is the mean after
//! the join. Two details matter, both found by measuring (see
//! `tests/ownership.rs`):
//!
//! - The new node's target grows with each token placed (k/16 of the mean
//!   after k of 16 tokens). Held to the full target from the first token, its
//!   deficit dominates the score and each token grabs the largest chunk
//!   anywhere instead of relieving the most loaded nodes.
//! - Fourth powers, not squares: a new token never moves an old node *up*, so
//!   an old node that is overloaded stays so until a token is aimed at it.
//!   Squares let such outliers drift to +20% by 64 nodes; fourth powers
//!   keep every node within ±10% from 4 to 64 nodes.
//!
//! Primary (RF 1) shares enter with a small weight, to break ties while there
//! are no more nodes than replicas and to keep range widths even.
//!
//! Inserting a token only changes the replica sets of the ranges whose
//! clockwise walk reaches it, a handful before it, so each candidate is scored
//! from those ranges alone. Allocation is deterministic: the same ring gives
//! the same tokens.

use crate::ring::Ring;
use crate::token::Token;

/// Weight of the primary-ownership term in the objective.
const PRIMARY_WEIGHT: f64 = 0.01;
/// A new token stays this fraction of a range's width away from its ends, so
/// no range becomes vanishingly small.
const SPLIT_MARGIN: f64 = 0.02;

impl Ring {
    /// Picks `count` tokens for a node about to join, so that replicated
    /// ownership at `replication_factor` stays balanced. On an empty ring the
    /// tokens are spread evenly from offset 0 (see
    /// [`Ring::founding_tokens`] for a cluster's first node).
    pub fn allocate_tokens(&self, count: usize, replication_factor: usize) -> Vec<Token> {
        if self.index().is_empty() {
            return Ring::founding_tokens(count, 0);
        }
        let mut state = Allocation::new(self, replication_factor.max(1));
        (1..=count)
            .filter_map(|placed| state.place_one(placed as f64 / count as f64))
            .collect()
    }
}

impl Ring {
    /// The tokens of the first node of a new cluster: `count` tokens spread
    /// evenly around the ring, turned by `rotation` (an offset the founder
    /// draws at random), so that two clusters founded apart, which might
    /// later be pointed at each other by mistake, share no token.
    pub fn founding_tokens(count: usize, rotation: u64) -> Vec<Token> {
        let step = u64::MAX / count.max(1) as u64;
        (0..count as u64)
            .map(|i| Token::from_offset((i * step + step / 2).wrapping_add(rotation)))
            .collect()
    }
}

/// The allocation in progress: the ring's tokens plus the ones placed so far.
struct Allocation {
    /// (token offset, owner) sorted by offset; the new node is `new_owner`.
    tokens: Vec<(u64, usize)>,
    new_owner: usize,
    replication_factor: usize,
    /// Replicated share of the ring per owner.
    shares: Vec<f64>,
    /// Primary share of the ring per owner.
    primary: Vec<f64>,
    target: f64,
    primary_target: f64,
}

/// The best place found so far for the next token.
struct Candidate {
    position: usize,
    offset: u64,
    score: f64,
}

impl Allocation {
    fn new(ring: &Ring, replication_factor: usize) -> Allocation {
        let tokens = ring
            .index()
            .iter()
            .map(|&(t, i)| (t.offset(), i as usize))
            .collect();
        let new_owner = ring.ids().len();
        let nodes = new_owner + 1;
        let mut allocation = Allocation {
            tokens,
            new_owner,
            replication_factor,
            shares: vec![0.0; nodes],
            primary: vec![0.0; nodes],
            target: replication_factor.min(nodes) as f64 / nodes as f64,
            primary_target: 1.0 / nodes as f64,
        };
        allocation.recompute_shares();
        allocation
    }

    fn len(&self) -> usize {
        self.tokens.len()
    }

    /// The width of the range ending at `position`, as a fraction of the ring.
    fn width(&self, position: usize) -> f64 {
        if self.len() == 1 {
            return 1.0;
        }
        let previous = self.tokens[(position + self.len() - 1) % self.len()].0;
        self.tokens[position].0.wrapping_sub(previous) as f64 / crate::token::RING_SIZE
    }

    /// The replicas of the range ending at `position`, with `extra` (an owner at
    /// a virtual position just before `position + skip`) taken into account.
    fn replicas(&self, position: usize, extra: Option<(usize, usize)>) -> Vec<usize> {
        let mut replicas = Vec::with_capacity(self.replication_factor);
        let n = self.len();
        let mut visit = |owner: usize| {
            if !replicas.contains(&owner) {
                replicas.push(owner);
            }
            replicas.len() == self.replication_factor
        };
        for step in 0..n {
            let here = (position + step) % n;
            if let Some((at, owner)) = extra
                && here == at
                && step > 0
                && visit(owner)
            {
                break;
            }
            if visit(self.tokens[here].1) {
                break;
            }
        }
        replicas
    }

    fn recompute_shares(&mut self) {
        self.shares.iter_mut().for_each(|s| *s = 0.0);
        self.primary.iter_mut().for_each(|s| *s = 0.0);
        for position in 0..self.len() {
            let width = self.width(position);
            self.primary[self.tokens[position].1] += width;
            for replica in self.replicas(position, None) {
                self.shares[replica] += width;
            }
        }
    }

    /// Finds where in the range ending at `position` the new node's token
    /// does most good, and the objective's change if it goes there.
    ///
    /// The split point `h` (the width of the new range `(previous, token]`)
    /// moves share linearly between the nodes whose replica set changes for
    /// the new range, while the earlier ranges' changes do not depend on it;
    /// the objective is therefore a quadratic in `h`, minimised in closed form.
    fn best_split(&self, position: usize, progress: f64) -> Option<(u64, f64)> {
        let n = self.len();
        let owner = self.tokens[position].1;
        let previous = self.tokens[(position + n - 1) % n].0;
        let width_units = if n == 1 {
            u64::MAX
        } else {
            self.tokens[position].0.wrapping_sub(previous)
        };
        if width_units < 4 {
            return None;
        }
        let width = width_units as f64 / crate::token::RING_SIZE;

        // Per node: (constant delta, delta per unit of h) to its replicated share.
        let mut deltas: Vec<(usize, f64, f64)> = Vec::new();
        fn add(deltas: &mut Vec<(usize, f64, f64)>, node: usize, constant: f64, linear: f64) {
            match deltas.iter_mut().find(|(n, _, _)| *n == node) {
                Some((_, c, l)) => {
                    *c += constant;
                    *l += linear;
                }
                None => deltas.push((node, constant, linear)),
            }
        }

        // The new range (previous, token]: the new node, then the walk from `position`.
        let old = self.replicas(position, None);
        let mut new = vec![self.new_owner];
        new.extend(old.iter().copied().filter(|&r| r != self.new_owner));
        new.truncate(self.replication_factor);
        for &r in &old {
            add(&mut deltas, r, 0.0, -1.0);
        }
        for &r in &new {
            add(&mut deltas, r, 0.0, 1.0);
        }
        // Earlier ranges whose walk passes the new token gain it as a replica.
        for back in 1..n {
            let earlier = (position + n - back) % n;
            let old = self.replicas(earlier, None);
            let new = self.replicas(earlier, Some((position, self.new_owner)));
            if old == new {
                break;
            }
            let width = self.width(earlier);
            for &r in &old {
                add(&mut deltas, r, -width, 0.0);
            }
            for &r in &new {
                add(&mut deltas, r, width, 0.0);
            }
        }

        // The squared-error objective is a quadratic in h whose minimum is one
        // candidate; the range's middle and ends are the others.
        let target = |node: usize| {
            if node == self.new_owner {
                self.target * progress
            } else {
                self.target
            }
        };
        let (mut a, mut b) = (0.0, 0.0);
        for &(node, constant, linear) in &deltas {
            a += linear * linear;
            b += 2.0 * (self.shares[node] - target(node) + constant) * linear;
        }
        if owner != self.new_owner {
            let d_owner = self.primary[owner] - self.primary_target;
            let d_new = self.primary[self.new_owner] - self.primary_target * progress;
            a += PRIMARY_WEIGHT * 2.0;
            b += PRIMARY_WEIGHT * 2.0 * (d_new - d_owner);
        }
        let (low, high) = (width * SPLIT_MARGIN, width * (1.0 - SPLIT_MARGIN));
        let quadratic = if a > 0.0 {
            (-b / (2.0 * a)).clamp(low, high)
        } else {
            width / 2.0
        };

        // Each candidate is scored with fourth powers of the relative
        // deviations, which weigh a single overloaded node far more than
        // squares do (squares left old outliers at +20% by 64 nodes).
        let scale = self.target;
        let evaluate = |h: f64| {
            let mut score = 0.0;
            for &(node, constant, linear) in &deltas {
                let d = (self.shares[node] - target(node)) / scale;
                score += (d + (constant + linear * h) / scale).powi(4) - d.powi(4);
            }
            if owner != self.new_owner {
                let d_owner = (self.primary[owner] - self.primary_target) / scale;
                let d_new = (self.primary[self.new_owner] - self.primary_target * progress) / scale;
                let moved = h / scale;
                score += PRIMARY_WEIGHT
                    * ((d_owner - moved).powi(2) - d_owner.powi(2) + (d_new + moved).powi(2)
                        - d_new.powi(2));
            }
            score
        };
        let (h, score) = [quadratic, low, high, width / 2.0]
            .into_iter()
            .map(|h| (h, evaluate(h)))
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .expect("four candidates");
        let offset = previous.wrapping_add((h / width * width_units as f64) as u64);
        Some((offset, score))
    }

    /// Places one more token for the new node, which should then hold
    /// `progress` of its target share; `None` if no range can be split.
    fn place_one(&mut self, progress: f64) -> Option<Token> {
        let n = self.len();
        let mut best: Option<Candidate> = None;
        for position in 0..n {
            if let Some((offset, score)) = self.best_split(position, progress)
                && best.as_ref().is_none_or(|b| score < b.score)
            {
                best = Some(Candidate {
                    position,
                    offset,
                    score,
                });
            }
        }
        let best = best?;
        // Insert keeping order: the offset may have wrapped past the end.
        let at = self.tokens.partition_point(|&(t, _)| t < best.offset);
        debug_assert!(at == best.position || best.position == 0);
        self.tokens.insert(at, (best.offset, self.new_owner));
        self.recompute_shares();
        Some(Token::from_offset(best.offset))
    }
}
