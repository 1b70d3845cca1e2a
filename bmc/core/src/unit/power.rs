//! The power sequencer: button presses, reset requests and the timed
//! transitions of the first table in the module docs.

use racklet_bmc_proto::{FaultCode, Press, ResetType};

use super::{Power, Unit};
use crate::time::Instant;

impl Unit {
    pub(super) fn on_press(&mut self, press: Press, now: Instant) {
        match press {
            Press::Short => match self.power {
                Power::Off | Power::Fault => self.reset(ResetType::On, now),
                _ => self.reset(ResetType::GracefulShutdown, now),
            },
            Press::Long => {
                self.state.force_b = true;
                if !matches!(self.power, Power::Off | Power::Fault) {
                    // Boot the forced slot now: the operator is standing there.
                    self.reset(ResetType::PowerCycle, now);
                }
            }
            Press::VeryLong => {
                // Physical presence: forget the unit key (the rest of the
                // state stays). Power-cycle so that nothing started under
                // the old key runs on, and the next stage1 provisions a new
                // key in a fresh, unsealed epoch.
                self.state.key = None;
                if let Some(a) = self.auth.as_mut() {
                    a.key = None;
                }
                if !matches!(self.power, Power::Off | Power::Fault) {
                    self.reset(ResetType::PowerCycle, now);
                }
            }
            Press::None => {}
        }
    }

    /// Applies a Redfish reset type (see the table in the module docs).
    pub(super) fn reset(&mut self, kind: ResetType, now: Instant) {
        let powered = !matches!(
            self.power,
            Power::Off | Power::Fault | Power::Staggered { .. }
        );
        match kind {
            ResetType::On => match self.power {
                Power::Off | Power::Fault => {
                    self.power = Power::Staggered {
                        until: now + self.cfg.stagger_delay,
                    }
                }
                Power::ShuttingDown { .. } => {
                    self.power = Power::On {
                        watchdog: self.watchdog_deadline(now),
                    }
                }
                Power::PoweringDown { until, .. } => {
                    self.power = Power::PoweringDown { until, cycle: true }
                }
                _ => {}
            },
            ResetType::ForceOff => {
                self.power = Power::Off;
                self.power_good = false;
                self.boot = None;
            }
            ResetType::GracefulShutdown => match self.power {
                Power::On { .. } => {
                    self.power = Power::ShuttingDown {
                        deadline: now + self.cfg.graceful_timeout,
                    }
                }
                Power::Staggered { .. } => self.power = Power::Off,
                Power::WaitPowerGood { .. } | Power::ResetHold { .. } => {
                    self.power_down(now, false)
                }
                _ => {}
            },
            ResetType::ForceRestart => match self.power {
                Power::On { .. } | Power::ResetHold { .. } | Power::ShuttingDown { .. } => {
                    if self.begin_boot() {
                        self.power = Power::ResetHold {
                            until: now + self.cfg.reset_hold,
                        };
                    } else {
                        self.power_down(now, false);
                        self.fault = FaultCode::NoBootableSlot;
                    }
                }
                _ => {}
            },
            ResetType::PowerCycle => {
                if powered {
                    self.power_down(now, true);
                } else {
                    self.power = Power::Staggered {
                        until: now + self.cfg.stagger_delay,
                    };
                }
            }
        }
    }

    fn watchdog_deadline(&self, now: Instant) -> Option<Instant> {
        match self.boot {
            Some(b) if !b.confirmed => Some(now + self.cfg.watchdog),
            _ => None,
        }
    }

    fn power_down(&mut self, now: Instant, cycle: bool) {
        self.power = Power::PoweringDown {
            until: now + self.cfg.reset_hold,
            cycle,
        };
    }

    fn fault(&mut self, code: FaultCode) {
        self.power = Power::Fault;
        // The rail is off: a power-good seen before does not count for the next power-on.
        self.power_good = false;
        self.fault = code;
        self.boot = None;
    }

    /// Records that the persistent state could not be written: safe off.
    pub fn storage_fault(&mut self) {
        self.fault(FaultCode::Storage);
    }

    /// Runs timed transitions until none applies at `now`.
    pub(super) fn step(&mut self, now: Instant) {
        // Each transition moves forward; a handful at most happen per call.
        for _ in 0..8 {
            let next = match self.power {
                Power::Staggered { until } if now >= until => {
                    if self.begin_boot() {
                        Power::WaitPowerGood {
                            deadline: now + self.cfg.power_good_timeout,
                        }
                    } else {
                        self.fault(FaultCode::NoBootableSlot);
                        return;
                    }
                }
                Power::WaitPowerGood { .. } if self.power_good => Power::ResetHold {
                    until: now + self.cfg.reset_hold,
                },
                Power::WaitPowerGood { deadline } if now >= deadline => {
                    self.fault(FaultCode::PowerGoodTimeout);
                    return;
                }
                Power::ResetHold { .. } | Power::On { .. } | Power::ShuttingDown { .. }
                    if !self.power_good =>
                {
                    self.fault(FaultCode::PowerGoodLost);
                    return;
                }
                Power::ResetHold { until } if now >= until => {
                    self.fault = FaultCode::None;
                    Power::On {
                        watchdog: self.watchdog_deadline(now),
                    }
                }
                Power::On {
                    watchdog: Some(deadline),
                } if now >= deadline => Power::PoweringDown {
                    until: now + self.cfg.reset_hold,
                    cycle: true,
                },
                Power::ShuttingDown { deadline } if now >= deadline => Power::PoweringDown {
                    until: now + self.cfg.reset_hold,
                    cycle: false,
                },
                Power::PoweringDown { until, cycle } if now >= until => {
                    self.boot = None;
                    self.power_good = false;
                    if cycle {
                        Power::Staggered {
                            until: now + self.cfg.power_off_time + self.cfg.stagger_delay,
                        }
                    } else {
                        Power::Off
                    }
                }
                _ => return,
            };
            self.power = next;
        }
    }
}
