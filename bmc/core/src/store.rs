//! Power-fail-safe storage of [`Persistent`] on NOR flash.
//!
//! Two sectors, used as an append-only log. Each commit appends one
//! fixed-size record to the active sector; when it is full (or holds a torn
//! record) the *other* sector is erased and the record goes to its start, so
//! erases alternate between the two sectors (wear spread: one erase per
//! `sector / 132` commits). On mount the valid record with the highest
//! sequence number wins.
//!
//! Record (132 bytes, 4-byte aligned):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `"RKST"` (`52 4B 53 54`) |
//! | 4 | 4 | sequence number (u32 LE), +1 per commit |
//! | 8 | 116 | state, see [`crate::state`] |
//! | 124 | 4 | CRC-32/ISO-HDLC (zlib) of bytes 0..124, u32 LE |
//! | 128 | 4 | commit mark `00 00 00 00`, written last, in its own write |
//!
//! Older layouts had the same frame around a shorter state: 116-byte
//! records (layout 3), 104-byte ones (layout 2) and 72-byte ones (layout 1). A flash holding no
//! current record is migrated from the newest older one (see
//! [`Store::mount`]).
//!
//! A record counts only when magic, CRC and commit mark are all right. A
//! power cut while writing bytes 0..128 leaves the mark erased (`FF FF FF FF`);
//! a cut while writing the mark leaves it partly programmed (not all zero);
//! a cut while erasing the other sector leaves that sector holding no record
//! newer than the active one. In each case the previous record still wins:
//! the state after a cut is the old one or the new one, never a third
//! (tested at every write and erase index in `tests/power_cut.rs`).

use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind};

use crate::state::{Persistent, STATE_LEN};

/// Size of one record.
pub const RECORD_LEN: usize = 8 + STATE_LEN + 8;
const MAGIC: [u8; 4] = *b"RKST";
/// Where the CRC sits (after magic, sequence and state).
const CRC_AT: usize = 8 + STATE_LEN;
const COMMIT: [u8; 4] = [0; 4];

/// Why the store failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The flash is too small or its geometry does not fit records.
    #[error("flash geometry unusable: need two sectors of at least {RECORD_LEN} bytes, write size dividing 4")]
    Geometry,
    /// A flash operation failed.
    #[error("flash {op} at 0x{offset:x} failed: {kind:?}")]
    Flash {
        /// `"read"`, `"write"` or `"erase"`.
        op: &'static str,
        /// Where.
        offset: u32,
        /// The driver's error kind.
        kind: NorFlashErrorKind,
    },
    /// A record read back differs from what was written.
    #[error("record at 0x{offset:x} reads back wrong")]
    Verify {
        /// Where.
        offset: u32,
    },
}

fn flash_err<E: NorFlashError>(op: &'static str, offset: u32) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Flash {
        op,
        offset,
        kind: e.kind(),
    }
}

/// CRC-32/ISO-HDLC (the zlib/PNG CRC), bitwise; check value of "123456789" is 0xCBF43926.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The state store on one NOR flash (its first two sectors).
#[derive(Debug)]
pub struct Store<F> {
    flash: F,
    sector: u32,
    /// Sector holding the newest record.
    active: u32,
    /// Where the next record goes in `active`, or `None` if the next commit
    /// must move to the other sector.
    next: Option<u32>,
    seq: u32,
    current: Persistent,
    /// True when the state came from flash (false: factory state, nothing stored).
    found: bool,
}

