//! The boot plan: properties over random facts, and each refusal by example.

use proptest::prelude::*;
use racklet_bmc_proto::Slot;
use racklet_hardware::{Arch, NodeName};
use racklet_release::{Assignment, Channel, ImageKind, ImageName, ReleaseInfo, SecurityVersion};
use stage1::plan::{plan, BmcFacts, NodeFacts, Plan, Release, ReleaseTarget, TargetRefusal};
use stage1::slots::{Geometry, SlotImage, SlotRecord, SlotState, SlotStatus};

fn node() -> NodeFacts {
    NodeFacts {
        name: NodeName::new("unit-3").unwrap(),
        groups: ["workers".to_string()].into(),
        arch: Arch::X86_64,
        channel: Channel::new("stable").unwrap(),
    }
}

fn target(
    i: u8,
    sv: u32,
    arch: Arch,
    assign: Assignment,
    kind: ImageKind,
    ch: &str,
) -> ReleaseTarget {
    ReleaseTarget {
        name: ImageName::new(&format!("os-{i}.uki")).unwrap(),
        length: 1000 + u64::from(i),
        sha256: [i; 32],
        info: ReleaseInfo {
            kind,
            version: semver::Version::new(1, u64::from(i), 0),
            security_version: SecurityVersion(sv),
            arch,
            channel: Channel::new(ch).unwrap(),
            assign,
            downgrade: false,
        },
    }
}

fn workers() -> Assignment {
    Assignment {
        groups: ["workers".to_string()].into(),
        ..Default::default()
    }
}

fn geometry() -> Geometry {
    Geometry::for_disk(64 << 20).unwrap()
}

fn slots_with(
    a: Option<&ReleaseTarget>,
    b: Option<&ReleaseTarget>,
    active: Option<Slot>,
) -> SlotState {
    let mut s = SlotState::empty(geometry());
    for (slot, t) in [(Slot::A, a), (Slot::B, b)] {
        if let Some(t) = t {
            s.slots[slot.index()] = SlotRecord {
                status: SlotStatus::Valid,
                image: Some(t.slot_image()),
            };
        }
    }
    s.active = active;
    s
}

fn bmc(slot: Slot, min: u32) -> BmcFacts {
    BmcFacts {
        slot,
        tries_left: 2,
        forced_b: false,
        fallback: false,
        rollback_min: SecurityVersion(min),
    }
}

fn fresh(targets: Vec<ReleaseTarget>) -> Release {
    Release {
        targets,
        fresh: true,
    }
}

fn now() -> Option<jiff::Timestamp> {
    Some(jiff::Timestamp::from_second(1_800_000_000).unwrap())
}

