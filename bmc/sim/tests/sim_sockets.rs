//! The simulator over its real sockets: protocol, control and /metrics.

mod common;

use std::time::Duration;

use common::*;
use racklet_bmc_proto::{
    pec::pec, ErrorCode, FaultCode, ImageKind, PowerState, Request, ResetType, Response,
    SecurityVersion, Slot,
};

#[test]
fn every_unit_of_the_rack_powers_on_staggered_and_answers_at_its_address() {
    let dir = tempfile::tempdir().unwrap();
    // At speed 2 the simulator samples every 10 simulated ms (5 ms ticks).
    let sim = Sim::start(dir.path(), 2.0, None);
    for i in 0..5 {
        let mut c = sim.client(i);
        let p = wait_plan(&mut c, "first boot", |_| true);
        assert_eq!((p.slot, p.boot_count), (Slot::A, 1));
    }
    let st = sim.status();
    assert_eq!(st.len(), 5);
    let mut on_at: Vec<i64> = (1..=5)
        .map(|n| st[&format!("unit-{n}")]["rail_on_at_ms"].parse().unwrap())
        .collect();
    let sorted = {
        let mut s = on_at.clone();
        s.sort();
        s
    };
    assert_eq!(on_at, sorted, "units power on in rack order");
    on_at.dedup();
    for w in on_at.windows(2) {
        // 250 ms stagger, less one 10 ms sampling tick of jitter.
        assert!(
            w[1] - w[0] >= 240,
            "rails closer than the 250 ms stagger: {on_at:?}"
        );
    }
    assert_eq!(st["unit-3"]["addr"], "0x22");
}

#[test]
fn long_press_forces_slot_b_and_a_confirmed_b_wins() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 10.0, None);
    let mut c = sim.client(1);
    wait_plan(&mut c, "first boot", |p| p.slot == Slot::A);
    call(&mut c, Request::ConfirmBoot { slot: Slot::A });
    sim.control("press unit-2 long").unwrap();
    let p = wait_plan(&mut c, "forced B", |p| p.slot == Slot::B);
    assert!(p.forced_by_button);
    match call(&mut c, Request::GetButtonState) {
        Response::ButtonState(b) => assert_eq!(b.last_press, racklet_bmc_proto::Press::Long),
        other => panic!("{other:?}"),
    }
    call(&mut c, Request::ConfirmBoot { slot: Slot::B });
    sim.control("reset unit-2 power-cycle").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let p = wait_plan(&mut c, "B again", |p| p.boot_count == 3);
    assert_eq!((p.slot, p.forced_by_button), (Slot::B, false), "B won");
    // The other units did not notice.
    assert_eq!(sim.status()["unit-1"]["boot_count"], "1");
}

#[test]
fn pulling_power_is_a_fault_and_restoring_it_lets_the_unit_on_again() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 10.0, None);
    let mut c = sim.client(0);
    wait_plan(&mut c, "first boot", |_| true);
    sim.control("power unit-1 pull").unwrap();
    match call(&mut c, Request::GetPowerStatus) {
        Response::PowerStatus(s) => assert_eq!(
            (s.state, s.fault),
            (PowerState::Fault, FaultCode::PowerGoodLost)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.status()["unit-1"]["rail"], "off");
    sim.control("power unit-1 restore").unwrap();
    sim.control("reset unit-1 on").unwrap();
    let p = wait_plan(&mut c, "power back", |p| p.boot_count == 2);
    assert_eq!(p.slot, Slot::A);
    assert!(sim
        .control("power unit-9 pull")
        .unwrap_err()
        .contains("no unit"));
    assert!(sim.control("reset unit-1 sideways").is_err());
}

#[test]
fn missing_confirmations_fall_back_to_the_other_slot() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 10.0, Some(Duration::from_secs(3)));
    let mut c = sim.client(2);
    wait_plan(&mut c, "first boot", |_| true);
    call(&mut c, Request::ConfirmBoot { slot: Slot::A });
    call(
        &mut c,
        Request::ReportInstalled {
            slot: Slot::B,
            kind: ImageKind::BootImage,
            version: SecurityVersion(1),
        },
    );
    call(
        &mut c,
        Request::Reset {
            kind: ResetType::PowerCycle,
        },
    );
    for t in [2, 1, 0] {
        wait_plan(&mut c, "B attempt", |p| {
            p.slot == Slot::B && p.tries_left == t
        });
    }
    let p = wait_plan(&mut c, "fallback", |p| p.slot == Slot::A);
    assert!(p.fallback);
}

