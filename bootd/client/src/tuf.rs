//! A [`tough::Transport`] over [`Client`]: `404` is "file not found" (which
//! ends the root walk), any other refusal an error carrying the client's
//! typed cause. `file://` URLs go through tough's filesystem transport (a
//! repository on a local disk or a USB stick).
//!
//! Optionally it keeps the bytes of every file fetched under a base URL
//! ([`TufTransport::recording`]), so that a node can store the very bytes
//! tough verified for an offline boot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use tough::{Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

use crate::error::Error;
use crate::http::Client;

/// Largest file kept by a recording transport (metadata caps are far lower).
const RECORD_MAX: usize = 64 << 20;

type Recorded = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// The transport.
#[derive(Clone)]
pub struct TufTransport {
    client: Client,
    recorded: Recorded,
    record_under: Option<Url>,
}

impl std::fmt::Debug for TufTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TufTransport")
            .field("client", &self.client)
            .field("record_under", &self.record_under)
            .finish_non_exhaustive()
    }
}

fn transport_err(url: &Url, e: Error) -> TransportError {
    let kind = match &e {
        e if e.is_not_found() => TransportErrorKind::FileNotFound,
        Error::Scheme { .. } | Error::PlainHttp { .. } => TransportErrorKind::UnsupportedUrlScheme,
        _ => TransportErrorKind::Other,
    };
    TransportError::new_with_cause(kind, url.as_str(), e)
}

impl TufTransport {
    /// A transport over `client`.
    pub fn new(client: Client) -> TufTransport {
        TufTransport {
            client,
            recorded: Arc::default(),
            record_under: None,
        }
    }

    /// The client underneath (for downloads outside tough).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Keeps the body of every file fetched in full under `base`
    /// (metadata), starting a fresh record: nothing from an earlier load
    /// can be mistaken for this one's bytes.
    pub fn recording(mut self, base: Url) -> TufTransport {
        self.record_under = Some(base);
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

    fn record_name(&self, url: &Url) -> Option<String> {
        self.record_under
            .as_ref()
            .and_then(|base| url.as_str().strip_prefix(base.as_str()))
            .map(str::to_owned)
    }

    /// A metadata file from a directory, read whole (bounded) so the
    /// verified bytes can be kept like those fetched over HTTPS.
    fn read_recorded_file(
        &self,
        url: &Url,
        name: String,
    ) -> Result<TransportStream, TransportError> {
        let path = url.to_file_path().map_err(|()| {
            TransportError::new(TransportErrorKind::UnsupportedUrlScheme, url.as_str())
        })?;
        let io_err = |e: std::io::Error| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                TransportErrorKind::FileNotFound
            } else {
                TransportErrorKind::Other
            };
            TransportError::new_with_cause(kind, url.as_str(), e)
        };
        let len = std::fs::metadata(&path).map_err(io_err)?.len();
        if len > RECORD_MAX as u64 {
            return Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                url.as_str(),
                Error::TooLong {
                    url: url.to_string(),
                    limit: RECORD_MAX as u64,
                },
            ));
        }
        let bytes = std::fs::read(&path).map_err(io_err)?;
        self.recorded
            .lock()
            .expect("recorder lock")
            .insert(name, bytes.clone());
        Ok(Box::pin(futures::stream::iter(vec![Ok(Bytes::from(
            bytes,
        ))])))
    }
}

#[tough::async_trait]
impl Transport for TufTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let record = self.record_name(&url);
        if url.scheme() == "file" {
            return match record {
                Some(name) => self.read_recorded_file(&url, name),
                None => tough::FilesystemTransport.fetch(url).await,
            };
        }
        let resp = self
            .client
            .get(&url, 0)
            .await
            .map_err(|e| transport_err(&url, e))?;
        let u = url.clone();
        let mut body = resp.body;
        let recorded = self.recorded.clone();
        // Chunks pass through as they come; a recorded file is stored once
        // its body has ended without error.
        let stream = async_stream(move |tx| async move {
            let mut keep = record.map(|name| (name, Vec::new()));
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(data) => {
                        if let Some((_, buf)) = &mut keep {
                            if buf.len() + data.len() <= RECORD_MAX {
                                buf.extend_from_slice(&data);
                            }
                        }
                        if tx.send(Ok(data)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _gone = tx.send(Err(transport_err(&u, e))).await;
                        return;
                    }
                }
            }
            if let Some((name, buf)) = keep {
                recorded.lock().expect("recorder lock").insert(name, buf);
            }
        });
        Ok(stream)
    }
}

/// A stream fed by a task through a small channel (hyper's body is not
/// `Sync`, which tough's stream type requires).
fn async_stream<F, Fut>(f: F) -> TransportStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, TransportError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(f(tx));
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}
