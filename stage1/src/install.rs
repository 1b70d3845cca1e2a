//! Writing an image into the inactive slot: the documented commit sequence.
//!
//! 1. **invalidate**: commit the slot as `Writing` with the incoming image's
//!    signed facts (its old contents stop being bootable);
//! 2. **write**: stream the bytes into the slot, hashing them in the same
//!    pass (memory is one chunk, whatever the image size), with a
//!    **checkpoint** every [`checkpoint_interval`] bytes (below);
//! 3. **verify**: the streamed length and SHA-256 must equal the signed
//!    ones; then fsync the slot data;
//! 4. **mark valid**: commit the slot as `Valid`;
//! 5. **flip**: commit it as the active slot.
//!
//! Steps 1, 4 and 5 are single header commits ([`SlotStore::commit`]); a
//! power cut between any two leaves either the old active slot or the new
//! one active, and a slot is never valid before its bytes are synced and
//! verified. (Verification hashes while streaming instead of reading the
//! slot back: a second pass would halve install speed on a Pi, and the
//! bytes are hashed again on every boot before they are executed — see
//! [`crate::handoff`].)
//!
//! ## Resuming after a power cut
//!
//! An install cut short (power lost, the process killed, the install
//! deadline passed) leaves the slot `Writing` with the image's signed
//! facts. [`Session::resume`] continues it from its last checkpoint instead
//! of byte 0. A checkpoint is written only after the bytes it counts are
//! durable: fsync the slot data, then write the checkpoint record, then
//! fsync again. On resume the counted prefix is **read back from the slot
//! and hashed again** (the SHA-256 state is never stored): what is finally
//! compared with the signed digest is the hash of the bytes on the disk, so
//! a torn, stale or forged record can cost a download, never make
//! unverified bytes bootable. A mismatch at the end clears the record, so
//! the next attempt starts from byte 0.
//!
//! The record sits in the slot's last 4 KiB, which the image never
//! reaches: only when the image ends at least 4 KiB before the slot does
//! (otherwise there are no checkpoints, and an interrupted install starts
//! over). Integers little-endian:
//!
//! | offset | length | field |
//! |---|---|---|
//! | 0 | 8 | magic `RKLPROG1` |
//! | 8 | 32 | SHA-256 of the image being written (the signed one) |
//! | 40 | 8 | the image's signed length |
//! | 48 | 8 | verified bytes: the durable prefix the checkpoint counts |
//! | 56 | 4 | CRC-32 (IEEE) of bytes 0..56 |
//! | 60 | 4 | zero |

use racklet_bmc_proto::Slot;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::slots::{Disk, SlotImage, SlotStore};

/// Magic of a checkpoint record.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"RKLPROG1";
/// Bytes of a checkpoint record.
pub const CHECKPOINT_LEN: usize = 64;
/// The record's place: the last this many bytes of the slot.
pub const CHECKPOINT_AREA: u64 = crate::slots::ALIGN;

/// Bytes between checkpoints for an image of `length` bytes: a sixteenth
/// of it, at least 256 KiB, at most 64 MiB (each costs two fsyncs).
pub fn checkpoint_interval(length: u64) -> u64 {
    (length / 16).clamp(256 << 10, 64 << 20)
}

/// A checkpoint record, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// SHA-256 of the image being written.
    pub sha256: [u8; 32],
    /// Its signed length.
    pub length: u64,
    /// The durable prefix counted.
    pub verified: u64,
}

