//! The boot plan: a pure function from facts to a decision.
//!
//! [`plan`] takes what the BMC says ([`BmcFacts`]), what the slot header
//! says ([`SlotState`]), who this node is ([`NodeFacts`]), the verified
//! release ([`Release`], if any) and the trusted time, and returns a
//! [`Plan`]. It does no IO; the shell in [`crate::boot`] gathers the facts
//! and carries the plan out.
//!
//! Rules, in order:
//! 1. The slot the BMC boots now (`bmc.slot`) is never written.
//! 2. A forced-B boot (button) or a BMC fallback boots the BMC's slot if it
//!    checks out ([`Plan::Fallback`]) — never installs. Only if it cannot
//!    boot and the other slot holds no valid image (a blank node whose BMC
//!    ran out of tries before any image arrived) is there nothing to
//!    preserve, and the rules below apply.
//! 3. Every target is filtered: kind `os`, the node's architecture, the
//!    node's channel, assigned to the node (by name, group or `all`),
//!    `security_version` ≥ the BMC's rollback minimum, fits a slot.
//!    Each refused target is listed with its reason. The newest admitted
//!    one must not be older than the image in the BMC's slot unless signed
//!    as a downgrade (`downgrade: true`): old metadata replayed by a
//!    compromised server cannot take a node back to an older release of
//!    the same security version.
//! 4. With trusted time and a verified release, the highest admitted
//!    version is the wanted image: boot it if the BMC's slot holds it
//!    ([`Plan::BootActive`]), else install it into the other slot
//!    ([`Plan::Install`]) — unless that slot already failed with it.
//! 5. Otherwise boot the BMC's slot if its image checks out: valid on disk,
//!    not below the rollback minimum, listed and admitted by signed
//!    metadata (fresh, or the stored copy when offline). Without any signed
//!    metadata nothing is booted.
//! 6. Otherwise [`Plan::Refuse`] with the reason; the shell retries, then
//!    asks the BMC for a new attempt (which falls back after its tries).

use std::collections::BTreeSet;
use std::fmt;

use racklet_bmc_proto::Slot;
use racklet_hardware::{Arch, NodeName};
use racklet_release::{Channel, ImageKind, ImageName, ReleaseInfo, SecurityVersion};

use crate::slots::{SlotImage, SlotState, SlotStatus};

/// Who this node is (from its configuration and enrollment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    /// Its name (as in the rack description and its certificate).
    pub name: NodeName,
    /// Its groups.
    pub groups: BTreeSet<String>,
    /// Its architecture.
    pub arch: Arch,
    /// The release channel it follows.
    pub channel: Channel,
}

/// What the BMC said for this power-on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BmcFacts {
    /// The slot booting now.
    pub slot: Slot,
    /// Tries left on it after this attempt.
    pub tries_left: u8,
    /// Slot B was forced by the button.
    pub forced_b: bool,
    /// The BMC fell back to this slot (the other one ran out of tries).
    pub fallback: bool,
    /// The boot-image rollback minimum.
    pub rollback_min: SecurityVersion,
}

/// One target of the verified release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseTarget {
    /// Target name.
    pub name: ImageName,
    /// Signed length.
    pub length: u64,
    /// Signed SHA-256.
    pub sha256: [u8; 32],
    /// Signed racklet facts.
    pub info: ReleaseInfo,
}

impl ReleaseTarget {
    /// The slot record for this target.
    pub fn slot_image(&self) -> SlotImage {
        SlotImage {
            name: self.name.clone(),
            version: self.info.version.clone(),
            security_version: self.info.security_version,
            sha256: self.sha256,
            length: self.length,
        }
    }
}

/// The targets of metadata that passed every TUF check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Release {
    /// Every target.
    pub targets: Vec<ReleaseTarget>,
    /// True when it was refreshed now from the network with expiry enforced;
    /// false when it is the locally stored metadata (offline boot).
    pub fresh: bool,
}

