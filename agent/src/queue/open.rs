//! Opening the sled database, and what to do when it is corrupt.

use std::path::{Path, PathBuf};

/// How the database was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// The existing (or a new, empty) database.
    Normal,
    /// The database could not be opened as corrupt; it was moved to this path (kept for
    /// inspection, never deleted) and a fresh one was created.
    MovedAside(PathBuf),
}

/// Opens (or creates) the database at `path` with a cache of `cache_bytes`.
///
/// A database that sled reports as corrupt or unsupported is renamed to
/// `<path>.corrupt-<unix ms>` and a fresh one takes its place: an agent that cannot
/// start is worse than one that starts empty, and nothing is thrown away.
pub fn open(path: &Path, cache_bytes: u64) -> Result<(sled::Db, Opened), sled::Error> {
    let config = || {
        sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            // The group committer flushes (segments first, then sled).
            .flush_every_ms(None)
            .mode(sled::Mode::LowSpace)
    };
    match config().open() {
        Ok(db) => Ok((db, Opened::Normal)),
        Err(e @ (sled::Error::Corruption { .. } | sled::Error::Unsupported(_))) => {
            let aside = aside_path(path);
            tracing::error!(
                error = %e,
                db = %path.display(),
                moved_to = %aside.display(),
                "QUEUE DATABASE IS CORRUPT: moving it aside and starting on an empty queue; \
                 the old data is kept at the path shown"
            );
            std::fs::rename(path, &aside)?;
            Ok((config().open()?, Opened::MovedAside(aside)))
        }
        Err(e) => Err(e),
    }
}

fn aside_path(path: &Path) -> PathBuf {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{ms}"));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_database_is_moved_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue");
        {
            let (db, opened) = open(&path, 1 << 20).unwrap();
            assert_eq!(opened, Opened::Normal);
            db.insert(b"k", b"v".to_vec()).unwrap();
            db.flush().unwrap();
        }
        // Overwrite sled's config header with garbage.
        std::fs::write(
            path.join("conf"),
            b"\xff\xfe garbage that is not a sled config",
        )
        .unwrap();
        let (db, opened) = open(&path, 1 << 20).unwrap();
        let Opened::MovedAside(aside) = opened else {
            panic!("expected the corrupt db to be moved aside, got {opened:?}");
        };
        assert!(
            aside.join("conf").exists(),
            "old data kept at {}",
            aside.display()
        );
        assert!(db.get(b"k").unwrap().is_none(), "fresh database");
    }
}
