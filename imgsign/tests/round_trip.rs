//! Sign with imgsign, load with tough as a client, download every target.

mod common;

use common::*;
use racklet_release::ImageKind;

#[test]
fn signed_release_loads_in_tough_and_every_target_verifies() {
    let f = Fixture::new();
    let a = f.image("os-a.uki", 3 << 20, 1);
    let b = f.image("os-b.uki", 1234, 2);
    let r1 = f.release(&a, "1.0.0", 1);
    assert_eq!(
        (
            r1.targets_version,
            r1.snapshot_version,
            r1.timestamp_version
        ),
        (2, 2, 2)
    );
    let r2 = f.release(&b, "1.1.0", 2);
    assert_eq!(
        (
            r2.targets_version,
            r2.snapshot_version,
            r2.timestamp_version
        ),
        (3, 3, 3)
    );

    let report = client_verify(&f.repo()).unwrap();
    let names: Vec<&str> = report.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["os-a.uki", "os-b.uki"]);
    let ta = &report.targets[0];
    assert_eq!(ta.length, 3 << 20);
    assert_eq!(ta.sha256, r1.images[0].1.hex());
    assert_eq!(ta.info.kind, ImageKind::Os);
    assert_eq!(ta.info.security_version.0, 1);
    assert_eq!(report.targets[1].info.version.to_string(), "1.1.0");
    // Files are stored under their hash (consistent snapshots).
    assert!(f
        .repo()
        .join("targets")
        .join(format!("{}.os-a.uki", ta.sha256))
        .exists());
    // Old versioned metadata stays, so a reader mid-update finds it.
    for n in 1..=3 {
        assert!(f.repo().join(format!("metadata/{n}.targets.json")).exists());
        assert!(f
            .repo()
            .join(format!("metadata/{n}.snapshot.json"))
            .exists());
    }
    // No temporary files are left anywhere (the write lock stays: it is
    // the same file for every writer).
    for (p, _) in f.snapshot_files() {
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(
            !name.starts_with('.') || name == imgsign::repo::LOCK_FILE,
            "{p:?}"
        );
    }
}

