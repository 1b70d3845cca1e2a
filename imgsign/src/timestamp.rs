//! Re-signing `timestamp.json` with the online timestamp key.
//!
//! The timestamp role expires quickly (a day by default) so that a client
//! notices when it is cut off from fresh metadata (TUF's freeze attack). The
//! holder of the timestamp key — bootd, on the rack — re-signs it before it
//! expires, naming the same snapshot with a higher version.

use std::path::Path;

use tough::schema::{Signed, Timestamp};

use crate::error::{Error, Result};
use crate::repo::{self, Expiries, Published};
use crate::signer::SigningKeyPair;

/// Re-signs the timestamp of the repository at `dir` (checked as
/// [`Published::open`] does) to expire `lifetime` after `now`, atomically.
/// Returns the new timestamp.
pub fn refresh(
    dir: &Path,
    key: &SigningKeyPair,
    lifetime: jiff::SignedDuration,
    now: jiff::Timestamp,
) -> Result<Signed<Timestamp>> {
    let published = Published::open(dir)?;
    refresh_published(&published, key, lifetime, now)
}

/// [`refresh`] for an already opened repository.
pub fn refresh_published(
    published: &Published,
    key: &SigningKeyPair,
    lifetime: jiff::SignedDuration,
    now: jiff::Timestamp,
) -> Result<Signed<Timestamp>> {
    let layout = &published.layout;
    if key.is_insecure_example() {
        for (name, target) in published.targets.signed.targets_iter() {
            let info = racklet_release::ReleaseInfo::from_custom(name.raw(), &target.custom)?;
            if !info.channel.is_demo() {
                return Err(Error::ExampleKeyOutsideDemo {
                    key_id: key.key_id().into(),
                    channel: info.channel.to_string(),
                });
            }
        }
    }
    let _lock = published.lock_unchanged()?;
    let snap_version = published.snapshot.signed.version;
    let snap_bytes = &published.snapshot_bytes;
    let expiries = Expiries {
        timestamp: lifetime,
        ..Expiries::default()
    };
    let new = repo::write_timestamp(
        layout,
        &repo::SignContext {
            root: &published.root.signed,
            keys: &[key],
            now,
            expiries: &expiries,
        },
        snap_version,
        snap_bytes,
        repo::next(published.timestamp.signed.version),
    )?;
    tracing::info!(
        repo = %layout.dir().display(),
        version = new.signed.version.get(),
        expires = %new.signed.expires,
        "re-signed timestamp"
    );
    Ok(new)
}

/// True if the timestamp expires within `margin` of `now` (time to refresh).
pub fn needs_refresh(
    timestamp: &Signed<Timestamp>,
    margin: jiff::SignedDuration,
    now: jiff::Timestamp,
) -> bool {
    match now.checked_add(margin) {
        Ok(t) => timestamp.signed.expires <= t,
        Err(_) => true,
    }
}

/// Refuses a lifetime that is not positive.
pub fn check_lifetime(lifetime: jiff::SignedDuration) -> Result<()> {
    if lifetime.is_positive() {
        Ok(())
    } else {
        Err(Error::InvalidValue {
            what: "timestamp lifetime",
            value: lifetime.to_string(),
            reason: "must be positive".into(),
        })
    }
}