#[test]
fn counters_slots_and_time_survive_a_simulator_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let sim = Sim::start(dir.path(), 10.0, None);
        let mut c = sim.client(4);
        wait_plan(&mut c, "first boot", |_| true);
        call(&mut c, Request::ConfirmBoot { slot: Slot::A });
        call(
            &mut c,
            Request::SetTime {
                time: racklet_bmc_proto::UnixTime(1_900_000_000),
            },
        );
        call(
            &mut c,
            Request::ReportInstalled {
                slot: Slot::B,
                kind: ImageKind::BootImage,
                version: SecurityVersion(3),
            },
        );
        call(
            &mut c,
            Request::Reset {
                kind: ResetType::PowerCycle,
            },
        );
        wait_plan(&mut c, "B", |p| p.slot == Slot::B);
        call(&mut c, Request::ConfirmBoot { slot: Slot::B });
        let raise = Request::RaiseRollbackMin {
            kind: ImageKind::BootImage,
            version: SecurityVersion(3),
        };
        assert_eq!(
            call(&mut c, raise),
            Response::RollbackMin(SecurityVersion(3))
        );
        sim.stop();
    }
    let sim = Sim::start(dir.path(), 10.0, None);
    let mut c = sim.client(4);
    // MAC'd frames need an epoch: the restarted BMC starts the host first.
    wait_plan(&mut c, "boot after restart", |_| true);
    assert_eq!(
        call(
            &mut c,
            Request::GetRollbackMin {
                kind: ImageKind::BootImage
            }
        ),
        Response::RollbackMin(SecurityVersion(3))
    );
    let lower = Request::RaiseRollbackMin {
        kind: ImageKind::BootImage,
        version: SecurityVersion(2),
    };
    assert_eq!(refused(&mut c, lower), ErrorCode::CounterLower);
    let p = wait_plan(&mut c, "boot after restart", |_| true);
    assert_eq!(p.slot, Slot::B, "B stays active");
    match call(&mut c, Request::GetTime) {
        Response::Time(t) => assert!(t.set && t.time.0 >= 1_900_000_000),
        other => panic!("{other:?}"),
    }
    // Another unit's counter was never touched.
    let mut c0 = sim.client(0);
    assert_eq!(
        call(
            &mut c0,
            Request::GetRollbackMin {
                kind: ImageKind::BootImage
            }
        ),
        Response::RollbackMin(SecurityVersion(0))
    );
}

#[test]
fn bad_frames_on_the_socket_get_error_codes_and_the_unit_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 10.0, None);
    let mut c = sim.client(0);
    let mut bad_pec = vec![0x40, 0x05, 0x00];
    bad_pec.push(pec(&bad_pec) ^ 1);
    assert_eq!(c.raw(&bad_pec).unwrap()[2], ErrorCode::BadPec.to_byte());
    assert_eq!(
        c.raw(&[0x40, 0x05, 0xFF]).unwrap()[2],
        ErrorCode::BadLength.to_byte()
    );
    let mut unknown = vec![0x40, 0x55, 0x00];
    unknown.push(pec(&unknown));
    assert_eq!(
        c.raw(&unknown).unwrap()[2],
        ErrorCode::UnknownCommand.to_byte()
    );
    let mut bad_kind = vec![0x40, 0x03, 0x01, 0x09];
    bad_kind.push(pec(&bad_kind));
    assert_eq!(
        c.raw(&bad_kind).unwrap()[2],
        ErrorCode::OutOfRange.to_byte()
    );
    assert!(matches!(call(&mut c, Request::GetTime), Response::Time(_)));
}

