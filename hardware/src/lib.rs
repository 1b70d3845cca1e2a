//! The declarative description of a Racklet rack.
//!
//! `hardware/rack.yaml` describes the reference rack: which compute units sit
//! in which backplane slot, their MAC addresses, architectures and groups, the
//! SMBus address of each unit's BMC and the power-sequencing timings. bootd
//! reads it to know which nodes belong to the rack; the BMC simulator reads it
//! to build one BMC per unit.
//!
//! The YAML is parsed into a *wire* type (plain serde, unknown fields are
//! errors) and then converted by a pure [`TryFrom`] into the validated
//! [`Rack`]; every error names the field that is wrong, and parse errors carry
//! the line and column.
//!
//! ```
//! let rack = racklet_hardware::Rack::from_yaml_str(
//!     include_str!("../rack.yaml"),
//! ).unwrap();
//! assert_eq!(rack.nodes.len(), 5);
//! assert!(rack.node_by_name("unit-3").is_some());
//! ```
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a rack description was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read rack description {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The YAML is malformed or has an unknown or missing field
    /// (the message carries line and column).
    #[error("rack description{}: {source}", path_suffix(.path))]
    Parse {
        path: Option<PathBuf>,
        source: serde_norway::Error,
    },
    /// A field has a value that is not allowed.
    #[error("rack description{}: field `{field}`: {reason}", path_suffix(.path))]
    Invalid {
        path: Option<PathBuf>,
        field: String,
        reason: String,
    },
}

fn path_suffix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

/// A MAC address, `aa:bb:cc:dd:ee:ff` (lower- or upper-case hex).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(format!(
                "`{s}` is not a MAC address (want aa:bb:cc:dd:ee:ff)"
            ));
        }
        for (byte, part) in out.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(format!(
                    "`{s}` is not a MAC address (want aa:bb:cc:dd:ee:ff)"
                ));
            }
            *byte = u8::from_str_radix(part, 16)
                .map_err(|_| format!("`{s}` is not a MAC address (bad hex `{part}`)"))?;
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A CPU architecture a node can run, named as Rust target triples name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// 64-bit x86 (QEMU nodes, x86 boards); UEFI client architecture 0x10.
    X86_64,
    /// 64-bit Arm (Raspberry Pi 4/5); UEFI client architecture 0x13.
    Aarch64,
    /// Cortex-M4 (the BMC microcontroller).
    Thumbv7em,
}

impl Arch {
    /// The name used in recipes, release metadata and the rack description.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Thumbv7em => "thumbv7em",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" => Ok(Arch::X86_64),
            "aarch64" => Ok(Arch::Aarch64),
            "thumbv7em" => Ok(Arch::Thumbv7em),
            _ => Err(format!(
                "unknown architecture `{s}` (want x86_64, aarch64 or thumbv7em)"
            )),
        }
    }
}

/// A node name: 1–63 characters of `a-z 0-9 -`, starting with a letter
/// (a DNS label, so it can appear in certificates and URLs as it is).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(String);

