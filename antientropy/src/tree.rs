//! Merkle trees over token ranges, maintained incrementally.
//!
//! **Shape.** Every tree has [`FANOUT`]` = 32` children per inner node and
//! [`DEPTH`]` = 2` levels below the root: 32 inner nodes over [`LEAVES`]` =
//! 1024` leaves. A leaf covers an equal slice of the range's tokens, so the
//! items of a leaf are one contiguous storage scan. Why this shape:
//!
//! - *Memory.* Leaves are the only state: 1024 × 32 bytes = 32 KiB per
//!   range. A node replicates about `RF × num_tokens` ranges (48 with the
//!   defaults), so 1.5 MiB per node, whatever the data size.
//! - *Precision.* A difference costs the exchange of one leaf's items. With
//!   100,000 keys on 48 ranges a leaf holds about 2 keys; with 100 million
//!   keys per node about 2,000 (≈ 120 KB of digests), still small next to
//!   the data it guards. Cassandra builds trees of up to 2¹⁵ leaves per
//!   repair session because it rebuilds them each time; ours live in memory
//!   and are never rebuilt on the write path, so a fixed 2¹⁰ is the budget.
//! - *Round trips.* Two levels of 32 mean a differing range costs three
//!   small round trips (root, 32 inner hashes, 32 leaf hashes per differing
//!   inner node) before items: with 32-byte hashes, about 2 KB per
//!   differing leaf.
//!
//! **Hashes.** An item is a row: `blake3(key ‖ version digest)`, where the
//! version digest is blake3 of the row's encoded sibling set (canonical:
//! the same sibling set encodes to the same bytes on every replica). A leaf
//! is the XOR of its items' hashes, so a write updates it in O(1) without
//! reading anything else: XOR out the old item, XOR in the new one. Leaves
//! are atomics, so writers never lock the tree and XOR's commutativity makes
//! concurrent updates land in any order. Inner nodes are blake3 of their
//! children's hashes, computed when an exchange asks (32 KiB hashed per
//! root: microseconds).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ringdb_ring::{Token, TokenRange};

/// Children per inner node.
pub const FANOUT: usize = 32;
/// Levels below the root; the leaves are at level `DEPTH`.
pub const DEPTH: u8 = 2;
/// Leaves per tree (`FANOUT ^ DEPTH`).
pub const LEAVES: usize = FANOUT * FANOUT;

/// A 32-byte hash.
pub type Hash = [u8; 32];

/// The hash of one item: a row's storage key and the digest of its version.
pub fn item_hash(key: &[u8], version_digest: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(key);
    hasher.update(version_digest);
    *hasher.finalize().as_bytes()
}

/// The digest of a row's encoded sibling set.
pub fn version_digest(encoded: &[u8]) -> Hash {
    *blake3::hash(encoded).as_bytes()
}

/// The number of nodes at `level` (1 at the root).
pub fn nodes_at(level: u8) -> usize {
    FANOUT.pow(u32::from(level))
}

/// The tree of one token range.
pub struct Tree {
    range: TokenRange,
    leaves: Box<[[AtomicU64; 4]]>,
}

impl Tree {
    /// An empty tree (no items) over `range`.
    pub fn new(range: TokenRange) -> Tree {
        let leaves = (0..LEAVES)
            .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            .collect();
        Tree { range, leaves }
    }

    /// The range the tree covers.
    pub fn range(&self) -> TokenRange {
        self.range
    }

    /// Adds an item, or removes it if present: XOR is its own inverse.
    pub fn toggle(&self, token: Token, item: &Hash) {
        let leaf = &self.leaves[leaf_of(self.range, token)];
        for (word, bytes) in leaf.iter().zip(item.chunks_exact(8)) {
            let value = u64::from_le_bytes(bytes.try_into().expect("eight bytes"));
            word.fetch_xor(value, Ordering::Relaxed);
        }
    }

