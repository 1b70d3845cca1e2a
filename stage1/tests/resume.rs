//! An install cut short by a power cut (or a kill) resumes after the
//! reboot from its last checkpoint — the durable, re-hashed prefix — with
//! a `Range` request from exactly there, never from byte 0 and never from
//! bytes that were not durable; and the slot still becomes valid only when
//! the whole image matches its signed hash. A `206` whose `Content-Range`
//! is not the range asked for is refused.

mod common;

use std::time::Duration;

use bootd_client::{tls::client_config, Client, NetConfig, TufTransport};
use common::repo::{workers, Fixture};
use common::server::{Attack, Pki, Server};
use common::{bytes, disk::CrashDisk};
use racklet_bmc_proto::Slot;
use racklet_hardware::Arch;
use stage1::fetch::{install_target, Backoff};
use stage1::install::checkpoint;
use stage1::slots::{SlotStatus, SlotStore};
use stage1::tuf::{self, TrustedTime, TufConfig};

fn client(pki: &Pki) -> Client {
    Client::new(
        Some(client_config(pki.ca_pem.as_bytes(), None).unwrap()),
        NetConfig {
            read_timeout: Duration::from_secs(5),
            ..NetConfig::default()
        },
    )
}

/// A served release of `data` and the target to install.
struct Rig {
    fx: Fixture,
    pki: Pki,
    server: Server,
    state: tempfile::TempDir,
}

async fn rig(data: &[u8]) -> (Rig, stage1::plan::ReleaseTarget, url::Url, String) {
    let fx = Fixture::new();
    fx.release("os-2.uki", data, "2.0.0", 2, Arch::X86_64, workers());
    let pki = Pki::new("rack");
    let server = Server::start(fx.repo(), &pki, None).await;
    let state = tempfile::tempdir().unwrap();
    let cfg = TufConfig::at(&server.base(), state.path()).unwrap();
    let now = TrustedTime::resolve(Some(jiff::Timestamp::now()), None, None).unwrap();
    let r = tuf::refresh(
        &cfg,
        &TufTransport::new(client(&pki)),
        Some(&fx.root_file()),
        &now,
    )
    .await
    .unwrap();
    let t = r
        .release
        .targets
        .iter()
        .find(|t| t.name.as_str() == "os-2.uki")
        .unwrap()
        .clone();
    let url = tuf::target_url(&cfg.targets_url, &t, true).unwrap();
    let path = url.path().to_owned();
    (
        Rig {
            fx,
            pki,
            server,
            state,
        },
        t,
        url,
        path,
    )
}

fn no_retries() -> Backoff {
    Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(1),
        retries: 0,
    }
}

/// The `Range` headers of the requests for `path` from index `from` on.
fn ranges(server: &Server, path: &str, from: usize) -> Vec<Option<String>> {
    server
        .requests()
        .into_iter()
        .filter(|(p, _)| p == path)
        .skip(from)
        .map(|(_, r)| r)
        .collect()
}

fn target_requests(server: &Server, path: &str) -> usize {
    ranges(server, path, 0).len()
}

/// Cuts the power during an install at the first point (from operation
/// 16 on) that leaves a checkpoint on the disk; returns the disk as it
/// comes back and the checkpoint.
async fn cut_after_a_checkpoint(
    t: &stage1::plan::ReleaseTarget,
    url: &url::Url,
    c: &Client,
) -> (Vec<u8>, stage1::install::Checkpoint) {
    for cut in 16..60 {
        let mut store = SlotStore::format(CrashDisk::new(8 << 20)).unwrap();
        let mut d = store.into_disk();
        d.cut_power_after(cut);
        store = SlotStore::open(d).unwrap();
        if install_target(&mut store, Slot::B, t, url, c, &no_retries())
            .await
            .is_ok()
        {
            continue;
        }
        let img = store.into_disk().after_power_loss(cut as u64);
        let mut s = SlotStore::open(CrashDisk::from_bytes(img.clone())).unwrap();
        if let Some(p) = checkpoint(&mut s, Slot::B).filter(|p| p.verified > 0) {
            return (img, p);
        }
    }
    panic!("no power cut left a checkpoint");
}

