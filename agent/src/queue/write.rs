//! Writing to the queue: inserting a request's messages (admission first), and the
//! removals — acknowledged, dropped by policy — with their accounting.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use outpost_pdk::Message;

use super::record::{EnvelopeV2Ref, PayloadRef, RecordRef};
use super::segments::SegmentRef;
use super::store::Trees;
use super::{Core, Queue, QueueError, SinkQueue, StoredMessage};

/// Payloads up to this size stay in the sled record; larger ones go to a segment file.
pub(super) const INLINE_MAX: usize = 256;

/// What [`Queue::insert`] wrote, to be made durable by [`Queue::commit`].
#[must_use = "inserted messages are not durable until committed"]
pub struct Inserted {
    pub(super) sinks: Vec<Arc<SinkQueue>>,
    pub count: usize,
}

/// What one record occupies.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Size {
    /// Key, record and payload bytes: what health reports as waiting.
    pub logical: u64,
    /// Payload bytes that stay on disk until a flush lets their segment go.
    pub deferred: u64,
    /// What the record costs in sled's log, estimated: sled keeps about
    /// 160 B + 1.6 × (key + value) per record (measured on 0.34.7).
    pub index: u64,
}

impl Size {
    pub fn of(key: usize, value: usize, external: u64) -> Size {
        let record = (key + value) as u64;
        Size {
            logical: record + external,
            index: 2 * record + 128,
            deferred: 0,
        }
    }
}

/// A record ready to go in the batch.
struct Prepared {
    sink: Arc<SinkQueue>,
    key: Vec<u8>,
    value: Vec<u8>,
    size: Size,
    payload: u64,
}

impl Queue {
    /// Writes `messages` in one atomic batch (not yet durable: see [`Queue::commit`]).
    ///
    /// Blocking (sled); call it off the reactor. Applies admission: the disk reserve,
    /// then the `max_bytes` cap with the `when_full` policy.
    pub fn insert(&self, messages: &[Message]) -> Result<Inserted, QueueError> {
        let core = &self.core;
        core.store.writable()?;
        let trees = core.store.trees()?;
        let mut appended = Vec::new();
        let result = core.insert(&trees, messages, &mut appended);
        if result.is_err() {
            // Payloads written for a batch that was refused: no record points at them.
            for r in &appended {
                let _ = core.segments.release(r);
            }
        }
        result
    }

    /// The sink acknowledged `message`: delete it. Blocking. Not flushed on its own: a
    /// crash before the next flush re-delivers it (at-least-once), never loses it.
    pub fn ack(&self, sink: &SinkQueue, message: &StoredMessage) -> Result<(), QueueError> {
        self.core.store.writable()?;
        let trees = self.core.store.trees()?;
        self.core.remove(&trees, sink, &message.key)?;
        Ok(())
    }
}

impl Core {
    fn insert(
        &self,
        trees: &Trees,
        messages: &[Message],
        appended: &mut Vec<SegmentRef>,
    ) -> Result<Inserted, QueueError> {
        let needed: u64 = messages
            .iter()
            .map(|m| m.payload().len() as u64 + 200)
            .sum();
        self.admission.check_disk(needed)?;
        let now = crate::clock::now_ms();
        let mut prepared = Vec::with_capacity(messages.len());
        for message in messages {
            prepared.push(self.prepare(trees, message, now, appended)?);
        }
        // The payloads were appended already: the segments count them.
        let index: u64 = prepared.iter().map(|p| p.size.index).sum();
        let payloads: u64 = prepared.iter().map(|p| p.payload).sum();
        let _admit = self.admission.lock();
        self.make_room(trees, index, payloads)?;
        self.apply(trees, &prepared)?;
        self.admission.accepted();
        let mut touched: Vec<Arc<SinkQueue>> = Vec::new();
        for p in prepared {
            self.account(&p.sink, p.size, true);
            if !touched.iter().any(|s| Arc::ptr_eq(s, &p.sink)) {
                touched.push(p.sink);
            }
        }
        Ok(Inserted {
            sinks: touched,
            count: messages.len(),
        })
    }

