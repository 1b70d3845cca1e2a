//! What differs between the architectures a node can be emulated as: the
//! QEMU binary, the machine, the UEFI firmware, the kernel and its modules,
//! the recipes, and how stage1 hands off under Secure Boot. A node, the
//! preflight checks, the release and bootd's configuration take a
//! [`Platform`]; another architecture is another `static` here, not a copy
//! of the node code.

use std::path::PathBuf;

use anyhow::Result;
use racklet_hardware::Arch;

/// One architecture's emulated platform.
#[derive(Debug)]
pub(super) struct Platform {
    /// The architecture, as the rack file, recipes and image names spell it.
    pub arch: Arch,
    /// The QEMU system emulator.
    pub qemu: &'static str,
    /// `-machine` and friends without Secure Boot.
    pub machine: &'static [&'static str],
    /// The same with Secure Boot, and what keeps the variable store (and
    /// so `db`) out of reach of anything the firmware runs (on x86_64: SMM).
    pub machine_secure_boot: &'static [&'static str],
    /// The UEFI firmware.
    pub firmware: Firmware,
    /// systemd's EFI stub the UKIs are built on (`build-image --stub auto`).
    pub efi_stub: &'static str,
    /// dnsmasq's name for this UEFI client architecture (`--pxe-service`).
    pub dnsmasq_client_arch: &'static str,
    /// RAM per node, MiB.
    pub memory_mib: u32,
    /// Extra QEMU devices every node gets.
    pub devices: &'static [&'static str],
    /// The kernel modules both images load, dependencies first, as paths
    /// under the kernel package's `lib/modules/VERSION/kernel/` (Debian's
    /// kernels build these drivers as modules; what is built in differs
    /// per architecture).
    pub modules: &'static [&'static str],
    /// The recipes under `images/recipes/`: stage1 and the e2e's OS.
    pub stage1_recipe: &'static str,
    pub os_recipe: &'static str,
    /// How stage1 starts the OS when the node runs UEFI Secure Boot.
    pub secure_boot_handoff: SecureBootHandoff,
    /// Seconds a boot phase may take by default (`--phase-timeout-s`).
    pub phase_timeout_s: u64,
}

/// A UEFI firmware build: its code, plain and with Secure Boot, and the
/// template of the variable store each node gets a copy of.
#[derive(Debug)]
pub(super) struct Firmware {
    pub code: &'static str,
    /// Built with Secure Boot (on x86_64 also with SMM, which guards its
    /// variables); the same file where one build does both.
    pub code_secure_boot: &'static str,
    /// The variable store a node without Secure Boot gets a copy of.
    pub vars: &'static str,
    /// The formatted variable store the run's keys are enrolled into, and
    /// the variables of it that go first (a vendor's keys, boot entries).
    pub vars_secure_boot: &'static str,
    pub vars_delete: &'static [&'static str],
}

/// How stage1 hands off to the OS under UEFI Secure Boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SecureBootHandoff {
    /// `kexec_file_load` of a kernel signed for the firmware's `db`, which
    /// the locked-down kernel trusts (x86_64: `KEXEC_SIG`).
    Kexec,
    /// The firmware hand-off: a locked-down arm64 kernel refuses
    /// `kexec_load` and has no `KEXEC_FILE`; stage1 puts the signed UKI on
    /// the ESP, sets `BootNext` and restarts, and the firmware checks and
    /// runs it. The node needs an ESP (a second disk) and must be allowed
    /// to reset (no `-no-reboot`).
    Firmware,
}

