//! node/'s modules form layers: no module depends, through any chain of
//! `crate::` paths, on a module that depends back on it. A cycle is how
//! node/ became one tangled room (issue 13); this test keeps it from
//! coming back, and names the cycle when one does.
//!
//! A module is a top-level module of the crate (`storage`, with all its
//! files, is one); it depends on every top-level module its files name as
//! `crate::name` — in paths and in `use crate::{a, b::c}` groups.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The modules each module names, read from node/src.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" {
            continue;
        }
        let text = fs::read_to_string(&file).expect("readable source");
        let named = graph.entry(module.clone()).or_default();
        for name in crate_paths(&strip_comments(&text)) {
            if name != module {
                named.insert(name);
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("readable dir") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The text without `//` comments (doc links name modules without using them).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named after `crate::`, also inside `{…}` groups.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top_level(&group[..end]) {
                names.insert(first_segment(item));
            }
        } else {
            names.insert(first_segment(rest));
        }
    }
    names.retain(|name| !name.is_empty() && name != "self");
    // Items at the crate root (re-exports) are not modules.
    names.retain(|name| name.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    names
}

fn matching_brace(text: &str) -> usize {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

fn split_top_level(text: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(text[start..].trim());
    items
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// A cycle through `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let at = path.iter().position(|n| n == node).expect("on the path");
                let mut cycle = path[at..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(graph, node, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_modules_of_node_have_no_import_cycle() {
    let graph = dependencies();
    assert!(graph.len() > 10, "read too few modules: {graph:?}");
    assert!(
        graph["dispatch"].contains("coordinator") && graph["coordinator"].contains("replica"),
        "the reader missed known dependencies: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "node/ has an import cycle: {}\n(each module names the next as crate::…)",
            cycle.join(" → ")
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    graph.entry("d".into()).or_default().insert("a".into());
    let cycle = find_cycle(&graph).expect("a cycle");
    assert_eq!(cycle, ["a", "b", "c", "a"]);
    graph.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&graph), None);
    let names = crate_paths("use crate::{a::B, b, c::{d, e}};\nlet x = crate::f::g();");
    assert_eq!(
        names,
        BTreeSet::from(["a", "b", "c", "f"].map(String::from))
    );
}

#[test]
fn no_function_in_node_returns_a_string_error() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for file in rust_files(&src) {
        let text = strip_comments(&fs::read_to_string(&file).expect("readable"));
        let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for (at, _) in flat.match_indices(", String>") {
            let before = &flat[..at];
            let Some(open) = before.rfind("Result<") else {
                continue;
            };
            // `Result<T, String>` with no other generic argument between.
            let inner = &before[open + "Result<".len()..];
            if inner.matches('<').count() == inner.matches('>').count() {
                let file = file.strip_prefix(&src).expect("under src").display();
                found.push(format!("{file}: {}", &flat[open..at + ", String>".len()]));
            }
        }
    }
    assert!(
        found.is_empty(),
        "Result<_, String> in node/src: {found:#?}"
    );
}

#[test]
fn only_the_rocksdb_engine_spawns_blocking_work() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = src.join("storage").join("rocks.rs");
    let offenders: Vec<String> = rust_files(&src)
        .into_iter()
        .filter(|file| *file != allowed)
        .filter(|file| {
            let text = strip_comments(&fs::read_to_string(file).expect("readable"));
            text.contains("spawn_blocking") || text.contains("std::thread::spawn")
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "blocking work outside the storage engine: {offenders:?}"
    );
}
