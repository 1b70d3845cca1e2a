//! The authenticated link: keys, the MAC and the counter of every
//! state-changing request.
//!
//! Each unit has a 32-byte **unit key** `K`, held only by its BMC (in
//! flash) and by stage1 (in RAM, for one boot). Frames are not MAC'd with
//! `K` itself but with a **session key** for one *epoch* — the BMC's boot
//! count, which every power-on or reset of the host done by the BMC raises:
//!
//! ```text
//! session key = HMAC-SHA256(K, "racklet-bmc-session-v1" ‖ epoch u32 LE)
//! ```
//!
//! A state-changing request ([`crate::Request::is_authenticated`]) carries a
//! 20-byte trailer after its usual block data:
//!
//! | bytes | field |
//! |---|---|
//! | payload | the command's data, as in the command table |
//! | 4 | counter u32 LE: strictly above every counter the BMC accepted this epoch |
//! | 16 | tag: the first 16 bytes of HMAC-SHA256(session key, `A<<1\|0` ‖ command ‖ payload ‖ epoch u32 LE ‖ counter u32 LE) |
//!
//! The epoch is not sent: the BMC MACs with its own, so a frame of another
//! epoch fails the tag (and its session key differs anyway). The BMC checks
//! the tag with [`verify`] (constant time, `hmac`'s `verify_truncated_left`),
//! then the counter, and counts the frame only when the request succeeds.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::types::SmbusAddr;

/// Length of the unit key and of a session key.
pub const KEY_LEN: usize = 32;
/// Length of the truncated HMAC-SHA256 tag.
pub const TAG_LEN: usize = 16;
/// Length of the counter.
pub const COUNTER_LEN: usize = 4;
/// Bytes an authenticated request adds to its block data.
pub const TRAILER_LEN: usize = COUNTER_LEN + TAG_LEN;
/// Half a session key: what one `GetSessionKey` answer carries (a response
/// payload holds at most 31 bytes).
pub const KEY_HALF_LEN: usize = KEY_LEN / 2;

const SESSION_LABEL: &[u8] = b"racklet-bmc-session-v1";

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8; KEY_LEN]) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts a 32-byte key"),
    }
}

/// The unit key `K`. Its `Debug` never shows the bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UnitKey([u8; KEY_LEN]);

impl UnitKey {
    /// A key from its bytes (stage1 draws them from the OS's CSPRNG).
    pub const fn from_bytes(b: [u8; KEY_LEN]) -> UnitKey {
        UnitKey(b)
    }

    /// The bytes (for flash and for the provisioning frame only).
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The session key of `epoch`.
    pub fn session(&self, epoch: Epoch) -> SessionKey {
        let mut m = mac(&self.0);
        m.update(SESSION_LABEL);
        m.update(&epoch.0.to_le_bytes());
        let mut k = [0u8; KEY_LEN];
        k.copy_from_slice(&m.finalize().into_bytes());
        SessionKey(k)
    }
}

impl core::fmt::Debug for UnitKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("UnitKey(<redacted>)")
    }
}

/// The key that MACs one epoch's frames. Its `Debug` never shows the bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionKey([u8; KEY_LEN]);

impl SessionKey {
    /// A session key from its bytes (stage1 reads them from the BMC in two halves).
    pub const fn from_bytes(b: [u8; KEY_LEN]) -> SessionKey {
        SessionKey(b)
    }

    /// Half `which` (0 or 1) of the key, as `GetSessionKey` answers it.
    pub fn half(&self, which: u8) -> KeyHalf {
        let at = if which == 0 { 0 } else { KEY_HALF_LEN };
        let mut h = [0u8; KEY_HALF_LEN];
        h.copy_from_slice(&self.0[at..at + KEY_HALF_LEN]);
        KeyHalf(h)
    }

    /// Joins the two halves.
    pub fn from_halves(first: &KeyHalf, second: &KeyHalf) -> SessionKey {
        let mut k = [0u8; KEY_LEN];
        k[..KEY_HALF_LEN].copy_from_slice(&first.0);
        k[KEY_HALF_LEN..].copy_from_slice(&second.0);
        SessionKey(k)
    }
}

impl core::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// Half a session key on the wire. Its `Debug` never shows the bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHalf(pub [u8; KEY_HALF_LEN]);

impl core::fmt::Debug for KeyHalf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KeyHalf(<redacted>)")
    }
}

/// An epoch: the BMC's boot count since its flash was formatted. Every
/// power-on or reset of the host done by the BMC starts a new one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u32);

/// The counter and tag an authenticated request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Strictly increasing within an epoch; the first usable one is 1.
    pub counter: u32,
    /// Truncated HMAC-SHA256.
    pub tag: [u8; TAG_LEN],
}

impl Trailer {
    /// Parses the last [`TRAILER_LEN`] bytes of a block.
    pub fn from_bytes(b: &[u8; TRAILER_LEN]) -> Trailer {
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&b[COUNTER_LEN..]);
        Trailer {
            counter: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            tag,
        }
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[..COUNTER_LEN].copy_from_slice(&self.counter.to_le_bytes());
        b[COUNTER_LEN..].copy_from_slice(&self.tag);
        b
    }
}

fn tag_mac(
    key: &SessionKey,
    addr: SmbusAddr,
    command: u8,
    payload: &[u8],
    epoch: Epoch,
    counter: u32,
) -> HmacSha256 {
    let mut m = mac(&key.0);
    m.update(&[addr.write_byte(), command]);
    m.update(payload);
    m.update(&epoch.0.to_le_bytes());
    m.update(&counter.to_le_bytes());
    m
}

/// The tag of a request (see the module docs for what it covers).
pub fn tag(
    key: &SessionKey,
    addr: SmbusAddr,
    command: u8,
    payload: &[u8],
    epoch: Epoch,
    counter: u32,
) -> [u8; TAG_LEN] {
    let full = tag_mac(key, addr, command, payload, epoch, counter)
        .finalize()
        .into_bytes();
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(&full[..TAG_LEN]);
    t
}

/// True when `trailer` carries the right tag for this request in `epoch`.
/// Constant time in the tag.
pub fn verify(
    key: &SessionKey,
    addr: SmbusAddr,
    command: u8,
    payload: &[u8],
    epoch: Epoch,
    trailer: &Trailer,
) -> bool {
    tag_mac(key, addr, command, payload, epoch, trailer.counter)
        .verify_truncated_left(&trailer.tag)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        let out = m.finalize().into_bytes();
        assert_eq!(out[..8], [0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e]);
    }

    #[test]
    fn session_keys_differ_per_epoch_and_debug_hides_keys() {
        let k = UnitKey::from_bytes([7; 32]);
        assert_ne!(k.session(Epoch(1)), k.session(Epoch(2)));
        let s = k.session(Epoch(1));
        assert_eq!(SessionKey::from_halves(&s.half(0), &s.half(1)), s);
        let shown = std::format!("{k:?} {s:?} {:?}", s.half(0));
        assert!(!shown.contains("7,"), "{shown}");
    }
}