impl NodeName {
    /// Validates and wraps a node name.
    pub fn new(s: &str) -> Result<Self, String> {
        let ok_len = (1..=63).contains(&s.len());
        let ok_first = s.starts_with(|c: char| c.is_ascii_lowercase());
        let ok_chars = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok_len && ok_first && ok_chars && !s.ends_with('-') {
            Ok(NodeName(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not a node name (1-63 of a-z 0-9 -, starting with a letter)"
            ))
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl FromStr for NodeName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeName::new(s)
    }
}

impl Serialize for NodeName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NodeName::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The serde wire format of `rack.yaml`. Use [`Rack`] instead.
pub mod wire {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RackFile {
        pub rack: RackId,
        pub power: Power,
        pub boot: Boot,
        pub nodes: Vec<Node>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RackId {
        pub id: String,
        #[serde(default)]
        pub description: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Power {
        pub stagger_ms: u64,
        pub power_good_timeout_ms: u64,
        pub reset_hold_ms: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Boot {
        pub max_tries: u8,
        pub watchdog_s: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Node {
        pub name: NodeName,
        pub slot: u8,
        pub mac: MacAddr,
        pub arch: Arch,
        #[serde(default)]
        pub firmware: Firmware,
        #[serde(default)]
        pub groups: Vec<String>,
        pub bmc: Bmc,
        pub rail: Rail,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Bmc {
        pub smbus_address: u8,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Rail {
        pub name: String,
        pub nominal_mv: u32,
        pub max_ma: u32,
    }
}

/// A validated rack description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rack {
    /// The rack's id (a node-name-like label).
    pub id: NodeName,
    /// Free text for humans.
    pub description: String,
    /// Power sequencing timings shared by all units.
    pub power: PowerTimings,
    /// Boot attempt policy shared by all units.
    pub boot: BootPolicy,
    /// The compute units, sorted by backplane slot.
    pub nodes: Vec<Node>,
}

/// Power sequencing timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerTimings {
    /// Delay between powering on consecutive units (limits inrush current).
    pub stagger: Duration,
    /// How long a rail may take to report power-good.
    pub power_good_timeout: Duration,
    /// How long reset is held after power-good.
    pub reset_hold: Duration,
}

/// Boot attempt policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootPolicy {
    /// Attempts per slot before falling back to the other slot (1..=15).
    pub max_tries: u8,
    /// Time a booted OS has to confirm before the BMC power-cycles it.
    pub watchdog: Duration,
}

/// What a node's own firmware does to fetch stage1 over the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// UEFI HTTP boot of stage1 as a signed UKI (proxyDHCP from bootd).
    #[default]
    Uefi,
    /// A Raspberry Pi 4's EEPROM bootloader: HTTP boot of a signed
    /// `boot.img` + `boot.sig` over plain HTTP (no DHCP from bootd).
    Pi4Eeprom,
    /// A Raspberry Pi 5's EEPROM bootloader: the same pair over HTTPS to
    /// the rack CA.
    Pi5Eeprom,
}

impl Firmware {
    /// The name in `rack.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Firmware::Uefi => "uefi",
            Firmware::Pi4Eeprom => "pi4-eeprom",
            Firmware::Pi5Eeprom => "pi5-eeprom",
        }
    }
}

/// One compute unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Unique name, e.g. `unit-3`.
    pub name: NodeName,
    /// Backplane slot, 1-based, unique.
    pub slot: u8,
    /// MAC address of the boot interface, unique.
    pub mac: MacAddr,
    /// CPU architecture.
    pub arch: Arch,
    /// What fetches stage1 over the network.
    pub firmware: Firmware,
    /// Groups the node belongs to (release assignments can name groups).
    pub groups: BTreeSet<String>,
    /// 7-bit SMBus address of this unit's BMC, unique.
    pub smbus_address: u8,
    /// The unit's power rail.
    pub rail: Rail,
}

/// A power rail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rail {
    /// Rail name, for metrics.
    pub name: String,
    /// Nominal voltage in millivolts.
    pub nominal_mv: u32,
    /// Current limit in milliamperes.
    pub max_ma: u32,
}

impl Rack {
    /// Parses and validates a rack description.
    pub fn from_yaml_str(text: &str) -> Result<Rack, Error> {
        Self::parse(text, None)
    }

