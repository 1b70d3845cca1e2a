//! Shared fixtures for stage1's integration tests.
#![allow(dead_code)]

pub mod disk;
pub mod repo;
pub mod server;
pub mod sim;

use imgsign::release::{ImageName, SecurityVersion};
use sha2::Digest;
use stage1::slots::SlotImage;

/// `len` pseudo-random bytes.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// The slot facts of `data` under `name`.
pub fn image_of(name: &str, version: &str, sv: u64, data: &[u8]) -> SlotImage {
    SlotImage {
        name: ImageName::new(name).unwrap(),
        version: version.parse().unwrap(),
        security_version: SecurityVersion(sv),
        sha256: sha2::Sha256::digest(data).into(),
        length: data.len() as u64,
    }
}

/// True if `ok`; otherwise prints the skip line, or panics when CI demands
/// every test (`RACKLET_REQUIRE_ALL=1`).
pub fn have(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("RACKLET_REQUIRE_ALL=1 but {what} is not available");
    }
    eprintln!("skipped: needs {what}");
    false
}
