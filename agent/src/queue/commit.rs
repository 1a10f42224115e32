//! Group commit: concurrent writers share one `fsync`.
//!
//! A writer inserts its records, then asks for a commit. The committer thread takes
//! every request waiting at that moment, flushes sled once (sled's flush writes and
//! fsyncs its log), and answers them all. A request that arrives during a flush waits
//! for the next one, which is what makes "flushed after my insert" true.
//!
//! A dedicated thread rather than a tokio task: flushing blocks, and the thread's
//! lifetime is tied to the queue (joined on drop), so the database is closed when the
//! queue is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<(), Arc<sled::Error>>>;

/// Handle to the committer thread.
pub struct GroupCommit {
    requests: Option<mpsc::Sender<Reply>>,
    thread: Option<JoinHandle<()>>,
    flushes: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Starts the committer for `db`.
    pub fn start(db: sled::Db) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Reply>();
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&flushes);
        let thread = std::thread::Builder::new()
            .name("outpost-commit".into())
            .spawn(move || {
                let mut waiting = Vec::new();
                while let Ok(first) = rx.recv() {
                    waiting.push(first);
                    waiting.extend(rx.try_iter());
                    let result = db.flush().map(drop).map_err(Arc::new);
                    counter.fetch_add(1, Ordering::Relaxed);
                    for reply in waiting.drain(..) {
                        let _ = reply.send(result.clone());
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
