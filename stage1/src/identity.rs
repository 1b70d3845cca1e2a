//! The node's identity: a key it makes itself and the client certificate
//! bootd issues for it once the operator approves the request
//! (`bootd nodes approve ID`, after comparing the key's fingerprint with
//! the one the node printed). bootd requires that certificate for every
//! node endpoint — metadata and targets included — by default.
//!
//! Kept in the state directory, so on the slot disk with it
//! ([`crate::statearea`]):
//!
//! | path | what |
//! |---|---|
//! | `identity/node.key` | the private key (0600, never logged) |
//! | `identity/node.pem` | the certificate bootd issued |
//! | `identity/pending.json` | a request still waiting for the operator: the same request is taken up after a reboot, so an approval given meanwhile still counts |
//!
//! The disk is not trusted storage, and the identity is no secret from the
//! node's own OS (which can read the disk): it names the node to bootd,
//! it does not make anything the node runs trusted — that is TUF's job.
//! A node with no disk to keep it on asks again at every boot, as a new
//! request the operator must approve again; until then bootd serves it
//! nothing but first-stage files, enrollment and time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bootd_client::{Enrollment, NetConfig, PendingEnrollment};
use url::Url;

use crate::error::Result;

/// The identity's directory inside the state directory.
pub const DIR: &str = "identity";

fn paths(state_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let d = state_dir.join(DIR);
    (
        d.join("node.pem"),
        d.join("node.key"),
        d.join("pending.json"),
    )
}

/// The certificate and key kept from an earlier enrollment, if both exist.
pub fn stored(state_dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (cert, key, _) = paths(state_dir);
    (cert.is_file() && key.is_file()).then_some((cert, key))
}

/// Atomically, creating `identity/` if missing (racklet-fsio does both).
fn write(path: &Path, bytes: &[u8], mode: racklet_fsio::Mode) -> Result<()> {
    Ok(racklet_fsio::write_atomic(path, bytes, mode)?)
}

/// Enrolls `node`: takes up the request kept in `state_dir` (or submits a
/// new one, with a fresh key), then waits up to `wait` for the operator.
/// Returns the certificate and key files once issued.
pub async fn enroll(
    base: &Url,
    ca_pem: &[u8],
    node: &str,
    state_dir: &Path,
    net: &NetConfig,
    wait: Duration,
) -> Result<(PathBuf, PathBuf)> {
    let (cert, key, pending) = paths(state_dir);
    let kept = std::fs::read(&pending)
        .ok()
        .and_then(|b| serde_json::from_slice::<PendingEnrollment>(&b).ok())
        .filter(|p| p.node == node);
    let e = match kept {
        Some(p) => Enrollment::resume(base, ca_pem, &p, net)?,
        None => {
            let e = Enrollment::begin(base, ca_pem, node, net).await?;
            let json = serde_json::to_vec(&e.pending()).expect("a pending request serializes");
            write(&pending, &json, racklet_fsio::Mode::Secret)?;
            e
        }
    };
    tracing::info!(request = %e.id, key_sha256 = %e.key_fingerprint,
        "asking to join the rack: compare the fingerprint, then `bootd nodes approve {}`", e.id);
    match e.wait(Duration::from_secs(1), wait).await {
        Ok(id) => {
            write(&key, id.key_pem.as_bytes(), racklet_fsio::Mode::Secret)?;
            write(&cert, id.cert_pem.as_bytes(), racklet_fsio::Mode::Public)?;
            let _ = std::fs::remove_file(&pending);
            tracing::info!(request = %e.id, "enrolled: bootd issued this node's certificate");
            Ok((cert, key))
        }
        Err(err) => {
            // A denied or forgotten request is not asked about again: the
            // next boot submits a new one.
            if matches!(
                err,
                bootd_client::Error::Denied { .. } | bootd_client::Error::UnknownRequest { .. }
            ) {
                let _ = std::fs::remove_file(&pending);
            }
            Err(err.into())
        }
    }
}