#[test]
fn releasing_the_same_image_again_is_idempotent_but_a_new_body_under_an_old_name_is_refused() {
    let f = Fixture::new();
    let a = f.image("os.uki", 4096, 1);
    f.release(&a, "1.0.0", 1);
    f.release(&a, "1.0.0", 1);
    let before = f.snapshot_files();
    let a2 = f.image("os.uki", 4096, 9);
    let err = f.try_release(&a2, "1.0.1", 1, "stable").unwrap_err();
    assert!(
        matches!(err, imgsign::Error::TargetConflict { .. }),
        "{err}"
    );
    // The image copied before the conflict was noticed is an unreferenced
    // file; the published metadata is untouched.
    let after = f.snapshot_files();
    let meta = |v: &Vec<(std::path::PathBuf, Vec<u8>)>| {
        v.iter()
            .filter(|(p, _)| p.to_string_lossy().contains("/metadata/"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(meta(&before), meta(&after));
    client_verify(&f.repo()).unwrap();
}

#[test]
fn timestamp_refresh_bumps_version_and_expiry_only() {
    let f = Fixture::new();
    f.release(&f.image("os.uki", 100, 1), "1.0.0", 1);
    let before = f.published();
    let later = now() + jiff::SignedDuration::from_hours(5);
    let ts = imgsign::timestamp::refresh(
        &f.repo(),
        &f.timestamp,
        jiff::SignedDuration::from_hours(24),
        later,
    )
    .unwrap();
    assert_eq!(
        ts.signed.version.get(),
        before.timestamp.signed.version.get() + 1
    );
    assert!(ts.signed.expires > before.timestamp.signed.expires);
    let after = f.published();
    assert_eq!(
        after.snapshot.signed.version,
        before.snapshot.signed.version
    );
    client_verify(&f.repo()).unwrap();
    // Only the timestamp key may do this.
    let err = imgsign::timestamp::refresh(
        &f.repo(),
        &f.targets,
        jiff::SignedDuration::from_hours(24),
        later,
    )
    .unwrap_err();
    assert!(matches!(err, imgsign::Error::NoKeyForRole { .. }), "{err}");
}

#[test]
fn hard_linked_release_verifies() {
    let f = Fixture::new();
    let a = f.image("os.uki", 70_000, 3);
    imgsign::sign::sign_release(
        &f.repo(),
        &[spec(&a, "1.0.0", 1, "stable")],
        imgsign::sign::Placement::Link,
        &f.release_keys(),
        now(),
        &Default::default(),
        &mut |_| (),
    )
    .unwrap();
    client_verify(&f.repo()).unwrap();
}

#[test]
fn status_flags_expiry() {
    use imgsign::status::{status, Urgency};
    let f = Fixture::new();
    let s = status(&f.repo(), now(), jiff::SignedDuration::from_hours(24 * 14)).unwrap();
    assert_eq!(s.worst(), Urgency::Ok);
    // 40 days on, the snapshot (30 d) and timestamp (1 d) have expired.
    let later = now() + jiff::SignedDuration::from_hours(24 * 40);
    let s = status(&f.repo(), later, jiff::SignedDuration::from_hours(24 * 14)).unwrap();
    assert_eq!(s.worst(), Urgency::Expired);
    let snap = s
        .roles
        .iter()
        .find(|r| r.role.to_string() == "snapshot")
        .unwrap();
    assert_eq!(snap.urgency, Urgency::Expired);
    let targets = s
        .roles
        .iter()
        .find(|r| r.role.to_string() == "targets")
        .unwrap();
    assert_eq!(targets.urgency, Urgency::Ok);
    // 80 days on, targets (90 d) is due within the 14-day window.
    let later = now() + jiff::SignedDuration::from_hours(24 * 80);
    let s = status(&f.repo(), later, jiff::SignedDuration::from_hours(24 * 14)).unwrap();
    let targets = s
        .roles
        .iter()
        .find(|r| r.role.to_string() == "targets")
        .unwrap();
    assert_eq!(targets.urgency, Urgency::Soon);
}

#[test]
fn concurrent_release_and_timestamp_refresh_never_lose_a_release() {
    let f = Fixture::new();
    f.release(&f.image("os-0.uki", 1000, 0), "1.0.0", 1);
    for i in 1..=12u8 {
        let img = f.image(&format!("os-{i}.uki"), 2000, i);
        let barrier = std::sync::Barrier::new(2);
        let (release, refresh) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                barrier.wait();
                f.try_release(&img, "1.0.0", 1, "stable")
            });
            let b = s.spawn(|| {
                barrier.wait();
                imgsign::timestamp::refresh(
                    &f.repo(),
                    &f.timestamp,
                    jiff::SignedDuration::from_hours(24),
                    now(),
                )
            });
            (a.join().unwrap(), b.join().unwrap())
        });
        // Each either succeeded or was told to run again; nothing else.
        for e in [release.as_ref().err(), refresh.as_ref().err()]
            .into_iter()
            .flatten()
        {
            assert!(
                e.to_string().contains("another writer published"),
                "unexpected error: {e}"
            );
        }
        let p = f.published();
        if let Ok(r) = &release {
            // The release is still what the timestamp leads to.
            assert!(p.snapshot.signed.version.get() >= r.snapshot_version);
            assert!(p
                .targets
                .signed
                .targets
                .keys()
                .any(|n| n.raw() == format!("os-{i}.uki")));
        }
        client_verify(&f.repo()).unwrap();
    }
}

#[test]
fn linking_a_symlinked_image_is_refused() {
    let f = Fixture::new();
    let real = f.image("real.uki", 5000, 3);
    let link = f.dir.path().join("link.uki");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = imgsign::sign::sign_release(
        &f.repo(),
        &[spec(&link, "1.0.0", 1, "stable")],
        imgsign::sign::Placement::Link,
        &f.release_keys(),
        now(),
        &Default::default(),
        &mut |_| (),
    )
    .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    // Copying follows it and is fine.
    f.try_release(&link, "1.0.0", 1, "stable").unwrap();
    client_verify(&f.repo()).unwrap();
}
