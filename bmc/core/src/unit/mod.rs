//! The logic of one compute unit's BMC, sans IO: events and `now` in,
//! output levels and responses out. It never touches flash: [`crate::Bmc`]
//! commits [`Unit::persistent`] after each call.
//!
//! # Power sequencer
//!
//! | state | on | next state, outputs |
//! |---|---|---|
//! | Off / Fault | `On`, short press, `PowerCycle` | Staggered until `now + stagger_delay` |
//! | Staggered | deadline | choose a slot (consumes a try) → WaitPowerGood, rail on, reset held; no bootable slot → Fault(NoBootableSlot) |
//! | WaitPowerGood | power-good high | ResetHold until `now + reset_hold` |
//! | WaitPowerGood | `power_good_timeout` passed | rail off → Fault(PowerGoodTimeout) |
//! | ResetHold | deadline | reset released → On, watchdog armed |
//! | ResetHold / On | power-good low | reset held, rail off → Fault(PowerGoodLost) |
//! | On | confirmation of the booting slot | watchdog disarmed |
//! | On | watchdog expired | PoweringDown then on again (a power cycle: new attempt) |
//! | On | `GracefulShutdown`, short press | ShuttingDown until `now + graceful_timeout` (the OS sees `shutdown_requested`) |
//! | ShuttingDown | deadline | PoweringDown |
//! | any powered | `ForceOff` | reset held and rail off at once → Off |
//! | On / ResetHold / ShuttingDown | `ForceRestart` | reset held, new attempt → ResetHold |
//! | any powered | `PowerCycle`, long press | PoweringDown, then Staggered after `power_off_time` |
//! | PoweringDown | `reset_hold` passed | rail off → Off (or Staggered when cycling) |
//!
//! # Boot slots (Android A/B metadata, U-Boot bootcount semantics)
//!
//! Each power-on picks a slot: a pending *force B* (long press) wins once;
//! otherwise the highest-priority slot with tries left; else the other slot
//! with tries left (a *fallback*); else none (Fault). The chosen slot loses
//! one try. Confirmation of the booting slot marks it successful, refills
//! its tries and makes it the active (highest-priority) slot. stage1
//! reporting a new image in a slot makes that slot active, unconfirmed, with
//! full tries.
//!
//! # Where the code is
//!
//! This module holds the types, the accessors and [`Unit::on_event`];
//! `power` the sequencer (the first table: button presses, resets, timed
//! transitions, faults); `slots` the boot-slot choice and
//! [`Unit::handle`], the protocol requests (confirmation, rollback minimum,
//! time, installed images). Both only add `impl Unit` blocks.

use racklet_bmc_proto::{
    AuthStatus, BootPlan, ButtonState, Epoch, FaultCode, PowerMetrics, PowerState, PowerStatus,
    ResetType, SessionKey, Slot, UnixTime,
};

mod power;
mod slots;

use crate::button::Button;
use crate::state::Persistent;
use crate::time::{Instant, Millis};

/// Timings and limits of one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Power-good must rise within this after the rail is enabled.
    pub power_good_timeout: Millis,
    /// Reset is held this long after power-good, and before the rail goes off.
    pub reset_hold: Millis,
    /// This unit's delay before each rail enable (its position × the rack's
    /// stagger), so units sharing a busbar never switch on together.
    pub stagger_delay: Millis,
    /// Power on by itself when the BMC starts (after `stagger_delay`).
    pub auto_power_on: bool,
    /// How long the OS gets to shut down after a graceful-shutdown request.
    pub graceful_timeout: Millis,
    /// Time the rail stays off in a power cycle.
    pub power_off_time: Millis,
    /// A booted OS must confirm within this.
    pub watchdog: Millis,
    /// Tries per slot.
    pub max_tries: u8,
    /// Button debounce time.
    pub debounce: Millis,
    /// Minimum hold of a long press.
    pub long_press: Millis,
    /// Minimum hold of a very long press: clears the unit key (physical
    /// presence), then power-cycles the unit.
    pub key_clear_press: Millis,
}

