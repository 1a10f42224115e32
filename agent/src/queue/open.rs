//! Opening the sled database: finishing an interrupted compaction, removing what a
//! failed snapshot left behind, and what to do when the database is corrupt.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::QueueError;

/// How the database was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// The existing (or a new, empty) database.
    Normal,
    /// The database could not be opened as corrupt; it was moved to this path (kept for
    /// inspection, never deleted) and a fresh one was created.
    MovedAside(PathBuf),
}

/// Where a compaction builds the new database, beside `path`.
pub fn compact_path(path: &Path) -> PathBuf {
    sibling(path, ".compact")
}

/// Where a compaction parks the old database while swapping, beside `path`.
pub fn old_path(path: &Path) -> PathBuf {
    sibling(path, ".old")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Opens (or creates) the database at `path` with a cache of `cache_bytes`.
///
/// A database that sled reports as corrupt or unsupported is renamed to
/// `<path>.corrupt-<unix ms>` and a fresh one takes its place: an agent that cannot
/// start is worse than one that starts empty, and nothing is thrown away.
///
/// sled releases its file lock only when its last internal handle is gone, which can
/// lag the drop of a database a little (its flusher thread): the open waits for that (a
/// few seconds at most), so a reopen in the same process does not fail on our own lock.
pub fn open(path: &Path, cache_bytes: u64) -> Result<(sled::Db, Opened), QueueError> {
    for _ in 0..50 {
        if !held_by_another_handle(path) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    finish_compaction(path)?;
    remove_unfinished_snapshots(path);
    let config = || {
        sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            // The group committer flushes (segments first, then sled).
            .flush_every_ms(None)
    };
    match config().open() {
        Ok(db) => Ok((db, Opened::Normal)),
        Err(e @ (sled::Error::Corruption { .. } | sled::Error::Unsupported(_))) => {
            let aside = sibling(path, &format!(".corrupt-{}", crate::clock::now_ms()));
            tracing::error!(
                error = %e,
                db = %path.display(),
                moved_to = %aside.display(),
                "QUEUE DATABASE IS CORRUPT: moving it aside and starting on an empty queue; \
                 the old data is kept at the path shown"
            );
            std::fs::rename(path, &aside).map_err(QueueError::Io)?;
            Ok((config().open()?, Opened::MovedAside(aside)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether an open handle (a database dropped a moment ago, whose threads still hold
/// it) has the lock sled takes on its file: an exclusive `flock`, which our probe would
/// not get either.
fn held_by_another_handle(dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = File::open(dir.join("db")) else {
        return false; // no database yet
    };
    // SAFETY: flock on a file descriptor that `file` keeps open for the call; the lock
    // (if taken) goes with the descriptor when `file` is dropped.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    !taken && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// A snapshot sled failed to write (a full disk) is left as `snap.*.generating`, which
/// sled then takes for corruption: it is never valid, so it goes.
fn remove_unfinished_snapshots(path: &Path) {
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %name, "removing an unfinished sled snapshot");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Completes or undoes a compaction cut short by a crash (see `compact`): the copy in
/// `.compact` is installed only if the old database already moved to `.old`.
fn finish_compaction(path: &Path) -> Result<(), QueueError> {
    let (compact, old) = (compact_path(path), old_path(path));
    let io = QueueError::Io;
    if !path.exists() && compact.exists() {
        std::fs::rename(&compact, path).map_err(io)?;
    }
    if compact.exists() {
        // The swap had not begun: the old database is whole. Payloads already moved
        // into the copy go back.
        let moved = compact.join("payloads");
        if moved.exists() && !path.join("payloads").exists() {
            std::fs::rename(&moved, path.join("payloads")).map_err(io)?;
        }
        std::fs::remove_dir_all(&compact).map_err(io)?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io)?;
    }
    Ok(())
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

    #[test]
    fn an_unfinished_snapshot_is_not_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue");
        {
            let (db, _) = open(&path, 1 << 20).unwrap();
            db.insert(b"k", b"v".to_vec()).unwrap();
            db.flush().unwrap();
        }
        std::fs::write(path.join("snap.00000000000FFFFF.generating"), b"").unwrap();
        let (db, opened) = open(&path, 1 << 20).unwrap();
        assert_eq!(opened, Opened::Normal);
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn an_interrupted_compaction_is_finished_or_undone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue");
        // Crash before the swap: payloads moved into the copy come back, the copy goes.
        std::fs::create_dir_all(compact_path(&path).join("payloads")).unwrap();
        std::fs::write(compact_path(&path).join("payloads/1.seg"), b"p").unwrap();
        std::fs::create_dir_all(&path).unwrap();
        finish_compaction(&path).unwrap();
        assert!(path.join("payloads/1.seg").exists() && !compact_path(&path).exists());
        // Crash in the middle of the swap: the copy is installed, the old one removed.
        std::fs::rename(&path, old_path(&path)).unwrap();
        std::fs::create_dir_all(compact_path(&path)).unwrap();
        std::fs::write(compact_path(&path).join("db"), b"new").unwrap();
        finish_compaction(&path).unwrap();
        assert_eq!(std::fs::read(path.join("db")).unwrap(), b"new");
        assert!(!old_path(&path).exists() && !compact_path(&path).exists());
    }
}
