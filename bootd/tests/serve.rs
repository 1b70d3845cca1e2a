//! bootd serving a verified repository: TLS, HTTP, files, publishes.

mod common;

use std::time::Duration;

use common::*;
use hyper::StatusCode;

const IMG: &[u8] = b"racklet os image v1 \x00\x01\x02 payload payload payload";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_the_verified_repository_over_tls13_and_tls12() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;

    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let cfg = client_config(&ca, &[b"http/1.1"], versions, None);
        let tls = tls_connect(s.addr, cfg.clone()).await.unwrap();
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(versions[0].version)
        );
        drop(tls);
        for file in [
            "timestamp.json",
            "1.root.json",
            "2.snapshot.json",
            "2.targets.json",
        ] {
            let r = get_with(s.addr, cfg.clone(), &format!("/metadata/{file}"), &[]).await;
            assert_eq!(r.status, StatusCode::OK, "{file}");
            assert_eq!(
                r.body,
                std::fs::read(f.repo.join("metadata").join(file)).unwrap(),
                "{file}"
            );
        }
    }
    let target = f.target_file("os.img");
    let name = target.file_name().unwrap().to_str().unwrap().to_owned();
    let r = get(s.addr, &ca, &format!("/targets/{name}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, IMG);
    // TUF 5.3.3: the client probes N+1.root.json; it must be a clean 404.
    let r = get(s.addr, &ca, "/metadata/2.root.json").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_and_conditional_get() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    let name = f
        .target_file("os.img")
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let path = format!("/targets/{name}");
    let cfg = default_client(&ca);

    let r = get_with(s.addr, cfg.clone(), &path, &[("range", "bytes=5-9")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, &IMG[5..10]);
    assert_eq!(
        r.headers["content-range"],
        format!("bytes 5-9/{}", IMG.len())
    );
    let r = get_with(s.addr, cfg.clone(), &path, &[("range", "bytes=-4")]).await;
    assert_eq!(r.body, &IMG[IMG.len() - 4..]);
    let r = get_with(s.addr, cfg.clone(), &path, &[("range", "bytes=9999-")]).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);

    let full = get(s.addr, &ca, &path).await;
    let etag = full.headers["etag"].to_str().unwrap().to_owned();
    let lm = full.headers["last-modified"].to_str().unwrap().to_owned();
    let r = get_with(s.addr, cfg.clone(), &path, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    let r = get_with(
        s.addr,
        cfg.clone(),
        &path,
        &[("if-none-match", "\"other\"")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get_with(s.addr, cfg.clone(), &path, &[("if-modified-since", &lm)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = get_with(
        s.addr,
        cfg.clone(),
        &path,
        &[("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // If-Range with a stale validator: the whole file, not a stale part.
    let r = get_with(
        s.addr,
        cfg.clone(),
        &path,
        &[("range", "bytes=0-1"), ("if-range", "\"stale\"")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, IMG);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn path_traversal_and_symlinks_are_refused() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    // A symlink planted in the source repository, pointing out of it.
    std::os::unix::fs::symlink("/etc/passwd", f.repo.join("targets").join("evil")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", f.repo.join("metadata").join("evil.json")).unwrap();
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    // And one planted straight into the served snapshot (defence in depth:
    // files are opened with O_NOFOLLOW).
    let serve = f.state.join("serve");
    let snap = std::fs::read_dir(&serve)
        .unwrap()
        .flatten()
        .find(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .unwrap()
        .path();
    std::os::unix::fs::symlink("/etc/passwd", snap.join("targets").join("planted")).unwrap();

    for path in [
        "/metadata/../../../../etc/passwd",
        "/targets/..%2f..%2f..%2fetc%2fpasswd",
        "/targets/%2e%2e/%2e%2e/etc/passwd",
        "/targets/%2e%2e",
        "/targets/..",
        "/targets/.",
        "/metadata/..%2fmetadata%2ftimestamp.json",
        "/targets/evil",
        "/metadata/evil.json",
        "/targets/planted",
        "/targets//etc/passwd",
        "/targets/a/../../etc/passwd",
        "/metadata/.hidden",
    ] {
        let reply = raw(
            s.addr,
            &ca,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(
            reply.starts_with("HTTP/1.1 404") || reply.starts_with("HTTP/1.1 400"),
            "{path}: {reply}"
        );
        assert!(!reply.contains("root:"), "{path} leaked /etc/passwd");
    }
    // Still serving everyone else.
    assert_eq!(
        get(s.addr, &ca, "/metadata/timestamp.json").await.status,
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chacha20_is_honoured_when_the_client_prefers_it() {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    for (versions, suites, want) in [
        (
            &[&rustls::version::TLS13][..],
            vec![
                cs::TLS13_CHACHA20_POLY1305_SHA256,
                cs::TLS13_AES_256_GCM_SHA384,
            ],
            "CHACHA20",
        ),
        (
            &[&rustls::version::TLS13][..],
            vec![
                cs::TLS13_AES_128_GCM_SHA256,
                cs::TLS13_CHACHA20_POLY1305_SHA256,
            ],
            "AES_128_GCM",
        ),
        (
            &[&rustls::version::TLS12][..],
            vec![
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ],
            "CHACHA20",
        ),
    ] {
        let cfg = client_config(&ca, &[b"http/1.1"], versions, Some(suites));
        let tls = tls_connect(s.addr, cfg).await.unwrap();
        let got = format!(
            "{:?}",
            tls.get_ref().1.negotiated_cipher_suite().unwrap().suite()
        );
        assert!(got.contains(want), "wanted {want}, got {got}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_is_negotiated_by_alpn() {
    use http_body_util::BodyExt;
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    let cfg = client_config(&ca, &[b"h2", b"http/1.1"], &[&rustls::version::TLS13], None);
    let tls = tls_connect(s.addr, cfg).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(format!(
        "https://localhost:{}/metadata/timestamp.json",
        s.addr.port()
    ))
    .body(http_body_util::Empty::<bytes::Bytes>::new())
    .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body.as_ref(),
        std::fs::read(f.repo.join("metadata/timestamp.json")).unwrap()
    );
    s.stop().await;
}

/// Large bodies over HTTP/2 go out in batches (`io::Batched`): several
/// interleaved streams and a small request on the same connection must
/// all arrive whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_http2_downloads_arrive_whole_alongside_small_ones() {
    use http_body_util::BodyExt;
    let big: Vec<u8> = (0..3_000_017u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let f = Fixture::new();
    f.release("1.0.0", &[("big.img", &big, "os"), ("os.img", IMG, "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    let cfg = client_config(&ca, &[b"h2"], &[&rustls::version::TLS13], None);
    let tls = tls_connect(s.addr, cfg).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let file = |n: &str| {
        f.target_file(n)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let mut fetches = Vec::new();
    for name in [
        file("big.img"),
        file("big.img"),
        file("os.img"),
        file("big.img"),
    ] {
        let mut send = send.clone();
        let uri = format!("https://localhost:{}/targets/{name}", s.addr.port());
        fetches.push(tokio::spawn(async move {
            let req = hyper::Request::get(uri)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.into_body().collect().await.unwrap().to_bytes()
        }));
    }
    let mut got = Vec::new();
    for fetch in fetches {
        got.push(
            tokio::time::timeout(Duration::from_secs(30), fetch)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(got[0].as_ref(), &big[..]);
    assert_eq!(got[1].as_ref(), &big[..]);
    assert_eq!(got[2].as_ref(), IMG);
    assert_eq!(got[3].as_ref(), &big[..]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_publish_is_refused_and_the_last_good_one_kept() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    let good_ts = get(s.addr, &ca, "/metadata/timestamp.json").await.body;

    // Release 2, then tamper with its new image on disk (same length).
    f.release(
        "2.0.0",
        &[(
            "os2.img",
            b"racklet os image v2 \x00\x01\x02 payload payload payload",
            "os",
        )],
    );
    let t = f.target_file("os2.img");
    let original = std::fs::read(&t).unwrap();
    let mut bytes = original.clone();
    bytes[0] ^= 0xff;
    std::fs::write(&t, &bytes).unwrap();

    let start = std::time::Instant::now();
    loop {
        let m = metrics(s.addr, &ca).await;
        if metric_value(&m, "bootd_repository_publishes_total{result=\"refused\"}").unwrap_or(0.0)
            >= 1.0
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "refusal never counted:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still the last good repository, byte for byte.
    assert_eq!(
        get(s.addr, &ca, "/metadata/timestamp.json").await.body,
        good_ts
    );
    let old = target_file_named("os.img", IMG);
    let r = get(s.addr, &ca, &format!("/targets/{old}")).await;
    assert_eq!(r.body, IMG);
    let tampered = t.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        get(s.addr, &ca, &format!("/targets/{tampered}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // A valid release after that is taken into service.
    std::fs::write(&t, &original).unwrap();
    f.release("3.0.0", &[("os3.img", b"v3", "os")]);
    wait_for_timestamp(s.addr, &ca, 4).await;
    assert_eq!(
        get(s.addr, &ca, "/metadata/timestamp.json").await.body,
        std::fs::read(f.repo.join("metadata/timestamp.json")).unwrap()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_written_publish_is_never_served() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    // Build release 2 in a copy, then expose only its timestamp.json.
    let copy = f.dir.path().join("repo2");
    copy_dir(&f.repo, &copy);
    f.release_into(&copy, "2.0.0", &[("os2.img", b"second", "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    std::fs::copy(
        copy.join("metadata/timestamp.json"),
        f.repo.join("metadata/timestamp.json"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let served = get(s.addr, &ca, "/healthz").await;
    assert!(
        String::from_utf8_lossy(&served.body).contains("timestamp=2"),
        "{:?}",
        String::from_utf8_lossy(&served.body)
    );
    assert_eq!(
        get(s.addr, &ca, "/metadata/3.snapshot.json").await.status,
        StatusCode::NOT_FOUND
    );
    // The rest arrives: now it verifies and is served.
    copy_dir(&copy, &f.repo);
    wait_for_timestamp(s.addr, &ca, 3).await;
    assert_eq!(
        get(s.addr, &ca, "/metadata/3.snapshot.json").await.status,
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_stage_files_are_served_only_from_stage1_targets() {
    let f = Fixture::new();
    f.release(
        "1.0.0",
        &[
            ("rpi4-stage1.img", b"stage1 bytes", "stage1"),
            ("os.img", IMG, "os"),
        ],
    );
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    let r = get(s.addr, &ca, "/net_install/boot.img").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, b"stage1 bytes");
    assert_eq!(
        get(s.addr, &ca, "/net_install/os.img").await.status,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_hot_reload_applies_valid_and_refuses_broken() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    // Valid change: the first-stage path moves.
    let text = std::fs::read_to_string(&f.config_path).unwrap();
    std::fs::write(
        &f.config_path,
        text.replace("path: net_install", "path: pi"),
    )
    .unwrap();
    f.release("1.0.1", &[("rpi4-stage1.img", b"s1", "stage1")]);
    let start = std::time::Instant::now();
    while get(s.addr, &ca, "/pi/boot.img").await.status != StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "reload never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Broken change: refused, counted, and serving goes on.
    std::fs::write(&f.config_path, "rack_file: [oops\n").unwrap();
    let start = std::time::Instant::now();
    loop {
        let m = metrics(s.addr, &ca).await;
        if metric_value(&m, "bootd_config_reloads_total{result=\"error\"}").unwrap_or(0.0) >= 1.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "broken config never noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get(s.addr, &ca, "/pi/boot.img").await.status,
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn online_timestamp_is_resigned_before_it_expires() {
    // Margin (23 h) > time left on a fresh 1-day timestamp minus nothing: refresh at once.
    let f = Fixture::with_config(&BASE_CONFIG.replace(
        "  poll_interval_ms: 100",
        "  poll_interval_ms: 100\n  timestamp: { key: timestamp.key, lifetime_s: 172800, refresh_margin_s: 90000 }",
    ));
    f.keys
        .timestamp
        .write_new(&f.dir.path().join("timestamp.key"))
        .unwrap();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    // Version 2 from the release, then bootd's own re-sign: version 3,
    // verified and served like any publish, expiring in ~2 days.
    wait_for_timestamp(s.addr, &ca, 3).await;
    let m = metrics(s.addr, &ca).await;
    assert!(
        metric_value(&m, "bootd_timestamp_resigns_total{result=\"ok\"}").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    let left = metric_value(
        &m,
        "bootd_repository_role_expires_seconds{role=\"timestamp\"}",
    )
    .unwrap();
    assert!(left > 90_000.0, "timestamp expires in {left}s");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_time_needs_a_good_nonce_and_the_online_timestamp_key() {
    let nonce = "ab".repeat(32);
    // Without the online timestamp key bootd cannot sign time, and says so.
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    let r = get(s.addr, &ca, &format!("/v1/time?nonce={nonce}")).await;
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("repository.timestamp"));
    s.stop().await;

    let f = Fixture::with_config(&BASE_CONFIG.replace(
        "  poll_interval_ms: 100",
        "  poll_interval_ms: 100\n  timestamp: { key: timestamp.key }",
    ));
    f.keys
        .timestamp
        .write_new(&f.dir.path().join("timestamp.key"))
        .unwrap();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    for bad in [
        "",
        "?nonce=",
        "?nonce=abc",
        "?n=1",
        &format!("?nonce={}", "zz".repeat(32)),
    ] {
        let r = get(s.addr, &ca, &format!("/v1/time{bad}")).await;
        assert_eq!(r.status, 400, "{bad:?}");
    }
    let r = get(s.addr, &ca, &format!("/v1/time?nonce={nonce}")).await;
    assert_eq!(r.status, 200);
    let t: bootd_api::time::SignedTime = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(t.signed.kind, "racklet-time");
    assert_eq!(t.signed.nonce, nonce);
    assert_eq!(t.signatures.len(), 1);
    assert_eq!(t.signatures[0].keyid, f.keys.timestamp.key_id());
    let at: chrono::DateTime<chrono::Utc> = t.signed.time.parse().unwrap();
    assert!((chrono::Utc::now() - at).num_seconds().abs() < 60);
    let m = metrics(s.addr, &ca).await;
    assert_eq!(
        metric_value(&m, "bootd_time_statements_total{result=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&m, "bootd_time_statements_total{result=\"bad_nonce\"}"),
        Some(5.0)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_mode_verifies_and_serves_an_upstream() {
    let up = Fixture::new();
    up.release("1.0.0", &[("os.img", IMG, "os")]);
    let upstream = up.start().await;
    let ca = up.ca_der();
    wait_for_timestamp(upstream.addr, &ca, 2).await;

    let text = BASE_CONFIG.replace(
        "  local: repo",
        &format!(
            "  mirror: {{ url: \"https://localhost:{}/\", ca_cert: upstream-ca.pem }}",
            upstream.addr.port()
        ),
    );
    let m = Fixture::with_config(&text);
    std::fs::copy(&up.pki.ca_cert, m.dir.path().join("upstream-ca.pem")).unwrap();
    // The mirror pins the upstream's root.
    std::fs::copy(
        up.repo.join("metadata/1.root.json"),
        m.dir.path().join("trusted-root.json"),
    )
    .unwrap();
    let mirror = m.start().await;
    let mca = m.ca_der();
    wait_for_timestamp(mirror.addr, &mca, 2).await;
    let name = up
        .target_file("os.img")
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        get(mirror.addr, &mca, &format!("/targets/{name}"))
            .await
            .body,
        IMG
    );
    assert_eq!(
        get(mirror.addr, &mca, "/metadata/timestamp.json")
            .await
            .body,
        std::fs::read(up.repo.join("metadata/timestamp.json")).unwrap()
    );
    mirror.stop().await;
    upstream.stop().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

fn target_file_named(name: &str, content: &[u8]) -> String {
    use sha2::Digest;
    format!("{}.{name}", hex::encode(sha2::Sha256::digest(content)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_without_the_source_serves_the_last_verified_repository() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    s.stop().await;
    // The source disappears (origin offline, disk being rebuilt) …
    std::fs::rename(&f.repo, f.dir.path().join("repo-away")).unwrap();
    std::fs::create_dir_all(f.repo.join("metadata")).unwrap();
    // … and a planted file in the old snapshot must not survive recovery.
    let serve = f.state.join("serve");
    let snap = std::fs::read_dir(&serve)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    std::fs::write(snap.join("targets").join("planted.img"), b"not verified").unwrap();
    let s = f.start().await;
    wait_for_timestamp(s.addr, &ca, 2).await;
    let name = target_file_named("os.img", IMG);
    assert_eq!(
        get(s.addr, &ca, &format!("/targets/{name}")).await.body,
        IMG
    );
    assert_eq!(
        get(s.addr, &ca, "/targets/planted.img").await.status,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolled_back_timestamp_is_refused() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let old_ts = std::fs::read(f.repo.join("metadata/timestamp.json")).unwrap();
    f.release("2.0.0", &[("os2.img", b"two", "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 3).await;
    // Someone with write access to the repository puts an older, validly
    // signed timestamp back (a rollback/freeze attack).
    std::fs::write(f.repo.join("metadata/timestamp.json"), &old_ts).unwrap();
    let start = std::time::Instant::now();
    loop {
        let m = metrics(s.addr, &ca).await;
        if metric_value(&m, "bootd_repository_publishes_total{result=\"refused\"}").unwrap_or(0.0)
            >= 1.0
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "rollback never refused:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served = String::from_utf8(get(s.addr, &ca, "/healthz").await.body).unwrap();
    assert!(served.contains("timestamp=3"), "{served}");
    // And across a restart too: the trust datastore remembers version 3.
    s.stop().await;
    let s = f.start().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let served = String::from_utf8(get(s.addr, &ca, "/healthz").await.body).unwrap();
    assert!(served.contains("timestamp=3"), "after restart: {served}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mirror_refuses_an_upstream_signed_by_other_keys() {
    let up = Fixture::new();
    up.release("1.0.0", &[("os.img", IMG, "os")]);
    let upstream = up.start().await;
    wait_for_timestamp(upstream.addr, &up.ca_der(), 2).await;
    let text = BASE_CONFIG.replace(
        "  local: repo",
        &format!(
            "  mirror: {{ url: \"https://localhost:{}/\", ca_cert: upstream-ca.pem }}",
            upstream.addr.port()
        ),
    );
    // The mirror keeps its own fixture's root: different keys.
    let m = Fixture::with_config(&text);
    std::fs::copy(&up.pki.ca_cert, m.dir.path().join("upstream-ca.pem")).unwrap();
    let mirror = m.start().await;
    let mca = m.ca_der();
    let start = std::time::Instant::now();
    loop {
        let mt = metrics(mirror.addr, &mca).await;
        if metric_value(&mt, "bootd_repository_publishes_total{result=\"refused\"}").unwrap_or(0.0)
            >= 1.0
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "foreign upstream never refused:\n{mt}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get(mirror.addr, &mca, "/healthz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(mirror.addr, &mca, "/metadata/timestamp.json")
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    mirror.stop().await;
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starts_before_the_first_publish_and_picks_it_up() {
    let f = Fixture::new();
    let away = f.dir.path().join("repo-later");
    std::fs::rename(&f.repo, &away).unwrap();
    let s = f.start().await;
    let ca = f.ca_der();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        get(s.addr, &ca, "/healthz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(s.addr, &ca, "/metadata/1.root.json").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    std::fs::rename(&away, &f.repo).unwrap();
    wait_for_timestamp(s.addr, &ca, 1).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_renewed_server_certificate_is_served_without_a_restart() {
    let f = Fixture::new();
    let s = f.start().await;
    let ca = f.ca_der();
    let served = |tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    };
    let before = served(&tls_connect(s.addr, default_client(&ca)).await.unwrap());
    let cfg = f.config();
    bootd::pki::renew_server(&cfg.pki, &cfg.server_names, 10, chrono::Utc::now()).unwrap();
    let renewed = std::fs::read(&cfg.pki.server_cert).unwrap();
    let start = std::time::Instant::now();
    loop {
        let now = served(&tls_connect(s.addr, default_client(&ca)).await.unwrap());
        if now != before {
            assert!(String::from_utf8_lossy(&renewed).contains("BEGIN CERTIFICATE"));
            assert_eq!(
                now,
                bootd::pki::load_certs(&cfg.pki.server_cert).unwrap()[0].to_vec()
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still the old certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}
