//! The authenticated link, attacked: what a root process in the booted OS
//! (which can send any frame, but holds neither the unit key nor a session
//! key once stage1 has sealed the BMC) cannot do.

mod common;

use common::*;
use racklet_bmc_proto::{
    encode_authenticated, Epoch, ErrorCode, ImageKind, Request, ResetType, Response,
    SecurityVersion, Slot, UnitKey, UnixTime, MAX_FRAME,
};

fn state_changes() -> [Request<'static>; 4] {
    [
        Request::ReportInstalled {
            slot: Slot::B,
            kind: ImageKind::BootImage,
            version: SecurityVersion(9),
        },
        Request::RaiseRollbackMin {
            kind: ImageKind::BootImage,
            version: SecurityVersion(1),
        },
        Request::SetTime {
            time: UnixTime(4_102_444_800), // 2100-01-01: the attack of issue 14
        },
        Request::ConfirmBoot { slot: Slot::A },
    ]
}

/// Sends `frame` (raw bytes) and returns the status byte of the answer.
fn status_of(r: &mut Rig, frame: &[u8]) -> u8 {
    r.raw(frame).expect("answered")[2]
}

fn forged(req: &Request<'_>, key: UnitKey, epoch: Epoch, counter: u32) -> Vec<u8> {
    let mut f = [0u8; MAX_FRAME];
    let n = encode_authenticated(addr(), req, &key.session(epoch), epoch, counter, &mut f).unwrap();
    f[..n].to_vec()
}

#[test]
fn unauthenticated_or_forged_state_changes_are_refused_and_change_nothing() {
    let mut r = provisioned();
    let epoch = r.auth_status().epoch;
    let state = *r.bmc.unit().persistent();
    let ops = r.flash_ops();
    for req in state_changes() {
        // Today's frame, without counter and MAC.
        assert_eq!(
            r.call_plain(req),
            Err(refused(ErrorCode::Unauthenticated)),
            "{req:?}"
        );
        // MAC'd with a key the attacker made up, for the right epoch.
        let f = forged(&req, UnitKey::from_bytes([0x99; 32]), epoch, 1000);
        assert_eq!(
            status_of(&mut r, &f),
            ErrorCode::Unauthenticated.to_byte(),
            "{req:?}"
        );
        // A valid frame with its tag truncated into the counter's place.
        let good = {
            let mut s = r.session().unwrap();
            let mut f = [0u8; MAX_FRAME];
            let n = s.encode(addr(), &req, &mut f).unwrap();
            f[..n].to_vec()
        };
        let mut bad = good.clone();
        let tag_at = bad.len() - 2;
        bad[tag_at] ^= 0x80;
        let l = bad.len();
        bad[l - 1] = racklet_bmc_proto::pec::pec(&bad[..l - 1]);
        assert_eq!(
            status_of(&mut r, &bad),
            ErrorCode::Unauthenticated.to_byte()
        );
    }
    assert_eq!(*r.bmc.unit().persistent(), state, "nothing changed");
    assert_eq!(r.flash_ops(), ops, "nothing written");
    assert!(!r.plan().confirmed);
    // stage1's own frames still work.
    r.ok(Request::ConfirmBoot { slot: Slot::A });
    assert!(r.plan().confirmed);
}

