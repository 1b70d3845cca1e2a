//! Every bad input gets a specific error, and the previously published
//! repository stays untouched and valid.

mod common;

use common::*;
use imgsign::repo::Expiries;
use imgsign::Error;

/// Runs `f`, then checks that the published metadata did not change and
/// that a client still verifies the repository.
fn untouched(fx: &Fixture, f: impl FnOnce()) {
    let meta = |fx: &Fixture| {
        fx.snapshot_files()
            .into_iter()
            .filter(|(p, _)| p.to_string_lossy().contains("/metadata/"))
            .collect::<Vec<_>>()
    };
    let before = meta(fx);
    f();
    assert_eq!(before, meta(fx), "published metadata changed");
    client_verify(&fx.repo()).expect("the old repository must still verify");
    for entry in std::fs::read_dir(fx.repo().join("targets")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "temporary file {name} left behind");
    }
}

fn release_with(fx: &Fixture, keys: &[&imgsign::keys::SigningKeyPair]) -> imgsign::Result<()> {
    let img = fx.image("os.uki", 10_000, 5);
    imgsign::sign::sign_release(
        &fx.repo(),
        &[spec(&img, "2.0.0", 2, "stable")],
        Default::default(),
        keys,
        now(),
        &Expiries::default(),
        &mut |_| (),
    )
    .map(|_| ())
}

#[test]
fn wrong_key_for_the_targets_role() {
    let fx = Fixture::new();
    fx.release(&fx.image("v1.uki", 1000, 1), "1.0.0", 1);
    untouched(&fx, || {
        // The snapshot key cannot sign targets.
        let err = release_with(&fx, &[&fx.snapshot, &fx.timestamp, &fx.root_keys[0]]).unwrap_err();
        match err {
            Error::NoKeyForRole { role, allowed } => {
                assert_eq!(role, "targets");
                assert!(allowed.contains(fx.targets.key_id()));
            }
            other => panic!("wrong error: {other}"),
        }
    });
}

#[test]
fn too_few_signatures_for_a_root_threshold() {
    // A 2-of-3 root cannot be published with one signature.
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<_> = (0..4)
        .map(|i| key_file(dir.path(), &format!("k{i}")).1)
        .collect();
    let spec = imgsign::init::RootSpec {
        root: imgsign::init::RoleSpec {
            keys: vec![keys[0].public(), keys[1].public(), keys[2].public()],
            threshold: std::num::NonZeroU64::new(2).unwrap(),
        },
        targets: imgsign::init::RoleSpec {
            keys: vec![keys[3].public()],
            threshold: std::num::NonZeroU64::MIN,
        },
        snapshot: imgsign::init::RoleSpec {
            keys: vec![keys[3].public()],
            threshold: std::num::NonZeroU64::MIN,
        },
        timestamp: imgsign::init::RoleSpec {
            keys: vec![keys[3].public()],
            threshold: std::num::NonZeroU64::MIN,
        },
    };
    let repo = dir.path().join("repo");
    let err = imgsign::init::init(
        &repo,
        &spec,
        &[&keys[0], &keys[3]],
        now(),
        &Expiries::default(),
    )
    .unwrap_err();
    match err {
        Error::Threshold {
            role,
            threshold,
            valid,
            ..
        } => assert_eq!((role.as_str(), threshold, valid), ("root", 2, 1)),
        other => panic!("wrong error: {other}"),
    }
    assert!(
        !repo.join("metadata/1.root.json").exists(),
        "nothing half-made"
    );
}

