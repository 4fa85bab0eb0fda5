//! The Merkle trees of each placement group (`placement.rs`): a group's
//! trees cover the ranges its replication gives this node and hash only
//! its tables' rows, so that two replicas of a range compare the rows
//! both are meant to hold.

use std::sync::Arc;

use ringdb_antientropy::tree::{Tree, Trees, item_hash, leaf_range, version_digest};
use ringdb_proto::{TableId, TreeItem};
use ringdb_ring::{Replication, Token, TokenRange};

use super::{RowKey, Storage, StorageError};
use crate::placement::Group;

/// One tree per range, per group.
#[derive(Default)]
pub struct GroupTrees {
    groups: Vec<(Group, Arc<Trees>)>,
}

impl GroupTrees {
    /// Trees made of `groups`.
    pub(super) fn new(groups: Vec<(Group, Arc<Trees>)>) -> GroupTrees {
        GroupTrees { groups }
    }

    /// The tree that hashes `table`'s row of `token`, if any.
    pub fn tree_of(&self, table: TableId, token: Token) -> Option<&Tree> {
        let (_, trees) = self.groups.iter().find(|(group, _)| group.holds(table))?;
        trees.tree_of(token)
    }

    /// The group a message names ([`Group::wire`]) and its trees.
    pub fn group(&self, wire: Option<&Replication>) -> Option<(&Group, &Arc<Trees>)> {
        let mut groups = self.groups.iter().map(|(group, trees)| (group, trees));
        match wire {
            None => groups.find(|(group, _)| group.is_cluster()),
            Some(replication) => {
                groups.find(|(group, _)| !group.is_cluster() && group.replication == *replication)
            }
        }
    }

    /// Every group and its trees, the cluster's first.
    pub fn groups(&self) -> impl Iterator<Item = (&Group, &Arc<Trees>)> {
        self.groups.iter().map(|(group, trees)| (group, trees))
    }

    /// The cluster's group's trees (every table's, when no keyspace has
    /// another replication).
    pub fn cluster(&self) -> Option<&Arc<Trees>> {
        self.group(None).map(|(_, trees)| trees)
    }

    /// Each group and the ranges it has trees for.
    pub fn plan(&self) -> Vec<(Group, Vec<TokenRange>)> {
        (self.groups.iter())
            .map(|(group, trees)| (group.clone(), trees.ranges().collect()))
            .collect()
    }

    /// How many trees, every group together.
    pub fn count(&self) -> usize {
        self.groups
            .iter()
            .map(|(_, trees)| trees.ranges().count())
            .sum()
    }

    /// Whether every group's trees were built from the data.
    pub fn is_ready(&self) -> bool {
        !self.groups.is_empty() && self.groups.iter().all(|(_, trees)| trees.is_ready())
    }
}

impl Storage {
    /// Replaces the Merkle trees with one group of every table over
    /// `ranges` (see [`Storage::rebuild_group_trees`]); returns its trees.
    pub fn rebuild_trees(&self, ranges: Vec<TokenRange>) -> Result<Arc<Trees>, StorageError> {
        let everything = Group::everything(Replication::Simple { factor: 1 });
        let built = self.rebuild_group_trees(vec![(everything, ranges)])?;
        Ok(built.cluster().expect("the group just built").clone())
    }

    /// Replaces the Merkle trees with trees over each group's ranges,
    /// built from the stored rows of its tables (a scan of each range);
    /// a group whose tables and ranges are those of a complete one now
    /// keeps its trees. Writes made meanwhile update the new trees
    /// already; each group's are ready once its scan is done.
    pub fn rebuild_group_trees(
        &self,
        plan: Vec<(Group, Vec<TokenRange>)>,
    ) -> Result<Arc<GroupTrees>, StorageError> {
        let current = self.trees();
        let mut fresh = Vec::new();
        let groups: Vec<(Group, Arc<Trees>)> = plan
            .into_iter()
            .map(|(group, ranges)| {
                let kept = current.groups().find(|(g, trees)| {
                    **g == group && trees.is_ready() && trees.ranges().eq(ranges.iter().copied())
                });
                if let Some((_, trees)) = kept {
                    return (group, trees.clone());
                }
                let trees = Arc::new(Trees::new(ranges.iter().copied()));
                fresh.push((group.clone(), ranges, trees.clone()));
                (group, trees)
            })
            .collect();
        let built = Arc::new(GroupTrees::new(groups));
        let snapshot = {
            let mut trees = self.trees.write().expect("trees lock");
            *trees = built.clone();
            self.engine.snapshot()
        };
        for (group, ranges, trees) in fresh {
            for range in ranges {
                for item in self.scan_at(&*snapshot, range, None) {
                    let (key, value) = item?;
                    let key_of = RowKey::decode(&key)?;
                    if group.holds(key_of.table) {
                        trees.toggle(key_of.token, &item_hash(&key, &version_digest(&value)));
                    }
                }
            }
            trees.set_ready();
        }
        Ok(built)
    }

    /// The current Merkle trees.
    pub fn trees(&self) -> Arc<GroupTrees> {
        self.trees.read().expect("trees lock").clone()
    }

    /// The items (storage key, version digest) of `leaves` of `range`'s
    /// tree, leaf by leaf, of the tables `holds` holds; in the first leaf only
    /// those after the key `after`. Stops once the items hold `max_bytes`
    /// (at least one item), and then says where to resume: the leaf, and the
    /// last key returned of it.
    #[allow(clippy::type_complexity)]
    pub fn leaf_items(
        &self,
        range: TokenRange,
        leaves: &[u32],
        holds: impl Fn(TableId) -> bool,
        after: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<(Vec<TreeItem>, Option<(u32, Vec<u8>)>), StorageError> {
        let mut items = Vec::new();
        let mut bytes = 0;
        for (i, &leaf) in leaves.iter().enumerate() {
            let Some(tokens) = leaf_range(range, leaf as usize) else {
                continue;
            };
            let start = if i == 0 {
                after.map(<[u8]>::to_vec)
            } else {
                None
            };
            // The last key returned of this leaf (empty: none yet).
            let mut last = start.clone().unwrap_or_default();
            for item in self.scan_encoded(tokens, start) {
                let (key, value) = item?;
                if !RowKey::table_of(&key).is_some_and(&holds) {
                    continue;
                }
                if bytes >= max_bytes {
                    return Ok((items, Some((leaf, last))));
                }
                bytes += key.len() + 32;
                last.clone_from(&key);
                items.push(TreeItem {
                    key,
                    digest: version_digest(&value).to_vec(),
                });
            }
        }
        Ok((items, None))
    }
}
