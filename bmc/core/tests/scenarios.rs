//! Each claim of the unit's state machines, attacked through real frames.

mod common;

use common::*;
use ed25519_dalek::Signer;
use racklet_bmc_core::fwupdate::{signed_prefix, HEADER_LEN};
use racklet_bmc_core::{Event, Instant, Millis, Outputs};
use racklet_bmc_proto::{
    encode_request, pec::pec, Clock, ErrorCode, FaultCode, FwInfo, ImageKind, PowerState, Press,
    Request, ResetType, Response, SecurityVersion, Slot, SmbusAddr, UnixTime, FW_CHUNK_MAX,
    MAX_FRAME,
};

const ON: Outputs = Outputs {
    rail_on: true,
    reset_asserted: false,
};

#[test]
fn power_on_waits_its_stagger_then_rail_then_power_good_then_reset_release() {
    let mut r = Rig::new();
    r.until_on();
    // trace: off → rail on (reset held) → reset released.
    let t = &r.trace;
    assert_eq!(t.len(), 3, "{t:?}");
    assert_eq!(
        t[0].1,
        Outputs {
            rail_on: false,
            reset_asserted: true
        }
    );
    assert_eq!(
        t[1].1,
        Outputs {
            rail_on: true,
            reset_asserted: true
        }
    );
    assert_eq!(t[2].1, ON);
    assert!(
        t[1].0 >= Instant(250),
        "rail before the stagger delay: {t:?}"
    );
    // power-good after 5 ms, then 20 ms of reset hold.
    assert!(t[2].0 - t[1].0 >= Millis(25), "{t:?}");
    assert_eq!(r.power().state, PowerState::On);
}

#[test]
fn staggered_units_never_enable_rails_together() {
    let rail_at = |position: u64| {
        let mut cfg = test_config();
        cfg.stagger_delay = Millis(250 * position);
        let mut r = Rig::with(cfg, StateFlash::new(), Banks::new());
        r.until_on();
        r.trace.iter().find(|(_, o)| o.rail_on).unwrap().0
    };
    let times: Vec<Instant> = (0..5).map(rail_at).collect();
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= Millis(250), "{times:?}");
    }
}

#[test]
fn power_good_timeout_is_a_fault_with_the_rail_off() {
    let mut r = Rig::new();
    r.pg_delay = None;
    r.advance(250 + 150);
    assert_eq!(
        r.out,
        Outputs {
            rail_on: false,
            reset_asserted: true
        }
    );
    let s = r.power();
    assert_eq!(
        (s.state, s.fault),
        (PowerState::Fault, FaultCode::PowerGoodTimeout)
    );
    // The rail was on for no longer than the timeout (+ one 5 ms sample).
    let on = r.trace.iter().find(|(_, o)| o.rail_on).unwrap().0;
    let off = r.trace.last().unwrap().0;
    assert!(off - on <= Millis(105), "{:?}", r.trace);
}

#[test]
fn losing_power_good_while_on_is_safe_off_with_a_fault() {
    let mut r = Rig::new();
    r.until_on();
    r.event(Event::PowerGood(false));
    assert_eq!(
        r.out,
        Outputs {
            rail_on: false,
            reset_asserted: true
        }
    );
    assert_eq!(r.power().fault, FaultCode::PowerGoodLost);
    // A later On clears it once the unit comes up again.
    r.ok(Request::Reset {
        kind: ResetType::On,
    });
    r.until_on();
    assert_eq!(r.power().fault, FaultCode::None);
}

#[test]
fn force_off_is_immediate_and_graceful_shutdown_is_ordered() {
    let mut r = Rig::new();
    r.until_on();
    r.event(Event::Reset(ResetType::ForceOff));
    assert_eq!(
        r.out,
        Outputs {
            rail_on: false,
            reset_asserted: true
        }
    );

    r.event(Event::Reset(ResetType::On));
    r.until_on();
    r.event(Event::Reset(ResetType::GracefulShutdown));
    assert!(r.power().shutdown_requested);
    assert_eq!(r.out, ON, "the OS gets its grace time");
    r.advance(1000);
    // Reset first, rail still on…
    assert_eq!(
        r.out,
        Outputs {
            rail_on: true,
            reset_asserted: true
        }
    );
    assert_eq!(r.power().state, PowerState::PoweringDown);
    r.advance(25);
    // …then the rail.
    assert_eq!(
        r.out,
        Outputs {
            rail_on: false,
            reset_asserted: true
        }
    );
    assert_eq!(r.power().state, PowerState::Off);
}

