//! The TUF version floors, attacked: only stage1 (holding this epoch's
//! session key, before it seals) raises one; nothing lowers one; they
//! survive a BMC restart and a power cut at every flash operation.

mod common;

use common::*;
use racklet_bmc_proto::{
    encode_authenticated, ErrorCode, Request, Session, TufFloors, TufRole, UnitKey, MAX_FRAME,
};

fn raise(role: TufRole, version: u32) -> Request<'static> {
    Request::RaiseTufFloor { role, version }
}

fn floors(r: &mut Rig) -> TufFloors {
    match r.ok(Request::GetTufFloors) {
        racklet_bmc_proto::Response::TufFloors(f) => f,
        other => panic!("{other:?}"),
    }
}

#[test]
fn floors_only_rise_answer_their_new_value_and_survive_a_restart() {
    let mut r = provisioned();
    assert_eq!(floors(&mut r), TufFloors::default());
    let got = r.ok(raise(TufRole::Timestamp, 41));
    assert_eq!(
        got,
        racklet_bmc_proto::Response::TufFloors(TufFloors([0, 41, 0, 0]))
    );
    r.ok(raise(TufRole::Root, 2));
    r.ok(raise(TufRole::Targets, u32::MAX));
    let want = TufFloors([2, 41, 0, u32::MAX]);
    // Lower or equal versions answer the floors unchanged and write nothing.
    let ops = r.flash_ops();
    for (role, v) in [
        (TufRole::Timestamp, 40),
        (TufRole::Root, 2),
        (TufRole::Root, 0),
    ] {
        assert_eq!(
            r.ok(raise(role, v)),
            racklet_bmc_proto::Response::TufFloors(want)
        );
    }
    assert_eq!(r.flash_ops(), ops, "no raise, no flash write");
    let mut r = r.restart();
    assert_eq!(floors(&mut r), want);
}

#[test]
fn an_unmacd_forged_or_sealed_raise_is_refused_and_changes_nothing() {
    let mut r = provisioned();
    r.ok(raise(TufRole::Snapshot, 7));
    let before = *r.bmc.unit().persistent();
    // Root in the OS, without a MAC: pushing a floor to the top would
    // make every later update look like a rollback.
    assert_eq!(
        r.call_plain(raise(TufRole::Snapshot, u32::MAX)),
        Err(refused(ErrorCode::Unauthenticated))
    );
    // With a made-up key.
    let epoch = r.auth_status().epoch;
    let forged = UnitKey::from_bytes([0x99; 32]).session(epoch);
    let mut f = [0u8; MAX_FRAME];
    let req = raise(TufRole::Root, u32::MAX);
    let n = encode_authenticated(addr(), &req, &forged, epoch, 1000, &mut f).unwrap();
    assert_eq!(
        r.raw(&f[..n]).unwrap()[2],
        ErrorCode::Unauthenticated.to_byte()
    );
    // With the real session key (left over in RAM), after Seal.
    let key = r.read_session_key().unwrap();
    let st = r.auth_status();
    r.ok(Request::Seal);
    let mut s = Session::new(key, st.epoch, st.last_counter);
    let n = s.encode(addr(), &req, &mut f).unwrap();
    assert_eq!(r.raw(&f[..n]).unwrap()[2], ErrorCode::Sealed.to_byte());
    assert_eq!(*r.bmc.unit().persistent(), before);
    // Reads stay open, sealed or not.
    assert_eq!(floors(&mut r), TufFloors([0, 0, 7, 0]));
}

#[test]
fn a_power_cut_at_every_op_of_a_raise_leaves_the_old_floors_or_the_new() {
    cut_at_every_op_of(raise(TufRole::Targets, 12), |p| p.tuf_floors);
}