    /// Reads, parses and validates a rack description file.
    pub fn load(path: &Path) -> Result<Rack, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path.to_owned()))
    }

    fn parse(text: &str, path: Option<PathBuf>) -> Result<Rack, Error> {
        let wire: wire::RackFile = serde_norway::from_str(text).map_err(|source| Error::Parse {
            path: path.clone(),
            source,
        })?;
        Rack::try_from(wire).map_err(|e| match e {
            Error::Invalid { field, reason, .. } => Error::Invalid {
                path,
                field,
                reason,
            },
            other => other,
        })
    }

    /// The node with this name.
    pub fn node_by_name(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name.as_str() == name)
    }

    /// The node with this MAC address.
    pub fn node_by_mac(&self, mac: MacAddr) -> Option<&Node> {
        self.nodes.iter().find(|n| n.mac == mac)
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid {
        path: None,
        field: field.into(),
        reason: reason.into(),
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl TryFrom<wire::RackFile> for Rack {
    type Error = Error;

    fn try_from(w: wire::RackFile) -> Result<Rack, Error> {
        let id = NodeName::new(&w.rack.id).map_err(|r| invalid("rack.id", r))?;
        if w.power.power_good_timeout_ms == 0 || w.power.power_good_timeout_ms > 10_000 {
            return Err(invalid(
                "power.power_good_timeout_ms",
                "must be between 1 and 10000",
            ));
        }
        if w.power.stagger_ms > 60_000 {
            return Err(invalid("power.stagger_ms", "must be at most 60000"));
        }
        if w.power.reset_hold_ms > 10_000 {
            return Err(invalid("power.reset_hold_ms", "must be at most 10000"));
        }
        if !(1..=15).contains(&w.boot.max_tries) {
            return Err(invalid("boot.max_tries", "must be between 1 and 15"));
        }
        if !(1..=86_400).contains(&w.boot.watchdog_s) {
            return Err(invalid("boot.watchdog_s", "must be between 1 and 86400"));
        }
        if w.nodes.is_empty() {
            return Err(invalid("nodes", "a rack needs at least one node"));
        }
        let mut nodes = Vec::with_capacity(w.nodes.len());
        for (i, n) in w.nodes.into_iter().enumerate() {
            let field = |f: &str| format!("nodes[{i}].{f}");
            if n.slot == 0 {
                return Err(invalid(field("slot"), "slots are numbered from 1"));
            }
            if !(0x08..=0x77).contains(&n.bmc.smbus_address) {
                return Err(invalid(
                    field("bmc.smbus_address"),
                    format!(
                        "{:#04x} is reserved; 7-bit addresses 0x08..=0x77 are usable",
                        n.bmc.smbus_address
                    ),
                ));
            }
            if n.mac.0[0] & 1 == 1 {
                return Err(invalid(field("mac"), "a multicast MAC cannot be a node's"));
            }
            for g in &n.groups {
                if !is_label(g) {
                    return Err(invalid(
                        field("groups"),
                        format!("`{g}` is not a group name (a-z 0-9 -)"),
                    ));
                }
            }
            if n.rail.name.is_empty() {
                return Err(invalid(field("rail.name"), "must not be empty"));
            }
            if n.firmware != Firmware::Uefi && n.arch != Arch::Aarch64 {
                return Err(invalid(
                    field("firmware"),
                    format!(
                        "`{}` is a Raspberry Pi bootloader; the node's arch must be aarch64",
                        n.firmware.as_str()
                    ),
                ));
            }
            for prev in &nodes {
                let prev: &Node = prev;
                if prev.name == n.name {
                    return Err(invalid(
                        field("name"),
                        format!("`{}` appears twice", n.name),
                    ));
                }
                if prev.slot == n.slot {
                    return Err(invalid(
                        field("slot"),
                        format!("slot {} appears twice", n.slot),
                    ));
                }
                if prev.mac == n.mac {
                    return Err(invalid(field("mac"), format!("{} appears twice", n.mac)));
                }
                if prev.smbus_address == n.bmc.smbus_address {
                    return Err(invalid(
                        field("bmc.smbus_address"),
                        format!("{:#04x} appears twice", n.bmc.smbus_address),
                    ));
                }
            }
            nodes.push(Node {
                name: n.name,
                slot: n.slot,
                mac: n.mac,
                arch: n.arch,
                firmware: n.firmware,
                groups: n.groups.into_iter().collect(),
                smbus_address: n.bmc.smbus_address,
                rail: Rail {
                    name: n.rail.name,
                    nominal_mv: n.rail.nominal_mv,
                    max_ma: n.rail.max_ma,
                },
            });
        }
        nodes.sort_by_key(|n| n.slot);
        Ok(Rack {
            id,
            description: w.rack.description,
            power: PowerTimings {
                stagger: Duration::from_millis(w.power.stagger_ms),
                power_good_timeout: Duration::from_millis(w.power.power_good_timeout_ms),
                reset_hold: Duration::from_millis(w.power.reset_hold_ms),
            },
            boot: BootPolicy {
                max_tries: w.boot.max_tries,
                watchdog: Duration::from_secs(w.boot.watchdog_s),
            },
            nodes,
        })
    }
}

#[cfg(test)]
mod tests;
