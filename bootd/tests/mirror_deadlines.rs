//! A mirror whose origin stalls: every request to the origin has
//! deadlines (`repository.mirror.*_timeout_ms`), so a stalled origin fails
//! one poll, and the next poll tries again — the publish loop never hangs
//! for good. The origin here is a real TCP server in front of a real
//! upstream bootd: its first connections are accepted and never answered
//! (no TLS at all, then TLS and no HTTP answer), later ones are passed
//! through. Each test has its own 60 s limit: a hang fails, never blocks.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_for_timestamp, Fixture, BASE_CONFIG};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

const IMG: &[u8] = b"an image";
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// The stalling front of the origin.
struct Front {
    port: u16,
    /// Connections accepted so far.
    seen: Arc<AtomicUsize>,
}

/// Connections `0..silent`: TCP accepted, nothing said (the handshake
/// deadline fires). `silent..silent + mute`: TLS handshake with the
/// upstream's certificate, the request read, no answer (the idle-read
/// deadline fires). Later ones: passed through to `upstream`.
async fn front(up: &Fixture, upstream: std::net::SocketAddr, silent: usize, mute: usize) -> Front {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&up.pki.server_cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&up.pki.server_key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = l.accept().await.unwrap();
            let n = count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if n < silent {
                    let mut sink = [0u8; 1024];
                    while matches!(tcp.read(&mut sink).await, Ok(k) if k > 0) {}
                } else if n < silent + mute {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut sink = [0u8; 1024];
                    while matches!(tls.read(&mut sink).await, Ok(k) if k > 0) {}
                } else {
                    let Ok(mut to) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut to).await;
                }
            });
        }
    });
    Front { port, seen }
}

fn mirror_config(port: u16) -> String {
    BASE_CONFIG.replace(
        "  local: repo",
        &format!(
            "  mirror:\n    url: \"https://localhost:{port}/\"\n    ca_cert: upstream-ca.pem\n    \
             connect_timeout_ms: 1000\n    handshake_timeout_ms: 400\n    \
             read_timeout_ms: 400\n    total_timeout_ms: 5000"
        ),
    )
}

fn mirror_of(up: &Fixture, port: u16) -> Fixture {
    let m = Fixture::with_config(&mirror_config(port));
    std::fs::copy(&up.pki.ca_cert, m.dir.path().join("upstream-ca.pem")).unwrap();
    std::fs::copy(
        up.repo.join("metadata/1.root.json"),
        m.dir.path().join("trusted-root.json"),
    )
    .unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_origin_fails_a_poll_and_the_next_poll_tries_again() {
    let up = Fixture::new();
    up.release("1.0.0", &[("os.img", IMG, "os")]);
    let upstream = up.start().await;
    wait_for_timestamp(upstream.addr, &up.ca_der(), 2).await;
    let f = front(&up, upstream.addr, 2, 2).await;
    let m = mirror_of(&up, f.port);
    let mirror = m.start().await;
    tokio::time::timeout(TEST_LIMIT, wait_for_timestamp(mirror.addr, &m.ca_der(), 2))
        .await
        .expect("the publish loop hung on a stalled origin");
    assert!(
        f.seen.load(Ordering::SeqCst) > 4,
        "four stalled polls, then the ones that got through"
    );
    mirror.stop().await;
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_origin_is_refused_naming_the_url_and_the_deadline() {
    let up = Fixture::new();
    up.release("1.0.0", &[("os.img", IMG, "os")]);
    let upstream = up.start().await;
    let f = front(&up, upstream.addr, 1, 1).await;
    let m = mirror_of(&up, f.port);
    let cfg = m.config();
    let p = bootd::repo::Publisher::new(&cfg.repository, &m.state).unwrap();
    let url = format!("https://localhost:{}/metadata/timestamp.json", f.port);
    for deadline in ["handshake deadline", "idle-read deadline"] {
        let e = tokio::time::timeout(TEST_LIMIT, p.source_timestamp_sha256())
            .await
            .expect("a poll of a stalled origin hung")
            .unwrap_err();
        let msg = bootd_client::display_chain(&e);
        assert!(msg.contains(&url), "{msg}");
        assert!(msg.contains(deadline), "{msg}");
    }
    // Then the origin answers, and the same publisher reads it.
    tokio::time::timeout(TEST_LIMIT, p.source_timestamp_sha256())
        .await
        .unwrap()
        .unwrap();
    upstream.stop().await;
}
