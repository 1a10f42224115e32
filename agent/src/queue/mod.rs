//! The durable queue: every accepted message stays here, on disk, until its sink has
//! acknowledged it.
//!
//! * Every accepted message is a frame in its sink's journal ([`journal`], in files of
//!   [`segments`]); a [group commit](commit) makes the requests admitted meanwhile
//!   durable together, with one `fdatasync` per journal written, before their 202s.
//! * The index lives in sled ([`store`]): one FIFO per sink ([`fifo`]), small payloads
//!   inline, large ones pointing into the journal. It is flushed every half second by
//!   the queue's own thread ([`background`]), off the producers' path; after a crash,
//!   what was written since the last checkpoint is indexed again ([`recover`]).
//! * A message is removed only when its sink acknowledged it ([`Queue::ack`]), moved to
//!   the dead letters when its sink refused it for good ([`dead`]), or dropped by the
//!   `drop_oldest` policy ([`write`]) — each counted.
//! * What may be written is decided by [`admission`]: the `max_bytes` cap against the
//!   bytes the queue occupies on disk, and a reserve of free space on the filesystem so
//!   that acknowledgements, compaction and segment deletion always have room.
//! * [`maintain`] recovers a database that failed on a full disk once space is back,
//!   and compacts it when it holds far more than it needs.
//! * Delivery reads a bounded batch from the head of a sink's FIFO ([`read`]), so a
//!   backlog of millions never sits in RAM; counters are rebuilt by one scan at open.

pub mod admission;
mod background;
mod commit;
mod compact;
pub mod dead;
mod disk;
mod fifo;
mod journal;
pub mod kv;
pub(crate) mod maintain;
mod open;
mod read;
pub mod record;
mod recover;
mod segments;
mod seq;
mod store;
mod write;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::{QueueConfig, SyncMode};
use crate::sync;
pub use admission::{StorageState, StorageStatus};
use background::Background;
use commit::Committer;
pub use commit::{Lead, Ticket};
pub use dead::{DeadLetter, DeadSelection};
pub use fifo::SinkQueue;
pub use open::Opened;
pub use read::{Peeked, StoredMessage};
use record::MessageId;
use recover::Checkpoints;
use segments::SegmentStore;
use seq::Sequence;
use store::Store;

/// Queue errors.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue is full: {needed} more bytes would exceed max_bytes {max}")]
    Full { needed: u64, max: u64 },
    #[error(
        "disk is full: {available} bytes free, {reserve} kept in reserve (queue.min_free_bytes)"
    )]
    DiskFull { available: u64, reserve: u64 },
    #[error("message for unknown sink `{0}`")]
    UnknownSink(String),
    #[error("queue storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error("queue storage error: {0}")]
    Io(#[source] std::io::Error),
    #[error("queue commit failed: {0}")]
    Commit(Arc<QueueError>),
    #[error("corrupt queue record {key}: {message}")]
    CorruptRecord { key: String, message: String },
    #[error("payload segment unreadable: {0}")]
    Segment(#[source] std::io::Error),
    #[error("the queue database is being reopened or could not be; try again")]
    Unavailable,
    #[error("the queue database failed on a write{}; it is reopened once the disk has room",
        if *full { " (disk full)" } else { "" })]
    Failed { full: bool },
    #[error("queue task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl QueueError {
    /// Whether this is "no room" (the cap, the disk reserve, or the disk itself): the
    /// producer should slow down, nothing is broken.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            QueueError::Full { .. } | QueueError::DiskFull { .. } => true,
            QueueError::Storage(sled::Error::Io(e))
            | QueueError::Io(e)
            | QueueError::Segment(e) => disk::is_full(e),
            QueueError::Commit(e) => e.is_out_of_space(),
            QueueError::Failed { full } => *full,
            _ => false,
        }
    }
}