#[test]
fn a_factory_bmc_accepts_no_state_change_before_a_key_is_provisioned() {
    let mut r = Rig::new();
    r.until_on();
    for req in state_changes() {
        let f = forged(&req, UnitKey::from_bytes([0; 32]), Epoch(1), 1);
        assert_eq!(status_of(&mut r, &f), ErrorCode::NoKey.to_byte(), "{req:?}");
    }
    match r.ok(Request::GetTime) {
        Response::Time(c) => assert!(!c.set),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_replayed_frame_is_refused_in_the_same_epoch_and_the_next() {
    let mut r = provisioned();
    let set = Request::SetTime {
        time: UnixTime(1_800_000_000),
    };
    let mut s = r.session().unwrap();
    let mut f = [0u8; MAX_FRAME];
    let n = s.encode(addr(), &set, &mut f).unwrap();
    let frame = f[..n].to_vec();
    assert_eq!(status_of(&mut r, &frame), 0);
    // The same bytes again (the clock would allow it: not backwards).
    assert_eq!(status_of(&mut r, &frame), ErrorCode::Replayed.to_byte());
    // An older counter, validly MAC'd, too.
    let mut old = racklet_bmc_proto::Session::new(r.read_session_key().unwrap(), s.epoch(), 0);
    let n = old.encode(addr(), &set, &mut f).unwrap();
    assert_eq!(status_of(&mut r, &f[..n]), ErrorCode::Replayed.to_byte());
    // A confirmation captured in this epoch (never sent) …
    let confirm = Request::ConfirmBoot { slot: Slot::A };
    let mut s = r.session().unwrap();
    let n = s.encode(addr(), &confirm, &mut f).unwrap();
    let captured = f[..n].to_vec();
    // … is worthless after the next power-on by the BMC.
    r.ok(Request::Reset {
        kind: ResetType::PowerCycle,
    });
    r.until_on();
    assert_eq!(r.auth_status().epoch, Epoch(s.epoch().0 + 1));
    assert_eq!(
        status_of(&mut r, &captured),
        ErrorCode::Unauthenticated.to_byte()
    );
    assert!(!r.plan().confirmed);
    // So is the SetTime of the last epoch.
    assert_eq!(
        status_of(&mut r, &frame),
        ErrorCode::Unauthenticated.to_byte()
    );
}

#[test]
fn after_seal_no_key_is_revealed_and_a_soft_reboot_does_not_unseal() {
    let mut r = provisioned();
    let epoch = r.auth_status().epoch;
    r.ok(Request::Seal);
    let st = r.auth_status();
    assert!(st.sealed && st.key_provisioned);
    for half in 0..2 {
        assert_eq!(
            r.refused(Request::GetSessionKey { half }),
            ErrorCode::Sealed
        );
    }
    assert_eq!(
        r.refused(Request::ProvisionKey {
            key: UnitKey::from_bytes([1; 32])
        }),
        ErrorCode::KeyPresent
    );
    // The OS reboots itself (kexec, `reboot`): the BMC sees nothing but
    // time and frames. Sealing again, reads, waiting: still sealed.
    r.ok(Request::Seal);
    r.advance(3000);
    r.ok(Request::GetBootPlan);
    assert!(r.auth_status().sealed);
    assert_eq!(r.auth_status().epoch, epoch);
    assert_eq!(
        r.refused(Request::GetSessionKey { half: 0 }),
        ErrorCode::Sealed
    );
    // Nor does a restart of the BMC itself: it has no epoch until it
    // starts the host again.
    let mut cfg = *r.bmc.unit().config();
    cfg.auto_power_on = false;
    let (flash, banks) = r.into_flashes();
    let mut r = Rig::with(cfg, flash, banks);
    let st = r.auth_status();
    assert!(st.sealed && !st.session);
    assert_eq!(
        r.refused(Request::GetSessionKey { half: 0 }),
        ErrorCode::Sealed
    );
    // Only a start of the host by the BMC unseals, in a new epoch.
    r.ok(Request::Reset {
        kind: ResetType::On,
    });
    r.until_on();
    let st = r.auth_status();
    assert!(!st.sealed && st.session);
    assert_eq!(st.epoch, Epoch(epoch.0 + 1));
    r.read_session_key().unwrap();
}

#[test]
fn a_watchdog_power_cycle_or_force_restart_starts_a_new_unsealed_epoch() {
    let mut r = provisioned();
    let e0 = r.auth_status().epoch;
    r.ok(Request::Seal);
    r.ok(Request::Reset {
        kind: ResetType::ForceRestart,
    });
    r.until_on();
    let st = r.auth_status();
    assert_eq!((st.epoch, st.sealed), (Epoch(e0.0 + 1), false));
    r.ok(Request::Seal);
    // No confirmation: the watchdog (5 s) power-cycles the host.
    r.advance(6000);
    r.until_on();
    let st = r.auth_status();
    assert_eq!((st.epoch, st.sealed), (Epoch(e0.0 + 2), false));
}

#[test]
fn a_key_cannot_be_provisioned_twice_nor_after_seal() {
    let mut r = provisioned();
    let other = Request::ProvisionKey {
        key: UnitKey::from_bytes([7; 32]),
    };
    assert_eq!(r.refused(other), ErrorCode::KeyPresent);
    r.ok(Request::Reset {
        kind: ResetType::PowerCycle,
    });
    r.until_on();
    assert_eq!(r.refused(other), ErrorCode::KeyPresent, "a new epoch too");
    assert_eq!(r.bmc.unit().persistent().key, Some(unit_key()));
    // A factory BMC that stage1 sealed without provisioning (an old
    // stage1): the OS cannot plant a key of its own.
    let mut f = Rig::new();
    f.until_on();
    f.ok(Request::Seal);
    assert_eq!(f.refused(other), ErrorCode::Sealed);
    assert_eq!(f.bmc.unit().persistent().key, None);
}

#[test]
fn a_very_long_press_clears_the_key_power_cycles_and_keeps_the_counters() {
    let mut r = provisioned();
    r.ok(Request::ConfirmBoot { slot: Slot::A });
    r.ok(Request::SetTime {
        time: UnixTime(1_800_000_000),
    });
    let before = *r.bmc.unit().persistent();
    let e0 = r.auth_status().epoch;
    let mut s = r.session().unwrap();
    let mut f = [0u8; MAX_FRAME];
    let n = s
        .encode(
            addr(),
            &Request::SetTime {
                time: UnixTime(1_900_000_000),
            },
            &mut f,
        )
        .unwrap();
    let old_frame = f[..n].to_vec();
    r.ok(Request::Seal);
    // 3.5 s is a long press (force B), not a key clear.
    r.press(3500);
    assert!(r.bmc.unit().persistent().key.is_some());
    r.until_on();
    r.ok(Request::Seal);
    r.press(10_500);
    let after = *r.bmc.unit().persistent();
    assert_eq!(after.key, None);
    assert_eq!(after.rollback_min, before.rollback_min);
    assert!(after.clock_set);
    r.until_on();
    let st = r.auth_status();
    assert!(!st.key_provisioned && !st.sealed && st.epoch.0 > e0.0);
    // stage1 provisions a new key; frames under the old one are dead.
    r.session = None;
    let new_key = UnitKey::from_bytes([0x17; 32]);
    r.ok(Request::ProvisionKey { key: new_key });
    assert_eq!(
        status_of(&mut r, &old_frame),
        ErrorCode::Unauthenticated.to_byte()
    );
    let mut s = racklet_bmc_proto::Session::new(new_key.session(st.epoch), st.epoch, 0);
    let n = s
        .encode(
            addr(),
            &Request::SetTime {
                time: UnixTime(1_900_000_000),
            },
            &mut f,
        )
        .unwrap();
    assert_eq!(status_of(&mut r, &f[..n]), 0);
}

#[test]
fn a_precomputed_confirmation_works_once_sealed_and_never_in_another_epoch() {
    // What stage1 hands the OS: ConfirmBoot and RaiseRollbackMin for this
    // epoch, MAC'd, then it seals.
    let mut r = provisioned();
    r.ok(Request::ReportInstalled {
        slot: Slot::B,
        kind: ImageKind::BootImage,
        version: SecurityVersion(3),
    });
    r.ok(Request::Reset {
        kind: ResetType::PowerCycle,
    });
    r.until_on();
    assert_eq!(r.plan().slot, Slot::B);
    let mut s = r.session().unwrap();
    let mut f = [0u8; MAX_FRAME];
    let n = s
        .encode(addr(), &Request::ConfirmBoot { slot: Slot::B }, &mut f)
        .unwrap();
    let confirm = f[..n].to_vec();
    let raise_req = Request::RaiseRollbackMin {
        kind: ImageKind::BootImage,
        version: SecurityVersion(3),
    };
    let n = s.encode(addr(), &raise_req, &mut f).unwrap();
    let raise = f[..n].to_vec();
    r.ok(Request::Seal);
    // The OS (or a root process in it) sends them: they work once.
    assert_eq!(status_of(&mut r, &confirm), 0);
    assert_eq!(status_of(&mut r, &raise), 0);
    assert_eq!(status_of(&mut r, &confirm), ErrorCode::Replayed.to_byte());
    assert_eq!(status_of(&mut r, &raise), ErrorCode::Replayed.to_byte());
    assert_eq!(
        r.ok(Request::GetRollbackMin {
            kind: ImageKind::BootImage
        }),
        Response::RollbackMin(SecurityVersion(3))
    );
    // Next epoch: the same token confirms nothing.
    r.ok(Request::Reset {
        kind: ResetType::PowerCycle,
    });
    r.until_on();
    assert_eq!(
        status_of(&mut r, &confirm),
        ErrorCode::Unauthenticated.to_byte()
    );
    assert!(!r.plan().confirmed);
}

#[test]
fn a_power_cut_during_key_provisioning_leaves_no_key_or_the_whole_key() {
    let cfg = test_config();
    // The ops a power-on takes on a factory flash (repeated exactly by a
    // rig on the same flash), then the ops of the provisioning commit.
    let mut counting = Rig::new();
    counting.until_on();
    let boot_ops = counting.flash_ops();
    counting.ok(Request::ProvisionKey { key: unit_key() });
    let ops = counting.flash_ops() - boot_ops;
    assert!(ops >= 2);
    for k in 0..ops {
        let mut f = StateFlash::new();
        f.cut_power_at(boot_ops + k);
        let mut r = Rig::with(cfg, f, Banks::new());
        r.until_on();
        assert_eq!(
            r.refused(Request::ProvisionKey { key: unit_key() }),
            ErrorCode::Storage,
            "cut at op {k}"
        );
        // Refused means not provisioned, in RAM too.
        assert!(!r.auth_status().key_provisioned);
        let (mut f, banks) = r.into_flashes();
        f.restore_power();
        let mut r = Rig::with(cfg, f, banks);
        let key = r.bmc.unit().persistent().key;
        assert!(
            key.is_none() || key == Some(unit_key()),
            "cut at op {k}: a third key"
        );
        // Either way the unit goes on: the next stage1 provisions (or
        // finds) the key and authenticates.
        r.until_on();
        r.ok(Request::SetTime {
            time: UnixTime(1_800_000_000),
        });
        assert_eq!(r.bmc.unit().persistent().key, Some(unit_key()));
    }
}

#[test]
fn the_operator_sets_the_clock_without_the_host_link_and_never_backwards() {
    let mut r = Rig::new();
    // Before any boot: no epoch, so no MAC'd frame could do it.
    r.bmc
        .set_time_by_operator(UnixTime(1_800_000_000), r.now)
        .unwrap();
    match r.ok(Request::GetTime) {
        Response::Time(c) => assert!(c.set && c.time >= UnixTime(1_800_000_000)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        r.bmc.set_time_by_operator(UnixTime(5), r.now),
        Err(ErrorCode::TimeBackwards)
    );
    let r = r.restart();
    assert!(r.bmc.unit().persistent().clock_set, "persisted");
}

#[test]
fn a_lost_clock_says_so_until_it_is_set_again_and_the_loss_survives_a_restart() {
    let mut r = Rig::new();
    r.bmc
        .set_time_by_operator(UnixTime(1_800_000_000), r.now)
        .unwrap();
    // The RTC battery dies (or the module is replaced): 1970 again, and
    // the BMC says its clock was never set — stage1 then refuses it.
    r.bmc.lose_clock(r.now).unwrap();
    match r.ok(Request::GetTime) {
        Response::Time(c) => assert!(!c.set && c.time < UnixTime(1_000_000), "{c:?}"),
        other => panic!("{other:?}"),
    }
    let mut r = r.restart();
    assert!(
        !r.bmc.unit().persistent().clock_set,
        "the loss is persisted"
    );
    // Set again (by the operator here; by stage1's MAC'd SetTime from
    // bootd's signed time on a node): forward from 1970 is allowed.
    r.bmc
        .set_time_by_operator(UnixTime(1_800_000_100), r.now)
        .unwrap();
    match r.ok(Request::GetTime) {
        Response::Time(c) => assert!(c.set && c.time >= UnixTime(1_800_000_100)),
        other => panic!("{other:?}"),
    }
}
