//! The TUF client and its transport against a malicious repository server:
//! every attack of issue 5 is mounted over real TLS and must be refused
//! with a reason naming it, leaving the trusted state as it was.

mod common;

use std::time::Duration;

use bootd_api::RefusalReason;
use bootd_client::{tls::client_config, Client, NetConfig, TufTransport};
use common::repo::{copy_dir, workers, Fixture};
use common::server::{Attack, Pki, Server};
use common::{bytes, disk::CrashDisk};
use racklet_bmc_proto::Slot;
use racklet_hardware::Arch;
use stage1::fetch::{install_target, Backoff};
use stage1::slots::SlotStore;
use stage1::tuf::{self, TrustedTime, TufConfig};
use stage1::Error;

fn now() -> TrustedTime {
    TrustedTime::resolve(Some(jiff::Timestamp::now()), None, None).unwrap()
}

fn transport(pki: &Pki) -> TufTransport {
    TufTransport::new(Client::new(
        Some(client_config(pki.ca_pem.as_bytes(), None).unwrap()),
        NetConfig {
            read_timeout: Duration::from_secs(2),
            grace: Duration::from_millis(500),
            min_bytes_per_sec: 16 * 1024,
            ..NetConfig::default()
        },
    ))
}

struct Rig {
    fx: Fixture,
    pki: Pki,
    server: Server,
    state: tempfile::TempDir,
}

