//! Typed responses and their payloads (after the status byte).
//!
//! All integers are little-endian; the byte table is in `bmc/README.md`.

use crate::auth::{KeyHalf, KEY_HALF_LEN};
use crate::codec::{flag, need, u32_at, u64_at, Put};
use crate::message::cmd;
use crate::types::*;
use crate::{Error, MAX_BLOCK};

/// The boot decision for the current power-on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootPlan {
    /// The slot booting now.
    pub slot: Slot,
    /// Tries left on that slot after this attempt.
    pub tries_left: u8,
    /// Slot B was forced by a long button press (one-shot).
    pub forced_by_button: bool,
    /// The higher-priority slot had no tries left: this is a fallback.
    pub fallback: bool,
    /// This boot has been confirmed.
    pub confirmed: bool,
    /// Boot attempts counted since the flash was formatted.
    pub boot_count: u32,
}

/// Boot metadata of one slot (Android A/B style).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SlotInfo {
    /// Higher boots first (0..=15).
    pub priority: u8,
    /// Attempts left before the slot is given up.
    pub tries: u8,
    /// An OS from this slot confirmed a boot.
    pub successful: bool,
    /// Security version of each image kind installed in the slot, by [`ImageKind::index`].
    pub versions: [SecurityVersion; ImageKind::COUNT],
}

/// Power status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerStatus {
    /// The sequencer's state.
    pub state: PowerState,
    /// Last fault (kept until the next successful power-on).
    pub fault: FaultCode,
    /// A graceful shutdown was requested: the OS should halt.
    pub shutdown_requested: bool,
}

/// Power metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PowerMetrics {
    /// Rail voltage, millivolts.
    pub millivolts: u32,
    /// Rail current, milliamperes.
    pub milliamps: u32,
    /// Energy since the BMC started, millijoules.
    pub energy_mj: u64,
}

/// Button state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ButtonState {
    /// Debounced level: the button is held now.
    pub pressed: bool,
    /// The last completed press.
    pub last_press: Press,
    /// Slot B is forced for the next boot.
    pub force_b_pending: bool,
}

/// BMC firmware information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FwInfo {
    /// Version of the newest accepted firmware.
    pub version: u32,
    /// Bank holding it (0 or 1).
    pub bank: u8,
}

/// The BMC's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// What it reads.
    pub time: UnixTime,
    /// It was ever set (persisted): false on a factory BMC, whose clock
    /// reads 1970 plus its uptime.
    pub set: bool,
}

/// The link's authentication state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthStatus {
    /// A unit key is stored.
    pub key_provisioned: bool,
    /// The BMC is sealed: it reveals no key until it next starts the host.
    pub sealed: bool,
    /// The BMC has started the host since it itself started: there is an
    /// epoch whose frames it accepts.
    pub session: bool,
    /// The current epoch (the boot count).
    pub epoch: crate::auth::Epoch,
    /// The highest counter accepted in this epoch (0: none).
    pub last_counter: u32,
}

/// The last update refusal stage1 reported ([`crate::Request::ReportRefusal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastRefusal {
    /// Why.
    pub reason: RefusalReason,
    /// The epoch (boot count) of the boot that refused.
    pub epoch: crate::auth::Epoch,
}

/// The update refusals a BMC recorded (persisted; no command clears them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Refusals {
    /// Refusals reported since the flash was formatted (saturates).
    pub count: u32,
    /// The newest one; `None` exactly when `count` is 0.
    pub last: Option<LastRefusal>,
}

impl Refusals {
    /// Records one more refusal in `epoch`.
    pub fn record(&mut self, reason: RefusalReason, epoch: crate::auth::Epoch) {
        self.count = self.count.saturating_add(1);
        self.last = Some(LastRefusal { reason, epoch });
    }

    /// How many boots ago the last refusal happened, given the boot count
    /// now (0: in this boot).
    pub fn boots_ago(&self, boot_count: u32) -> Option<u32> {
        self.last.map(|l| boot_count.saturating_sub(l.epoch.0))
    }

    /// The payload bytes: count u32, reason u8, epoch u32 (reason and
    /// epoch 0 when there is none).
    pub fn to_bytes(&self) -> [u8; 9] {
        let mut b = [0u8; 9];
        b[0..4].copy_from_slice(&self.count.to_le_bytes());
        if let Some(l) = self.last {
            b[4] = l.reason.to_byte();
            b[5..9].copy_from_slice(&l.epoch.0.to_le_bytes());
        }
        b
    }

