//! TLS for clients: verify that a node's certificate was signed by the
//! cluster CA.
//!
//! A client dials addresses, not node ids, and any node of the cluster may
//! answer at a contact point, so the name in the node's certificate (its node
//! id) is not checked against what was dialled: the chain to the cluster CA
//! is, with every other check webpki makes (validity, key usage, signature).

use std::sync::Arc;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The ALPN protocol name of ringdb's client protocol.
pub const ALPN_CLIENT: &[u8] = b"ringdb-client/1";

/// A verifier that accepts a node certificate signed by the CA in `ca_pem`,
/// whatever node id it names (see the module comment). Nodes use it too,
/// to dial a seed they know only by address; they then read the node id
/// from the certificate.
pub fn cluster_ca_verifier(ca_pem: &str) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let certificate = certificate.map_err(|e| format!("CA certificate: {e}"))?;
        roots
            .add(certificate)
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no certificate in the CA file".into());
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("CA certificate: {e}"))?;
    Ok(Arc::new(SignedByClusterCa { webpki }))
}

/// The QUIC configuration of a client that trusts the CA in `ca_pem`.
pub fn client_config(ca_pem: &str) -> Result<quinn::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(cluster_ca_verifier(ca_pem)?)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ALPN_CLIENT.to_vec()];
    let quic = QuicClientConfig::try_from(crypto).map_err(|e| e.to_string())?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(1)));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(std::time::Duration::from_secs(10)).expect("10 s fits"),
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// webpki's verification, less the name check (see the module comment).
#[derive(Debug)]
struct SignedByClusterCa {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for SignedByClusterCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
