//! HTTPS (and, when allowed, plain HTTP) requests: hyper 1 over
//! tokio-rustls, one connection per request, every step under a deadline.
//!
//! Defences, each tested against a hostile server (`tests/deadlines.rs`, and
//! stage1's `tests/tuf.rs`):
//! - TLS trusts only the configuration's CA ([`crate::tls`]);
//! - deadlines on connect, on the TLS handshake, on the response head and
//!   on every next chunk (idle read), and a total deadline on every
//!   exchange (connect to last byte: [`NetConfig::call_timeout`] for API
//!   calls, [`NetConfig::total_timeout`] for downloads), plus a minimum
//!   average throughput after a grace period for downloads
//!   (slow-retrieval attack); each refusal names the URL and the deadline
//!   that fired ([`Error::deadline`]);
//! - a length limit on every response (endless-data attack): a larger
//!   `Content-Length` is refused before reading, a body that runs past the
//!   limit is cut off;
//! - a `206` answer must carry the `Content-Range` that was asked for;
//! - plain `http://` only when explicitly allowed.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use url::Url;

use crate::error::{Error, Result};

/// Network limits. `Default` documents each default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// TCP connect (10 s).
    pub connect_timeout: Duration,
    /// The TLS handshake, once connected (10 s).
    pub handshake_timeout: Duration,
    /// Idle read: the longest wait for the response head or for any next
    /// chunk of the body (10 s).
    pub read_timeout: Duration,
    /// After `grace`, a download's average rate must stay at or above this
    /// many bytes per second (64 KiB/s), or it is abandoned.
    pub min_bytes_per_sec: u64,
    /// Time before the throughput guard applies (5 s).
    pub grace: Duration,
    /// A whole API exchange ([`Client::call`]: connect to last byte) must
    /// finish within this (30 s).
    pub call_timeout: Duration,
    /// A whole download ([`Client::get`]: connect to last byte of the body)
    /// must finish within this (10 min; stage1 bounds an install tighter
    /// with its own install deadline).
    pub total_timeout: Duration,
    /// No response may be longer than this (8 GiB; callers pass tighter
    /// limits: metadata caps, a target's signed length).
    pub max_len: u64,
    /// Fetch plain `http://` URLs (false: only `https://`).
    pub allow_plain_http: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(10),
            min_bytes_per_sec: 64 * 1024,
            grace: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(600),
            max_len: 8 << 30,
            allow_plain_http: false,
        }
    }
}

/// A stream of body chunks, every limit applied.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + Sync>>;