#[test]
fn force_restart_and_power_cycle_are_new_boot_attempts() {
    let mut r = Rig::new();
    r.until_on();
    assert_eq!(r.plan().boot_count, 1);
    r.ok(Request::Reset {
        kind: ResetType::ForceRestart,
    });
    assert_eq!(
        r.out,
        Outputs {
            rail_on: true,
            reset_asserted: true
        },
        "rail stays on"
    );
    r.until_on();
    assert_eq!(r.plan().boot_count, 2);
    r.ok(Request::Reset {
        kind: ResetType::PowerCycle,
    });
    r.advance(30);
    assert!(!r.out.rail_on, "a power cycle switches the rail off");
    r.until_on();
    assert_eq!(r.plan().boot_count, 3);
}

#[test]
fn each_power_on_consumes_a_try_and_confirmation_refills_them() {
    let mut r = Rig::new();
    r.until_on();
    let p = r.plan();
    assert_eq!((p.slot, p.tries_left, p.confirmed), (Slot::A, 2, false));
    r.ok(Request::ConfirmBoot { slot: Slot::A });
    let a = r.slot(Slot::A);
    assert_eq!((a.tries, a.successful), (3, true));
    // Confirmed: the watchdog no longer power-cycles.
    r.advance(6000);
    assert_eq!(r.plan().boot_count, 1);
    assert_eq!(r.power().state, PowerState::On);
}

#[test]
fn missing_confirmation_power_cycles_and_exhausted_tries_fall_back() {
    let mut r = Rig::new();
    r.until_on();
    r.ok(Request::ConfirmBoot { slot: Slot::A });
    // stage1 installs a new image into B: B becomes the next to boot.
    r.ok(Request::ReportInstalled {
        slot: Slot::B,
        kind: ImageKind::BootImage,
        version: SecurityVersion(2),
    });
    r.ok(Request::Reset {
        kind: ResetType::PowerCycle,
    });
    for tries_left in [2, 1, 0] {
        r.until_on();
        let p = r.plan();
        assert_eq!(
            (p.slot, p.tries_left, p.fallback),
            (Slot::B, tries_left, false)
        );
        // No confirmation: the watchdog (5 s) power-cycles.
        r.advance(5000);
        assert_ne!(r.power().state, PowerState::On, "watchdog did not fire");
    }
    r.until_on();
    let p = r.plan();
    assert_eq!((p.slot, p.fallback), (Slot::A, true), "fell back to A");
    r.ok(Request::ConfirmBoot { slot: Slot::A });
    assert_eq!(r.slot(Slot::A).priority, 15, "A is active again");
    // Confirming the wrong slot is refused.
    assert_eq!(
        r.refused(Request::ConfirmBoot { slot: Slot::B }),
        ErrorCode::BadState
    );
}

#[test]
fn no_bootable_slot_is_a_fault_not_a_boot() {
    let mut cfg = test_config();
    cfg.max_tries = 1;
    let mut r = Rig::with(cfg, StateFlash::new(), Banks::new());
    r.until_on(); // A: 1 → 0
    r.ok(Request::ReportInstalled {
        slot: Slot::B,
        kind: ImageKind::BootImage,
        version: SecurityVersion(1),
    });
    r.advance(5000); // watchdog
    r.until_on(); // B: 1 → 0
    assert_eq!(r.plan().slot, Slot::B);
    r.advance(5000 + 1000);
    assert_eq!(r.power().fault, FaultCode::NoBootableSlot);
    assert!(!r.out.rail_on);
}

