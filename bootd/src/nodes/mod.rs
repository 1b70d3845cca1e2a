//! Node identity and node state, kept as one small JSON file per record
//! under the state directory, each written atomically:
//!
//! | path | what |
//! |---|---|
//! | `enroll/pending/<id>.json` | a CSR waiting for the operator ([`PendingRequest`]) |
//! | `enroll/issued/<id>.json` | an approved request and its certificate ([`IssuedRecord`]) |
//! | `enroll/denied/<id>.json` | a denied request |
//! | `revoked/<fingerprint>.json` | a revoked certificate ([`Revocation`]) |
//! | `reports/<node>.json` | a node's last report ([`Report`]) |
//!
//! The server writes pending requests and reports; the CLI (`bootd nodes …`)
//! approves, denies and revokes; the server re-reads the directory every
//! reload tick. No record depends on another file being written in the
//! same step, so a crash leaves every record old or new. All of it is
//! rebuildable: lose it and nodes enroll and report again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use racklet_hardware::Rack;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use bootd_api::NodeReport;

use crate::error::{Error, Result};
use crate::pki::{self, PkiFiles};
use racklet_fsio::{self as fsio, Mode};

/// The largest CSR (PEM) an enrollment request may carry.
const MAX_CSR: usize = 16 * 1024;

/// A certificate signing request waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequest {
    /// Request id (random hex), what the node polls with.
    pub id: String,
    /// The node the request claims to be.
    pub node: String,
    /// The CSR, PEM.
    pub csr_pem: String,
    /// SHA-256 of the requested public key: the node prints it; the operator compares.
    pub key_fingerprint: String,
    /// Client address the request came from.
    pub from: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// An approved request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedRecord {
    /// The request id.
    pub id: String,
    /// The node.
    pub node: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// SHA-256 of the certificate's DER.
    pub fingerprint: String,
    /// SHA-256 of the public key (as shown when pending).
    pub key_fingerprint: String,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// When it was approved.
    pub issued_at: DateTime<Utc>,
}

/// A revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// SHA-256 of the certificate's DER.
    pub fingerprint: String,
    /// The node it was issued to.
    pub node: String,
    /// When.
    pub revoked_at: DateTime<Utc>,
}

/// A stored report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The node (from its certificate, never from the body).
    pub node: String,
    /// What it said.
    #[serde(flatten)]
    pub report: NodeReport,
    /// When bootd received it.
    pub reported_at: DateTime<Utc>,
}

/// The state of an enrollment request, as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStatus {
    /// Waiting for the operator.
    Pending,
    /// Approved: here is the certificate.
    Issued(IssuedRecord),
    /// Denied by the operator.
    Denied,
    /// No such request.
    Unknown,
}

/// The identities the TLS layer needs: certificate fingerprint → node, and
/// revoked fingerprints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities {
    /// Issued, unrevoked certificates by fingerprint.
    pub by_fingerprint: HashMap<String, String>,
    /// Revoked certificate fingerprints.
    pub revoked: HashSet<String>,
}

/// One line of `bootd nodes list`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    /// Node name.
    pub node: String,
    /// Backplane slot.
    pub slot: u8,
    /// MAC address.
    pub mac: String,
    /// Groups.
    pub groups: Vec<String>,
    /// `enrolled`, `pending`, `revoked` or `none`.
    pub identity: String,
    /// Current certificate fingerprint.
    pub cert_fingerprint: Option<String>,
    /// Current certificate end of validity.
    pub cert_not_after: Option<DateTime<Utc>>,
    /// The last report.
    pub last_report: Option<Report>,
    /// The updates it refused, newest last (at most [`KEPT_REFUSALS`]).
    pub refusals: Vec<Refusal>,
}

/// How many refusals bootd keeps per node.
pub const KEPT_REFUSALS: usize = 20;

/// An update a node refused, as bootd keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// What the node said (the node comes from its certificate).
    #[serde(flatten)]
    pub report: bootd_api::RefusalReport,
    /// When bootd received it.
    pub reported_at: DateTime<Utc>,
}

/// The state directory's node records.
#[derive(Debug, Clone)]
pub struct NodeStore {
    dir: PathBuf,
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fsio::read(path)?;
    serde_json::from_slice(&bytes).map_err(|source| Error::StateRecord {
        path: path.to_owned(),
        source,
    })
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(v).map_err(|source| Error::StateRecord {
        path: path.to_owned(),
        source,
    })?;
    bytes.push(b'\n');
    Ok(fsio::write_atomic(path, &bytes, Mode::Public)?)
}

fn list_json<T: DeserializeOwned>(dir: &Path) -> Vec<T> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        match read_json(&p) {
            Ok(v) => out.push(v),
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "skipping unreadable state record")
            }
        }
    }
    out
}

fn new_id() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn is_id(s: &str) -> bool {
    s.len() == 24 && s.chars().all(|c| c.is_ascii_hexdigit())
}

impl NodeStore {
    /// The records under `state_dir`.
    pub fn new(state_dir: &Path) -> NodeStore {
        NodeStore {
            dir: state_dir.to_owned(),
        }
    }

