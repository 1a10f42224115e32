//! Test certificates, made with the openssl CLI (P-256 keys: quick to generate), and
//! the rustls server configs of the HTTPS receiver.
//!
//! In the directory: `ca` (the test CA); signed by it `server` (IP SAN 127.0.0.1),
//! `named` (DNS SAN `receiver.test` only) and `client` (client auth); and an unrelated
//! CA `other-ca` with its own `other-server` (IP SAN 127.0.0.1), for "wrong CA" tests.
//! Each is `<name>.crt` + `<name>.key`.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The DNS name `named.crt` is issued for.
pub const NAMED_HOST: &str = "receiver.test";

/// A directory of test certificates.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// Generates the set described in the module docs into `dir` (created if missing).
    pub fn generate(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).unwrap();
        make_ca(dir, "ca");
        make_ca(dir, "other-ca");
        make_leaf(dir, "server", "ca", "subjectAltName=IP:127.0.0.1");
        make_leaf(
            dir,
            "named",
            "ca",
            &format!("subjectAltName=DNS:{NAMED_HOST}"),
        );
        make_leaf(dir, "client", "ca", "extendedKeyUsage=clientAuth");
        make_leaf(
            dir,
            "other-server",
            "other-ca",
            "subjectAltName=IP:127.0.0.1",
        );
        Certs {
            dir: dir.to_owned(),
        }
    }

    /// The path of `file` (e.g. `ca.crt`), as text for a config file.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// A TLS server presenting `<name>.crt`; with `client_ca`, it demands a client
    /// certificate issued by `<client_ca>.crt` (mutual TLS).
    pub fn server_config(&self, name: &str, client_ca: Option<&str>) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in self.certs(&format!("{ca}.crt")) {
                    roots.add(cert).unwrap();
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(
                self.certs(&format!("{name}.crt")),
                self.key(&format!("{name}.key")),
            )
            .unwrap();
        Arc::new(config)
    }

    fn certs(&self, file: &str) -> Vec<CertificateDer<'static>> {
        let f = std::fs::File::open(self.dir.join(file)).unwrap();
        rustls_pemfile::certs(&mut BufReader::new(f))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn key(&self, file: &str) -> PrivateKeyDer<'static> {
        let f = std::fs::File::open(self.dir.join(file)).unwrap();
        rustls_pemfile::private_key(&mut BufReader::new(f))
            .unwrap()
            .expect("a private key")
    }
}

/// `openssl req` arguments for a new P-256 key `<name>.key`, subject `/CN=<name>`.
fn new_key(name: &str) -> Vec<String> {
    let key = format!("{name}.key");
    let subject = format!("/CN={name}");
    [
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        &subject,
    ]
    .map(String::from)
    .to_vec()
}

/// A self-signed CA: `<name>.crt`, `<name>.key`.
fn make_ca(dir: &Path, name: &str) {
    let mut args = new_key(name);
    args.extend(["-x509", "-days", "2", "-out"].map(String::from));
    args.push(format!("{name}.crt"));
    openssl(dir, &args);
}

/// A certificate `<name>.crt` (key `<name>.key`) issued by CA `ca`, with extension
/// `ext` (e.g. its subjectAltName).
fn make_leaf(dir: &Path, name: &str, ca: &str, ext: &str) {
    let (ext_file, csr) = (format!("{name}.ext"), format!("{name}.csr"));
    std::fs::write(dir.join(&ext_file), format!("{ext}\n")).unwrap();
    let mut args = new_key(name);
    args.extend(["-out".into(), csr.clone()]);
    openssl(dir, &args);
    let (ca_crt, ca_key, crt) = (
        format!("{ca}.crt"),
        format!("{ca}.key"),
        format!("{name}.crt"),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext_file,
        ],
    );
}

fn openssl<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(dir: &Path, args: &[S]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
