//! Group commit: concurrent writers share one flush.
//!
//! A writer inserts its records, then asks for a commit. The committer thread takes
//! every request waiting at that moment, flushes once (`Core::flush`: the payload
//! segments' fdatasync, sled's log write and its fdatasync), and answers them all. A
//! request that arrives during a flush waits for the next one, which is what makes
//! "flushed after my insert" true.
//!
//! Writers announce themselves before their plugin call ([`GroupCommit::writer`]). When
//! a commit is requested while other writers are still working, the committer gives
//! them up to [`GATHER`] to join the same flush; a lone writer is flushed at once. Under
//! load that halves the fsyncs (and the CPU spent around them) for at most that much
//! latency; at low rates it changes nothing.
//!
//! A flush syncs the payload segments first, then sled, so a durable record never
//! points at a payload that is not; segments emptied before the flush are deleted after
//! it. With no commit requested, the thread still flushes every 500 ms when there is
//! something to flush (deletes after acks), as sled's own periodic flush is off, and
//! runs the queue's maintenance (`Core::maintain`).
//!
//! A dedicated thread rather than a tokio task: flushing blocks, and the thread's
//! lifetime is tied to the queue (joined on drop), so the database is closed when the
//! queue is.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::maintain::Maintenance;
use super::{Core, QueueError};

/// How often pending deletes are flushed when nobody asks for a commit.
const IDLE_FLUSH: Duration = Duration::from_millis(500);

/// How long a commit waits at most for writers still working to join its flush.
pub const GATHER: Duration = Duration::from_millis(1);

/// A write in progress, from before its plugin call until its commit is answered (or it
/// gave up): the committer waits briefly for these rather than flush without them.
#[must_use = "a writer counts until it is dropped"]
pub struct Writer(Arc<AtomicUsize>);

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

type Reply = (oneshot::Sender<Result<(), Arc<QueueError>>>, Writer);

/// Handle to the committer thread.
pub struct GroupCommit {
    requests: Option<mpsc::Sender<Reply>>,
    thread: Option<JoinHandle<()>>,
    flushes: Arc<AtomicU64>,
    writers: Arc<AtomicUsize>,
}

impl GroupCommit {
    /// Starts the committer of `core`.
    pub(super) fn start(core: Arc<Core>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Reply>();
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&flushes);
        let writers = Arc::new(AtomicUsize::new(0));
        let working = Arc::clone(&writers);
        let thread = std::thread::Builder::new()
            .name("outpost-commit".into())
            .spawn(move || run(&core, &rx, &working, &counter))?;
        Ok(GroupCommit {
            requests: Some(tx),
            thread: Some(thread),
            flushes,
            writers,
        })
    }

    /// Announces a write that will ask for a commit soon.
    pub fn writer(&self) -> Writer {
        self.writers.fetch_add(1, Ordering::AcqRel);
        Writer(Arc::clone(&self.writers))
    }

    /// Resolves once everything `writer` inserted before this call is on disk.
    pub async fn commit(&self, writer: Writer) -> Result<(), Arc<QueueError>> {
        let closed = || Arc::new(QueueError::Io(std::io::Error::other("committer stopped")));
        let (tx, rx) = oneshot::channel();
        self.requests
            .as_ref()
            .ok_or_else(closed)?
            .send((tx, writer))
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Number of completed flushes so far, for commits and for writes no commit covers
    /// (acks, plugin key-value writes); requests per flush shows how well commits group.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}

/// The committer thread: flushes for commit requests, and flushes what is dirty plus
/// maintenance on every idle tick.
fn run(core: &Core, rx: &mpsc::Receiver<Reply>, writers: &AtomicUsize, flushes: &AtomicU64) {
    let mut waiting = Vec::new();
    let mut maintenance = Maintenance::default();
    let mut last_tick = Instant::now();
    loop {
        match rx.recv_timeout(IDLE_FLUSH) {
            Ok(first) => {
                waiting.push(first);
                gather(rx, writers, &mut waiting);
                let result = core.flush().map_err(Arc::new);
                if result.is_ok() {
                    flushes.fetch_add(1, Ordering::Relaxed);
                }
                for (reply, writer) in waiting.drain(..) {
                    drop(writer);
                    let _ = reply.send(result.clone());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= IDLE_FLUSH {
            last_tick = Instant::now();
            idle_tick(core, flushes, &mut maintenance);
        }
    }
}

/// Flushes what no commit covered (acks, key-value writes), then maintains the queue.
fn idle_tick(core: &Core, flushes: &AtomicU64, maintenance: &mut Maintenance) {
    if core.dirty.load(Ordering::Relaxed) && !core.store.failed() {
        match core.flush() {
            Ok(()) => {
                flushes.fetch_add(1, Ordering::Relaxed);
            }
            // Logged once by the store, shown by health; retried next tick.
            Err(e) => tracing::debug!(error = %e, "queue flush failed"),
        }
    }
    core.maintain(maintenance);
}

/// Adds to `waiting` the requests that come while other writers are still working, for
/// at most [`GATHER`].
fn gather(rx: &mpsc::Receiver<Reply>, writers: &AtomicUsize, waiting: &mut Vec<Reply>) {
    waiting.extend(rx.try_iter());
    let deadline = Instant::now() + GATHER;
    // Every waiting request holds a writer: more writers than requests means someone is
    // still between its plugin call and its commit.
    while writers.load(Ordering::Acquire) > waiting.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(request) => {
                waiting.push(request);
                waiting.extend(rx.try_iter());
            }
            Err(_) => break,
        }
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