/// A response whose body is still streaming.
pub struct Response {
    /// HTTP status (200, or 206 for a range).
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

/// An HTTPS client: a TLS configuration (required for `https://`) and
/// limits. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    tls: Option<Arc<rustls::ClientConfig>>,
    cfg: NetConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tls", &self.tls.is_some())
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// A request body and its content type.
pub type Body = (Vec<u8>, &'static str);

impl Client {
    /// A client; `tls` is required for `https://` URLs.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>, cfg: NetConfig) -> Client {
        Client { tls, cfg }
    }

    /// The limits in force.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// GET `url` from byte `from` on (a `Range` request when `from > 0`).
    /// Errors on any status but 200 (or 206 with the right `Content-Range`
    /// for a range), on a `Content-Length` over the limit, and on every
    /// deadline; the body stream enforces the rest.
    pub async fn get(&self, url: &Url, from: u64) -> Result<Response> {
        let total = self.cfg.total_timeout;
        let deadline = tokio::time::Instant::now() + total;
        let resp = tokio::time::timeout_at(deadline, self.open(Method::GET, url, from, None))
            .await
            .map_err(|_| Error::Deadline {
                url: url.to_string(),
                after: total,
            })??;
        let status = resp.status();
        let want = if from > 0 {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        if status != want {
            return Err(Error::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: String::new(),
            });
        }
        if from > 0 {
            check_content_range(url, from, resp.headers())?;
        }
        let content_length = content_length(url, resp.headers(), self.cfg.max_len)?;
        Ok(Response {
            status,
            content_length,
            body: guard(
                url.clone(),
                resp.into_body(),
                self.cfg.clone(),
                Some(deadline),
            ),
        })
    }

    /// One API exchange: sends `body` (if any), collects an answer of at
    /// most `max` bytes, all within [`NetConfig::call_timeout`]. Returns the
    /// status whatever it is: the caller decides what each one means.
    pub async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<Body>,
        max: u64,
    ) -> Result<(StatusCode, Bytes)> {
        let deadline = self.cfg.call_timeout;
        let exchange = async {
            let resp = self.open(method, url, 0, body).await?;
            let status = resp.status();
            let max = max.min(self.cfg.max_len);
            content_length(url, resp.headers(), max)?;
            let cfg = NetConfig {
                max_len: max,
                ..self.cfg.clone()
            };
            let mut stream = guard(url.clone(), resp.into_body(), cfg, None);
            let mut out = Vec::new();
            while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                out.extend_from_slice(&chunk?);
            }
            Ok((status, Bytes::from(out)))
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| Error::Deadline {
                url: url.to_string(),
                after: deadline,
            })?
    }

    /// Connects (TCP, then TLS for `https://`), sends the request and waits
    /// for the response head, each under its deadline.
    async fn open(
        &self,
        method: Method,
        url: &Url,
        from: u64,
        body: Option<Body>,
    ) -> Result<hyper::Response<Incoming>> {
        let u = || url.to_string();
        let https = match url.scheme() {
            "https" => true,
            "http" if self.cfg.allow_plain_http => false,
            "http" => return Err(Error::PlainHttp { url: u() }),
            s => {
                return Err(Error::Scheme {
                    url: u(),
                    scheme: s.to_owned(),
                })
            }
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(Error::NoHost { url: u() });
        };
        let tls = match (https, &self.tls) {
            (true, Some(tls)) => Some(tls.clone()),
            (true, None) => return Err(Error::NoTls { url: u() }),
            (false, _) => None,
        };
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let t = self.cfg.connect_timeout;
        let tcp = tokio::time::timeout(t, TcpStream::connect((bare.as_str(), port)))
            .await
            .map_err(|_| Error::ConnectTimeout { url: u(), after: t })?
            .map_err(|source| Error::Connect { url: u(), source })?;
        // Latency over throughput for small requests; failure is harmless.
        let _nodelay = tcp.set_nodelay(true);
        let req = request(method, url, host, from, body)?;
        match tls {
            Some(tls) => {
                let name = ServerName::try_from(bare).map_err(|e| Error::ServerName {
                    url: u(),
                    reason: e.to_string(),
                })?;
                let conn = tokio_rustls::TlsConnector::from(tls);
                let t = self.cfg.handshake_timeout;
                let stream = tokio::time::timeout(t, conn.connect(name, tcp))
                    .await
                    .map_err(|_| Error::HandshakeTimeout { url: u(), after: t })?
                    .map_err(|source| Error::Handshake { url: u(), source })?;
                self.send(url, TokioIo::new(stream), req).await
            }
            None => self.send(url, TokioIo::new(tcp), req).await,
        }
    }

    async fn send<I>(
        &self,
        url: &Url,
        io: I,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Incoming>>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let u = || url.to_string();
        let t = self.cfg.read_timeout;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|source| Error::Http { url: u(), source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client connection ended");
            }
        });
        tokio::time::timeout(t, sender.send_request(req))
            .await
            .map_err(|_| Error::HeadTimeout { url: u(), after: t })?
            .map_err(|source| Error::Http { url: u(), source })
    }
}

/// The request: origin-form target and a `Host` with the port, as any
/// HTTP/1.1 server (bootd, nginx, an object store) expects.
fn request(
    method: Method,
    url: &Url,
    host: &str,
    from: u64,
    body: Option<Body>,
) -> Result<Request<Full<Bytes>>> {
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let mut req = Request::builder()
        .method(method)
        .uri(target)
        .header(hyper::header::HOST, host_header)
        .header(hyper::header::USER_AGENT, "racklet-bootd-client");
    if from > 0 {
        req = req.header(hyper::header::RANGE, format!("bytes={from}-"));
    }
    let body = match body {
        Some((bytes, content_type)) => {
            req = req.header(hyper::header::CONTENT_TYPE, content_type);
            Full::new(Bytes::from(bytes))
        }
        None => Full::new(Bytes::new()),
    };
    req.body(body).map_err(|source| Error::BuildRequest {
        url: url.to_string(),
        source,
    })
}

