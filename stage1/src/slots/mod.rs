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

use std::io;

use racklet_bmc_proto::Slot;
use sha2::{Digest, Sha256};

use crate::error::{disk, Error, Result};

mod error;
mod header;

pub use error::{HeaderError, RecordError, Transition};
pub use header::{
    Geometry, SlotImage, SlotRecord, SlotState, SlotStatus, ALIGN, COPY_OFFSETS, CRC_OFFSET,
    FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_NAME, MAX_VERSION, RECORD_LEN, RECORD_OFFSETS,
    SLOTS_OFFSET,
};

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

/// Health of the two header copies, as found when the store was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderHealth {
    /// Why each copy (primary, backup) was refused, or `None` if usable.
    pub refused: [Option<HeaderError>; 2],
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
        let mut found: [std::result::Result<SlotState, HeaderError>; 2] =
            [Err(HeaderError::BadMagic), Err(HeaderError::BadMagic)];
        for (i, off) in COPY_OFFSETS.iter().enumerate() {
            let mut buf = vec![0u8; HEADER_LEN];
            found[i] = if off + HEADER_LEN as u64 > len {
                Err(HeaderError::CopyPastEnd {
                    len,
                    need: off + HEADER_LEN as u64,
                })
            } else {
                match disk.read_at(*off, &mut buf) {
                    Ok(()) => SlotState::decode(&buf),
                    Err(e) => Err(HeaderError::Read(e.to_string())),
                }
            }
            .and_then(|s| {
                if s.geometry.offsets[1] + s.geometry.capacity > len {
                    Err(HeaderError::SlotsPastEnd {
                        end: s.geometry.offsets[1] + s.geometry.capacity,
                        len,
                    })
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
            return Err(Transition::Geometry.into());
        }
        if let Some(a) = self.state.active {
            if next.slot(a) != self.state.slot(a) && next.slot(a).status != SlotStatus::Failed {
                return Err(Error::ActiveSlot(a));
            }
        }
        if let Some(a) = next.active {
            if next.slot(a).status != SlotStatus::Valid {
                return Err(Transition::ActiveNotValid(a).into());
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
            return Err(Transition::NotWriting {
                slot,
                status: self.state.slot(slot).status,
            }
            .into());
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
            .ok_or_else(|| Error::NotBootable {
                slot,
                status: self.state.slot(slot).status,
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