    fn pending_dir(&self) -> PathBuf {
        self.dir.join("enroll").join("pending")
    }
    fn issued_dir(&self) -> PathBuf {
        self.dir.join("enroll").join("issued")
    }
    fn denied_dir(&self) -> PathBuf {
        self.dir.join("enroll").join("denied")
    }
    fn revoked_dir(&self) -> PathBuf {
        self.dir.join("revoked")
    }
    fn reports_dir(&self) -> PathBuf {
        self.dir.join("reports")
    }

    fn refusals_file(&self, node: &str) -> PathBuf {
        self.dir.join("refusals").join(format!("{node}.json"))
    }

    /// Appends an update `node` refused (its detail cut to
    /// [`bootd_api::MAX_REFUSAL_DETAIL`] bytes), keeping the last
    /// [`KEPT_REFUSALS`].
    pub fn record_refusal(
        &self,
        node: &str,
        mut report: bootd_api::RefusalReport,
        now: DateTime<Utc>,
    ) -> Result<Refusal> {
        if report.detail.len() > bootd_api::MAX_REFUSAL_DETAIL {
            let mut end = bootd_api::MAX_REFUSAL_DETAIL;
            while !report.detail.is_char_boundary(end) {
                end -= 1;
            }
            report.detail.truncate(end);
        }
        let r = Refusal {
            report,
            reported_at: now,
        };
        let mut all = self.refusals(node);
        all.push(r.clone());
        let drop = all.len().saturating_sub(KEPT_REFUSALS);
        all.drain(..drop);
        write_json(&self.refusals_file(node), &all)?;
        Ok(r)
    }

    /// The updates `node` refused, newest last.
    pub fn refusals(&self, node: &str) -> Vec<Refusal> {
        read_json(&self.refusals_file(node)).unwrap_or_default()
    }

