//! Signed BMC firmware updates into the inactive bank.
//!
//! Image layout (what is streamed with `FwChunk` and stored in the bank):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `"RKFW"` (`52 4B 46 57`) |
//! | 4 | 4 | firmware version (u32 LE) |
//! | 8 | 4 | payload length P (u32 LE) |
//! | 12 | 64 | Ed25519 signature over bytes 0..12 ‖ payload |
//! | 76 | P | payload (the firmware binary) |
//!
//! Sequence: `FwBegin{version, total_len}` refuses a version not above the
//! running one *before anything is written*, then erases the inactive bank;
//! `FwChunk`s must arrive in order; `FwFinish` reads the bank back, checks
//! the header against `FwBegin` and verifies the signature (streamed, no
//! buffer of the image). Only then is the new version and bank committed to
//! the state store. A refused image leaves the state store and the running
//! bank untouched; the inactive bank is scratch space.

use ed25519_dalek::{Signature, VerifyingKey};
use embedded_storage::nor_flash::NorFlash;
use racklet_bmc_proto::{ErrorCode, FwInfo};

use crate::state::Persistent;

/// Keys that must never verify a production image.
pub mod danger {
    /// INSECURE example firmware-signing public key, for demos, the
    /// simulator and the QEMU firmware: the Ed25519 key whose secret seed is
    /// 32 bytes of `0x07` — published in bmc/README.md, so anyone can sign
    /// with it. A real BMC is built with the release key's public half.
    pub const INSECURE_EXAMPLE_PUBLIC_KEY: [u8; 32] = [
        0xea, 0x4a, 0x6c, 0x63, 0xe2, 0x9c, 0x52, 0x0a, 0xbe, 0xf5, 0x50, 0x7b, 0x13, 0x2e, 0xc5,
        0xf9, 0x95, 0x47, 0x76, 0xae, 0xbe, 0xbe, 0x7b, 0x92, 0x42, 0x1e, 0xea, 0x69, 0x14, 0x46,
        0xd2, 0x2c,
    ];
    /// The secret seed of [`INSECURE_EXAMPLE_PUBLIC_KEY`] (32 × `0x07`).
    pub const INSECURE_EXAMPLE_SEED: [u8; 32] = [0x07; 32];
}

/// Image magic.
pub const MAGIC: [u8; 4] = *b"RKFW";
/// Header length (magic, version, payload length, signature).
pub const HEADER_LEN: usize = 76;

/// The bytes an image signer signs: header fields ‖ payload. Use with a
/// signing key to build an image: `header(version, len, sig) ‖ payload`.
pub fn signed_prefix(version: u32, payload_len: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0..4].copy_from_slice(&MAGIC);
    b[4..8].copy_from_slice(&version.to_le_bytes());
    b[8..12].copy_from_slice(&payload_len.to_le_bytes());
    b
}

/// An update in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    version: u32,
    total_len: u32,
    next: u32,
}

/// Firmware update state of a BMC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwUpdater {
    session: Option<Session>,
}

impl FwUpdater {
    /// Size of one bank in `banks` (two equal halves).
    fn bank_size<B: NorFlash>(banks: &B) -> u32 {
        (banks.capacity() / 2) as u32
    }

    fn inactive_base<B: NorFlash>(banks: &B, st: &Persistent) -> u32 {
        if st.fw_bank == 0 {
            Self::bank_size(banks)
        } else {
            0
        }
    }

    /// `FwBegin`.
    pub fn begin<B: NorFlash>(
        &mut self,
        banks: &mut B,
        st: &Persistent,
        version: u32,
        total_len: u32,
    ) -> Result<(), ErrorCode> {
        self.session = None;
        if version <= st.fw_version {
            return Err(ErrorCode::OlderFirmware);
        }
        if (total_len as usize) <= HEADER_LEN || total_len > Self::bank_size(banks) {
            return Err(ErrorCode::OutOfRange);
        }
        let base = Self::inactive_base(banks, st);
        banks
            .erase(base, base + Self::bank_size(banks))
            .map_err(|_| ErrorCode::Storage)?;
        self.session = Some(Session {
            version,
            total_len,
            next: 0,
        });
        Ok(())
    }

    /// `FwChunk`.
    pub fn chunk<B: NorFlash>(
        &mut self,
        banks: &mut B,
        st: &Persistent,
        offset: u32,
        data: &[u8],
    ) -> Result<(), ErrorCode> {
        let Some(mut s) = self.session else {
            return Err(ErrorCode::BadState);
        };
        if offset != s.next {
            return Err(ErrorCode::BadState);
        }
        let end = offset
            .checked_add(data.len() as u32)
            .filter(|&e| e <= s.total_len)
            .ok_or(ErrorCode::OutOfRange)?;
        let ws = B::WRITE_SIZE;
        let last = end == s.total_len;
        if !(offset as usize).is_multiple_of(ws) || (!last && !data.len().is_multiple_of(ws)) {
            return Err(ErrorCode::BadLength);
        }
        // Pad the last chunk with erased bytes to the write size.
        let mut buf = [0xFFu8; 64];
        let padded = data.len().div_ceil(ws) * ws;
        if padded > buf.len() {
            return Err(ErrorCode::BadLength);
        }
        buf[..data.len()].copy_from_slice(data);
        let base = Self::inactive_base(banks, st);
        if let Err(_e) = banks.write(base + offset, &buf[..padded]) {
            self.session = None;
            return Err(ErrorCode::Storage);
        }
        s.next = end;
        self.session = Some(s);
        Ok(())
    }

    /// `FwFinish`: verifies the image in the inactive bank. On success
    /// updates `st` (the caller commits it) and returns the new info.
    pub fn finish<B: NorFlash>(
        &mut self,
        banks: &mut B,
        st: &mut Persistent,
        key: &VerifyingKey,
    ) -> Result<FwInfo, ErrorCode> {
        let s = self.session.take().ok_or(ErrorCode::BadState)?;
        if s.next != s.total_len {
            return Err(ErrorCode::BadState);
        }
        let base = Self::inactive_base(banks, st);
        let mut header = [0u8; HEADER_LEN];
        banks
            .read(base, &mut header)
            .map_err(|_| ErrorCode::Storage)?;
        let version = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let payload_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if header[0..4] != MAGIC
            || version != s.version
            || payload_len as usize + HEADER_LEN != s.total_len as usize
        {
            return Err(ErrorCode::BadSignature);
        }
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&header[12..76]);
        let sig = Signature::from_bytes(&sig);
        let mut v = key
            .verify_stream(&sig)
            .map_err(|_| ErrorCode::BadSignature)?;
        v.update(&header[0..12]);
        let mut off = HEADER_LEN as u32;
        let mut buf = [0u8; 256];
        while off < s.total_len {
            let n = ((s.total_len - off) as usize).min(buf.len());
            banks
                .read(base + off, &mut buf[..n])
                .map_err(|_| ErrorCode::Storage)?;
            v.update(&buf[..n]);
            off += n as u32;
        }
        v.finalize_and_verify()
            .map_err(|_| ErrorCode::BadSignature)?;
        st.fw_version = version;
        st.fw_bank = 1 - st.fw_bank;
        Ok(FwInfo {
            version,
            bank: st.fw_bank,
        })
    }

    /// Drops an update in progress.
    pub fn abort(&mut self) {
        self.session = None;
    }
}