#[test]
fn too_few_signatures_for_a_targets_threshold() {
    // A repository whose targets role needs 2 signatures, given one key.
    let fx = Fixture::new();
    let second = key_file(&fx.keys_dir(), "targets-2.pem").1;
    let staged = imgsign::rootkeys::stage(
        Some(&fx.published().root.signed),
        &[
            imgsign::rootkeys::KeyChange::Add(tough::schema::RoleType::Targets, second.public()),
            imgsign::rootkeys::KeyChange::Threshold(
                tough::schema::RoleType::Targets,
                std::num::NonZeroU64::new(2).unwrap(),
            ),
        ],
        imgsign::repo::expires_at(now(), jiff::SignedDuration::from_hours(24 * 365)),
    )
    .unwrap();
    let mut staged = staged;
    imgsign::rootkeys::sign_staged(&mut staged, None, &[&fx.root_keys[0], &fx.root_keys[1]])
        .unwrap();
    imgsign::rootkeys::publish(
        &fx.repo(),
        staged,
        &[&fx.targets, &second, &fx.snapshot, &fx.timestamp],
        now(),
        &Expiries::default(),
    )
    .unwrap();
    untouched(&fx, || {
        let err = release_with(&fx, &fx.release_keys()).unwrap_err();
        match err {
            Error::Threshold {
                role,
                threshold,
                valid,
                ..
            } => assert_eq!((role.as_str(), threshold, valid), ("targets", 2, 1)),
            other => panic!("wrong error: {other}"),
        }
    });
    // With both keys it works.
    release_with(&fx, &[&fx.targets, &second, &fx.snapshot, &fx.timestamp]).unwrap();
    client_verify(&fx.repo()).unwrap();
}

#[test]
fn an_expired_timestamp_fails_verification_naming_the_role() {
    // Signed 3 days ago with a 1-day timestamp.
    let fx = Fixture::at(
        now() - jiff::SignedDuration::from_hours(72),
        &Expiries::default(),
    );
    let err = client_verify(&fx.repo()).unwrap_err().to_string();
    assert!(
        err.contains("timestamp") && err.to_lowercase().contains("expired"),
        "{err}"
    );
    // A new release re-signs it and the repository is valid again.
    fx.release(&fx.image("os.uki", 1000, 1), "1.0.0", 1);
    client_verify(&fx.repo()).unwrap();
}

#[test]
fn an_expired_root_refuses_to_sign() {
    let exp = Expiries {
        root: jiff::SignedDuration::from_hours(1),
        ..Default::default()
    };
    let fx = Fixture::at(now() - jiff::SignedDuration::from_hours(2), &exp);
    untouched_expired(&fx);
}

fn untouched_expired(fx: &Fixture) {
    let before = fx.snapshot_files();
    let err = release_with(fx, &fx.release_keys()).unwrap_err();
    assert!(
        matches!(&err, Error::Expired { role, .. } if role == "root"),
        "{err}"
    );
    assert_eq!(before, fx.snapshot_files());
}

#[test]
fn missing_unreadable_or_empty_image() {
    let fx = Fixture::new();
    fx.release(&fx.image("v1.uki", 1000, 1), "1.0.0", 1);
    untouched(&fx, || {
        let a_dir = fx.dir.path().join("a-directory.uki");
        std::fs::create_dir(&a_dir).unwrap();
        for path in [fx.dir.path().join("does-not-exist.uki"), a_dir] {
            let err = imgsign::sign::sign_release(
                &fx.repo(),
                &[spec(&path, "2.0.0", 2, "stable")],
                Default::default(),
                &fx.release_keys(),
                now(),
                &Expiries::default(),
                &mut |_| (),
            )
            .unwrap_err();
            match err {
                Error::Image { path: p, .. } => assert_eq!(p, path),
                other => panic!("wrong error: {other}"),
            }
        }
        let empty = fx.dir.path().join("empty.uki");
        std::fs::write(&empty, b"").unwrap();
        let err = fx.try_release(&empty, "2.0.0", 2, "stable").unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    });
}

#[test]
fn metadata_modified_behind_imgsigns_back() {
    let fx = Fixture::new();
    fx.release(&fx.image("v1.uki", 1000, 1), "1.0.0", 1);
    let t = fx.repo().join("metadata/2.targets.json");
    let text = std::fs::read_to_string(&t).unwrap();
    // An attacker edits the security version in place.
    std::fs::write(
        &t,
        text.replace("\"security_version\": 1", "\"security_version\": 9"),
    )
    .unwrap();
    let err = release_with(&fx, &fx.release_keys()).unwrap_err();
    match &err {
        Error::Tampered { path, reason } => {
            assert_eq!(path, &t);
            assert!(reason.contains("sha256"), "{reason}");
        }
        other => panic!("wrong error: {other}"),
    }
    let err = client_verify(&fx.repo()).unwrap_err().to_string();
    assert!(err.contains("targets"), "{err}");
}