impl Rig {
    async fn new() -> Rig {
        let fx = Fixture::new();
        fx.release(
            "os-1.uki",
            &bytes(200_000, 1),
            "1.0.0",
            1,
            Arch::X86_64,
            workers(),
        );
        let pki = Pki::new("rack");
        let server = Server::start(fx.repo(), &pki, None).await;
        Rig {
            fx,
            pki,
            server,
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn cfg(&self) -> TufConfig {
        TufConfig::at(&self.server.base(), self.state.path()).unwrap()
    }

    async fn refresh(&self) -> stage1::Result<tuf::Refreshed> {
        tuf::refresh(
            &self.cfg(),
            &transport(&self.pki),
            Some(&self.fx.root_file()),
            &now(),
        )
        .await
    }

    /// The same state directory against another server (a rolled-back or
    /// forged copy of the repository).
    async fn refresh_from(&self, server: &Server) -> stage1::Result<tuf::Refreshed> {
        let cfg = TufConfig::at(&server.base(), self.state.path()).unwrap();
        tuf::refresh(
            &cfg,
            &transport(&self.pki),
            Some(&self.fx.root_file()),
            &now(),
        )
        .await
    }
}

fn chain(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[tokio::test]
async fn a_good_repository_loads_and_offers_chacha_first() {
    let rig = Rig::new().await;
    let r = rig.refresh().await.unwrap();
    assert_eq!(r.release.targets.len(), 1);
    assert!(r.release.fresh);
    assert_eq!(r.release.targets[0].info.security_version.0, 1);
    let suites = rig.server.suites.lock().unwrap().clone();
    assert!(!suites.is_empty());
    assert!(suites.iter().all(|s| s.contains("CHACHA20")), "{suites:?}");
    // The verified bytes are stored and re-verify offline.
    let stored = tuf::load_stored(&rig.cfg()).await.unwrap();
    assert!(!stored.fresh);
    assert_eq!(stored.targets, r.release.targets);
    // A clock's time is used, never kept: only signed time raises the floor.
    assert!(tuf::time_floor(rig.state.path()).unwrap().is_none());
}

#[tokio::test]
async fn rolled_back_timestamp_snapshot_and_targets_are_refused() {
    let rig = Rig::new().await;
    let old = tempfile::tempdir().unwrap();
    rig.fx.copy_to(old.path());
    rig.fx.release(
        "os-2.uki",
        &bytes(1000, 2),
        "2.0.0",
        2,
        Arch::X86_64,
        workers(),
    );
    rig.refresh().await.unwrap();
    let (t_v, s_v, ts_v) = {
        let p = imgsign::repo::Published::open(&rig.fx.repo()).unwrap();
        (
            p.targets.signed.version.get(),
            p.snapshot.signed.version.get(),
            p.timestamp.signed.version.get(),
        )
    };
    // Timestamp: the whole old repository.
    let srv = Server::start(old.path().to_owned(), &rig.pki, None).await;
    let e = rig.refresh_from(&srv).await.unwrap_err();
    assert!(
        chain(&e).to_lowercase().contains("timestamp"),
        "{}",
        chain(&e)
    );
    // Reported to bootd and counted as what it is.
    assert_eq!(e.refusal_reason(), RefusalReason::Rollback, "{}", chain(&e));
    // Snapshot: a fresh timestamp naming the old snapshot (bootd's key is
    // online, so a compromised bootd can sign this).
    let forged = tempfile::tempdir().unwrap();
    copy_dir(old.path(), forged.path());
    let old_snap = std::fs::read(forged.path().join("metadata/1.snapshot.json")).ok();
    assert!(old_snap.is_some() || s_v > 1);
    rig.fx.forge_online(forged.path(), 1, 1, ts_v + 1);
    let srv = Server::start(forged.path().to_owned(), &rig.pki, None).await;
    let e = rig.refresh_from(&srv).await.unwrap_err();
    assert!(
        chain(&e).to_lowercase().contains("snapshot"),
        "{}",
        chain(&e)
    );
    assert_eq!(e.refusal_reason(), RefusalReason::Rollback, "{}", chain(&e));
    // Targets: new snapshot and timestamp versions naming the old targets.
    let forged = tempfile::tempdir().unwrap();
    copy_dir(old.path(), forged.path());
    rig.fx.forge_online(forged.path(), 1, s_v + 1, ts_v + 2);
    let srv = Server::start(forged.path().to_owned(), &rig.pki, None).await;
    let e = rig.refresh_from(&srv).await.unwrap_err();
    assert!(
        chain(&e).to_lowercase().contains("targets"),
        "{}",
        chain(&e)
    );
    assert_eq!(e.refusal_reason(), RefusalReason::Rollback, "{}", chain(&e));
    assert!(t_v >= 2);
    // The trusted state still holds the newest release.
    let stored = tuf::load_stored(&rig.cfg()).await.unwrap();
    assert!(stored.targets.iter().any(|t| t.name.as_str() == "os-2.uki"));
}

/// Root 2 (the same keys as root 1), signed by `signers` of the root keys.
fn root_2(fx: &Fixture, signers: &[usize]) -> tough::schema::Signed<tough::schema::Root> {
    let root = imgsign::repo::Published::open(&fx.repo()).unwrap().root;
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365);
    let mut staged = imgsign::rootkeys::stage(Some(&root.signed), &[], expires).unwrap();
    let keys: Vec<_> = signers.iter().map(|&i| &fx.root_keys[i]).collect();
    imgsign::rootkeys::sign_staged(&mut staged, Some(&root.signed), &keys).unwrap();
    staged
}

/// The version of the root the next walk starts from.
fn anchor_version(rig: &Rig) -> u64 {
    let root: tough::schema::Signed<tough::schema::Root> =
        serde_json::from_slice(&tuf::trusted_root(&rig.cfg(), None).unwrap()).unwrap();
    root.signed.version.get()
}

#[tokio::test]
async fn a_root_verified_before_a_later_step_fails_is_kept() {
    // TUF 5.3.8: root 2 is verified, then the timestamp fails its
    // signature check. The refresh fails, but root 2 is what the next walk
    // starts from: a server that now withholds 2.root.json cannot keep the
    // node on root 1 (whose keys the rotation may have retired).
    let rig = Rig::new().await;
    rig.refresh().await.unwrap();
    let keys = [&rig.fx.snapshot, &rig.fx.timestamp];
    let now = jiff::Timestamp::now();
    let expiries = imgsign::repo::Expiries::default();
    imgsign::rootkeys::publish(
        &rig.fx.repo(),
        root_2(&rig.fx, &[0, 1]),
        &keys,
        now,
        &expiries,
    )
    .unwrap();
    edit_timestamp(&rig, |ts| {
        ts["signatures"][0]["sig"] = "00".repeat(64).into()
    });
    let e = rig.refresh().await.unwrap_err();
    assert!(chain(&e).contains("timestamp"), "{}", chain(&e));
    let kept = std::fs::read(rig.state.path().join("trusted/2.root.json")).unwrap();
    let served = std::fs::read(rig.fx.repo().join("metadata/2.root.json")).unwrap();
    assert_eq!(kept, served, "the root is kept as received");
    assert_eq!(anchor_version(&rig), 2);
    // The offline boot still has the last complete set to verify against.
    tuf::load_stored(&rig.cfg()).await.unwrap();
}

#[tokio::test]
async fn a_root_below_its_threshold_is_not_kept() {
    // 2.root.json signed by one of the two root signatures it needs.
    let rig = Rig::new().await;
    rig.refresh().await.unwrap();
    rig.server.attack(
        "/metadata/2.root.json",
        Attack::Replace(serde_json::to_vec(&root_2(&rig.fx, &[0])).unwrap()),
    );
    let e = rig.refresh().await.unwrap_err();
    assert!(chain(&e).contains("root"), "{}", chain(&e));
    assert!(!rig.state.path().join("trusted/2.root.json").exists());
    assert_eq!(anchor_version(&rig), 1);
}

#[tokio::test]
async fn expired_metadata_is_refused_as_a_freeze_attack() {
    let exp = imgsign::repo::Expiries {
        timestamp: jiff::SignedDuration::from_hours(1),
        ..Default::default()
    };
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(48);
    let fx = Fixture::at(past, &exp);
    fx.release_at(
        "os-1.uki",
        b"abc",
        "1.0.0",
        1,
        Arch::X86_64,
        workers(),
        past,
        &exp,
    );
    let pki = Pki::new("rack");
    let server = Server::start(fx.repo(), &pki, None).await;
    let state = tempfile::tempdir().unwrap();
    let cfg = TufConfig::at(&server.base(), state.path()).unwrap();
    let e = tuf::refresh(&cfg, &transport(&pki), Some(&fx.root_file()), &now())
        .await
        .unwrap_err();
    assert!(
        chain(&e).to_lowercase().contains("expired"),
        "{}",
        chain(&e)
    );
    assert_eq!(e.refusal_reason(), RefusalReason::Expired, "{}", chain(&e));
}

#[tokio::test]
async fn metadata_expired_by_trusted_time_is_refused_though_the_system_clock_lags() {
    let rig = Rig::new().await;
    // The BMC says it is 400 days later than this host believes: tough
    // (system clock) would accept the metadata; trusted time refuses it.
    let later = TrustedTime::resolve(
        Some(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 400)),
        None,
        None,
    )
    .unwrap();
    let e = tuf::refresh(
        &rig.cfg(),
        &transport(&rig.pki),
        Some(&rig.fx.root_file()),
        &later,
    )
    .await
    .unwrap_err();
    assert!(chain(&e).contains("freeze attack"), "{}", chain(&e));
    assert_eq!(e.refusal_reason(), RefusalReason::Expired);
    assert!(tuf::time_floor(rig.state.path()).unwrap().is_none());
    // No time at all: refused by name — and an unset clock is refused even
    // with a floor (the floor bounds time from below; it is not "now").
    assert!(matches!(
        TrustedTime::resolve(None, None, None),
        Err(Error::NoTrustedTime)
    ));
    let floor = jiff::Timestamp::now();
    assert!(matches!(
        TrustedTime::resolve(None, None, Some(floor)),
        Err(Error::NoTrustedTime)
    ));
    // The floor wins over a BMC clock that went back.
    let t = TrustedTime::resolve(
        Some(floor - jiff::SignedDuration::from_hours(1)),
        None,
        Some(floor),
    )
    .unwrap();
    assert_eq!(t.now, floor);
    assert!(t.raised_to_floor);
    // Signed time wins over a BMC clock someone pushed ahead.
    let t = TrustedTime::resolve(
        Some(floor + jiff::SignedDuration::from_hours(24 * 365 * 70)),
        Some(floor),
        None,
    )
    .unwrap();
    assert_eq!((t.now, t.source), (floor, tuf::TimeSource::Signed));
    tuf::persist_time(rig.state.path(), floor).unwrap();
    tuf::persist_time(
        rig.state.path(),
        floor - jiff::SignedDuration::from_hours(5),
    )
    .unwrap();
    assert_eq!(tuf::time_floor(rig.state.path()).unwrap(), Some(floor));
}

#[tokio::test]
async fn mix_and_match_metadata_is_refused() {
    let rig = Rig::new().await;
    rig.fx
        .release("os-2.uki", b"two", "2.0.0", 2, Arch::X86_64, workers());
    let p = imgsign::repo::Published::open(&rig.fx.repo()).unwrap();
    let s_v = p.snapshot.signed.version.get();
    // The current timestamp with the previous snapshot's bytes under the
    // current snapshot's name.
    let prev = std::fs::read(
        rig.fx
            .repo()
            .join(format!("metadata/{}.snapshot.json", s_v - 1)),
    )
    .unwrap();
    rig.server.attack(
        &format!("/metadata/{s_v}.snapshot.json"),
        Attack::Replace(prev),
    );
    let e = rig.refresh().await.unwrap_err();
    assert!(
        chain(&e).to_lowercase().contains("snapshot"),
        "{}",
        chain(&e)
    );
    // The line a user reads names the cause once, though tough's errors
    // repeat their sources in their own text.
    let line = bootd_client::display_chain(&e);
    assert!(chain(&e).to_lowercase().matches("hash mismatch").count() > 1);
    assert_eq!(
        line.to_lowercase().matches("hash mismatch").count(),
        1,
        "{line}"
    );
}

fn edit_timestamp(rig: &Rig, f: impl FnOnce(&mut serde_json::Value)) {
    let mut ts: serde_json::Value = serde_json::from_slice(
        &std::fs::read(rig.fx.repo().join("metadata/timestamp.json")).unwrap(),
    )
    .unwrap();
    f(&mut ts);
    rig.server.attack(
        "/metadata/timestamp.json",
        Attack::Replace(serde_json::to_vec(&ts).unwrap()),
    );
}

#[tokio::test]
async fn too_few_valid_signatures_or_an_unknown_key_are_refused() {
    let rig = Rig::new().await;
    // A corrupted signature: 0 of 1 valid.
    edit_timestamp(&rig, |ts| {
        let sig = ts["signatures"][0]["sig"].as_str().unwrap().to_owned();
        let flipped = format!(
            "{}{}",
            if sig.starts_with('0') { "1" } else { "0" },
            &sig[1..]
        );
        ts["signatures"][0]["sig"] = flipped.into();
    });
    let e = rig.refresh().await.unwrap_err();
    assert!(
        chain(&e).to_lowercase().contains("signature") || chain(&e).contains("threshold"),
        "{}",
        chain(&e)
    );
    assert_eq!(
        e.refusal_reason(),
        RefusalReason::Signature,
        "{}",
        chain(&e)
    );
    // Signed by a key the root does not list.
    let unknown = imgsign::keys::SigningKeyPair::generate();
    edit_timestamp(&rig, |ts| {
        ts["signatures"] = serde_json::json!([{
            "keyid": unknown.key_id(),
            "sig": hex::encode(unknown.sign_bytes(b"forged").unwrap()),
        }]);
    });
    let e = rig.refresh().await.unwrap_err();
    assert!(
        chain(&e).to_lowercase().contains("signature") || chain(&e).contains("threshold"),
        "{}",
        chain(&e)
    );
    // A changed timestamp body under the same version (tough accepts it;
    // stage1 refuses: 5.4.3).
    rig.server.clear();
    rig.refresh().await.unwrap();
    let ts_v = imgsign::repo::Published::open(&rig.fx.repo())
        .unwrap()
        .timestamp
        .signed
        .version
        .get();
    let layout = imgsign::repo::Layout::new(rig.fx.repo());
    let root: tough::schema::Signed<tough::schema::Root> =
        serde_json::from_slice(&std::fs::read(layout.root(1)).unwrap()).unwrap();
    let p = imgsign::repo::Published::open(&rig.fx.repo()).unwrap();
    let s_v = p.snapshot.signed.version;
    let snap = std::fs::read(layout.snapshot(s_v.get())).unwrap();
    let exp = imgsign::repo::Expiries {
        timestamp: jiff::SignedDuration::from_hours(7),
        ..Default::default()
    };
    let keys = [&rig.fx.timestamp];
    imgsign::repo::write_timestamp(
        &layout,
        &imgsign::repo::SignContext {
            root: &root.signed,
            keys: &keys,
            now: jiff::Timestamp::now(),
            expiries: &exp,
        },
        s_v,
        &snap,
        std::num::NonZeroU64::new(ts_v).unwrap(),
    )
    .unwrap();
    let e = rig.refresh().await.unwrap_err();
    assert!(chain(&e).contains("changed content"), "{}", chain(&e));
}

#[tokio::test]
async fn endless_and_slow_metadata_responses_are_cut_off() {
    let rig = Rig::new().await;
    rig.server
        .attack("/metadata/timestamp.json", Attack::Endless);
    let e = rig.refresh().await.unwrap_err();
    let c = chain(&e);
    assert!(
        c.contains("limit") || c.contains("max") || c.contains("exceed"),
        "{c}"
    );
    rig.server.attack(
        "/metadata/timestamp.json",
        Attack::Slow(Duration::from_millis(100)),
    );
    let e = rig.refresh().await.unwrap_err();
    assert!(chain(&e).contains("slow-retrieval"), "{}", chain(&e));
}

#[tokio::test]
async fn a_server_with_a_certificate_from_another_ca_is_refused() {
    let fx = Fixture::new();
    let evil = Pki::new("evil");
    let server = Server::start(fx.repo(), &evil, None).await;
    let state = tempfile::tempdir().unwrap();
    let cfg = TufConfig::at(&server.base(), state.path()).unwrap();
    let e = tuf::refresh(
        &cfg,
        &transport(&Pki::new("rack")),
        Some(&fx.root_file()),
        &now(),
    )
    .await
    .unwrap_err();
    assert!(
        chain(&e).contains("TLS") || chain(&e).contains("certificate"),
        "{}",
        chain(&e)
    );
    assert_eq!(
        e.refusal_reason(),
        RefusalReason::Unreachable,
        "{}",
        chain(&e)
    );
}

#[tokio::test]
async fn mtls_presents_the_node_certificate() {
    let fx = Fixture::new();
    let pki = Pki::new("rack");
    let server = Server::start(fx.repo(), &pki, Some(&pki)).await;
    let state = tempfile::tempdir().unwrap();
    let cfg = TufConfig::at(&server.base(), state.path()).unwrap();
    let e = tuf::refresh(&cfg, &transport(&pki), Some(&fx.root_file()), &now())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Tuf { .. }), "{e}");
    let (cert, key) = pki.leaf(&["unit-3"], true);
    let t = TufTransport::new(Client::new(
        Some(
            client_config(
                pki.ca_pem.as_bytes(),
                Some((cert.as_bytes(), key.as_bytes())),
            )
            .unwrap(),
        ),
        NetConfig::default(),
    ));
    tuf::refresh(&cfg, &t, Some(&fx.root_file()), &now())
        .await
        .unwrap();
}

