//! One simulated unit: a BMC on file flash, plus a model of what sits
//! around it on a real board — the rail with its power-good signal, the
//! button, and the PAC1921 readings.

use std::path::Path;

use ed25519_dalek::VerifyingKey;
use racklet_bmc_core::fwupdate::danger::INSECURE_EXAMPLE_PUBLIC_KEY;
use racklet_bmc_core::{Bmc, Config, Event, Instant, Millis, Outputs};
use racklet_bmc_proto::{ResetType, SmbusAddr, MAX_FRAME};
use racklet_hardware::Node;

use crate::flash::{FileFlash, FlashFileError};

/// State flash: two 4 KiB sectors.
pub type StateFlash = FileFlash<8192>;
/// Firmware banks: 2 × 16 KiB.
pub type BankFlash = FileFlash<32768>;

/// How long the modelled rail takes to report power-good.
pub const POWER_GOOD_DELAY: Millis = Millis(5);
/// A short press as the control interface makes it.
pub const SHORT_PRESS: Millis = Millis(200);
/// A long press as the control interface makes it.
pub const LONG_PRESS: Millis = Millis(3500);
/// A very long press (clears the unit key) as the control interface makes it.
pub const KEY_CLEAR_PRESS: Millis = Millis(10_500);

/// Why a unit could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// A flash file.
    #[error(transparent)]
    Flash(#[from] FlashFileError),
    /// The BMC core refused to start.
    #[error("unit {unit}: {source}")]
    Start {
        /// Unit name.
        unit: String,
        /// The cause.
        source: racklet_bmc_core::Error,
    },
    /// The SMBus address in the rack description is not usable.
    #[error("unit {unit}: {source}")]
    Address {
        /// Unit name.
        unit: String,
        /// The cause.
        source: racklet_bmc_proto::Error,
    },
}

/// A simulated unit.
#[derive(Debug)]
pub struct SimUnit {
    /// Name from the rack description.
    pub name: String,
    /// The BMC.
    pub bmc: Bmc<StateFlash, BankFlash>,
    rail_since: Option<Instant>,
    /// Power pulled (power-good forced low).
    pub pulled: bool,
    button_until: Option<Instant>,
    last_sample: Option<Instant>,
    /// Output levels after the last step.
    pub outputs: Outputs,
    /// When the rail was last switched on.
    pub rail_on_at: Option<Instant>,
    nominal_mv: u32,
    load_ma: u32,
    /// Latest time seen: tasks read the clock before taking the unit's
    /// lock, so a caller may arrive with a slightly older `now`.
    last_now: Instant,
}

impl SimUnit {
    /// Starts the BMC of `node` with its flash files in `dir`.
    pub fn start(node: &Node, cfg: Config, dir: &Path, now: Instant) -> Result<SimUnit, UnitError> {
        let name = node.name.as_str().to_owned();
        let state = StateFlash::open(&dir.join(format!("{name}.state.flash")))?;
        let banks = BankFlash::open(&dir.join(format!("{name}.banks.flash")))?;
        let addr = SmbusAddr::new(node.smbus_address).map_err(|source| UnitError::Address {
            unit: name.clone(),
            source,
        })?;
        let key = VerifyingKey::from_bytes(&INSECURE_EXAMPLE_PUBLIC_KEY)
            .expect("the example key is a valid point");
        let bmc =
            Bmc::new(addr, cfg, state, banks, key, now).map_err(|source| UnitError::Start {
                unit: name.clone(),
                source,
            })?;
        let outputs = bmc.unit().outputs();
        Ok(SimUnit {
            name,
            bmc,
            rail_since: None,
            pulled: false,
            button_until: None,
            last_sample: None,
            outputs,
            rail_on_at: None,
            last_now: now,
            nominal_mv: node.rail.nominal_mv,
            // A Pi 4 class load: 40 % of the rail's limit when running.
            load_ma: node.rail.max_ma * 2 / 5,
        })
    }

    /// Holds the button down from `now` for `hold`.
    pub fn press(&mut self, now: Instant, hold: Millis) {
        let now = self.monotonic(now);
        self.button_until = Some(now + hold);
    }

    /// Time never runs backwards for a unit.
    fn monotonic(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    /// Advances the board model and the BMC to `now`.
    pub fn step(&mut self, now: Instant) {
        let now = self.monotonic(now);
        let button = self.button_until.is_some_and(|t| now < t);
        let pg = !self.pulled && self.rail_since.is_some_and(|t| now - t >= POWER_GOOD_DELAY);
        // Power-good first: a late tick must see the rail's answer before
        // the sequencer checks its timeout.
        self.bmc.on_event(Event::PowerGood(pg), now);
        let out = self.bmc.on_event(Event::Button(button), now);
        if self.last_sample.is_none_or(|t| now - t >= Millis(100)) {
            self.last_sample = Some(now);
            let running = out.rail_on && !out.reset_asserted;
            let (mv, ma) = match (out.rail_on && !self.pulled, running) {
                (false, _) => (0, 0),
                (true, false) => (self.nominal_mv, self.load_ma / 10),
                (true, true) => (self.nominal_mv, self.load_ma),
            };
            self.bmc.on_event(
                Event::PowerSample {
                    millivolts: mv,
                    milliamps: ma,
                },
                now,
            );
        }
        self.apply(now);
    }

    /// Applies output levels after any call into the BMC.
    pub fn apply(&mut self, now: Instant) {
        let now = self.monotonic(now);
        let out = self.bmc.unit().outputs();
        if out.rail_on && self.rail_since.is_none() {
            self.rail_since = Some(now);
            self.rail_on_at = Some(now);
        }
        if !out.rail_on {
            self.rail_since = None;
        }
        if out != self.outputs {
            let plan = self.bmc.unit().boot_plan();
            tracing::info!(
                unit = %self.name,
                t_ms = now.0,
                rail = out.rail_on,
                reset = out.reset_asserted,
                state = ?self.bmc.unit().power_status().state,
                slot = ?plan.map(|p| p.slot),
                tries_left = ?plan.map(|p| p.tries_left),
                "outputs changed"
            );
        }
        self.outputs = out;
    }

    /// An operator's reset request.
    pub fn reset(&mut self, kind: ResetType, now: Instant) {
        self.step(now);
        let now = self.last_now;
        self.bmc.on_event(Event::Reset(kind), now);
        self.apply(now);
    }

    /// The operator sets the BMC's clock (its management interface, not
    /// the host link: no MAC).
    pub fn set_time(
        &mut self,
        time: racklet_bmc_proto::UnixTime,
        now: Instant,
    ) -> Result<(), racklet_bmc_proto::ErrorCode> {
        self.step(now);
        let now = self.last_now;
        self.bmc.set_time_by_operator(time, now)
    }

    /// The clock is lost (a dead RTC battery, a replacement BMC).
    pub fn lose_clock(&mut self, now: Instant) -> Result<(), racklet_bmc_proto::ErrorCode> {
        self.step(now);
        let now = self.last_now;
        self.bmc.lose_clock(now)
    }

    /// Handles one protocol frame.
    pub fn frame(&mut self, frame: &[u8], now: Instant) -> Option<Vec<u8>> {
        // Sample the board at `now` first, as the firmware's 1 ms loop
        // would have: a request must not see inputs older than its time.
        self.step(now);
        let now = self.last_now;
        let mut out = [0u8; MAX_FRAME];
        let n = self.bmc.handle_frame(frame, now, &mut out);
        self.apply(now);
        n.map(|n| out[..n].to_vec())
    }
}
