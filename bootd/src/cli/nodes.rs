//! `bootd nodes …`: enrollment approval (like a Kubernetes CSR) and state.

/// `bootd nodes` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum NodesCommand {
    /// Enrollment requests waiting for approval, with key fingerprints.
    Pending,
    /// Approve a request: sign the node's CSR with the rack CA.
    Approve {
        /// Request id as shown by `bootd nodes pending`.
        id: String,
    },
    /// Deny a request.
    Deny {
        /// Request id.
        id: String,
    },
    /// Revoke a node's certificates (by node name or certificate fingerprint).
    Revoke {
        /// Node name or certificate SHA-256.
        node: String,
    },
    /// Every node of the rack: identity and last report.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One node: every fact bootd holds about it, one per line (the
    /// `boot.img` SHA-256 its firmware verified in full).
    Show {
        /// Node name.
        node: String,
    },
}

pub fn run(config: bootd::Config, cmd: NodesCommand) -> anyhow::Result<()> {
    let store = bootd::nodes::NodeStore::new(&config.state_dir);
    let rack = racklet_hardware::Rack::load(&config.rack_file)?;
    let now = chrono::Utc::now();
    match cmd {
        NodesCommand::Pending => {
            let p = store.pending();
            if p.is_empty() {
                println!("no pending requests");
            }
            for r in p {
                println!(
                    "{}  node={}  from={}  received={}  key-sha256={}",
                    r.id,
                    r.node,
                    r.from,
                    r.received_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    r.key_fingerprint
                );
            }
        }
        NodesCommand::Approve { id } => {
            let rec = store.approve(&rack, &config.pki, &id, config.client_cert_days, now)?;
            println!(
                "approved {}: node {} key-sha256={} cert-sha256={} valid until {}",
                rec.id, rec.node, rec.key_fingerprint, rec.fingerprint, rec.not_after
            );
        }
        NodesCommand::Deny { id } => {
            store.deny(&id, now)?;
            println!("denied {id}");
        }
        NodesCommand::Revoke { node } => {
            let fps = store.revoke(&node, now)?;
            if fps.is_empty() {
                anyhow::bail!("no unrevoked certificate matches `{node}`");
            }
            for fp in fps {
                println!("revoked cert-sha256={fp}");
            }
        }
        NodesCommand::List { json } => {
            let rows = store.list(&rack);
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            println!(
                "{:<12} {:>4} {:<17} {:<9} {:<8} {:<12} {:<9} {:<20} {:<13} LAST REFUSAL",
                "NODE",
                "SLOT",
                "MAC",
                "IDENTITY",
                "BOOTED",
                "VERSION",
                "CONFIRMED",
                "LAST SEEN",
                "BOOT.IMG"
            );
            for r in rows {
                let (slot, version, confirmed, seen, boot_img) = match &r.last_report {
                    Some(rep) => (
                        format!("{:?}", rep.report.slot),
                        rep.report.version.clone(),
                        rep.report.confirmed.to_string(),
                        rep.reported_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        short_digest(rep.report.boot_img_sha256),
                    ),
                    None => (
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "never".into(),
                        "-".into(),
                    ),
                };
                let refusal = match r.refusals.last() {
                    Some(f) => format!(
                        "{} {}",
                        f.reported_at.format("%Y-%m-%dT%H:%M:%SZ"),
                        f.report.reason
                    ),
                    None => "-".into(),
                };
                println!(
                    "{:<12} {:>4} {:<17} {:<9} {:<8} {:<12} {:<9} {:<20} {:<13} {}",
                    r.node,
                    r.slot,
                    r.mac,
                    r.identity,
                    slot,
                    version,
                    confirmed,
                    seen,
                    boot_img,
                    refusal
                );
            }
        }
        NodesCommand::Show { node } => {
            let Some(r) = store.list(&rack).into_iter().find(|r| r.node == node) else {
                anyhow::bail!(
                    "no node `{node}` in the rack ({})",
                    config.rack_file.display()
                );
            };
            print!("{}", show(&r));
        }
    }
    Ok(())
}

/// The first 12 hex digits of a firmware-verified digest, for the table.
fn short_digest(d: Option<bootd_api::Sha256Digest>) -> String {
    match d {
        Some(d) => format!("{}…", &d.to_string()[..12]),
        None => "-".into(),
    }
}

/// `bootd nodes show`: one `key: value` line per fact.
fn show(r: &bootd::nodes::NodeRow) -> String {
    let mut out = format!(
        "node: {}\nslot: {}\nmac: {}\ngroups: {}\nidentity: {}\n",
        r.node,
        r.slot,
        r.mac,
        r.groups.join(","),
        r.identity
    );
    if let (Some(fp), Some(until)) = (&r.cert_fingerprint, r.cert_not_after) {
        out += &format!("cert-sha256: {fp}\ncert-not-after: {until}\n");
    }
    match &r.last_report {
        None => out += "last-report: never\n",
        Some(rep) => {
            let sv = rep
                .report
                .security_version
                .map_or("-".to_string(), |v| v.0.to_string());
            out += &format!(
                "booted-slot: {:?}\nversion: {}\nsecurity-version: {sv}\nconfirmed: {}\nreported-at: {}\n",
                rep.report.slot,
                rep.report.version,
                rep.report.confirmed,
                rep.reported_at.format("%Y-%m-%dT%H:%M:%SZ"),
            );
            // What the platform firmware verified (Pi 5 signed boot);
            // compare with the release's `boot.img` target.
            if let Some(d) = rep.report.boot_img_sha256 {
                out += &format!("boot-img-sha256: {d}\n");
            }
        }
    }
    // What it refused, newest last: a replay, a freeze, a tampered
    // download is never silent.
    for f in &r.refusals {
        out += &format!(
            "refused: {} {} {}\n",
            f.reported_at.format("%Y-%m-%dT%H:%M:%SZ"),
            f.report.reason,
            f.report.detail.replace('\n', " ")
        );
    }
    out
}
