//! Dead letters: messages a sink refused for good, kept (never silently dropped) until
//! an operator replays them into their sink's FIFO or purges them.
//!
//! A dead letter's record moves from the pending tree to the dead tree under the same
//! key, atomically. Its payload is copied once into the dead-letter segment stream
//! (not into sled, which would keep it in memory and turn large values into separate
//! blob files), so the sink's own segments can still be deleted as it drains.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use super::read::{segment_of, Unreadable};
use super::record::{DeadLetterV3, Envelope, MessageId, Payload, RecordV3};
use super::store::Trees;
use super::write::{Size, INLINE_MAX};
use super::{Core, Queue, QueueError, SinkQueue, StoredMessage};

/// The segment stream of dead-letter payloads (not a valid sink name).
const DEAD_STREAM: &str = "\0dead-letters";

/// A dead letter as the operator API shows it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: MessageId,
    pub sink: String,
    pub enqueued_ms: u64,
    pub failed_ms: u64,
    pub reason: String,
    /// The receiver's HTTP status, if it answered with one.
    pub status: Option<u16>,
    pub content_type: String,
    pub size: u64,
    /// The payload, when asked for (and readable).
    pub payload: Option<Bytes>,
}

/// Which dead letters an operation takes: all, one sink's, and/or given ids.
#[derive(Debug, Clone, Default)]
pub struct DeadSelection {
    pub sink: Option<String>,
    pub ids: Option<BTreeSet<MessageId>>,
}

/// One record of the dead tree, decoded.
struct Entry {
    key: sled::IVec,
    sink: String,
    failed_ms: u64,
    reason: String,
    status: Option<u16>,
    record: RecordV3,
}

