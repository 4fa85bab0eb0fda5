//! Replication per keyspace: which replication places each table's rows.
//!
//! The cluster's replication (`cluster.replication_factor`, or
//! `cluster.datacenter_replication`) places the rows of every key-value
//! table and of every keyspace created with the same replication; a
//! keyspace created (or altered) with another places its tables' rows by
//! that one, as Cassandra does. The schema service keeps [`Placement`] in
//! step with the schema.
//!
//! Everything that works on token ranges (Merkle trees and repair,
//! streaming for a join, a decommission or a removal, cleanup) works on
//! one [`Group`] at a time: the tables one replication places, over the
//! ranges that replication gives this node. The cluster's group holds
//! every table no other group does (a table this node has not heard of
//! yet too), so with every keyspace at the cluster's replication there is
//! one group, holding everything, as before keyspaces had their own.
//!
//! Nodes name a group to each other by its replication
//! ([`Group::wire`]: nothing for the cluster's, which is what a node of the
//! previous version sends), and each resolves the tables from its own
//! schema; while schemas disagree a row can be counted in another group
//! here than there, which the next repair after agreement sets right.
//! Cleanup waits for agreement, so that no node deletes rows of a table it
//! does not know yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ringdb_proto::TableId;
use ringdb_ring::Replication;
use tokio::sync::watch;

/// The tables a group holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tables {
    /// Every table but these (the cluster's group).
    AllBut(BTreeSet<TableId>),
    /// Only these.
    Only(BTreeSet<TableId>),
}

/// The tables one replication places.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The replication.
    pub replication: Replication,
    /// Its tables.
    pub tables: Tables,
}

impl Group {
    /// The group of every table, placed by `replication`.
    pub fn everything(replication: Replication) -> Group {
        Group {
            replication,
            tables: Tables::AllBut(BTreeSet::new()),
        }
    }

    /// Whether `table`'s rows belong to this group.
    pub fn holds(&self, table: TableId) -> bool {
        match &self.tables {
            Tables::AllBut(others) => !others.contains(&table),
            Tables::Only(these) => these.contains(&table),
        }
    }

    /// Whether this is the cluster's group.
    pub fn is_cluster(&self) -> bool {
        matches!(self.tables, Tables::AllBut(_))
    }

    /// How a message names this group: nothing for the cluster's.
    pub fn wire(&self) -> Option<Replication> {
        (!self.is_cluster()).then(|| self.replication.clone())
    }
}

/// Which replication places each table, at one schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placements {
    cluster: Replication,
    /// The tables placed by another replication than the cluster's.
    others: BTreeMap<TableId, Replication>,
}

impl Placements {
    /// Every table placed by `cluster`, but those `tables` place otherwise.
    pub fn new(
        cluster: Replication,
        tables: impl IntoIterator<Item = (TableId, Replication)>,
    ) -> Placements {
        let others = tables
            .into_iter()
            .filter(|(_, replication)| *replication != cluster)
            .collect();
        Placements { cluster, others }
    }

    /// The cluster's replication.
    pub fn cluster(&self) -> &Replication {
        &self.cluster
    }

    /// The replication that places `table`'s rows.
    pub fn of(&self, table: TableId) -> &Replication {
        self.others.get(&table).unwrap_or(&self.cluster)
    }

    /// Every group: the cluster's first, then one per other replication in
    /// use (in the order of their first table id).
    pub fn groups(&self) -> Vec<Group> {
        let mut groups = vec![Group {
            replication: self.cluster.clone(),
            tables: Tables::AllBut(self.others.keys().copied().collect()),
        }];
        for (table, replication) in &self.others {
            match groups.iter_mut().find(|g| g.replication == *replication) {
                Some(Group {
                    tables: Tables::Only(these),
                    ..
                }) => {
                    these.insert(*table);
                }
                _ => groups.push(Group {
                    replication: replication.clone(),
                    tables: Tables::Only(BTreeSet::from([*table])),
                }),
            }
        }
        groups
    }

    /// The group a message names ([`Group::wire`]), if this node has one
    /// so placed.
    pub fn group(&self, wire: Option<&Replication>) -> Option<Group> {
        let groups = self.groups();
        match wire {
            None => groups.into_iter().next(),
            Some(replication) => groups
                .into_iter()
                .skip(1)
                .find(|g| g.replication == *replication),
        }
    }
}

/// The node's placements, replaced by the schema service at each change.
#[derive(Debug)]
pub struct Placement {
    now: watch::Sender<Arc<Placements>>,
}

impl Placement {
    /// Every table placed by `cluster` (until the schema says otherwise).
    pub fn new(cluster: Replication) -> Placement {
        Placement {
            now: watch::Sender::new(Arc::new(Placements::new(cluster, []))),
        }
    }

    /// The placements now.
    pub fn now(&self) -> Arc<Placements> {
        self.now.borrow().clone()
    }

    /// The replication that places `table`'s rows now.
    pub fn of(&self, table: TableId) -> Replication {
        self.now.borrow().of(table).clone()
    }

    /// Told of every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Placements>> {
        self.now.subscribe()
    }

    /// Places `tables` (the schema's) by their keyspaces' replication.
    pub fn set(&self, tables: impl IntoIterator<Item = (TableId, Replication)>) {
        let next = Placements::new(self.now.borrow().cluster.clone(), tables);
        self.now.send_if_modified(|now| {
            let changed = **now != next;
            if changed {
                *now = Arc::new(next);
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(factor: usize) -> Replication {
        Replication::Simple { factor }
    }

    #[test]
    fn tables_of_the_clusters_replication_stay_in_its_one_group() {
        let placements = Placements::new(simple(3), [(TableId(1), simple(3))]);
        assert_eq!(placements.groups(), vec![Group::everything(simple(3))]);
        assert_eq!(placements.of(TableId(1)), &simple(3));
        assert_eq!(placements.of(TableId(99)), &simple(3));
    }

    #[test]
    fn each_other_replication_is_a_group_of_its_tables() {
        let placements = Placements::new(
            simple(3),
            [
                (TableId(5), simple(1)),
                (TableId(2), simple(3)),
                (TableId(7), simple(1)),
                (TableId(9), simple(5)),
            ],
        );
        let groups = placements.groups();
        assert_eq!(groups.len(), 3);
        assert!(groups[0].is_cluster() && groups[0].holds(TableId(2)));
        assert!(groups[0].holds(TableId(1234)) && !groups[0].holds(TableId(5)));
        assert_eq!(groups[1].replication, simple(1));
        assert!(groups[1].holds(TableId(5)) && groups[1].holds(TableId(7)));
        assert!(!groups[1].holds(TableId(2)) && !groups[1].holds(TableId(9)));
        assert_eq!(placements.of(TableId(9)), &simple(5));
        // Every table is in exactly one group.
        for table in [1, 2, 5, 7, 9, 1234].map(TableId) {
            assert_eq!(groups.iter().filter(|g| g.holds(table)).count(), 1);
        }
        assert_eq!(placements.group(None), Some(groups[0].clone()));
        assert_eq!(placements.group(Some(&simple(5))), Some(groups[2].clone()));
        assert_eq!(placements.group(Some(&simple(2))), None);
        // The cluster's replication named on the wire is not a group: the
        // cluster's group is named by nothing.
        assert_eq!(placements.group(Some(&simple(3))), None);
        assert_eq!(groups[0].wire(), None);
        assert_eq!(groups[2].wire(), Some(simple(5)));
    }
}
