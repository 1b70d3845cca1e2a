//! One QEMU node: its disk, its UEFI variable store (with the run's Secure
//! Boot keys enrolled), the VM and its serial console, and what the console
//! must show.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use racklet_images::console::{Console, Next};

use super::lab::Lab;
use super::platform::Platform;
use crate::secureboot::{self, PlatformKeys};

/// What a node without UEFI boots (QEMU `-kernel`, `-initrd`, `-append`,
/// `-dtb`).
#[derive(Debug, Clone)]
pub(super) struct DirectBoot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
    pub dtb: PathBuf,
}

/// One QEMU node and its serial console.
pub(super) struct Node {
    pub name: String,
    pub mac: String,
    bmc_port: u16,
    pub tap: String,
    pub disk: PathBuf,
    vars: PathBuf,
    /// A second disk with a GPT and an empty EFI System Partition, where
    /// the firmware hand-off puts the UKI it boots next (arm64).
    esp: Option<PathBuf>,
    log: PathBuf,
    /// The emulator and firmware it runs on.
    pub platform: &'static Platform,
    /// Extra QEMU arguments (the HTTPS experiment's CA).
    extra: Vec<String>,
    /// Secure Boot firmware (its keys are enrolled in `vars`).
    pub secure_boot: bool,
    /// Booted without UEFI: QEMU loads this kernel, initramfs, command
    /// line and device tree itself (a modelled Pi, whose EEPROM unpacked
    /// them from its `boot.img`).
    pub direct: Option<DirectBoot>,
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
        let mut node = Self::without_uefi(work, n, position, platform, extra)?;
        let fw = &platform.firmware;
        match keys {
            Some(keys) => secureboot::enroll(
                Path::new(fw.vars_secure_boot),
                &node.vars,
                keys,
                fw.vars_delete,
            )?,
            None => drop(std::fs::copy(fw.vars, &node.vars)?),
        }
        if platform.arch == racklet_hardware::Arch::Aarch64 {
            let p = work.join(format!("{}.esp.disk", n.name));
            make_esp_disk(&p)?;
            node.esp = Some(p);
        }
        node.secure_boot = keys.is_some();
        Ok(node)
    }

    /// A board without UEFI (a modelled Pi): a blank disk, no variable
    /// store, no ESP; it boots only once [`Node::direct`] is set.
    pub fn without_uefi(
        work: &Path,
        n: &racklet_hardware::Node,
        position: usize,
        platform: &'static Platform,
        extra: Vec<String>,
    ) -> Result<Node> {
        let disk = work.join(format!("{}.disk", n.name));
        std::fs::File::create(&disk)?.set_len(128 << 20)?;
        Ok(Node {
            name: n.name.to_string(),
            mac: n.mac.to_string(),
            bmc_port: 7701 + position as u16,
            tap: format!("tap{position}"),
            disk,
            vars: work.join(format!("{}.vars.fd", n.name)),
            esp: None,
            log: work.join(format!("{}.console.log", n.name)),
            platform,
            extra,
            secure_boot: false,
            direct: None,
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

    /// The machine part of the QEMU command line: board, CPU, memory,
    /// console (what a device tree QEMU makes for it depends on).
    pub fn machine_args(&self) -> Vec<String> {
        let (machine, _) = self.platform.machine_and_code(self.secure_boot);
        let mut v: Vec<String> = machine.iter().map(|s| s.to_string()).collect();
        v.extend(["-m", &self.platform.memory_mib.to_string(), "-smp", "1"].map(String::from));
        v.push("-nographic".into());
        v
    }

    /// The QEMU command line, in the rack's namespace: UEFI HTTP boot from
    /// its tap (or, for a board without UEFI, the kernel its bootloader
    /// unpacked), its disk, and its BMC on a virtio-serial port.
    fn qemu(&self, lab: &Lab) -> std::process::Command {
        let mut cmd = lab.cmd(self.platform.qemu);
        let (_, code) = self.platform.machine_and_code(self.secure_boot);
        cmd.args(self.machine_args());
        // A reset ends the VM (a reboot loop would hide a failure), except
        // where the hand-off is a reset into the firmware.
        if !self.platform.firmware_handoff(self.secure_boot) {
            cmd.arg("-no-reboot");
        }
        if let Some(d) = &self.direct {
            cmd.arg("-kernel")
                .arg(&d.kernel)
                .arg("-initrd")
                .arg(&d.initrd)
                .args(["-append", &d.append])
                .arg("-dtb")
                .arg(&d.dtb);
            self.devices(&mut cmd, "");
            return cmd;
        }
        cmd.arg("-drive")
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
            .args(["-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n"]);
        // romfile= : OVMF's own HttpBootDxe, not iPXE's option ROM.
        self.devices(&mut cmd, ",romfile=,bootindex=1");
        cmd
    }

    /// The node's devices: its NIC on its tap (with `nic_options`), its
    /// disks, its BMC's virtio-serial port, the platform's extras.
    fn devices(&self, cmd: &mut std::process::Command, nic_options: &str) {
        cmd.arg("-netdev")
            .arg(format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                self.tap
            ))
            .arg("-device")
            .arg(format!(
                "virtio-net-pci,netdev=n0,mac={}{nic_options}",
                self.mac
            ))
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=none,id=d0",
                self.disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=d0"]);
        if let Some(esp) = &self.esp {
            cmd.arg("-drive")
                .arg(format!("file={},format=raw,if=none,id=d1", esp.display()))
                .args(["-device", "virtio-blk-pci,drive=d1"]);
        }
        cmd.args(self.platform.devices)
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
        let never = AtomicBool::new(false);
        self.expect_or_cancel(what, needle, also, forbidden, deadline, &never)
    }

    /// [`Node::expect`], also giving up once `cancel` is set (another node
    /// of the phase failed).
    pub fn expect_or_cancel(
        &mut self,
        what: &str,
        needle: &str,
        also: &[&str],
        forbidden: &[&str],
        deadline: Instant,
        cancel: &AtomicBool,
    ) -> Result<String> {
        let console = self.console.as_ref().context("the node is not running")?;
        loop {
            if cancel.load(Ordering::Relaxed) {
                bail!(
                    "{}: cancelled waiting for: {what} (another node failed)",
                    self.name
                );
            }
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

    /// The last `n` console lines of this boot, indented, for an error.
    pub fn tail(&self, n: usize) -> String {
        let from = self.seen.len().saturating_sub(n);
        let lines: Vec<String> = self.seen[from..]
            .iter()
            .map(|l| format!("    | {l}"))
            .collect();
        lines.join("\n")
    }

    /// The whole console log.
    pub fn log(&self) -> &Path {
        &self.log
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

/// Blocks of the ESP disk: 192 MiB, the ESP from sector 2048 for 184 MiB
/// (two slots' UKIs of ~50 MB each fit), GPT's backup after it.
const ESP_DISK_SECTORS: u64 = 192 << 11;
const ESP_START: u64 = 2048;
const ESP_SECTORS: u64 = 184 << 11;

/// Writes `p`: a GPT disk whose one partition is an EFI System Partition
/// with an empty FAT32 file system (`sfdisk` and `mkfs.vfat`, Debian
/// `fdisk` and `dosfstools`), as a real node's disk has.
fn make_esp_disk(p: &Path) -> Result<()> {
    std::fs::File::create(p)?.set_len(ESP_DISK_SECTORS * 512)?;
    let script = format!(
        "label: gpt\nstart={ESP_START}, size={ESP_SECTORS}, \
         type={}, name=\"EFI System\"\n",
        ESP_TYPE_GUID
    );
    let mut sfdisk = std::process::Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(p)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("running sfdisk (Debian fdisk)")?;
    sfdisk
        .stdin
        .take()
        .context("sfdisk's stdin")?
        .write_all(script.as_bytes())?;
    let st = sfdisk.wait()?;
    if !st.success() {
        bail!("sfdisk {} failed with {st}", p.display());
    }
    // Its stderr (a warning that the file is larger than the file system:
    // GPT's backup follows it) is shown only if it fails.
    super::output(
        std::process::Command::new("mkfs.vfat")
            .args(["-F", "32", "-n", "ESP", "--offset", &ESP_START.to_string()])
            .arg(p)
            // mkfs.vfat counts 1 KiB blocks.
            .arg((ESP_SECTORS / 2).to_string()),
    )
    .context("mkfs.vfat (Debian dosfstools)")
    .map(drop)
}

/// The ESP's GPT partition type.
const ESP_TYPE_GUID: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}
