//! Request routing and the handlers: repository files, first-stage files,
//! metrics, health, enrollment, signed time; the per-node (mTLS) API is
//! [`node`].

mod node;

pub(crate) use node::note_report_metrics;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tracing::{error, info, warn};

use crate::config::{FirstStage, FirstStageTransport};
use crate::files::{self, full, text, Body};
use crate::firststage;
use bootd_api::{paths, EnrollAnswer, EnrollRequest, IssuedCert};

use crate::nodes::RequestStatus;
use crate::repo::is_flat_name;
use crate::state::{ConnInfo, Live, Shared};
use node::node_of;

pub(crate) async fn route(
    shared: &Arc<Shared>,
    info: &ConnInfo,
    req: Request<Incoming>,
) -> (&'static str, Response<Body>) {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let is_get = method == Method::GET || method == Method::HEAD;
    let live = shared.live();
    // First-stage artifacts: the only thing plain HTTP serves, and only
    // from entries whose transport allows it.
    let rel = path.strip_prefix('/').unwrap_or(&path);
    let hit = live
        .config
        .first_stage
        .iter()
        .find_map(|fs| fs.file_for(rel).map(|file| (fs, file)));
    if let Some((fs, file)) = hit {
        if info.tls || fs.transport == FirstStageTransport::Http {
            if !is_get {
                return (
                    "first_stage",
                    text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD"),
                );
            }
            return (
                "first_stage",
                serve_first_stage(shared, fs, file, &req).await,
            );
        }
    }
    if !info.tls {
        return ("other", text(StatusCode::NOT_FOUND, "not found"));
    }
    let rest = path.strip_prefix('/').unwrap_or(&path);
    let (first, second) = match rest.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    match (first, second) {
        (sub @ ("metadata" | "targets"), Some(name)) => {
            let route = if sub == "metadata" {
                "metadata"
            } else {
                "targets"
            };
            if !is_get {
                return (route, text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD"));
            }
            if live.config.repository.require_client_cert {
                if let Err((status, why)) = node_of(shared, info, &live) {
                    return (route, text(status, why));
                }
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
            let files = if sub == "metadata" {
                &snap.cache.metadata
            } else {
                &snap.cache.targets
            };
            (
                route,
                files::serve(&snap.dir, sub, files, name, &method, req.headers(), cache).await,
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
    entry: &FirstStage,
    file: &str,
    req: &Request<Incoming>,
) -> Response<Body> {
    let Some(snap) = shared.snapshot() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no verified repository yet",
        );
    };
    let Some(target) = entry.files.get(file) else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    match snap.targets.get(target) {
        Some(t) if t.kind() == Some("stage1") => {
            if let Err(why) = firststage::pi_pair_verdict(shared, &snap, entry).await {
                let path = &entry.path;
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not serving the Pi boot.img/boot.sig of /{path}: {why}"),
                );
            }
            files::serve(
                &snap.dir,
                "targets",
                &snap.cache.targets,
                &t.file,
                req.method(),
                req.headers(),
                "no-cache",
            )
            .await
        }
        Some(_) => {
            warn!(
                target = target.as_str(),
                "first_stage maps to a target that is not of kind stage1; refusing"
            );
            text(StatusCode::NOT_FOUND, "not found")
        }
        None => text(StatusCode::NOT_FOUND, "not found"),
    }
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

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `GET v1/time?nonce=…`: the nonce and bootd's clock, signed with the
/// online timestamp key (`bootd_api::time`).
fn signed_time(shared: &Shared, live: &Live, query: Option<&str>) -> Response<Body> {
    let count = |result: &'static str| {
        shared
            .metrics
            .time_statements
            .get_or_create(&crate::metrics::ResultLabels { result })
            .inc();
    };
    let Some(nonce) = query.and_then(bootd_api::time::parse_query) else {
        count("bad_nonce");
        return text(
            StatusCode::BAD_REQUEST,
            "want ?nonce= and 64 hex digits (32 random bytes)",
        );
    };
    let Some(role) = &live.config.repository.timestamp else {
        count("no_key");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "this bootd holds no online timestamp key (repository.timestamp), so it cannot sign time",
        );
    };
    let signed = shared
        .time_key
        .get(&role.key)
        .and_then(|k| crate::time::sign(&k, &nonce, chrono::Utc::now()));
    match signed {
        Ok(t) => {
            count("ok");
            json(StatusCode::OK, &t)
        }
        Err(e) => {
            count("error");
            error!(error = %e, "cannot sign a time statement");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot sign a time statement (see bootd's log)",
            )
        }
    }
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
        (Method::GET, "time") => ("time", signed_time(shared, live, req.uri().query())),
        (Method::POST, "enroll") => {
            let body = match read_body(req, max_body).await {
                Ok(b) => b,
                Err(r) => return ("enroll", r),
            };
            let Ok(b) = serde_json::from_slice::<EnrollRequest>(&body) else {
                return (
                    "enroll",
                    text(StatusCode::BAD_REQUEST, "want JSON {node, csr_pem}"),
                );
            };
            // The node the request claims to be (not yet proven: that is
            // the operator's approval).
            tracing::Span::current().record("node", b.node.as_str());
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
                            &EnrollAnswer::Pending {
                                id: p.id,
                                node: Some(p.node),
                                key_fingerprint: Some(p.key_fingerprint),
                            },
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
        (Method::GET, r) if paths::parse_enroll_status(r).is_some() => {
            let id = paths::parse_enroll_status(r).unwrap_or_default();
            let ca_pem = std::fs::read_to_string(&live.config.pki.ca_cert).unwrap_or_default();
            match shared.store.status(id) {
                RequestStatus::Pending => (
                    "enroll",
                    json(
                        StatusCode::ACCEPTED,
                        &EnrollAnswer::Pending {
                            id: id.to_owned(),
                            node: None,
                            key_fingerprint: None,
                        },
                    ),
                ),
                RequestStatus::Issued(rec) => (
                    "enroll",
                    json(
                        StatusCode::OK,
                        &EnrollAnswer::Issued(IssuedCert {
                            id: id.to_owned(),
                            node: rec.node,
                            cert_pem: rec.cert_pem,
                            ca_pem,
                            fingerprint: rec.fingerprint,
                            not_after: rec
                                .not_after
                                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        }),
                    ),
                ),
                RequestStatus::Denied => (
                    "enroll",
                    json(
                        StatusCode::FORBIDDEN,
                        &EnrollAnswer::Denied { id: id.to_owned() },
                    ),
                ),
                RequestStatus::Unknown => {
                    ("enroll", text(StatusCode::NOT_FOUND, "no such request"))
                }
            }
        }
        (method, r @ ("node/report" | "node/self" | "node/refusal")) => {
            node::per_node(shared, info, live, r, method, req, now, max_body).await
        }
        _ => ("other", text(StatusCode::NOT_FOUND, "not found")),
    }
}
