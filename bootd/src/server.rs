//! The serving shell: accept loops, limits, TLS, HTTP/1.1 + HTTP/2, routing.
//!
//! Everything here is IO; the decisions it calls (config, verification,
//! node records, file ranges) live in their own modules.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use racklet_hardware::Rack;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::error::Result;
use crate::files::{self, full, text, Body};
use crate::metrics::{BootedLabels, Metrics, NodeLabels, ResultLabels, RoleLabels, RouteLabels};
use crate::nodes::{NodeReport, NodeStore, RequestStatus};
use crate::repo::{is_flat_name, Publisher, Snapshot};
use crate::tls::{self, SharedIdentities};

/// The sockets bootd serves on, bound by the caller (so tests can bind
/// `127.0.0.1:0` and a supervisor can hand over sockets).
#[derive(Debug)]
pub struct Listeners {
    /// HTTPS listeners.
    pub https: Vec<TcpListener>,
    /// DANGER: plain-HTTP listeners, first-stage artifacts only.
    pub plain_http: Vec<TcpListener>,
}

impl Listeners {
    /// Binds every address in the config.
    pub async fn bind(config: &Config) -> Result<Listeners> {
        let bind = |a: SocketAddr| async move {
            TcpListener::bind(a)
                .await
                .map_err(|source| crate::Error::Socket {
                    addr: a.to_string(),
                    source,
                })
        };
        let mut https = Vec::new();
        for a in &config.https {
            https.push(bind(*a).await?);
        }
        let mut plain_http = Vec::new();
        for a in &config.plain_http {
            plain_http.push(bind(*a).await?);
        }
        Ok(Listeners { https, plain_http })
    }
}

/// What can change at run time without a restart.
struct Live {
    config: Arc<Config>,
    rack: Arc<Rack>,
    tls: Arc<rustls::ServerConfig>,
}

struct Shared {
    live: RwLock<Arc<Live>>,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    identities: SharedIdentities,
    metrics: Metrics,
    store: NodeStore,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

impl Shared {
    fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }
    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.read().ok().and_then(|s| s.clone())
    }
}

/// Counts an open connection against the limits; gives the slot back on drop.
struct ConnGuard {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::SeqCst);
        self.shared.metrics.open_connections.dec();
        if let Ok(mut m) = self.shared.per_address.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

fn admit(shared: &Arc<Shared>, ip: IpAddr) -> std::result::Result<ConnGuard, &'static str> {
    let limits = shared.live().config.limits.clone();
    let mut per = shared.per_address.lock().map_err(|_| "poisoned")?;
    if shared.open.load(Ordering::SeqCst) >= limits.max_connections {
        return Err("max_connections");
    }
    let n = per.entry(ip).or_insert(0);
    if *n >= limits.max_connections_per_address {
        return Err("max_connections_per_address");
    }
    *n += 1;
    shared.open.fetch_add(1, Ordering::SeqCst);
    shared.metrics.open_connections.inc();
    Ok(ConnGuard {
        shared: shared.clone(),
        ip,
    })
}

