//! No source file grows past what one reader holds in mind: every `.rs`
//! file under a crate's `src/` stays within [`LIMIT`] lines, not counting
//! its unit tests (from the first `#[cfg(test)]` on). Files under `tests/`,
//! `benches/` and fuzz targets are exempt, as are data tables named in
//! [`DATA_TABLES`] with the reason they may be long. A file over the limit
//! is split along a seam (see ARCHITECTURE.md's code map for the seams
//! already chosen), not exempted.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Lines of code (before the unit tests) a source file may have.
const LIMIT: usize = 600;

/// Files that are data, not logic: (path from the repository root, why).
const DATA_TABLES: &[(&str, &str)] = &[];

/// Every tracked `.rs` file below a `src/` directory.
fn sources(root: &Path) -> Vec<PathBuf> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "*.rs",
        ])
        .current_dir(root)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git ls-files failed");
    String::from_utf8(out.stdout)
        .expect("UTF-8 paths")
        .lines()
        .filter(|p| p.split('/').any(|c| c == "src"))
        .filter(|p| root.join(p).exists())
        .map(PathBuf::from)
        .collect()
}

/// Lines before the first `#[cfg(test)]` at the start of a line.
fn code_lines(text: &str) -> usize {
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .count()
}

#[test]
fn no_source_file_is_over_the_limit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = sources(&root);
    assert!(
        files.len() > 100,
        "found only {} source files: is this the repository root?",
        files.len()
    );
    let mut over = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(root.join(f)).expect("readable source");
        let n = code_lines(&text);
        let exempt = DATA_TABLES.iter().any(|(p, _)| Path::new(p) == f);
        if n > LIMIT && !exempt {
            over.push(format!("{} has {n} lines of code", f.display()));
        }
    }
    assert!(
        over.is_empty(),
        "source files over {LIMIT} lines (split them along a seam):\n{}",
        over.join("\n")
    );
}

#[test]
fn the_count_stops_at_the_unit_tests() {
    let text = "fn a() {}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {}\n}\n";
    assert_eq!(code_lines(text), 2);
    assert_eq!(code_lines("fn a() {}\n"), 1);
    // An attribute that is only indented (inside an item) does not end the code.
    assert_eq!(
        code_lines("mod m {\n    #[cfg(test)]\n    fn t() {}\n}\n"),
        4
    );
}
