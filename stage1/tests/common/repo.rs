//! A real imgsign repository in a temporary directory (as in
//! imgsign/tests/common), with OS images whose facts the test chooses.
#![allow(dead_code)]

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use imgsign::init::{RoleSpec, RootSpec};
use imgsign::keys::SigningKeyPair;
use imgsign::repo::Expiries;
use imgsign::sign::{ImageSpec, Placement};
use racklet_hardware::Arch;
use racklet_release::{Assignment, Channel, ImageKind, ImageName, ReleaseInfo, SecurityVersion};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root_keys: Vec<SigningKeyPair>,
    pub targets: SigningKeyPair,
    pub snapshot: SigningKeyPair,
    pub timestamp: SigningKeyPair,
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::at(jiff::Timestamp::now(), &Expiries::default())
    }

    pub fn at(when: jiff::Timestamp, expiries: &Expiries) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let k = |n: &str| SigningKeyPair::generate_file(&dir.path().join("keys").join(n)).unwrap();
        let root_keys = vec![k("root-1.pem"), k("root-2.pem"), k("root-3.pem")];
        let (targets, snapshot, timestamp) =
            (k("targets.pem"), k("snapshot.pem"), k("timestamp.pem"));
        let role = |keys: Vec<tough::schema::key::Key>, t: u64| RoleSpec {
            keys,
            threshold: NonZeroU64::new(t).unwrap(),
        };
        let spec = RootSpec {
            root: role(root_keys.iter().map(|k| k.public()).collect(), 2),
            targets: role(vec![targets.public()], 1),
            snapshot: role(vec![snapshot.public()], 1),
            timestamp: role(vec![timestamp.public()], 1),
        };
        let signers = [
            &root_keys[0],
            &root_keys[1],
            &targets,
            &snapshot,
            &timestamp,
        ];
        imgsign::init::init(&dir.path().join("repo"), &spec, &signers, when, expiries).unwrap();
        Fixture {
            dir,
            root_keys,
            targets,
            snapshot,
            timestamp,
        }
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn root_file(&self) -> PathBuf {
        self.repo().join("metadata/1.root.json")
    }

    /// Signs a release of one image file `name` with `data`.
    pub fn release(
        &self,
        name: &str,
        data: &[u8],
        version: &str,
        sv: u32,
        arch: Arch,
        assign: Assignment,
    ) {
        self.release_at(
            name,
            data,
            version,
            sv,
            arch,
            assign,
            jiff::Timestamp::now(),
            &Expiries::default(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn release_at(
        &self,
        name: &str,
        data: &[u8],
        version: &str,
        sv: u32,
        arch: Arch,
        assign: Assignment,
        when: jiff::Timestamp,
        exp: &Expiries,
    ) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        let spec = ImageSpec {
            path: path.clone(),
            name: ImageName::new(name).unwrap(),
            info: ReleaseInfo {
                kind: ImageKind::Os,
                version: version.parse().unwrap(),
                security_version: SecurityVersion(sv),
                arch,
                channel: Channel::new("stable").unwrap(),
                assign,
                downgrade: false,
            },
        };
        imgsign::sign::sign_release(
            &self.repo(),
            &[spec],
            Placement::Copy,
            &[&self.targets, &self.snapshot, &self.timestamp],
            when,
            exp,
            &mut |_| (),
        )
        .unwrap();
    }

    /// A copy of the whole repository directory (to serve it later: a rollback).
    pub fn copy_to(&self, dst: &Path) {
        copy_dir(&self.repo(), dst);
    }
}

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

pub fn workers() -> Assignment {
    Assignment {
        groups: ["workers".to_string()].into(),
        ..Default::default()
    }
}

/// A UKI (no EFI stub) for `arch` whose `.linux` is a small ELF for `arch`.
pub fn uki(arch: Arch, cmdline: &str, seed: u8) -> Vec<u8> {
    let parts = racklet_images::uki::Parts {
        osrel: b"ID=racklet\n".to_vec(),
        cmdline: cmdline.as_bytes().to_vec(),
        uname: Vec::new(),
        linux: elf(arch, seed),
        initrd: vec![seed; 4096],
    };
    racklet_images::uki::build(arch, None, &parts).unwrap()
}

/// A minimal ELF64 executable header for `arch` (enough for `object`).
pub fn elf(arch: Arch, seed: u8) -> Vec<u8> {
    let machine: u16 = match arch {
        Arch::X86_64 => 62,
        Arch::Aarch64 => 183,
        Arch::Thumbv7em => 40,
    };
    let mut b = vec![0u8; 64];
    b[0..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // 64-bit
    b[5] = 1; // little endian
    b[6] = 1; // version
    b[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b[18..20].copy_from_slice(&machine.to_le_bytes());
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    b[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    b[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    b.extend(std::iter::repeat_n(seed, 4096));
    b
}

impl Fixture {
    /// As a compromised online server holding the snapshot and timestamp
    /// keys: publish snapshot `snap_v` naming the existing `targets_v`, and
    /// timestamp `ts_v`, in the repository at `dir`.
    pub fn forge_online(&self, dir: &Path, targets_v: u64, snap_v: u64, ts_v: u64) {
        let layout = imgsign::repo::Layout::new(dir);
        let root: tough::schema::Signed<tough::schema::Root> =
            serde_json::from_slice(&std::fs::read(layout.root(1)).unwrap()).unwrap();
        let targets_bytes = std::fs::read(layout.targets(targets_v)).unwrap();
        let expiries = Expiries::default();
        let keys = [&self.snapshot, &self.timestamp];
        let cx = imgsign::repo::SignContext {
            root: &root.signed,
            keys: &keys,
            now: jiff::Timestamp::now(),
            expiries: &expiries,
        };
        let nz = |v| NonZeroU64::new(v).unwrap();
        imgsign::repo::publish_snapshot_and_timestamp(
            &layout,
            &cx,
            nz(targets_v),
            &targets_bytes,
            nz(snap_v),
            nz(ts_v),
        )
        .unwrap();
    }
}