impl Default for Config {
    /// The reference rack's values (`hardware/rack.yaml`), unit at position 0.
    fn default() -> Self {
        Config {
            power_good_timeout: Millis(100),
            reset_hold: Millis(20),
            stagger_delay: Millis(0),
            auto_power_on: true,
            graceful_timeout: Millis::from_secs(10),
            power_off_time: Millis(500),
            watchdog: Millis::from_secs(120),
            max_tries: 3,
            debounce: Millis(20),
            long_press: Millis::from_secs(3),
            key_clear_press: Millis::from_secs(10),
        }
    }
}

/// An input to the unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Time passed; nothing else changed.
    Tick,
    /// The power-good input's level.
    PowerGood(bool),
    /// The button input's raw level (`true` = pressed).
    Button(bool),
    /// A power monitor reading.
    PowerSample {
        /// Rail voltage.
        millivolts: u32,
        /// Rail current.
        milliamps: u32,
    },
    /// A reset request from the operator (Redfish, simulator control).
    Reset(ResetType),
}

/// Output levels the shell applies to the pins after every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outputs {
    /// Rail enable.
    pub rail_on: bool,
    /// Reset line asserted (unit held in reset).
    pub reset_asserted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Power {
    Off,
    Staggered { until: Instant },
    WaitPowerGood { deadline: Instant },
    ResetHold { until: Instant },
    On { watchdog: Option<Instant> },
    ShuttingDown { deadline: Instant },
    PoweringDown { until: Instant, cycle: bool },
    Fault,
}

/// The boot in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Boot {
    slot: Slot,
    forced: bool,
    fallback: bool,
    confirmed: bool,
}

/// The link's authentication in one epoch (RAM only: a BMC that restarts
/// has none until it starts the host again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Auth {
    epoch: Epoch,
    /// This epoch's session key (None while no unit key is stored).
    key: Option<SessionKey>,
    /// Highest counter accepted in this epoch.
    last_counter: u32,
    /// Set by `Seal`; only the next start of the host clears it.
    sealed: bool,
}

/// One unit's BMC logic. Cheap to clone (the BMC snapshots it to undo a
/// refused request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    cfg: Config,
    state: Persistent,
    power: Power,
    fault: FaultCode,
    boot: Option<Boot>,
    power_good: bool,
    button: Button,
    // Clock: Unix time `clock_base` at monotonic `clock_at`.
    clock_base: UnixTime,
    clock_at: Instant,
    metrics: PowerMetrics,
    energy_uj: u64,
    last_sample: Option<Instant>,
    auth: Option<Auth>,
}

impl Unit {
    /// A unit whose BMC just started at `now` with `state` from flash.
    pub fn new(cfg: Config, state: Persistent, now: Instant) -> Unit {
        let power = if cfg.auto_power_on {
            Power::Staggered {
                until: now + cfg.stagger_delay,
            }
        } else {
            Power::Off
        };
        Unit {
            cfg,
            state,
            power,
            fault: FaultCode::None,
            boot: None,
            power_good: false,
            button: Button::new(cfg.debounce, cfg.long_press, cfg.key_clear_press),
            clock_base: state.time_floor,
            clock_at: now,
            metrics: PowerMetrics::default(),
            energy_uj: 0,
            last_sample: None,
            auth: None,
        }
    }

    /// The link's authentication state, as on the wire.
    pub fn auth_status(&self) -> AuthStatus {
        AuthStatus {
            key_provisioned: self.state.key.is_some(),
            sealed: self.auth.is_none_or(|a| a.sealed),
            session: self.auth.is_some(),
            epoch: self.auth.map_or(Epoch(self.state.boot_count), |a| a.epoch),
            last_counter: self.auth.map_or(0, |a| a.last_counter),
        }
    }

    /// The state to persist.
    pub fn persistent(&self) -> &Persistent {
        &self.state
    }

