//! A minimal HTTPS GET pinned to the rack CA: the demo's own check of what
//! bootd serves (which release is in service), without trusting the system
//! roots.

use std::path::Path;

use anyhow::{bail, Context, Result};
use bootd_client::http::{Client, NetConfig};
use hyper::Method;

/// GET `https://localhost:{port}{path}`, trusting only `ca`, through the
/// same client (TLS builder, deadlines, limits) a node uses.
pub async fn get(port: u16, path: &str, ca: &Path) -> Result<Vec<u8>> {
    let ca_pem = std::fs::read(ca).with_context(|| ca.display().to_string())?;
    let tls = bootd_client::tls::client_config(&ca_pem, None)?;
    let url = format!("https://localhost:{port}{path}").parse()?;
    let (status, body) = Client::new(Some(tls), NetConfig::default())
        .call(Method::GET, &url, None, 1 << 20)
        .await?;
    if !status.is_success() {
        bail!("GET {path}: {status}");
    }
    Ok(body.to_vec())
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
