//! Keys held in a PKCS#11 token (an HSM, a smart card, SoftHSM): the
//! private key never leaves the token; imgsign asks it to sign. Ed25519
//! keys for the TUF roles (`CKM_EDDSA`); the RSA-2048 Pi secure-boot key
//! ([`generate_pi`], [`load_pi`]; `CKM_SHA256_RSA_PKCS`, PKCS#1 v1.5 over
//! SHA-256, which is what the Pi bootloader checks).
//!
//! Keys are named by RFC 7512 URIs:
//!
//! ```text
//! pkcs11:token=racklet;object=root-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/path/to/pin
//! ```
//!
//! `token` is the token label, `object` the key label. The query names the
//! PKCS#11 module (`module-path`, default: SoftHSM's) and the user PIN
//! (`pin-source`: a file holding it; `pin-value`: the PIN itself, for tests
//! only; or the `IMGSIGN_PKCS11_PIN` environment variable). The PIN is never
//! logged.

use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use crate::error::{BoxError, Error, Result};
use racklet_piboot::key::PiPublicKey;

use crate::signer::{PiKey, PiSigner, Signer, SigningKeyPair};

/// Where Debian's `softhsm2` installs its module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// DER of the Ed25519 curve OID (1.3.101.112), the `CKA_EC_PARAMS` of an
/// Ed25519 key.
const ED25519_OID_DER: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// A parsed `pkcs11:` URI.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyUri {
    /// Token label.
    pub token: String,
    /// Key label.
    pub object: String,
    /// Path of the PKCS#11 module.
    pub module: String,
    pin: Option<String>,
}

impl std::fmt::Debug for KeyUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyUri")
            .field("token", &self.token)
            .field("object", &self.object)
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

fn bad(uri: &str, reason: impl Into<String>) -> Error {
    Error::BadKey {
        // Never echo a URI that may carry a PIN.
        path: redact(uri),
        reason: reason.into(),
    }
}

/// The URI with any `pin-value` hidden.
pub fn redact(uri: &str) -> String {
    match uri.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| {
                    if kv.starts_with("pin-value=") {
                        "pin-value=***".to_string()
                    } else {
                        kv.to_string()
                    }
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => uri.to_string(),
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl KeyUri {
    /// Parses a `pkcs11:` URI (RFC 7512; the attributes imgsign uses).
    pub fn parse(uri: &str) -> Result<KeyUri> {
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad(uri, "does not start with pkcs11:"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (mut token, mut object) = (None, None);
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| bad(uri, format!("`{attr}` is not key=value")))?;
            match k {
                "token" => token = Some(decode(v)),
                "object" => object = Some(decode(v)),
                // Other RFC 7512 attributes (type, id, manufacturer …) are
                // accepted and not used.
                _ => {}
            }
        }
        let mut module = SOFTHSM_MODULE.to_string();
        let mut pin = None;
        for kv in query.split('&').filter(|a| !a.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| bad(uri, format!("`{kv}` is not key=value")))?;
            match k {
                "module-path" => module = decode(v),
                "pin-value" => pin = Some(decode(v)),
                "pin-source" => {
                    let path = decode(v);
                    let path = path.strip_prefix("file:").unwrap_or(&path).to_string();
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| bad(uri, format!("cannot read pin-source {path}: {e}")))?;
                    pin = Some(text.trim_end_matches(['\n', '\r']).to_string());
                }
                _ => {}
            }
        }
        if pin.is_none() {
            pin = std::env::var("IMGSIGN_PKCS11_PIN").ok();
        }
        Ok(KeyUri {
            token: token.ok_or_else(|| bad(uri, "needs token=<label>"))?,
            object: object.ok_or_else(|| bad(uri, "needs object=<key label>"))?,
            module,
            pin,
        })
    }
}

/// A logged-in session on the token holding one key.
pub struct Pkcs11Key {
    session: Mutex<Session>,
    private: ObjectHandle,
    public: [u8; 32],
    // Kept alive as long as the session.
    _ctx: Pkcs11,
}

fn p11(operation: impl Into<String>) -> impl FnOnce(cryptoki::error::Error) -> Error {
    move |source| Error::Pkcs11 {
        operation: operation.into(),
        source,
    }
}

/// A module may be initialized once per process: share one context per
/// module path.
fn context(module: &str) -> Result<Pkcs11> {
    type Contexts = Mutex<std::collections::HashMap<String, Pkcs11>>;
    static CONTEXTS: std::sync::OnceLock<Contexts> = std::sync::OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| Error::Pkcs11Poisoned { lock: "context" })?;
    if let Some(ctx) = map.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module).map_err(p11(format!("loading module {module}")))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(p11(format!("initializing module {module}")))?;
    map.insert(module.to_owned(), ctx.clone());
    Ok(ctx)
}