impl<F: NorFlash> Store<F> {
    /// Reads the newest valid record; a flash with none yields `factory`.
    pub fn mount(mut flash: F, factory: Persistent) -> Result<Store<F>, StoreError> {
        let sector = F::ERASE_SIZE;
        if sector < RECORD_LEN || 4 % F::WRITE_SIZE != 0 || flash.capacity() < 2 * sector {
            return Err(StoreError::Geometry);
        }
        let sector = sector as u32;
        let mut best: Option<(u32, u32, Persistent)> = None; // (seq, sector base, state)
        let mut ends = [None; 2]; // per sector: Some(next free offset) if clean after the last record
        for (i, base) in [0, sector].into_iter().enumerate() {
            let mut off = 0u32;
            let mut clean = true;
            while off + RECORD_LEN as u32 <= sector {
                let mut rec = [0u8; RECORD_LEN];
                flash
                    .read(base + off, &mut rec)
                    .map_err(flash_err("read", base + off))?;
                if rec.iter().all(|&b| b == 0xFF) {
                    break;
                }
                match parse_record(&rec) {
                    Some((seq, state)) => {
                        if best.is_none_or(|(s, _, _)| seq > s) {
                            best = Some((seq, base, state));
                        }
                        off += RECORD_LEN as u32;
                    }
                    None => {
                        clean = false;
                        break;
                    }
                }
            }
            if clean && off + RECORD_LEN as u32 <= sector {
                // The rest of the sector must be erased to append there.
                let mut rest = [0u8; 64];
                let mut o = off;
                while o < sector && clean {
                    let n = (sector - o).min(64) as usize;
                    flash
                        .read(base + o, &mut rest[..n])
                        .map_err(flash_err("read", base + o))?;
                    clean = rest[..n].iter().all(|&b| b == 0xFF);
                    o += n as u32;
                }
            } else {
                clean = false;
            }
            ends[i] = clean.then_some(off);
        }
        if best.is_none() {
            // A BMC updated from an older layout (shorter records): carry
            // its counters over; the first commit writes the current
            // layout into the other sector, and until it lands the older
            // records stay. The newest older layout found wins.
            let mut older = newest_older::<_, RECORD_LEN_V3>(&mut flash, sector, decode_v3)?;
            if older.is_none() {
                older = newest_older::<_, RECORD_LEN_V2>(&mut flash, sector, decode_v2)?;
            }
            if older.is_none() {
                older = newest_older::<_, RECORD_LEN_V1>(&mut flash, sector, decode_v1)?;
            }
            if let Some((seq, base, state)) = older {
                return Ok(Store {
                    flash,
                    sector,
                    active: base,
                    next: None,
                    seq,
                    current: state,
                    found: true,
                });
            }
        }
        Ok(match best {
            Some((seq, base, state)) => Store {
                flash,
                sector,
                active: base,
                next: ends[(base / sector) as usize],
                seq,
                current: state,
                found: true,
            },
            None => Store {
                flash,
                sector,
                // Nothing valid: the first commit erases sector 0 and writes there.
                active: sector,
                next: None,
                seq: 0,
                current: factory,
                found: false,
            },
        })
    }

    /// The state as last committed (or found at mount).
    pub fn current(&self) -> &Persistent {
        &self.current
    }

    /// True when mount found a record (false: factory state).
    pub fn found_record(&self) -> bool {
        self.found
    }

    /// Sequence number of the newest record (0: none).
    pub fn sequence(&self) -> u32 {
        self.seq
    }

    /// The flash, e.g. to inspect wear in tests.
    pub fn flash(&self) -> &F {
        &self.flash
    }

    /// Gives the flash back.
    pub fn into_flash(self) -> F {
        self.flash
    }

    /// Makes `state` durable. Writes nothing when it equals the current state.
    /// On error the store still reports the old state, and the next commit
    /// starts in a freshly erased sector.
    pub fn commit(&mut self, state: &Persistent) -> Result<(), StoreError> {
        if *state == self.current {
            return Ok(());
        }
        let (base, off) = match self.next {
            Some(off) if off + RECORD_LEN as u32 <= self.sector => (self.active, off),
            _ => {
                let other = if self.active == 0 { self.sector } else { 0 };
                // Until this commit completes, nothing may be appended to `other`.
                self.next = None;
                self.flash
                    .erase(other, other + self.sector)
                    .map_err(flash_err("erase", other))?;
                (other, 0)
            }
        };
        let seq = self.seq.wrapping_add(1);
        let rec = build_record(seq, state);
        let at = base + off;
        // From here a failure leaves garbage at `at`: move on next time.
        self.next = None;
        self.flash
            .write(at, &rec[..RECORD_LEN - 4])
            .map_err(flash_err("write", at))?;
        self.flash
            .write(at + RECORD_LEN as u32 - 4, &COMMIT)
            .map_err(flash_err("write", at + RECORD_LEN as u32 - 4))?;
        let mut back = [0u8; RECORD_LEN];
        self.flash
            .read(at, &mut back)
            .map_err(flash_err("read", at))?;
        if back != rec {
            return Err(StoreError::Verify { offset: at });
        }
        self.active = base;
        self.next = Some(off + RECORD_LEN as u32);
        self.seq = seq;
        self.current = *state;
        self.found = true;
        Ok(())
    }
}

