//! Validated values that cross the wire.

use crate::Error;

/// One of the two boot slots of a compute unit: the one `Slot` of the
/// whole tree (stage1's slot disk, bootd's node reports and the BMC all use
/// it). With the `serde` feature it is `"A"` or `"B"` in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Slot {
    /// Slot A (wire value 0).
    A,
    /// Slot B (wire value 1).
    B,
}

impl Slot {
    /// Both slots, A first.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The wire value.
    pub const fn to_byte(self) -> u8 {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }

    /// Parses a wire value.
    pub fn from_byte(b: u8) -> Result<Slot, Error> {
        match b {
            0 => Ok(Slot::A),
            1 => Ok(Slot::B),
            _ => Err(Error::OutOfRange {
                field: "slot",
                value: b.into(),
            }),
        }
    }

    /// The other slot.
    pub const fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// 0 for A, 1 for B.
    pub const fn index(self) -> usize {
        self.to_byte() as usize
    }
}

/// The kind of image a rollback counter guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImageKind {
    /// The boot image stage1 writes into a slot (wire value 0).
    BootImage,
    /// stage1 itself (wire value 1).
    Stage1,
}

impl ImageKind {
    /// Number of kinds (size of per-kind tables).
    pub const COUNT: usize = 2;
    /// All kinds, in wire order.
    pub const ALL: [ImageKind; 2] = [ImageKind::BootImage, ImageKind::Stage1];

    /// The wire value.
    pub const fn to_byte(self) -> u8 {
        match self {
            ImageKind::BootImage => 0,
            ImageKind::Stage1 => 1,
        }
    }

    /// Parses a wire value.
    pub fn from_byte(b: u8) -> Result<ImageKind, Error> {
        match b {
            0 => Ok(ImageKind::BootImage),
            1 => Ok(ImageKind::Stage1),
            _ => Err(Error::OutOfRange {
                field: "image kind",
                value: b.into(),
            }),
        }
    }

    /// Index into per-kind tables.
    pub const fn index(self) -> usize {
        self.to_byte() as usize
    }
}

/// An image's anti-rollback `security_version`: the one type of the whole
/// tree, 32 bits wide because that is what the BMC keeps in flash. The
/// release schema (`racklet-release`) re-exports it for the signed TUF
/// target metadata, where it is a plain JSON number (with the `serde`
/// feature); a value over `u32::MAX` does not parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct SecurityVersion(pub u32);

impl core::fmt::Display for SecurityVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

impl core::fmt::Display for Slot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// Seconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

/// A 7-bit SMBus address in the range a device may use (0x08..=0x77;
/// the rest is reserved by the SMBus/I²C specifications).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SmbusAddr(u8);

impl SmbusAddr {
    /// Validates a 7-bit address.
    pub fn new(addr: u8) -> Result<SmbusAddr, Error> {
        if (0x08..=0x77).contains(&addr) {
            Ok(SmbusAddr(addr))
        } else {
            Err(Error::OutOfRange {
                field: "smbus address",
                value: addr.into(),
            })
        }
    }

    /// The 7-bit address.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The address byte of a write (`addr << 1 | 0`).
    pub const fn write_byte(self) -> u8 {
        self.0 << 1
    }

    /// The address byte of a read (`addr << 1 | 1`).
    pub const fn read_byte(self) -> u8 {
        (self.0 << 1) | 1
    }
}

/// Redfish `ResetType` values the BMC implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetType {
    /// Power on (wire 0). No-op when on.
    On,
    /// Cut power at once: reset asserted and rail off in the same step (wire 1).
    ForceOff,
    /// Ask the OS to shut down, then power off in order after a grace time (wire 2).
    GracefulShutdown,
    /// Pulse reset without touching the rail: a new boot attempt (wire 3).
    ForceRestart,
    /// Ordered power-down, then power-on: a new boot attempt (wire 4).
    PowerCycle,
}

