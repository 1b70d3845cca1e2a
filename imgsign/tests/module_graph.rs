//! The library's modules form a DAG: no module reaches, through `crate::…`
//! paths, a module that reaches it; inside a folder module (`repo/`), no
//! child reaches, through `super::…`, a sibling that reaches it. The same
//! approach as `bmc/sim/tests/module_graph.rs`.
//!
//! The module list is `src/lib.rs`'s `mod` lines (the CLI under `src/cli/`
//! belongs to the binary, which sees the library from outside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// `mod name;` declarations in a file, with or without `pub` and attributes.
fn declared_modules(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .filter_map(|l| {
            let l = l
                .strip_prefix("#[cfg(feature = \"pkcs11\")]")
                .unwrap_or(l)
                .trim();
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

/// The text of module `name` declared in `dir`: `name.rs`, or every file of
/// the folder `name/`.
fn module_text(dir: &Path, name: &str) -> String {
    let file = dir.join(format!("{name}.rs"));
    if file.exists() {
        return std::fs::read_to_string(file).unwrap();
    }
    let mut text = String::new();
    for e in std::fs::read_dir(dir.join(name)).unwrap() {
        text += &std::fs::read_to_string(e.unwrap().path()).unwrap();
        text.push('\n');
    }
    text
}

/// Edges from each module to the modules it names after `prefix` in code
/// (comments are not dependencies).
fn edges(modules: &BTreeMap<String, String>, prefix: &str) -> Graph {
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (name, text) in modules {
        let mut to = BTreeSet::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices(prefix) {
                // A longer word ending in the prefix (`my_crate::`) is no edge.
                let before = line[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let rest = &line[at + prefix.len()..];
                let used: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if prefix == "super::" && !names.contains(&used) {
                    // An item of the parent module, not a sibling.
                    continue;
                }
                assert!(
                    names.contains(&used),
                    "{name}: `{prefix}{rest}` names no module; name the module an item lives \
                     in, so this test sees the edge",
                );
                if used != *name {
                    to.insert(used);
                }
            }
        }
        graph.insert(name.clone(), to);
    }
    graph
}

/// Panics with the cycle if `graph` has one.
fn assert_acyclic(graph: &Graph, what: &str) {
    // Depth-first search; a module met again while on the path closes a cycle.
    fn visit<'a>(
        m: &'a str,
        graph: &'a Graph,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        what: &str,
    ) {
        if let Some(i) = path.iter().position(|p| *p == m) {
            panic!("{what}: module cycle: {} -> {m}", path[i..].join(" -> "));
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for n in &graph[m] {
            visit(n, graph, path, done, what);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, graph, &mut Vec::new(), &mut done, what);
    }
}

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn top_level() -> (BTreeMap<String, String>, Graph) {
    let src = src();
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let modules: BTreeMap<String, String> = declared_modules(&lib)
        .into_iter()
        .map(|m| {
            let text = module_text(&src, &m);
            (m, text)
        })
        .collect();
    let graph = edges(&modules, "crate::");
    (modules, graph)
}

#[test]
fn modules_form_a_dag() {
    let (_, graph) = top_level();
    // The test sees the edges it must: both key kinds use the signer trait,
    // and neither names the other.
    assert!(graph["keyfile"].contains("signer") && graph["pkcs11"].contains("signer"));
    assert!(!graph["keyfile"].contains("pkcs11") && !graph["pkcs11"].contains("keyfile"));
    assert!(!graph["pkcs11"].contains("keys") && !graph["signer"].contains("keys"));
    assert_acyclic(&graph, "imgsign");
}

#[test]
fn folder_modules_form_a_dag() {
    let src = src();
    let (modules, _) = top_level();
    for name in modules.keys() {
        let dir = src.join(name);
        if !dir.is_dir() {
            continue;
        }
        let parent = std::fs::read_to_string(dir.join("mod.rs")).unwrap();
        let children: BTreeMap<String, String> = declared_modules(&parent)
            .into_iter()
            .map(|m| {
                let text = module_text(&dir, &m);
                (m, text)
            })
            .collect();
        assert!(!children.is_empty(), "{name}/mod.rs declares no modules");
        // A child may also name a sibling as `crate::name::sibling`.
        let mut graph = edges(&children, "super::");
        let own = format!("crate::{name}::");
        for (child, text) in &children {
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices(&own) {
                    let used: String = line[at + own.len()..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if children.contains_key(&used) && used != *child {
                        graph.get_mut(child).unwrap().insert(used);
                    }
                }
            }
        }
        assert_acyclic(&graph, name);
    }
}
