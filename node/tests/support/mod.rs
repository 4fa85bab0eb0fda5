//! What the storage test suites share.

use ringdb_node::storage::Storage;
use ringdb_ring::{Token, TokenRange};

/// The ranges the Merkle trees cover in the storage tests.
pub fn tree_ranges() -> Vec<TokenRange> {
    vec![
        TokenRange::new(Token::MIN, Token(0)),
        TokenRange::new(Token(0), Token::MIN),
    ]
}

/// The roots of the trees as maintained, then as rebuilt from the data.
pub fn tree_roots(storage: &Storage) -> (Vec<[u8; 32]>, Vec<[u8; 32]>) {
    let roots = |trees: &ringdb_antientropy::tree::Trees| {
        tree_ranges()
            .into_iter()
            .map(|range| trees.tree(range).unwrap().hash(0, 0))
            .collect::<Vec<_>>()
    };
    let maintained = roots(storage.trees().cluster().expect("trees"));
    let rebuilt = roots(&storage.rebuild_trees(tree_ranges()).unwrap());
    (maintained, rebuilt)
}
