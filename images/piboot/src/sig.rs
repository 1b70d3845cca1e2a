//! `boot.sig`: the file the Raspberry Pi bootloader fetches before
//! `boot.img` and checks it against.
//!
//! # Format, exactly as `rpi-eeprom-digest` writes it
//!
//! (raspberrypi/rpi-eeprom `rpi-eeprom-digest`, `writeSig`; the bytes of
//! usbboot's `secure-boot-example/boot.sig` and rpi-eeprom's
//! `test/bootconf.sig` follow it, and `tests/format.rs` reads both.)
//!
//! | line | bytes | meaning |
//! |---|---|---|
//! | 1 | 64 lower-case hex digits, `\n` | SHA-256 of `boot.img` (`sha256sum`) |
//! | 2 | `ts: ` decimal, `\n` | Unix time of signing: `SOURCE_DATE_EPOCH` when set, else now |
//! | 3, optional | `target-soc: ` `2711` or `2712`, `\n` | the SoC a firmware update is for (`-c`) |
//! | last, optional | `rsa2048: ` 512 lower-case hex digits, `\n` | RSA-2048 PKCS#1 v1.5 signature over SHA-256 of `boot.img` (`openssl dgst -sha256 -sign`), as `xxd -p` prints it |
//!
//! Every line ends in `\n`, nothing follows the last one. This parser is
//! stricter than the bootloader needs to be: upper-case hex, `\r`, leading
//! zeros in `ts`, unknown lines, a `ts` beyond 32 bits (the bootloader
//! reads it with `%u`) are all refused, so what imgsign verifies is what
//! it wrote.
//!
//! A Pi in signed-boot mode checks both the hash line and the signature
//! (usbboot `docs/secure-boot.md`); `rpi-eeprom-digest -v` checks only the
//! signature. [`verify_boot_img`] checks both.
//!
//! The bootloader itself keeps no record of `ts` for `boot.img` (it
//! compares `ts` only for EEPROM self-updates): refusing a `ts` older than
//! the last one accepted ([`check_fresh`]) is Racklet's stricter model,
//! not something a real Pi does.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Longest `boot.sig` accepted (the full format is 602 bytes).
pub const MAX_BOOT_SIG_BYTES: usize = 1024;

/// The `ts:` of a `boot.sig`: Unix seconds, at most `u32::MAX` (the
/// bootloader parses it as a 32-bit unsigned number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SigTimestamp(u32);

impl SigTimestamp {
    /// From Unix seconds (`SOURCE_DATE_EPOCH`).
    pub fn from_unix(unix_seconds: i64) -> Result<Self> {
        u32::try_from(unix_seconds)
            .map(Self)
            .map_err(|_| Error::TimestampOutOfRange { unix_seconds })
    }

    /// Unix seconds.
    pub fn unix_seconds(self) -> u32 {
        self.0
    }
}

impl fmt::Display for SigTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The `target-soc:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSoc {
    /// `2711`: Raspberry Pi 4, 400, CM4.
    Bcm2711,
    /// `2712`: Raspberry Pi 5, 500, CM5.
    Bcm2712,
}

impl TargetSoc {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bcm2711 => "2711",
            Self::Bcm2712 => "2712",
        }
    }
}

/// What is wrong with a `boot.sig`, in [`Error::ParseBootSig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigProblem {
    /// Longer than [`MAX_BOOT_SIG_BYTES`].
    #[error("longer than {MAX_BOOT_SIG_BYTES} bytes")]
    TooLong,
    /// The last line has no `\n`, or a line has a `\r`.
    #[error("every line must end in a single \\n")]
    LineEnd,
    /// Not 64 lower-case hex digits.
    #[error("expected the 64 lower-case hex digits of a SHA-256")]
    Hash,
    /// Not `ts: ` and a decimal without leading zeros that fits 32 bits.
    #[error("expected 'ts: ' and a 32-bit decimal without leading zeros")]
    Timestamp,
    /// Not `target-soc: 2711` or `target-soc: 2712`.
    #[error("expected 'target-soc: 2711' or 'target-soc: 2712'")]
    TargetSoc,
    /// Not `rsa2048: ` and 512 lower-case hex digits.
    #[error("expected 'rsa2048: ' and 512 lower-case hex digits")]
    Signature,
    /// A line this format does not have, or lines out of order.
    #[error("unexpected line")]
    Unexpected,
    /// The file ends before the `ts:` line.
    #[error("missing the hash or ts line")]
    Missing,
}

