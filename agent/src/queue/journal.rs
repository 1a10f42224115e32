//! The journal: every accepted message is a *frame* appended to its sink's stream of
//! files, and a group commit makes a whole group of frames durable with one
//! `fdatasync` per stream written. sled holds the index (the FIFO order, the record,
//! small payloads inline, where large ones are) and is flushed off the producers' path,
//! every half second; after a crash the frames written since the last *checkpoint*
//! are indexed again ([`replay`]).
//!
//! A frame:
//!
//! ```text
//! magic 0xA5 | body length: u32 LE | CRC-32 of the body: u32 LE | body
//! body = group: u64 LE | parts: u32 LE | key length: u16 LE | key | record
//! ```
//!
//! `record` is the message's record (`Envelope::V3`) with its payload inline, which is
//! its last field: a large payload's bytes are the frame's last bytes, and the index
//! points at them there. `group` is the first sequence number of the producer's
//! request and `parts` the number of messages it made, over all sinks: a request is
//! indexed after a crash only if all its frames are found, as it was accepted whole
//! or not at all.
//!
//! A frame that does not check out ends its file (a write cut short by the crash):
//! the agent never appends to a file after a restart or a failed write.

use std::collections::HashMap;

use super::record::{Envelope, Payload};
use super::segments::SegmentRef;

const MAGIC: u8 = 0xA5;
/// Magic, body length, CRC.
pub(super) const HEADER: usize = 9;
/// Group, parts, key length.
const BODY_HEADER: usize = 8 + 4 + 2;

/// Where a frame is, and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// The length of the frame [`encode`] makes of `key` and `record`.
pub(super) fn frame_len(key: &[u8], record: &[u8]) -> usize {
    HEADER + BODY_HEADER + key.len() + record.len()
}

/// Appends the frame of one message to `out`; returns its length.
pub(super) fn encode(
    out: &mut Vec<u8>,
    group: u64,
    parts: u32,
    key: &[u8],
    record: &[u8],
) -> usize {
    let len = frame_len(key, record);
    let body_len = len - HEADER;
    let start = out.len();
    out.reserve(len);
    out.push(MAGIC);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // the CRC, below
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&parts.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(record);
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start + 5..start + 9].copy_from_slice(&crc.to_le_bytes());
    len
}

/// The index value of a message whose frame (of `frame_len` bytes) starts at `at`:
/// the record as it is for a small payload, or with the payload replaced by where it
/// is in the frame, for a large one. `record` has the payload (of `payload_len`
/// bytes) inline, as its last field.
pub(super) fn index_value(
    record: &[u8],
    payload_len: usize,
    inline: bool,
    at: Position,
    frame_len: usize,
) -> Vec<u8> {
    if inline {
        return record.to_vec();
    }
    // `Payload::Inline(bytes)`: variant 0, the length as a varint, the bytes.
    let inline_len = 1 + varint_len(payload_len as u64) + payload_len;
    let mut value = Vec::with_capacity(record.len() - inline_len + 16);
    value.extend_from_slice(&record[..record.len() - inline_len]);
    let segment = Payload::Segment(SegmentRef {
        segment: at.segment,
        offset: at.offset + (frame_len - payload_len) as u64,
        len: payload_len as u32,
    });
    value.extend_from_slice(&postcard::to_allocvec(&segment).expect("encodes"));
    value
}

fn varint_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// One frame found in a file.
#[derive(Debug, Clone)]
pub(super) struct Frame {
    pub group: u64,
    pub parts: u32,
    pub key: Vec<u8>,
    /// The index value (see [`index_value`]).
    pub value: Vec<u8>,
    /// Where it ends (the position after it).
    pub end: Position,
}

/// The frames of one file's bytes from `from` on, up to the first that does not check
/// out. `inline_max`: payloads up to this size go inline into the index value.
pub(super) fn scan(segment: u64, bytes: &[u8], from: u64, inline_max: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = from as usize;
    while let Some(frame) = read_one(segment, bytes, at, inline_max) {
        at = frame.end.offset as usize;
        frames.push(frame);
    }
    frames
}

