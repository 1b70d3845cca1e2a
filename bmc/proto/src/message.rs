//! Command codes and typed requests with their block data ([`crate::response`]
//! holds the responses).
//!
//! All integers are little-endian. The command table with every byte is in
//! `bmc/README.md`; `tests/byte_tables.rs` checks this code against it.

use crate::auth::{UnitKey, KEY_LEN};
use crate::codec::{need, u32_at, u64_at, Put};
use crate::floors::TufRole;
use crate::types::*;
use crate::{Error, MAX_BLOCK};

/// Most firmware-image bytes one [`Request::FwChunk`] carries
/// (32-byte block − 4-byte offset).
pub const FW_CHUNK_MAX: usize = MAX_BLOCK - 4;

/// Command codes (the SMBus "command" byte).
pub mod cmd {
    /// [`super::Request::GetBootPlan`]
    pub const GET_BOOT_PLAN: u8 = 0x01;
    /// [`super::Request::ConfirmBoot`]
    pub const CONFIRM_BOOT: u8 = 0x02;
    /// [`super::Request::GetRollbackMin`]
    pub const GET_ROLLBACK_MIN: u8 = 0x03;
    /// [`super::Request::RaiseRollbackMin`]
    pub const RAISE_ROLLBACK_MIN: u8 = 0x04;
    /// [`super::Request::GetTime`]
    pub const GET_TIME: u8 = 0x05;
    /// [`super::Request::SetTime`]
    pub const SET_TIME: u8 = 0x06;
    /// [`super::Request::GetPowerStatus`]
    pub const GET_POWER_STATUS: u8 = 0x07;
    /// [`super::Request::GetPowerMetrics`]
    pub const GET_POWER_METRICS: u8 = 0x08;
    /// [`super::Request::GetButtonState`]
    pub const GET_BUTTON_STATE: u8 = 0x09;
    /// [`super::Request::ReportInstalled`]
    pub const REPORT_INSTALLED: u8 = 0x0A;
    /// [`super::Request::GetSlotInfo`]
    pub const GET_SLOT_INFO: u8 = 0x0B;
    /// [`super::Request::Reset`]
    pub const RESET: u8 = 0x0C;
    /// [`super::Request::GetAuthStatus`]
    pub const GET_AUTH_STATUS: u8 = 0x0D;
    /// [`super::Request::ProvisionKey`]
    pub const PROVISION_KEY: u8 = 0x0E;
    /// [`super::Request::GetSessionKey`]
    pub const GET_SESSION_KEY: u8 = 0x0F;
    /// [`super::Request::Seal`]
    pub const SEAL: u8 = 0x10;
    /// [`super::Request::ReportRefusal`]
    pub const REPORT_REFUSAL: u8 = 0x11;
    /// [`super::Request::GetRefusal`]
    pub const GET_REFUSAL: u8 = 0x12;
    /// [`super::Request::RaiseTufFloor`]
    pub const RAISE_TUF_FLOOR: u8 = 0x13;
    /// [`super::Request::GetTufFloors`]
    pub const GET_TUF_FLOORS: u8 = 0x14;
    /// [`super::Request::FwBegin`]
    pub const FW_BEGIN: u8 = 0x20;
    /// [`super::Request::FwChunk`]
    pub const FW_CHUNK: u8 = 0x21;
    /// [`super::Request::FwFinish`]
    pub const FW_FINISH: u8 = 0x22;
    /// [`super::Request::GetFwInfo`]
    pub const GET_FW_INFO: u8 = 0x23;
}

/// True for the commands that change trust state and so must carry a
/// counter and a MAC ([`crate::auth`]): ConfirmBoot, RaiseRollbackMin,
/// SetTime, ReportInstalled, ReportRefusal, RaiseTufFloor.
pub const fn is_authenticated(command: u8) -> bool {
    matches!(
        command,
        cmd::CONFIRM_BOOT
            | cmd::RAISE_ROLLBACK_MIN
            | cmd::SET_TIME
            | cmd::REPORT_INSTALLED
            | cmd::REPORT_REFUSAL
            | cmd::RAISE_TUF_FLOOR
    )
}

