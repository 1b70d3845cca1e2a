//! The model's checks on real files: a pair made and signed as imgsign
//! makes it, then attacked. Every refusal leaves the floor and the output
//! directory as they were.

use std::path::Path;

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use racklet_piboot::bootfiles::{cmdline_txt, config_txt, gzip_kernel, PiModel, Stage1Files};
use racklet_piboot::eeprom::{EepromConfig, HttpHost, HttpPath, Transport};
use racklet_piboot::fat_write::{write_boot_img, BootFile, BootImgOptions, FatTime};
use racklet_piboot::key::PiPublicKey;
use racklet_piboot::sig::sign_boot_img;
use racklet_piboot::{BootPath, SigTimestamp};
use racklet_pimodel::{unpack, Eeprom, Pair, TS_FILE};

/// A Pi secure-boot key for one test.
struct Key(RsaKeyPair);

impl Key {
    fn new() -> Key {
        Key(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }
    fn public(&self) -> PiPublicKey {
        PiPublicKey::from_pkcs1_der(self.0.public_key().as_ref()).unwrap()
    }
}

fn p(s: &str) -> BootPath {
    BootPath::new(s).unwrap()
}

/// A Pi 4 boot.img's files; `drop` leaves one out.
fn image(drop: Option<&str>, ts: i64) -> Vec<u8> {
    let names = Stage1Files::racklet(PiModel::Pi4);
    let kernel: Vec<u8> = (0..400_000u32).map(|i| (i % 253) as u8).collect();
    let files: Vec<(BootPath, Vec<u8>)> = vec![
        (p("start4.elf"), vec![1; 3000]),
        (p("fixup4.dat"), vec![2; 300]),
        (
            p("config.txt"),
            config_txt(PiModel::Pi4, &names).unwrap().into_bytes(),
        ),
        (
            p("cmdline.txt"),
            cmdline_txt("console=ttyAMA0 panic=-1")
                .unwrap()
                .into_bytes(),
        ),
        (names.kernel.clone(), gzip_kernel(&kernel)),
        (names.initramfs.clone(), vec![4; 5000]),
        (names.device_tree.clone(), vec![5; 700]),
        (p("bl31.bin"), vec![6; 900]),
    ]
    .into_iter()
    .filter(|(n, _)| Some(n.to_string().as_str()) != drop)
    .collect();
    let entries: Vec<BootFile<'_>> = files
        .iter()
        .map(|(path, data)| BootFile { path, data })
        .collect();
    write_boot_img(
        &entries,
        &BootImgOptions::racklet(FatTime::from_unix(ts).unwrap()),
    )
    .unwrap()
}

fn pair(key: &Key, image: Vec<u8>, ts: i64) -> Pair {
    let sig = sign_boot_img(&image, SigTimestamp::from_unix(ts).unwrap(), None, &key.0).unwrap();
    Pair {
        sig: sig.encode().into_bytes(),
        image,
    }
}

fn eeprom(key: &Key) -> Eeprom {
    Eeprom {
        config: EepromConfig::signed_http_boot(
            HttpHost::new("10.197.0.2").unwrap(),
            HttpPath::new("rpi4").unwrap(),
            Transport::PlainHttp,
        ),
        key: key.public(),
        ca_der: None,
    }
}

const TS: i64 = 1_767_225_600;

fn floor(state: &Path) -> Option<String> {
    std::fs::read_to_string(state.join(TS_FILE)).ok()
}

#[test]
fn a_good_pair_is_unpacked_and_raises_the_floor() {
    let key = Key::new();
    let d = tempfile::tempdir().unwrap();
    let (state, out) = (d.path().join("state"), d.path().join("out"));
    let good = pair(&key, image(None, TS), TS);
    let booted = unpack(&eeprom(&key), &good, &state, &out).unwrap();
    assert_eq!(booted.model, PiModel::Pi4);
    assert_eq!(booted.cmdline, "console=ttyAMA0 panic=-1");
    assert_eq!(booted.files, 8);
    assert_eq!(booted.kernel, out.join("Image.gz"));
    assert!(std::fs::read(&booted.kernel)
        .unwrap()
        .starts_with(&[0x1f, 0x8b]));
    assert_eq!(std::fs::read(&booted.initramfs).unwrap(), vec![4; 5000]);
    assert_eq!(floor(&state).unwrap(), format!("{TS}\n"));
    use sha2::Digest;
    assert_eq!(
        booted.sha256,
        <[u8; 32]>::from(sha2::Sha256::digest(&good.image))
    );
    // The same pair again (a reboot) is fine.
    unpack(&eeprom(&key), &good, &state, &out).unwrap();
}

/// Each attack is refused with its reason, and nothing is written.
#[test]
fn attacks_are_refused_and_nothing_is_written() {
    let key = Key::new();
    let other = Key::new();
    let d = tempfile::tempdir().unwrap();
    let (state, out) = (d.path().join("state"), d.path().join("out"));
    // A newer pair was accepted before: its ts is the floor.
    unpack(
        &eeprom(&key),
        &pair(&key, image(None, TS + 100), TS + 100),
        &state,
        &d.path().join("earlier"),
    )
    .unwrap();
    let mut tampered = pair(&key, image(None, TS + 200), TS + 200);
    let n = tampered.image.len() - 4000;
    tampered.image[n] ^= 1;
    let mut not_signed_boot = eeprom(&key);
    not_signed_boot.config.signed_boot = false;
    let cases: Vec<(&str, Eeprom, Pair, &str)> = vec![
        (
            "signed with another key",
            eeprom(&key),
            pair(&other, image(None, TS + 200), TS + 200),
            "signature",
        ),
        (
            "changed after signing",
            eeprom(&key),
            tampered,
            "changed after signing",
        ),
        (
            "an older signed pair replayed",
            eeprom(&key),
            pair(&key, image(None, TS), TS),
            "older",
        ),
        (
            "no TF-A in a Pi 4 image",
            eeprom(&key),
            pair(&key, image(Some("bl31.bin"), TS + 200), TS + 200),
            "bl31.bin",
        ),
        (
            "no GPU firmware",
            eeprom(&key),
            pair(&key, image(Some("start4.elf"), TS + 200), TS + 200),
            "start4.elf",
        ),
        (
            "an EEPROM without SIGNED_BOOT",
            not_signed_boot,
            pair(&key, image(None, TS + 200), TS + 200),
            "SIGNED_BOOT",
        ),
    ];
    for (what, eeprom, pair, why) in cases {
        let err = unpack(&eeprom, &pair, &state, &out).unwrap_err();
        let text = bootd_client::display_chain(&err);
        assert!(text.contains(why), "{what}: {text}");
        assert_eq!(floor(&state).unwrap(), format!("{}\n", TS + 100), "{what}");
        assert!(!out.exists(), "{what}: wrote into the output directory");
    }
}

#[test]
fn a_pinned_ca_must_be_the_embedded_one() {
    let key = Key::new();
    let mut e = eeprom(&key);
    e.config.transport = Transport::Https {
        ca_cert_sha256: [9; 32],
    };
    e.ca_der = Some(b"not the pinned certificate".to_vec());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(racklet_pimodel::fetch(&e)).unwrap_err();
    assert!(err.to_string().contains("HTTP_CACERT_HASH"), "{err}");
    e.ca_der = None;
    let err = rt.block_on(racklet_pimodel::fetch(&e)).unwrap_err();
    assert!(err.to_string().contains("no CA certificate"), "{err}");
}
