//! The rack's own certificate authority, made with `rcgen`.
//!
//! - `init` creates the rack CA and the server certificate (SANs from the
//!   config). Private keys are written 0600 and never overwritten silently.
//! - [`ca_cert_hash`] is what a Raspberry Pi EEPROM's `HTTP_CACERT_HASH`
//!   expects: the SHA-256 of the CA certificate's DER encoding, in hex. (The
//!   DER file itself goes into the EEPROM with `rpi-eeprom-config --cacertder`.)
//! - [`issue_client_cert`] signs an approved node CSR. The certificate's
//!   subject and extensions are chosen here, never copied from the request:
//!   a node cannot ask for a CA bit, a server name or another node's name.
//!
//! Only `bootd pki …` and `bootd nodes approve` read the CA key; `bootd serve`
//! needs the CA certificate and the server key only.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use racklet_fsio::{self as fsio, Mode};

/// Where the rack PKI's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiFiles {
    /// The rack CA certificate (PEM), given to nodes and to Pi EEPROMs.
    pub ca_cert: PathBuf,
    /// The rack CA private key (PEM, 0600). Only the CLI reads it.
    pub ca_key: PathBuf,
    /// The server certificate (PEM).
    pub server_cert: PathBuf,
    /// The server private key (PEM, 0600).
    pub server_key: PathBuf,
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// `HTTP_CACERT_HASH` for the Raspberry Pi EEPROM.
    pub ca_hash: String,
    /// SHA-256 of the server certificate's DER.
    pub server_fingerprint: String,
}

fn cert_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::Certificate { what, source }
}

fn to_time(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn random_serial() -> SerialNumber {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

/// Creates the rack CA and a server certificate for `server_names`
/// (DNS names or IP addresses). Refuses to replace any existing file unless
/// `force` is set.
pub fn init(
    files: &PkiFiles,
    rack_id: &str,
    server_names: &[String],
    server_days: u32,
    now: DateTime<Utc>,
    force: bool,
) -> Result<InitReport> {
    if !force {
        for p in [
            &files.ca_cert,
            &files.ca_key,
            &files.server_cert,
            &files.server_key,
        ] {
            if p.exists() {
                return Err(Error::AlreadyExists { path: p.clone() });
            }
        }
    }
    let ca_key = KeyPair::generate().map_err(cert_err("generate CA key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Racklet");
    dn.push(DnType::CommonName, format!("Racklet rack CA {rack_id}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = to_time(now - chrono::Duration::hours(1));
    params.not_after = to_time(now + chrono::Duration::days(3650));
    params.serial_number = Some(random_serial());
    let ca_cert = params
        .self_signed(&ca_key)
        .map_err(cert_err("self-sign CA"))?;
    // Keys first, each 0600; certificates after.
    fsio::write_atomic(
        &files.ca_key,
        ca_key.serialize_pem().as_bytes(),
        Mode::Secret,
    )?;
    fsio::write_atomic(&files.ca_cert, ca_cert.pem().as_bytes(), Mode::Public)?;
    let issuer = Issuer::new(params, ca_key);
    let server_fingerprint = issue_server_cert(files, &issuer, server_names, server_days, now)?;
    Ok(InitReport {
        ca_hash: hex::encode(Sha256::digest(ca_cert.der())),
        server_fingerprint,
    })
}

/// Issues a new server certificate from the existing CA (e.g. after the
/// server names changed). Replaces the server key and certificate.
pub fn renew_server(
    files: &PkiFiles,
    server_names: &[String],
    server_days: u32,
    now: DateTime<Utc>,
) -> Result<String> {
    let issuer = load_issuer(files)?;
    issue_server_cert(files, &issuer, server_names, server_days, now)
}

fn issue_server_cert(
    files: &PkiFiles,
    issuer: &Issuer<'_, KeyPair>,
    server_names: &[String],
    days: u32,
    now: DateTime<Utc>,
) -> Result<String> {
    let key = KeyPair::generate().map_err(cert_err("generate server key"))?;
    let mut params =
        CertificateParams::new(server_names.to_vec()).map_err(cert_err("server names"))?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        server_names
            .first()
            .cloned()
            .unwrap_or_else(|| "bootd".into()),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = to_time(now - chrono::Duration::hours(1));
    params.not_after = to_time(now + chrono::Duration::days(i64::from(days)));
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(cert_err("sign server certificate"))?;
    fsio::write_atomic(
        &files.server_key,
        key.serialize_pem().as_bytes(),
        Mode::Secret,
    )?;
    fsio::write_atomic(&files.server_cert, cert.pem().as_bytes(), Mode::Public)?;
    Ok(fingerprint(cert.der()))
}

fn load_issuer(files: &PkiFiles) -> Result<Issuer<'static, KeyPair>> {
    let key_pem = fsio::read_to_string(&files.ca_key)?;
    let key = KeyPair::from_pem(&key_pem).map_err(cert_err("read CA key"))?;
    let cert_pem = fsio::read_to_string(&files.ca_cert)?;
    Issuer::from_ca_cert_pem(&cert_pem, key).map_err(cert_err("read CA certificate"))
}

/// SHA-256 of a DER blob, lowercase hex: how bootd names certificates.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The Raspberry Pi EEPROM `HTTP_CACERT_HASH` for a CA certificate file:
/// SHA-256 of the certificate's DER encoding, lowercase hex.
pub fn ca_cert_hash(ca_cert: &Path) -> Result<String> {
    Ok(fingerprint(&ca_cert_der(ca_cert)?))
}

/// The DER encoding of the (first) certificate in a PEM file.
pub fn ca_cert_der(path: &Path) -> Result<Vec<u8>> {
    Ok(load_certs(path)?
        .into_iter()
        .next()
        .map(|c| c.to_vec())
        .unwrap_or_default())
}

/// Loads every certificate in a PEM file; refuses a file with none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = fsio::read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            path: path.to_owned(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Loads a private key from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = fsio::read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| Error::Pem {
        path: path.to_owned(),
        reason: format!("no usable private key ({e})"),
    })
}

/// An issued node certificate.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// SHA-256 of its DER.
    pub fingerprint: String,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

/// Parses a CSR and checks its self-signature (proof that the requester
/// holds the private key). Returns the SHA-256 fingerprint of the request's
/// public key, which the node shows on its console for the operator to compare.
pub fn check_csr(csr_pem: &str) -> Result<String> {
    let params = parse_csr(csr_pem)?;
    Ok(fingerprint(rcgen::PublicKeyData::der_bytes(
        &params.public_key,
    )))
}

fn parse_csr(csr_pem: &str) -> Result<CertificateSigningRequestParams> {
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|source| Error::CsrNotPem { source })?;
    CertificateSigningRequestParams::from_der(&der).map_err(|source| Error::CsrInvalid { source })
}

