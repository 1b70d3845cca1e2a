//! The update-refusal record, attacked: only stage1 (holding this epoch's
//! session key, before it seals) can add one; nobody on the link can clear
//! it; it survives a power cut at every flash operation and later boots.

mod common;

use common::*;
use racklet_bmc_proto::{
    encode_authenticated, Epoch, ErrorCode, LastRefusal, RefusalReason, Refusals, Request,
    ResetType, Response, Session, UnitKey, MAX_FRAME,
};

fn report(reason: RefusalReason) -> Request<'static> {
    Request::ReportRefusal { reason }
}

fn refusals(r: &mut Rig) -> Refusals {
    match r.ok(Request::GetRefusal) {
        Response::Refusals(x) => x,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_factory_bmc_has_no_refusal_and_the_read_needs_no_mac() {
    let mut r = Rig::new();
    r.until_on();
    // Open to anyone, before any key: GetRefusal is a read.
    assert_eq!(refusals(&mut r), Refusals::default());
    // A report before a key exists is refused: nobody could MAC it.
    assert_eq!(
        r.call_plain(report(RefusalReason::Rollback)),
        Err(refused(ErrorCode::Unauthenticated))
    );
}

#[test]
fn a_macd_report_is_recorded_with_its_epoch_counted_and_kept_across_boots() {
    let mut r = provisioned();
    let epoch = r.auth_status().epoch;
    r.ok(report(RefusalReason::Signature));
    r.ok(report(RefusalReason::Rollback));
    let got = refusals(&mut r);
    assert_eq!(
        got,
        Refusals {
            count: 2,
            last: Some(LastRefusal {
                reason: RefusalReason::Rollback,
                epoch
            }),
        }
    );
    assert_eq!(got.boots_ago(r.plan().boot_count), Some(0));
    // A later boot that goes well does not erase the record; the boot count
    // says how long ago it was.
    let slot = r.plan().slot;
    r.ok(Request::ConfirmBoot { slot });
    for _ in 0..2 {
        r.ok(Request::Reset {
            kind: ResetType::PowerCycle,
        });
        r.until_on();
        let slot = r.plan().slot;
        r.ok(Request::ConfirmBoot { slot });
    }
    let r2 = refusals(&mut r);
    assert_eq!(r2, got);
    assert_eq!(r2.boots_ago(r.plan().boot_count), Some(2));
    // A restart of the BMC reads it back from flash.
    let mut r = r.restart();
    assert_eq!(refusals(&mut r), got);
}

fn forged(req: &Request<'_>, key: UnitKey, epoch: Epoch, counter: u32) -> Vec<u8> {
    let mut f = [0u8; MAX_FRAME];
    let n = encode_authenticated(addr(), req, &key.session(epoch), epoch, counter, &mut f).unwrap();
    f[..n].to_vec()
}

#[test]
fn an_unmacd_forged_or_replayed_report_is_refused_and_changes_nothing() {
    let mut r = provisioned();
    r.ok(report(RefusalReason::Expired));
    let epoch = r.auth_status().epoch;
    let state = *r.bmc.unit().persistent();
    let ops = r.flash_ops();
    // Root in the OS, without a MAC.
    for reason in RefusalReason::ALL {
        assert_eq!(
            r.call_plain(report(reason)),
            Err(refused(ErrorCode::Unauthenticated))
        );
    }
    // With a made-up key.
    let f = forged(
        &report(RefusalReason::Other),
        UnitKey::from_bytes([0x99; 32]),
        epoch,
        1000,
    );
    assert_eq!(r.raw(&f).unwrap()[2], ErrorCode::Unauthenticated.to_byte());
    // A genuine frame sent twice: the second is a replay.
    let mut s = r.session().unwrap();
    let mut f = [0u8; MAX_FRAME];
    let n = s
        .encode(addr(), &report(RefusalReason::Other), &mut f)
        .unwrap();
    let frame = f[..n].to_vec();
    assert_eq!(r.raw(&frame).unwrap()[2], 0);
    let state_after_one = *r.bmc.unit().persistent();
    let ops_after_one = r.flash_ops();
    assert_eq!(r.raw(&frame).unwrap()[2], ErrorCode::Replayed.to_byte());
    // An older counter, validly MAC'd.
    let mut old = Session::new(r.read_session_key().unwrap(), s.epoch(), 0);
    let n = old
        .encode(addr(), &report(RefusalReason::Rollback), &mut f)
        .unwrap();
    assert_eq!(r.raw(&f[..n]).unwrap()[2], ErrorCode::Replayed.to_byte());
    assert_eq!(*r.bmc.unit().persistent(), state_after_one);
    assert_eq!(r.flash_ops(), ops_after_one, "a refusal writes no flash");
    assert_eq!(state_after_one.refusals.count, state.refusals.count + 1);
    assert!(ops_after_one > ops);
    // The captured frame is worthless in the next epoch.
    r.ok(Request::Reset {
        kind: ResetType::PowerCycle,
    });
    r.until_on();
    let before = *r.bmc.unit().persistent();
    assert_eq!(
        r.raw(&frame).unwrap()[2],
        ErrorCode::Unauthenticated.to_byte()
    );
    assert_eq!(r.bmc.unit().persistent().refusals, before.refusals);
}

#[test]
fn after_seal_no_report_is_taken_even_with_the_session_key() {
    // The OS may read stage1's leftover session key from RAM after kexec:
    // it still must not add a refusal, nor hide one (nothing clears it).
    let mut r = provisioned();
    r.ok(report(RefusalReason::Unreachable));
    let key = r.read_session_key().unwrap();
    let st = r.auth_status();
    r.ok(Request::Seal);
    let before = *r.bmc.unit().persistent();
    let mut s = Session::new(key, st.epoch, st.last_counter);
    let mut f = [0u8; MAX_FRAME];
    let n = s
        .encode(addr(), &report(RefusalReason::Other), &mut f)
        .unwrap();
    assert_eq!(r.raw(&f[..n]).unwrap()[2], ErrorCode::Sealed.to_byte());
    assert_eq!(*r.bmc.unit().persistent(), before);
    assert_eq!(refusals(&mut r).count, 1);
}

#[test]
fn a_power_cut_at_every_op_of_a_report_leaves_the_old_record_or_the_new() {
    cut_at_every_op_of(report(RefusalReason::TamperedTarget), |p| p.refusals);
}