/// Runs bootd until `shutdown` resolves, then drains in-flight requests
/// (bounded by `limits.drain_timeout`) and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let rack = Rack::load(&config.rack_file)?;
    let store = NodeStore::new(&config.state_dir);
    let identities: SharedIdentities = Arc::new(RwLock::new(Arc::new(store.identities())));
    let tls = tls::server_config(&config.pki, identities.clone())?;
    let publisher = Arc::new(Publisher::new(&config.repository, &config.state_dir)?);
    if !config.plain_http.is_empty() {
        warn!(
            addresses = ?config.plain_http,
            "DANGER: plain-HTTP listener is ON; it serves first-stage artifacts only, \
             which the platform firmware must verify itself"
        );
    }
    let shared = Arc::new(Shared {
        live: RwLock::new(Arc::new(Live {
            config: Arc::new(config),
            rack: Arc::new(rack),
            tls,
        })),
        snapshot: RwLock::new(None),
        identities,
        metrics: Metrics::new(),
        store,
        open: AtomicUsize::new(0),
        per_address: Mutex::new(HashMap::new()),
    });
    for r in shared.store.reports().into_values() {
        note_report_metrics(&shared.metrics, &r);
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let graceful = Arc::new(Mutex::new(Some(graceful)));
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners.https {
        info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving HTTPS");
        tasks.spawn(accept_loop(
            shared.clone(),
            l,
            true,
            stop_rx.clone(),
            graceful.clone(),
        ));
    }
    for l in listeners.plain_http {
        warn!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving PLAIN HTTP (first-stage artifacts only)");
        tasks.spawn(accept_loop(
            shared.clone(),
            l,
            false,
            stop_rx.clone(),
            graceful.clone(),
        ));
    }
    tasks.spawn(reconcile_loop(shared.clone(), stop_rx.clone()));
    tasks.spawn(publish_loop(shared.clone(), publisher, stop_rx.clone()));

    shutdown.await;
    info!("shutting down: no new connections, draining in-flight requests");
    let _ignored = stop_tx.send(true);
    let drain = shared.live().config.limits.drain_timeout;
    // Accept loops end on the stop signal; then drain.
    let g = graceful.lock().ok().and_then(|mut g| g.take());
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if let Some(g) = g {
        match tokio::time::timeout(drain, g.shutdown()).await {
            Ok(()) => info!("drained"),
            Err(_) => warn!(timeout = ?drain, "drain timed out; closing the remaining connections"),
        }
    }
    Ok(())
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    is_tls: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
    graceful: Arc<Mutex<Option<hyper_util::server::graceful::GracefulShutdown>>>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let guard = match admit(&shared, peer.ip()) {
            Ok(g) => g,
            Err(why) => {
                shared
                    .metrics
                    .connections_refused
                    .get_or_create(&ResultLabels { result: why })
                    .inc();
                debug!(peer = %peer, limit = why, "connection refused by limit");
                drop(tcp);
                continue;
            }
        };
        let _ignored = tcp.set_nodelay(true);
        let shared = shared.clone();
        let watcher = graceful
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|g| g.watcher()));
        tokio::spawn(async move {
            let Some(watcher) = watcher else { return };
            serve_connection(shared, tcp, peer, is_tls, watcher, guard).await;
        });
    }
}

type ResponseFuture = Pin<
    Box<dyn Future<Output = std::result::Result<Response<Body>, std::convert::Infallible>> + Send>,
>;

/// Per-connection facts the router needs.
#[derive(Clone, Debug)]
struct ConnInfo {
    peer: SocketAddr,
    tls: bool,
    /// SHA-256 of the verified client certificate, if one was presented.
    client_cert: Option<String>,
}

async fn serve_connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    is_tls: bool,
    watcher: hyper_util::server::graceful::Watcher,
    _guard: ConnGuard,
) {
    let live = shared.live();
    let limits = live.config.limits.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(limits.header_read_timeout);
    if is_tls {
        let acceptor = tokio_rustls::TlsAcceptor::from(live.tls.clone());
        let started = Instant::now();
        let stream =
            match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let class = if e.to_string().contains("certificate") {
                        "bad_certificate"
                    } else {
                        "error"
                    };
                    shared
                        .metrics
                        .tls_handshakes
                        .get_or_create(&ResultLabels { result: class })
                        .inc();
                    info!(peer = %peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    shared
                        .metrics
                        .tls_handshakes
                        .get_or_create(&ResultLabels { result: "timeout" })
                        .inc();
                    debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
        shared
            .metrics
            .tls_handshakes
            .get_or_create(&ResultLabels { result: "ok" })
            .inc();
        let (_, conn) = stream.get_ref();
        let client_cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| crate::pki::fingerprint(c));
        debug!(
            peer = %peer,
            version = ?conn.protocol_version(),
            suite = ?conn.negotiated_cipher_suite().map(|s| s.suite()),
            alpn = ?conn.alpn_protocol().map(String::from_utf8_lossy),
            client_cert = client_cert.is_some(),
            handshake_ms = started.elapsed().as_millis() as u64,
            "TLS established"
        );
        let info = ConnInfo {
            peer,
            tls: true,
            client_cert,
        };
        let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
        let svc = service(shared.clone(), info);
        let conn = builder.serve_connection(io, svc).into_owned();
        if let Err(e) = watcher.watch(conn).await {
            debug!(peer = %peer, error = %e, "connection ended with an error");
        }
    } else {
        let info = ConnInfo {
            peer,
            tls: false,
            client_cert: None,
        };
        let io = TokioIo::new(IdleTimeout::new(tcp, limits.idle_timeout));
        let svc = service(shared.clone(), info);
        let conn = builder.http1_only().serve_connection(io, svc).into_owned();
        if let Err(e) = watcher.watch(conn).await {
            debug!(peer = %peer, error = %e, "connection ended with an error");
        }
    }
}

