//! Signed time from bootd, for a BMC whose clock was never set.

use url::Url;

use super::BootConfig;
use crate::error::{Error, Result};
use crate::tuf::{self, TufConfig};
use bootd_client::TufTransport;

/// Asks `cfg.bootd` for the time signed by the online timestamp key
/// ([`bootd_api::time`]), verified against the node's trusted root: what a
/// boot does when the BMC's clock was never set.
pub async fn signed_time(cfg: &BootConfig) -> Result<jiff::Timestamp> {
    let base = cfg.bootd.as_ref().ok_or_else(|| Error::SignedTime {
        why: "no bootd to ask (offline)".to_owned(),
    })?;
    fetch_signed_time(&cfg.tuf()?, &cfg.transport()?, base, &cfg.root).await
}

/// [`signed_time`] with the pieces a boot already has.
pub(super) async fn fetch_signed_time(
    tcfg: &TufConfig,
    transport: &TufTransport,
    base: &Url,
    pinned: &std::path::Path,
) -> Result<jiff::Timestamp> {
    let mut nonce = [0u8; bootd_api::time::NONCE_LEN];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let mut url = base
        .join(bootd_api::paths::TIME)
        .map_err(|e| Error::SignedTime {
            why: format!("{base}: {e}"),
        })?;
    url.set_query(Some(&bootd_api::time::query(&nonce)));
    let (status, body) = transport
        .client()
        .call(hyper::Method::GET, &url, None, 16 << 10)
        .await?;
    if status != hyper::StatusCode::OK {
        return Err(Error::SignedTime {
            why: format!(
                "{url} answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ),
        });
    }
    let root = tuf::trusted_root(tcfg, Some(pinned))?;
    tuf::verify_time(&root, &body, &nonce)
}
