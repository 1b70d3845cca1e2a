//! The client's error type: one variant per failed step, naming the URL.

use std::time::Duration;

/// Why a request to bootd (or to any HTTPS origin) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A plain `http://` URL while plain HTTP is not allowed.
    #[error("{url}: plain http:// refused (only https://, pinned to the rack CA)")]
    PlainHttp {
        /// The URL.
        url: String,
    },
    /// A URL scheme the client does not speak.
    #[error("{url}: unsupported scheme `{scheme}`")]
    Scheme {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// A URL without a host or port.
    #[error("{url}: no host or port")]
    NoHost {
        /// The URL.
        url: String,
    },
    /// An `https://` URL but no TLS configuration (no rack CA given).
    #[error("{url}: no TLS configuration (no rack CA given)")]
    NoTls {
        /// The URL.
        url: String,
    },
    /// The TCP connection did not open in time.
    #[error("connect {url}: no TCP connection within the connect deadline of {after:?}")]
    ConnectTimeout {
        /// The URL.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// The TCP connection failed.
    #[error("connect {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The host is not a valid TLS server name.
    #[error("{url}: not a TLS server name: {reason}")]
    ServerName {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The TLS handshake did not finish in time.
    #[error("TLS handshake with {url}: not done within the handshake deadline of {after:?}")]
    HandshakeTimeout {
        /// The URL.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// The TLS handshake failed (untrusted certificate, refused client
    /// certificate, no common cipher suite…).
    #[error("TLS handshake with {url}: {source}")]
    Handshake {
        /// The URL.
        url: String,
        /// The cause (rustls' alert inside).
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("{url}: HTTP: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The cause.
        source: hyper::Error,
    },
    /// The request could not be built.
    #[error("{url}: bad request: {source}")]
    BuildRequest {
        /// The URL.
        url: String,
        /// The cause.
        source: hyper::http::Error,
    },
    /// No response head arrived in time.
    #[error("{url}: no response head within the idle-read deadline of {after:?}")]
    HeadTimeout {
        /// The URL.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// The server answered with a status the request does not accept.
    #[error("{url} answered {status}{}", if .body.is_empty() { String::new() } else { format!(": {}", .body) })]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the answer's body (text), if it was read.
        body: String,
    },
    /// A `206` answer whose `Content-Range` is not the range asked for.
    #[error("{url}: asked for bytes {from}- and got `Content-Range: {got}`")]
    ContentRange {
        /// The URL.
        url: String,
        /// The first byte asked for.
        from: u64,
        /// The header sent (empty: none).
        got: String,
    },
    /// A `Content-Length` over the limit, refused before reading.
    #[error("{url}: Content-Length {length} over the limit of {limit} bytes")]
    ContentLength {
        /// The URL.
        url: String,
        /// What the server announced.
        length: u64,
        /// The limit.
        limit: u64,
    },
    /// More bytes than the limit arrived.
    #[error("{url}: response longer than the limit of {limit} bytes (endless-data attack?)")]
    TooLong {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// No data arrived for the idle deadline.
    #[error("{url}: no data for the idle-read deadline of {idle:?} after {received} bytes (slow-retrieval attack?)")]
    Stalled {
        /// The URL.
        url: String,
        /// The idle deadline.
        idle: Duration,
        /// Bytes received before it stalled.
        received: u64,
    },
    /// The average rate fell below the minimum after the grace period.
    #[error("{url}: {rate} B/s after {elapsed:?} is below the minimum of {min} B/s (slow-retrieval attack?)")]
    TooSlow {
        /// The URL.
        url: String,
        /// The average rate so far.
        rate: u64,
        /// Time since the request.
        elapsed: Duration,
        /// The minimum.
        min: u64,
    },
    /// A request/answer exchange ran past its total deadline.
    #[error("{url}: no complete answer within the total deadline of {after:?}")]
    Deadline {
        /// The URL.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// The body broke off.
    #[error("{url}: the body broke off after {received} bytes: {source}")]
    Body {
        /// The URL.
        url: String,
        /// Bytes received before.
        received: u64,
        /// The cause.
        source: hyper::Error,
    },
    /// A PEM input that does not parse or holds nothing.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input (e.g. "rack CA certificate").
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// rustls refused the TLS configuration.
    #[error("TLS configuration: {0}")]
    TlsConfig(#[from] rustls::Error),
    /// An answer that is not the JSON the API defines.
    #[error("{url}: unexpected answer: {source}")]
    Decode {
        /// The URL.
        url: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// Making the node's key or CSR failed.
    #[error("creating the node key and CSR: {0}")]
    Csr(#[from] rcgen::Error),
    /// The operator did not approve in time.
    #[error("enrollment request {id} not approved within {after:?}")]
    NotApproved {
        /// The request id.
        id: String,
        /// How long the client waited.
        after: Duration,
    },
    /// The operator denied the request.
    #[error("enrollment request {id} was denied by the operator")]
    Denied {
        /// The request id.
        id: String,
    },
    /// bootd does not know the request (expired or never made).
    #[error("enrollment request {id} is unknown to bootd")]
    UnknownRequest {
        /// The request id.
        id: String,
    },
}

/// Which deadline of [`NetConfig`](crate::NetConfig) refused an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// `connect_timeout`: the TCP connection did not open.
    Connect,
    /// `handshake_timeout`: the TLS handshake did not finish.
    Handshake,
    /// `read_timeout`: no response head, or no next chunk, in time.
    IdleRead,
    /// `call_timeout` or `total_timeout`: the whole exchange took too long.
    Total,
}

impl Error {
    /// The deadline that fired, if a deadline is why this failed.
    pub fn deadline(&self) -> Option<Deadline> {
        Some(match self {
            Error::ConnectTimeout { .. } => Deadline::Connect,
            Error::HandshakeTimeout { .. } => Deadline::Handshake,
            Error::HeadTimeout { .. } | Error::Stalled { .. } => Deadline::IdleRead,
            Error::Deadline { .. } => Deadline::Total,
            _ => return None,
        })
    }

    /// True for a `404 Not Found` answer (what ends a TUF root walk).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Status { status: 404, .. })
    }

    /// True for failures of the network or the peer that a retry may cure
    /// (timeouts, resets, broken bodies, 5xx), false for refusals that
    /// would only repeat (TLS trust, 4xx, limits, configuration).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::ConnectTimeout { .. }
            | Error::Connect { .. }
            | Error::HandshakeTimeout { .. }
            | Error::Http { .. }
            | Error::HeadTimeout { .. }
            | Error::Stalled { .. }
            | Error::TooSlow { .. }
            | Error::Deadline { .. }
            | Error::Body { .. } => true,
            Error::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// An error and its causes on one line, outermost first, each cause once.
///
/// Errors in this tree (and in tough) carry their cause in their own
/// message, and also return it as `source()`: printing every level would
/// repeat each cause. A level whose words the line already holds is
/// skipped, so a hash mismatch deep in a TUF refresh reads once.
pub fn display_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let words = err.to_string();
        if !line.contains(&words) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&words);
        }
        next = err.source();
    }
    line
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("fetch {url}: {source}")]
    struct Outer {
        url: String,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_is_printed_once() {
        let e = Outer {
            url: "https://bootd/x".into(),
            source: std::io::Error::other("hash mismatch"),
        };
        assert_eq!(display_chain(&e), "fetch https://bootd/x: hash mismatch");
        let bare = std::io::Error::other("disk full");
        assert_eq!(display_chain(&bare), "disk full");
        // Through anyhow, as the binaries print it: contexts and causes once each.
        let a = anyhow_like(e);
        assert_eq!(
            display_chain(a.as_ref()),
            "refreshing metadata: fetch https://bootd/x: hash mismatch"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("refreshing metadata")]
    struct Context {
        source: Outer,
    }

    fn anyhow_like(e: Outer) -> Box<dyn std::error::Error + 'static> {
        Box::new(Context { source: e })
    }
}
