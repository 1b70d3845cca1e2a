//! ARCHITECTURE.md's code map names every crate of the workspace and every
//! module their roots declare, so a reader can find each one from the map
//! (a new module that the map does not name fails here, naming it).
//!
//! A module counts as named when its name appears in backticks in the
//! "Code map" section, alone or as the head of a path (`slots/header`,
//! `secureboot.rs`, `net::dhcp`); a crate when its package name does.
//! `tests` modules (unit tests in their own file) are not part of the map.

mod common;

/// The "Code map" section of ARCHITECTURE.md.
fn code_map() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md");
    let start = text.find("## Code map").expect("a Code map section");
    let rest = &text[start + 2..];
    let end = rest.find("\n## ").map_or(rest.len(), |e| e);
    rest[..end].to_owned()
}

/// Every word-ish name that appears in backticks, split at `/`, `::`, `.`.
fn named(map: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, chunk) in map.split('`').enumerate() {
        if i % 2 == 1 {
            out.insert(chunk.to_owned());
            for part in chunk.split(['/', ':', '.', ' ', '(', ')', ',']) {
                if !part.is_empty() {
                    out.insert(part.to_owned());
                }
            }
        }
    }
    out
}

/// `mod name;` declarations of a root file.
fn declared(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_start)
        .filter_map(|l| {
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            Some(l.strip_prefix("mod ")?.strip_suffix(';')?.trim().to_owned())
        })
        .filter(|m| m != "tests")
        .collect()
}

#[test]
fn the_code_map_names_every_crate_and_module() {
    let map = code_map();
    let names = named(&map);
    let mut missing = Vec::new();
    let mut modules = 0;
    for package in common::packages() {
        if !names.contains(&package) {
            missing.push(format!("crate {package}"));
        }
    }
    for t in common::targets() {
        if !t.target.starts_with("lib ") && !t.target.starts_with("bin ") {
            continue;
        }
        let text = std::fs::read_to_string(&t.root).expect("root file");
        for m in declared(&text) {
            modules += 1;
            if !names.contains(&m) {
                missing.push(format!(
                    "{}: module `{m}` ({})",
                    t.package,
                    t.root.display()
                ));
            }
        }
    }
    assert!(modules > 80, "only {modules} modules found");
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map does not name:\n{}",
        missing.join("\n")
    );
}

#[test]
fn names_are_read_from_backticks_only() {
    let names = named("The `slots/header` and `net::dhcp` modules, `secureboot.rs`; plain words.");
    for n in ["slots", "header", "net", "dhcp", "secureboot"] {
        assert!(names.contains(n), "{n}");
    }
    assert!(!names.contains("plain") && !names.contains("modules"));
}
