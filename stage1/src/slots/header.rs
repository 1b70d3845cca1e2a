//! The slot header's bytes: the layout constants, the records, the state
//! transitions (in memory) and the encoder and decoder of one header copy.
//! The module above ([`super`]) documents the format and owns the disk.

use std::fmt;

use racklet_bmc_proto::Slot;
use racklet_release::{ImageName, SecurityVersion};

use super::error::{HeaderError, RecordError, Transition};
use crate::error::{Error, Result};

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
            return Err(Transition::NotWriting {
                slot,
                status: r.status,
            }
            .into());
        }
        r.status = SlotStatus::Valid;
        Ok(())
    }

    /// Step 5 (in memory): make a valid slot the active one.
    pub fn flip(&mut self, slot: Slot) -> Result<()> {
        if self.slot(slot).status != SlotStatus::Valid {
            return Err(Transition::NotValid {
                slot,
                status: self.slot(slot).status,
            }
            .into());
        }
        self.active = Some(slot);
        Ok(())
    }

    /// Records that a valid slot failed to confirm a boot; it stops being
    /// active (the other slot, if valid, becomes active).
    pub fn mark_failed(&mut self, slot: Slot) -> Result<()> {
        let r = &mut self.slots[slot.index()];
        if r.status != SlotStatus::Valid {
            return Err(Transition::NotValid {
                slot,
                status: r.status,
            }
            .into());
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
    pub fn decode(b: &[u8]) -> std::result::Result<SlotState, HeaderError> {
        if b.len() < HEADER_LEN {
            return Err(HeaderError::Truncated { len: b.len() });
        }
        let b = &b[..HEADER_LEN];
        if b[0..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let crc = u32::from_le_bytes(b[CRC_OFFSET..].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(&b[..CRC_OFFSET]);
        if crc != computed {
            return Err(HeaderError::Crc {
                stored: crc,
                computed,
            });
        }
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if u32_at(8) != FORMAT_VERSION {
            return Err(HeaderError::FormatVersion(u32_at(8)));
        }
        if u32_at(12) as usize != HEADER_LEN {
            return Err(HeaderError::HeaderLength(u32_at(12)));
        }
        let geometry = Geometry {
            offsets: [u64_at(24), u64_at(32)],
            capacity: u64_at(40),
        };
        if geometry.offsets[0] < SLOTS_OFFSET
            || geometry.offsets[0].checked_add(geometry.capacity) != Some(geometry.offsets[1])
            || geometry.offsets[1].checked_add(geometry.capacity).is_none()
        {
            return Err(HeaderError::Geometry(geometry));
        }
        let active = match b[48] {
            0xFF => None,
            v => Some(Slot::from_byte(v).map_err(|_| HeaderError::ActiveByte(v))?),
        };
        if b[49..56].iter().any(|&x| x != 0) {
            return Err(HeaderError::Reserved { start: 49, end: 56 });
        }
        let mut slots = [SlotRecord::EMPTY, SlotRecord::EMPTY];
        for (i, rec) in slots.iter_mut().enumerate() {
            let at = RECORD_OFFSETS[i];
            *rec =
                decode_record(&b[at..at + RECORD_LEN], geometry.capacity).map_err(|problem| {
                    HeaderError::Record {
                        slot: Slot::ALL[i],
                        problem,
                    }
                })?;
        }
        if b[RECORD_OFFSETS[1] + RECORD_LEN..CRC_OFFSET]
            .iter()
            .any(|&x| x != 0)
        {
            return Err(HeaderError::Reserved {
                start: RECORD_OFFSETS[1] + RECORD_LEN,
                end: CRC_OFFSET,
            });
        }
        if let Some(a) = active {
            if slots[a.index()].status != SlotStatus::Valid {
                return Err(HeaderError::ActiveNotValid(a));
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

fn decode_record(b: &[u8], capacity: u64) -> std::result::Result<SlotRecord, RecordError> {
    let status = SlotStatus::from_byte(b[0]).ok_or(RecordError::Status(b[0]))?;
    let (nl, vl) = (b[1] as usize, b[2] as usize);
    if status == SlotStatus::Empty {
        if b.iter().any(|&x| x != 0) {
            return Err(RecordError::EmptyNotZero);
        }
        return Ok(SlotRecord::EMPTY);
    }
    if nl == 0 || nl > MAX_NAME || vl == 0 || vl > MAX_VERSION {
        return Err(RecordError::Lengths {
            name: nl,
            version: vl,
        });
    }
    if b[3..8].iter().any(|&x| x != 0)
        || b[56 + nl..256].iter().any(|&x| x != 0)
        || b[256 + vl..].iter().any(|&x| x != 0)
    {
        return Err(RecordError::Padding);
    }
    let name = std::str::from_utf8(&b[56..56 + nl])
        .ok()
        .and_then(|s| ImageName::new(s).ok())
        .ok_or(RecordError::Name)?;
    let version = std::str::from_utf8(&b[256..256 + vl])
        .ok()
        .and_then(|s| semver::Version::parse(s).ok())
        .ok_or(RecordError::Version)?;
    let length = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    if length > capacity {
        return Err(RecordError::Length { length, capacity });
    }
    // Eight bytes on disk; the security version is 32 bits wide (the BMC's
    // counter), so a larger value is a corrupt record.
    let security_version = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
    let security_version = u32::try_from(security_version)
        .map_err(|_| RecordError::SecurityVersion(security_version))?;
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
        assert_eq!(
            SlotState::decode(&b[..HEADER_LEN - 1]),
            Err(HeaderError::Truncated {
                len: HEADER_LEN - 1
            })
        );
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
