//! A power cut at every single program/erase index of every update leaves
//! the old state or the new one — never a third, never an unmountable flash.

use proptest::prelude::*;
use racklet_bmc_core::memflash::{MemFlash, SECTOR};
use racklet_bmc_core::store::{Store, RECORD_LEN};
use racklet_bmc_core::Persistent;
use racklet_bmc_proto::{Epoch, RefusalReason, SecurityVersion, UnixTime};

type Flash = MemFlash<{ 2 * SECTOR }>;

fn factory() -> Persistent {
    Persistent::factory(3)
}

/// The i-th state of a history: every field moves, so states are all distinct.
fn state(i: u32) -> Persistent {
    let mut p = factory();
    p.boot_count = i;
    p.time_floor = UnixTime(1_700_000_000 + u64::from(i));
    p.rollback_min[0] = SecurityVersion(i / 3);
    p.slots[1].tries = (i % 4) as u8;
    p.force_b = i % 2 == 1;
    // The refusal record (layout 3) moves too: none, then one every 3rd state.
    for n in 0..i / 3 {
        p.refusals.record(
            RefusalReason::ALL[(n as usize) % RefusalReason::COUNT],
            Epoch(n),
        );
    }
    p
}

fn mount(f: Flash) -> Store<Flash> {
    Store::mount(f, factory()).expect("a flash cut at any point must still mount")
}

#[test]
fn every_cut_index_of_every_update_leaves_old_or_new() {
    // Enough updates to fill both sectors twice: covers appends, sector
    // switches with erases, and wrap back onto the first sector.
    let updates = 3 * (SECTOR / RECORD_LEN) as u32 + 5;
    let mut store = mount(Flash::new());
    let mut old = factory();
    let mut cuts_tested = 0;
    for i in 1..=updates {
        let new = state(i);
        // Measure how many program/erase operations this commit takes.
        let before = store.flash().clone();
        let ops_before = before.ops;
        let mut probe = mount(before.clone());
        probe.commit(&new).unwrap();
        let ops = probe.flash().ops - ops_before;
        assert!(ops >= 2, "a commit takes at least the record and its mark");
        for k in 0..ops {
            let mut f = before.clone();
            f.cut_power_at(k);
            let mut s = mount(f);
            assert!(
                s.commit(&new).is_err(),
                "cut at op {k} of update {i} must fail the commit"
            );
            let mut f = s.into_flash();
            f.restore_power();
            let after = mount(f);
            let got = *after.current();
            assert!(
                got == old || got == new,
                "update {i}, cut at op {k}/{ops}: got a third state {got:?}"
            );
            // The store goes on working after the cut.
            let mut after = after;
            let next = state(i + 1000);
            after.commit(&next).unwrap();
            assert_eq!(*mount(after.into_flash()).current(), next);
            cuts_tested += 1;
        }
        store.commit(&new).unwrap();
        assert_eq!(*mount(store.flash().clone()).current(), new);
        old = new;
    }
    println!("{updates} updates, {cuts_tested} power cuts tested");
    assert!(
        cuts_tested > 2 * updates as usize,
        "tested {cuts_tested} cuts"
    );
}

#[test]
fn a_cut_during_the_very_first_commit_leaves_factory_state() {
    for k in 0..3 {
        let mut f = Flash::new();
        f.cut_power_at(k);
        let mut s = mount(f);
        let _ = s.commit(&state(1));
        let mut f = s.into_flash();
        f.restore_power();
        let got = *mount(f).current();
        assert!(got == factory() || got == state(1), "cut {k}: {got:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random histories with random cuts, several per history: after each
    /// remount the state is the last committed one or the one being written.
    #[test]
    fn random_cuts_in_random_histories(
        steps in prop::collection::vec((1u32..10_000, prop::option::of(0usize..4)), 1..200)
    ) {
        let mut f = Flash::new();
        let mut committed = factory();
        for (v, cut) in steps {
            let new = state(v);
            if let Some(k) = cut {
                f.cut_power_at(k);
            }
            let mut s = mount(f);
            let ok = s.commit(&new).is_ok();
            f = s.into_flash();
            f.restore_power();
            let got = *mount(f.clone()).current();
            if ok {
                prop_assert_eq!(got, new);
            } else {
                prop_assert!(got == committed || got == new, "third state {:?}", got);
            }
            committed = got;
        }
    }
}
