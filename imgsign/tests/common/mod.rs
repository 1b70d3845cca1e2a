//! Shared fixtures: real keys, real repositories in temporary directories.
#![allow(dead_code)]

pub mod softhsm;

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use imgsign::init::{RoleSpec, RootSpec};
use imgsign::keys::SigningKeyPair;
use imgsign::repo::{Expiries, Published};
use imgsign::sign::{ImageSpec, Placement};
use racklet_release::{Assignment, Channel, ImageKind, ImageName, ReleaseInfo, SecurityVersion};

/// A repository with its keys: root 2-of-3, targets, snapshot, timestamp.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root_keys: Vec<SigningKeyPair>,
    pub targets: SigningKeyPair,
    pub snapshot: SigningKeyPair,
    pub timestamp: SigningKeyPair,
}

pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

pub fn key_file(dir: &Path, name: &str) -> (PathBuf, SigningKeyPair) {
    let path = dir.join(name);
    let k = SigningKeyPair::generate_file(&path).unwrap();
    (path, k)
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::at(now(), &Expiries::default())
    }

    /// A repository signed as if at `when`.
    pub fn at(when: jiff::Timestamp, expiries: &Expiries) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let k = |n: &str| key_file(&dir.path().join("keys"), n).1;
        let root_keys = vec![k("root-1.pem"), k("root-2.pem"), k("root-3.pem")];
        let (targets, snapshot, timestamp) =
            (k("targets.pem"), k("snapshot.pem"), k("timestamp.pem"));
        let spec = RootSpec {
            root: RoleSpec {
                keys: root_keys.iter().map(|k| k.public()).collect(),
                threshold: NonZeroU64::new(2).unwrap(),
            },
            targets: RoleSpec {
                keys: vec![targets.public()],
                threshold: NonZeroU64::MIN,
            },
            snapshot: RoleSpec {
                keys: vec![snapshot.public()],
                threshold: NonZeroU64::MIN,
            },
            timestamp: RoleSpec {
                keys: vec![timestamp.public()],
                threshold: NonZeroU64::MIN,
            },
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

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    pub fn release_keys(&self) -> Vec<&SigningKeyPair> {
        vec![&self.targets, &self.snapshot, &self.timestamp]
    }

    /// Writes an image file of `len` pseudo-random bytes.
    pub fn image(&self, name: &str, len: usize, seed: u8) -> PathBuf {
        let path = self.dir.path().join(name);
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
            .collect();
        std::fs::write(&path, data).unwrap();
        path
    }

    pub fn release(&self, path: &Path, version: &str, sv: u32) -> imgsign::sign::ReleaseReport {
        self.try_release(path, version, sv, "stable").unwrap()
    }

    pub fn try_release(
        &self,
        path: &Path,
        version: &str,
        sv: u32,
        channel: &str,
    ) -> imgsign::Result<imgsign::sign::ReleaseReport> {
        imgsign::sign::sign_release(
            &self.repo(),
            &[spec(path, version, sv, channel)],
            Placement::Copy,
            &self.release_keys(),
            now(),
            &Expiries::default(),
            &mut |_| (),
        )
    }

    /// The published state (checked).
    pub fn published(&self) -> Published {
        Published::open(&self.repo()).unwrap()
    }

    /// Every file of the repository with its bytes, to show nothing changed.
    pub fn snapshot_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for sub in ["metadata", "targets"] {
            let mut entries: Vec<_> = std::fs::read_dir(self.repo().join(sub))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for p in entries {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
        out
    }
}

pub fn spec(path: &Path, version: &str, sv: u32, channel: &str) -> ImageSpec {
    ImageSpec {
        path: path.to_owned(),
        name: ImageName::new(path.file_name().unwrap().to_str().unwrap()).unwrap(),
        info: ReleaseInfo {
            kind: ImageKind::Os,
            version: version.parse().unwrap(),
            security_version: SecurityVersion(sv),
            arch: racklet_hardware::Arch::X86_64,
            channel: Channel::new(channel).unwrap(),
            assign: Assignment {
                groups: ["workers".to_string()].into(),
                ..Default::default()
            },
            downgrade: false,
        },
    }
}

/// Loads the repository with tough as a client would and checks every target.
pub fn client_verify(repo: &Path) -> imgsign::Result<imgsign::verify::Report> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let src = imgsign::verify::Source::dir(repo, None)?;
    rt.block_on(imgsign::verify::verify(&src, true))
}

/// True if `tool` can be used; otherwise prints the skip line, or panics
/// when CI demands every test (`RACKLET_REQUIRE_ALL=1`).
pub fn have(tool_ok: bool, what: &str) -> bool {
    if tool_ok {
        return true;
    }
    if std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("RACKLET_REQUIRE_ALL=1 but {what} is not available");
    }
    eprintln!("skipped: needs {what}");
    false
}

pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
