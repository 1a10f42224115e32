//! What may be written: the `max_bytes` cap (against what the queue occupies on disk,
//! see `write::Core::usage`) with its `when_full` policy, and a reserve of free space on
//! the data dir's filesystem (`min_free_bytes`) below which new work is refused, so that
//! acknowledgements, compaction and segment deletion always find room.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::disk::{self, FsSpace};
use super::QueueError;
use crate::config::{QueueConfig, WhenFull};
use crate::sync;

/// The storage state shown by health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageState {
    Ok,
    /// Free space under twice the reserve, or the queue over 90 % of `max_bytes`.
    Low,
    /// New work is refused (507): free space under the reserve, or work was refused
    /// for lack of room a moment ago (disk, or `max_bytes` under `when_full = "reject"`).
    Full,
    /// The database failed on a write (a full disk) and waits for room to reopen.
    Failed,
    /// The filesystem reports no size (`statvfs` answers zeros, as FUSE, network and
    /// overlay filesystems may): no reserve is kept, and a full disk shows only as
    /// write errors (`ENOSPC`: 507, and recovery as on any full disk).
    UnknownSize,
}

impl StorageState {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageState::Ok => "ok",
            StorageState::Low => "low",
            StorageState::Full => "full",
            StorageState::Failed => "failed",
            StorageState::UnknownSize => "unknown_size",
        }
    }
}

/// Storage figures for health and metrics.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StorageStatus {
    pub state: StorageState,
    /// Free bytes on the data dir's filesystem (for an unprivileged writer); `None`
    /// when it reports no size.
    pub free_bytes: Option<u64>,
    /// Bytes kept free (`queue.min_free_bytes`).
    pub reserve_bytes: u64,
    /// What the queue counts against `max_bytes`.
    pub used_bytes: u64,
    pub max_bytes: u64,
    /// The queue's files on disk: sled's and the payload segments.
    pub disk_bytes: u64,
    /// Times the database was reopened (after a failure, or by compaction).
    pub reopens: u64,
}

/// The admission rules of one queue.
pub struct Admission {
    dir: PathBuf,
    max_bytes: u64,
    when_full: WhenFull,
    reserve: u64,
    segment_bytes: u64,
    /// Serialises the capacity check with the insert, so concurrent requests cannot
    /// overshoot `max_bytes` together. Held only for in-memory sled operations.
    lock: Mutex<()>,
    /// When work was last refused for lack of room, in Unix ms (0: not lately); the
    /// state stays `Full` a moment after.
    refused_at_ms: AtomicU64,
    /// The last measure of the filesystem, for [`Admission::check_disk`].
    measured: Mutex<Option<Measured>>,
}

/// A measure of the filesystem and the bytes admitted since. `statvfs` on every
/// request cost 1–2 % of the agent's CPU with one-event requests; far from the reserve,
/// a measure a few milliseconds old less what was admitted since decides as well.
#[derive(Clone, Copy)]
struct Measured {
    at: Instant,
    space: FsSpace,
    admitted: u64,
}

/// Whether a kept measure's `estimate`, `age` old, may decide on `needed` more bytes
/// instead of a new measure: while it is recent, and far enough above the reserve that
/// it could not refuse them (only a new measure refuses).
fn stands_in(estimate: FsSpace, reserve: u64, needed: u64, age: Duration) -> bool {
    let far = !estimate.known()
        || estimate.available
            >= reserve
                .saturating_add(needed)
                .saturating_add(MEASURE_MARGIN);
    far && age < MEASURE_TTL
}

/// How long a measure stands in for a new one …
const MEASURE_TTL: Duration = Duration::from_millis(10);
/// … and only while the estimate is this far above the reserve: near it, every
/// request measures (as before), so what is refused there does not change.
const MEASURE_MARGIN: u64 = 64 << 20;

/// How long a refusal keeps the state `Full` (free space hovers around the reserve).
const FULL_HOLD_MS: u64 = 5_000;

impl Admission {
    /// Reads the data dir's filesystem for the default reserve and the segment size.
    pub fn new(config: &QueueConfig, data_dir: &Path) -> std::io::Result<Admission> {
        let space = disk::fs_space(data_dir)?;
        // A segment is the unit in which disk space comes back: small against the cap
        // and the filesystem, so that draining frees space early.
        let basis = if space.known() {
            config.max_bytes.min(space.total)
        } else {
            config.max_bytes
        };
        Ok(Admission {
            dir: data_dir.to_owned(),
            max_bytes: config.max_bytes,
            when_full: config.when_full,
            reserve: config
                .min_free_bytes
                .unwrap_or_else(|| disk::default_reserve(space)),
            segment_bytes: (basis / 32).clamp(256 << 10, 64 << 20),
            lock: Mutex::new(()),
            refused_at_ms: AtomicU64::new(0),
            measured: Mutex::new(None),
        })
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Whether the policy makes room by dropping the oldest messages.
    pub fn drop_oldest(&self) -> bool {
        self.when_full == WhenFull::DropOldest
    }

    /// Held while checking the cap and inserting.
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        sync::lock(&self.lock)
    }

