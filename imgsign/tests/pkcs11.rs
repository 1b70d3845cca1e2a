//! Signing with a key held in a PKCS#11 token (SoftHSM, Debian `softhsm2`).

mod common;

use common::softhsm;
use common::*;

#[test]
fn a_root_key_in_softhsm_signs_a_repository_that_tough_accepts() {
    if !have(softhsm::available(), softhsm::NEEDS) {
        return;
    }
    let token = softhsm::Token::new("racklet-test");
    let (d, conf, pin) = (&token.dir, &token.conf, &token.pin_file);
    let uri = token.uri("root-hsm");

    let hsm = imgsign::pkcs11::generate(&uri).unwrap();
    match imgsign::pkcs11::generate(&uri) {
        Err(imgsign::Error::AlreadyExists { .. }) => {}
        other => panic!("a second key under the same label: {other:?}"),
    }
    let again = imgsign::keys::SigningKeyPair::load(&uri).unwrap();
    assert_eq!(hsm.key_id(), again.key_id());

    let k = |n: &str| key_file(d.path(), n).1;
    let (tg, sn, ts) = (k("tg.pem"), k("sn.pem"), k("ts.pem"));
    let spec = imgsign::init::RootSpec::one_key_each(
        again.public(),
        tg.public(),
        sn.public(),
        ts.public(),
    );
    let repo = d.path().join("repo");
    imgsign::init::init(
        &repo,
        &spec,
        &[&again, &tg, &sn, &ts],
        now(),
        &Default::default(),
    )
    .unwrap();
    client_verify(&repo).unwrap();

    // A wrong PIN is a clear error, and the PIN is not in it. (A fresh
    // process: login state is per process and token.)
    std::fs::write(pin, "0000\n").unwrap();
    let out = assert_cmd::Command::cargo_bin("imgsign")
        .unwrap()
        .env("SOFTHSM2_CONF", conf)
        .args(["key", "id", &uri])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("logging in"), "{err}");
    let uri_with_value = "pkcs11:token=racklet-test;object=root-hsm?pin-value=0000";
    let out = assert_cmd::Command::cargo_bin("imgsign")
        .unwrap()
        .env("SOFTHSM2_CONF", conf)
        .args(["key", "id", uri_with_value])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("0000"), "PIN leaked: {err}");
    // The right PIN in a fresh process gives the same key id.
    let out = assert_cmd::Command::cargo_bin("imgsign")
        .unwrap()
        .env("SOFTHSM2_CONF", conf)
        .args([
            "key",
            "id",
            "pkcs11:token=racklet-test;object=root-hsm?pin-value=4321",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hsm.key_id());
}
