//! imgsign: the release manager's tool and library for Racklet's TUF
//! repository.
//!
//! It generates Ed25519 keys, initialises a repository (root, targets,
//! snapshot and timestamp roles with k-of-n thresholds and consistent
//! snapshots), signs releases whose targets carry the `racklet_release::ReleaseInfo`
//! that stage1 enforces, verifies a repository as a client would (with
//! tough), rotates root keys in offline ceremonies and refreshes the
//! timestamp (bootd's online role calls [`timestamp::refresh`]).
//!
//! Module map:
//! - [`signer`]: what a key does, whatever holds it (the [`signer::Signer`]
//!   trait, the [`signer::SigningKeyPair`] handle, key ids, the example-key
//!   denylist [`signer::danger`]); the two kinds that implement it,
//!   [`keyfile`] (PKCS#8 files) and `pkcs11` (keys in a token), know only
//!   the trait; [`keys`] picks the kind a key spec names.
//! - the signed per-image facts (kind, version, security version, arch,
//!   channel, assignment) are the `racklet-release` contract crate
//!   (`imgsign/release`), which the node's code reads without this crate.
//! - [`repo`]: on-disk layout, signing and checking roles, atomic publish.
//! - [`pipair`]: the Raspberry Pi `boot.img` + `boot.sig` of a release.
//! - [`trust`]: the pinned root and versions, kept outside the repository.
//! - [`init`], [`sign`], [`rootkeys`], [`timestamp`], [`verify`], [`status`]:
//!   the operations behind each command.
#![forbid(unsafe_code)]

pub mod error;
pub mod init;
pub mod keyfile;
pub mod keys;
pub mod pipair;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub mod repo;
pub mod rootkeys;
pub mod sign;
pub mod signer;
pub mod staged;
pub mod status;
pub mod timestamp;
pub mod trust;
pub mod verify;

pub use error::{Error, Result};