/// Why a target is not for this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetRefusal {
    /// Not an OS image.
    Kind(ImageKind),
    /// Built for another architecture.
    Arch {
        /// The node's.
        node: Arch,
        /// The image's.
        image: Arch,
    },
    /// On another channel.
    Channel(Channel),
    /// The signed assignment does not name this node or its groups.
    NotAssigned,
    /// Below the BMC's rollback minimum.
    BelowRollbackMin {
        /// The image's.
        security_version: SecurityVersion,
        /// The BMC's.
        minimum: SecurityVersion,
    },
    /// Larger than a slot.
    TooLarge {
        /// Its length.
        length: u64,
        /// Slot capacity.
        capacity: u64,
    },
    /// Older than the image the BMC's slot holds, and not signed as a
    /// downgrade: replayed old metadata cannot take a node back.
    OlderThanInstalled {
        /// The image's version.
        version: semver::Version,
        /// What the BMC's slot holds.
        installed: ImageName,
        /// Its version.
        installed_version: semver::Version,
    },
}

impl fmt::Display for TargetRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetRefusal::Kind(k) => write!(f, "kind {k}, not os"),
            TargetRefusal::Arch { node, image } => {
                write!(f, "built for {image}, this node is {node}")
            }
            TargetRefusal::Channel(c) => write!(f, "on channel {c}"),
            TargetRefusal::NotAssigned => f.write_str("not assigned to this node"),
            TargetRefusal::BelowRollbackMin {
                security_version,
                minimum,
            } => write!(
                f,
                "security_version {security_version} is below the rollback minimum {minimum}"
            ),
            TargetRefusal::TooLarge { length, capacity } => {
                write!(f, "{length} bytes do not fit a slot of {capacity}")
            }
            TargetRefusal::OlderThanInstalled {
                version,
                installed,
                installed_version,
            } => write!(
                f,
                "version {version} is older than the installed {installed} {installed_version}, \
                 and the release does not sign it as a downgrade"
            ),
        }
    }
}

/// Why the node cannot boot now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The BMC's slot holds nothing bootable, and no update is possible.
    NoBootableSlot {
        /// The BMC's slot.
        slot: Slot,
        /// Why it cannot boot.
        why: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoBootableSlot { slot, why } => {
                write!(f, "slot {slot:?} cannot boot: {why}")
            }
        }
    }
}

/// Why the BMC's slot is booted as a fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackReason {
    /// The button forced slot B.
    ForcedB,
    /// The other slot ran out of tries.
    BmcFallback,
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Boot the BMC's slot (it is the active one and checks out).
    BootActive {
        /// The slot.
        slot: Slot,
        /// What it holds.
        image: SlotImage,
    },
    /// Install `target` into `into` (never the BMC's slot), then report it
    /// to the BMC and restart into it.
    Install {
        /// The wanted image.
        target: ReleaseTarget,
        /// The inactive slot.
        into: Slot,
        /// What the BMC's slot holds, if it can boot: booted instead when
        /// the install fails (a tampered or truncated download, bootd
        /// gone), so a bad update never keeps a good node down.
        otherwise: Option<SlotImage>,
    },
    /// The other slot already holds the wanted image and it checks out (a
    /// power cut between the flip and the report, or a node the button
    /// moved to this slot): report it to the BMC and restart into it,
    /// without downloading it again.
    Report {
        /// The slot to report.
        slot: Slot,
        /// What it holds.
        image: SlotImage,
    },
    /// Boot the slot the BMC fell back to (or the button forced).
    Fallback {
        /// The slot.
        slot: Slot,
        /// What it holds.
        image: SlotImage,
        /// Why.
        why: FallbackReason,
        /// A slot to record as failed (it did not confirm its boot).
        mark_failed: Option<Slot>,
    },
    /// Boot nothing.
    Refuse {
        /// Why.
        reason: Refusal,
    },
}

/// The plan and the reasons behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub plan: Plan,
    /// Targets of the release that are not for this node, and why.
    pub refused: Vec<(ImageName, TargetRefusal)>,
    /// Why no update was considered, if none was.
    pub no_update: Option<String>,
}

