//! The crate graph keeps the rules ARCHITECTURE.md states under "The crate
//! graph" — exactly those rules, read from `cargo metadata`:
//!
//! 1. the node's code (stage1) reaches only contract crates and node-side
//!    libraries, nothing that serves or signs;
//! 2. the BMC's core and protocol crates reach no host-only crate (what
//!    they link builds for a Cortex-M4 without `std`);
//! 3. contract crates depend on serde-level crates and other contract
//!    crates only (types and encoding, no IO, no TLS, no async);
//! 4. the server and the signer never link the node (stage1), and no part
//!    links the developer tools (xtask, the demo, the benchmarks).
//!
//! Only normal dependencies count: the tests of a part may use the others
//! (stage1's tests run a real bootd against it).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Package name → its normal dependencies (package names), for `platform`,
/// in the workspace at `dir` (relative to the repository root).
fn graph_of(dir: &str, platform: &str) -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
            platform,
        ])
        .current_dir(format!("{}/../{dir}", env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut g = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| name_of[d["pkg"].as_str().unwrap()].to_owned())
            .collect();
        g.insert(name_of[node["id"].as_str().unwrap()].to_owned(), deps);
    }
    g
}

/// The main workspace's graph for `platform`.
fn graph(platform: &str) -> BTreeMap<String, BTreeSet<String>> {
    graph_of("", platform)
}

/// Everything `root` reaches through normal dependencies (not `root`).
fn closure(g: &BTreeMap<String, BTreeSet<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = vec![root];
    while let Some(p) = todo.pop() {
        for d in g.get(p).unwrap_or_else(|| panic!("no package {p}")) {
            if seen.insert(d.clone()) {
                todo.push(d);
            }
        }
    }
    seen
}

const WORKSPACE: &[&str] = &[
    "imgsign",
    "racklet-release",
    "racklet-fsio",
    "bootd",
    "bootd-api",
    "bootd-client",
    "bootd-dhcp-policy",
    "bootd-dhcp-wire",
    "stage1",
    "racklet-kexec",
    "racklet-bmc-proto",
    "racklet-bmc-core",
    "racklet-bmc-sim",
    "racklet-hardware",
    "racklet-images",
    "racklet-piboot",
    "racklet-standin-kernel",
    "xtask",
    "racklet-demo",
    "racklet-bench",
    "racklet-pimodel",
];

/// The contract crates: types and encoding shared by two parts.
const CONTRACTS: &[&str] = &["racklet-release", "bootd-api", "racklet-bmc-proto"];

/// What a contract crate may reach besides other contract crates: serde
/// and its formats, the rack description (a data crate of the same kind),
/// and what those pull in.
const SERDE_LEVEL: &[&str] = &[
    "racklet-hardware",
    "serde",
    "serde_core",
    "serde_derive",
    "serde_json",
    "serde_norway",
    "unsafe-libyaml-norway",
    "semver",
    "thiserror",
    "thiserror-impl",
    "itoa",
    "ryu",
    "memchr",
    "indexmap",
    "equivalent",
    "hashbrown",
    "foldhash",
    "zmij",
    "proc-macro2",
    "quote",
    "syn",
    "unicode-ident",
    // Pure computation, no IO: the BMC link's MAC (HMAC-SHA256) in
    // racklet-bmc-proto, and the digests racklet-release names.
    "hmac",
    "sha2",
    "digest",
    "block-buffer",
    "crypto-common",
    "generic-array",
    "typenum",
    "subtle",
    "cfg-if",
    "cpufeatures",
];

/// Workspace crates the node's code may reach: the contract crates, the
/// rack description, and node-side libraries that neither serve nor sign.
const NODE_MAY_REACH: &[&str] = &[
    "racklet-release",
    "bootd-api",
    "racklet-bmc-proto",
    "racklet-hardware",
    "racklet-fsio",
    "bootd-client",
    "bootd-dhcp-wire",
    "racklet-images",
    "racklet-kexec",
];

#[test]
fn rule_1_the_node_reaches_nothing_that_serves_or_signs() {
    // For both architectures a node runs: dependencies may differ by platform.
    for platform in ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] {
        let g = graph(platform);
        let bad: Vec<String> = closure(&g, "stage1")
            .into_iter()
            .filter(|d| WORKSPACE.contains(&d.as_str()) && !NODE_MAY_REACH.contains(&d.as_str()))
            .collect();
        assert!(
            bad.is_empty(),
            "stage1 ({platform}) reaches {bad:?}; it may reach only {NODE_MAY_REACH:?} of the workspace"
        );
    }
}

#[test]
fn rule_2_the_bmc_core_reaches_no_host_only_crate() {
    // The firmware's own workspace (bmc/fw, its own lock file), resolved
    // for its target: exactly what links into the Cortex-M4 binary. Each
    // crate here is no_std (`cargo xtask test` builds bmc/fw for
    // thumbv7em-none-eabihf); a new one must be too.
    const NO_STD: &[&str] = &[
        "racklet-bmc-proto",
        "thiserror",
        "thiserror-impl",
        "proc-macro2",
        "quote",
        "syn",
        "unicode-ident",
        "embedded-hal",
        "embedded-storage",
        "ed25519-dalek",
        "ed25519",
        "curve25519-dalek",
        "signature",
        "hmac",
        "sha2",
        "digest",
        "block-buffer",
        "crypto-common",
        "generic-array",
        "typenum",
        "subtle",
        "cfg-if",
    ];
    let g = graph_of("bmc/fw", "thumbv7em-none-eabihf");
    for krate in ["racklet-bmc-core", "racklet-bmc-proto"] {
        let bad: Vec<String> = closure(&g, krate)
            .into_iter()
            .filter(|d| !NO_STD.contains(&d.as_str()))
            .collect();
        assert!(
            bad.is_empty(),
            "{krate} reaches {bad:?}, not on the list of no_std crates the firmware links"
        );
    }
}

#[test]
fn rule_3_contract_crates_depend_on_serde_level_crates_only() {
    let g = graph("x86_64-unknown-linux-gnu");
    for c in CONTRACTS {
        let bad: Vec<String> = closure(&g, c)
            .into_iter()
            .filter(|d| !CONTRACTS.contains(&d.as_str()) && !SERDE_LEVEL.contains(&d.as_str()))
            .collect();
        assert!(bad.is_empty(), "contract crate {c} reaches {bad:?}");
    }
}

#[test]
fn rule_4_server_and_signer_never_link_the_node_nor_the_tools() {
    let g = graph("x86_64-unknown-linux-gnu");
    let tools = ["xtask", "racklet-demo", "racklet-bench", "racklet-pimodel"];
    for p in WORKSPACE.iter().filter(|p| !tools.contains(p)) {
        let reach = closure(&g, p);
        for t in tools {
            assert!(!reach.contains(t), "{p} links the developer tool {t}");
        }
        if *p != "stage1" && !tools.contains(p) {
            assert!(!reach.contains("stage1"), "{p} links the node (stage1)");
        }
    }
}

#[test]
fn every_workspace_crate_is_named_here() {
    // A new crate must take its place in the rules above.
    let g = graph("x86_64-unknown-linux-gnu");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap();
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        assert!(g.contains_key(name));
        assert!(
            WORKSPACE.contains(&name),
            "workspace crate {name} is not in crate_graph.rs's WORKSPACE list"
        );
    }
}
