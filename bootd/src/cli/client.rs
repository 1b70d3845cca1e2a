//! `bootd client …`: the node side, for trying enrollment by hand (and for
//! racks whose nodes run something else than stage1). stage1 calls the same
//! library functions (the `bootd-client` crate).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// `bootd client` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Create a key, send a CSR, wait for the operator's approval, save the certificate.
    Enroll {
        #[command(flatten)]
        server: Server,
        /// The node name (as in the rack file).
        #[arg(long)]
        node: String,
        /// Directory for node.key (0600) and node.pem.
        #[arg(long)]
        out: PathBuf,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
    /// Report what this node booted, over mTLS.
    Report {
        #[command(flatten)]
        server: Server,
        /// Directory holding node.key and node.pem from `enroll`.
        #[arg(long)]
        identity: PathBuf,
        /// The booted slot (A or B).
        #[arg(long, value_parser = parse_slot)]
        slot: bootd_api::Slot,
        /// The booted version.
        #[arg(long)]
        version: String,
        /// The booted image's security version.
        #[arg(long)]
        security_version: Option<u32>,
        /// The booted OS confirmed a good boot.
        #[arg(long)]
        confirmed: bool,
    },
}

/// Where bootd is and which CA to trust.
#[derive(Debug, clap::Args)]
pub struct Server {
    /// bootd's base URL, e.g. https://bootd.local:8443/
    #[arg(long)]
    server: url::Url,
    /// The rack CA certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// Deadline for the TCP connection, in seconds.
    #[arg(long, default_value_t = bootd_client::NetConfig::default().connect_timeout.as_secs())]
    connect_timeout_s: u64,
    /// Deadline for the TLS handshake, in seconds.
    #[arg(long, default_value_t = bootd_client::NetConfig::default().handshake_timeout.as_secs())]
    handshake_timeout_s: u64,
    /// Idle-read deadline (the answer's head, each next chunk), in seconds.
    #[arg(long, default_value_t = bootd_client::NetConfig::default().read_timeout.as_secs())]
    read_timeout_s: u64,
    /// Deadline for each whole request, connect to last byte, in seconds.
    #[arg(long, default_value_t = bootd_client::NetConfig::default().call_timeout.as_secs())]
    total_timeout_s: u64,
}

impl Server {
    /// The client limits the flags ask for (each deadline at least 1 s).
    fn net(&self) -> bootd_client::NetConfig {
        let s = |v: u64| Duration::from_secs(v.max(1));
        bootd_client::NetConfig {
            connect_timeout: s(self.connect_timeout_s),
            handshake_timeout: s(self.handshake_timeout_s),
            read_timeout: s(self.read_timeout_s),
            call_timeout: s(self.total_timeout_s),
            total_timeout: s(self.total_timeout_s),
            ..bootd_client::NetConfig::default()
        }
    }
}

fn parse_slot(s: &str) -> Result<bootd_api::Slot, String> {
    match s {
        "A" => Ok(bootd_api::Slot::A),
        "B" => Ok(bootd_api::Slot::B),
        _ => Err("want A or B".into()),
    }
}

fn load_identity(dir: &std::path::Path, node: &str) -> anyhow::Result<bootd_client::Identity> {
    Ok(bootd_client::Identity {
        node: node.to_owned(),
        key_pem: std::fs::read_to_string(dir.join("node.key")).context("reading node.key")?,
        cert_pem: std::fs::read_to_string(dir.join("node.pem")).context("reading node.pem")?,
    })
}

pub fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cmd {
            ClientCommand::Enroll {
                server,
                node,
                out,
                timeout_s,
            } => {
                let ca = std::fs::read(&server.ca)
                    .with_context(|| format!("reading {}", server.ca.display()))?;
                let net = server.net();
                let e = bootd_client::Enrollment::begin(&server.server, &ca, &node, &net).await?;
                println!(
                    "request {} for {node} sent; key-sha256={}",
                    e.id, e.key_fingerprint
                );
                println!("waiting for the operator: bootd nodes approve {}", e.id);
                let id = e
                    .wait(Duration::from_secs(2), Duration::from_secs(timeout_s))
                    .await?;
                std::fs::create_dir_all(&out)?;
                racklet_fsio::write_new(
                    &out.join("node.key"),
                    id.key_pem.as_bytes(),
                    racklet_fsio::Mode::Secret,
                )?;
                racklet_fsio::write_atomic(
                    &out.join("node.pem"),
                    id.cert_pem.as_bytes(),
                    racklet_fsio::Mode::Public,
                )?;
                println!("enrolled: {}", out.join("node.pem").display());
            }
            ClientCommand::Report {
                server,
                identity,
                slot,
                version,
                security_version,
                confirmed,
            } => {
                let ca = std::fs::read(&server.ca)
                    .with_context(|| format!("reading {}", server.ca.display()))?;
                let id = load_identity(&identity, "")?;
                let report = bootd_api::NodeReport {
                    slot,
                    version,
                    security_version: security_version.map(bootd_api::SecurityVersion),
                    confirmed,
                    boot_img_sha256: None,
                };
                let net = server.net();
                bootd_client::report(&server.server, &ca, &id, &net, &report).await?;
                println!("reported");
            }
        }
        Ok(())
    })
}