fn open(uri: &KeyUri) -> Result<(Pkcs11, Session)> {
    let ctx = context(&uri.module)?;
    let slots = ctx.get_slots_with_token().map_err(p11("listing slots"))?;
    let mut found = None;
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(p11("reading token info"))?;
        if info.label().trim_end() == uri.token {
            found = Some(slot);
            break;
        }
    }
    let slot = found.ok_or_else(|| Error::Pkcs11NoToken {
        token: uri.token.clone(),
    })?;
    let session = ctx
        .open_rw_session(slot)
        .map_err(p11(format!("opening a session on token `{}`", uri.token)))?;
    let pin = uri.pin.as_ref().ok_or_else(|| Error::Pkcs11NoPin {
        token: uri.token.clone(),
    })?;
    match session.login(UserType::User, Some(&AuthPin::from(pin.clone()))) {
        // Login state is per token and application: an earlier key from
        // the same token already logged this process in.
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => return Err(p11(format!("logging in to token `{}`", uri.token))(e)),
    }
    Ok((ctx, session))
}

fn find(session: &Session, class: ObjectClass, label: &str) -> Result<Option<ObjectHandle>> {
    find_typed(session, class, KeyType::EC_EDWARDS, label)
}

fn find_typed(
    session: &Session,
    class: ObjectClass,
    key_type: KeyType,
    label: &str,
) -> Result<Option<ObjectHandle>> {
    let handles = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::KeyType(key_type),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(p11(format!("finding objects labelled `{label}`")))?;
    Ok(handles.into_iter().next())
}

