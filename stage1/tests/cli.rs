//! The `stage1` binary: the standalone TUF client against a repository made
//! by the Python reference implementation, its refusals, and `kill -9` in
//! the middle of an install.

mod common;

use std::process::Command;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use common::repo::{workers, Fixture};
use common::server::{Pki, Server};
use racklet_bmc_proto::Slot;
use racklet_hardware::Arch;
use stage1::slots::SlotStore;

fn stage1() -> Command {
    Command::cargo_bin("stage1").unwrap()
}

fn python_tuf() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import tuf.api.metadata, securesystemslib.signer, cryptography",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn the_standalone_client_reads_a_repository_made_by_python_tuf() {
    if !common::have(
        python_tuf(),
        "python3 with tuf, securesystemslib[crypto] (pip)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let o = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/python_tuf_repo.py"
        ))
        .arg(&repo)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = String::from_utf8(o.stdout).unwrap();
    let state = dir.path().join("state");
    let ok = |c: &mut Command| {
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    ok(stage1()
        .args(["tuf", "init", "--root"])
        .arg(repo.join("metadata/1.root.json"))
        .arg("--state")
        .arg(&state));
    let murl = url::Url::from_directory_path(repo.join("metadata")).unwrap();
    let turl = url::Url::from_directory_path(repo.join("targets")).unwrap();
    let out = dir.path().join("dl");
    ok(stage1()
        .args([
            "tuf",
            "download",
            "--metadata-url",
            murl.as_str(),
            "--targets-url",
            turl.as_str(),
        ])
        .arg("--state")
        .arg(&state)
        .arg("--out")
        .arg(&out)
        .args(["os-py-1.0.0.uki", "notes.txt"]));
    for line in want.lines() {
        let mut w = line.split(' ');
        let (name, len, sha) = (w.next().unwrap(), w.next().unwrap(), w.next().unwrap());
        let bytes = std::fs::read(out.join(name)).unwrap();
        assert_eq!(bytes.len().to_string(), len);
        assert_eq!(
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            sha
        );
    }
    // The rotated root (version 2) is now what the state trusts.
    assert!(state.join("trusted/2.root.json").exists());
    let shown = ok(stage1()
        .args([
            "tuf",
            "refresh",
            "--metadata-url",
            murl.as_str(),
            "--targets-url",
            turl.as_str(),
        ])
        .arg("--state")
        .arg(&state));
    assert!(shown.contains("root      v2"), "{shown}");
    // A target the metadata does not list is refused by name.
    let o = stage1()
        .args([
            "tuf",
            "download",
            "--metadata-url",
            murl.as_str(),
            "--targets-url",
            turl.as_str(),
        ])
        .arg("--state")
        .arg(&state)
        .arg("--out")
        .arg(&out)
        .arg("evil.uki")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("evil.uki"));
}

#[test]
fn plain_http_needs_the_explicit_flag_and_a_tampered_root_is_not_pinned() {
    let fx = Fixture::new();
    let state = tempfile::tempdir().unwrap();
    let o = stage1()
        .args(["tuf", "init", "--root"])
        .arg(fx.root_file())
        .arg("--state")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = stage1()
        .args([
            "tuf",
            "refresh",
            "--metadata-url",
            "http://127.0.0.1:9/metadata/",
            "--targets-url",
            "http://127.0.0.1:9/targets/",
        ])
        .arg("--state")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--allow-plain-http"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.root_file()).unwrap()).unwrap();
    root["signed"]["expires"] = "2099-01-01T00:00:00Z".into();
    let bad = state.path().join("bad-root.json");
    std::fs::write(&bad, serde_json::to_vec(&root).unwrap()).unwrap();
    let o = stage1()
        .args(["tuf", "init", "--root"])
        .arg(&bad)
        .arg("--state")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not signed by its own root keys"));
}

#[test]
fn kill_9_during_an_install_leaves_the_old_slot_bootable() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fx = Fixture::new();
    let old = common::bytes(100_000, 1);
    let new = common::bytes(48 << 20, 2);
    fx.release("os-1.uki", &old, "1.0.0", 1, Arch::X86_64, workers());
    fx.release("os-2.uki", &new, "2.0.0", 2, Arch::X86_64, workers());
    let pki = Pki::new("rack");
    let server = rt.block_on(Server::start(fx.repo(), &pki, None));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    let install = |slot: &str, target: &str| {
        let mut c = stage1();
        c.args(["slots", "install", "--slot", slot, "--target", target])
            .arg("--disk")
            .arg(&disk)
            .arg("--repo")
            .arg(server.base().as_str())
            .arg("--ca")
            .arg(&ca)
            .arg("--root")
            .arg(fx.root_file())
            .arg("--state")
            .arg(dir.path().join("state"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    assert!(stage1()
        .args(["slots", "format"])
        .arg(&disk)
        .output()
        .unwrap()
        .status
        .success());
    assert!(install("a", "os-1.uki").status().unwrap().success());
    let boots = || {
        let mut s = SlotStore::open(std::fs::File::open(&disk).unwrap()).unwrap();
        let active = s.state().active.unwrap();
        let mut got = Vec::new();
        s.read_verified(active, |c| {
            got.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        (active, got)
    };
    let mut killed = 0;
    for ms in [20u64, 60, 120, 200, 300, 450, 650, 900] {
        let mut child = install("b", "os-2.uki").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        let (active, got) = boots();
        if active == Slot::A {
            assert_eq!(got, old);
        } else {
            // It finished before the kill: the new image, whole.
            assert_eq!(got, new);
            break;
        }
    }
    assert!(killed > 0, "no install was killed mid-way");
    // The active slot is never the target; a clean run then completes.
    let (active, _) = boots();
    if active == Slot::A {
        assert!(install("b", "os-2.uki").status().unwrap().success());
    }
    assert_eq!(boots(), (Slot::B, new));
}

#[test]
fn init_outside_pid_1_runs_one_round_and_fails_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let o = stage1()
        .args([
            "init",
            "--node",
            "unit-2",
            "--groups",
            "workers",
            "--smbus",
            "0x21",
            "--bmc",
            "127.0.0.1:9",
        ])
        .arg("--disk")
        .arg(dir.path().join("disk.img"))
        .arg("--root")
        .arg(dir.path().join("root.json"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg("--simulate")
        .arg(dir.path().join("handoff.json"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("stage1: boot failed") && err.contains("BMC"),
        "{err}"
    );
    // Each line of the attempt names the node and its architecture (the
    // span bootd's log lines match).
    let failed = err.lines().find(|l| l.contains("boot failed")).unwrap();
    assert!(
        failed.contains("node=unit-2") && failed.contains("arch=") && failed.contains("attempt=1"),
        "{failed}"
    );
}