#[test]
fn an_update_is_installed_into_the_other_slot_then_booted() {
    let old = target(1, 1, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let new = target(2, 2, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let r = fresh(vec![old.clone(), new.clone()]);
    let d = plan(
        Some(&r),
        &slots_with(Some(&old), None, Some(Slot::A)),
        &bmc(Slot::A, 1),
        &node(),
        now(),
    );
    assert_eq!(
        d.plan,
        Plan::Install {
            target: new.clone(),
            into: Slot::B,
            otherwise: Some(old.slot_image()),
        }
    );
    let d = plan(
        Some(&r),
        &slots_with(Some(&old), Some(&new), Some(Slot::B)),
        &bmc(Slot::B, 1),
        &node(),
        now(),
    );
    assert!(matches!(d.plan, Plan::BootActive { slot: Slot::B, .. }));
    // Flipped on disk but the BMC was never told: report, do not reinstall.
    let d = plan(
        Some(&r),
        &slots_with(Some(&old), Some(&new), Some(Slot::B)),
        &bmc(Slot::A, 1),
        &node(),
        now(),
    );
    assert!(
        matches!(d.plan, Plan::Report { slot: Slot::B, .. }),
        "{:?}",
        d.plan
    );
}

#[test]
fn images_below_the_minimum_for_another_arch_or_node_are_refused_by_name() {
    let mine = target(1, 5, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let old = target(2, 4, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let arm = target(3, 9, Arch::Aarch64, workers(), ImageKind::Os, "stable");
    let other_node = target(
        4,
        9,
        Arch::X86_64,
        Assignment {
            nodes: [NodeName::new("unit-4").unwrap()].into(),
            ..Default::default()
        },
        ImageKind::Os,
        "stable",
    );
    let beta = target(5, 9, Arch::X86_64, workers(), ImageKind::Os, "beta");
    let loader = target(6, 9, Arch::X86_64, workers(), ImageKind::Stage1, "stable");
    let r = fresh(vec![
        mine.clone(),
        old.clone(),
        arm.clone(),
        other_node.clone(),
        beta,
        loader,
    ]);
    let d = plan(
        Some(&r),
        &slots_with(Some(&mine), None, Some(Slot::A)),
        &bmc(Slot::A, 5),
        &node(),
        now(),
    );
    assert!(
        matches!(d.plan, Plan::BootActive { slot: Slot::A, .. }),
        "{:?}",
        d.plan
    );
    let why = |n: &str| {
        d.refused
            .iter()
            .find(|(t, _)| t.as_str() == n)
            .map(|(_, w)| w.clone())
            .unwrap()
    };
    assert_eq!(
        why("os-2.uki"),
        TargetRefusal::BelowRollbackMin {
            security_version: SecurityVersion(4),
            minimum: SecurityVersion(5)
        }
    );
    assert_eq!(
        why("os-3.uki"),
        TargetRefusal::Arch {
            node: Arch::X86_64,
            image: Arch::Aarch64
        }
    );
    assert_eq!(why("os-4.uki"), TargetRefusal::NotAssigned);
    assert!(matches!(why("os-5.uki"), TargetRefusal::Channel(_)));
    assert_eq!(why("os-6.uki"), TargetRefusal::Kind(ImageKind::Stage1));
    // An installed image below the minimum is not booted either.
    let d = plan(
        Some(&r),
        &slots_with(Some(&old), None, Some(Slot::A)),
        &bmc(Slot::A, 5),
        &node(),
        now(),
    );
    assert!(matches!(d.plan, Plan::Install { .. }));
    let d = plan(
        None,
        &slots_with(Some(&old), None, Some(Slot::A)),
        &bmc(Slot::A, 5),
        &node(),
        now(),
    );
    match d.plan {
        Plan::Refuse { reason } => assert!(
            reason.to_string().contains("below the rollback minimum"),
            "{reason}"
        ),
        p => panic!("{p:?}"),
    }
}

#[test]
fn without_trusted_time_nothing_is_installed() {
    let old = target(1, 1, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let new = target(2, 2, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let r = fresh(vec![old.clone(), new]);
    let d = plan(
        Some(&r),
        &slots_with(Some(&old), None, Some(Slot::A)),
        &bmc(Slot::A, 1),
        &node(),
        None,
    );
    assert!(matches!(d.plan, Plan::BootActive { slot: Slot::A, .. }));
    assert!(d.no_update.unwrap().contains("no trusted time"));
    // Without any signed metadata nothing is booted, not even a valid slot.
    let d = plan(
        None,
        &slots_with(Some(&old), None, Some(Slot::A)),
        &bmc(Slot::A, 1),
        &node(),
        now(),
    );
    match d.plan {
        Plan::Refuse { reason } => assert!(
            reason.to_string().contains("no signed metadata"),
            "{reason}"
        ),
        p => panic!("{p:?}"),
    }
}

#[test]
fn a_bmc_fallback_boots_the_old_slot_marks_the_new_failed_and_never_reinstalls_it() {
    let old = target(1, 1, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let new = target(2, 2, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let r = fresh(vec![old.clone(), new.clone()]);
    let mut slots = slots_with(Some(&old), Some(&new), Some(Slot::B));
    let mut f = bmc(Slot::A, 1);
    f.fallback = true;
    let d = plan(Some(&r), &slots, &f, &node(), now());
    assert!(
        matches!(
            d.plan,
            Plan::Fallback {
                slot: Slot::A,
                mark_failed: Some(Slot::B),
                ..
            }
        ),
        "{:?}",
        d.plan
    );
    slots.mark_failed(Slot::B).unwrap();
    let d = plan(Some(&r), &slots, &bmc(Slot::A, 1), &node(), now());
    assert!(
        matches!(d.plan, Plan::BootActive { slot: Slot::A, .. }),
        "{:?}",
        d.plan
    );
    // A newer release is installed again.
    let newer = target(3, 3, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let r = fresh(vec![old.clone(), new, newer.clone()]);
    let d = plan(Some(&r), &slots, &bmc(Slot::A, 1), &node(), now());
    assert_eq!(
        d.plan,
        Plan::Install {
            target: newer,
            into: Slot::B,
            otherwise: Some(old.slot_image()),
        }
    );
}

fn arb_target() -> impl Strategy<Value = ReleaseTarget> {
    (
        0u8..6,
        0u32..6,
        prop_oneof![Just(Arch::X86_64), Just(Arch::Aarch64)],
        prop_oneof![
            Just(workers()),
            Just(Assignment {
                all: true,
                ..Default::default()
            }),
            Just(Assignment {
                nodes: [NodeName::new("unit-9").unwrap()].into(),
                ..Default::default()
            }),
        ],
        prop_oneof![Just(ImageKind::Os), Just(ImageKind::Stage1)],
        prop_oneof![Just("stable"), Just("beta")],
    )
        .prop_map(|(i, sv, arch, a, k, ch)| target(i, sv, arch, a, k, ch))
}

fn arb_record() -> impl Strategy<Value = SlotRecord> {
    (0u8..4, arb_target()).prop_map(|(st, t)| match st {
        0 => SlotRecord::EMPTY,
        1 => SlotRecord {
            status: SlotStatus::Writing,
            image: Some(t.slot_image()),
        },
        2 => SlotRecord {
            status: SlotStatus::Valid,
            image: Some(t.slot_image()),
        },
        _ => SlotRecord {
            status: SlotStatus::Failed,
            image: Some(t.slot_image()),
        },
    })
}

fn admitted_image(img: &SlotImage, r: Option<&Release>, b: &BmcFacts) -> bool {
    if img.security_version < b.rollback_min {
        return false;
    }
    match r {
        None => false,
        Some(r) => r.targets.iter().any(|t| {
            t.sha256 == img.sha256
                && t.length == img.length
                && t.info.channel.as_str() == "stable"
                && t.info.arch == Arch::X86_64
                && t.info.kind == ImageKind::Os
                && t.info.assign.admits(&node().name, ["workers"])
                && t.info.security_version >= b.rollback_min
        }),
    }
}
#[test]
fn a_blank_node_whose_bmc_fell_back_still_gets_its_first_image() {
    // Powered on before bootd was reachable: the BMC used up slot A's tries
    // and fell back to B. Both slots are empty; nothing to preserve.
    let v1 = target(1, 1, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let r = fresh(vec![v1.clone()]);
    let slots = slots_with(None, None, None);
    for (forced_b, fallback) in [(false, true), (true, false)] {
        let mut f = bmc(Slot::B, 0);
        f.forced_b = forced_b;
        f.fallback = fallback;
        let d = plan(Some(&r), &slots, &f, &node(), now());
        assert_eq!(
            d.plan,
            Plan::Install {
                target: v1.clone(),
                into: Slot::A,
                otherwise: None,
            }
        );
    }
    // A forced B that is empty never overwrites the good image in A.
    let slots_a = slots_with(Some(&v1), None, Some(Slot::A));
    let mut f = bmc(Slot::B, 1);
    f.forced_b = true;
    let d = plan(Some(&r), &slots_a, &f, &node(), now());
    assert!(matches!(d.plan, Plan::Refuse { .. }), "{:?}", d.plan);
    // Without fresh metadata it still refuses, naming the fallback.
    let mut f = bmc(Slot::B, 0);
    f.fallback = true;
    let d = plan(None, &slots, &f, &node(), now());
    assert!(
        matches!(&d.plan, Plan::Refuse { reason } if reason.to_string().contains("slot is Empty")),
        "{:?}",
        d.plan
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn plan_properties(
        a in arb_record(), b in arb_record(), active in 0u8..3,
        slot in prop_oneof![Just(Slot::A), Just(Slot::B)],
        forced in any::<bool>(), fallback in any::<bool>(), min in 0u32..6,
        targets in proptest::collection::vec(arb_target(), 0..5),
        has_release in any::<bool>(), is_fresh in any::<bool>(), has_time in any::<bool>(),
    ) {
        let mut slots = SlotState::empty(geometry());
        slots.slots = [a, b];
        slots.active = match active {
            0 => Some(Slot::A),
            1 => Some(Slot::B),
            _ => None,
        }.filter(|s| slots.slot(*s).status == SlotStatus::Valid);
        let f = BmcFacts { slot, tries_left: 1, forced_b: forced, fallback, rollback_min: SecurityVersion(min) };
        let r = Release { targets, fresh: is_fresh };
        let rel = has_release.then_some(&r);
        let d = plan(rel, &slots, &f, &node(), if has_time { now() } else { None });
        match &d.plan {
            Plan::Install { target, into, otherwise } => {
                // What is booted if the install fails checks out like a
                // BootActive would.
                if let Some(img) = otherwise {
                    prop_assert_eq!(slots.slot(slot).image.as_ref(), Some(img));
                    prop_assert!(admitted_image(img, rel, &f));
                }
                // Never the BMC's slot; on a forced/fallback boot only when
                // neither slot can boot; only with fresh metadata and
                // trusted time
                prop_assert_ne!(*into, slot);
                // (the slot written held no valid image to preserve).
                let empty = slots.slot(*into).valid_image().is_none();
                prop_assert!(!forced && !fallback || (empty && otherwise.is_none()));
                prop_assert!(has_release && is_fresh && has_time);
                prop_assert_eq!(target.info.arch, Arch::X86_64);
                prop_assert_eq!(target.info.kind, ImageKind::Os);
                prop_assert!(target.info.security_version.0 >= min);
                prop_assert!(target.info.assign.admits(&node().name, ["workers"]));
                prop_assert_eq!(target.info.channel.as_str(), "stable");
            }
            Plan::BootActive { slot: s, image } | Plan::Fallback { slot: s, image, .. } => {
                prop_assert_eq!(*s, slot);
                prop_assert_eq!(slots.slot(*s).status, SlotStatus::Valid);
                prop_assert!(admitted_image(image, rel, &f));
            }
            Plan::Report { slot: s, image } => {
                prop_assert_ne!(*s, slot);
                prop_assert_eq!(slots.slot(*s).image.as_ref(), Some(image));
                prop_assert!(admitted_image(image, rel, &f));
            }
            Plan::Refuse { .. } => {
                // Refused only when the BMC's slot is not bootable.
                let img = slots.slot(slot).valid_image();
                prop_assert!(img.is_none_or(|i| !admitted_image(i, rel, &f)) || !forced && !fallback);
            }
        }
    }
}

#[test]
fn replayed_metadata_with_an_older_release_of_the_same_security_version_is_not_installed() {
    // The node runs 1.2.0 (security version 1). A compromised bootd
    // replays older, unexpired metadata whose newest image is 1.1.0, same
    // security version: the rollback minimum does not stop it.
    let old = target(1, 1, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let running = target(2, 1, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let replay = fresh(vec![old.clone(), running.clone()]);
    let d = plan(
        Some(&fresh(vec![old.clone()])),
        &slots_with(None, Some(&running), Some(Slot::B)),
        &bmc(Slot::B, 1),
        &node(),
        now(),
    );
    assert!(!matches!(d.plan, Plan::Install { .. }), "{:?}", d.plan);
    assert_eq!(
        d.refused,
        vec![(
            old.name.clone(),
            TargetRefusal::OlderThanInstalled {
                version: old.info.version.clone(),
                installed: running.name.clone(),
                installed_version: running.info.version.clone(),
            }
        )]
    );
    let why = d.refused[0].1.to_string();
    assert!(
        why.contains("older than the installed os-2.uki 1.2.0"),
        "{why}"
    );
    // Still in slot A from before (the disk keeps it): not reported
    // back to the BMC either.
    let d = plan(
        Some(&replay),
        &slots_with(Some(&old), Some(&running), Some(Slot::B)),
        &bmc(Slot::B, 1),
        &node(),
        now(),
    );
    assert!(
        matches!(d.plan, Plan::BootActive { slot: Slot::B, .. }),
        "{:?}",
        d.plan
    );
    // A repository keeps its old releases: beside a newer one they are no
    // refusal at all (nothing is reported to bootd or the BMC).
    assert_eq!(d.refused, vec![], "{:?}", d.refused);
}

#[test]
fn a_signed_downgrade_is_installed_and_booting_an_older_installed_image_is_not_refused() {
    let old = target(1, 1, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let running = target(2, 1, Arch::X86_64, workers(), ImageKind::Os, "stable");
    let mut back = old.clone();
    back.info.downgrade = true;
    let d = plan(
        Some(&fresh(vec![back.clone()])),
        &slots_with(None, Some(&running), Some(Slot::B)),
        &bmc(Slot::B, 1),
        &node(),
        now(),
    );
    assert_eq!(
        d.plan,
        Plan::Install {
            target: back.clone(),
            into: Slot::A,
            otherwise: None,
        }
    );
    // The floor applies to updates only: a node whose BMC fell back to the
    // older image still boots it.
    let d = plan(
        Some(&fresh(vec![old.clone(), running.clone()])),
        &slots_with(Some(&old), Some(&running), Some(Slot::B)),
        &BmcFacts {
            fallback: true,
            ..bmc(Slot::A, 1)
        },
        &node(),
        now(),
    );
    assert!(
        matches!(d.plan, Plan::Fallback { slot: Slot::A, .. }),
        "{:?}",
        d.plan
    );
}
