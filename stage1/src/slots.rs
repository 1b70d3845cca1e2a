//! The A/B slot layout on the node's disk, and its commit sequence.
//!
//! The disk (a block device, or a file in simulation) holds two copies of a
//! 1024-byte header (like GPT's primary and backup) and two slot regions:
//!
//! | offset | length | what |
//! |---|---|---|
//! | 0 | 1024 (in a 4096-byte block) | header, primary copy |
//! | 4096 | 1024 (in a 4096-byte block) | header, backup copy |
//! | 1 MiB | `capacity` | slot A |
//! | 1 MiB + `capacity` | `capacity` | slot B |
//!
//! Header (all integers little-endian; `stage1/README.md` has the same
//! table and `tests/layout.rs` checks this code against it):
//!
//! | offset | length | field |
//! |---|---|---|
//! | 0 | 8 | magic `RKLSLOT1` |
//! | 8 | 4 | format version, `1` |
//! | 12 | 4 | header length, `1024` |
//! | 16 | 8 | generation (higher wins; +1 per commit) |
//! | 24 | 8 | slot A offset |
//! | 32 | 8 | slot B offset |
//! | 40 | 8 | slot capacity |
//! | 48 | 1 | active slot: `0` A, `1` B, `0xFF` none |
//! | 49 | 7 | zero |
//! | 56 | 320 | slot A record |
//! | 376 | 320 | slot B record |
//! | 696 | 324 | zero |
//! | 1020 | 4 | CRC-32 (IEEE) of bytes 0..1020 |
//!
//! Slot record:
//!
//! | offset | length | field |
//! |---|---|---|
//! | 0 | 1 | status: `0` empty, `1` writing, `2` valid, `3` failed |
//! | 1 | 1 | name length (0..=200) |
//! | 2 | 1 | version length (0..=64) |
//! | 3 | 5 | zero |
//! | 8 | 8 | image length |
//! | 16 | 8 | security version (LE; only values up to `u32::MAX` are valid) |
//! | 24 | 32 | SHA-256 of the image |
//! | 56 | 200 | target name, zero padded |
//! | 256 | 64 | version (semver), zero padded |
//!
//! # Commits
//!
//! [`SlotState`] changes only in memory; [`SlotStore::commit`] writes it:
//! the whole header with generation + 1 into the primary copy, fsync, then
//! into the backup copy, fsync. A commit takes effect when the first copy is
//! durable; a torn write fails its CRC and the other copy (the previous or
//! the new generation) wins. An update is the sequence
//! invalidate inactive → write → verify → mark valid → flip
//! ([`crate::install`]); each arrow is one commit or one fsync, so a power
//! cut anywhere leaves the previous active slot or the new one active, and a
//! slot is only ever marked valid after its bytes were verified and synced.
//! The active slot is never written: [`SlotStore::write_slot`] refuses it.

use std::fmt;
use std::io;

use racklet_bmc_proto::Slot;
use racklet_release::{ImageName, SecurityVersion};
use sha2::{Digest, Sha256};

use crate::error::{disk, Error, Result};

/// Header magic.
pub const MAGIC: [u8; 8] = *b"RKLSLOT1";
/// Format version.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of one header copy.
pub const HEADER_LEN: usize = 1024;
/// Where the two header copies live (primary, backup).
pub const COPY_OFFSETS: [u64; 2] = [0, 4096];
/// Where slot A starts.
pub const SLOTS_OFFSET: u64 = 1 << 20;
/// Slot capacities are multiples of this.
pub const ALIGN: u64 = 4096;
/// Offset of the slot records in a header.
pub const RECORD_OFFSETS: [usize; 2] = [56, 376];
/// Bytes of one slot record.
pub const RECORD_LEN: usize = 320;
/// Longest target name a record holds.
pub const MAX_NAME: usize = 200;
/// Longest version string a record holds.
pub const MAX_VERSION: usize = 64;
/// Offset of the CRC.
pub const CRC_OFFSET: usize = 1020;

