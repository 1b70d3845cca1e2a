//! stage1 in simulation, end to end: the real BMC simulator over its
//! protocol socket, a real imgsign repository over HTTPS, a file-backed
//! disk. First install, boot, confirm, update, a compromised server's
//! rollback, an offline boot, and a BMC fallback after an update that
//! never confirms.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bootd_client::NetConfig;
use common::repo::{uki, workers, Fixture};
use common::server::{Pki, Server};
use common::sim::Sim;
use racklet_bmc_proto::{RefusalReason, Request, Response, Slot, TufRole};
use racklet_hardware::Arch;
use stage1::bmc::Bmc;
use stage1::boot::{self, BootConfig, Mode};
use stage1::handoff::Record;
use stage1::slots::{SlotStatus, SlotStore};

const UNIT: usize = 1; // unit-2, SMBus 0x21, group workers

struct World {
    _dir: tempfile::TempDir,
    sim: Sim,
    fx: Fixture,
    pki: Pki,
    server: Option<Server>,
    cfg: BootConfig,
}

/// Waits until the BMC's plan is as wanted *and* it has released the CPU
/// (power On, out of reset): only then does a real stage1 start. (The plan
/// is chosen at power-on, a stagger delay before reset is released; a
/// boot confirmed before that is refused as not fitting the unit's state.)
fn wait_plan(addr: &str, want: impl Fn(&racklet_bmc_proto::BootPlan) -> bool) {
    let start = Instant::now();
    loop {
        if let Ok(mut b) = Bmc::connect(addr, 0x21) {
            if let Ok(Response::BootPlan(p)) = b.call(Request::GetBootPlan) {
                let running = matches!(
                    b.call(Request::GetPowerStatus),
                    Ok(Response::PowerStatus(s)) if s.state == racklet_bmc_proto::PowerState::On
                );
                if want(&p) && running {
                    return;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "BMC never reached the wanted plan"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::start(&dir.path().join("bmc"), 1.0, Some(Duration::from_secs(600)));
        let bmc_addr = sim.units[UNIT].to_string();
        wait_plan(&bmc_addr, |_| true);
        // The rack's clock: the BMC keeps time for a node without an RTC.
        Bmc::connect(&bmc_addr, 0x21)
            .unwrap()
            .set_time(jiff::Timestamp::now())
            .unwrap();
        let fx = Fixture::new();
        fx.release(
            "os-1.uki",
            &uki(Arch::X86_64, "console=ttyS0 v1", 1),
            "1.0.0",
            1,
            Arch::X86_64,
            workers(),
        );
        let pki = Pki::new("rack");
        let server = Server::start(fx.repo(), &pki, None).await;
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let disk = dir.path().join("disk.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let cfg = BootConfig {
            bootd: Some(server.base()),
            ca: Some(ca),
            net: NetConfig {
                read_timeout: Duration::from_secs(3),
                ..NetConfig::default()
            },
            ..common::unit2_config(dir.path(), disk, bmc_addr, fx.root_file())
        };
        World {
            _dir: dir,
            sim,
            fx,
            pki,
            server: Some(server),
            cfg,
        }
    }

    async fn boot(&self) -> Record {
        let rec = boot::run(&self.cfg, 10, Duration::from_millis(300))
            .await
            .unwrap();
        let on_disk: Record =
            serde_json::from_slice(&std::fs::read(self.record_path()).unwrap()).unwrap();
        assert_eq!(on_disk, rec);
        rec
    }

    /// What the booted OS runs: `confirm` with the token stage1 put on the
    /// hand-off's command line before it sealed the BMC.
    async fn confirm(&self) -> stage1::Result<boot::Confirmed> {
        let rec: Record =
            serde_json::from_slice(&std::fs::read(self.record_path()).unwrap()).unwrap();
        let cfg = BootConfig {
            confirm_token: stage1::bmc::ConfirmToken::from_cmdline(&rec.cmdline)
                .transpose()
                .unwrap(),
            ..self.cfg.clone()
        };
        boot::confirm(&cfg).await
    }

    fn record_path(&self) -> PathBuf {
        match &self.cfg.mode {
            Mode::Simulate { record } => record.clone(),
            Mode::Kexec => unreachable!(),
        }
    }

    fn slots(&self) -> stage1::slots::SlotState {
        SlotStore::open(std::fs::File::open(&self.cfg.disk).unwrap())
            .unwrap()
            .state()
            .clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_boot_confirm_update_refuse_rollback_boot_offline_and_fall_back() {
    let mut w = World::new().await;

    // 1. Blank disk: format, install os-1 into B (the BMC boots A), report,
    //    restart into B, hand off.
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    assert_eq!(rec.format, "uki");
    // The UKI's command line, and the OS's one-shot confirm token (stage1
    // sealed the BMC right after making it).
    let (cmdline, token) = rec.cmdline.split_once(" racklet.confirm=").unwrap();
    assert_eq!(cmdline, "console=ttyS0 v1");
    assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.'));
    assert_eq!(w.slots().active, Some(Slot::B));

    // 2. The booted OS confirms: the BMC raises the rollback minimum to 1.
    let c = w.confirm().await.unwrap();
    assert_eq!((c.slot, c.rollback_min.0), (Slot::B, 1));

    // 3. An update (security version 2) goes into A; B is never written.
    let b_before = w.slots().slot(Slot::B).clone();
    let old = tempfile::tempdir().unwrap();
    common::repo::copy_dir(&w.fx.repo(), old.path());
    w.fx.release(
        "os-2.uki",
        &uki(Arch::X86_64, "console=ttyS0 v2", 2),
        "2.0.0",
        2,
        Arch::X86_64,
        workers(),
    );
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));
    assert_eq!(w.slots().slot(Slot::B), &b_before);

    // 4. A compromised server replays the old repository: refused
    //    (timestamp rollback); the node boots what it has, re-verified
    //    against the stored metadata.
    let evil = Server::start(old.path().to_owned(), &w.pki, None).await;
    let good_url = w.cfg.bootd.replace(evil.base());
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));

    // 5. bootd unreachable: offline boot of the active slot.
    w.server.take();
    drop(evil);
    w.cfg.bootd = good_url;
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));

    // 6. os-2 never confirms: power cycles use up its tries, the BMC falls
    //    back to B; stage1 boots B, records A as failed, and does not
    //    install os-2 again. (Steps 4 and 5 each started from a BMC sealed
    //    by the hand-off before: stage1 asked it for a new boot, an attempt
    //    of os-2's too.)
    let addr = w.cfg.bmc_addr.clone();
    let fell_back = |p: &racklet_bmc_proto::BootPlan| p.slot == Slot::B && p.fallback;
    for _ in 0..3 {
        let now = match Bmc::connect(&addr, 0x21)
            .unwrap()
            .call(Request::GetBootPlan)
        {
            Ok(Response::BootPlan(p)) => p,
            other => panic!("GetBootPlan: {other:?}"),
        };
        if fell_back(&now) {
            break;
        }
        w.sim.control("reset unit-2 power-cycle").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        wait_plan(&addr, |p| p.boot_count > 0);
        std::thread::sleep(Duration::from_millis(900));
    }
    wait_plan(&addr, fell_back);
    let server = Server::start(w.fx.repo(), &w.pki, None).await;
    w.cfg.bootd = Some(server.base());
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    assert_eq!(w.slots().slot(Slot::A).status, SlotStatus::Failed);
    assert_eq!(w.slots().active, Some(Slot::B));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_button_forces_slot_b_but_never_below_the_rollback_minimum() {
    let w = World::new().await;
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    w.confirm().await.unwrap();
    w.fx.release(
        "os-2.uki",
        &uki(Arch::X86_64, "v2", 2),
        "2.0.0",
        2,
        Arch::X86_64,
        workers(),
    );
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));
    // Long press: the BMC power-cycles into B, forced. os-2 is unconfirmed,
    // so the minimum is still 1 and os-1 may boot; nothing is written.
    let addr = w.cfg.bmc_addr.clone();
    w.sim.control("press unit-2 long").unwrap();
    wait_plan(&addr, |p| p.slot == Slot::B && p.forced_by_button);
    let before = w.slots();
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    assert_eq!(w.slots().slots, before.slots);
    // Back on A, confirm os-2: the minimum becomes 2. Forcing B now is
    // refused: os-1 is below the rollback minimum.
    w.sim.control("reset unit-2 power-cycle").unwrap();
    wait_plan(&addr, |p| p.slot == Slot::A && !p.forced_by_button);
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));
    let c = w.confirm().await.unwrap();
    assert_eq!(c.rollback_min.0, 2);
    w.sim.control("press unit-2 long").unwrap();
    wait_plan(&addr, |p| p.slot == Slot::B && p.forced_by_button);
    let e = boot::boot_once(&w.cfg).await.unwrap_err();
    assert!(e.to_string().contains("below the rollback minimum"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_update_is_never_installed_and_the_node_boots_what_it_has() {
    let w = World::new().await;
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    w.confirm().await.unwrap();
    let v2 = uki(Arch::X86_64, "console=ttyS0 v2", 2);
    w.fx.release("os-2.uki", &v2, "2.0.0", 2, Arch::X86_64, workers());
    // The server (compromised) serves the signed metadata, but other bytes
    // of the same length for os-2: the digest differs.
    let mut evil = v2.clone();
    let at = evil.len() / 2;
    evil[at] ^= 0xff;
    let server = w.server.as_ref().unwrap();
    let name = format!(
        "{}.os-2.uki",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&v2))
    );
    server.attack(
        &format!("/targets/{name}"),
        common::server::Attack::Replace(evil),
    );
    let b_before = w.slots().slot(Slot::B).clone();
    let rec = w.boot().await;
    // Booted the installed os-1 from B, verified again; A holds nothing valid.
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    assert_ne!(w.slots().slot(Slot::A).status, SlotStatus::Valid);
    assert_eq!(w.slots().slot(Slot::B), &b_before);
    assert_eq!(w.slots().active, Some(Slot::B));
    // The honest server again: os-2 installs.
    server.clear();
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));
}

