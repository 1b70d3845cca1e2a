//! `imgsign key …`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use imgsign::keys::{self, SigningKeyPair};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a new Ed25519 key into a new file (mode 0600, never
    /// overwritten) or, given a `pkcs11:` URI, inside a token. Prints only
    /// its key id.
    Generate {
        /// Where to put the private key: a file (PKCS#8 PEM) or a
        /// `pkcs11:token=…;object=…` URI.
        out: PathBuf,
        /// Also write the public key (TUF JSON) here, to share with others.
        #[arg(long, value_name = "FILE")]
        public: Option<PathBuf>,
    },
    /// Write the public half of a key as TUF JSON (to stdout or --out).
    Public {
        /// Key file or pkcs11: URI.
        key: String,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print a key's TUF key id.
    Id {
        /// Key file (private or public) or pkcs11: URI.
        key: String,
    },
}

impl KeyCommand {
    pub fn run(self) -> Result<ExitCode> {
        match self {
            KeyCommand::Generate { out, public } => {
                let out_text = out.to_string_lossy();
                let key = if out_text.starts_with("pkcs11:") {
                    generate_in_token(&out_text)?
                } else {
                    SigningKeyPair::generate_file(&out)?
                };
                if let Some(p) = public {
                    racklet_fsio::write_new(
                        &p,
                        keys::public_json(&key.public()).as_bytes(),
                        racklet_fsio::Mode::Public,
                    )?;
                }
                println!("{}  {}", key.key_id(), key.origin());
            }
            KeyCommand::Public { key, out } => {
                let public = keys::load_public(&key)?;
                let json = keys::public_json(&public);
                match out {
                    Some(p) => {
                        racklet_fsio::write_new(&p, json.as_bytes(), racklet_fsio::Mode::Public)?
                    }
                    None => print!("{json}"),
                }
            }
            KeyCommand::Id { key } => {
                let public = keys::load_public(&key)?;
                let id = keys::key_id_hex(&public);
                let note = if keys::danger::is_insecure_example_key_id(&id) {
                    "  (INSECURE published example key: demo channel only)"
                } else {
                    ""
                };
                println!("{id}{note}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(feature = "pkcs11")]
fn generate_in_token(uri: &str) -> Result<SigningKeyPair> {
    Ok(imgsign::pkcs11::generate(uri)?)
}

#[cfg(not(feature = "pkcs11"))]
fn generate_in_token(_uri: &str) -> Result<SigningKeyPair> {
    anyhow::bail!("this imgsign was built without the `pkcs11` feature")
}