    /// The persistent state, for the BMC's firmware-update path.
    pub(crate) fn persistent_mut(&mut self) -> &mut Persistent {
        &mut self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Output levels now.
    pub fn outputs(&self) -> Outputs {
        match self.power {
            Power::Off | Power::Staggered { .. } | Power::Fault => Outputs {
                rail_on: false,
                reset_asserted: true,
            },
            Power::WaitPowerGood { .. } | Power::ResetHold { .. } | Power::PoweringDown { .. } => {
                Outputs {
                    rail_on: true,
                    reset_asserted: true,
                }
            }
            Power::On { .. } | Power::ShuttingDown { .. } => Outputs {
                rail_on: true,
                reset_asserted: false,
            },
        }
    }

    /// Power state and fault, as on the wire.
    pub fn power_status(&self) -> PowerStatus {
        PowerStatus {
            state: match self.power {
                Power::Off => PowerState::Off,
                Power::Staggered { .. } => PowerState::Staggered,
                Power::WaitPowerGood { .. } => PowerState::WaitPowerGood,
                Power::ResetHold { .. } => PowerState::ResetHold,
                Power::On { .. } => PowerState::On,
                Power::ShuttingDown { .. } => PowerState::ShuttingDown,
                Power::PoweringDown { .. } => PowerState::PoweringDown,
                Power::Fault => PowerState::Fault,
            },
            fault: self.fault,
            shutdown_requested: matches!(self.power, Power::ShuttingDown { .. }),
        }
    }

    /// The boot in progress, if the unit is past slot selection.
    pub fn boot_plan(&self) -> Option<BootPlan> {
        self.boot.map(|b| BootPlan {
            slot: b.slot,
            tries_left: self.state.slot(b.slot).tries,
            forced_by_button: b.forced,
            fallback: b.fallback,
            confirmed: b.confirmed,
            boot_count: self.state.boot_count,
        })
    }

    /// Power readings and energy.
    pub fn metrics(&self) -> PowerMetrics {
        self.metrics
    }

    /// Button state.
    pub fn button_state(&self) -> ButtonState {
        ButtonState {
            pressed: self.button.pressed(),
            last_press: self.button.last_press(),
            force_b_pending: self.state.force_b,
        }
    }

    /// The clock at `now`.
    pub fn time(&self, now: Instant) -> UnixTime {
        UnixTime(self.clock_base.0 + (now - self.clock_at).0 / 1000)
    }

    /// The earliest instant at which a [`Event::Tick`] changes anything
    /// (button debounce aside: sample the button at least every `debounce`).
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.power {
            Power::Staggered { until }
            | Power::ResetHold { until }
            | Power::PoweringDown { until, .. } => Some(until),
            Power::WaitPowerGood { deadline } | Power::ShuttingDown { deadline } => Some(deadline),
            Power::On { watchdog } => watchdog,
            Power::Off | Power::Fault => None,
        }
    }

    /// Handles an event at `now`; returns the output levels to apply.
    pub fn on_event(&mut self, event: Event, now: Instant) -> Outputs {
        // Every event is also a tick of the button's debounce timer.
        let press = match event {
            Event::Button(level) => self.button.sample(level, now),
            _ => self.button.tick(now),
        };
        if let Some(press) = press {
            self.on_press(press, now);
        }
        match event {
            Event::Tick | Event::Button(_) => {}
            Event::PowerGood(level) => self.power_good = level,
            Event::PowerSample {
                millivolts,
                milliamps,
            } => {
                if let Some(prev) = self.last_sample {
                    // mV × mA = µW; µW × ms = nJ; / 1000 = µJ. Uses the
                    // previous reading over the interval (left Riemann sum).
                    let dt = (now - prev).0;
                    let uw = u64::from(self.metrics.millivolts) * u64::from(self.metrics.milliamps);
                    self.energy_uj = self.energy_uj.saturating_add(uw * dt / 1000);
                }
                self.last_sample = Some(now);
                self.metrics = PowerMetrics {
                    millivolts,
                    milliamps,
                    energy_mj: self.energy_uj / 1000,
                };
            }
            Event::Reset(kind) => self.reset(kind, now),
        }
        self.step(now);
        self.outputs()
    }
}
