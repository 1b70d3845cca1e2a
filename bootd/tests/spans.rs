//! Every log line bootd writes while handling a request says whose it is:
//! the request's span carries the client address, method and path, and
//! the node once one is named. (Its own test binary: it installs the
//! process's global subscriber.)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_lines_carry_client_method_path_and_node() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("bootd=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", b"spans", "os")]);
    let s = f.start().await;
    let ca = f.ca_der();
    wait_for_timestamp(s.addr, &ca, 2).await;
    get(s.addr, &ca, "/healthz").await;
    // An enrollment request names its node before anyone approved it.
    let base = url::Url::parse(&format!("https://{}/", s.addr)).unwrap();
    bootd_client::Enrollment::begin(
        &base,
        &f.ca_pem(),
        "unit-1",
        &bootd_client::NetConfig::default(),
    )
    .await
    .unwrap();
    s.stop().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let client = "request{client=127.0.0.1:";
    assert!(
        text.lines().any(|l| l.contains(client)
            && l.contains("method=GET path=/healthz")
            && l.contains("route=\"healthz\"")),
        "no request line for /healthz in:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.contains(client)
            && l.contains("method=POST path=/v1/enroll")
            && l.contains("node=unit-1")
            && l.contains("waiting for approval")),
        "no enrollment line naming its node in:\n{text}"
    );
}
