//! stage1's HTTP(S) transport: hyper 1 over tokio-rustls, for tough and for
//! image downloads.
//!
//! Defences, each tested against a malicious server in `tests/tuf.rs`:
//! - TLS trusts only the pinned rack CA; the node's client certificate is
//!   presented when it is enrolled (mTLS);
//! - ChaCha20-Poly1305 is offered first (a Pi 4 has no AES instructions);
//! - connect and per-read timeouts; a minimum-throughput guard after a
//!   grace period (slow-retrieval attack);
//! - a length limit on every response (endless-data attack): a larger
//!   `Content-Length` is refused before reading, a body that runs past it
//!   is cut off;
//! - plain `http://` only when explicitly allowed; `file://` through tough's
//!   own filesystem transport (the standalone `stage1 tuf` command).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tough::{Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

use crate::error::{Error, Result};

/// Network limits. `Default` documents each default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// TCP + TLS connect (10 s).
    pub connect_timeout: Duration,
    /// Longest wait for the response head or for any next chunk (10 s).
    pub read_timeout: Duration,
    /// After `grace`, the average rate must stay at or above this many
    /// bytes per second (64 KiB/s), or the download is abandoned.
    pub min_bytes_per_sec: u64,
    /// Time before the throughput guard applies (5 s).
    pub grace: Duration,
    /// No response may be longer than this (8 GiB; tough also limits each
    /// metadata file, and images are limited to their signed length).
    pub max_len: u64,
    /// Fetch plain `http://` URLs (false: only `https://` and `file://`).
    pub allow_plain_http: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(10),
            min_bytes_per_sec: 64 * 1024,
            grace: Duration::from_secs(5),
            max_len: 8 << 30,
            allow_plain_http: false,
        }
    }
}

