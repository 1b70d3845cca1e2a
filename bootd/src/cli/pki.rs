//! `bootd pki …`: the rack certificate authority.

use std::path::PathBuf;

use anyhow::Context;

/// `bootd pki` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PkiCommand {
    /// Create the rack CA and the server certificate (refuses to overwrite).
    Init {
        /// Replace existing CA and server files. Every enrolled node must enroll again.
        #[arg(long)]
        force: bool,
    },
    /// Issue a new server certificate from the existing CA (e.g. new server names).
    RenewServer,
    /// Print the CA hash for a Raspberry Pi EEPROM's `HTTP_CACERT_HASH`.
    CaHash {
        /// Also write the CA certificate as DER here (for `rpi-eeprom-config --cacertder`).
        #[arg(long)]
        der_out: Option<PathBuf>,
    },
}

pub fn run(config: bootd::Config, cmd: PkiCommand) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    match cmd {
        PkiCommand::Init { force } => {
            let rack = racklet_hardware::Rack::load(&config.rack_file)?;
            let r = bootd::pki::init(
                &config.pki,
                rack.id.as_str(),
                &config.server_names,
                config.server_cert_days,
                now,
                force,
            )
            .context("creating the rack PKI")?;
            println!("rack CA:            {}", config.pki.ca_cert.display());
            println!(
                "server certificate: {} (sha256 {})",
                config.pki.server_cert.display(),
                r.server_fingerprint
            );
            println!("names:              {}", config.server_names.join(", "));
            println!("HTTP_CACERT_HASH={}", r.ca_hash);
        }
        PkiCommand::RenewServer => {
            let fp = bootd::pki::renew_server(
                &config.pki,
                &config.server_names,
                config.server_cert_days,
                now,
            )?;
            println!("server certificate renewed (sha256 {fp}); bootd serve picks it up without a restart");
        }
        PkiCommand::CaHash { der_out } => {
            let der = bootd::pki::ca_cert_der(&config.pki.ca_cert)?;
            if let Some(p) = der_out {
                std::fs::write(&p, &der).with_context(|| format!("writing {}", p.display()))?;
            }
            println!("HTTP_CACERT_HASH={}", bootd::pki::fingerprint(&der));
        }
    }
    Ok(())
}