/// A disk stage1 can keep slots on: positional reads and writes, and a
/// barrier that makes every earlier write durable.
pub trait Disk {
    /// Length in bytes.
    fn size(&mut self) -> io::Result<u64>;
    /// Reads exactly `buf.len()` bytes at `off`.
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `off` (not durable until [`Disk::sync`]).
    fn write_at(&mut self, off: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes every earlier write durable (fsync / fdatasync).
    fn sync(&mut self) -> io::Result<()>;
}

impl Disk for std::fs::File {
    fn size(&mut self) -> io::Result<u64> {
        use std::io::Seek;
        // Works for block devices too (their metadata length is 0).
        let end = self.seek(io::SeekFrom::End(0))?;
        Ok(end)
    }
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, off)
    }
    fn write_at(&mut self, off: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, off)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

/// What a slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlotStatus {
    /// Nothing (never written, or formatted).
    Empty,
    /// Being written: its bytes are undefined, it is never booted.
    Writing,
    /// Written, synced and verified against the signed digest.
    Valid,
    /// Valid bytes that did not confirm a boot (the BMC fell back from it).
    Failed,
}

impl SlotStatus {
    /// The on-disk byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            SlotStatus::Empty => 0,
            SlotStatus::Writing => 1,
            SlotStatus::Valid => 2,
            SlotStatus::Failed => 3,
        }
    }

    /// Parses the on-disk byte.
    pub fn from_byte(b: u8) -> Option<SlotStatus> {
        Some(match b {
            0 => SlotStatus::Empty,
            1 => SlotStatus::Writing,
            2 => SlotStatus::Valid,
            3 => SlotStatus::Failed,
            _ => return None,
        })
    }
}

/// The signed facts of the image in a slot.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SlotImage {
    /// TUF target name.
    pub name: ImageName,
    /// Its version.
    pub version: semver::Version,
    /// Its anti-rollback version.
    pub security_version: SecurityVersion,
    /// SHA-256 of its bytes.
    pub sha256: [u8; 32],
    /// Its length.
    pub length: u64,
}

impl fmt::Debug for SlotImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (security {}, {} bytes, sha256 {})",
            self.name,
            self.version,
            self.security_version,
            self.length,
            hex::encode(self.sha256)
        )
    }
}

/// One slot's record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SlotRecord {
    /// Its status.
    pub status: SlotStatus,
    /// The image it holds or is being written with (`None` when empty).
    pub image: Option<SlotImage>,
}

impl SlotRecord {
    /// An empty slot.
    pub const EMPTY: SlotRecord = SlotRecord {
        status: SlotStatus::Empty,
        image: None,
    };

    /// The image, if the slot is valid (bootable).
    pub fn valid_image(&self) -> Option<&SlotImage> {
        match self.status {
            SlotStatus::Valid => self.image.as_ref(),
            _ => None,
        }
    }
}

/// Where the slots are on the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Offsets of slot A and B.
    pub offsets: [u64; 2],
    /// Bytes per slot.
    pub capacity: u64,
}

impl Geometry {
    /// The largest layout that fits a disk of `len` bytes.
    pub fn for_disk(len: u64) -> Result<Geometry> {
        let need = SLOTS_OFFSET + 2 * ALIGN;
        if len < need {
            return Err(Error::DiskTooSmall { len, need });
        }
        let capacity = (len - SLOTS_OFFSET) / 2 / ALIGN * ALIGN;
        Ok(Geometry {
            offsets: [SLOTS_OFFSET, SLOTS_OFFSET + capacity],
            capacity,
        })
    }
}

/// The slot state: what the header says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SlotState {
    /// Incremented by every commit.
    pub generation: u64,
    /// Slot placement.
    pub geometry: Geometry,
    /// The slot the node boots (never written), if any.
    pub active: Option<Slot>,
    /// Slot A and B, by [`Slot::index`].
    pub slots: [SlotRecord; 2],
}

impl SlotState {
    /// A freshly formatted disk: both slots empty, none active.
    pub fn empty(geometry: Geometry) -> SlotState {
        SlotState {
            generation: 0,
            geometry,
            active: None,
            slots: [SlotRecord::EMPTY, SlotRecord::EMPTY],
        }
    }

    /// One slot's record.
    pub fn slot(&self, s: Slot) -> &SlotRecord {
        &self.slots[s.index()]
    }

