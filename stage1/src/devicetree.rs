//! What stage1 reads in the running device tree, as the kernel shows it
//! in files (`/sys/firmware/devicetree/base`, which `/proc/device-tree`
//! links to): every function takes that directory, so tests hand it a
//! tree of real files in a temporary directory.
//!
//! | path under the base | read for |
//! |---|---|
//! | `cpus/cpu@*/enable-method` | [`cpu_start`]: how the CPUs were started |
//! | `psci/` | [`cpu_start`]: whether the tree advertises PSCI |
//! | `chosen/bootloader/boot_img_sha256` | [`boot_img_sha256`]: what a Pi 5's EEPROM verified |
//!
//! **Spin-table.** arm64 Linux refuses `kexec_load` and `kexec_file_load`
//! with `EBUSY` ("Can't kexec: CPUs are stuck in the kernel",
//! `machine_kexec_prepare` in `arch/arm64/kernel/machine_kexec.c`) when
//! `cpus_are_stuck_in_kernel()` (`arch/arm64/kernel/smp.c`) holds, which
//! includes `num_possible_cpus() > 1 && !have_cpu_die()`: more than one
//! CPU and no way to take one offline. Only PSCI's CPU ops have
//! `cpu_die`; a CPU started with `enable-method = "spin-table"` has none.
//! `maxcpus=1` does not help (it limits the CPUs brought up, not the
//! possible ones the check counts), so stage1 refuses rather than falls
//! back ([`SpinTable`]). The fix is the boot firmware's: on a Pi 4, TF-A's
//! BL31 as `armstub`, which adds `/psci` and `enable-method = "psci"`.
//!
//! **`boot_img_sha256`.** The BCM2712 (Pi 5) EEPROM bootloader, from its
//! 2025-01-22 release, puts the SHA-256 of the `boot.img` it verified in
//! `/chosen/bootloader/boot_img_sha256` when signed boot is on
//! (rpi-eeprom `firmware-2712/release-notes.md`). Raspberry Pi does not
//! document the encoding; a real Pi 5 was seen to give 64 bytes, the raw
//! digest and 32 zero bytes. [`boot_img_sha256`] takes that, the bare 32
//! raw bytes and 64 hex digits (NUL-terminated or not), and refuses
//! anything else. Both kexec routes pass `/chosen/bootloader` on to the
//! next kernel (`racklet-kexec` keeps what it does not rewrite), so the
//! booted OS's `stage1 confirm` reads what the EEPROM said at power-on.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use racklet_hardware::Arch;

/// Where the running kernel shows its device tree.
pub const BASE: &str = "/sys/firmware/devicetree/base";

/// The property a Pi 5's EEPROM bootloader writes, under [`BASE`].
pub const BOOT_IMG_SHA256: &str = "chosen/bootloader/boot_img_sha256";

/// Reading the device tree failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DtError {
    /// A node or property that is there could not be read.
    #[error("device tree: read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `boot_img_sha256` is in none of the encodings of a SHA-256.
    #[error("device tree: {path} holds {len} bytes that are not a SHA-256 (32 raw bytes, 32 raw and 32 zero bytes, or 64 hex digits){}", if *.all_zero { "; the digest is all zero" } else { "" })]
    MalformedBootImgSha256 {
        /// The property.
        path: PathBuf,
        /// Its length.
        len: usize,
        /// It had the shape of a digest, but every byte of it was zero.
        all_zero: bool,
    },
}

/// One CPU node of `/cpus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// Its node name (`cpu@0`).
    pub node: String,
    /// The first string of its `enable-method` (`psci`, `spin-table`), if
    /// it has one.
    pub enable_method: Option<String>,
}

/// How the device tree has the CPUs started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuStart {
    /// The `cpu` / `cpu@*` children of `/cpus`, sorted by name.
    pub cpus: Vec<Cpu>,
    /// `/psci` exists.
    pub psci_node: bool,
}

