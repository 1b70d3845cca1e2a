//! The BMC's persistent state and its byte layout (the payload of a flash
//! record, see [`crate::store`]).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | layout version, `4` |
//! | 1 | 1 | flags: bit 0 = slot B forced for the next boot (one-shot), bit 1 = the clock was set, bit 2 = a unit key is stored |
//! | 2 | 2 | reserved, `0` |
//! | 4 | 4 | boot count (u32 LE): power-ons that chose a slot |
//! | 8 | 8 | time floor (u64 LE, Unix seconds): the clock never reads earlier |
//! | 16 | 4 | rollback minimum, boot image (u32 LE) |
//! | 20 | 4 | rollback minimum, stage1 (u32 LE) |
//! | 24 | 12 | slot A: priority u8, tries u8, successful u8 (0/1), reserved u8, security version boot image u32, stage1 u32 |
//! | 36 | 12 | slot B: same layout |
//! | 48 | 4 | BMC firmware version (u32 LE) |
//! | 52 | 1 | BMC firmware bank (0/1) |
//! | 53 | 3 | reserved, `0` |
//! | 56 | 32 | unit key (all `00` when none is stored) |
//! | 88 | 4 | update refusals reported (u32 LE, saturating) |
//! | 92 | 1 | last refusal's reason (`RefusalReason` byte; `0` when none) |
//! | 93 | 4 | last refusal's epoch (u32 LE; `0` when none) |
//! | 97 | 3 | reserved, `0` |
//! | 100 | 16 | TUF version floors: root, timestamp, snapshot, targets (u32 LE each) |
//!
//! Bytes 88…96 are exactly GetRefusal's payload, bytes 100…115
//! GetTufFloors'.
//!
//! Older layouts are read once to migrate a BMC whose flash holds none of
//! the current records; the next commit writes layout 4. Layout 3 (100
//! bytes, [`Persistent::decode_v3`]) is this one up to offset 100: no
//! floors kept. Layout 2 (88 bytes, [`Persistent::decode_v2`]): up to
//! offset 88, no refusal recorded either. Layout 1 (56 bytes,
//! [`Persistent::decode_v1`]): the same fields up to offset 56, flags bit
//! 0 only, no key.

use racklet_bmc_proto::{
    ImageKind, Refusals, SecurityVersion, Slot, SlotInfo, TufFloors, UnitKey, UnixTime,
};

/// Size of the encoded state.
pub const STATE_LEN: usize = 116;
const LAYOUT_VERSION: u8 = 4;

/// Highest slot priority.
pub const PRIORITY_ACTIVE: u8 = 15;

/// Everything the BMC keeps across power loss.
///
/// Changes are made in memory; [`crate::Bmc`] writes them with one
/// [`crate::store::Store::commit`] after each event or request, so every
/// change of a request reaches flash before its response is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persistent {
    /// Slot B forced for the next boot (one-shot, set by a long press).
    pub force_b: bool,
    /// Power-ons that chose a slot.
    pub boot_count: u32,
    /// The clock never reads earlier than this.
    pub time_floor: UnixTime,
    /// The clock was set at least once (a factory BMC's reads 1970 + uptime).
    pub clock_set: bool,
    /// The unit key shared with stage1, once provisioned. Only a very long
    /// button press (physical presence) clears it.
    pub key: Option<UnitKey>,
    /// Anti-rollback minimum per image kind.
    pub rollback_min: [SecurityVersion; ImageKind::COUNT],
    /// Slot metadata, by [`Slot::index`].
    pub slots: [SlotInfo; 2],
    /// Newest accepted BMC firmware version.
    pub fw_version: u32,
    /// Bank holding it.
    pub fw_bank: u8,
    /// Update refusals stage1 reported, and the last one. Only a factory
    /// reset (erasing the flash) clears them: history matters.
    pub refusals: Refusals,
    /// The newest TUF metadata versions stage1 trusted (its floors for a
    /// node whose trusted state does not survive a reboot). Only raised;
    /// a factory reset clears them.
    pub tuf_floors: TufFloors,
}

impl Persistent {
    /// The state of a freshly formatted BMC: slot A holds the factory image,
    /// known good, and is active; slot B is empty. Both have `max_tries`.
    pub fn factory(max_tries: u8) -> Persistent {
        Persistent {
            force_b: false,
            boot_count: 0,
            time_floor: UnixTime(0),
            clock_set: false,
            key: None,
            rollback_min: [SecurityVersion(0); ImageKind::COUNT],
            slots: [
                SlotInfo {
                    priority: PRIORITY_ACTIVE,
                    tries: max_tries,
                    successful: true,
                    versions: [SecurityVersion(0); ImageKind::COUNT],
                },
                SlotInfo {
                    priority: PRIORITY_ACTIVE - 1,
                    tries: max_tries,
                    successful: false,
                    versions: [SecurityVersion(0); ImageKind::COUNT],
                },
            ],
            fw_version: 1,
            fw_bank: 0,
            refusals: Refusals::default(),
            tuf_floors: TufFloors::default(),
        }
    }

