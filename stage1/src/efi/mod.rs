//! The firmware hand-off: for an arm64 kernel under lockdown (UEFI Secure
//! Boot), which refuses `kexec_load` and has no signed `kexec_file_load`.
//! stage1 copies the verified UKI onto the EFI System Partition at the
//! slot's path, points `BootNext` at a load option for that file and
//! restarts; the firmware checks the UKI's Secure Boot signature against
//! `db` before it runs it, once (`BootNext` is deleted by the firmware when
//! it is used), so a UKI that does not come up leaves the next boot to
//! `BootOrder` — network boot into stage1, with the BMC counting tries as
//! for any boot.
//!
//! The encoders and the GPT reader are sans-IO and checked against the
//! byte layouts below (UEFI 2.10 §3.1.3 "Load Options", §10.3 "Device
//! Path Nodes", §5.3 "GUID Partition Table"; Linux
//! `Documentation/filesystems/efivarfs.rst`); [`hand_off`] is the shell.
//!
//! `EFI_LOAD_OPTION` (all little-endian, packed):
//!
//! | offset | length | field |
//! |---|---|---|
//! | 0 | 4 | `Attributes` (`LOAD_OPTION_ACTIVE` = 1) |
//! | 4 | 2 | `FilePathListLength`: bytes of `FilePathList` |
//! | 6 | 2·(n+1) | `Description`: UCS-2, NUL-terminated |
//! | … | `FilePathListLength` | `FilePathList`: device path nodes, ending in End (7f ff 04 00) |
//! | … | rest | `OptionalData` (none here) |
//!
//! Device path nodes: `Type` u8, `SubType` u8, `Length` u16 (header
//! included). Hard Drive (4, 1, 42): `PartitionNumber` u32,
//! `PartitionStart` u64 and `PartitionSize` u64 in logical blocks,
//! `PartitionSignature` 16 bytes (the GPT entry's unique GUID),
//! `MBRType` u8 (2: GPT), `SignatureType` u8 (2: GUID). File Path (4, 4,
//! 4 + 2·(n+1)): the path, UCS-2, `\`-separated, NUL-terminated. A path
//! that starts with the Hard Drive node is a short-form device path: the
//! firmware finds the disk that holds that partition.
//!
//! An efivarfs file is the variable's 4 attribute bytes (little-endian,
//! `NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS` = 7 here) followed
//! by its data, written in one `write(2)`.

use std::path::{Path, PathBuf};

use racklet_bmc_proto::Slot;

use crate::error::{Error, Result};

/// `EFI_GLOBAL_VARIABLE`: the vendor GUID of `Boot####` and `BootNext`.
pub const GLOBAL_VARIABLE: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// The ESP's GPT partition type GUID.
pub const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// `NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS`.
pub const ATTRIBUTES_NV_BS_RT: u32 = 0x7;
/// `LOAD_OPTION_ACTIVE`.
pub const LOAD_OPTION_ACTIVE: u32 = 0x1;
/// Where efivarfs is mounted.
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// Where stage1 mounts the ESP for the hand-off.
pub const ESP_MOUNT: &str = "/run/racklet/esp";

/// Why the firmware hand-off could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EfiError {
    /// No GPT partition of the ESP type on any disk.
    #[error("no EFI System Partition (GPT type {ESP_TYPE}) on any disk in /sys/class/block")]
    NoEsp,
    /// A GPT header or partition array that does not check out.
    #[error("GPT on {disk}: {reason}")]
    BadGpt {
        /// The disk.
        disk: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A description or path with a character outside UCS-2, or a NUL.
    #[error("{0:?} cannot be written as a UEFI UCS-2 string")]
    NotUcs2(String),
    /// Every `Boot####` number is taken.
    #[error("all 65536 Boot#### variables are taken")]
    NoFreeBootNumber,
}

/// A GUID as text (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`) and in the
/// mixed-endian layout UEFI stores it in (first three fields
/// little-endian, the last two as bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parses the text form; `None` if malformed.
    pub fn parse(s: &str) -> Option<Guid> {
        let parts: Vec<&str> = s.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if parts.len() != 5 || parts.iter().zip(lens).any(|(p, l)| p.len() != l) {
            return None;
        }
        let hex: String = parts.concat();
        let raw = hex::decode(hex).ok()?;
        let mut g = [0u8; 16];
        g[0..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
        g[4..6].copy_from_slice(&[raw[5], raw[4]]);
        g[6..8].copy_from_slice(&[raw[7], raw[6]]);
        g[8..16].copy_from_slice(&raw[8..16]);
        Some(Guid(g))
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{}-{}",
            u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
            u16::from_le_bytes([g[4], g[5]]),
            u16::from_le_bytes([g[6], g[7]]),
            hex::encode(&g[8..10]),
            hex::encode(&g[10..16])
        )
    }
}

