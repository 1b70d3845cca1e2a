//! The node ↔ BMC link through stage1's own client, against the real
//! simulator: stage1 provisions and authenticates before it seals; after
//! the seal a process in the booted OS (a new client, as root would open
//! the device) cannot change BMC state, and the confirm token stage1 hands
//! the OS works once, in its own epoch only.

mod common;

use std::time::Duration;

use common::sim::{wait_on, Sim};
use racklet_bmc_proto::{
    ErrorCode, ImageKind, Request, ResetType, Response, SecurityVersion, Slot,
};
use stage1::bmc::{cmdline_with_confirm_token, Bmc, BmcError, ConfirmToken};
use stage1::error::Error;

const UNIT: usize = 1; // unit-2, SMBus 0x21
const SMBUS: u8 = 0x21;

fn no_session(e: Error) -> (String, ErrorCode) {
    match e {
        Error::Bmc(BmcError::NoSession { request, why }) => (request, why),
        other => panic!("expected NoSession, got {other:?}"),
    }
}

#[test]
fn after_seal_the_os_cannot_change_bmc_state_and_confirms_once_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1.0, Some(Duration::from_secs(600)));
    let addr = sim.units[UNIT].to_string();
    wait_on(&addr, SMBUS, 0);

    // stage1: a factory BMC; the first state change provisions a key.
    let mut stage1 = Bmc::connect(&addr, SMBUS).unwrap();
    let facts = stage1.facts().unwrap();
    assert!(!facts.auth.key_provisioned);
    assert_eq!(facts.time, None, "a factory clock is not a time");
    assert!(!facts.clock.set);
    stage1.set_time(jiff::Timestamp::now()).unwrap();
    assert!(stage1.facts().unwrap().time.is_some(), "set: now a time");
    stage1
        .report_installed(Slot::B, SecurityVersion(2))
        .unwrap();
    stage1
        .call(Request::Reset {
            kind: ResetType::PowerCycle,
        })
        .unwrap();
    let e1 = facts.auth.epoch.0;
    wait_on(&addr, SMBUS, e1);

    // The next boot: B with version 2. stage1 makes the token and seals.
    let mut stage1 = Bmc::connect(&addr, SMBUS).unwrap();
    let facts = stage1.facts().unwrap();
    assert_eq!(facts.plan.slot, Slot::B);
    assert!(facts.auth.key_provisioned && !facts.auth.sealed);
    let token = stage1
        .confirm_token(Slot::B, Some(SecurityVersion(2)))
        .unwrap();
    stage1.seal().unwrap();
    let cmdline = cmdline_with_confirm_token("console=ttyS0 racklet.confirm=forged", &token);
    assert!(!cmdline.contains("forged"), "{cmdline}");
    assert!(cmdline.starts_with("console=ttyS0 racklet.confirm="));

    // A root process in the OS: no session key to be had; nothing sent.
    let mut root = Bmc::connect(&addr, SMBUS).unwrap();
    let (req, why) = no_session(
        root.report_installed(Slot::A, SecurityVersion(9))
            .unwrap_err(),
    );
    assert!(req.contains("ReportInstalled"), "{req}");
    assert_eq!(why, ErrorCode::Sealed);
    let (req, _) = no_session(
        root.set_time(jiff::Timestamp::from_second(4_102_444_800).unwrap())
            .unwrap_err(),
    );
    assert!(req.contains("SetTime"), "{req}");
    assert!(root.raise_min(SecurityVersion(2)).is_err());
    assert!(root.confirm(Slot::B).is_err());
    let text = Error::from(BmcError::NoSession {
        request: "ConfirmBoot { slot: B }".into(),
        why: ErrorCode::Sealed,
    })
    .to_string();
    assert!(
        text.contains("ConfirmBoot") && text.contains("sealed"),
        "{text}"
    );
    // A frame without a MAC, sent raw, is refused by the BMC itself.
    let mut raw = racklet_bmc_sim::client::Client::new(
        std::net::TcpStream::connect(&addr).unwrap(),
        racklet_bmc_proto::SmbusAddr::new(SMBUS).unwrap(),
    );
    assert!(matches!(
        raw.call_plain(Request::ConfirmBoot { slot: Slot::B }),
        Err(racklet_bmc_sim::client::ClientError::Protocol(
            racklet_bmc_proto::Error::Refused(ErrorCode::Unauthenticated)
        ))
    ));
    // Not even sealing again and "rebooting" (a new client) unseals.
    root.seal().unwrap();
    assert!(
        Bmc::connect(&addr, SMBUS)
            .unwrap()
            .auth_status()
            .unwrap()
            .sealed
    );

    // The OS confirms with the token from its command line: once.
    let parsed = ConfirmToken::from_cmdline(&cmdline).unwrap().unwrap();
    assert_eq!(parsed, token);
    let mut os = Bmc::connect(&addr, SMBUS)
        .unwrap()
        .with_confirm_token(parsed.clone());
    os.confirm(Slot::B).unwrap();
    assert_eq!(
        os.raise_min(SecurityVersion(2)).unwrap(),
        SecurityVersion(2)
    );
    match os.confirm(Slot::B).unwrap_err() {
        Error::Bmc(BmcError::Unauthenticated { request, why }) => {
            assert!(request.contains("ConfirmBoot"));
            assert_eq!(why, ErrorCode::Replayed);
        }
        other => panic!("{other:?}"),
    }
    // A raise the token does not cover is not sent at all.
    assert!(matches!(
        os.raise_min(SecurityVersion(3)).unwrap_err(),
        Error::Bmc(BmcError::NoSession { .. })
    ));
    let min = match Bmc::connect(&addr, SMBUS)
        .unwrap()
        .call(Request::GetRollbackMin {
            kind: ImageKind::BootImage,
        })
        .unwrap()
    {
        Response::RollbackMin(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(min, SecurityVersion(2));

    // Next epoch (the BMC power-cycles the host): the old token is dead.
    let epoch = os.auth_status().unwrap().epoch.0;
    sim.control("reset unit-2 power-cycle").unwrap();
    wait_on(&addr, SMBUS, epoch);
    let mut os = Bmc::connect(&addr, SMBUS)
        .unwrap()
        .with_confirm_token(parsed);
    // (Unsealed again: this client could open a session, as stage1 would;
    // seal so that only the token is tried.)
    os.seal().unwrap();
    match os.confirm(Slot::B).unwrap_err() {
        Error::Bmc(BmcError::Unauthenticated { why, .. }) => {
            assert_eq!(why, ErrorCode::Unauthenticated)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_confirm_token_on_the_command_line_parses_or_is_refused_clearly() {
    assert!(ConfirmToken::from_cmdline("console=ttyS0 quiet").is_none());
    for bad in [
        "racklet.confirm=zz",
        "racklet.confirm=",
        // A read frame (GetBootPlan to 0x20) is not a confirmation.
        "racklet.confirm=40010093",
        // A ConfirmBoot without a MAC neither.
        "racklet.confirm=4002010058",
    ] {
        match ConfirmToken::from_cmdline(bad) {
            Some(Err(BmcError::BadToken { .. })) => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
    // The README's worked example (unit-1 key 00..1F, epoch 5) parses.
    let t = ConfirmToken::from_cmdline(
        "ro racklet.confirm=40021500010000006d271db8182ffd8c114f6759d1ecc92b46",
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        t.cmdline_word(),
        "racklet.confirm=40021500010000006d271db8182ffd8c114f6759d1ecc92b46"
    );
}

#[test]
fn two_clients_of_one_boot_keep_their_counters_apart() {
    // boot.rs opens the BMC more than once per boot: a later client's
    // frames must not make an earlier one's look replayed.
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1.0, Some(Duration::from_secs(600)));
    let addr = sim.units[UNIT].to_string();
    wait_on(&addr, SMBUS, 0);
    let mut a = Bmc::connect(&addr, SMBUS).unwrap();
    let mut b = Bmc::connect(&addr, SMBUS).unwrap();
    let t = jiff::Timestamp::now();
    a.set_time(t).unwrap();
    b.set_time(t).unwrap();
    b.set_time(t).unwrap();
    a.set_time(t).unwrap();
    assert_eq!(a.auth_status().unwrap().last_counter, 4);
}

#[test]
fn a_confirm_token_round_trips_through_an_efivarfs_variable() {
    let dir = tempfile::tempdir().unwrap();
    assert!(ConfirmToken::from_efi_variable(dir.path()).is_none());
    let t = ConfirmToken::from_cmdline(
        "racklet.confirm=40021500010000006d271db8182ffd8c114f6759d1ecc92b46",
    )
    .unwrap()
    .unwrap();
    t.write_efi_variable(dir.path()).unwrap();
    let raw = std::fs::read(dir.path().join(stage1::bmc::CONFIRM_EFI_VARIABLE)).unwrap();
    assert_eq!(&raw[..4], &[7, 0, 0, 0], "NV | BS | RT");
    assert_eq!(
        ConfirmToken::from_efi_variable(dir.path())
            .unwrap()
            .unwrap(),
        t
    );
}

#[test]
fn a_confirm_token_is_written_again_over_an_immutable_variable() {
    // efivarfs makes a variable it does not know immutable: the second
    // firmware hand-off's token write failed with EPERM until stage1
    // cleared the attribute (`chattr -i`) first. Here on a file system
    // with attributes, as root.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let t = ConfirmToken::from_cmdline(
        "racklet.confirm=40021500010000006d271db8182ffd8c114f6759d1ecc92b46",
    )
    .unwrap()
    .unwrap();
    t.write_efi_variable(dir.path()).unwrap();
    let var = dir.path().join(stage1::bmc::CONFIRM_EFI_VARIABLE);
    let locked = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&var)
        .status()
        .is_ok_and(|s| s.success());
    if !common::have(locked, "root and a file system with attributes (chattr +i)") {
        return;
    }
    let again = t.write_efi_variable(dir.path());
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(&var)
        .status();
    again.unwrap();
    assert_eq!(
        ConfirmToken::from_efi_variable(dir.path())
            .unwrap()
            .unwrap(),
        t
    );
}
