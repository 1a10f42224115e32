//! Keeping the queue healthy while the agent runs, from the committer's idle tick:
//! reopening a database that failed on a full disk once there is room again, compacting
//! it when sled's file holds far more than the records need, and logging storage
//! state changes (once per change, not per attempt).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::admission::{StorageState, StorageStatus};
use super::journal::Position;
use super::read::segment_of;
use super::recover::{is_checkpoint, read_checkpoints};
use super::store::Trees;
use super::write::Size;
use super::SinkQueue;
use super::{disk, Core, QueueError};

/// How often compaction is considered, and how long to wait after one failed.
const COMPACT_CHECK: Duration = Duration::from_secs(30);
const COMPACT_RETRY: Duration = Duration::from_secs(600);

/// How often a failed database is reopened on a filesystem that reports no free space
/// (elsewhere: as soon as the reserve is free again).
const BLIND_RECOVERY: Duration = Duration::from_secs(5);

/// What the maintenance remembers between ticks.
pub(super) struct Maintenance {
    state: StorageState,
    next_compaction_check: Instant,
    next_blind_recovery: Instant,
}

impl Default for Maintenance {
    fn default() -> Self {
        Maintenance {
            state: StorageState::Ok,
            next_compaction_check: Instant::now(),
            next_blind_recovery: Instant::now(),
        }
    }
}

impl Core {
    /// One maintenance tick.
    pub(super) fn maintain(&self, m: &mut Maintenance) {
        let status = self.storage_status();
        if status.state != m.state {
            log_state(m.state, &status);
            m.state = status.state;
        }
        let room = match status.free_bytes {
            Some(free) => free >= status.reserve_bytes,
            None => {
                let due = Instant::now() >= m.next_blind_recovery;
                if due {
                    m.next_blind_recovery = Instant::now() + BLIND_RECOVERY;
                }
                due
            }
        };
        if self.store.failed() && room {
            match self.recover() {
                Ok(()) => tracing::info!("queue database reopened: writes accepted again"),
                Err(e) => tracing::warn!(error = %e, "queue database not reopened yet"),
            }
        } else if Instant::now() >= m.next_compaction_check {
            m.next_compaction_check = Instant::now() + COMPACT_CHECK;
            if let Some(db_bytes) = self.needs_compaction(&status) {
                if let Err(e) = self.compact(db_bytes) {
                    tracing::warn!(error = %e, "queue compaction failed; the queue is unchanged");
                    m.next_compaction_check = Instant::now() + COMPACT_RETRY;
                }
            }
        }
    }

    /// Reopens the database (clearing sled's sticky error), indexes again what the
    /// journals hold past its durable checkpoints, and recounts everything.
    fn recover(&self) -> Result<(), QueueError> {
        self.store.swap(
            |old, _| {
                drop(old);
                Ok(())
            },
            |trees| {
                let found = read_checkpoints(trees)?;
                crate::sync::lock(&self.checkpoints).set_durable(found);
                self.reindex(trees)?;
                self.seq.persist(trees)
            },
        )?;
        self.checkpoint()
    }

    /// Counters and file books from what is on disk (at open, after a reopen or a
    /// compaction); `checkpoints`: the durable ones, which say which journal files a
    /// restart would still replay.
    pub(super) fn rebuild(
        &self,
        trees: &Trees,
        checkpoints: &HashMap<String, Position>,
    ) -> Result<(), QueueError> {
        for sink in self.fifos().values() {
            sink.reset();
        }
        for counter in [&self.depth, &self.bytes, &self.index_charge] {
            counter.store(0, Ordering::Relaxed);
        }
        let mut refs = Vec::new();
        let mut orphans = std::collections::BTreeMap::<String, u64>::new();
        for entry in trees.pending.iter() {
            let (key, value) = entry?;
            if is_checkpoint(&key) {
                continue;
            }
            let segment = segment_of(&value);
            refs.extend(segment);
            let size = Size::of(
                key.len(),
                value.len(),
                segment.map_or(0, |r| u64::from(r.len)),
            );
            match self.sink_of_key(&key) {
                Some(sink) => self.account(&sink, size, true),
                None => {
                    // Kept (and counted) for a sink that may come back; not delivered.
                    self.depth.fetch_add(1, Ordering::Relaxed);
                    self.bytes.fetch_add(size.logical, Ordering::Relaxed);
                    self.index_charge.fetch_add(size.index, Ordering::Relaxed);
                    *orphans
                        .entry(super::fifo::sink_name_of_key(&key))
                        .or_default() += 1;
                }
            }
        }
        for entry in trees.dead.iter() {
            let (key, value) = entry?;
            refs.extend(segment_of(&value));
            let size = Size::of(key.len(), value.len(), 0);
            self.index_charge.fetch_add(size.index, Ordering::Relaxed);
            if let Some(sink) = self.sink_of_key(&key) {
                sink.dead_added(1);
            }
        }
        self.segments
            .rebuild(refs, checkpoints)
            .map_err(QueueError::Io)?;
        for (sink, count) in orphans {
            tracing::warn!(
                sink,
                count,
                "queued messages for a sink that is not configured are kept, not delivered"
            );
        }
        Ok(())
    }

    /// Counts the records already queued under `fifo`'s name into it (a sink added
    /// while running); the queue's totals count them already.
    pub(super) fn count_into(&self, trees: &Trees, fifo: &SinkQueue) -> Result<(), QueueError> {
        fifo.reset();
        for entry in trees.pending.scan_prefix(fifo.prefix()) {
            let (key, value) = entry?;
            let external = segment_of(&value).map_or(0, |r| u64::from(r.len));
            fifo.added(Size::of(key.len(), value.len(), external).logical);
        }
        let dead = trees.dead.scan_prefix(fifo.prefix()).count();
        fifo.dead_added(dead as u64);
        Ok(())
    }

    /// Disk space, the reserve, usage and the state derived from them.
    pub(super) fn storage_status(&self) -> StorageStatus {
        let free = self
            .admission
            .space()
            .filter(|s| s.known())
            .map(|s| s.available);
        let used = self.usage();
        let sled_bytes = disk::files_bytes(self.store.dir(), |n| {
            n == "db" || n == "conf" || n.starts_with("snap.")
        });
        StorageStatus {
            state: self.admission.state(used, free, self.store.failed()),
            free_bytes: free,
            reserve_bytes: self.admission.reserve(),
            used_bytes: used,
            max_bytes: self.admission.max_bytes(),
            disk_bytes: sled_bytes + self.segments.disk_bytes(),
            reopens: self.store.reopens(),
        }
    }
}

fn log_state(from: StorageState, status: &StorageStatus) {
    let (free, reserve, used, max) = (
        status.free_bytes,
        status.reserve_bytes,
        status.used_bytes,
        status.max_bytes,
    );
    match status.state {
        StorageState::Ok => tracing::info!(from = from.as_str(), free, used, "storage ok"),
        StorageState::Low => tracing::warn!(
            from = from.as_str(),
            free,
            reserve,
            used,
            max,
            "storage low"
        ),
        StorageState::Full => tracing::error!(
            from = from.as_str(),
            free,
            reserve,
            used,
            max,
            "storage full: new work is refused (507) until space returns"
        ),
        StorageState::Failed => tracing::error!(
            from = from.as_str(),
            free,
            reserve,
            "queue database failed on a write; it is reopened once the disk has room"
        ),
        StorageState::UnknownSize => tracing::warn!(
            from = from.as_str(),
            used,
            max,
            "the data dir's filesystem reports no size: no disk reserve is kept; \
             a full disk shows as write errors (507)"
        ),
    }
}