#[test]
fn long_press_forces_b_once_and_confirmed_b_wins_from_then_on() {
    let mut r = Rig::new();
    r.until_on();
    r.ok(Request::ConfirmBoot { slot: Slot::A });
    r.press(3100);
    // The long press power-cycles into B.
    r.until_on();
    let p = r.plan();
    assert_eq!((p.slot, p.forced_by_button), (Slot::B, true));
    match r.ok(Request::GetButtonState) {
        Response::ButtonState(b) => {
            assert_eq!(b.last_press, Press::Long);
            assert!(!b.force_b_pending, "one-shot: consumed by this boot");
        }
        other => panic!("{other:?}"),
    }
    // Unconfirmed, the next boot goes back to A.
    r.advance(5000);
    r.until_on();
    assert_eq!(r.plan().slot, Slot::A);
    // Force B again, and this time confirm it: B becomes active and stays.
    r.press(3500);
    r.until_on();
    assert_eq!(r.plan().slot, Slot::B);
    r.ok(Request::ConfirmBoot { slot: Slot::B });
    r.ok(Request::Reset {
        kind: ResetType::PowerCycle,
    });
    r.until_on();
    let p = r.plan();
    assert_eq!((p.slot, p.forced_by_button), (Slot::B, false));
}

#[test]
fn short_press_toggles_power() {
    let mut r = Rig::new();
    r.until_on();
    r.press(200);
    assert!(r.power().shutdown_requested);
    r.advance(1100);
    assert_eq!(r.power().state, PowerState::Off);
    r.press(200);
    r.until_on();
    assert_eq!(r.plan().boot_count, 2);
}

#[test]
fn rollback_minimum_rises_only_after_the_image_confirmed_and_never_falls() {
    let mut r = Rig::new();
    r.until_on();
    r.ok(Request::ConfirmBoot { slot: Slot::A });
    r.ok(Request::ReportInstalled {
        slot: Slot::B,
        kind: ImageKind::BootImage,
        version: SecurityVersion(5),
    });
    r.ok(Request::Reset {
        kind: ResetType::PowerCycle,
    });
    r.until_on();
    assert_eq!(r.plan().slot, Slot::B);
    let ops = r.flash_ops();
    // Not confirmed yet.
    let raise = Request::RaiseRollbackMin {
        kind: ImageKind::BootImage,
        version: SecurityVersion(5),
    };
    assert_eq!(r.refused(raise), ErrorCode::NotConfirmed);
    r.ok(Request::ConfirmBoot { slot: Slot::B });
    let ops = r.flash_ops().max(ops);
    // Above what the slot carries.
    let too_high = Request::RaiseRollbackMin {
        kind: ImageKind::BootImage,
        version: SecurityVersion(6),
    };
    assert_eq!(r.refused(too_high), ErrorCode::NotConfirmed);
    // Another kind the slot does not carry.
    let other = Request::RaiseRollbackMin {
        kind: ImageKind::Stage1,
        version: SecurityVersion(1),
    };
    assert_eq!(r.refused(other), ErrorCode::NotConfirmed);
    assert_eq!(r.flash_ops(), ops, "refusals write nothing");
    assert_eq!(r.ok(raise), Response::RollbackMin(SecurityVersion(5)));
    let ops = r.flash_ops();
    let lower = Request::RaiseRollbackMin {
        kind: ImageKind::BootImage,
        version: SecurityVersion(4),
    };
    assert_eq!(r.refused(lower), ErrorCode::CounterLower);
    assert_eq!(r.flash_ops(), ops);
    // An image below the minimum cannot even be reported.
    let old = Request::ReportInstalled {
        slot: Slot::A,
        kind: ImageKind::BootImage,
        version: SecurityVersion(4),
    };
    assert_eq!(r.refused(old), ErrorCode::CounterLower);
    // It survives a BMC restart.
    let mut r = r.restart();
    r.until_on();
    assert_eq!(
        r.ok(Request::GetRollbackMin {
            kind: ImageKind::BootImage
        }),
        Response::RollbackMin(SecurityVersion(5))
    );
    assert_eq!(r.refused(lower), ErrorCode::CounterLower);
}

