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
    /// (HTTP boot of the signed boot.img at the model's `first_stage`
    /// entry's `path`), for `rpi-eeprom-config -c` (see docs/src/pi-boot.md):
    /// a Pi 5 fetches over HTTPS pinned to the rack CA (its entry must be
    /// `transport: https`), a Pi 4 over plain HTTP (`transport: http`).
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
        /// The `first_stage` entry (its `path`) the Pi boots from; default:
        /// the one entry that maps `boot.img` to this model's target
        /// (`rpi4-…`/`rpi5-…`), or the only one that maps `boot.img`.
        #[arg(long)]
        path: Option<String>,
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
            path,
        } => {
            use racklet_piboot::eeprom::{self, EepromConfig, HttpHost, HttpPath, Transport};
            let first = pi_entry(&config, &model, path.as_deref())?;
            use bootd::config::FirstStageTransport as T;
            match (model.as_str(), first.transport) {
                ("pi4", T::Https) => anyhow::bail!(
                    "first_stage entry `{}` is `transport: https`, but a Pi 4 fetches over plain \
                     HTTP only (its bootloader has no TLS to a custom CA): make it `http`",
                    first.path
                ),
                // Off the Pi's own abilities, on purpose: a Pi 5 can fetch
                // over plain HTTP, but the config printed here pins the rack
                // CA, and an `http` entry would also hand the Pi 5's pair out
                // on plain HTTP, where the RSA signature is all it has.
                ("pi5", T::Http) => anyhow::bail!(
                    "first_stage entry `{}` is `transport: http`, but a Pi 5 fetches over HTTPS \
                     pinned to the rack CA (HTTP_CACERT_HASH): make it `transport: https` so its \
                     pair is not also served over plain HTTP",
                    first.path
                ),
                _ => {}
            }
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

/// The `first_stage` entry a Pi of `model` boots from (see `--path`).
fn pi_entry<'a>(
    config: &'a bootd::Config,
    model: &str,
    path: Option<&str>,
) -> anyhow::Result<&'a bootd::config::FirstStage> {
    let with_img: Vec<&bootd::config::FirstStage> = config
        .first_stage
        .iter()
        .filter(|f| f.files.contains_key("boot.img") && f.files.contains_key("boot.sig"))
        .collect();
    if let Some(p) = path {
        let p = p.trim_matches('/');
        return with_img.into_iter().find(|f| f.path == p).with_context(|| {
            format!("no first_stage entry with path `{p}` maps boot.img and boot.sig")
        });
    }
    let prefix = format!("r{model}-"); // rpi4-stage1.img, rpi5-stage1.img
    let mine: Vec<_> = with_img
        .iter()
        .copied()
        .filter(|f| f.files["boot.img"].starts_with(&prefix))
        .collect();
    match (mine.as_slice(), with_img.as_slice()) {
        ([one], _) | ([], [one]) => Ok(one),
        ([], []) => anyhow::bail!(
            "bootd.yaml has no `first_stage` entry mapping boot.img and boot.sig: nothing \
             would serve a Pi"
        ),
        _ => anyhow::bail!(
            "several first_stage entries serve a boot.img; name the {model}'s with --path"
        ),
    }
}
