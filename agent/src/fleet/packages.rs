//! Plugin packages from the fleet (spec, "Packages"): each offered package is a plugin,
//! named as in `plugins.active`. It is downloaded (resumed where a previous attempt
//! stopped, never beyond `fleet.max_package_bytes`), its SHA-256 compared with the
//! offer's `content_hash`, its ed25519 signature checked against `fleet.trusted_keys`,
//! and only then written into the plugins dir as `<name>.wasm`, atomically. A package
//! that fails any check changes nothing on the device.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::StatusCode;

use super::proto::{PackageAvailable, PackageStatus, PackageStatusEnum, PackageStatuses};
use super::store::{replace_file, FleetStore, InstalledPackage, Packages};
use super::transport::{Endpoint, TransportError};
use crate::config::is_identifier;
use crate::signing::{from_hex, sha256, to_hex, PublicKey};

/// Why a package was not installed (reported upstream as `INSTALL_FAILED`).
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("`{0}` is not a plugin name (letters, digits, `_` and `-`)")]
    Name(String),
    #[error("the offer has no file to download")]
    NoFile,
    #[error("bad download URL `{0}`")]
    Url(String),
    #[error("download: {0}")]
    Download(#[from] TransportError),
    #[error("download: {0}")]
    Io(#[from] std::io::Error),
    #[error("larger than fleet.max_package_bytes ({0} bytes)")]
    TooLarge(u64),
    #[error("the offer has no content hash")]
    NoHash,
    #[error("the content's SHA-256 is {actual}, the offer says {offered}")]
    HashMismatch { actual: String, offered: String },
    #[error("unsigned package")]
    Unsigned,
    #[error("the signature matches none of fleet.trusted_keys")]
    BadSignature,
    #[error("superseded by a newer offer")]
    Superseded,
    #[error("cannot install into {}: {source}", dir.display())]
    Install {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// How long after a passing failure (a download cut off) an offer is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

impl PackageError {
    /// Whether trying again may work: a download or a write that failed, not a
    /// package that does not verify.
    fn is_passing(&self) -> bool {
        matches!(
            self,
            PackageError::Download(_) | PackageError::Io(_) | PackageError::Install { .. }
        )
    }
}

/// The longest one package may take to download (a server that trickles bytes must
/// not hold the fleet client forever).
const DOWNLOAD_DEADLINE: Duration = Duration::from_secs(900);

/// Whether `url` is on the fleet server (same host, port and security; `ws` and
/// `http` alike), where the fleet's credentials may go.
fn same_server(url: &url::Url, server: &url::Url) -> bool {
    let secure = |u: &url::Url| matches!(u.scheme(), "https" | "wss");
    url.host_str() == server.host_str()
        && url.port_or_known_default() == server.port_or_known_default()
        && secure(url) == secure(server)
}

/// One offer of the server: its packages, and the hash of them all (what the server
/// compares with the agent's to tell whether the device has them all).
#[derive(Clone, PartialEq)]
struct Offer {
    packages: HashMap<String, PackageAvailable>,
    all_hash: Vec<u8>,
}

/// An offer to try again, and when.
struct Retry {
    offer: Offer,
    at: Instant,
}

/// An offer being installed by a task of its own, so that the fleet client goes on
/// reporting (and the server sees `INSTALLING`) while a package downloads — which
/// may take minutes on a slow link.
struct Installing {
    offer: Offer,
    task: tokio::task::JoinHandle<Vec<(String, Result<PathBuf, PackageError>)>>,
    /// Set when a newer offer replaces this one: the task stops at its next download
    /// or between packages — never between writing a package and returning it, so
    /// what it installed is always recorded.
    supersede: tokio::sync::watch::Sender<bool>,
}

impl Installing {
    fn superseded(&self) -> bool {
        *self.supersede.borrow()
    }
}

/// What fetches, checks and writes packages: shared with the install task.
struct Installer {
    endpoint: Endpoint,
    /// The fleet server: its headers (credentials) go only to downloads from it.
    server: url::Url,
    store: FleetStore,
    keys: Vec<PublicKey>,
    max_bytes: u64,
}

/// The packages on this device and how the last offer went.
pub struct PackageManager {
    installer: Arc<Installer>,
    retry: Option<Retry>,
    installing: Option<Installing>,
    /// An offer that came while another was being installed: started once that one
    /// stopped.
    queued: Option<Offer>,
    /// The last offer whose install ended with failures: the same offer again (a
    /// server may repeat it in every answer) waits for the retry, if its failures may
    /// pass, instead of downloading again at each answer.
    failed: Option<Offer>,
    installed: Packages,
    /// Per package: the last outcome (installed, or why not), or `INSTALLING`.
    statuses: HashMap<String, PackageStatus>,
    offered_all_hash: Vec<u8>,
}

impl Drop for PackageManager {
    fn drop(&mut self) {
        // At shutdown: the task stops at its next download (resumed by the next
        // offer); a package written but not recorded is found out at the next start
        // (`checked`).
        if let Some(installing) = &self.installing {
            installing.supersede.send_replace(true);
        }
    }
}

impl PackageManager {
    pub fn new(
        endpoint: Endpoint,
        server: url::Url,
        store: FleetStore,
        keys: Vec<PublicKey>,
        max_bytes: u64,
    ) -> PackageManager {
        let installed = checked(store.packages(), &store);
        let offered_all_hash = from_hex(&installed.all_packages_hash).unwrap_or_default();
        PackageManager {
            installer: Arc::new(Installer {
                endpoint,
                server,
                store,
                keys,
                max_bytes,
            }),
            retry: None,
            installing: None,
            queued: None,
            failed: None,
            installed,
            statuses: HashMap::new(),
            offered_all_hash,
        }
    }

    /// Whether packages are accepted at all (some key may sign them).
    pub fn accepts(&self) -> bool {
        !self.installer.keys.is_empty()
    }

    /// Starts installing what `offer` has that the device lacks, into `plugins_dir`,
    /// in the background; [`PackageManager::poll`] finishes it. If another offer is
    /// being installed, it is told to stop and this one waits for it (its partial
    /// downloads stay, to be resumed).
    pub fn offer(
        &mut self,
        packages: HashMap<String, PackageAvailable>,
        all_hash: Vec<u8>,
        plugins_dir: &Path,
    ) {
        let offer = Offer { packages, all_hash };
        if self.installing.is_none() && self.failed.as_ref() == Some(&offer) {
            return; // tried already; a passing failure's retry comes on its own
        }
        self.offered_all_hash.clone_from(&offer.all_hash);
        self.retry = None;
        if let Some(installing) = &self.installing {
            if !installing.superseded() && installing.offer == offer {
                self.queued = None;
                return; // the same offer again: already under way
            }
            installing.supersede.send_replace(true);
            self.queued = Some(offer);
            return;
        }
        self.start(offer, plugins_dir);
    }

    fn start(&mut self, offer: Offer, plugins_dir: &Path) {
        if !offer.all_hash.is_empty() && to_hex(&offer.all_hash) == self.installed.all_packages_hash
        {
            // What is installed is what is offered: failures of older offers are moot.
            self.statuses.clear();
            return;
        }
        let mut names: Vec<_> = offer.packages.keys().cloned().collect();
        names.sort();
        let mut todo = Vec::new();
        for name in names {
            let package = &offer.packages[&name];
            if self
                .installed
                .installed
                .get(&name)
                .is_some_and(|p| p.hash == to_hex(&package.hash) && p.file.exists())
            {
                self.statuses.remove(&name);
                continue;
            }
            let status = self.offered_status(&name, package, PackageStatusEnum::Installing);
            self.statuses.insert(name.clone(), status);
            todo.push((name, package.clone()));
        }
        if todo.is_empty() {
            self.finish(offer, Vec::new());
            return;
        }
        let installer = Arc::clone(&self.installer);
        let dir = plugins_dir.to_owned();
        let (supersede, superseded) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut results = Vec::with_capacity(todo.len());
            for (name, package) in todo {
                if *superseded.borrow() {
                    break;
                }
                let result = installer
                    .install(&name, &package, &dir, superseded.clone())
                    .await;
                results.push((name, result));
            }
            results
        });
        self.installing = Some(Installing {
            offer,
            task,
            supersede,
        });
    }

    /// Takes the outcome of an install once its task is done (then starts the offer
    /// that waited for it), or starts the retry of a passing failure once its time
    /// came. Returns the names of the packages installed (the caller reloads to
    /// activate them).
    pub async fn poll(&mut self, plugins_dir: &Path) -> Vec<String> {
        if let Some(installing) = self.installing.take_if(|i| i.task.is_finished()) {
            let Installing { offer, task, .. } = installing;
            let results = task.await.unwrap_or_else(|e| {
                // A bug: what was not answered failed for a passing reason.
                tracing::error!(error = %e, "the package install task failed");
                Vec::new()
            });
            let installed = self.finish(offer, results);
            if let Some(queued) = self.queued.take() {
                self.start(queued, plugins_dir);
            }
            return installed;
        }
        if self.installing.is_none() && self.retry.as_ref().is_some_and(|r| Instant::now() >= r.at)
        {
            let retry = self.retry.take().expect("checked");
            tracing::info!("trying the plugin packages that failed again");
            self.start(retry.offer, plugins_dir);
        }
        Vec::new()
    }

    /// Records what became of each package of an offer (`results`, by name): the
    /// installed ones, the failed ones with why, and a retry if a failure may pass.
    /// A package left without a result (its install stopped for a newer offer, or
    /// the task failed) is no longer `INSTALLING`.
    fn finish(
        &mut self,
        offer: Offer,
        results: Vec<(String, Result<PathBuf, PackageError>)>,
    ) -> Vec<String> {
        let mut installed = Vec::new();
        let mut all_ok = true;
        let mut passing = false;
        let mut answered = std::collections::HashSet::new();
        for (name, result) in results {
            answered.insert(name.clone());
            let package = &offer.packages[&name];
            match result {
                Ok(file) => {
                    tracing::info!(package = %name, version = %package.version, file = %file.display(),
                        "plugin package installed");
                    self.installed.installed.insert(
                        name.clone(),
                        InstalledPackage {
                            version: package.version.clone(),
                            hash: to_hex(&package.hash),
                            file,
                            content: package
                                .file
                                .as_ref()
                                .map(|f| to_hex(&f.content_hash))
                                .unwrap_or_default(),
                        },
                    );
                    self.statuses.remove(&name);
                    installed.push(name);
                }
                Err(PackageError::Superseded) => {
                    all_ok = false;
                    self.statuses.remove(&name);
                }
                Err(e) => {
                    all_ok = false;
                    passing |= e.is_passing();
                    tracing::error!(package = %name, version = %package.version, error = %e,
                        "plugin package refused; nothing changed");
                    let mut status =
                        self.offered_status(&name, package, PackageStatusEnum::InstallFailed);
                    status.error_message = e.to_string();
                    self.statuses.insert(name, status);
                }
            }
        }
        for name in offer.packages.keys().filter(|n| !answered.contains(*n)) {
            if self
                .statuses
                .get(name)
                .is_some_and(|s| s.status == PackageStatusEnum::Installing as i32)
            {
                all_ok = false;
                passing = true; // a task that failed; a stopped one has a newer offer
                self.statuses.remove(name);
            }
        }
        self.failed = None;
        if all_ok {
            self.installed.all_packages_hash = to_hex(&offer.all_hash);
        } else {
            if self.queued.is_none() {
                // Tried to the end (not stopped for a newer offer).
                self.failed = Some(offer.clone());
            }
            if !installed.is_empty() {
                // What is installed now matches no offer's hash: the next offer is
                // compared package by package.
                self.installed.all_packages_hash.clear();
            }
            if passing && self.queued.is_none() {
                // The server does not offer again what the agent said it received:
                // the agent tries again itself.
                self.retry = Some(Retry {
                    offer,
                    at: Instant::now() + RETRY_AFTER,
                });
            }
        }
        if let Err(e) = self.installer.store.set_packages(&self.installed) {
            tracing::error!(error = %e, "cannot record the installed packages");
        }
        installed
    }

    /// The statuses to report: every installed package, and every offer failed or
    /// being installed.
    pub fn statuses(&self) -> PackageStatuses {
        let mut packages: HashMap<String, PackageStatus> = self
            .installed
            .installed
            .keys()
            .map(|name| (name.clone(), self.status_of(name)))
            .collect();
        for (name, status) in &self.statuses {
            packages.insert(name.clone(), status.clone());
        }
        PackageStatuses {
            packages,
            server_provided_all_packages_hash: self.offered_all_hash.clone(),
            error_message: String::new(),
        }
    }

    fn status_of(&self, name: &str) -> PackageStatus {
        let has = self.installed.installed.get(name);
        PackageStatus {
            name: name.to_owned(),
            agent_has_version: has.map(|p| p.version.clone()).unwrap_or_default(),
            agent_has_hash: has.and_then(|p| from_hex(&p.hash)).unwrap_or_default(),
            server_offered_version: has.map(|p| p.version.clone()).unwrap_or_default(),
            server_offered_hash: has.and_then(|p| from_hex(&p.hash)).unwrap_or_default(),
            status: PackageStatusEnum::Installed as i32,
            error_message: String::new(),
        }
    }

    /// The status of `name` as offered by `offer`: what the device has, what it was
    /// offered, and `status`.
    fn offered_status(
        &self,
        name: &str,
        offer: &PackageAvailable,
        status: PackageStatusEnum,
    ) -> PackageStatus {
        PackageStatus {
            server_offered_version: offer.version.clone(),
            server_offered_hash: offer.hash.clone(),
            status: status as i32,
            ..self.status_of(name)
        }
    }
}

impl Installer {
    /// Downloads, checks and writes one package. `superseded` stops the download
    /// (only the partial file has been written then), not the check and write.
    async fn install(
        &self,
        name: &str,
        offer: &PackageAvailable,
        plugins_dir: &Path,
        mut superseded: tokio::sync::watch::Receiver<bool>,
    ) -> Result<PathBuf, PackageError> {
        if !is_identifier(name) {
            return Err(PackageError::Name(name.to_owned()));
        }
        let file = offer.file.as_ref().ok_or(PackageError::NoFile)?;
        if file.content_hash.is_empty() {
            return Err(PackageError::NoHash);
        }
        let url = url::Url::parse(&file.download_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| PackageError::Url(file.download_url.clone()))?;
        let headers: Vec<(String, String)> = file
            .headers
            .iter()
            .flat_map(|h| &h.headers)
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        let download = tokio::time::timeout(
            DOWNLOAD_DEADLINE,
            self.download(
                name,
                &url,
                &headers,
                same_server(&url, &self.server),
                &file.content_hash,
            ),
        );
        let part = tokio::select! {
            done = download => done
                .map_err(|_| PackageError::Download(TransportError::Timeout(DOWNLOAD_DEADLINE)))??,
            _ = superseded.wait_for(|s| *s) => return Err(PackageError::Superseded),
        };
        // Hashing, checking and writing up to max_package_bytes: off the reactor.
        let keys = self.keys.clone();
        let (hash, signature) = (file.content_hash.clone(), file.signature.clone());
        let target = plugins_dir.join(format!("{name}.wasm"));
        let dir = plugins_dir.to_owned();
        let checked = tokio::task::spawn_blocking(move || {
            verify_and_install(&part, &hash, &signature, &keys, &dir, &target).map(|()| target)
        })
        .await
        .map_err(|e| PackageError::Io(std::io::Error::other(e)))?;
        if let Err(PackageError::HashMismatch { .. }) = &checked {
            // A corrupted partial download must not be resumed.
            self.discard_partial(name);
        }
        let target = checked?;
        self.discard_partial(name);
        Ok(target)
    }

    /// Where a download in progress is kept, and the content hash it is for.
    fn partial(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.store.downloads_dir();
        (
            dir.join(format!("{name}.part")),
            dir.join(format!("{name}.for")),
        )
    }

    fn discard_partial(&self, name: &str) {
        let (part, meta) = self.partial(name);
        let _ = std::fs::remove_file(part);
        let _ = std::fs::remove_file(meta);
    }

    /// The package's bytes: what an earlier attempt fetched of the same content, and
    /// the rest with a `Range` request (a server that ignores it sends it all again).
    async fn download(
        &self,
        name: &str,
        url: &url::Url,
        headers: &[(String, String)],
        fleet_headers: bool,
        content_hash: &[u8],
    ) -> Result<PathBuf, PackageError> {
        let (part, meta) = self.partial(name);
        std::fs::create_dir_all(self.store.downloads_dir())?;
        let same = std::fs::read_to_string(&meta).is_ok_and(|h| h.trim() == to_hex(content_hash));
        if !same {
            let _ = std::fs::remove_file(&part);
            std::fs::write(&meta, to_hex(content_hash))?;
        }
        let have = std::fs::metadata(&part).map_or(0, |m| m.len());
        if have > self.max_bytes {
            self.discard_partial(name);
            return Err(PackageError::TooLarge(self.max_bytes));
        }
        let response = self.endpoint.get(url, headers, fleet_headers, have).await?;
        let status = response.status();
        let mut out = match status {
            StatusCode::PARTIAL_CONTENT if have > 0 => {
                std::fs::OpenOptions::new().append(true).open(&part)?
            }
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => return Ok(part),
            StatusCode::OK => std::fs::File::create(&part)?,
            other => return Err(TransportError::Status(other).into()),
        };
        let mut written = if status == StatusCode::OK { 0 } else { have };
        let mut body = response.into_body();
        let timeout = self.endpoint.timeout;
        loop {
            let frame = match tokio::time::timeout(timeout, body.frame()).await {
                Err(_) => return Err(TransportError::Timeout(timeout).into()),
                Ok(None) => break,
                Ok(Some(frame)) => frame.map_err(TransportError::from)?,
            };
            if let Some(data) = frame.data_ref() {
                written += data.len() as u64;
                if written > self.max_bytes {
                    drop(out);
                    self.discard_partial(name);
                    return Err(PackageError::TooLarge(self.max_bytes));
                }
                out.write_all(data)?;
            }
        }
        drop(out);
        Ok(part)
    }
}

/// `installed` without the packages whose file is gone or holds other bytes than
/// recorded (a crash between writing a package and recording it, or a hand edit):
/// they are installed again at the next offer. Records the result if it changed.
fn checked(mut installed: Packages, store: &FleetStore) -> Packages {
    let stale: Vec<String> = installed
        .installed
        .iter()
        .filter(|(_, p)| {
            !p.file.exists()
                || (!p.content.is_empty()
                    && std::fs::read(&p.file).map_or(true, |c| to_hex(&sha256(&c)) != p.content))
        })
        .map(|(name, _)| name.clone())
        .collect();
    if stale.is_empty() {
        return installed;
    }
    for name in &stale {
        tracing::warn!(package = %name, "an installed package's file is not what was recorded; it is installed again at the next offer");
        installed.installed.remove(name);
    }
    installed.all_packages_hash.clear();
    if let Err(e) = store.set_packages(&installed) {
        tracing::error!(error = %e, "cannot record the installed packages");
    }
    installed
}

/// Checks the downloaded file `part` (its SHA-256 against `content_hash`, its
/// signature against `keys`) and writes it to `target` atomically. Blocking.
fn verify_and_install(
    part: &Path,
    content_hash: &[u8],
    signature: &[u8],
    keys: &[PublicKey],
    dir: &Path,
    target: &Path,
) -> Result<(), PackageError> {
    let content = std::fs::read(part)?;
    let actual = sha256(&content);
    if actual != content_hash {
        return Err(PackageError::HashMismatch {
            actual: to_hex(&actual),
            offered: to_hex(content_hash),
        });
    }
    if signature.is_empty() {
        return Err(PackageError::Unsigned);
    }
    if !keys.iter().any(|k| k.verifies(&content, signature)) {
        return Err(PackageError::BadSignature);
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| replace_file(target, &content))
        .map_err(|source| PackageError::Install {
            dir: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_credentials_go_only_to_the_fleet_server() {
        let server = url::Url::parse("wss://fleet.example/v1/opamp").unwrap();
        let same = url::Url::parse("https://fleet.example/files/a.wasm").unwrap();
        let plain = url::Url::parse("http://fleet.example/files/a.wasm").unwrap();
        let other = url::Url::parse("https://cdn.example/a.wasm").unwrap();
        let port = url::Url::parse("https://fleet.example:8443/a.wasm").unwrap();
        assert!(same_server(&same, &server));
        assert!(!same_server(&plain, &server));
        assert!(!same_server(&other, &server));
        assert!(!same_server(&port, &server));
    }

    #[test]
    fn installed_packages_whose_file_is_not_as_recorded_are_forgotten_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = FleetStore::new(dir.path());
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(format!("{name}.wasm"));
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let package = |file: PathBuf, content: &[u8]| InstalledPackage {
            version: "1".into(),
            hash: "aa".into(),
            file,
            content: if content.is_empty() {
                String::new()
            } else {
                to_hex(&sha256(content))
            },
        };
        let mut installed = Packages {
            all_packages_hash: "ab".into(),
            ..Packages::default()
        };
        let records = [
            ("same", package(file("same", b"v1"), b"v1")),
            // Written, then a crash before the record of the new version.
            ("replaced", package(file("replaced", b"v2"), b"v1")),
            ("gone", package(dir.path().join("gone.wasm"), b"v1")),
            ("unchecked", package(file("unchecked", b"v1"), b"")),
        ];
        for (name, record) in records {
            installed.installed.insert(name.into(), record);
        }
        let kept = checked(installed.clone(), &store);
        let names: Vec<&str> = kept.installed.keys().map(String::as_str).collect();
        assert_eq!(names, ["same", "unchecked"]);
        assert_eq!(kept.all_packages_hash, "", "the set matches no offer now");
        assert_eq!(store.packages(), kept, "recorded");
        let again = checked(kept.clone(), &store);
        assert_eq!(again, kept, "nothing more to forget");
    }

    #[test]
    fn a_package_installs_only_if_hash_and_signature_verify() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("p.part");
        std::fs::write(&part, b"wasm bytes").unwrap();
        let (key, _) = crate::signing::SigningKey::generate().unwrap();
        let keys = vec![key.public()];
        let hash = sha256(b"wasm bytes");
        let signature = key.sign(b"wasm bytes");
        let target = dir.path().join("plugins/p.wasm");
        let install = |hash: &[u8], signature: &[u8]| {
            verify_and_install(
                &part,
                hash,
                signature,
                &keys,
                &dir.path().join("plugins"),
                &target,
            )
        };
        assert!(matches!(
            install(&[0; 32], &signature),
            Err(PackageError::HashMismatch { .. })
        ));
        assert!(matches!(install(&hash, &[]), Err(PackageError::Unsigned)));
        assert!(matches!(
            install(&hash, &[1; 64]),
            Err(PackageError::BadSignature)
        ));
        assert!(!target.exists());
        install(&hash, &signature).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"wasm bytes");
    }
}