#[test]
fn metrics_endpoint_serves_openmetrics_for_every_unit() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 10.0, None);
    let mut c = sim.client(0);
    wait_plan(&mut c, "first boot", |_| true);
    std::thread::sleep(Duration::from_millis(100));
    let (head, body) = sim.metrics_text();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    for n in 1..=5 {
        assert!(
            body.contains(&format!(
                "racklet_bmc_slot_tries{{unit=\"unit-{n}\",slot=\"A\"}}"
            )),
            "{body}"
        );
    }
    assert!(
        body.contains("racklet_bmc_rollback_min{unit=\"unit-1\",kind=\"boot_image\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("racklet_bmc_boot_slot{unit=\"unit-1\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("racklet_bmc_power_volts{unit=\"unit-1\"} 5.1"),
        "{body}"
    );
    let energy: f64 = body
        .lines()
        .find(|l| l.starts_with("racklet_bmc_energy_joules_total{unit=\"unit-1\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(energy > 0.0, "energy accumulates");
}

#[test]
fn the_cli_presses_and_reads_status_of_a_running_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 10.0, None);
    let bin = env!("CARGO_BIN_EXE_bmc-sim");
    let ctl = sim.control.to_string();
    let mut c = sim.client(3);
    wait_plan(&mut c, "first boot", |_| true);
    let out = std::process::Command::new(bin)
        .args(["press", "unit-4", "--long", "--control", &ctl])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_plan(&mut c, "forced B", |p| p.slot == Slot::B);
    let out = std::process::Command::new(bin)
        .args(["status", "--control", &ctl])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("unit-4 ") && l.contains("slot=B") && l.contains("forced=true")),
        "{text}"
    );
    let out = std::process::Command::new(bin)
        .args(["call", "unit-4", "boot-plan", "--control", &ctl])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("slot: B"),
        "{out:?}"
    );
    // The operator sets the clock through the control socket (no MAC).
    let out = std::process::Command::new(bin)
        .args(["set-time", "unit-4", "1900000000", "--control", &ctl])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sim.status()["unit-4"]["clock_set"], "true");
    let out = std::process::Command::new(bin)
        .args(["set-time", "unit-4", "5", "--control", &ctl])
        .output()
        .unwrap();
    assert!(!out.status.success(), "backwards: {out:?}");
    // Errors exit non-zero with the cause.
    let out = std::process::Command::new(bin)
        .args(["press", "unit-9", "--control", &ctl])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no unit `unit-9`"));
}

#[test]
fn after_seal_the_link_refuses_forged_and_unsealed_frames_and_status_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 10.0, None);
    let bin = env!("CARGO_BIN_EXE_bmc-sim");
    let ctl = sim.control.to_string();
    let mut c = sim.client(1);
    wait_plan(&mut c, "first boot", |_| true);
    let st = &sim.status()["unit-2"];
    assert_eq!(
        (
            st["key"].as_str(),
            st["sealed"].as_str(),
            st["clock_set"].as_str()
        ),
        ("none", "false", "false")
    );
    // Playing stage1: the client provisions a key and MACs its SetTime.
    call(
        &mut c,
        Request::SetTime {
            time: racklet_bmc_proto::UnixTime(1_900_000_000),
        },
    );
    call(&mut c, Request::Seal);
    let st = &sim.status()["unit-2"];
    assert_eq!(
        (
            st["key"].as_str(),
            st["sealed"].as_str(),
            st["clock_set"].as_str()
        ),
        ("provisioned", "true", "true")
    );
    // A process in the booted OS: a new client has no session key and
    // cannot get one; a frame without a MAC is refused.
    let mut os = sim.client(1);
    match os.call(Request::ConfirmBoot { slot: Slot::A }) {
        Err(racklet_bmc_sim::client::ClientError::NoSession { why, .. }) => {
            assert_eq!(why, racklet_bmc_proto::Error::Refused(ErrorCode::Sealed))
        }
        other => panic!("{other:?}"),
    }
    let out = std::process::Command::new(bin)
        .args(["call", "unit-2", "forge-confirm", "a", "--control", &ctl])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without a valid MAC"),
        "{out:?}"
    );
    assert!(!wait_plan(&mut c, "still on", |_| true).confirmed);
    let (_, body) = sim.metrics_text();
    assert!(
        body.contains("racklet_bmc_sealed{unit=\"unit-2\"} 1"),
        "{body}"
    );
    // The operator's very long press clears the key and power-cycles.
    sim.control("press unit-2 very-long").unwrap();
    let start = std::time::Instant::now();
    while sim.status()["unit-2"]["key"] != "none" {
        assert!(start.elapsed() < Duration::from_secs(20), "key not cleared");
        std::thread::sleep(Duration::from_millis(50));
    }
}
