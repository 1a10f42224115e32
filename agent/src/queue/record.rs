//! The on-disk record format: postcard inside a versioned envelope enum, so the format
//! can evolve (add `V2`, keep decoding `V1`) without migrating a device's backlog.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::segments::SegmentRef;

/// A message's stable id: the database's random epoch and the message's sequence
/// number. Sent as `Idempotency-Key` (HTTP) or user property (MQTT v5) so receivers
/// can de-duplicate at-least-once delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId {
    pub epoch: u64,
    pub seq: u64,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.epoch, self.seq)
    }
}

impl std::str::FromStr for MessageId {
    type Err = String;

    /// The 32 hex digits of [`MessageId`]'s `Display`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a message id (32 hex digits)");
        if s.len() != 32 || !s.is_ascii() {
            return Err(bad());
        }
        let epoch = u64::from_str_radix(&s[..16], 16).map_err(|_| bad())?;
        let seq = u64::from_str_radix(&s[16..], 16).map_err(|_| bad())?;
        Ok(MessageId { epoch, seq })
    }
}

/// Every value stored in the queue trees. Variant order is the on-disk tag: append
/// new variants, never reorder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Envelope {
    /// A message waiting for its sink.
    V1(RecordV1),
    /// A message its sink refused permanently.
    DeadV1(DeadLetterV1),
    /// A queued message whose payload may live in a segment file.
    V2(RecordV2),
    /// A message its sink refused, whose payload may live in a segment file (the
    /// dead-letter stream), with the HTTP status if there was one.
    DeadV2(DeadLetterV2),
    /// A queued message with the idempotency key its source or plugin chose.
    V3(RecordV3),
    /// A dead letter of a `V3` record.
    DeadV3(DeadLetterV3),
}

/// A queued message, version 3: version 2 and the idempotency key its source or plugin
/// chose (`None`: the message id). The payload stays the last field: the journal's
/// index records rely on it (`journal::index_value`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordV3 {
    pub id: MessageId,
    pub enqueued_ms: u64,
    pub content_type: String,
    pub topic: Option<String>,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub idempotency: Option<String>,
    pub payload: Payload,
}

/// A dead letter of a version 3 record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterV3 {
    pub reason: String,
    pub status: Option<u16>,
    pub failed_ms: u64,
    pub record: RecordV3,
}

impl From<RecordV2> for RecordV3 {
    fn from(r: RecordV2) -> Self {
        RecordV3 {
            id: r.id,
            enqueued_ms: r.enqueued_ms,
            content_type: r.content_type,
            topic: r.topic,
            key: r.key,
            headers: r.headers,
            idempotency: None,
            payload: r.payload,
        }
    }
}

impl From<RecordV1> for RecordV3 {
    fn from(r: RecordV1) -> Self {
        RecordV3 {
            id: r.id,
            enqueued_ms: r.enqueued_ms,
            content_type: r.content_type,
            topic: r.topic,
            key: r.key,
            headers: r.headers,
            idempotency: None,
            payload: Payload::Inline(r.payload),
        }
    }
}

impl Envelope {
    /// A pending record, of any version, as the current one.
    pub fn into_pending(self) -> Option<RecordV3> {
        match self {
            Envelope::V1(r) => Some(r.into()),
            Envelope::V2(r) => Some(r.into()),
            Envelope::V3(r) => Some(r),
            Envelope::DeadV1(_) | Envelope::DeadV2(_) | Envelope::DeadV3(_) => None,
        }
    }

    /// A dead letter, of any version, as the current one.
    pub fn into_dead(self) -> Option<DeadLetterV3> {
        match self {
            Envelope::DeadV1(d) => Some(DeadLetterV3 {
                reason: d.reason,
                status: None,
                failed_ms: d.failed_ms,
                record: d.record.into(),
            }),
            Envelope::DeadV2(d) => Some(DeadLetterV3 {
                reason: d.reason,
                status: d.status,
                failed_ms: d.failed_ms,
                record: d.record.into(),
            }),
            Envelope::DeadV3(d) => Some(d),
            Envelope::V1(_) | Envelope::V2(_) | Envelope::V3(_) => None,
        }
    }
}

/// A dead letter, version 2: no payload copy in the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterV2 {
    pub reason: String,
    pub status: Option<u16>,
    pub failed_ms: u64,
    pub record: RecordV2,
}

