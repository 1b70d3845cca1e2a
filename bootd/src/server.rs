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
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use racklet_hardware::Rack;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn, Instrument};

use crate::config::Config;
use crate::error::Result;
use crate::files::Body;
use crate::metrics::{Metrics, ResultLabels, RouteLabels};
use crate::nodes::NodeStore;
use crate::repo::Publisher;
use crate::state::{ConnInfo, Live, Shared};
use crate::tls::{self, SharedIdentities};

/// The sockets bootd serves on, bound by the caller (so tests can bind
/// `127.0.0.1:0` and a supervisor can hand over sockets).
#[derive(Debug)]
pub struct Listeners {
    /// HTTPS listeners.
    pub https: Vec<TcpListener>,
    /// DANGER: plain-HTTP listeners, first-stage artifacts only.
    pub plain_http: Vec<TcpListener>,
    /// proxyDHCP sockets (UDP 67, and 4011), when configured.
    pub dhcp: Vec<(tokio::net::UdpSocket, crate::proxydhcp::policy::Port)>,
}

impl Listeners {
    /// Binds every address in the config.
    pub async fn bind(config: &Config) -> Result<Listeners> {
        let bind = |a: SocketAddr| async move {
            TcpListener::bind(a)
                .await
                .map_err(|source| crate::error::Error::Socket {
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
        let mut dhcp = Vec::new();
        if let Some(p) = &config.proxy_dhcp {
            use crate::proxydhcp::{bind as bind_udp, policy::Port, DHCP_PORT, PROXY_PORT};
            let any = std::net::Ipv4Addr::UNSPECIFIED;
            dhcp.push((
                bind_udp(&p.interface, std::net::SocketAddrV4::new(any, DHCP_PORT))?,
                Port::Dhcp,
            ));
            if p.answer_port_4011 {
                dhcp.push((
                    bind_udp(&p.interface, std::net::SocketAddrV4::new(any, PROXY_PORT))?,
                    Port::Proxy,
                ));
            }
        }
        Ok(Listeners {
            https,
            plain_http,
            dhcp,
        })
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
    let leases = match &config.proxy_dhcp {
        Some(p) => {
            let store = match crate::proxydhcp::LeaseStore::open(&config.state_dir) {
                Ok(s) => s,
                // Proxy mode hands out no address: an unreadable table
                // left from full-DHCP mode is not a reason to stay down.
                Err(e) if p.full_dhcp.is_none() => {
                    warn!(error = %e, "ignoring the lease table (proxy mode)");
                    crate::proxydhcp::LeaseStore::empty(&config.state_dir)
                }
                Err(e) => return Err(e),
            };
            if let Some(pool) = &p.full_dhcp {
                tracing::warn!(
                    first = %pool.first,
                    last = %pool.last,
                    "full-DHCP mode: bootd hands out addresses to the rack's nodes; \
                     only on a switch with no other DHCP server"
                );
            }
            Some(store)
        }
        None => None,
    };
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
        pi_checks: Default::default(),
        time_key: Default::default(),
    });
    for r in shared.store.reports().into_values() {
        crate::routes::note_report_metrics(&shared.metrics, &r);
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let graceful = Arc::new(Mutex::new(Some(graceful)));
    // Serving threads, one single-threaded runtime each, all accepting on
    // every listener (like nginx's worker processes): a connection lives on
    // the thread that accepted it, with no cross-thread wake-ups.
    let workers = shared.live().config.workers;
    let drain = shared.live().config.limits.drain_timeout;
    let mut threads = Vec::new();
    let all: Vec<(TcpListener, bool)> = listeners
        .https
        .into_iter()
        .map(|l| (l, true))
        .chain(listeners.plain_http.into_iter().map(|l| (l, false)))
        .collect();
    let mut std_listeners = Vec::new();
    for (l, is_tls) in all {
        let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        if is_tls {
            info!(addr = %addr, workers, "serving HTTPS");
        } else {
            warn!(addr = %addr, "serving PLAIN HTTP (first-stage artifacts only)");
        }
        let std = l
            .into_std()
            .map_err(|source| crate::error::Error::Socket { addr, source })?;
        std_listeners.push((std, is_tls));
    }
    for w in 0..workers {
        let mut mine = Vec::new();
        for (l, is_tls) in &std_listeners {
            let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let l = l
                .try_clone()
                .map_err(|source| crate::error::Error::Socket { addr, source })?;
            mine.push((l, *is_tls));
        }
        let (shared, stop_rx, graceful) = (shared.clone(), stop_rx.clone(), graceful.clone());
        let thread = std::thread::Builder::new()
            .name(format!("bootd-worker-{w}"))
            .spawn(move || worker(shared, mine, stop_rx, graceful, drain))
            .map_err(|source| crate::error::Error::Socket {
                addr: "worker thread".into(),
                source,
            })?;
        threads.push(thread);
    }
    drop(std_listeners);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::reconcile::reconcile_loop(
        shared.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(crate::reconcile::publish_loop(
        shared.clone(),
        publisher,
        stop_rx.clone(),
    ));
    for (socket, port) in listeners.dhcp {
        let (shared, stop) = (shared.clone(), stop_rx.clone());
        let leases = leases
            .clone()
            .expect("DHCP sockets exist only with proxy_dhcp");
        info!(port = ?port, "serving proxyDHCP (UEFI HTTP boot clients of this rack only)");
        tasks.spawn(async move {
            let policy = || {
                let live = shared.live();
                let p = live.config.proxy_dhcp.as_ref()?;
                let policy = crate::proxydhcp::policy::Policy::new(
                    p.server_ip,
                    &live.rack,
                    p.boot_urls.iter().map(|(a, u)| (*a, u.clone())).collect(),
                );
                Some((policy, p.full_dhcp.clone()))
            };
            if let Err(e) =
                crate::proxydhcp::serve(socket, port, policy, leases, &shared.metrics, stop).await
            {
                tracing::error!(error = %e, "proxyDHCP stopped");
            }
        });
    }

    shutdown.await;
    info!("shutting down: no new connections, draining in-flight requests");
    let _ignored = stop_tx.send(true);
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
    let _ignored = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ignored = t.join();
        }
    })
    .await;
    Ok(())
}

type Graceful = Arc<Mutex<Option<hyper_util::server::graceful::GracefulShutdown>>>;

/// One serving thread: accepts on every listener and runs its connections
/// until they are done (or the drain time is up) after the stop signal.
fn worker(
    shared: Arc<Shared>,
    listeners: Vec<(std::net::TcpListener, bool)>,
    stop: tokio::sync::watch::Receiver<bool>,
    graceful: Graceful,
    drain: Duration,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a serving thread");
            return;
        }
    };
    rt.block_on(async move {
        let tracker = tokio_util::task::TaskTracker::new();
        let mut loops = tokio::task::JoinSet::new();
        for (l, is_tls) in listeners {
            let _ignored = l.set_nonblocking(true);
            match TcpListener::from_std(l) {
                Ok(l) => {
                    loops.spawn(accept_loop(
                        shared.clone(),
                        l,
                        is_tls,
                        stop.clone(),
                        graceful.clone(),
                        tracker.clone(),
                    ));
                }
                Err(e) => tracing::error!(error = %e, "cannot serve a listener"),
            }
        }
        while loops.join_next().await.is_some() {}
        tracker.close();
        let _ignored = tokio::time::timeout(drain + Duration::from_secs(1), tracker.wait()).await;
    });
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    is_tls: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
    graceful: Graceful,
    tracker: tokio_util::task::TaskTracker,
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
        tracker.spawn(async move {
            let Some(watcher) = watcher else { return };
            serve_connection(shared, tcp, peer, is_tls, watcher, guard).await;
        });
    }
}