impl ResetType {
    /// The wire value.
    pub const fn to_byte(self) -> u8 {
        match self {
            ResetType::On => 0,
            ResetType::ForceOff => 1,
            ResetType::GracefulShutdown => 2,
            ResetType::ForceRestart => 3,
            ResetType::PowerCycle => 4,
        }
    }

    /// Parses a wire value.
    pub fn from_byte(b: u8) -> Result<ResetType, Error> {
        Ok(match b {
            0 => ResetType::On,
            1 => ResetType::ForceOff,
            2 => ResetType::GracefulShutdown,
            3 => ResetType::ForceRestart,
            4 => ResetType::PowerCycle,
            _ => {
                return Err(Error::OutOfRange {
                    field: "reset type",
                    value: b.into(),
                })
            }
        })
    }
}

/// The power state of a unit as reported on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// Rail off (wire 0).
    Off,
    /// Waiting for this unit's stagger delay before enabling the rail (wire 1).
    Staggered,
    /// Rail enabled, waiting for power-good (wire 2).
    WaitPowerGood,
    /// Power good, reset still held (wire 3).
    ResetHold,
    /// Running (wire 4).
    On,
    /// OS asked to shut down; waiting for the grace time (wire 5).
    ShuttingDown,
    /// Reset asserted, rail about to go off (wire 6).
    PoweringDown,
    /// Safe off after a fault; see [`FaultCode`] (wire 7).
    Fault,
}

impl PowerState {
    /// The wire value.
    pub const fn to_byte(self) -> u8 {
        match self {
            PowerState::Off => 0,
            PowerState::Staggered => 1,
            PowerState::WaitPowerGood => 2,
            PowerState::ResetHold => 3,
            PowerState::On => 4,
            PowerState::ShuttingDown => 5,
            PowerState::PoweringDown => 6,
            PowerState::Fault => 7,
        }
    }

    /// Parses a wire value.
    pub fn from_byte(b: u8) -> Result<PowerState, Error> {
        Ok(match b {
            0 => PowerState::Off,
            1 => PowerState::Staggered,
            2 => PowerState::WaitPowerGood,
            3 => PowerState::ResetHold,
            4 => PowerState::On,
            5 => PowerState::ShuttingDown,
            6 => PowerState::PoweringDown,
            7 => PowerState::Fault,
            _ => {
                return Err(Error::OutOfRange {
                    field: "power state",
                    value: b.into(),
                })
            }
        })
    }
}

/// Why a unit is in [`PowerState::Fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultCode {
    /// No fault (wire 0).
    None,
    /// Power-good did not rise within the timeout after the rail was enabled (wire 1).
    PowerGoodTimeout,
    /// Power-good dropped while the unit was on (wire 2).
    PowerGoodLost,
    /// Neither slot is bootable (no tries left, never confirmed) (wire 3).
    NoBootableSlot,
    /// The persistent state could not be written (wire 4).
    Storage,
}

impl FaultCode {
    /// The wire value.
    pub const fn to_byte(self) -> u8 {
        match self {
            FaultCode::None => 0,
            FaultCode::PowerGoodTimeout => 1,
            FaultCode::PowerGoodLost => 2,
            FaultCode::NoBootableSlot => 3,
            FaultCode::Storage => 4,
        }
    }

    /// Parses a wire value.
    pub fn from_byte(b: u8) -> Result<FaultCode, Error> {
        Ok(match b {
            0 => FaultCode::None,
            1 => FaultCode::PowerGoodTimeout,
            2 => FaultCode::PowerGoodLost,
            3 => FaultCode::NoBootableSlot,
            4 => FaultCode::Storage,
            _ => {
                return Err(Error::OutOfRange {
                    field: "fault code",
                    value: b.into(),
                })
            }
        })
    }
}