/// A request from the compute unit (SMBus host) to its BMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Which slot is booting now, its tries left and why.
    GetBootPlan,
    /// The OS booted from `slot` came up: mark it successful, stop the watchdog.
    ConfirmBoot {
        /// The slot the OS runs from (must be the one booting).
        slot: Slot,
    },
    /// The rollback minimum for an image kind.
    GetRollbackMin {
        /// Which counter.
        kind: ImageKind,
    },
    /// Raise the rollback minimum. Accepted only when the running slot
    /// confirmed its boot and was reported to carry an image of this kind with
    /// at least this security version; never lowers.
    RaiseRollbackMin {
        /// Which counter.
        kind: ImageKind,
        /// The new minimum.
        version: SecurityVersion,
    },
    /// The BMC's clock.
    GetTime,
    /// Set the BMC's clock; earlier than its current reading is refused.
    SetTime {
        /// The new time.
        time: UnixTime,
    },
    /// Power state and fault code.
    GetPowerStatus,
    /// Rail voltage, current and energy since the BMC started.
    GetPowerMetrics,
    /// Button level, last press and whether slot B is forced for the next boot.
    GetButtonState,
    /// stage1 wrote an image of `kind` with `version` into `slot`: the slot
    /// becomes the next to boot, unconfirmed, with a full set of tries.
    ReportInstalled {
        /// The slot written.
        slot: Slot,
        /// What was written.
        kind: ImageKind,
        /// Its security version.
        version: SecurityVersion,
    },
    /// Boot metadata of one slot.
    GetSlotInfo {
        /// Which slot.
        slot: Slot,
    },
    /// A Redfish-style reset of the unit itself.
    Reset {
        /// What to do.
        kind: ResetType,
    },
    /// Start a BMC firmware update: `total_len` image bytes of firmware `version` follow.
    FwBegin {
        /// The firmware version in the image header (must exceed the running one).
        version: u32,
        /// Total image length in bytes (header, signature and payload).
        total_len: u32,
    },
    /// Image bytes at `offset` (must be the next offset; at most [`FW_CHUNK_MAX`] bytes).
    FwChunk {
        /// Offset in the image.
        offset: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// All bytes sent: verify the signature and accept the image into the inactive bank.
    FwFinish,
    /// Running firmware version and bank.
    GetFwInfo,
    /// Whether a unit key is provisioned, whether the BMC is sealed, the
    /// epoch and the last accepted counter.
    GetAuthStatus,
    /// Store the unit key. Accepted only while the BMC holds no key and is
    /// unsealed (stage1, right after a power-on by the BMC).
    ProvisionKey {
        /// The key (its `Debug` is redacted).
        key: UnitKey,
    },
    /// Half of this epoch's session key. Refused once the BMC is sealed.
    GetSessionKey {
        /// 0: bytes 0..16, 1: bytes 16..32.
        half: u8,
    },
    /// Reveal no key until the BMC next powers on or resets the host.
    Seal,
    /// stage1 refused an update in this boot, for `reason`: the BMC counts
    /// it and keeps the last one with its epoch (a fault an operator sees
    /// even when bootd never heard of it). MAC'd, and refused once sealed,
    /// so the booted OS can neither raise nor hide one.
    ReportRefusal {
        /// Why.
        reason: RefusalReason,
    },
    /// How many refusals the BMC recorded and the last one (read-only).
    GetRefusal,
    /// stage1 trusted `version` of `role` in this boot: the BMC keeps it
    /// as that role's floor ([`crate::floors`]). Never lowers; MAC'd, and
    /// refused once sealed, so the booted OS cannot push a floor up and
    /// make every later update fail.
    RaiseTufFloor {
        /// Which role.
        role: TufRole,
        /// The version trusted.
        version: u32,
    },
    /// The TUF version floors (read-only).
    GetTufFloors,
}