impl Checkpoint {
    /// The record's bytes.
    pub fn encode(&self) -> [u8; CHECKPOINT_LEN] {
        let mut b = [0u8; CHECKPOINT_LEN];
        b[..8].copy_from_slice(&CHECKPOINT_MAGIC);
        b[8..40].copy_from_slice(&self.sha256);
        b[40..48].copy_from_slice(&self.length.to_le_bytes());
        b[48..56].copy_from_slice(&self.verified.to_le_bytes());
        let crc = crc32fast::hash(&b[..56]);
        b[56..60].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a record; `None` unless magic and CRC hold and the count is
    /// within the length.
    pub fn decode(b: &[u8; CHECKPOINT_LEN]) -> Option<Checkpoint> {
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(b[56..60].try_into().expect("4 bytes"));
        if b[..8] != CHECKPOINT_MAGIC || crc != crc32fast::hash(&b[..56]) {
            return None;
        }
        let c = Checkpoint {
            sha256: b[8..40].try_into().expect("32 bytes"),
            length: u64_at(40),
            verified: u64_at(48),
        };
        (c.verified <= c.length).then_some(c)
    }
}

/// Where `image`'s checkpoint record goes in a slot of `capacity` bytes,
/// if it fits after the image.
fn checkpoint_offset(capacity: u64, image: &SlotImage) -> Option<u64> {
    let at = capacity.checked_sub(CHECKPOINT_AREA)?;
    (image.length <= at).then_some(at)
}

/// The checkpoint `slot` holds for the image it is being written with, if
/// any (a slot that is not `Writing` has none).
pub fn checkpoint<D: Disk>(store: &mut SlotStore<D>, slot: Slot) -> Option<Checkpoint> {
    let record = store.state().slot(slot).clone();
    let image = match (record.status, record.image) {
        (crate::slots::SlotStatus::Writing, Some(image)) => image,
        _ => return None,
    };
    let at = checkpoint_offset(store.state().geometry.capacity, &image)?;
    let mut b = [0u8; CHECKPOINT_LEN];
    store.read_slot(slot, at, &mut b).ok()?;
    Checkpoint::decode(&b).filter(|c| c.sha256 == image.sha256 && c.length == image.length)
}

/// An install in progress (after step 1).
#[derive(Debug)]
pub struct Session<'a, D> {
    store: &'a mut SlotStore<D>,
    slot: Slot,
    image: SlotImage,
    hasher: Sha256,
    written: u64,
    resumed_from: u64,
    /// Where the checkpoint record goes (`None`: the image leaves no room).
    checkpoint_at: Option<u64>,
    next_checkpoint: u64,
}

impl<'a, D: Disk> Session<'a, D> {
    /// Step 1: invalidates `slot` (never the active one) for `image`.
    pub fn begin(store: &'a mut SlotStore<D>, slot: Slot, image: SlotImage) -> Result<Self> {
        image.check()?;
        let mut next = store.state().clone();
        next.invalidate(slot, image.clone())?;
        store.commit(&next)?;
        let checkpoint_at = checkpoint_offset(store.state().geometry.capacity, &image);
        let next_checkpoint = checkpoint_interval(image.length);
        Ok(Session {
            store,
            slot,
            image,
            hasher: Sha256::new(),
            written: 0,
            resumed_from: 0,
            checkpoint_at,
            next_checkpoint,
        })
    }

