//! The crate's error type: one variant per failed operation, with the
//! context an operator needs (which file, which line, which cluster).

use crate::sig::SigTimestamp;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- boot.img paths and options -------------------------------------
    /// A path given for (or found in) a `boot.img` is not a safe FAT name.
    #[error("boot.img path {path:?}: {reason}")]
    BadBootPath {
        /// The path as given.
        path: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// Two entries name the same file (FAT names are case-insensitive).
    #[error("boot.img: {path:?} is given twice (FAT names ignore case)")]
    DuplicateBootPath {
        /// The second spelling seen.
        path: String,
    },
    /// A volume label that FAT cannot hold.
    #[error("volume label {label:?}: {reason}")]
    BadVolumeLabel {
        /// The label as given.
        label: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// A timestamp after the last one a FAT directory entry can hold (2107).
    #[error("timestamp {unix_seconds} is after 2107-12-31, the last FAT date")]
    TimestampAfterFat {
        /// The offending Unix time.
        unix_seconds: i64,
    },

    /// A `config.txt` line the modelled Pi will not read.
    #[error("config.txt: {reason}: {line:?}")]
    BadConfigTxt {
        /// The line (empty when a line is missing).
        line: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    // --- boot.img writer --------------------------------------------------
    /// The image would be larger than [`crate::MAX_BOOT_IMG_BYTES`].
    #[error("boot.img would be {bytes} bytes, more than the {max} bytes a Pi loads reliably")]
    BootImgTooLarge {
        /// Size it would have.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// fatfs refused to format the volume.
    #[error("formatting the FAT volume")]
    FormatFat {
        /// fatfs's error.
        #[source]
        source: std::io::Error,
    },
    /// fatfs refused to write one file or directory.
    #[error("writing {path:?} into the FAT volume")]
    WriteFatEntry {
        /// The entry being written.
        path: String,
        /// fatfs's error.
        #[source]
        source: std::io::Error,
    },

    // --- boot.img reader --------------------------------------------------
    /// The image is not a FAT volume this reader accepts, or its FAT lies.
    #[error("boot.img{}: {problem}", path.as_ref().map(|p| format!(" {p:?}")).unwrap_or_default())]
    ReadBootImg {
        /// The file or directory being read when the problem showed, if any.
        path: Option<String>,
        /// What is wrong.
        problem: crate::fat_read::FatProblem,
    },

    // --- boot.sig -----------------------------------------------------------
    /// `boot.sig` does not follow the grammar `rpi-eeprom-digest` writes.
    #[error("boot.sig line {line}: {problem}")]
    ParseBootSig {
        /// 1-based line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        problem: crate::sig::SigProblem,
    },
    /// The signer (an imgsign key file or HSM) failed.
    #[error("signing boot.img with the Pi secure-boot key")]
    SignBootImg {
        /// The signer's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The signer returned something that is not an RSA-2048 signature.
    #[error("the signer returned {len} bytes; an RSA-2048 signature is 256")]
    SignatureLength {
        /// Length returned.
        len: usize,
    },
    /// A `ts:` that the bootloader (which reads it as 32-bit) cannot hold.
    #[error("boot.sig timestamp {unix_seconds} does not fit the bootloader's 32-bit ts")]
    TimestampOutOfRange {
        /// The offending value.
        unix_seconds: i64,
    },

    // --- verification -------------------------------------------------------
    /// The SHA-256 line of `boot.sig` is not the hash of this `boot.img`.
    #[error(
        "boot.img was changed after signing: boot.sig says sha256 {signed}, the image is {actual}"
    )]
    HashMismatch {
        /// Hex digest in `boot.sig`.
        signed: String,
        /// Hex digest of the image received.
        actual: String,
    },
    /// `boot.sig` has no `rsa2048:` line; signed boot needs one.
    #[error("boot.sig carries no rsa2048 signature; a Pi in signed-boot mode refuses it")]
    Unsigned,
    /// The RSA signature does not verify against the Pi's public key.
    #[error("the rsa2048 signature in boot.sig does not verify against the Pi's public key")]
    BadSignature,
    /// A validly signed image older than one already accepted (replay).
    #[error(
        "boot.sig ts {offered} is older than ts {last_accepted} already accepted: a replayed image"
    )]
    StaleTimestamp {
        /// The `ts:` offered now.
        offered: SigTimestamp,
        /// The newest `ts:` accepted before.
        last_accepted: SigTimestamp,
    },
    /// A download larger than the limit for its kind.
    #[error("{what} is {bytes} bytes, more than the {max} allowed")]
    TooLarge {
        /// `boot.img` or `boot.sig`.
        what: &'static str,
        /// Its size.
        bytes: u64,
        /// The limit.
        max: u64,
    },

    // --- keys ----------------------------------------------------------------
    /// A key that is not RSA with a 2048-bit modulus (all the bootloader takes).
    #[error("the Pi secure-boot key must be RSA-2048: {reason}")]
    NotRsa2048 {
        /// What is wrong.
        reason: &'static str,
    },
    /// `pubkey.bin` is not 264 bytes.
    #[error("pubkey.bin is {len} bytes; the bootloader's form is 264 (256-byte modulus + 8-byte exponent, little-endian)")]
    PubkeyBinLength {
        /// Length given.
        len: usize,
    },
    /// The PEM text could not be read.
    #[error("reading the PEM public key")]
    ParsePem {
        /// pem's error.
        #[source]
        source: pem::PemError,
    },
    /// The PEM label is not one this crate reads.
    #[error("PEM label {label:?}: expected PUBLIC KEY or RSA PUBLIC KEY")]
    PemLabel {
        /// Label found.
        label: String,
    },
    /// The DER inside the PEM is not an RSA public key.
    #[error("public key DER: {reason}")]
    ParseDer {
        /// What is wrong.
        reason: &'static str,
    },

    // --- EEPROM config, config.txt, cmdline.txt ------------------------------
    /// A bootloader config value the EEPROM would ignore or misread.
    #[error("EEPROM {key}={value:?}: {reason}")]
    BadEepromValue {
        /// The property (`HTTP_HOST`, ...).
        key: &'static str,
        /// The value given.
        value: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// A CA certificate larger than the EEPROM's 4,076-byte file slot.
    #[error("CA certificate is {len} bytes; the EEPROM holds at most {max}")]
    CaCertTooLarge {
        /// Its size.
        len: usize,
        /// The slot size.
        max: usize,
    },
    /// A kernel command line that cmdline.txt cannot carry.
    #[error("kernel command line: {reason}")]
    BadCmdline {
        /// What rule it breaks.
        reason: &'static str,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