/// x86_64: q35 under TCG with OVMF (Debian's `ovmf`).
pub(super) static X86_64: Platform = Platform {
    arch: Arch::X86_64,
    qemu: "qemu-system-x86_64",
    machine: &["-machine", "q35"],
    machine_secure_boot: &[
        "-machine",
        "q35,smm=on",
        "-global",
        "driver=cfi.pflash01,property=secure,value=on",
    ],
    firmware: Firmware {
        code: "/usr/share/OVMF/OVMF_CODE_4M.fd",
        code_secure_boot: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
        vars: "/usr/share/OVMF/OVMF_VARS_4M.fd",
        vars_secure_boot: "/usr/share/OVMF/OVMF_VARS_4M.fd",
        vars_delete: &[],
    },
    efi_stub: racklet_images::SYSTEMD_STUB_X64,
    dnsmasq_client_arch: "X86-64_EFI",
    // stage1's initramfs, the 23 MiB OS image read into memory to be
    // hashed, and kexec's copies of its parts all live in RAM at once.
    memory_mib: 384,
    devices: &[],
    modules: &[
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
    ],
    stage1_recipe: "stage1.yaml",
    os_recipe: "confirm-os.yaml",
    secure_boot_handoff: SecureBootHandoff::Kexec,
    phase_timeout_s: 300,
};

/// aarch64: QEMU's `virt` board with a Cortex-A72 under TCG and AAVMF
/// (Debian's `qemu-efi-aarch64`). Debian 12's AAVMF has no separate Secure
/// Boot build: `AAVMF_CODE.fd` enforces Secure Boot once its variable store
/// holds keys. `virt` has no SMM: nothing but the firmware's own checks
/// guards the variable store from the OS (as on a Pi running UEFI).
pub(super) static AARCH64: Platform = Platform {
    arch: Arch::Aarch64,
    qemu: "qemu-system-aarch64",
    // Cortex-A72 (a Pi 4's core): no pointer authentication to emulate,
    // which `-cpu max` would make TCG pay for on every call.
    machine: &["-machine", "virt", "-cpu", "cortex-a72", "-accel", "tcg"],
    machine_secure_boot: &["-machine", "virt", "-cpu", "cortex-a72", "-accel", "tcg"],
    firmware: Firmware {
        code: "/usr/share/AAVMF/AAVMF_CODE.fd",
        code_secure_boot: "/usr/share/AAVMF/AAVMF_CODE.fd",
        // All zeros: the firmware formats it at its first boot, and
        // virt-fw-vars cannot read it.
        vars: "/usr/share/AAVMF/AAVMF_VARS.fd",
        // Formatted, with Microsoft's keys (and dbx) and Debian's boot
        // entries: all of them go, and only the run's keys are enrolled.
        vars_secure_boot: "/usr/share/AAVMF/AAVMF_VARS.ms.fd",
        vars_delete: &["PK", "KEK", "db", "dbx", "Boot0000", "Boot0001", "Boot0002"],
    },
    efi_stub: racklet_images::SYSTEMD_STUB_AA64,
    dnsmasq_client_arch: "ARM64_EFI",
    // Debian's arm64 Image is 32 MiB unpacked; the firmware holds the
    // downloaded UKI and its loaded copy, and stage1 the OS image and the
    // kexec segments.
    memory_mib: 1024,
    // AAVMF's VirtioRngDxe gives the EFI stub a seed for the kernel's
    // random pool: without it TLS in stage1 waits for entropy under TCG.
    devices: &["-device", "virtio-rng-pci"],
    // Debian's arm64 kernel builds virtio and virtio_ring in.
    modules: &[
        "drivers/virtio/virtio_pci_legacy_dev.ko",
        "drivers/virtio/virtio_pci_modern_dev.ko",
        "drivers/virtio/virtio_pci.ko",
        "net/core/failover.ko",
        "drivers/net/net_failover.ko",
        "drivers/net/virtio_net.ko",
        "drivers/block/virtio_blk.ko",
        "drivers/char/virtio_console.ko",
        "fs/efivarfs/efivarfs.ko",
        // The firmware hand-off mounts the ESP: vfat, and the code page and
        // character set it asks for by default (cp437, ascii), which it
        // cannot load itself (an initramfs has no modprobe).
        "fs/nls/nls_cp437.ko",
        "fs/nls/nls_ascii.ko",
        "fs/fat/fat.ko",
        "fs/fat/vfat.ko",
    ],
    stage1_recipe: "stage1-aarch64.yaml",
    os_recipe: "confirm-os-aarch64.yaml",
    secure_boot_handoff: SecureBootHandoff::Firmware,
    phase_timeout_s: 600,
};

