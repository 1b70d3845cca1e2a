//! The node side of bootd's API ([`bootd_api`]): enrollment, reports,
//! `whoami` — used by stage1 and by `bootd client`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bootd_client::Error> {
//! use bootd_client::{Enrollment, Identity, NetConfig};
//! let base = url::Url::parse("https://bootd.local:8443/").unwrap();
//! let ca_pem = std::fs::read("ca.pem").unwrap();
//! let net = NetConfig::default();
//! // 1. Server-authenticated TLS only: submit a CSR, show the fingerprint.
//! let pending = Enrollment::begin(&base, &ca_pem, "unit-3", &net).await?;
//! println!("ask the operator to approve {} (key {})", pending.id, pending.key_fingerprint);
//! // 2. Wait for `bootd nodes approve`.
//! let id: Identity = pending
//!     .wait(std::time::Duration::from_secs(2), std::time::Duration::from_secs(600))
//!     .await?;
//! // 3. mTLS from now on.
//! bootd_client::report(&base, &ca_pem, &id, &net, &bootd_api::NodeReport {
//!     slot: bootd_api::Slot::A, version: "1.2.0".into(),
//!     security_version: Some(bootd_api::SecurityVersion(3)), confirmed: true,
//!     boot_img_sha256: None,
//! }).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bootd_api::{paths, EnrollAnswer, EnrollRequest, NodeReport, NodeSelf, ReportAck};
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{Error, Result};
use crate::http::{Client, NetConfig};
use crate::tls::client_config;

/// Largest answer the API sends (a certificate, a node's assignments).
const MAX_ANSWER: u64 = 1 << 20;

/// A node's key and the certificate the rack CA issued for it.
#[derive(Clone)]
pub struct Identity {
    /// Node name.
    pub node: String,
    /// Private key, PEM (keep it 0600; never log it).
    pub key_pem: String,
    /// Client certificate, PEM.
    pub cert_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node", &self.node)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A TLS configuration trusting only `ca_pem` and presenting this
    /// identity: use it for every request to bootd after enrollment (TUF
    /// metadata and targets included).
    pub fn mtls_config(&self, ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>> {
        client_config(
            ca_pem,
            Some((self.cert_pem.as_bytes(), self.key_pem.as_bytes())),
        )
    }
}

/// An enrollment request submitted and waiting for the operator.
#[derive(Clone)]
pub struct Enrollment {
    /// Request id (as `bootd nodes pending` shows it).
    pub id: String,
    /// SHA-256 of the node's public key: show it so the operator can compare.
    pub key_fingerprint: String,
    node: String,
    key_pem: String,
    base: Url,
    client: Client,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment")
            .field("id", &self.id)
            .field("node", &self.node)
            .field("key_fingerprint", &self.key_fingerprint)
            .finish_non_exhaustive()
    }
}

/// A fresh node key (ECDSA P-256, PEM) and a CSR for it naming `node`.
pub fn new_key_and_csr(node: &str) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, node);
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

fn join(base: &Url, path: &str) -> Result<Url> {
    base.join(path).map_err(|_| Error::NoHost {
        url: format!("{base}{path}"),
    })
}

fn decode<T: DeserializeOwned>(url: &Url, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Decode {
        url: url.to_string(),
        source,
    })
}

fn status_err(url: &Url, status: StatusCode, body: &[u8]) -> Error {
    Error::Status {
        url: url.to_string(),
        status: status.as_u16(),
        body: String::from_utf8_lossy(body).chars().take(200).collect(),
    }
}

/// An enrollment request as a node keeps it across reboots (the key
/// included: keep it 0600), so that the operator's approval of that
/// request still counts after the node restarted while waiting.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingEnrollment {
    /// Request id.
    pub id: String,
    /// Node name.
    pub node: String,
    /// SHA-256 of the public key (what the operator compares).
    pub key_fingerprint: String,
    /// The private key, PEM (never logged).
    pub key_pem: String,
}

impl std::fmt::Debug for PendingEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingEnrollment")
            .field("id", &self.id)
            .field("node", &self.node)
            .field("key_fingerprint", &self.key_fingerprint)
            .finish_non_exhaustive()
    }
}

