//! TLS server configurations from PEM files, shared by the NBD server
//! (`serve --tls`) and the KMS API server (`kms serve --tls-cert`).
//!
//! Both use rustls with the *ring* provider and its safe defaults: TLS 1.2
//! and 1.3 only (the NBD spec, § "TLS versions": MUST support 1.2, SHOULD
//! support later ones, SHOULD NOT offer older ones by default).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::RootCertStore;

/// Why a TLS configuration could not be built. Each names the file and
/// what to do about it; none carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfError {
    #[error("cannot read TLS {what} {}: {why}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("TLS {what} {} holds no PEM CERTIFICATE block", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error(
        "CA certificate {} cannot be used to verify client certificates: {why}",
        path.display()
    )]
    ClientCa { path: PathBuf, why: String },
    #[error(
        "TLS certificate {} and private key {} do not form a valid configuration: {source}",
        cert.display(),
        key.display()
    )]
    Config {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Where a server's PEM files are.
#[derive(Debug, Clone)]
pub struct ServerFiles<'a> {
    /// The server certificate, optionally followed by its intermediates.
    pub cert: &'a Path,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: &'a Path,
    /// When set, clients must present a certificate that chains to one of
    /// the CA certificates in this file.
    pub client_ca: Option<&'a Path>,
}

/// A rustls server configuration (no ALPN: callers add their own).
pub fn server_config(files: &ServerFiles<'_>) -> Result<rustls::ServerConfig, TlsConfError> {
    let certs = load_certs(files.cert, "certificate")?;
    // `PrivateKeyDer` zeroizes its bytes when dropped (rustls-pki-types).
    let key = PrivateKeyDer::from_pem_file(files.key).map_err(|e| TlsConfError::Read {
        what: "private key",
        path: files.key.to_owned(),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config_err = |source| TlsConfError::Config {
        cert: files.cert.to_owned(),
        key: files.key.to_owned(),
        source,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(config_err)?;
    let builder = match files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(ca, "CA certificate")? {
                roots.add(c).map_err(|e| TlsConfError::ClientCa {
                    path: ca.to_owned(),
                    why: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsConfError::ClientCa {
                    path: ca.to_owned(),
                    why: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder.with_single_cert(certs, key).map_err(config_err)
}

/// Every certificate in a PEM file; at least one.
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfError> {
    let read_err = |e: rustls::pki_types::pem::Error| TlsConfError::Read {
        what,
        path: path.to_owned(),
        why: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    if certs.is_empty() {
        return Err(TlsConfError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let cert = d.path().join("server-cert.pem");
        let key = d.path().join("server-key.pem");
        let files = ServerFiles {
            cert: &cert,
            key: &key,
            client_ca: None,
        };
        let e = server_config(&files).unwrap_err().to_string();
        assert!(
            e.contains("certificate") && e.contains("server-cert.pem"),
            "{e}"
        );
        std::fs::write(&cert, "not pem\n").unwrap();
        let e = server_config(&files).unwrap_err().to_string();
        assert!(
            e.contains("no PEM CERTIFICATE") && e.contains("server-cert.pem"),
            "{e}"
        );
    }
}