/// The announced length, refused when over `max`.
fn content_length(url: &Url, headers: &hyper::HeaderMap, max: u64) -> Result<Option<u64>> {
    let n = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match n {
        Some(length) if length > max => Err(Error::ContentLength {
            url: url.to_string(),
            length,
            limit: max,
        }),
        _ => Ok(n),
    }
}

/// A `206` must say `Content-Range: bytes FROM-LAST/TOTAL` (or `/*`) with
/// `FROM` the first byte asked for: bytes from anywhere else would be
/// written at the wrong offset.
fn check_content_range(url: &Url, from: u64, headers: &hyper::HeaderMap) -> Result<()> {
    let got = headers
        .get(hyper::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_range_start(got) == Some(from) {
        Ok(())
    } else {
        Err(Error::ContentRange {
            url: url.to_string(),
            from,
            got: got.to_owned(),
        })
    }
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/TOTAL` value, if
/// the value is well formed (`FIRST <= LAST`, `LAST < TOTAL` when known).
fn content_range_start(v: &str) -> Option<u64> {
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    let total_ok = total == "*" || total.parse::<u64>().is_ok_and(|t| last < t);
    (first <= last && total_ok).then_some(first)
}

/// The body with every limit applied. A download carries its total
/// deadline (`Some`), which also turns on the throughput guard; API answers
/// are small and bounded by the call deadline around them instead.
fn guard(
    url: Url,
    body: Incoming,
    cfg: NetConfig,
    deadline: Option<tokio::time::Instant>,
) -> BodyStream {
    struct St {
        url: Url,
        body: Incoming,
        cfg: NetConfig,
        deadline: Option<tokio::time::Instant>,
        start: Instant,
        total: u64,
        done: bool,
    }
    let st = St {
        url,
        body,
        cfg,
        deadline,
        start: Instant::now(),
        total: 0,
        done: false,
    };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let idle_end = tokio::time::Instant::now() + st.cfg.read_timeout;
            let end = st.deadline.map_or(idle_end, |d| d.min(idle_end));
            let frame = match tokio::time::timeout_at(end, st.body.frame()).await {
                Err(_) => {
                    st.done = true;
                    let e = if end < idle_end {
                        Error::Deadline {
                            url: st.url.to_string(),
                            after: st.cfg.total_timeout,
                        }
                    } else {
                        Error::Stalled {
                            url: st.url.to_string(),
                            idle: st.cfg.read_timeout,
                            received: st.total,
                        }
                    };
                    return Some((Err(e), st));
                }
                Ok(None) => return None,
                Ok(Some(Err(source))) => {
                    st.done = true;
                    let e = Error::Body {
                        url: st.url.to_string(),
                        received: st.total,
                        source,
                    };
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
                let e = Error::TooLong {
                    url: st.url.to_string(),
                    limit: st.cfg.max_len,
                };
                return Some((Err(e), st));
            }
            let elapsed = st.start.elapsed();
            if st.deadline.is_some() && elapsed > st.cfg.grace {
                let rate = (st.total as f64 / elapsed.as_secs_f64()) as u64;
                if rate < st.cfg.min_bytes_per_sec {
                    st.done = true;
                    let e = Error::TooSlow {
                        url: st.url.to_string(),
                        rate,
                        elapsed,
                        min: st.cfg.min_bytes_per_sec,
                    };
                    return Some((Err(e), st));
                }
            }
            return Some((Ok(data), st));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_must_start_where_asked() {
        for (v, want) in [
            ("bytes 100-199/200", Some(100)),
            ("bytes 100-199/*", Some(100)),
            ("bytes 0-0/1", Some(0)),
            ("bytes 100-99/200", None),
            ("bytes 100-200/200", None),
            ("bytes 100-199", None),
            ("bytes=100-199/200", None),
            ("items 100-199/200", None),
            ("bytes -199/200", None),
            ("", None),
        ] {
            assert_eq!(content_range_start(v), want, "{v:?}");
        }
    }
}