    /// A leaf's hash.
    pub fn leaf(&self, index: usize) -> Hash {
        let mut hash = [0; 32];
        for (word, bytes) in self.leaves[index].iter().zip(hash.chunks_exact_mut(8)) {
            bytes.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        hash
    }

    /// The hash of node `index` at `level` (0 = root, [`DEPTH`] = leaves).
    pub fn hash(&self, level: u8, index: usize) -> Hash {
        if level >= DEPTH {
            return self.leaf(index);
        }
        let mut hasher = blake3::Hasher::new();
        for child in index * FANOUT..(index + 1) * FANOUT {
            hasher.update(&self.hash(level + 1, child));
        }
        *hasher.finalize().as_bytes()
    }

    /// The hashes of `nodes` at `level`; `None` for an index out of range.
    pub fn hashes(&self, level: u8, nodes: &[u32]) -> Option<Vec<Hash>> {
        if level > DEPTH {
            return None;
        }
        let count = nodes_at(level);
        nodes
            .iter()
            .map(|&n| ((n as usize) < count).then(|| self.hash(level, n as usize)))
            .collect()
    }

    /// Whether the tree has no items (every leaf is zero).
    pub fn is_empty(&self) -> bool {
        (0..LEAVES).all(|i| self.leaf(i) == [0; 32])
    }
}

/// The offset of `token` in `range`, from 0, and the range's size, as
/// unsigned numbers (the whole ring is 2⁶⁴ tokens).
fn offset_in(range: TokenRange, token: Token) -> (u128, u128) {
    let start = range.start.offset();
    let span = if range.is_full() {
        1u128 << 64
    } else {
        u128::from(range.end.offset().wrapping_sub(start))
    };
    let offset = u128::from(token.offset().wrapping_sub(start).wrapping_sub(1));
    (offset, span)
}

/// The leaf of `range`'s tree that holds `token` (which must lie in it).
pub fn leaf_of(range: TokenRange, token: Token) -> usize {
    let (offset, span) = offset_in(range, token);
    ((offset * LEAVES as u128) / span).min(LEAVES as u128 - 1) as usize
}

/// The tokens of leaf `index` of `range`'s tree, or `None` when the range is
/// too small to give that leaf any token.
pub fn leaf_range(range: TokenRange, index: usize) -> Option<TokenRange> {
    let (_, span) = offset_in(range, range.start);
    // Leaf i holds the offsets o with floor(o·L/span) = i: from
    // ceil(i·span/L) to ceil((i+1)·span/L), exclusive.
    let bound = |i: u128| (i * span).div_ceil(LEAVES as u128);
    let (low, high) = (bound(index as u128), bound(index as u128 + 1));
    if low == high {
        return None;
    }
    // Offset o is token start + 1 + o: the leaf is (start + low, start + high].
    let start = range.start.offset();
    let at = |o: u128| Token::from_offset(start.wrapping_add(o as u64));
    Some(TokenRange::new(at(low), at(high)))
}

/// The trees of every range a node replicates, and whether they are
/// complete (built from the data, not only from the writes since).
pub struct Trees {
    /// Sorted by `range.end`; ranges do not overlap.
    trees: Vec<Tree>,
    ready: AtomicBool,
}

impl Trees {
    /// Empty trees over `ranges` (which must not overlap), not yet ready.
    pub fn new(ranges: impl IntoIterator<Item = TokenRange>) -> Trees {
        let mut trees: Vec<Tree> = ranges.into_iter().map(Tree::new).collect();
        trees.sort_by_key(|tree| tree.range.end);
        Trees {
            trees,
            ready: AtomicBool::new(false),
        }
    }

    /// The tree whose range holds `token`, if any.
    pub fn tree_of(&self, token: Token) -> Option<&Tree> {
        let at = self.trees.partition_point(|tree| tree.range.end < token);
        [at, 0, self.trees.len().wrapping_sub(1)]
            .into_iter()
            .filter_map(|i| self.trees.get(i))
            .find(|tree| tree.range.contains(token))
    }

    /// The tree of exactly `range`, if this node keeps one.
    pub fn tree(&self, range: TokenRange) -> Option<&Tree> {
        let at = self
            .trees
            .partition_point(|tree| tree.range.end < range.end);
        self.trees.get(at).filter(|tree| tree.range == range)
    }

