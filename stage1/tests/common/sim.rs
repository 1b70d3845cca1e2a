//! The real BMC simulator (`racklet-bmc-sim`) on 127.0.0.1:0 sockets in a
//! thread of its own (as in bmc/sim/tests/common).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use racklet_bmc_sim::control::parse_status_line;
use racklet_bmc_sim::{Listeners, SimConfig};

pub struct Sim {
    pub control: SocketAddr,
    pub metrics: SocketAddr,
    pub units: Vec<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
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
        let (tx, rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
                let l = Listeners::bind(any, any, any, cfg.rack.nodes.len())
                    .await
                    .unwrap();
                let addrs = (
                    l.control.local_addr().unwrap(),
                    l.metrics.local_addr().unwrap(),
                    l.units
                        .iter()
                        .map(|u| u.local_addr().unwrap())
                        .collect::<Vec<_>>(),
                );
                tx.send(addrs).unwrap();
                racklet_bmc_sim::run(cfg, l, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let (control, metrics, units) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Sim {
            control,
            metrics,
            units,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the simulator (all its tasks end; flash files stay).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    pub fn control(&self, line: &str) -> Result<Vec<String>, String> {
        let mut s = TcpStream::connect(self.control).unwrap();
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut out = vec![];
        for l in BufReader::new(s).lines() {
            let l = l.unwrap();
            if l == "ok" {
                return Ok(out);
            }
            if let Some(e) = l.strip_prefix("error: ") {
                return Err(e.to_owned());
            }
            out.push(l);
        }
        panic!("control connection closed")
    }

    pub fn status(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.control("status")
            .unwrap()
            .iter()
            .map(|l| parse_status_line(l))
            .collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown();
    }
}