/// A queued message, version 2: like V1, with the payload inline (small ones) or in a
/// payload segment (see `segments`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordV2 {
    pub id: MessageId,
    pub enqueued_ms: u64,
    pub content_type: String,
    pub topic: Option<String>,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub payload: Payload,
}

impl RecordV2 {
    /// The record with its payload in hand (read from its segment, or inline).
    pub fn with_payload(self, payload: Vec<u8>) -> RecordV1 {
        RecordV1 {
            id: self.id,
            enqueued_ms: self.enqueued_ms,
            content_type: self.content_type,
            topic: self.topic,
            key: self.key,
            headers: self.headers,
            payload,
        }
    }
}

/// Where a record's payload is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    Inline(Vec<u8>),
    Segment(SegmentRef),
}

/// A queued message, version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordV1 {
    pub id: MessageId,
    /// Unix milliseconds when it was queued (for latency and age).
    pub enqueued_ms: u64,
    pub content_type: String,
    pub topic: Option<String>,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

/// A dead-lettered message: the record and why its sink refused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterV1 {
    pub reason: String,
    pub failed_ms: u64,
    pub record: RecordV1,
}

/// Borrowed twin of `Envelope::V3(RecordV3)` for the write path: encoding straight from
/// the plugin's output copies the payload once. Must stay byte-compatible with
/// `Envelope` (checked by the tests).
pub(crate) struct EnvelopeRef<'a>(pub RecordRef<'a>);

#[derive(Serialize)]
pub(crate) struct RecordRef<'a> {
    pub id: MessageId,
    pub enqueued_ms: u64,
    pub content_type: &'a str,
    pub topic: Option<&'a str>,
    pub key: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a str)],
    pub idempotency: Option<&'a str>,
    pub payload: PayloadRef<'a>,
}

/// Borrowed twin of [`Payload::Inline`]: the write path always has the payload in hand
/// (the journal keeps it; the index record pointing into the journal is derived from
/// this encoding, see `journal::index_value`).
#[derive(Serialize)]
pub(crate) enum PayloadRef<'a> {
    Inline(&'a [u8]),
}

impl Serialize for EnvelopeRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Variant index 4 of `Envelope`.
        s.serialize_newtype_variant("Envelope", 4, "V3", &self.0)
    }
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding to a Vec cannot fail")
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

