//! `pi-model boot`: one boot of the modelled Raspberry Pi bootloader (see
//! the library's docs). Prints what it accepted, or why it refused, and
//! exits non-zero on a refusal; writes nothing on a refusal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use racklet_piboot::eeprom::EepromConfig;
use racklet_piboot::key::PiPublicKey;
use racklet_pimodel::Eeprom;

#[derive(Debug, Parser)]
#[command(name = "pi-model", about = "A modelled Raspberry Pi EEPROM bootloader")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Fetch boot.sig and boot.img as the EEPROM does, check them, and
    /// unpack what config.txt names into --out.
    Boot(BootArgs),
}

#[derive(Debug, clap::Args)]
struct BootArgs {
    /// The EEPROM's boot.conf (`bootd pki pi-eeprom-config` prints one).
    #[arg(long, value_name = "BOOT_CONF")]
    eeprom: PathBuf,
    /// The public key in the EEPROM (`imgsign pi-key export`: pubkey.bin or PEM).
    #[arg(long, value_name = "FILE")]
    pubkey: PathBuf,
    /// The CA certificate embedded in the EEPROM (DER or PEM), for HTTPS.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Where the model keeps the last accepted `ts` (its floor).
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Where the kernel, initramfs and device tree are unpacked.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn load(args: &BootArgs) -> shell::Result<Eeprom> {
    let text = racklet_fsio::read_to_string(&args.eeprom)?;
    let config = EepromConfig::parse(&text)?;
    let key = PiPublicKey::from_either(&racklet_fsio::read(&args.pubkey)?)?;
    let ca_der = match &args.ca_cert {
        None => None,
        Some(p) => {
            let bytes = racklet_fsio::read(p)?;
            Some(match pem::parse(&bytes) {
                Ok(pem) => pem.into_contents(),
                Err(_) => bytes,
            })
        }
    };
    Ok(Eeprom {
        config,
        key,
        ca_der,
    })
}

/// Errors of the CLI shell: the library's, plus loading the inputs.
mod shell {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}

async fn boot(args: BootArgs) -> shell::Result<()> {
    let eeprom = load(&args)?;
    for file in racklet_piboot::REQUESTED_FILES {
        println!("pi-model: GET {}", eeprom.config.url(file));
    }
    let pair = racklet_pimodel::fetch(&eeprom).await?;
    let booted = racklet_pimodel::unpack(&eeprom, &pair, &args.state, &args.out)?;
    println!(
        "pi-model: accepted boot.sig ts={} boot_img_sha256={} ({:?}, {} files in boot.img, {} bytes)",
        booted.ts.unix_seconds(),
        hex::encode(booted.sha256),
        booted.model,
        booted.files,
        pair.image.len()
    );
    println!("kernel={}", booted.kernel.display());
    println!("initramfs={}", booted.initramfs.display());
    println!("device_tree={}", booted.device_tree.display());
    println!("cmdline={}", booted.cmdline);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pi-model: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Cmd::Boot(a) => rt.block_on(boot(a)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pi-model: refused: {}", bootd_client::display_chain(&*e));
            ExitCode::FAILURE
        }
    }
}
