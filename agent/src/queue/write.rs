//! Writing to the queue: admitting a request's messages (the disk reserve, the
//! `max_bytes` cap and its `when_full` policy) and handing them, encoded, to the group
//! commit; and the removals — acknowledged, dropped by policy — with their accounting.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use outpost_pdk::Message;

use super::commit::{Group, Lead, Prepared, Reply, Ticket};
use super::record::{EnvelopeRef, PayloadRef, RecordRef};
use super::store::Trees;
use super::{Core, Queue, QueueError, SinkQueue, StoredMessage};

/// Payloads up to this size are kept inline in the index; larger ones are read from
/// the journal when delivered.
pub(super) const INLINE_MAX: usize = 256;

/// What one record occupies.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Size {
    /// Key, record and payload bytes: what health reports as waiting.
    pub logical: u64,
    /// Payload bytes that stay on disk until a flush lets their file go.
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

impl Queue {
    /// Admits `messages` (one producer's request: all or nothing) and hands them to the
    /// group commit; the ticket resolves once they are durable (per `queue.sync`) and
    /// in their sinks' FIFOs. Blocking: the encoding, the admission, and the commit
    /// itself when this thread leads it.
    pub fn submit(&self, messages: &[Message]) -> Result<Ticket, QueueError> {
        let (ticket, lead) = self.enqueue(messages)?;
        if let Some(lead) = lead {
            lead.run();
        }
        Ok(ticket)
    }

    /// [`Queue::submit`] for a caller that hands the ticket on before it leads the
    /// commit (if it is to): the pipeline answers its producer's task first, then
    /// commits for everyone waiting. Blocking.
    pub fn enqueue(&self, messages: &[Message]) -> Result<(Ticket, Option<Lead>), QueueError> {
        if messages.is_empty() {
            return Ok((Ticket::done(), None));
        }
        let group = self.core.admit_writable(messages)?;
        let (ticket, reply) = Ticket::new();
        Ok((ticket, self.core.commit.enqueue(&self.core, group, reply)))
    }

    /// [`Queue::enqueue`] that answers through `then` instead of a ticket: once the
    /// messages are durable and in their FIFOs, or at once if they are refused (or if
    /// there are none). Returns the lead if this thread is to commit. Blocking.
    pub fn enqueue_then(
        &self,
        messages: &[Message],
        then: impl FnOnce(Result<(), QueueError>) + Send + 'static,
    ) -> Option<Lead> {
        if messages.is_empty() {
            then(Ok(()));
            return None;
        }
        match self.core.admit_writable(messages) {
            Ok(group) => {
                let reply: Reply = Box::new(then);
                self.core.commit.enqueue(&self.core, group, reply)
            }
            Err(e) => {
                then(Err(e));
                None
            }
        }
    }

    /// The sink acknowledged `message`: delete it. Blocking. Not flushed on its own: a
    /// crash before the next checkpoint re-delivers it (at-least-once), never loses it.
    pub fn ack(&self, sink: &SinkQueue, message: &StoredMessage) -> Result<(), QueueError> {
        self.core.store.writable()?;
        let trees = self.core.store.trees()?;
        self.core.remove(&trees, sink, &message.key)?;
        Ok(())
    }
}

impl Core {
    /// [`Core::admit`] if the database takes writes.
    fn admit_writable(&self, messages: &[Message]) -> Result<Group, QueueError> {
        self.store.writable()?;
        self.admit(messages)
    }

    /// Encodes `messages` and admits them against the disk reserve and the cap (which
    /// may drop the oldest messages); their bytes stay reserved until the group is
    /// committed or fails.
    fn admit(&self, messages: &[Message]) -> Result<Group, QueueError> {
        let needed: u64 = messages
            .iter()
            .map(|m| m.payload().len() as u64 + 200)
            .sum();
        self.admission.check_disk(needed)?;
        let trees = self.store.trees()?;
        let now = crate::clock::now_ms();
        let _admit = self.admission.lock();
        let mut prepared = Vec::with_capacity(messages.len());
        for message in messages {
            prepared.push(self.prepare(&trees, message, now)?);
        }
        let index: u64 = prepared.iter().map(|p| p.size.index).sum();
        let external: u64 = prepared
            .iter()
            .filter(|p| !p.inline)
            .map(|p| p.payload_len as u64)
            .sum();
        self.make_room(&trees, index, external)?;
        self.reserved.fetch_add(index + external, Ordering::Relaxed);
        self.admission.accepted();
        Ok(Group {
            first_seq: prepared[0].seq,
            reserved: index + external,
            messages: prepared,
        })
    }

    /// Encodes one message: its key, and its record with the payload inline (the
    /// journal frame's content).
    fn prepare(&self, trees: &Trees, message: &Message, now: u64) -> Result<Prepared, QueueError> {
        let sink = self
            .sink(message.sink.as_str())
            .ok_or_else(|| QueueError::UnknownSink(message.sink.to_string()))?;
        let seq = self.seq.next(&self.store, trees)?;
        let payload = message.payload();
        let headers: Vec<(&str, &str)> = message
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let record = EnvelopeRef(RecordRef {
            id: self.id(seq),
            enqueued_ms: now,
            content_type: message.effective_content_type(),
            topic: message.topic.as_deref(),
            key: message.key.as_deref(),
            headers: &headers,
            idempotency: message.id.as_deref(),
            payload: PayloadRef::Inline(payload),
        })
        .encode();
        let key = sink.key(seq);
        let inline = payload.len() <= INLINE_MAX;
        // The index record, estimated: this one for a small payload; for a large one, a
        // reference (about 16 bytes) instead of the payload, which stays in the file.
        let size = if inline {
            Size::of(key.len(), record.len(), 0)
        } else {
            let external = payload.len() as u64;
            Size::of(key.len(), record.len() - payload.len() + 16, external)
        };
        Ok(Prepared {
            sink,
            seq,
            key,
            record,
            payload_len: payload.len(),
            inline,
            size,
        })
    }

    /// Applies `max_bytes` for `index` more bytes of records and `external` payload
    /// bytes: refuses, or drops the oldest messages (counted), per `when_full`. Called
    /// with the admission lock held.
    fn make_room(&self, trees: &Trees, index: u64, external: u64) -> Result<(), QueueError> {
        let max = self.admission.max_bytes();
        let needed = index + external;
        let full = || {
            self.admission.refused();
            QueueError::Full { needed, max }
        };
        if needed > max {
            return Err(full());
        }
        // A dropped payload in a rotated file counts as free already: its file goes
        // only after the checkpoint that makes the removal durable.
        let mut freed = 0u64;
        while self.usage().saturating_sub(freed) + needed > max {
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

    /// What the queue occupies against `max_bytes`: its records in sled, its files, and
    /// what groups not yet committed reserved.
    pub(super) fn usage(&self) -> u64 {
        self.index_charge.load(Ordering::Relaxed)
            + self.segments.charged_bytes()
            + self.reserved.load(Ordering::Relaxed)
    }

    /// Removes the oldest pending message of any sink. Returns the bytes whose release
    /// waits for a checkpoint, or `None` if there was nothing to drop.
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

    /// Releases the payload of a removed record; returns the record's size.
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
