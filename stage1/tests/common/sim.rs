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
