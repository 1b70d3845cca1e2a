//! The Pi secure-boot public key and the forms it travels in.
//!
//! The bootloader only verifies RSA-2048 (PKCS#1 v1.5, SHA-256)
//! signatures (rpi-eeprom `rpi-eeprom-digest` usage text). Its EEPROM holds
//! the key as `pubkey.bin`, which `rpi-eeprom-config --pubkey FILE.pem`
//! makes from a PEM key (rpi-eeprom `rpi-eeprom-config`, `pemtobin`):
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 256 | modulus n, little-endian |
//! | 256 | 8 | public exponent e, little-endian |
//!
//! `tests/format.rs` checks this against the `pubkey.bin` inside
//! rpi-eeprom's own `test/pieeprom-signed.bin`, made from its
//! `test/public.pem`. The PEM form written here is the X.509
//! SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`) that
//! `openssl rsa -pubout` writes and `rpi-eeprom-config -p` reads; a PKCS#1
//! `RSA PUBLIC KEY` is read too.

use std::fmt;

use crate::error::{Error, Result};

/// Length of `pubkey.bin`.
pub const PUBKEY_BIN_LEN: usize = 264;

/// DER of `AlgorithmIdentifier { rsaEncryption, NULL }`.
const RSA_ALGORITHM: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// An RSA-2048 public key, the only kind the Pi bootloader checks.
#[derive(Clone, PartialEq, Eq)]
pub struct PiPublicKey {
    /// Modulus, big-endian, top bit set.
    n: [u8; 256],
    /// Public exponent: odd, at least 3.
    e: u64,
}

impl fmt::Debug for PiPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PiPublicKey(rsa2048, n={}…, e={})",
            hex::encode(&self.n[..8]),
            self.e
        )
    }
}

impl PiPublicKey {
    /// From big-endian modulus and exponent bytes (leading zeros allowed).
    pub fn from_components(n_be: &[u8], e_be: &[u8]) -> Result<Self> {
        let n_be = strip_zeros(n_be);
        let e_be = strip_zeros(e_be);
        if n_be.len() != 256 || n_be[0] & 0x80 == 0 {
            return Err(Error::NotRsa2048 {
                reason: "the modulus is not exactly 2048 bits",
            });
        }
        if n_be[255] & 1 == 0 {
            return Err(Error::NotRsa2048 {
                reason: "the modulus is even",
            });
        }
        if e_be.is_empty() || e_be.len() > 8 {
            return Err(Error::NotRsa2048 {
                reason: "the exponent does not fit the bootloader's 8 bytes",
            });
        }
        let e = e_be.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if e < 3 || e % 2 == 0 {
            return Err(Error::NotRsa2048 {
                reason: "the exponent is not odd and at least 3",
            });
        }
        let mut n = [0u8; 256];
        n.copy_from_slice(n_be);
        Ok(Self { n, e })
    }

    /// The modulus, big-endian.
    pub fn modulus(&self) -> &[u8; 256] {
        &self.n
    }

    /// The public exponent.
    pub fn exponent(&self) -> u64 {
        self.e
    }

    /// Reads the bootloader's `pubkey.bin` (table above).
    pub fn from_pubkey_bin(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != PUBKEY_BIN_LEN {
            return Err(Error::PubkeyBinLength { len: bytes.len() });
        }
        let mut n = bytes[..256].to_vec();
        n.reverse();
        let mut e = bytes[256..].to_vec();
        e.reverse();
        Self::from_components(&n, &e)
    }

    /// Writes the bootloader's `pubkey.bin` (table above).
    pub fn to_pubkey_bin(&self) -> [u8; PUBKEY_BIN_LEN] {
        let mut out = [0u8; PUBKEY_BIN_LEN];
        for (dst, src) in out[..256].iter_mut().zip(self.n.iter().rev()) {
            *dst = *src;
        }
        out[256..].copy_from_slice(&self.e.to_le_bytes());
        out
    }

    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or `RSA PUBLIC KEY`.
    pub fn from_pem(text: &str) -> Result<Self> {
        let pem = pem::parse(text).map_err(|source| Error::ParsePem { source })?;
        match pem.tag() {
            "PUBLIC KEY" => Self::from_spki_der(pem.contents()),
            "RSA PUBLIC KEY" => Self::from_pkcs1_der(pem.contents()),
            other => Err(Error::PemLabel {
                label: other.to_owned(),
            }),
        }
    }

