//! The node ↔ bootd API: what a node (stage1, or `bootd client`) and the
//! boot server say to each other over HTTPS, as types.
//!
//! A contract crate: bootd's routes and the client in `bootd/client` both
//! use these types, so the two cannot drift apart; it holds no server, no
//! client and no IO. Every path is relative to the server's base URL
//! (`https://bootd.local:8443/`).
//!
//! | method, path | TLS | body → answer |
//! |---|---|---|
//! | `POST v1/enroll` | server-authenticated | [`EnrollRequest`] → `202` [`EnrollAnswer::Pending`], `400` refused (unknown node, bad CSR, too many pending) |
//! | `GET v1/enroll/{id}` | server-authenticated | → `202` [`EnrollAnswer::Pending`], `200` [`EnrollAnswer::Issued`], `403` [`EnrollAnswer::Denied`], `404` unknown id |
//! | `POST v1/node/report` | mTLS (node certificate) | [`NodeReport`] → `200` [`ReportAck`] |
//! | `GET v1/node/self` | mTLS (node certificate) | → `200` [`NodeSelf`] |
//! | `POST v1/node/refusal` | mTLS (node certificate) | [`RefusalReport`] → `200` [`ReportAck`] |
//! | `GET v1/time?nonce={64 hex}` | server-authenticated | → `200` [`time::SignedTime`] (signed by the online timestamp key), `400` bad nonce, `503` bootd holds no timestamp key |
//! | `GET metadata/{file}` | server-authenticated or mTLS | the verified TUF metadata |
//! | `GET targets/{file}` | server-authenticated or mTLS | the verified TUF targets (`Range` supported) |
//!
//! On the per-node paths a missing client certificate is `401`, one bootd
//! did not issue (or revoked, or for a node no longer in the rack) `403`.
//! The node is always the one its certificate names, never one a body
//! claims. Every error answer is `text/plain`; every JSON answer is
//! `application/json`.
#![forbid(unsafe_code)]

pub mod time;

pub use racklet_bmc_proto::{SecurityVersion, Slot};
use racklet_release::ReleaseInfo;
use serde::{Deserialize, Serialize};

/// The paths of the API, relative to the server's base URL.
pub mod paths {
    /// `POST`: submit an enrollment request.
    pub const ENROLL: &str = "v1/enroll";
    /// `POST` (mTLS): what the node installed and booted.
    pub const NODE_REPORT: &str = "v1/node/report";
    /// `GET` (mTLS): what bootd knows about the calling node.
    pub const NODE_SELF: &str = "v1/node/self";
    /// `POST` (mTLS): an update the node refused, and why.
    pub const NODE_REFUSAL: &str = "v1/node/refusal";
    /// `GET` with `?nonce=`: a signed time statement ([`crate::time`]).
    pub const TIME: &str = "v1/time";
    /// The TUF metadata directory (`metadata/1.root.json`, `metadata/timestamp.json`, …).
    pub const METADATA: &str = "metadata/";
    /// The TUF targets directory.
    pub const TARGETS: &str = "targets/";

    /// `GET`: the state of enrollment request `id`.
    pub fn enroll_status(id: &str) -> String {
        format!("{ENROLL}/{id}")
    }

    /// The request id in an enrollment-status path (`enroll/{id}` after
    /// `v1/`), if `rest` is one.
    pub fn parse_enroll_status(rest: &str) -> Option<&str> {
        rest.strip_prefix("enroll/").filter(|id| !id.is_empty())
    }
}

/// The body of `POST v1/enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The node the request is for (a name from the rack description).
    pub node: String,
    /// A PKCS#10 certificate signing request, PEM, for the node's own key.
    pub csr_pem: String,
}

/// What bootd answers about an enrollment request (`status` tells which).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum EnrollAnswer {
    /// Waiting for the operator (`bootd nodes approve`).
    Pending {
        /// The request id to poll with.
        id: String,
        /// The node (in the answer to the `POST`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        /// SHA-256 of the requested public key (in the answer to the
        /// `POST`): the node shows it so the operator can compare.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_fingerprint: Option<String>,
    },
    /// Approved: the node's certificate.
    Issued(IssuedCert),
    /// Denied by the operator.
    Denied {
        /// The request id.
        id: String,
    },
}