impl EnvelopeRef<'_> {
    /// Encodes into a buffer sized for the record up front: growing it from empty
    /// reallocated (and copied) the payload several times per message.
    pub fn encode(&self) -> Vec<u8> {
        let r = &self.0;
        let strings = r.content_type.len()
            + r.topic.map_or(0, str::len)
            + r.key.map_or(0, str::len)
            + r.idempotency.map_or(0, str::len)
            + r.headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 10)
                .sum::<usize>();
        let PayloadRef::Inline(payload) = r.payload;
        // Tags and varint lengths: at most 10 bytes each, for the record's 8 fields and
        // its string and payload lengths (headers counted above).
        let capacity = payload.len() + strings + 160;
        postcard::to_extend(self, Vec::with_capacity(capacity))
            .expect("encoding to a Vec cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordV1 {
        RecordV1 {
            id: MessageId { epoch: 1, seq: 300 },
            enqueued_ms: 5,
            content_type: "a/b".into(),
            topic: None,
            key: Some("k".into()),
            headers: vec![("h".into(), "v".into())],
            payload: b"{}".to_vec(),
        }
    }

    /// The bytes of a V1 record are frozen: a change here breaks every device's backlog.
    #[test]
    fn golden_bytes_v1() {
        let bytes = Envelope::V1(sample()).encode();
        let golden: &[u8] = &[
            0, // Envelope::V1
            1, 0xac, 0x02, // id: epoch 1, seq 300 (varint)
            5,    // enqueued_ms
            3, b'a', b'/', b'b', // content_type
            0,    // topic: None
            1, 1, b'k', // key: Some("k")
            1, 1, b'h', 1, b'v', // headers
            2, b'{', b'}', // payload
        ];
        assert_eq!(bytes, golden);
        assert_eq!(Envelope::decode(golden).unwrap(), Envelope::V1(sample()));
    }

    fn sample_v2(payload: Payload) -> RecordV2 {
        let v1 = sample();
        RecordV2 {
            id: v1.id,
            enqueued_ms: v1.enqueued_ms,
            content_type: v1.content_type,
            topic: v1.topic,
            key: v1.key,
            headers: v1.headers,
            payload,
        }
    }

    /// V2 is frozen too; V1 records from older agents keep decoding (golden_bytes_v1).
    #[test]
    fn golden_bytes_v2() {
        let segment = SegmentRef {
            segment: 3,
            offset: 200,
            len: 5,
        };
        let bytes = Envelope::V2(sample_v2(Payload::Segment(segment))).encode();
        let golden: &[u8] = &[
            2, // Envelope::V2
            1, 0xac, 0x02, 5, 3, b'a', b'/', b'b', 0, 1, 1, b'k', 1, 1, b'h', 1, b'v',
            1, // Payload::Segment
            3, 0xc8, 0x01, 5, // segment 3, offset 200, len 5
        ];
        assert_eq!(bytes, golden);
        assert_eq!(
            Envelope::decode(golden).unwrap(),
            Envelope::V2(sample_v2(Payload::Segment(segment)))
        );
    }

    #[test]
    fn borrowed_encoding_matches_owned() {
        let r = sample();
        let headers = [("h", "v")];
        let borrowed = |idempotency| {
            EnvelopeRef(RecordRef {
                id: r.id,
                enqueued_ms: r.enqueued_ms,
                content_type: &r.content_type,
                topic: None,
                key: Some("k"),
                headers: &headers,
                idempotency,
                payload: PayloadRef::Inline(b"{}"),
            })
            .encode()
        };
        let owned = |idempotency: Option<&str>| {
            let mut v3 = RecordV3::from(sample_v2(Payload::Inline(b"{}".to_vec())));
            v3.idempotency = idempotency.map(str::to_owned);
            Envelope::V3(v3).encode()
        };
        assert_eq!(borrowed(None), owned(None));
        assert_eq!(borrowed(Some("1700-0")), owned(Some("1700-0")));
        assert_eq!(borrowed(None)[0], 4, "Envelope::V3");
    }

    #[test]
    fn older_records_read_as_the_current_version() {
        let v1 = Envelope::V1(sample()).into_pending().unwrap();
        assert_eq!(v1.payload, Payload::Inline(b"{}".to_vec()));
        assert_eq!(v1.idempotency, None);
        let dead = Envelope::DeadV1(DeadLetterV1 {
            reason: "r".into(),
            failed_ms: 1,
            record: sample(),
        });
        assert_eq!(dead.into_dead().unwrap().status, None);
    }

    #[test]
    fn dead_letter_roundtrip() {
        let d = Envelope::DeadV1(DeadLetterV1 {
            reason: "400 Bad Request".into(),
            failed_ms: 9,
            record: sample(),
        });
        assert_eq!(Envelope::decode(&d.encode()).unwrap(), d);
        assert_eq!(d.encode()[0], 1);
    }

    /// DeadV2 is frozen too.
    #[test]
    fn golden_bytes_dead_v2() {
        let d = Envelope::DeadV2(DeadLetterV2 {
            reason: "x".into(),
            status: Some(404),
            failed_ms: 9,
            record: sample_v2(Payload::Inline(b"{}".to_vec())),
        });
        let golden: &[u8] = &[
            3, // Envelope::DeadV2
            1, b'x', // reason
            1, 0x94, 0x03, // status: Some(404)
            9,    // failed_ms
            1, 0xac, 0x02, 5, 3, b'a', b'/', b'b', 0, 1, 1, b'k', 1, 1, b'h', 1, b'v', 0, 2, b'{',
            b'}', // Payload::Inline
        ];
        assert_eq!(d.encode(), golden);
        assert_eq!(Envelope::decode(golden).unwrap(), d);
    }

    #[test]
    fn message_id_is_32_hex() {
        assert_eq!(
            MessageId {
                epoch: 0xab,
                seq: 1
            }
            .to_string(),
            "00000000000000ab0000000000000001"
        );
        let id: MessageId = "00000000000000ab0000000000000001".parse().unwrap();
        assert_eq!(
            id,
            MessageId {
                epoch: 0xab,
                seq: 1
            }
        );
        assert!("xyz".parse::<MessageId>().is_err());
    }
}
