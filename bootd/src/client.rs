//! The node side of bootd's API, for stage1 (and tests).
//!
//! ```no_run
//! # async fn demo() -> Result<(), bootd::Error> {
//! use bootd::client::{Enrollment, Identity};
//! let base = url::Url::parse("https://bootd.local:8443/").unwrap();
//! let ca_pem = std::fs::read("ca.pem").unwrap();
//! // 1. Server-authenticated TLS only: submit a CSR, show the fingerprint.
//! let pending = Enrollment::begin(&base, &ca_pem, "unit-3").await?;
//! println!("ask the operator to approve {} (key {})", pending.id, pending.key_fingerprint);
//! // 2. Wait for `bootd nodes approve`.
//! let id: Identity = pending
//!     .wait(std::time::Duration::from_secs(2), std::time::Duration::from_secs(600))
//!     .await?;
//! // 3. mTLS from now on.
//! bootd::client::report(&base, &ca_pem, &id, &bootd::nodes::NodeReport {
//!     slot: bootd::nodes::Slot::A, version: "1.2.0".into(),
//!     security_version: Some(3), confirmed: true,
//! }).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use url::Url;

use crate::error::{Error, Result};
use crate::nodes::NodeReport;
use crate::transport::{client_tls, HttpsClient};

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
    ca_pem: Vec<u8>,
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

fn roots(ca_pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Enrollment(format!("bad CA PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Enrollment("no CA certificate given".into()));
    }
    Ok(certs)
}

fn join(base: &Url, path: &str) -> Result<Url> {
    base.join(path).map_err(|e| Error::Request {
        url: base.to_string(),
        reason: e.to_string(),
    })
}

#[derive(Deserialize)]
struct Submitted {
    id: String,
    key_fingerprint: String,
}

#[derive(Deserialize)]
struct Issued {
    cert_pem: String,
}

impl Enrollment {
    /// Creates a fresh key and CSR for `node` and submits it over
    /// server-authenticated TLS (trusting only `ca_pem`).
    pub async fn begin(base: &Url, ca_pem: &[u8], node: &str) -> Result<Enrollment> {
        let (key_pem, csr_pem) = crate::pki::new_node_key_and_csr(node)?;
        let client = HttpsClient::new(client_tls(&roots(ca_pem)?, None)?);
        let body = serde_json::to_vec(&serde_json::json!({"node": node, "csr_pem": csr_pem}))
            .unwrap_or_default();
        let url = join(base, "v1/enroll")?;
        let (_, bytes) = client
            .call(
                Method::POST,
                &url,
                Some((body, "application/json")),
                64 * 1024,
            )
            .await?;
        let s: Submitted = serde_json::from_slice(&bytes).map_err(|e| Error::Request {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Enrollment {
            id: s.id,
            key_fingerprint: s.key_fingerprint,
            node: node.to_owned(),
            key_pem,
            base: base.clone(),
            ca_pem: ca_pem.to_vec(),
        })
    }

    /// Polls until the operator approves (→ the identity) or denies (→ error),
    /// or `timeout` passes.
    pub async fn wait(&self, poll: Duration, timeout: Duration) -> Result<Identity> {
        let client = HttpsClient::new(client_tls(&roots(&self.ca_pem)?, None)?);
        let url = join(&self.base, &format!("v1/enroll/{}", self.id))?;
        let start = Instant::now();
        loop {
            let resp = client.send(Method::GET, &url, None).await?;
            let status = resp.status();
            let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(
                resp.into_body(),
                64 * 1024,
            ))
            .await
            .map_err(|e| Error::Request {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .to_bytes();
            match status {
                StatusCode::OK => {
                    let i: Issued = serde_json::from_slice(&body).map_err(|e| Error::Request {
                        url: url.to_string(),
                        reason: e.to_string(),
                    })?;
                    return Ok(Identity {
                        node: self.node.clone(),
                        key_pem: self.key_pem.clone(),
                        cert_pem: i.cert_pem,
                    });
                }
                StatusCode::ACCEPTED => {}
                s => {
                    return Err(Error::Status {
                        url: url.to_string(),
                        status: s.as_u16(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    })
                }
            }
            if start.elapsed() >= timeout {
                return Err(Error::Enrollment(format!(
                    "request {} not approved within {timeout:?}",
                    self.id
                )));
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// A TLS client configuration trusting only the rack CA and presenting the
/// node's certificate: use it for every request to bootd after enrollment
/// (TUF metadata and targets included).
pub fn mtls_config(ca_pem: &[u8], id: &Identity) -> Result<Arc<rustls::ClientConfig>> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Enrollment(format!("bad certificate PEM: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
        .map_err(|e| Error::Enrollment(format!("bad key PEM: {e}")))?;
    client_tls(&roots(ca_pem)?, Some((chain, key)))
}

/// Reports what the node installed and booted, over mTLS.
pub async fn report(base: &Url, ca_pem: &[u8], id: &Identity, report: &NodeReport) -> Result<()> {
    let client = HttpsClient::new(mtls_config(ca_pem, id)?);
    let body = serde_json::to_vec(report).unwrap_or_default();
    client
        .call(
            Method::POST,
            &join(base, "v1/node/report")?,
            Some((body, "application/json")),
            64 * 1024,
        )
        .await?;
    Ok(())
}

/// What bootd knows about the calling node (name, groups, targets the signed
/// metadata assigns to it), over mTLS. Informational: the node must still
/// verify assignments in the signed targets metadata itself.
pub async fn whoami(base: &Url, ca_pem: &[u8], id: &Identity) -> Result<serde_json::Value> {
    let client = HttpsClient::new(mtls_config(ca_pem, id)?);
    let url = join(base, "v1/node/self")?;
    let (_, bytes) = client.call(Method::GET, &url, None, 1 << 20).await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Request {
        url: url.to_string(),
        reason: e.to_string(),
    })
}
