//! A minimal HTTPS GET pinned to the rack CA: the demo's own check of what
//! bootd serves (which release is in service), without trusting the system
//! roots.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// GET `https://localhost:{port}{path}`, trusting only `ca`.
pub async fn get(port: u16, path: &str, ca: &Path) -> Result<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).with_context(|| ca.display().to_string())? {
        roots.add(c.with_context(|| ca.display().to_string())?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())?;
    let resp = send.send_request(req).await?;
    if !resp.status().is_success() {
        bail!("GET {path}: {}", resp.status());
    }
    Ok(resp.into_body().collect().await?.to_bytes().to_vec())
}

/// The `signed.version` of a TUF metadata file.
pub fn version(json: &[u8]) -> Result<u64> {
    let v: serde_json::Value = serde_json::from_slice(json)?;
    v["signed"]["version"]
        .as_u64()
        .context("no signed.version in the metadata")
}

/// The timestamp version in bootd's `/healthz` answer (`ok timestamp=N`).
pub fn healthz_timestamp(body: &[u8]) -> Result<u64> {
    let text = String::from_utf8_lossy(body);
    text.split("timestamp=")
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("unexpected /healthz answer {text:?}"))
}
