//! `DESCRIBE`: the schema as CQL, and the cluster, as cqlsh shows them.

use std::collections::BTreeMap;

use ringdb_cql::ast::{Describe, TableName};
use ringdb_gossip::{StateKey, StateValue};
use ringdb_ring::NodeId;

use crate::replica::Replica;
use crate::schema::Schema;
use crate::schema::ddl::DdlError;

/// `DESCRIBE KEYSPACES | KEYSPACE [k] | TABLES | TABLE t | name`.
pub(super) fn schema(
    schema: &Schema,
    describe: &Describe,
    current: Option<&str>,
) -> Result<String, DdlError> {
    match describe {
        Describe::Keyspaces => {
            let names: Vec<&str> = schema.live_keyspaces().map(|k| k.name.as_str()).collect();
            Ok(names.join("  ") + "\n")
        }
        Describe::Keyspace(name) => {
            let name = name.as_deref().or(current).ok_or(DdlError::NoKeyspace)?;
            keyspace(schema, name)
        }
        Describe::Tables => {
            if let Some(keyspace) = current.filter(|k| schema.keyspace(k).is_none()) {
                return Err(DdlError::UnknownKeyspace(keyspace.to_string()));
            }
            Ok(tables(schema, current))
        }
        Describe::Table(name) => table(schema, name, current),
        Describe::Name(name) => match (&name.keyspace, schema.keyspace(&name.name), current) {
            (None, Some(_), _) => keyspace(schema, &name.name),
            // Neither a keyspace nor, without a current keyspace, a table.
            (None, None, None) => Err(DdlError::UnknownKeyspace(name.name.clone())),
            _ => table(schema, name, current),
        },
        Describe::Cluster => Ok(String::new()),
    }
}

fn keyspace(schema: &Schema, name: &str) -> Result<String, DdlError> {
    let definition = schema
        .keyspace(name)
        .ok_or_else(|| DdlError::UnknownKeyspace(name.to_string()))?;
    let mut text = definition.to_cql() + "\n";
    for table in schema.tables_of(name) {
        text.push('\n');
        text.push_str(&table.to_cql());
        text.push('\n');
    }
    Ok(text)
}

/// The tables of the current keyspace, or of every keyspace under its name.
fn tables(schema: &Schema, current: Option<&str>) -> String {
    let keyspaces: Vec<&str> = match current {
        Some(keyspace) => vec![keyspace],
        None => schema.live_keyspaces().map(|k| k.name.as_str()).collect(),
    };
    let mut text = String::new();
    for keyspace in keyspaces {
        let names: Vec<&str> = schema
            .tables_of(keyspace)
            .map(|t| t.name.as_str())
            .collect();
        if current.is_none() {
            text.push_str(&format!(
                "Keyspace {keyspace}\n{}\n",
                "-".repeat(9 + keyspace.len())
            ));
        }
        text.push_str(&names.join("  "));
        text.push_str("\n\n");
    }
    text
}

fn table(schema: &Schema, name: &TableName, current: Option<&str>) -> Result<String, DdlError> {
    let keyspace = name
        .keyspace
        .as_deref()
        .or(current)
        .ok_or(DdlError::NoKeyspace)?;
    let table = schema
        .table(keyspace, &name.name)
        .ok_or_else(|| DdlError::UnknownTable {
            keyspace: keyspace.to_string(),
            table: name.name.clone(),
        })?;
    Ok(table.to_cql() + "\n")
}

/// `DESCRIBE CLUSTER`: the cluster's name, the partitioner, and which
/// nodes hold which schema version (agreement when there is one).
pub(super) fn cluster(replica: &Replica, schema: &Schema) -> String {
    let view = replica.membership.view();
    let mut versions: BTreeMap<String, Vec<&NodeId>> = BTreeMap::new();
    for (id, node) in &view.nodes {
        let version = if *id == replica.me {
            schema.version().to_string()
        } else if !node.up {
            "UNREACHABLE".into()
        } else {
            match node.state.get(StateKey::SchemaVersion) {
                Some(StateValue::SchemaVersion(version)) => version.clone(),
                _ => "UNKNOWN".into(),
            }
        };
        versions.entry(version).or_default().push(id);
    }
    let mut text = format!(
        "Cluster: {}\nPartitioner: Murmur3Partitioner\n\nSchema versions:\n",
        replica.settings.name
    );
    for (version, nodes) in &versions {
        let nodes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        text.push_str(&format!("\t{version}: [{}]\n", nodes.join(", ")));
    }
    let live: Vec<&String> = versions.keys().filter(|v| *v != "UNREACHABLE").collect();
    let agreement = if live.len() == 1 {
        "the live nodes agree on the schema"
    } else {
        "the live nodes do not agree on the schema yet"
    };
    text.push_str(&format!("\n{agreement}\n"));
    text
}
