//! Downloading a verified target into a slot: one pass (network → hash →
//! disk), resumed with `Range` after an interrupted transfer, with backoff
//! — and after a power cut or a kill, from the install's last checkpoint
//! ([`crate::install`]: the durable prefix, hashed again from the disk).
//! A `206` must carry the `Content-Range` asked for (checked by
//! [`bootd_client::Client::get`]): bytes from anywhere else would land at
//! the wrong offset.
//! TUF 5.7.1–5.7.3: the signed length bounds what is accepted (more bytes
//! are refused as they arrive) and the SHA-256 is checked before the slot
//! is marked valid ([`crate::install::Session::finish`]).

use std::time::Duration;

use futures::StreamExt;
use racklet_bmc_proto::Slot;
use url::Url;

use crate::error::{Error, Result};
use crate::install::Session;
use crate::plan::ReleaseTarget;
use crate::slots::{Disk, SlotImage, SlotStore};
use bootd_client::Client;

/// Retry policy for interrupted downloads. `Default`: 5 retries, 500 ms
/// doubling to at most 8 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First wait.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(8),
            retries: 5,
        }
    }
}

impl Backoff {
    /// The wait before retry `n` (0-based).
    pub fn delay(&self, n: u32) -> Duration {
        self.initial
            .saturating_mul(1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX))
            .min(self.max)
    }
}

/// Whether a failed transfer is worth resuming: a broken connection, a
/// stall or a server error may heal; a refusal (TLS trust, 4xx, a length
/// over the signed one, a wrong `Content-Range`) would only repeat.
fn retryable(e: &Error) -> bool {
    match e {
        Error::Http(e) => e.is_transient(),
        Error::ShortBody { .. } => true,
        _ => false,
    }
}

/// What an install did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// The image now in the slot.
    pub image: SlotImage,
    /// The slot.
    pub slot: Slot,
    /// Transfers resumed with `Range` (an interrupted install taken over
    /// from its checkpoint counts as one).
    pub resumed: u32,
    /// Bytes taken over from an install cut short before (0: none).
    pub resumed_from: u64,
}

/// Streams `target` from `url` into `into` and commits it (see
/// [`crate::install`] for the commit sequence).
pub async fn install_target<D: Disk>(
    store: &mut SlotStore<D>,
    into: Slot,
    target: &ReleaseTarget,
    url: &Url,
    client: &Client,
    backoff: &Backoff,
) -> Result<Installed> {
    let mut s = Session::resume(store, into, target.slot_image())?;
    let resumed_from = s.resumed_from();
    let mut failures = 0u32;
    let mut resumed = 0u32;
    loop {
        let from = s.written();
        if from == target.length {
            break;
        }
        if from > 0 {
            resumed += 1;
        }
        match copy(&mut s, url, from, target, client).await {
            Ok(()) => break,
            Err(e) if retryable(&e) && failures < backoff.retries => {
                let wait = backoff.delay(failures);
                failures += 1;
                tracing::warn!(%url, written = s.written(), error = %e, ?wait, "download interrupted; resuming");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
    let image = s.finish()?;
    Ok(Installed {
        image,
        slot: into,
        resumed,
        resumed_from,
    })
}

async fn copy<D: Disk>(
    s: &mut Session<'_, D>,
    url: &Url,
    from: u64,
    target: &ReleaseTarget,
    client: &Client,
) -> Result<()> {
    let resp = client.get(url, from).await?;
    if let Some(n) = resp.content_length {
        if from + n > target.length {
            return Err(Error::TooLong {
                name: target.name.to_string(),
                expected_len: target.length,
            });
        }
    }
    let mut body = resp.body;
    let tenth = (target.length / 10).max(1);
    while let Some(chunk) = body.next().await {
        let before = s.written() / tenth;
        s.write(&chunk?)?;
        if s.written() / tenth > before {
            // Progress on the console: every tenth of the image.
            tracing::info!(
                target = %target.name,
                slot = ?s.slot(),
                percent = s.written() * 100 / target.length.max(1),
                "installing"
            );
        }
    }
    if s.written() < target.length {
        return Err(Error::ShortBody {
            url: url.to_string(),
            got: s.written(),
            expected: target.length,
        });
    }
    Ok(())
}
