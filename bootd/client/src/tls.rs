//! The one TLS client configuration of the tree: the node's (stage1), the
//! operator's (`bootd client`) and bootd's own when it mirrors an upstream
//! origin.
//!
//! - only the given CA is trusted (the rack CA, pinned; never the system's
//!   roots);
//! - the client certificate is presented when given (mTLS);
//! - ChaCha20-Poly1305 suites are offered before AES-GCM: a Pi 4 has no AES
//!   instructions, and a server with AES-NI is fast either way;
//! - TLS 1.3 and 1.2 only; ALPN `http/1.1`;
//! - aws-lc-rs is the provider, set here and never process-wide (a library
//!   does not install a global provider).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The certificates in a PEM file, refusing a file that holds none.
pub fn certs_from_pem(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            what,
            reason: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

/// A client configuration trusting only `ca_pem` and presenting
/// `client = (certificate chain PEM, private key PEM)` when given.
pub fn client_config(
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem("rack CA certificate", ca_pem)? {
        roots.add(c)?;
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| {
        let chacha = matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        );
        !chacha
    });
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some((cert_pem, key_pem)) => {
            let chain = certs_from_pem("client certificate", cert_pem)?;
            let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::Pem {
                what: "client key",
                reason: e.to_string(),
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chacha_is_offered_first_and_bad_pem_is_named() {
        let ca = rcgen::generate_simple_self_signed(vec!["rack".into()]).unwrap();
        let cfg = client_config(ca.cert.pem().as_bytes(), None).unwrap();
        let first = cfg.crypto_provider().cipher_suites[0].suite();
        assert_eq!(first, rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
        assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let err = client_config(b"not a pem", None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Pem {
                    what: "rack CA certificate",
                    ..
                }
            ),
            "{err}"
        );
        let err = client_config(ca.cert.pem().as_bytes(), Some((b"", b""))).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Pem {
                    what: "client certificate",
                    ..
                }
            ),
            "{err}"
        );
    }
}