fn service(
    shared: Arc<Shared>,
    info: ConnInfo,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = std::convert::Infallible,
    Future = ResponseFuture,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let info = info.clone();
        Box::pin(async move {
            let method = req.method().clone();
            let path = req.uri().path().to_owned();
            let (route, resp) = route(&shared, &info, req).await;
            let status = resp.status().as_u16();
            let labels = RouteLabels { route, status };
            shared.metrics.requests.get_or_create(&labels).inc();
            debug!(peer = %info.peer, method = %method, path = %path, route, status, "request");
            let counter = shared.metrics.bytes.get_or_create(&labels).clone();
            let (parts, body) = resp.into_parts();
            let body = CountingBody {
                inner: body,
                counter,
            }
            .boxed_unsync();
            Ok::<_, std::convert::Infallible>(Response::from_parts(parts, body))
        }) as ResponseFuture
    })
}

async fn route(
    shared: &Arc<Shared>,
    info: &ConnInfo,
    req: Request<Incoming>,
) -> (&'static str, Response<Body>) {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let is_get = method == Method::GET || method == Method::HEAD;
    let live = shared.live();
    // First-stage artifacts: the only thing plain HTTP serves.
    if let Some(fs) = &live.config.first_stage {
        let prefix = if fs.path.is_empty() {
            "/".to_owned()
        } else {
            format!("/{}/", fs.path)
        };
        if let Some(file) = path.strip_prefix(&prefix) {
            if let Some(target) = fs.files.get(file) {
                if !is_get {
                    return (
                        "first_stage",
                        text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD"),
                    );
                }
                return ("first_stage", serve_first_stage(shared, target, &req).await);
            }
        }
    }
    if !info.tls {
        return ("other", text(StatusCode::NOT_FOUND, "not found"));
    }
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    match (segs.first().copied().unwrap_or(""), segs.get(1).copied()) {
        (sub @ ("metadata" | "targets"), Some(name)) => {
            let route = if sub == "metadata" {
                "metadata"
            } else {
                "targets"
            };
            if !is_get {
                return (route, text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD"));
            }
            if !is_flat_name(name) {
                // `..`, `%2e%2e`, `a/b`, hidden files: never a repository file.
                return (route, text(StatusCode::NOT_FOUND, "not found"));
            }
            let Some(snap) = shared.snapshot() else {
                return (
                    route,
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no verified repository yet",
                    ),
                );
            };
            let cache = if name == "timestamp.json" {
                "no-cache"
            } else {
                "public, max-age=31536000, immutable"
            };
            let dir = snap.dir.join(sub);
            (
                route,
                files::serve(&dir, name, &method, req.headers(), cache).await,
            )
        }
        ("metrics", None) if is_get => {
            let body = shared.metrics.encode(chrono::Utc::now());
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let (body, content_type) = if crate::metrics::wants_openmetrics(accept) {
                (body, crate::metrics::CONTENT_TYPE)
            } else {
                (
                    crate::metrics::to_prometheus_text(&body),
                    crate::metrics::TEXT_CONTENT_TYPE,
                )
            };
            let mut r = Response::new(full(body));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            ("metrics", r)
        }
        ("healthz", None) if is_get => match shared.snapshot() {
            Some(s) => (
                "healthz",
                text(
                    StatusCode::OK,
                    format!("ok timestamp={}", s.versions.timestamp),
                ),
            ),
            None => (
                "healthz",
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no verified repository yet",
                ),
            ),
        },
        ("v1", Some(rest)) => api(shared, info, &live, rest, req).await,
        _ => ("other", text(StatusCode::NOT_FOUND, "not found")),
    }
}