    /// Step 1 (in memory): `slot` is about to be written with `image`. Its
    /// old contents stop being bootable. Refuses the active slot.
    pub fn invalidate(&mut self, slot: Slot, image: SlotImage) -> Result<()> {
        if self.active == Some(slot) {
            return Err(Error::ActiveSlot(slot));
        }
        if image.length > self.geometry.capacity {
            return Err(Error::TooLarge {
                length: image.length,
                capacity: self.geometry.capacity,
            });
        }
        self.slots[slot.index()] = SlotRecord {
            status: SlotStatus::Writing,
            image: Some(image),
        };
        Ok(())
    }

    /// Step 4 (in memory): the written, synced, verified slot becomes valid.
    pub fn mark_valid(&mut self, slot: Slot) -> Result<()> {
        let r = &mut self.slots[slot.index()];
        if r.status != SlotStatus::Writing || r.image.is_none() {
            return Err(Error::Transition(format!(
                "slot {slot:?} is {:?}, not being written",
                r.status
            )));
        }
        r.status = SlotStatus::Valid;
        Ok(())
    }

    /// Step 5 (in memory): make a valid slot the active one.
    pub fn flip(&mut self, slot: Slot) -> Result<()> {
        if self.slot(slot).status != SlotStatus::Valid {
            return Err(Error::Transition(format!(
                "slot {slot:?} is {:?}; only a valid slot becomes active",
                self.slot(slot).status
            )));
        }
        self.active = Some(slot);
        Ok(())
    }

    /// Records that a valid slot failed to confirm a boot; it stops being
    /// active (the other slot, if valid, becomes active).
    pub fn mark_failed(&mut self, slot: Slot) -> Result<()> {
        let r = &mut self.slots[slot.index()];
        if r.status != SlotStatus::Valid {
            return Err(Error::Transition(format!(
                "slot {slot:?} is {:?}, not valid",
                r.status
            )));
        }
        r.status = SlotStatus::Failed;
        if self.active == Some(slot) {
            let other = slot.other();
            self.active = (self.slot(other).status == SlotStatus::Valid).then_some(other);
        }
        Ok(())
    }

