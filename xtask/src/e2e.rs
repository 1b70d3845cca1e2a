//! `cargo xtask e2e`: the whole chain on real kernels, real firmware and
//! real DHCP, the way a rack meets a LAN it does not control.
//!
//! In a network namespace of its own (a bridge `br0` at 10.197.0.1/24 and
//! one tap device per node; no address outside it):
//!
//! - dnsmasq is "the LAN's DHCP server": it hands out the addresses;
//! - bootd serves the TUF repository over HTTPS, the stage1 UKI (a signed
//!   target of kind `stage1`) on its plain-HTTP first-stage listener, and
//!   answers the firmware's DHCPDISCOVER with proxyDHCP (the URL, no address);
//! - the BMC simulator (`bmc-sim`) is each node's BMC, reached from the VM
//!   through a virtio-serial port wired to its unit socket;
//! - each node is `qemu-system-x86_64` (q35 with SMM, TCG, 384 MiB) with
//!   OVMF, Secure Boot on and only this run's own PK, KEK and `db` enrolled
//!   (`virt-fw-vars`), doing UEFI HTTP boot of stage1
//!   (`images/recipes/stage1.yaml` around Debian's kernel), which gets an address from dnsmasq, asks its BMC, verifies the
//!   release with TUF over HTTPS, installs it into a slot of its virtio disk
//!   and kexecs into the OS (`images/recipes/confirm-os.yaml`), whose init
//!   confirms the boot to the BMC and powers off.
//!
//! Phases, on the same nodes and disks (a fresh BMC boots slot A, and the
//! slot being booted is never written, so the first install lands in B):
//! 1. v1 is installed into slot B, kexec'd, confirmed;
//! 2. v2 (same security version) is installed into slot A;
//! 3. v3 is published and one node's button is held: that node boots
//!    slot B (v1) and installs nothing, the others install v3 into B;
//! 4. a rogue proxyDHCP on another host of the LAN wins the race (bootd's
//!    proxyDHCP is off) and points each node at its own HTTP server, which
//!    serves our stage1 unsigned to one node and signed with another key to
//!    the other: each firmware downloads it and refuses it (Secure Boot), and
//!    no line of stage1 appears;
//! 5. the rogue is gone and bootd answers again: the same nodes boot;
//! 6. the LAN's DHCP server goes away and bootd runs in full-DHCP mode (a
//!    rack on a switch of its own): the firmware, stage1 and the OS each
//!    get an address from bootd's pool, and bootd's lease table holds them;
//! 7. v4 is published but bootd serves it tampered: every node refuses it
//!    (signed hash), hands nothing off, and its active slot is untouched.
//!
//! Both images are signed for Secure Boot with the run's `db` key (`cargo
//! xtask build-image --secure-boot-key`): the UKI for the firmware, and the
//! kernel inside it for `kexec_file_load`, which a kernel under Secure
//! Boot's lockdown only accepts signed by a key it trusts (the firmware's
//! `db` is in its platform keyring). Each stage1 prints what the platform
//! enforces, and every phase checks it says `UEFI Secure Boot on, kernel
//! lockdown integrity`. `--no-secure-boot` runs the same nodes without it
//! and fails at phase 4, showing the rogue's payload running.
//!
//! Why plain HTTP for the first stage: with the rack CA enrolled
//! (`--https-first-stage`), OVMF 2022.11 (Debian 12) reaches bootd's HTTPS
//! port and bootd refuses the handshake, `NoKxGroupsInCommon`: that
//! firmware's TLS offers no elliptic-curve group, and rustls has no other
//! key exchange. The design allows exactly this first fetch
//! unauthenticated, provided the platform checks the payload's signature
//! (UEFI Secure Boot, phase 4): everything after the firmware (metadata, OS
//! images) is TLS + TUF.
//!
//! About three minutes on 2 cores once built (≈35 s per boot phase, two
//! nodes in parallel); each node's progress is printed as it happens and its whole
//! console kept in `target/e2e/<node>.console.log`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use racklet_images::console::{Console, Next};

use crate::build_image::{self, BuildImageArgs};
use crate::secureboot::{self, SigningKey};
use crate::util::{cargo, have, is_root, root, sh};

#[derive(Debug, Clone, clap::Args)]
pub struct E2eArgs {
    /// How many nodes (from hardware/rack.yaml, starting at unit-2).
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub phase_timeout_s: u64,
    /// Experiment: have the firmware fetch stage1 over HTTPS from bootd,
    /// with the rack CA enrolled in OVMF (`etc/edk2/https/cacerts`, an EFI
    /// signature list), and stop after the first phase.
    #[arg(long)]
    pub https_first_stage: bool,
    /// Exploration: firmware without UEFI Secure Boot. Phase 4 then shows
    /// what a rogue proxyDHCP does to such a node (its payload runs), and
    /// the e2e fails there.
    #[arg(long)]
    pub no_secure_boot: bool,
}

const SERVER: &str = "10.197.0.1";
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF built with Secure Boot (and SMM, which guards its variables).
const OVMF_CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The virtio modules the initramfs loads, dependencies first (Debian's
/// kernel builds all of them as modules; its package has no modules.dep,
/// so the order is checked against each module's `depends=` below).
const MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
    "drivers/block/virtio_blk.ko",
    "drivers/char/virtio_console.ko",
    // stage1 reads the SecureBoot variable through efivarfs.
    "fs/efivarfs/efivarfs.ko",
];

fn require_all() -> bool {
    std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1")
}

