//! The simulator in a thread of its own, on loopback sockets chosen by the
//! kernel: real BMCs for the tests of other parts (stage1, bootd) and for
//! tools that embed a rack, without a separate process.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use crate::control::parse_status_line;
use crate::server::{run, Listeners, SimConfig};

/// A running in-process simulator; stopped on drop (flash files stay).
#[derive(Debug)]
pub struct InProcess {
    /// The control interface (line protocol, see [`crate::control`]).
    pub control: SocketAddr,
    /// OpenMetrics (`GET /metrics`).
    pub metrics: SocketAddr,
    /// The protocol socket of each unit, in rack order.
    pub units: Vec<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    /// Starts the simulator for `cfg` on 127.0.0.1 with kernel-chosen ports.
    pub fn start(cfg: SimConfig) -> io::Result<InProcess> {
        let (tx, rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bmc-sim".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let any = SocketAddr::from(([127, 0, 0, 1], 0));
                    let l = match Listeners::bind(any, any, any, cfg.rack.nodes.len()).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let addrs = (|| -> io::Result<_> {
                        Ok((
                            l.control.local_addr()?,
                            l.metrics.local_addr()?,
                            l.units
                                .iter()
                                .map(|u| u.local_addr())
                                .collect::<io::Result<Vec<_>>>()?,
                        ))
                    })();
                    let ok = addrs.is_ok();
                    let _ = tx.send(addrs);
                    if ok {
                        if let Err(e) = run(cfg, l, async {
                            let _ = stopped.await;
                        })
                        .await
                        {
                            tracing::error!(error = %e, "in-process simulator stopped");
                        }
                    }
                });
            })?;
        let (control, metrics, units) = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| io::Error::other("the simulator did not start within 10 s"))??;
        Ok(InProcess {
            control,
            metrics,
            units,
            stop: Some(stop),
            thread: Some(thread),
        })
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
            let _ = t.join();
        }
    }

    /// Sends one control line; `Ok(Err(reason))` is the simulator refusing it.
    pub fn control(&self, line: &str) -> io::Result<Result<Vec<String>, String>> {
        let mut s = TcpStream::connect(self.control)?;
        s.write_all(format!("{line}\n").as_bytes())?;
        let mut out = vec![];
        for l in BufReader::new(s).lines() {
            let l = l?;
            if l == "ok" {
                return Ok(Ok(out));
            }
            if let Some(e) = l.strip_prefix("error: ") {
                return Ok(Err(e.to_owned()));
            }
            out.push(l);
        }
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "control connection closed before `ok`",
        ))
    }

    /// Every unit's status, by unit name.
    pub fn status(&self) -> io::Result<BTreeMap<String, BTreeMap<String, String>>> {
        let lines = self.control("status")?.map_err(io::Error::other)?;
        Ok(lines.iter().map(|l| parse_status_line(l)).collect())
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown();
    }
}