    /// Encodes the header (with `generation` as it is).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.geometry.offsets[0].to_le_bytes());
        b[32..40].copy_from_slice(&self.geometry.offsets[1].to_le_bytes());
        b[40..48].copy_from_slice(&self.geometry.capacity.to_le_bytes());
        b[48] = self.active.map_or(0xFF, Slot::to_byte);
        for (i, rec) in self.slots.iter().enumerate() {
            let at = RECORD_OFFSETS[i];
            encode_record(rec, &mut b[at..at + RECORD_LEN]);
        }
        let crc = crc32fast::hash(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks one header copy; the error says why it is refused.
    pub fn decode(b: &[u8]) -> std::result::Result<SlotState, String> {
        if b.len() < HEADER_LEN {
            return Err(format!("truncated: {} of {HEADER_LEN} bytes", b.len()));
        }
        let b = &b[..HEADER_LEN];
        if b[0..8] != MAGIC {
            return Err("bad magic (not a Racklet slot header)".into());
        }
        let crc = u32::from_le_bytes(b[CRC_OFFSET..].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(&b[..CRC_OFFSET]);
        if crc != computed {
            return Err(format!(
                "CRC mismatch: stored {crc:08x}, computed {computed:08x} (torn or corrupted)"
            ));
        }
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if u32_at(8) != FORMAT_VERSION {
            return Err(format!("unknown format version {}", u32_at(8)));
        }
        if u32_at(12) as usize != HEADER_LEN {
            return Err(format!("header length {} is not {HEADER_LEN}", u32_at(12)));
        }
        let geometry = Geometry {
            offsets: [u64_at(24), u64_at(32)],
            capacity: u64_at(40),
        };
        if geometry.offsets[0] < SLOTS_OFFSET
            || geometry.offsets[0].checked_add(geometry.capacity) != Some(geometry.offsets[1])
            || geometry.offsets[1].checked_add(geometry.capacity).is_none()
        {
            return Err(format!("impossible geometry {geometry:?}"));
        }
        let active = match b[48] {
            0xFF => None,
            v => Some(Slot::from_byte(v).map_err(|_| format!("bad active slot byte {v:#x}"))?),
        };
        if b[49..56].iter().any(|&x| x != 0) {
            return Err("reserved bytes 49..56 are not zero".into());
        }
        let mut slots = [SlotRecord::EMPTY, SlotRecord::EMPTY];
        for (i, rec) in slots.iter_mut().enumerate() {
            let at = RECORD_OFFSETS[i];
            *rec = decode_record(&b[at..at + RECORD_LEN], geometry.capacity)
                .map_err(|e| format!("slot {:?} record: {e}", Slot::ALL[i]))?;
        }
        if b[RECORD_OFFSETS[1] + RECORD_LEN..CRC_OFFSET]
            .iter()
            .any(|&x| x != 0)
        {
            return Err("reserved bytes 696..1020 are not zero".into());
        }
        if let Some(a) = active {
            if slots[a.index()].status != SlotStatus::Valid {
                return Err(format!("active slot {a:?} is not valid"));
            }
        }
        Ok(SlotState {
            generation: u64_at(16),
            geometry,
            active,
            slots,
        })
    }
}

fn encode_record(rec: &SlotRecord, b: &mut [u8]) {
    b[0] = rec.status.to_byte();
    if let Some(img) = &rec.image {
        let name = img.name.as_str().as_bytes();
        let version = img.version.to_string();
        // Both are bounded when the image is built (see `SlotImage::check`).
        let name = &name[..name.len().min(MAX_NAME)];
        let version = &version.as_bytes()[..version.len().min(MAX_VERSION)];
        b[1] = name.len() as u8;
        b[2] = version.len() as u8;
        b[8..16].copy_from_slice(&img.length.to_le_bytes());
        b[16..24].copy_from_slice(&u64::from(img.security_version.0).to_le_bytes());
        b[24..56].copy_from_slice(&img.sha256);
        b[56..56 + name.len()].copy_from_slice(name);
        b[256..256 + version.len()].copy_from_slice(version);
    }
}

fn decode_record(b: &[u8], capacity: u64) -> std::result::Result<SlotRecord, String> {
    let status = SlotStatus::from_byte(b[0]).ok_or_else(|| format!("bad status {}", b[0]))?;
    let (nl, vl) = (b[1] as usize, b[2] as usize);
    if status == SlotStatus::Empty {
        if b.iter().any(|&x| x != 0) {
            return Err("empty record is not all zero".into());
        }
        return Ok(SlotRecord::EMPTY);
    }
    if nl == 0 || nl > MAX_NAME || vl == 0 || vl > MAX_VERSION {
        return Err(format!("bad name/version length {nl}/{vl}"));
    }
    if b[3..8].iter().any(|&x| x != 0)
        || b[56 + nl..256].iter().any(|&x| x != 0)
        || b[256 + vl..].iter().any(|&x| x != 0)
    {
        return Err("non-zero padding".into());
    }
    let name = std::str::from_utf8(&b[56..56 + nl])
        .ok()
        .and_then(|s| ImageName::new(s).ok())
        .ok_or("bad target name")?;
    let version = std::str::from_utf8(&b[256..256 + vl])
        .ok()
        .and_then(|s| semver::Version::parse(s).ok())
        .ok_or("bad version")?;
    let length = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    if length > capacity {
        return Err(format!("length {length} over slot capacity {capacity}"));
    }
    // Eight bytes on disk; the security version is 32 bits wide (the BMC's
    // counter), so a larger value is a corrupt record.
    let security_version = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
    let security_version = u32::try_from(security_version)
        .map_err(|_| format!("security_version {security_version} over 32 bits"))?;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&b[24..56]);
    Ok(SlotRecord {
        status,
        image: Some(SlotImage {
            name,
            version,
            security_version: SecurityVersion(security_version),
            sha256,
            length,
        }),
    })
}

impl SlotImage {
    /// Checks that the record can hold this image's name and version.
    pub fn check(&self) -> Result<()> {
        if self.name.as_str().len() > MAX_NAME || self.version.to_string().len() > MAX_VERSION {
            return Err(Error::Target {
                name: self.name.to_string(),
                reason: format!("name over {MAX_NAME} bytes or version over {MAX_VERSION} bytes"),
            });
        }
        Ok(())
    }
}

/// Health of the two header copies, as found when the store was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderHealth {
    /// Why each copy (primary, backup) was refused, or `None` if usable.
    pub refused: [Option<String>; 2],
    /// Generation of each usable copy.
    pub generations: [Option<u64>; 2],
}

