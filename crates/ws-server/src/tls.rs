//! `wss://`: TLS for the server, with rustls (feature `tls`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A server's TLS identity and settings; give it to
/// [`ServerBuilder::tls`](crate::ServerBuilder::tls).
///
/// Built from PEM files, the configuration uses rustls's ring provider,
/// chosen explicitly (nothing process-wide is installed, so there is no
/// "no CryptoProvider" panic to meet), TLS 1.2 and 1.3, no client
/// certificates, and ALPN `http/1.1`.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

/// Why a [`TlsConfig`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate chain holds no PEM certificate.
    #[error("no certificate in the PEM certificate chain")]
    NoCertificate,
    /// The key file holds no PEM private key, or a malformed one.
    #[error("no usable private key in the PEM key: {0}")]
    PrivateKey(rustls_pki_types::pem::Error),
    /// A malformed PEM certificate.
    #[error("malformed PEM certificate: {0}")]
    Certificate(rustls_pki_types::pem::Error),
    /// rustls refused the certificate and key (a key that does not match,
    /// an unsupported key type).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    ///
    /// A [`TlsError`] for an unreadable file, a missing or malformed
    /// certificate or key, or a key that does not match.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Self::from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?)
    }

    /// As [`from_pem_files`](Self::from_pem_files), from bytes in memory.
    ///
    /// # Errors
    ///
    /// As [`from_pem_files`](Self::from_pem_files).
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(TlsError::Certificate)?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(TlsError::PrivateKey)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self::from_rustls(Arc::new(config)))
    }

    /// Uses a ready rustls configuration as it is (set its ALPN protocols
    /// to `http/1.1` if clients negotiate ALPN).
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            acceptor: tokio_rustls::TlsAcceptor::from(config),
        }
    }
}
