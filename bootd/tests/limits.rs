//! Hostile clients: many connections, slowloris, huge headers, idle
//! connections; graceful drain; plain HTTP limited to first-stage files;
//! memory flat in file size. Every test is bounded in time; none asserts
//! performance.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const LIMITS: &str = "limits:
  max_connections: 4096
  max_connections_per_address: 100
  tls_handshake_timeout_ms: 1000
  header_read_timeout_ms: 1000
  idle_timeout_ms: 1500
  drain_timeout_ms: 10000
";

fn limited_config() -> String {
    let base = BASE_CONFIG;
    let start = base.find("limits:").unwrap();
    let end = base.find("reload_interval_ms").unwrap();
    format!("{}{}{}", &base[..start], LIMITS, &base[end..])
}

async fn connect_from(ip: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(format!("{ip}:0").parse().unwrap())?;
    sock.connect(to).await
}

/// Reads until EOF or error; returns how long that took.
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    max: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(max.saturating_sub(start.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_connections_and_slowloris_do_not_starve_a_normal_client() {
    // The test process holds both ends: over a thousand descriptors.
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if soft < 4096 {
        if std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("needs ulimit -n >= 4096 (have {soft})");
        }
        println!("skipped: needs ulimit -n >= 4096 (have {soft})");
        return;
    }
    let f = Fixture::with_config(&limited_config());
    f.release("1.0.0", &[("os.img", b"os", "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    let test = async {
        // 1000 connections from one address that never say anything.
        let mut flood = Vec::new();
        for _ in 0..1000 {
            if let Ok(c) = connect_from("127.0.0.2", s.addr).await {
                flood.push(c);
            }
        }
        assert!(flood.len() >= 900, "only {} flood connections", flood.len());
        // 20 slowloris clients: TLS done, then one header byte every 300 ms.
        let mut slow = Vec::new();
        for _ in 0..20 {
            let tcp = connect_from("127.0.0.3", s.addr).await.unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(default_client(&ca))
                .connect(
                    rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                    tcp,
                )
                .await
                .unwrap();
            tls.write_all(b"GET /metadata/timestamp.json HTTP/1.1\r\n")
                .await
                .unwrap();
            slow.push(tokio::spawn(async move {
                let start = Instant::now();
                for _ in 0..50 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if tls.write_all(b"X").await.is_err() || tls.flush().await.is_err() {
                        return Some(start.elapsed());
                    }
                }
                until_closed(&mut tls, Duration::from_secs(1))
                    .await
                    .map(|d| d + start.elapsed())
            }));
        }
        // A normal client is served meanwhile, promptly.
        let t = Instant::now();
        let r = get(s.addr, &ca, "/metadata/timestamp.json").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "normal client waited {:?}",
            t.elapsed()
        );
        // Slowloris connections are cut by the header timeout (1 s), not after 15 s.
        for h in slow {
            let closed = h.await.unwrap();
            let d = closed.expect("a slowloris connection stayed open");
            assert!(d < Duration::from_secs(6), "slowloris lived {d:?}");
        }
        // Flood connections beyond the per-address cap were refused at once,
        // the rest were cut by the handshake timeout.
        let mut closed = 0;
        for mut c in flood {
            if until_closed(&mut c, Duration::from_secs(3)).await.is_some() {
                closed += 1;
            }
        }
        assert!(closed >= 900, "{closed} flood connections closed");
        let m = metrics(s.addr, &ca).await;
        // Each flood connection was either refused at once by the
        // per-address cap or admitted and cut by the handshake timeout (how
        // many of each depends on how fast the flood was opened).
        let refused = metric_value(
            &m,
            "bootd_connections_refused_total{result=\"max_connections_per_address\"}",
        )
        .unwrap_or(0.0);
        let timed_out =
            metric_value(&m, "bootd_tls_handshakes_total{result=\"timeout\"}").unwrap_or(0.0);
        assert!(refused >= 100.0, "the per-address cap never refused:\n{m}");
        assert!(timed_out >= 50.0, "no handshake timed out:\n{m}");
        assert!(
            refused + timed_out >= closed as f64,
            "refused {refused} + timed out {timed_out} < closed {closed}:\n{m}"
        );
        // And still serving.
        assert_eq!(get(s.addr, &ca, "/healthz").await.status, StatusCode::OK);
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test took over 60 s");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn huge_headers_and_idle_connections_are_cut() {
    let f = Fixture::with_config(&limited_config());
    let s = f.start().await;
    let ca = f.ca_der();
    let big = "a".repeat(64 * 1024);
    let reply = raw(
        s.addr,
        &ca,
        &format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n"),
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 431"),
        "{}",
        &reply[..reply.len().min(100)]
    );
    // Idle after the handshake: closed within the header/idle timeouts.
    let mut tls = tls_connect(s.addr, default_client(&ca)).await.unwrap();
    let d = until_closed(&mut tls, Duration::from_secs(5))
        .await
        .expect("idle connection not closed");
    assert!(d < Duration::from_secs(4), "{d:?}");
    // Keep-alive connection idle after one request: closed too.
    let mut tls = tls_connect(s.addr, default_client(&ca)).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let d = until_closed(&mut tls, Duration::from_secs(6))
        .await
        .expect("keep-alive connection not closed");
    assert!(d < Duration::from_secs(5), "{d:?}");
    // An HTTP/2 connection left idle after one request: closed too.
    let cfg = client_config(&ca, &[b"h2"], &[&rustls::version::TLS13], None);
    let tls = tls_connect(s.addr, cfg).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(format!("https://localhost:{}/healthz", s.addr.port()))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(
        send.send_request(req).await.unwrap().status(),
        StatusCode::OK
    );
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(6), conn)
        .await
        .expect("idle HTTP/2 connection not closed")
        .unwrap()
        .ok();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Malformed request line.
    let reply = raw(s.addr, &ca, "GARBAGE\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert_eq!(get(s.addr, &ca, "/healthz").await.status, StatusCode::OK);
    s.stop().await;
}

/// Streams a GET and returns (status, bytes received), reading slowly if asked.
async fn stream_get(
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    path: &str,
    pause: Duration,
) -> (StatusCode, u64) {
    let tls = tls_connect(addr, default_client(ca)).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status();
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.unwrap().data_ref() {
            n += d.len() as u64;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    (status, n)
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_drain_finishes_in_flight_downloads() {
    let f = Fixture::with_config(&limited_config());
    let image: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    f.release("1.0.0", &[("big.img", &image, "os")]);
    let mut s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    let name = f
        .target_file("big.img")
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let addr = s.addr;
    let ca2 = ca.clone();
    let download = tokio::spawn(async move {
        stream_get(
            addr,
            &ca2,
            &format!("/targets/{name}"),
            Duration::from_millis(20),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.shutdown_signal(); // as SIGTERM does in main
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections once draining.
    let refused = tokio::time::timeout(
        Duration::from_secs(3),
        tls_connect(addr, default_client(&ca)),
    )
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a new connection was accepted while draining"
    );
    let (status, n) = tokio::time::timeout(Duration::from_secs(30), download)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(n, image.len() as u64, "download cut short by shutdown");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streaming_keeps_memory_flat_in_file_size() {
    let f = Fixture::new();
    let size = 96usize << 20;
    let image: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    f.release("1.0.0", &[("huge.img", &image, "os")]);
    drop(image);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    let name = f
        .target_file("huge.img")
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let before = resident_bytes();
    let (status, n) = stream_get(s.addr, &ca, &format!("/targets/{name}"), Duration::ZERO).await;
    let after = resident_bytes();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(n, size as u64);
    let grew = after.saturating_sub(before);
    assert!(
        grew < (size as u64) / 3,
        "resident memory grew by {} MiB serving a {} MiB file",
        grew >> 20,
        size >> 20
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_http_serves_first_stage_artifacts_only() {
    let f = Fixture::new();
    f.release(
        "1.0.0",
        &[
            ("rpi4-stage1.img", b"stage1", "stage1"),
            ("os.img", b"os", "os"),
        ],
    );
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let paddr = plain.local_addr().unwrap();
    let s = start_with_plain(f.config(), Some(plain)).await;
    wait_for_timestamp(s.addr, &f.ca_der(), 2).await;
    let os = f
        .target_file("os.img")
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for (path, want) in [
        ("/net_install/boot.img".to_owned(), "200"),
        ("/metadata/timestamp.json".to_owned(), "404"),
        ("/metadata/1.root.json".to_owned(), "404"),
        (format!("/targets/{os}"), "404"),
        ("/metrics".to_owned(), "404"),
        ("/v1/enroll/x".to_owned(), "404"),
    ] {
        let mut c = TcpStream::connect(paddr).await.unwrap();
        c.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(
            out.starts_with(&format!("HTTP/1.1 {want}")),
            "{path}: {out}"
        );
        if want == "200" {
            assert!(out.ends_with("stage1"), "{out}");
        }
    }
    s.stop().await;
}
