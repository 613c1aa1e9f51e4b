//! TLS for ringpush's listeners and clients, from PEM files: the rustls configurations that
//! the device listener, the REST API, the dispatcher and the internal gRPC channel use when
//! TLS is on, optionally with client certificates (mutual TLS between controllers and
//! connectors).
//!
//! One crypto provider for every crate: rustls's `ring` (it builds without cmake).
//!
//! Does not own: sockets or handshakes (each server drives its own), where the files are
//! (settings), certificate issuance or renewal (an operator's PKI).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// What a TLS server presents, and whom it asks for a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate issued by one of these CAs (PEM).
    pub client_ca: Option<PathBuf>,
}

/// What a TLS client trusts, and what it presents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTls {
    /// The CAs that issued the servers' certificates (PEM).
    pub ca: PathBuf,
    /// The client's own certificate chain and key, for servers that ask (mutual TLS).
    pub identity: Option<(PathBuf, PathBuf)>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |detail: String| TlsError::File {
        path: path.to_owned(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| bad(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad(error.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| TlsError::File {
        path: path.to_owned(),
        detail: format!("no usable private key: {error}"),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|error| TlsError::File {
            path: path.to_owned(),
            detail: format!("not a usable CA certificate: {error}"),
        })?;
    }
    Ok(roots)
}

impl ServerTls {
    /// The rustls server configuration, advertising `alpn` (e.g. `[b"h2"]` for gRPC,
    /// `[b"http/1.1"]` for WebSocket and REST; empty: none).
    pub fn config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                        .build()
                        .map_err(|error| TlsError::Verifier(error.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(read_certs(&self.cert)?, read_key(&self.key)?)?;
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl ClientTls {
    /// The rustls client configuration, offering `alpn`.
    pub fn config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(&self.ca)?);
        let mut config = match &self.identity {
            Some((cert, key)) => {
                builder.with_client_auth_cert(read_certs(cert)?, read_key(key)?)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_build_from_pem_files_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ringpush_testkit::TestPki::write(dir.path());
        let (ca, cert, key) = (pki.ca, pki.server_cert, pki.server_key);
        let server = ServerTls {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: Some(ca.clone()),
        };
        let config = server.config(&[b"h2"]).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        let client = ClientTls {
            ca: ca.clone(),
            identity: Some((cert.clone(), key.clone())),
        };
        client.config(&[]).unwrap();

        let missing = ServerTls {
            cert: dir.path().join("nope.pem"),
            ..server.clone()
        };
        let error = missing.config(&[]).unwrap_err().to_string();
        assert!(error.contains("nope.pem"), "{error}");
        let swapped = ServerTls {
            cert: key.clone(),
            key: cert.clone(),
            client_ca: None,
        };
        let error = swapped.config(&[]).unwrap_err().to_string();
        assert!(
            error.contains("server.key") && error.contains("no CERTIFICATE"),
            "{error}"
        );
    }
}