async fn serve_first_stage(
    shared: &Arc<Shared>,
    target: &str,
    req: &Request<Incoming>,
) -> Response<Body> {
    let Some(snap) = shared.snapshot() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no verified repository yet",
        );
    };
    match snap.targets.get(target) {
        Some(t) if t.kind() == Some("stage1") => {
            files::serve(
                &snap.dir.join("targets"),
                &t.file,
                req.method(),
                req.headers(),
                "no-cache",
            )
            .await
        }
        Some(_) => {
            warn!(
                target,
                "first_stage maps to a target that is not of kind stage1; refusing"
            );
            text(StatusCode::NOT_FOUND, "not found")
        }
        None => text(StatusCode::NOT_FOUND, "not found"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    node: String,
    csr_pem: String,
}

async fn read_body(
    req: Request<Incoming>,
    max: usize,
) -> std::result::Result<Bytes, Response<Body>> {
    match http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large or broken",
        )),
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn api(
    shared: &Arc<Shared>,
    info: &ConnInfo,
    live: &Live,
    rest: &str,
    req: Request<Incoming>,
) -> (&'static str, Response<Body>) {
    let now = chrono::Utc::now();
    let max_body = live.config.limits.max_request_body_bytes;
    match (req.method().clone(), rest) {
        (Method::POST, "enroll") => {
            let body = match read_body(req, max_body).await {
                Ok(b) => b,
                Err(r) => return ("enroll", r),
            };
            let Ok(b) = serde_json::from_slice::<EnrollBody>(&body) else {
                return (
                    "enroll",
                    text(StatusCode::BAD_REQUEST, "want JSON {node, csr_pem}"),
                );
            };
            let store = shared.store.clone();
            let rack = live.rack.clone();
            let from = info.peer.ip().to_string();
            let max = live.config.limits.max_pending_enrollments;
            let res = tokio::task::spawn_blocking(move || {
                store.submit(&rack, &b.node, &b.csr_pem, &from, now, max)
            })
            .await;
            match res {
                Ok(Ok(p)) => {
                    info!(node = %p.node, id = %p.id, key_fingerprint = %p.key_fingerprint, peer = %info.peer, "enrollment request waiting for approval");
                    (
                        "enroll",
                        json(
                            StatusCode::ACCEPTED,
                            &serde_json::json!({"id": p.id, "node": p.node, "key_fingerprint": p.key_fingerprint, "status": "pending"}),
                        ),
                    )
                }
                Ok(Err(e)) => {
                    info!(peer = %info.peer, error = %e, "enrollment request refused");
                    ("enroll", text(StatusCode::BAD_REQUEST, e.to_string()))
                }
                Err(_) => (
                    "enroll",
                    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
                ),
            }
        }
        (Method::GET, r) if r.starts_with("enroll/") => {
            let id = &r["enroll/".len()..];
            let ca_pem = std::fs::read_to_string(&live.config.pki.ca_cert).unwrap_or_default();
            match shared.store.status(id) {
                RequestStatus::Pending => (
                    "enroll",
                    json(
                        StatusCode::ACCEPTED,
                        &serde_json::json!({"id": id, "status": "pending"}),
                    ),
                ),
                RequestStatus::Issued(rec) => (
                    "enroll",
                    json(
                        StatusCode::OK,
                        &serde_json::json!({
                            "id": id, "status": "issued", "node": rec.node, "cert_pem": rec.cert_pem, "ca_pem": ca_pem,
                            "fingerprint": rec.fingerprint, "not_after": rec.not_after,
                        }),
                    ),
                ),
                RequestStatus::Denied => (
                    "enroll",
                    json(
                        StatusCode::FORBIDDEN,
                        &serde_json::json!({"id": id, "status": "denied"}),
                    ),
                ),
                RequestStatus::Unknown => {
                    ("enroll", text(StatusCode::NOT_FOUND, "no such request"))
                }
            }
        }
        (method, r @ ("node/report" | "node/self")) => {
            let route = if r == "node/report" { "report" } else { "node" };
            // Per-node endpoints: a verified client certificate that bootd
            // issued, not revoked, for a node still in the rack.
            let Some(fp) = &info.client_cert else {
                return (
                    route,
                    text(StatusCode::UNAUTHORIZED, "a client certificate is required"),
                );
            };
            let node = shared
                .identities
                .read()
                .ok()
                .and_then(|ids| ids.by_fingerprint.get(fp).cloned());
            let Some(node) = node.filter(|n| live.rack.node_by_name(n).is_some()) else {
                info!(peer = %info.peer, cert = %fp, "client certificate not issued to a current node");
                return (
                    route,
                    text(StatusCode::FORBIDDEN, "certificate not recognised"),
                );
            };
            match (method, route) {
                (Method::POST, "report") => {
                    let body = match read_body(req, max_body).await {
                        Ok(b) => b,
                        Err(r) => return (route, r),
                    };
                    let report: NodeReport = match serde_json::from_slice(&body) {
                        Ok(r) => r,
                        Err(e) => {
                            return (
                                route,
                                text(StatusCode::BAD_REQUEST, format!("bad report: {e}")),
                            )
                        }
                    };
                    let store = shared.store.clone();
                    let n = node.clone();
                    match tokio::task::spawn_blocking(move || store.record_report(&n, report, now))
                        .await
                    {
                        Ok(Ok(r)) => {
                            note_report_metrics(&shared.metrics, &r);
                            info!(node = %node, slot = ?r.report.slot, version = %r.report.version, confirmed = r.report.confirmed, "node report");
                            (
                                route,
                                json(
                                    StatusCode::OK,
                                    &serde_json::json!({"node": node, "recorded": true}),
                                ),
                            )
                        }
                        Ok(Err(e)) => {
                            error!(node = %node, error = %e, "cannot store node report");
                            (
                                route,
                                text(StatusCode::INTERNAL_SERVER_ERROR, "cannot store report"),
                            )
                        }
                        Err(_) => (
                            route,
                            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
                        ),
                    }
                }
                (Method::GET, "node") => {
                    let n = live.rack.node_by_name(&node);
                    let groups: Vec<String> = n
                        .map(|n| n.groups.iter().cloned().collect())
                        .unwrap_or_default();
                    let assigned: Vec<serde_json::Value> = shared
                        .snapshot()
                        .map(|s| {
                            s.targets
                                .iter()
                                .filter(|(_, t)| assigned_to(t, &node, &groups))
                                .map(|(name, t)| serde_json::json!({"name": name, "length": t.length, "sha256": t.sha256, "racklet": t.racklet}))
                                .collect()
                        })
                        .unwrap_or_default();
                    (
                        route,
                        json(
                            StatusCode::OK,
                            &serde_json::json!({"node": node, "groups": groups, "assigned": assigned}),
                        ),
                    )
                }
                _ => (
                    route,
                    text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                ),
            }
        }
        _ => ("other", text(StatusCode::NOT_FOUND, "not found")),
    }
}