    /// Encodes one message (its payload appended to its sink's segment stream if large).
    fn prepare(
        &self,
        trees: &Trees,
        message: &Message,
        now: u64,
        appended: &mut Vec<SegmentRef>,
    ) -> Result<Prepared, QueueError> {
        let sink = self
            .sink(message.sink.as_str())
            .ok_or_else(|| QueueError::UnknownSink(message.sink.to_string()))?;
        let seq = self.seq.next(trees)?;
        let bytes = message.payload();
        let payload = if bytes.len() > INLINE_MAX {
            let r = self
                .segments
                .append(sink.name.as_str(), bytes)
                .map_err(QueueError::Segment)?;
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
            id: self.id(seq),
            enqueued_ms: now,
            content_type: message.effective_content_type(),
            topic: message.topic.as_deref(),
            key: message.key.as_deref(),
            headers: &headers,
            payload,
        })
        .encode();
        let key = sink.key(seq);
        Ok(Prepared {
            size: Size::of(key.len(), value.len(), external),
            sink,
            key,
            value,
            payload: external,
        })
    }

    /// Writes the records: one insert for one message (sled logs a batch twice), else
    /// one atomic batch.
    fn apply(&self, trees: &Trees, prepared: &[Prepared]) -> Result<(), QueueError> {
        match prepared {
            [] => Ok(()),
            [one] => self.store.check(
                trees
                    .pending
                    .insert(one.key.as_slice(), one.value.as_slice())
                    .map(drop),
            ),
            many => {
                let mut batch = sled::Batch::default();
                for p in many {
                    batch.insert(p.key.as_slice(), p.value.as_slice());
                }
                self.store.check(trees.pending.apply_batch(batch))
            }
        }
    }

    /// Applies `max_bytes` for `index` more bytes of records (their `payloads`, already
    /// appended, are counted by the segments): refuses, or drops the oldest messages
    /// (counted), per `when_full`. Called with the admission lock held.
    fn make_room(&self, trees: &Trees, index: u64, payloads: u64) -> Result<(), QueueError> {
        let max = self.admission.max_bytes();
        let needed = index + payloads;
        let full = || {
            self.admission.refused();
            QueueError::Full { needed, max }
        };
        if needed > max {
            return Err(full());
        }
        // A dropped payload in a rotated segment counts as free already: its file goes
        // only after the flush that makes the removal durable.
        let mut freed = 0u64;
        while self.usage().saturating_sub(freed) + index > max {
            match self
                .admission
                .drop_oldest()
                .then(|| self.drop_oldest(trees))
            {
                Some(Ok(Some(size))) => freed += size,
                Some(Err(e)) => return Err(e),
                Some(Ok(None)) | None => return Err(full()),
            }
        }
        Ok(())
    }

    /// What the queue occupies against `max_bytes`: its records in sled and its
    /// payload segment files.
    pub(super) fn usage(&self) -> u64 {
        self.index_charge.load(Ordering::Relaxed) + self.segments.charged_bytes()
    }

    /// Removes the oldest pending message of any sink. Returns the bytes whose release
    /// waits for a flush, or `None` if there was nothing to drop.
    fn drop_oldest(&self, trees: &Trees) -> Result<Option<u64>, QueueError> {
        let fifos = self.fifos();
        let mut oldest: Option<(u64, &Arc<SinkQueue>, sled::IVec)> = None;
        for sink in fifos.values() {
            if let Some(entry) = trees.pending.scan_prefix(sink.prefix()).keys().next() {
                let key = entry?;
                let seq = super::fifo::seq_of_key(&key);
                if oldest.as_ref().is_none_or(|(s, _, _)| seq < *s) {
                    oldest = Some((seq, sink, key));
                }
            }
        }
        let Some((_, sink, key)) = oldest else {
            return Ok(None);
        };
        let freed = self.remove(trees, sink, &key)?;
        if freed.is_some() {
            sink.dropped();
            tracing::warn!(sink = %sink.name, "queue full: dropped the oldest message");
        }
        Ok(Some(freed.map_or(0, |s| s.deferred)))
    }

    /// Removes `key` if present, keeping the counters right. Returns what it occupied.
    pub(super) fn remove(
        &self,
        trees: &Trees,
        sink: &SinkQueue,
        key: &[u8],
    ) -> Result<Option<Size>, QueueError> {
        let Some(old) = self.store.check(trees.pending.remove(key))? else {
            return Ok(None);
        };
        let size = self.release(key.len(), &old);
        self.account(sink, size, false);
        Ok(Some(size))
    }

    /// Releases the payload segment of a removed record; returns the record's size.
    pub(super) fn release(&self, key_len: usize, removed: &[u8]) -> Size {
        self.dirty.store(true, Ordering::Relaxed);
        let segment = super::read::segment_of(removed);
        let deferred = segment.map_or(0, |r| self.segments.release(&r));
        Size {
            deferred,
            ..Size::of(
                key_len,
                removed.len(),
                segment.map_or(0, |r| u64::from(r.len)),
            )
        }
    }

    /// Adds (or subtracts) one record of `size` to the counters of `sink` and the queue.
    pub(super) fn account(&self, sink: &SinkQueue, size: Size, added: bool) {
        if added {
            sink.added(size.logical);
            self.depth.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(size.logical, Ordering::Relaxed);
            self.index_charge.fetch_add(size.index, Ordering::Relaxed);
        } else {
            sink.removed(size.logical);
            self.depth.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(size.logical, Ordering::Relaxed);
            self.index_charge.fetch_sub(size.index, Ordering::Relaxed);
        }
    }
}