/// os-1 in B, os-2 (same security version) in A, both confirmed; then the
/// button: os-1 boots from B and confirms. Returns the BMC's address.
async fn forced_b_confirmed(w: &World) -> String {
    assert_eq!(w.boot().await.slot, 'B');
    w.confirm().await.unwrap();
    let v2 = uki(Arch::X86_64, "v2", 2);
    w.fx.release("os-2.uki", &v2, "2.0.0", 1, Arch::X86_64, workers());
    assert_eq!(w.boot().await.slot, 'A');
    w.confirm().await.unwrap();
    let addr = w.cfg.bmc_addr.clone();
    w.sim.control("press unit-2 long").unwrap();
    wait_plan(&addr, |p| p.slot == Slot::B && p.forced_by_button);
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    w.confirm().await.unwrap();
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_b_that_confirms_becomes_active_and_the_next_update_goes_to_a() {
    let w = World::new().await;
    let addr = forced_b_confirmed(&w).await;
    assert_eq!(w.slots().active, Some(Slot::B));
    // The next release goes into A, the slot the node no longer runs.
    w.fx.release(
        "os-3.uki",
        &uki(Arch::X86_64, "v3", 3),
        "3.0.0",
        1,
        Arch::X86_64,
        workers(),
    );
    w.sim.control("reset unit-2 force-restart").unwrap();
    wait_plan(&addr, |p| p.slot == Slot::B && !p.forced_by_button);
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-3.uki"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_state_kept_on_the_disk_survives_a_ram_state_dir_and_stops_a_replay() {
    // As PID 1 the state directory is RAM: wiped at every boot. With
    // --state-on-disk the slot disk keeps it.
    let mut w = World::new().await;
    w.cfg.state_on_disk = true;
    assert_eq!(w.boot().await.slot, 'B');
    w.confirm().await.unwrap();
    let old = tempfile::tempdir().unwrap();
    common::repo::copy_dir(&w.fx.repo(), old.path());
    w.fx.release(
        "os-2.uki",
        &uki(Arch::X86_64, "console=ttyS0 v2", 2),
        "2.0.0",
        2,
        Arch::X86_64,
        workers(),
    );
    let wipe = |dir: &std::path::Path| {
        let _ = std::fs::remove_dir_all(dir);
    };
    wipe(&w.cfg.state_dir);
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));
    w.confirm().await.unwrap();
    // Reboot (RAM state gone), and a compromised server replays the old,
    // unexpired repository: the restored state refuses it, and the node
    // boots os-2 against the stored metadata.
    wipe(&w.cfg.state_dir);
    let evil = Server::start(old.path().to_owned(), &w.pki, None).await;
    w.cfg.bootd = Some(evil.base());
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));
    let stored = std::fs::read_dir(w.cfg.state_dir.join("trusted"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    assert!(
        stored
            .iter()
            .any(|n| n.ends_with(".targets.json") && !n.starts_with("2.")),
        "{stored:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_metadata_never_installs_an_older_release_even_with_the_trusted_state_lost() {
    // The worst case for TUF's rollback checks: the node has forgotten
    // every version it trusted (RAM state, and the disk's state area
    // wiped). A compromised server replays the old repository, still
    // unexpired, whose release has the same security version. The BMC
    // kept the versions the node trusted (its TUF floors): the replay is
    // refused as a rollback before any plan is made — and the plan's own
    // floor (the image the slot header records) would refuse it too.
    let mut w = World::new().await;
    w.cfg.state_on_disk = false;
    assert_eq!(w.boot().await.slot, 'B');
    w.confirm().await.unwrap();
    let old = tempfile::tempdir().unwrap();
    common::repo::copy_dir(&w.fx.repo(), old.path());
    w.fx.release(
        "os-2.uki",
        &uki(Arch::X86_64, "console=ttyS0 v2", 2),
        "2.0.0",
        1,
        Arch::X86_64,
        workers(),
    );
    let _ = std::fs::remove_dir_all(&w.cfg.state_dir);
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));
    w.confirm().await.unwrap();
    let _ = std::fs::remove_dir_all(&w.cfg.state_dir);
    let evil = Server::start(old.path().to_owned(), &w.pki, None).await;
    w.cfg.bootd = Some(evil.base());
    // The replayed release lists only os-1: os-2 is not in it, so nothing
    // on the disk checks out against it, and os-1 may not be installed.
    let version = |dir: &std::path::Path, role: &str| -> u32 {
        let j: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("metadata/{role}.json"))).unwrap(),
        )
        .unwrap();
        j["signed"]["version"].as_u64().unwrap() as u32
    };
    let mut bmc = Bmc::connect(&w.cfg.bmc_addr, 0x21).unwrap();
    let floors = bmc.tuf_floors().unwrap();
    let replayed = version(old.path(), "timestamp");
    assert!(
        floors.get(TufRole::Timestamp) > replayed,
        "{floors:?}: the BMC keeps the newer timestamp version"
    );
    assert_eq!(
        floors.get(TufRole::Timestamp),
        version(&w.fx.repo(), "timestamp")
    );
    let refusals_before = bmc.refusals().unwrap().count;
    let err = boot::run(&w.cfg, 1, Duration::from_millis(100))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot boot"), "{err}");
    // Refused as what it is, and told to the BMC; the floors stay.
    let mut bmc = Bmc::connect(&w.cfg.bmc_addr, 0x21).unwrap();
    let r = bmc.refusals().unwrap();
    assert!(r.count > refusals_before, "{r:?}");
    assert_eq!(r.last.unwrap().reason, RefusalReason::Rollback, "{r:?}");
    assert_eq!(bmc.tuf_floors().unwrap(), floors);
    let slots = w.slots();
    assert_eq!(slots.active, Some(Slot::A));
    let b = slots.slots[Slot::B.index()].image.as_ref().unwrap();
    assert_eq!(b.name.as_str(), "os-1.uki", "slot B was not rewritten");
    assert_eq!(
        slots.slots[Slot::A.index()]
            .image
            .as_ref()
            .unwrap()
            .name
            .as_str(),
        "os-2.uki"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_planted_in_the_disk_state_area_is_never_an_anchor() {
    // Whoever holds the disk (or an OS booted on the node) can rewrite the
    // state area. They plant their own root, metadata signed by their own
    // keys, and their image in the BMC's slot; bootd is unreachable.
    let mut w = World::new().await;
    w.cfg.state_on_disk = true;
    assert_eq!(w.boot().await.slot, 'B');
    w.confirm().await.unwrap();
    let evil = Fixture::new();
    let bad = uki(Arch::X86_64, "console=ttyS0 evil", 9);
    evil.release("evil.uki", &bad, "9.0.0", 9, Arch::X86_64, workers());
    // Their state directory: their root as `trusted/99.root.json`.
    let planted = tempfile::tempdir().unwrap();
    let t = planted.path().join("trusted");
    std::fs::create_dir_all(&t).unwrap();
    let md = evil.repo().join("metadata");
    for e in std::fs::read_dir(&md).unwrap() {
        let n = e.unwrap().file_name().into_string().unwrap();
        let to = if n == "1.root.json" {
            "99.root.json".to_owned()
        } else {
            n.clone()
        };
        if n != "root.json" {
            std::fs::copy(md.join(&n), t.join(to)).unwrap();
        }
    }
    let disk = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&w.cfg.disk)
        .unwrap();
    stage1::statearea::save(&disk, planted.path()).unwrap();
    // Their image in slot B (the BMC's), header record to match.
    let store = SlotStore::open(disk.try_clone().unwrap()).unwrap();
    let mut next = store.state().clone();
    let off = next.geometry.offsets[Slot::B.index()];
    std::os::unix::fs::FileExt::write_all_at(&disk, &bad, off).unwrap();
    next.slots[Slot::B.index()] = stage1::slots::SlotRecord {
        status: SlotStatus::Valid,
        image: Some(stage1::slots::SlotImage {
            name: racklet_release::ImageName::new("evil.uki").unwrap(),
            version: "9.0.0".parse().unwrap(),
            security_version: racklet_release::SecurityVersion(9),
            sha256: <sha2::Sha256 as sha2::Digest>::digest(&bad).into(),
            length: bad.len() as u64,
        }),
    };
    // Raw header writes: an attacker does not go through SlotStore.
    next.generation += 1;
    for at in stage1::slots::COPY_OFFSETS {
        std::os::unix::fs::FileExt::write_all_at(&disk, &next.encode(), at).unwrap();
    }
    drop(store);
    // Reboot: RAM state gone, bootd gone. stage1 restores the planted
    // state but anchors at the pinned root: their metadata does not
    // verify, so nothing is booted.
    let _ = std::fs::remove_dir_all(&w.cfg.state_dir);
    w.server.take();
    let e = boot::run(&w.cfg, 0, Duration::from_millis(100))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot boot") && e.contains("evil.uki"),
        "refused for the wrong reason: {e}"
    );
    assert!(
        !std::path::Path::new(&w.record_path()).exists() || {
            let r: Record =
                serde_json::from_slice(&std::fs::read(w.record_path()).unwrap()).unwrap();
            r.image != "evil.uki"
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_button_the_newest_image_is_reported_back_not_downloaded_again() {
    let w = World::new().await;
    let addr = forced_b_confirmed(&w).await;
    // An ordinary reboot: the release still wants os-2, which slot A holds.
    let a_before = w.slots().slot(Slot::A).clone();
    let server = w.server.as_ref().unwrap();
    let downloads = |s: &Server| {
        s.requests()
            .iter()
            .filter(|(p, _)| p.starts_with("/targets/"))
            .count()
    };
    let before = downloads(server);
    w.sim.control("reset unit-2 force-restart").unwrap();
    wait_plan(&addr, |p| p.slot == Slot::B && !p.forced_by_button);
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));
    assert_eq!(downloads(server), before, "os-2 was downloaded again");
    assert_eq!(w.slots().slot(Slot::A), &a_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_slower_than_its_deadline_is_abandoned_and_the_installed_image_boots() {
    // A server (or a link) that trickles: slow enough never to trip the
    // per-read timeout. Without a deadline the BMC's watchdog would
    // power-cycle the node mid-download until its tries ran out.
    let mut w = World::new().await;
    assert_eq!(w.boot().await.slot, 'B');
    w.confirm().await.unwrap();
    let v2 = uki(Arch::X86_64, "console=ttyS0 v2", 2);
    w.fx.release("os-2.uki", &v2, "2.0.0", 2, Arch::X86_64, workers());
    let name = format!(
        "{}.os-2.uki",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&v2))
    );
    let server = w.server.as_ref().unwrap();
    server.attack(
        &format!("/targets/{name}"),
        common::server::Attack::Slow(Duration::from_millis(50)),
    );
    // Only the deadline can end it: no minimum rate here.
    w.cfg.net.min_bytes_per_sec = 0;
    w.cfg.install_deadline = Duration::from_millis(1500);
    let rec = tokio::time::timeout(Duration::from_secs(60), w.boot())
        .await
        .expect("the install was never abandoned");
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    assert_ne!(w.slots().slot(Slot::A).status, SlotStatus::Valid);
}