fn ucs2(s: &str) -> std::result::Result<Vec<u8>, EfiError> {
    let mut out = Vec::with_capacity(2 * (s.len() + 1));
    for c in s.chars() {
        let c = u16::try_from(u32::from(c))
            .ok()
            .filter(|&c| c != 0 && !(0xd800..0xe000).contains(&c))
            .ok_or_else(|| EfiError::NotUcs2(s.to_owned()))?;
        out.extend_from_slice(&c.to_le_bytes());
    }
    out.extend_from_slice(&[0, 0]);
    Ok(out)
}

/// A GPT partition, as the Hard Drive device path node names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1-based index in the partition array.
    pub number: u32,
    /// First logical block.
    pub start_lba: u64,
    /// Length in logical blocks.
    pub size_lba: u64,
    /// The entry's unique partition GUID.
    pub guid: Guid,
}

/// The device path of `file` (`\`-separated) on `partition`, End included.
pub fn device_path(partition: &Partition, file: &str) -> std::result::Result<Vec<u8>, EfiError> {
    let mut dp = vec![4, 1, 42, 0];
    dp.extend_from_slice(&partition.number.to_le_bytes());
    dp.extend_from_slice(&partition.start_lba.to_le_bytes());
    dp.extend_from_slice(&partition.size_lba.to_le_bytes());
    dp.extend_from_slice(&partition.guid.0);
    dp.extend_from_slice(&[2, 2]);
    let path = ucs2(file)?;
    let len = u16::try_from(4 + path.len()).map_err(|_| EfiError::NotUcs2(file.to_owned()))?;
    dp.extend_from_slice(&[4, 4]);
    dp.extend_from_slice(&len.to_le_bytes());
    dp.extend_from_slice(&path);
    dp.extend_from_slice(&[0x7f, 0xff, 4, 0]);
    Ok(dp)
}

/// An `EFI_LOAD_OPTION` for `device_path` (from [`device_path`]), active,
/// without optional data.
pub fn load_option(
    description: &str,
    device_path: &[u8],
) -> std::result::Result<Vec<u8>, EfiError> {
    let len =
        u16::try_from(device_path.len()).map_err(|_| EfiError::NotUcs2(description.to_owned()))?;
    let mut out = LOAD_OPTION_ACTIVE.to_le_bytes().to_vec();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&ucs2(description)?);
    out.extend_from_slice(device_path);
    Ok(out)
}

/// The bytes of an efivarfs file: attributes, then the data.
pub fn efivarfs_file(attributes: u32, data: &[u8]) -> Vec<u8> {
    let mut out = attributes.to_le_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

/// The efivarfs name of `Boot####` (upper-case hex, as UEFI §3.1.1 says).
pub fn boot_variable(number: u16) -> String {
    format!("Boot{number:04X}-{GLOBAL_VARIABLE}")
}

/// The efivarfs name of `BootNext`.
pub fn boot_next_variable() -> String {
    format!("BootNext-{GLOBAL_VARIABLE}")
}

/// Which `Boot####` to write `ours` (a load option) into, given the
/// variables there are (number, efivarfs bytes) and our description:
/// one that already holds exactly `ours` (nothing to write), else one that
/// holds a load option with our description (our stale entry for this
/// slot: overwritten), else the lowest free number. Returns the number and
/// whether it must be written.
pub fn choose_boot_number(
    existing: &[(u16, Vec<u8>)],
    ours: &[u8],
    description: &str,
) -> std::result::Result<(u16, bool), EfiError> {
    let data = |b: &[u8]| b.get(4..).map(<[u8]>::to_vec).unwrap_or_default();
    if let Some((n, _)) = existing.iter().find(|(_, b)| data(b) == ours) {
        return Ok((*n, false));
    }
    let desc = ucs2(description)?;
    let ours_desc = |b: &[u8]| b.get(10..10 + desc.len()) == Some(&desc[..]);
    if let Some((n, _)) = existing.iter().find(|(_, b)| ours_desc(b)) {
        return Ok((*n, true));
    }
    (0..=u16::MAX)
        .find(|n| !existing.iter().any(|(m, _)| m == n))
        .map(|n| (n, true))
        .ok_or(EfiError::NoFreeBootNumber)
}

/// The slot's UKI on the ESP, as the firmware names it.
pub fn esp_file(slot: Slot) -> &'static str {
    match slot {
        Slot::A => "\\EFI\\racklet\\slot-a.efi",
        Slot::B => "\\EFI\\racklet\\slot-b.efi",
    }
}

