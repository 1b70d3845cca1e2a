//! The Raspberry Pi pair of a release: `imgsign sign release` makes
//! `boot.img` + `boot.sig` for the rack's Pi nodes, reproducibly, as TUF
//! targets of the same release; `imgsign verify --pi-key` checks them; and
//! the attacks on the pair are refused, by the CLI and by
//! `pipair::check_pairs` (what bootd's verify-then-serve also runs).

use std::collections::BTreeMap;
use std::path::Path;

use assert_cmd::Command;
use imgsign::keys::PiKey;
use imgsign::pipair::{self, PiInputs};
use predicates::prelude::*;
use racklet_piboot::bootfiles::PiModel;

const EPOCH: &str = "1767225600"; // 2026-01-01

fn imgsign(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("imgsign").unwrap();
    c.current_dir(dir)
        .env("RUST_LOG", "warn")
        .env("IMGSIGN_STATE_DIR", dir.join(".state"))
        .env("SOURCE_DATE_EPOCH", EPOCH);
    c
}

/// A rack of one Pi 4 and one x86 node, stand-in input files, a Pi key
/// and a repository.
fn setup(dir: &Path) {
    let rack = include_str!("../../hardware/rack.yaml").replacen(
        "arch: x86_64\n    firmware: uefi\n    groups: [workers]",
        "arch: aarch64\n    firmware: pi4-eeprom\n    groups: [workers]",
        1,
    );
    std::fs::write(dir.join("rack.yaml"), rack).unwrap();
    for (sub, name, len) in [
        ("in", "Image", 300_000),
        ("in", "initramfs.cpio", 200_000),
        ("in", "bl31.bin", 57_459),
        ("dtb", "bcm2711-rpi-4-b.dtb", 55_000),
        ("fw", "start4.elf", 2_200_000),
        ("fw", "fixup4.dat", 5_400),
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        std::fs::write(dir.join(sub).join(name), data).unwrap();
    }
    for k in ["r1.pem", "tg.pem", "sn.pem", "ts.pem"] {
        imgsign(dir).args(["key", "generate", k]).assert().success();
    }
    imgsign(dir)
        .args(["init", "--repo", "repo", "--root-key", "r1.pem"])
        .args(["--root-threshold", "1", "--targets-key", "tg.pem"])
        .args(["--snapshot-key", "sn.pem", "--timestamp-key", "ts.pem"])
        .assert()
        .success();
    imgsign(dir)
        .args(["pi-key", "generate", "pi.pem"])
        .assert()
        .success()
        .stdout(predicate::str::contains("sha256(pubkey.bin)"))
        .stdout(predicate::str::contains("PRIVATE").not());
    imgsign(dir)
        .args(["pi-key", "export", "pi.pem", "--pubkey-bin", "pubkey.bin"])
        .args(["--pem", "pi.pub.pem"])
        .assert()
        .success();
    assert_eq!(std::fs::read(dir.join("pubkey.bin")).unwrap().len(), 264);
}

fn sign_stage1(dir: &Path) -> assert_cmd::assert::Assert {
    sign_stage1_with(dir, &[])
}

fn sign_stage1_with(dir: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    std::fs::write(dir.join("stage1-aarch64.efi"), vec![9u8; 4000]).unwrap();
    imgsign(dir)
        .args(["sign", "release", "--repo", "repo", "--kind", "stage1"])
        .args(["--version", "1.0.0", "--security-version", "1"])
        .args(["--arch", "aarch64", "--channel", "stable", "--all-nodes"])
        .args(["--key", "tg.pem", "--key", "sn.pem", "--key", "ts.pem"])
        .args(["--rack", "rack.yaml", "--pi-key", "pi.pem"])
        .args([
            "--pi-kernel",
            "in/Image",
            "--pi-initramfs",
            "in/initramfs.cpio",
        ])
        .args(["--pi-device-trees", "dtb", "--pi-firmware", "fw"])
        .args(["--pi-armstub", "in/bl31.bin"])
        .args(extra)
        .arg("stage1-aarch64.efi")
        .assert()
}

