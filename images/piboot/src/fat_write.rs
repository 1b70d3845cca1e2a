//! The `boot.img` writer: a byte-reproducible FAT volume (no partition
//! table, as the bootloader's `boot_ramdisk` expects) from a list of files.
//!
//! Formatting and file writing are done by the `fatfs` crate; this module
//! fixes everything that would otherwise vary between two runs:
//!
//! | what | fixed to |
//! |---|---|
//! | volume id (BPB offset 39 on FAT12/16, 67 on FAT32) | [`BootImgOptions::volume_id`] |
//! | volume label (BPB and root-directory label entry) | [`BootImgOptions::volume_label`] |
//! | created / modified / accessed time of every entry | [`BootImgOptions::timestamp`] (a `SOURCE_DATE_EPOCH`) |
//! | order of directory entries and clusters | files sorted by name (ASCII, case folded), all in the root directory |
//! | volume size | the smallest multiple of 64 KiB that holds the files with [`MIN_FREE_CLUSTERS`] to spare |
//! | FAT type and cluster size | chosen by `fatfs` from the volume size (FAT12 below ~16 MiB, then FAT16, FAT32) |
//! | free space | zero bytes |
//!
//! Same files and options in, same bytes out: `tests/reproducible.rs`
//! builds twice and compares, and `tests/peers.rs` has `fsck.fat` and
//! mtools read the result.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::path::BootPath;
use crate::MAX_BOOT_IMG_BYTES;

/// Free clusters left at the end of every image. Bootloaders before
/// 2024-01-18 (Pi 4) / 2024-01-22 (Pi 5) mishandled a file that used the
/// last cluster of the volume (rpi-eeprom release notes, "Fix handling of
/// files that use the last cluster in the partition"), so the writer
/// never fills the volume.
pub const MIN_FREE_CLUSTERS: u32 = 8;

const SIZE_STEP: u64 = 64 * 1024;

/// One file to put into the image.
#[derive(Debug, Clone, Copy)]
pub struct BootFile<'a> {
    /// Where it goes.
    pub path: &'a BootPath,
    /// Its contents.
    pub data: &'a [u8],
}

/// An 11-byte FAT volume label: upper-case ASCII letters, digits, space,
/// `_` and `-`, padded with spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeLabel([u8; 11]);

impl VolumeLabel {
    /// Validates and pads `label`.
    pub fn new(label: &str) -> Result<Self> {
        let bad = |reason| Error::BadVolumeLabel {
            label: label.to_owned(),
            reason,
        };
        if label.is_empty() || label.len() > 11 {
            return Err(bad("must be 1 to 11 characters"));
        }
        if !label.bytes().all(|b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b' ' | b'_' | b'-')
        }) {
            return Err(bad("only A-Z, 0-9, space, '_' and '-' are allowed"));
        }
        let mut bytes = [b' '; 11];
        bytes[..label.len()].copy_from_slice(label.as_bytes());
        Ok(Self(bytes))
    }

    /// The padded bytes as written to disk.
    pub fn bytes(&self) -> [u8; 11] {
        self.0
    }
}

/// A FAT timestamp (local time as FAT has no zone; we write UTC), 2-second
/// resolution, 1980-01-01 to 2107-12-31.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatTime {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl FatTime {
    /// The FAT time for a Unix time in seconds (`SOURCE_DATE_EPOCH`). Times
    /// before 1980 (the usual `SOURCE_DATE_EPOCH=0`) become 1980-01-01
    /// 00:00:00, FAT's first instant; odd seconds round down.
    pub fn from_unix(unix_seconds: i64) -> Result<Self> {
        const FAT_EPOCH: i64 = 315_532_800; // 1980-01-01T00:00:00Z
        let t = time::OffsetDateTime::from_unix_timestamp(unix_seconds.max(FAT_EPOCH))
            .map_err(|_| Error::TimestampAfterFat { unix_seconds })?;
        if t.year() > 2107 {
            return Err(Error::TimestampAfterFat { unix_seconds });
        }
        Ok(Self {
            year: t.year() as u16,
            month: u8::from(t.month()),
            day: t.day(),
            hour: t.hour(),
            minute: t.minute(),
            second: t.second() & !1,
        })
    }

    fn to_fatfs(self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: fatfs::Date {
                year: self.year,
                month: self.month.into(),
                day: self.day.into(),
            },
            time: fatfs::Time {
                hour: self.hour.into(),
                min: self.minute.into(),
                sec: self.second.into(),
                millis: 0,
            },
        }
    }
}

/// What fixes the bytes of a `boot.img` besides its files.
#[derive(Debug, Clone, Copy)]
pub struct BootImgOptions {
    /// The volume serial number.
    pub volume_id: u32,
    /// The volume label.
    pub volume_label: VolumeLabel,
    /// The time written into every directory entry.
    pub timestamp: FatTime,
}

impl BootImgOptions {
    /// Racklet's defaults: volume id `0x52504942` ("RPIB"), label
    /// `RACKLET`, every entry dated `timestamp`.
    pub fn racklet(timestamp: FatTime) -> Self {
        Self {
            volume_id: 0x5250_4942,
            volume_label: VolumeLabel::new("RACKLET").expect("a valid constant label"),
            timestamp,
        }
    }
}

