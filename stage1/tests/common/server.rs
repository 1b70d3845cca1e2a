//! A test-only HTTPS repository server that can mount attacks: it serves a
//! real imgsign repository directory over hyper + tokio-rustls with rcgen
//! certificates, and per path can replace the bytes, send endless or slow
//! data, or cut the connection after some bytes (honouring `Range`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Every request: (path, Range header).
pub type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// What the server does for one path.
#[derive(Clone, Debug)]
pub enum Attack {
    /// Serve these bytes instead of the file.
    Replace(Vec<u8>),
    /// 200 with no length and bytes forever.
    Endless,
    /// One byte per `Duration`, forever.
    Slow(Duration),
    /// Cut the connection after this many body bytes, `times` times.
    DropAfter { bytes: usize, times: usize },
    /// Answer 404.
    NotFound,
    /// Answer every request `206` from byte `start` of the file, whatever
    /// range was asked for (`Content-Range` says so, truthfully).
    WrongRange { start: usize },
}

/// A rack CA and certificates made with rcgen.
pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("test CA {name}"));
        let cert = p.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf certificate (PEM cert, PEM key) for `names`.
    pub fn leaf(&self, names: &[&str], client: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        p.distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub attacks: Arc<Mutex<HashMap<String, Attack>>>,
    /// Every request: (path, Range header).
    pub log: RequestLog,
    /// Negotiated cipher suites, one per connection.
    pub suites: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub fn base(&self) -> url::Url {
        url::Url::parse(&format!("https://localhost:{}/", self.addr.port())).unwrap()
    }

    pub fn attack(&self, path: &str, a: Attack) {
        self.attacks.lock().unwrap().insert(path.to_owned(), a);
    }

    pub fn clear(&self) {
        self.attacks.lock().unwrap().clear();
    }

    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.log.lock().unwrap().clone()
    }

    /// Serves `root` (a repository directory: `/metadata/…`, `/targets/…`)
    /// over TLS with a certificate from `pki`; with `client_ca`, client
    /// certificates from that CA are required.
    pub async fn start(root: PathBuf, pki: &Pki, client_ca: Option<&Pki>) -> Server {
        let (cert_pem, key_pem) = pki.leaf(&["localhost"], false);
        let chain: Vec<CertificateDer<'static>> =
            rustls::pki_types::pem::PemObject::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key: PrivateKeyDer<'static> = PrivateKeyDer::Pkcs8(
            <PrivatePkcs8KeyDer as rustls::pki_types::pem::PemObject>::from_pem_slice(
                key_pem.as_bytes(),
            )
            .unwrap(),
        );
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let b = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap();
        let mut cfg = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls::pki_types::pem::PemObject::pem_slice_iter(ca.ca_pem.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                b.with_client_cert_verifier(v)
                    .with_single_cert(chain, key)
                    .unwrap()
            }
            None => b
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        };
        cfg.ignore_client_order = false;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let attacks: Arc<Mutex<HashMap<String, Attack>>> = Arc::default();
        let log: RequestLog = Arc::default();
        let suites: Arc<Mutex<Vec<String>>> = Arc::default();
        let (a2, l2, s2) = (attacks.clone(), log.clone(), suites.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let (a3, l3, s3, root) = (a2.clone(), l2.clone(), s2.clone(), root.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Some(s) = tls.get_ref().1.negotiated_cipher_suite() {
                        s3.lock().unwrap().push(format!("{:?}", s.suite()));
                    }
                    let svc = hyper::service::service_fn(move |req| {
                        serve(req, root.clone(), a3.clone(), l3.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Server {
            addr,
            attacks,
            log,
            suites,
            task,
        }
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(status: StatusCode, b: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-length", b.len())
        .body(Full::new(Bytes::from(b)).map_err(|e| match e {}).boxed())
        .unwrap()
}

async fn serve(
    req: Request<hyper::body::Incoming>,
    root: PathBuf,
    attacks: Arc<Mutex<HashMap<String, Attack>>>,
    log: RequestLog,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    log.lock().unwrap().push((path.clone(), range.clone()));
    let attack = {
        let mut m = attacks.lock().unwrap();
        let a = m.get(&path).cloned();
        if let Some(Attack::DropAfter { bytes, times }) = a.clone() {
            if times <= 1 {
                m.remove(&path);
            } else {
                m.insert(
                    path.clone(),
                    Attack::DropAfter {
                        bytes,
                        times: times - 1,
                    },
                );
            }
            let _ = bytes;
        }
        a
    };
    let file = || {
        let rel = path.trim_start_matches('/');
        if rel.contains("..") {
            return None;
        }
        std::fs::read(root.join(rel)).ok()
    };
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
        .unwrap_or(0);
    let slice = |data: Vec<u8>| -> Response<Body> {
        if from > 0 {
            let len = data.len();
            let mut r = full(StatusCode::PARTIAL_CONTENT, data[from.min(len)..].to_vec());
            r.headers_mut().insert(
                "content-range",
                format!("bytes {from}-{}/{len}", len.saturating_sub(1))
                    .parse()
                    .unwrap(),
            );
            r
        } else {
            full(StatusCode::OK, data)
        }
    };
    Ok(match attack {
        Some(Attack::NotFound) => full(StatusCode::NOT_FOUND, b"not found".to_vec()),
        Some(Attack::WrongRange { start }) => match file() {
            None => full(StatusCode::NOT_FOUND, vec![]),
            Some(data) => {
                let len = data.len();
                let mut r = full(StatusCode::PARTIAL_CONTENT, data[start.min(len)..].to_vec());
                r.headers_mut().insert(
                    "content-range",
                    format!("bytes {start}-{}/{len}", len.saturating_sub(1))
                        .parse()
                        .unwrap(),
                );
                r
            }
        },
        Some(Attack::Replace(b)) => slice(b),
        Some(Attack::Endless) => {
            let s = futures::stream::repeat_with(|| {
                Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'{'; 64 * 1024])))
            });
            let mut r = Response::new(StreamBody::new(s).boxed());
            partial_without_end(&mut r, from);
            r
        }
        Some(Attack::Slow(every)) => {
            let s = futures::stream::unfold((), move |()| async move {
                tokio::time::sleep(every).await;
                Some((
                    Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b" "))),
                    (),
                ))
            });
            let mut r = Response::new(StreamBody::new(s).boxed());
            partial_without_end(&mut r, from);
            r
        }
        Some(Attack::DropAfter { bytes, .. }) => match file() {
            None => full(StatusCode::NOT_FOUND, vec![]),
            Some(data) => {
                let len = data.len();
                let data = data[from.min(len)..].to_vec();
                let cut = bytes.min(data.len());
                let head = Bytes::from(data[..cut].to_vec());
                // Let the head reach the client before the cut.
                let s = futures::StreamExt::chain(
                    futures::stream::iter(vec![Ok(Frame::data(head))]),
                    futures::stream::once(async {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Err(std::io::Error::other("connection cut by the test server"))
                    }),
                );
                let mut r = Response::builder()
                    .header("content-length", data.len())
                    .body(StreamBody::new(s).boxed())
                    .unwrap();
                if from > 0 {
                    *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                    r.headers_mut().insert(
                        "content-range",
                        format!("bytes {from}-{}/{len}", len.saturating_sub(1))
                            .parse()
                            .unwrap(),
                    );
                }
                r
            }
        },
        None => match file() {
            Some(d) => slice(d),
            None => full(StatusCode::NOT_FOUND, b"not found".to_vec()),
        },
    })
}

/// A 206 for a body of unknown length (the endless and slow attacks): the
/// range is well formed, so the client's cut-offs are what stop it.
fn partial_without_end(r: &mut Response<Body>, from: usize) {
    if from > 0 {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        r.headers_mut().insert(
            "content-range",
            format!("bytes {from}-{}/*", u64::MAX - 1).parse().unwrap(),
        );
    }
}
