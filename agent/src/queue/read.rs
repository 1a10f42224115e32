//! Reading a sink's FIFO for delivery: the head, oldest first, payloads read from their
//! segments. Reading never writes: records that cannot be read are handed back for
//! the caller to park as dead letters.

use bytes::Bytes;

use super::record::{Envelope, MessageId, Payload, RecordV3};
use super::segments::SegmentRef;
use super::{Queue, QueueError, SinkQueue};

/// A message read back for delivery.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub(super) key: sled::IVec,
    pub id: MessageId,
    pub enqueued_ms: u64,
    pub content_type: String,
    pub topic: Option<String>,
    pub key_: Option<String>,
    pub headers: Vec<(String, String)>,
    /// The idempotency key its source or plugin chose, if any (see
    /// [`StoredMessage::idempotency_key`]).
    pub idempotency: Option<String>,
    pub payload: Bytes,
}

impl StoredMessage {
    /// What receivers de-duplicate by: the key its source or plugin chose, else the
    /// message id. Stable across redeliveries.
    pub fn idempotency_key(&self) -> std::borrow::Cow<'_, str> {
        match &self.idempotency {
            Some(key) => std::borrow::Cow::Borrowed(key),
            None => std::borrow::Cow::Owned(self.id.to_string()),
        }
    }
}

/// The head of a FIFO: what could be read, and the records that could not (to be
/// moved out of the way with [`Queue::park_unreadable`], so they never wedge the sink).
#[derive(Debug, Default)]
pub struct Peeked {
    pub messages: Vec<StoredMessage>,
    pub unreadable: Vec<Unreadable>,
}

/// A record that cannot be delivered: undecodable, or its payload segment is gone.
#[derive(Debug)]
pub struct Unreadable {
    pub(super) key: sled::IVec,
    pub error: QueueError,
}

impl Queue {
    /// Up to `max` messages from the head of `sink`'s FIFO, oldest first, leaving out
    /// those in `skip` (read before and still held by the caller: not loaded again), and
    /// no more payload bytes than `max_bytes` past the first message. Blocking. Stops at
    /// the first unreadable record, so order is kept.
    ///
    /// The FIFO is read from its head every time, not from after the last message
    /// read: concurrent inserts commit in any order, so a message may appear behind
    /// ones read already.
    pub fn peek(
        &self,
        sink: &SinkQueue,
        skip: &[StoredMessage],
        max: usize,
        max_bytes: usize,
    ) -> Result<Peeked, QueueError> {
        let trees = self.core.store.trees()?;
        let mut peeked = Peeked::default();
        let mut bytes = 0;
        let skip: std::collections::HashSet<&[u8]> = skip.iter().map(|m| &m.key[..]).collect();
        let entries = trees
            .pending
            .scan_prefix(sink.prefix())
            .filter(|e| e.as_ref().map_or(true, |(k, _)| !skip.contains(&k[..])));
        for entry in entries.take(max) {
            if bytes >= max_bytes {
                break;
            }
            let (key, value) = entry?;
            match self.load(key.clone(), &value) {
                Ok(message) => {
                    bytes += message.payload.len();
                    peeked.messages.push(message);
                }
                Err(error) => {
                    peeked.unreadable.push(Unreadable { key, error });
                    break;
                }
            }
        }
        Ok(peeked)
    }

    /// A pending record with its payload.
    fn load(&self, key: sled::IVec, value: &[u8]) -> Result<StoredMessage, QueueError> {
        let corrupt = |message: String| QueueError::CorruptRecord {
            key: format!("{key:?}"),
            message,
        };
        let envelope = Envelope::decode(value).map_err(|e| corrupt(e.to_string()))?;
        let Some(mut record) = envelope.into_pending() else {
            return Err(corrupt("a dead letter among the pending messages".into()));
        };
        let payload = match std::mem::replace(&mut record.payload, Payload::Inline(Vec::new())) {
            Payload::Inline(bytes) => bytes,
            Payload::Segment(s) => self.core.segments.read(&s).map_err(QueueError::Segment)?,
        };
        Ok(stored(key, record, payload))
    }
}

fn stored(key: sled::IVec, record: RecordV3, payload: Vec<u8>) -> StoredMessage {
    StoredMessage {
        key,
        id: record.id,
        enqueued_ms: record.enqueued_ms,
        content_type: record.content_type,
        topic: record.topic,
        key_: record.key,
        headers: record.headers,
        idempotency: record.idempotency,
        payload: Bytes::from(payload),
    }
}

/// The payload segment a record (pending or dead) points at, if any.
pub(super) fn segment_of(value: &[u8]) -> Option<SegmentRef> {
    let envelope = Envelope::decode(value).ok()?;
    let payload = match envelope {
        Envelope::V2(r) => r.payload,
        Envelope::V3(r) => r.payload,
        Envelope::DeadV2(d) => d.record.payload,
        Envelope::DeadV3(d) => d.record.payload,
        Envelope::V1(_) | Envelope::DeadV1(_) => return None,
    };
    match payload {
        Payload::Segment(r) => Some(r),
        Payload::Inline(_) => None,
    }
}