/// Signs an approved node CSR with the rack CA. Subject, usages and validity
/// are set here; nothing from the request except its public key is used.
pub fn issue_client_cert(
    files: &PkiFiles,
    csr_pem: &str,
    node: &str,
    days: u32,
    now: DateTime<Utc>,
) -> Result<IssuedCert> {
    let issuer = load_issuer(files)?;
    let mut csr = parse_csr(csr_pem)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Racklet nodes");
    dn.push(DnType::CommonName, node);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let not_after = now + chrono::Duration::days(i64::from(days));
    params.not_before = to_time(now - chrono::Duration::minutes(5));
    params.not_after = to_time(not_after);
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    csr.params = params;
    let cert = csr
        .signed_by(&issuer)
        .map_err(cert_err("sign node certificate"))?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        fingerprint: fingerprint(cert.der()),
        not_after: DateTime::from_timestamp(not_after.timestamp(), 0).unwrap_or(not_after),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn files(dir: &Path) -> PkiFiles {
        PkiFiles {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }

    #[test]
    fn init_writes_secret_keys_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let names = vec!["bootd.local".to_string(), "127.0.0.1".to_string()];
        let report = init(&f, "rack", &names, 30, Utc::now(), false).unwrap();
        for key in [&f.ca_key, &f.server_key] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let before = std::fs::read(&f.ca_key).unwrap();
        let err = init(&f, "rack", &names, 30, Utc::now(), false).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert_eq!(
            std::fs::read(&f.ca_key).unwrap(),
            before,
            "CA key was touched"
        );
        // The Pi hash is SHA-256 over the DER of the CA certificate.
        let der = ca_cert_der(&f.ca_cert).unwrap();
        assert_eq!(report.ca_hash, hex::encode(Sha256::digest(&der)));
        assert_eq!(ca_cert_hash(&f.ca_cert).unwrap(), report.ca_hash);
        assert_eq!(report.ca_hash.len(), 64);
    }

    #[test]
    fn client_cert_ignores_what_the_csr_asks_for() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        init(&f, "rack", &["localhost".into()], 30, Utc::now(), false).unwrap();
        // A CSR asking to be a CA for "bootd.local" with a server usage.
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "unit-9");
        let csr = p.serialize_request(&key).unwrap().pem().unwrap();
        let issued = issue_client_cert(&f, &csr, "unit-1", 10, Utc::now()).unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let bc = cert.basic_constraints().unwrap();
        assert!(bc.is_none_or(|b| !b.value.ca), "issued a CA certificate");
        assert!(
            cert.subject_alternative_name().unwrap().is_none(),
            "copied SANs"
        );
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(cn, vec!["unit-1"]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(issued.fingerprint, fingerprint(&der));
    }

    #[test]
    fn tampered_csr_is_refused() {
        let (_key, csr) = bootd_client::new_key_and_csr("unit-1").unwrap();
        check_csr(&csr).unwrap();
        let der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes()).unwrap();
        let mut bytes = der.to_vec();
        // Flip a bit inside the subject (covered by the signature).
        let at = bytes.windows(6).position(|w| w == b"unit-1").unwrap();
        bytes[at + 5] ^= 0x01;
        let text = pem_encode("CERTIFICATE REQUEST", &bytes);
        let err = check_csr(&text).unwrap_err();
        assert!(err.to_string().contains("bad certificate request"), "{err}");
    }

    fn pem_encode(label: &str, der: &[u8]) -> String {
        // Base64 without a dependency: rcgen's pem feature brings `pem`.
        let b64 = base64_encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }

    fn base64_encode(data: &[u8]) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in data.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }
}