/// Why the running kernel will refuse to kexec: it started CPUs with
/// spin-table, so it cannot take them offline.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the device tree starts CPUs with spin-table ({}; {}), which gives Linux no way to take a CPU offline, so arm64 Linux refuses every kexec (EBUSY, \"CPUs are stuck in the kernel\"); the boot firmware must start them with PSCI: a Pi 4 boot.img needs armstub=bl31.bin (TF-A PLAT=rpi4)",
    .cpus.join(", "),
    if *.psci_node { "a /psci node exists" } else { "no /psci node" }
)]
pub struct SpinTable {
    /// The CPU nodes started with spin-table.
    pub cpus: Vec<String>,
    /// Whether the tree has a `/psci` node anyway.
    pub psci_node: bool,
}

impl CpuStart {
    /// Why a kexec would be refused, or `None`. Like Linux's check: one
    /// CPU needs no other taken offline; with more, any CPU started by
    /// spin-table has no `cpu_die`.
    pub fn kexec_blocker(&self) -> Option<SpinTable> {
        if self.cpus.len() <= 1 {
            return None;
        }
        let spin: Vec<String> = self
            .cpus
            .iter()
            .filter(|c| c.enable_method.as_deref() == Some("spin-table"))
            .map(|c| c.node.clone())
            .collect();
        (!spin.is_empty()).then_some(SpinTable {
            cpus: spin,
            psci_node: self.psci_node,
        })
    }
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> DtError + '_ {
    move |source| DtError::Read {
        path: path.to_owned(),
        source,
    }
}

/// Reads a property, `None` if it is absent.
fn property(path: &Path) -> Result<Option<Vec<u8>>, DtError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_err(path)(e)),
    }
}

/// How the tree under `base` starts the CPUs; `None` if there is no
/// device tree there (x86_64, an ACPI arm64 machine, a host process).
pub fn cpu_start(base: &Path) -> Result<Option<CpuStart>, DtError> {
    if !base.is_dir() {
        return Ok(None);
    }
    let cpus_dir = base.join("cpus");
    let mut cpus = Vec::new();
    let entries = match std::fs::read_dir(&cpus_dir) {
        Ok(e) => Some(e),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(read_err(&cpus_dir)(e)),
    };
    for entry in entries.into_iter().flatten() {
        let entry = entry.map_err(read_err(&cpus_dir))?;
        let node = entry.file_name().to_string_lossy().into_owned();
        // `cpu-map`, caches and properties are not CPUs.
        if !(node == "cpu" || node.starts_with("cpu@")) || !entry.path().is_dir() {
            continue;
        }
        let enable_method = property(&entry.path().join("enable-method"))?.map(|b| {
            // A string list: the kernel reads the first string.
            let first = b.split(|&c| c == 0).next().unwrap_or_default();
            String::from_utf8_lossy(first).into_owned()
        });
        cpus.push(Cpu {
            node,
            enable_method,
        });
    }
    cpus.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(Some(CpuStart {
        cpus,
        psci_node: base.join("psci").is_dir(),
    }))
}

/// The SHA-256 of the `boot.img` the Pi's EEPROM verified, from
/// [`BOOT_IMG_SHA256`] under `base`; `None` if the property is absent.
pub fn boot_img_sha256(base: &Path) -> Result<Option<[u8; 32]>, DtError> {
    let path = base.join(BOOT_IMG_SHA256);
    let Some(bytes) = property(&path)? else {
        return Ok(None);
    };
    let malformed = |all_zero| DtError::MalformedBootImgSha256 {
        path: path.clone(),
        len: bytes.len(),
        all_zero,
    };
    let hex = match bytes.as_slice() {
        [h @ .., 0] if h.len() == 64 => Some(h),
        h if h.len() == 64 && h[32..].iter().any(|&b| b != 0) => Some(h),
        _ => None,
    };
    let digest: [u8; 32] = match (hex, bytes.len()) {
        (Some(h), _) => {
            let s = std::str::from_utf8(h).map_err(|_| malformed(false))?;
            bootd_api::Sha256Digest::from_hex(s)
                .ok_or_else(|| malformed(false))?
                .0
        }
        // The raw digest, then (as seen on a Pi 5) 32 reserved zero bytes.
        (None, 64) | (None, 32) => bytes[..32].try_into().expect("32 bytes"),
        _ => return Err(malformed(false)),
    };
    // No SHA-256 is all zero: that is a property with nothing written in.
    if digest == [0; 32] {
        return Err(malformed(true));
    }
    Ok(Some(digest))
}

