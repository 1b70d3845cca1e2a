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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_pi_gets_its_pair_only_if_it_passes_the_pis_checks() {
    let f = Fixture::with_config(CONFIG);
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let other = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = PiPublicKey::from_pkcs1_der(key.public_key().as_ref()).unwrap();
    std::fs::write(
        f.config_path.parent().unwrap().join("pi-pubkey.bin"),
        public.to_pubkey_bin(),
    )
    .unwrap();
    let (img4, sig4) = pair(&key, 4);
    // Signed into the repository (TUF vouches for it), but by another Pi key.
    let (img5, sig5) = pair(&other, 5);
    f.release(
        "1.0.0",
        &[
            ("rpi4-stage1.img", &img4, "stage1"),
            ("rpi4-stage1.sig", &sig4, "stage1"),
            ("rpi5-stage1.img", &img5, "stage1"),
            ("rpi5-stage1.sig", &sig5, "stage1"),
        ],
    );
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let paddr = plain.local_addr().unwrap();
    let s = start_with_plain(f.config(), Some(plain)).await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;

    // The Pi 4's pair passes: served over HTTPS and plain HTTP, as signed.
    let r = get(s.addr, &ca, "/rpi4/boot.img").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, img4);
    let (status, body) = plain_get(paddr, "/rpi4/boot.sig").await;
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, sig4);

    // The Pi 5's is signed with another key: neither half is served.
    for half in ["boot.img", "boot.sig"] {
        let r = get(s.addr, &ca, &format!("/rpi5/{half}")).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{half}");
        let why = String::from_utf8_lossy(&r.body);
        assert!(why.contains("does not verify"), "{half}: {why}");
    }
    let m = metrics(s.addr, &ca).await;
    assert!(
        metric_value(&m, "bootd_first_stage_refused_total{path=\"rpi5\"}").unwrap_or(0.0) >= 2.0,
        "{m}"
    );
    assert!(metric_value(&m, "bootd_first_stage_refused_total{path=\"rpi4\"}").is_none());

    // The Pi 5's entry is HTTPS only: plain HTTP does not know it.
    let (status, _) = plain_get(paddr, "/rpi5/boot.img").await;
    assert!(status.contains(" 404 "), "{status}");

    s.stop().await;
}