#[tokio::test]
async fn plain_http_is_refused_unless_asked_for() {
    let t = Client::new(None, NetConfig::default());
    let e = t
        .get(&url::Url::parse("http://127.0.0.1:9/x").unwrap(), 0)
        .await
        .unwrap_err();
    assert!(matches!(e, bootd_client::Error::PlainHttp { .. }), "{e}");
}

async fn install_rig(data: &[u8]) -> (Rig, stage1::plan::ReleaseTarget, url::Url, String) {
    let rig = Rig::new().await;
    rig.fx
        .release("os-2.uki", data, "2.0.0", 2, Arch::X86_64, workers());
    let r = rig.refresh().await.unwrap();
    let t = r
        .release
        .targets
        .iter()
        .find(|t| t.name.as_str() == "os-2.uki")
        .unwrap()
        .clone();
    let url = tuf::target_url(&rig.cfg().targets_url, &t, true).unwrap();
    let path = url.path().to_owned();
    (rig, t, url, path)
}

fn fresh_store() -> SlotStore<CrashDisk> {
    SlotStore::format(CrashDisk::new(8 << 20)).unwrap()
}

#[tokio::test]
async fn an_interrupted_download_resumes_with_range() {
    let data = bytes(1_500_000, 9);
    let (rig, t, url, path) = install_rig(&data).await;
    rig.server.attack(
        &path,
        Attack::DropAfter {
            bytes: 400_000,
            times: 2,
        },
    );
    let mut store = fresh_store();
    let backoff = Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        retries: 4,
    };
    let done = install_target(
        &mut store,
        Slot::B,
        &t,
        &url,
        transport(&rig.pki).client(),
        &backoff,
    )
    .await
    .unwrap();
    assert_eq!(done.resumed, 2);
    let ranges: Vec<_> = rig
        .server
        .requests()
        .into_iter()
        .filter(|(p, _)| *p == path)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        ranges,
        vec![
            None,
            Some("bytes=400000-".into()),
            Some("bytes=800000-".into())
        ]
    );
    assert_eq!(store.state().active, Some(Slot::B));
    let mut got = Vec::new();
    store
        .read_verified(Slot::B, |c| {
            got.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
    assert_eq!(got, data);
}

#[tokio::test]
async fn a_target_whose_hash_or_length_differs_is_never_made_valid() {
    let data = bytes(300_000, 4);
    let (rig, t, url, path) = install_rig(&data).await;
    let tuf_net = transport(&rig.pki);
    let net = tuf_net.client();
    let quick = Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(1),
        retries: 1,
    };
    let mut bad = data.clone();
    bad[1234] ^= 1;
    let longer = [data.clone(), b"tail".to_vec()].concat();
    let shorter = data[..data.len() - 1].to_vec();
    for (what, body) in [("hash", bad), ("longer", longer), ("shorter", shorter)] {
        rig.server.attack(&path, Attack::Replace(body));
        let mut store = fresh_store();
        let e = install_target(&mut store, Slot::B, &t, &url, net, &quick)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::DigestMismatch { .. }
                    | Error::TooLong { .. }
                    | Error::Http(_)
                    | Error::ShortBody { .. }
            ),
            "{what}: {e}"
        );
        assert!(
            matches!(
                e.refusal_reason(),
                RefusalReason::TamperedTarget | RefusalReason::Unreachable
            ),
            "{what}: {e}"
        );
        assert_eq!(store.state().active, None, "{what}");
        assert_ne!(
            store.state().slot(Slot::B).status,
            stage1::slots::SlotStatus::Valid
        );
    }
    // Endless and slow image bodies.
    for a in [Attack::Endless, Attack::Slow(Duration::from_millis(100))] {
        rig.server.attack(&path, a.clone());
        let mut store = fresh_store();
        let e = install_target(&mut store, Slot::B, &t, &url, net, &quick)
            .await
            .unwrap_err();
        let c = chain(&e);
        assert!(
            c.contains("endless") || c.contains("slow-retrieval"),
            "{a:?}: {c}"
        );
        assert_eq!(store.state().active, None);
    }
}

