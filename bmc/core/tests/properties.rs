//! Properties of the unit's state machines under arbitrary inputs.

mod common;

use common::*;
use proptest::prelude::*;
use racklet_bmc_core::Event;
use racklet_bmc_proto::{ImageKind, Request, ResetType, Response, SecurityVersion, Slot, UnixTime};

#[derive(Clone, Debug)]
enum Step {
    Wait(u64),
    Pg(bool),
    Button(bool),
    Reset(u8),
    Confirm(bool),
    Install(bool, u32),
    Raise(u32),
    SetTime(u64),
    BmcRestart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u64..7000).prop_map(Step::Wait),
        1 => any::<bool>().prop_map(Step::Pg),
        2 => any::<bool>().prop_map(Step::Button),
        1 => (0u8..5).prop_map(Step::Reset),
        2 => any::<bool>().prop_map(Step::Confirm),
        1 => (any::<bool>(), 0u32..8).prop_map(|(b, v)| Step::Install(b, v)),
        1 => (0u32..8).prop_map(Step::Raise),
        1 => (0u64..4_000_000_000).prop_map(Step::SetTime),
        1 => Just(Step::BmcRestart),
    ]
}

fn slot(b: bool) -> Slot {
    if b {
        Slot::B
    } else {
        Slot::A
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn invariants_hold_under_any_input(steps in prop::collection::vec(step(), 1..60)) {
        let mut r = Rig::new();
        let mut min_seen = [SecurityVersion(0); 2];
        let mut time_seen = UnixTime(0);
        for s in steps {
            match s {
                Step::Wait(ms) => r.advance(ms),
                Step::Pg(level) => r.event(Event::PowerGood(level)),
                Step::Button(level) => r.event(Event::Button(level)),
                Step::Reset(k) => r.event(Event::Reset(ResetType::from_byte(k).unwrap())),
                Step::Confirm(b) => { let _ = r.call(Request::ConfirmBoot { slot: slot(b) }); }
                Step::Install(b, v) => { let _ = r.call(Request::ReportInstalled { slot: slot(b), kind: ImageKind::BootImage, version: SecurityVersion(v) }); }
                Step::Raise(v) => { let _ = r.call(Request::RaiseRollbackMin { kind: ImageKind::BootImage, version: SecurityVersion(v) }); }
                Step::SetTime(t) => { let _ = r.call(Request::SetTime { time: UnixTime(t) }); }
                Step::BmcRestart => { let now = r.now; r = r.restart(); r.now = now; }
            }
            let out = r.bmc.unit().outputs();
            // Reset is released only with the rail on.
            prop_assert!(out.rail_on || out.reset_asserted, "{out:?}");
            let p = *r.bmc.unit().persistent();
            // Tries never exceed the limit.
            prop_assert!(p.slots.iter().all(|s| s.tries <= 3), "{p:?}");
            // Rollback minimums never fall, not even across restarts.
            for (seen, now) in min_seen.iter_mut().zip(p.rollback_min) {
                prop_assert!(now >= *seen);
                *seen = now;
            }
            // Whatever is in RAM is what is in flash.
            prop_assert_eq!(r.bmc.store().current(), &p);
            // The clock never goes backwards (across restarts it restarts at its floor).
            if let Ok(Response::Time(racklet_bmc_proto::Clock { time: t, .. })) = r.call(Request::GetTime) {
                prop_assert!(t >= p.time_floor);
                if !matches!(s, Step::BmcRestart) {
                    prop_assert!(t >= time_seen, "{t:?} < {time_seen:?}");
                }
                time_seen = t;
            }
            // The minimum never exceeds what a confirmed slot carried.
            let carried = p.slots.iter().map(|s| s.versions[0]).max().unwrap();
            prop_assert!(p.rollback_min[0] <= carried || p.rollback_min[0] == SecurityVersion(0));
        }
    }
}
