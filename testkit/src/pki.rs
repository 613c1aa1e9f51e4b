//! A throwaway PKI for TLS tests: one CA, a server certificate for `127.0.0.1` and
//! `localhost`, and a client certificate, all written as PEM files to a directory.

use std::path::{Path, PathBuf};

/// The PEM files [`TestPki::write`] made.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (trust anchor for servers and clients).
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate (for mutual TLS), named `client`.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// Makes a CA and its two certificates, writing them into `dir`.
    pub fn write(dir: &Path) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>| {
            let key = rcgen::KeyPair::generate().expect("leaf key");
            let cert = rcgen::CertificateParams::new(names)
                .expect("leaf params")
                .signed_by(&key, &issuer)
                .expect("leaf certificate");
            (cert.pem(), key.serialize_pem())
        };
        let server = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
        let client = leaf(vec!["client".into()]);
        let pki = TestPki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        for (path, text) in [
            (&pki.ca, ca.pem()),
            (&pki.server_cert, server.0),
            (&pki.server_key, server.1),
            (&pki.client_cert, client.0),
            (&pki.client_key, client.1),
        ] {
            std::fs::write(path, text).expect("write a PEM file");
        }
        pki
    }
}
