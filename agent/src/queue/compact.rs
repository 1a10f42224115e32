//! Compaction: sled 0.34 never gives space back. After a backlog drains, its file keeps
//! the size of the peak (measured: 158 MiB for 400k records, still 158 MiB drained and
//! reopened). When the file holds far more than the records need, the records are
//! copied into a fresh database, which replaces the old one.
//!
//! The swap is crash-safe (see `open::finish_compaction`): the copy is built and
//! flushed in `queue.compact`; the payloads move in; the old directory becomes
//! `queue.old` and the copy becomes `queue`; the old one is deleted. Writers wait on
//! the store's lock meanwhile; the copy costs time in proportion to the live records.

use std::path::Path;

use super::admission::StorageStatus;
use super::open::{compact_path, old_path};
use super::store::Trees;
use super::{Core, QueueError};

/// sled's file is compacted only above this size …
const COMPACT_MIN: u64 = 16 << 20;
/// … and when it is this many times what the records are estimated to need.
const COMPACT_RATIO: u64 = 4;

impl Core {
    /// sled's file size if it is worth compacting, and there is room for the copy.
    pub(super) fn needs_compaction(&self, status: &StorageStatus) -> Option<u64> {
        let db = std::fs::metadata(self.store.dir().join("db")).ok()?.len();
        let needed = self.index_charge.load(std::sync::atomic::Ordering::Relaxed);
        let worth = db > COMPACT_MIN && db > COMPACT_RATIO * needed;
        // Of unknown size: try; a copy that fails for lack of room changes nothing.
        let room = status
            .free_bytes
            .is_none_or(|free| free > status.reserve_bytes.saturating_add(2 * needed + (4 << 20)));
        (worth && room).then_some(db)
    }

    /// Copies the database into a fresh one and swaps it in.
    pub(super) fn compact(&self, db_bytes: u64) -> Result<(), QueueError> {
        let began = std::time::Instant::now();
        // The copy has every index record, and the checkpoints: nothing to replay.
        let durable = crate::sync::lock(&self.checkpoints).durable().clone();
        self.store.swap(copy_and_install, |trees| {
            self.rebuild(trees, &durable)?;
            self.seq.persist(trees)
        })?;
        self.checkpoint()?;
        let after = std::fs::metadata(self.store.dir().join("db")).map_or(0, |m| m.len());
        tracing::info!(before = db_bytes, after, took = ?began.elapsed(), "queue database compacted");
        Ok(())
    }
}

/// Copies every tree of `old` into a new database beside `dir`, then installs it.
fn copy_and_install(old: Trees, dir: &Path) -> Result<(), QueueError> {
    let (compact, parked) = (compact_path(dir), old_path(dir));
    let io = QueueError::Io;
    let copied = copy(&old, &compact);
    drop(old);
    if let Err(e) = copied {
        let _ = std::fs::remove_dir_all(&compact);
        return Err(e);
    }
    std::fs::rename(dir.join("payloads"), compact.join("payloads")).map_err(io)?;
    std::fs::rename(dir, &parked).map_err(io)?;
    std::fs::rename(&compact, dir).map_err(io)?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    std::fs::remove_dir_all(&parked).map_err(io)
}

fn copy(old: &Trees, to: &Path) -> Result<(), QueueError> {
    let _ = std::fs::remove_dir_all(to);
    old.db.flush()?;
    let new = sled::Config::new().path(to).flush_every_ms(None).open()?;
    for name in old.db.tree_names() {
        let (from, into) = (old.db.open_tree(&name)?, new.open_tree(&name)?);
        for entry in from.iter() {
            let (k, v) = entry?;
            into.insert(k, v)?;
        }
    }
    new.flush()?;
    std::fs::File::open(to.join("db"))
        .and_then(|f| f.sync_all())
        .map_err(QueueError::Io)
}