/// Writes a `boot.img` holding `files`, all in its root directory (what
/// the firmware reads; subdirectories are refused, see [`Error::BadBootPath`]).
/// The order of `files` does not matter; two names that differ only in
/// case are refused.
pub fn write_boot_img(files: &[BootFile<'_>], options: &BootImgOptions) -> Result<Vec<u8>> {
    let plan = Plan::new(files)?;
    let payload: u64 = plan
        .files
        .iter()
        .map(|f| round_up(f.data.len() as u64, 4096))
        .sum::<u64>();
    let mut size = round_up(payload + payload / 32 + 128 * 1024, SIZE_STEP);
    loop {
        if size > MAX_BOOT_IMG_BYTES {
            return Err(Error::BootImgTooLarge {
                bytes: size,
                max: MAX_BOOT_IMG_BYTES,
            });
        }
        // Any failure below is the volume being too small for this layout
        // (inputs are validated): grow it and start again.
        if let Some(image) = plan.try_write(size, options)? {
            return Ok(image);
        }
        size = round_up(size + size / 4, SIZE_STEP);
    }
}

fn round_up(n: u64, step: u64) -> u64 {
    n.div_ceil(step) * step
}

/// The validated entries, sorted by case-folded name.
struct Plan<'a> {
    files: Vec<BootFile<'a>>,
}

impl<'a> Plan<'a> {
    fn new(files: &[BootFile<'a>]) -> Result<Self> {
        let mut by_fold: BTreeMap<String, BootFile<'a>> = BTreeMap::new();
        for f in files {
            if f.path.components().count() > 1 {
                return Err(Error::BadBootPath {
                    path: f.path.to_string(),
                    reason: "the writer puts every file in the root directory: fatfs 0.3.6 gives \
                             a new directory's '.' and '..' long names, which fsck.fat refuses",
                });
            }
            if by_fold.insert(f.path.fold(), *f).is_some() {
                return Err(Error::DuplicateBootPath {
                    path: f.path.to_string(),
                });
            }
        }
        Ok(Self {
            files: by_fold.into_values().collect(),
        })
    }

    /// Writes the image at `size` bytes; `None` when it does not fit.
    fn try_write(&self, size: u64, options: &BootImgOptions) -> Result<Option<Vec<u8>>> {
        let mut image = vec![0u8; size as usize];
        let format = fatfs::FormatVolumeOptions::new()
            .volume_id(options.volume_id)
            .volume_label(options.volume_label.bytes());
        if fatfs::format_volume(Cursor::new(&mut image[..]), format).is_err() {
            return Ok(None);
        }
        let clock = clock_for(options.timestamp);
        let fs_options = fatfs::FsOptions::new().time_provider(clock);
        let Ok(fs) = fatfs::FileSystem::new(Cursor::new(&mut image[..]), fs_options) else {
            return Ok(None);
        };
        if self.write_entries(&fs).is_err() {
            return Ok(None);
        }
        let free = fs
            .stats()
            .map(|s| s.free_clusters())
            .map_err(|source| Error::FormatFat { source })?;
        fs.unmount().map_err(|source| Error::FormatFat { source })?;
        Ok((free >= MIN_FREE_CLUSTERS).then_some(image))
    }

    fn write_entries<T: fatfs::ReadWriteSeek>(&self, fs: &fatfs::FileSystem<T>) -> Result<()> {
        let root = fs.root_dir();
        for f in &self.files {
            let fail = |source| Error::WriteFatEntry {
                path: f.path.to_string(),
                source,
            };
            let mut file = root.create_file(f.path.as_str()).map_err(fail)?;
            file.write_all(f.data).map_err(fail)?;
            file.flush().map_err(fail)?;
        }
        Ok(())
    }
}

/// fatfs 0.3 takes its clock as `&'static dyn TimeProvider`; one fixed
/// clock per distinct timestamp is leaked and reused, so repeated builds
/// do not grow memory.
#[derive(Debug)]
struct FixedClock(FatTime);

impl fatfs::TimeProvider for FixedClock {
    fn get_current_date(&self) -> fatfs::Date {
        self.0.to_fatfs().date
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.0.to_fatfs()
    }
}

fn clock_for(t: FatTime) -> &'static FixedClock {
    static CLOCKS: Mutex<Vec<&'static FixedClock>> = Mutex::new(Vec::new());
    let mut clocks = CLOCKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(c) = clocks.iter().find(|c| c.0 == t) {
        return c;
    }
    let c: &'static FixedClock = Box::leak(Box::new(FixedClock(t)));
    clocks.push(c);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_times_as_a_table() {
        // (unix seconds, y, m, d, h, min, s) checked against `date -u -d @N`.
        let cases: &[(i64, u16, u8, u8, u8, u8, u8)] = &[
            (0, 1980, 1, 1, 0, 0, 0),
            (315_532_800, 1980, 1, 1, 0, 0, 0),
            (1_734_010_524, 2024, 12, 12, 13, 35, 24),
            (1_614_092_425, 2021, 2, 23, 15, 0, 24),
            (4_354_819_199, 2107, 12, 31, 23, 59, 58),
        ];
        for &(unix, year, month, day, hour, minute, second) in cases {
            let t = FatTime::from_unix(unix).unwrap();
            assert_eq!(
                t,
                FatTime {
                    year,
                    month,
                    day,
                    hour,
                    minute,
                    second
                },
                "{unix}"
            );
        }
        assert!(matches!(
            FatTime::from_unix(4_354_819_200),
            Err(Error::TimestampAfterFat { .. })
        ));
        assert!(FatTime::from_unix(i64::MAX).is_err());
    }

    #[test]
    fn labels_as_a_table() {
        for (label, ok) in [
            ("RACKLET", true),
            ("BOOT 1", true),
            ("ABCDEFGHIJK", true),
            ("ABCDEFGHIJKL", false),
            ("", false),
            ("lower", false),
            ("DOT.", false),
        ] {
            assert_eq!(VolumeLabel::new(label).is_ok(), ok, "{label:?}");
        }
        assert_eq!(&VolumeLabel::new("AB").unwrap().bytes(), b"AB         ");
    }
}