/// A parsed `boot.sig`.
#[derive(Clone, PartialEq, Eq)]
pub struct BootSig {
    sha256: [u8; 32],
    ts: SigTimestamp,
    target_soc: Option<TargetSoc>,
    rsa2048: Option<Box<[u8; 256]>>,
}

impl fmt::Debug for BootSig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootSig")
            .field("sha256", &hex::encode(self.sha256))
            .field("ts", &self.ts)
            .field("target_soc", &self.target_soc)
            .field("signed", &self.rsa2048.is_some())
            .finish()
    }
}

impl BootSig {
    /// An unsigned `boot.sig` (hash and `ts` only), as `rpi-eeprom-digest`
    /// writes without `-k`.
    pub fn digest_only(image: &[u8], ts: SigTimestamp, target_soc: Option<TargetSoc>) -> Self {
        Self {
            sha256: Sha256::digest(image).into(),
            ts,
            target_soc,
            rsa2048: None,
        }
    }

    /// The SHA-256 the file claims for `boot.img`.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The `ts:` line.
    pub fn ts(&self) -> SigTimestamp {
        self.ts
    }

    /// The `target-soc:` line, if any.
    pub fn target_soc(&self) -> Option<TargetSoc> {
        self.target_soc
    }

    /// The RSA-2048 signature, if any.
    pub fn rsa2048(&self) -> Option<&[u8; 256]> {
        self.rsa2048.as_deref()
    }

    /// The file's bytes, in the table's format.
    pub fn encode(&self) -> String {
        let mut out = format!("{}\nts: {}\n", hex::encode(self.sha256), self.ts);
        if let Some(soc) = self.target_soc {
            out.push_str(&format!("target-soc: {}\n", soc.as_str()));
        }
        if let Some(sig) = &self.rsa2048 {
            out.push_str(&format!("rsa2048: {}\n", hex::encode(&sig[..])));
        }
        out
    }

    /// Parses a `boot.sig`, strictly (see the module docs).
    pub fn parse(text: &[u8]) -> Result<Self> {
        let err = |line, problem| Error::ParseBootSig { line, problem };
        if text.len() > MAX_BOOT_SIG_BYTES {
            return Err(err(0, SigProblem::TooLong));
        }
        let Some(body) = text.strip_suffix(b"\n") else {
            return Err(err(0, SigProblem::LineEnd));
        };
        if body.contains(&b'\r') {
            return Err(err(0, SigProblem::LineEnd));
        }
        let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        let hash = lines.first().ok_or(err(1, SigProblem::Missing))?;
        let sha256: [u8; 32] = lower_hex(hash).ok_or(err(1, SigProblem::Hash))?;
        let ts_line = lines.get(1).ok_or(err(2, SigProblem::Missing))?;
        let ts = ts_line
            .strip_prefix(b"ts: ")
            .and_then(decimal_u32)
            .map(SigTimestamp)
            .ok_or(err(2, SigProblem::Timestamp))?;
        let mut next = 2;
        let mut target_soc = None;
        if let Some(rest) = lines
            .get(next)
            .and_then(|l| l.strip_prefix(b"target-soc: "))
        {
            target_soc = Some(match rest {
                b"2711" => TargetSoc::Bcm2711,
                b"2712" => TargetSoc::Bcm2712,
                _ => return Err(err(next + 1, SigProblem::TargetSoc)),
            });
            next += 1;
        }
        let mut rsa2048 = None;
        if let Some(line) = lines.get(next) {
            let sig = line
                .strip_prefix(b"rsa2048: ")
                .ok_or(err(next + 1, SigProblem::Unexpected))?;
            let sig: [u8; 256] = lower_hex(sig).ok_or(err(next + 1, SigProblem::Signature))?;
            rsa2048 = Some(Box::new(sig));
            next += 1;
        }
        if next < lines.len() {
            return Err(err(next + 1, SigProblem::Unexpected));
        }
        Ok(Self {
            sha256,
            ts,
            target_soc,
            rsa2048,
        })
    }
}

