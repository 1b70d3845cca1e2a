//! Shared test fixtures: a signed repository made with imgsign, a rack PKI,
//! a bootd.yaml, and a running bootd on 127.0.0.1:0.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use imgsign::init::{RoleSpec, RootSpec};
use imgsign::keys::SigningKeyPair;
use imgsign::repo::Expiries;
use imgsign::sign::{ImageSpec, Placement};
use racklet_release::{ImageName, ReleaseInfo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Keys {
    pub root: SigningKeyPair,
    pub targets: SigningKeyPair,
    pub snapshot: SigningKeyPair,
    pub timestamp: SigningKeyPair,
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub config_path: PathBuf,
    pub state: PathBuf,
    pub pki: bootd::pki::PkiFiles,
    pub keys: Keys,
}

/// Skips (returns true) when `tool` is missing, unless RACKLET_REQUIRE_ALL=1.
pub fn missing(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        return false;
    }
    if std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{tool} is required (RACKLET_REQUIRE_ALL=1)");
    }
    println!("skipped: needs {tool}");
    true
}

pub const BASE_CONFIG: &str = r#"
rack_file: rack.yaml
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
  require_client_cert: false
first_stage:
  path: net_install
  files:
    boot.img: rpi4-stage1.img
    boot.sig: rpi4-stage1.sig
limits:
  tls_handshake_timeout_ms: 2000
  header_read_timeout_ms: 2000
  idle_timeout_ms: 5000
  drain_timeout_ms: 5000
reload_interval_ms: 100
"#;

impl Fixture {
    pub fn new() -> Fixture {
        Self::with_config(BASE_CONFIG)
    }

    pub fn with_config(config: &str) -> Fixture {
        Self::with_timestamp_key(config, SigningKeyPair::generate())
    }

    /// A fixture whose timestamp role is `timestamp` (e.g. a key in a
    /// PKCS#11 token).
    pub fn with_timestamp_key(config: &str, timestamp: SigningKeyPair) -> Fixture {
        Self::with_timestamp_key_in(tempfile::tempdir().unwrap(), config, timestamp)
    }

    /// The same, in `dir`.
    pub fn with_timestamp_key_in(
        dir: tempfile::TempDir,
        config: &str,
        timestamp: SigningKeyPair,
    ) -> Fixture {
        let repo = dir.path().join("repo");
        let keys = Keys {
            root: SigningKeyPair::generate(),
            targets: SigningKeyPair::generate(),
            snapshot: SigningKeyPair::generate(),
            timestamp,
        };
        let role = |k: &SigningKeyPair| RoleSpec {
            keys: vec![k.public()],
            threshold: NonZeroU64::MIN,
        };
        let spec = RootSpec {
            root: role(&keys.root),
            targets: role(&keys.targets),
            snapshot: role(&keys.snapshot),
            timestamp: role(&keys.timestamp),
        };
        imgsign::init::init(
            &repo,
            &spec,
            &[&keys.root, &keys.targets, &keys.snapshot, &keys.timestamp],
            jiff::Timestamp::now(),
            &Expiries::default(),
        )
        .unwrap();
        std::fs::copy(
            repo.join("metadata/1.root.json"),
            dir.path().join("trusted-root.json"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("rack.yaml"),
            include_str!("../../../hardware/rack.yaml"),
        )
        .unwrap();
        let config_path = dir.path().join("bootd.yaml");
        std::fs::write(&config_path, config).unwrap();
        let cfg = bootd::Config::load(&config_path).unwrap();
        bootd::pki::init(
            &cfg.pki,
            "racklet-ref",
            &cfg.server_names,
            30,
            chrono::Utc::now(),
            false,
        )
        .unwrap();
        Fixture {
            state: dir.path().join("state"),
            pki: cfg.pki.clone(),
            repo,
            config_path,
            keys,
            dir,
        }
    }

    pub fn config(&self) -> bootd::Config {
        bootd::Config::load(&self.config_path).unwrap()
    }

    pub fn info(kind: &str, version: &str) -> ReleaseInfo {
        serde_json::from_value(serde_json::json!({
            "kind": kind, "version": version, "security_version": 1,
            "arch": "x86_64", "channel": "stable",
            "assign": {"groups": ["workers"]},
        }))
        .unwrap()
    }

    /// Signs a release of `images` (name, bytes, kind) into the repository.
    pub fn release(&self, version: &str, images: &[(&str, &[u8], &str)]) {
        self.release_into(&self.repo, version, images);
    }

    pub fn release_into(&self, repo: &Path, version: &str, images: &[(&str, &[u8], &str)]) {
        let src = self.dir.path().join("images");
        std::fs::create_dir_all(&src).unwrap();
        let specs: Vec<ImageSpec> = images
            .iter()
            .map(|(name, bytes, kind)| {
                let p = src.join(format!("{name}-{version}"));
                std::fs::write(&p, bytes).unwrap();
                ImageSpec {
                    path: p,
                    name: ImageName::new(name).unwrap(),
                    info: Self::info(kind, version),
                }
            })
            .collect();
        let k = &self.keys;
        imgsign::sign::sign_release(
            repo,
            &specs,
            Placement::Copy,
            &[&k.targets, &k.snapshot, &k.timestamp],
            jiff::Timestamp::now(),
            &Expiries::default(),
            &mut |_| {},
        )
        .unwrap();
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.pki.ca_cert).unwrap()
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        bootd::pki::load_certs(&self.pki.ca_cert).unwrap().remove(0)
    }

