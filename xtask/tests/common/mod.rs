//! What the workspace-wide tests share: the workspace's own targets, as
//! `cargo metadata` lists them.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// A library or binary target of a workspace package.
pub struct Target {
    /// Its package.
    pub package: String,
    /// "lib NAME" or "bin NAME".
    pub target: String,
    /// Its root file (`src/lib.rs`, `src/main.rs`, `src/bin/x.rs`).
    pub root: PathBuf,
}

/// `cargo metadata --no-deps` of the workspace.
pub fn metadata() -> Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata is JSON")
}

/// The workspace's package names.
#[allow(dead_code)] // not every test binary uses every helper
pub fn packages() -> Vec<String> {
    metadata()["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Every lib and bin target of the workspace.
pub fn targets() -> Vec<Target> {
    let meta = metadata();
    let mut found = Vec::new();
    for p in meta["packages"].as_array().expect("packages") {
        for t in p["targets"].as_array().expect("targets") {
            let kind = t["kind"][0].as_str().unwrap_or_default();
            if matches!(kind, "lib" | "bin" | "rlib" | "proc-macro") {
                found.push(Target {
                    package: p["name"].as_str().unwrap_or_default().to_owned(),
                    target: format!("{kind} {}", t["name"].as_str().unwrap_or_default()),
                    root: PathBuf::from(t["src_path"].as_str().expect("src_path")),
                });
            }
        }
    }
    found
}
