//! The queue's own thread: every half second it makes the index durable and notes a
//! checkpoint when there is something new ([`Core::checkpoint`]), and runs the queue's
//! maintenance (reopening a failed database, compaction, logging storage states);
//! with `queue.sync = "interval"` it also syncs the journals every
//! `sync_interval_ms`, which is what makes the messages accepted meanwhile durable.
//!
//! A dedicated thread rather than a tokio task: flushing blocks, and the thread's
//! lifetime is tied to the queue (joined on drop), so the database is closed when the
//! queue is.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::maintain::Maintenance;
use super::Core;
use crate::config::{QueueConfig, SyncMode};

/// How often the index is flushed (when it changed) and the queue maintained.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Handle to the background thread; stops and joins it when dropped.
pub(super) struct Background {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    pub fn start(core: Arc<Core>, config: &QueueConfig) -> std::io::Result<Background> {
        let (stop, stopped) = mpsc::channel();
        let interval = (config.sync == SyncMode::Interval).then_some(config.sync_interval);
        let thread = std::thread::Builder::new()
            .name("outpost-queue".into())
            .spawn(move || run(&core, &stopped, interval))?;
        Ok(Background {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn run(core: &Core, stopped: &mpsc::Receiver<()>, sync_every: Option<Duration>) {
    let tick = sync_every.map_or(CHECKPOINT_EVERY, |i| i.min(CHECKPOINT_EVERY));
    let mut maintenance = Maintenance::default();
    let mut last_checkpoint = Instant::now();
    // Until the handle is dropped (or sends).
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
        if sync_every.is_some() {
            match core.segments.sync() {
                Ok(()) => core.commit.synced(),
                // The journals' streams move to new files; the next tick tries again.
                Err(e) => tracing::error!(error = %e, "syncing the journals failed"),
            }
        }
        if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            last_checkpoint = Instant::now();
            if core.dirty.load(Ordering::Relaxed) && !core.store.failed() {
                // Logged once by the store, shown by health; retried next tick.
                if let Err(e) = core.checkpoint() {
                    tracing::debug!(error = %e, "queue checkpoint failed");
                }
            }
            core.maintain(&mut maintenance);
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