/// Whether signed metadata assigns a target to this node (by name or group).
/// Informational: the node checks the same signed metadata itself.
fn assigned_to(t: &crate::repo::TargetInfo, node: &str, groups: &[String]) -> bool {
    let Some(assign) = t.racklet.as_ref().and_then(|r| r.get("assign")) else {
        return false;
    };
    let has = |key: &str, v: &str| {
        assign
            .get(key)
            .and_then(|a| a.as_array())
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(v)))
    };
    has("nodes", node) || groups.iter().any(|g| has("groups", g))
}

fn note_report_metrics(m: &Metrics, r: &crate::nodes::Report) {
    m.node_last_seen
        .get_or_create(&NodeLabels {
            node: r.node.clone(),
        })
        .set(r.reported_at.timestamp() as f64);
    // One series per node: drop the node's previous booted labels.
    let labels = BootedLabels {
        node: r.node.clone(),
        version: r.report.version.clone(),
        slot: format!("{:?}", r.report.slot),
        confirmed: r.report.confirmed.to_string(),
    };
    if let Ok(mut current) = m.booted_labels.lock() {
        if let Some(old) = current.insert(r.node.clone(), labels.clone()) {
            m.node_booted.remove(&old);
        }
    }
    m.node_booted.get_or_create(&labels).set(1);
}

// ---------------------------------------------------------------------------
// Background loops.

