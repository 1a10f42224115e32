//! Group commit: concurrent writers share one `fsync`.
//!
//! A writer inserts its records, then asks for a commit. The committer thread takes
//! every request waiting at that moment, flushes sled once (sled's flush writes and
//! fsyncs its log), and answers them all. A request that arrives during a flush waits
//! for the next one, which is what makes "flushed after my insert" true.
//!
//! A flush syncs the payload segments first, then sled, so a durable record never
//! points at a payload that is not; segments emptied before the flush are deleted after
//! it. With no commit requested, the thread still flushes every 500 ms when there is
//! something to flush (deletes after acks), as sled's own periodic flush is off.
//!
//! A dedicated thread rather than a tokio task: flushing blocks, and the thread's
//! lifetime is tied to the queue (joined on drop), so the database is closed when the
//! queue is.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::segments::SegmentStore;

/// How often pending deletes are flushed when nobody asks for a commit.
const IDLE_FLUSH: Duration = Duration::from_millis(500);

/// One flush: payload segments, then sled, then the segments that emptied before it.
pub(super) fn flush(
    db: &sled::Db,
    segments: &SegmentStore,
    dirty: &AtomicBool,
) -> Result<(), sled::Error> {
    dirty.store(false, Ordering::Relaxed);
    let emptied = segments.emptied();
    segments.sync()?;
    db.flush()?;
    segments.collect(emptied);
    Ok(())
}

type Reply = oneshot::Sender<Result<(), Arc<sled::Error>>>;

/// Handle to the committer thread.
pub struct GroupCommit {
    requests: Option<mpsc::Sender<Reply>>,
    thread: Option<JoinHandle<()>>,
    flushes: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Starts the committer for `db` and its payload `segments`; `dirty` says there is
    /// something to flush even without a commit request.
    pub fn start(
        db: sled::Db,
        segments: Arc<SegmentStore>,
        dirty: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Reply>();
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&flushes);
        let thread = std::thread::Builder::new()
            .name("outpost-commit".into())
            .spawn(move || {
                let mut waiting = Vec::new();
                loop {
                    match rx.recv_timeout(IDLE_FLUSH) {
                        Ok(first) => {
                            waiting.push(first);
                            waiting.extend(rx.try_iter());
                            let result = flush(&db, &segments, &dirty).map_err(Arc::new);
                            counter.fetch_add(1, Ordering::Relaxed);
                            for reply in waiting.drain(..) {
                                let _ = reply.send(result.clone());
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if dirty.load(Ordering::Relaxed) {
                                if let Err(e) = flush(&db, &segments, &dirty) {
                                    tracing::error!(error = %e, "queue flush failed");
                                }
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            })?;
        Ok(GroupCommit {
            requests: Some(tx),
            thread: Some(thread),
            flushes,
        })
    }

    /// Resolves once everything inserted before this call is on disk.
    pub async fn commit(&self) -> Result<(), Arc<sled::Error>> {
        let closed = || Arc::new(sled::Error::Io(std::io::Error::other("committer stopped")));
        let (tx, rx) = oneshot::channel();
        self.requests
            .as_ref()
            .ok_or_else(closed)?
            .send(tx)
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Number of flushes so far (requests per flush shows how well commits group).
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