/// An approved request's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    /// The request id.
    pub id: String,
    /// The node the certificate names.
    pub node: String,
    /// The client certificate, PEM.
    pub cert_pem: String,
    /// The rack CA certificate, PEM.
    pub ca_pem: String,
    /// SHA-256 of the certificate's DER.
    pub fingerprint: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
}

/// What a node reports over mTLS: what it installed and booted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeReport {
    /// The slot it booted.
    pub slot: Slot,
    /// The version it booted (`custom.racklet.version`).
    pub version: String,
    /// The booted image's security version, if known.
    #[serde(default)]
    pub security_version: Option<SecurityVersion>,
    /// Whether the booted OS confirmed a successful boot.
    pub confirmed: bool,
    /// What the platform firmware verified before it started the node's
    /// loader: on a Raspberry Pi 5 in signed-boot mode, the SHA-256 of the
    /// `boot.img` its EEPROM bootloader checked
    /// (`/chosen/bootloader/boot_img_sha256`). Absent where the firmware
    /// says nothing (a Pi 4, UEFI, simulation) and in reports of nodes older
    /// than the field; left out of the JSON when absent, so a bootd older
    /// than the field still takes the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_img_sha256: Option<Sha256Digest>,
}

/// A SHA-256 digest; on the wire 64 lowercase hex digits (uppercase is
/// accepted and read the same).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// From 64 hex digits, or `None`.
    pub fn from_hex(s: &str) -> Option<Sha256Digest> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            *o = (hi * 16 + lo) as u8;
        }
        Some(Sha256Digest(out))
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sha256Digest::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("not a SHA-256: want 64 hex digits"))
    }
}

/// Why a node refused an update (a small fixed set: it labels a metric,
/// and the BMC keeps it as one byte): the BMC protocol's own list.
pub use racklet_bmc_proto::RefusalReason;

/// Longest [`RefusalReport::detail`] bootd keeps (bytes).
pub const MAX_REFUSAL_DETAIL: usize = 1024;

/// The body of `POST v1/node/refusal`: an update the node refused before
/// booting what it had (its last stage1 boot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefusalReport {
    /// Why, as a label.
    pub reason: RefusalReason,
    /// The node's error message (at most [`MAX_REFUSAL_DETAIL`] bytes).
    pub detail: String,
}

/// bootd's answer to a [`NodeReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAck {
    /// The node the report was filed under (from its certificate).
    pub node: String,
    /// True once it is stored.
    pub recorded: bool,
}

/// What bootd knows about the calling node. Informational: the node must
/// still verify its assignments in the signed targets metadata itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSelf {
    /// The node (from its certificate).
    pub node: String,
    /// Its groups in the rack description.
    pub groups: Vec<String>,
    /// The targets the verified metadata assigns to it.
    pub assigned: Vec<AssignedTarget>,
}