fn public_key(session: &Session, handle: ObjectHandle, object: &str) -> Result<[u8; 32]> {
    let attrs = session
        .get_attributes(handle, &[AttributeType::EcPoint])
        .map_err(p11(format!("reading the public key `{object}`")))?;
    for a in attrs {
        if let Attribute::EcPoint(point) = a {
            // Either the raw 32 bytes or a DER OCTET STRING around them.
            let raw: &[u8] = match point.as_slice() {
                [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
                p if p.len() == 32 => p,
                _ => {
                    return Err(Error::Pkcs11PublicKey {
                        object: object.into(),
                        problem: "unexpected CKA_EC_POINT encoding",
                    })
                }
            };
            return Ok(raw.try_into().expect("32 bytes"));
        }
    }
    Err(Error::Pkcs11PublicKey {
        object: object.into(),
        problem: "no CKA_EC_POINT",
    })
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

impl Signer for Pkcs11Key {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// Signs with the token (pure Ed25519, CKM_EDDSA).
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, BoxError> {
        let session = self
            .session
            .lock()
            .map_err(|_| Box::new(Error::Pkcs11Poisoned { lock: "session" }) as BoxError)?;
        let mech = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        Ok(session.sign(&mech, self.private, msg)?)
    }
}

/// Wraps a key pair found or made in the token.
fn into_key(
    ctx: Pkcs11,
    session: Session,
    private: ObjectHandle,
    public: ObjectHandle,
    uri: &KeyUri,
    uri_text: &str,
) -> Result<SigningKeyPair> {
    let public = public_key(&session, public, &uri.object)?;
    let key = Pkcs11Key {
        session: Mutex::new(session),
        private,
        public,
        _ctx: ctx,
    };
    Ok(SigningKeyPair::new(Box::new(key), redact(uri_text)))
}

/// Opens the key a URI names.
pub fn load(uri_text: &str) -> Result<SigningKeyPair> {
    let uri = KeyUri::parse(uri_text)?;
    let (ctx, session) = open(&uri)?;
    let private = find(&session, ObjectClass::PRIVATE_KEY, &uri.object)?.ok_or_else(|| {
        Error::Pkcs11NoKey {
            kind: "Ed25519",
            class: "private",
            object: uri.object.clone(),
            token: uri.token.clone(),
        }
    })?;
    let pubh = find(&session, ObjectClass::PUBLIC_KEY, &uri.object)?.ok_or_else(|| {
        Error::Pkcs11NoKey {
            kind: "Ed25519",
            class: "public",
            object: uri.object.clone(),
            token: uri.token.clone(),
        }
    })?;
    into_key(ctx, session, private, pubh, &uri, uri_text)
}

/// Generates a new Ed25519 key pair inside the token (the private key is
/// created sensitive and non-extractable) and returns it.
pub fn generate(uri_text: &str) -> Result<SigningKeyPair> {
    let uri = KeyUri::parse(uri_text)?;
    let (ctx, session) = open(&uri)?;
    if find(&session, ObjectClass::PRIVATE_KEY, &uri.object)?.is_some() {
        return Err(Error::AlreadyExists {
            path: redact(uri_text).into(),
        });
    }
    let label = Attribute::Label(uri.object.as_bytes().to_vec());
    let (pubh, private) = session
        .generate_key_pair(
            &Mechanism::EccEdwardsKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::EcParams(ED25519_OID_DER.to_vec()),
                label.clone(),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                label,
            ],
        )
        .map_err(p11(format!(
            "generating an Ed25519 key pair `{}`",
            uri.object
        )))?;
    into_key(ctx, session, private, pubh, &uri, uri_text)
}

/// The Pi secure-boot key in a token: RSA-2048, signing with
/// `CKM_SHA256_RSA_PKCS`.
pub struct Pkcs11RsaKey {
    session: Mutex<Session>,
    private: ObjectHandle,
    public: PiPublicKey,
    _ctx: Pkcs11,
}

impl std::fmt::Debug for Pkcs11RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11RsaKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl PiSigner for Pkcs11RsaKey {
    fn public_key(&self) -> &PiPublicKey {
        &self.public
    }

    fn sign_pkcs1_sha256(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, BoxError> {
        let session = self
            .session
            .lock()
            .map_err(|_| Box::new(Error::Pkcs11Poisoned { lock: "session" }) as BoxError)?;
        Ok(session.sign(&Mechanism::Sha256RsaPkcs, self.private, msg)?)
    }
}

fn rsa_public_key(session: &Session, handle: ObjectHandle, object: &str) -> Result<PiPublicKey> {
    let attrs = session
        .get_attributes(
            handle,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )
        .map_err(p11(format!("reading the public key `{object}`")))?;
    let (mut n, mut e) = (None, None);
    for a in attrs {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            _ => {}
        }
    }
    let (Some(n), Some(e)) = (n, e) else {
        return Err(Error::Pkcs11PublicKey {
            object: object.into(),
            problem: "no CKA_MODULUS or CKA_PUBLIC_EXPONENT",
        });
    };
    PiPublicKey::from_components(&n, &e).map_err(|_| Error::Pkcs11PublicKey {
        object: object.into(),
        problem: "not an RSA-2048 key the Pi bootloader takes",
    })
}

fn into_pi_key(
    ctx: Pkcs11,
    session: Session,
    private: ObjectHandle,
    public: ObjectHandle,
    uri: &KeyUri,
    uri_text: &str,
) -> Result<PiKey> {
    let public = rsa_public_key(&session, public, &uri.object)?;
    let key = Pkcs11RsaKey {
        session: Mutex::new(session),
        private,
        public,
        _ctx: ctx,
    };
    Ok(PiKey::new(Box::new(key), redact(uri_text)))
}

/// Opens the Pi secure-boot key a URI names.
pub fn load_pi(uri_text: &str) -> Result<PiKey> {
    let uri = KeyUri::parse(uri_text)?;
    let (ctx, session) = open(&uri)?;
    let no_key = |class| Error::Pkcs11NoKey {
        kind: "RSA",
        class,
        object: uri.object.clone(),
        token: uri.token.clone(),
    };
    let private = find_typed(
        &session,
        ObjectClass::PRIVATE_KEY,
        KeyType::RSA,
        &uri.object,
    )?
    .ok_or_else(|| no_key("private"))?;
    let public = find_typed(&session, ObjectClass::PUBLIC_KEY, KeyType::RSA, &uri.object)?
        .ok_or_else(|| no_key("public"))?;
    into_pi_key(ctx, session, private, public, &uri, uri_text)
}

/// Generates the RSA-2048 Pi secure-boot key inside the token (exponent
/// 65537; the private key sensitive and non-extractable).
pub fn generate_pi(uri_text: &str) -> Result<PiKey> {
    let uri = KeyUri::parse(uri_text)?;
    let (ctx, session) = open(&uri)?;
    if find_typed(
        &session,
        ObjectClass::PRIVATE_KEY,
        KeyType::RSA,
        &uri.object,
    )?
    .is_some()
    {
        return Err(Error::AlreadyExists {
            path: redact(uri_text).into(),
        });
    }
    let label = Attribute::Label(uri.object.as_bytes().to_vec());
    let (public, private) = session
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                label.clone(),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                label,
            ],
        )
        .map_err(p11(format!(
            "generating an RSA-2048 key pair `{}`",
            uri.object
        )))?;
    into_pi_key(ctx, session, private, public, &uri, uri_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parses_and_hides_pin() {
        let u = KeyUri::parse(
            "pkcs11:token=rack%20keys;object=root-1?module-path=/x/lib.so&pin-value=1234",
        )
        .unwrap();
        assert_eq!(u.token, "rack keys");
        assert_eq!(u.object, "root-1");
        assert_eq!(u.module, "/x/lib.so");
        assert!(!format!("{u:?}").contains("1234"));
        assert_eq!(
            redact("pkcs11:token=a;object=b?pin-value=1234"),
            "pkcs11:token=a;object=b?pin-value=***"
        );
        assert!(KeyUri::parse("pkcs11:object=b").is_err());
        assert!(KeyUri::parse("pkcs11:token=a").is_err());
        let err = KeyUri::parse("pkcs11:token=a?pin-value=secret").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