    /// Records a node's CSR. The node must be in the rack and the CSR's
    /// signature valid; the same key for the same node returns the existing
    /// request. A node has at most one pending request: a new key replaces
    /// its older one (a node without a disk forgets its key at every boot,
    /// and must not fill the queue for the rest of the rack).
    pub fn submit(
        &self,
        rack: &Rack,
        node: &str,
        csr_pem: &str,
        from: &str,
        now: DateTime<Utc>,
        max_pending: usize,
    ) -> Result<PendingRequest> {
        if rack.node_by_name(node).is_none() {
            return Err(Error::UnknownNode {
                node: node.to_owned(),
            });
        }
        if csr_pem.len() > MAX_CSR {
            return Err(Error::CsrTooLong {
                node: node.to_owned(),
                len: csr_pem.len(),
                limit: MAX_CSR,
            });
        }
        let key_fingerprint = pki::check_csr(csr_pem)?;
        let pending = self.pending();
        if let Some(p) = pending
            .iter()
            .find(|p| p.node == node && p.key_fingerprint == key_fingerprint)
        {
            return Ok(p.clone());
        }
        let mut pending = pending;
        for old in pending.iter().filter(|p| p.node == node) {
            let path = self.pending_dir().join(format!("{}.json", old.id));
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(Error::WriteFile { path, source: e });
                }
            }
        }
        pending.retain(|p| p.node != node);
        if pending.len() >= max_pending {
            return Err(Error::TooManyPending {
                node: node.to_owned(),
                pending: pending.len(),
                limit: max_pending,
            });
        }
        let req = PendingRequest {
            id: new_id(),
            node: node.to_owned(),
            csr_pem: csr_pem.to_owned(),
            key_fingerprint,
            from: from.to_owned(),
            received_at: now,
        };
        write_json(&self.pending_dir().join(format!("{}.json", req.id)), &req)?;
        Ok(req)
    }

    /// Every pending request, oldest first.
    pub fn pending(&self) -> Vec<PendingRequest> {
        let mut v: Vec<PendingRequest> = list_json(&self.pending_dir());
        v.sort_by_key(|p| p.received_at);
        v
    }

    /// Every issued certificate record.
    pub fn issued(&self) -> Vec<IssuedRecord> {
        let mut v: Vec<IssuedRecord> = list_json(&self.issued_dir());
        v.sort_by_key(|r| r.issued_at);
        v
    }

    /// Every revocation.
    pub fn revocations(&self) -> Vec<Revocation> {
        list_json(&self.revoked_dir())
    }

    fn find_pending(&self, id: &str) -> Result<PendingRequest> {
        if !is_id(id) {
            return Err(Error::NoSuchRequest { id: id.to_owned() });
        }
        read_json(&self.pending_dir().join(format!("{id}.json")))
            .map_err(|_| Error::NoSuchRequest { id: id.to_owned() })
    }

    /// Approves a pending request: signs its CSR with the rack CA (the CA
    /// key is read here, by the CLI) and records the certificate.
    pub fn approve(
        &self,
        rack: &Rack,
        pki_files: &PkiFiles,
        id: &str,
        days: u32,
        now: DateTime<Utc>,
    ) -> Result<IssuedRecord> {
        let req = self.find_pending(id)?;
        if rack.node_by_name(&req.node).is_none() {
            return Err(Error::UnknownNode { node: req.node });
        }
        let cert = pki::issue_client_cert(pki_files, &req.csr_pem, &req.node, days, now)?;
        let rec = IssuedRecord {
            id: req.id.clone(),
            node: req.node.clone(),
            cert_pem: cert.cert_pem,
            fingerprint: cert.fingerprint,
            key_fingerprint: req.key_fingerprint,
            not_after: cert.not_after,
            issued_at: now,
        };
        write_json(&self.issued_dir().join(format!("{id}.json")), &rec)?;
        let pending = self.pending_dir().join(format!("{id}.json"));
        fs::remove_file(&pending).map_err(|source| Error::WriteFile {
            path: pending,
            source,
        })?;
        Ok(rec)
    }

    /// Denies a pending request.
    pub fn deny(&self, id: &str, now: DateTime<Utc>) -> Result<()> {
        let req = self.find_pending(id)?;
        write_json(
            &self.denied_dir().join(format!("{id}.json")),
            &serde_json::json!({"id": req.id, "node": req.node, "denied_at": now}),
        )?;
        let pending = self.pending_dir().join(format!("{id}.json"));
        fs::remove_file(&pending).map_err(|source| Error::WriteFile {
            path: pending,
            source,
        })
    }

    /// Where a request stands.
    pub fn status(&self, id: &str) -> RequestStatus {
        if !is_id(id) {
            return RequestStatus::Unknown;
        }
        let file = format!("{id}.json");
        if let Ok(rec) = read_json::<IssuedRecord>(&self.issued_dir().join(&file)) {
            return RequestStatus::Issued(rec);
        }
        if self.pending_dir().join(&file).exists() {
            return RequestStatus::Pending;
        }
        if self.denied_dir().join(&file).exists() {
            return RequestStatus::Denied;
        }
        RequestStatus::Unknown
    }

    /// Revokes every certificate issued to `node` (or the one with that
    /// fingerprint). Returns the fingerprints revoked.
    pub fn revoke(&self, node_or_fingerprint: &str, now: DateTime<Utc>) -> Result<Vec<String>> {
        let revoked = self.identities().revoked;
        let mut done = Vec::new();
        for rec in self.issued() {
            if (rec.node == node_or_fingerprint || rec.fingerprint == node_or_fingerprint)
                && !revoked.contains(&rec.fingerprint)
            {
                write_json(
                    &self.revoked_dir().join(format!("{}.json", rec.fingerprint)),
                    &Revocation {
                        fingerprint: rec.fingerprint.clone(),
                        node: rec.node.clone(),
                        revoked_at: now,
                    },
                )?;
                done.push(rec.fingerprint);
            }
        }
        Ok(done)
    }

    /// Issued and revoked fingerprints, for the TLS layer.
    pub fn identities(&self) -> Identities {
        let revoked: HashSet<String> = self
            .revocations()
            .into_iter()
            .map(|r| r.fingerprint)
            .collect();
        let by_fingerprint = self
            .issued()
            .into_iter()
            .filter(|r| !revoked.contains(&r.fingerprint))
            .map(|r| (r.fingerprint, r.node))
            .collect();
        Identities {
            by_fingerprint,
            revoked,
        }
    }

    /// Stores a node's report (the node name comes from its certificate).
    pub fn record_report(
        &self,
        node: &str,
        report: NodeReport,
        now: DateTime<Utc>,
    ) -> Result<Report> {
        let r = Report {
            node: node.to_owned(),
            report,
            reported_at: now,
        };
        write_json(&self.reports_dir().join(format!("{node}.json")), &r)?;
        Ok(r)
    }

    /// Every node's last report.
    pub fn reports(&self) -> BTreeMap<String, Report> {
        list_json::<Report>(&self.reports_dir())
            .into_iter()
            .map(|r| (r.node.clone(), r))
            .collect()
    }

    /// Every node of the rack with its identity and last report.
    pub fn list(&self, rack: &Rack) -> Vec<NodeRow> {
        let issued = self.issued();
        let ids = self.identities();
        let pending = self.pending();
        let mut reports = self.reports();
        rack.nodes
            .iter()
            .map(|n| {
                let name = n.name.as_str();
                let latest = issued.iter().rev().find(|r| r.node == name);
                let identity = match latest {
                    Some(r) if ids.revoked.contains(&r.fingerprint) => "revoked",
                    Some(_) => "enrolled",
                    None if pending.iter().any(|p| p.node == name) => "pending",
                    None => "none",
                };
                NodeRow {
                    node: name.to_owned(),
                    slot: n.slot,
                    mac: n.mac.to_string(),
                    groups: n.groups.iter().cloned().collect(),
                    identity: identity.to_owned(),
                    cert_fingerprint: latest.map(|r| r.fingerprint.clone()),
                    cert_not_after: latest.map(|r| r.not_after),
                    last_report: reports.remove(name),
                    refusals: self.refusals(name),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
