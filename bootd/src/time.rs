//! `GET v1/time`: signed time for nodes whose BMC clock was never set
//! ([`bootd_api::time`]). Signed with the online timestamp key, the one
//! bootd already holds to re-sign `timestamp.json`; without it the route
//! answers 503 and such nodes refuse updates until their clock is set.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bootd_api::time::{SignedTime, TimeSignature, TimeStatement, NONCE_LEN};
use imgsign::keys::SigningKeyPair;

/// Signs the statement for `nonce` at `now`.
pub fn sign(
    key: &SigningKeyPair,
    nonce: &[u8; NONCE_LEN],
    now: chrono::DateTime<chrono::Utc>,
) -> imgsign::Result<SignedTime> {
    let signed = TimeStatement::new(
        nonce,
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let sig = key.sign_bytes(&canonical(&signed))?;
    Ok(SignedTime {
        signed,
        signatures: vec![TimeSignature {
            keyid: key.key_id().to_owned(),
            sig: sig.iter().map(|b| format!("{b:02x}")).collect(),
        }],
    })
}

/// The bytes signed: the statement's canonical JSON (OLPC), the encoding
/// TUF signs metadata in and tough's `verify_role` checks on the node.
pub fn canonical(s: &TimeStatement) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    serde::Serialize::serialize(s, &mut ser).expect("a time statement always serializes");
    out
}

/// The timestamp key, loaded once per key spec (a `pkcs11:` login or a
/// file read is not repeated per request; a config naming another key
/// loads that one).
#[derive(Default)]
pub(crate) struct KeyCache(Mutex<Option<(std::path::PathBuf, Arc<SigningKeyPair>)>>);

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCache(..)")
    }
}

impl KeyCache {
    pub(crate) fn get(&self, spec: &Path) -> imgsign::Result<Arc<SigningKeyPair>> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, k)) = g.as_ref() {
            if p == spec {
                return Ok(k.clone());
            }
        }
        let k = Arc::new(SigningKeyPair::load(&spec.to_string_lossy())?);
        *g = Some((spec.to_owned(), k.clone()));
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_are_sorted_and_compact() {
        let s = TimeStatement::new(&[1; NONCE_LEN], "2026-12-04T02:50:00Z".into());
        let c = String::from_utf8(canonical(&s)).unwrap();
        assert_eq!(
            c,
            format!(
                r#"{{"_type":"racklet-time","nonce":"{}","time":"2026-12-04T02:50:00Z"}}"#,
                "01".repeat(32)
            )
        );
    }
}
