//! A modelled Raspberry Pi EEPROM bootloader, for the tests.
//!
//! No emulator runs the Pi's EEPROM bootloader, so the e2e's Pi nodes boot
//! through this model of its documented behaviour (the book's chapter "The
//! Raspberry Pi's own boot path" gives the sources):
//!
//! 1. its configuration is the EEPROM's `boot.conf` ([`EepromConfig`]),
//!    its public key `pubkey.bin`, and on a Pi 5 the embedded CA
//!    certificate, whose SHA-256 must be `HTTP_CACERT_HASH`;
//! 2. it requests `boot.sig`, then `boot.img`, from
//!    `http(s)://HTTP_HOST:HTTP_PORT/HTTP_PATH/`, without following
//!    redirects; over HTTPS it trusts only the embedded CA ([`fetch`]);
//! 3. it checks the pair with [`racklet_piboot::accept`] — sizes, grammar,
//!    hash line, RSA signature, Racklet's `ts` rule against the last `ts` it
//!    accepted, the FAT structure — before it uses a byte ([`unpack`]);
//! 4. it keeps the accepted `ts` (the floor for the next boot), then
//!    writes the files `config.txt` names — kernel, initramfs, device tree,
//!    `cmdline.txt` — where the caller boots them (the e2e: QEMU `-kernel`,
//!    `-initrd`, `-append`).
//!
//! Like the bootloader, which loads its ramdisk into RAM, the model holds
//! the pair in memory: `boot.img` is at most
//! [`racklet_piboot::MAX_BOOT_IMG_BYTES`], and the limit is applied while
//! downloading, before the bytes arrive.
//!
//! What it does not model: the bootloader's own DHCP (the model runs
//! where the LAN already routes to bootd), its retries and `BOOT_ORDER`
//! fall-through, and the GPU firmware and TF-A that a Pi 4 runs from the
//! image (QEMU's `virt` machine needs neither; their presence is checked).
#![forbid(unsafe_code)]

mod error;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use racklet_piboot::bootfiles::{self, PiModel};
use racklet_piboot::eeprom::{EepromConfig, Transport};
use racklet_piboot::key::PiPublicKey;
use racklet_piboot::SigTimestamp;
use sha2::{Digest, Sha256};

pub use error::{Error, Result};

/// What the modelled Pi holds before it boots: its EEPROM.
#[derive(Debug, Clone)]
pub struct Eeprom {
    /// `boot.conf`.
    pub config: EepromConfig,
    /// The secure-boot public key (`pubkey.bin`).
    pub key: PiPublicKey,
    /// The embedded CA certificate (DER), for HTTPS.
    pub ca_der: Option<Vec<u8>>,
}

/// The downloaded pair.
#[derive(Debug)]
pub struct Pair {
    /// `boot.sig` as served.
    pub sig: Vec<u8>,
    /// `boot.img` as served.
    pub image: Vec<u8>,
}

/// What [`unpack`] wrote, for the caller to boot.
#[derive(Debug, Clone)]
pub struct Booted {
    /// The accepted `boot.sig` `ts` (now the floor).
    pub ts: SigTimestamp,
    /// SHA-256 of the accepted `boot.img` (what a Pi 5 puts in its device
    /// tree as `boot_img_sha256`).
    pub sha256: [u8; 32],
    /// Which board's files the image carries.
    pub model: PiModel,
    /// The kernel as the image holds it (gzip; QEMU unpacks it as the Pi
    /// firmware does).
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub device_tree: PathBuf,
    /// `cmdline.txt`, its one line.
    pub cmdline: String,
    /// Files in the FAT volume.
    pub files: usize,
}

/// Deadlines of the model's HTTP client (the bootloader's own are not
/// documented; these are the chain's defaults).
fn net_config(plain: bool) -> bootd_client::http::NetConfig {
    bootd_client::http::NetConfig {
        max_len: racklet_piboot::MAX_BOOT_IMG_BYTES,
        allow_plain_http: plain,
        ..Default::default()
    }
}

/// The HTTPS client configuration of a Pi 5: trust only the embedded CA,
/// and only if it is the one `HTTP_CACERT_HASH` names.
fn tls_for(eeprom: &Eeprom) -> Result<Option<Arc<rustls::ClientConfig>>> {
    let Transport::Https { ca_cert_sha256 } = eeprom.config.transport else {
        return Ok(None);
    };
    let der = eeprom.ca_der.as_deref().ok_or(Error::NoCaCert)?;
    let actual: [u8; 32] = Sha256::digest(der).into();
    if actual != ca_cert_sha256 {
        return Err(Error::CaCertHash {
            pinned: hex::encode(ca_cert_sha256),
            actual: hex::encode(actual),
        });
    }
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
    Ok(Some(bootd_client::tls::client_config(
        pem.as_bytes(),
        None,
    )?))
}