/// Queue-wide figures for health and metrics.
#[derive(Debug, Clone, Copy)]
pub struct QueueStats {
    pub depth: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Group commits so far (requests per commit shows how well commits group).
    pub commits: u64,
    /// `fdatasync`s of the journals so far (one per commit with `sync = "always"`).
    pub syncs: u64,
    /// Checkpoints so far: flushes of the index (acks, plugin state) to disk.
    pub checkpoints: u64,
    pub sync: SyncMode,
}

/// Everything the queue's users, its committing threads and its background thread
/// share.
pub(crate) struct Core {
    store: Arc<Store>,
    segments: SegmentStore,
    /// One FIFO per sink. Sinks can be added while the agent runs (a reload); a removed
    /// sink's FIFO stays, with its messages, until the sink comes back.
    sinks: RwLock<BTreeMap<String, Arc<SinkQueue>>>,
    admission: admission::Admission,
    seq: Sequence,
    epoch: u64,
    /// Messages and their logical bytes (keys, records, payloads).
    depth: AtomicU64,
    bytes: AtomicU64,
    /// What the records cost in sled, estimated ([`write::Size`]).
    index_charge: AtomicU64,
    /// Bytes admitted for groups not yet committed.
    reserved: AtomicU64,
    /// Index writes no checkpoint covers yet (commits, acks, key-value writes).
    dirty: Arc<AtomicBool>,
    commit: Committer,
    checkpoints: Mutex<Checkpoints>,
}

/// The durable queue.
pub struct Queue {
    core: Arc<Core>,
    background: Option<Background>,
    opened: Opened,
}

const EPOCH_KEY: &[u8] = b"epoch";

impl Queue {
    /// Opens the queue in `<data_dir>/queue` for the given sinks and rebuilds the
    /// counters.
    pub fn open<'a>(
        data_dir: &Path,
        config: &QueueConfig,
        sink_names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Queue, QueueError> {
        let mut queue = Self::open_quiet(data_dir, config, sink_names)?;
        let background =
            Background::start(Arc::clone(&queue.core), config).map_err(QueueError::Io)?;
        queue.background = Some(background);
        Ok(queue)
    }

    /// [`Queue::open`] without the background thread: no checkpoint, interval sync or
    /// maintenance happens unless called (tests of what a crash leaves).
    fn open_quiet<'a>(
        data_dir: &Path,
        config: &QueueConfig,
        sink_names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Queue, QueueError> {
        let dir = data_dir.join("queue");
        let (store, opened) = Store::open(&dir, config.cache_mb << 20)?;
        let admission = admission::Admission::new(config, data_dir).map_err(QueueError::Io)?;
        let (epoch, seq, checkpoints) = {
            let trees = store.trees()?;
            let seq = Sequence::load(&trees)?;
            (epoch(&trees)?, seq, recover::read_checkpoints(&trees)?)
        };
        // Inside the database's directory, so a corrupt database is moved aside with
        // its journals.
        let segments = SegmentStore::open(&dir.join("payloads"), admission.segment_bytes())
            .map_err(QueueError::Io)?;
        let core = Arc::new(Core {
            store: Arc::new(store),
            segments,
            sinks: RwLock::new(
                sink_names
                    .into_iter()
                    .map(|n| (n.to_owned(), Arc::new(SinkQueue::new(n))))
                    .collect(),
            ),
            admission,
            seq,
            epoch,
            depth: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            index_charge: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            dirty: Arc::new(AtomicBool::new(false)),
            commit: Committer::new(config.sync, Default::default()),
            checkpoints: Mutex::new(Checkpoints::new(checkpoints)),
        });
        {
            let trees = core.store.trees()?;
            core.reindex(&trees)?;
        }
        core.store.flush()?;
        // The queue's directories and sled's files, created above perhaps, for good.
        for d in [data_dir, &dir, &dir.join("payloads")] {
            disk::sync_dir(d).map_err(QueueError::Io)?;
        }
        Ok(Queue {
            core,
            background: None,
            opened,
        })
    }

    /// How the database was opened (moved aside if corrupt).
    pub fn opened(&self) -> &Opened {
        &self.opened
    }

