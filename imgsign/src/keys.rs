//! Signing keys: Ed25519 key files (PKCS#8 PEM, created 0600, never
//! overwritten, never printed) and the INSECURE example key set.
//!
//! A key file is the standard PKCS#8 `PRIVATE KEY` PEM that OpenSSL writes
//! (`openssl genpkey -algorithm ed25519`), so keys can be inspected and made
//! with ordinary tools. tough's own `parse_keypair` only reads PKCS#8 *DER*
//! for Ed25519, so imgsign implements tough's public [`Sign`] trait itself
//! instead; PKCS#8 DER files are accepted too.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer as _, SigningKey};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{Ed25519Key, Ed25519Scheme, Key};
use tough::sign::Sign;

use crate::error::{BoxError, Error, Result};
use racklet_fsio as fsio;

/// A private signing key. Its `Debug` shows the key id only.
pub struct SigningKeyPair {
    inner: Inner,
    key_id: String,
    origin: String,
}

enum Inner {
    Ed25519(SigningKey),
    #[cfg(feature = "pkcs11")]
    Pkcs11(crate::pkcs11::Pkcs11Key),
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("key_id", &self.key_id)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl SigningKeyPair {
    /// Generates a new random Ed25519 key.
    pub fn generate() -> SigningKeyPair {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        Self::from_ed25519(key, "generated".into())
    }

    /// Generates a key and writes it to a new file (0600), see [`Self::write_new`].
    pub fn generate_file(path: &Path) -> Result<SigningKeyPair> {
        let mut key = Self::generate();
        key.write_new(path)?;
        key.origin = path.display().to_string();
        Ok(key)
    }

    fn from_ed25519(key: SigningKey, origin: String) -> SigningKeyPair {
        let tuf = ed25519_tuf_key(key.verifying_key().as_bytes());
        let key_id = key_id_hex(&tuf);
        SigningKeyPair {
            inner: Inner::Ed25519(key),
            key_id,
            origin,
        }
    }

    #[cfg(feature = "pkcs11")]
    pub(crate) fn from_pkcs11(key: crate::pkcs11::Pkcs11Key, origin: String) -> SigningKeyPair {
        let tuf = ed25519_tuf_key(&key.public_key());
        let key_id = key_id_hex(&tuf);
        SigningKeyPair {
            inner: Inner::Pkcs11(key),
            key_id,
            origin,
        }
    }

    /// Loads a key: a PKCS#8 file (PEM or DER) or, with the `pkcs11`
    /// feature, a `pkcs11:` URI (RFC 7512) naming a key in a token.
    ///
    /// A key file readable by group or others is refused, except the
    /// published example keys (which are public anyway, and which git checks
    /// out 0644).
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
        let path = Path::new(spec);
        let bytes = fsio::read(path)?;
        let key = parse_ed25519(&bytes).map_err(|reason| Error::BadKey {
            path: spec.into(),
            reason,
        })?;
        let pair = Self::from_ed25519(key, path.display().to_string());
        if pair.is_insecure_example() {
            tracing::warn!(
                key_id = %pair.key_id,
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

    /// Writes the key as PKCS#8 PEM to a new file with mode 0600. An
    /// existing file is never overwritten.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        #[allow(irrefutable_let_patterns)]
        let Inner::Ed25519(key) = &self.inner
        else {
            return Err(Error::BadKey {
                path: path.display().to_string(),
                reason: "a key held in a token cannot be exported".into(),
            });
        };
        let pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| Error::BadKey {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(fsio::write_new(path, pem.as_bytes(), fsio::Mode::Secret)?)
    }

    /// The TUF key id (hex SHA-256 of the canonical public key object).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Where the key came from (path or URI), for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The TUF public key object.
    pub fn public(&self) -> Key {
        match &self.inner {
            Inner::Ed25519(k) => ed25519_tuf_key(k.verifying_key().as_bytes()),
            #[cfg(feature = "pkcs11")]
            Inner::Pkcs11(k) => ed25519_tuf_key(&k.public_key()),
        }
    }

    /// Signs `msg` (the canonical JSON of a role's `signed` part).
    pub fn sign_bytes(&self, msg: &[u8]) -> Result<Vec<u8>> {
        match &self.inner {
            Inner::Ed25519(k) => Ok(k.sign(msg).to_bytes().to_vec()),
            #[cfg(feature = "pkcs11")]
            Inner::Pkcs11(k) => k.sign(msg).map_err(|source| Error::Sign {
                key_id: self.key_id.clone(),
                source,
            }),
        }
    }

    /// True if this is one of the published example keys in `keys-example/`
    /// (compared by public key, whatever id it is listed under).
    pub fn is_insecure_example(&self) -> bool {
        danger::is_insecure_example_key_id(&self.key_id)
    }
}

#[async_trait::async_trait]
impl Sign for SigningKeyPair {
    fn tuf_key(&self) -> Key {
        self.public()
    }

    async fn sign(
        &self,
        msg: &[u8],
        _rng: &(dyn aws_lc_rs::rand::SecureRandom + Sync),
    ) -> std::result::Result<Vec<u8>, BoxError> {
        self.sign_bytes(msg).map_err(|e| Box::new(e) as BoxError)
    }
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

/// The TUF key object for an Ed25519 public key.
pub fn ed25519_tuf_key(public: &[u8]) -> Key {
    Key::Ed25519 {
        keyval: Ed25519Key {
            public: Decoded::<Hex>::from(public.to_vec()),
            _extra: Default::default(),
        },
        scheme: Ed25519Scheme::Ed25519,
        _extra: Default::default(),
    }
}

/// The raw public key of an Ed25519 TUF key (None for other key types).
pub fn ed25519_public(key: &Key) -> Option<[u8; 32]> {
    match key {
        Key::Ed25519 { keyval, .. } => keyval.public.as_ref().try_into().ok(),
        _ => None,
    }
}

/// The key id a key has in its plain form (type, scheme and public key
/// only). A key id hashes the whole key object, so the same public key with
/// extra fields has another id; comparing canonical ids compares the keys.
pub fn canonical_key_id(key: &Key) -> String {
    match ed25519_public(key) {
        Some(p) => key_id_hex(&ed25519_tuf_key(&p)),
        None => key_id_hex(key),
    }
}

/// Hex key id of a TUF key.
pub fn key_id_hex(key: &Key) -> String {
    hex::encode(
        key.key_id()
            .expect("an Ed25519 key always serializes")
            .as_ref(),
    )
}

/// The published, INSECURE example key set (see `keys-example/README.md`).
///
/// Release code never reads `keys-example/`: it only knows the key ids, so it
/// can refuse them outside the `demo` channel. A test checks this list
/// against the files.
pub mod danger {
    /// Key ids of every key in `keys-example/`.
    pub const INSECURE_EXAMPLE_KEY_IDS: &[&str] = &[
        // INSECURE-root-1.pem, INSECURE-root-2.pem, INSECURE-root-3.pem
        "8c371b6ad2582576a46c654fabb401fc6510efc6181c109f2af88b64c1d0afe8",
        "76b02c99126eb8692f27f222f33ff98a7270c8bd973a50958a644ce94f119b8f",
        "3f4468981a05ab078a4f333b3968130ce73ecadd459afc2265cc87c9242bdc66",
        // INSECURE-targets.pem, INSECURE-snapshot.pem, INSECURE-timestamp.pem
        "2aed09e6066304308c49425d5a6c6236e62d5e2b551edb65878398715d111e9f",
        "c9cc1215a2bfc3b9d958db3d88c141774a0bef12d92cfd7e04e8856a1966c9b0",
        "7c200b8c8f9c836286cb01d9843e01181c6f3f72b7b746e130bc3095546c7c5f",
    ];

    /// True if `key_id` (hex) belongs to the example key set.
    pub fn is_insecure_example_key_id(key_id: &str) -> bool {
        INSECURE_EXAMPLE_KEY_IDS.contains(&key_id)
    }

    /// The only channel the example keys may sign for.
    pub use racklet_release::DEMO_CHANNEL;
}

/// Loads a *public* key: a TUF key JSON file (`imgsign key public` writes
/// one), or a private key file / URI whose public half is taken.
pub fn load_public(spec: &str) -> Result<Key> {
    if !spec.starts_with("pkcs11:") {
        let path = Path::new(spec);
        let bytes = fsio::read(path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
                let k = SigningKeyPair::load(path.to_str().unwrap()).unwrap();
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
        let k = SigningKeyPair::generate();
        k.write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
        let l = SigningKeyPair::load(path.to_str().unwrap()).unwrap();
        assert_eq!(l.key_id(), k.key_id());
        assert!(!format!("{l:?}").contains(&text[30..60]));
        // Never overwritten.
        assert!(matches!(
            SigningKeyPair::generate().write_new(&path),
            Err(Error::AlreadyExists { .. })
        ));
    }

    #[test]
    fn group_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        SigningKeyPair::generate().write_new(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKeyPair::load(path.to_str().unwrap()).unwrap_err();
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
        let err = SigningKeyPair::load(path.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("k.pem"), "{err}");
    }

    #[test]
    fn signature_verifies_with_tough_key() {
        let k = SigningKeyPair::generate();
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
