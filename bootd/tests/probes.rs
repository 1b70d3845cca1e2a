//! External clients and checkers against a running bootd: curl, openssl
//! s_client (refused versions and suites), promtool, and the Python
//! reference TUF client. Each skips with "skipped: needs <tool>" when the
//! tool is missing, and fails instead under RACKLET_REQUIRE_ALL=1.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

const IMG: &[u8] = b"an image for external clients";

fn s_client(port: u16, ca: &std::path::Path, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
            "-CAfile",
        ])
        .arg(ca)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openssl_probes_old_versions_and_non_aead_suites_are_refused() {
    if missing("openssl") {
        return;
    }
    let f = Fixture::new();
    let s = f.start().await;
    let port = s.addr.port();
    let ca = f.pki.ca_cert.clone();
    let out = tokio::task::spawn_blocking(move || {
        [
            // Controls: the probe itself works when the server agrees.
            s_client(port, &ca, &["-tls1_3"]),
            s_client(
                port,
                &ca,
                &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
            ),
            s_client(
                port,
                &ca,
                &["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
            ),
            // Attacks: SECLEVEL=0 so that OpenSSL really offers them.
            s_client(port, &ca, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
            s_client(port, &ca, &["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
            s_client(
                port,
                &ca,
                &[
                    "-tls1_2",
                    "-cipher",
                    "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0",
                ],
            ),
            s_client(
                port,
                &ca,
                &["-tls1_2", "-cipher", "ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0"],
            ),
        ]
    })
    .await
    .unwrap();
    assert!(
        out[0].contains("Verify return code: 0 (ok)") && out[0].contains("TLSv1.3"),
        "{}",
        out[0]
    );
    assert!(
        out[1].contains("ECDHE-ECDSA-AES128-GCM-SHA256")
            && out[1].contains("Verify return code: 0"),
        "{}",
        out[1]
    );
    assert!(
        out[2].contains("ECDHE-ECDSA-CHACHA20-POLY1305"),
        "{}",
        out[2]
    );
    // Refused *by the server*: the client received an alert record (rustls
    // answers an unacceptable ClientHello with handshake_failure) and no
    // session was established.
    for (i, what) in [
        (3, "TLS 1.1"),
        (4, "TLS 1.0"),
        (5, "CBC suites"),
        (6, "NULL cipher"),
    ] {
        let o = &out[i];
        let alert = o.contains("alert handshake failure") || o.contains("alert protocol version");
        assert!(
            alert && o.contains("SSL alert number"),
            "{what} not refused by the server:\n{o}"
        );
        assert!(o.contains("Cipher is (NONE)"), "{what} got a session:\n{o}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn curl_fetches_over_http11_and_http2_with_the_rack_ca() {
    if missing("curl") {
        return;
    }
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let s = f.start().await;
    wait_for_timestamp(s.addr, &f.ca_der(), 2).await;
    let name = f
        .target_file("os.img")
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let port = s.addr.port();
    let ca = f.pki.ca_cert.clone();
    let curl = move |extra: &[&str], path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(extra)
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .unwrap();
        (
            out.status.success(),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let c = curl.clone();
    let n = name.clone();
    let (ok, body, err) =
        tokio::task::spawn_blocking(move || c(&["--http1.1"], &format!("/targets/{n}")))
            .await
            .unwrap();
    assert!(ok, "{err}");
    assert_eq!(body, IMG);
    let c = curl.clone();
    let (ok, body, err) = tokio::task::spawn_blocking(move || {
        c(
            &[
                "--http2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ],
            "/metadata/timestamp.json",
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(String::from_utf8_lossy(&body), "2 200");
    let c = curl.clone();
    let n = name.clone();
    let (ok, body, _) =
        tokio::task::spawn_blocking(move || c(&["-r", "3-7"], &format!("/targets/{n}")))
            .await
            .unwrap();
    assert!(ok);
    assert_eq!(body, &IMG[3..8]);
    // Without the rack CA, curl must refuse the server.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--resolve",
                &format!("localhost:{port}:127.0.0.1"),
                &format!("https://localhost:{port}/healthz"),
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_pass_promtool_and_carry_the_required_families() {
    if missing("promtool") {
        return;
    }
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    let _ = get(s.addr, &ca, "/metadata/timestamp.json").await;
    let _ = get(s.addr, &ca, "/metadata/9.root.json").await;
    // Prometheus asks for OpenMetrics and gets it …
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let r = get_with(
        s.addr,
        default_client(&ca),
        "/metrics",
        &[("accept", accept)],
    )
    .await;
    assert_eq!(r.headers["content-type"], bootd::metrics::CONTENT_TYPE);
    let om = String::from_utf8(r.body).unwrap();
    for needle in [
        "bootd_http_requests_total{route=\"metadata\",status=\"200\"}",
        "bootd_http_requests_total{route=\"metadata\",status=\"404\"}",
        "bootd_http_response_bytes_total{route=\"metadata\",status=\"200\"}",
        "bootd_tls_handshakes_total{result=\"ok\"}",
        "bootd_open_connections ",
        "bootd_repository_version{role=\"timestamp\"} 2",
        "bootd_repository_role_expires_seconds{role=\"root\"}",
        "bootd_repository_publishes_total{result=\"ok\"} 1",
    ] {
        assert!(om.contains(needle), "missing {needle}:\n{om}");
    }
    assert!(om.ends_with("# EOF\n"));
    let ts_left = metric_value(
        &om,
        "bootd_repository_role_expires_seconds{role=\"timestamp\"}",
    )
    .unwrap();
    assert!(ts_left > 80_000.0 && ts_left <= 86_400.0, "{ts_left}");
    // … which a strict OpenMetrics parser accepts (Python prometheus_client).
    let om2 = om.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("python3")
            .args(["-c", "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\nprint(len(list(p(sys.stdin.read()))))"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(om2.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let perr = String::from_utf8_lossy(&parsed.stderr);
    if perr.contains("No module named") {
        if std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("python prometheus_client is required (pip install prometheus-client)");
        }
        println!("skipped: needs python prometheus_client for the OpenMetrics parse");
    } else {
        assert!(parsed.status.success(), "OpenMetrics parser: {perr}");
    }
    // … and anyone else gets the text format, which promtool lints.
    let r = get(s.addr, &ca, "/metrics").await;
    assert_eq!(r.headers["content-type"], bootd::metrics::TEXT_CONTENT_TYPE);
    let text = String::from_utf8(r.body).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_reference_tuf_client_refreshes_and_downloads_through_bootd() {
    if missing("python3") {
        return;
    }
    let has_tuf = Command::new("python3")
        .args(["-c", "import tuf.ngclient, cryptography"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_tuf {
        if std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!(
                "python tuf + cryptography are required (pip install tuf securesystemslib[crypto])"
            );
        }
        println!("skipped: needs python tuf (pip install tuf securesystemslib[crypto])");
        return;
    }
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", IMG, "os")]);
    f.release("1.1.0", &[("os-1.1.img", b"second image", "os")]);
    let s = f.start().await;
    wait_for_timestamp(s.addr, &f.ca_der(), 3).await;
    let work = f.dir.path().join("pyclient");
    std::fs::create_dir_all(work.join("metadata")).unwrap();
    std::fs::create_dir_all(work.join("targets")).unwrap();
    std::fs::copy(
        f.dir.path().join("trusted-root.json"),
        work.join("metadata/root.json"),
    )
    .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/python-tuf-client/fetch.py"
    );
    let base = format!("https://localhost:{}", s.addr.port());
    let ca = f.pki.ca_cert.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(&base)
            .arg(&ca)
            .arg(&work)
            .args(["os.img", "os-1.1.img"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python-tuf: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("timestamp version 3"), "{stdout}");
    let got = std::fs::read(f.dir.path().join("pyclient/targets/os.img")).unwrap();
    assert_eq!(got, IMG);
    let got = std::fs::read(f.dir.path().join("pyclient/targets/os-1.1.img")).unwrap();
    assert_eq!(got, b"second image");
    s.stop().await;
}
