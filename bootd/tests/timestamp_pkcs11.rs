//! bootd's online timestamp role with its key in a PKCS#11 token
//! (SoftHSM): `repository.timestamp.key` is a `pkcs11:` URI, kept as
//! written (not joined onto the config's directory as a file path), and
//! bootd re-signs through the token. A file of its own: SoftHSM is
//! configured once per process.

mod common;
#[path = "../../imgsign/tests/common/softhsm.rs"]
mod softhsm;

use common::{metric_value, metrics, wait_for_timestamp, Fixture, BASE_CONFIG};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_online_timestamp_key_in_a_pkcs11_token_re_signs() {
    if !softhsm::available() {
        if std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!(
                "RACKLET_REQUIRE_ALL=1 but {} is not available",
                softhsm::NEEDS
            );
        }
        println!("skipped: needs {}", softhsm::NEEDS);
        return;
    }
    let token = softhsm::Token::new("racklet-bootd");
    let uri = token.uri("timestamp");
    let key = imgsign::pkcs11::generate(&uri).unwrap();
    // A fresh 1-day timestamp is inside the 25 h margin: re-sign at once.
    let config = BASE_CONFIG.replace(
        "  poll_interval_ms: 100",
        &format!(
            "  poll_interval_ms: 100\n  timestamp: {{ key: \"{uri}\", lifetime_s: 172800, \
             refresh_margin_s: 90000 }}"
        ),
    );
    let f = Fixture::with_timestamp_key(&config, key);
    assert_eq!(
        f.config().repository.timestamp.unwrap().key,
        std::path::Path::new(&uri),
        "the URI is kept as written"
    );
    f.release("1.0.0", &[("os.img", b"an image", "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    // Version 2 from the release, version 3 signed by bootd in the token.
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        wait_for_timestamp(s.addr, &ca, 3),
    )
    .await
    .expect("no re-signed timestamp");
    let m = metrics(s.addr, &ca).await;
    assert!(
        metric_value(&m, "bootd_timestamp_resigns_total{result=\"ok\"}").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    s.stop().await;
}
