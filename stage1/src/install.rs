//! Writing an image into the inactive slot: the documented commit sequence.
//!
//! 1. **invalidate**: commit the slot as `Writing` with the incoming image's
//!    signed facts (its old contents stop being bootable);
//! 2. **write**: stream the bytes into the slot, hashing them in the same
//!    pass (memory is one chunk, whatever the image size);
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

use racklet_bmc_proto::Slot;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::slots::{Disk, SlotImage, SlotStore};

/// An install in progress (after step 1).
#[derive(Debug)]
pub struct Session<'a, D> {
    store: &'a mut SlotStore<D>,
    slot: Slot,
    image: SlotImage,
    hasher: Sha256,
    written: u64,
}

impl<'a, D: Disk> Session<'a, D> {
    /// Step 1: invalidates `slot` (never the active one) for `image`.
    pub fn begin(store: &'a mut SlotStore<D>, slot: Slot, image: SlotImage) -> Result<Self> {
        image.check()?;
        let mut next = store.state().clone();
        next.invalidate(slot, image.clone())?;
        store.commit(&next)?;
        Ok(Session {
            store,
            slot,
            image,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Bytes written so far (where a resumed download continues).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The slot being written.
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// Step 2: appends `chunk`, hashing it. Refuses bytes past the signed
    /// length (an endless-data attack stops here).
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
        Ok(())
    }

    /// Steps 3–5: verify, sync, mark valid, flip. On a mismatch the slot
    /// stays `Writing` (never bootable) and the error names both digests.
    pub fn finish(self) -> Result<SlotImage> {
        let got: [u8; 32] = self.hasher.finalize().into();
        if self.written != self.image.length || got != self.image.sha256 {
            return Err(Error::DigestMismatch {
                name: self.image.name.to_string(),
                expected_len: self.image.length,
                expected_sha256: hex::encode(self.image.sha256),
                got_len: self.written,
                got_sha256: hex::encode(got),
            });
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
