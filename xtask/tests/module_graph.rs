//! Inside every crate of the workspace the modules form a DAG: no module
//! reaches, through `crate::…` or `super::…` paths, a module that reaches
//! it. ARCHITECTURE.md states the rule; this test checks it for each
//! library and binary target `cargo metadata` lists.
//!
//! Each target is a graph over the modules its root file declares; a
//! folder module (`config/`, `slots/`, `repo/`, `cli/`) is one node there
//! and its files are the nodes of a graph of their own. A path is an edge
//! to the deepest module it names; an item of the crate root (`crate::Error`
//! re-exported in `lib.rs`) is no edge, nor is a path into the crate's
//! `error` module (see [`ERROR`]). Comments are not dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod common;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The module that holds a crate's (or a folder's) error type. Every
/// module returns it and it wraps their errors (`#[from]`), as `std::io`
/// does: it belongs to the root, so edges into it are not counted. Edges
/// out of it are (they must not close a cycle among the other modules).
const ERROR: &str = "error";

/// `mod name;` declarations in a file (inline `mod name { … }` stays part
/// of its file).
fn declared(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with("//"))
        .filter_map(|l| {
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub(super) "))
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

/// Every module of the target rooted at `root`, by path from the crate root
/// (`["slots", "header"]`), with its file's text.
fn files(root: &Path) -> BTreeMap<Vec<String>, String> {
    fn walk(dir: &Path, at: Vec<String>, text: String, out: &mut BTreeMap<Vec<String>, String>) {
        for child in declared(&text) {
            let mut path = at.clone();
            path.push(child.clone());
            let file = if dir.join(format!("{child}.rs")).is_file() {
                dir.join(format!("{child}.rs"))
            } else {
                dir.join(&child).join("mod.rs")
            };
            let t = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            walk(&dir.join(&child), path, t, out);
        }
        if !at.is_empty() {
            out.insert(at, text);
        }
    }
    let mut out = BTreeMap::new();
    let text = std::fs::read_to_string(root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    walk(
        root.parent().expect("a root file has a directory"),
        Vec::new(),
        text,
        &mut out,
    );
    out
}

/// The modules a line of `from`'s code names.
fn named(line: &str, from: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", from[..from.len() - 1].to_vec()),
    ] {
        for (at, _) in line.match_indices(prefix) {
            // `$crate::`, `super::super::`: not a path from here.
            if line[..at].ends_with('$') || line[..at].ends_with("super::") {
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
                let mut path = base.clone();
                let mut best = None;
                for s in head.split("::") {
                    let s: String = s
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if s.is_empty() {
                        break;
                    }
                    path.push(s);
                    if modules.contains(&path) {
                        best = Some(path.clone());
                    }
                }
                out.extend(best);
            }
        }
    }
    out
}

/// The graphs of one target: its root's (keyed `""`), and one per folder
/// module (keyed by its path).
fn graphs(root: &Path) -> BTreeMap<String, Graph> {
    let files = files(root);
    let modules: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut graphs: BTreeMap<String, Graph> = BTreeMap::new();
    for (from, text) in &files {
        // Every module is a node of its parent's graph, edges or not.
        let parent = from[..from.len() - 1].join("::");
        graphs
            .entry(parent)
            .or_default()
            .entry(from[from.len() - 1].clone())
            .or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for to in named(line, from, &modules) {
                // The edge lives in the graph of the deepest common parent,
                // between the two children of it on each side.
                let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
                if common == from.len() || common == to.len() {
                    continue; // a module and its own ancestor or descendant
                }
                if to[common] == ERROR {
                    continue; // every module returns the crate's error type
                }
                graphs
                    .entry(from[..common].join("::"))
                    .or_default()
                    .entry(from[common].clone())
                    .or_default()
                    .insert(to[common].clone());
            }
        }
    }
    graphs
}

/// The first cycle in `graph`, as `a -> b -> a`.
fn cycle(graph: &Graph) -> Option<String> {
    fn visit<'a>(
        m: &'a str,
        graph: &'a Graph,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            return Some(format!("{} -> {m}", path[i..].join(" -> ")));
        }
        if !done.insert(m) {
            return None;
        }
        path.push(m);
        for n in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(n, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

#[test]
fn every_crate_s_modules_form_a_dag() {
    let targets = common::targets();
    assert!(targets.len() > 20, "only {} targets", targets.len());
    let mut cycles = Vec::new();
    let mut seen: BTreeMap<(String, String), Graph> = BTreeMap::new();
    for common::Target {
        package,
        target,
        root,
    } in &targets
    {
        for (parent, graph) in graphs(root) {
            if let Some(c) = cycle(&graph) {
                let at = if parent.is_empty() {
                    String::new()
                } else {
                    format!(" in {parent}")
                };
                cycles.push(format!("{package} ({target}){at}: {c}"));
            }
            // A package's targets (lib, bins) merge for the checks below.
            let merged: &mut Graph = seen.entry((package.clone(), parent)).or_default();
            for (m, to) in graph {
                merged.entry(m).or_default().extend(to);
            }
        }
    }
    // The test sees the edges it is about, so an empty graph cannot pass.
    let edge = |package: &str, parent: &str, from: &str, to: &str| {
        let g = &seen[&(package.to_owned(), parent.to_owned())];
        assert!(
            g[from].contains(to),
            "{package}: {from} -> {to} not seen: {g:?}"
        );
    };
    for m in ["server", "routes", "reconcile"] {
        edge("bootd", "", m, "state");
    }
    edge("bootd", "", "server", "routes");
    edge("stage1", "", "boot", "plan");
    edge("imgsign", "repo", "published", "layout");
    edge("imgsign", "", "pkcs11", "signer");
    edge("racklet-bmc-sim", "", "control", "shared");
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn a_cycle_is_named() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(f, t)| (f.to_owned(), BTreeSet::from([t.to_owned()])))
        .collect();
    assert_eq!(cycle(&graph).as_deref(), Some("a -> b -> c -> a"));
    let dag: Graph = [("a", "b"), ("b", "c")]
        .into_iter()
        .map(|(f, t)| (f.to_owned(), BTreeSet::from([t.to_owned()])))
        .collect();
    assert_eq!(cycle(&dag), None);
}

#[test]
fn paths_become_edges_between_siblings() {
    let modules: BTreeSet<Vec<String>> = [vec!["a"], vec!["a", "x"], vec!["a", "y"], vec!["b"]]
        .into_iter()
        .map(|p| p.into_iter().map(str::to_owned).collect())
        .collect();
    let from = vec!["a".to_owned(), "x".to_owned()];
    // `crate::` paths first, then `super::` ones.
    let got = named(
        "use super::y::Thing; use crate::{b, a::y};",
        &from,
        &modules,
    );
    let want: Vec<Vec<String>> = [vec!["b"], vec!["a", "y"], vec!["a", "y"]]
        .into_iter()
        .map(|p| p.into_iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(got, want);
    // `$crate::` in a macro is not an edge.
    assert!(named("$crate::b::f()", &from, &modules).is_empty());
}