/// Runs `cmd` and returns its stdout, failing with its stderr.
fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let o = cmd
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !o.status.success() {
        bail!(
            "{shown} failed with {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

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
struct Lab {
    ns: String,
    hosts: Vec<String>,
    procs: Vec<(String, Child)>,
}

/// The LAN's DHCP server (dnsmasq), also its router.
const LAN_DHCP: &str = "10.197.0.2";
/// A rogue host: its own proxyDHCP and an HTTP server.
const ROGUE: &str = "10.197.0.66";

/// Removes what an interrupted run left (a kill skips `Drop`): namespaces
/// named `rk-e2e-PID…` whose PID is no longer running, with the processes
/// still inside them. Fails if another run is in progress: runs share
/// `target/e2e`.
fn remove_stale_labs() -> Result<()> {
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
    fn new(taps: &[String]) -> Result<Lab> {
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
    fn add_host(&mut self, name: &str, addr: &str) -> Result<()> {
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
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// A command run on the host `name` (see [`Lab::add_host`]).
    fn host_cmd(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}-{name}", self.ns)])
            .arg(program);
        c
    }

    /// Starts a long-running process, its output into `log`.
    fn spawn(&mut self, name: &str, mut cmd: Command, log: &Path) -> Result<()> {
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
    fn stop(&mut self, name: &str) -> Result<()> {
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
    fn check_alive(&mut self) -> Result<()> {
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

/// One QEMU node and its serial console.
struct Node {
    name: String,
    mac: String,
    bmc_port: u16,
    tap: String,
    disk: PathBuf,
    vars: PathBuf,
    log: PathBuf,
    /// Extra QEMU arguments (the HTTPS experiment's CA).
    extra: Vec<String>,
    /// Secure Boot firmware (its keys are enrolled in `vars`).
    secure_boot: bool,
    console: Option<Console>,
    started: Instant,
    seen: Vec<String>,
}

impl Node {
    fn boot(&mut self, lab: &Lab, phase: &str) -> Result<()> {
        self.stop();
        let mut cmd = lab.cmd("qemu-system-x86_64");
        // 384 MiB: stage1's initramfs, the 23 MiB OS image read into memory to
        // be hashed, and kexec's copies of its parts all live in RAM at once.
        let code = if self.secure_boot {
            // SMM keeps the variable store (and so db) out of reach of
            // anything the firmware runs.
            cmd.args(["-machine", "q35,smm=on"])
                .args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
            OVMF_CODE_SECBOOT
        } else {
            cmd.args(["-machine", "q35"]);
            OVMF_CODE
        };
        cmd.args(["-m", "384", "-smp", "1"])
            .args(["-nographic", "-no-reboot"])
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,file={code},readonly=on"
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                self.vars.display()
            ))
            // PXE would need TFTP (and costs minutes of timeouts): HTTP only.
            .args(["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n"])
            .args(["-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n"])
            .arg("-netdev")
            .arg(format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                self.tap
            ))
            // romfile= : OVMF's own HttpBootDxe, not iPXE's option ROM.
            .arg("-device")
            .arg(format!(
                "virtio-net-pci,netdev=n0,mac={},romfile=,bootindex=1",
                self.mac
            ))
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=none,id=d0",
                self.disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=d0"])
            .args(["-device", "virtio-serial-pci,id=vs0"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=bmc,host=127.0.0.1,port={}",
                self.bmc_port
            ))
            .args([
                "-device",
                "virtserialport,bus=vs0.0,chardev=bmc,name=racklet.bmc",
            ])
            .args(&self.extra);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        writeln!(log, "===== {phase} =====")?;
        self.console =
            Some(Console::spawn(&mut cmd, Some(log)).context("starting qemu-system-x86_64")?);
        self.started = Instant::now();
        self.seen.clear();
        Ok(())
    }

    fn say(&self, msg: &str) {
        eprintln!(
            "  [{} +{:5.1}s] {msg}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Reads the console until a line contains `needle` (and every one of
    /// `also`); fails on `forbidden`, on the VM stopping, or at `deadline`.
    fn expect(
        &mut self,
        what: &str,
        needle: &str,
        also: &[&str],
        forbidden: &[&str],
        deadline: Instant,
    ) -> Result<String> {
        let console = self.console.as_ref().context("the node is not running")?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{}: timed out waiting for: {what} (console: {})",
                    self.name,
                    self.log.display()
                );
            }
            match console.next_line(left.min(Duration::from_secs(1))) {
                Next::Line(line) => {
                    self.seen.push(line.clone());
                    if let Some(f) = forbidden.iter().find(|f| line.contains(**f)) {
                        bail!("{}: `{f}` on the console: {line}", self.name);
                    }
                    if line.contains(needle) && also.iter().all(|a| line.contains(a)) {
                        self.say(&format!("ok: {what}"));
                        return Ok(line);
                    }
                }
                Next::Quiet => {}
                Next::Closed => bail!(
                    "{}: the VM stopped before: {what} (console: {})",
                    self.name,
                    self.log.display()
                ),
            }
        }
    }

    /// Waits for QEMU to exit (the OS powered off).
    fn expect_power_off(&mut self, deadline: Instant) -> Result<()> {
        while Instant::now() < deadline {
            let console = self.console.as_mut().context("the node is not running")?;
            while let Next::Line(l) = console.next_line(Duration::ZERO) {
                self.seen.push(l);
            }
            if let Some(st) = console.try_wait()? {
                self.say(&format!("ok: powered off ({st})"));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("{}: did not power off", self.name)
    }

    fn saw(&self, needle: &str) -> bool {
        self.seen.iter().any(|l| l.contains(needle))
    }

    fn stop(&mut self) {
        // Dropping the console stops the VM.
        self.console = None;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One node's expected console steps in a phase.
#[derive(Clone, Copy)]
struct StepSpec {
    what: &'static str,
    needle: &'static str,
    also: &'static [&'static str],
}

const fn step(what: &'static str, needle: &'static str, also: &'static [&'static str]) -> StepSpec {
    StepSpec { what, needle, also }
}

/// Console lines that fail any phase at once.
const FORBIDDEN: &[&str] = &["Kernel panic", "Attempted to kill init", "panicked at"];

/// Boots every node in `nodes` and checks its steps, in parallel (a thread
/// per node; each prints its own progress).
fn run_phase(
    lab: &Lab,
    nodes: &mut [(&mut Node, Vec<StepSpec>)],
    phase: &str,
    timeout: Duration,
    power_off: bool,
) -> Result<()> {
    run_phase_forbidding(lab, nodes, phase, timeout, power_off, &[])
}

/// [`run_phase`], failing also on any console line containing one of
/// `forbidden`.
fn run_phase_forbidding(
    lab: &Lab,
    nodes: &mut [(&mut Node, Vec<StepSpec>)],
    phase: &str,
    timeout: Duration,
    power_off: bool,
    forbidden: &[&str],
) -> Result<()> {
    let forbidden: Vec<&str> = FORBIDDEN.iter().chain(forbidden).copied().collect();
    let forbidden = &forbidden;
    eprintln!("\n--- {phase}");
    let t = Instant::now();
    for (n, _) in nodes.iter_mut() {
        n.boot(lab, phase)?;
    }
    let deadline = Instant::now() + timeout;
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter_mut()
            .map(|(n, steps)| {
                let steps = steps.clone();
                s.spawn(move || -> Result<()> {
                    for st in &steps {
                        n.expect(st.what, st.needle, st.also, forbidden, deadline)?;
                    }
                    if power_off {
                        n.expect_power_off(deadline)?;
                    }
                    Ok(())
                })
            })
            .collect();
        let mut first_err = None;
        for h in handles {
            let r = h
                .join()
                .map_err(|_| anyhow::anyhow!("a node thread panicked"))?;
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })?;
    eprintln!("--- {phase}: {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Checks MODULES against each module's `depends=` (its .modinfo).
fn check_module_order(moddir: &Path) -> Result<()> {
    let mut loaded: Vec<String> = Vec::new();
    for m in MODULES {
        let p = moddir.join("kernel").join(m);
        let bytes = std::fs::read(&p).with_context(|| p.display().to_string())?;
        let deps = bytes
            .split(|b| *b == 0)
            .find_map(|f| f.strip_prefix(b"depends="))
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default();
        for d in deps.split(',').filter(|d| !d.is_empty()) {
            if !loaded.iter().any(|l| l == d) {
                bail!("{m} depends on {d}, which is not loaded before it");
            }
        }
        let name = Path::new(m)
            .file_stem()
            .map(|s| s.to_string_lossy().replace('-', "_"))
            .unwrap_or_default();
        loaded.push(name);
    }
    Ok(())
}

/// The initramfs arguments both images share: who the node is (by MAC from
/// the rack file), its network, its BMC link, its disk, bootd, trust.
fn common_args(module_paths: &str) -> String {
    [
        "--rack",
        "/etc/stage1/rack.yaml",
        "--dhcp",
        "eth0",
        "--modules",
        module_paths,
        "--disk",
        "/dev/vda",
        "--bmc",
        "/dev/virtio-ports/racklet.bmc",
        "--bootd",
        &format!("https://{SERVER}:8443/"),
        "--ca",
        "/etc/stage1/ca.pem",
        "--root",
        "/etc/stage1/root.json",
        "--state",
        "/run/stage1",
        // /run is RAM: the metadata versions seen are kept on the disk.
        "--state-on-disk",
    ]
    .join("\n")
}

struct Built {
    keys: Vec<String>,
    repo: PathBuf,
    kernel: PathBuf,
    add_files: Vec<String>,
    os_args: PathBuf,
    /// The platform's db key, when the nodes run Secure Boot.
    secure_boot: Option<SigningKey>,
}

impl Built {
    /// Builds the OS image at `version` and signs it into the repository.
    fn publish_os(&self, version: &str, security_version: u64) -> Result<PathBuf> {
        let mut add_files = self.add_files.clone();
        add_files.push(format!("{}:/etc/stage1/args", self.os_args.display()));
        let args = BuildImageArgs {
            recipe: root().join("images/recipes/confirm-os.yaml"),
            out: root().join("target/e2e/images"),
            kernel: Some(self.kernel.clone()),
            add_files,
            stub: "auto".into(),
            version: Some(version.parse()?),
            security_version: Some(security_version),
            sign_into: Some(self.repo.clone()),
            keys: self.keys.clone(),
            channel: Some("stable".into()),
            nodes: Vec::new(),
            groups: vec!["workers".into()],
            all_nodes: false,
            secure_boot_key: self.secure_boot.as_ref().map(|k| k.key.clone()),
            secure_boot_cert: self.secure_boot.as_ref().map(|k| k.cert.clone()),
        };
        build_image::run(&args)
    }
}

/// Starts bootd (process `bootd`, its log `log` in the work directory) and
/// waits until it serves the repository; returns the timestamp version.
fn start_bootd(lab: &mut Lab, bootd: &Path, config: &Path, ca: &Path, log: &str) -> Result<u64> {
    let mut cmd = lab.cmd(bootd);
    cmd.arg("--config")
        .arg(config)
        .arg("serve")
        .env("RUST_LOG", "info");
    let log = config.with_file_name(log);
    lab.spawn("bootd", cmd, &log)?;
    for _ in 0..100 {
        lab.check_alive()?;
        if let Ok(v) = timestamp_version(lab, ca) {
            return Ok(v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("bootd never served the repository (log: {})", log.display())
}

fn timestamp_version(lab: &Lab, ca: &Path) -> Result<u64> {
    let body = output(
        lab.cmd("curl")
            .args(["-sSf", "--max-time", "5", "--cacert"])
            .arg(ca)
            .arg(format!("https://{SERVER}:8443/metadata/timestamp.json")),
    )?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    v["signed"]["version"]
        .as_u64()
        .context("timestamp.json without a version")
}

/// Waits until bootd serves a timestamp newer than `old`.
fn wait_served(lab: &Lab, ca: &Path, old: u64) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(v) = timestamp_version(lab, ca) {
            if v > old {
                return Ok(v);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!("bootd did not take the new release into service within 60 s")
}

/// The file bootd serves for `target` (the newest copy under its state).
fn served_copy(state: &Path, target: &str) -> Result<PathBuf> {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    let mut stack = vec![state.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let p = e.path();
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&format!(".{target}")))
            {
                found.push((e.metadata()?.modified()?, p));
            }
        }
    }
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .with_context(|| format!("bootd serves no copy of {target}"))
}

/// The line of `stage1 slots show` for `slot` ("A" or "B"): its status,
/// image, version, hash.
fn slot_record(show: &str, slot: &str) -> Result<String> {
    show.lines()
        .find(|l| l.starts_with(&format!("slot {slot}:")))
        .map(str::to_owned)
        .with_context(|| format!("no record for slot {slot} in:\n{show}"))
}

/// An EFI signature list (UEFI 2.x, 32.4.1) holding one X.509 certificate:
/// what OVMF reads from `etc/edk2/https/cacerts` as its HTTPS trust store.
fn signature_list(der: &[u8]) -> Vec<u8> {
    // EFI_CERT_X509_GUID a5c059a1-94e4-4aa7-87b5-ab155c2bf072, mixed-endian.
    const X509: [u8; 16] = [
        0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0,
        0x72,
    ];
    let sig_size = 16 + der.len() as u32; // owner GUID + certificate
    let mut v = Vec::with_capacity(28 + sig_size as usize);
    v.extend_from_slice(&X509);
    v.extend_from_slice(&(28 + sig_size).to_le_bytes()); // SignatureListSize
    v.extend_from_slice(&0u32.to_le_bytes()); // SignatureHeaderSize
    v.extend_from_slice(&sig_size.to_le_bytes()); // SignatureSize
    v.extend_from_slice(b"racklet-rack-ca\0"); // SignatureOwner (any GUID)
    v.extend_from_slice(der);
    v
}

/// Flips one byte in the middle of `p`, in place.
fn flip_byte(p: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(p)?;
    let at = f.metadata()?.len() / 2;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at)?;
    f.write_all_at(&[b[0] ^ 0x5a], at)?;
    f.sync_all()?;
    Ok(())
}

impl Default for E2eArgs {
    fn default() -> Self {
        E2eArgs {
            nodes: 2,
            phase_timeout_s: 300,
            https_first_stage: false,
            no_secure_boot: false,
        }
    }
}

/// `cargo xtask e2e`: without root it prints "skipped: needs root", a
/// failure under RACKLET_REQUIRE_ALL=1.
pub fn run(args: &E2eArgs) -> Result<()> {
    run_checked(args, require_all(), true)
}

/// The e2e; `require` turns a skip (no root, a missing tool) into a
/// failure; `install` lets it install missing tools (`cargo xtask setup`).
pub fn run_checked(args: &E2eArgs, require: bool, install: bool) -> Result<()> {
    let t0 = Instant::now();
    if !is_root() {
        if require {
            bail!("root is required (RACKLET_REQUIRE_ALL=1)");
        }
        println!("skipped: needs root (network namespaces, tap devices)");
        return Ok(());
    }
    let tools = [
        "qemu-system-x86_64",
        "dnsmasq",
        "curl",
        "ip",
        "python3",
        "sbsign",
        "virt-fw-vars",
    ];
    if tools.iter().any(|t| !have(t))
        || !Path::new(OVMF_CODE).exists()
        || !Path::new(OVMF_CODE_SECBOOT).exists()
        || !Path::new(racklet_images::SYSTEMD_STUB_X64).exists()
    {
        if install {
            crate::setup::run()?;
        } else if require {
            bail!(
                "QEMU, OVMF, dnsmasq, curl, iproute2, python3, sbsigntool, virt-firmware or \
                 systemd-boot-efi is missing"
            );
        } else {
            println!(
                "skipped: needs QEMU, OVMF, dnsmasq, curl, iproute2, python3, sbsigntool, \
                 virt-firmware, systemd-boot-efi"
            );
            return Ok(());
        }
    }
    if !install && !crate::kernel::dir().join("root/boot").exists() {
        if require {
            bail!(
                "no kernel in {} (cargo xtask fetch-kernel)",
                crate::kernel::dir().display()
            );
        }
        println!("skipped: needs a kernel (cargo xtask fetch-kernel)");
        return Ok(());
    }
    remove_stale_labs()?;
    let kernel = crate::kernel::ensure()?;
    let moddir = std::fs::read_dir(crate::kernel::dir().join("root/lib/modules"))?
        .flatten()
        .map(|e| e.path())
        .next()
        .context("the kernel package has no lib/modules")?;
    check_module_order(&moddir)?;

    eprintln!("==> building bootd, imgsign, bmc-sim");
    sh(cargo().args([
        "build",
        "--locked",
        "-p",
        "bootd",
        "-p",
        "imgsign",
        "-p",
        "racklet-bmc-sim",
        "-p",
        "stage1",
    ]))?;
    let bin = |n: &str| root().join("target/debug").join(n);
    let work = root().join("target/e2e");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(work.join("keys"))?;

    // A fresh repository with its own keys (never keys-example).
    let imgsign = bin("imgsign");
    let key = |r: &str| work.join("keys").join(format!("{r}.pem"));
    for r in ["root", "targets", "snapshot", "timestamp"] {
        sh(Command::new(&imgsign)
            .arg("key")
            .arg("generate")
            .arg(key(r)))?;
    }
    let repo = work.join("repo");
    sh(Command::new(&imgsign)
        .args(["init", "--repo"])
        .arg(&repo)
        .arg("--root-key")
        .arg(key("root"))
        .arg("--targets-key")
        .arg(key("targets"))
        .arg("--snapshot-key")
        .arg(key("snapshot"))
        .arg("--timestamp-key")
        .arg(key("timestamp")))?;
    let root_json = work.join("root.json");
    std::fs::copy(repo.join("metadata/1.root.json"), &root_json)?;

    // The nodes' platform keys (PK, KEK, db): the firmware runs only what
    // db signed, and a kernel under lockdown kexecs only what db signed.
    let secure_boot = if args.no_secure_boot {
        None
    } else {
        Some(secureboot::platform_keys(
            &work.join("secureboot"),
            "Racklet e2e rack",
        )?)
    };
    let db = secure_boot.as_ref().map(|k| k.db.clone());

    // bootd: configuration and rack PKI.
    let rack_yaml = root().join("hardware/rack.yaml");
    let bootd_yaml = work.join("bootd.yaml");
    let first_stage_url = if args.https_first_stage {
        format!("https://{SERVER}:8443/net_install/stage1-x86_64.efi")
    } else {
        format!("http://{SERVER}:8080/net_install/stage1-x86_64.efi")
    };
    // What bootd does with DHCP: nothing, proxyDHCP, or also hand out
    // addresses (full-DHCP mode, a rack on a switch of its own).
    #[derive(PartialEq)]
    enum Dhcp {
        Off,
        Proxy,
        Full,
    }
    let bootd_config = |dhcp: Dhcp| {
        format!(
            "rack_file: {rack}\nstate_dir: state\nlisten:\n  https: [\"{SERVER}:8443\"]\n  \
             plain_http: [\"{SERVER}:8080\"]\ntls:\n  ca_cert: pki/ca.pem\n  ca_key: pki/ca.key\n  \
             server_cert: pki/server.pem\n  server_key: pki/server.key\n  server_names: [\"{SERVER}\"]\n\
             repository:\n  trusted_root: root.json\n  local: repo\n  poll_interval_ms: 500\n\
             first_stage:\n  path: net_install\n  files:\n    stage1-x86_64.efi: stage1-x86_64-1.0.0.uki\n\
             {proxy}",
            rack = rack_yaml.display(),
            proxy = match dhcp {
                Dhcp::Off => String::new(),
                Dhcp::Proxy | Dhcp::Full => format!(
                    "proxy_dhcp:\n  interface: br0\n  server_ip: {SERVER}\n  boot_urls:\n    \
                     x86_64: {first_stage_url}\n{}",
                    if dhcp == Dhcp::Full {
                        "  full_dhcp:\n    first: 10.197.0.150\n    last: 10.197.0.159\n    \
                         prefix_len: 24\n    router: 10.197.0.1\n    lease_s: 600\n"
                    } else {
                        ""
                    }
                ),
            }
        )
    };
    std::fs::write(&bootd_yaml, bootd_config(Dhcp::Proxy))?;
    // Phase 4's bootd: the same, without its proxyDHCP (a rogue wins).
    let bootd_no_proxy = work.join("bootd-no-proxy.yaml");
    std::fs::write(&bootd_no_proxy, bootd_config(Dhcp::Off))?;
    // Phases 6 and 7: the LAN's DHCP server is gone; bootd hands out the
    // addresses too.
    let bootd_full = work.join("bootd-full-dhcp.yaml");
    std::fs::write(&bootd_full, bootd_config(Dhcp::Full))?;
    sh(Command::new(bin("bootd"))
        .arg("--config")
        .arg(&bootd_yaml)
        .args(["pki", "init"]))?;
    let ca = work.join("pki/ca.pem");
    let mut extra = Vec::new();
    if args.https_first_stage {
        let der = work.join("pki/ca.der");
        sh(Command::new(bin("bootd"))
            .arg("--config")
            .arg(&bootd_yaml)
            .args(["pki", "ca-hash", "--der-out"])
            .arg(&der))?;
        let esl = work.join("pki/ca.esl");
        std::fs::write(&esl, signature_list(&std::fs::read(&der)?))?;
        extra.push("-fw_cfg".to_owned());
        extra.push(format!(
            "name=etc/edk2/https/cacerts,file={}",
            esl.display()
        ));
    }

    // What both images carry: modules, rack file, CA, pinned root.
    let mut add_files = Vec::new();
    let mut module_paths = Vec::new();
    for (i, m) in MODULES.iter().enumerate() {
        let file = Path::new(m).file_name().unwrap().to_string_lossy();
        let dst = format!("/lib/modules/e2e/{i:02}-{file}");
        add_files.push(format!("{}:{dst}", moddir.join("kernel").join(m).display()));
        module_paths.push(dst);
    }
    let module_paths = module_paths.join(",");
    add_files.push(format!("{}:/etc/stage1/rack.yaml", rack_yaml.display()));
    add_files.push(format!("{}:/etc/stage1/ca.pem", ca.display()));
    add_files.push(format!("{}:/etc/stage1/root.json", root_json.display()));
    let stage1_args = work.join("stage1.args");
    std::fs::write(&stage1_args, common_args(&module_paths) + "\n")?;
    let os_args = work.join("os.args");
    std::fs::write(
        &os_args,
        format!("confirm\n--power-off\n{}\n", common_args(&module_paths)),
    )?;
    let keys: Vec<String> = ["targets", "snapshot", "timestamp"]
        .iter()
        .map(|r| key(r).display().to_string())
        .collect();
    let built = Built {
        keys,
        repo: repo.clone(),
        kernel: kernel.clone(),
        add_files,
        os_args,
        secure_boot: db.clone(),
    };

    eprintln!("==> building and signing the stage1 UKI and the OS v1");
    let mut s1_files = built.add_files.clone();
    s1_files.push(format!("{}:/etc/stage1/args", stage1_args.display()));
    build_image::run(&BuildImageArgs {
        recipe: root().join("images/recipes/stage1.yaml"),
        out: work.join("images"),
        kernel: Some(kernel.clone()),
        add_files: s1_files,
        stub: "auto".into(),
        version: None,
        security_version: None,
        sign_into: Some(repo.clone()),
        keys: built.keys.clone(),
        channel: Some("stable".into()),
        nodes: Vec::new(),
        groups: Vec::new(),
        all_nodes: true,
        secure_boot_key: db.as_ref().map(|k| k.key.clone()),
        secure_boot_cert: db.as_ref().map(|k| k.cert.clone()),
    })?;
    let stage1_uki = work.join("images/stage1-x86_64-1.0.0.uki");
    built.publish_os("1.0.0", 1)?;

    // The nodes: unit-2, unit-3, … of the reference rack.
    let rack = racklet_hardware::Rack::load(&rack_yaml)?;
    let mut nodes: Vec<Node> = Vec::new();
    for (i, n) in rack.nodes.iter().enumerate().skip(1).take(args.nodes) {
        let disk = work.join(format!("{}.disk", n.name));
        std::fs::File::create(&disk)?.set_len(128 << 20)?;
        let vars = work.join(format!("{}.vars.fd", n.name));
        match &secure_boot {
            Some(keys) => secureboot::enroll(Path::new(OVMF_VARS), &vars, keys)?,
            None => drop(std::fs::copy(OVMF_VARS, &vars)?),
        }
        nodes.push(Node {
            name: n.name.to_string(),
            mac: n.mac.to_string(),
            bmc_port: 7701 + i as u16,
            tap: format!("tap{i}"),
            disk,
            vars,
            log: work.join(format!("{}.console.log", n.name)),
            extra: extra.clone(),
            secure_boot: secure_boot.is_some(),
            console: None,
            started: Instant::now(),
            seen: Vec::new(),
        });
    }
    if nodes.len() < args.nodes {
        bail!("the rack has only {} nodes after unit-1", nodes.len());
    }

    eprintln!("==> the LAN: namespace, bridge, taps; dnsmasq, bmc-sim, bootd");
    let taps: Vec<String> = nodes.iter().map(|n| n.tap.clone()).collect();
    let mut lab = Lab::new(&taps)?;
    let mut dnsmasq = lab.host_cmd("lan", "dnsmasq");
    dnsmasq
        .args(["--no-daemon", "--conf-file=/dev/null", "--port=0"])
        .args(["--interface=lan0", "--bind-interfaces", "--log-dhcp"])
        .arg("--dhcp-range=10.197.0.100,10.197.0.199,255.255.255.0,1h")
        .arg(format!("--dhcp-option=option:router,{LAN_DHCP}"))
        .arg(format!(
            "--dhcp-leasefile={}",
            work.join("dnsmasq.leases").display()
        ))
        .arg("--pid-file=");
    lab.spawn("dnsmasq", dnsmasq, &work.join("dnsmasq.log"))?;
    let mut sim = lab.cmd(bin("bmc-sim"));
    sim.arg("run")
        .arg("--rack")
        .arg(&rack_yaml)
        .arg("--state-dir")
        .arg(work.join("bmc-sim-state"))
        .args(["--watchdog-s", "900"]);
    lab.spawn("bmc-sim", sim, &work.join("bmc-sim.log"))?;
    let mut ts = start_bootd(&mut lab, &bin("bootd"), &bootd_yaml, &ca, "bootd.log")?;
    // A Pi has no RTC: the BMC keeps the time stage1 trusts.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    for n in &nodes {
        sh(lab
            .cmd(bin("bmc-sim"))
            .args(["call", &n.name, "set-time", &now.to_string()]))?;
    }
    let setup_s = t0.elapsed().as_secs_f64();
    // Each phase is a new boot as the BMC counts them: it restarts the unit
    // (a reset pulse), as it would on a real rack before firmware runs.
    let new_boots = |lab: &Lab, nodes: &[Node]| -> Result<()> {
        for n in nodes {
            sh(lab
                .cmd(bin("bmc-sim"))
                .args(["reset", &n.name, "force-restart"]))?;
        }
        Ok(())
    };
    let timeout = Duration::from_secs(args.phase_timeout_s);

    let platform = if secure_boot.is_some() {
        step(
            "Secure Boot on, kernel locked down",
            "platform: UEFI Secure Boot on, kernel lockdown integrity",
            &[],
        )
    } else {
        step(
            "no Secure Boot (--no-secure-boot)",
            "platform: UEFI Secure Boot off",
            &[],
        )
    };
    let first_stage = [
        step("firmware: UEFI HTTP boot", "Start HTTP Boot over IPv4", &[]),
        step("stage1 fetched from bootd", "URI: http", &["//10.197.0.1:"]),
        step("stage1 is /init", "stage1: mounted /proc", &[]),
        platform,
    ];
    let fresh = |slot: &'static [&'static str], confirmed: &'static str| {
        let mut steps = first_stage.to_vec();
        steps.extend([
            step("DHCP lease from dnsmasq", "DHCP lease configured", &[]),
            step("BMC facts over virtio-serial", "BMC facts", &[]),
            step("verified with TUF, installed", "installed", slot),
            step("kexec into the OS", "kexec: handing off", slot),
            step("the OS confirmed the boot", confirmed, &[]),
        ]);
        steps
    };
    new_boots(&lab, &nodes)?;
    // Phase 1: a fresh install of v1. A fresh BMC boots slot A, which is
    // never written while it is the booting slot: v1 goes into slot B.
    {
        let mut set: Vec<(&mut Node, Vec<StepSpec>)> = nodes
            .iter_mut()
            .map(|n| (n, fresh(&["slot=B"], "confirmed slot B")))
            .collect();
        run_phase(
            &lab,
            &mut set,
            "1: fresh nodes install v1 (into slot B)",
            timeout,
            true,
        )?;
    }
    if args.https_first_stage {
        eprintln!("\ne2e: the firmware fetched stage1 over HTTPS (experiment: phase 1 only)");
        return Ok(());
    }
    lab.check_alive()?;

    // Phase 2: v2 is published (same security version: a feature
    // release, so v1 stays bootable); both nodes update into slot A.
    built.publish_os("2.0.0", 1)?;
    ts = wait_served(&lab, &ca, ts)?;
    new_boots(&lab, &nodes)?;
    {
        let mut set: Vec<(&mut Node, Vec<StepSpec>)> = nodes
            .iter_mut()
            .map(|n| (n, fresh(&["slot=A"], "confirmed slot A")))
            .collect();
        run_phase(
            &lab,
            &mut set,
            "2: update to v2 (into slot A)",
            timeout,
            true,
        )?;
    }

    // Phase 3: v3 (a security fix) is published. A long press forces the
    // first node onto slot B: it boots v1, the previous release, and
    // installs nothing; the others install v3 into slot B.
    built.publish_os("3.0.0", 2)?;
    ts = wait_served(&lab, &ca, ts)?;
    let first = nodes[0].name.clone();
    new_boots(&lab, &nodes)?;
    sh(lab.cmd(bin("bmc-sim")).args(["press", &first, "--long"]))?;
    {
        let mut set: Vec<(&mut Node, Vec<StepSpec>)> = nodes
            .iter_mut()
            .map(|n| {
                let steps = if n.name == first {
                    vec![
                        step("DHCP lease", "DHCP lease configured", &[]),
                        step("BMC says: forced slot B", "BMC facts", &["forced_b=true"]),
                        step(
                            "kexec into slot B (v1), no install",
                            "kexec: handing off",
                            &["slot=B", "version=1.0.0"],
                        ),
                        step("the OS confirmed the boot", "confirmed slot B", &[]),
                    ]
                } else {
                    fresh(&["slot=B"], "confirmed slot B")
                };
                (n, steps)
            })
            .collect();
        run_phase(
            &lab,
            &mut set,
            "3: button forces slot B (v1); the others install v3",
            timeout,
            true,
        )?;
    }
    if nodes[0].saw("installed slot=") {
        bail!("{first}: installed although slot B was forced");
    }

    // Phase 4: a rogue proxyDHCP. Another host on the LAN answers the
    // firmware's DHCPDISCOVER first (bootd's proxyDHCP is off: the worst
    // case of the race) and points each node at its own HTTP server, which
    // serves our stage1 with its signature stripped to one node and re-signed
    // with the attacker's own key to the other: programs that would run and
    // print if the firmware let them. Secure Boot refuses both; no line of
    // stage1 may appear.
    let rogue_www = work.join("rogue/www");
    std::fs::create_dir_all(&rogue_www)?;
    let attacker = secureboot::platform_keys(&work.join("rogue/keys"), "not the rack")?;
    secureboot::sign(&stage1_uki, &rogue_www.join("attacker.efi"), &attacker.db)?;
    secureboot::unsign(&stage1_uki, &rogue_www.join("unsigned.efi"))?;
    const PAYLOADS: [&str; 2] = ["unsigned.efi", "attacker.efi"];
    lab.add_host("rogue", ROGUE)?;
    let mut http = lab.host_cmd("rogue", "python3");
    http.args(["-m", "http.server", "8081", "--bind", ROGUE, "--directory"])
        .arg(&rogue_www);
    lab.spawn("rogue-http", http, &work.join("rogue/http.log"))?;
    let mut rogue_dhcp = lab.host_cmd("rogue", "dnsmasq");
    rogue_dhcp
        .args(["--no-daemon", "--conf-file=/dev/null", "--port=0"])
        .args(["--interface=rogue0", "--bind-interfaces", "--log-dhcp"])
        .arg("--dhcp-range=10.197.0.0,proxy,255.255.255.0")
        .arg("--dhcp-pxe-vendor=PXEClient,HTTPClient")
        .arg(format!(
            "--dhcp-leasefile={}",
            work.join("rogue/leases").display()
        ))
        .arg("--pid-file=");
    for (i, n) in nodes.iter().enumerate() {
        let url = format!("http://{ROGUE}:8081/{}", PAYLOADS[i % 2]);
        rogue_dhcp
            .arg(format!("--dhcp-host={},set:n{i}", n.mac))
            .arg(format!("--pxe-service=tag:n{i},X86-64_EFI,rogue,{url}"))
            .arg(format!("--dhcp-boot=tag:n{i},{url}"));
    }
    lab.spawn("rogue-dhcp", rogue_dhcp, &work.join("rogue/dhcp.log"))?;
    lab.stop("bootd")?;
    start_bootd(
        &mut lab,
        &bin("bootd"),
        &bootd_no_proxy,
        &ca,
        "bootd-no-proxy.log",
    )?;
    new_boots(&lab, &nodes)?;
    {
        let mut set: Vec<(&mut Node, Vec<StepSpec>)> = nodes
            .iter_mut()
            .enumerate()
            .map(|(i, n)| {
                let mut steps = vec![
                    step("firmware: UEFI HTTP boot", "Start HTTP Boot over IPv4", &[]),
                    step(
                        "the rogue's offer: its server and payload",
                        "URI: http://10.197.0.66:8081/",
                        if i % 2 == 0 {
                            &["unsigned.efi"]
                        } else {
                            &["attacker.efi"]
                        },
                    ),
                ];
                if secure_boot.is_some() {
                    steps.push(step(
                        "Secure Boot refused to run it",
                        "BdsDxe: failed to load",
                        &["Access Denied"],
                    ));
                }
                (n, steps)
            })
            .collect();
        // Anything from the payload's kernel or stage1 means it ran.
        let forbidden: &[&str] = if secure_boot.is_some() {
            &["stage1:", "EFI stub:", "Linux version"]
        } else {
            // --no-secure-boot: show it happen.
            &[]
        };
        run_phase_forbidding(
            &lab,
            &mut set,
            "4: a rogue proxyDHCP points the nodes at its own server",
            timeout,
            false,
            forbidden,
        )?;
    }
    if secure_boot.is_none() {
        let deadline = Instant::now() + timeout;
        for n in nodes.iter_mut() {
            n.expect("the rogue's payload runs", "stage1:", &[], &[], deadline)?;
        }
        bail!(
            "without Secure Boot the firmware ran the rogue server's unsigned payload \
             (--no-secure-boot shows the attack; consoles in {})",
            work.display()
        );
    }
    for n in nodes.iter_mut() {
        n.stop();
    }
    let served = std::fs::read_to_string(work.join("rogue/http.log"))?;
    for p in PAYLOADS.iter().take(nodes.len()) {
        if !served.contains(&format!("\"GET /{p} HTTP/1.1\" 200")) {
            bail!("the rogue HTTP server never served {p}:\n{served}");
        }
    }
    eprintln!("  the rogue served {PAYLOADS:?}; the firmware ran neither");

    // Phase 5: the rogue is gone and bootd's proxyDHCP is back: the nodes
    // were delayed, and now boot what the rack signed.
    lab.stop("rogue-dhcp")?;
    lab.stop("rogue-http")?;
    lab.stop("bootd")?;
    let restarted = start_bootd(&mut lab, &bin("bootd"), &bootd_yaml, &ca, "bootd-2.log")?;
    ts = ts.max(restarted);
    new_boots(&lab, &nodes)?;
    {
        let mut set: Vec<(&mut Node, Vec<StepSpec>)> = nodes
            .iter_mut()
            .map(|n| {
                let mut steps = first_stage.to_vec();
                steps.extend([
                    step("DHCP lease", "DHCP lease configured", &[]),
                    step("BMC facts", "BMC facts", &[]),
                    step("kexec into the OS", "kexec: handing off", &[]),
                    step("the OS confirmed the boot", "confirmed slot", &[]),
                ]);
                (n, steps)
            })
            .collect();
        run_phase(
            &lab,
            &mut set,
            "5: the rogue is gone: the same nodes boot the rack's stage1",
            timeout,
            true,
        )?;
    }

    // Phase 6: the rack on a switch of its own. The LAN's DHCP server is
    // gone and bootd runs in full-DHCP mode: the firmware, stage1 and the
    // OS each get their address from bootd's pool, and the nodes boot.
    lab.stop("dnsmasq")?;
    lab.stop("bootd")?;
    let restarted = start_bootd(
        &mut lab,
        &bin("bootd"),
        &bootd_full,
        &ca,
        "bootd-full-dhcp.log",
    )?;
    ts = ts.max(restarted);
    new_boots(&lab, &nodes)?;
    {
        let mut set: Vec<(&mut Node, Vec<StepSpec>)> = nodes
            .iter_mut()
            .map(|n| {
                let mut steps = vec![step(
                    "firmware: an address from bootd's pool",
                    "Station IP address is 10.197.0.15",
                    &[],
                )];
                steps.extend(first_stage[1..].iter().copied());
                steps.extend([
                    step(
                        "stage1: a lease from bootd",
                        "DHCP lease configured",
                        &["address=10.197.0.15", "server=10.197.0.1"],
                    ),
                    step("BMC facts", "BMC facts", &[]),
                    step("kexec into the OS", "kexec: handing off", &[]),
                    step(
                        "the OS: a lease from bootd",
                        "DHCP lease configured",
                        &["address=10.197.0.15", "server=10.197.0.1"],
                    ),
                    step("the OS confirmed the boot", "confirmed slot", &[]),
                ]);
                (n, steps)
            })
            .collect();
        run_phase(
            &lab,
            &mut set,
            "6: no LAN DHCP server: bootd's full-DHCP mode gives the addresses",
            timeout,
            true,
        )?;
    }
    // bootd's table on disk: one pool address per node, the one its
    // stage1 and its OS configured.
    let table = std::fs::read_to_string(work.join("state/dhcp-leases.json"))?;
    let leases: serde_json::Value = serde_json::from_str(&table)?;
    let mut given = Vec::new();
    for n in &nodes {
        let ip = leases["leases"][n.mac.to_lowercase()]["ip"]
            .as_str()
            .with_context(|| format!("bootd's lease table has no lease for {}:\n{table}", n.name))?
            .to_owned();
        let last: u8 = ip
            .strip_prefix("10.197.0.")
            .and_then(|h| h.parse().ok())
            .with_context(|| format!("{}: leased {ip}, outside 10.197.0.0/24", n.name))?;
        if !(150..=159).contains(&last) || given.contains(&ip) {
            bail!(
                "{}: leased {ip}: outside the pool or given twice:\n{table}",
                n.name
            );
        }
        let configured: Vec<&String> = n
            .seen
            .iter()
            .filter(|l| l.contains("DHCP lease configured"))
            .collect();
        if configured.len() < 2
            || !configured
                .iter()
                .all(|l| l.contains(&format!("address={ip}/24")))
        {
            bail!(
                "{}: bootd leased {ip}, but stage1 and the OS configured: {configured:#?}",
                n.name
            );
        }
        n.say(&format!(
            "ok: bootd's lease table: {ip}, as stage1 and the OS configured"
        ));
        given.push(ip);
    }

    // Phase 7: v4 is published, but bootd's copy is tampered with (a
    // compromised server): the download fails its signed hash, nothing is
    // handed off, and the slot each node's BMC boots is untouched on disk.
    let slots_show = |n: &Node| {
        output(Command::new(bin("stage1")).args(["slots", "show", &n.disk.display().to_string()]))
    };
    let mut before = Vec::new();
    for n in &nodes {
        before.push(slots_show(n)?);
    }
    built.publish_os("4.0.0", 2)?;
    ts = wait_served(&lab, &ca, ts)?;
    let v4 = served_copy(&work.join("state"), "confirm-os-x86_64-4.0.0.uki")?;
    flip_byte(&v4)?;
    new_boots(&lab, &nodes)?;
    {
        let mut set: Vec<(&mut Node, Vec<StepSpec>)> = nodes
            .iter_mut()
            .map(|n| {
                (
                    n,
                    vec![
                        step("DHCP lease", "DHCP lease configured", &[]),
                        step(
                            "tampered v4 refused (signed hash)",
                            "confirm-os-x86_64-4.0.0.uki: expected",
                            &["got"],
                        ),
                    ],
                )
            })
            .collect();
        run_phase(
            &lab,
            &mut set,
            "7: a tampered v4 is refused",
            timeout,
            false,
        )?;
    }
    for (n, was) in nodes.iter_mut().zip(before) {
        n.stop();
        if n.saw("kexec: handing off") {
            bail!("{}: handed off during the tampered phase", n.name);
        }
        // The slot the BMC boots (this phase's console says which) keeps
        // its valid image, and the disk calls it active.
        let booting = n
            .seen
            .iter()
            .find(|l| l.contains("BMC facts"))
            .and_then(|l| l.split("slot=").nth(1))
            .and_then(|r| r.get(..1))
            .context("no BMC facts on the console")?
            .to_owned();
        let after = slots_show(n)?;
        let now = slot_record(&after, &booting)?;
        if now != slot_record(&was, &booting)? || !now.contains("Valid") {
            bail!(
                "{}: the booting slot changed:\nbefore:\n{was}\nafter:\n{after}",
                n.name
            );
        }
        if !after.contains(&format!("active Some({booting})")) {
            bail!("{}: slot {booting} is not active:\n{after}", n.name);
        }
        n.say(&format!("ok: the booting slot is untouched: {now}"));
    }
    let _ = ts;
    lab.check_alive()?;
    eprintln!(
        "\ne2e: ok in {:.1} s ({:.1} s of it building and setting up); consoles in {}",
        t0.elapsed().as_secs_f64(),
        setup_s,
        work.display()
    );
    Ok(())
}
