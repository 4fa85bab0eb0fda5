//! Mutual TLS between nodes: a cluster certificate authority, node
//! certificates, and the QUIC configurations that require both.
//!
//! Every node holds the cluster CA's certificate and its own certificate,
//! signed by that CA, whose one DNS subject-alternative name is its node id.
//! A node accepts a connection only from a peer whose certificate the CA
//! signed, and connects only to a peer that presents such a certificate for
//! the node id it dialled; the peer's node id is then read from its
//! certificate ([`peer_node_id`]), never from what it says in a message.
//! Only TLS 1.3 (QUIC requires it) with rustls' `ring` provider.
//!
//! `ringdb dev` (and `ringdb cert`, later) make these files; an operator can
//! also bring certificates from their own CA, as long as the node id is the
//! certificate's DNS name.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use ringdb_ring::NodeId;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// The ALPN protocol name of ringdb's internode protocol.
pub const ALPN_INTERNODE: &[u8] = b"ringdb-internode/1";

/// Errors making or loading certificates and TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating or signing a certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file does not hold what it should.
    #[error("cannot read {what} from PEM: {detail}")]
    Pem {
        /// What was being read.
        what: &'static str,
        /// Why it failed.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built from the CA.
    #[error("cannot verify peers against the CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// quinn refused the TLS configuration.
    #[error("QUIC refused the TLS configuration: {0}")]
    Quic(String),
    /// A node id that cannot be a certificate's DNS name.
    #[error("node id {0:?} is not a valid DNS name (letters, digits, '-' and '.')")]
    InvalidNodeId(String),
    /// The peer presented no certificate, or one without a node id.
    #[error("peer certificate names no node: {0}")]
    NoPeerIdentity(String),
}

/// A cluster's certificate authority: signs the certificates of its nodes.
pub struct ClusterCa {
    certificate_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl ClusterCa {
    /// Makes a new CA for the cluster named `cluster`.
    pub fn generate(cluster: &str) -> Result<ClusterCa, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("ringdb cluster CA {cluster}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(ClusterCa {
            certificate_pem: certificate.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and private key (PEM), to sign more nodes.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<ClusterCa, TlsError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(certificate_pem, key)?;
        Ok(ClusterCa {
            certificate_pem: certificate_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
        })
    }

    /// The CA certificate (PEM), which every node and client trusts.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA private key (PEM). Keep it off the nodes once they are issued.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a certificate for `node`, valid for its node id as DNS name.
    pub fn issue(&self, node: &NodeId) -> Result<NodeCertificate, TlsError> {
        let name = node.as_str();
        if rustls::pki_types::DnsName::try_from(name).is_err() {
            return Err(TlsError::InvalidNodeId(name.to_string()));
        }
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCertificate {
            ca_pem: self.certificate_pem.clone(),
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What a node needs for mutual TLS: the CA it trusts, its certificate and key.
#[derive(Clone)]
pub struct NodeCertificate {
    /// The cluster CA's certificate (PEM).
    pub ca_pem: String,
    /// This node's certificate (PEM), signed by the CA.
    pub certificate_pem: String,
    /// This node's private key (PEM).
    pub key_pem: String,
}

impl NodeCertificate {
    /// The QUIC server configuration: present this node's certificate and
    /// require a client certificate signed by the CA.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
                .build()?;
        let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain()?, self.key()?)?;
        crypto.alpn_protocols = vec![ALPN_INTERNODE.to_vec()];
        let quic = QuicServerConfig::try_from(crypto).map_err(|e| TlsError::Quic(e.to_string()))?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
    }

    /// The QUIC server configuration of the client port: present this node's
    /// certificate, ask clients for none.
    pub fn client_server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain()?, self.key()?)?;
        crypto.alpn_protocols = vec![ringdb_wire::tls::ALPN_CLIENT.to_vec()];
        let quic = QuicServerConfig::try_from(crypto).map_err(|e| TlsError::Quic(e.to_string()))?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
    }

    /// The QUIC client configuration: trust only certificates the CA
    /// signed, and present this node's. The name in the peer's certificate
    /// is not checked during the handshake (a seed is dialled by address);
    /// the caller reads it with [`peer_node_id`] and checks it.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = ringdb_wire::tls::cluster_ca_verifier(&self.ca_pem).map_err(|detail| {
            TlsError::Pem {
                what: "CA certificate",
                detail,
            }
        })?;
        let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain()?, self.key()?)?;
        crypto.alpn_protocols = vec![ALPN_INTERNODE.to_vec()];
        let quic = QuicClientConfig::try_from(crypto).map_err(|e| TlsError::Quic(e.to_string()))?;
        Ok(quinn::ClientConfig::new(Arc::new(quic)))
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for certificate in pem_certificates(&self.ca_pem, "CA certificate")? {
            roots.add(certificate)?;
        }
        Ok(roots)
    }

    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        pem_certificates(&self.certificate_pem, "node certificate")
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| TlsError::Pem {
            what: "node private key",
            detail: e.to_string(),
        })
    }
}

fn pem_certificates(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            detail: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::Pem {
            what,
            detail: "no certificate in the PEM".into(),
        });
    }
    Ok(certificates)
}

/// The node id of the peer of an established connection, read from the DNS
/// name of the certificate it presented (which the CA signed).
pub fn peer_node_id(connection: &quinn::Connection) -> Result<NodeId, TlsError> {
    let identity = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| TlsError::NoPeerIdentity("no certificate presented".into()))?;
    let leaf = identity
        .first()
        .ok_or_else(|| TlsError::NoPeerIdentity("empty certificate chain".into()))?;
    certificate_node_id(leaf)
}

impl NodeCertificate {
    /// The node id this node's own certificate names: the one its peers
    /// will know it by, whatever its config says.
    pub fn node_id(&self) -> Result<NodeId, TlsError> {
        let chain = pem_certificates(&self.certificate_pem, "node certificate")?;
        certificate_node_id(&chain[0])
    }
}

/// The node id a certificate names: its first DNS subject alternative name.
fn certificate_node_id(leaf: &CertificateDer<'_>) -> Result<NodeId, TlsError> {
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| TlsError::NoPeerIdentity(e.to_string()))?;
    let names = certificate
        .subject_alternative_name()
        .map_err(|e| TlsError::NoPeerIdentity(e.to_string()))?
        .ok_or_else(|| TlsError::NoPeerIdentity("no subject alternative name".into()))?;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some(NodeId::new(dns)),
            _ => None,
        })
        .ok_or_else(|| TlsError::NoPeerIdentity("no DNS name".into()))
}