    /// One slot's metadata.
    pub fn slot(&self, s: Slot) -> &SlotInfo {
        &self.slots[s.index()]
    }

    /// One slot's metadata, mutable.
    pub fn slot_mut(&mut self, s: Slot) -> &mut SlotInfo {
        &mut self.slots[s.index()]
    }

    /// Encodes the layout in the module docs.
    pub fn encode(&self) -> [u8; STATE_LEN] {
        let mut b = [0u8; STATE_LEN];
        b[0] = LAYOUT_VERSION;
        b[1] = self.force_b as u8 | (self.clock_set as u8) << 1 | (self.key.is_some() as u8) << 2;
        b[4..8].copy_from_slice(&self.boot_count.to_le_bytes());
        b[8..16].copy_from_slice(&self.time_floor.0.to_le_bytes());
        for (i, v) in self.rollback_min.iter().enumerate() {
            b[16 + 4 * i..20 + 4 * i].copy_from_slice(&v.0.to_le_bytes());
        }
        for (i, s) in self.slots.iter().enumerate() {
            let o = 24 + 12 * i;
            b[o] = s.priority;
            b[o + 1] = s.tries;
            b[o + 2] = s.successful as u8;
            for (k, v) in s.versions.iter().enumerate() {
                b[o + 4 + 4 * k..o + 8 + 4 * k].copy_from_slice(&v.0.to_le_bytes());
            }
        }
        b[48..52].copy_from_slice(&self.fw_version.to_le_bytes());
        b[52] = self.fw_bank;
        if let Some(k) = &self.key {
            b[56..88].copy_from_slice(k.as_bytes());
        }
        b[88..97].copy_from_slice(&self.refusals.to_bytes());
        b[100..116].copy_from_slice(&self.tuf_floors.to_bytes());
        b
    }

    /// Decodes the layout; `None` for an unknown layout version or a field
    /// out of range (the record is then treated as absent).
    pub fn decode(b: &[u8; STATE_LEN]) -> Option<Persistent> {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        if b[0] != LAYOUT_VERSION || b[1] > 0b111 || b[52] > 1 || b[97..100] != [0; 3] {
            return None;
        }
        let mut r = [0u8; 9];
        r.copy_from_slice(&b[88..97]);
        let refusals = Refusals::from_bytes(&r).ok()?;
        let mut f = [0u8; TufFloors::LEN];
        f.copy_from_slice(&b[100..116]);
        let key = if b[1] & 4 != 0 {
            let mut k = [0u8; 32];
            k.copy_from_slice(&b[56..88]);
            Some(UnitKey::from_bytes(k))
        } else if b[56..88].iter().any(|&x| x != 0) {
            return None;
        } else {
            None
        };
        let mut slots = [SlotInfo::default(); 2];
        for (i, s) in slots.iter_mut().enumerate() {
            let o = 24 + 12 * i;
            if b[o + 2] > 1 || b[o] > PRIORITY_ACTIVE {
                return None;
            }
            s.priority = b[o];
            s.tries = b[o + 1];
            s.successful = b[o + 2] == 1;
            for (k, v) in s.versions.iter_mut().enumerate() {
                *v = SecurityVersion(u32_at(o + 4 + 4 * k));
            }
        }
        let mut floor = [0u8; 8];
        floor.copy_from_slice(&b[8..16]);
        Some(Persistent {
            force_b: b[1] & 1 != 0,
            clock_set: b[1] & 2 != 0,
            key,
            boot_count: u32_at(4),
            time_floor: UnixTime(u64::from_le_bytes(floor)),
            rollback_min: [SecurityVersion(u32_at(16)), SecurityVersion(u32_at(20))],
            slots,
            fw_version: u32_at(48),
            fw_bank: b[52],
            refusals,
            tuf_floors: TufFloors::from_bytes(&f),
        })
    }
}

/// Size of the layout-3 state (in 116-byte records).
pub const STATE_LEN_V3: usize = 100;

/// Size of the layout-2 state (in 104-byte records).
pub const STATE_LEN_V2: usize = 88;

/// Size of the layout-1 state (in 72-byte records).
pub const STATE_LEN_V1: usize = 56;

impl Persistent {
    /// Decodes a layout-3 state (before the TUF floors): none kept.
    pub fn decode_v3(b: &[u8; STATE_LEN_V3]) -> Option<Persistent> {
        Persistent::decode_older(3, b)
    }

    /// Decodes a layout-2 state (before the refusal record): no refusal.
    pub fn decode_v2(b: &[u8; STATE_LEN_V2]) -> Option<Persistent> {
        Persistent::decode_older(2, b)
    }

    /// A state of an older `layout` that is this one's prefix.
    fn decode_older(layout: u8, b: &[u8]) -> Option<Persistent> {
        if b[0] != layout {
            return None;
        }
        let mut now = [0u8; STATE_LEN];
        now[..b.len()].copy_from_slice(b);
        now[0] = LAYOUT_VERSION;
        Persistent::decode(&now)
    }

