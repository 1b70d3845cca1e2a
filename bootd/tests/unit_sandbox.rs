//! The shipped `bootd.service`: systemd accepts it (`systemd-analyze
//! verify`), it grants what proxyDHCP needs, and bootd's online timestamp
//! role re-signs inside the unit's own sandbox — the repository read-only
//! but for `metadata/`, where imgsign's write lock lives.
//!
//! The sandbox run takes its properties from the unit file. With systemd
//! as PID 1 it runs bootd as a transient unit (`systemd-run -p …`);
//! without (a container, this CI), it applies the same mount restrictions
//! (`ProtectSystem=strict`, `ReadOnlyPaths`, `ReadWritePaths`, the state
//! directory) in a private mount namespace (`unshare --mount`) and the
//! unit's capability bounding set and `NoNewPrivileges` with `setpriv`,
//! and says "skipped: needs systemd" for the transient unit. Both need
//! root ("skipped: needs root" otherwise).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{missing, Fixture, BASE_CONFIG};

const UNIT: &str = include_str!("../bootd.service");
/// Where the unit says the repository and the state are.
const UNIT_REPO: &str = "/srv/racklet/repo";
const UNIT_STATE: &str = "/var/lib/bootd";

/// Every value of `key=` in the unit's `[Service]` section, in order.
fn service(key: &str) -> Vec<String> {
    let mut in_service = false;
    let mut out = Vec::new();
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == key {
                out.push(v.trim().to_owned());
            }
        }
    }
    out
}

/// The words of every `key=` line.
fn words(key: &str) -> Vec<String> {
    service(key)
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn systemd_is_pid1() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn bootd_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("bootd")
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    if missing("systemd-analyze") {
        return;
    }
    // The unit names the installed binary; verify checks that it exists.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("bootd.service");
    let text = UNIT.replace("/usr/local/bin/bootd", &bootd_bin().display().to_string());
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Unknown or misspelled settings are warnings, not failures: none.
    assert!(
        !err.contains("bootd.service"),
        "systemd-analyze has remarks: {err}"
    );
}

#[test]
fn the_unit_grants_what_proxy_dhcp_needs() {
    // SO_BINDTODEVICE wants CAP_NET_RAW, UDP 67 CAP_NET_BIND_SERVICE.
    for cap in ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"] {
        for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
            assert!(words(key).iter().any(|w| w == cap), "{key} lacks {cap}");
        }
    }
    assert!(words("RestrictAddressFamilies")
        .iter()
        .any(|w| w == "AF_INET"));
    // Re-signing writes metadata/ only, and the repository stays read-only.
    assert_eq!(service("ReadOnlyPaths"), vec![UNIT_REPO.to_owned()]);
    assert_eq!(
        service("ReadWritePaths"),
        vec![format!("{UNIT_REPO}/metadata")]
    );
}

/// The unit's paths, mapped into the fixture.
fn map(p: &str, repo: &Path, state: &Path) -> String {
    if let Some(rest) = p.strip_prefix(UNIT_REPO) {
        format!("{}{rest}", repo.display())
    } else if let Some(rest) = p.strip_prefix(UNIT_STATE) {
        format!("{}{rest}", state.display())
    } else {
        p.to_owned()
    }
}