#[test]
fn clock_runs_refuses_to_go_backwards_and_keeps_its_floor_across_restarts() {
    let mut r = Rig::new();
    match r.ok(Request::GetTime) {
        Response::Time(c) => assert!(!c.set, "a factory clock says it was never set: {c:?}"),
        other => panic!("{other:?}"),
    }
    r.until_on();
    r.ok(Request::SetTime {
        time: UnixTime(1_800_000_000),
    });
    r.advance(2000);
    assert_eq!(
        r.ok(Request::GetTime),
        Response::Time(Clock {
            time: UnixTime(1_800_000_002),
            set: true
        })
    );
    let ops = r.flash_ops();
    assert_eq!(
        r.refused(Request::SetTime {
            time: UnixTime(1_800_000_001)
        }),
        ErrorCode::TimeBackwards
    );
    assert_eq!(r.flash_ops(), ops);
    assert_eq!(
        r.ok(Request::GetTime),
        Response::Time(Clock {
            time: UnixTime(1_800_000_002),
            set: true
        })
    );
    let mut r = r.restart();
    match r.ok(Request::GetTime) {
        Response::Time(Clock { time: t, set }) => {
            assert!(set && t >= UnixTime(1_800_000_000), "{t:?}")
        }
        other => panic!("{other:?}"),
    }
    r.until_on();
    assert_eq!(
        r.refused(Request::SetTime {
            time: UnixTime(1_000)
        }),
        ErrorCode::TimeBackwards
    );
}

