//! What a signing key does, whatever holds it: the [`Signer`] trait that
//! both key kinds implement — key files ([`crate::keyfile`]) and keys in a
//! PKCS#11 token ([`crate::pkcs11`]) — and [`SigningKeyPair`], the handle
//! every signing operation takes. Neither kind knows the other; which kind a
//! key spec names is decided in [`crate::keys`].
//!
//! The Raspberry Pi secure-boot key is a second role with its own trait,
//! [`PiSigner`], and handle, [`PiKey`]: the Pi bootloader checks only
//! RSA-2048 PKCS#1 v1.5 signatures over SHA-256, which no TUF role here
//! uses, so the two never stand in for each other. Both kinds of holder
//! implement it too.
//!
//! Also here: the TUF key-id helpers and the example-key denylist
//! ([`danger`]), which depend on nothing but the public key.

use std::fmt;
use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{Ed25519Key, Ed25519Scheme, Key};
use tough::sign::Sign;

use racklet_piboot::key::PiPublicKey;

use crate::error::{BoxError, Error, Result};
use racklet_fsio as fsio;

/// An Ed25519 private key that can sign, wherever it is held.
pub trait Signer: Send + Sync {
    /// The raw Ed25519 public key.
    fn public_key(&self) -> [u8; 32];

    /// Signs `msg` with pure Ed25519.
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, BoxError>;

    /// The private key as PKCS#8 PEM, for a key that may be written to a
    /// file; `None` for a key that never leaves where it is held (a token).
    fn to_pkcs8_pem(&self) -> Option<std::result::Result<Zeroizing<String>, BoxError>> {
        None
    }
}

/// A private signing key of either kind, with its TUF key id and where it
/// came from. Its `Debug` shows the key id and origin only.
///
/// Made by `SigningKeyPair::generate` / `generate_file` / `load` (in
/// [`crate::keys`]), by [`crate::pkcs11`], or from any [`Signer`] with
/// [`SigningKeyPair::new`].
pub struct SigningKeyPair {
    signer: Box<dyn Signer>,
    key_id: String,
    origin: String,
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
    /// Wraps a signer; `origin` (a path, or a URI without its PIN) names it
    /// in messages.
    pub fn new(signer: Box<dyn Signer>, origin: String) -> SigningKeyPair {
        let key_id = key_id_hex(&ed25519_tuf_key(&signer.public_key()));
        SigningKeyPair {
            signer,
            key_id,
            origin,
        }
    }

    /// The TUF key id (hex SHA-256 of the canonical public key object).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Where the key came from (path or URI), for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub(crate) fn set_origin(&mut self, origin: String) {
        self.origin = origin;
    }

    /// The TUF public key object.
    pub fn public(&self) -> Key {
        ed25519_tuf_key(&self.signer.public_key())
    }

    /// Signs `msg` (the canonical JSON of a role's `signed` part).
    pub fn sign_bytes(&self, msg: &[u8]) -> Result<Vec<u8>> {
        self.signer.sign(msg).map_err(|source| Error::Sign {
            key_id: self.key_id.clone(),
            source,
        })
    }

    /// True if this is one of the published example keys in `keys-example/`
    /// (compared by public key, whatever id it is listed under).
    pub fn is_insecure_example(&self) -> bool {
        danger::is_insecure_example_key_id(&self.key_id)
    }

    /// Writes the key as PKCS#8 PEM to a new file with mode 0600. An
    /// existing file is never overwritten; a key held in a token cannot be
    /// written.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        write_private_pem(path, self.signer.to_pkcs8_pem())
    }
}

/// An RSA-2048 private key that signs for the Pi bootloader, wherever it
/// is held: PKCS#1 v1.5 over SHA-256 (`openssl dgst -sha256 -sign`,
/// PKCS#11 `CKM_SHA256_RSA_PKCS`).
pub trait PiSigner: Send + Sync {
    /// The public half.
    fn public_key(&self) -> &PiPublicKey;

    /// Signs `msg` (hashing it with SHA-256 first); 256 bytes.
    fn sign_pkcs1_sha256(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, BoxError>;

    /// The private key as PKCS#8 PEM, for a key that may be written to a
    /// file; `None` for a key held in a token.
    fn to_pkcs8_pem(&self) -> Option<std::result::Result<Zeroizing<String>, BoxError>> {
        None
    }
}

/// The Pi secure-boot key (`imgsign pi-key`), of either kind, with where
/// it came from. Its `Debug` shows the public key's fingerprint and origin
/// only.
///
/// Made by `PiKey::generate_file` / `load` (in [`crate::keys`]) or by
/// [`crate::pkcs11`].
pub struct PiKey {
    signer: Box<dyn PiSigner>,
    origin: String,
}

impl fmt::Debug for PiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PiKey")
            .field("fingerprint", &self.fingerprint())
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl PiKey {
    /// Wraps a signer; `origin` (a path, or a URI without its PIN) names it.
    pub fn new(signer: Box<dyn PiSigner>, origin: String) -> PiKey {
        PiKey { signer, origin }
    }

    /// The public key (export it with [`PiPublicKey::to_pubkey_bin`] and
    /// [`PiPublicKey::to_pem`]).
    pub fn public(&self) -> &PiPublicKey {
        self.signer.public_key()
    }

    /// SHA-256 hex of the key's 264-byte `pubkey.bin`: what to compare
    /// between the signer's machine and the EEPROM config.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.public().to_pubkey_bin()))
    }

    /// Where the key came from (path or URI), for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub(crate) fn set_origin(&mut self, origin: String) {
        self.origin = origin;
    }

    /// Signs `msg`, and checks the signature against the public key before
    /// returning it (a token that signs wrongly is caught here, not by a
    /// Pi that refuses to boot).
    pub fn sign_bytes(&self, msg: &[u8]) -> Result<Vec<u8>> {
        let err = |source| Error::Sign {
            key_id: format!("pi:{}", self.fingerprint()),
            source,
        };
        let sig = self.signer.sign_pkcs1_sha256(msg).map_err(err)?;
        let fixed: &[u8; 256] = sig
            .as_slice()
            .try_into()
            .map_err(|_| err(format!("{} bytes, not an RSA-2048 signature", sig.len()).into()))?;
        self.public()
            .verify_pkcs1_sha256(msg, fixed)
            .map_err(|e| err(Box::new(e)))?;
        Ok(sig)
    }

    /// Writes the key as PKCS#8 PEM to a new file with mode 0600 (never
    /// overwriting); a key held in a token cannot be written.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        write_private_pem(path, self.signer.to_pkcs8_pem())
    }
}

/// Writes a private key's PEM to a new 0600 file; `None` is a key held in
/// a token.
fn write_private_pem(
    path: &Path,
    pem: Option<std::result::Result<Zeroizing<String>, BoxError>>,
) -> Result<()> {
    let bad = |reason: String| Error::BadKey {
        path: path.display().to_string(),
        reason,
    };
    let pem = pem
        .ok_or_else(|| bad("a key held in a token cannot be exported".into()))?
        .map_err(|e| bad(e.to_string()))?;
    Ok(fsio::write_new(path, pem.as_bytes(), fsio::Mode::Secret)?)
}

impl racklet_piboot::sig::BootImgSigner for PiKey {
    type Error = Error;

    fn sign_rsa2048_sha256(&self, image: &[u8]) -> Result<Vec<u8>> {
        self.sign_bytes(image)
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