#[test]
fn target_modified_behind_imgsigns_back() {
    let fx = Fixture::new();
    let r = fx.release(&fx.image("v1.uki", 5000, 1), "1.0.0", 1);
    let hash = r.images[0].1.hex();
    let file = fx.repo().join(format!("targets/{hash}.v1.uki"));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let err = client_verify(&fx.repo()).unwrap_err();
    match &err {
        Error::TargetMismatch { name, reason } => {
            assert_eq!(name, "v1.uki");
            assert!(reason.contains(&hash), "names the expected hash: {reason}");
        }
        other => panic!("wrong error: {other}"),
    }
    // Truncation is caught by imgsign itself before it signs on top.
    std::fs::write(&file, &bytes[..10]).unwrap();
    let err = release_with(&fx, &fx.release_keys()).unwrap_err();
    assert!(
        matches!(&err, Error::Tampered { reason, .. } if reason.contains("5000")),
        "{err}"
    );
}

#[test]
fn forged_root_version_is_refused() {
    let fx = Fixture::new();
    // A root 2 signed by one root key only (threshold 2).
    let mut staged = imgsign::rootkeys::stage(
        Some(&fx.published().root.signed),
        &[],
        imgsign::repo::expires_at(now(), jiff::SignedDuration::from_hours(24)),
    )
    .unwrap();
    imgsign::rootkeys::sign_staged(&mut staged, None, &[&fx.root_keys[0]]).unwrap();
    imgsign::rootkeys::write_staged(&fx.repo().join("metadata/2.root.json"), &staged).unwrap();
    let err = imgsign::repo::Published::open(&fx.repo()).unwrap_err();
    assert!(
        matches!(&err, Error::Threshold { role, valid: 1, threshold: 2, .. } if role == "root"),
        "{err}"
    );
    assert!(client_verify(&fx.repo()).is_err());
}

#[test]
fn target_names_with_traversal_are_refused() {
    for bad in ["../evil", "/etc/passwd", "..", "a/../../b", ".hidden"] {
        let err = racklet_release::ImageName::new(bad).unwrap_err();
        assert!(
            matches!(
                err,
                racklet_release::Error::InvalidValue {
                    what: "target name",
                    ..
                }
            ),
            "{bad}: {err}"
        );
    }
}

#[test]
fn disk_full_during_publish_leaves_the_old_release() {
    if !have(is_root(), "root (mounts a small tmpfs)") {
        return;
    }
    let fx = Fixture::new();
    let mnt = fx.dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    // Move the repository onto the small filesystem.
    let repo = mnt.join("repo");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(fx.repo())
        .arg(&repo)
        .status()
        .unwrap();
    assert!(cp.success());
    let v1 = fx.image("v1.uki", 100_000, 1);
    imgsign::sign::sign_release(
        &repo,
        &[spec(&v1, "1.0.0", 1, "stable")],
        Default::default(),
        &fx.release_keys(),
        now(),
        &Expiries::default(),
        &mut |_| (),
    )
    .unwrap();
    let before = std::fs::read(repo.join("metadata/timestamp.json")).unwrap();
    let big = fx.image("v2.uki", 2 << 20, 2);
    let err = imgsign::sign::sign_release(
        &repo,
        &[spec(&big, "2.0.0", 2, "stable")],
        Default::default(),
        &fx.release_keys(),
        now(),
        &Expiries::default(),
        &mut |_| (),
    )
    .unwrap_err();
    assert!(matches!(&err, Error::Write { .. }), "{err}");
    assert!(
        err.to_string().contains("No space") || err.to_string().contains("space"),
        "{err}"
    );
    assert_eq!(
        before,
        std::fs::read(repo.join("metadata/timestamp.json")).unwrap()
    );
    let leftovers: Vec<_> = std::fs::read_dir(repo.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    client_verify(&repo).unwrap();
}

/// The same public key with an extra field: another key id, the same key.
fn variant(key: &tough::schema::key::Key) -> tough::schema::key::Key {
    let mut v = key.clone();
    if let tough::schema::key::Key::Ed25519 { _extra, .. } = &mut v {
        _extra.insert(
            "keyid_hash_algorithms".into(),
            serde_json::json!(["sha256", "sha512"]),
        );
    }
    assert_ne!(
        imgsign::keys::key_id_hex(&v),
        imgsign::keys::key_id_hex(key)
    );
    v
}

#[test]
fn one_key_under_two_ids_never_meets_a_threshold_of_two() {
    let fx = Fixture::new();
    let k = &fx.root_keys[0];
    // Staging a root that lists k twice is refused.
    let err = imgsign::rootkeys::stage(
        Some(&fx.published().root.signed),
        &[imgsign::rootkeys::KeyChange::Add(
            tough::schema::RoleType::Root,
            variant(&k.public()),
        )],
        imgsign::repo::expires_at(now(), jiff::SignedDuration::from_hours(24)),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateKey { first, second } if first != second),
        "{err}"
    );
    assert!(err.to_string().contains("listed twice"), "{err}");
    // And a root crafted by hand that does so still counts k once.
    let mut root = fx.published().root.signed.clone();
    let v = variant(&k.public());
    let vid = v.key_id().unwrap();
    root.keys.insert(vid.clone(), v);
    let rk = root.roles.get_mut(&tough::schema::RoleType::Root).unwrap();
    rk.keyids = vec![k.public().key_id().unwrap(), vid.clone()];
    rk.threshold = std::num::NonZeroU64::new(2).unwrap();
    let mut signed = tough::schema::Signed {
        signed: root.clone(),
        signatures: Vec::new(),
    };
    imgsign::repo::add_signatures(&mut signed, &root, &[k]).unwrap();
    let sig = signed.signatures[0].sig.clone();
    signed
        .signatures
        .push(tough::schema::Signature { keyid: vid, sig });
    let (valid, threshold) = imgsign::repo::count_valid(&root, &signed).unwrap();
    assert_eq!((valid, threshold), (1, 2));
}

