//! Signing roles and checking their signatures against a root.
//!
//! imgsign writes Ed25519 keys only, so it verifies Ed25519 itself (strict
//! verification: no malleable signatures); `imgsign verify` loads
//! repositories with tough instead, an independent implementation.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::Path;

use serde::Serialize;
use tough::schema::{
    decoded::{Decoded, Hex},
    Hashes, Metafile, Role, RoleType, Root, Signature, Signed,
};

use crate::error::{Error, Result};
use crate::signer::SigningKeyPair;

/// Hex key ids authorized for `role` in `root`.
pub fn role_key_ids(root: &Root, role: RoleType) -> Vec<String> {
    root.roles
        .get(&role)
        .map(|r| r.keyids.iter().map(hex::encode).collect())
        .unwrap_or_default()
}

/// Counts the valid signatures over `signed` by distinct keys that `root`
/// authorizes for `T`'s role; returns `(valid, threshold)`.
///
/// imgsign writes Ed25519 keys only, so it verifies Ed25519 itself
/// (strict verification: no malleable signatures); a signature by any other
/// key type does not count. `imgsign verify` loads repositories with tough
/// instead, an independent implementation.
pub fn count_valid<T: Role + Serialize>(root: &Root, signed: &Signed<T>) -> Result<(u64, u64)> {
    let role_keys = root.roles.get(&T::TYPE).ok_or_else(|| Error::MissingRole {
        role: T::TYPE.to_string(),
    })?;
    let msg = signed.signed.canonical_form()?;
    // Counted by public key, not by key id: one key listed under two ids
    // (same key, extra fields) must not meet a threshold of two.
    let mut valid = std::collections::HashSet::new();
    for sig in &signed.signatures {
        if !role_keys.keyids.contains(&sig.keyid) {
            continue;
        }
        let Some(key) = root.keys.get(&sig.keyid) else {
            continue;
        };
        let Some(public) = crate::signer::ed25519_public(key) else {
            continue;
        };
        if valid.contains(&public) {
            continue;
        }
        let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&public) else {
            continue;
        };
        let Ok(s) = ed25519_dalek::Signature::from_slice(sig.sig.as_ref()) else {
            continue;
        };
        if vk.verify_strict(&msg, &s).is_ok() {
            valid.insert(public);
        }
    }
    Ok((valid.len() as u64, role_keys.threshold.get()))
}

/// Checks a root's key lists: every listed id has a key, only Ed25519 keys,
/// and no public key appears twice (under two ids it would count twice
/// towards a threshold in clients that count by id).
pub fn check_root_keys(root: &Root) -> Result<()> {
    let mut seen: std::collections::HashMap<[u8; 32], String> = Default::default();
    for (id, key) in &root.keys {
        let public = crate::signer::ed25519_public(key).ok_or_else(|| Error::NotEd25519 {
            key_id: hex::encode(id),
        })?;
        if let Some(other) = seen.insert(public, hex::encode(id)) {
            return Err(Error::DuplicateKey {
                first: other,
                second: hex::encode(id),
            });
        }
    }
    for (role, rk) in &root.roles {
        for id in &rk.keyids {
            if !root.keys.contains_key(id) {
                return Err(Error::UndefinedKey {
                    role: role.to_string(),
                    key_id: hex::encode(id),
                });
            }
        }
    }
    Ok(())
}

/// True if the root trusts any published example key, for any role.
pub fn trusts_example_keys(root: &Root) -> Option<String> {
    root.keys
        .values()
        .map(crate::signer::canonical_key_id)
        .find(|id| crate::signer::danger::is_insecure_example_key_id(id))
}

/// Checks that `signed` carries at least the threshold of valid signatures
/// that `root` requires for its role.
pub fn check_threshold<T: Role + Serialize>(
    root: &Root,
    signed: &Signed<T>,
    path: &Path,
) -> Result<()> {
    // tough (and so stage1) refuses a file that carries two signatures with
    // the same key id; never publish one.
    let mut ids = std::collections::HashSet::new();
    for sig in &signed.signatures {
        if !ids.insert(&sig.keyid) {
            return Err(Error::Tampered {
                path: path.to_owned(),
                reason: format!("signed twice with key id {}", hex::encode(&sig.keyid)),
            });
        }
    }
    let (valid, threshold) = count_valid(root, signed)?;
    if valid < threshold {
        return Err(Error::Threshold {
            path: path.to_owned(),
            role: T::TYPE.to_string(),
            threshold,
            valid,
        });
    }
    Ok(())
}

/// Signs `role` with every key in `keys` that `root` authorizes for it, and
/// checks that the result meets the role's threshold (for root, the caller
/// checks: a root may be signed in several sittings).
pub fn sign_role<T: Role + Serialize>(
    role: T,
    root: &Root,
    keys: &[&SigningKeyPair],
) -> Result<Signed<T>> {
    let mut signed = Signed {
        signed: role,
        signatures: Vec::new(),
    };
    add_signatures(&mut signed, root, keys)?;
    if T::TYPE != RoleType::Root {
        check_threshold(root, &signed, Path::new(&signed.signed.filename(true)))?;
    }
    Ok(signed)
}

/// Adds signatures by `keys` (those authorized for the role by `root`) to
/// `signed`, replacing any earlier signature by the same key. Errors if none
/// of the keys is authorized.
pub fn add_signatures<T: Role + Serialize>(
    signed: &mut Signed<T>,
    root: &Root,
    keys: &[&SigningKeyPair],
) -> Result<usize> {
    let allowed = role_key_ids(root, T::TYPE);
    let msg = signed.signed.canonical_form()?;
    let mut added = 0;
    for key in keys {
        if !allowed.iter().any(|k| k == key.key_id()) {
            continue;
        }
        let sig = key.sign_bytes(&msg)?;
        let keyid: Decoded<Hex> = hex::decode(key.key_id()).expect("key ids are hex").into();
        signed.signatures.retain(|s| s.keyid != keyid);
        signed.signatures.push(Signature {
            keyid,
            sig: sig.into(),
        });
        added += 1;
    }
    if added == 0 {
        return Err(Error::NoKeyForRole {
            role: T::TYPE.to_string(),
            allowed: if allowed.is_empty() {
                "none".into()
            } else {
                allowed.join(", ")
            },
        });
    }
    Ok(added)
}

/// A metafile entry (version, length, sha256) describing `bytes`.
pub fn metafile(version: NonZeroU64, bytes: &[u8]) -> Metafile {
    use sha2::Digest;
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: sha2::Sha256::digest(bytes).to_vec().into(),
            _extra: HashMap::new(),
        }),
        version,
        _extra: HashMap::new(),
    }
}
