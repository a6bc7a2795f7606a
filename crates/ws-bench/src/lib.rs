//! Benchmark tooling: the `ws-load` load generator and reference servers
//! built on other libraries. See `docs/benchmarks.md`.

pub mod sockudo;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS acceptor from PEM files, with the ring provider (as ws-server's
/// `TlsConfig` builds it), for the reference servers' `wss://` mode.
///
/// # Panics
///
/// On unreadable or invalid files: this is a benchmark tool.
pub fn tls_acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    let certs = CertificateDer::pem_file_iter(cert)
        .expect("certificate file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A TLS connector trusting the CA in `ca` (PEM), for the load generator.
///
/// # Panics
///
/// On an unreadable or invalid file.
pub fn tls_connector(ca: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("CA certificate")).expect("CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
