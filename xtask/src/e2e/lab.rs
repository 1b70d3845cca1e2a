//! The LAN the e2e runs on: network namespaces, the bridge and the nodes'
//! tap devices, the other hosts on the LAN, and every long-running process
//! in them. All of it goes when the [`Lab`] is dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::output;
use crate::util::sh;

/// bootd's address on the rack's bridge (`br0`).
pub(super) const SERVER: &str = "10.197.0.1";

/// The LAN: network namespaces and every process in them; all of it goes
/// on drop, whatever happened.
///
/// - `rk-e2e-PID` is the rack: bridge `br0` with bootd's address
///   ([`SERVER`]), one tap per node, bootd, the BMC simulator, QEMU;
/// - every other host on the LAN is a namespace `rk-e2e-PID-NAME` joined to
///   the bridge by a veth pair: `lan`, the LAN's own DHCP server at
///   [`LAN_DHCP`] (it must be another host: a proxyDHCP server on the DHCP
///   server's own address would take the clients' REQUESTs, whose server
///   identifier is that address, as its own), and later `rogue`.
pub(super) struct Lab {
    ns: String,
    hosts: Vec<String>,
    procs: Vec<(String, Child)>,
}

/// The LAN's DHCP server (dnsmasq), also its router.
pub(super) const LAN_DHCP: &str = "10.197.0.2";
/// A rogue host: its own proxyDHCP and an HTTP server.
pub(super) const ROGUE: &str = "10.197.0.66";

/// Removes what an interrupted run left (a kill skips `Drop`): namespaces
/// named `rk-e2e-PID…` whose PID is no longer running, with the processes
/// still inside them. Fails if another run is in progress: runs share
/// `target/e2e`.
pub(super) fn remove_stale_labs() -> Result<()> {
    let list = output(Command::new("ip").args(["netns", "list"]))?;
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = ns
            .strip_prefix("rk-e2e-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            bail!("another `cargo xtask e2e` (pid {pid}) is running");
        }
        eprintln!("removing {ns}, left by an interrupted run (pid {pid})");
        if let Ok(pids) = output(Command::new("ip").args(["netns", "pids", ns])) {
            for p in pids.split_whitespace() {
                let _ = Command::new("kill").arg(p).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
    Ok(())
}

impl Lab {
    pub fn new(taps: &[String]) -> Result<Lab> {
        let ns = format!("rk-e2e-{}", std::process::id());
        sh(Command::new("ip").args(["netns", "add", &ns]))?;
        let mut lab = Lab {
            ns,
            hosts: Vec::new(),
            procs: Vec::new(),
        };
        let ip = |args: &[&str]| sh(Command::new("ip").arg("-n").arg(&lab.ns).args(args));
        ip(&["link", "set", "lo", "up"])?;
        ip(&["link", "add", "br0", "type", "bridge"])?;
        ip(&["addr", "add", &format!("{SERVER}/24"), "dev", "br0"])?;
        ip(&["link", "set", "br0", "up"])?;
        for t in taps {
            ip(&["tuntap", "add", "dev", t, "mode", "tap"])?;
            ip(&["link", "set", t, "master", "br0"])?;
            ip(&["link", "set", t, "up"])?;
        }
        lab.add_host("lan", LAN_DHCP)?;
        Ok(lab)
    }

    /// Another host on the LAN: namespace `rk-e2e-PID-NAME`, its interface
    /// `NAME0` at `addr`/24, bridged to the rack.
    pub fn add_host(&mut self, name: &str, addr: &str) -> Result<()> {
        let host = format!("{}-{name}", self.ns);
        sh(Command::new("ip").args(["netns", "add", &host]))?;
        self.hosts.push(host.clone());
        let (up, dev) = (format!("up{}", self.hosts.len() - 1), format!("{name}0"));
        let ip = |args: &[&str]| sh(Command::new("ip").arg("-n").arg(&self.ns).args(args));
        ip(&["link", "add", &up, "type", "veth", "peer", "name", &dev])?;
        ip(&["link", "set", &dev, "netns", &host])?;
        ip(&["link", "set", &up, "master", "br0"])?;
        ip(&["link", "set", &up, "up"])?;
        let h = |args: &[&str]| sh(Command::new("ip").arg("-n").arg(&host).args(args));
        h(&["link", "set", "lo", "up"])?;
        h(&["addr", "add", &format!("{addr}/24"), "dev", &dev])?;
        h(&["link", "set", &dev, "up"])?;
        Ok(())
    }

    /// A command run inside the rack's namespace.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// A command run on the host `name` (see [`Lab::add_host`]).
    pub fn host_cmd(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}-{name}", self.ns)])
            .arg(program);
        c
    }

    /// Starts a long-running process, its output into `log`.
    pub fn spawn(&mut self, name: &str, mut cmd: Command, log: &Path) -> Result<()> {
        let f = std::fs::File::create(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.procs.push((name.to_owned(), child));
        Ok(())
    }

    /// Stops the process `name` with SIGTERM (SIGKILL after 10 s).
    pub fn stop(&mut self, name: &str) -> Result<()> {
        let i = self
            .procs
            .iter()
            .position(|(n, _)| n == name)
            .with_context(|| format!("no process {name}"))?;
        let (_, mut c) = self.procs.remove(i);
        // `ip netns exec` execs the program: the child's pid is its pid.
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Fails if a background process died.
    pub fn check_alive(&mut self) -> Result<()> {
        for (name, c) in &mut self.procs {
            if let Some(st) = c.try_wait()? {
                bail!("{name} exited with {st}");
            }
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in self.procs.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.hosts.iter().chain([&self.ns]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
