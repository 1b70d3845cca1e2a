//! The Raspberry Pi's own network boot path, as data and pure functions.
//!
//! A Raspberry Pi 4 or 5 network-boots from its EEPROM bootloader: with
//! HTTP (mode 7) in `BOOT_ORDER` it fetches `boot.sig`, then `boot.img`,
//! from `HTTP_HOST`/`HTTP_PATH`, and in signed-boot mode boots the image
//! only if `boot.sig` holds its SHA-256 and an RSA-2048 signature by the
//! key in its EEPROM. The book's chapter "The Raspberry Pi's own boot path"
//! (`docs/src/pi-boot.md`) tells the whole story with its sources.
//!
//! This crate has no IO; imgsign (making the pair), bootd (the EEPROM
//! config), the modelled Pi and `imgsign verify` do theirs around it:
//!
//! | module | what |
//! |---|---|
//! | [`fat_write`] | a byte-reproducible FAT `boot.img` from (path, bytes) |
//! | [`fat_read`] | a strict reader that refuses a FAT that lies |
//! | [`sig`] | `boot.sig`: write, parse, verify, and Racklet's replay rule |
//! | [`key`] | the RSA-2048 public key as `pubkey.bin` and PEM |
//! | [`eeprom`] | the EEPROM bootloader config for HTTP boot |
//! | [`bootfiles`] | `config.txt`, `cmdline.txt`, firmware files per model |
//!
//! [`accept`] is what a modelled Pi does with a downloaded pair: every
//! check, in the bootloader's order, before a single byte is used.
#![forbid(unsafe_code)]

pub mod bootfiles;
pub mod eeprom;
mod error;
pub mod fat_read;
pub mod fat_write;
pub mod fuzz;
pub mod key;
mod path;
pub mod sig;

pub use error::{Error, Result};
pub use fat_read::BootImg;
pub use path::BootPath;
pub use sig::{BootSig, SigTimestamp};

/// Largest `boot.img` Racklet makes or accepts: 30 MB. A Pi 4's ramdisk
/// may be 128 MB (rpi-eeprom 2711 release notes, 2022-03-10), but a signed
/// `boot.img` over 30 MB was reported not to load on a Pi 5
/// (raspberrypi/rpi-eeprom#619).
pub const MAX_BOOT_IMG_BYTES: u64 = 30_000_000;

/// The names the bootloader requests, in the order it requests them.
pub const REQUESTED_FILES: [&str; 2] = ["boot.sig", "boot.img"];

/// A downloaded pair that passed every check.
#[derive(Debug)]
pub struct Accepted<'a> {
    /// The parsed `boot.sig`.
    pub sig: BootSig,
    /// The checked FAT volume, ready to extract.
    pub image: BootImg<'a>,
}

/// Checks a downloaded `boot.sig` + `boot.img` as the modelled Pi does:
/// sizes, `boot.sig` grammar, the hash line, the RSA signature against
/// `key`, Racklet's replay rule against `last_accepted` (stricter than a
/// real Pi, see [`sig`]), and finally the FAT structure. Nothing is
/// returned, so nothing can be written, unless all of it passes.
#[cfg(feature = "rsa")]
pub fn accept<'a>(
    image: &'a [u8],
    sig_text: &[u8],
    key: &key::PiPublicKey,
    last_accepted: Option<SigTimestamp>,
) -> Result<Accepted<'a>> {
    if sig_text.len() > sig::MAX_BOOT_SIG_BYTES {
        return Err(Error::TooLarge {
            what: "boot.sig",
            bytes: sig_text.len() as u64,
            max: sig::MAX_BOOT_SIG_BYTES as u64,
        });
    }
    if image.len() as u64 > MAX_BOOT_IMG_BYTES {
        return Err(Error::TooLarge {
            what: "boot.img",
            bytes: image.len() as u64,
            max: MAX_BOOT_IMG_BYTES,
        });
    }
    let sig = BootSig::parse(sig_text)?;
    sig::verify_boot_img(image, &sig, key)?;
    sig::check_fresh(sig.ts(), last_accepted)?;
    let image = BootImg::read(image)?;
    Ok(Accepted { sig, image })
}