/// Why stage1 refused an update in this boot, as the BMC keeps it
/// ([`crate::Request::ReportRefusal`]) and as bootd's API names it
/// (`bootd_api::RefusalReason` is this type: one list of reasons for the
/// wire byte, the JSON name and the metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum RefusalReason {
    /// Metadata older than what the node trusted: a replay (wire 0).
    Rollback,
    /// Metadata expired by the node's trusted time: a freeze (wire 1).
    Expired,
    /// Signatures, threshold, hashes or lengths failed (wire 2).
    Signature,
    /// A download whose bytes are not the signed ones (wire 3).
    TamperedTarget,
    /// A release older than the installed image, not signed as a downgrade (wire 4).
    OlderThanInstalled,
    /// No trusted time (wire 5).
    NoTrustedTime,
    /// bootd unreachable, TLS refused, or an answer cut short (wire 6).
    Unreachable,
    /// The install took longer than the node's deadline (wire 7).
    InstallDeadline,
    /// Any other refusal (wire 8).
    Other,
}

impl RefusalReason {
    /// Number of reasons (size of per-reason tables).
    pub const COUNT: usize = 9;
    /// Every reason, in wire order.
    pub const ALL: [RefusalReason; RefusalReason::COUNT] = [
        RefusalReason::Rollback,
        RefusalReason::Expired,
        RefusalReason::Signature,
        RefusalReason::TamperedTarget,
        RefusalReason::OlderThanInstalled,
        RefusalReason::NoTrustedTime,
        RefusalReason::Unreachable,
        RefusalReason::InstallDeadline,
        RefusalReason::Other,
    ];

    /// The wire value.
    pub const fn to_byte(self) -> u8 {
        self as u8
    }

    /// Parses a wire value.
    pub fn from_byte(b: u8) -> Result<RefusalReason, Error> {
        RefusalReason::ALL
            .get(usize::from(b))
            .copied()
            .ok_or(Error::OutOfRange {
                field: "refusal reason",
                value: b.into(),
            })
    }

    /// Its name, as bootd spells it (status lines, metric labels).
    pub const fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Rollback => "rollback",
            RefusalReason::Expired => "expired",
            RefusalReason::Signature => "signature",
            RefusalReason::TamperedTarget => "tampered_target",
            RefusalReason::OlderThanInstalled => "older_than_installed",
            RefusalReason::NoTrustedTime => "no_trusted_time",
            RefusalReason::Unreachable => "unreachable",
            RefusalReason::InstallDeadline => "install_deadline",
            RefusalReason::Other => "other",
        }
    }
}

impl core::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the last completed button press was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Press {
    /// No press since the BMC started (wire 0).
    None,
    /// Short press: toggles power (wire 1).
    Short,
    /// Long press (≥ 3 s): forces slot B for the next boot (wire 2).
    Long,
    /// Very long press (≥ 10 s): clears the unit key (physical presence),
    /// then power-cycles the unit so stage1 provisions a new one (wire 3).
    VeryLong,
}

impl Press {
    /// The wire value.
    pub const fn to_byte(self) -> u8 {
        match self {
            Press::None => 0,
            Press::Short => 1,
            Press::Long => 2,
            Press::VeryLong => 3,
        }
    }

    /// Parses a wire value.
    pub fn from_byte(b: u8) -> Result<Press, Error> {
        Ok(match b {
            0 => Press::None,
            1 => Press::Short,
            2 => Press::Long,
            3 => Press::VeryLong,
            _ => {
                return Err(Error::OutOfRange {
                    field: "press",
                    value: b.into(),
                })
            }
        })
    }
}