fn read_one(segment: u64, bytes: &[u8], at: usize, inline_max: usize) -> Option<Frame> {
    let header = bytes.get(at..at + HEADER)?;
    if header[0] != MAGIC {
        return None;
    }
    let body_len = u32::from_le_bytes(header[1..5].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[5..9].try_into().ok()?);
    let body = bytes.get(at + HEADER..at + HEADER + body_len)?;
    if body_len < BODY_HEADER || crc32fast::hash(body) != crc {
        return None;
    }
    let group = u64::from_le_bytes(body[..8].try_into().ok()?);
    let parts = u32::from_le_bytes(body[8..12].try_into().ok()?);
    let key_len = u16::from_le_bytes(body[12..14].try_into().ok()?) as usize;
    let key = body.get(BODY_HEADER..BODY_HEADER + key_len)?.to_vec();
    let record = body.get(BODY_HEADER + key_len..)?;
    let payload_len = match Envelope::decode(record).ok()?.into_pending()?.payload {
        Payload::Inline(p) => p.len(),
        Payload::Segment(_) => return None,
    };
    let frame_len = HEADER + body_len;
    let start = Position {
        segment,
        offset: at as u64,
    };
    let inline = payload_len <= inline_max;
    let value = index_value(record, payload_len, inline, start, frame_len);
    Some(Frame {
        group,
        parts,
        key,
        value,
        end: Position {
            segment,
            offset: (at + frame_len) as u64,
        },
    })
}

/// The frames of the groups that are whole among `frames` (each request's, over all
/// streams), in the order given.
pub(super) fn whole_groups(frames: Vec<Frame>) -> Vec<Frame> {
    let mut found: HashMap<u64, u32> = HashMap::new();
    for f in &frames {
        *found.entry(f.group).or_default() += 1;
    }
    frames
        .into_iter()
        .filter(|f| found.get(&f.group) == Some(&f.parts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::record::{EnvelopeRef, MessageId, PayloadRef, RecordRef};

    fn record(payload: &[u8]) -> Vec<u8> {
        EnvelopeRef(RecordRef {
            id: MessageId { epoch: 7, seq: 42 },
            enqueued_ms: 1000,
            content_type: "application/json",
            topic: Some("t"),
            key: None,
            headers: &[("h", "v")],
            idempotency: Some("1700000000000-0"),
            payload: PayloadRef::Inline(payload),
        })
        .encode()
    }

    #[test]
    fn frames_round_trip_and_large_payloads_stay_in_the_file() {
        let mut file = b"junk before".to_vec();
        let from = file.len() as u64;
        let big = vec![9u8; 1000];
        let len_small = encode(&mut file, 42, 2, b"s\0k1", &record(b"{}"));
        let len_big = encode(&mut file, 42, 2, b"s\0k2", &record(&big));
        assert_eq!(file.len() as u64, from + (len_small + len_big) as u64);
        let frames = scan(3, &file, from, 256);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].value, record(b"{}"), "small: the record as it is");
        // The index value of the large one is the record with the payload's place in
        // the file instead of the payload.
        let Ok(Envelope::V3(indexed)) = Envelope::decode(&frames[1].value) else {
            panic!("not a V3 record");
        };
        assert_eq!(indexed.idempotency.as_deref(), Some("1700000000000-0"));
        let Payload::Segment(r) = indexed.payload else {
            panic!("not in the file: {:?}", indexed.payload);
        };
        assert_eq!((r.segment, r.len), (3, 1000));
        assert_eq!(&file[r.offset as usize..][..r.len as usize], &big[..]);
        assert_eq!(indexed.id, MessageId { epoch: 7, seq: 42 });
        assert_eq!(frames[1].end.offset, file.len() as u64);
    }

    #[test]
    fn a_torn_or_corrupt_frame_ends_the_file_and_partial_groups_are_left_out() {
        let mut file = Vec::new();
        encode(&mut file, 1, 1, b"s\0a", &record(b"a"));
        let good = file.len();
        encode(&mut file, 2, 2, b"s\0b", &record(b"b"));
        encode(&mut file, 3, 1, b"s\0c", &record(b"c"));
        // Group 2 has one of its two frames: left out; 1 and 3 are whole.
        let frames = whole_groups(scan(0, &file, 0, 256));
        let keys: Vec<&[u8]> = frames.iter().map(|f| &f.key[..]).collect();
        assert_eq!(keys, [&b"s\0a"[..], b"s\0c"]);
        // A flipped bit, or a frame cut short, ends the scan there.
        let mut flipped = file.clone();
        flipped[good + 20] ^= 1;
        assert_eq!(scan(0, &flipped, 0, 256).len(), 1);
        assert_eq!(scan(0, &file[..file.len() - 3], 0, 256).len(), 2);
    }
}
