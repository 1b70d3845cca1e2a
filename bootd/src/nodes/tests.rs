//! The node store's unit tests.
use super::*;

fn rack() -> Rack {
    Rack::from_yaml_str(include_str!("../../../hardware/rack.yaml")).unwrap()
}

#[test]
fn unknown_node_and_garbage_csr_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = NodeStore::new(dir.path());
    let (_k, csr) = bootd_client::new_key_and_csr("unit-1").unwrap();
    let e = s
        .submit(&rack(), "unit-99", &csr, "x", Utc::now(), 8)
        .unwrap_err();
    assert!(matches!(e, Error::UnknownNode { .. }), "{e}");
    let e = s
        .submit(&rack(), "unit-1", "hello", "x", Utc::now(), 8)
        .unwrap_err();
    assert!(matches!(e, Error::CsrNotPem { .. }), "{e}");
    let e = s
        .submit(
            &rack(),
            "unit-1",
            &"x".repeat(MAX_CSR + 1),
            "x",
            Utc::now(),
            8,
        )
        .unwrap_err();
    assert!(matches!(e, Error::CsrTooLong { .. }), "{e}");
    assert!(e.to_string().contains("`unit-1`"), "{e}");
    let e = s
        .submit(&rack(), "unit-1", &csr, "x", Utc::now(), 0)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooManyPending {
                pending: 0,
                limit: 0,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("max_pending_enrollments"), "{e}");
    assert!(s.pending().is_empty());
}

#[test]
fn pending_requests_are_capped_and_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let s = NodeStore::new(dir.path());
    let (_k, csr) = bootd_client::new_key_and_csr("unit-1").unwrap();
    let a = s
        .submit(&rack(), "unit-1", &csr, "x", Utc::now(), 2)
        .unwrap();
    let b = s
        .submit(&rack(), "unit-1", &csr, "x", Utc::now(), 2)
        .unwrap();
    assert_eq!(a.id, b.id);
    let (_k, csr2) = bootd_client::new_key_and_csr("unit-2").unwrap();
    s.submit(&rack(), "unit-2", &csr2, "x", Utc::now(), 2)
        .unwrap();
    let (_k, csr3) = bootd_client::new_key_and_csr("unit-3").unwrap();
    let e = s
        .submit(&rack(), "unit-3", &csr3, "x", Utc::now(), 2)
        .unwrap_err();
    assert!(e.to_string().contains("already waiting"), "{e}");
    // unit-1 again with a new key (it forgot the old one: no disk):
    // its older request is replaced, the queue does not grow.
    let (_k, csr4) = bootd_client::new_key_and_csr("unit-1").unwrap();
    let c = s
        .submit(&rack(), "unit-1", &csr4, "x", Utc::now(), 2)
        .unwrap();
    assert_ne!(c.id, a.id);
    let ids: Vec<String> = s.pending().into_iter().map(|p| p.id).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&c.id) && !ids.contains(&a.id), "{ids:?}");
    assert!(matches!(s.status(&a.id), RequestStatus::Unknown));
}

#[test]
fn approve_revoke_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let files = PkiFiles {
        ca_cert: pki_dir.join("ca.pem"),
        ca_key: pki_dir.join("ca.key"),
        server_cert: pki_dir.join("server.pem"),
        server_key: pki_dir.join("server.key"),
    };
    pki::init(&files, "r", &["localhost".into()], 10, Utc::now(), false).unwrap();
    let s = NodeStore::new(&dir.path().join("state"));
    let (_k, csr) = bootd_client::new_key_and_csr("unit-2").unwrap();
    let req = s
        .submit(&rack(), "unit-2", &csr, "x", Utc::now(), 8)
        .unwrap();
    assert_eq!(s.status(&req.id), RequestStatus::Pending);
    assert_eq!(s.list(&rack())[1].identity, "pending");
    let rec = s.approve(&rack(), &files, &req.id, 30, Utc::now()).unwrap();
    assert!(matches!(s.status(&req.id), RequestStatus::Issued(_)));
    assert_eq!(
        s.identities().by_fingerprint.get(&rec.fingerprint).unwrap(),
        "unit-2"
    );
    assert!(s.approve(&rack(), &files, &req.id, 30, Utc::now()).is_err());
    assert_eq!(
        s.revoke("unit-2", Utc::now()).unwrap(),
        vec![rec.fingerprint.clone()]
    );
    let ids = s.identities();
    assert!(ids.revoked.contains(&rec.fingerprint));
    assert!(ids.by_fingerprint.is_empty());
    assert_eq!(s.list(&rack())[1].identity, "revoked");
    assert_eq!(s.status("../../etc/passwd"), RequestStatus::Unknown);
}
