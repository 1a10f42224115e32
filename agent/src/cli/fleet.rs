//! `outpost fleet keygen` and `outpost fleet sign`: the operator's side of signed
//! plugin packages (README, "Fleet"). Run on the build machine, never on a device: the
//! private key stays there, devices get the public key (`fleet.trusted_keys`).

use std::path::Path;

use anyhow::Context;

use crate::signing::{sha256, to_hex, SigningKey};

/// Makes a key pair: the private key into `private` (mode 0600), the public key into
/// `<private>.pub`; neither file may exist. Returns the public key (hex).
pub fn keygen(private: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut public_file = private.as_os_str().to_owned();
    public_file.push(".pub");
    let public_file = std::path::PathBuf::from(public_file);
    anyhow::ensure!(
        !public_file.exists(),
        "{} exists: not overwritten",
        public_file.display()
    );
    let (key, document) = SigningKey::generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(private)
        .with_context(|| format!("cannot create {}", private.display()))?;
    writeln!(file, "{document}").with_context(|| format!("writing {}", private.display()))?;
    let public = key.public().to_hex();
    std::fs::write(&public_file, format!("{public}\n"))
        .with_context(|| format!("writing {}", public_file.display()))?;
    Ok(public)
}

/// Signs `package` with the private key in `key`: the JSON printed holds what an OpAMP
/// server puts in its `DownloadableFile` (`content_hash`, `signature`, as hex).
pub fn sign(key: &Path, package: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let key = SigningKey::parse(&text).with_context(|| key.display().to_string())?;
    let bytes = std::fs::read(package).with_context(|| format!("reading {}", package.display()))?;
    Ok(serde_json::json!({
        "file": package.display().to_string(),
        "size": bytes.len(),
        "sha256": to_hex(&sha256(&bytes)),
        "signature": to_hex(&key.sign(&bytes)),
        "public_key": key.public().to_hex(),
    })
    .to_string())
}
