//! What the SDK trusts for `wss://` connectors and `https://` controllers and dispatchers:
//! the platform's root certificates plus, optionally, one CA the app configures
//! ([`Config::with_tls_ca`](crate::Config::with_tls_ca)), for a deployment whose certificates
//! come from its own CA. One rustls configuration (on the `ring` provider) serves the
//! WebSocket and the HTTP calls alike, built once per [`Client`](crate::Client).
//!
//! Does not own: sockets or handshakes (tokio-tungstenite and reqwest drive them), client
//! certificates (devices authenticate with their token), certificate pinning.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::{Error, Result};

/// A CA to trust besides the platform's roots: a PEM file, or PEM text the app carries.
#[derive(Clone, PartialEq, Eq)]
pub enum TlsCa {
    /// A PEM file with one or more `CERTIFICATE` blocks, read when the client starts.
    File(PathBuf),
    /// PEM text with one or more `CERTIFICATE` blocks.
    Pem(Vec<u8>),
}

impl fmt::Debug for TlsCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Pem(pem) => write!(f, "Pem({} bytes)", pem.len()),
        }
    }
}

impl From<PathBuf> for TlsCa {
    fn from(path: PathBuf) -> Self {
        Self::File(path)
    }
}

impl From<&Path> for TlsCa {
    fn from(path: &Path) -> Self {
        Self::File(path.to_owned())
    }
}

impl From<Vec<u8>> for TlsCa {
    fn from(pem: Vec<u8>) -> Self {
        Self::Pem(pem)
    }
}

impl From<&[u8]> for TlsCa {
    fn from(pem: &[u8]) -> Self {
        Self::Pem(pem.to_vec())
    }
}

impl TlsCa {
    fn name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Pem(_) => "the configured PEM text".to_owned(),
        }
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>> {
        let bad = |detail: String| Error::TlsCa {
            ca: self.name(),
            detail,
        };
        let parsed: Vec<_> = match self {
            Self::File(path) => CertificateDer::pem_file_iter(path)
                .map_err(|error| bad(error.to_string()))?
                .collect(),
            Self::Pem(pem) => CertificateDer::pem_slice_iter(pem).collect(),
        };
        let certificates = parsed
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| bad(error.to_string()))?;
        if certificates.is_empty() {
            return Err(bad("no CERTIFICATE block in it".to_owned()));
        }
        Ok(certificates)
    }
}

/// The client configuration: the platform's roots, plus `extra` when set, offering
/// `http/1.1` (the WebSocket upgrade and the REST calls are both HTTP/1.1).
pub(crate) fn client_config(extra: Option<&TlsCa>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    // A platform store that cannot be read leaves only the configured CA: say so, but a
    // deployment with its own CA still works.
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::warn!(errors = ?native.errors, "some platform root certificates could not be read");
    }
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(ca) = extra {
        for certificate in ca.certificates()? {
            roots.add(certificate).map_err(|error| Error::TlsCa {
                ca: ca.name(),
                detail: format!("not a usable CA certificate: {error}"),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::InvalidConfig(format!("TLS: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A connection error said so that an app developer knows what to do, for the errors that
/// are about trust; anything else as it came.
pub(crate) fn explain_connect_error(error: &tokio_tungstenite::tungstenite::Error) -> String {
    let text = error.to_string();
    if text.contains("invalid peer certificate") {
        format!(
            "the connector's TLS certificate is not trusted ({text}); if the deployment uses \
             its own CA, configure it with Config::with_tls_ca"
        )
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_is_named_and_a_good_one_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsCa::from(dir.path().join("missing.pem").as_path());
        let error = client_config(Some(&missing)).unwrap_err().to_string();
        assert!(error.contains("missing.pem"), "{error}");

        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let error = client_config(Some(&TlsCa::File(not_pem)))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("not.pem") && error.contains("no CERTIFICATE"),
            "{error}"
        );

        let key_only =
            TlsCa::Pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec());
        let error = client_config(Some(&key_only)).unwrap_err().to_string();
        assert!(error.contains("PEM text"), "{error}");

        client_config(None).expect("the platform's roots alone");
        let pki = ringpush_testkit::TestPki::write(dir.path());
        client_config(Some(&TlsCa::File(pki.ca.clone()))).expect("a CA file");
        let pem = std::fs::read(&pki.ca).unwrap();
        client_config(Some(&TlsCa::from(pem))).expect("CA PEM text");
    }
}
