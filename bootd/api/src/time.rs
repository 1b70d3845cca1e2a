//! Signed time: what a node whose BMC clock was never set asks bootd for.
//!
//! A factory BMC counts from 1970, and a clock any process could set is no
//! basis for TUF's expiry checks. So a node asks `GET v1/time?nonce=HEX`
//! with 32 fresh random bytes; bootd answers a [`SignedTime`]: the nonce
//! and its clock, signed like TUF metadata (Ed25519 over the OLPC canonical
//! JSON of `signed`, as tough verifies metadata) by the **online timestamp key** — the key the node's pinned
//! root already names for the timestamp role, so no new trust is added. The
//! nonce makes a recorded answer useless later; the `_type` keeps the
//! statement from ever passing for TUF metadata.
//!
//! ```json
//! {"signed": {"_type": "racklet-time", "nonce": "9f…(64 hex)", "time": "2026-12-04T02:50:00Z"},
//!  "signatures": [{"keyid": "…", "sig": "…"}]}
//! ```

use serde::{Deserialize, Serialize};

/// The `_type` of a time statement.
pub const TYPE: &str = "racklet-time";
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 32;

/// What bootd signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeStatement {
    /// Always [`TYPE`].
    #[serde(rename = "_type")]
    pub kind: String,
    /// The node's nonce, 64 lowercase hex digits.
    pub nonce: String,
    /// bootd's clock, RFC 3339 UTC with whole seconds.
    pub time: String,
}

/// One signature over the canonical JSON of a [`TimeStatement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSignature {
    /// The TUF key id (hex) of the signing key.
    pub keyid: String,
    /// The signature, hex.
    pub sig: String,
}

/// The answer to `GET v1/time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTime {
    /// The statement.
    pub signed: TimeStatement,
    /// Its signatures.
    pub signatures: Vec<TimeSignature>,
}

impl TimeStatement {
    /// The statement for `nonce` at `time` (seconds since 1970, UTC).
    pub fn new(nonce: &[u8; NONCE_LEN], time: String) -> TimeStatement {
        TimeStatement {
            kind: TYPE.to_owned(),
            nonce: hex(nonce),
            time,
        }
    }
}

/// The query of `GET v1/time` for `nonce`.
pub fn query(nonce: &[u8; NONCE_LEN]) -> String {
    format!("nonce={}", hex(nonce))
}

/// The nonce in a `v1/time` query string, if it is one: `nonce=` and
/// exactly 64 hex digits.
pub fn parse_query(q: &str) -> Option<[u8; NONCE_LEN]> {
    let h = q.strip_prefix("nonce=")?;
    if h.len() != 2 * NONCE_LEN {
        return None;
    }
    let mut out = [0u8; NONCE_LEN];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_round_trips_and_anything_else_is_refused() {
        let n = [0xab; NONCE_LEN];
        assert_eq!(parse_query(&query(&n)), Some(n));
        for bad in [
            "",
            "nonce=",
            "nonce=ab",
            &format!("nonce={}", "g".repeat(64)),
            &format!("nonce={}0", "a".repeat(64)),
            &format!("x={}", "a".repeat(64)),
            &format!("nonce={}é", "a".repeat(62)),
        ] {
            assert_eq!(parse_query(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn extra_fields_are_refused() {
        let extra = r#"{"_type":"racklet-time","nonce":"00","time":"x","also":1}"#;
        assert!(serde_json::from_str::<TimeStatement>(extra).is_err());
    }
}