    /// Continues an install of `image` into `slot` that was cut short
    /// (the slot `Writing` with this very image and a checkpoint): the
    /// checkpointed prefix is read back and hashed, and writing goes on
    /// from there. Anything else starts afresh with [`Session::begin`].
    pub fn resume(store: &'a mut SlotStore<D>, slot: Slot, image: SlotImage) -> Result<Self> {
        image.check()?;
        let same = store.state().active != Some(slot)
            && store.state().slot(slot).status == crate::slots::SlotStatus::Writing
            && store.state().slot(slot).image.as_ref() == Some(&image);
        let from = match same.then(|| checkpoint(store, slot)).flatten() {
            Some(c) if c.verified > 0 => c.verified,
            _ => return Session::begin(store, slot, image),
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < from {
            let n = ((from - off) as usize).min(buf.len());
            store.read_slot(slot, off, &mut buf[..n])?;
            hasher.update(&buf[..n]);
            off += n as u64;
        }
        let checkpoint_at = checkpoint_offset(store.state().geometry.capacity, &image);
        let every = checkpoint_interval(image.length);
        tracing::info!(?slot, image = ?image, from, "resuming an interrupted install from its last checkpoint");
        Ok(Session {
            store,
            slot,
            image,
            hasher,
            written: from,
            resumed_from: from,
            checkpoint_at,
            next_checkpoint: (from / every + 1) * every,
        })
    }

    /// Bytes written so far (where a resumed download continues).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Bytes taken over from an interrupted install (0: a fresh one).
    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// The slot being written.
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// Step 2: appends `chunk`, hashing it. Refuses bytes past the signed
    /// length (an endless-data attack stops here). Checkpoints when a
    /// checkpoint interval is crossed.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        if self.written + chunk.len() as u64 > self.image.length {
            return Err(Error::TooLong {
                name: self.image.name.to_string(),
                expected_len: self.image.length,
            });
        }
        self.store.write_slot(self.slot, self.written, chunk)?;
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        if self.written >= self.next_checkpoint && self.written < self.image.length {
            self.checkpoint()?;
            let every = checkpoint_interval(self.image.length);
            self.next_checkpoint = (self.written / every + 1) * every;
        }
        Ok(())
    }

    /// Makes the bytes written so far durable, then records their count.
    fn checkpoint(&mut self) -> Result<()> {
        let Some(at) = self.checkpoint_at else {
            return Ok(());
        };
        self.store.sync()?;
        let c = Checkpoint {
            sha256: self.image.sha256,
            length: self.image.length,
            verified: self.written,
        };
        self.store.write_slot(self.slot, at, &c.encode())?;
        self.store.sync()
    }

    /// Forgets the checkpoint (the next attempt starts from byte 0).
    fn clear_checkpoint(&mut self) -> Result<()> {
        let Some(at) = self.checkpoint_at else {
            return Ok(());
        };
        self.store
            .write_slot(self.slot, at, &[0u8; CHECKPOINT_LEN])?;
        self.store.sync()
    }

    /// Steps 3–5: verify, sync, mark valid, flip. On a mismatch the slot
    /// stays `Writing` (never bootable), its checkpoint is cleared, and the
    /// error names both digests.
    pub fn finish(mut self) -> Result<SlotImage> {
        let got: [u8; 32] = self.hasher.clone().finalize().into();
        if self.written != self.image.length || got != self.image.sha256 {
            let mismatch = Error::DigestMismatch {
                name: self.image.name.to_string(),
                expected_len: self.image.length,
                expected_sha256: hex::encode(self.image.sha256),
                got_len: self.written,
                got_sha256: hex::encode(got),
            };
            if let Err(e) = self.clear_checkpoint() {
                tracing::warn!(error = %e, "could not clear the install checkpoint");
            }
            return Err(mismatch);
        }
        self.store.sync()?;
        let mut next = self.store.state().clone();
        next.mark_valid(self.slot)?;
        self.store.commit(&next)?;
        let mut next = self.store.state().clone();
        next.flip(self.slot)?;
        self.store.commit(&next)?;
        Ok(self.image)
    }
}

/// Installs from a blocking reader in one go (tests, `stage1 slots install`).
pub fn install_from_reader<D: Disk>(
    store: &mut SlotStore<D>,
    slot: Slot,
    image: SlotImage,
    mut reader: impl std::io::Read,
) -> Result<SlotImage> {
    let mut s = Session::begin(store, slot, image)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(crate::error::disk("read the image source"))?;
        if n == 0 {
            break;
        }
        s.write(&buf[..n])?;
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_record_matches_its_byte_table() {
        let c = Checkpoint {
            sha256: [7; 32],
            length: 0x0102_0304_0506_0708,
            verified: 0x1000,
        };
        let b = c.encode();
        assert_eq!(&b[..8], b"RKLPROG1");
        assert_eq!(&b[8..40], &[7u8; 32]);
        assert_eq!(&b[40..48], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&b[48..56], &0x1000u64.to_le_bytes());
        assert_eq!(&b[56..60], &crc32fast::hash(&b[..56]).to_le_bytes());
        assert_eq!(&b[60..], &[0u8; 4]);
        assert_eq!(Checkpoint::decode(&b), Some(c));
        // Any flipped bit, a count past the length, a zeroed record: none.
        for i in 0..60 {
            let mut t = b;
            t[i] ^= 1;
            assert_eq!(Checkpoint::decode(&t), None, "bit flipped in byte {i}");
        }
        let over = Checkpoint {
            verified: c.length + 1,
            ..c
        };
        assert_eq!(Checkpoint::decode(&over.encode()), None);
        assert_eq!(Checkpoint::decode(&[0; CHECKPOINT_LEN]), None);
    }

    #[test]
    fn checkpoints_are_sparse() {
        assert_eq!(checkpoint_interval(1_000), 256 << 10);
        assert_eq!(checkpoint_interval(64 << 20), 4 << 20);
        assert_eq!(checkpoint_interval(8 << 30), 64 << 20);
    }
}
