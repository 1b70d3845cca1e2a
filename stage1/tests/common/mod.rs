//! Shared fixtures for stage1's integration tests.
#![allow(dead_code)]

pub mod disk;
pub mod repo;
pub mod server;
pub mod sim;

use racklet_release::{ImageName, SecurityVersion};
use sha2::Digest;
use stage1::slots::SlotImage;

/// `len` pseudo-random bytes.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// The slot facts of `data` under `name`.
pub fn image_of(name: &str, version: &str, sv: u32, data: &[u8]) -> SlotImage {
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

/// unit-2 (group workers, x86_64, SMBus 0x21) booting in simulation: its
/// disk, root, state and hand-off record in `dir`, short test backoff.
/// Callers set `bootd`, `ca`, `identity` and `net` as their rig needs.
pub fn unit2_config(
    dir: &std::path::Path,
    disk: std::path::PathBuf,
    bmc_addr: String,
    root: std::path::PathBuf,
) -> stage1::boot::BootConfig {
    use std::time::Duration;
    stage1::boot::BootConfig {
        node: stage1::plan::NodeFacts {
            name: racklet_hardware::NodeName::new("unit-2").unwrap(),
            groups: ["workers".to_string()].into(),
            arch: racklet_hardware::Arch::X86_64,
            channel: racklet_release::Channel::new("stable").unwrap(),
        },
        disk,
        bmc_addr,
        smbus: 0x21,
        bootd: None,
        ca: None,
        identity: None,
        // The test server has no enrollment; tests with bootd enable it.
        enroll_wait: None,
        root,
        state_dir: dir.join("state"),
        mode: stage1::boot::Mode::Simulate {
            record: dir.join("handoff.json"),
        },
        net: bootd_client::NetConfig::default(),
        backoff: stage1::fetch::Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
            retries: 3,
        },
        default_cmdline: String::new(),
        set_clock: false,
        // stage1's default: the trusted state is kept on the slot disk too.
        state_on_disk: true,
        install_deadline: Duration::from_secs(60),
        confirm_token: None,
        // No device tree unless a test writes one (never the host's).
        devicetree: dir.join("devicetree"),
    }
}
