//! Shared test fixtures: an RSA-2048 test key (made per run, never kept),
//! a sample stage1 `boot.img`, and a gate for tests that need a tool.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use racklet_piboot::bootfiles::{cmdline_txt, config_txt, PiModel, Stage1Files};
use racklet_piboot::fat_write::{write_boot_img, BootFile, BootImgOptions, FatTime};
use racklet_piboot::key::PiPublicKey;
use racklet_piboot::sig::BootImgSigner;
use racklet_piboot::BootPath;

/// An RSA-2048 key pair standing in for imgsign's Pi key role.
pub struct TestKey(pub RsaKeyPair);

#[derive(Debug, thiserror::Error)]
#[error("test signer failed")]
pub struct SignFailed;

impl TestKey {
    pub fn generate() -> Self {
        Self(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }

    pub fn public(&self) -> PiPublicKey {
        PiPublicKey::from_pkcs1_der(self.0.public_key().as_ref()).unwrap()
    }

    /// PKCS#8 PEM, for openssl.
    pub fn private_pem(&self) -> String {
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&self.0).unwrap();
        pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref()))
    }
}

impl BootImgSigner for TestKey {
    type Error = SignFailed;
    fn sign_rsa2048_sha256(&self, image: &[u8]) -> Result<Vec<u8>, SignFailed> {
        self.0.sign_rsa2048_sha256(image).map_err(|_| SignFailed)
    }
}

pub fn p(s: &str) -> BootPath {
    BootPath::new(s).unwrap()
}

/// Deterministic filler of `len` bytes, different per `seed`.
pub fn filler(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// The files of a Pi 4 stage1 `boot.img`, with stand-in binaries.
pub fn pi4_files() -> Vec<(BootPath, Vec<u8>)> {
    let files = Stage1Files::racklet(PiModel::Pi4);
    vec![
        (p("start4.elf"), filler(300_000, 1)),
        (p("fixup4.dat"), filler(5_399, 2)),
        (
            p("config.txt"),
            config_txt(PiModel::Pi4, &files).unwrap().into_bytes(),
        ),
        (
            p("cmdline.txt"),
            cmdline_txt("console=ttyAMA0 rdinit=/init")
                .unwrap()
                .into_bytes(),
        ),
        (files.kernel.clone(), filler(700_000, 3)),
        (files.initramfs.clone(), filler(400_000, 4)),
        (files.device_tree.clone(), filler(27_386, 5)),
        (p("bl31.bin"), filler(57_459, 6)),
    ]
}

pub const EPOCH: i64 = 1_734_010_524;

pub fn options() -> BootImgOptions {
    BootImgOptions::racklet(FatTime::from_unix(EPOCH).unwrap())
}

pub fn build(files: &[(BootPath, Vec<u8>)]) -> Vec<u8> {
    let entries: Vec<BootFile<'_>> = files
        .iter()
        .map(|(path, data)| BootFile { path, data })
        .collect();
    write_boot_img(&entries, &options()).unwrap()
}

/// `Some(path)` when `tool` runs; otherwise prints the skip line.
pub fn tool(tool: &str, test: &str) -> Option<PathBuf> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if found.is_none() {
        eprintln!("{test}: skipped: needs {tool}");
    }
    found
}