    pub async fn start(&self) -> Running {
        start_with(self.config()).await
    }

    /// Path of a target file in the source repository.
    pub fn target_file(&self, name: &str) -> PathBuf {
        let dir = self.repo.join("targets");
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(&format!(".{name}")) {
                return e.path();
            }
        }
        panic!("no target {name}")
    }
}

pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<bootd::Result<()>>>,
}

pub async fn start_with(config: bootd::Config) -> Running {
    start_with_plain(config, None).await
}

/// Starts bootd; with `plain`, also a plain-HTTP listener on that listener.
pub async fn start_with_plain(
    config: bootd::Config,
    plain: Option<tokio::net::TcpListener>,
) -> Running {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(bootd::run(
        config,
        bootd::Listeners {
            https: vec![l],
            plain_http: plain.into_iter().collect(),
            dhcp: Vec::new(),
        },
        async move {
            let _ = rx.await;
        },
    ));
    Running {
        addr,
        stop: Some(tx),
        task: Some(task),
    }
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("bootd did not stop")
                .unwrap()
                .unwrap();
        }
    }

    pub fn shutdown_signal(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn client_config(
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(s) = suites {
        provider.cipher_suites = s;
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

pub fn default_client(ca: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    client_config(
        ca,
        &[b"http/1.1"],
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        None,
    )
}

pub async fn tls_connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// One HTTP/1.1 GET over a fresh TLS connection.
pub async fn get_with(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let tls = tls_connect(addr, cfg).await.expect("TLS connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(addr: SocketAddr, ca: &CertificateDer<'static>, path: &str) -> Reply {
    get_with(addr, default_client(ca), path, &[]).await
}

/// Sends raw bytes over TLS and returns everything the server answers.
pub async fn raw(addr: SocketAddr, ca: &CertificateDer<'static>, request: &str) -> String {
    let mut tls = tls_connect(addr, default_client(ca)).await.unwrap();
    // The server may answer (413, 431) and close before reading everything.
    let _ = tls.write_all(request.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until bootd serves a timestamp of at least `version`.
pub async fn wait_for_timestamp(addr: SocketAddr, ca: &CertificateDer<'static>, version: u64) {
    let start = Instant::now();
    loop {
        if let Ok(Ok(tls)) = tokio::time::timeout(
            Duration::from_secs(2),
            tls_connect(addr, default_client(ca)),
        )
        .await
        {
            drop(tls);
            let r = get(addr, ca, "/healthz").await;
            if r.status == StatusCode::OK {
                let text = String::from_utf8_lossy(&r.body).into_owned();
                let v: u64 = text
                    .trim()
                    .rsplit('=')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if v >= version {
                    return;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "bootd never served timestamp version {version}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn metrics(addr: SocketAddr, ca: &CertificateDer<'static>) -> String {
    String::from_utf8(get(addr, ca, "/metrics").await.body).unwrap()
}

/// The value of the first metric line starting with `prefix`.
pub fn metric_value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