/// Downloads `boot.sig`, then `boot.img`, as the bootloader requests them.
pub async fn fetch(eeprom: &Eeprom) -> Result<Pair> {
    let tls = tls_for(eeprom)?;
    let plain = tls.is_none();
    let client = bootd_client::http::Client::new(tls, net_config(plain));
    let mut got = Vec::new();
    for (file, max) in [
        ("boot.sig", racklet_piboot::sig::MAX_BOOT_SIG_BYTES as u64),
        ("boot.img", racklet_piboot::MAX_BOOT_IMG_BYTES),
    ] {
        let url = eeprom.config.url(file);
        let url = url::Url::parse(&url).map_err(|e| Error::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let resp = client.get(&url, 0).await?;
        if resp.content_length.is_some_and(|l| l > max) {
            return Err(Error::TooLarge { file, max });
        }
        let mut body = resp.body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if bytes.len() as u64 + chunk.len() as u64 > max {
                return Err(Error::TooLarge { file, max });
            }
            bytes.extend_from_slice(&chunk);
        }
        got.push(bytes);
    }
    let image = got.pop().unwrap_or_default();
    let sig = got.pop().unwrap_or_default();
    Ok(Pair { sig, image })
}

/// The `ts` floor kept in `state` (none before the first boot).
pub fn last_accepted(state: &Path) -> Result<Option<SigTimestamp>> {
    let p = state.join(TS_FILE);
    if !p.exists() {
        return Ok(None);
    }
    let text = racklet_fsio::read_to_string(&p)?;
    let secs: i64 = text.trim().parse().map_err(|_| Error::State {
        path: p.clone(),
        reason: "not Unix seconds",
    })?;
    Ok(Some(SigTimestamp::from_unix(secs)?))
}

/// The file in the state directory holding the last accepted `ts`.
pub const TS_FILE: &str = "last-boot-sig-ts";

/// Checks `pair` against the EEPROM's key and the `ts` floor in `state`;
/// only when every check passes, raises the floor and writes the files
/// `config.txt` names into `out` (each atomically).
pub fn unpack(eeprom: &Eeprom, pair: &Pair, state: &Path, out: &Path) -> Result<Booted> {
    if !eeprom.config.signed_boot {
        return Err(Error::UnsignedBoot);
    }
    let last = last_accepted(state)?;
    let ok = racklet_piboot::accept(&pair.image, &pair.sig, &eeprom.key, last)?;
    let file = |name: &str| -> Result<Vec<u8>> {
        let f = ok
            .image
            .file(name)
            .ok_or_else(|| Error::Missing(name.to_owned()))?;
        Ok(ok.image.contents(f))
    };
    let config = bootfiles::read_config_txt(&String::from_utf8_lossy(&file("config.txt")?))?;
    if !config.arm_64bit {
        return Err(Error::Not64Bit);
    }
    let cmdline = String::from_utf8(file("cmdline.txt")?)
        .map_err(|_| Error::Missing("cmdline.txt as UTF-8".into()))?;
    let cmdline = cmdline.trim_end_matches('\n').to_owned();
    bootfiles::cmdline_txt(&cmdline)?;
    let model = match config.files.device_tree.to_string().as_str() {
        n if n == PiModel::Pi4.device_tree() => PiModel::Pi4,
        n if n == PiModel::Pi5.device_tree() => PiModel::Pi5,
        n => return Err(Error::Board(n.to_owned())),
    };
    // What the firmware would run before the kernel must be there too.
    for fw in model.firmware_files() {
        file(fw)?;
    }
    if let Some(stub) = &config.files.armstub {
        file(&stub.to_string())?;
    }
    // Every check passed: the floor goes up before anything is booted.
    std::fs::create_dir_all(state).map_err(|source| Error::Io {
        path: state.to_owned(),
        source,
    })?;
    racklet_fsio::write_atomic(
        &state.join(TS_FILE),
        format!("{}\n", ok.sig.ts().unix_seconds()).as_bytes(),
        racklet_fsio::Mode::Public,
    )?;
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.to_owned(),
        source,
    })?;
    let write = |name: &str| -> Result<PathBuf> {
        let dest = out.join(name);
        racklet_fsio::write_atomic(&dest, &file(name)?, racklet_fsio::Mode::Public)?;
        Ok(dest)
    };
    Ok(Booted {
        ts: ok.sig.ts(),
        sha256: *ok.sig.sha256(),
        model,
        kernel: write(&config.files.kernel.to_string())?,
        initramfs: write(&config.files.initramfs.to_string())?,
        device_tree: write(&config.files.device_tree.to_string())?,
        cmdline,
        files: ok.image.files().len(),
    })
}