impl<'a> Request<'a> {
    /// The command byte.
    pub fn command(&self) -> u8 {
        match self {
            Request::GetBootPlan => cmd::GET_BOOT_PLAN,
            Request::ConfirmBoot { .. } => cmd::CONFIRM_BOOT,
            Request::GetRollbackMin { .. } => cmd::GET_ROLLBACK_MIN,
            Request::RaiseRollbackMin { .. } => cmd::RAISE_ROLLBACK_MIN,
            Request::GetTime => cmd::GET_TIME,
            Request::SetTime { .. } => cmd::SET_TIME,
            Request::GetPowerStatus => cmd::GET_POWER_STATUS,
            Request::GetPowerMetrics => cmd::GET_POWER_METRICS,
            Request::GetButtonState => cmd::GET_BUTTON_STATE,
            Request::ReportInstalled { .. } => cmd::REPORT_INSTALLED,
            Request::GetSlotInfo { .. } => cmd::GET_SLOT_INFO,
            Request::Reset { .. } => cmd::RESET,
            Request::FwBegin { .. } => cmd::FW_BEGIN,
            Request::FwChunk { .. } => cmd::FW_CHUNK,
            Request::FwFinish => cmd::FW_FINISH,
            Request::GetFwInfo => cmd::GET_FW_INFO,
            Request::GetAuthStatus => cmd::GET_AUTH_STATUS,
            Request::ProvisionKey { .. } => cmd::PROVISION_KEY,
            Request::GetSessionKey { .. } => cmd::GET_SESSION_KEY,
            Request::Seal => cmd::SEAL,
            Request::ReportRefusal { .. } => cmd::REPORT_REFUSAL,
            Request::GetRefusal => cmd::GET_REFUSAL,
            Request::RaiseTufFloor { .. } => cmd::RAISE_TUF_FLOOR,
            Request::GetTufFloors => cmd::GET_TUF_FLOORS,
        }
    }

    /// True when this request must carry a counter and a MAC.
    pub fn is_authenticated(&self) -> bool {
        is_authenticated(self.command())
    }

    /// Writes the block data (not the command byte) into `buf`; returns its length.
    pub fn encode_data(&self, buf: &mut [u8; MAX_BLOCK]) -> Result<usize, Error> {
        let mut p = Put { buf, len: 0 };
        match *self {
            Request::GetBootPlan
            | Request::GetTime
            | Request::GetPowerStatus
            | Request::GetPowerMetrics
            | Request::GetButtonState
            | Request::FwFinish
            | Request::GetFwInfo
            | Request::GetAuthStatus
            | Request::GetRefusal
            | Request::GetTufFloors
            | Request::Seal => {}
            Request::RaiseTufFloor { role, version } => {
                p.u8(role.to_byte());
                p.bytes(&version.to_le_bytes());
            }
            Request::ReportRefusal { reason } => p.u8(reason.to_byte()),
            Request::ProvisionKey { key } => p.bytes(key.as_bytes()),
            Request::GetSessionKey { half } => {
                if half > 1 {
                    return Err(Error::OutOfRange {
                        field: "key half",
                        value: half.into(),
                    });
                }
                p.u8(half)
            }
            Request::ConfirmBoot { slot } | Request::GetSlotInfo { slot } => p.u8(slot.to_byte()),
            Request::GetRollbackMin { kind } => p.u8(kind.to_byte()),
            Request::RaiseRollbackMin { kind, version } => {
                p.u8(kind.to_byte());
                p.bytes(&version.0.to_le_bytes());
            }
            Request::SetTime { time } => p.bytes(&time.0.to_le_bytes()),
            Request::ReportInstalled {
                slot,
                kind,
                version,
            } => {
                p.u8(slot.to_byte());
                p.u8(kind.to_byte());
                p.bytes(&version.0.to_le_bytes());
            }
            Request::Reset { kind } => p.u8(kind.to_byte()),
            Request::FwBegin { version, total_len } => {
                p.bytes(&version.to_le_bytes());
                p.bytes(&total_len.to_le_bytes());
            }
            Request::FwChunk { offset, data } => {
                if data.is_empty() || data.len() > FW_CHUNK_MAX {
                    return Err(Error::Length {
                        expected: FW_CHUNK_MAX,
                        got: data.len(),
                    });
                }
                p.bytes(&offset.to_le_bytes());
                p.bytes(data);
            }
        }
        Ok(p.len)
    }

