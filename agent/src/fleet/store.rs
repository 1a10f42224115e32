//! What the fleet client keeps in `data_dir/fleet/`: the instance uid, the last applied
//! remote config, and the installed packages. Each is one file replaced atomically
//! (written aside, synced, renamed, directory synced): a `kill -9` or a power cut leaves
//! the old file or the new one, never a mix.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::signing::{from_hex, to_hex};

/// The 16 bytes that name this agent to its server (a UUID v7, made at first start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceUid(pub [u8; 16]);

impl InstanceUid {
    /// The canonical text form (for the `OpAMP-Instance-UID` header and logs).
    pub fn text(&self) -> String {
        uuid::Uuid::from_bytes(self.0).hyphenated().to_string()
    }
}

/// A remote config as received and applied: its hash and the TOML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    pub hash: Vec<u8>,
    pub toml: String,
}

/// An installed package: what the server offered, as installed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledPackage {
    pub version: String,
    /// The server's hash of the package (hex), compared with later offers.
    pub hash: String,
    /// Where the package's file went.
    pub file: PathBuf,
    /// The SHA-256 of the file's content (hex), checked at start: a crash between
    /// writing a file and recording it must not leave a record that lies. Empty in
    /// records from before it was kept.
    #[serde(default)]
    pub content: String,
}

/// The installed packages and the hash of the whole set the server last offered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packages {
    /// Hex of `PackagesAvailable.all_packages_hash` once every package of that offer
    /// was installed.
    pub all_packages_hash: String,
    pub installed: BTreeMap<String, InstalledPackage>,
}

/// The first line of a stored remote config (a TOML comment: the file stays valid
/// TOML that `outpost check` reads).
const HASH_LINE: &str = "# outpost remote config, hash ";

/// `data_dir/fleet/`.
#[derive(Debug, Clone)]
pub struct FleetStore {
    dir: PathBuf,
}

impl FleetStore {
    pub fn new(data_dir: &Path) -> FleetStore {
        FleetStore {
            dir: data_dir.join("fleet"),
        }
    }

    /// Where the last applied remote config is kept (named in config errors about it).
    pub fn remote_config_path(&self) -> PathBuf {
        self.dir.join("remote-config.toml")
    }

    /// Where package downloads in progress are kept.
    pub fn downloads_dir(&self) -> PathBuf {
        self.dir.join("downloads")
    }

    /// The instance uid, made (UUID v7) and kept at first use.
    pub fn instance_uid(&self) -> std::io::Result<InstanceUid> {
        let path = self.dir.join("instance-uid");
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(uid) = uuid::Uuid::parse_str(text.trim()) {
                return Ok(InstanceUid(*uid.as_bytes()));
            }
            tracing::warn!(file = %path.display(), "unreadable instance uid; making a new one");
        }
        let uid = InstanceUid(*uuid::Uuid::now_v7().as_bytes());
        self.replace(&path, format!("{}\n", uid.text()).as_bytes())?;
        Ok(uid)
    }

    /// Keeps `uid` (the server assigned a new one).
    pub fn set_instance_uid(&self, uid: InstanceUid) -> std::io::Result<()> {
        self.replace(
            &self.dir.join("instance-uid"),
            format!("{}\n", uid.text()).as_bytes(),
        )
    }

    /// The last applied remote config, if any.
    pub fn remote_config(&self) -> Option<RemoteConfig> {
        let text = std::fs::read_to_string(self.remote_config_path()).ok()?;
        let (first, toml) = text.split_once('\n')?;
        let hash = from_hex(first.strip_prefix(HASH_LINE)?.trim())?;
        Some(RemoteConfig {
            hash,
            toml: toml.to_owned(),
        })
    }

    /// Keeps `config` as the last applied remote config.
    pub fn set_remote_config(&self, config: &RemoteConfig) -> std::io::Result<()> {
        self.stage_remote_config(config)?;
        self.commit_remote_config()
    }

    /// Writes `config` beside the kept one (synced), for [`commit_remote_config`]
    /// to make it the kept one once it runs. A staged config is never read at start.
    ///
    /// [`commit_remote_config`]: Self::commit_remote_config
    pub fn stage_remote_config(&self, config: &RemoteConfig) -> std::io::Result<()> {
        let text = format!("{HASH_LINE}{}\n{}", to_hex(&config.hash), config.toml);
        self.replace(&self.staged_path(), text.as_bytes())
    }

    /// The staged remote config becomes the kept one (a rename, then the directory
    /// synced).
    pub fn commit_remote_config(&self) -> std::io::Result<()> {
        std::fs::rename(self.staged_path(), self.remote_config_path())?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    fn staged_path(&self) -> PathBuf {
        self.dir.join("remote-config.staged")
    }

    /// The installed packages (none if never written or unreadable).
    pub fn packages(&self) -> Packages {
        std::fs::read(self.dir.join("packages.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn set_packages(&self, packages: &Packages) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(packages).map_err(std::io::Error::other)?;
        self.replace(&self.dir.join("packages.json"), &bytes)
    }

    fn replace(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        replace_file(path, bytes)
    }
}

/// Replaces `path` with `bytes` atomically and durably: written to a file beside it,
/// synced, renamed over it, and the directory synced.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let aside = dir.join(format!(".{name}.new"));
    let mut file = std::fs::File::create(&aside)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&aside, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_uid_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = FleetStore::new(dir.path());
        let uid = store.instance_uid().unwrap();
        assert_eq!(uuid::Uuid::from_bytes(uid.0).get_version_num(), 7);
        assert_eq!(store.instance_uid().unwrap(), uid);
        let next = InstanceUid([7; 16]);
        store.set_instance_uid(next).unwrap();
        assert_eq!(FleetStore::new(dir.path()).instance_uid().unwrap(), next);
    }

    #[test]
    fn a_remote_config_round_trips_and_stays_valid_toml() {
        let dir = tempfile::tempdir().unwrap();
        let store = FleetStore::new(dir.path());
        assert!(store.remote_config().is_none());
        let config = RemoteConfig {
            hash: vec![1, 2, 0xfe],
            toml: "[agent]\ndevice_id = \"cam-1\"\n".into(),
        };
        store.set_remote_config(&config).unwrap();
        assert_eq!(store.remote_config().unwrap(), config);
        let text = std::fs::read_to_string(store.remote_config_path()).unwrap();
        assert!(text.parse::<toml::Table>().is_ok());
        let names: Vec<_> = std::fs::read_dir(dir.path().join("fleet"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "nothing left aside: {names:?}");
    }

    #[test]
    fn packages_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = FleetStore::new(dir.path());
        assert_eq!(store.packages(), Packages::default());
        let mut packages = Packages {
            all_packages_hash: "ab".into(),
            ..Packages::default()
        };
        packages.installed.insert(
            "filter".into(),
            InstalledPackage {
                version: "1.2".into(),
                hash: "cd".into(),
                file: "plugins/filter.wasm".into(),
                content: "ef".into(),
            },
        );
        store.set_packages(&packages).unwrap();
        assert_eq!(store.packages(), packages);
    }
}
