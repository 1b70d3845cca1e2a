//! The per-node endpoints (`v1/node/report`, `v1/node/refusal`,
//! `v1/node/self`): a verified client certificate that bootd issued, not
//! revoked, for a node still in the rack. The node is always the one its
//! certificate names, never one a body claims.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use tracing::{error, info, warn};

use super::{json, read_body};
use crate::files::{text, Body};
use crate::metrics::{BootedLabels, Metrics, NodeLabels};
use crate::state::{ConnInfo, Live, Shared};
use bootd_api::{AssignedTarget, NodeSelf, ReportAck};
use racklet_release::ReleaseInfo;

/// One of the per-node endpoints `r` (`node/report`, `node/refusal`,
/// `node/self`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn per_node(
    shared: &Arc<Shared>,
    info: &ConnInfo,
    live: &Live,
    r: &str,
    method: Method,
    req: Request<Incoming>,
    now: chrono::DateTime<chrono::Utc>,
    max_body: usize,
) -> (&'static str, Response<Body>) {
    let route = match r {
        "node/report" => "report",
        "node/refusal" => "refusal",
        _ => "node",
    };
    let node = match node_of(shared, info, live) {
        Ok(n) => n,
        Err((status, why)) => return (route, text(status, why)),
    };
    let answer = match (method, route) {
        (Method::POST, "report") => {
            let stored = record(
                shared,
                req,
                max_body,
                &node,
                "report",
                move |store, n, report| store.record_report(n, report, now),
            )
            .await;
            stored.map(|r| {
                note_report_metrics(&shared.metrics, &r);
                info!(node = %node, slot = ?r.report.slot, version = %r.report.version, confirmed = r.report.confirmed, "node report");
            })
        }
        (Method::POST, "refusal") => {
            let stored = record(
                shared,
                req,
                max_body,
                &node,
                "refusal",
                move |store, n, refusal| store.record_refusal(n, refusal, now),
            )
            .await;
            stored.map(|r| {
                shared
                    .metrics
                    .node_refusals
                    .get_or_create(&crate::metrics::RefusalLabels {
                        node: node.clone(),
                        reason: r.report.reason.as_str(),
                    })
                    .inc();
                warn!(node = %node, reason = %r.report.reason, detail = %r.report.detail, "node refused an update");
            })
        }
        (Method::GET, "node") => {
            let n = live.rack.node_by_name(&node);
            let groups: Vec<String> = n
                .map(|n| n.groups.iter().cloned().collect())
                .unwrap_or_default();
            let assigned: Vec<AssignedTarget> = shared
                .snapshot()
                .map(|s| {
                    s.targets
                        .iter()
                        .filter_map(|(name, t)| assigned_to(name, t, &node, &groups))
                        .collect()
                })
                .unwrap_or_default();
            return (
                route,
                json(
                    StatusCode::OK,
                    &NodeSelf {
                        node,
                        groups,
                        assigned,
                    },
                ),
            );
        }
        _ => {
            return (
                route,
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            )
        }
    };
    match answer {
        Ok(()) => (
            route,
            json(
                StatusCode::OK,
                &ReportAck {
                    node,
                    recorded: true,
                },
            ),
        ),
        Err(r) => (route, r),
    }
}

/// A node's JSON body `T` (`what`: "report", "refusal"), stored by `store`
/// off the async threads. The answer to send instead on a body that does
/// not parse (400) or cannot be stored (500).
async fn record<T, R>(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    max_body: usize,
    node: &str,
    what: &'static str,
    store: impl FnOnce(&crate::nodes::NodeStore, &str, T) -> crate::error::Result<R> + Send + 'static,
) -> Result<R, Response<Body>>
where
    T: serde::de::DeserializeOwned + Send + 'static,
    R: Send + 'static,
{
    let body = read_body(req, max_body).await?;
    let value: T = serde_json::from_slice(&body)
        .map_err(|e| text(StatusCode::BAD_REQUEST, format!("bad {what}: {e}")))?;
    let nodes = shared.store.clone();
    let n = node.to_owned();
    match tokio::task::spawn_blocking(move || store(&nodes, &n, value)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => {
            error!(node = %node, error = %e, "cannot store a node's {what}");
            Err(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot store {what}"),
            ))
        }
        Err(_) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")),
    }
}