/// One target assigned to a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignedTarget {
    /// Target name.
    pub name: String,
    /// Signed length.
    pub length: u64,
    /// Signed SHA-256 (hex).
    pub sha256: String,
    /// The signed release facts, if the target carries them.
    pub racklet: Option<ReleaseInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reason_is_named_the_same_in_json_and_in_metrics() {
        for r in RefusalReason::ALL {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::from(r.as_str())
            );
        }
        let back: RefusalReason = serde_json::from_str("\"tampered_target\"").unwrap();
        assert_eq!(back, RefusalReason::TamperedTarget);
        assert!(serde_json::from_str::<RefusalReason>("\"TamperedTarget\"").is_err());
    }

    #[test]
    fn enroll_answers_are_tagged_by_status() {
        // The bytes bootd sends and stage1 reads, as a table.
        let cases = [
            (
                EnrollAnswer::Pending {
                    id: "ab12".into(),
                    node: Some("unit-2".into()),
                    key_fingerprint: Some("ff".into()),
                },
                r#"{"status":"pending","id":"ab12","node":"unit-2","key_fingerprint":"ff"}"#,
            ),
            (
                EnrollAnswer::Pending {
                    id: "ab12".into(),
                    node: None,
                    key_fingerprint: None,
                },
                r#"{"status":"pending","id":"ab12"}"#,
            ),
            (
                EnrollAnswer::Denied { id: "ab12".into() },
                r#"{"status":"denied","id":"ab12"}"#,
            ),
        ];
        for (value, json) in cases {
            assert_eq!(serde_json::to_string(&value).unwrap(), json);
            assert_eq!(serde_json::from_str::<EnrollAnswer>(json).unwrap(), value);
        }
        let issued = r#"{"status":"issued","id":"ab12","node":"unit-2","cert_pem":"C","ca_pem":"A","fingerprint":"f","not_after":"2027-01-01T00:00:00Z"}"#;
        assert!(matches!(
            serde_json::from_str::<EnrollAnswer>(issued).unwrap(),
            EnrollAnswer::Issued(IssuedCert { node, .. }) if node == "unit-2"
        ));
        assert!(serde_json::from_str::<EnrollAnswer>(r#"{"status":"maybe","id":"x"}"#).is_err());
    }

    #[test]
    fn node_reports_refuse_unknown_fields_and_big_security_versions() {
        let r = NodeReport {
            slot: Slot::B,
            version: "1.2.0".into(),
            security_version: Some(SecurityVersion(3)),
            confirmed: true,
            boot_img_sha256: None,
        };
        let json = r#"{"slot":"B","version":"1.2.0","security_version":3,"confirmed":true}"#;
        assert_eq!(serde_json::to_string(&r).unwrap(), json);
        assert_eq!(serde_json::from_str::<NodeReport>(json).unwrap(), r);
        let extra = r#"{"slot":"B","version":"1","confirmed":true,"node":"unit-9"}"#;
        assert!(serde_json::from_str::<NodeReport>(extra).is_err());
        let big = r#"{"slot":"A","version":"1","security_version":4294967296,"confirmed":true}"#;
        assert!(serde_json::from_str::<NodeReport>(big).is_err());
        let slot = r#"{"slot":"C","version":"1","confirmed":true}"#;
        assert!(serde_json::from_str::<NodeReport>(slot).is_err());
    }

    #[test]
    fn boot_img_sha256_is_optional_hex_and_left_out_when_absent() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let r = NodeReport {
            slot: Slot::A,
            version: "1".into(),
            security_version: None,
            confirmed: true,
            boot_img_sha256: Sha256Digest::from_hex(hex),
        };
        let json = format!(
            r#"{{"slot":"A","version":"1","security_version":null,"confirmed":true,"boot_img_sha256":"{hex}"}}"#
        );
        assert_eq!(serde_json::to_string(&r).unwrap(), json);
        assert_eq!(serde_json::from_str::<NodeReport>(&json).unwrap(), r);
        // Uppercase reads the same; the wire form is lowercase.
        let upper = json.replace(hex, &hex.to_uppercase());
        assert_eq!(serde_json::from_str::<NodeReport>(&upper).unwrap(), r);
        // A report from before the field still parses.
        let old = r#"{"slot":"A","version":"1","confirmed":true}"#;
        assert_eq!(
            serde_json::from_str::<NodeReport>(old)
                .unwrap()
                .boot_img_sha256,
            None
        );
        for bad in [&hex[1..], "zz", &format!("{hex}00"), &hex.replace('9', "g")] {
            let j = json.replace(hex, bad);
            assert!(serde_json::from_str::<NodeReport>(&j).is_err(), "{bad}");
        }
    }

    #[test]
    fn enroll_status_paths_round_trip() {
        assert_eq!(paths::enroll_status("ab12"), "v1/enroll/ab12");
        assert_eq!(paths::parse_enroll_status("enroll/ab12"), Some("ab12"));
        assert_eq!(paths::parse_enroll_status("enroll/"), None);
        assert_eq!(paths::parse_enroll_status("node/self"), None);
    }
}