    /// Decodes a layout-1 state (before the unit key and the clock flag):
    /// no key; the clock counts as set when its floor is not 0 (layout 1
    /// raised the floor only by SetTime).
    pub fn decode_v1(b: &[u8; STATE_LEN_V1]) -> Option<Persistent> {
        if b[0] != 1 || b[1] > 1 {
            return None;
        }
        let mut p = Persistent::decode_older(1, b)?;
        p.clock_set = p.time_floor.0 != 0;
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_byte_table() {
        let mut p = Persistent::factory(3);
        p.force_b = true;
        p.boot_count = 0x0403_0201;
        p.time_floor = UnixTime(0x1122_3344_5566_7788);
        p.rollback_min = [SecurityVersion(7), SecurityVersion(0x0102_0304)];
        p.slots[1].versions[0] = SecurityVersion(9);
        p.fw_version = 0xAABB_CCDD;
        p.fw_bank = 1;
        p.clock_set = true;
        p.key = Some(UnitKey::from_bytes([0xA5; 32]));
        p.refusals = Refusals {
            count: 0x0102_0304,
            last: Some(racklet_bmc_proto::LastRefusal {
                reason: racklet_bmc_proto::RefusalReason::Other,
                epoch: racklet_bmc_proto::Epoch(0x0A0B_0C0D),
            }),
        };
        p.tuf_floors = TufFloors([1, 0x0102_0304, 7, 0xFFFF_FFFF]);
        let b = p.encode();
        assert_eq!(b[0], 4);
        assert_eq!(
            &b[88..100],
            &[4, 3, 2, 1, 8, 0x0D, 0x0C, 0x0B, 0x0A, 0, 0, 0]
        );
        assert_eq!(
            &b[100..116],
            &[1, 0, 0, 0, 4, 3, 2, 1, 7, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(b[1], 0b111);
        assert_eq!(&b[56..88], &[0xA5; 32]);
        assert_eq!(&b[4..8], &[1, 2, 3, 4]);
        assert_eq!(&b[8..16], &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(&b[16..24], &[7, 0, 0, 0, 4, 3, 2, 1]);
        assert_eq!(&b[24..28], &[15, 3, 1, 0]);
        assert_eq!(&b[36..40], &[14, 3, 0, 0]);
        assert_eq!(&b[40..44], &[9, 0, 0, 0]);
        assert_eq!(&b[48..53], &[0xDD, 0xCC, 0xBB, 0xAA, 1]);
        assert_eq!(Persistent::decode(&b), Some(p));
        // No key: its bytes are zero and the flag is clear.
        p.key = None;
        p.refusals = Refusals::default();
        p.tuf_floors = TufFloors::default();
        let b = p.encode();
        assert_eq!((b[1], &b[56..88]), (0b011, &[0u8; 32][..]));
        assert_eq!(&b[88..116], &[0u8; 28]);
        assert_eq!(Persistent::decode(&b), Some(p));
    }

    #[test]
    fn refuses_unknown_layout_and_bad_flags() {
        let good = Persistent::factory(3).encode();
        for (at, val) in [
            (0, 1u8),
            (0, 2),
            (0, 3),
            (0, 5),
            (92, 1),
            (93, 1),
            (98, 1),
            (1, 8),
            (52, 2),
            (26, 2),
            (24, 16),
            (60, 1),
        ] {
            let mut b = good;
            b[at] = val;
            assert_eq!(Persistent::decode(&b), None, "byte {at} = {val}");
        }
        // A refusal's reason out of range.
        let mut b = good;
        b[88] = 1;
        b[92] = 9;
        assert_eq!(Persistent::decode(&b), None);
    }

    #[test]
    fn a_layout_2_state_decodes_with_no_refusal() {
        let mut p = Persistent::factory(3);
        p.boot_count = 41;
        p.key = Some(UnitKey::from_bytes([7; 32]));
        let mut v2 = [0u8; STATE_LEN_V2];
        v2.copy_from_slice(&p.encode()[..STATE_LEN_V2]);
        v2[0] = 2;
        assert_eq!(Persistent::decode_v2(&v2), Some(p));
        v2[0] = 3;
        assert_eq!(Persistent::decode_v2(&v2), None);
    }

    #[test]
    fn a_layout_3_state_decodes_with_no_floors() {
        let mut p = Persistent::factory(3);
        p.boot_count = 9;
        p.refusals.record(
            racklet_bmc_proto::RefusalReason::Rollback,
            racklet_bmc_proto::Epoch(8),
        );
        let mut v3 = [0u8; STATE_LEN_V3];
        v3.copy_from_slice(&p.encode()[..STATE_LEN_V3]);
        v3[0] = 3;
        assert_eq!(Persistent::decode_v3(&v3), Some(p));
        v3[0] = 4;
        assert_eq!(Persistent::decode_v3(&v3), None);
    }
}