impl Platform {
    /// The QEMU machine arguments and the firmware code to run.
    pub fn machine_and_code(&self, secure_boot: bool) -> (&'static [&'static str], &'static str) {
        if secure_boot {
            (self.machine_secure_boot, self.firmware.code_secure_boot)
        } else {
            (self.machine, self.firmware.code)
        }
    }

    /// The first stage's file name on bootd's first-stage listener.
    pub fn first_stage_file(&self) -> String {
        format!("stage1-{}.efi", self.arch)
    }

    /// The stage1 UKI's target name (what the first stage file serves).
    pub fn stage1_target(&self) -> String {
        format!("stage1-{}-1.0.0.uki", self.arch)
    }

    /// Debian's kernel for this architecture (`cargo xtask fetch-kernel`
    /// for x86_64; build-image's download for the others): the kernel
    /// image, fetched if needed.
    pub fn kernel(&self) -> Result<PathBuf> {
        crate::kernel::ensure_for(self.arch)
    }

    /// Where [`Platform::kernel`] unpacks the package.
    pub fn kernel_dir(&self) -> PathBuf {
        crate::kernel::dir_for(self.arch)
    }

    /// Whether a node with Secure Boot needs an ESP and resets.
    pub fn firmware_handoff(&self, secure_boot: bool) -> bool {
        secure_boot && self.secure_boot_handoff == SecureBootHandoff::Firmware
    }
}

/// Which nodes a run has (`--arch`): the platform and Secure Boot of each.
pub(super) fn layout(
    arch: super::E2eArch,
    nodes: usize,
    no_secure_boot: bool,
) -> Vec<(&'static Platform, bool)> {
    use super::E2eArch;
    (0..nodes)
        .map(|i| {
            let (platform, secure_boot) = match arch {
                E2eArch::X86_64 => (&X86_64, true),
                // The first without Secure Boot (kexec_load), the others
                // with it (the firmware hand-off).
                E2eArch::Aarch64 => (&AARCH64, i % 2 == 1),
                // x86_64 with Secure Boot, then arm64 without it, then arm64 with.
                E2eArch::All => match i % 3 {
                    0 => (&X86_64, true),
                    1 => (&AARCH64, false),
                    _ => (&AARCH64, true),
                },
            };
            (platform, secure_boot && !no_secure_boot)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::E2eArch;

    #[test]
    fn the_layouts_say_which_node_is_what() {
        let arches = |l: Vec<(&'static Platform, bool)>| -> Vec<(Arch, bool)> {
            l.into_iter().map(|(p, sb)| (p.arch, sb)).collect()
        };
        assert_eq!(
            arches(layout(E2eArch::X86_64, 2, false)),
            [(Arch::X86_64, true), (Arch::X86_64, true)]
        );
        assert_eq!(
            arches(layout(E2eArch::Aarch64, 2, false)),
            [(Arch::Aarch64, false), (Arch::Aarch64, true)]
        );
        assert_eq!(
            arches(layout(E2eArch::All, 3, false)),
            [
                (Arch::X86_64, true),
                (Arch::Aarch64, false),
                (Arch::Aarch64, true)
            ]
        );
        assert!(layout(E2eArch::All, 3, true).iter().all(|(_, sb)| !sb));
    }

    #[test]
    fn only_arm64_under_secure_boot_hands_off_through_the_firmware() {
        assert!(AARCH64.firmware_handoff(true));
        assert!(!AARCH64.firmware_handoff(false));
        assert!(!X86_64.firmware_handoff(true));
        assert_eq!(AARCH64.first_stage_file(), "stage1-aarch64.efi");
        assert_eq!(AARCH64.stage1_target(), "stage1-aarch64-1.0.0.uki");
    }
}
