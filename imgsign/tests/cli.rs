//! The command line as a release manager uses it, with real files.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

/// imgsign as run on a release manager's machine whose trust store lives
/// in `dir/.state` (each test is its own machine).
fn imgsign(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("imgsign").unwrap();
    c.current_dir(dir)
        .env("RUST_LOG", "warn")
        .env("IMGSIGN_STATE_DIR", dir.join(".state"));
    c
}

fn gen(dir: &Path, name: &str) {
    imgsign(dir)
        .args(["key", "generate", name])
        .assert()
        .success();
}

fn new_repo(dir: &Path) {
    for k in ["r1.pem", "r2.pem", "r3.pem", "tg.pem", "sn.pem", "ts.pem"] {
        gen(dir, k);
    }
    imgsign(dir)
        .args([
            "init",
            "--repo",
            "repo",
            "--root-key",
            "r1.pem",
            "--root-key",
            "r2.pem",
            "--root-public",
            "r3.pem",
            "--root-threshold",
            "2",
            "--targets-key",
            "tg.pem",
            "--snapshot-key",
            "sn.pem",
            "--timestamp-key",
            "ts.pem",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("2-of-3 root keys"));
}

/// `imgsign sign release` of an os 1.0.0 (security version 1, x86_64)
/// into `repo`; callers add channel, assignment, keys and images.
fn sign_release(dir: &Path) -> Command {
    let mut c = imgsign(dir);
    c.args(["sign", "release", "--repo", "repo", "--kind", "os"]);
    c.args([
        "--version",
        "1.0.0",
        "--security-version",
        "1",
        "--arch",
        "x86_64",
    ]);
    c
}

/// `new_repo`, then one `stable` release of a 5000-byte image of `fill`s.
fn repo_with_release(dir: &Path, image: &str, fill: u8) {
    new_repo(dir);
    std::fs::write(dir.join(image), vec![fill; 5000]).unwrap();
    release(dir, image, "stable", &["tg.pem", "sn.pem", "ts.pem"]).success();
}

fn release(dir: &Path, image: &str, channel: &str, keys: &[&str]) -> assert_cmd::assert::Assert {
    let mut c = sign_release(dir);
    c.args(["--channel", channel, "--group", "workers"]);
    for k in keys {
        c.args(["--key", k]);
    }
    c.arg(image).assert()
}

#[test]
fn generated_keys_are_private_and_never_overwritten_or_printed() {
    let d = tempfile::tempdir().unwrap();
    let out = imgsign(d.path())
        .args(["key", "generate", "k.pem", "--public", "k.pub"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let secret = std::fs::read_to_string(d.path().join("k.pem")).unwrap();
    let body = secret.lines().nth(1).unwrap();
    assert!(!String::from_utf8_lossy(&out).contains(body), "key printed");
    let mode = std::fs::metadata(d.path().join("k.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    imgsign(d.path())
        .args(["key", "generate", "k.pem"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(d.path().join("k.pem")).unwrap(),
        secret
    );
    // The public file and the private key have the same id.
    let id_priv = imgsign(d.path())
        .args(["key", "id", "k.pem"])
        .output()
        .unwrap()
        .stdout;
    let id_pub = imgsign(d.path())
        .args(["key", "id", "k.pub"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(id_priv, id_pub);
}

#[test]
fn init_release_verify_status() {
    let d = tempfile::tempdir().unwrap();
    new_repo(d.path());
    std::fs::write(d.path().join("os.uki"), vec![7u8; 100_000]).unwrap();
    release(
        d.path(),
        "os.uki",
        "stable",
        &["tg.pem", "sn.pem", "ts.pem"],
    )
    .success()
    .stdout(predicate::str::contains(
        "published targets v2, snapshot v2, timestamp v2",
    ));
    imgsign(d.path())
        .args(["verify", "--repo", "repo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("OK: 1 target(s) verified"))
        .stdout(predicate::str::contains("security_version 1"));
    imgsign(d.path())
        .args(["status", "--repo", "repo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("timestamp"));
    // Two days on, the timestamp has expired: status exits 2, verify fails naming it.
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(48)).to_string();
    imgsign(d.path())
        .args(["status", "--repo", "repo", "--now", &later])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("EXPIRED"));
    imgsign(d.path())
        .args(["timestamp", "refresh", "--repo", "repo", "--key", "ts.pem"])
        .assert()
        .success()
        .stdout(predicate::str::contains("timestamp v3"));
}

#[test]
fn verify_fails_naming_the_tampered_target() {
    let d = tempfile::tempdir().unwrap();
    repo_with_release(d.path(), "os.uki", 7);
    let targets = d.path().join("repo/targets");
    let f = std::fs::read_dir(&targets)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&f, vec![8u8; 5000]).unwrap();
    imgsign(d.path())
        .args(["verify", "--repo", "repo"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("target `os.uki`"))
        .stderr(predicate::str::contains("expected"));
}

#[test]
fn example_keys_are_refused_outside_the_demo_channel() {
    let d = tempfile::tempdir().unwrap();
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example");
    let k = |n: &str| {
        ex.join(format!("INSECURE-{n}.pem"))
            .to_string_lossy()
            .into_owned()
    };
    imgsign(d.path())
        .args(["init", "--repo", "repo"])
        .args([
            "--root-key",
            &k("root-1"),
            "--root-key",
            &k("root-2"),
            "--root-key",
            &k("root-3"),
        ])
        .args(["--root-threshold", "2", "--targets-key", &k("targets")])
        .args([
            "--snapshot-key",
            &k("snapshot"),
            "--timestamp-key",
            &k("timestamp"),
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("INSECURE"));
    std::fs::write(d.path().join("os.uki"), vec![7u8; 5000]).unwrap();
    let keys = [k("targets"), k("snapshot"), k("timestamp")];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    release(d.path(), "os.uki", "stable", &keys)
        .failure()
        .stderr(predicate::str::contains("INSECURE example keys"))
        .stderr(predicate::str::contains("`stable`"));
    release(d.path(), "os.uki", "demo", &keys).success();
    // Own keys cannot launder a root that trusts example keys.
    gen(d.path(), "own.pem");
    release(d.path(), "os.uki", "stable", &["own.pem"])
        .failure()
        .stderr(predicate::str::contains("example"));
    imgsign(d.path())
        .args(["key", "id", &k("root-1")])
        .assert()
        .stdout(predicate::str::contains("INSECURE"));
}

#[test]
fn bad_target_name_and_unknown_arch_are_refused() {
    let d = tempfile::tempdir().unwrap();
    new_repo(d.path());
    std::fs::write(d.path().join("os.uki"), vec![7u8; 5000]).unwrap();
    sign_release(d.path())
        .args(["--channel", "stable", "--all-nodes", "--key", "tg.pem"])
        .args(["--name", "../../etc/passwd", "os.uki"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("invalid target name"));
    imgsign(d.path())
        .args([
            "sign",
            "release",
            "--repo",
            "repo",
            "--kind",
            "os",
            "--version",
            "1.0.0",
        ])
        .args([
            "--security-version",
            "1",
            "--arch",
            "mips",
            "--channel",
            "stable",
            "--all-nodes",
        ])
        .args(["--key", "tg.pem", "os.uki"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("unknown architecture"));
}

#[test]
fn root_rotation_ceremony_on_separate_machines() {
    let d = tempfile::tempdir().unwrap();
    repo_with_release(d.path(), "os.uki", 7);

    // A client trusts root v1 and has loaded the repository once.
    let root_v1 = std::fs::read(d.path().join("repo/metadata/1.root.json")).unwrap();
    let datastore = tempfile::tempdir().unwrap();
    let load = |store: &Path| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let repo = d.path().join("repo");
        rt.block_on(async {
            tough::RepositoryLoader::new(
                &root_v1,
                url::Url::from_directory_path(repo.join("metadata")).unwrap(),
                url::Url::from_directory_path(repo.join("targets")).unwrap(),
            )
            .datastore(store)
            .load()
            .await
            .map(|r| r.root().signed.version.get())
            .map_err(|e| e.to_string())
        })
    };
    assert_eq!(load(datastore.path()).unwrap(), 1);

    // Root key r3's holder leaves; r4 replaces it; the timestamp key rotates too.
    gen(d.path(), "r4.pem");
    gen(d.path(), "ts2.pem");
    imgsign(d.path())
        .args(["key", "public", "r4.pem", "--out", "r4.pub"])
        .assert()
        .success();
    let r3_id = String::from_utf8(
        imgsign(d.path())
            .args(["key", "id", "r3.pem"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let ts_id = String::from_utf8(
        imgsign(d.path())
            .args(["key", "id", "ts.pem"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    imgsign(d.path())
        .args(["root", "stage", "--repo", "repo", "--out", "staged.json"])
        .args([
            "--add",
            "root=r4.pub",
            "--remove",
            &format!("root={}", r3_id.trim()),
        ])
        .args([
            "--add",
            "timestamp=ts2.pem",
            "--remove",
            &format!("timestamp={}", ts_id.trim()),
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("staged root v2"));
    // Each holder signs a copy on their own machine.
    for (copy, key) in [
        ("a.json", "r1.pem"),
        ("b.json", "r2.pem"),
        ("c.json", "r4.pem"),
    ] {
        std::fs::copy(d.path().join("staged.json"), d.path().join(copy)).unwrap();
        imgsign(d.path())
            .args(["root", "sign", copy, "--key", key, "--repo", "repo"])
            .assert()
            .success()
            // Each holder sees what changes before signing it.
            .stdout(predicate::str::contains("+ added"))
            .stdout(predicate::str::contains(format!(
                "- removed {}",
                r3_id.trim()
            )));
    }
    // One copy alone (r1) is not enough for the old 2-of-3 threshold.
    imgsign(d.path())
        .args([
            "root", "publish", "--repo", "repo", "a.json", "--key", "sn.pem", "--key", "ts2.pem",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("old root keys: 1 valid of 2"));
    // A copy whose signed part was altered cannot be combined.
    let altered = std::fs::read_to_string(d.path().join("c.json"))
        .unwrap()
        .replace("\"version\": 2", "\"version\": 3");
    std::fs::write(d.path().join("evil.json"), altered).unwrap();
    imgsign(d.path())
        .args(["root", "combine", "--out", "x.json", "a.json", "evil.json"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("disagree"));
    imgsign(d.path())
        .args([
            "root",
            "combine",
            "--out",
            "signed.json",
            "a.json",
            "b.json",
            "c.json",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 signature(s)"));
    // The staged root's expiry is what its keys signed: a lifetime given
    // to `root publish` would be ignored, so it is refused, and nothing is
    // published.
    imgsign(d.path())
        .args([
            "root",
            "publish",
            "--repo",
            "repo",
            "signed.json",
            "--key",
            "sn.pem",
            "--key",
            "ts2.pem",
            "--root-expires",
            "3650d",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--root-expires 3650d"))
        .stderr(predicate::str::contains("root stage --expires"));
    assert!(!d.path().join("repo/metadata/2.root.json").exists());
    imgsign(d.path())
        .args([
            "root",
            "publish",
            "--repo",
            "repo",
            "signed.json",
            "--key",
            "sn.pem",
            "--key",
            "ts2.pem",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("published root v2"));
    imgsign(d.path())
        .args(["verify", "--repo", "repo"])
        .assert()
        .success();
    // The client that trusted v1 follows the rotation.
    assert_eq!(load(datastore.path()).unwrap(), 2);
    // The old timestamp key is no longer accepted.
    imgsign(d.path())
        .args(["timestamp", "refresh", "--repo", "repo", "--key", "ts.pem"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "none of the given keys may sign the timestamp role",
        ));
    imgsign(d.path())
        .args(["timestamp", "refresh", "--repo", "repo", "--key", "ts2.pem"])
        .assert()
        .success();
}

#[test]
fn targets_threshold_ceremony_on_separate_machines() {
    let d = tempfile::tempdir().unwrap();
    for k in ["r1.pem", "t1.pem", "t2.pem", "t3.pem", "sn.pem", "ts.pem"] {
        gen(d.path(), k);
    }
    imgsign(d.path())
        .args(["init", "--repo", "repo", "--root-key", "r1.pem"])
        .args([
            "--targets-key",
            "t1.pem",
            "--targets-key",
            "t2.pem",
            "--targets-key",
            "t3.pem",
        ])
        .args([
            "--targets-threshold",
            "2",
            "--snapshot-key",
            "sn.pem",
            "--timestamp-key",
            "ts.pem",
        ])
        .assert()
        .success();
    std::fs::write(d.path().join("os.uki"), vec![3u8; 20_000]).unwrap();
    // One key alone cannot release.
    release(
        d.path(),
        "os.uki",
        "stable",
        &["t1.pem", "sn.pem", "ts.pem"],
    )
    .failure()
    .stderr(predicate::str::contains("1 valid key(s) of the 2 required"));
    // Stage without any key; each holder signs a copy; combine; publish.
    sign_release(d.path())
        .args(["--channel", "stable", "--group", "workers"])
        .args(["--stage-to", "staged.json", "os.uki"])
        .assert()
        .success()
        .stdout(predicate::str::contains("staged targets v2"));
    for (copy, key) in [("a.json", "t1.pem"), ("b.json", "t3.pem")] {
        std::fs::copy(d.path().join("staged.json"), d.path().join(copy)).unwrap();
        imgsign(d.path())
            .args(["targets", "sign", copy, "--key", key, "--repo", "repo"])
            .assert()
            .success()
            .stdout(predicate::str::contains("+ os.uki (20000 bytes"));
    }
    imgsign(d.path())
        .args([
            "targets", "publish", "--repo", "repo", "a.json", "--key", "sn.pem", "--key", "ts.pem",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("1 valid key(s) of the 2 required"));
    // A holder's copy with a raised security version cannot be merged in.
    let evil = std::fs::read_to_string(d.path().join("b.json"))
        .unwrap()
        .replace("\"security_version\": 1", "\"security_version\": 0");
    std::fs::write(d.path().join("evil.json"), evil).unwrap();
    imgsign(d.path())
        .args([
            "targets",
            "combine",
            "--out",
            "x.json",
            "a.json",
            "evil.json",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("disagree"));
    imgsign(d.path())
        .args([
            "targets",
            "combine",
            "--out",
            "signed.json",
            "a.json",
            "b.json",
        ])
        .assert()
        .success();
    imgsign(d.path())
        .args([
            "targets",
            "publish",
            "--repo",
            "repo",
            "signed.json",
            "--key",
            "sn.pem",
            "--key",
            "ts.pem",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("published targets v2"));
    imgsign(d.path())
        .args(["verify", "--repo", "repo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("OK: 1 target(s) verified"));
    // Publishing the same staged file again is refused (version already used).
    imgsign(d.path())
        .args([
            "targets",
            "publish",
            "--repo",
            "repo",
            "signed.json",
            "--key",
            "sn.pem",
            "--key",
            "ts.pem",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("needs version 3"));
}

#[test]
fn keys_never_reach_the_output_even_at_trace_level() {
    let d = tempfile::tempdir().unwrap();
    for k in ["r1.pem", "tg.pem", "sn.pem", "ts.pem"] {
        gen(d.path(), k);
    }
    let mut secrets = Vec::new();
    for k in ["r1.pem", "tg.pem", "sn.pem", "ts.pem"] {
        let pem = std::fs::read_to_string(d.path().join(k)).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let seed = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
            .unwrap()
            .to_bytes();
        secrets.push(body);
        secrets.push(hex_lower(&seed));
        secrets.push(String::from_utf8_lossy(&seed).into_owned());
    }
    std::fs::write(d.path().join("os.uki"), vec![1u8; 1000]).unwrap();
    let mut outputs = Vec::new();
    let mut run = |args: &[&str]| {
        let o = imgsign(d.path())
            .env("RUST_LOG", "trace")
            .arg("-vv")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        outputs.push(String::from_utf8_lossy(&o.stdout).into_owned());
        outputs.push(String::from_utf8_lossy(&o.stderr).into_owned());
    };
    run(&[
        "init",
        "--repo",
        "repo",
        "--root-key",
        "r1.pem",
        "--targets-key",
        "tg.pem",
        "--snapshot-key",
        "sn.pem",
        "--timestamp-key",
        "ts.pem",
    ]);
    run(&[
        "sign",
        "release",
        "--repo",
        "repo",
        "--kind",
        "os",
        "--version",
        "1.0.0",
        "--security-version",
        "1",
        "--arch",
        "x86_64",
        "--channel",
        "stable",
        "--all-nodes",
        "--key",
        "tg.pem",
        "--key",
        "sn.pem",
        "--key",
        "ts.pem",
        "os.uki",
    ]);
    run(&["timestamp", "refresh", "--repo", "repo", "--key", "ts.pem"]);
    run(&["verify", "--repo", "repo"]);
    assert!(
        outputs
            .iter()
            .any(|o| o.contains("TRACE") || o.contains("DEBUG")),
        "trace logging was on"
    );
    for out in &outputs {
        for s in &secrets {
            assert!(!out.contains(s.as_str()), "key material in the output");
        }
    }
    // Nor in the repository.
    for entry in walk(&d.path().join("repo")) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "key material in {}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn a_swapped_root_chain_cannot_get_its_target_signed() {
    // The release manager's repository, pinned on this machine at init.
    let d = tempfile::tempdir().unwrap();
    repo_with_release(d.path(), "os.uki", 7);
    // Someone who can write the folder builds a root chain of their own
    // (it could also trust the real targets key: only its public half is
    // needed for that), with their own target in it.
    let evil = tempfile::tempdir().unwrap();
    for k in ["er.pem", "etg.pem", "esn.pem", "ets.pem"] {
        gen(evil.path(), k);
    }
    imgsign(evil.path())
        .args([
            "init",
            "--repo",
            "repo",
            "--root-key",
            "er.pem",
            "--targets-key",
            "etg.pem",
        ])
        .args(["--snapshot-key", "esn.pem", "--timestamp-key", "ets.pem"])
        .assert()
        .success();
    let victim_meta = d.path().join("repo/metadata");
    for e in std::fs::read_dir(evil.path().join("repo/metadata")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, victim_meta.join(p.file_name().unwrap())).unwrap();
    }
    // The next release on the real machine refuses: the chain does not start
    // from the root this machine pinned.
    std::fs::write(d.path().join("os2.uki"), vec![8u8; 5000]).unwrap();
    release(
        d.path(),
        "os2.uki",
        "stable",
        &["tg.pem", "sn.pem", "ts.pem"],
    )
    .failure()
    .stderr(predicate::str::contains(
        "timestamp role is signed by 0 valid key(s)",
    ));
    // A machine without a pin is told to pin rather than trusting the folder.
    let other = tempfile::tempdir().unwrap();
    Command::cargo_bin("imgsign")
        .unwrap()
        .env("IMGSIGN_STATE_DIR", other.path())
        .args(["timestamp", "refresh", "--repo"])
        .arg(d.path().join("repo"))
        .args(["--key"])
        .arg(d.path().join("ts.pem"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("no pinned root"));
}

#[test]
fn a_rolled_back_repository_folder_is_refused() {
    let d = tempfile::tempdir().unwrap();
    repo_with_release(d.path(), "v1.uki", 1);
    let snapshot_copy = d.path().join("old-repo");
    copy_dir(&d.path().join("repo"), &snapshot_copy);
    std::fs::write(d.path().join("v2.uki"), vec![2u8; 5000]).unwrap();
    release(
        d.path(),
        "v2.uki",
        "stable",
        &["tg.pem", "sn.pem", "ts.pem"],
    )
    .success();
    // The folder is put back to the older, validly signed copy.
    std::fs::remove_dir_all(d.path().join("repo")).unwrap();
    copy_dir(&snapshot_copy, &d.path().join("repo"));
    std::fs::write(d.path().join("v3.uki"), vec![3u8; 5000]).unwrap();
    release(
        d.path(),
        "v3.uki",
        "stable",
        &["tg.pem", "sn.pem", "ts.pem"],
    )
    .failure()
    .stderr(predicate::str::contains(
        "targets version 2 is older than version 3",
    ));
}

#[test]
fn a_second_machine_pins_the_root_it_was_given() {
    let d = tempfile::tempdir().unwrap();
    new_repo(d.path());
    std::fs::copy(
        d.path().join("repo/metadata/1.root.json"),
        d.path().join("distributed-root.json"),
    )
    .unwrap();
    let second = d.path().join("second-machine-state");
    let on_second = |args: &[&str]| {
        let mut c = Command::cargo_bin("imgsign").unwrap();
        c.current_dir(d.path())
            .env("RUST_LOG", "warn")
            .env("IMGSIGN_STATE_DIR", &second)
            .args(args);
        c
    };
    on_second(&["timestamp", "refresh", "--repo", "repo", "--key", "ts.pem"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("imgsign trust --repo"));
    on_second(&["trust", "--repo", "repo", "--root", "distributed-root.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("pinned root v1"));
    on_second(&["timestamp", "refresh", "--repo", "repo", "--key", "ts.pem"])
        .assert()
        .success();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}