#[test]
fn energy_integrates_power_over_time() {
    let mut r = Rig::new();
    for i in 0..=10 {
        r.now = Instant(1000 + i * 100);
        r.event(Event::PowerSample {
            millivolts: 5000,
            milliamps: 2000,
        });
    }
    // 10 W for 1 s = 10 J.
    match r.ok(Request::GetPowerMetrics) {
        Response::PowerMetrics(m) => {
            assert_eq!(
                (m.millivolts, m.milliamps, m.energy_mj),
                (5000, 2000, 10_000)
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_frames_are_refused_with_codes_change_nothing_and_the_bmc_keeps_answering() {
    let mut r = Rig::new();
    r.until_on();
    let addr = SmbusAddr::new(ADDR).unwrap();
    let ops = r.flash_ops();
    let mut f = [0u8; MAX_FRAME];
    let n = encode_request(addr, &Request::ConfirmBoot { slot: Slot::A }, &mut f).unwrap();
    // Wrong PEC.
    let mut bad = f[..n].to_vec();
    bad[n - 1] ^= 0x01;
    assert_eq!(status(&r.raw(&bad).unwrap()), 0x01);
    // Right PEC, but no counter and MAC: any process could send it.
    assert_eq!(status(&r.raw(&f[..n]).unwrap()), 0x0C);
    // Wrong length for the command (count 2, GetSlotInfo takes 1).
    let mut long = vec![0x40, 0x0B, 0x02, 0x00, 0x00];
    long.push(pec(&long));
    assert_eq!(status(&r.raw(&long).unwrap()), 0x02);
    // Count byte disagreeing with the frame.
    let mut short = vec![0x40, 0x0B, 0x05, 0x00];
    short.push(pec(&short));
    assert_eq!(status(&r.raw(&short).unwrap()), 0x02);
    // Unknown command.
    let mut unk = vec![0x40, 0x7E, 0x00];
    unk.push(pec(&unk));
    assert_eq!(status(&r.raw(&unk).unwrap()), 0x03);
    // Out-of-range slot.
    let mut oor = vec![0x40, 0x0B, 0x01, 0x07];
    oor.push(pec(&oor));
    assert_eq!(status(&r.raw(&oor).unwrap()), 0x04);
    // Out-of-range reset type.
    let mut rt = vec![0x40, 0x0C, 0x01, 0x09];
    rt.push(pec(&rt));
    assert_eq!(status(&r.raw(&rt).unwrap()), 0x04);
    // Another device's frame is not answered at all.
    let mut other = vec![0x42, 0x01, 0x00];
    other.push(pec(&other));
    assert_eq!(r.raw(&other), None);
    assert_eq!(r.flash_ops(), ops, "no refused frame wrote flash");
    assert!(!r.plan().confirmed);
    // Still answering, and the real request works.
    r.ok(Request::ConfirmBoot { slot: Slot::A });
    assert!(r.plan().confirmed);
}

fn status(answer: &[u8]) -> u8 {
    answer[2]
}

fn image(version: u32, payload: &[u8], key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    let prefix = signed_prefix(version, payload.len() as u32);
    let mut msg = prefix.to_vec();
    msg.extend_from_slice(payload);
    let sig = key.sign(&msg);
    let mut img = prefix.to_vec();
    img.extend_from_slice(&sig.to_bytes());
    img.extend_from_slice(payload);
    assert_eq!(img.len(), HEADER_LEN + payload.len());
    img
}

fn upload(r: &mut Rig, version: u32, img: &[u8]) -> Result<Response, racklet_bmc_proto::Error> {
    r.call(Request::FwBegin {
        version,
        total_len: img.len() as u32,
    })?;
    for (i, c) in img.chunks(FW_CHUNK_MAX).enumerate() {
        r.call(Request::FwChunk {
            offset: (i * FW_CHUNK_MAX) as u32,
            data: c,
        })?;
    }
    r.call(Request::FwFinish)
}

#[test]
fn signed_newer_firmware_is_accepted_into_the_inactive_bank() {
    let mut r = Rig::new();
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    let img = image(2, &payload, &signing_key());
    assert_eq!(
        upload(&mut r, 2, &img).unwrap(),
        Response::FwInfo(FwInfo {
            version: 2,
            bank: 1
        })
    );
    // The image sits in bank 1 (the upper half).
    let bank1 = &r.bmc.banks().image()[16384..16384 + img.len()];
    assert_eq!(bank1, &img[..]);
    let mut r = r.restart();
    assert_eq!(
        r.ok(Request::GetFwInfo),
        Response::FwInfo(FwInfo {
            version: 2,
            bank: 1
        })
    );
    // The next update goes to bank 0.
    let img3 = image(3, &payload, &signing_key());
    assert_eq!(
        upload(&mut r, 3, &img3).unwrap(),
        Response::FwInfo(FwInfo {
            version: 3,
            bank: 0
        })
    );
}

#[test]
fn unsigned_wrongly_signed_or_older_firmware_is_refused_and_state_unchanged() {
    let mut r = Rig::new();
    let payload = vec![0xA5u8; 300];
    let seq = r.bmc.store().sequence();
    // Older or equal version: refused at FwBegin, before the bank is touched.
    let bank_ops = r.bmc.banks().ops;
    let img1 = image(1, &payload, &signing_key());
    assert_eq!(
        upload(&mut r, 1, &img1).unwrap_err(),
        racklet_bmc_proto::Error::Refused(ErrorCode::OlderFirmware)
    );
    assert_eq!(r.bmc.banks().ops, bank_ops);
    // Signed by another key.
    let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let img = image(2, &payload, &other);
    assert_eq!(
        upload(&mut r, 2, &img).unwrap_err(),
        racklet_bmc_proto::Error::Refused(ErrorCode::BadSignature)
    );
    // Unsigned (zero signature).
    let mut unsigned = image(2, &payload, &signing_key());
    unsigned[12..76].fill(0);
    assert_eq!(
        upload(&mut r, 2, &unsigned).unwrap_err(),
        racklet_bmc_proto::Error::Refused(ErrorCode::BadSignature)
    );
    // One payload bit flipped.
    let mut flipped = image(2, &payload, &signing_key());
    flipped[100] ^= 1;
    assert_eq!(
        upload(&mut r, 2, &flipped).unwrap_err(),
        racklet_bmc_proto::Error::Refused(ErrorCode::BadSignature)
    );
    // Header version differing from FwBegin's (a signed v2 image announced as v9).
    let img2 = image(2, &payload, &signing_key());
    assert_eq!(
        upload(&mut r, 9, &img2).unwrap_err(),
        racklet_bmc_proto::Error::Refused(ErrorCode::BadSignature)
    );
    // Chunks out of order and finish without begin.
    r.ok(Request::FwBegin {
        version: 2,
        total_len: img2.len() as u32,
    });
    assert_eq!(
        r.refused(Request::FwChunk {
            offset: 28,
            data: &img2[28..56]
        }),
        ErrorCode::BadState
    );
    assert_eq!(r.refused(Request::FwFinish), ErrorCode::BadState);
    assert_eq!(r.bmc.store().sequence(), seq, "state store untouched");
    assert_eq!(
        r.ok(Request::GetFwInfo),
        Response::FwInfo(FwInfo {
            version: 1,
            bank: 0
        })
    );
    // And the BMC still works.
    assert_eq!(
        upload(&mut r, 2, &img2).unwrap(),
        Response::FwInfo(FwInfo {
            version: 2,
            bank: 1
        })
    );
}

#[test]
fn a_power_cut_during_a_request_answers_storage_and_keeps_old_or_new() {
    let report = Request::ReportInstalled {
        slot: Slot::B,
        kind: ImageKind::BootImage,
        version: SecurityVersion(5),
    };
    // A history so the next commit lands at various places (a key
    // provisioned, the clock set), then a power-on: count its ops, which a
    // rig on the same flash repeats exactly.
    let cfg = test_config();
    let mut probe = Rig::with(cfg, StateFlash::new(), Banks::new());
    probe.until_on();
    probe.ok(Request::SetTime { time: UnixTime(10) });
    let (flash, _) = probe.into_flashes();
    let mut counting = Rig::with(cfg, flash.clone(), Banks::new());
    counting.until_on();
    let boot_ops = counting.flash_ops() - flash.ops;
    let old = *counting.bmc.unit().persistent();
    let before = counting.flash_ops();
    counting.ok(report);
    let new = *counting.bmc.unit().persistent();
    let ops = counting.flash_ops() - before;
    assert!(ops >= 2);
    for k in 0..ops {
        let mut f = flash.clone();
        f.cut_power_at(boot_ops + k);
        let mut r = Rig::with(cfg, f, Banks::new());
        r.until_on();
        assert_eq!(r.refused(report), ErrorCode::Storage, "cut at op {k}");
        // The change was dropped in RAM too.
        assert_eq!(*r.bmc.unit().persistent(), old);
        let (mut f, banks) = r.into_flashes();
        f.restore_power();
        let r = Rig::with(cfg, f, banks);
        let got = *r.bmc.unit().persistent();
        assert!(
            got == old || got == new,
            "cut at op {k}: third state {got:?}"
        );
    }
}

#[test]
fn a_stale_power_good_never_releases_reset_after_a_power_cycle() {
    use racklet_bmc_core::{Persistent, Unit};
    let cfg = test_config();
    let mut u = Unit::new(cfg, Persistent::factory(3), Instant(0));
    u.on_event(Event::Tick, Instant(250));
    u.on_event(Event::PowerGood(true), Instant(260));
    u.on_event(Event::Tick, Instant(300));
    assert_eq!(u.power_status().state, PowerState::On);
    u.on_event(Event::Reset(ResetType::PowerCycle), Instant(1000));
    // No PowerGood(false) is ever reported: the rail model is silent.
    for t in (1000..3000).step_by(10) {
        u.on_event(Event::Tick, Instant(t));
    }
    let s = u.power_status();
    assert_eq!(
        (s.state, s.fault),
        (PowerState::Fault, FaultCode::PowerGoodTimeout),
        "reset released on a stale power-good"
    );
}

#[test]
fn a_power_on_whose_try_cannot_be_stored_never_releases_reset() {
    let mut flash = StateFlash::new();
    flash.cut_power_at(0);
    let mut r = Rig::with(test_config(), flash, Banks::new());
    r.advance(1000);
    assert!(
        r.trace.iter().all(|(_, o)| o.reset_asserted),
        "{:?}",
        r.trace
    );
    assert_eq!(
        r.out,
        Outputs {
            rail_on: false,
            reset_asserted: true
        }
    );
    assert_eq!(r.bmc.unit().power_status().fault, FaultCode::Storage);
}