    /// Reads either form `imgsign pi-key export` writes: PEM (text with a
    /// `-----BEGIN` line, [`Self::from_pem`]) or the 264-byte `pubkey.bin`
    /// ([`Self::from_pubkey_bin`]).
    pub fn from_either(bytes: &[u8]) -> Result<Self> {
        match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN") => Self::from_pem(text),
            _ => Self::from_pubkey_bin(bytes),
        }
    }

    /// The PEM `PUBLIC KEY` form `rpi-eeprom-config --pubkey` takes.
    pub fn to_pem(&self) -> String {
        let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
        pem::encode_config(&pem::Pem::new("PUBLIC KEY", self.to_spki_der()), config)
    }

    /// Reads DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let (spki, rest) = tlv(der, 0x30)?;
        no_trailing(rest)?;
        let (alg, rest) = tlv_raw(spki, 0x30)?;
        if alg != RSA_ALGORITHM {
            return Err(Error::ParseDer {
                reason: "not an rsaEncryption key",
            });
        }
        let (bits, rest) = tlv(rest, 0x03)?;
        no_trailing(rest)?;
        let inner = bits.strip_prefix(&[0u8]).ok_or(Error::ParseDer {
            reason: "the key's BIT STRING has unused bits",
        })?;
        Self::from_pkcs1_der(inner)
    }

    /// Reads DER PKCS#1 `RSAPublicKey`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self> {
        let (seq, rest) = tlv(der, 0x30)?;
        no_trailing(rest)?;
        let (n, rest) = integer(seq)?;
        let (e, rest) = integer(rest)?;
        no_trailing(rest)?;
        Self::from_components(n, e)
    }

    /// DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut bits = vec![0u8];
        bits.extend(self.to_pkcs1_der());
        let mut body = RSA_ALGORITHM.to_vec();
        body.extend(encode_tlv(0x03, &bits));
        encode_tlv(0x30, &body)
    }

    /// DER PKCS#1 `RSAPublicKey`.
    pub fn to_pkcs1_der(&self) -> Vec<u8> {
        let mut body = encode_integer(&self.n);
        body.extend(encode_integer(&self.e.to_be_bytes()));
        encode_tlv(0x30, &body)
    }

    /// Verifies an RSA-2048 PKCS#1 v1.5 SHA-256 signature over `message`.
    #[cfg(feature = "rsa")]
    pub fn verify_pkcs1_sha256(&self, message: &[u8], signature: &[u8; 256]) -> Result<()> {
        use aws_lc_rs::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
        let e = self.e.to_be_bytes();
        let key = RsaPublicKeyComponents {
            n: &self.n[..],
            e: strip_zeros(&e),
        };
        key.verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
            .map_err(|_| Error::BadSignature)
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

fn der_err(reason: &'static str) -> Error {
    Error::ParseDer { reason }
}

fn no_trailing(rest: &[u8]) -> Result<()> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(der_err("bytes after the end of the structure"))
    }
}

/// Splits one DER TLV with `tag` off `input`: (whole TLV, rest).
fn tlv_raw(input: &[u8], tag: u8) -> Result<(&[u8], &[u8])> {
    let (_, rest) = tlv(input, tag)?;
    let whole = input.len() - rest.len();
    Ok((&input[..whole], rest))
}

/// Splits one DER TLV with `tag` off `input`: (contents, rest). Lengths
/// must be minimal (DER), at most two length bytes.
fn tlv(input: &[u8], tag: u8) -> Result<(&[u8], &[u8])> {
    let (&t, input) = input.split_first().ok_or(der_err("truncated"))?;
    if t != tag {
        return Err(der_err("unexpected tag"));
    }
    let (&l0, input) = input.split_first().ok_or(der_err("truncated"))?;
    let (len, input) = match l0 {
        0..=0x7f => (usize::from(l0), input),
        0x81 => match input.split_first() {
            Some((&l, rest)) if l >= 0x80 => (usize::from(l), rest),
            _ => return Err(der_err("non-minimal or truncated length")),
        },
        0x82 => match input {
            [a, b, rest @ ..] if *a != 0 => ((usize::from(*a) << 8) | usize::from(*b), rest),
            _ => return Err(der_err("non-minimal or truncated length")),
        },
        _ => return Err(der_err("length too long for a key")),
    };
    if input.len() < len {
        return Err(der_err("truncated"));
    }
    Ok(input.split_at(len))
}