#[test]
fn example_keys_cannot_be_rotated_into_or_refresh_a_stable_repository() {
    let fx = Fixture::new();
    fx.release(&fx.image("v1.uki", 1000, 1), "1.0.0", 1);
    let ex = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example");
    let insecure_ts =
        imgsign::keys::SigningKeyPair::load(ex.join("INSECURE-timestamp.pem").to_str().unwrap())
            .unwrap();
    untouched(&fx, || {
        // A refresh signed with the example timestamp key (were it authorized).
        let err = imgsign::timestamp::refresh(
            &fx.repo(),
            &insecure_ts,
            jiff::SignedDuration::from_hours(24),
            now(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::ExampleKeyOutsideDemo { .. }), "{err}");
        // A rotation that would authorize it, even under another key id.
        let mut staged = imgsign::rootkeys::stage(
            Some(&fx.published().root.signed),
            &[imgsign::rootkeys::KeyChange::Add(
                tough::schema::RoleType::Timestamp,
                variant(&insecure_ts.public()),
            )],
            imgsign::repo::expires_at(now(), jiff::SignedDuration::from_hours(24 * 30)),
        )
        .unwrap();
        imgsign::rootkeys::sign_staged(&mut staged, None, &[&fx.root_keys[0], &fx.root_keys[1]])
            .unwrap();
        let err = imgsign::rootkeys::publish(
            &fx.repo(),
            staged,
            &[&fx.snapshot, &fx.timestamp],
            now(),
            &Expiries::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::ExampleKeyOutsideDemo { .. }), "{err}");
    });
}

#[test]
fn metadata_that_is_a_symlink_a_device_or_huge_is_refused_quickly() {
    let fx = Fixture::new();
    let ts = fx.repo().join("metadata/timestamp.json");
    let keep = std::fs::read(&ts).unwrap();
    // A symlink to /dev/zero would be an endless read.
    std::fs::remove_file(&ts).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &ts).unwrap();
    let err = imgsign::repo::Published::open(&fx.repo()).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    // A sparse 4 GiB file.
    std::fs::remove_file(&ts).unwrap();
    let f = std::fs::File::create(&ts).unwrap();
    f.set_len(4 << 30).unwrap();
    let err = imgsign::repo::Published::open(&fx.repo()).unwrap_err();
    assert!(
        err.to_string().contains("more than metadata may be"),
        "{err}"
    );
    std::fs::write(&ts, keep).unwrap();
    imgsign::repo::Published::open(&fx.repo()).unwrap();
}