    /// Toggles an item in the tree that holds its token (no tree: ignored,
    /// the node does not replicate that token).
    pub fn toggle(&self, token: Token, item: &Hash) {
        if let Some(tree) = self.tree_of(token) {
            tree.toggle(token, item);
        }
    }

    /// The ranges, in token order of their ends.
    pub fn ranges(&self) -> impl Iterator<Item = TokenRange> + '_ {
        self.trees.iter().map(|tree| tree.range)
    }

    /// Whether the trees hold every stored item (the build finished).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the trees complete.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(offset: u64) -> Token {
        Token::from_offset(offset)
    }

    #[test]
    fn leaves_partition_the_range_in_order() {
        for range in [
            TokenRange::new(t(100), t(100 + 5000)),
            TokenRange::new(t(u64::MAX - 700), t(900)),
            TokenRange::new(t(10), t(10 + 300)),
            TokenRange::full(),
        ] {
            let mut covered = 0u128;
            let mut previous_end = range.start;
            for leaf in 0..LEAVES {
                let Some(sub) = leaf_range(range, leaf) else {
                    continue;
                };
                assert_eq!(sub.start, previous_end, "leaves are contiguous");
                previous_end = sub.end;
                covered += if sub.is_full() {
                    1 << 64
                } else {
                    u128::from(sub.end.offset().wrapping_sub(sub.start.offset()))
                };
                for token in [
                    Token::from_offset(sub.start.offset().wrapping_add(1)),
                    sub.end,
                ] {
                    assert!(range.contains(token));
                    assert_eq!(leaf_of(range, token), leaf, "{range} leaf {leaf}");
                }
            }
            assert_eq!(previous_end, range.end);
            let span = if range.is_full() {
                1 << 64
            } else {
                u128::from(range.end.offset().wrapping_sub(range.start.offset()))
            };
            assert_eq!(covered, span);
        }
    }

    #[test]
    fn toggling_twice_restores_the_tree() {
        let tree = Tree::new(TokenRange::new(t(0), t(1 << 40)));
        let empty_root = tree.hash(0, 0);
        let item = item_hash(b"key", &version_digest(b"v1"));
        tree.toggle(t(12345), &item);
        assert_ne!(tree.hash(0, 0), empty_root);
        assert!(!tree.is_empty());
        tree.toggle(t(12345), &item);
        assert_eq!(tree.hash(0, 0), empty_root);
        assert!(tree.is_empty());
    }

    #[test]
    fn the_same_items_in_any_order_give_the_same_root() {
        let range = TokenRange::new(t(0), t(1 << 20));
        let (a, b) = (Tree::new(range), Tree::new(range));
        let items: Vec<(Token, Hash)> = (0..200u64)
            .map(|i| {
                (
                    t(i * 5000 + 1),
                    item_hash(&i.to_be_bytes(), &version_digest(b"x")),
                )
            })
            .collect();
        for (token, item) in &items {
            a.toggle(*token, item);
        }
        for (token, item) in items.iter().rev() {
            b.toggle(*token, item);
        }
        assert_eq!(a.hash(0, 0), b.hash(0, 0));
        b.toggle(items[7].0, &items[7].1);
        assert_ne!(a.hash(0, 0), b.hash(0, 0));
    }

    #[test]
    fn trees_find_the_range_of_a_token_including_the_wrapping_one() {
        let ranges = [
            TokenRange::new(t(u64::MAX - 10), t(5)),
            TokenRange::new(t(100), t(200)),
            TokenRange::new(t(200), t(300)),
        ];
        let trees = Trees::new(ranges);
        assert_eq!(trees.tree_of(t(3)).map(Tree::range), Some(ranges[0]));
        assert_eq!(trees.tree_of(t(u64::MAX)).map(Tree::range), Some(ranges[0]));
        assert_eq!(trees.tree_of(t(200)).map(Tree::range), Some(ranges[1]));
        assert_eq!(trees.tree_of(t(201)).map(Tree::range), Some(ranges[2]));
        assert!(trees.tree_of(t(50)).is_none());
        assert!(trees.tree(ranges[2]).is_some());
        assert!(trees.tree(TokenRange::new(t(150), t(300))).is_none());
    }
}