/// The load option's description for `slot`.
pub fn description(slot: Slot) -> &'static str {
    match slot {
        Slot::A => "Racklet slot A",
        Slot::B => "Racklet slot B",
    }
}

/// The ESP among the partitions of a GPT disk: `header` is LBA 1 (the
/// primary GPT header), `entries` the bytes from its
/// `PartitionEntryLBA` on (at least `NumberOfPartitionEntries` ·
/// `SizeOfPartitionEntry`). Both CRC32s are checked.
///
/// | header offset | length | field |
/// |---|---|---|
/// | 0 | 8 | `EFI PART` |
/// | 12 | 4 | `HeaderSize` |
/// | 16 | 4 | `HeaderCRC32` (over `HeaderSize` bytes, this field zero) |
/// | 72 | 8 | `PartitionEntryLBA` |
/// | 80 | 4 | `NumberOfPartitionEntries` |
/// | 84 | 4 | `SizeOfPartitionEntry` (128 · 2ⁿ) |
/// | 88 | 4 | `PartitionEntryArrayCRC32` |
///
/// An entry: type GUID (16), unique GUID (16), `StartingLBA` (8),
/// `EndingLBA` (8, inclusive), attributes (8), name (72).
pub fn find_esp(disk: &str, header: &[u8], entries: &[u8]) -> Result<Option<Partition>, EfiError> {
    let bad = |reason| EfiError::BadGpt {
        disk: disk.to_owned(),
        reason,
    };
    let le32 = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .map(|x| u32::from_le_bytes(x.try_into().unwrap()))
    };
    let le64 = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .map(|x| u64::from_le_bytes(x.try_into().unwrap()))
    };
    if header.get(0..8) != Some(b"EFI PART") {
        return Ok(None);
    }
    let size = le32(header, 12).ok_or(bad("header cut short"))? as usize;
    let mut h = header
        .get(..size)
        .filter(|_| size >= 92)
        .ok_or(bad("header size out of range"))?
        .to_vec();
    let crc = le32(&h, 16).ok_or(bad("header cut short"))?;
    h[16..20].fill(0);
    if crc32fast::hash(&h) != crc {
        return Err(bad("header CRC32 mismatch"));
    }
    let (n, esize) = (
        le32(&h, 80).ok_or(bad("header cut short"))? as usize,
        le32(&h, 84).ok_or(bad("header cut short"))? as usize,
    );
    if esize < 128 || !esize.is_power_of_two() || n > 1024 {
        return Err(bad("partition entry size or count out of range"));
    }
    let array = entries
        .get(..n * esize)
        .ok_or(bad("partition array cut short"))?;
    if crc32fast::hash(array) != le32(&h, 88).ok_or(bad("header cut short"))? {
        return Err(bad("partition array CRC32 mismatch"));
    }
    let esp = Guid::parse(ESP_TYPE).expect("a valid GUID");
    for (i, e) in array.chunks_exact(esize).enumerate() {
        if e[0..16] != esp.0 {
            continue;
        }
        let (first, last) = (le64(e, 32).unwrap_or(0), le64(e, 40).unwrap_or(0));
        if last < first || first == 0 {
            return Err(bad("ESP entry with an empty or inverted range"));
        }
        return Ok(Some(Partition {
            number: i as u32 + 1,
            start_lba: first,
            size_lba: last - first + 1,
            guid: Guid(e[16..32].try_into().expect("16 bytes")),
        }));
    }
    Ok(None)
}

/// A disk and its ESP, found in `/sys/class/block`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Esp {
    /// The partition's device node (e.g. `/dev/vdb1`).
    pub device: PathBuf,
    /// Its GPT facts.
    pub partition: Partition,
}

fn sys_read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })
}

fn read_at(f: &std::fs::File, path: &Path, at: u64, len: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; len];
    std::os::unix::fs::FileExt::read_exact_at(f, &mut b, at).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(b)
}

