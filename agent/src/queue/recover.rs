//! Recovery: the sled index is flushed every half second, not with every group commit,
//! so after a crash (or when a database that failed is reopened) the journal frames
//! written since the index's *checkpoint* are indexed again. A request's frames are
//! indexed only if all of them are found (a request is accepted whole or not at all).
//!
//! The checkpoint of a journal — where it is indexed up to — is written into the index
//! after the records of each group commit (in that order; sled recovers a prefix of
//! its writes): whatever state of the index sled recovers, every frame before a
//! checkpoint it holds is indexed, and frames past it (some may be indexed already) are
//! indexed again under the same keys. So a message deleted before a crash (delivered,
//! dropped) is not brought back by the replay unless its deletion itself was lost with
//! the crash; then it is delivered again with its id (at-least-once).

use std::collections::HashMap;

use super::journal::{self, Position};
use super::store::Trees;
use super::write::INLINE_MAX;
use super::{Core, QueueError};
use crate::sync::lock;

/// Keys of the checkpoints in the pending tree: this, then the sink's name. A sink's
/// keys start with its name, which cannot be empty: they never collide.
pub(super) const CHECKPOINT_PREFIX: &[u8] = b"\0journal\0";

/// Whether a key of the pending tree is a checkpoint's (not a message's).
pub(super) fn is_checkpoint(key: &[u8]) -> bool {
    key.first() == Some(&0)
}

/// The key and value of `stream`'s checkpoint at `at`.
pub(super) fn checkpoint_entry(stream: &str, at: Position) -> (Vec<u8>, Vec<u8>) {
    let mut key = CHECKPOINT_PREFIX.to_vec();
    key.extend_from_slice(stream.as_bytes());
    let value = postcard::to_allocvec(&(at.segment, at.offset)).expect("encodes");
    (key, value)
}

/// The checkpoints a database holds: where each journal is indexed up to.
pub(super) fn read_checkpoints(trees: &Trees) -> Result<HashMap<String, Position>, QueueError> {
    let mut found = HashMap::new();
    for entry in trees.pending.scan_prefix(CHECKPOINT_PREFIX) {
        let (key, value) = entry?;
        let stream = String::from_utf8_lossy(&key[CHECKPOINT_PREFIX.len()..]).into_owned();
        if let Ok((segment, offset)) = postcard::from_bytes::<(u64, u64)>(&value) {
            found.insert(stream, Position { segment, offset });
        }
    }
    Ok(found)
}

/// The checkpoints on disk: those of the last flush of the index. A journal file they
/// cover is never replayed, and can go.
#[derive(Debug, Default)]
pub(super) struct Checkpoints {
    durable: HashMap<String, Position>,
    /// Flushes of the index (checkpoints) since start.
    pub done: u64,
}

impl Checkpoints {
    pub fn new(durable: HashMap<String, Position>) -> Checkpoints {
        Checkpoints { durable, done: 0 }
    }

    pub fn durable(&self) -> &HashMap<String, Position> {
        &self.durable
    }

    pub fn set_durable(&mut self, durable: HashMap<String, Position>) {
        self.durable = durable;
    }
}

impl Core {
    /// Indexes the frames written since `checkpoints` again; returns where each
    /// journal is now indexed up to.
    pub(super) fn replay(
        &self,
        trees: &Trees,
        checkpoints: &HashMap<String, Position>,
    ) -> Result<HashMap<String, Position>, QueueError> {
        let mut ends = checkpoints.clone();
        let mut frames = Vec::new();
        self.segments
            .replay_journals(checkpoints, |file| {
                let found = journal::scan(file.id, &file.bytes, file.frames_from, INLINE_MAX);
                let end = found.last().map_or(
                    Position {
                        segment: file.id,
                        offset: file.frames_from,
                    },
                    |f| f.end,
                );
                let at = ends.entry(file.stream).or_default();
                *at = (*at).max(end);
                frames.extend(found);
            })
            .map_err(QueueError::Io)?;
        for (stream, at) in &ends {
            let (key, value) = checkpoint_entry(stream, *at);
            self.store.check(trees.pending.insert(key, value))?;
        }
        let (mut indexed, mut skipped) = (0usize, 0usize);
        let total = frames.len();
        for frame in journal::whole_groups(frames) {
            // Dead-lettered since: it stays a dead letter.
            if trees.dead.contains_key(&frame.key)? {
                skipped += 1;
                continue;
            }
            self.store
                .check(trees.pending.insert(frame.key, frame.value))?;
            indexed += 1;
        }
        if total > 0 {
            tracing::info!(
                frames = total,
                indexed,
                dead_letters = skipped,
                partial = total - indexed - skipped,
                "journal replayed: messages written since the last checkpoint indexed again"
            );
        }
        Ok(ends)
    }

    /// A checkpoint: makes everything written so far durable (the dead-letter files,
    /// then the index with the journals' checkpoints in it, then an `fdatasync` of
    /// sled's log and of its directory), and deletes the files nothing needs any more.
    pub(super) fn checkpoint(&self) -> Result<(), QueueError> {
        self.dirty
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let emptied = self.segments.emptied();
        let snapshot = self.commit.indexed();
        // sled renames a new snapshot into place during its flush, but never syncs its
        // directory: that is done here, so a power cut finds the snapshot it expects.
        let flushed = self
            .segments
            .sync()
            .map_err(QueueError::Io)
            .and_then(|()| self.store.flush())
            .and_then(|()| super::disk::sync_dir(self.store.dir()).map_err(QueueError::Io));
        if let Err(e) = flushed {
            // Not durable: these go after a later checkpoint.
            self.segments.collect_later(emptied);
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(e);
        }
        let durable = {
            let mut cp = lock(&self.checkpoints);
            cp.done += 1;
            cp.set_durable(snapshot);
            cp.durable().clone()
        };
        self.segments
            .collect(emptied, |stream| durable.get(stream).copied());
        Ok(())
    }
}
