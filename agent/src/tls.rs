//! rustls client configuration for `mqtts://` and `https://`, with exactly one crypto
//! provider (ring), chosen explicitly, so no process-wide default provider has to be
//! installed and no second TLS stack is linked.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::TlsFiles;

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", file.display())]
    File {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no private key", .0.display())]
    NoKey(PathBuf),
    #[error("no system root certificates found; set ca_file")]
    NoRoots,
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

fn file_error(file: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::File {
        file: file.to_owned(),
        source,
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = std::fs::File::open(path).map_err(file_error(path))?;
    rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_error(path))
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let file = std::fs::File::open(path).map_err(file_error(path))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(file_error(path))?
        .ok_or_else(|| TlsError::NoKey(path.to_owned()))
}

/// The TLS client config of MQTT and HTTPS sinks (and MQTT sources): the configured CA
/// file or the system roots, and the client certificate for mutual TLS if configured.
/// TLS 1.2 and 1.3, no ALPN: the HTTP sink speaks HTTP/1.1 only, which needs none
/// (announcing `h2` would let a server pick a protocol the sink does not speak).
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match &files.ca_file {
        Some(ca) => {
            for cert in certs(ca)? {
                roots.add(cert)?;
            }
        }
        None => {
            // Unparseable system certificates are skipped, as every TLS client does.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TlsError::NoRoots);
            }
        }
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
    let config = match (&files.client_cert, &files.client_key) {
        (Some(cert), Some(key_file)) => {
            builder.with_client_auth_cert(certs(cert)?, key(key_file)?)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