/// Finds the first disk in `/sys/class/block` whose GPT has an ESP.
pub fn locate_esp() -> Result<Esp> {
    let class = Path::new("/sys/class/block");
    let mut disks: Vec<String> = std::fs::read_dir(class)
        .map_err(|source| Error::Read {
            path: class.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !class.join(n).join("partition").exists())
        .collect();
    disks.sort();
    for disk in disks {
        let dev = Path::new("/dev").join(&disk);
        let Ok(f) = std::fs::File::open(&dev) else {
            continue;
        };
        let block: u64 = sys_read(&class.join(&disk).join("queue/logical_block_size"))
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(512);
        let Ok(header) = read_at(&f, &dev, block, block as usize) else {
            continue;
        };
        if header.get(0..8) != Some(b"EFI PART") {
            continue;
        }
        let lba = u64::from_le_bytes(header[72..80].try_into().expect("8 bytes"));
        let array = read_at(&f, &dev, lba.saturating_mul(block), 1024 * 128)
            .or_else(|_| read_at(&f, &dev, lba.saturating_mul(block), 128 * 128))?;
        let Some(partition) = find_esp(&disk, &header, &array)? else {
            continue;
        };
        // The partition's node: the child of the disk whose `partition`
        // file holds the entry's number.
        for e in std::fs::read_dir(class.join(&disk))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if sys_read(&e.path().join("partition")).ok().as_deref()
                == Some(partition.number.to_string().as_str())
            {
                return Ok(Esp {
                    device: Path::new("/dev").join(name),
                    partition,
                });
            }
        }
    }
    Err(EfiError::NoEsp.into())
}

/// Writes one efivarfs variable (created or replaced) in one `write(2)`.
fn write_variable(efivars: &Path, name: &str, data: &[u8]) -> Result<()> {
    let path = efivars.join(name);
    let bytes = efivarfs_file(ATTRIBUTES_NV_BS_RT, data);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
    let n = std::io::Write::write(&mut f, &bytes).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    if n != bytes.len() {
        return Err(Error::Write {
            path,
            source: std::io::Error::other(format!("short write: {n} of {} bytes", bytes.len())),
        });
    }
    Ok(())
}

/// The `Boot####` variables in `efivars`: (number, efivarfs bytes).
fn boot_variables(efivars: &Path) -> Result<Vec<(u16, Vec<u8>)>> {
    let suffix = format!("-{GLOBAL_VARIABLE}");
    let mut out = Vec::new();
    let dir = std::fs::read_dir(efivars).map_err(|source| Error::Read {
        path: efivars.to_owned(),
        source,
    })?;
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(num) = name
            .strip_suffix(&suffix)
            .and_then(|n| n.strip_prefix("Boot"))
            .filter(|n| n.len() == 4)
            .and_then(|n| u16::from_str_radix(n, 16).ok())
        else {
            continue;
        };
        if let Ok(b) = std::fs::read(e.path()) {
            out.push((num, b));
        }
    }
    out.sort();
    Ok(out)
}

/// Puts `uki` (verified, Secure-Boot-signed) on `esp_dir` (the mounted
/// ESP) at the slot's path, and points `BootNext` in `efivars` at a load
/// option for it on `partition`. Returns the `Boot####` number. The caller
/// restarts the machine.
pub fn install(
    esp_dir: &Path,
    efivars: &Path,
    partition: &Partition,
    slot: Slot,
    uki: &[u8],
) -> Result<u16> {
    let file = esp_file(slot);
    let rel: PathBuf = file.trim_start_matches('\\').split('\\').collect();
    racklet_fsio::write_atomic(&esp_dir.join(&rel), uki, racklet_fsio::Mode::Public)?;
    let option = load_option(description(slot), &device_path(partition, file)?)?;
    let (number, write) =
        choose_boot_number(&boot_variables(efivars)?, &option, description(slot))?;
    if write {
        write_variable(efivars, &boot_variable(number), &option)?;
    }
    write_variable(efivars, &boot_next_variable(), &number.to_le_bytes())?;
    Ok(number)
}

/// The firmware hand-off, as PID 1: finds the ESP, mounts it, installs
/// `uki` for `slot` and sets `BootNext` ([`install`]). The caller then
/// restarts ([`crate::sys::restart`]).
pub fn hand_off(slot: Slot, uki: &[u8]) -> Result<u16> {
    let esp = locate_esp()?;
    std::fs::create_dir_all(ESP_MOUNT).map_err(|source| Error::Write {
        path: ESP_MOUNT.into(),
        source,
    })?;
    let device = esp.device.to_string_lossy().into_owned();
    crate::sys::mount(&device, ESP_MOUNT, "vfat")?;
    crate::sys::efivarfs_writable(EFIVARS)?;
    let n = install(
        Path::new(ESP_MOUNT),
        Path::new(EFIVARS),
        &esp.partition,
        slot,
        uki,
    )?;
    tracing::info!(esp = %device, partition = %esp.partition.guid, file = esp_file(slot),
        boot = format_args!("Boot{n:04X}"), "firmware hand-off: BootNext set");
    Ok(n)
}

#[cfg(test)]
mod tests;
