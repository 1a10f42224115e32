//! Stream entries out of Redis's replies to XREADGROUP and XAUTOCLAIM (RESP2 arrays or
//! RESP3 maps), taken apart without copying their payloads twice.

use bytes::Bytes;
use redis::Value;

/// One stream entry: its id and, unless it was deleted from the stream while pending,
/// its fields.
#[derive(Debug, PartialEq)]
pub(super) struct Entry {
    pub id: String,
    pub fields: Option<Vec<(String, Bytes)>>,
}

impl Entry {
    /// The value of `field`.
    pub fn field(&self, field: &str) -> Option<&Bytes> {
        self.fields
            .as_ref()?
            .iter()
            .find_map(|(k, v)| (k == field).then_some(v))
    }
}

/// Why a reply did not have the expected shape.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from Redis: {0}")]
pub(super) struct Malformed(&'static str);

/// The entries of an XREADGROUP reply for one stream (nil: none within the block time).
pub(super) fn read_entries(reply: Value) -> Result<Vec<Entry>, Malformed> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => Ok(pair.pop().expect("two")),
                _ => Err(Malformed("a stream of XREADGROUP")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::Map(streams) => streams.into_iter().map(|(_, v)| v).collect(),
        _ => return Err(Malformed("XREADGROUP")),
    };
    let mut entries = Vec::new();
    for list in streams {
        entries.extend(entry_list(list)?);
    }
    Ok(entries)
}

/// XAUTOCLAIM's reply: where the next scan starts (`0-0`: done), the claimed entries,
/// and the ids of pending entries that were deleted from the stream (Redis 7).
pub(super) fn autoclaim(reply: Value) -> Result<(String, Vec<Entry>, Vec<String>), Malformed> {
    let Value::Array(parts) = reply else {
        return Err(Malformed("XAUTOCLAIM"));
    };
    let mut parts = parts.into_iter();
    let next = parts
        .next()
        .and_then(text)
        .ok_or(Malformed("XAUTOCLAIM's cursor"))?;
    let claimed = entry_list(parts.next().ok_or(Malformed("XAUTOCLAIM's entries"))?)?;
    let deleted = match parts.next() {
        Some(Value::Array(ids)) => ids.into_iter().filter_map(text).collect(),
        _ => Vec::new(),
    };
    Ok((next, claimed, deleted))
}

fn entry_list(list: Value) -> Result<Vec<Entry>, Malformed> {
    let Value::Array(items) = list else {
        return Err(Malformed("a list of entries"));
    };
    items.into_iter().map(entry).collect()
}

fn entry(item: Value) -> Result<Entry, Malformed> {
    let Value::Array(parts) = item else {
        return Err(Malformed("an entry"));
    };
    let mut parts = parts.into_iter();
    let id = parts
        .next()
        .and_then(text)
        .ok_or(Malformed("an entry id"))?;
    let fields = match parts.next() {
        None | Some(Value::Nil) => None,
        Some(Value::Array(flat)) => {
            let mut fields = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                let k = name(k).ok_or(Malformed("a field name"))?;
                fields.push((k, bytes(v).ok_or(Malformed("a field value"))?));
            }
            Some(fields)
        }
        Some(Value::Map(pairs)) => Some(
            pairs
                .into_iter()
                .map(|(k, v)| Some((name(k)?, bytes(v)?)))
                .collect::<Option<Vec<_>>>()
                .ok_or(Malformed("entry fields"))?,
        ),
        Some(_) => return Err(Malformed("entry fields")),
    };
    Ok(Entry { id, fields })
}

fn bytes(v: Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::from(b)),
        Value::SimpleString(s) => Some(Bytes::from(s)),
        Value::Int(n) => Some(Bytes::from(n.to_string())),
        _ => None,
    }
}

/// A field name: binary-safe at Redis, so read lossily (one producer's odd name must
/// not make the whole read fail and the entry pend forever).
fn name(v: Value) -> Option<String> {
    bytes(v).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn text(v: Value) -> Option<String> {
    String::from_utf8(bytes(v)?.into()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entries_of_a_read_and_a_claim() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("payload"), bulk("{}")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let entries = read_entries(reply).unwrap();
        assert_eq!(entries[0].field("payload").unwrap().as_ref(), b"{}");
        assert_eq!(entries[0].field("other"), None);
        assert_eq!(
            entries[1],
            Entry {
                id: "2-0".into(),
                fields: None
            }
        );
        assert!(read_entries(Value::Nil).unwrap().is_empty());

        let claim = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![Value::Array(vec![
                bulk("3-0"),
                Value::Array(vec![bulk("payload"), bulk("x")]),
            ])]),
            Value::Array(vec![bulk("4-0")]),
        ]);
        let (next, claimed, deleted) = autoclaim(claim).unwrap();
        assert_eq!(
            (next.as_str(), claimed.len(), deleted),
            ("0-0", 1, vec!["4-0".to_owned()])
        );
        assert!(read_entries(Value::Int(1)).is_err());
    }
}
