//! The durable queue: every accepted message stays here, on disk, until its sink has
//! acknowledged it.
//!
//! * One sled tree holds all pending messages; a key is `<sink>\0<seq: u64 BE>`, so each
//!   sink is a FIFO (a key-ordered prefix) and one request's messages for several sinks
//!   land in one atomic batch.
//! * Writes are made durable by [group commit](commit): a producer's 202 goes out after
//!   the flush (fsync) that covers its insert; concurrent requests share flushes.
//! * A message is removed only by [`Queue::ack`] (its sink acknowledged it) or moved by
//!   [`Queue::dead_letter`] (its sink refused it for good), or dropped by the
//!   `drop_oldest` policy, each counted.
//! * Delivery reads a bounded batch from the head of a sink's FIFO, so a backlog of
//!   millions never sits in RAM; counters are rebuilt by one scan at start-up.

mod commit;
pub mod kv;
mod open;
pub mod record;
mod segments;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use outpost_pdk::{Message, SinkName};
use tokio::sync::Notify;

use crate::config::{QueueConfig, WhenFull};
pub use commit::{GroupCommit, Writer};
pub use open::Opened;
use record::{
    DeadLetterV1, Envelope, EnvelopeV2Ref, MessageId, Payload, PayloadRef, RecordRef, RecordV1,
    RecordV2,
};
use segments::{SegmentRef, SegmentStore};

/// Payloads up to this size stay in the sled record; larger ones go to a segment file.
const INLINE_MAX: usize = 256;

