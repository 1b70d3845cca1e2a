//! The `bootd` binary: PKI commands, config checking, exit codes.

mod common;

use assert_cmd::Command;
use common::*;
use predicates::prelude::*;

fn bootd(config: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("bootd").unwrap();
    c.arg("--config").arg(config);
    c
}

#[test]
fn pki_init_refuses_to_overwrite_and_the_ca_hash_matches_openssl() {
    let f = Fixture::new(); // already ran pki::init
    let before = std::fs::read(&f.pki.ca_key).unwrap();
    bootd(&f.config_path)
        .args(["pki", "init"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists"));
    assert_eq!(std::fs::read(&f.pki.ca_key).unwrap(), before);

    let der = f.dir.path().join("ca.der");
    let out = bootd(&f.config_path)
        .args(["pki", "ca-hash", "--der-out"])
        .arg(&der)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    let hash = out
        .trim()
        .strip_prefix("HTTP_CACERT_HASH=")
        .unwrap()
        .to_owned();
    assert_eq!(hash.len(), 64);
    if missing("openssl") {
        return;
    }
    // What the Raspberry Pi documentation does: DER-encode, then sha256sum.
    let o = std::process::Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&f.pki.ca_cert)
        .output()
        .unwrap();
    assert!(o.status.success());
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&o.stdout)), hash);
    assert_eq!(std::fs::read(&der).unwrap(), o.stdout);
    // The server certificate chains to the CA and carries the configured names.
    let o = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&f.pki.ca_cert)
        .arg(&f.pki.server_cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&f.pki.server_cert)
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&o.stdout);
    assert!(
        sans.contains("DNS:localhost") && sans.contains("IP Address:127.0.0.1"),
        "{sans}"
    );
}

#[test]
fn fresh_pki_init_and_renew_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rack.yaml"),
        include_str!("../../hardware/rack.yaml"),
    )
    .unwrap();
    let cfg = dir.path().join("bootd.yaml");
    std::fs::write(&cfg, BASE_CONFIG).unwrap();
    bootd(&cfg)
        .args(["pki", "init"])
        .assert()
        .success()
        .stdout(predicate::str::contains("HTTP_CACERT_HASH="));
    use std::os::unix::fs::PermissionsExt;
    for k in ["pki/ca.key", "pki/server.key"] {
        let mode = std::fs::metadata(dir.path().join(k))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{k}");
    }
    let ca = std::fs::read(dir.path().join("pki/ca.pem")).unwrap();
    let old = std::fs::read(dir.path().join("pki/server.pem")).unwrap();
    bootd(&cfg).args(["pki", "renew-server"]).assert().success();
    assert_ne!(
        std::fs::read(dir.path().join("pki/server.pem")).unwrap(),
        old
    );
    assert_eq!(
        std::fs::read(dir.path().join("pki/ca.pem")).unwrap(),
        ca,
        "renew must keep the CA"
    );
}

#[test]
fn broken_config_exits_non_zero_naming_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bootd.yaml");
    let text = BASE_CONFIG.replace(
        "tls_handshake_timeout_ms: 2000",
        "tls_handshake_timeout_ms: 0",
    );
    let line = text
        .lines()
        .position(|l| l.contains("tls_handshake_timeout_ms: 0"))
        .unwrap()
        + 1;
    std::fs::write(&cfg, &text).unwrap();
    let out = bootd(&cfg)
        .arg("check-config")
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    assert!(
        err.contains("limits.tls_handshake_timeout_ms") && err.contains(&format!("(line {line})")),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one-line cause chain: {err}");

    std::fs::write(
        &cfg,
        BASE_CONFIG.replace("state_dir: state", "state_dir: state\nstate_dri: x"),
    )
    .unwrap();
    bootd(&cfg)
        .arg("check-config")
        .assert()
        .failure()
        .stderr(predicate::str::contains("state_dri").and(predicate::str::contains("line")));

    std::fs::write(&cfg, BASE_CONFIG).unwrap();
    std::fs::write(
        dir.path().join("rack.yaml"),
        include_str!("../../hardware/rack.yaml"),
    )
    .unwrap();
    bootd(&cfg)
        .arg("check-config")
        .assert()
        .success()
        .stdout(predicate::str::contains("5 nodes"));
}

#[test]
fn nodes_list_shows_every_rack_node() {
    let f = Fixture::new();
    let out = bootd(&f.config_path)
        .args(["nodes", "list"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    for n in 1..=5 {
        assert!(out.contains(&format!("unit-{n}")), "{out}");
    }
    bootd(&f.config_path)
        .args(["nodes", "approve", "0123456789abcdef01234567"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no pending enrollment request"));
    bootd(&f.config_path)
        .args(["nodes", "revoke", "unit-1"])
        .assert()
        .failure();
}
