//! The schema: keyspaces and tables, as a state every node converges to.
//!
//! Every node holds the whole schema. A DDL statement, run on any node,
//! changes entries of it there ([`ddl`]); the change then spreads: gossip
//! carries each node's schema version (a digest), and a node that sees
//! another version pulls the peer's schema and merges it into its own.
//!
//! **Merging.** The schema is a map from names to entries, each stamped
//! with when and where it last changed ([`Stamp`]: microseconds, then the
//! node's id to break ties; a node stamps a change later than both its
//! clock and every stamp it holds, a Lamport clock, so a change always
//! follows what its node had seen, whatever the clocks), and merging
//! keeps, name by name, the entry of the latest incarnation (how many
//! times the name was created), a drop before a change within one, and
//! the highest stamp after that. A drop is an entry without a definition
//! (a tombstone), so it spreads like any change. Merging is commutative,
//! associative and idempotent, so nodes that have merged the same changes
//! hold the same schema and the same digest, whatever the order; two
//! concurrent conflicting statements resolve the same way everywhere (the
//! later one wins; for a table, as a whole: of two concurrent `ALTER TABLE
//! … ADD`, one is lost, and says so in no error).
//!
//! **Ids.** A table's rows are stored under its id, so two nodes that both
//! create a table must give it the same id, or rows written through one
//! would vanish when the other's definition wins. The id is a hash of the
//! keyspace, the table's name, when its keyspace was created and the
//! table's incarnation (how many times a table of that name was created
//! in that keyspace before): concurrent `CREATE TABLE IF NOT EXISTS` on two
//! nodes agree, and a table dropped and created again gets a new id, so
//! the old rows do not come back. A table whose keyspace was dropped, or
//! created again after it, is not live.

pub mod ddl;
mod service;

pub(crate) use service::{SchemaFailure, Schemas};

use std::collections::BTreeMap;

use ringdb_proto::{KeyspaceDefinition, SchemaError, TableDefinition, TableId};
use ringdb_ring::NodeId;
use serde::{Deserialize, Serialize};

/// Stamps are below this (year 148,000 or so): a peer cannot freeze an
/// entry with a stamp nothing can follow.
pub const MAX_STAMP_MICROS: i64 = 1 << 62;
/// Incarnations are below this.
pub const MAX_INCARNATION: u32 = u32::MAX / 2;

/// When and where a schema entry changed: ordered by time, then node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Wall-clock microseconds since the Unix epoch, on the node that ran
    /// the statement.
    pub micros: i64,
    /// That node.
    pub node: NodeId,
}

/// A named definition, or the tombstone of one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<T> {
    /// The last change.
    pub changed: Stamp,
    /// When the definition was created (for a tombstone, when the dropped
    /// one was).
    pub created: Stamp,
    /// How many times a definition of this name was created before this one.
    pub incarnation: u32,
    /// The definition; `None` once dropped.
    pub definition: Option<T>,
}

/// Every keyspace and table, with their histories (see the module essay).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// By name.
    pub keyspaces: BTreeMap<String, Entry<KeyspaceDefinition>>,
    /// By keyspace and name.
    pub tables: BTreeMap<(String, String), Entry<TableDefinition>>,
}

/// A schema's version: the blake3 digest of its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchemaVersion(pub [u8; 32]);

impl std::fmt::Display for SchemaVersion {
    /// As Cassandra shows schema versions: a UUID-like hex string.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = hex::encode(&self.0[..16]);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }
}

impl Schema {
    /// Merges `other` in, keeping each name's latest entry; returns
    /// whether anything here changed.
    pub fn merge(&mut self, other: &Schema) -> bool {
        merge_map(&mut self.keyspaces, &other.keyspaces)
            | merge_map(&mut self.tables, &other.tables)
    }

    /// The version: equal on two nodes exactly when their entries are.
    pub fn version(&self) -> SchemaVersion {
        let bytes = rmp_serde::to_vec(self).expect("a schema encodes");
        SchemaVersion(*blake3::hash(&bytes).as_bytes())
    }

    /// The live keyspace called `name`.
    pub fn keyspace(&self, name: &str) -> Option<&KeyspaceDefinition> {
        self.keyspaces.get(name)?.definition.as_ref()
    }

    /// The live keyspaces, by name.
    pub fn live_keyspaces(&self) -> impl Iterator<Item = &KeyspaceDefinition> {
        self.keyspaces
            .values()
            .filter_map(|e| e.definition.as_ref())
    }

    /// The live table `name` of `keyspace`.
    pub fn table(&self, keyspace: &str, name: &str) -> Option<&TableDefinition> {
        let entry = self.tables.get(&(keyspace.to_string(), name.to_string()))?;
        if !self.is_live(entry) {
            return None;
        }
        entry.definition.as_ref()
    }

    /// The live tables of `keyspace`, by name.
    pub fn tables_of<'a>(&'a self, keyspace: &'a str) -> impl Iterator<Item = &'a TableDefinition> {
        self.tables
            .iter()
            .filter(move |((k, _), _)| k == keyspace)
            .filter(|(_, entry)| self.is_live(entry))
            .filter_map(|(_, entry)| entry.definition.as_ref())
    }

    /// The live table whose rows are stored under `id`.
    pub fn table_by_id(&self, id: TableId) -> Option<&TableDefinition> {
        self.tables
            .values()
            .filter(|entry| self.is_live(entry))
            .filter_map(|entry| entry.definition.as_ref())
            .find(|table| table.id == id)
    }

