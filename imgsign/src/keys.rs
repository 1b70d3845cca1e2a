//! Naming a key: a key spec is a PKCS#8 file path or, with the `pkcs11`
//! feature, a `pkcs11:` URI (RFC 7512). This module decides which kind a
//! spec names and hands it to that kind ([`crate::keyfile`] or
//! [`crate::pkcs11`]); what a key then does is [`crate::signer`]'s, whose
//! names are re-exported here.

use std::path::Path;

use tough::schema::key::Key;

use crate::error::{Error, Result};
use crate::keyfile;
pub use crate::signer::{
    canonical_key_id, danger, ed25519_public, ed25519_tuf_key, key_id_hex, PiKey, PiSigner, Signer,
    SigningKeyPair,
};

/// Getting a key of either kind.
impl SigningKeyPair {
    /// Generates a new random Ed25519 key (held in memory; see
    /// [`SigningKeyPair::write_new`]).
    pub fn generate() -> SigningKeyPair {
        keyfile::generate()
    }

    /// Generates a key and writes it to a new file (0600).
    pub fn generate_file(path: &Path) -> Result<SigningKeyPair> {
        keyfile::generate_file(path)
    }

    /// Loads a key: a PKCS#8 file (PEM or DER; see [`keyfile::load`]) or,
    /// with the `pkcs11` feature, a `pkcs11:` URI naming a key in a token.
    pub fn load(spec: &str) -> Result<SigningKeyPair> {
        if spec.starts_with("pkcs11:") {
            #[cfg(feature = "pkcs11")]
            return crate::pkcs11::load(spec);
            #[cfg(not(feature = "pkcs11"))]
            return Err(Error::BadKey {
                path: spec.into(),
                reason: "this imgsign was built without the `pkcs11` feature".into(),
            });
        }
        keyfile::load(Path::new(spec))
    }
}

/// Getting the Pi secure-boot key of either kind.
impl PiKey {
    /// Generates a new RSA-2048 key: into a new file (PKCS#8 PEM, 0600,
    /// never overwriting), or, given a `pkcs11:` URI, inside the token.
    pub fn generate(spec: &str) -> Result<PiKey> {
        if spec.starts_with("pkcs11:") {
            #[cfg(feature = "pkcs11")]
            return crate::pkcs11::generate_pi(spec);
            #[cfg(not(feature = "pkcs11"))]
            return Err(no_pkcs11(spec));
        }
        keyfile::generate_pi(Path::new(spec))
    }

    /// Loads the key a file path or `pkcs11:` URI names.
    pub fn load(spec: &str) -> Result<PiKey> {
        if spec.starts_with("pkcs11:") {
            #[cfg(feature = "pkcs11")]
            return crate::pkcs11::load_pi(spec);
            #[cfg(not(feature = "pkcs11"))]
            return Err(no_pkcs11(spec));
        }
        keyfile::load_pi(Path::new(spec))
    }
}

#[cfg(not(feature = "pkcs11"))]
fn no_pkcs11(spec: &str) -> Error {
    Error::BadKey {
        path: spec.into(),
        reason: "this imgsign was built without the `pkcs11` feature".into(),
    }
}

/// Loads a *public* key: a TUF key JSON file (`imgsign key public` writes
/// one), or a private key file / URI whose public half is taken.
pub fn load_public(spec: &str) -> Result<Key> {
    if !spec.starts_with("pkcs11:") {
        let path = Path::new(spec);
        let bytes = racklet_fsio::read(path)?;
        if bytes.first() == Some(&b'{') {
            let key: Key = serde_json::from_slice(&bytes).map_err(|e| Error::BadKey {
                path: spec.into(),
                reason: format!("not a TUF public key JSON: {e}"),
            })?;
            if !matches!(key, Key::Ed25519 { .. }) {
                return Err(Error::BadKey {
                    path: spec.into(),
                    reason: "only ed25519 keys are supported".into(),
                });
            }
            return Ok(key);
        }
    }
    Ok(SigningKeyPair::load(spec)?.public())
}

/// The public key JSON (`{"keytype":"ed25519",…}`) for a key, as shared with
/// the other key holders before a ceremony.
pub fn public_json(key: &Key) -> String {
    let mut s = serde_json::to_string_pretty(key).expect("keys serialize");
    s.push('\n');
    s
}
