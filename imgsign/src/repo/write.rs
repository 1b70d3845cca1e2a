//! Writing new metadata: lifetimes, who signs, and publishing snapshot and
//! timestamp (the timestamp's rename is the commit point).

use std::num::NonZeroU64;

use tough::schema::{Root, Signed, Snapshot, Timestamp};

use super::layout::{to_bytes, Layout, SPEC_VERSION};
use super::roles::{metafile, sign_role};
use crate::error::{Error, Result};
use crate::signer::SigningKeyPair;
use racklet_fsio as fsio;

/// Expiry periods for newly signed metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiries {
    /// Root: long-lived, re-signed in a key ceremony.
    pub root: jiff::SignedDuration,
    /// Targets: the release signer's promise.
    pub targets: jiff::SignedDuration,
    /// Snapshot.
    pub snapshot: jiff::SignedDuration,
    /// Timestamp: short, re-signed by bootd's online key.
    pub timestamp: jiff::SignedDuration,
}

impl Default for Expiries {
    /// root 365 days, targets 90 days, snapshot 30 days, timestamp 1 day.
    fn default() -> Self {
        let day = jiff::SignedDuration::from_hours(24);
        Expiries {
            root: day * 365,
            targets: day * 90,
            snapshot: day * 30,
            timestamp: day,
        }
    }
}

/// Parses a duration such as `90d`, `12h`, `1w`, `30m` or `45s`.
pub fn parse_duration(s: &str) -> Result<jiff::SignedDuration> {
    let bad = |reason: &str| Error::InvalidValue {
        what: "duration",
        value: s.into(),
        reason: reason.into(),
    };
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("needs a unit: s, m, h, d or w"))?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad("needs a number, e.g. 90d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad("unit must be s, m, h, d or w")),
    };
    if n <= 0 || n > 100 * 365 {
        return Err(bad("must be positive and at most 100 years"));
    }
    Ok(jiff::SignedDuration::from_secs(n * secs))
}

/// `now + d`, rounded down to whole seconds (TUF timestamps have no
/// fractions).
pub fn expires_at(now: jiff::Timestamp, d: jiff::SignedDuration) -> jiff::Timestamp {
    let t = now.checked_add(d).expect("expiry within jiff's range");
    jiff::Timestamp::from_second(t.as_second()).expect("whole seconds are in range")
}

/// The next version after `v`.
pub fn next(v: NonZeroU64) -> NonZeroU64 {
    v.checked_add(1).expect("metadata version overflow")
}

/// Who signs new metadata, and when: the root that authorizes the keys, the
/// keys at hand, the time, and the lifetimes of what is signed.
#[derive(Debug, Clone, Copy)]
pub struct SignContext<'a> {
    /// The root whose keys and thresholds apply.
    pub root: &'a Root,
    /// The keys at hand; each signs the roles the root authorizes it for.
    pub keys: &'a [&'a SigningKeyPair],
    /// The time of signing.
    pub now: jiff::Timestamp,
    /// Lifetimes of new metadata.
    pub expiries: &'a Expiries,
}

/// Builds, signs and atomically publishes new snapshot and timestamp roles
/// for `targets` (already written), in that order. The timestamp's rename is
/// the commit point.
pub fn publish_snapshot_and_timestamp(
    layout: &Layout,
    cx: &SignContext<'_>,
    targets_version: NonZeroU64,
    targets_bytes: &[u8],
    snapshot_version: NonZeroU64,
    timestamp_version: NonZeroU64,
) -> Result<Signed<Timestamp>> {
    let mut snapshot = Snapshot::new(
        SPEC_VERSION.into(),
        snapshot_version,
        expires_at(cx.now, cx.expiries.snapshot),
    );
    snapshot.meta.insert(
        "targets.json".into(),
        metafile(targets_version, targets_bytes),
    );
    let snapshot = sign_role(snapshot, cx.root, cx.keys)?;
    let snap_bytes = to_bytes(&snapshot)?;
    fsio::write_atomic(
        &layout.snapshot(snapshot_version.get()),
        &snap_bytes,
        fsio::Mode::Public,
    )?;
    write_timestamp(layout, cx, snapshot_version, &snap_bytes, timestamp_version)
}

/// Signs and atomically replaces `timestamp.json`, naming the given snapshot.
pub fn write_timestamp(
    layout: &Layout,
    cx: &SignContext<'_>,
    snapshot_version: NonZeroU64,
    snapshot_bytes: &[u8],
    timestamp_version: NonZeroU64,
) -> Result<Signed<Timestamp>> {
    let mut ts = Timestamp::new(
        SPEC_VERSION.into(),
        timestamp_version,
        expires_at(cx.now, cx.expiries.timestamp),
    );
    ts.meta.insert(
        "snapshot.json".into(),
        metafile(snapshot_version, snapshot_bytes),
    );
    let ts = sign_role(ts, cx.root, cx.keys)?;
    fsio::write_atomic(&layout.timestamp(), &to_bytes(&ts)?, fsio::Mode::Public)?;
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90d").unwrap().as_secs(), 90 * 86_400);
        assert_eq!(parse_duration("2w").unwrap().as_secs(), 14 * 86_400);
        assert_eq!(parse_duration("45s").unwrap().as_secs(), 45);
        for bad in ["", "d", "10", "10y", "-1d", "0d", "1.5d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
