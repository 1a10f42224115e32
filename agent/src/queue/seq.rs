//! Message sequence numbers. They order each sink's FIFO and are half of every message
//! id, by which receivers drop duplicates, so they must never repeat: not after a
//! restart, not after a compaction copied the database. They are reserved in blocks in
//! the `meta` tree; the reservation is flushed with the first commit that uses it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::fifo::seq_of_key;
use super::store::{Store, Trees};
use super::QueueError;
use crate::sync;

const RESERVED_KEY: &[u8] = b"seq_reserved";
const BLOCK: u64 = 1 << 20;

/// The next sequence number and how far the durable reservation goes.
pub(super) struct Sequence {
    next: AtomicU64,
    reserved: Mutex<u64>,
}

impl Sequence {
    /// Continues after everything ever handed out: the durable reservation, sled's own
    /// id generator (databases from before this counter), and the keys present.
    pub fn load(trees: &Trees) -> Result<Sequence, QueueError> {
        let on_disk = trees
            .meta
            .get(RESERVED_KEY)?
            .and_then(|v| v.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes);
        let mut next = on_disk.max(trees.db.generate_id()?);
        for tree in [&trees.pending, &trees.dead] {
            for entry in tree.iter().keys() {
                let key = entry?;
                if !super::recover::is_checkpoint(&key) {
                    next = next.max(seq_of_key(&key) + 1);
                }
            }
        }
        let seq = Sequence {
            next: AtomicU64::new(next),
            reserved: Mutex::new(next + BLOCK),
        };
        seq.persist(trees)?;
        Ok(seq)
    }

    /// Writes the current reservation (at open, and after the database was reopened,
    /// which may have lost an unflushed one).
    pub fn persist(&self, trees: &Trees) -> Result<(), QueueError> {
        let reserved = *sync::lock(&self.reserved);
        trees.meta.insert(RESERVED_KEY, &reserved.to_be_bytes())?;
        Ok(())
    }

    /// The next number; extends the reservation when it runs out, durably before the
    /// number is used (once per million: messages are acknowledged before the index is
    /// flushed, so a reservation must not wait for that flush).
    pub fn next(&self, store: &Store, trees: &Trees) -> Result<u64, QueueError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut reserved = sync::lock(&self.reserved);
        if n >= *reserved {
            *reserved = n + BLOCK;
            trees.meta.insert(RESERVED_KEY, &reserved.to_be_bytes())?;
            store.flush_trees(trees)?;
        }
        Ok(n)
    }
}
