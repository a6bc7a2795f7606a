//! `wss://`: TLS for the client, with rustls (feature `tls`).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::BuildError;

/// Which certificates a `wss://` client trusts; set on the
/// [`ClientBuilder`](crate::ClientBuilder).
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    /// Mozilla's roots, compiled in (feature `webpki-roots`, default on).
    pub(crate) webpki_roots: bool,
    /// The platform's roots (feature `native-roots`).
    pub(crate) native_roots: bool,
    pub(crate) extra_roots: Vec<CertificateDer<'static>>,
    pub(crate) extra_root_files: Vec<PathBuf>,
    pub(crate) danger_accept_invalid_certificates: bool,
    pub(crate) config: Option<Arc<rustls::ClientConfig>>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            webpki_roots: cfg!(feature = "webpki-roots"),
            native_roots: false,
            extra_roots: Vec::new(),
            extra_root_files: Vec::new(),
            danger_accept_invalid_certificates: false,
            config: None,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsSettings {
    /// The rustls configuration these settings describe: the ring provider,
    /// chosen explicitly, TLS 1.2 and 1.3, ALPN `http/1.1`.
    pub(crate) fn build(&self) -> Result<Arc<rustls::ClientConfig>, BuildError> {
        if let Some(config) = &self.config {
            return Ok(config.clone());
        }
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| BuildError::Tls(e.to_string()))?;
        let mut config = if self.danger_accept_invalid_certificates {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(self.roots()?)
                .with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, BuildError> {
        let mut roots = RootCertStore::empty();
        #[cfg(feature = "webpki-roots")]
        if self.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        #[cfg(feature = "native-roots")]
        if self.native_roots {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found.errors.first().map(ToString::to_string);
                return Err(BuildError::Tls(format!(
                    "no platform root certificates found: {}",
                    why.unwrap_or_default()
                )));
            }
            roots.add_parsable_certificates(found.certs);
        }
        let _ = self.native_roots;
        for cert in &self.extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| BuildError::Tls(format!("bad root certificate: {e}")))?;
        }
        for path in &self.extra_root_files {
            let pem = std::fs::read(path)
                .map_err(|e| BuildError::Tls(format!("cannot read {}: {e}", path.display())))?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert
                    .map_err(|e| BuildError::Tls(format!("bad PEM in {}: {e}", path.display())))?;
                roots.add(cert).map_err(|e| {
                    BuildError::Tls(format!("bad certificate in {}: {e}", path.display()))
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(BuildError::Tls(format!(
                    "no certificate in {}",
                    path.display()
                )));
            }
        }
        Ok(roots)
    }
}

/// The server name to verify and to send as SNI.
pub(crate) fn server_name(host: &url::Host<String>) -> Result<ServerName<'static>, BuildError> {
    match host {
        url::Host::Domain(name) => ServerName::try_from(name.clone())
            .map_err(|e| BuildError::Tls(format!("invalid server name {name}: {e}"))),
        url::Host::Ipv4(ip) => Ok(ServerName::IpAddress((*ip).into())),
        url::Host::Ipv6(ip) => Ok(ServerName::IpAddress((*ip).into())),
    }
}

/// Accepts any certificate, for
/// [`ClientBuilder::danger_accept_invalid_certificates`](crate::ClientBuilder::danger_accept_invalid_certificates).
/// Handshake signatures are still checked, so the peer must hold the key of
/// the certificate it sent; who that peer is, is not checked at all.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
