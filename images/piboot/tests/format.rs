//! This crate against files Raspberry Pi's own tools made
//! (`tests/data/README.md` says where each comes from).

use racklet_piboot::key::PiPublicKey;
use racklet_piboot::sig::{verify_boot_img, BootSig};
use racklet_piboot::Error;

const CONFIG: &[u8] = include_bytes!("data/rpi-eeprom-signed-config/bootconf.txt");
const CONFIG_SIG: &[u8] = include_bytes!("data/rpi-eeprom-signed-config/bootconf.sig");
const PUBLIC_PEM: &str = include_str!("data/rpi-eeprom-signed-config/public.pem");
const PUBKEY_BIN: &[u8] = include_bytes!("data/rpi-eeprom-signed-config/pubkey.bin");
const EXAMPLE_SIG: &[u8] = include_bytes!("data/usbboot-example-sig/boot.sig");
const EXAMPLE_PEM: &str = include_str!("data/usbboot-example-sig/example-public.pem");

#[test]
fn rpi_eeprom_digest_output_parses_and_reencodes_byte_for_byte() {
    for (name, text) in [
        ("bootconf.sig", CONFIG_SIG),
        ("usbboot boot.sig", EXAMPLE_SIG),
    ] {
        let sig = BootSig::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(sig.rsa2048().is_some(), "{name} is signed");
        assert_eq!(sig.encode().as_bytes(), text, "{name}");
    }
    let sig = BootSig::parse(EXAMPLE_SIG).unwrap();
    assert_eq!(sig.ts().unix_seconds(), 1_734_010_524);
    assert_eq!(
        hex::encode(sig.sha256()),
        "902be6c484ad71bb9f88b2fce51a2baf01efcb031c9daa0557d3b722c3951959"
    );
}

#[test]
fn a_signature_made_by_rpi_eeprom_digest_verifies() {
    let key = PiPublicKey::from_pem(PUBLIC_PEM).unwrap();
    let sig = BootSig::parse(CONFIG_SIG).unwrap();
    verify_boot_img(CONFIG, &sig, &key).unwrap();

    let mut changed = CONFIG.to_vec();
    changed[0] ^= 1;
    assert!(matches!(
        verify_boot_img(&changed, &sig, &key),
        Err(Error::HashMismatch { .. })
    ));
    let mut n = *key.modulus();
    n[128] ^= 0x10;
    let other = PiPublicKey::from_components(&n, &[1, 0, 1]).unwrap();
    assert!(matches!(
        verify_boot_img(CONFIG, &sig, &other),
        Err(Error::BadSignature)
    ));
}

#[test]
fn pubkey_bin_matches_the_one_rpi_eeprom_config_wrote() {
    let key = PiPublicKey::from_pem(PUBLIC_PEM).unwrap();
    assert_eq!(key.to_pubkey_bin().as_slice(), PUBKEY_BIN);
    assert_eq!(PiPublicKey::from_pubkey_bin(PUBKEY_BIN).unwrap(), key);
    assert_eq!(key.exponent(), 65_537);
}

#[test]
fn usbboot_and_rpi_eeprom_examples_share_one_key() {
    // Worth knowing when reading their examples: the public key of
    // usbboot's secure-boot example is rpi-eeprom's test key.
    assert_eq!(
        PiPublicKey::from_pem(EXAMPLE_PEM).unwrap(),
        PiPublicKey::from_pem(PUBLIC_PEM).unwrap()
    );
}

#[test]
fn our_pem_is_the_pem_openssl_wrote() {
    // Both Raspberry Pi keys are `openssl rsa -pubout` PEM (64-column,
    // SubjectPublicKeyInfo); ours must be the same bytes.
    for pem in [PUBLIC_PEM, EXAMPLE_PEM] {
        let key = PiPublicKey::from_pem(pem).unwrap();
        assert_eq!(key.to_pem(), pem);
    }
}