    /// Parses [`Refusals::to_bytes`]: with count 0 the rest must be 0 (one
    /// encoding per value).
    pub fn from_bytes(d: &[u8; 9]) -> Result<Refusals, Error> {
        let count = u32_at(d, 0);
        let epoch = u32_at(d, 5);
        if count == 0 {
            if d[4] != 0 || epoch != 0 {
                return Err(Error::OutOfRange {
                    field: "refusal without count",
                    value: d[4].into(),
                });
            }
            return Ok(Refusals::default());
        }
        Ok(Refusals {
            count,
            last: Some(LastRefusal {
                reason: RefusalReason::from_byte(d[4])?,
                epoch: crate::auth::Epoch(epoch),
            }),
        })
    }
}

/// A successful response. Requests without data answer [`Response::Done`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// Success, no payload.
    Done,
    /// To [`crate::Request::GetBootPlan`].
    BootPlan(BootPlan),
    /// To [`crate::Request::GetRollbackMin`] and [`crate::Request::RaiseRollbackMin`]: the minimum now.
    RollbackMin(SecurityVersion),
    /// To [`crate::Request::GetTime`].
    Time(Clock),
    /// To [`crate::Request::GetPowerStatus`].
    PowerStatus(PowerStatus),
    /// To [`crate::Request::GetPowerMetrics`].
    PowerMetrics(PowerMetrics),
    /// To [`crate::Request::GetButtonState`].
    ButtonState(ButtonState),
    /// To [`crate::Request::GetSlotInfo`].
    SlotInfo(SlotInfo),
    /// To [`crate::Request::GetFwInfo`] and [`crate::Request::FwFinish`].
    FwInfo(FwInfo),
    /// To [`crate::Request::GetAuthStatus`].
    AuthStatus(AuthStatus),
    /// To [`crate::Request::GetSessionKey`].
    SessionKeyHalf(KeyHalf),
    /// To [`crate::Request::GetRefusal`].
    Refusals(Refusals),
    /// To [`crate::Request::GetTufFloors`] and [`crate::Request::RaiseTufFloor`]: the floors now.
    TufFloors(crate::floors::TufFloors),
}

impl Response {
    /// Writes the payload (after the status byte) into `buf`; returns its length.
    pub fn encode_payload(&self, buf: &mut [u8; MAX_BLOCK]) -> usize {
        let mut p = Put { buf, len: 0 };
        match *self {
            Response::Done => {}
            Response::BootPlan(b) => {
                p.u8(b.slot.to_byte());
                p.u8(b.tries_left);
                p.u8(b.forced_by_button as u8 | (b.fallback as u8) << 1 | (b.confirmed as u8) << 2);
                p.bytes(&b.boot_count.to_le_bytes());
            }
            Response::RollbackMin(v) => p.bytes(&v.0.to_le_bytes()),
            Response::Time(c) => {
                p.bytes(&c.time.0.to_le_bytes());
                p.u8(c.set as u8);
            }
            Response::PowerStatus(s) => {
                p.u8(s.state.to_byte());
                p.u8(s.fault.to_byte());
                p.u8(s.shutdown_requested as u8);
            }
            Response::PowerMetrics(m) => {
                p.bytes(&m.millivolts.to_le_bytes());
                p.bytes(&m.milliamps.to_le_bytes());
                p.bytes(&m.energy_mj.to_le_bytes());
            }
            Response::ButtonState(b) => {
                p.u8(b.pressed as u8);
                p.u8(b.last_press.to_byte());
                p.u8(b.force_b_pending as u8);
            }
            Response::SlotInfo(s) => {
                p.u8(s.priority);
                p.u8(s.tries);
                p.u8(s.successful as u8);
                for v in s.versions {
                    p.bytes(&v.0.to_le_bytes());
                }
            }
            Response::FwInfo(f) => {
                p.bytes(&f.version.to_le_bytes());
                p.u8(f.bank);
            }
            Response::AuthStatus(a) => {
                p.u8(a.key_provisioned as u8 | (a.sealed as u8) << 1 | (a.session as u8) << 2);
                p.bytes(&a.epoch.0.to_le_bytes());
                p.bytes(&a.last_counter.to_le_bytes());
            }
            Response::SessionKeyHalf(h) => p.bytes(&h.0),
            Response::Refusals(r) => p.bytes(&r.to_bytes()),
            Response::TufFloors(f) => p.bytes(&f.to_bytes()),
        }
        p.len
    }