/// Status byte of every response: 0 is success, anything else is an
/// [`ErrorCode`] and the response carries no payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request's PEC did not match (0x01).
    BadPec,
    /// Block count over 32, or not the length this command takes (0x02).
    BadLength,
    /// Command code not in the table (0x03).
    UnknownCommand,
    /// A field is outside its range (slot, kind, reset type, …) (0x04).
    OutOfRange,
    /// A request to lower (not raise) a rollback minimum (0x05).
    CounterLower,
    /// Setting the clock earlier than it reads (0x06).
    TimeBackwards,
    /// Raise refused: the running slot has not confirmed a boot, or does not
    /// carry an image with that security version (0x07).
    NotConfirmed,
    /// The request does not fit the unit's state (confirm while off, wrong
    /// slot, chunk without begin, …) (0x08).
    BadState,
    /// Firmware image signature invalid or image malformed (0x09).
    BadSignature,
    /// Firmware image not newer than the running one (0x0A).
    OlderFirmware,
    /// The persistent state could not be written; nothing changed (0x0B).
    Storage,
    /// A state-changing request without a counter and tag, or whose tag is
    /// wrong (0x0C).
    Unauthenticated,
    /// An authenticated request whose counter is not above the last one
    /// accepted in this epoch (0x0D).
    Replayed,
    /// The BMC is sealed: no key is revealed or provisioned until it next
    /// starts the host (0x0E).
    Sealed,
    /// No unit key is provisioned: nothing can be authenticated yet (0x0F).
    NoKey,
    /// A unit key is already provisioned; clearing it needs physical
    /// presence (0x10).
    KeyPresent,
    /// A status byte this version does not know (any other value).
    Other(u8),
}

impl ErrorCode {
    /// The status byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            ErrorCode::BadPec => 0x01,
            ErrorCode::BadLength => 0x02,
            ErrorCode::UnknownCommand => 0x03,
            ErrorCode::OutOfRange => 0x04,
            ErrorCode::CounterLower => 0x05,
            ErrorCode::TimeBackwards => 0x06,
            ErrorCode::NotConfirmed => 0x07,
            ErrorCode::BadState => 0x08,
            ErrorCode::BadSignature => 0x09,
            ErrorCode::OlderFirmware => 0x0A,
            ErrorCode::Storage => 0x0B,
            ErrorCode::Unauthenticated => 0x0C,
            ErrorCode::Replayed => 0x0D,
            ErrorCode::Sealed => 0x0E,
            ErrorCode::NoKey => 0x0F,
            ErrorCode::KeyPresent => 0x10,
            ErrorCode::Other(b) => b,
        }
    }

    /// Parses a non-zero status byte.
    pub const fn from_byte(b: u8) -> ErrorCode {
        match b {
            0x01 => ErrorCode::BadPec,
            0x02 => ErrorCode::BadLength,
            0x03 => ErrorCode::UnknownCommand,
            0x04 => ErrorCode::OutOfRange,
            0x05 => ErrorCode::CounterLower,
            0x06 => ErrorCode::TimeBackwards,
            0x07 => ErrorCode::NotConfirmed,
            0x08 => ErrorCode::BadState,
            0x09 => ErrorCode::BadSignature,
            0x0A => ErrorCode::OlderFirmware,
            0x0B => ErrorCode::Storage,
            0x0C => ErrorCode::Unauthenticated,
            0x0D => ErrorCode::Replayed,
            0x0E => ErrorCode::Sealed,
            0x0F => ErrorCode::NoKey,
            0x10 => ErrorCode::KeyPresent,
            other => ErrorCode::Other(other),
        }
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = match self {
            ErrorCode::BadPec => "bad PEC",
            ErrorCode::BadLength => "bad length",
            ErrorCode::UnknownCommand => "unknown command",
            ErrorCode::OutOfRange => "value out of range",
            ErrorCode::CounterLower => "rollback minimum cannot be lowered",
            ErrorCode::TimeBackwards => "clock cannot be set backwards",
            ErrorCode::NotConfirmed => "image has not confirmed a boot",
            ErrorCode::BadState => "request does not fit the unit's state",
            ErrorCode::BadSignature => "bad firmware signature",
            ErrorCode::OlderFirmware => "firmware not newer than the running one",
            ErrorCode::Storage => "flash write failed",
            ErrorCode::Unauthenticated => "state-changing request without a valid MAC",
            ErrorCode::Replayed => "replayed request (counter not above the last one)",
            ErrorCode::Sealed => "BMC sealed until it next starts the host",
            ErrorCode::NoKey => "no unit key provisioned",
            ErrorCode::KeyPresent => "a unit key is already provisioned",
            ErrorCode::Other(_) => "unknown error code",
        };
        write!(f, "{name} (0x{:02x})", self.to_byte())
    }
}
