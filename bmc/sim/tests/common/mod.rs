//! Runs the real simulator on 127.0.0.1:0 sockets in a thread of its own.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use racklet_bmc_proto::{BootPlan, Request, Response, SmbusAddr};
use racklet_bmc_sim::client::{Client, ClientError};
use racklet_bmc_sim::harness::InProcess;
use racklet_bmc_sim::SimConfig;

/// The in-process simulator of the library, with the helpers these tests use.
pub struct Sim(pub InProcess);

impl std::ops::Deref for Sim {
    type Target = InProcess;
    fn deref(&self) -> &InProcess {
        &self.0
    }
}

pub fn rack() -> racklet_hardware::Rack {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hardware/rack.yaml");
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

    /// Stops the simulator (all its tasks end; flash files stay).
    pub fn stop(self) {
        self.0.stop();
    }

    pub fn control(&self, line: &str) -> Result<Vec<String>, String> {
        self.0.control(line).expect("control connection")
    }

    pub fn status(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.0.status().expect("status")
    }

    /// A protocol client for the unit at `index` (0 = unit-1, address 0x20 + index).
    pub fn client(&self, index: usize) -> Client<TcpStream> {
        let s = TcpStream::connect(self.units[index]).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        Client::new(s, SmbusAddr::new(0x20 + index as u8).unwrap())
    }

    pub fn metrics_text(&self) -> (String, String) {
        let mut s = TcpStream::connect(self.metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        let (head, body) = all.split_once("\r\n\r\n").unwrap();
        (head.to_owned(), body.to_owned())
    }
}

pub fn call(c: &mut Client<TcpStream>, req: Request<'_>) -> Response {
    c.call(req).unwrap_or_else(|e| panic!("{req:?}: {e}"))
}

pub fn refused(c: &mut Client<TcpStream>, req: Request<'_>) -> racklet_bmc_proto::ErrorCode {
    match c.call(req) {
        Err(ClientError::Protocol(racklet_bmc_proto::Error::Refused(code))) => code,
        other => panic!("{req:?} should be refused: {other:?}"),
    }
}

/// Polls a unit until it runs a boot matching `want` (at most 20 s real time).
pub fn wait_plan(
    c: &mut Client<TcpStream>,
    what: &str,
    want: impl Fn(&BootPlan) -> bool,
) -> BootPlan {
    let start = std::time::Instant::now();
    let mut last = None;
    while start.elapsed() < Duration::from_secs(20) {
        let status = c.call(Request::GetPowerStatus);
        let on = matches!(status, Ok(Response::PowerStatus(s)) if s.state == racklet_bmc_proto::PowerState::On);
        let plan = c.call(Request::GetBootPlan);
        if let Ok(Response::BootPlan(p)) = plan {
            if on && want(&p) {
                return p;
            }
        }
        last = Some((status, plan));
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}; last seen {last:?}");
}
