//! Ed25519 key files: PKCS#8 PEM, created 0600, never overwritten, never
//! printed.
//!
//! A key file is the standard PKCS#8 `PRIVATE KEY` PEM that OpenSSL writes
//! (`openssl genpkey -algorithm ed25519`), so keys can be inspected and made
//! with ordinary tools. tough's own `parse_keypair` only reads PKCS#8 *DER*
//! for Ed25519, so imgsign implements tough's public `Sign` trait itself
//! (on [`SigningKeyPair`]) instead; PKCS#8 DER files are accepted too.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer as _, SigningKey};

use crate::error::{BoxError, Error, Result};
use crate::signer::{Signer, SigningKeyPair};
use racklet_fsio as fsio;

/// An Ed25519 key held in memory (read from a file, or generated).
struct FileKey(SigningKey);

impl Signer for FileKey {
    fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, BoxError> {
        Ok(self.0.sign(msg).to_bytes().to_vec())
    }

    fn to_pkcs8_pem(&self) -> Option<std::result::Result<Zeroizing<String>, BoxError>> {
        Some(
            self.0
                .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .map_err(|e| e.to_string().into()),
        )
    }
}

/// Generates a new random Ed25519 key.
pub fn generate() -> SigningKeyPair {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    SigningKeyPair::new(Box::new(FileKey(key)), "generated".into())
}

/// Generates a key and writes it to a new file (0600), see
/// [`SigningKeyPair::write_new`].
pub fn generate_file(path: &Path) -> Result<SigningKeyPair> {
    let mut key = generate();
    key.write_new(path)?;
    key.set_origin(path.display().to_string());
    Ok(key)
}

/// Loads a PKCS#8 key file (PEM or DER).
///
/// A key file readable by group or others is refused, except the published
/// example keys (which are public anyway, and which git checks out 0644).
pub fn load(path: &Path) -> Result<SigningKeyPair> {
    let bytes = fsio::read(path)?;
    let key = parse_ed25519(&bytes).map_err(|reason| Error::BadKey {
        path: path.display().to_string(),
        reason,
    })?;
    let pair = SigningKeyPair::new(Box::new(FileKey(key)), path.display().to_string());
    if pair.is_insecure_example() {
        tracing::warn!(
            key_id = %pair.key_id(),
            path = %path.display(),
            "using a published INSECURE example key: anyone can sign with it; demo channel only"
        );
    } else {
        let mode = std::fs::metadata(path)
            .map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::KeyPermissions {
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
    }
    Ok(pair)
}

fn parse_ed25519(bytes: &[u8]) -> std::result::Result<SigningKey, String> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if text.contains("-----BEGIN") {
            return SigningKey::from_pkcs8_pem(text).map_err(|e| {
                format!("not an Ed25519 PKCS#8 PEM private key ({e}); imgsign keys are made by `imgsign key generate`")
            });
        }
    }
    SigningKey::from_pkcs8_der(bytes)
        .map_err(|e| format!("not an Ed25519 PKCS#8 private key ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::danger;
    use tough::schema::key::Key;

    #[test]
    fn example_key_list_matches_keys_example() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "pem") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    name.starts_with("INSECURE-"),
                    "{name} must be marked INSECURE"
                );
                let k = load(&path).unwrap();
                assert!(k.is_insecure_example(), "{name} missing from the list");
                found.push(k.key_id().to_owned());
            }
        }
        found.sort();
        let mut listed: Vec<String> = danger::INSECURE_EXAMPLE_KEY_IDS
            .iter()
            .map(|s| s.to_string())
            .collect();
        listed.sort();
        assert_eq!(found, listed);
    }

    #[test]
    fn generate_write_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let k = generate();
        k.write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
        let l = load(&path).unwrap();
        assert_eq!(l.key_id(), k.key_id());
        assert!(!format!("{l:?}").contains(&text[30..60]));
        // Never overwritten.
        assert!(matches!(
            generate().write_new(&path),
            Err(Error::AlreadyExists { .. })
        ));
    }

    #[test]
    fn group_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        generate().write_new(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err();
        assert!(
            matches!(err, Error::KeyPermissions { mode: 0o644, .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_key_is_refused_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        fsio::write_new(
            &path,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            fsio::Mode::Secret,
        )
        .unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.to_string().contains("k.pem"), "{err}");
    }

    #[test]
    fn signature_verifies_with_tough_key() {
        let k = generate();
        let sig = k.sign_bytes(b"hello").unwrap();
        let Key::Ed25519 { keyval, .. } = k.public() else {
            panic!()
        };
        let vk =
            ed25519_dalek::VerifyingKey::from_bytes(keyval.public.as_ref().try_into().unwrap())
                .unwrap();
        vk.verify_strict(
            b"hello",
            &ed25519_dalek::Signature::from_slice(&sig).unwrap(),
        )
        .unwrap();
    }
}
