//! The real BMC simulator (`racklet-bmc-sim`) in a thread of its own, on
//! 127.0.0.1 sockets (its library's in-process harness).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use racklet_bmc_sim::harness::InProcess;
use racklet_bmc_sim::SimConfig;

/// The simulator of the reference rack, with the calls these tests use.
pub struct Sim(pub InProcess);

impl std::ops::Deref for Sim {
    type Target = InProcess;
    fn deref(&self) -> &InProcess {
        &self.0
    }
}

pub fn rack() -> racklet_hardware::Rack {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hardware/rack.yaml");
    racklet_hardware::Rack::load(&path).expect("reference rack loads")
}

impl Sim {
    /// Starts the simulator on `state_dir`, `speed` times faster than real time.
    pub fn start(state_dir: &Path, speed: f64, watchdog: Option<Duration>) -> Sim {
        let mut cfg = SimConfig::new(rack(), PathBuf::from(state_dir));
        cfg.speed = speed;
        cfg.watchdog = watchdog;
        cfg.graceful_timeout = Duration::from_secs(2);
        Sim(InProcess::start(cfg).expect("the simulator starts"))
    }

    /// Sends a control line; `Err` is the simulator refusing it.
    pub fn control(&self, line: &str) -> Result<Vec<String>, String> {
        self.0.control(line).expect("control connection")
    }

    pub fn status(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.0.status().expect("status")
    }
}

/// Waits (up to 30 s) until the unit at `addr` powers its host and its BMC
/// is in an epoch above `epoch_above`: a new boot has started.
pub fn wait_on(addr: &str, smbus: u8, epoch_above: u32) {
    use racklet_bmc_proto::{PowerState, Request, Response};
    let start = std::time::Instant::now();
    loop {
        if let Ok(mut b) = stage1::bmc::Bmc::connect(addr, smbus) {
            let on = matches!(b.call(Request::GetPowerStatus),
                Ok(Response::PowerStatus(s)) if s.state == PowerState::On);
            if on && b.auth_status().is_ok_and(|a| a.epoch.0 > epoch_above) {
                return;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "unit never on");
        std::thread::sleep(Duration::from_millis(30));
    }
}