impl Queue {
    /// The sink refused `message` for good: move it to the dead letters, atomically.
    pub fn dead_letter(
        &self,
        sink: &SinkQueue,
        message: &StoredMessage,
        reason: impl std::fmt::Display,
        status: Option<u16>,
    ) -> Result<(), QueueError> {
        let core = &self.core;
        core.store.writable()?;
        let trees = core.store.trees()?;
        let payload = if message.payload.len() > INLINE_MAX {
            let r = core
                .segments
                .append(DEAD_STREAM, &message.payload)
                .map_err(QueueError::Segment)?;
            Payload::Segment(r)
        } else {
            Payload::Inline(message.payload.to_vec())
        };
        let record = Envelope::DeadV3(DeadLetterV3 {
            reason: reason.to_string(),
            status,
            failed_ms: crate::clock::now_ms(),
            record: RecordV3 {
                id: message.id,
                enqueued_ms: message.enqueued_ms,
                content_type: message.content_type.clone(),
                topic: message.topic.clone(),
                key: message.key_.clone(),
                headers: message.headers.clone(),
                idempotency: message.idempotency.clone(),
                payload,
            },
        })
        .encode();
        let key = message.key.as_ref();
        let moved = core
            .store
            .move_record((&trees.pending, key), (&trees.dead, key), &record);
        match moved {
            Ok(removed) => core.settle_move(sink, key, removed, &record),
            Err(e) => {
                if let Some(r) = segment_of(&record) {
                    let _ = core.segments.release(&r);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Moves a record that cannot be read out of the FIFO into the dead letters, as it
    /// is, so it never wedges the sink.
    pub fn park_unreadable(
        &self,
        sink: &SinkQueue,
        unreadable: &Unreadable,
    ) -> Result<(), QueueError> {
        let core = &self.core;
        let trees = core.store.trees()?;
        let Some(value) = trees.pending.get(&unreadable.key)? else {
            return Ok(());
        };
        let key = unreadable.key.as_ref();
        let removed = core
            .store
            .move_record((&trees.pending, key), (&trees.dead, key), &value)?;
        core.settle_move(sink, key, removed, &value);
        Ok(())
    }

    /// Dead letters, oldest first per sink, at most `limit`.
    pub fn dead_letters(
        &self,
        selection: &DeadSelection,
        limit: usize,
        with_payload: bool,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let trees = self.core.store.trees()?;
        let entries = self.core.dead_entries(&trees, selection, limit)?;
        Ok(entries
            .into_iter()
            .map(|e| self.core.view(e, with_payload))
            .collect())
    }

    /// Puts the selected dead letters back at the tail of their sinks' FIFOs, with
    /// their ids (receivers still see one message), and makes that durable. Dead
    /// letters of sinks no longer configured stay. Blocking. Returns how many moved.
    pub fn replay_dead(&self, selection: &DeadSelection) -> Result<usize, QueueError> {
        let core = &self.core;
        let mut replayed = Vec::new();
        {
            let trees = core.store.trees()?;
            for entry in core.dead_entries(&trees, selection, usize::MAX)? {
                if let Some(sink) = core.sink(&entry.sink) {
                    core.replay_one(&trees, &sink, entry)?;
                    replayed.push(sink);
                }
            }
        }
        core.checkpoint()?;
        for sink in &replayed {
            sink.notify();
        }
        Ok(replayed.len())
    }

    /// Deletes the selected dead letters. Blocking. Returns how many went.
    pub fn purge_dead(&self, selection: &DeadSelection) -> Result<usize, QueueError> {
        let core = &self.core;
        let trees = core.store.trees()?;
        let entries = core.dead_entries(&trees, selection, usize::MAX)?;
        for entry in &entries {
            if let Some(old) = core.store.check(trees.dead.remove(&entry.key))? {
                core.forget_dead(&entry.key, &old, &entry.sink);
            }
        }
        core.checkpoint()?;
        Ok(entries.len())
    }
}

impl Core {
    /// Counters after a pending record `removed` became the dead record `dead`.
    fn settle_move(&self, sink: &SinkQueue, key: &[u8], removed: Option<sled::IVec>, dead: &[u8]) {
        if let Some(old) = removed {
            let size = self.release(key.len(), &old);
            self.account(sink, size, false);
        }
        self.index_charge.fetch_add(
            Size::of(key.len(), dead.len(), 0).index,
            std::sync::atomic::Ordering::Relaxed,
        );
        sink.dead_added(1);
    }

    /// Counters after the dead record `old` under `key` was deleted.
    fn forget_dead(&self, key: &[u8], old: &[u8], sink: &str) {
        let size = self.release(key.len(), old);
        self.index_charge
            .fetch_sub(size.index, std::sync::atomic::Ordering::Relaxed);
        if let Some(s) = self.sink(sink) {
            s.dead_removed(1);
        }
    }

    /// Moves one dead letter back to the tail of its sink's FIFO, with a new sequence
    /// number and its id. Its payload stays where it is (inline, or in the dead-letter
    /// file that holds it, which the record keeps referenced).
    fn replay_one(
        &self,
        trees: &Trees,
        sink: &Arc<SinkQueue>,
        entry: Entry,
    ) -> Result<(), QueueError> {
        let mut record = entry.record;
        record.enqueued_ms = crate::clock::now_ms();
        let key = sink.key(self.seq.next(&self.store, trees)?);
        let value = Envelope::V3(record).encode();
        let removed = self.store.move_record(
            (&trees.dead, entry.key.as_ref()),
            (&trees.pending, key.as_slice()),
            &value,
        )?;
        if let Some(old) = removed {
            // The same payload reference moves with it: the file's count is unchanged.
            let size = Size::of(entry.key.len(), old.len(), 0);
            self.index_charge
                .fetch_sub(size.index, std::sync::atomic::Ordering::Relaxed);
            sink.dead_removed(1);
        }
        let external = segment_of(&value).map_or(0, |r| u64::from(r.len));
        self.account(sink, Size::of(key.len(), value.len(), external), true);
        Ok(())
    }

    /// The selected dead records, decoded, oldest first per sink.
    fn dead_entries(
        &self,
        trees: &Trees,
        selection: &DeadSelection,
        limit: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let prefix = selection.sink.as_deref().map(|s| {
            let mut p = s.as_bytes().to_vec();
            p.push(0);
            p
        });
        let mut out = Vec::new();
        for item in trees.dead.scan_prefix(prefix.unwrap_or_default()) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            let entry = decode_dead(key, &value);
            if selection
                .ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&entry.record.id))
            {
                out.push(entry);
            }
        }
        Ok(out)
    }

    fn view(&self, entry: Entry, with_payload: bool) -> DeadLetter {
        let size = match &entry.record.payload {
            Payload::Inline(b) => b.len() as u64,
            Payload::Segment(r) => u64::from(r.len),
        };
        let payload = with_payload.then(|| match &entry.record.payload {
            Payload::Inline(b) => Some(Bytes::copy_from_slice(b)),
            Payload::Segment(r) => self.segments.read(r).ok().map(Bytes::from),
        });
        DeadLetter {
            id: entry.record.id,
            sink: entry.sink,
            enqueued_ms: entry.record.enqueued_ms,
            failed_ms: entry.failed_ms,
            reason: entry.reason,
            status: entry.status,
            content_type: entry.record.content_type,
            size,
            payload: payload.flatten(),
        }
    }
}

/// Any record of the dead tree as an [`Entry`]: dead letters of every version, and
/// pending records parked there because they could not be read.
fn decode_dead(key: sled::IVec, value: &[u8]) -> Entry {
    let sink = super::fifo::sink_name_of_key(&key);
    let (failed_ms, reason, status, record) = match Envelope::decode(value) {
        Ok(envelope @ (Envelope::DeadV1(_) | Envelope::DeadV2(_) | Envelope::DeadV3(_))) => {
            let d = envelope.into_dead().expect("a dead letter");
            (d.failed_ms, d.reason, d.status, d.record)
        }
        Ok(envelope) => {
            let reason = match &envelope {
                Envelope::V1(_) => "unreadable",
                _ => "payload unreadable",
            };
            let record = envelope.into_pending().expect("a pending record");
            (0, reason.to_owned(), None, record)
        }
        Err(e) => (
            0,
            format!("record cannot be decoded: {e}"),
            None,
            RecordV3 {
                id: MessageId {
                    epoch: 0,
                    seq: super::fifo::seq_of_key(&key),
                },
                enqueued_ms: 0,
                content_type: String::new(),
                topic: None,
                key: None,
                headers: Vec::new(),
                idempotency: None,
                payload: Payload::Inline(value.to_vec()),
            },
        ),
    };
    Entry {
        key,
        sink,
        failed_ms,
        reason,
        status,
        record,
    }
}