    /// The filesystem now, if it can be read.
    pub fn space(&self) -> Option<FsSpace> {
        disk::fs_space(&self.dir).ok()
    }

    /// Refuses `needed` more bytes if they would eat into the reserve.
    pub fn check_disk(&self, needed: u64) -> Result<(), QueueError> {
        match self.space_for(needed) {
            Some(space)
                if space.known() && space.available < self.reserve.saturating_add(needed) =>
            {
                self.refused();
                Err(QueueError::DiskFull {
                    available: space.available,
                    reserve: self.reserve,
                })
            }
            // Unreadable or of unknown size: the write itself will tell.
            _ => Ok(()),
        }
    }

    /// The filesystem before admitting `needed` more bytes: the last measure less what
    /// was admitted since, while that [`stands_in`]; else a new measure (taken outside
    /// the lock: a slow filesystem then holds up each caller, not a queue of them).
    /// Either way `needed` counts as admitted from then on.
    fn space_for(&self, needed: u64) -> Option<FsSpace> {
        {
            let mut measured = sync::lock(&self.measured);
            if let Some(m) = measured.as_mut() {
                let estimate = FsSpace {
                    total: m.space.total,
                    available: m.space.available.saturating_sub(m.admitted),
                };
                if stands_in(estimate, self.reserve, needed, m.at.elapsed()) {
                    m.admitted = m.admitted.saturating_add(needed);
                    return Some(estimate);
                }
            }
        }
        let space = self.space();
        *sync::lock(&self.measured) = space.map(|space| Measured {
            at: Instant::now(),
            space,
            admitted: needed,
        });
        space
    }

    /// Notes that work was refused for lack of room (disk or cap).
    pub fn refused(&self) {
        self.refused_at_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
    }

    /// Notes that work was accepted again: room is back.
    pub fn accepted(&self) {
        if self.refused_at_ms.load(Ordering::Relaxed) != 0 {
            self.refused_at_ms.store(0, Ordering::Relaxed);
        }
    }

    /// The state for `used` bytes against the cap and the filesystem's free space
    /// (`None`: the filesystem reports no size).
    pub fn state(&self, used: u64, free: Option<u64>, failed: bool) -> StorageState {
        let refused = self.refused_at_ms.load(Ordering::Relaxed);
        let refusing =
            refused != 0 && crate::clock::now_ms().saturating_sub(refused) < FULL_HOLD_MS;
        let capped = used > self.max_bytes / 10 * 9;
        match free {
            _ if failed => StorageState::Failed,
            _ if refusing => StorageState::Full,
            Some(free) if free < self.reserve => StorageState::Full,
            Some(free) if free < self.reserve.saturating_mul(2) || capped => StorageState::Low,
            None if capped => StorageState::Low,
            None => StorageState::UnknownSize,
            Some(_) => StorageState::Ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_measure_decides_only_when_recent_and_far_from_the_reserve() {
        let space = |available| FsSpace {
            total: 10 << 30,
            available,
        };
        let (reserve, needed) = (100 << 20, 1 << 20);
        let edge = reserve + needed + MEASURE_MARGIN;
        let fresh = Duration::from_millis(1);
        assert!(stands_in(space(edge), reserve, needed, fresh));
        assert!(
            !stands_in(space(edge - 1), reserve, needed, fresh),
            "near: measure"
        );
        assert!(
            !stands_in(space(edge), reserve, needed, MEASURE_TTL),
            "old: measure"
        );
        assert!(!stands_in(space(0), reserve, needed, fresh));
        // A filesystem of unknown size is never refused: the kept measure is as good.
        let unknown = FsSpace {
            total: 0,
            available: 0,
        };
        assert!(stands_in(unknown, reserve, needed, fresh));
        // Nothing overflows near u64::MAX.
        assert!(!stands_in(space(u64::MAX - 1), u64::MAX, needed, fresh));
    }

    /// On a real filesystem: small requests pass on the kept measure, and one bigger
    /// than the room left is refused every time, also right after them.
    #[test]
    fn a_request_bigger_than_the_room_left_is_refused_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = QueueConfig {
            min_free_bytes: Some(0),
            ..QueueConfig::default()
        };
        let admission = Admission::new(&config, dir.path()).unwrap();
        let space = disk::fs_space(dir.path()).unwrap();
        if !space.known() {
            return; // nothing to measure on this filesystem
        }
        let too_big = space.total.saturating_mul(2);
        for _ in 0..3 {
            assert!(admission.check_disk(1).is_ok());
            assert!(admission.check_disk(1 << 10).is_ok());
            assert!(
                matches!(
                    admission.check_disk(too_big),
                    Err(QueueError::DiskFull { .. })
                ),
                "{too_big} bytes admitted on a filesystem of {}",
                space.total
            );
        }
    }
}
