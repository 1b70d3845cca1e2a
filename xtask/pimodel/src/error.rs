//! What the modelled Pi refuses, one variant per reason.

use std::path::PathBuf;

/// Everything the model can refuse or fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `HTTP_CACERT_HASH` is set but no CA certificate is embedded.
    #[error("HTTP_CACERT_HASH is set but the EEPROM holds no CA certificate")]
    NoCaCert,
    /// The embedded CA certificate is not the one the config pins.
    #[error("the embedded CA certificate has SHA-256 {actual}, but HTTP_CACERT_HASH is {pinned}")]
    CaCertHash {
        /// `HTTP_CACERT_HASH`.
        pinned: String,
        /// SHA-256 of the embedded DER.
        actual: String,
    },
    /// The config does not say `SIGNED_BOOT=1`.
    #[error("SIGNED_BOOT is not 1: a Racklet Pi boots only a signed boot.img")]
    UnsignedBoot,
    /// A URL the config makes is not one.
    #[error("{url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A download longer than the bootloader takes.
    #[error("{file} is longer than {max} bytes")]
    TooLarge {
        /// `boot.sig` or `boot.img`.
        file: &'static str,
        /// The limit.
        max: u64,
    },
    /// The download failed (connection, TLS, status, deadline).
    #[error("download")]
    Http(#[from] bootd_client::Error),
    /// The pair failed a check, or `config.txt` / `cmdline.txt` is bad.
    #[error("boot.img / boot.sig refused")]
    Refused(#[from] racklet_piboot::Error),
    /// A file `config.txt` names, or the firmware needs, is not in the image.
    #[error("boot.img has no {0}")]
    Missing(String),
    /// `config.txt` does not start the cores in 64-bit mode.
    #[error("config.txt has no arm_64bit=1: stage1 is an arm64 kernel")]
    Not64Bit,
    /// The device tree names no Pi the model knows.
    #[error("device_tree={0} is neither a Pi 4's nor a Pi 5's")]
    Board(String),
    /// The state directory holds something unreadable.
    #[error("{path}: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// Reading or writing the state or the unpacked files.
    #[error(transparent)]
    Fsio(#[from] racklet_fsio::Error),
    /// A directory could not be made.
    #[error("{path}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The model's result type.
pub type Result<T> = std::result::Result<T, Error>;
