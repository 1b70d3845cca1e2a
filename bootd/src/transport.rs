//! HTTPS requests made by bootd itself (mirror mode) and by the node client
//! API: hyper 1 over tokio-rustls, one connection per request, trusting only
//! the CA the caller gives.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tough::{Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

use crate::error::{Error, Result};

/// An HTTPS client with a fixed TLS configuration (trust roots, client cert).
#[derive(Clone)]
pub struct HttpsClient {
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient").finish_non_exhaustive()
    }
}

fn req_err(url: &Url, reason: impl ToString) -> Error {
    Error::Request {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

impl HttpsClient {
    /// A client using this TLS configuration (it should offer HTTP/1.1 in ALPN or none).
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        HttpsClient { tls }
    }

    /// Sends one request and returns the response with its body still streaming.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<Response<hyper::body::Incoming>> {
        if url.scheme() != "https" {
            return Err(req_err(url, "only https:// URLs are fetched"));
        }
        let host = url.host_str().ok_or_else(|| req_err(url, "no host"))?;
        let port = url.port_or_known_default().unwrap_or(443);
        let host_for_sni = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name =
            ServerName::try_from(host_for_sni.clone()).map_err(|e| req_err(url, e))?;
        let tcp = TcpStream::connect((host_for_sni.as_str(), port))
            .await
            .map_err(|e| req_err(url, e))?;
        tcp.set_nodelay(true).map_err(|e| req_err(url, e))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| req_err(url, format!("TLS: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| req_err(url, e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client connection ended");
            }
        });
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority);
        let body = match body {
            Some((bytes, content_type)) => {
                builder = builder.header(hyper::header::CONTENT_TYPE, content_type);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let req = builder.body(body).map_err(|e| req_err(url, e))?;
        sender.send_request(req).await.map_err(|e| req_err(url, e))
    }

    /// GET or POST and collect a small body, refusing non-2xx answers.
    pub async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<(Vec<u8>, &'static str)>,
        max: usize,
    ) -> Result<(StatusCode, Vec<u8>)> {
        let resp = self.send(method, url, body).await?;
        let status = resp.status();
        let bytes = http_body_util::Limited::new(resp.into_body(), max)
            .collect()
            .await
            .map_err(|e| req_err(url, e))?
            .to_bytes()
            .to_vec();
        if !status.is_success() {
            return Err(Error::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
        }
        Ok((status, bytes))
    }
}

/// A tough [`Transport`] over [`HttpsClient`]: 404 is "file not found" (which
/// ends the root walk), anything else but 200 is an error.
#[derive(Debug, Clone)]
pub struct HttpsTransport {
    client: HttpsClient,
}

impl HttpsTransport {
    /// Wraps a client.
    pub fn new(client: HttpsClient) -> Self {
        HttpsTransport { client }
    }
}

#[async_trait::async_trait]
impl Transport for HttpsTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let resp = self
            .client
            .send(Method::GET, &url, None)
            .await
            .map_err(|e| TransportError::new_with_cause(TransportErrorKind::Other, &url, e))?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(TransportError::new(TransportErrorKind::FileNotFound, &url))
            }
            s => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    &url,
                    format!("HTTP status {s}"),
                ))
            }
        }
        // hyper's body is not Sync; hand the chunks over through a channel.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, TransportError>>(8);
        let mut body = resp.into_body().into_data_stream();
        let u = url.clone();
        tokio::spawn(async move {
            while let Some(chunk) = body.next().await {
                let item = chunk
                    .map_err(|e| TransportError::new_with_cause(TransportErrorKind::Other, &u, e));
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Box::pin(stream))
    }
}

/// A client TLS configuration trusting only `ca_pem_certs`, optionally
/// presenting a client certificate. Uses the aws-lc-rs provider explicitly,
/// so no process-global provider is needed.
pub fn client_tls(
    roots: &[rustls::pki_types::CertificateDer<'static>],
    client_auth: Option<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut store = rustls::RootCertStore::empty();
    for c in roots {
        store.add(c.clone())?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_root_certificates(store);
    let mut cfg = match client_auth {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