/// `CAP_NET_RAW CAP_X` → `+net_raw,+x` (setpriv's spelling).
fn setpriv_caps(key: &str) -> String {
    words(key)
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads `timestamp.json`'s version.
fn timestamp_version(repo: &Path) -> u64 {
    let t = std::fs::read(repo.join("metadata/timestamp.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&t).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

/// The fixture: a repository with a release (timestamp v2) and a config
/// whose timestamp role re-signs at once (a 1-day timestamp is inside the
/// 25 h margin). Outside /tmp, which the unit makes private.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = BASE_CONFIG.replace(
        "  poll_interval_ms: 100",
        "  poll_interval_ms: 100\n  timestamp: { key: timestamp.key, lifetime_s: 172800, \
         refresh_margin_s: 90000 }",
    );
    let f = Fixture::with_timestamp_key_in(dir, &config, imgsign::keys::SigningKeyPair::generate());
    f.keys
        .timestamp
        .write_new(&f.dir.path().join("timestamp.key"))
        .unwrap();
    f.release("1.0.0", &[("os.img", b"an image", "os")]);
    std::fs::create_dir_all(&f.state).unwrap();
    assert_eq!(timestamp_version(&f.repo), 2);
    f
}

/// Waits (at most 60 s) for bootd to publish timestamp v3 into the
/// repository; returns bootd's log either way.
fn wait_for_resign(mut child: std::process::Child, repo: &Path) -> (bool, String) {
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < Duration::from_secs(60) {
        if timestamp_version(repo) >= 3 {
            ok = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    (ok, log)
}

#[test]
fn bootd_re_signs_the_timestamp_inside_the_units_sandbox() {
    if !common_have_root() || missing("unshare") || missing("setpriv") {
        return;
    }
    let f = fixture();
    let (repo, state) = (f.repo.clone(), f.state.clone());
    let mut binds = Vec::new();
    for p in service("ReadOnlyPaths") {
        binds.push((map(&p, &repo, &state), "ro"));
    }
    for p in service("ReadWritePaths") {
        binds.push((map(&p, &repo, &state), "rw"));
    }
    if !service("StateDirectory").is_empty() {
        binds.push((state.display().to_string(), "rw"));
    }
    assert_eq!(service("ProtectSystem"), vec!["strict".to_owned()]);
    assert_eq!(service("NoNewPrivileges"), vec!["yes".to_owned()]);
    // ProtectSystem=strict: every mount read-only but the API file
    // systems; then the unit's paths, the more specific last.
    let mut script = String::from(
        "set -e\n\
         for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do\n\
           case \"$m\" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac\n\
           mount -o remount,bind,ro \"$m\"\n\
         done\n",
    );
    for (p, mode) in &binds {
        script.push_str(&format!(
            "mount --bind '{p}' '{p}'\nmount -o remount,bind,{mode} '{p}'\n"
        ));
    }
    // The repository root really is read-only in there.
    script.push_str(&format!(
        "if touch '{}/.probe' 2>/dev/null; then echo 'repository root writable' >&2; exit 9; fi\n",
        repo.display()
    ));
    let caps = setpriv_caps("CapabilityBoundingSet");
    script.push_str(&format!(
        "exec setpriv --no-new-privs --bounding-set -all,{caps} --inh-caps -all,{caps} \
         --ambient-caps -all,{caps} -- '{}' --config '{}' serve\n",
        bootd_bin().display(),
        f.config_path.display()
    ));
    if systemd_is_pid1() {
        return transient_unit(&f, &binds);
    }
    println!(
        "skipped: needs systemd (PID 1) for the transient-unit run; the unit's mount and \
         capability restrictions run under unshare + setpriv instead"
    );
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(&script)
        .env("BOOTD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (ok, log) = wait_for_resign(child, &repo);
    assert!(ok, "no re-signed timestamp inside the sandbox: {log}");
    assert!(!log.contains("cannot re-sign"), "{log}");
}

/// The same run as a transient systemd unit, its properties from the unit
/// file (paths mapped into the fixture; no User=, the fixture is root's).
fn transient_unit(f: &Fixture, binds: &[(String, &str)]) {
    let skip = [
        "Type",
        "ExecStart",
        "ExecStartPre",
        "User",
        "Group",
        "Restart",
        "RestartSec",
        "StateDirectory",
        "StateDirectoryMode",
        "ConfigurationDirectory",
        "ReadOnlyPaths",
        "ReadWritePaths",
    ];
    let mut props = Vec::new();
    let mut in_service = false;
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if let (true, Some((k, v))) = (in_service && !line.starts_with('#'), line.split_once('=')) {
            if !skip.contains(&k.trim()) {
                props.push(format!("{}={}", k.trim(), v.trim()));
            }
        }
    }
    for (p, mode) in binds {
        let key = if *mode == "ro" {
            "ReadOnlyPaths"
        } else {
            "ReadWritePaths"
        };
        props.push(format!("{key}={p}"));
    }
    let name = format!("racklet-bootd-test-{}", std::process::id());
    let mut c = Command::new("systemd-run");
    c.args(["--unit", &name, "--collect", "--quiet"]);
    for p in &props {
        c.args(["-p", p]);
    }
    c.arg(bootd_bin())
        .arg("--config")
        .arg(&f.config_path)
        .arg("serve");
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "systemd-run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    while timestamp_version(&f.repo) < 3 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let v = timestamp_version(&f.repo);
    let _ = Command::new("systemctl").args(["stop", &name]).status();
    assert!(
        v >= 3,
        "no re-signed timestamp in the transient unit {name}"
    );
}

fn common_have_root() -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("RACKLET_REQUIRE_ALL=1 but this test needs root");
    }
    println!("skipped: needs root");
    false
}
