//! The exchange of one range's tree between two replicas.
//!
//! The initiator drives an [`Exchange`]: it asks the peer for the root, then
//! for the children of each node whose hash differs, level by level, and at
//! the leaves for the items (key, version digest) of the differing leaves
//! only. [`diff_items`] then says which keys each side must send the other;
//! both sides merge what they receive with causality, so the exchange is
//! symmetric and converges whichever side is behind. Nothing but hashes of
//! differing subtrees and the items of differing leaves crosses the wire
//! before the rows that differ.

use std::cmp::Ordering;

pub use ringdb_proto::TreeItem as Item;

use crate::tree::{DEPTH, FANOUT, Hash, Tree, nodes_at};

/// What the initiator asks the peer next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The hashes of `nodes` at `level`.
    Hashes {
        /// The level (0 = root, [`DEPTH`] = leaves).
        level: u8,
        /// Node indexes at that level.
        nodes: Vec<u32>,
    },
    /// The items of these leaves.
    Items {
        /// Leaf indexes.
        leaves: Vec<u32>,
    },
    /// The trees are equal: nothing to repair.
    Same,
}

/// The peer's answer does not fit the question.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} hashes, the peer sent {got}")]
pub struct ShapeMismatch {
    expected: usize,
    got: usize,
}

/// The initiator's side of one range's exchange.
#[derive(Clone, Debug)]
pub struct Exchange {
    level: u8,
    asked: Vec<u32>,
}

impl Exchange {
    /// Starts an exchange: the first step asks for the root.
    pub fn start() -> (Exchange, Step) {
        let exchange = Exchange {
            level: 0,
            asked: vec![0],
        };
        let step = Step::Hashes {
            level: 0,
            nodes: vec![0],
        };
        (exchange, step)
    }

    /// Takes the peer's hashes for the last [`Step::Hashes`] and compares
    /// them with `local`; returns the next step.
    pub fn on_hashes(&mut self, local: &Tree, theirs: &[Hash]) -> Result<Step, ShapeMismatch> {
        if theirs.len() != self.asked.len() {
            return Err(ShapeMismatch {
                expected: self.asked.len(),
                got: theirs.len(),
            });
        }
        let differing: Vec<u32> = self
            .asked
            .iter()
            .zip(theirs)
            .filter(|(node, hash)| local.hash(self.level, **node as usize) != **hash)
            .map(|(node, _)| *node)
            .collect();
        if differing.is_empty() {
            return Ok(Step::Same);
        }
        if self.level == DEPTH {
            return Ok(Step::Items { leaves: differing });
        }
        self.level += 1;
        self.asked = differing
            .iter()
            .flat_map(|&node| (node * FANOUT as u32)..((node + 1) * FANOUT as u32))
            .collect();
        debug_assert!(
            self.asked
                .iter()
                .all(|&n| (n as usize) < nodes_at(self.level))
        );
        Ok(Step::Hashes {
            level: self.level,
            nodes: self.asked.clone(),
        })
    }
}

/// Which keys each side must send the other.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemDiff {
    /// Keys the peer has (in another version, or only it): fetch them.
    pub fetch: Vec<Vec<u8>>,
    /// Keys this side has (in another version, or only it): send them.
    pub send: Vec<Vec<u8>>,
}

impl ItemDiff {
    /// Distinct keys that differ.
    pub fn keys(&self) -> usize {
        // A key in both lists differs in version; count it once.
        let mut send = self.send.iter().peekable();
        let mut both = 0;
        for key in &self.fetch {
            while send.next_if(|s| *s < key).is_some() {}
            if send.peek() == Some(&key) {
                both += 1;
            }
        }
        self.fetch.len() + self.send.len() - both
    }
}

