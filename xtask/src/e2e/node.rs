//! One QEMU node: its disk, its UEFI variable store (with the run's Secure
//! Boot keys enrolled), the VM and its serial console, and what the console
//! must show.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use racklet_images::console::{Console, Next};

use super::lab::Lab;
use super::platform::Platform;
use crate::secureboot::{self, PlatformKeys};

/// One QEMU node and its serial console.
pub(super) struct Node {
    pub name: String,
    pub mac: String,
    bmc_port: u16,
    pub tap: String,
    pub disk: PathBuf,
    vars: PathBuf,
    log: PathBuf,
    /// The emulator and firmware it runs on.
    platform: &'static Platform,
    /// Extra QEMU arguments (the HTTPS experiment's CA).
    extra: Vec<String>,
    /// Secure Boot firmware (its keys are enrolled in `vars`).
    secure_boot: bool,
    console: Option<Console>,
    started: Instant,
    /// Every console line of the current boot.
    pub seen: Vec<String>,
}

impl Node {
    /// The node `n` of the rack file, at `position` in it: a blank disk and
    /// a copy of the firmware's variable store in `work`, with `keys`
    /// enrolled for Secure Boot. It does not run until [`Node::boot`].
    pub fn create(
        work: &Path,
        n: &racklet_hardware::Node,
        position: usize,
        platform: &'static Platform,
        keys: Option<&PlatformKeys>,
        extra: Vec<String>,
    ) -> Result<Node> {
        let disk = work.join(format!("{}.disk", n.name));
        std::fs::File::create(&disk)?.set_len(128 << 20)?;
        let vars = work.join(format!("{}.vars.fd", n.name));
        let template = platform.firmware.vars;
        match keys {
            Some(keys) => secureboot::enroll(Path::new(template), &vars, keys)?,
            None => drop(std::fs::copy(template, &vars)?),
        }
        Ok(Node {
            name: n.name.to_string(),
            mac: n.mac.to_string(),
            bmc_port: 7701 + position as u16,
            tap: format!("tap{position}"),
            disk,
            vars,
            log: work.join(format!("{}.console.log", n.name)),
            platform,
            extra,
            secure_boot: keys.is_some(),
            console: None,
            started: Instant::now(),
            seen: Vec::new(),
        })
    }

    /// Starts the VM (stopping a running one), its console appended to the
    /// node's log under a `===== phase =====` line.
    pub fn boot(&mut self, lab: &Lab, phase: &str) -> Result<()> {
        self.stop();
        let mut cmd = self.qemu(lab);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        writeln!(log, "===== {phase} =====")?;
        self.console = Some(
            Console::spawn(&mut cmd, Some(log))
                .with_context(|| format!("starting {}", self.platform.qemu))?,
        );
        self.started = Instant::now();
        self.seen.clear();
        Ok(())
    }

    /// The QEMU command line, in the rack's namespace: UEFI HTTP boot from
    /// its tap, its disk, and its BMC on a virtio-serial port.
    fn qemu(&self, lab: &Lab) -> std::process::Command {
        let mut cmd = lab.cmd(self.platform.qemu);
        // 384 MiB: stage1's initramfs, the 23 MiB OS image read into memory to
        // be hashed, and kexec's copies of its parts all live in RAM at once.
        let (machine, code) = self.platform.machine_and_code(self.secure_boot);
        cmd.args(machine)
            .args(["-m", "384", "-smp", "1"])
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
        cmd
    }

    /// Prints `msg` as this node's progress, with the time since it booted.
    pub fn say(&self, msg: &str) {
        eprintln!(
            "  [{} +{:5.1}s] {msg}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Reads the console until a line contains `needle` (and every one of
    /// `also`); fails on `forbidden`, on the VM stopping, or at `deadline`.
    pub fn expect(
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
    pub fn expect_power_off(&mut self, deadline: Instant) -> Result<()> {
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

    /// True if a console line of this boot contained `needle`.
    pub fn saw(&self, needle: &str) -> bool {
        self.seen.iter().any(|l| l.contains(needle))
    }

    /// Stops the VM.
    pub fn stop(&mut self) {
        // Dropping the console stops the VM.
        self.console = None;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}