fn lower_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn decimal_u32(text: &[u8]) -> Option<u32> {
    let canonical = !text.is_empty()
        && text.len() <= 10
        && text.iter().all(u8::is_ascii_digit)
        && (text == b"0" || text[0] != b'0');
    if !canonical {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Whatever holds the Pi secure-boot key (imgsign: a key file or PKCS#11).
/// It signs the image bytes with RSA-2048, PKCS#1 v1.5 over SHA-256 —
/// `openssl dgst -sha256 -sign`, or PKCS#11's `CKM_SHA256_RSA_PKCS`.
pub trait BootImgSigner {
    /// The signer's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Returns the 256-byte signature of `image`.
    fn sign_rsa2048_sha256(&self, image: &[u8]) -> std::result::Result<Vec<u8>, Self::Error>;
}

/// An RSA key pair held in memory signs directly (imgsign's key file, the
/// tests' keys).
#[cfg(feature = "rsa")]
impl BootImgSigner for aws_lc_rs::signature::RsaKeyPair {
    type Error = aws_lc_rs::error::Unspecified;
    fn sign_rsa2048_sha256(&self, image: &[u8]) -> std::result::Result<Vec<u8>, Self::Error> {
        let mut sig = vec![0u8; self.public_modulus_len()];
        self.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            image,
            &mut sig,
        )?;
        Ok(sig)
    }
}

/// Signs `image` into a full `boot.sig` (hash, `ts`, optional
/// `target-soc`, `rsa2048`). The key never passes through this crate.
pub fn sign_boot_img<S: BootImgSigner>(
    image: &[u8],
    ts: SigTimestamp,
    target_soc: Option<TargetSoc>,
    signer: &S,
) -> Result<BootSig> {
    let raw = signer
        .sign_rsa2048_sha256(image)
        .map_err(|e| Error::SignBootImg {
            source: Box::new(e),
        })?;
    let sig: [u8; 256] = raw
        .as_slice()
        .try_into()
        .map_err(|_| Error::SignatureLength { len: raw.len() })?;
    let mut out = BootSig::digest_only(image, ts, target_soc);
    out.rsa2048 = Some(Box::new(sig));
    Ok(out)
}

/// Checks `boot.img` against its `boot.sig` as a Pi in signed-boot mode
/// does: the hash line must be the image's SHA-256, and the `rsa2048`
/// signature must verify against `key`. Hash first: it names a changed
/// image precisely; the signature then proves who signed.
#[cfg(feature = "rsa")]
pub fn verify_boot_img(image: &[u8], sig: &BootSig, key: &crate::key::PiPublicKey) -> Result<()> {
    let actual: [u8; 32] = Sha256::digest(image).into();
    if actual != sig.sha256 {
        return Err(Error::HashMismatch {
            signed: hex::encode(sig.sha256),
            actual: hex::encode(actual),
        });
    }
    let signature = sig.rsa2048().ok_or(Error::Unsigned)?;
    key.verify_pkcs1_sha256(image, signature)
}

/// Racklet's replay rule (not the bootloader's, see the module docs): a
/// `ts` older than the newest one accepted before is refused; the same
/// `ts` (booting the same image again) is accepted.
pub fn check_fresh(offered: SigTimestamp, last_accepted: Option<SigTimestamp>) -> Result<()> {
    match last_accepted {
        Some(last) if offered < last => Err(Error::StaleTimestamp {
            offered,
            last_accepted: last,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "902be6c484ad71bb9f88b2fce51a2baf01efcb031c9daa0557d3b722c3951959";

    fn problem_of(text: &str) -> Option<(usize, SigProblem)> {
        match BootSig::parse(text.as_bytes()) {
            Ok(_) => None,
            Err(Error::ParseBootSig { line, problem }) => Some((line, problem)),
            Err(e) => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn grammar_as_a_table() {
        let sig = "ab".repeat(256);
        let cases: Vec<(String, Option<(usize, SigProblem)>)> = vec![
            (format!("{HASH}\nts: 1734010524\n"), None),
            (format!("{HASH}\nts: 0\n"), None),
            (format!("{HASH}\nts: 1\ntarget-soc: 2712\n"), None),
            (format!("{HASH}\nts: 1\nrsa2048: {sig}\n"), None),
            (
                format!("{HASH}\nts: 1\ntarget-soc: 2711\nrsa2048: {sig}\n"),
                None,
            ),
            (format!("{HASH}\nts: 1"), Some((0, SigProblem::LineEnd))),
            (
                format!("{HASH}\r\nts: 1\r\n"),
                Some((0, SigProblem::LineEnd)),
            ),
            (
                format!("{}\nts: 1\n", HASH.to_uppercase()),
                Some((1, SigProblem::Hash)),
            ),
            (
                format!("{}\nts: 1\n", &HASH[..62]),
                Some((1, SigProblem::Hash)),
            ),
            (format!("{HASH}\n"), Some((2, SigProblem::Missing))),
            (
                format!("{HASH}\nts: 01\n"),
                Some((2, SigProblem::Timestamp)),
            ),
            (
                format!("{HASH}\nts: 4294967296\n"),
                Some((2, SigProblem::Timestamp)),
            ),
            (format!("{HASH}\nts:1\n"), Some((2, SigProblem::Timestamp))),
            (
                format!("{HASH}\nts: -1\n"),
                Some((2, SigProblem::Timestamp)),
            ),
            (
                format!("{HASH}\nts: 1\ntarget-soc: 2710\n"),
                Some((3, SigProblem::TargetSoc)),
            ),
            (
                format!("{HASH}\nts: 1\nrsa2048: {}\n", &sig[2..]),
                Some((3, SigProblem::Signature)),
            ),
            (
                format!("{HASH}\nts: 1\nrsa2048: {}\n", sig.to_uppercase()),
                Some((3, SigProblem::Signature)),
            ),
            (
                format!("{HASH}\nts: 1\nrsa2048: {sig}\nextra\n"),
                Some((4, SigProblem::Unexpected)),
            ),
            (
                format!("{HASH}\nts: 1\nrsa2048: {sig}\ntarget-soc: 2711\n"),
                Some((4, SigProblem::Unexpected)),
            ),
            (
                format!("{HASH}\nts: 1\n\n"),
                Some((3, SigProblem::Unexpected)),
            ),
            (
                format!("{HASH}\nts: 1\n{}", " ".repeat(1024)),
                Some((0, SigProblem::TooLong)),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(problem_of(&text), want, "{text:?}");
        }
    }

    #[test]
    fn encode_parse_round_trip() {
        let mut s = BootSig::digest_only(b"boot.img", SigTimestamp(7), Some(TargetSoc::Bcm2712));
        s.rsa2048 = Some(Box::new([0x5a; 256]));
        let text = s.encode();
        assert_eq!(BootSig::parse(text.as_bytes()).unwrap(), s);
        assert_eq!(text.len(), 64 + 1 + 6 + 17 + 9 + 512 + 1);
    }

    #[test]
    fn freshness_as_a_table() {
        let t = SigTimestamp;
        assert!(check_fresh(t(5), None).is_ok());
        assert!(check_fresh(t(5), Some(t(5))).is_ok());
        assert!(check_fresh(t(6), Some(t(5))).is_ok());
        assert!(matches!(
            check_fresh(t(4), Some(t(5))),
            Err(Error::StaleTimestamp { .. })
        ));
        assert!(SigTimestamp::from_unix(-1).is_err());
        assert!(SigTimestamp::from_unix(i64::from(u32::MAX) + 1).is_err());
    }
}