#[test]
fn a_release_carries_the_pi_pair_reproducibly_and_verify_checks_it() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    setup(a.path());
    sign_stage1(a.path())
        .success()
        .stdout(predicate::str::contains("rpi4-stage1.img"))
        .stdout(predicate::str::contains("rpi4-stage1.sig"))
        .stdout(predicate::str::contains("rpi5").not());
    imgsign(a.path())
        .args(["verify", "--repo", "repo", "--pi-key", "pubkey.bin"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "hash line and rsa2048 signature OK",
        ));
    imgsign(a.path())
        .args(["verify", "--repo", "repo", "--pi-key", "pi.pub.pem"])
        .assert()
        .success();

    // Same inputs, key and SOURCE_DATE_EPOCH on another machine: same bytes.
    setup(b.path());
    std::fs::copy(a.path().join("pi.pem"), b.path().join("pi2.pem")).unwrap();
    std::fs::remove_file(b.path().join("pi.pem")).unwrap();
    std::fs::rename(b.path().join("pi2.pem"), b.path().join("pi.pem")).unwrap();
    sign_stage1(b.path()).success();
    for name in ["rpi4-stage1.img", "rpi4-stage1.sig"] {
        let read = |d: &Path| std::fs::read(d.join("repo/targets").join(name));
        let found = |d: &Path| {
            std::fs::read_dir(d.join("repo/targets"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().ends_with(name))
                .map(|p| std::fs::read(p).unwrap())
                .or_else(|| read(d).ok())
                .unwrap_or_else(|| panic!("{name} not in the repository"))
        };
        assert_eq!(found(a.path()), found(b.path()), "{name} differs");
    }
    let sig = std::fs::read_dir(a.path().join("repo/targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("rpi4-stage1.sig"))
        .unwrap();
    let sig = std::fs::read_to_string(sig).unwrap();
    assert!(sig.contains(&format!("\nts: {EPOCH}\n")), "{sig}");

    // A Pi seen to boot a newer pair: this one is now a replay.
    imgsign(a.path())
        .args(["verify", "--repo", "repo", "--pi-key", "pubkey.bin"])
        .args(["--pi-not-before", "1767225601"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("rpi4-stage1.img"));
    // Another Pi key: refused.
    imgsign(a.path())
        .args(["pi-key", "generate", "other.pem"])
        .assert()
        .success();
    imgsign(a.path())
        .args(["pi-key", "export", "other.pem", "--pubkey-bin", "other.bin"])
        .assert()
        .success();
    imgsign(a.path())
        .args(["verify", "--repo", "repo", "--pi-key", "other.bin"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("signature"));
}

/// The reference rack (no Pi nodes) as `dir/rack.yaml`.
fn reference_rack(dir: &Path) {
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../hardware/rack.yaml"),
        dir.join("rack.yaml"),
    )
    .unwrap();
}

#[test]
fn a_rack_without_pi_nodes_gets_no_pair() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path());
    reference_rack(d.path());
    sign_stage1(d.path())
        .success()
        .stdout(predicate::str::contains("rpi4").not());
}

#[test]
fn a_model_asked_for_gets_its_pair_whatever_the_rack_says() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path());
    reference_rack(d.path());
    sign_stage1_with(d.path(), &["--pi-model", "pi4"])
        .success()
        .stdout(predicate::str::contains("rpi4-stage1.img"))
        .stdout(predicate::str::contains("rpi5").not());
}

/// The library's pair for a Pi 4, from the same stand-in files.
fn pair(dir: &Path, key: &PiKey, at: i64) -> BTreeMap<String, Vec<u8>> {
    let inputs = PiInputs {
        kernel: dir.join("in/Image"),
        initramfs: dir.join("in/initramfs.cpio"),
        cmdline: "console=ttyAMA0 rdinit=/init".into(),
        device_trees: dir.join("dtb"),
        firmware: Some(dir.join("fw")),
        armstub: Some(dir.join("in/bl31.bin")),
    };
    let p = pipair::make_pair(PiModel::Pi4, &inputs, at, key).unwrap();
    BTreeMap::from([
        ("rpi4-stage1.img".to_string(), p.image),
        ("rpi4-stage1.sig".to_string(), p.sig.into_bytes()),
    ])
}

fn refused(targets: &BTreeMap<String, Vec<u8>>, key: &PiKey, last: Option<u32>) -> String {
    let last = last.map(|s| racklet_piboot::SigTimestamp::from_unix(s.into()).unwrap());
    let err = pipair::check_pairs(targets, key.public(), last).unwrap_err();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[test]
fn attacks_on_the_pair_are_refused() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path());
    let key = PiKey::load(d.path().join("pi.pem").to_str().unwrap()).unwrap();
    let good = pair(d.path(), &key, 1_767_225_600);
    pipair::check_pairs(&good, key.public(), None).unwrap();

    // 1. boot.img changed after signing (one byte of the kernel).
    let mut changed = good.clone();
    let img = changed.get_mut("rpi4-stage1.img").unwrap();
    let at = img.len() / 2;
    img[at] ^= 1;
    let why = refused(&changed, &key, None);
    assert!(why.contains("changed after signing"), "{why}");

    // 2. boot.sig signed by another RSA key (hash line right, signature not ours).
    let other = PiKey::generate(d.path().join("other.pem").to_str().unwrap()).unwrap();
    let forged = pair(d.path(), &other, 1_767_225_600);
    let why = refused(&forged, &key, None);
    assert!(why.contains("does not verify"), "{why}");

    // 3. A replayed older signed boot.img: ours, but older than one a Pi booted.
    let older = pair(d.path(), &key, 1_767_225_600 - 86_400);
    let why = refused(&older, &key, Some(1_767_225_600));
    assert!(why.contains("1767139200"), "{why}");
    // The same pair again is no replay.
    pipair::check_pairs(
        &good,
        key.public(),
        racklet_piboot::SigTimestamp::from_unix(1_767_225_600).ok(),
    )
    .unwrap();

    // 4. A boot.img whose FAT lies about a size, signed by our key (the
    // signer was fooled): the hash and signature pass, the FAT does not.
    let mut lying = good["rpi4-stage1.img"].clone();
    let entry = find_dir_entry(&lying, b"CMDLINE TXT").expect("cmdline.txt's entry");
    lying[entry + 28..entry + 32].copy_from_slice(&10_000_000u32.to_le_bytes());
    let ts = racklet_piboot::SigTimestamp::from_unix(1_767_225_600).unwrap();
    let sig = racklet_piboot::sig::sign_boot_img(&lying, ts, None, &key).unwrap();
    let lies = BTreeMap::from([
        ("rpi4-stage1.img".to_string(), lying),
        ("rpi4-stage1.sig".to_string(), sig.encode().into_bytes()),
    ]);
    let why = refused(&lies, &key, None);
    assert!(why.contains("claims 10000000 bytes"), "{why}");

    // 5. Half a pair.
    let mut half = good.clone();
    half.remove("rpi4-stage1.sig");
    let why = refused(&half, &key, None);
    assert!(why.contains("one half"), "{why}");
}

/// The offset of the 8.3 directory entry named `name` (11 bytes).
fn find_dir_entry(image: &[u8], name: &[u8; 11]) -> Option<usize> {
    (0..image.len().saturating_sub(32))
        .step_by(32)
        .find(|&i| &image[i..i + 11] == name)
}