/// Queue errors.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue is full: {needed} more bytes would exceed max_bytes {max}")]
    Full { needed: u64, max: u64 },
    #[error("message for unknown sink `{0}`")]
    UnknownSink(String),
    #[error("queue storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error("queue commit failed: {0}")]
    Commit(Arc<sled::Error>),
    #[error("corrupt queue record {key}: {message}")]
    CorruptRecord { key: String, message: String },
    #[error("payload segment unreadable: {0}")]
    Segment(#[source] std::io::Error),
    #[error("queue task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One sink's FIFO: its key prefix, its counters and the wake-up for its delivery loop.
#[derive(Debug)]
pub struct SinkQueue {
    pub name: SinkName,
    prefix: Vec<u8>,
    depth: AtomicU64,
    bytes: AtomicU64,
    dead: AtomicU64,
    dropped_full: AtomicU64,
    notify: Notify,
}

impl SinkQueue {
    fn new(name: &str) -> Self {
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        SinkQueue {
            name: SinkName::from(name),
            prefix,
            depth: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dead: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    fn key(&self, seq: u64) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + 8);
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// Messages waiting.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }
    /// Bytes waiting (keys and encoded records).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Messages in the dead-letter tree.
    pub fn dead_letters(&self) -> u64 {
        self.dead.load(Ordering::Relaxed)
    }
    /// Messages dropped by `when_full = "drop_oldest"`.
    pub fn dropped_full(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed)
    }
    /// Resolves when new messages were committed (a permit is kept if nobody waits).
    pub async fn wait_for_messages(&self) {
        self.notify.notified().await
    }
}

/// A message read back for delivery.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    key: sled::IVec,
    pub id: MessageId,
    pub enqueued_ms: u64,
    pub content_type: String,
    pub topic: Option<String>,
    pub key_: Option<String>,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

/// What [`Queue::insert`] wrote, to be made durable by [`Queue::commit`].
#[must_use = "inserted messages are not durable until committed"]
pub struct Inserted {
    sinks: Vec<Arc<SinkQueue>>,
    pub count: usize,
}

/// Queue-wide figures for health and metrics.
#[derive(Debug, Clone, Copy)]
pub struct QueueStats {
    pub depth: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub flushes: u64,
}

/// The durable queue.
pub struct Queue {
    db: sled::Db,
    pending: sled::Tree,
    dead: sled::Tree,
    epoch: u64,
    max_bytes: u64,
    when_full: WhenFull,
    sinks: BTreeMap<String, Arc<SinkQueue>>,
    depth: AtomicU64,
    bytes: AtomicU64,
    /// Serialises the capacity check with the insert, so concurrent requests cannot
    /// overshoot `max_bytes` together. Held only for in-memory sled operations.
    admit: Mutex<()>,
    committer: GroupCommit,
    segments: Arc<SegmentStore>,
    /// Removals not yet flushed.
    dirty: Arc<AtomicBool>,
    opened: Opened,
}

const PENDING_TREE: &[u8] = b"pending";
const DEAD_TREE: &[u8] = b"dead_letter";
const META_TREE: &[u8] = b"meta";
const KV_TREE: &[u8] = b"plugin_kv";
const EPOCH_KEY: &[u8] = b"epoch";

impl Queue {
    /// Opens the queue in `<data_dir>/queue` for the given sinks and rebuilds the
    /// counters.
    pub fn open<'a>(
        data_dir: &Path,
        config: &QueueConfig,
        sink_names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Queue, QueueError> {
        let (db, opened) = open::open(&data_dir.join("queue"), config.cache_mb << 20)?;
        let pending = db.open_tree(PENDING_TREE)?;
        let dead = db.open_tree(DEAD_TREE)?;
        let meta = db.open_tree(META_TREE)?;
        let epoch = match meta.get(EPOCH_KEY)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(v.as_ref().try_into().unwrap()),
            _ => {
                let epoch = fastrand::u64(..);
                meta.insert(EPOCH_KEY, &epoch.to_be_bytes())?;
                db.flush()?;
                epoch
            }
        };
        let sinks: BTreeMap<String, Arc<SinkQueue>> = sink_names
            .into_iter()
            .map(|n| (n.to_owned(), Arc::new(SinkQueue::new(n))))
            .collect();
        // Inside the database's directory, so a corrupt database is moved aside with
        // its payloads.
        let segments = Arc::new(
            SegmentStore::open(&data_dir.join("queue").join("payloads"))
                .map_err(sled::Error::Io)?,
        );
        let dirty = Arc::new(AtomicBool::new(false));
        let queue = Queue {
            committer: GroupCommit::start(db.clone(), Arc::clone(&segments), Arc::clone(&dirty))
                .map_err(sled::Error::Io)?,
            segments,
            dirty,
            db,
            pending,
            dead,
            epoch,
            max_bytes: config.max_bytes,
            when_full: config.when_full,
            sinks,
            depth: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            admit: Mutex::new(()),
            opened,
        };
        queue.rebuild_counters()?;
        Ok(queue)
    }

    /// One pass over the trees: per-sink depth and bytes. Messages for sinks that are no
    /// longer configured are kept (and counted in the totals) but not delivered.
    fn rebuild_counters(&self) -> Result<(), QueueError> {
        let mut orphans: BTreeMap<String, u64> = BTreeMap::new();
        let mut refs = Vec::new();
        for entry in self.pending.iter() {
            let (key, value) = entry?;
            let segment = segment_of(&value);
            refs.extend(segment);
            let external = segment.map_or(0, |r| u64::from(r.len));
            let size = (key.len() + value.len()) as u64 + external;
            self.depth.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(size, Ordering::Relaxed);
            match self.sink_of_key(&key) {
                Some(sink) => {
                    sink.depth.fetch_add(1, Ordering::Relaxed);
                    sink.bytes.fetch_add(size, Ordering::Relaxed);
                }
                None => *orphans.entry(sink_name_of_key(&key)).or_default() += 1,
            }
        }
        self.segments.rebuild(refs).map_err(sled::Error::Io)?;
        for entry in self.dead.iter() {
            let (key, _) = entry?;
            if let Some(sink) = self.sink_of_key(&key) {
                sink.dead.fetch_add(1, Ordering::Relaxed);
            }
        }
        for (sink, count) in orphans {
            tracing::warn!(
                sink,
                count,
                "queued messages for a sink that is not configured are kept, not delivered"
            );
        }
        Ok(())
    }

    fn sink_of_key(&self, key: &[u8]) -> Option<&Arc<SinkQueue>> {
        self.sinks.get(sink_name_of_key(key).as_str())
    }

    /// How the database was opened (moved aside if corrupt).
    pub fn opened(&self) -> &Opened {
        &self.opened
    }

    /// The FIFO of `sink`.
    pub fn sink(&self, sink: &str) -> Option<&Arc<SinkQueue>> {
        self.sinks.get(sink)
    }

    /// All sink FIFOs.
    pub fn sinks(&self) -> impl Iterator<Item = &Arc<SinkQueue>> {
        self.sinks.values()
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            depth: self.depth.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            max_bytes: self.max_bytes,
            flushes: self.committer.flushes(),
        }
    }

    /// Writes `messages` in one atomic batch (not yet durable: see [`Queue::commit`]).
    ///
    /// Blocking (sled); call it off the reactor. Applies the `when_full` policy.
    pub fn insert(&self, messages: &[Message]) -> Result<Inserted, QueueError> {
        let mut appended = Vec::new();
        let result = self.insert_appending(messages, &mut appended);
        if result.is_err() {
            // Payloads written for a batch that was refused: no record points at them.
            for r in &appended {
                self.segments.release(r);
            }
        }
        result
    }

    fn insert_appending(
        &self,
        messages: &[Message],
        appended: &mut Vec<SegmentRef>,
    ) -> Result<Inserted, QueueError> {
        let now = crate::clock::now_ms();
        let mut batch = sled::Batch::default();
        let mut sizes: Vec<(Arc<SinkQueue>, u64)> = Vec::with_capacity(messages.len());
        let mut needed = 0u64;
        for message in messages {
            let sink = self
                .sinks
                .get(message.sink.as_str())
                .ok_or_else(|| QueueError::UnknownSink(message.sink.to_string()))?;
            let seq = self.db.generate_id()?;
            let bytes = message.payload();
            let payload = if bytes.len() > INLINE_MAX {
                let r = self.segments.append(bytes).map_err(sled::Error::Io)?;
                appended.push(r);
                PayloadRef::Segment(r)
            } else {
                PayloadRef::Inline(bytes)
            };
            let headers: Vec<(&str, &str)> = message
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let external = match payload {
                PayloadRef::Segment(r) => u64::from(r.len),
                PayloadRef::Inline(_) => 0,
            };
            let value = EnvelopeV2Ref(RecordRef {
                id: MessageId {
                    epoch: self.epoch,
                    seq,
                },
                enqueued_ms: now,
                content_type: message.effective_content_type(),
                topic: message.topic.as_deref(),
                key: message.key.as_deref(),
                headers: &headers,
                payload,
            })
            .encode();
            let key = sink.key(seq);
            let size = (key.len() + value.len()) as u64 + external;
            needed += size;
            sizes.push((Arc::clone(sink), size));
            batch.insert(key, value);
        }

        let _admit = self.admit.lock().unwrap_or_else(|e| e.into_inner());
        if needed > self.max_bytes {
            return Err(QueueError::Full {
                needed,
                max: self.max_bytes,
            });
        }
        while self.bytes.load(Ordering::Relaxed) + needed > self.max_bytes {
            let dropped = match self.when_full {
                WhenFull::Reject => false,
                WhenFull::DropOldest => self.drop_oldest()?,
            };
            if !dropped {
                return Err(QueueError::Full {
                    needed,
                    max: self.max_bytes,
                });
            }
        }
        self.pending.apply_batch(batch)?;
        let mut touched: Vec<Arc<SinkQueue>> = Vec::new();
        for (sink, size) in sizes {
            sink.depth.fetch_add(1, Ordering::Relaxed);
            sink.bytes.fetch_add(size, Ordering::Relaxed);
            self.depth.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(size, Ordering::Relaxed);
            if !touched.iter().any(|s| Arc::ptr_eq(s, &sink)) {
                touched.push(sink);
            }
        }
        Ok(Inserted {
            sinks: touched,
            count: messages.len(),
        })
    }

    /// Waits until `inserted` is on disk (group commit), then wakes its sinks. Nothing
    /// inserted, nothing to wait for.
    pub async fn commit(&self, inserted: Inserted) -> Result<(), QueueError> {
        let writer = self.writer();
        self.commit_as(inserted, writer).await
    }

    /// Announces a write before its (slow) preparation, e.g. a plugin call, so that
    /// concurrent commits wait a moment to share their flush with it.
    pub fn writer(&self) -> Writer {
        self.committer.writer()
    }

    /// [`Queue::commit`] for a write announced with [`Queue::writer`].
    pub async fn commit_as(&self, inserted: Inserted, writer: Writer) -> Result<(), QueueError> {
        if inserted.count == 0 {
            return Ok(());
        }
        self.committer
            .commit(writer)
            .await
            .map_err(QueueError::Commit)?;
        for sink in &inserted.sinks {
            sink.notify.notify_one();
        }
        Ok(())
    }

    /// Removes the oldest pending message of any sink. Returns false if there is none.
    fn drop_oldest(&self) -> Result<bool, QueueError> {
        let mut oldest: Option<(u64, &Arc<SinkQueue>, sled::IVec)> = None;
        for sink in self.sinks.values() {
            if let Some(entry) = self.pending.scan_prefix(&sink.prefix).next() {
                let (key, _) = entry?;
                let seq = seq_of_key(&key);
                if oldest.as_ref().is_none_or(|(s, _, _)| seq < *s) {
                    oldest = Some((seq, sink, key));
                }
            }
        }
        let Some((_, sink, key)) = oldest else {
            return Ok(false);
        };
        if self.remove(sink, &key)? {
            sink.dropped_full.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(sink = %sink.name, "queue full: dropped the oldest message");
        }
        Ok(true)
    }

    /// Up to `max` messages from the head of `sink`'s FIFO, oldest first. Blocking.
    pub fn peek(&self, sink: &SinkQueue, max: usize) -> Result<Vec<StoredMessage>, QueueError> {
        let mut out = Vec::new();
        for entry in self.pending.scan_prefix(&sink.prefix).take(max) {
            let (key, value) = entry?;
            match self.load(key.clone(), &value) {
                Ok(message) => out.push(message),
                Err(reason) => {
                    // Unreadable records must not wedge the sink: park them as dead letters.
                    tracing::error!(sink = %sink.name, error = %reason, "unreadable queue record");
                    self.dead.insert(&key, value)?;
                    self.remove(sink, &key)?;
                    sink.dead.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(out)
    }

    /// A pending record with its payload.
    fn load(&self, key: sled::IVec, value: &[u8]) -> Result<StoredMessage, QueueError> {
        match Envelope::decode(value) {
            Ok(Envelope::V1(r)) => Ok(stored(key, r)),
            Ok(Envelope::V2(r)) => {
                let payload = match &r.payload {
                    Payload::Inline(bytes) => bytes.clone(),
                    Payload::Segment(s) => self.segments.read(s).map_err(QueueError::Segment)?,
                };
                Ok(stored(key, r.with_payload(payload)))
            }
            Ok(Envelope::DeadV1(_)) => Err(QueueError::CorruptRecord {
                key: format!("{key:?}"),
                message: "a dead letter among the pending messages".into(),
            }),
            Err(e) => Err(QueueError::CorruptRecord {
                key: format!("{key:?}"),
                message: e.to_string(),
            }),
        }
    }

    /// The sink acknowledged `message`: delete it. Blocking. Not flushed on its own: a
    /// crash before the next flush re-delivers it (at-least-once), never loses it.
    pub fn ack(&self, sink: &SinkQueue, message: &StoredMessage) -> Result<(), QueueError> {
        self.remove(sink, &message.key)?;
        Ok(())
    }

    /// The sink refused `message` for good: move it to the dead-letter tree, atomically.
    pub fn dead_letter(
        &self,
        sink: &SinkQueue,
        message: &StoredMessage,
        reason: impl std::fmt::Display,
    ) -> Result<(), QueueError> {
        let record = Envelope::DeadV1(DeadLetterV1 {
            reason: reason.to_string(),
            failed_ms: crate::clock::now_ms(),
            record: RecordV1 {
                id: message.id,
                enqueued_ms: message.enqueued_ms,
                content_type: message.content_type.clone(),
                topic: message.topic.clone(),
                key: message.key_.clone(),
                headers: message.headers.clone(),
                payload: message.payload.to_vec(),
            },
        })
        .encode();
        use sled::transaction::TransactionError;
        use sled::Transactional;
        let removed: Result<Option<sled::IVec>, TransactionError<()>> = (&self.pending, &self.dead)
            .transaction(|(pending, dead)| {
                dead.insert(message.key.as_ref(), record.as_slice())?;
                Ok(pending.remove(message.key.as_ref())?)
            });
        let removed = removed.map_err(|e| match e {
            TransactionError::Storage(e) => QueueError::Storage(e),
            TransactionError::Abort(()) => unreachable!("the transaction never aborts"),
        })?;
        if let Some(old) = removed {
            self.account_removal(sink, message.key.len() + old.len() + self.release(&old));
        }
        sink.dead.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Dead letters of `sink`, oldest first (for inspection and tests).
    pub fn dead_letters(
        &self,
        sink: &SinkQueue,
        max: usize,
    ) -> Result<Vec<DeadLetterV1>, QueueError> {
        let mut out = Vec::new();
        for entry in self.dead.scan_prefix(&sink.prefix).take(max) {
            let (key, value) = entry?;
            match Envelope::decode(&value) {
                Ok(Envelope::DeadV1(d)) => out.push(d),
                // Pending records parked here by `peek` because they could not be read.
                Ok(Envelope::V1(record)) => out.push(DeadLetterV1 {
                    reason: "unreadable".into(),
                    failed_ms: 0,
                    record,
                }),
                Ok(Envelope::V2(mut r)) => {
                    let payload = match &mut r.payload {
                        Payload::Inline(bytes) => std::mem::take(bytes),
                        Payload::Segment(_) => Vec::new(),
                    };
                    out.push(DeadLetterV1 {
                        reason: "payload unreadable".into(),
                        failed_ms: 0,
                        record: r.with_payload(payload),
                    })
                }
                Err(e) => {
                    return Err(QueueError::CorruptRecord {
                        key: format!("{key:?}"),
                        message: e.to_string(),
                    })
                }
            }
        }
        Ok(out)
    }

    /// Removes `key` if present, keeping the counters right. Returns whether it was there.
    fn remove(&self, sink: &SinkQueue, key: &[u8]) -> Result<bool, QueueError> {
        match self.pending.remove(key)? {
            Some(old) => {
                self.account_removal(sink, key.len() + old.len() + self.release(&old));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Releases the payload segment of a removed record; returns its size.
    fn release(&self, removed: &[u8]) -> usize {
        self.dirty.store(true, Ordering::Relaxed);
        match segment_of(removed) {
            Some(r) => {
                self.segments.release(&r);
                r.len as usize
            }
            None => 0,
        }
    }

    fn account_removal(&self, sink: &SinkQueue, size: usize) {
        let size = size as u64;
        sink.depth.fetch_sub(1, Ordering::Relaxed);
        sink.bytes.fetch_sub(size, Ordering::Relaxed);
        self.depth.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(size, Ordering::Relaxed);
    }

    /// Flushes everything (acks included) to disk. For shutdown. Blocking.
    pub fn flush_blocking(&self) -> Result<(), QueueError> {
        commit::flush(&self.db, &self.segments, &self.dirty)?;
        Ok(())
    }

    /// Payload segment files on disk.
    pub fn segment_files(&self) -> usize {
        self.segments.files()
    }

    /// The plugins' key-value stores, in this database: their writes are flushed by
    /// the committer.
    pub fn kv_stores(&self) -> Result<kv::KvStores, QueueError> {
        Ok(kv::KvStores::new(
            self.db.open_tree(KV_TREE)?,
            Arc::clone(&self.dirty),
        ))
    }
}

fn stored(key: sled::IVec, record: RecordV1) -> StoredMessage {
    StoredMessage {
        key,
        id: record.id,
        enqueued_ms: record.enqueued_ms,
        content_type: record.content_type,
        topic: record.topic,
        key_: record.key,
        headers: record.headers,
        payload: Bytes::from(record.payload),
    }
}

/// The payload segment a record points at, if any.
fn segment_of(value: &[u8]) -> Option<SegmentRef> {
    match Envelope::decode(value) {
        Ok(Envelope::V2(RecordV2 {
            payload: Payload::Segment(r),
            ..
        })) => Some(r),
        _ => None,
    }
}

fn sink_name_of_key(key: &[u8]) -> String {
    let end = key.iter().position(|&b| b == 0).unwrap_or(key.len());
    String::from_utf8_lossy(&key[..end]).into_owned()
}

fn seq_of_key(key: &[u8]) -> u64 {
    key.len()
        .checked_sub(8)
        .and_then(|start| key[start..].try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
mod tests;
