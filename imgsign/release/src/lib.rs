//! What a signed release says about each image: the `racklet` custom metadata
//! of a TUF target, which stage1 enforces and bootd only serves.
//!
//! ```json
//! "custom": { "racklet": {
//!     "kind": "os", "version": "1.2.0", "security_version": 3,
//!     "arch": "x86_64", "channel": "stable",
//!     "assign": { "nodes": ["unit-3"], "groups": ["workers"], "all": false }
//! } }
//! ```
//!
//! This is signed by the (offline) targets role, so a compromised boot server
//! can withhold a release but never change which nodes may run an image, its
//! security version or its architecture: Uptane's "director" decision, made by
//! the release signer instead of an online server.
//!
//! A contract crate: imgsign writes these facts, bootd serves and shows them,
//! `images` stamps recipes with them and stage1 enforces them. It holds
//! types and their encoding only — no IO, no TUF library — so the node's
//! code can read a release without linking the signer.
#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

pub use racklet_bmc_proto::SecurityVersion;
use racklet_hardware::{Arch, NodeName};
use serde::{Deserialize, Serialize};

/// Why a release value was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value that fails its validation rule.
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidValue {
        /// What it is (e.g. "target name").
        what: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A target whose `racklet` custom metadata is missing.
    #[error("target `{name}` has no `{CUSTOM_KEY}` custom metadata")]
    MissingCustom {
        /// Target name.
        name: String,
    },
    /// A target whose `racklet` custom metadata does not parse.
    #[error("target `{name}`: bad `{CUSTOM_KEY}` custom metadata: {source}")]
    BadCustom {
        /// Target name.
        name: String,
        /// What is wrong with it.
        source: serde_json::Error,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The only channel the published example keys may sign: the tools refuse
/// the example keys for any other.
pub const DEMO_CHANNEL: &str = "demo";

/// The custom-metadata key under which a target's [`ReleaseInfo`] lives.
pub const CUSTOM_KEY: &str = "racklet";

/// What kind of image a target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageKind {
    /// An operating system image (a UKI) that stage1 installs into a slot.
    Os,
    /// The stage1 loader itself (a UKI the platform firmware fetches).
    Stage1,
    /// Firmware for the BMC microcontroller.
    BmcFirmware,
}

impl ImageKind {
    /// The name used on the command line and in metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Os => "os",
            ImageKind::Stage1 => "stage1",
            ImageKind::BmcFirmware => "bmc-firmware",
        }
    }
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ImageKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "os" => Ok(ImageKind::Os),
            "stage1" => Ok(ImageKind::Stage1),
            "bmc-firmware" => Ok(ImageKind::BmcFirmware),
            _ => Err(Error::InvalidValue {
                what: "image kind",
                value: s.into(),
                reason: "want os, stage1 or bmc-firmware".into(),
            }),
        }
    }
}

/// A release channel: a label such as `stable`, `beta` or `demo`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Channel(String);

impl Channel {
    /// Validates a channel name (1–32 of `a-z 0-9 -`).
    pub fn new(s: &str) -> Result<Channel> {
        if (1..=32).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            Ok(Channel(s.to_owned()))
        } else {
            Err(Error::InvalidValue {
                what: "channel",
                value: s.into(),
                reason: "want 1-32 of a-z 0-9 -".into(),
            })
        }
    }

    /// The channel name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the `demo` channel, the only one the example keys may sign.
    pub fn is_demo(&self) -> bool {
        self.0 == DEMO_CHANNEL
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Channel::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl FromStr for Channel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Channel::new(s)
    }
}

/// A target name: a flat file name of `A-Z a-z 0-9 . _ -`, not starting with
/// a dot, at most 200 bytes. Flat names keep consistent-snapshot paths
/// unambiguous across TUF implementations and make path traversal impossible.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ImageName(String);

