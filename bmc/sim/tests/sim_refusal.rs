//! A refused update reported to the simulator: it shows in `status` and
//! in the metrics, survives later boots and a restart of the simulator,
//! and a frame without a MAC (the CLI's `forge-refuse`) changes nothing.

mod common;

use std::time::Duration;

use common::*;
use racklet_bmc_proto::{RefusalReason, Request, ResetType, Response, Slot};

fn status_of(sim: &Sim, unit: &str) -> std::collections::BTreeMap<String, String> {
    sim.status()[unit].clone()
}

#[test]
fn a_refusal_shows_in_status_and_metrics_and_outlives_boots_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_bmc-sim");
    let epoch;
    {
        let sim = Sim::start(dir.path(), 10.0, None);
        let ctl = sim.control.to_string();
        let mut c = sim.client(2);
        let plan = wait_plan(&mut c, "first boot", |_| true);
        epoch = plan.boot_count;
        let st = status_of(&sim, "unit-3");
        assert_eq!(
            (st["refused"].as_str(), st["refusals"].as_str()),
            ("none", "0")
        );
        // Root in the OS, without a MAC: refused, nothing recorded.
        let out = std::process::Command::new(bin)
            .args(["call", "unit-3", "forge-refuse", "rollback"])
            .args(["--control", &ctl])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{out:?}");
        assert_eq!(status_of(&sim, "unit-3")["refusals"], "0");
        // stage1 (the CLI's `call` MACs it), twice in this boot.
        for reason in ["signature", "rollback"] {
            let out = std::process::Command::new(bin)
                .args(["call", "unit-3", "refuse", reason, "--control", &ctl])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        let st = status_of(&sim, "unit-3");
        assert_eq!(st["refused"], format!("rollback@epoch{epoch}"));
        assert_eq!(
            (st["refusals"].as_str(), st["refused_boots_ago"].as_str()),
            ("2", "0")
        );
        let (_, body) = sim.metrics_text();
        for line in [
            "racklet_bmc_update_refusals_total{unit=\"unit-3\"} 2".to_owned(),
            format!(
                "racklet_bmc_update_refusal_last_epoch{{unit=\"unit-3\",reason=\"rollback\"}} {epoch}"
            ),
            "racklet_bmc_update_refusal_boots_ago{unit=\"unit-3\"} 0".to_owned(),
            "racklet_bmc_update_refusals_total{unit=\"unit-1\"} 0".to_owned(),
            "racklet_bmc_update_refusal_boots_ago{unit=\"unit-1\"} -1".to_owned(),
        ] {
            assert!(body.lines().any(|l| l == line), "{line} in {body}");
        }
        // A later boot that goes well keeps the record; status counts boots.
        call(&mut c, Request::ConfirmBoot { slot: Slot::A });
        call(
            &mut c,
            Request::Reset {
                kind: ResetType::PowerCycle,
            },
        );
        wait_plan(&mut c, "next boot", |p| p.boot_count == epoch + 1);
        call(&mut c, Request::ConfirmBoot { slot: Slot::A });
        let st = status_of(&sim, "unit-3");
        assert_eq!(st["refused"], format!("rollback@epoch{epoch}"));
        assert_eq!(st["refused_boots_ago"], "1");
        sim.stop();
    }
    // The simulator restarts on the same flash files: still there.
    let sim = Sim::start(dir.path(), 10.0, None);
    let mut c = sim.client(2);
    let start = std::time::Instant::now();
    while status_of(&sim, "unit-3")["refusals"] != "2" {
        assert!(start.elapsed() < Duration::from_secs(10), "record lost");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_plan(&mut c, "boot after restart", |_| true);
    match call(&mut c, Request::GetRefusal) {
        Response::Refusals(r) => {
            assert_eq!(r.count, 2);
            assert_eq!(
                r.last.map(|l| (l.reason, l.epoch.0)),
                Some((RefusalReason::Rollback, epoch))
            );
        }
        other => panic!("{other:?}"),
    }
}
