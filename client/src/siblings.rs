//! Siblings, resolved: a read that found concurrent versions of a row
//! ([`ReadResult::siblings`]) is merged by the application, as Riak's
//! clients do, and the merged row written back with the read's context
//! supersedes every version it merged ([`Client::get_resolved`]).

use ringdb_proto::{ConsistencyLevel, Row, RowAddress, Sibling};

use crate::{Client, ClientError, ReadResult};

impl ReadResult {
    /// Whether writes were concurrent: more than one live version.
    pub fn has_siblings(&self) -> bool {
        self.siblings.len() > 1
    }

    /// The version written last by its coordinator's clock (ties broken by
    /// writer): last-write-wins over whole rows (Cassandra resolves column
    /// by column). `None` when the row does not exist.
    pub fn latest(&self) -> Option<&Sibling> {
        self.siblings.iter().max_by_key(|sibling| written(sibling))
    }

    /// The versions merged into one row by `merge(merged so far, next)`,
    /// taken oldest first; `None` when the row does not exist.
    pub fn merged(&self, mut merge: impl FnMut(Row, &Row) -> Row) -> Option<Row> {
        let mut oldest_first: Vec<&Sibling> = self.siblings.iter().collect();
        oldest_first.sort_by_key(|sibling| written(sibling));
        let mut versions = oldest_first.into_iter();
        let first = versions.next()?.columns.clone();
        Some(versions.fold(first, |merged, next| merge(merged, &next.columns)))
    }
}

/// When a version was written, for ordering: its coordinator's clock,
/// ties broken by writer.
fn written(sibling: &Sibling) -> (i64, &str) {
    (sibling.timestamp_micros, &sibling.writer)
}

impl Client {
    /// Reads `row` at `consistency` and, when it has siblings, merges them
    /// with `merge` ([`ReadResult::merged`]) and writes the merged row back
    /// with the read's context at the same level, so that it supersedes
    /// every version merged: later reads find one. Returns the merged row
    /// (`None`: the row does not exist). A write that raced the read stays
    /// a sibling of the merged row, to be merged next time. A delete
    /// concurrent with the versions merged is superseded by the merge, as
    /// in Riak: reads show live versions only.
    pub async fn get_resolved(
        &self,
        row: &RowAddress,
        consistency: ConsistencyLevel,
        merge: impl FnMut(Row, &Row) -> Row,
    ) -> Result<Option<Row>, ClientError> {
        let read = self.get(row, consistency).await?;
        let merged = read.merged(merge);
        if let (true, Some(merged)) = (read.has_siblings(), &merged) {
            self.put(row, merged.clone(), read.context, consistency)
                .await?;
        }
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use ringdb_proto::{Context, Receipt, Value};

    use super::*;

    fn sibling(at: i64, writer: &str, columns: &[(&str, i64)]) -> Sibling {
        Sibling {
            columns: columns
                .iter()
                .map(|(name, value)| (name.to_string(), Value::BigInt(*value)))
                .collect(),
            timestamp_micros: at,
            writer: writer.into(),
        }
    }

    #[test]
    fn siblings_merge_oldest_first_and_the_latest_wins_ties_by_writer() {
        let read = ReadResult {
            siblings: vec![
                sibling(20, "n2@1:1", &[("a", 2)]),
                sibling(10, "n1@1:1", &[("a", 1), ("b", 1)]),
                sibling(20, "n3@1:1", &[("c", 3)]),
            ],
            context: Context::empty(),
            receipt: Receipt::default(),
        };
        assert!(read.has_siblings());
        assert_eq!(read.latest().unwrap().writer, "n3@1:1");
        // Later versions' columns over earlier ones'.
        let merged = read
            .merged(|mut merged, next| {
                merged.extend(next.clone());
                merged
            })
            .unwrap();
        let expected: Row = [("a", 2), ("b", 1), ("c", 3)]
            .into_iter()
            .map(|(name, value)| (name.to_string(), Value::BigInt(value)))
            .collect();
        assert_eq!(merged, expected);
        let none = ReadResult {
            siblings: Vec::new(),
            ..read
        };
        assert_eq!(none.latest(), None);
        assert_eq!(none.merged(|a, _| a), None);
    }
}
