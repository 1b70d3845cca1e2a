//! Every deadline of [`NetConfig`] against a real TCP server that stalls at
//! one step: it never lets the connection open, accepts and never speaks
//! TLS, completes the handshake and never answers, sends a response head
//! and then stalls the body, or trickles a body forever. Each case must
//! fail within seconds (a hang fails the test at its own 60 s timeout
//! instead of blocking the run), with an error that names the URL and the
//! deadline that fired.

use std::sync::Arc;
use std::time::Duration;

use bootd_client::{Client, Deadline, Error, NetConfig};
use hyper::Method;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A hang fails here instead of blocking the run.
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Short deadlines, each different, so the error says which one fired.
fn net() -> NetConfig {
    NetConfig {
        connect_timeout: Duration::from_millis(700),
        handshake_timeout: Duration::from_millis(800),
        read_timeout: Duration::from_millis(900),
        call_timeout: Duration::from_secs(3),
        total_timeout: Duration::from_secs(3),
        // The throughput guard is another defence; keep it out of the way.
        min_bytes_per_sec: 0,
        ..NetConfig::default()
    }
}

/// A CA and a `localhost` certificate it issued.
struct Pki {
    ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = p.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(p, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
    let key = PrivateKeyDer::Pkcs8(
        PrivatePkcs8KeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    );
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
    }
}

fn client(p: &Pki) -> Client {
    let tls = bootd_client::tls::client_config(p.ca_pem.as_bytes(), None).unwrap();
    Client::new(Some(tls), net())
}

fn url(port: u16) -> url::Url {
    url::Url::parse(&format!("https://localhost:{port}/metadata/timestamp.json")).unwrap()
}

/// What the server does once a connection is open.
#[derive(Clone, Copy)]
enum Stall {
    /// Accept the TCP connection, then say nothing (no TLS).
    BeforeHandshake,
    /// Complete the TLS handshake, read the request, answer nothing.
    AfterHandshake,
    /// Send a response head announcing 1000 bytes, 10 of them, then nothing.
    MidBody,
    /// Send a response head, then one byte every 200 ms forever.
    Trickle,
}

/// Serves `stall` on 127.0.0.1; returns the port.
async fn serve(p: &Pki, stall: Stall) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let acceptor = p.acceptor.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Stall::BeforeHandshake = stall {
                    let _held = &tcp;
                    let never = std::future::pending::<std::convert::Infallible>().await;
                    match never {}
                }
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _n = tls.read(&mut buf).await;
                match stall {
                    Stall::BeforeHandshake | Stall::AfterHandshake => {}
                    Stall::MidBody => {
                        tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                            .await
                            .unwrap();
                        tls.flush().await.unwrap();
                    }
                    Stall::Trickle => {
                        tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
                            .await
                            .unwrap();
                        loop {
                            if tls.write_all(b"x").await.is_err() || tls.flush().await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                let _held = tls;
                std::future::pending::<()>().await;
            });
        }
    });
    port
}

/// Runs a download (`get` and its whole body) and an API call against the
/// server; both must fail with `want`, naming the URL and the deadline.
async fn both_fail(p: &Pki, port: u16, want_get: Deadline, want_call: Deadline) {
    let c = client(p);
    let u = url(port);
    let got = tokio::time::timeout(TEST_LIMIT, async {
        let mut resp = c.get(&u, 0).await?;
        while let Some(chunk) = futures::StreamExt::next(&mut resp.body).await {
            chunk?;
        }
        Ok::<_, Error>(())
    })
    .await
    .expect("get hung past the test's limit");
    let e = got.expect_err("a stalled server cannot deliver");
    check(&e, &u, want_get);
    let got = tokio::time::timeout(TEST_LIMIT, c.call(Method::GET, &u, None, 1 << 20))
        .await
        .expect("call hung past the test's limit");
    let e = got.expect_err("a stalled server cannot deliver");
    check(&e, &u, want_call);
}

fn check(e: &Error, u: &url::Url, want: Deadline) {
    assert_eq!(e.deadline(), Some(want), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(u.as_str()), "the error names the URL: {msg}");
    let words = match want {
        Deadline::Connect => "connect deadline",
        Deadline::Handshake => "handshake deadline",
        Deadline::IdleRead => "idle-read deadline",
        Deadline::Total => "total deadline",
    };
    assert!(msg.contains(words), "the error names the deadline: {msg}");
    assert!(e.is_transient(), "a deadline may heal: {msg}");
}

#[tokio::test]
async fn a_server_that_accepts_and_never_speaks_tls_hits_the_handshake_deadline() {
    let p = pki();
    let port = serve(&p, Stall::BeforeHandshake).await;
    both_fail(&p, port, Deadline::Handshake, Deadline::Handshake).await;
}

#[tokio::test]
async fn a_server_that_never_answers_after_the_handshake_hits_the_idle_read_deadline() {
    let p = pki();
    let port = serve(&p, Stall::AfterHandshake).await;
    both_fail(&p, port, Deadline::IdleRead, Deadline::IdleRead).await;
}

#[tokio::test]
async fn a_body_that_stalls_after_the_head_hits_the_idle_read_deadline() {
    let p = pki();
    let port = serve(&p, Stall::MidBody).await;
    both_fail(&p, port, Deadline::IdleRead, Deadline::IdleRead).await;
}

#[tokio::test]
async fn a_body_that_trickles_forever_hits_the_total_deadline() {
    let p = pki();
    let port = serve(&p, Stall::Trickle).await;
    both_fail(&p, port, Deadline::Total, Deadline::Total).await;
}

#[tokio::test]
async fn a_listener_whose_queue_is_full_hits_the_connect_deadline() {
    // A listening socket with a backlog of 0 that never accepts: once its
    // queue holds a connection, Linux drops further SYNs, so connect()
    // neither succeeds nor fails.
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = s.local_addr().unwrap();
    let _l = s.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(c)) = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(c);
        }
    }
    let p = pki();
    both_fail(&p, addr.port(), Deadline::Connect, Deadline::Connect).await;
}