#[tokio::test]
async fn a_power_cut_mid_install_resumes_from_the_last_checkpoint_after_the_reboot() {
    let data = bytes(1_500_000, 9);
    let (rig, t, url, path) = rig(&data).await;
    let c = client(&rig.pki);
    let mut resumed_runs = 0;
    // The power goes at many points of the install: during slot writes,
    // between a checkpoint's fsync and its record, between the record and
    // its fsync; and the disk's cache keeps an arbitrary part of what was
    // not synced (torn at a sector).
    // (A whole install of this image is about 50 disk operations.)
    for (i, cut) in (2usize..50).step_by(3).enumerate() {
        let mut store = SlotStore::format(CrashDisk::new(8 << 20)).unwrap();
        let mut d = store.into_disk();
        d.cut_power_after(cut);
        store = SlotStore::open(d).unwrap();
        let first = install_target(&mut store, Slot::B, &t, &url, &c, &no_retries()).await;
        if first.is_ok() {
            // Fewer operations than `cut` this time (chunk sizes vary).
            continue;
        }
        // The reboot: what the platters hold.
        let after = store.into_disk().after_power_loss(i as u64 + 1);
        let mut store = SlotStore::open(CrashDisk::from_bytes(after)).unwrap();
        if store.state().active == Some(Slot::B) {
            // Cut after the flip was durable: the install was complete.
            let mut got = Vec::new();
            store
                .read_verified(Slot::B, |b| {
                    got.extend_from_slice(b);
                    Ok(())
                })
                .unwrap();
            assert_eq!(got, data, "cut {cut}");
            continue;
        }
        let point = checkpoint(&mut store, Slot::B);
        let before = target_requests(&rig.server, &path);
        let done = tokio::time::timeout(
            Duration::from_secs(60),
            install_target(&mut store, Slot::B, &t, &url, &c, &no_retries()),
        )
        .await
        .expect("the resumed install hung")
        .unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let asked = ranges(&rig.server, &path, before);
        match point {
            Some(p) if p.verified > 0 => {
                resumed_runs += 1;
                assert_eq!(
                    asked,
                    vec![Some(format!("bytes={}-", p.verified))],
                    "cut {cut}: resumed from the checkpoint"
                );
                assert_eq!(done.resumed_from, p.verified);
                assert!(p.verified < data.len() as u64);
            }
            _ => {
                assert_eq!(asked, vec![None], "cut {cut}: no checkpoint, from byte 0");
                assert_eq!(done.resumed_from, 0);
            }
        }
        // Valid, active, and exactly the signed image.
        assert_eq!(store.state().active, Some(Slot::B));
        assert_eq!(store.state().slot(Slot::B).status, SlotStatus::Valid);
        let mut got = Vec::new();
        store
            .read_verified(Slot::B, |b| {
                got.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        assert_eq!(got, data, "cut {cut}");
    }
    assert!(
        resumed_runs >= 3,
        "only {resumed_runs} runs resumed from a checkpoint"
    );
}

#[tokio::test]
async fn a_prefix_altered_after_the_checkpoint_is_never_made_valid() {
    let data = bytes(1_500_000, 3);
    let (rig, t, url, _path) = rig(&data).await;
    let c = client(&rig.pki);
    let (mut img, p) = cut_after_a_checkpoint(&t, &url, &c).await;
    let store = SlotStore::open(CrashDisk::from_bytes(img.clone())).unwrap();
    assert!(p.verified > 1000);
    // Someone (or the medium) changes a byte of the checkpointed prefix.
    let at = (store.state().geometry.offsets[Slot::B.index()] + 1000) as usize;
    img[at] ^= 0xff;
    let mut store = SlotStore::open(CrashDisk::from_bytes(img)).unwrap();
    let e = install_target(&mut store, Slot::B, &t, &url, &c, &no_retries())
        .await
        .unwrap_err();
    assert!(matches!(e, stage1::Error::DigestMismatch { .. }), "{e}");
    assert_eq!(store.state().slot(Slot::B).status, SlotStatus::Writing);
    assert_ne!(store.state().active, Some(Slot::B));
    // The checkpoint is gone: the next attempt starts over, and succeeds.
    assert_eq!(checkpoint(&mut store, Slot::B), None);
    let done = install_target(&mut store, Slot::B, &t, &url, &c, &no_retries())
        .await
        .unwrap();
    assert_eq!(done.resumed_from, 0);
    assert_eq!(store.state().active, Some(Slot::B));
    drop(rig.state);
    drop(rig.fx);
}

#[tokio::test]
async fn a_206_with_another_content_range_is_refused() {
    let data = bytes(1_500_000, 5);
    let (rig, t, url, path) = rig(&data).await;
    let c = client(&rig.pki);
    // An install cut short after a checkpoint…
    let (img, p) = cut_after_a_checkpoint(&t, &url, &c).await;
    let mut store = SlotStore::open(CrashDisk::from_bytes(img)).unwrap();
    // …resumes with a Range; the server answers 206 from byte 0 instead
    // (its Content-Range says so): those bytes would land at the wrong
    // offset.
    rig.server.attack(&path, Attack::WrongRange { start: 0 });
    let before = target_requests(&rig.server, &path);
    let e = install_target(&mut store, Slot::B, &t, &url, &c, &no_retries())
        .await
        .unwrap_err();
    assert_eq!(
        ranges(&rig.server, &path, before),
        vec![Some(format!("bytes={}-", p.verified))]
    );
    let msg = e.to_string();
    assert!(
        msg.contains("Content-Range") && msg.contains(&format!("bytes {}-", 0)),
        "{msg}"
    );
    assert_ne!(store.state().active, Some(Slot::B));
    assert_eq!(store.state().slot(Slot::B).status, SlotStatus::Writing);
    // The checkpoint still stands: an honest server then completes it.
    rig.server.clear();
    let done = install_target(&mut store, Slot::B, &t, &url, &c, &no_retries())
        .await
        .unwrap();
    assert_eq!(done.resumed_from, p.verified);
    assert_eq!(store.state().active, Some(Slot::B));
}

#[test]
fn kill_9_mid_install_then_the_next_run_asks_for_the_rest_only() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fx = Fixture::new();
    let image = bytes(48 << 20, 2);
    fx.release("os-2.uki", &image, "2.0.0", 2, Arch::X86_64, workers());
    let pki = Pki::new("rack");
    let server = rt.block_on(Server::start(fx.repo(), &pki, None));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    let stage1 = || std::process::Command::new(assert_cmd::cargo::cargo_bin("stage1"));
    assert!(stage1()
        .args(["slots", "format"])
        .arg(&disk)
        .status()
        .unwrap()
        .success());
    let install = || {
        let mut c = stage1();
        c.args(["slots", "install", "--slot", "b", "--target", "os-2.uki"])
            .arg("--disk")
            .arg(&disk)
            .arg("--repo")
            .arg(server.base().as_str())
            .arg("--ca")
            .arg(&ca)
            .arg("--root")
            .arg(fx.root_file())
            .arg("--state")
            .arg(dir.path().join("state"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let point = || {
        let mut s = SlotStore::open(std::fs::File::open(&disk).unwrap()).ok()?;
        checkpoint(&mut s, Slot::B).filter(|p| p.verified > 0)
    };
    // Kill -9 as soon as a checkpoint is on the disk.
    let mut child = install().spawn().unwrap();
    let start = std::time::Instant::now();
    while point().is_none() && child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    if child.try_wait().unwrap().is_some() {
        eprintln!("the install finished before it could be killed; nothing to resume");
        return;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let p = point().expect("the checkpoint survives the kill");
    let path = server
        .requests()
        .into_iter()
        .find(|(p, _)| p.ends_with(".os-2.uki"))
        .unwrap()
        .0;
    let before = target_requests(&server, &path);
    assert!(install().status().unwrap().success());
    assert_eq!(
        ranges(&server, &path, before),
        vec![Some(format!("bytes={}-", p.verified))],
        "the second run asks for the bytes after the checkpoint only"
    );
    let mut s = SlotStore::open(std::fs::File::open(&disk).unwrap()).unwrap();
    assert_eq!(s.state().active, Some(Slot::B));
    let mut got = Vec::new();
    s.read_verified(Slot::B, |b| {
        got.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    assert!(got == image, "the installed image is the signed one");
}