fn file_stamp(p: &std::path::Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

async fn reconcile_loop(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let stamps = |c: &Config| {
        [
            c.path.as_deref().and_then(file_stamp),
            file_stamp(&c.rack_file),
            file_stamp(&c.pki.server_cert),
            file_stamp(&c.pki.server_key),
            file_stamp(&c.pki.ca_cert),
        ]
    };
    let mut seen = stamps(&shared.live().config);
    loop {
        let interval = shared.live().config.reload_interval;
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        // Identities: approvals and revocations made by the CLI.
        let store = shared.store.clone();
        if let Ok(ids) = tokio::task::spawn_blocking(move || store.identities()).await {
            if let Ok(mut cur) = shared.identities.write() {
                if **cur != ids {
                    info!(
                        issued = ids.by_fingerprint.len(),
                        revoked = ids.revoked.len(),
                        "node identities reloaded"
                    );
                    *cur = Arc::new(ids);
                }
            }
        }
        let live = shared.live();
        let now_stamps = stamps(&live.config);
        if now_stamps == seen {
            continue;
        }
        seen = now_stamps;
        let Some(path) = live.config.path.clone() else {
            continue;
        };
        let result = (|| {
            let config = Config::load(&path)?;
            let rack = Rack::load(&config.rack_file)?;
            let tls = tls::server_config(&config.pki, shared.identities.clone())?;
            Ok::<_, crate::Error>((config, rack, tls))
        })();
        match result {
            Ok((config, rack, tls)) => {
                if config.https != live.config.https || config.plain_http != live.config.plain_http
                {
                    warn!("listen addresses changed: that takes a restart; everything else is applied");
                }
                if config.repository != live.config.repository
                    || config.state_dir != live.config.state_dir
                {
                    warn!("repository or state_dir changed: that takes a restart; everything else is applied");
                }
                info!(path = %path.display(), nodes = rack.nodes.len(), "configuration reloaded");
                shared
                    .metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "ok" })
                    .inc();
                if let Ok(mut l) = shared.live.write() {
                    *l = Arc::new(Live {
                        config: Arc::new(config),
                        rack: Arc::new(rack),
                        tls,
                    });
                }
            }
            Err(e) => {
                error!(error = %e, "configuration change refused; keeping the running configuration");
                shared
                    .metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
            }
        }
    }
}