    /// The FIFO of `sink`.
    pub fn sink(&self, sink: &str) -> Option<Arc<SinkQueue>> {
        self.core.sink(sink)
    }

    /// All sink FIFOs, including those of sinks no longer configured.
    pub fn sinks(&self) -> Vec<Arc<SinkQueue>> {
        self.core.fifos().values().cloned().collect()
    }

    /// The FIFO of a sink added while running (a reload): created if new, with the
    /// messages already queued for that name counted into it.
    pub fn add_sink(&self, name: &str) -> Result<Arc<SinkQueue>, QueueError> {
        if let Some(fifo) = self.core.sink(name) {
            return Ok(fifo);
        }
        let trees = self.core.store.trees()?;
        let mut fifos = sync::write(&self.core.sinks);
        let fifo = Arc::clone(
            fifos
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(SinkQueue::new(name))),
        );
        self.core.count_into(&trees, &fifo)?;
        Ok(fifo)
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            depth: self.core.depth.load(Ordering::Relaxed),
            bytes: self.core.bytes.load(Ordering::Relaxed),
            max_bytes: self.core.admission.max_bytes(),
            commits: self.core.commit.commits(),
            syncs: self.core.commit.syncs(),
            checkpoints: sync::lock(&self.core.checkpoints).done,
            sync: self.core.commit.mode(),
        }
    }

    /// Disk space, the reserve and the storage state, for health and metrics.
    pub fn storage(&self) -> StorageStatus {
        self.core.storage_status()
    }

    /// Makes everything durable (acks included) and checkpoints, so that a restart
    /// replays nothing. For shutdown. Blocking.
    pub fn flush_blocking(&self) -> Result<(), QueueError> {
        // The second checkpoint makes the first one's positions durable.
        self.core.checkpoint()?;
        self.core.checkpoint()
    }

    /// Payload segment files on disk.
    pub fn segment_files(&self) -> usize {
        self.core.segments.files()
    }

    /// Makes the database fail as on a full disk (tests of the recovery paths).
    #[cfg(test)]
    pub(crate) fn simulate_disk_failure(&self) {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let _ = self.core.store.fail(sled::Error::Io(full));
    }

    /// The plugins' key-value stores, in this database: their writes are flushed by
    /// the next checkpoint.
    pub fn kv_stores(&self) -> kv::KvStores {
        kv::KvStores::new(Arc::clone(&self.core.store), Arc::clone(&self.core.dirty))
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // Stops the background thread before the database closes.
        self.background.take();
    }
}

impl Core {
    /// At open and after a reopen: indexes what the journals hold past the durable
    /// checkpoints, then counts everything.
    fn reindex(&self, trees: &store::Trees) -> Result<(), QueueError> {
        let durable = sync::lock(&self.checkpoints).durable().clone();
        let indexed = self.replay(trees, &durable)?;
        self.rebuild(trees, &durable)?;
        self.commit.set_indexed(indexed);
        Ok(())
    }

    fn fifos(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<SinkQueue>>> {
        sync::read(&self.sinks)
    }

    fn sink(&self, name: &str) -> Option<Arc<SinkQueue>> {
        self.fifos().get(name).cloned()
    }

    fn sink_of_key(&self, key: &[u8]) -> Option<Arc<SinkQueue>> {
        self.sink(fifo::sink_name_of_key(key).as_str())
    }

    fn id(&self, seq: u64) -> MessageId {
        MessageId {
            epoch: self.epoch,
            seq,
        }
    }
}

/// The database's random epoch: the first half of every message id.
fn epoch(trees: &store::Trees) -> Result<u64, QueueError> {
    match trees.meta.get(EPOCH_KEY)? {
        Some(v) if v.len() == 8 => Ok(v.as_ref().try_into().map_or(0, u64::from_be_bytes)),
        _ => {
            let epoch = fastrand::u64(..);
            trees.meta.insert(EPOCH_KEY, &epoch.to_be_bytes())?;
            Ok(epoch)
        }
    }
}

#[cfg(test)]
mod tests;
