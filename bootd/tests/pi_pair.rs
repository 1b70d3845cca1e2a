//! A Pi 4 and a Pi 5 in one rack: two `first_stage` entries at their own
//! paths, the Pi 5's HTTPS-only, each checked against the Pi public key
//! before a byte is served. The attacks: a pair TUF vouches for but signed
//! with another Pi key, and an HTTPS-only entry asked for over plain HTTP.

mod common;

use std::net::SocketAddr;

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use common::*;
use hyper::StatusCode;
use racklet_piboot::fat_write::{write_boot_img, BootFile, BootImgOptions, FatTime};
use racklet_piboot::key::PiPublicKey;
use racklet_piboot::sig::sign_boot_img;
use racklet_piboot::{BootPath, SigTimestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A small FAT `boot.img` and its `boot.sig` signed by `key`.
fn pair(key: &RsaKeyPair, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let name = BootPath::new("Image.gz").unwrap();
    let data = vec![seed; 4000];
    let image = write_boot_img(
        &[BootFile {
            path: &name,
            data: &data,
        }],
        &BootImgOptions::racklet(FatTime::from_unix(1_767_225_600).unwrap()),
    )
    .unwrap();
    let sig = sign_boot_img(
        &image,
        SigTimestamp::from_unix(1_767_225_600).unwrap(),
        None,
        key,
    )
    .unwrap();
    (image, sig.encode().into_bytes())
}

const CONFIG: &str = r#"rack_file: rack.yaml
state_dir: state
listen:
  https: ["127.0.0.1:0"]
tls:
  ca_cert: pki/ca.pem
  ca_key: pki/ca.key
  server_cert: pki/server.pem
  server_key: pki/server.key
  server_names: [localhost, 127.0.0.1]
repository:
  trusted_root: trusted-root.json
  local: repo
  poll_interval_ms: 100
first_stage:
  - path: rpi4
    files: { boot.img: rpi4-stage1.img, boot.sig: rpi4-stage1.sig }
    transport: http
    pi_public_key: pi-pubkey.bin
  - path: rpi5
    files: { boot.img: rpi5-stage1.img, boot.sig: rpi5-stage1.sig }
    transport: https
    pi_public_key: pi-pubkey.bin
reload_interval_ms: 100
"#;

/// Status line and body of a plain-HTTP GET.
async fn plain_get(addr: SocketAddr, path: &str) -> (String, Vec<u8>) {
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    (
        head.lines().next().unwrap_or_default().to_owned(),
        out[split + 4..].to_vec(),
    )
}

/// The four targets of a release: the Pi 4's pair and the Pi 5's.
fn pairs<'a>(
    rpi4: &'a (Vec<u8>, Vec<u8>),
    rpi5: &'a (Vec<u8>, Vec<u8>),
) -> [(&'static str, &'a [u8], &'static str); 4] {
    [
        ("rpi4-stage1.img", &rpi4.0, "stage1"),
        ("rpi4-stage1.sig", &rpi4.1, "stage1"),
        ("rpi5-stage1.img", &rpi5.0, "stage1"),
        ("rpi5-stage1.sig", &rpi5.1, "stage1"),
    ]
}

/// `bootd_first_stage_checks_total` of `path` and `result`, 0 if absent.
fn checks(m: &str, path: &str, result: &str) -> f64 {
    metric_value(
        m,
        &format!("bootd_first_stage_checks_total{{path=\"{path}\",result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Points the two entries at `<rpi4>.img/.sig` and `<rpi5>.img/.sig`
/// (bootd reloads its configuration).
fn remap(f: &Fixture, rpi4: &str, rpi5: &str) {
    let text = CONFIG
        .replace("rpi4-stage1.", &format!("{rpi4}."))
        .replace("rpi5-stage1.", &format!("{rpi5}."));
    std::fs::write(&f.config_path, text).unwrap();
}

/// Waits (at most 10 s) until `path` answers `want`.
async fn wait_status(
    s: &Running,
    ca: &rustls::pki_types::CertificateDer<'static>,
    path: &str,
    want: StatusCode,
) {
    let start = std::time::Instant::now();
    loop {
        let got = get(s.addr, ca, path).await.status;
        if got == want {
            return;
        }
        assert!(start.elapsed().as_secs() < 10, "{path}: {got}, want {want}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Asserts both halves of `path`'s pair are refused, the text saying `why`.
async fn refused(
    s: &Running,
    ca: &rustls::pki_types::CertificateDer<'static>,
    path: &str,
    why: &str,
) {
    for half in ["boot.img", "boot.sig"] {
        let r = get(s.addr, ca, &format!("/{path}/{half}")).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}/{half}");
        let text = String::from_utf8_lossy(&r.body);
        assert!(text.contains(why), "{path}/{half}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_pi_gets_its_pair_only_if_it_passes_the_pis_checks() {
    let f = Fixture::with_config(CONFIG);
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let other = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pubkey_bin = |k: &RsaKeyPair| {
        PiPublicKey::from_pkcs1_der(k.public_key().as_ref())
            .unwrap()
            .to_pubkey_bin()
    };
    let key_file = f.config_path.parent().unwrap().join("pi-pubkey.bin");
    std::fs::write(&key_file, pubkey_bin(&key)).unwrap();
    let rpi4 = pair(&key, 4);
    // Signed into the repository (TUF vouches for it), but by another Pi key.
    let rpi5_foreign = pair(&other, 5);
    f.release("1.0.0", &pairs(&rpi4, &rpi5_foreign));
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let paddr = plain.local_addr().unwrap();
    let s = start_with_plain(f.config(), Some(plain)).await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;

    // The verdicts are in before the first Pi asks: checked when the
    // snapshot was taken into service.
    let m = metrics(s.addr, &ca).await;
    assert_eq!(checks(&m, "rpi4", "pass"), 1.0, "{m}");
    assert_eq!(checks(&m, "rpi5", "refused"), 1.0, "{m}");

    // The Pi 4's pair passes: served over HTTPS and plain HTTP, as signed.
    for _ in 0..3 {
        let r = get(s.addr, &ca, "/rpi4/boot.img").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, rpi4.0);
    }
    let (status, body) = plain_get(paddr, "/rpi4/boot.sig").await;
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, rpi4.1);

    // The Pi 5's is signed with another key: neither half is served.
    refused(&s, &ca, "rpi5", "does not verify").await;
    let m = metrics(s.addr, &ca).await;
    assert_eq!(
        metric_value(&m, "bootd_first_stage_refused_total{path=\"rpi5\"}"),
        Some(2.0),
        "{m}"
    );
    assert!(metric_value(&m, "bootd_first_stage_refused_total{path=\"rpi4\"}").is_none());
    // Checked once, however many requests came.
    assert_eq!(checks(&m, "rpi4", "pass"), 1.0, "{m}");
    assert_eq!(checks(&m, "rpi5", "refused"), 1.0, "{m}");

    // The Pi 5's entry is HTTPS only: plain HTTP does not know it.
    let (status, _) = plain_get(paddr, "/rpi5/boot.img").await;
    assert!(status.contains(" 404 "), "{status}");

    // The next release signs the Pi 5's pair with the right key (under
    // new names: imgsign never re-signs a name with other bytes), and the
    // entry is pointed at it: served from then on. The Pi 4's bytes did not
    // change: not checked again.
    let rpi5 = pair(&key, 5);
    f.release(
        "2.0.0",
        &[
            ("rpi5-stage1-2.img", &rpi5.0, "stage1"),
            ("rpi5-stage1-2.sig", &rpi5.1, "stage1"),
        ],
    );
    wait_for_timestamp(s.addr, &ca, 3).await;
    remap(&f, "rpi4-stage1", "rpi5-stage1-2");
    wait_status(&s, &ca, "/rpi5/boot.img", StatusCode::OK).await;
    for (half, want) in [("boot.img", &rpi5.0), ("boot.sig", &rpi5.1)] {
        let r = get(s.addr, &ca, &format!("/rpi5/{half}")).await;
        assert_eq!(r.status, StatusCode::OK, "{half}");
        assert_eq!(&r.body, want, "{half}");
    }
    let m = metrics(s.addr, &ca).await;
    assert_eq!(checks(&m, "rpi4", "pass"), 1.0, "{m}");
    assert_eq!(checks(&m, "rpi5", "pass"), 1.0, "{m}");

    // Both halves signed with the right key, but not with each other (a
    // new boot.img beside the last boot.sig); and a boot.img the right key
    // signed that is no FAT a Pi reads. TUF vouches for all of it.
    let newer = pair(&key, 7);
    let not_fat = vec![0x5a; 4096];
    let sig = sign_boot_img(
        &not_fat,
        SigTimestamp::from_unix(1_767_225_600).unwrap(),
        None,
        &key,
    )
    .unwrap();
    let not_fat = (not_fat, sig.encode().into_bytes());
    f.release(
        "3.0.0",
        &[
            ("rpi4-stage1-3.img", &newer.0, "stage1"),
            ("rpi4-stage1-3.sig", &rpi4.1, "stage1"),
            ("rpi5-stage1-3.img", &not_fat.0, "stage1"),
            ("rpi5-stage1-3.sig", &not_fat.1, "stage1"),
        ],
    );
    wait_for_timestamp(s.addr, &ca, 4).await;
    remap(&f, "rpi4-stage1-3", "rpi5-stage1-3");
    wait_status(&s, &ca, "/rpi4/boot.img", StatusCode::SERVICE_UNAVAILABLE).await;
    refused(&s, &ca, "rpi4", "changed after signing").await;
    let (status, body) = plain_get(paddr, "/rpi4/boot.img").await;
    assert!(status.contains(" 503 "), "{status}");
    assert!(String::from_utf8_lossy(&body).contains("changed after signing"));
    refused(&s, &ca, "rpi5", "boot.img").await;

    s.stop().await;
}

/// A replaced Pi key counts from the next request on, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaced_pi_key_is_checked_again() {
    let f = Fixture::with_config(CONFIG);
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let other = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let key_file = f.config_path.parent().unwrap().join("pi-pubkey.bin");
    let public = |k: &RsaKeyPair| PiPublicKey::from_pkcs1_der(k.public_key().as_ref()).unwrap();
    std::fs::write(&key_file, public(&key).to_pubkey_bin()).unwrap();
    let (rpi4, rpi5) = (pair(&key, 4), pair(&key, 5));
    f.release("1.0.0", &pairs(&rpi4, &rpi5));
    let s = start_with_plain(f.config(), None).await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    assert_eq!(
        get(s.addr, &ca, "/rpi5/boot.img").await.status,
        StatusCode::OK
    );

    // The rack's key is now another one (as PEM this time): the pairs
    // signed with the old key are refused.
    std::fs::write(&key_file, public(&other).to_pem()).unwrap();
    refused(&s, &ca, "rpi5", "does not verify").await;
    refused(&s, &ca, "rpi4", "does not verify").await;
    // An unreadable key refuses too, saying which file.
    std::fs::remove_file(&key_file).unwrap();
    refused(&s, &ca, "rpi4", "pi-pubkey.bin").await;
    s.stop().await;
}