/// A positive DER INTEGER's magnitude (sign byte removed), and the rest.
fn integer(input: &[u8]) -> Result<(&[u8], &[u8])> {
    let (v, rest) = tlv(input, 0x02)?;
    match v {
        [] => Err(der_err("empty INTEGER")),
        [b, ..] if b & 0x80 != 0 => Err(der_err("negative INTEGER")),
        [0, next, ..] if next & 0x80 == 0 => Err(der_err("non-minimal INTEGER")),
        [0, tail @ ..] if !tail.is_empty() => Ok((tail, rest)),
        _ => Ok((v, rest)),
    }
}

fn encode_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n @ 0..=0x7f => out.push(n as u8),
        n @ 0x80..=0xff => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn encode_integer(magnitude_be: &[u8]) -> Vec<u8> {
    let m = strip_zeros(magnitude_be);
    let mut v = Vec::with_capacity(m.len() + 1);
    if m.first().is_none_or(|b| b & 0x80 != 0) {
        v.push(0);
    }
    v.extend_from_slice(m);
    encode_tlv(0x02, &v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PiPublicKey {
        let mut n = [0xA5u8; 256];
        n[0] = 0xC1;
        n[255] = 0x01;
        PiPublicKey::from_components(&n, &[1, 0, 1]).unwrap()
    }

    #[test]
    fn pubkey_bin_byte_table() {
        let k = key();
        let bin = k.to_pubkey_bin();
        assert_eq!(bin[0], 0x01, "n is little-endian: its last byte first");
        assert_eq!(bin[255], 0xC1);
        assert_eq!(
            &bin[256..],
            &[0x01, 0x00, 0x01, 0, 0, 0, 0, 0],
            "e = 65537, LE"
        );
        assert_eq!(PiPublicKey::from_pubkey_bin(&bin).unwrap(), k);
        assert!(matches!(
            PiPublicKey::from_pubkey_bin(&bin[..263]),
            Err(Error::PubkeyBinLength { len: 263 })
        ));
    }

    #[test]
    fn der_and_pem_round_trip() {
        let k = key();
        let der = k.to_spki_der();
        assert_eq!(
            &der[..4],
            &[0x30, 0x82, 0x01, 0x22],
            "a 2048-bit SPKI is 294 bytes"
        );
        assert_eq!(der.len(), 294);
        assert_eq!(PiPublicKey::from_spki_der(&der).unwrap(), k);
        assert_eq!(PiPublicKey::from_pkcs1_der(&k.to_pkcs1_der()).unwrap(), k);
        let pem = k.to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n") && !pem.contains('\r'));
        assert_eq!(PiPublicKey::from_pem(&pem).unwrap(), k);
        // Either file `pi-key export` writes.
        assert_eq!(PiPublicKey::from_either(pem.as_bytes()).unwrap(), k);
        assert_eq!(PiPublicKey::from_either(&k.to_pubkey_bin()).unwrap(), k);
        assert!(PiPublicKey::from_either(b"neither").is_err());
    }

    #[test]
    fn refused_keys_as_a_table() {
        let mut n = [0xA5u8; 256];
        n[255] = 1;
        let cases: &[(&[u8], &[u8])] = &[
            (&n[1..], &[1, 0, 1]),              // 2040 bits
            (&[0x7F; 256], &[1, 0, 1]),         // 2047 bits
            (&[0xFF; 257], &[1, 0, 1]),         // 2056 bits
            (&[0xA4; 256], &[1, 0, 1]),         // even modulus
            (&n, &[]),                          // no exponent
            (&n, &[2]),                         // even exponent
            (&n, &[1]),                         // e = 1
            (&n, &[1, 0, 0, 0, 0, 0, 0, 0, 1]), // 9 bytes
        ];
        for (i, (n, e)) in cases.iter().enumerate() {
            assert!(
                matches!(
                    PiPublicKey::from_components(n, e),
                    Err(Error::NotRsa2048 { .. })
                ),
                "case {i}"
            );
        }
        let mut der = key().to_spki_der();
        der.push(0);
        assert!(PiPublicKey::from_spki_der(&der).is_err(), "trailing byte");
        let der = key().to_spki_der();
        for cut in 0..der.len() {
            assert!(
                PiPublicKey::from_spki_der(&der[..cut]).is_err(),
                "cut {cut}"
            );
        }
    }
}