/// Checks one target against this node.
pub fn admit(
    t: &ReleaseTarget,
    node: &NodeFacts,
    bmc: &BmcFacts,
    capacity: u64,
) -> Result<(), TargetRefusal> {
    let i = &t.info;
    if i.kind != ImageKind::Os {
        return Err(TargetRefusal::Kind(i.kind));
    }
    if i.arch != node.arch {
        return Err(TargetRefusal::Arch {
            node: node.arch,
            image: i.arch,
        });
    }
    if i.channel != node.channel {
        return Err(TargetRefusal::Channel(i.channel.clone()));
    }
    if !i
        .assign
        .admits(&node.name, node.groups.iter().map(String::as_str))
    {
        return Err(TargetRefusal::NotAssigned);
    }
    if i.security_version < bmc.rollback_min {
        return Err(TargetRefusal::BelowRollbackMin {
            security_version: i.security_version,
            minimum: bmc.rollback_min,
        });
    }
    if t.length > capacity {
        return Err(TargetRefusal::TooLarge {
            length: t.length,
            capacity,
        });
    }
    Ok(())
}

/// Refuses an update older than the installed image unless its signed
/// facts say it is a downgrade ([`ReleaseInfo::downgrade`]).
pub fn not_older(t: &ReleaseTarget, installed: Option<&SlotImage>) -> Result<(), TargetRefusal> {
    match installed {
        Some(i) if t.info.version < i.version && !t.info.downgrade => {
            Err(TargetRefusal::OlderThanInstalled {
                version: t.info.version.clone(),
                installed: i.name.clone(),
                installed_version: i.version.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// Decides what to boot. Pure: same inputs, same plan.
pub fn plan(
    release: Option<&Release>,
    slots: &SlotState,
    bmc: &BmcFacts,
    node: &NodeFacts,
    now: Option<jiff::Timestamp>,
) -> Decision {
    let capacity = slots.geometry.capacity;
    let mut refused = Vec::new();
    let mut admitted: Vec<&ReleaseTarget> = Vec::new();
    if let Some(r) = release {
        for t in &r.targets {
            match admit(t, node, bmc, capacity) {
                Ok(()) => admitted.push(t),
                Err(why) => refused.push((t.name.clone(), why)),
            }
        }
    }
    // Can this slot boot? Valid on disk, not below the minimum, and listed
    // and admitted by the release when one is known.
    let bootable = |s: Slot| -> Result<SlotImage, String> {
        let rec = slots.slot(s);
        let img = rec
            .valid_image()
            .ok_or_else(|| format!("slot is {:?}", rec.status))?;
        if img.security_version < bmc.rollback_min {
            return Err(format!(
                "{} has security_version {} below the rollback minimum {}",
                img.name, img.security_version, bmc.rollback_min
            ));
        }
        // Nothing unverified is executed: without signed metadata (fresh or
        // stored) there is nothing to check the slot's bytes against.
        let Some(r) = release else {
            return Err(format!(
                "no signed metadata to verify {} against (none fetched, none stored)",
                img.name
            ));
        };
        {
            let mut listed = r
                .targets
                .iter()
                .filter(|t| t.sha256 == img.sha256 && t.length == img.length)
                .peekable();
            if listed.peek().is_none() {
                return Err(format!(
                    "{} (sha256 {}) is not in the signed metadata",
                    img.name,
                    hex::encode(img.sha256)
                ));
            }
            let mut why = String::new();
            if !listed.any(|t| match admit(t, node, bmc, capacity) {
                Ok(()) => true,
                Err(e) => {
                    why = format!("{}: {e}", t.name);
                    false
                }
            }) {
                return Err(why);
            }
        }
        Ok(img.clone())
    };
    let req = bmc.slot;
    let other = req.other();
    let refuse = |why: String| Plan::Refuse {
        reason: Refusal::NoBootableSlot { slot: req, why },
    };

    let mut fallthrough = None;
    if bmc.forced_b || bmc.fallback {
        let why = if bmc.forced_b {
            FallbackReason::ForcedB
        } else {
            FallbackReason::BmcFallback
        };
        // The slot we fell back from did not confirm: record it.
        let mark_failed = (why == FallbackReason::BmcFallback
            && slots.slot(other).status == SlotStatus::Valid
            && slots.active == Some(other))
        .then_some(other);
        match bootable(req) {
            Ok(image) => {
                return Decision {
                    plan: Plan::Fallback {
                        slot: req,
                        image,
                        why,
                        mark_failed,
                    },
                    refused,
                    no_update: Some(format!(
                        "{why:?}: the BMC's choice is booted, nothing is written"
                    )),
                };
            }
            // Nothing to preserve in the other slot (a blank node whose BMC
            // used up its tries before any image arrived): the ordinary
            // rules below apply. They never write the BMC's slot. With a
            // valid image in the other slot (the one the button or the
            // fallback moved away from), that slot is never written here.
            Err(e) if slots.slot(other).valid_image().is_none() => {
                fallthrough = Some(format!("{why:?} to slot {req:?}, which cannot boot: {e}"));
            }
            Err(e) => {
                return Decision {
                    plan: refuse(e),
                    refused,
                    no_update: Some(format!(
                        "{why:?}: the BMC's choice is booted, nothing is written"
                    )),
                };
            }
        }
    }

    let mut best = admitted
        .iter()
        .max_by(|a, b| {
            (&a.info.version, a.info.security_version)
                .cmp(&(&b.info.version, b.info.security_version))
        })
        .copied();
    // The version floor: what the BMC's slot holds, if the BMC would still
    // let it boot. A repository keeps its old releases, and they never win
    // against a newer one; but a release whose *newest* image for this node
    // is older than what runs is what replayed metadata looks like. Only an
    // update must clear the floor; booting what is installed (or falling
    // back) never does.
    let installed = slots
        .slot(req)
        .valid_image()
        .filter(|i| i.security_version >= bmc.rollback_min);
    let mut below_floor = None;
    if let Some(b) = best {
        if let Err(why) = not_older(b, installed) {
            below_floor = Some(format!("{}: {why} (replayed metadata?)", b.name));
            refused.push((b.name.clone(), why));
            best = None;
        }
    }
    let no_update = match (release, best, now) {
        (None, _, _) => Some("no verified release (offline?)".to_owned()),
        (Some(r), _, _) if !r.fresh => {
            Some("only locally stored metadata (bootd unreachable)".to_owned())
        }
        (Some(_), None, _) => Some(
            below_floor.unwrap_or_else(|| "no target of the release is for this node".to_owned()),
        ),
        (Some(_), Some(_), None) => Some("no trusted time: updates refused".to_owned()),
        (Some(_), Some(_), Some(_)) => None,
    };
    if let (None, Some(best)) = (&no_update, best) {
        let here = slots.slot(req);
        if here.status == SlotStatus::Valid
            && here.image.as_ref().map(|i| i.sha256) == Some(best.sha256)
        {
            if let Ok(image) = bootable(req) {
                return Decision {
                    plan: Plan::BootActive { slot: req, image },
                    refused,
                    no_update,
                };
            }
        }
        let there = slots.slot(other);
        let there_sha = there.image.as_ref().map(|i| i.sha256);
        // The other slot already holds it, verified: after a power cut
        // between the flip and the report, or on a node the button moved
        // to this slot. Report it; no download, nothing overwritten.
        if there_sha == Some(best.sha256) {
            if let Ok(image) = bootable(other) {
                return Decision {
                    plan: Plan::Report { slot: other, image },
                    refused,
                    no_update,
                };
            }
        }
        if there.status == SlotStatus::Failed && there_sha == Some(best.sha256) {
            let plan = match bootable(req) {
                Ok(image) => Plan::BootActive { slot: req, image },
                Err(e) => refuse(format!(
                    "{e}; and {} already failed to boot from slot {other:?}",
                    best.name
                )),
            };
            return Decision {
                plan,
                refused,
                no_update: Some(format!(
                    "{} failed to confirm a boot in slot {other:?} before; not installed again",
                    best.name
                )),
            };
        }
        return Decision {
            plan: Plan::Install {
                target: best.clone(),
                into: other,
                otherwise: bootable(req).ok(),
            },
            refused,
            no_update,
        };
    }
    let plan = match bootable(req) {
        Ok(image) => Plan::BootActive { slot: req, image },
        Err(e) => refuse(match (&no_update, fallthrough) {
            (Some(n), _) => format!("{e}; no update possible: {n}"),
            (None, Some(f)) => f,
            (None, None) => e,
        }),
    };
    Decision {
        plan,
        refused,
        no_update,
    }
}
