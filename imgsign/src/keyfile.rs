//! Key files: PKCS#8 PEM, created 0600, never overwritten, never printed.
//! Ed25519 for the TUF roles; RSA-2048 for the Pi secure-boot key
//! ([`generate_pi`], [`load_pi`]).
//!
//! A key file is the standard PKCS#8 `PRIVATE KEY` PEM that OpenSSL writes
//! (`openssl genpkey -algorithm ed25519`), so keys can be inspected and made
//! with ordinary tools. tough's own `parse_keypair` only reads PKCS#8 *DER*
//! for Ed25519, so imgsign implements tough's public `Sign` trait itself
//! (on [`SigningKeyPair`]) instead; PKCS#8 DER files are accepted too.
//!
//! The Pi key is generated and used through aws-lc-rs, the crypto library
//! the tree already has (rustls, tough and racklet-piboot's verifier use
//! it), whose RSA signing is constant-time. The `rsa` crate was not taken:
//! it is not in the tree, and its advisory RUSTSEC-2023-0071 (the Marvin
//! timing attack on its private-key operations) has no fixed release. The
//! file is the PKCS#8 `PRIVATE KEY` that `openssl genrsa` (OpenSSL 3)
//! writes; a PKCS#1 `RSA PRIVATE KEY` is read too, so an existing
//! rpi-eeprom key can be used.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer as _, SigningKey};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use racklet_piboot::key::PiPublicKey;

use crate::error::{BoxError, Error, Result};
use crate::signer::{PiKey, PiSigner, Signer, SigningKeyPair};
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
        check_private_mode(path)?;
    }
    Ok(pair)
}

/// Refuses a private key file that group or others may read.
fn check_private_mode(path: &Path) -> Result<()> {
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
    Ok(())
}

/// An RSA-2048 Pi secure-boot key held in memory.
struct FileRsaKey {
    key: aws_lc_rs::rsa::KeyPair,
    public: PiPublicKey,
}

impl FileRsaKey {
    fn new(key: aws_lc_rs::rsa::KeyPair) -> std::result::Result<Self, String> {
        let public = key.public_key();
        let public = PiPublicKey::from_components(
            public.modulus().big_endian_without_leading_zero(),
            public.exponent().big_endian_without_leading_zero(),
        )
        .map_err(|e| format!("not a key the Pi bootloader takes: {e}"))?;
        Ok(FileRsaKey { key, public })
    }
}

impl PiSigner for FileRsaKey {
    fn public_key(&self) -> &PiPublicKey {
        &self.public
    }

    fn sign_pkcs1_sha256(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, BoxError> {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key
            .sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
            .map_err(|_| "aws-lc refused to sign")?;
        Ok(sig)
    }

    fn to_pkcs8_pem(&self) -> Option<std::result::Result<Zeroizing<String>, BoxError>> {
        Some(
            self.key
                .as_der()
                .map(|der| {
                    let pem = pem_encode("PRIVATE KEY", der.as_ref());
                    Zeroizing::new(pem)
                })
                .map_err(|_| "aws-lc cannot encode the key as PKCS#8".into()),
        )
    }
}

/// PEM with LF line ends, 64 columns.
fn pem_encode(label: &str, der: &[u8]) -> String {
    use ed25519_dalek::pkcs8::spki::der::pem::{encode_string, LineEnding};
    encode_string(label, LineEnding::LF, der).expect("a PEM label and DER always encode")
}

/// Generates a new RSA-2048 Pi secure-boot key and writes it to a new
/// file (0600, never overwriting).
pub fn generate_pi(path: &Path) -> Result<PiKey> {
    let key =
        aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| {
            Error::BadKey {
                path: path.display().to_string(),
                reason: "aws-lc could not generate an RSA-2048 key".into(),
            }
        })?;
    let key = FileRsaKey::new(key).map_err(|reason| Error::BadKey {
        path: path.display().to_string(),
        reason,
    })?;
    let mut pi = PiKey::new(Box::new(key), "generated".into());
    pi.write_new(path)?;
    pi.set_origin(path.display().to_string());
    Ok(pi)
}

/// Loads a Pi secure-boot key file: PKCS#8 (PEM or DER) or PKCS#1 PEM,
/// RSA-2048, mode 0600.
pub fn load_pi(path: &Path) -> Result<PiKey> {
    let bad = |reason: String| Error::BadKey {
        path: path.display().to_string(),
        reason,
    };
    let bytes = Zeroizing::new(fsio::read(path)?);
    check_private_mode(path)?;
    let der = match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN") => {
            let (label, der) =
                ed25519_dalek::pkcs8::spki::der::pem::decode_vec(text.trim().as_bytes())
                    .map_err(|e| bad(format!("not a PEM file ({e})")))?;
            if !matches!(label, "PRIVATE KEY" | "RSA PRIVATE KEY") {
                return Err(bad(format!(
                    "a PEM `{label}`; the Pi key is an RSA `PRIVATE KEY` (`imgsign pi-key generate`)"
                )));
            }
            Zeroizing::new(der)
        }
        _ => Zeroizing::new(bytes.to_vec()),
    };
    let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
        .or_else(|_| aws_lc_rs::rsa::KeyPair::from_der(&der))
        .map_err(|e| bad(format!("not an RSA private key ({e})")))?;
    if key.public_modulus_len() != 256 {
        return Err(bad(format!(
            "an RSA-{} key; the Pi bootloader checks RSA-2048 only",
            key.public_modulus_len() * 8
        )));
    }
    let key = FileRsaKey::new(key).map_err(bad)?;
    Ok(PiKey::new(Box::new(key), path.display().to_string()))
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
    fn pi_key_generate_load_sign() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pi.pem");
        let k = generate_pi(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(!format!("{k:?}").contains(&text[40..80]));
        let l = load_pi(&path).unwrap();
        assert_eq!(l.public(), k.public());
        let sig: [u8; 256] = l.sign_bytes(b"boot.img").unwrap().try_into().unwrap();
        k.public().verify_pkcs1_sha256(b"boot.img", &sig).unwrap();
        assert!(matches!(
            generate_pi(&path),
            Err(Error::AlreadyExists { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            load_pi(&path),
            Err(Error::KeyPermissions { mode: 0o640, .. })
        ));
    }

    #[test]
    fn an_ed25519_key_is_not_a_pi_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        generate().write_new(&path).unwrap();
        let err = load_pi(&path).unwrap_err();
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
