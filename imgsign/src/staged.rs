//! Staged metadata files: a role built on one machine, signed by its key
//! holders on theirs, merged, then published. Used for root ceremonies
//! ([`crate::rootkeys`]) and for targets roles with a k-of-n threshold
//! ([`crate::sign::stage_release`], [`crate::sign::publish_targets`]).
//!
//! A signature covers only the canonical form of `signed`, so a staged file
//! can travel by USB stick or e-mail; merging refuses copies whose `signed`
//! parts differ by a single byte.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tough::schema::{Role, Signed};

use crate::error::{Error, Result};
use crate::repo;
use racklet_fsio as fsio;

/// Reads a staged file.
pub fn read<T: DeserializeOwned + Role>(path: &Path) -> Result<Signed<T>> {
    repo::read_signed(path)
}

/// Writes a staged file (atomically; it may replace an earlier copy).
pub fn write<T: Serialize + Role>(path: &Path, signed: &Signed<T>) -> Result<()> {
    Ok(fsio::write_atomic(
        path,
        &repo::to_bytes(signed)?,
        fsio::Mode::Public,
    )?)
}

/// Merges the signatures of several copies of the same staged role.
pub fn combine<T: Role + Serialize + Clone>(copies: &[(PathBuf, Signed<T>)]) -> Result<Signed<T>> {
    let Some((_, first)) = copies.first() else {
        return Err(Error::NothingToCombine {
            role: T::TYPE.to_string(),
        });
    };
    let canonical = first.signed.canonical_form()?;
    let mut out = first.clone();
    for (path, copy) in &copies[1..] {
        if copy.signed.canonical_form()? != canonical {
            return Err(Error::StagedMismatch {
                role: T::TYPE.to_string(),
                path: path.clone(),
            });
        }
        for sig in &copy.signatures {
            if !out.signatures.iter().any(|s| s.keyid == sig.keyid) {
                out.signatures.push(sig.clone());
            }
        }
    }
    Ok(out)
}

/// The `_type` of a staged file (`root`, `targets`, …), to dispatch on.
pub fn role_type(path: &Path) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        signed: ProbeSigned,
    }
    #[derive(serde::Deserialize)]
    struct ProbeSigned {
        #[serde(rename = "_type")]
        ty: String,
    }
    let bytes = repo::read_metadata(path)?;
    let p: Probe = serde_json::from_slice(&bytes).map_err(|source| Error::ParseMetadata {
        path: path.to_owned(),
        role: "staged".into(),
        source,
    })?;
    Ok(p.signed.ty)
}