    /// Each live table, with the replication of its keyspace.
    pub fn placed_tables(&self) -> Vec<(TableId, ringdb_ring::Replication)> {
        (self.tables.values())
            .filter(|entry| self.is_live(entry))
            .filter_map(|entry| entry.definition.as_ref())
            .filter_map(|table| {
                Some((
                    table.id,
                    self.keyspace(&table.keyspace)?.replication.clone(),
                ))
            })
            .collect()
    }

    /// Whether a table entry is live: defined, in a live keyspace, and
    /// created after that keyspace was.
    fn is_live(&self, entry: &Entry<TableDefinition>) -> bool {
        let Some(table) = &entry.definition else {
            return false;
        };
        self.keyspaces.get(&table.keyspace).is_some_and(|keyspace| {
            keyspace.definition.is_some() && keyspace.created <= entry.created
        })
    }

    /// The latest change's stamp in microseconds (`i64::MIN` when empty):
    /// a node stamps its next change later than this, whatever its clock.
    pub fn latest_micros(&self) -> i64 {
        let keyspaces = self.keyspaces.values().map(|e| e.changed.micros);
        let tables = self.tables.values().map(|e| e.changed.micros);
        keyspaces.chain(tables).max().unwrap_or(i64::MIN)
    }

    /// Checks a schema that came from a peer or the disk: every definition
    /// valid and filed under its own name, stamps in order and in range,
    /// and no two live tables under one id.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let stamps = self
            .keyspaces
            .values()
            .map(|e| (&e.created, &e.changed, e.incarnation))
            .chain(
                self.tables
                    .values()
                    .map(|e| (&e.created, &e.changed, e.incarnation)),
            );
        for (created, changed, incarnation) in stamps {
            if created > changed
                || changed.micros >= MAX_STAMP_MICROS
                || incarnation >= MAX_INCARNATION
            {
                return Err(SchemaError(format!(
                    "an entry stamped {changed:?}, created {created:?}, incarnation {incarnation}"
                )));
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for table in self.tables.values().filter(|e| self.is_live(e)) {
            let table = table.definition.as_ref().expect("live");
            if !ids.insert(table.id) {
                return Err(SchemaError(format!(
                    "two tables with the id of {}.{}",
                    table.keyspace, table.name
                )));
            }
        }
        for (name, entry) in &self.keyspaces {
            if let Some(keyspace) = &entry.definition {
                keyspace.validate()?;
                if &keyspace.name != name {
                    return Err(SchemaError(format!(
                        "keyspace {} filed as {name}",
                        keyspace.name
                    )));
                }
            }
        }
        for ((keyspace, name), entry) in &self.tables {
            if let Some(table) = &entry.definition {
                table.validate()?;
                if (&table.keyspace, &table.name) != (keyspace, name) {
                    return Err(SchemaError(format!(
                        "table {}.{} filed as {keyspace}.{name}",
                        table.keyspace, table.name
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The stamp of a change made by `node`: later than its clock (`now`),
/// than `last` (its previous stamp) and than every stamp in `schema` (a
/// Lamport clock), so the change follows whatever the node had seen.
pub fn next_stamp(schema: &Schema, last: i64, now: i64, node: &NodeId) -> Stamp {
    let after = last.max(schema.latest_micros()).saturating_add(1);
    Stamp {
        micros: now.max(after),
        node: node.clone(),
    }
}

/// Keeps, for each key, the entry with the latest change.
fn merge_map<K: Ord + Clone, T: Clone + PartialEq + Serialize>(
    mine: &mut BTreeMap<K, Entry<T>>,
    theirs: &BTreeMap<K, Entry<T>>,
) -> bool {
    let mut changed = false;
    for (key, entry) in theirs {
        if mine
            .get(key)
            .is_none_or(|current| supersedes(entry, current))
        {
            mine.insert(key.clone(), entry.clone());
            changed = true;
        }
    }
    changed
}

/// Whether `entry` wins over `current`: a later incarnation (a name
/// dropped and created again); within one, a drop; then the later change;
/// between changes with one stamp (which no node issues twice), the larger
/// encoding, so that every node picks the same. So a change made by a
/// node that had not heard of a drop, or of a newer incarnation, loses.
fn supersedes<T: PartialEq + Serialize>(entry: &Entry<T>, current: &Entry<T>) -> bool {
    let rank = |e: &Entry<T>| (e.incarnation, e.definition.is_none(), e.changed.clone());
    match rank(entry).cmp(&rank(current)) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => {
            let encode = |e: &Entry<T>| rmp_serde::to_vec(e).expect("an entry encodes");
            entry != current && encode(entry) > encode(current)
        }
    }
}

/// The id of incarnation `incarnation` of table `name` in `keyspace`
/// created at `keyspace_created` (see the module essay).
pub fn table_id(keyspace: &str, name: &str, keyspace_created: &Stamp, incarnation: u32) -> TableId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"ringdb table id\0");
    for part in [
        keyspace.as_bytes(),
        name.as_bytes(),
        keyspace_created.node.as_str().as_bytes(),
    ] {
        hasher.update(&(part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.update(&keyspace_created.micros.to_be_bytes());
    hasher.update(&incarnation.to_be_bytes());
    let bytes: [u8; 8] = hasher.finalize().as_bytes()[..8]
        .try_into()
        .expect("8 bytes");
    TableId(u64::from_be_bytes(bytes))
}
