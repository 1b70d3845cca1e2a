//! The server's TLS configuration: TLS 1.3 and 1.2, AEAD suites only,
//! ALPN h2 + http/1.1, optional client certificates from the rack CA with
//! revocation checked against bootd's records.

use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::error::Result;
use crate::nodes::Identities;
use crate::pki::{self, PkiFiles};

/// The aws-lc-rs provider restricted to AEAD cipher suites (AES-GCM and
/// ChaCha20-Poly1305). Passed explicitly; no process-global provider is needed.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites.retain(|s| {
        let name = format!("{:?}", s.suite());
        name.contains("_GCM_") || name.contains("CHACHA20_POLY1305")
    });
    Arc::new(p)
}

/// Identities shared between the reconcile loop and the TLS verifier.
pub type SharedIdentities = Arc<RwLock<Arc<Identities>>>;

/// Builds the server configuration from the PKI files.
pub fn server_config(
    files: &PkiFiles,
    identities: SharedIdentities,
) -> Result<Arc<rustls::ServerConfig>> {
    let provider = provider();
    let chain = pki::load_certs(&files.server_cert)?;
    let key = pki::load_key(&files.server_key)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in pki::load_certs(&files.ca_cert)? {
        roots.add(c)?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let verifier = Arc::new(NodeCertVerifier { inner, identities });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Honour the client's suite order, so a Pi 4 (no AES instructions) that
    // lists ChaCha20-Poly1305 first gets it.
    cfg.ignore_client_order = false;
    Ok(Arc::new(cfg))
}

/// Checks a client certificate against the rack CA (chain, validity,
/// usage) and against bootd's revocation records.
#[derive(Debug)]
struct NodeCertVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    identities: SharedIdentities,
}

impl ClientCertVerifier for NodeCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Enrollment and the repository are reachable without a client
        // certificate; per-node endpoints check for one themselves.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let fp = pki::fingerprint(end_entity);
        let revoked = self
            .identities
            .read()
            .map(|ids| ids.revoked.contains(&fp))
            .unwrap_or(true);
        if revoked {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        // Chain to the rack CA, validity period, client-auth usage.
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
