//! `imgsign pi-key …`: the Raspberry Pi secure-boot key (RSA-2048).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use imgsign::keys::PiKey;

use super::shown;

#[derive(Debug, Subcommand)]
pub enum PiKeyCommand {
    /// Generate the RSA-2048 key the Pi bootloader checks `boot.sig`
    /// with: into a new file (PKCS#8 PEM, mode 0600, never overwritten) or,
    /// given a `pkcs11:` URI, inside a token. Prints only its fingerprint.
    Generate {
        /// A file or a `pkcs11:token=…;object=…` URI.
        key: String,
    },
    /// Write the public key in the forms the EEPROM takes: `pubkey.bin`
    /// (264 bytes, what `rpi-eeprom-config -p` embeds) and PEM (what
    /// `rpi-eeprom-config -p` and usbboot's recipes read).
    Export {
        /// Key file or pkcs11: URI.
        key: String,
        /// Write the 264-byte `pubkey.bin` here (a new file).
        #[arg(long, value_name = "FILE", required_unless_present = "pem")]
        pubkey_bin: Option<PathBuf>,
        /// Write the PEM `PUBLIC KEY` here (a new file).
        #[arg(long, value_name = "FILE")]
        pem: Option<PathBuf>,
    },
}

impl PiKeyCommand {
    pub fn run(self) -> Result<ExitCode> {
        match self {
            PiKeyCommand::Generate { key } => {
                let pi = PiKey::generate(&key)
                    .with_context(|| format!("generating the Pi key {}", shown(&key)))?;
                println!(
                    "pi-key sha256(pubkey.bin) {}  {}",
                    pi.fingerprint(),
                    pi.origin()
                );
            }
            PiKeyCommand::Export {
                key,
                pubkey_bin,
                pem,
            } => {
                let pi = PiKey::load(&key)
                    .with_context(|| format!("loading the Pi key {}", shown(&key)))?;
                let public = pi.public();
                if let Some(p) = pubkey_bin {
                    racklet_fsio::write_new(
                        &p,
                        &public.to_pubkey_bin(),
                        racklet_fsio::Mode::Public,
                    )?;
                    println!("{}  pubkey.bin", p.display());
                }
                if let Some(p) = pem {
                    racklet_fsio::write_new(
                        &p,
                        public.to_pem().as_bytes(),
                        racklet_fsio::Mode::Public,
                    )?;
                    println!("{}  PEM", p.display());
                }
                println!("pi-key sha256(pubkey.bin) {}", pi.fingerprint());
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
