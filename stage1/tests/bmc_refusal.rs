//! stage1 tells its BMC that it refused an update, against the real
//! simulator: the report goes MAC'd through the session (a factory BMC gets
//! its key provisioned on the way), shows in the BMC's status, survives
//! the next boot; after the seal neither stage1's client nor a process in
//! the booted OS can add one, and a frame without a MAC changes nothing.

mod common;

use std::time::Duration;

use common::sim::{wait_on, Sim};
use racklet_bmc_proto::{
    encode_request, ErrorCode, Request, ResetType, Slot, SmbusAddr, MAX_FRAME,
};
use stage1::bmc::{Bmc, BmcError};
use stage1::error::Error;

const UNIT: usize = 2; // unit-3, SMBus 0x22
const SMBUS: u8 = 0x22;

/// The ReportRefusal frame without counter and MAC: what root in the OS can send.
fn unmacd(reason: racklet_bmc_proto::RefusalReason) -> Vec<u8> {
    let mut f = [0u8; MAX_FRAME];
    let n = encode_request(
        SmbusAddr::new(SMBUS).unwrap(),
        &Request::ReportRefusal { reason },
        &mut f,
    )
    .unwrap();
    f[..n].to_vec()
}

#[test]
fn stage1_reports_a_refusal_macd_before_seal_and_the_os_cannot_add_or_clear_one() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1.0, Some(Duration::from_secs(600)));
    let addr = sim.units[UNIT].to_string();
    wait_on(&addr, SMBUS, 0);

    // stage1 on a factory BMC: bootd's reason converts; the first state
    // change opens the session (provisioning a key) and the report goes MAC'd.
    let mut stage1 = Bmc::connect(&addr, SMBUS).unwrap();
    let epoch = stage1.facts().unwrap().auth.epoch;
    assert_eq!(stage1.refusals().unwrap().count, 0);
    stage1
        .report_refusal(bootd_api::RefusalReason::Rollback)
        .unwrap();
    let r = stage1.refusals().unwrap();
    assert_eq!(r.count, 1);
    let last = r.last.unwrap();
    assert_eq!(
        (last.reason, last.epoch),
        (racklet_bmc_proto::RefusalReason::Rollback, epoch)
    );
    let st = &sim.status()["unit-3"];
    assert_eq!(st["refused"], format!("rollback@epoch{}", epoch.0));
    assert_eq!(st["refusals"], "1");

    // After the seal: stage1's own client is refused, and so is the OS.
    stage1.seal().unwrap();
    match stage1.report_refusal(racklet_bmc_proto::RefusalReason::Other) {
        Err(Error::Bmc(BmcError::NoSession { .. })) => {}
        other => panic!("sealed: expected NoSession, got {other:?}"),
    }
    let mut os = Bmc::connect(&addr, SMBUS).unwrap();
    assert!(os
        .report_refusal(bootd_api::RefusalReason::Expired)
        .is_err());
    // Root crafting the frame without a MAC: Unauthenticated, nothing changes.
    let mut link = std::net::TcpStream::connect(&addr).unwrap();
    link.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let answer = raw_exchange(
        &mut link,
        &unmacd(racklet_bmc_proto::RefusalReason::Signature),
    );
    assert_eq!(answer[2], ErrorCode::Unauthenticated.to_byte());
    assert_eq!(os.refusals().unwrap(), r, "the OS changed the record");

    // The next boot (the BMC starts the host again) keeps the record.
    os.call(Request::Reset {
        kind: ResetType::PowerCycle,
    })
    .unwrap();
    wait_on(&addr, SMBUS, epoch.0);
    let mut stage1 = Bmc::connect(&addr, SMBUS).unwrap();
    let facts = stage1.facts().unwrap();
    assert_eq!(facts.plan.slot, Slot::A);
    let now = stage1.refusals().unwrap();
    assert_eq!(now, r);
    assert_eq!(now.boots_ago(facts.auth.epoch.0), Some(1));
    assert_eq!(sim.status()["unit-3"]["refused_boots_ago"], "1");
}

/// Sends one frame on the simulator's stream and reads one response frame.
fn raw_exchange(link: &mut std::net::TcpStream, frame: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    link.write_all(frame).unwrap();
    let mut reader = racklet_bmc_proto::StreamReader::responses();
    let mut b = [0u8; 1];
    loop {
        link.read_exact(&mut b).unwrap();
        if let Some(f) = reader.push(b[0]) {
            return f.unwrap().to_vec();
        }
    }
}
