//! bootd's modules form a DAG: no module reaches, through `crate::…` or
//! `super::…` paths, a module that reaches it. Modelled on
//! `bmc/sim/tests/module_graph.rs`, with folder modules (`config/`,
//! `proxydhcp/`, the binary's `cli/`) as one node each in their crate's
//! graph, and their files as the nodes of a graph of their own.
//!
//! Two crates, two graphs: the library (`lib.rs`) and the binary
//! (`main.rs`), each over the modules its root declares.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// `mod name;` declarations in a file (not inline `mod name {`).
fn declared(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with("//"))
        .filter_map(|l| {
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

/// Every file of the crate rooted at `root` (`lib.rs` or `main.rs`), by
/// module path (`["config", "schema"]`).
fn files(src: &Path, root: &str) -> BTreeMap<Vec<String>, String> {
    fn walk(dir: &Path, at: Vec<String>, text: String, out: &mut BTreeMap<Vec<String>, String>) {
        for child in declared(&text) {
            let mut path = at.clone();
            path.push(child.clone());
            let (file, sub): (PathBuf, PathBuf) = if dir.join(format!("{child}.rs")).is_file() {
                (dir.join(format!("{child}.rs")), dir.join(&child))
            } else {
                (dir.join(&child).join("mod.rs"), dir.join(&child))
            };
            let t = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            walk(&sub, path, t, out);
        }
        if !at.is_empty() {
            out.insert(at, text);
        }
    }
    let mut out = BTreeMap::new();
    let text = std::fs::read_to_string(src.join(root)).unwrap();
    walk(src, Vec::new(), text, &mut out);
    out
}

/// The module paths a line names: `crate::a::b…` and `super::x…`, each
/// resolved to the longest module path that exists, and the module paths
/// inside one level of braces (`crate::{a, b::c}`).
fn named(line: &str, from: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", from[..from.len() - 1].to_vec()),
    ] {
        for (at, _) in line.match_indices(prefix) {
            // `super::super::…` and friends: not used here; skip them.
            if prefix == "super::" && line[..at].ends_with("super::") {
                continue;
            }
            let rest = &line[at + prefix.len()..];
            let heads: Vec<&str> = match rest.strip_prefix('{') {
                Some(inner) => inner
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .collect(),
                None => vec![rest],
            };
            for head in heads {
                let segments: Vec<String> = head
                    .split("::")
                    .map(|s| {
                        s.chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .take_while(|s| !s.is_empty())
                    .collect();
                let mut path = base.clone();
                let mut best = None;
                for s in segments {
                    path.push(s);
                    if modules.contains(&path) {
                        best = Some(path.clone());
                    }
                }
                match best {
                    Some(p) => out.push(p),
                    // `super::*` in a test module, `super::CONST`: items of
                    // the enclosing module, not an edge.
                    None if prefix == "super::" => {}
                    None => panic!(
                        "{}: `crate::{head}` names no module; name the module an item lives \
                         in, so this test sees the edge",
                        from.join("::"),
                    ),
                }
            }
        }
    }
    out
}

/// The crate's graph (top-level modules) and, per folder module, the graph
/// of its child modules. Comments are not dependencies.
fn graphs(root: &str) -> BTreeMap<String, Graph> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = files(&src, root);
    let modules: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut graphs: BTreeMap<String, Graph> = BTreeMap::new();
    for (from, text) in &files {
        let top = root.to_owned();
        graphs
            .entry(top.clone())
            .or_default()
            .entry(from[0].clone())
            .or_default();
        if from.len() >= 2 {
            graphs
                .entry(from[0].clone())
                .or_default()
                .entry(from[1].clone())
                .or_default();
        }
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for to in named(line, from, &modules) {
                if to[0] != from[0] {
                    graphs
                        .get_mut(&top)
                        .unwrap()
                        .get_mut(&from[0])
                        .unwrap()
                        .insert(to[0].clone());
                } else if from.len() >= 2 && to.len() >= 2 && from[1] != to[1] {
                    graphs
                        .get_mut(&from[0])
                        .unwrap()
                        .get_mut(&from[1])
                        .unwrap()
                        .insert(to[1].clone());
                }
            }
        }
    }
    graphs
}

/// Depth-first search; a module met again while on the path closes a cycle.
fn assert_acyclic(name: &str, graph: &Graph) {
    fn visit<'a>(
        name: &str,
        m: &'a str,
        graph: &'a Graph,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(i) = path.iter().position(|p| *p == m) {
            panic!("module cycle in {name}: {} -> {m}", path[i..].join(" -> "));
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for n in graph.get(m).into_iter().flatten() {
            visit(name, n, graph, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(name, m, graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn library_modules_form_a_dag() {
    let graphs = graphs("lib.rs");
    let lib = &graphs["lib.rs"];
    // The test sees the edges it is about (server, routes and reconcile
    // share `state`), so an empty graph cannot pass by accident.
    for m in ["server", "routes", "reconcile"] {
        assert!(lib[m].contains("state"), "{m} -> state not seen: {lib:?}");
    }
    assert!(lib["server"].contains("routes") && !lib["routes"].contains("server"));
    for (name, graph) in &graphs {
        assert_acyclic(name, graph);
    }
}

#[test]
fn binary_modules_form_a_dag() {
    let graphs = graphs("main.rs");
    assert!(graphs["main.rs"].contains_key("cli"));
    for (name, graph) in &graphs {
        assert_acyclic(name, graph);
    }
}

#[test]
fn a_cycle_is_named() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(f, t)| (f.to_owned(), BTreeSet::from([t.to_owned()])))
        .collect();
    let err = std::panic::catch_unwind(|| assert_acyclic("test", &graph)).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(msg, "module cycle in test: a -> b -> c -> a");
}
