//! Boot slots (the second part of the module docs) and the protocol
//! requests that read or change them: confirmation, rollback minimums,
//! installed images, time.

use racklet_bmc_proto::{ErrorCode, ImageKind, Request, Response, SecurityVersion, Slot};

use super::{Boot, Power, Unit};
use crate::state::PRIORITY_ACTIVE;
use crate::time::Instant;

impl Unit {
    /// Picks the slot for a new power-on and consumes a try. False: none bootable.
    pub(super) fn begin_boot(&mut self) -> bool {
        let st = &mut self.state;
        let (slot, forced, fallback) = if st.force_b {
            st.force_b = false;
            (Slot::B, true, false)
        } else {
            let first = if st.slot(Slot::B).priority > st.slot(Slot::A).priority {
                Slot::B
            } else {
                Slot::A
            };
            if st.slot(first).tries > 0 {
                (first, false, false)
            } else if st.slot(first.other()).tries > 0 {
                (first.other(), false, true)
            } else {
                return false;
            }
        };
        let s = st.slot_mut(slot);
        s.tries = s.tries.saturating_sub(1);
        st.boot_count = st.boot_count.wrapping_add(1);
        self.boot = Some(Boot {
            slot,
            forced,
            fallback,
            confirmed: false,
        });
        true
    }

    fn set_active(&mut self, slot: Slot) {
        self.state.slot_mut(slot).priority = PRIORITY_ACTIVE;
        let other = self.state.slot_mut(slot.other());
        other.priority = other.priority.min(PRIORITY_ACTIVE - 1);
    }

    /// Answers a protocol request (see the command table in `bmc/README.md`).
    /// Firmware-update requests are the BMC's, not the unit's: they answer
    /// [`ErrorCode::UnknownCommand`] here.
    ///
    /// On `Err` the caller must drop any change (the BMC restores a snapshot).
    pub fn handle(&mut self, req: &Request<'_>, now: Instant) -> Result<Response, ErrorCode> {
        // Let time-driven transitions catch up first.
        self.step(now);
        let resp = match *req {
            Request::GetBootPlan => match self.boot_plan() {
                Some(plan) => Response::BootPlan(plan),
                None => return Err(ErrorCode::BadState),
            },
            Request::ConfirmBoot { slot } => {
                let on = matches!(self.power, Power::On { .. });
                match self.boot {
                    Some(ref mut b) if on && b.slot == slot => {
                        b.confirmed = true;
                        let s = self.state.slot_mut(slot);
                        s.successful = true;
                        s.tries = self.cfg.max_tries;
                        self.set_active(slot);
                        self.power = Power::On { watchdog: None };
                        Response::Done
                    }
                    _ => return Err(ErrorCode::BadState),
                }
            }
            Request::GetRollbackMin { kind } => {
                Response::RollbackMin(self.state.rollback_min[kind.index()])
            }
            Request::RaiseRollbackMin { kind, version } => {
                self.raise_rollback_min(kind, version)?;
                Response::RollbackMin(self.state.rollback_min[kind.index()])
            }
            Request::GetTime => Response::Time(self.time(now)),
            Request::SetTime { time } => {
                if time < self.time(now) {
                    return Err(ErrorCode::TimeBackwards);
                }
                self.clock_base = time;
                self.clock_at = now;
                self.state.time_floor = time;
                Response::Done
            }
            Request::GetPowerStatus => Response::PowerStatus(self.power_status()),
            Request::GetPowerMetrics => Response::PowerMetrics(self.metrics),
            Request::GetButtonState => Response::ButtonState(self.button_state()),
            Request::ReportInstalled {
                slot,
                kind,
                version,
            } => {
                if self.boot.is_some_and(|b| b.slot == slot) {
                    // The running slot is never overwritten.
                    return Err(ErrorCode::BadState);
                }
                if version < self.state.rollback_min[kind.index()] {
                    return Err(ErrorCode::CounterLower);
                }
                let max = self.cfg.max_tries;
                let s = self.state.slot_mut(slot);
                s.versions[kind.index()] = version;
                s.successful = false;
                s.tries = max;
                self.set_active(slot);
                Response::Done
            }
            Request::GetSlotInfo { slot } => Response::SlotInfo(*self.state.slot(slot)),
            Request::Reset { kind } => {
                self.reset(kind, now);
                self.step(now);
                Response::Done
            }
            Request::FwBegin { .. }
            | Request::FwChunk { .. }
            | Request::FwFinish
            | Request::GetFwInfo => return Err(ErrorCode::UnknownCommand),
        };
        Ok(resp)
    }

    /// Raises a rollback minimum: only forward, and only to a version the
    /// slot running now carries *and* has confirmed in this boot.
    fn raise_rollback_min(
        &mut self,
        kind: ImageKind,
        version: SecurityVersion,
    ) -> Result<(), ErrorCode> {
        let min = &mut self.state.rollback_min[kind.index()];
        if version < *min {
            return Err(ErrorCode::CounterLower);
        }
        if version == *min {
            return Ok(());
        }
        match self.boot {
            Some(b)
                if b.confirmed
                    && self.state.slots[b.slot.index()].versions[kind.index()] >= version =>
            {
                *min = version;
                Ok(())
            }
            _ => Err(ErrorCode::NotConfirmed),
        }
    }
}