/// The slots on one disk: the committed state, and the only way to change it.
#[derive(Debug)]
pub struct SlotStore<D> {
    disk: D,
    state: SlotState,
    health: HeaderHealth,
}

impl<D: Disk> SlotStore<D> {
    /// Reads both header copies and keeps the newest valid one. Errors
    /// (naming why each copy was refused) if neither is valid.
    pub fn open(mut disk: D) -> Result<SlotStore<D>> {
        let len = disk.size().map_err(disk_err("length"))?;
        let mut found: [std::result::Result<SlotState, String>; 2] =
            [Err(String::new()), Err(String::new())];
        for (i, off) in COPY_OFFSETS.iter().enumerate() {
            let mut buf = vec![0u8; HEADER_LEN];
            found[i] = if off + HEADER_LEN as u64 > len {
                Err(format!(
                    "truncated: disk ends at {len}, copy needs {}",
                    off + HEADER_LEN as u64
                ))
            } else {
                match disk.read_at(*off, &mut buf) {
                    Ok(()) => SlotState::decode(&buf),
                    Err(e) => Err(format!("read error: {e}")),
                }
            }
            .and_then(|s| {
                if s.geometry.offsets[1] + s.geometry.capacity > len {
                    Err(format!(
                        "slots end at {} but the disk at {len} (truncated disk)",
                        s.geometry.offsets[1] + s.geometry.capacity
                    ))
                } else {
                    Ok(s)
                }
            });
        }
        let health = HeaderHealth {
            refused: [found[0].clone().err(), found[1].clone().err()],
            generations: [
                found[0].as_ref().ok().map(|s| s.generation),
                found[1].as_ref().ok().map(|s| s.generation),
            ],
        };
        let [a, b] = found;
        let state = match (a, b) {
            (Ok(a), Ok(b)) => {
                if b.generation > a.generation {
                    b
                } else {
                    a
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(primary), Err(backup)) => return Err(Error::NoValidHeader { primary, backup }),
        };
        Ok(SlotStore {
            disk,
            state,
            health,
        })
    }

    /// Formats the disk: both slots empty, none active (generation 1).
    /// Destroys whatever the header said; the CLI asks before calling it.
    pub fn format(mut disk: D) -> Result<SlotStore<D>> {
        let len = disk.size().map_err(disk_err("length"))?;
        let geometry = Geometry::for_disk(len)?;
        let mut store = SlotStore {
            disk,
            state: SlotState::empty(geometry),
            health: HeaderHealth {
                refused: [None, None],
                generations: [None, None],
            },
        };
        let state = store.state.clone();
        store.commit(&state)?;
        Ok(store)
    }

    /// The committed state.
    pub fn state(&self) -> &SlotState {
        &self.state
    }

    /// What was found when the store was opened.
    pub fn health(&self) -> &HeaderHealth {
        &self.health
    }

    /// Writes `next` as the new committed state: generation + 1 into the
    /// primary copy, fsync, then the backup copy, fsync. The state changes
    /// on disk only here. Refuses a state that rewrites the active slot's
    /// record or changes the geometry.
    pub fn commit(&mut self, next: &SlotState) -> Result<()> {
        if next.geometry != self.state.geometry {
            return Err(Error::Transition("the geometry never changes".into()));
        }
        if let Some(a) = self.state.active {
            if next.slot(a) != self.state.slot(a) && next.slot(a).status != SlotStatus::Failed {
                return Err(Error::ActiveSlot(a));
            }
        }
        if let Some(a) = next.active {
            if next.slot(a).status != SlotStatus::Valid {
                return Err(Error::Transition(format!("active slot {a:?} is not valid")));
            }
        }
        let mut next = next.clone();
        next.generation = self.state.generation + 1;
        let bytes = next.encode();
        for off in COPY_OFFSETS {
            self.disk
                .write_at(off, &bytes)
                .map_err(disk_err(format!("write header copy at {off}")))?;
            self.disk
                .sync()
                .map_err(disk_err(format!("sync header copy at {off}")))?;
        }
        self.state = next;
        Ok(())
    }

    /// Writes image bytes into a slot that is being written.
    pub fn write_slot(&mut self, slot: Slot, offset: u64, bytes: &[u8]) -> Result<()> {
        if self.state.active == Some(slot) {
            return Err(Error::ActiveSlot(slot));
        }
        if self.state.slot(slot).status != SlotStatus::Writing {
            return Err(Error::Transition(format!(
                "slot {slot:?} is not being written (invalidate it first)"
            )));
        }
        let cap = self.state.geometry.capacity;
        if offset + bytes.len() as u64 > cap {
            return Err(Error::TooLarge {
                length: offset + bytes.len() as u64,
                capacity: cap,
            });
        }
        let at = self.state.geometry.offsets[slot.index()] + offset;
        self.disk
            .write_at(at, bytes)
            .map_err(disk_err(format!("write slot {slot:?} at {offset}")))
    }

    /// Makes every slot write durable.
    pub fn sync(&mut self) -> Result<()> {
        self.disk.sync().map_err(disk_err("sync slot data"))
    }

    /// Reads slot bytes.
    pub fn read_slot(&mut self, slot: Slot, offset: u64, buf: &mut [u8]) -> Result<()> {
        let cap = self.state.geometry.capacity;
        if offset + buf.len() as u64 > cap {
            return Err(Error::TooLarge {
                length: offset + buf.len() as u64,
                capacity: cap,
            });
        }
        let at = self.state.geometry.offsets[slot.index()] + offset;
        self.disk
            .read_at(at, buf)
            .map_err(disk_err(format!("read slot {slot:?} at {offset}")))
    }

    /// Reads a valid slot's image, hashing as it goes, and hands each chunk
    /// to `sink`; errors unless length and SHA-256 match the record.
    pub fn read_verified(
        &mut self,
        slot: Slot,
        mut sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<SlotImage> {
        let img = self
            .state
            .slot(slot)
            .valid_image()
            .cloned()
            .ok_or_else(|| {
                Error::Refused(format!(
                    "slot {slot:?} is {:?}, not valid",
                    self.state.slot(slot).status
                ))
            })?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < img.length {
            let n = ((img.length - off) as usize).min(buf.len());
            self.read_slot(slot, off, &mut buf[..n])?;
            h.update(&buf[..n]);
            sink(&buf[..n])?;
            off += n as u64;
        }
        let got: [u8; 32] = h.finalize().into();
        if got != img.sha256 {
            return Err(Error::DigestMismatch {
                name: img.name.to_string(),
                expected_len: img.length,
                expected_sha256: hex::encode(img.sha256),
                got_len: img.length,
                got_sha256: hex::encode(got),
            });
        }
        Ok(img)
    }

    /// Gives the disk back.
    pub fn into_disk(self) -> D {
        self.disk
    }
}

fn disk_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    disk(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str, sv: u32) -> SlotImage {
        SlotImage {
            name: ImageName::new(name).unwrap(),
            version: "1.2.3-rc.1+build.7".parse().unwrap(),
            security_version: SecurityVersion(sv),
            sha256: [7; 32],
            length: 4096,
        }
    }

    #[test]
    fn header_round_trips_and_every_flipped_bit_is_caught() {
        let mut s = SlotState::empty(Geometry::for_disk(64 << 20).unwrap());
        s.generation = 42;
        s.invalidate(Slot::B, img("os-1.uki", 3)).unwrap();
        s.mark_valid(Slot::B).unwrap();
        s.flip(Slot::B).unwrap();
        s.invalidate(Slot::A, img("os-2.uki", 4)).unwrap();
        let b = s.encode();
        assert_eq!(SlotState::decode(&b).unwrap(), s);
        for bit in 0..(HEADER_LEN * 8) {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(SlotState::decode(&c).is_err(), "bit {bit} flip accepted");
        }
        assert!(SlotState::decode(&b[..HEADER_LEN - 1])
            .unwrap_err()
            .contains("truncated"));
    }

    #[test]
    fn the_active_slot_is_never_invalidated() {
        let mut s = SlotState::empty(Geometry::for_disk(64 << 20).unwrap());
        s.invalidate(Slot::A, img("a.uki", 1)).unwrap();
        s.mark_valid(Slot::A).unwrap();
        s.flip(Slot::A).unwrap();
        assert!(matches!(
            s.invalidate(Slot::A, img("b.uki", 1)),
            Err(Error::ActiveSlot(Slot::A))
        ));
        // Only a valid slot becomes active.
        s.invalidate(Slot::B, img("b.uki", 1)).unwrap();
        assert!(s.flip(Slot::B).is_err());
    }
}
