//! The sled database behind a handle that can be swapped while the agent runs.
//!
//! sled 0.34 makes its first write error (a full disk) permanent for the open
//! database: every later insert, remove and flush fails, even once space is back. Only
//! opening it again clears that, and opening needs every handle to the old one gone.
//! So the queue, the committer and the plugins' key-value stores reach the database
//! only through [`Store`]: [`Store::reopen`] takes the write lock, drops the old
//! database and opens it again. The same swap installs a compacted copy.
//!
//! sled's flush writes its log with `sync_file_range`, which neither flushes the disk's
//! cache nor commits a grown file's size: [`Store::flush`] adds an `fdatasync` of the
//! log so that "flushed" means what a 202 promises.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use super::open::{self, Opened};
use super::QueueError;
use crate::sync;

/// The trees of the queue database.
pub struct Trees {
    pub db: sled::Db,
    /// Pending messages: `<sink>\0<seq BE>` → record.
    pub pending: sled::Tree,
    /// Dead letters, same keys.
    pub dead: sled::Tree,
    /// The database's epoch and sequence reservations.
    pub meta: sled::Tree,
    /// The plugins' key-value stores.
    pub kv: sled::Tree,
    /// sled's log file, for `fdatasync`.
    log: File,
}

const PENDING_TREE: &[u8] = b"pending";
const DEAD_TREE: &[u8] = b"dead_letter";
const META_TREE: &[u8] = b"meta";
const KV_TREE: &[u8] = b"plugin_kv";

impl Trees {
    fn open(db: sled::Db, dir: &Path) -> Result<Trees, QueueError> {
        Ok(Trees {
            pending: db.open_tree(PENDING_TREE)?,
            dead: db.open_tree(DEAD_TREE)?,
            meta: db.open_tree(META_TREE)?,
            kv: db.open_tree(KV_TREE)?,
            log: File::open(dir.join("db")).map_err(QueueError::Io)?,
            db,
        })
    }
}

const HEALTHY: u8 = 0;
const FAILED_FULL: u8 = 1;
const FAILED: u8 = 2;

/// The database handle.
pub struct Store {
    dir: PathBuf,
    cache_bytes: u64,
    trees: RwLock<Option<Trees>>,
    /// sled reported a write error: it refuses every write until reopened.
    failed: AtomicU8,
    reopens: AtomicU64,
}

/// Shared access to the open trees.
pub struct Guard<'a>(RwLockReadGuard<'a, Option<Trees>>);

impl std::ops::Deref for Guard<'_> {
    type Target = Trees;
    fn deref(&self) -> &Trees {
        // `Store::trees` only hands out guards over an open database.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("checked in Store::trees"))
    }
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<(Store, Opened), QueueError> {
        let (db, opened) = open::open(dir, cache_bytes)?;
        let trees = Trees::open(db, dir)?;
        let store = Store {
            dir: dir.to_owned(),
            cache_bytes,
            trees: RwLock::new(Some(trees)),
            failed: AtomicU8::new(HEALTHY),
            reopens: AtomicU64::new(0),
        };
        Ok((store, opened))
    }

    /// The open trees, shared; `Unavailable` while the database is being swapped or
    /// could not be reopened.
    pub fn trees(&self) -> Result<Guard<'_>, QueueError> {
        let guard = sync::read(&self.trees);
        if guard.is_none() {
            return Err(QueueError::Unavailable);
        }
        Ok(Guard(guard))
    }

    /// Passes `result` on; an I/O error marks the database failed (sled will refuse
    /// every further write until [`Store::reopen`]).
    pub fn check<T>(&self, result: Result<T, sled::Error>) -> Result<T, QueueError> {
        result.map_err(|e| self.fail(e))
    }

    /// [`Store::check`] for one error.
    pub fn fail(&self, e: sled::Error) -> QueueError {
        if let sled::Error::Io(io) = &e {
            let cause = if super::disk::is_full(io) {
                FAILED_FULL
            } else {
                FAILED
            };
            if self.failed.swap(cause, Ordering::Relaxed) == HEALTHY {
                tracing::error!(error = %e, "queue database write failed: it refuses writes \
                    until reopened, which happens once the disk has room again");
            }
        }
        QueueError::from(e)
    }

    /// Refuses writes while the database is failed (sled would refuse them anyway).
    pub fn writable(&self) -> Result<(), QueueError> {
        match self.failed.load(Ordering::Relaxed) {
            HEALTHY => Ok(()),
            cause => Err(QueueError::Failed {
                full: cause == FAILED_FULL,
            }),
        }
    }

    /// Moves a record between trees atomically: `value` goes in `to` under `to_key`,
    /// `from_key` leaves `from`. Returns the value removed, if `from_key` was there.
    pub fn move_record(
        &self,
        (from, from_key): (&sled::Tree, &[u8]),
        (to, to_key): (&sled::Tree, &[u8]),
        value: &[u8],
    ) -> Result<Option<sled::IVec>, QueueError> {
        use sled::transaction::TransactionError;
        use sled::Transactional;
        let moved: Result<Option<sled::IVec>, TransactionError<()>> =
            (from, to).transaction(|(from, to)| {
                to.insert(to_key, value)?;
                Ok(from.remove(from_key)?)
            });
        moved.map_err(|e| match e {
            TransactionError::Storage(e) => self.fail(e),
            TransactionError::Abort(()) => QueueError::Unavailable,
        })
    }

    /// Whether sled refuses writes until reopened.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed) != HEALTHY
    }

    /// Times the database was reopened (after failures, or by compaction).
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    /// Writes everything to disk: sled's log, then an `fdatasync` of it.
    pub fn flush(&self) -> Result<(), QueueError> {
        let trees = self.trees()?;
        self.flush_trees(&trees)
    }

    /// [`Store::flush`] for a caller that holds the trees already.
    pub fn flush_trees(&self, trees: &Trees) -> Result<(), QueueError> {
        self.check(trees.db.flush())?;
        // After a failed fdatasync the kernel may have dropped the dirty pages: only a
        // reopen (which rereads the log) tells what is on disk.
        trees
            .log
            .sync_data()
            .map_err(|e| self.fail(sled::Error::Io(e)))
    }

    /// Swaps the database: takes the write lock (every other user waits), hands the old
    /// trees to `replace` (which drops them, after copying them if it compacts), opens
    /// the directory again — clearing sled's sticky write error — and runs `after` on
    /// the new trees before anyone else sees them. If `replace` fails, the old database
    /// is opened again as it was.
    pub fn swap(
        &self,
        replace: impl FnOnce(Trees, &Path) -> Result<(), QueueError>,
        after: impl FnOnce(&Trees) -> Result<(), QueueError>,
    ) -> Result<(), QueueError> {
        let mut slot = sync::write(&self.trees);
        let replaced = match slot.take() {
            Some(old) => replace(old, &self.dir),
            None => Ok(()),
        };
        let (db, _) = open::open(&self.dir, self.cache_bytes)?;
        let trees = Trees::open(db, &self.dir)?;
        after(&trees)?;
        *slot = Some(trees);
        self.failed.store(HEALTHY, Ordering::Relaxed);
        self.reopens.fetch_add(1, Ordering::Relaxed);
        replaced
    }

    /// The database's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