/// The node a request's client certificate identifies: one bootd issued,
/// not revoked (the TLS layer checked chain, validity and revocation), for
/// a node still in the rack description. Otherwise the refusal to send.
pub(super) fn node_of(
    shared: &Arc<Shared>,
    info: &ConnInfo,
    live: &Live,
) -> Result<String, (StatusCode, &'static str)> {
    let Some(fp) = &info.client_cert else {
        return Err((StatusCode::UNAUTHORIZED, "a client certificate is required"));
    };
    let node = shared
        .identities
        .read()
        .ok()
        .and_then(|ids| ids.by_fingerprint.get(fp).cloned());
    match node.filter(|n| live.rack.node_by_name(n).is_some()) {
        Some(n) => {
            // The request's span (server.rs) now says whose it is.
            tracing::Span::current().record("node", n.as_str());
            Ok(n)
        }
        None => {
            info!(peer = %info.peer, cert = %fp, "client certificate not issued to a current node");
            Err((StatusCode::FORBIDDEN, "certificate not recognised"))
        }
    }
}

/// The target, if its signed release facts assign it to this node (by
/// name, group or `all`). Informational: the node checks the same signed
/// metadata itself.
fn assigned_to(
    name: &str,
    t: &crate::repo::TargetInfo,
    node: &str,
    groups: &[String],
) -> Option<AssignedTarget> {
    let info = ReleaseInfo::deserialize(t.racklet.as_ref()?).ok()?;
    let node = racklet_hardware::NodeName::new(node).ok()?;
    info.assign
        .admits(&node, groups.iter().map(String::as_str))
        .then(|| AssignedTarget {
            name: name.to_owned(),
            length: t.length,
            sha256: t.sha256.clone(),
            racklet: Some(info),
        })
}

pub(crate) fn note_report_metrics(m: &Metrics, r: &crate::nodes::Report) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(assign: serde_json::Value) -> crate::repo::TargetInfo {
        crate::repo::TargetInfo {
            length: 1,
            sha256: String::new(),
            file: String::new(),
            racklet: Some(serde_json::json!({
                "kind": "os", "version": "1.0.0", "security_version": 1,
                "arch": "x86_64", "channel": "stable", "assign": assign,
            })),
        }
    }

    #[test]
    fn assignment_by_node_group_or_all() {
        let groups = vec!["workers".to_string()];
        let none: &[String] = &[];
        for (assign, node, groups, want) in [
            (
                serde_json::json!({"nodes": ["unit-3"]}),
                "unit-3",
                none,
                true,
            ),
            (
                serde_json::json!({"nodes": ["unit-3"]}),
                "unit-4",
                &groups[..],
                false,
            ),
            (
                serde_json::json!({"groups": ["workers"]}),
                "unit-4",
                &groups[..],
                true,
            ),
            (
                serde_json::json!({"groups": ["canary"]}),
                "unit-4",
                &groups[..],
                false,
            ),
            (serde_json::json!({"all": true}), "unit-9", none, true),
            (serde_json::json!({"all": false}), "unit-9", none, false),
        ] {
            let got = assigned_to("t", &target(assign.clone()), node, groups);
            assert_eq!(got.is_some(), want, "{assign} for {node}");
        }
        let mut no_meta = target(serde_json::json!({}));
        no_meta.racklet = None;
        assert!(assigned_to("t", &no_meta, "unit-1", &groups).is_none());
        // Release facts that do not parse assign nothing.
        let mut bad = target(serde_json::json!({"all": true}));
        bad.racklet = Some(serde_json::json!({"kind": "os", "assign": {"all": true}}));
        assert!(assigned_to("t", &bad, "unit-1", &groups).is_none());
    }
}
