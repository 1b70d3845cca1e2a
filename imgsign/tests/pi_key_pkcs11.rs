//! The Pi secure-boot key (RSA-2048) held in a PKCS#11 token (SoftHSM):
//! generated there, signing `boot.sig`s the Pi's key check accepts, never
//! exported. A file of its own: SoftHSM is configured once per process.

mod common;

use common::softhsm;
use common::*;
use racklet_piboot::sig::{self, SigTimestamp};

#[test]
fn a_pi_key_in_softhsm_signs_a_boot_sig_the_pi_accepts() {
    if !have(softhsm::available(), softhsm::NEEDS) {
        return;
    }
    let token = softhsm::Token::new("racklet-pi");
    let d = &token.dir;
    let uri = &token.uri_with_pin("pi-boot");

    let key = imgsign::keys::PiKey::generate(uri).unwrap();
    assert!(matches!(
        imgsign::keys::PiKey::generate(uri),
        Err(imgsign::Error::AlreadyExists { .. })
    ));
    assert!(!format!("{key:?}").contains("4321"), "{key:?}");
    assert!(key.origin().contains("pin-value=***"));
    // A key in a token never leaves it.
    let out = d.path().join("pi.pem");
    assert!(matches!(
        key.write_new(&out),
        Err(imgsign::Error::BadKey { .. })
    ));
    assert!(!out.exists());

    let again = imgsign::keys::PiKey::load(uri).unwrap();
    assert_eq!(again.public(), key.public());
    let image = b"a boot.img".repeat(1000);
    let ts = SigTimestamp::from_unix(1_700_000_000).unwrap();
    let signed = sig::sign_boot_img(&image, ts, None, &again).unwrap();
    sig::verify_boot_img(&image, &signed, key.public()).unwrap();
    // PKCS#1 v1.5 is deterministic: signing again gives the same boot.sig.
    let twice = sig::sign_boot_img(&image, ts, None, &key).unwrap();
    assert_eq!(signed.encode(), twice.encode());

    // An Ed25519 key of the same label is not a Pi key, and vice versa.
    let ed = "pkcs11:token=racklet-pi;object=pi-boot-ed?pin-value=4321";
    imgsign::pkcs11::generate(ed).unwrap();
    assert!(matches!(
        imgsign::keys::PiKey::load(ed),
        Err(imgsign::Error::Pkcs11NoKey { kind: "RSA", .. })
    ));
}
