//! Real peers: openssl checks our signatures and makes signatures we
//! check; dosfstools and mtools read our images; our reader reads theirs.
//! Each test prints "skipped: needs TOOL" when the tool is missing.

mod common;

use std::fs;
use std::process::Command;

use common::*;
use racklet_piboot::fat_read::FatType;
use racklet_piboot::sig::{sign_boot_img, verify_boot_img, BootSig, SigTimestamp};
use racklet_piboot::BootImg;

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn openssl_verifies_our_boot_sig_signature() {
    let Some(openssl) = tool("openssl", "openssl_verifies_our_boot_sig_signature") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::generate();
    let image = build(&pi4_files());
    let sig = sign_boot_img(&image, SigTimestamp::from_unix(EPOCH).unwrap(), None, &key).unwrap();
    fs::write(dir.path().join("boot.img"), &image).unwrap();
    fs::write(dir.path().join("sig.bin"), sig.rsa2048().unwrap()).unwrap();
    fs::write(dir.path().join("public.pem"), key.public().to_pem()).unwrap();
    // What rpi-eeprom-digest -v runs.
    let out = run(Command::new(&openssl).current_dir(dir.path()).args([
        "dgst",
        "-sha256",
        "-verify",
        "public.pem",
        "-signature",
        "sig.bin",
        "boot.img",
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");
    // And openssl reads our PEM as the same key.
    let out = run(Command::new(&openssl).current_dir(dir.path()).args([
        "rsa",
        "-pubin",
        "-in",
        "public.pem",
        "-noout",
        "-modulus",
    ]));
    let modulus = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        modulus.trim(),
        format!("Modulus={}", hex::encode_upper(key.public().modulus()))
    );
}

#[test]
fn we_verify_a_signature_openssl_made_the_way_rpi_eeprom_digest_does() {
    let Some(openssl) = tool("openssl", "we_verify_a_signature_openssl_made") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f);
    run(Command::new(&openssl)
        .args(["genrsa", "-out"])
        .arg(d("private.pem"))
        .arg("2048"));
    run(Command::new(&openssl)
        .args(["rsa", "-pubout", "-in"])
        .arg(d("private.pem"))
        .arg("-out")
        .arg(d("public.pem")));
    let image = build(&pi4_files());
    fs::write(d("boot.img"), &image).unwrap();
    run(Command::new(&openssl)
        .args(["dgst", "-sign"])
        .arg(d("private.pem"))
        .args(["-sha256", "-out"])
        .arg(d("sig.bin"))
        .arg(d("boot.img")));
    // boot.sig as rpi-eeprom-digest assembles it from sha256sum and xxd -p.
    let sig_hex = hex::encode(fs::read(d("sig.bin")).unwrap());
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&image))
    };
    let text = format!("{sha}\nts: {EPOCH}\nrsa2048: {sig_hex}\n");
    let sig = BootSig::parse(text.as_bytes()).unwrap();
    let public =
        racklet_piboot::key::PiPublicKey::from_pem(&fs::read_to_string(d("public.pem")).unwrap())
            .unwrap();
    verify_boot_img(&image, &sig, &public).unwrap();
    assert_eq!(
        public.to_pem(),
        fs::read_to_string(d("public.pem")).unwrap()
    );
}

#[test]
fn fsck_fat_and_mtools_read_our_image() {
    let test = "fsck_fat_and_mtools_read_our_image";
    let (Some(fsck), Some(mdir), Some(mcopy)) = (
        tool("fsck.fat", test),
        tool("mdir", test),
        tool("mcopy", test),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("boot.img");
    let files = pi4_files();
    fs::write(&img, build(&files)).unwrap();
    let out = run(Command::new(&fsck).arg("-n").arg(&img));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        !report.contains("differ") && !report.contains("ERROR"),
        "{report}"
    );
    let listing = run(Command::new(&mdir)
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&img)
        .args(["-/", "::"]));
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("Volume in drive : is RACKLET"),
        "{listing}"
    );
    for (path, data) in &files {
        let out = dir.path().join("out");
        run(Command::new(&mcopy)
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-n", "-i"])
            .arg(&img)
            .arg(format!("::{path}"))
            .arg(&out));
        assert_eq!(&fs::read(&out).unwrap(), data, "mcopy of {path}");
    }
}

#[test]
fn our_reader_reads_images_mkfs_fat_and_mcopy_made() {
    let test = "our_reader_reads_images_mkfs_fat_and_mcopy_made";
    let (Some(mkfs), Some(mcopy), Some(mmd)) = (
        tool("mkfs.fat", test),
        tool("mcopy", test),
        tool("mmd", test),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a-long-file-name.dtb");
    let small = dir.path().join("CONFIG.TXT");
    let data = filler(150_000, 3);
    fs::write(&src, &data).unwrap();
    fs::write(&small, b"arm_64bit=1\n").unwrap();
    for (fat, kib, want) in [
        ("12", "2048", FatType::Fat12),
        ("16", "40960", FatType::Fat16),
        ("32", "65536", FatType::Fat32),
    ] {
        let img = dir.path().join(format!("fat{fat}.img"));
        let _ = fs::remove_file(&img);
        run(Command::new(&mkfs)
            .args(["-C", "-F", fat, "-i", "12345678", "-n", "PEER"])
            .arg(&img)
            .arg(kib));
        let m = |c: &std::path::Path| {
            let mut cmd = Command::new(c);
            cmd.env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(&img);
            cmd
        };
        run(m(&mmd).arg("::overlays"));
        run(m(&mcopy).arg(&src).arg("::overlays/"));
        run(m(&mcopy).arg(&small).arg("::"));
        let bytes = fs::read(&img).unwrap();
        let read = BootImg::read(&bytes).unwrap_or_else(|e| panic!("FAT{fat}: {e}"));
        assert_eq!(read.fat_type(), want);
        let paths: Vec<&str> = read.files().iter().map(|f| f.path()).collect();
        assert_eq!(
            paths,
            ["CONFIG.TXT", "overlays/a-long-file-name.dtb"],
            "FAT{fat}"
        );
        let f = read.file("overlays/a-long-file-name.dtb").unwrap();
        assert_eq!(read.contents(f), data, "FAT{fat}");
    }
}