/// Refuses an arm64 kexec that the running kernel would refuse with
/// `EBUSY` because the tree under `base` started CPUs with spin-table. A
/// tree that cannot be read is no reason to stop (logged; the kernel
/// decides); other architectures are not checked.
pub fn kexec_possible(arch: Arch, base: &Path) -> Result<(), SpinTable> {
    if arch != Arch::Aarch64 {
        return Ok(());
    }
    match cpu_start(base) {
        Ok(start) => start.and_then(|s| s.kexec_blocker()).map_or(Ok(()), Err),
        Err(e) => {
            tracing::warn!(error = %e, "could not check how the CPUs were started; trying kexec");
            Ok(())
        }
    }
}

/// [`boot_img_sha256`] for a report field: a malformed property is
/// logged and left out, never fatal.
pub fn reported_boot_img_sha256(base: &Path) -> Option<[u8; 32]> {
    boot_img_sha256(base).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "boot_img_sha256 left out of the report");
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (path under the base, bytes) into a fresh base.
    fn tree(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, bytes) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        dir
    }

    /// A Pi 4 as Debian's `bcm2711-rpi-4-b.dtb` starts it: four cores
    /// on spin-table, no `/psci`, a `cpu-map` beside them.
    fn pi4_spin_table() -> tempfile::TempDir {
        let mut files: Vec<(String, Vec<u8>)> = (0..4)
            .flat_map(|i| {
                [
                    (
                        format!("cpus/cpu@{i}/enable-method"),
                        b"spin-table\0".to_vec(),
                    ),
                    (format!("cpus/cpu@{i}/device_type"), b"cpu\0".to_vec()),
                ]
            })
            .collect();
        files.push(("cpus/cpu-map/cluster0/core0/cpu".into(), vec![0, 0, 0, 1]));
        files.push(("cpus/#address-cells".into(), vec![0, 0, 0, 1]));
        files.push(("chosen/bootargs".into(), b"console=ttyS0\0".to_vec()));
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        tree(&refs)
    }

    #[test]
    fn a_spin_table_tree_blocks_kexec_and_says_what_fixes_it() {
        let dt = pi4_spin_table();
        let start = cpu_start(dt.path()).unwrap().unwrap();
        assert_eq!(start.cpus.len(), 4, "{start:?}");
        assert!(!start.psci_node);
        let e = start.kexec_blocker().expect("spin-table blocks kexec");
        assert_eq!(e.cpus, ["cpu@0", "cpu@1", "cpu@2", "cpu@3"]);
        let text = e.to_string();
        for words in [
            "spin-table (cpu@0, cpu@1, cpu@2, cpu@3; no /psci node)",
            "EBUSY",
            "armstub=bl31.bin (TF-A PLAT=rpi4)",
        ] {
            assert!(text.contains(words), "{text}");
        }
    }

    #[test]
    fn only_arm64_is_checked_and_an_unreadable_tree_lets_the_kernel_decide() {
        let dt = pi4_spin_table();
        assert!(kexec_possible(Arch::Aarch64, dt.path()).is_err());
        assert_eq!(kexec_possible(Arch::X86_64, dt.path()), Ok(()));
        // `cpus` a file, not a node: unreadable, so not a refusal.
        let odd = tree(&[("cpus", b"x")]);
        assert!(matches!(cpu_start(odd.path()), Err(DtError::Read { .. })));
        assert_eq!(kexec_possible(Arch::Aarch64, odd.path()), Ok(()));
        // A malformed hash is left out of the report.
        let bad = tree(&[(BOOT_IMG_SHA256, b"nope")]);
        assert_eq!(reported_boot_img_sha256(bad.path()), None);
    }

    #[test]
    fn psci_trees_single_cpus_and_no_tree_do_not_block() {
        // After TF-A's BL31: /psci, and every CPU on "psci".
        let psci = tree(&[
            ("psci/compatible", b"arm,psci-1.0\0arm,psci-0.2\0"),
            ("cpus/cpu@0/enable-method", b"psci\0"),
            ("cpus/cpu@1/enable-method", b"psci\0"),
        ]);
        let s = cpu_start(psci.path()).unwrap().unwrap();
        assert!(s.psci_node);
        assert_eq!(s.kexec_blocker(), None);
        // One CPU: nothing to take offline (Linux counts possible CPUs).
        let one = tree(&[("cpus/cpu@0/enable-method", b"spin-table\0")]);
        assert_eq!(
            cpu_start(one.path()).unwrap().unwrap().kexec_blocker(),
            None
        );
        // QEMU's virt machine without enable-method on a single CPU, and
        // no /cpus at all.
        let bare = tree(&[("chosen/bootargs", b"\0")]);
        let s = cpu_start(bare.path()).unwrap().unwrap();
        assert!(s.cpus.is_empty());
        assert_eq!(s.kexec_blocker(), None);
        // No device tree (x86_64, ACPI): nothing to say.
        let none = tempfile::tempdir().unwrap();
        assert_eq!(cpu_start(&none.path().join("base")).unwrap(), None);
    }

    #[test]
    fn one_spin_table_cpu_among_psci_ones_still_blocks() {
        let mixed = tree(&[
            ("psci/method", b"smc\0"),
            ("cpus/cpu@0/enable-method", b"psci\0"),
            ("cpus/cpu@1/enable-method", b"spin-table\0"),
        ]);
        let e = cpu_start(mixed.path())
            .unwrap()
            .unwrap()
            .kexec_blocker()
            .unwrap();
        assert_eq!(e.cpus, ["cpu@1"]);
        assert!(e.to_string().contains("a /psci node exists"), "{e}");
    }

    const DIGEST: [u8; 32] = [
        0x3a, 0x6e, 0xb0, 0x79, 0x0f, 0x39, 0xac, 0x87, 0xc9, 0x4f, 0x38, 0x56, 0xb2, 0xdd, 0x2c,
        0x5d, 0x11, 0x0e, 0x68, 0x11, 0x60, 0x22, 0x61, 0xa9, 0xa9, 0x23, 0xd3, 0xbb, 0x23, 0xad,
        0xc8, 0xb7,
    ];
    const HEX: &str = "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7";

    fn read(bytes: &[u8]) -> Result<Option<[u8; 32]>, DtError> {
        let dt = tree(&[(BOOT_IMG_SHA256, bytes)]);
        boot_img_sha256(dt.path())
    }

    #[test]
    fn boot_img_sha256_in_each_encoding_reads_the_same() {
        let mut seen_on_a_pi5 = DIGEST.to_vec();
        seen_on_a_pi5.extend([0u8; 32]);
        let mut hex_nul = HEX.as_bytes().to_vec();
        hex_nul.push(0);
        for bytes in [
            seen_on_a_pi5,
            DIGEST.to_vec(),
            HEX.as_bytes().to_vec(),
            HEX.to_uppercase().into_bytes(),
            hex_nul,
        ] {
            assert_eq!(read(&bytes).unwrap(), Some(DIGEST), "{bytes:02x?}");
        }
        // Absent (a Pi 4, a Pi 5 without signed boot, no tree): nothing.
        let dt = pi4_spin_table();
        assert_eq!(boot_img_sha256(dt.path()).unwrap(), None);
    }

    #[test]
    fn garbage_boot_img_sha256_is_refused_with_its_path_and_length() {
        let mut raw_then_junk = DIGEST.to_vec();
        raw_then_junk.extend([0xff; 32]);
        let mut hex_not_nul = HEX.as_bytes().to_vec();
        hex_not_nul.push(b'\n');
        let cases: [(&[u8], usize); 6] = [
            (b"", 0),
            (&DIGEST[..31], 31),
            (&raw_then_junk, 64),
            (&HEX.as_bytes()[1..], 63),
            (&hex_not_nul, 65),
            (&HEX.replace('a', "g").into_bytes(), 64),
        ];
        for (bytes, len) in cases {
            let e = read(bytes).unwrap_err();
            assert!(
                matches!(e, DtError::MalformedBootImgSha256 { len: l, all_zero: false, .. } if l == len),
                "{e}"
            );
            assert!(e.to_string().contains(BOOT_IMG_SHA256), "{e}");
        }
        let e = read(&[0u8; 64]).unwrap_err();
        assert!(
            matches!(e, DtError::MalformedBootImgSha256 { all_zero: true, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("all zero"), "{e}");
    }
}
