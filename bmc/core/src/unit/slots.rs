//! Boot slots (the second part of the module docs) and the protocol
//! requests that read or change them: confirmation, rollback minimums,
//! installed images, time.

use racklet_bmc_proto::{
    Clock, Epoch, ErrorCode, ImageKind, Incoming, Request, Response, SecurityVersion, Slot,
    SmbusAddr, UnixTime,
};

use super::{Auth, Boot, Power, Unit};
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
        // A new epoch: the host starts afresh (reset held until the try is
        // committed), so stage1 may read this epoch's session key until it
        // seals. Only this unseals.
        let epoch = Epoch(st.boot_count);
        self.auth = Some(Auth {
            epoch,
            key: st.key.map(|k| k.session(epoch)),
            last_counter: 0,
            sealed: false,
        });
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
    /// [`ErrorCode::UnknownCommand`] here. A state-changing request
    /// ([`Request::is_authenticated`]) answers [`ErrorCode::Unauthenticated`]
    /// here: it goes through [`Unit::handle_authenticated`].
    ///
    /// On `Err` the caller must drop any change (the BMC restores a snapshot).
    pub fn handle(&mut self, req: &Request<'_>, now: Instant) -> Result<Response, ErrorCode> {
        if req.is_authenticated() {
            return Err(ErrorCode::Unauthenticated);
        }
        self.handle_checked(req, now)
    }

    /// Answers a state-changing request from frame `incoming` after checking
    /// its MAC against this epoch's session key and its counter against the
    /// last one accepted: no key stored → `NoKey`; no epoch since the BMC
    /// started → `BadState`; no or wrong tag → `Unauthenticated`; counter
    /// not above the last → `Replayed`. The counter counts only when the
    /// request succeeds (on `Err` the caller drops every change).
    pub fn handle_authenticated(
        &mut self,
        addr: SmbusAddr,
        incoming: &Incoming<'_>,
        now: Instant,
    ) -> Result<Response, ErrorCode> {
        let req = incoming.request.map_err(|e| e.code())?;
        if !req.is_authenticated() {
            return self.handle(&req, now);
        }
        if self.state.key.is_none() {
            return Err(ErrorCode::NoKey);
        }
        let auth = self.auth.ok_or(ErrorCode::BadState)?;
        let key = auth.key.ok_or(ErrorCode::NoKey)?;
        let trailer = incoming.auth.ok_or(ErrorCode::Unauthenticated)?;
        if !incoming.verify(addr, &key, auth.epoch) {
            return Err(ErrorCode::Unauthenticated);
        }
        if trailer.counter <= auth.last_counter {
            return Err(ErrorCode::Replayed);
        }
        let resp = self.handle_checked(&req, now)?;
        if let Some(a) = self.auth.as_mut() {
            a.last_counter = trailer.counter;
        }
        Ok(resp)
    }

    fn handle_checked(&mut self, req: &Request<'_>, now: Instant) -> Result<Response, ErrorCode> {
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
            Request::GetTime => Response::Time(Clock {
                time: self.time(now),
                set: self.state.clock_set,
            }),
            Request::SetTime { time } => {
                self.set_time(time, now)?;
                Response::Done
            }
            Request::GetAuthStatus => Response::AuthStatus(self.auth_status()),
            Request::ProvisionKey { key } => {
                if self.state.key.is_some() {
                    return Err(ErrorCode::KeyPresent);
                }
                match self.auth.as_mut() {
                    Some(a) if !a.sealed => {
                        a.key = Some(key.session(a.epoch));
                        self.state.key = Some(key);
                    }
                    _ => return Err(ErrorCode::Sealed),
                }
                Response::Done
            }
            Request::GetSessionKey { half } => {
                if self.state.key.is_none() {
                    return Err(ErrorCode::NoKey);
                }
                match self.auth {
                    Some(Auth {
                        key: Some(k),
                        sealed: false,
                        ..
                    }) => Response::SessionKeyHalf(k.half(half)),
                    _ => return Err(ErrorCode::Sealed),
                }
            }
            Request::Seal => {
                if let Some(a) = self.auth.as_mut() {
                    a.sealed = true;
                }
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
            Request::ReportRefusal { reason } => {
                // Reached only through `handle_authenticated`: an epoch is
                // there. Refused once sealed, so that the OS, which may
                // read stage1's leftover session key, cannot add one.
                match self.auth {
                    Some(a) if !a.sealed => self.state.refusals.record(reason, a.epoch),
                    _ => return Err(ErrorCode::Sealed),
                }
                Response::Done
            }
            Request::GetRefusal => Response::Refusals(self.state.refusals),
            Request::RaiseTufFloor { role, version } => {
                // As ReportRefusal: MAC'd, and refused once sealed, so the
                // OS cannot push a floor up and make every update fail.
                match self.auth {
                    Some(a) if !a.sealed => {
                        self.state.tuf_floors.raise(role, version);
                    }
                    _ => return Err(ErrorCode::Sealed),
                }
                Response::TufFloors(self.state.tuf_floors)
            }
            Request::GetTufFloors => Response::TufFloors(self.state.tuf_floors),
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

    /// Sets the clock (never backwards) and marks it set. Reached by a
    /// MAC'd SetTime, or by the BMC's own operator interface
    /// ([`crate::Bmc::set_time_by_operator`]), never by an unauthenticated frame.
    pub(crate) fn set_time(&mut self, time: UnixTime, now: Instant) -> Result<(), ErrorCode> {
        if time < self.time(now) {
            return Err(ErrorCode::TimeBackwards);
        }
        self.clock_base = time;
        self.clock_at = now;
        self.state.time_floor = time;
        self.state.clock_set = true;
        Ok(())
    }

    /// The clock is lost (a dead RTC battery, or a replacement BMC module):
    /// it counts from 1970 again and says it was never set. Only the
    /// operator or stage1's MAC'd SetTime sets it again.
    pub(crate) fn lose_clock(&mut self, now: Instant) {
        self.clock_base = UnixTime(0);
        self.clock_at = now;
        self.state.time_floor = UnixTime(0);
        self.state.clock_set = false;
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
