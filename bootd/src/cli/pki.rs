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
    /// Print the EEPROM bootloader config of this rack's Raspberry Pis
    /// (HTTP boot of the signed boot.img at `first_stage.path`), for
    /// `rpi-eeprom-config -c` (see docs/src/pi-boot.md): a Pi 5 fetches over
    /// HTTPS pinned to the rack CA, a Pi 4 over plain HTTP.
    PiEepromConfig {
        /// Which Pi: `pi4` (plain HTTP) or `pi5` (HTTPS to the rack CA).
        #[arg(long, value_parser = ["pi4", "pi5"])]
        model: String,
        /// bootd's address as the Pi reaches it (`HTTP_HOST`).
        #[arg(long)]
        host: String,
        /// `HTTP_PORT` (default: 80 for a Pi 4, 443 for a Pi 5, the only
        /// port its HTTPS is documented on).
        #[arg(long)]
        port: Option<u16>,
        /// Log the bootloader on the UART (`BOOT_UART=1`).
        #[arg(long)]
        uart: bool,
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
        PkiCommand::PiEepromConfig {
            model,
            host,
            port,
            uart,
        } => {
            use racklet_piboot::eeprom::{self, EepromConfig, HttpHost, HttpPath, Transport};
            let first = config.first_stage.as_ref().context(
                "bootd.yaml has no `first_stage`: nothing would serve boot.img and boot.sig",
            )?;
            let transport = if model == "pi5" {
                let der = bootd::pki::ca_cert_der(&config.pki.ca_cert)?;
                Transport::Https {
                    ca_cert_sha256: eeprom::ca_cert_sha256(&der)?,
                }
            } else {
                if config.plain_http.is_empty() {
                    eprintln!(
                        "note: bootd.yaml has no `listen.plain_http`: a Pi 4 fetches over plain HTTP only"
                    );
                }
                Transport::PlainHttp
            };
            let mut c = EepromConfig::signed_http_boot(
                HttpHost::new(&host)?,
                HttpPath::new(&first.path)?,
                transport,
            );
            c.port = port;
            c.boot_uart = uart;
            print!("{}", c.bootconf()?);
            eprintln!(
                "the Pi will fetch {} then {}",
                c.url("boot.sig"),
                c.url("boot.img")
            );
        }
    }
    Ok(())
}