    /// Parses a command byte and its block data (the BMC's side).
    pub fn decode(command: u8, d: &'a [u8]) -> Result<Request<'a>, Error> {
        Ok(match command {
            cmd::GET_BOOT_PLAN => need(d, 0).map(|_| Request::GetBootPlan)?,
            cmd::CONFIRM_BOOT => {
                need(d, 1)?;
                Request::ConfirmBoot {
                    slot: Slot::from_byte(d[0])?,
                }
            }
            cmd::GET_ROLLBACK_MIN => {
                need(d, 1)?;
                Request::GetRollbackMin {
                    kind: ImageKind::from_byte(d[0])?,
                }
            }
            cmd::RAISE_ROLLBACK_MIN => {
                need(d, 5)?;
                Request::RaiseRollbackMin {
                    kind: ImageKind::from_byte(d[0])?,
                    version: SecurityVersion(u32_at(d, 1)),
                }
            }
            cmd::GET_TIME => need(d, 0).map(|_| Request::GetTime)?,
            cmd::SET_TIME => {
                need(d, 8)?;
                Request::SetTime {
                    time: UnixTime(u64_at(d, 0)),
                }
            }
            cmd::GET_POWER_STATUS => need(d, 0).map(|_| Request::GetPowerStatus)?,
            cmd::GET_POWER_METRICS => need(d, 0).map(|_| Request::GetPowerMetrics)?,
            cmd::GET_BUTTON_STATE => need(d, 0).map(|_| Request::GetButtonState)?,
            cmd::REPORT_INSTALLED => {
                need(d, 6)?;
                Request::ReportInstalled {
                    slot: Slot::from_byte(d[0])?,
                    kind: ImageKind::from_byte(d[1])?,
                    version: SecurityVersion(u32_at(d, 2)),
                }
            }
            cmd::GET_SLOT_INFO => {
                need(d, 1)?;
                Request::GetSlotInfo {
                    slot: Slot::from_byte(d[0])?,
                }
            }
            cmd::RESET => {
                need(d, 1)?;
                Request::Reset {
                    kind: ResetType::from_byte(d[0])?,
                }
            }
            cmd::FW_BEGIN => {
                need(d, 8)?;
                Request::FwBegin {
                    version: u32_at(d, 0),
                    total_len: u32_at(d, 4),
                }
            }
            cmd::FW_CHUNK => {
                if d.len() < 5 {
                    return Err(Error::Length {
                        expected: 5,
                        got: d.len(),
                    });
                }
                Request::FwChunk {
                    offset: u32_at(d, 0),
                    data: &d[4..],
                }
            }
            cmd::FW_FINISH => need(d, 0).map(|_| Request::FwFinish)?,
            cmd::GET_FW_INFO => need(d, 0).map(|_| Request::GetFwInfo)?,
            cmd::GET_AUTH_STATUS => need(d, 0).map(|_| Request::GetAuthStatus)?,
            cmd::PROVISION_KEY => {
                need(d, KEY_LEN)?;
                let mut k = [0u8; KEY_LEN];
                k.copy_from_slice(d);
                Request::ProvisionKey {
                    key: UnitKey::from_bytes(k),
                }
            }
            cmd::GET_SESSION_KEY => {
                need(d, 1)?;
                if d[0] > 1 {
                    return Err(Error::OutOfRange {
                        field: "key half",
                        value: d[0].into(),
                    });
                }
                Request::GetSessionKey { half: d[0] }
            }
            cmd::SEAL => need(d, 0).map(|_| Request::Seal)?,
            cmd::REPORT_REFUSAL => {
                need(d, 1)?;
                Request::ReportRefusal {
                    reason: RefusalReason::from_byte(d[0])?,
                }
            }
            cmd::GET_REFUSAL => need(d, 0).map(|_| Request::GetRefusal)?,
            cmd::RAISE_TUF_FLOOR => {
                need(d, 5)?;
                Request::RaiseTufFloor {
                    role: TufRole::from_byte(d[0])?,
                    version: u32_at(d, 1),
                }
            }
            cmd::GET_TUF_FLOORS => need(d, 0).map(|_| Request::GetTufFloors)?,
            other => return Err(Error::UnknownCommand(other)),
        })
    }
}
