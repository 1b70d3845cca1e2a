//! What differs between the architectures a node can be emulated as: the
//! QEMU binary, the machine, the UEFI firmware and the names the rest of
//! the run derives from the architecture. A node, the preflight checks and
//! bootd's configuration take a [`Platform`]; another architecture is
//! another `static` here, not a copy of the node code.

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
}

/// A UEFI firmware build: its code, plain and with Secure Boot, and the
/// template of the variable store each node gets a copy of.
#[derive(Debug)]
pub(super) struct Firmware {
    pub code: &'static str,
    /// Built with Secure Boot (and SMM, which guards its variables).
    pub code_secure_boot: &'static str,
    pub vars: &'static str,
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
    },
    efi_stub: racklet_images::SYSTEMD_STUB_X64,
    dnsmasq_client_arch: "X86-64_EFI",
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
}
