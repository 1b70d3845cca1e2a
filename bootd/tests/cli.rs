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

/// The README's walkthrough with the real binaries: init the PKI, point at a
/// repository, start, enroll a node, see it in `nodes list` and /metrics,
/// stop with SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_with_the_binaries() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", b"walkthrough", "os")]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(&f.config_path)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&f.config_path, text).unwrap();
    let exe = assert_cmd::cargo::cargo_bin("bootd");
    let serve = std::process::Command::new(&exe)
        .arg("--config")
        .arg(&f.config_path)
        .arg("serve")
        .env("BOOTD_LOG", "bootd=debug,info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ca = f.ca_der();
    wait_for_timestamp(addr, &ca, 2).await;

    let server = format!("https://localhost:{port}/");
    let node_dir = f.dir.path().join("unit-2");
    let mut enroll = std::process::Command::new(&exe)
        .args(["client", "enroll", "--server", &server, "--ca"])
        .arg(&f.pki.ca_cert)
        .args(["--node", "unit-2", "--out"])
        .arg(&node_dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The operator waits for the request to show up, then approves it.
    let mut id = None;
    for _ in 0..100 {
        let out = bootd(&f.config_path)
            .args(["nodes", "pending"])
            .output()
            .unwrap();
        let out = String::from_utf8(out.stdout).unwrap();
        if let Some(line) = out.lines().find(|l| l.contains("node=unit-2")) {
            id = line.split_whitespace().next().map(str::to_owned);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let id = id.expect("the request never showed up");
    bootd(&f.config_path)
        .args(["nodes", "approve", &id])
        .assert()
        .success();
    let status = tokio::task::spawn_blocking(move || enroll.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(node_dir.join("node.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (exe2, ca_path, nd) = (exe.clone(), f.pki.ca_cert.clone(), node_dir.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&exe2)
            .args(["client", "report", "--server", &server, "--ca"])
            .arg(&ca_path)
            .arg("--identity")
            .arg(&nd)
            .args(["--slot", "A", "--version", "1.0.0", "--confirmed"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = bootd(&f.config_path)
        .args(["nodes", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    let line = list.lines().find(|l| l.starts_with("unit-2")).unwrap();
    assert!(
        line.contains("enrolled") && line.contains("1.0.0"),
        "{list}"
    );
    let m = metrics(addr, &ca).await;
    assert!(m.contains("node=\"unit-2\""), "{m}");

    // SIGTERM: drain and exit 0.
    std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || serve.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "bootd serve exited with {}",
        out.status
    );
    // Never log keys: not the server's, not the node's, at debug level either.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("TLS established"), "debug log missing: {log}");
    assert!(!log.contains("PRIVATE KEY"), "a private key in the log");
    for key in [
        node_dir.join("node.key"),
        f.pki.server_key.clone(),
        f.pki.ca_key.clone(),
    ] {
        let pem = std::fs::read_to_string(&key).unwrap();
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
        {
            assert!(
                !log.contains(line),
                "key material from {} in the log",
                key.display()
            );
        }
    }
}

#[test]
fn pi_eeprom_config_pins_the_rack_ca_on_a_pi5_only() {
    let single = BASE_CONFIG
        .find("first_stage:")
        .zip(BASE_CONFIG.find("limits:"))
        .unwrap();
    let config = BASE_CONFIG.replace(
        &BASE_CONFIG[single.0..single.1],
        "first_stage:\n  - path: rpi4\n    files: { boot.img: rpi4-stage1.img, boot.sig: \
         rpi4-stage1.sig }\n    transport: http\n  - path: rpi5\n    files: { boot.img: \
         rpi5-stage1.img, boot.sig: rpi5-stage1.sig }\n    transport: https\n",
    );
    let f = Fixture::with_config(&config);
    let out = bootd(&f.config_path)
        .args(["pki", "ca-hash"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let hash = String::from_utf8(out).unwrap().trim().to_owned();
    bootd(&f.config_path)
        .args([
            "pki",
            "pi-eeprom-config",
            "--model",
            "pi5",
            "--host",
            "10.0.0.2",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("BOOT_ORDER=0xf7\n"))
        .stdout(predicate::str::contains("HTTP_HOST=10.0.0.2\n"))
        .stdout(predicate::str::contains("HTTP_PORT=443\n"))
        .stdout(predicate::str::contains("HTTP_PATH=rpi5\n"))
        .stdout(predicate::str::contains(format!("{hash}\n")))
        .stdout(predicate::str::contains("SIGNED_BOOT=1\n"));
    bootd(&f.config_path)
        .args([
            "pki",
            "pi-eeprom-config",
            "--model",
            "pi4",
            "--host",
            "10.0.0.2",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("HTTP_PORT=80\n"))
        .stdout(predicate::str::contains("HTTP_PATH=rpi4\n"))
        .stdout(predicate::str::contains("HTTP_CACERT_HASH").not())
        .stdout(predicate::str::contains("SIGNED_BOOT=1\n"));
    // HTTPS on another port is not what the bootloader does.
    bootd(&f.config_path)
        .args([
            "pki",
            "pi-eeprom-config",
            "--model",
            "pi5",
            "--host",
            "10.0.0.2",
        ])
        .args(["--port", "8443"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("443"));
    // Each model refuses the other's transport: a Pi 5 on the plain-HTTP
    // entry, a Pi 4 on the HTTPS-only one.
    for (model, path, why) in [
        ("pi5", "rpi4", "transport: https"),
        ("pi4", "rpi5", "make it `http`"),
    ] {
        bootd(&f.config_path)
            .args(["pki", "pi-eeprom-config", "--model", model])
            .args(["--host", "10.0.0.2", "--path", path])
            .assert()
            .failure()
            .stderr(predicate::str::contains(why));
    }
}