async fn publish_loop(
    shared: Arc<Shared>,
    publisher: Arc<Publisher>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failed: Option<(String, Instant, String)> = None;
    let mut first = true;
    let mut tried_recovery = false;
    loop {
        let interval = shared.live().config.repository.poll_interval;
        if !first {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        first = false;
        let hash = match publisher.source_timestamp_sha256().await {
            Ok(h) => h,
            Err(e) => {
                if shared.snapshot().is_none() && !tried_recovery {
                    tried_recovery = true;
                    recover(&shared, &publisher).await;
                }
                debug!(error = %e, "repository source not readable");
                continue;
            }
        };
        let current = shared.snapshot();
        if let Some(cur) = current.as_ref().filter(|c| c.timestamp_sha256 == hash) {
            maybe_resign_timestamp(&shared, cur).await;
            continue;
        }
        if let Some((h, at, _)) = &failed {
            if *h == hash && at.elapsed() < interval * 10 {
                continue;
            }
        }
        let p = publisher.clone();
        let cur = current.clone();
        let handle = tokio::runtime::Handle::current();
        let res = tokio::task::spawn_blocking(move || {
            handle.block_on(p.verify_and_stage(cur.as_deref()))
        })
        .await;
        match res {
            Ok(Ok(snap)) => {
                install(&shared, snap);
                failed = None;
            }
            Ok(Err(e)) => {
                if shared.snapshot().is_none() && !tried_recovery {
                    tried_recovery = true;
                    recover(&shared, &publisher).await;
                }
                let msg = e.to_string();
                let again = failed
                    .as_ref()
                    .is_some_and(|(h, _, m)| *h == hash && *m == msg);
                if !again {
                    shared
                        .metrics
                        .publishes
                        .get_or_create(&ResultLabels { result: "refused" })
                        .inc();
                    error!(error = %msg, serving = ?shared.snapshot().map(|c| c.versions.timestamp), "publish refused; the last good repository stays in service");
                }
                failed = Some((hash, Instant::now(), msg));
            }
            Err(e) => error!(error = %e, "verification task failed"),
        }
    }
}

/// Serves the snapshot this bootd served last, re-verified (start-up only).
async fn recover(shared: &Arc<Shared>, publisher: &Arc<Publisher>) {
    let p = publisher.clone();
    let handle = tokio::runtime::Handle::current();
    let res = tokio::task::spawn_blocking(move || handle.block_on(p.recover_last_served())).await;
    match res {
        Ok(Some(Ok(snap))) => {
            warn!(timestamp = snap.versions.timestamp, "source unavailable or refused at start-up; serving the last verified repository again");
            install(shared, snap);
        }
        Ok(Some(Err(e))) => error!(error = %e, "the last served repository no longer verifies"),
        Ok(None) | Err(_) => {}
    }
}

fn install(shared: &Arc<Shared>, snap: Snapshot) {
    info!(
        timestamp = snap.versions.timestamp,
        snapshot = snap.versions.snapshot,
        targets = snap.versions.targets,
        root = snap.versions.root,
        files = snap.targets.len(),
        dir = %snap.dir.display(),
        "verified publish taken into service"
    );
    let m = &shared.metrics;
    m.publishes
        .get_or_create(&ResultLabels { result: "ok" })
        .inc();
    for (role, v) in [
        ("root", snap.versions.root),
        ("targets", snap.versions.targets),
        ("snapshot", snap.versions.snapshot),
        ("timestamp", snap.versions.timestamp),
    ] {
        m.repo_version
            .get_or_create(&RoleLabels { role })
            .set(v as i64);
    }
    if let Ok(mut e) = m.expiries.lock() {
        *e = snap.expires.clone();
    }
    if let Ok(mut s) = shared.snapshot.write() {
        *s = Some(Arc::new(snap));
    }
}

/// The online timestamp role: re-sign `timestamp.json` in the local
/// repository (with imgsign's library, atomically) when the one being served
/// expires within the configured margin. The next poll then verifies and
/// serves it like any other publish.
async fn maybe_resign_timestamp(shared: &Arc<Shared>, cur: &Snapshot) {
    let live = shared.live();
    let repo = &live.config.repository;
    let (Some(role), crate::config::Source::Local(dir)) = (&repo.timestamp, &repo.source) else {
        return;
    };
    let Some(expires) = cur
        .expires
        .iter()
        .find(|(r, _)| *r == "timestamp")
        .map(|(_, t)| *t)
    else {
        return;
    };
    let now = chrono::Utc::now().timestamp();
    if expires - now > role.refresh_margin.as_secs() as i64 {
        return;
    }
    let (dir, key, lifetime) = (dir.clone(), role.key.clone(), role.lifetime);
    let res = tokio::task::spawn_blocking(move || {
        let key = imgsign::keys::SigningKeyPair::load(&key.to_string_lossy()).map_err(Box::new)?;
        let lifetime = jiff::SignedDuration::try_from(lifetime)
            .map_err(|e| Box::new(imgsign::Error::Invalid(e.to_string())))?;
        imgsign::timestamp::refresh(&dir, &key, lifetime, jiff::Timestamp::now()).map_err(Box::new)
    })
    .await;
    match res {
        Ok(Ok(ts)) => {
            shared
                .metrics
                .timestamp_resigns
                .get_or_create(&ResultLabels { result: "ok" })
                .inc();
            info!(version = ts.signed.version.get(), expires = %ts.signed.expires, "re-signed timestamp.json");
        }
        Ok(Err(e)) => {
            shared
                .metrics
                .timestamp_resigns
                .get_or_create(&ResultLabels { result: "error" })
                .inc();
            error!(error = %e, "cannot re-sign timestamp.json");
        }
        Err(e) => error!(error = %e, "timestamp task failed"),
    }
}

// ---------------------------------------------------------------------------
// IO helpers.

/// Counts response body bytes into a metric as they are sent.
struct CountingBody {
    inner: Body,
    counter: prometheus_client::metrics::counter::Counter,
}

impl hyper::body::Body for CountingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, std::io::Error>>> {
        let p = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &p {
            if let Some(d) = f.data_ref() {
                self.counter.inc_by(d.len() as u64);
            }
        }
        p
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Closes a connection on which no byte has moved, in either direction,
/// for `timeout` (idle keep-alive connections, stalled clients).
struct IdleTimeout<T> {
    inner: T,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<T> IdleTimeout<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn progress(&mut self) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.sleep.as_mut().reset(deadline);
    }

    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "idle timeout",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.progress();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progress();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progress();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