#[test]
fn a_crash_before_the_new_root_is_written_leaves_a_valid_repository() {
    // Rotate the timestamp key with both the old and the new key at hand.
    let fx = Fixture::new();
    fx.release(&fx.image("v1.uki", 1000, 1), "1.0.0", 1);
    let new_ts = key_file(&fx.keys_dir(), "timestamp-2.pem").1;
    let old_id = fx.timestamp.key_id().to_owned();
    let mut staged = imgsign::rootkeys::stage(
        Some(&fx.published().root.signed),
        &[
            imgsign::rootkeys::KeyChange::Add(tough::schema::RoleType::Timestamp, new_ts.public()),
            imgsign::rootkeys::KeyChange::Remove(tough::schema::RoleType::Timestamp, old_id),
        ],
        imgsign::repo::expires_at(now(), jiff::SignedDuration::from_hours(24 * 30)),
    )
    .unwrap();
    imgsign::rootkeys::sign_staged(&mut staged, None, &[&fx.root_keys[0], &fx.root_keys[2]])
        .unwrap();
    imgsign::rootkeys::publish(
        &fx.repo(),
        staged,
        &[&fx.snapshot, &fx.timestamp, &new_ts],
        now(),
        &Expiries::default(),
    )
    .unwrap();
    client_verify(&fx.repo()).unwrap();
    // The power went out just before the root was renamed into place: the
    // new timestamp must still be valid under the old root.
    std::fs::remove_file(fx.repo().join("metadata/2.root.json")).unwrap();
    client_verify(&fx.repo()).expect("valid under the old root");
    assert_eq!(fx.published().root.signed.version.get(), 1);
}

#[test]
fn a_staged_role_signed_twice_under_one_key_id_is_not_published() {
    // tough refuses such a file outright; imgsign must never publish one.
    let fx = Fixture::new();
    let img = fx.image("v1.uki", 1000, 1);
    let p = fx.published();
    let staged = imgsign::sign::stage_release(
        &p,
        &[spec(&img, "1.0.0", 1, "stable")],
        Default::default(),
        now(),
        &Expiries::default(),
        &mut |_| (),
    )
    .unwrap();
    let mut signed =
        imgsign::repo::sign_role(staged.targets, &p.root.signed, &[&fx.targets]).unwrap();
    let dup = signed.signatures[0].clone();
    signed.signatures.push(dup);
    untouched(&fx, || {
        let err = imgsign::sign::publish_targets(
            &p,
            signed,
            &fx.release_keys(),
            now(),
            &Expiries::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("signed twice"), "{err}");
    });
}

#[test]
fn setting_errors_carry_what_was_wrong() {
    let fx = Fixture::new();
    let current = fx.published().root.signed;
    let expires = imgsign::repo::expires_at(now(), jiff::SignedDuration::from_hours(24));
    use imgsign::rootkeys::{stage, KeyChange};
    use tough::schema::RoleType;

    // A threshold above the role's keys names the role and both numbers.
    let two = std::num::NonZeroU64::new(2).unwrap();
    let err = stage(
        Some(&current),
        &[KeyChange::Threshold(RoleType::Snapshot, two)],
        expires,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::TooFewKeys { role, keys: 1, threshold: 2 } if role == "snapshot"),
        "{err}"
    );
    assert!(err.to_string().contains("snapshot"), "{err}");

    // Removing a key the role does not have names the role and the key.
    let err = stage(
        Some(&current),
        &[KeyChange::Remove(RoleType::Targets, "00ff".into())],
        expires,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::NotARoleKey { role, key_id } if role == "targets" && key_id == "00ff"),
        "{err}"
    );

    // A staged root must be the next version.
    let mut staged = stage(Some(&current), &[], expires).unwrap();
    staged.signed.version = std::num::NonZeroU64::new(5).unwrap();
    let err = imgsign::rootkeys::publish(
        &fx.repo(),
        staged,
        &fx.root_keys.iter().collect::<Vec<_>>(),
        now(),
        &Expiries::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::StagedVersion { role, found: 5, expected: 2 } if role == "root"),
        "{err}"
    );

    // Combining nothing, a release of no images, a negative lifetime.
    let err = imgsign::rootkeys::combine(&[]).unwrap_err();
    assert!(
        matches!(&err, Error::NothingToCombine { role } if role == "root"),
        "{err}"
    );
    let err = imgsign::sign::sign_release(
        &fx.repo(),
        &[],
        Default::default(),
        &fx.release_keys(),
        now(),
        &Expiries::default(),
        &mut |_| (),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NoImages), "{err}");
    let err = imgsign::timestamp::check_lifetime(-jiff::SignedDuration::from_secs(1)).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidValue {
                what: "timestamp lifetime",
                ..
            }
        ),
        "{err}"
    );
}