impl Enrollment {
    /// What to keep to [`Enrollment::resume`] this request later.
    pub fn pending(&self) -> PendingEnrollment {
        PendingEnrollment {
            id: self.id.clone(),
            node: self.node.clone(),
            key_fingerprint: self.key_fingerprint.clone(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// Takes up a request submitted before (by this node, before a
    /// reboot): nothing is sent until [`Enrollment::wait`].
    pub fn resume(
        base: &Url,
        ca_pem: &[u8],
        p: &PendingEnrollment,
        net: &NetConfig,
    ) -> Result<Enrollment> {
        Ok(Enrollment {
            id: p.id.clone(),
            key_fingerprint: p.key_fingerprint.clone(),
            node: p.node.clone(),
            key_pem: p.key_pem.clone(),
            base: base.clone(),
            client: Client::new(Some(client_config(ca_pem, None)?), net.clone()),
        })
    }

    /// Creates a fresh key and CSR for `node` and submits it over
    /// server-authenticated TLS (trusting only `ca_pem`).
    pub async fn begin(
        base: &Url,
        ca_pem: &[u8],
        node: &str,
        net: &NetConfig,
    ) -> Result<Enrollment> {
        let (key_pem, csr_pem) = new_key_and_csr(node)?;
        let client = Client::new(Some(client_config(ca_pem, None)?), net.clone());
        let req = EnrollRequest {
            node: node.to_owned(),
            csr_pem,
        };
        let body = serde_json::to_vec(&req).expect("an EnrollRequest always serializes");
        let url = join(base, paths::ENROLL)?;
        let (status, bytes) = client
            .call(
                Method::POST,
                &url,
                Some((body, "application/json")),
                MAX_ANSWER,
            )
            .await?;
        match (status, decode::<EnrollAnswer>(&url, &bytes)) {
            (
                StatusCode::ACCEPTED,
                Ok(EnrollAnswer::Pending {
                    id,
                    key_fingerprint: Some(key_fingerprint),
                    ..
                }),
            ) => Ok(Enrollment {
                id,
                key_fingerprint,
                node: node.to_owned(),
                key_pem,
                base: base.clone(),
                client,
            }),
            (StatusCode::ACCEPTED, Ok(other)) => Err(Error::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: format!("unexpected answer {other:?}"),
            }),
            (StatusCode::ACCEPTED, Err(e)) => Err(e),
            (s, _) => Err(status_err(&url, s, &bytes)),
        }
    }

    /// Polls until the operator approves (→ the identity) or denies (→
    /// [`Error::Denied`]), or `timeout` passes ([`Error::NotApproved`]).
    pub async fn wait(&self, poll: Duration, timeout: Duration) -> Result<Identity> {
        let url = join(&self.base, &paths::enroll_status(&self.id))?;
        let start = Instant::now();
        loop {
            let (status, bytes) = self
                .client
                .call(Method::GET, &url, None, MAX_ANSWER)
                .await?;
            match status {
                StatusCode::OK => match decode::<EnrollAnswer>(&url, &bytes)? {
                    EnrollAnswer::Issued(i) => {
                        return Ok(Identity {
                            node: self.node.clone(),
                            key_pem: self.key_pem.clone(),
                            cert_pem: i.cert_pem,
                        })
                    }
                    other => {
                        return Err(Error::Status {
                            url: url.to_string(),
                            status: status.as_u16(),
                            body: format!("unexpected answer {other:?}"),
                        })
                    }
                },
                StatusCode::ACCEPTED => {}
                StatusCode::FORBIDDEN => {
                    return Err(Error::Denied {
                        id: self.id.clone(),
                    })
                }
                StatusCode::NOT_FOUND => {
                    return Err(Error::UnknownRequest {
                        id: self.id.clone(),
                    })
                }
                s => return Err(status_err(&url, s, &bytes)),
            }
            if start.elapsed() >= timeout {
                return Err(Error::NotApproved {
                    id: self.id.clone(),
                    after: timeout,
                });
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// An mTLS exchange with bootd that must answer `200` with JSON.
async fn node_call<T: DeserializeOwned>(
    base: &Url,
    ca_pem: &[u8],
    id: &Identity,
    net: &NetConfig,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<T> {
    let client = Client::new(Some(id.mtls_config(ca_pem)?), net.clone());
    let url = join(base, path)?;
    let body = body.map(|b| (b, "application/json"));
    let (status, bytes) = client.call(method, &url, body, MAX_ANSWER).await?;
    if status != StatusCode::OK {
        return Err(status_err(&url, status, &bytes));
    }
    decode(&url, &bytes)
}

/// Reports what the node installed and booted, over mTLS.
pub async fn report(
    base: &Url,
    ca_pem: &[u8],
    id: &Identity,
    net: &NetConfig,
    report: &NodeReport,
) -> Result<ReportAck> {
    let body = serde_json::to_vec(report).expect("a NodeReport always serializes");
    node_call(
        base,
        ca_pem,
        id,
        net,
        Method::POST,
        paths::NODE_REPORT,
        Some(body),
    )
    .await
}

/// Tells bootd about an update the node refused, over mTLS.
pub async fn refusal(
    base: &Url,
    ca_pem: &[u8],
    id: &Identity,
    net: &NetConfig,
    refusal: &bootd_api::RefusalReport,
) -> Result<ReportAck> {
    let body = serde_json::to_vec(refusal).expect("a RefusalReport always serializes");
    node_call(
        base,
        ca_pem,
        id,
        net,
        Method::POST,
        paths::NODE_REFUSAL,
        Some(body),
    )
    .await
}

/// What bootd knows about the calling node (name, groups, targets the
/// signed metadata assigns to it), over mTLS. Informational: the node must
/// still verify assignments in the signed targets metadata itself.
pub async fn whoami(base: &Url, ca_pem: &[u8], id: &Identity, net: &NetConfig) -> Result<NodeSelf> {
    node_call(base, ca_pem, id, net, Method::GET, paths::NODE_SELF, None).await
}