impl ImageName {
    /// Validates a target name.
    pub fn new(s: &str) -> Result<ImageName> {
        let bad = |reason: &str| Error::InvalidValue {
            what: "target name",
            value: s.into(),
            reason: reason.into(),
        };
        if s.is_empty() || s.len() > 200 {
            return Err(bad("must be 1-200 bytes"));
        }
        if s.starts_with('.') {
            return Err(bad("must not start with `.` (no hidden files, no `..`)"));
        }
        if s.contains('/') || s.contains('\\') {
            return Err(bad("must be a plain file name: no `/`, no absolute paths"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(bad("only A-Z a-z 0-9 . _ - are allowed"));
        }
        Ok(ImageName(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<'de> Deserialize<'de> for ImageName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        ImageName::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Which nodes may run an image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Nodes named one by one.
    #[serde(default)]
    pub nodes: BTreeSet<NodeName>,
    /// Node groups (as in `hardware/rack.yaml`).
    #[serde(default)]
    pub groups: BTreeSet<String>,
    /// Every node of the rack.
    #[serde(default)]
    pub all: bool,
}

impl Assignment {
    /// True if the node with this name and these groups may run the image.
    pub fn admits<'a>(&self, node: &NodeName, groups: impl IntoIterator<Item = &'a str>) -> bool {
        self.all || self.nodes.contains(node) || groups.into_iter().any(|g| self.groups.contains(g))
    }

    /// True if it admits nobody (refused when signing: a release nobody may
    /// run is a mistake).
    pub fn is_empty(&self) -> bool {
        !self.all && self.nodes.is_empty() && self.groups.is_empty()
    }
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.all {
            return f.write_str("all nodes");
        }
        let mut parts: Vec<String> = self.nodes.iter().map(|n| n.to_string()).collect();
        parts.extend(self.groups.iter().map(|g| format!("group:{g}")));
        f.write_str(&parts.join(","))
    }
}

/// The signed facts about one image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseInfo {
    /// What the image is.
    pub kind: ImageKind,
    /// Its version (semantic versioning).
    pub version: semver::Version,
    /// Its anti-rollback version. A node never installs an image whose
    /// security version is below the minimum its BMC holds; the minimum is
    /// raised once an image with a higher one has booted successfully.
    pub security_version: SecurityVersion,
    /// The architecture it runs on.
    pub arch: Arch,
    /// The channel it is released on.
    pub channel: Channel,
    /// Which nodes may run it.
    pub assign: Assignment,
    /// A signed downgrade: a node whose installed image is newer may still
    /// install this one (backing out a bad release). Without it, stage1
    /// refuses any image older than the one it runs, so replayed old
    /// metadata cannot take a node back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub downgrade: bool,
}

impl ReleaseInfo {
    /// Reads the release facts of target `name` from its TUF custom
    /// metadata (the target's `custom` object).
    pub fn from_custom(
        name: &str,
        custom: &HashMap<String, serde_json::Value>,
    ) -> Result<ReleaseInfo> {
        let value = custom
            .get(CUSTOM_KEY)
            .ok_or_else(|| Error::MissingCustom { name: name.into() })?;
        ReleaseInfo::deserialize(value).map_err(|source| Error::BadCustom {
            name: name.into(),
            source,
        })
    }

    /// The custom-metadata map for a TUF target.
    pub fn to_custom(&self) -> HashMap<String, serde_json::Value> {
        let mut m = HashMap::new();
        m.insert(
            CUSTOM_KEY.to_owned(),
            serde_json::to_value(self).expect("ReleaseInfo always serializes"),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_refuse_traversal() {
        for bad in [
            "",
            "..",
            "../x",
            "/etc/passwd",
            "a/b",
            ".hidden",
            "a b",
            "a\\b",
            "é",
        ] {
            assert!(ImageName::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["os-x86_64-1.2.0.uki", "stage1.efi", "A_b-1"] {
            ImageName::new(good).unwrap();
        }
        assert!(serde_json::from_str::<ImageName>("\"../x\"").is_err());
    }

    #[test]
    fn assignment_admits_by_name_group_or_all() {
        let n3 = NodeName::new("unit-3").unwrap();
        let mut a = Assignment::default();
        assert!(a.is_empty());
        assert!(!a.admits(&n3, ["workers"]));
        a.groups.insert("workers".into());
        assert!(a.admits(&n3, ["workers"]));
        assert!(!a.admits(&n3, ["control"]));
        a.groups.clear();
        a.nodes.insert(n3.clone());
        assert!(a.admits(&n3, []));
        assert!(!a.admits(&NodeName::new("unit-4").unwrap(), []));
        let all = Assignment {
            all: true,
            ..Default::default()
        };
        assert!(all.admits(&n3, []));
    }

    #[test]
    fn release_info_round_trips_and_rejects_unknown_fields() {
        let info = ReleaseInfo {
            kind: ImageKind::Os,
            version: "1.2.0".parse().unwrap(),
            security_version: SecurityVersion(3),
            arch: Arch::X86_64,
            channel: Channel::new("stable").unwrap(),
            assign: Assignment {
                groups: ["workers".to_string()].into(),
                ..Default::default()
            },
            downgrade: false,
        };
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!(v["kind"], "os");
        assert_eq!(v["security_version"], 3);
        let back: ReleaseInfo = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, info);
        let mut extra = v;
        extra["trust_me"] = true.into();
        assert!(serde_json::from_value::<ReleaseInfo>(extra).is_err());
    }
}
