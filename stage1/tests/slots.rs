//! The slot store under attack: power cuts at every write and fsync of an
//! update, torn and corrupted headers, a truncated disk, a full disk.

mod common;

use common::disk::CrashDisk;
use common::{bytes, image_of};
use racklet_bmc_proto::Slot;
use stage1::install::{install_from_reader, Session};
use stage1::slots::{HeaderError, SlotStatus, SlotStore, COPY_OFFSETS};
use stage1::Error;

const DISK: usize = 4 << 20;

/// A disk with `old` installed and active in slot A.
fn disk_with_a(old: &[u8]) -> CrashDisk {
    let mut store = SlotStore::format(CrashDisk::new(DISK)).unwrap();
    install_from_reader(
        &mut store,
        Slot::A,
        image_of("os-1.uki", "1.0.0", 1, old),
        old,
    )
    .unwrap();
    store.into_disk()
}

/// Installs `new` into `slot` in 4 KiB chunks.
fn install(store: &mut SlotStore<CrashDisk>, slot: Slot, new: &[u8]) -> stage1::Result<()> {
    let mut s = Session::begin(store, slot, image_of("os-2.uki", "2.0.0", 2, new))?;
    for c in new.chunks(4096) {
        s.write(c)?;
    }
    s.finish().map(|_| ())
}

/// What a node does at boot: open the header, take the active slot, verify it.
fn boots(image: Vec<u8>) -> Vec<u8> {
    let mut store = SlotStore::open(CrashDisk::from_bytes(image)).expect("a header survives");
    let active = store.state().active.expect("a slot is active");
    let mut got = Vec::new();
    store
        .read_verified(active, |c| {
            got.extend_from_slice(c);
            Ok(())
        })
        .expect("the active slot verifies");
    got
}

#[test]
fn power_cut_at_every_write_and_fsync_of_an_update_leaves_a_verified_slot() {
    let old = bytes(300 * 1024, 1);
    let new = bytes(384 * 1024 + 123, 2);
    // Count the operations of an uninterrupted update.
    let base = disk_with_a(&old);
    let mut counted = SlotStore::open(base.clone()).unwrap();
    let start = counted.state().clone();
    install(&mut counted, Slot::B, &new).unwrap();
    let total = counted.into_disk().ops - base.ops;
    assert!(total > 100, "only {total} operations");
    let _ = start;

    let mut points = 0;
    let (mut saw_old, mut saw_new) = (0, 0);
    for n in 0..total {
        for seed in 0..3u64 {
            let mut d = base.clone();
            d.cut_power_after(n);
            let mut store = SlotStore::open(d).unwrap();
            let err = install(&mut store, Slot::B, &new).unwrap_err();
            assert!(matches!(err, Error::Disk { .. }), "{err}");
            let d = store.into_disk();
            assert!(d.is_dead());
            let survived = d.after_power_loss(seed * 7919 + n as u64);
            let booted = boots(survived.clone());
            if booted == old {
                saw_old += 1;
            } else if booted == new {
                saw_new += 1;
            } else {
                panic!("crash point {n}: booted neither image");
            }
            // And the next boot can finish the update from there.
            let mut store = SlotStore::open(CrashDisk::from_bytes(survived)).unwrap();
            if store.state().active == Some(Slot::A) {
                install(&mut store, Slot::B, &new).unwrap();
            }
            assert_eq!(boots(store.into_disk().durable()), new);
            points += 1;
        }
    }
    eprintln!("{points} crash points: old image booted {saw_old}×, new {saw_new}×");
    assert!(points >= 200, "{points} crash points");
    assert!(saw_old > 0 && saw_new > 0);
}

#[test]
fn the_active_slot_is_never_written() {
    let old = bytes(10_000, 1);
    let mut store = SlotStore::open(disk_with_a(&old)).unwrap();
    let err = install(&mut store, Slot::A, &old).unwrap_err();
    assert!(matches!(err, Error::ActiveSlot(Slot::A)), "{err}");
    assert!(matches!(
        store.write_slot(Slot::A, 0, b"x"),
        Err(Error::ActiveSlot(Slot::A))
    ));
    assert_eq!(boots(store.into_disk().durable()), old);
}

#[test]
fn a_corrupted_or_torn_header_copy_falls_back_to_the_other() {
    let old = bytes(10_000, 1);
    for copy in 0..2 {
        let mut img = disk_with_a(&old).durable();
        img[COPY_OFFSETS[copy] as usize + 100] ^= 0x40;
        let store = SlotStore::open(CrashDisk::from_bytes(img.clone())).unwrap();
        let refused = store.health().refused[copy].clone().unwrap();
        assert!(matches!(refused, HeaderError::Crc { .. }), "{refused}");
        assert_eq!(boots(img), old);
    }
}

#[test]
fn both_header_copies_bad_is_refused_with_both_reasons() {
    let mut img = disk_with_a(&bytes(10_000, 1)).durable();
    img[10] ^= 1;
    img[4096..4104].copy_from_slice(b"NOTSLOTS");
    match SlotStore::open(CrashDisk::from_bytes(img)) {
        Err(Error::NoValidHeader { primary, backup }) => {
            assert!(matches!(primary, HeaderError::Crc { .. }), "{primary}");
            assert_eq!(backup, HeaderError::BadMagic);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_truncated_disk_is_refused() {
    let img = disk_with_a(&bytes(10_000, 1)).durable();
    for len in [1000, 4096 + 500, DISK / 2] {
        let err = SlotStore::open(CrashDisk::from_bytes(img[..len].to_vec())).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{len}: {err}");
    }
}

#[test]
fn a_full_disk_fails_the_install_and_keeps_the_old_slot() {
    let old = bytes(10_000, 1);
    let mut d = disk_with_a(&old);
    d.enospc_after = Some(3 << 20);
    let mut store = SlotStore::open(d).unwrap();
    let new = bytes(1_500_000, 3);
    let err = install(&mut store, Slot::B, &new).unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    assert_eq!(store.state().slot(Slot::B).status, SlotStatus::Writing);
    assert_eq!(boots(store.into_disk().durable()), old);
}

#[test]
fn an_image_larger_than_a_slot_or_with_a_wrong_digest_is_never_valid() {
    let old = bytes(10_000, 1);
    let mut store = SlotStore::open(disk_with_a(&old)).unwrap();
    let cap = store.state().geometry.capacity;
    let mut big = image_of("big.uki", "3.0.0", 3, b"");
    big.length = cap + 1;
    assert!(matches!(
        Session::begin(&mut store, Slot::B, big),
        Err(Error::TooLarge { .. })
    ));
    let new = bytes(20_000, 4);
    let mut facts = image_of("os-2.uki", "2.0.0", 2, &new);
    facts.sha256[0] ^= 1;
    let err = install_from_reader(&mut store, Slot::B, facts.clone(), &new[..]).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    // Too many bytes: refused before they are written.
    let mut s = Session::begin(&mut store, Slot::B, image_of("x.uki", "1.0.0", 1, b"abc")).unwrap();
    assert!(matches!(s.write(b"abcd"), Err(Error::TooLong { .. })));
    assert_eq!(store.state().active, Some(Slot::A));
    assert_ne!(store.state().slot(Slot::B).status, SlotStatus::Valid);
}