/// Length of a layout-3 record (100-byte state).
const RECORD_LEN_V3: usize = 8 + crate::state::STATE_LEN_V3 + 8;
/// Length of a layout-2 record (88-byte state).
const RECORD_LEN_V2: usize = 8 + crate::state::STATE_LEN_V2 + 8;
/// Length of a layout-1 record (56-byte state).
const RECORD_LEN_V1: usize = 8 + crate::state::STATE_LEN_V1 + 8;

fn decode_v3(s: &[u8]) -> Option<Persistent> {
    Persistent::decode_v3(s.try_into().ok()?)
}

fn decode_v2(s: &[u8]) -> Option<Persistent> {
    Persistent::decode_v2(s.try_into().ok()?)
}

fn decode_v1(s: &[u8]) -> Option<Persistent> {
    Persistent::decode_v1(s.try_into().ok()?)
}

/// The newest valid record of an older layout with `LEN`-byte records:
/// (sequence, sector base, state).
fn newest_older<F: NorFlash, const LEN: usize>(
    flash: &mut F,
    sector: u32,
    decode: fn(&[u8]) -> Option<Persistent>,
) -> Result<Option<(u32, u32, Persistent)>, StoreError> {
    let mut best: Option<(u32, u32, Persistent)> = None;
    for base in [0, sector] {
        let mut off = 0u32;
        while off + LEN as u32 <= sector {
            let mut rec = [0u8; LEN];
            flash
                .read(base + off, &mut rec)
                .map_err(flash_err("read", base + off))?;
            let Some((seq, state)) = parse_older(&rec, decode) else {
                break;
            };
            if best.as_ref().is_none_or(|(s, _, _)| seq > *s) {
                best = Some((seq, base, state));
            }
            off += LEN as u32;
        }
    }
    Ok(best)
}

/// magic ‖ seq ‖ state ‖ CRC ‖ commit mark, as in every layout.
fn parse_older(rec: &[u8], decode: fn(&[u8]) -> Option<Persistent>) -> Option<(u32, Persistent)> {
    let crc_at = rec.len() - 8;
    if rec[0..4] != MAGIC || rec[crc_at + 4..] != COMMIT {
        return None;
    }
    let crc = u32::from_le_bytes(rec[crc_at..crc_at + 4].try_into().ok()?);
    if crc != crc32(&rec[..crc_at]) {
        return None;
    }
    let seq = u32::from_le_bytes(rec[4..8].try_into().ok()?);
    Some((seq, decode(&rec[8..crc_at])?))
}

