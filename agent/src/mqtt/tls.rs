//! rustls client configuration for `mqtts://`, with exactly one crypto provider (ring),
//! chosen explicitly, so no process-wide default provider has to be installed.

use std::io::BufReader;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::MqttError;
use crate::config::MqttConfig;

fn tls_err(e: impl std::fmt::Display) -> MqttError {
    MqttError::Tls(e.to_string())
}

fn certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, MqttError> {
    let file =
        std::fs::File::open(path).map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
    rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("{}: {e}", path.display())))
}

fn key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, MqttError> {
    let file =
        std::fs::File::open(path).map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| tls_err(format!("{}: {e}", path.display())))?
        .ok_or_else(|| tls_err(format!("{}: no private key", path.display())))
}

/// The TLS client config: the configured CA file or the system roots, and the client
/// certificate for mutual TLS if configured.
pub fn client_config(mqtt: &MqttConfig) -> Result<Arc<ClientConfig>, MqttError> {
    let mut roots = RootCertStore::empty();
    match &mqtt.ca_file {
        Some(ca) => {
            for cert in certs(ca)? {
                roots.add(cert).map_err(tls_err)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(tls_err("no system root certificates found; set ca_file"));
            }
        }
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_root_certificates(roots);
    let config = match (&mqtt.client_cert, &mqtt.client_key) {
        (Some(cert), Some(key_file)) => builder
            .with_client_auth_cert(certs(cert)?, key(key_file)?)
            .map_err(tls_err)?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