#[test]
fn a_signed_time_statement_is_accepted_only_from_the_timestamp_role_for_this_nonce() {
    let fx = Fixture::new();
    let root = std::fs::read(fx.root_file()).unwrap();
    let nonce = [7u8; 32];
    let at = chrono::DateTime::parse_from_rfc3339("2027-01-02T03:04:05Z")
        .unwrap()
        .to_utc();
    let answer = |key: &imgsign::keys::SigningKeyPair, n: &[u8; 32]| {
        serde_json::to_value(bootd::time::sign(key, n, at).unwrap()).unwrap()
    };
    let verify = |v: &serde_json::Value| {
        tuf::verify_time(&root, &serde_json::to_vec(v).unwrap(), &nonce).map_err(|e| e.to_string())
    };
    let good = answer(&fx.timestamp, &nonce);
    assert_eq!(
        verify(&good).unwrap(),
        "2027-01-02T03:04:05Z".parse::<jiff::Timestamp>().unwrap()
    );
    // A recorded answer, for another boot's nonce.
    let e = verify(&answer(&fx.timestamp, &[8u8; 32])).unwrap_err();
    assert!(e.contains("another nonce"), "{e}");
    // Signed by a key of another role (targets), or by no key of the root.
    for k in [&fx.targets, &imgsign::keys::SigningKeyPair::generate()] {
        let e = verify(&answer(k, &nonce)).unwrap_err();
        assert!(e.contains("not signed by the timestamp role"), "{e}");
    }
    // The time moved after signing.
    let mut moved = good.clone();
    moved["signed"]["time"] = "2099-01-01T00:00:00Z".into();
    let e = verify(&moved).unwrap_err();
    assert!(e.contains("not signed by the timestamp role"), "{e}");
    // One signature counted twice.
    let mut twice = good.clone();
    let sig = twice["signatures"][0].clone();
    twice["signatures"].as_array_mut().unwrap().push(sig);
    assert!(verify(&twice).is_err());
    // Another _type, extra fields, and TUF metadata offered as a statement.
    let mut other = good.clone();
    other["signed"]["_type"] = "timestamp".into();
    assert!(verify(&other).unwrap_err().contains("_type"));
    let mut extra = good.clone();
    extra["signed"]["expires"] = "2099-01-01T00:00:00Z".into();
    assert!(verify(&extra)
        .unwrap_err()
        .contains("not a signed time statement"));
    let ts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.repo().join("metadata/timestamp.json")).unwrap())
            .unwrap();
    assert!(verify(&ts)
        .unwrap_err()
        .contains("not a signed time statement"));
}
