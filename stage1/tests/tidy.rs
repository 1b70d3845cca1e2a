//! Invariant: no `unsafe` outside `stage1::sys`.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn unsafe_appears_only_in_sys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut in_sys = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let n = text.matches("unsafe {").count() + text.matches("allow(unsafe_code)").count();
        if f.ends_with("src/sys.rs") {
            in_sys = n;
            // Every unsafe block has its SAFETY note.
            assert_eq!(
                text.matches("unsafe {").count(),
                text.matches("// SAFETY:").count(),
                "an unsafe block in sys.rs lacks its SAFETY comment"
            );
        } else {
            assert_eq!(n, 0, "{} uses unsafe", f.display());
        }
    }
    assert!(in_sys > 0);
}
