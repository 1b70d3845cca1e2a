//! The rack's long-running services (bootd, the BMC simulator) as child
//! processes, and the BMC simulator's control socket.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use racklet_bmc_sim::control::parse_status_line;

use crate::work::Tools;

/// The loopback ports the demo uses, checked free before anything starts.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// bootd's HTTPS listener (the compromised server takes it over in step 6).
    pub bootd: u16,
    /// The BMC simulator's control socket.
    pub bmc_control: u16,
    /// The first unit's BMC protocol socket (the others follow).
    pub bmc_units: u16,
    /// The BMC simulator's OpenMetrics endpoint.
    pub bmc_metrics: u16,
}

impl Ports {
    /// The defaults moved by `offset`.
    pub fn new(offset: u16) -> Result<Ports> {
        let at = |p: u16| {
            p.checked_add(offset)
                .context("--port-offset moves a port past 65535")
        };
        Ok(Ports {
            bootd: at(8443)?,
            bmc_control: at(7700)?,
            bmc_units: at(7701)?,
            bmc_metrics: at(9700)?,
        })
    }

    /// Every port with what it is for.
    pub fn all(&self, units: usize) -> Vec<(u16, String)> {
        let mut v = vec![
            (self.bootd, "bootd HTTPS".to_owned()),
            (self.bmc_control, "BMC simulator control".to_owned()),
            (self.bmc_metrics, "BMC simulator /metrics".to_owned()),
        ];
        for i in 0..units {
            v.push((
                self.bmc_units + i as u16,
                format!("unit-{}'s BMC protocol socket", i + 1),
            ));
        }
        v
    }

    /// Fails naming the first port that is taken.
    pub fn check_free(&self, units: usize) -> Result<()> {
        for (port, what) in self.all(units) {
            if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
                bail!(
                    "127.0.0.1:{port} ({what}) is taken: {e}. Is another demo, bootd or \
                     bmc-sim running? Stop it, or move every port with --port-offset N"
                );
            }
        }
        Ok(())
    }
}

/// Services running now, by pid: stopped by [`stop_all_on_signal`] when
/// the demo itself is told to stop (SIGTERM, SIGHUP), so no bootd or
/// bmc-sim is left holding the demo's ports.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn term(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// On SIGTERM or SIGHUP: stop every service, then exit (143). (Ctrl-C in a
/// terminal reaches the services directly: they share the foreground
/// process group.)
pub fn stop_all_on_signal(rt: &tokio::runtime::Runtime) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut t = {
        let _g = rt.enter();
        signal(SignalKind::terminate())?
    };
    let mut h = {
        let _g = rt.enter();
        signal(SignalKind::hangup())?
    };
    rt.spawn(async move {
        tokio::select! {
            _ = t.recv() => {}
            _ = h.recv() => {}
        }
        let pids = RUNNING.lock().map(|v| v.clone()).unwrap_or_default();
        for pid in pids {
            term(pid);
        }
        eprintln!("racklet-demo: stopped by a signal; services stopped");
        std::process::exit(143);
    });
    Ok(())
}

/// A short-lived child (an enrollment) killed if the demo gives up on it.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Service {
    name: &'static str,
    child: Option<Child>,
}

impl Service {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn start(name: &'static str, tools: &Tools, mut cmd: Command, log: &Path) -> Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        tools.note(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        if let Ok(mut r) = RUNNING.lock() {
            r.push(child.id());
        }
        Ok(Service {
            name,
            child: Some(child),
        })
    }

    /// Fails if the process has exited.
    pub fn check(&mut self) -> Result<()> {
        if let Some(c) = &mut self.child {
            if let Some(status) = c.try_wait()? {
                self.child = None;
                bail!("{} exited ({status}); see its log", self.name);
            }
        }
        Ok(())
    }

    /// SIGTERM (bootd drains its connections), then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if let Ok(mut r) = RUNNING.lock() {
            r.retain(|p| *p != c.id());
        }
        term(c.id());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr, svc: &mut Service, within: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        svc.check()?;
        if start.elapsed() > within {
            bail!("nothing listens on {addr} after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One unit's status as the simulator reports it (`bmc-sim status`).
#[derive(Clone, Debug, Default)]
pub struct UnitStatus(pub BTreeMap<String, String>);

impl UnitStatus {
    /// A field, or "" when absent.
    pub fn get(&self, k: &str) -> &str {
        self.0.get(k).map(String::as_str).unwrap_or("")
    }

    /// A numeric field, or 0.
    pub fn num(&self, k: &str) -> u64 {
        self.get(k).parse().unwrap_or(0)
    }

    /// Powered, out of reset: the node's CPU runs (stage1 starts).
    pub fn running(&self) -> bool {
        self.get("power") == "On" && self.get("reset") == "released"
    }
}

/// The BMC simulator's control socket.
#[derive(Clone, Copy, Debug)]
pub struct BmcControl {
    addr: SocketAddr,
}

impl BmcControl {
    /// At `127.0.0.1:port`.
    pub fn new(port: u16) -> BmcControl {
        BmcControl {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Sends one request line; returns the reply lines before `ok`.
    pub fn send(&self, line: &str) -> Result<Vec<String>> {
        racklet_bmc_sim::control::request(self.addr, line)
            .with_context(|| format!("BMC simulator at {}: `{line}`", self.addr))
    }

    /// Every unit's status by name.
    pub fn status(&self) -> Result<BTreeMap<String, UnitStatus>> {
        Ok(self
            .send("status")?
            .iter()
            .map(|l| {
                let (name, kv) = parse_status_line(l);
                (name, UnitStatus(kv))
            })
            .collect())
    }

    /// One unit's status.
    pub fn unit(&self, name: &str) -> Result<UnitStatus> {
        self.status()?
            .remove(name)
            .with_context(|| format!("the BMC simulator has no {name}"))
    }
}
