//! The schema: keyspaces and tables, as a state every node converges to.
//!
//! Every node holds the whole schema. A DDL statement, run on any node,
//! changes entries of it there ([`ddl`]); the change then spreads: gossip
//! carries each node's schema version (a digest), and a node that sees
//! another version pulls the peer's schema and merges it into its own.
//!
//! **Merging.** The schema is a map from names to entries, each stamped
//! with when and where it last changed ([`Stamp`]: wall-clock microseconds,
//! then the node's id to break ties), and merging keeps, name by name, the
//! entry with the highest stamp. A drop is an entry without a definition
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

    /// Checks a schema that came from a peer or the disk: every definition
    /// valid and filed under its own name.
    pub fn validate(&self) -> Result<(), SchemaError> {
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

/// Whether `entry` wins over `current`: a later change; between changes
/// with one stamp (which a node never issues twice), the larger encoding,
/// so that every node picks the same.
fn supersedes<T: PartialEq + Serialize>(entry: &Entry<T>, current: &Entry<T>) -> bool {
    match entry.changed.cmp(&current.changed) {
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