/// True when `needle` occurs nowhere in `hay`.
fn absent(hay: &[u8], needle: &[u8]) -> bool {
    !hay.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bmc_unit_key_and_session_key_never_reach_the_node_s_disk_or_state() {
    // A disk holder (or root in the booted OS) reads every byte stage1
    // wrote: the disk, the trusted state, the hand-off record. stage1
    // provisioned the unit key (World::new sets the clock MAC'd) and
    // authenticated an install with the session key; neither may be there.
    use racklet_bmc_core::memflash::{MemFlash, SECTOR};
    let w = World::new().await;
    w.boot().await;
    let flash = std::fs::read(w._dir.path().join("bmc/unit-2.state.flash")).unwrap();
    let image: [u8; 2 * SECTOR] = flash.try_into().unwrap();
    let store = racklet_bmc_core::Store::mount(
        MemFlash::<{ 2 * SECTOR }>::from_image(&image),
        racklet_bmc_core::Persistent::factory(3),
    )
    .unwrap();
    let key = store.current().key.expect("stage1 provisioned a unit key");
    let epoch = Bmc::connect(&w.cfg.bmc_addr, 0x21)
        .unwrap()
        .auth_status()
        .unwrap()
        .epoch;
    let mut needles = vec![key.as_bytes()[..16].to_vec(), key.as_bytes()[16..].to_vec()];
    for e in 1..=epoch.0 {
        let s = key.session(racklet_bmc_proto::Epoch(e));
        needles.push(s.half(0).0.to_vec());
        needles.push(s.half(1).0.to_vec());
    }
    let mut files = vec![w.cfg.disk.clone(), w.record_path()];
    files_under(&w.cfg.state_dir, &mut files);
    assert!(files.len() > 2, "{files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for n in &needles {
            assert!(absent(&bytes, n), "key material in {}", f.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_bmc_takes_boot_confirm_only_with_the_token_stage1_handed_the_os() {
    use stage1::bmc::ConfirmToken;
    let w = World::new().await;
    let rec = w.boot().await;
    assert_eq!(rec.slot, 'B');
    // The hand-off put the token on the command line, then sealed.
    let cmdline = rec.cmdline.clone();
    let mut b = Bmc::connect(&w.cfg.bmc_addr, 0x21).unwrap();
    assert!(b.facts().unwrap().auth.sealed);
    assert!(
        b.confirm_token(Slot::B, None).is_err(),
        "no session after the seal"
    );
    // The OS without the token: refused, and the error names the request.
    let e = boot::confirm(&w.cfg).await.unwrap_err().to_string();
    assert!(e.contains("ConfirmBoot") && e.contains("sealed"), "{e}");
    // `stage1 confirm` with the token from /proc/cmdline: confirmed, and
    // the minimum raised to the booted image's security version.
    let with_token = BootConfig {
        confirm_token: ConfirmToken::from_cmdline(&cmdline).transpose().unwrap(),
        ..w.cfg.clone()
    };
    let c = boot::confirm(&with_token).await.unwrap();
    assert_eq!((c.slot, c.rollback_min.0), (Slot::B, 1));
    // Once only: the BMC refuses the token's frame sent again.
    let mut os = Bmc::connect(&w.cfg.bmc_addr, 0x21)
        .unwrap()
        .with_confirm_token(with_token.confirm_token.clone().unwrap());
    let e = os.confirm(Slot::B).unwrap_err().to_string();
    assert!(e.contains("Replayed") || e.contains("replayed"), "{e}");
    // A second `stage1 confirm` (its unit ran twice) sees the boot
    // confirmed and sends nothing.
    assert_eq!(boot::confirm(&with_token).await.unwrap().slot, Slot::B);
}