    /// Parses the payload of a successful response to a request with `command`.
    pub fn decode(command: u8, d: &[u8]) -> Result<Response, Error> {
        Ok(match command {
            cmd::CONFIRM_BOOT
            | cmd::SET_TIME
            | cmd::REPORT_INSTALLED
            | cmd::RESET
            | cmd::FW_BEGIN
            | cmd::FW_CHUNK
            | cmd::PROVISION_KEY
            | cmd::REPORT_REFUSAL
            | cmd::SEAL => {
                need(d, 0)?;
                Response::Done
            }
            cmd::GET_BOOT_PLAN => {
                need(d, 7)?;
                if d[2] & !0b111 != 0 {
                    return Err(Error::OutOfRange {
                        field: "boot plan flags",
                        value: d[2].into(),
                    });
                }
                Response::BootPlan(BootPlan {
                    slot: Slot::from_byte(d[0])?,
                    tries_left: d[1],
                    forced_by_button: d[2] & 1 != 0,
                    fallback: d[2] & 2 != 0,
                    confirmed: d[2] & 4 != 0,
                    boot_count: u32_at(d, 3),
                })
            }
            cmd::GET_ROLLBACK_MIN | cmd::RAISE_ROLLBACK_MIN => {
                need(d, 4)?;
                Response::RollbackMin(SecurityVersion(u32_at(d, 0)))
            }
            cmd::GET_TIME => {
                need(d, 9)?;
                Response::Time(Clock {
                    time: UnixTime(u64_at(d, 0)),
                    set: flag(d[8], "clock set")?,
                })
            }
            cmd::GET_POWER_STATUS => {
                need(d, 3)?;
                Response::PowerStatus(PowerStatus {
                    state: PowerState::from_byte(d[0])?,
                    fault: FaultCode::from_byte(d[1])?,
                    shutdown_requested: flag(d[2], "shutdown requested")?,
                })
            }
            cmd::GET_POWER_METRICS => {
                need(d, 16)?;
                Response::PowerMetrics(PowerMetrics {
                    millivolts: u32_at(d, 0),
                    milliamps: u32_at(d, 4),
                    energy_mj: u64_at(d, 8),
                })
            }
            cmd::GET_BUTTON_STATE => {
                need(d, 3)?;
                Response::ButtonState(ButtonState {
                    pressed: flag(d[0], "pressed")?,
                    last_press: Press::from_byte(d[1])?,
                    force_b_pending: flag(d[2], "force B")?,
                })
            }
            cmd::GET_SLOT_INFO => {
                need(d, 3 + 4 * ImageKind::COUNT)?;
                let mut versions = [SecurityVersion(0); ImageKind::COUNT];
                for (i, v) in versions.iter_mut().enumerate() {
                    *v = SecurityVersion(u32_at(d, 3 + 4 * i));
                }
                Response::SlotInfo(SlotInfo {
                    priority: d[0],
                    tries: d[1],
                    successful: flag(d[2], "successful")?,
                    versions,
                })
            }
            cmd::GET_FW_INFO | cmd::FW_FINISH => {
                need(d, 5)?;
                Response::FwInfo(FwInfo {
                    version: u32_at(d, 0),
                    bank: d[4],
                })
            }
            cmd::GET_AUTH_STATUS => {
                need(d, 9)?;
                if d[0] & !0b111 != 0 {
                    return Err(Error::OutOfRange {
                        field: "auth status flags",
                        value: d[0].into(),
                    });
                }
                Response::AuthStatus(AuthStatus {
                    key_provisioned: d[0] & 1 != 0,
                    sealed: d[0] & 2 != 0,
                    session: d[0] & 4 != 0,
                    epoch: crate::auth::Epoch(u32_at(d, 1)),
                    last_counter: u32_at(d, 5),
                })
            }
            cmd::GET_SESSION_KEY => {
                need(d, KEY_HALF_LEN)?;
                let mut h = [0u8; KEY_HALF_LEN];
                h.copy_from_slice(d);
                Response::SessionKeyHalf(KeyHalf(h))
            }
            cmd::GET_REFUSAL => {
                need(d, 9)?;
                let mut b = [0u8; 9];
                b.copy_from_slice(d);
                Response::Refusals(Refusals::from_bytes(&b)?)
            }
            cmd::GET_TUF_FLOORS | cmd::RAISE_TUF_FLOOR => {
                use crate::floors::TufFloors;
                need(d, TufFloors::LEN)?;
                let mut b = [0u8; TufFloors::LEN];
                b.copy_from_slice(d);
                Response::TufFloors(TufFloors::from_bytes(&b))
            }
            other => return Err(Error::UnknownCommand(other)),
        })
    }
}