/// Compares two sides' items, each sorted by key. A key whose digests
/// differ is in both lists: each side merges the other's version.
pub fn diff_items(mine: &[Item], theirs: &[Item]) -> ItemDiff {
    let mut diff = ItemDiff::default();
    let (mut i, mut j) = (0, 0);
    while i < mine.len() || j < theirs.len() {
        let order = match (mine.get(i), theirs.get(j)) {
            (Some(a), Some(b)) => a.key.cmp(&b.key),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                diff.send.push(mine[i].key.clone());
                i += 1;
            }
            Ordering::Greater => {
                diff.fetch.push(theirs[j].key.clone());
                j += 1;
            }
            Ordering::Equal => {
                if mine[i].digest != theirs[j].digest {
                    diff.send.push(mine[i].key.clone());
                    diff.fetch.push(theirs[j].key.clone());
                }
                i += 1;
                j += 1;
            }
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use ringdb_ring::{Token, TokenRange};

    use super::*;
    use crate::tree::{LEAVES, item_hash, leaf_range, version_digest};

    fn tree_with(range: TokenRange, items: &[(Token, Hash)]) -> Tree {
        let tree = Tree::new(range);
        for (token, item) in items {
            tree.toggle(*token, item);
        }
        tree
    }

    /// Runs an exchange between two local trees; returns the leaves found
    /// differing and the number of hashes that crossed.
    fn run(mine: &Tree, theirs: &Tree) -> (Vec<u32>, usize) {
        let (mut exchange, mut step) = Exchange::start();
        let mut hashes = 0;
        loop {
            match step {
                Step::Hashes { level, nodes } => {
                    let answer = theirs.hashes(level, &nodes).expect("valid nodes");
                    hashes += answer.len();
                    step = exchange.on_hashes(mine, &answer).expect("shape");
                }
                Step::Items { leaves } => return (leaves, hashes),
                Step::Same => return (Vec::new(), hashes),
            }
        }
    }

    /// A range and 499 items spread over it.
    fn fixture() -> (TokenRange, Vec<(Token, Hash)>) {
        let range = TokenRange::new(Token::from_offset(0), Token::from_offset(1 << 50));
        let items = (1..500u64)
            .map(|i| {
                (
                    Token::from_offset(i << 40),
                    item_hash(&i.to_be_bytes(), &version_digest(b"v")),
                )
            })
            .collect();
        (range, items)
    }

    #[test]
    fn equal_trees_cost_one_hash() {
        let (range, items) = fixture();
        let (a, b) = (tree_with(range, &items), tree_with(range, &items));
        assert_eq!(run(&a, &b), (Vec::new(), 1));
    }

    #[test]
    fn one_differing_item_is_found_in_its_leaf_only() {
        let (range, items) = fixture();
        let a = tree_with(range, &items);
        let b = tree_with(range, &items[..items.len() - 1]);
        let (leaves, hashes) = run(&a, &b);
        let missing = items.last().expect("items").0;
        assert_eq!(leaves.len(), 1);
        assert!(
            leaf_range(range, leaves[0] as usize)
                .expect("leaf")
                .contains(missing)
        );
        // Root, one level of 32, one leaf group of 32.
        assert_eq!(hashes, 1 + FANOUT + FANOUT);
        assert!(LEAVES > hashes);
    }

    fn item(key: &str, version: &str) -> Item {
        Item {
            key: key.as_bytes().to_vec(),
            digest: version_digest(version.as_bytes()).to_vec(),
        }
    }

    #[test]
    fn items_diff_sends_and_fetches_only_what_differs() {
        let mine = [
            item("a", "1"),
            item("b", "1"),
            item("d", "2"),
            item("e", "1"),
        ];
        let theirs = [
            item("b", "1"),
            item("c", "1"),
            item("d", "3"),
            item("f", "1"),
        ];
        let diff = diff_items(&mine, &theirs);
        let keys = |list: &[Vec<u8>]| -> Vec<String> {
            list.iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect()
        };
        assert_eq!(keys(&diff.send), ["a", "d", "e"]);
        assert_eq!(keys(&diff.fetch), ["c", "d", "f"]);
        assert_eq!(diff.keys(), 5);
        assert_eq!(diff_items(&mine, &mine), ItemDiff::default());
    }

    #[test]
    fn a_wrong_number_of_hashes_is_an_error() {
        let tree = Tree::new(TokenRange::full());
        let (mut exchange, _) = Exchange::start();
        assert!(exchange.on_hashes(&tree, &[]).is_err());
    }
}
