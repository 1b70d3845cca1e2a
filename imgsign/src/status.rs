//! `imgsign status`: what expires when, so nobody finds an expired
//! repository on the morning of a class.

use std::path::Path;

use tough::schema::RoleType;

use crate::error::Result;
use crate::repo::{self, Published};
use racklet_release::ReleaseInfo;

/// The timestamp role is flagged only this close to its expiry.
pub const TIMESTAMP_WARN: jiff::SignedDuration = jiff::SignedDuration::from_hours(2);

/// How urgent a role's expiry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    /// Fine.
    Ok,
    /// Expires within the warning window.
    Soon,
    /// Already expired: clients refuse it.
    Expired,
}

/// One role's line in the status.
#[derive(Debug, Clone)]
pub struct RoleStatus {
    /// Role name.
    pub role: RoleType,
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expires: jiff::Timestamp,
    /// Time left (negative when expired).
    pub left: jiff::SignedDuration,
    /// Urgency.
    pub urgency: Urgency,
    /// Keys allowed to sign it and how many must.
    pub keys: Vec<String>,
    /// Threshold.
    pub threshold: u64,
}

/// The status of a repository.
#[derive(Debug, Clone)]
pub struct Status {
    /// Per role, root first.
    pub roles: Vec<RoleStatus>,
    /// Targets with their release facts (`Err` text if unreadable).
    pub targets: Vec<(String, u64, std::result::Result<ReleaseInfo, String>)>,
}

impl Status {
    /// The worst urgency of any role.
    pub fn worst(&self) -> Urgency {
        self.roles
            .iter()
            .map(|r| r.urgency)
            .max()
            .unwrap_or(Urgency::Ok)
    }
}

/// Reads the repository's state (checked as [`Published::open`] does) and
/// rates each role's expiry against `now` and the warning window.
pub fn status(dir: &Path, now: jiff::Timestamp, warn: jiff::SignedDuration) -> Result<Status> {
    Ok(of(&Published::open(dir)?, now, warn))
}

/// [`status`] of an already opened repository.
pub fn of(p: &Published, now: jiff::Timestamp, warn: jiff::SignedDuration) -> Status {
    let root = &p.root.signed;
    let line = |role: RoleType, version: u64, expires: jiff::Timestamp| {
        let left = now.duration_until(expires);
        // The timestamp lives for hours and is re-signed by bootd: it is
        // only worth a warning when it is about to run out.
        let warn = if role == RoleType::Timestamp {
            warn.min(TIMESTAMP_WARN)
        } else {
            warn
        };
        let urgency = if left <= jiff::SignedDuration::ZERO {
            Urgency::Expired
        } else if left <= warn {
            Urgency::Soon
        } else {
            Urgency::Ok
        };
        RoleStatus {
            role,
            version,
            expires,
            left,
            urgency,
            keys: repo::role_key_ids(root, role),
            threshold: root
                .roles
                .get(&role)
                .map(|r| r.threshold.get())
                .unwrap_or(0),
        }
    };
    let roles = vec![
        line(RoleType::Root, root.version.get(), root.expires),
        line(
            RoleType::Targets,
            p.targets.signed.version.get(),
            p.targets.signed.expires,
        ),
        line(
            RoleType::Snapshot,
            p.snapshot.signed.version.get(),
            p.snapshot.signed.expires,
        ),
        line(
            RoleType::Timestamp,
            p.timestamp.signed.version.get(),
            p.timestamp.signed.expires,
        ),
    ];
    let mut targets: Vec<_> = p
        .targets
        .signed
        .targets_iter()
        .map(|(n, t)| {
            (
                n.raw().to_owned(),
                t.length,
                ReleaseInfo::from_custom(n.raw(), &t.custom).map_err(|e| e.to_string()),
            )
        })
        .collect();
    targets.sort_by(|a, b| a.0.cmp(&b.0));
    Status { roles, targets }
}

/// Formats a duration as days/hours for humans (`12d 3h`, `-2h 5m`).
pub fn human(d: jiff::SignedDuration) -> String {
    let neg = d.is_negative();
    let s = d.as_secs().unsigned_abs();
    let (days, hours, mins) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    let body = if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else {
        format!("{mins}m")
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}