/// The rustls configuration of a node: only `ca_pem` is trusted, the
/// client certificate (`cert_pem`, `key_pem`) is presented when given,
/// ChaCha20-Poly1305 suites are offered before AES-GCM, aws-lc-rs is the
/// provider (set here, not process-wide).
pub fn tls_config(
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Tls(format!("bad CA PEM: {e}")))?;
    if cas.is_empty() {
        return Err(Error::Tls("no CA certificate in the CA file".into()));
    }
    for c in cas {
        roots
            .add(c)
            .map_err(|e| Error::Tls(format!("CA certificate: {e}")))?;
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // A Pi 4 has no AES instructions: ChaCha20-Poly1305 first.
    provider.cipher_suites.sort_by_key(|s| {
        let name = format!("{:?}", s.suite());
        if name.contains("CHACHA20") {
            0
        } else {
            1
        }
    });
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some((cert_pem, key_pem)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::Tls(format!("bad client certificate PEM: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| Error::Tls(format!("bad client key PEM: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::Tls(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A stream of body chunks.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + Sync>>;

/// A response whose body is still streaming.
pub struct Response {
    /// HTTP status.
    pub status: StatusCode,
    /// `Content-Length`, if sent.
    pub content_length: Option<u64>,
    /// The guarded body.
    pub body: BodyStream,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

/// The transport: TLS configuration, limits, and (optionally) a record of
/// every metadata file fetched (so the verified bytes can be stored for an
/// offline boot).
#[derive(Clone)]
pub struct HttpsTransport {
    tls: Option<Arc<rustls::ClientConfig>>,
    cfg: NetConfig,
    recorded: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    record_under: Option<Url>,
}

impl std::fmt::Debug for HttpsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsTransport")
            .field("tls", &self.tls.is_some())
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn fetch_err(url: &Url, reason: impl ToString) -> Error {
    Error::Fetch {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

impl HttpsTransport {
    /// A transport; `tls` is required for `https://` URLs.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>, cfg: NetConfig) -> HttpsTransport {
        HttpsTransport {
            tls,
            cfg,
            recorded: Arc::default(),
            record_under: None,
        }
    }

    /// Records the body of every file fetched under `base` (metadata).
    pub fn recording(mut self, base: Url) -> HttpsTransport {
        self.record_under = Some(base);
        // A fresh record: nothing from an earlier load can be mistaken
        // for this one's bytes.
        self.recorded = Arc::default();
        self
    }

    /// The recorded body of `base` + `file`, if it was fetched in full.
    pub fn recorded(&self, file: &str) -> Option<Vec<u8>> {
        self.recorded
            .lock()
            .expect("recorder lock")
            .get(file)
            .cloned()
    }

    /// The limits in force.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// GET `url` from byte `from` on (a `Range` request when `from > 0`).
    /// Errors on any status but 200 (or 206 for a range), on a
    /// `Content-Length` over the limit, and on timeouts.
    pub async fn get(&self, url: &Url, from: u64) -> Result<Response> {
        let https = match url.scheme() {
            "https" => true,
            "http" if self.cfg.allow_plain_http => false,
            "http" => {
                return Err(fetch_err(
                    url,
                    "plain http:// refused (pass --allow-plain-http to debug a repository)",
                ))
            }
            s => return Err(fetch_err(url, format!("unsupported scheme {s}"))),
        };
        let host = url.host_str().ok_or_else(|| fetch_err(url, "no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| fetch_err(url, "no port"))?;
        let sni = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let timeout = self.cfg.connect_timeout;
        let tcp = tokio::time::timeout(timeout, TcpStream::connect((sni.as_str(), port)))
            .await
            .map_err(|_| fetch_err(url, format!("connect timed out after {timeout:?}")))?
            .map_err(|e| fetch_err(url, format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        // Origin-form request target and a Host with the port, as any
        // HTTP/1.1 server (bootd, nginx, an object store) expects.
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let mut req = Request::get(target)
            .header(hyper::header::HOST, host_header)
            .header(hyper::header::USER_AGENT, "racklet-stage1");
        if from > 0 {
            req = req.header(hyper::header::RANGE, format!("bytes={from}-"));
        }
        let req = req
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| fetch_err(url, e))?;
        let resp = if https {
            let tls = self
                .tls
                .clone()
                .ok_or_else(|| fetch_err(url, "no TLS configuration (no rack CA given)"))?;
            let name = ServerName::try_from(sni).map_err(|e| fetch_err(url, e))?;
            let conn = tokio_rustls::TlsConnector::from(tls);
            let stream = tokio::time::timeout(timeout, conn.connect(name, tcp))
                .await
                .map_err(|_| fetch_err(url, format!("TLS handshake timed out after {timeout:?}")))?
                .map_err(|e| fetch_err(url, format!("TLS: {e}")))?;
            self.send(url, TokioIo::new(stream), req).await?
        } else {
            self.send(url, TokioIo::new(tcp), req).await?
        };
        let status = resp.status();
        let ok = if from > 0 {
            status == StatusCode::PARTIAL_CONTENT
        } else {
            status == StatusCode::OK
        };
        if !ok {
            return Err(fetch_err(url, format!("HTTP status {status}")));
        }
        let content_length = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = content_length {
            if n > self.cfg.max_len {
                return Err(fetch_err(
                    url,
                    format!("Content-Length {n} over the limit of {}", self.cfg.max_len),
                ));
            }
        }
        let record = self
            .record_under
            .as_ref()
            .and_then(|base| url.as_str().strip_prefix(base.as_str()))
            .map(str::to_owned);
        Ok(Response {
            status,
            content_length,
            body: guard(
                url.clone(),
                resp.into_body(),
                self.cfg.clone(),
                record.map(|name| (name, self.recorded.clone())),
            ),
        })
    }

    async fn send<I>(
        &self,
        url: &Url,
        io: I,
        req: Request<http_body_util::Empty<Bytes>>,
    ) -> Result<hyper::Response<Incoming>>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let t = self.cfg.read_timeout;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| fetch_err(url, e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        tokio::time::timeout(t, sender.send_request(req))
            .await
            .map_err(|_| fetch_err(url, format!("no response head within {t:?}")))?
            .map_err(|e| fetch_err(url, e))
    }
}

type Recorder = (String, Arc<Mutex<HashMap<String, Vec<u8>>>>);

/// The body with every limit applied.
fn guard(url: Url, body: Incoming, cfg: NetConfig, record: Option<Recorder>) -> BodyStream {
    struct St {
        url: Url,
        body: Incoming,
        cfg: NetConfig,
        start: Instant,
        total: u64,
        record: Option<(Recorder, Vec<u8>)>,
        done: bool,
    }
    let st = St {
        url,
        body,
        cfg,
        start: Instant::now(),
        total: 0,
        record: record.map(|r| (r, Vec::new())),
        done: false,
    };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let frame = match tokio::time::timeout(st.cfg.read_timeout, st.body.frame()).await {
                Err(_) => {
                    st.done = true;
                    let e = fetch_err(
                        &st.url,
                        format!(
                            "no data for {:?} after {} bytes (slow-retrieval attack?)",
                            st.cfg.read_timeout, st.total
                        ),
                    );
                    return Some((Err(e), st));
                }
                Ok(None) => {
                    if let Some(((name, map), buf)) = st.record.take() {
                        map.lock().expect("recorder lock").insert(name, buf);
                    }
                    return None;
                }
                Ok(Some(Err(e))) => {
                    st.done = true;
                    let e = fetch_err(&st.url, format!("after {} bytes: {e}", st.total));
                    return Some((Err(e), st));
                }
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            st.total += data.len() as u64;
            if st.total > st.cfg.max_len {
                st.done = true;
                let e = fetch_err(
                    &st.url,
                    format!(
                        "response longer than the limit of {} bytes (endless-data attack?)",
                        st.cfg.max_len
                    ),
                );
                return Some((Err(e), st));
            }
            let elapsed = st.start.elapsed();
            if elapsed > st.cfg.grace {
                let rate = st.total as f64 / elapsed.as_secs_f64();
                if rate < st.cfg.min_bytes_per_sec as f64 {
                    st.done = true;
                    let e = fetch_err(
                        &st.url,
                        format!(
                            "{rate:.0} B/s after {elapsed:?} is below the minimum of {} B/s (slow-retrieval attack?)",
                            st.cfg.min_bytes_per_sec
                        ),
                    );
                    return Some((Err(e), st));
                }
            }
            if let Some((_, buf)) = &mut st.record {
                if buf.len() < 64 << 20 {
                    buf.extend_from_slice(&data);
                }
            }
            return Some((Ok(data), st));
        }
    }))
}

#[tough::async_trait]
impl Transport for HttpsTransport {
    async fn fetch(&self, url: Url) -> std::result::Result<TransportStream, TransportError> {
        if url.scheme() == "file" {
            let record = self
                .record_under
                .as_ref()
                .and_then(|base| url.as_str().strip_prefix(base.as_str()))
                .map(str::to_owned);
            let Some(name) = record else {
                return tough::FilesystemTransport.fetch(url).await;
            };
            // Metadata from a directory: read it whole (bounded) so the
            // verified bytes can be stored like those fetched over HTTPS.
            let path = url.to_file_path().map_err(|()| {
                TransportError::new(TransportErrorKind::UnsupportedUrlScheme, url.as_str())
            })?;
            let limit = 64u64 << 20;
            let len = std::fs::metadata(&path).map(|m| m.len()).map_err(|e| {
                let kind = if e.kind() == std::io::ErrorKind::NotFound {
                    TransportErrorKind::FileNotFound
                } else {
                    TransportErrorKind::Other
                };
                TransportError::new_with_cause(kind, url.as_str(), e)
            })?;
            if len > limit {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    url.as_str(),
                    fetch_err(&url, format!("metadata file of {len} bytes over {limit}")),
                ));
            }
            let bytes = std::fs::read(&path).map_err(|e| {
                TransportError::new_with_cause(TransportErrorKind::Other, url.as_str(), e)
            })?;
            self.recorded
                .lock()
                .expect("recorder lock")
                .insert(name, bytes.clone());
            let one = futures::stream::iter(vec![Ok(Bytes::from(bytes))]);
            return Ok(Box::pin(one));
        }
        match self.get(&url, 0).await {
            Ok(resp) => {
                let u = url.clone();
                let s = futures::StreamExt::map(resp.body, move |r| {
                    r.map_err(|e| {
                        TransportError::new_with_cause(TransportErrorKind::Other, u.as_str(), e)
                    })
                });
                Ok(Box::pin(s))
            }
            Err(e) => {
                let kind = match &e {
                    Error::Fetch { reason, .. } if reason.contains("404") => {
                        TransportErrorKind::FileNotFound
                    }
                    Error::Fetch { reason, .. } if reason.contains("unsupported scheme") => {
                        TransportErrorKind::UnsupportedUrlScheme
                    }
                    _ => TransportErrorKind::Other,
                };
                Err(TransportError::new_with_cause(kind, url.as_str(), e))
            }
        }
    }
}