fn build_record(seq: u32, state: &Persistent) -> [u8; RECORD_LEN] {
    let mut rec = [0u8; RECORD_LEN];
    rec[0..4].copy_from_slice(&MAGIC);
    rec[4..8].copy_from_slice(&seq.to_le_bytes());
    rec[8..8 + STATE_LEN].copy_from_slice(&state.encode());
    let crc = crc32(&rec[..CRC_AT]);
    rec[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    rec[CRC_AT + 4..RECORD_LEN].copy_from_slice(&COMMIT);
    rec
}

fn parse_record(rec: &[u8; RECORD_LEN]) -> Option<(u32, Persistent)> {
    if rec[0..4] != MAGIC || rec[CRC_AT + 4..RECORD_LEN] != COMMIT {
        return None;
    }
    let crc = u32::from_le_bytes([
        rec[CRC_AT],
        rec[CRC_AT + 1],
        rec[CRC_AT + 2],
        rec[CRC_AT + 3],
    ]);
    if crc != crc32(&rec[..CRC_AT]) {
        return None;
    }
    let seq = u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
    let mut s = [0u8; STATE_LEN];
    s.copy_from_slice(&rec[8..CRC_AT]);
    Some((seq, Persistent::decode(&s)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memflash::{MemFlash, SECTOR};

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn record_matches_the_byte_table() {
        let p = Persistent::factory(3);
        let rec = build_record(0x0102_0304, &p);
        assert_eq!(&rec[0..4], &[0x52, 0x4B, 0x53, 0x54]);
        assert_eq!(&rec[4..8], &[4, 3, 2, 1]);
        assert_eq!(RECORD_LEN, 132);
        assert_eq!(&rec[8..124], &p.encode());
        assert_eq!(&rec[124..128], &crc32(&rec[..124]).to_le_bytes());
        assert_eq!(&rec[128..132], &[0, 0, 0, 0]);
    }

    #[test]
    fn empty_flash_mounts_factory_and_first_commit_lands() {
        let f = MemFlash::<{ 2 * SECTOR }>::new();
        let mut s = Store::mount(f, Persistent::factory(3)).unwrap();
        assert!(!s.found_record());
        let mut p = Persistent::factory(3);
        p.boot_count = 1;
        s.commit(&p).unwrap();
        let s2 = Store::mount(s.into_flash(), Persistent::factory(3)).unwrap();
        assert_eq!(s2.current(), &p);
        assert_eq!(s2.sequence(), 1);
    }

    #[test]
    fn many_commits_alternate_sectors_and_spread_erases() {
        let f = MemFlash::<{ 2 * SECTOR }>::new();
        let mut s = Store::mount(f, Persistent::factory(3)).unwrap();
        let per_sector = (SECTOR / RECORD_LEN) as u32;
        let mut p = Persistent::factory(3);
        for i in 0..10 * per_sector {
            p.boot_count = i + 1;
            s.commit(&p).unwrap();
        }
        let erases = s.flash().erases;
        assert_eq!(erases[0], 5);
        assert_eq!(erases[1], 5);
        let s2 = Store::mount(s.into_flash(), Persistent::factory(3)).unwrap();
        assert_eq!(s2.current().boot_count, 10 * per_sector);
    }

    #[test]
    fn unchanged_state_writes_nothing() {
        let f = MemFlash::<{ 2 * SECTOR }>::new();
        let mut s = Store::mount(f, Persistent::factory(3)).unwrap();
        let p = Persistent::factory(3);
        s.commit(&p).unwrap();
        let ops = s.flash().ops;
        s.commit(&p).unwrap();
        assert_eq!(s.flash().ops, ops);
    }

    #[test]
    fn a_layout_1_flash_is_migrated_and_its_counters_kept() {
        use racklet_bmc_proto::{SecurityVersion, UnixTime};
        // A layout-1 record as the previous firmware wrote it.
        let mut old = Persistent::factory(3);
        old.rollback_min[0] = SecurityVersion(4);
        old.boot_count = 77;
        old.time_floor = UnixTime(1_800_000_000);
        let mut f = MemFlash::<{ 2 * SECTOR }>::new();
        f.write(SECTOR as u32, &older_record::<RECORD_LEN_V1>(1, 9, &old))
            .unwrap();
        let mut s = Store::mount(f, Persistent::factory(3)).unwrap();
        let got = *s.current();
        assert_eq!(got.rollback_min[0], SecurityVersion(4));
        assert_eq!((got.boot_count, got.key, got.clock_set), (77, None, true));
        // The first commit writes the current layout, into the other sector.
        let mut next = got;
        next.boot_count = 78;
        s.commit(&next).unwrap();
        let s = Store::mount(s.into_flash(), Persistent::factory(3)).unwrap();
        assert_eq!(*s.current(), next);
        assert_eq!(s.sequence(), 10);
    }

    /// A record of an older `layout` (`LEN` bytes) as that firmware wrote
    /// it: its state is the current one's prefix.
    fn older_record<const LEN: usize>(layout: u8, seq: u32, p: &Persistent) -> [u8; LEN] {
        let mut rec = [0u8; LEN];
        let crc_at = LEN - 8;
        rec[0..4].copy_from_slice(&MAGIC);
        rec[4..8].copy_from_slice(&seq.to_le_bytes());
        rec[8..crc_at].copy_from_slice(&p.encode()[..crc_at - 8]);
        rec[8] = layout;
        let crc = crc32(&rec[..crc_at]);
        rec[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        rec[crc_at + 4..].copy_from_slice(&COMMIT);
        rec
    }

    /// A flash of an older `layout`: two records in sector 1, the newer one
    /// last. Its state has what that layout holds (a key, a refusal for 3).
    fn older_flash<const LEN: usize>(layout: u8) -> (MemFlash<{ 2 * SECTOR }>, Persistent) {
        use racklet_bmc_proto::{SecurityVersion, UnitKey};
        let mut p = Persistent::factory(3);
        p.rollback_min[1] = SecurityVersion(6);
        p.boot_count = 300;
        p.key = Some(UnitKey::from_bytes([0x3C; 32]));
        p.clock_set = true;
        if layout >= 3 {
            p.refusals.record(
                racklet_bmc_proto::RefusalReason::Signature,
                racklet_bmc_proto::Epoch(299),
            );
        }
        let mut older = p;
        older.boot_count = 299;
        let mut f = MemFlash::<{ 2 * SECTOR }>::new();
        f.write(SECTOR as u32, &older_record::<LEN>(layout, 20, &older))
            .unwrap();
        f.write((SECTOR + LEN) as u32, &older_record::<LEN>(layout, 21, &p))
            .unwrap();
        (f, p)
    }

    /// The change the first commit after a migration makes: a refusal and
    /// a floor, which no older layout could hold.
    fn after_migration(p: &Persistent) -> Persistent {
        let mut next = *p;
        next.refusals.record(
            racklet_bmc_proto::RefusalReason::Rollback,
            racklet_bmc_proto::Epoch(300),
        );
        next.tuf_floors
            .raise(racklet_bmc_proto::TufRole::Timestamp, 41);
        next
    }

    #[test]
    fn a_layout_2_or_3_flash_is_migrated_with_its_key_and_no_floors() {
        for (layout, (f, p)) in [
            (2, older_flash::<RECORD_LEN_V2>(2)),
            (3, older_flash::<RECORD_LEN_V3>(3)),
        ] {
            let mut s = Store::mount(f, Persistent::factory(3)).unwrap();
            assert_eq!(*s.current(), p, "layout {layout}");
            assert_eq!(s.current().tuf_floors, Default::default());
            assert_eq!(s.sequence(), 21);
            let next = after_migration(&p);
            s.commit(&next).unwrap();
            let s = Store::mount(s.into_flash(), Persistent::factory(3)).unwrap();
            assert_eq!((*s.current(), s.sequence()), (next, 22), "layout {layout}");
        }
    }

    #[test]
    fn a_cut_at_every_op_of_the_migrating_commit_leaves_the_old_layout_or_the_new() {
        for (f, p) in [
            older_flash::<RECORD_LEN_V2>(2),
            older_flash::<RECORD_LEN_V3>(3),
        ] {
            let next = after_migration(&p);
            let mut probe = Store::mount(f.clone(), Persistent::factory(3)).unwrap();
            let before = probe.flash().ops;
            probe.commit(&next).unwrap();
            let ops = probe.flash().ops - before;
            assert!(ops >= 3, "erase, record, mark: {ops}");
            for k in 0..ops {
                let mut cut = f.clone();
                cut.cut_power_at(k);
                let mut s = Store::mount(cut, Persistent::factory(3)).unwrap();
                assert!(s.commit(&next).is_err(), "cut at op {k}");
                let mut cut = s.into_flash();
                cut.restore_power();
                let mut s = Store::mount(cut, Persistent::factory(3)).unwrap();
                let got = *s.current();
                assert!(got == p || got == next, "cut at op {k}: {got:?}");
                // And the store goes on: the migration is retried and lands.
                s.commit(&next).unwrap();
                let s = Store::mount(s.into_flash(), Persistent::factory(3)).unwrap();
                assert_eq!(*s.current(), next, "after cut {k}");
            }
        }
    }

    #[test]
    fn refuses_a_flash_with_one_sector() {
        let f = MemFlash::<SECTOR>::new();
        assert_eq!(
            Store::mount(f, Persistent::factory(3)).err(),
            Some(StoreError::Geometry)
        );
    }
}