type ResponseFuture = Pin<
    Box<dyn Future<Output = std::result::Result<Response<Body>, std::convert::Infallible>> + Send>,
>;

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
        .max_concurrent_streams(128);
    // No HTTP/2 keep-alive pings: their traffic would count as activity and
    // keep an idle connection open forever; the idle timeout closes it.
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
        let io = TokioIo::new(crate::io::IdleTimeout::new(
            crate::io::Batched::new(stream),
            limits.idle_timeout,
        ));
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
        let io = TokioIo::new(crate::io::IdleTimeout::new(tcp, limits.idle_timeout));
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
        // Every line logged while handling the request carries who asked
        // what; `node` is filled in by the router once the client
        // certificate (or, for enrollment, the request) names one.
        let span = tracing::info_span!(
            "request",
            client = %info.peer,
            method = %req.method(),
            path = %req.uri().path(),
            node = tracing::field::Empty,
        );
        Box::pin(
            async move {
                let (route, resp) = crate::routes::route(&shared, &info, req).await;
                let status = resp.status().as_u16();
                let labels = RouteLabels { route, status };
                shared.metrics.requests.get_or_create(&labels).inc();
                debug!(route, status, "request");
                let counter = shared.metrics.bytes.get_or_create(&labels).clone();
                let (parts, body) = resp.into_parts();
                let body = crate::io::CountingBody {
                    inner: body,
                    counter,
                }
                .boxed_unsync();
                Ok::<_, std::convert::Infallible>(Response::from_parts(parts, body))
            }
            .instrument(span),
        ) as ResponseFuture
    })
}
