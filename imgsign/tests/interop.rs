//! Interop: the Python reference implementation (python-tuf) reads a
//! repository made by imgsign and downloads its targets with matching hashes.

mod common;

use std::process::Command;

use common::*;

fn python_tuf() -> bool {
    Command::new("python3")
        .args(["-c", "import tuf.ngclient, securesystemslib, cryptography"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn python_tuf_downloads_every_target_with_matching_hashes() {
    if !have(
        python_tuf(),
        "python3 with tuf, securesystemslib[crypto] (pip)",
    ) {
        return;
    }
    let f = Fixture::new();
    let r1 = f.release(&f.image("os-1.uki", 300_000, 1), "1.0.0", 1);
    let r2 = f.release(&f.image("os-2.uki", 1000, 2), "2.0.0", 2);
    // Rotate the timestamp once so python-tuf sees a non-trivial history.
    imgsign::timestamp::refresh(
        &f.repo(),
        &f.timestamp,
        jiff::SignedDuration::from_hours(24),
        now(),
    )
    .unwrap();
    let out = f.dir.path().join("python-client");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_tuf_client.py"
    );
    let o = Command::new("python3")
        .arg(script)
        .arg(f.repo())
        .arg(f.repo().join("metadata/1.root.json"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python-tuf failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8(o.stdout).unwrap();
    let want = format!(
        "os-1.uki {} {}\nos-2.uki {} {}\n",
        r1.images[0].1.length,
        r1.images[0].1.hex(),
        r2.images[0].1.length,
        r2.images[0].1.hex()
    );
    assert_eq!(stdout, want);

    // And python-tuf refuses the same repository once a target is tampered with.
    let file = f
        .repo()
        .join(format!("targets/{}.os-2.uki", r2.images[0].1.hex()));
    std::fs::write(&file, vec![0u8; 1000]).unwrap();
    let out2 = f.dir.path().join("python-client-2");
    let o = Command::new("python3")
        .arg(script)
        .arg(f.repo())
        .arg(f.repo().join("metadata/1.root.json"))
        .arg(&out2)
        .output()
        .unwrap();
    assert!(!o.status.success(), "python-tuf accepted a tampered target");
}
