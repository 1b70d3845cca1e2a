//! The attacker of step 6: a compromised boot server. It owns bootd's
//! address and TLS key (as someone who broke into the bootd host would) and
//! serves whatever files it likes, verifying nothing — exactly what bootd
//! refuses to do. The nodes must catch it on their own, with TUF.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The running server; [`Compromised::shutdown`] stops it and frees its
/// address (dropping it only asks the runtime to).
#[derive(Debug)]
pub struct Compromised {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Compromised {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

fn tls(cert: &Path, key: &Path) -> Result<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| cert.display().to_string())?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| cert.display().to_string())?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| key.display().to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?)
}

/// A file below `root` for a request path, never outside it.
fn file_for(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

async fn serve_file(
    root: Arc<PathBuf>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let found = file_for(&root, req.uri().path()).and_then(|p| std::fs::read(p).ok());
    match found {
        Some(bytes) => Response::new(Full::new(Bytes::from(bytes))),
        None => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

impl Compromised {
    /// Serves `root` on `addr` with bootd's certificate and key.
    pub async fn start(addr: SocketAddr, root: PathBuf, cert: &Path, key: &Path) -> Result<Self> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls(cert, key)?));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let root = Arc::new(root);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, root) = (acceptor.clone(), root.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let root = root.clone();
                        async move { Ok::<_, Infallible>(serve_file(root, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Ok(Compromised { task: Some(task) })
    }

    /// Stops accepting and waits until the listening socket is closed.
    pub async fn shutdown(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

/// A copy of a repository directory (the attacker's own, to alter).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src).with_context(|| src.display().to_string())? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else if e.file_type()?.is_file() {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_never_leave_the_root() {
        let root = Path::new("/srv/repo");
        assert_eq!(
            file_for(root, "/metadata/timestamp.json"),
            Some(root.join("metadata/timestamp.json"))
        );
        assert_eq!(file_for(root, "/../etc/passwd"), None);
        assert_eq!(file_for(root, "/targets/../../x"), None);
    }
}
